//! The buffer pool (issue 21, item 9): requests served by size class, free
//! buffers kept within a byte budget (the least recently returned released
//! first) and for a bounded idle time, and a soak of calls of varying shapes
//! whose memory levels off under the budget.

mod common;

use gru_wgpu::gpu::{ContextOptions, GpuContext};
use gru_wgpu::GruConfig;
use rand::Rng;

/// A context of this test alone (a shared one's pool sees other tests'
/// buffers), with the pool's budget and idle time given.
fn context(budget: u64, max_idle: Option<std::time::Duration>) -> Option<GpuContext> {
    common::gpu()?;
    let ctx = GpuContext::with_options(ContextOptions {
        tune: Some(gru_wgpu::gpu::TuneMode::Off),
        plan_cache: gru_wgpu::gpu::PlanCacheLocation::MemoryOnly,
        pool_budget: Some(budget),
        pool_max_idle: max_idle,
        ..Default::default()
    })
    .unwrap();
    Some(ctx)
}

/// The process's resident memory in MB, where `/proc` says (Linux), else 0.
fn resident_mb() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096 / 1_000_000
}

#[test]
fn a_request_is_served_by_a_free_buffer_of_its_size_class() {
    let Some(ctx) = context(1 << 20, None) else {
        return;
    };
    assert_eq!(ctx.pool_size_class(4), 256);
    assert_eq!(ctx.pool_size_class(1000), 1024);
    let a = ctx.upload("a", &[1.0; 250]).unwrap();
    assert_eq!(a.buffer().size(), 1024);
    assert_eq!(a.len(), 250);
    drop(a);
    let s0 = ctx.pool_stats();
    assert_eq!((s0.created, s0.free, s0.free_bytes), (1, 1, 1024));
    // 900 bytes: the same class, the same buffer; its data is what was
    // uploaded, and the slack is never read.
    let b = ctx.upload("b", &[2.0; 225]).unwrap();
    let s1 = ctx.pool_stats();
    assert_eq!((s1.created, s1.reused, s1.free), (1, 1, 0));
    assert_eq!(
        ctx.read_array(b.buffer(), ndarray::Ix1(225))
            .unwrap()
            .to_vec(),
        vec![2.0; 225]
    );
    // (The read back's staging buffer, MAP_READ, is of another usage.)
    let s2 = ctx.pool_stats();
    assert_eq!((s2.created, s2.free, s2.free_bytes), (2, 1, 1024));
    // 700 bytes: another class (768), another buffer.
    let c = ctx.upload("c", &[3.0; 175]).unwrap();
    assert_eq!(c.buffer().size(), 768);
    assert_eq!(ctx.pool_stats().created, 3);
    drop((b, c));
    assert_eq!(ctx.pooled_bytes(), 1024 + 1024 + 768);
    ctx.trim_pool();
    let s = ctx.pool_stats();
    assert_eq!((s.free, s.free_bytes, s.live, s.released), (0, 0, 0, 3));
}

#[test]
fn the_least_recently_returned_buffers_go_first_beyond_the_budget() {
    let Some(ctx) = context(4096, None) else {
        return;
    };
    // Four buffers of 1 KiB fill the budget.
    let bufs: Vec<_> = (0..4)
        .map(|i| ctx.upload("b", &[i as f32; 256]).unwrap())
        .collect();
    drop(bufs);
    assert_eq!(ctx.pooled_bytes(), 4096);
    // A 2 KiB one returned makes room for itself: the two oldest go.
    drop(ctx.upload("big", &[0.0; 512]).unwrap());
    let s = ctx.pool_stats();
    assert_eq!((s.free, s.free_bytes, s.released), (3, 4096, 2), "{s:?}");
    // One larger than the whole budget is never kept (and evicts nothing).
    drop(ctx.upload("huge", &[0.0; 2048]).unwrap());
    let s = ctx.pool_stats();
    assert_eq!((s.free, s.free_bytes, s.released), (3, 4096, 3), "{s:?}");
    assert_eq!(s.live, 3);
    // A budget of 0 keeps nothing.
    let Some(none) = context(0, None) else { return };
    drop(none.upload("b", &[0.0; 4]).unwrap());
    assert_eq!(none.pooled_bytes(), 0);
    assert_eq!(none.pool_stats().live, 0);
}

#[test]
fn a_buffer_idle_longer_than_the_limit_is_released_at_the_next_use() {
    let idle = std::time::Duration::from_millis(200);
    let Some(ctx) = context(1 << 20, Some(idle)) else {
        return;
    };
    drop(ctx.upload("old", &[0.0; 1000]).unwrap());
    assert_eq!(ctx.pool_stats().free, 1);
    std::thread::sleep(idle * 2);
    // Still there: nothing used the pool meanwhile.
    assert_eq!(ctx.pool_stats().free, 1);
    drop(ctx.upload("new", &[0.0; 10]).unwrap());
    let s = ctx.pool_stats();
    assert_eq!((s.free, s.free_bytes, s.released), (1, 256, 1), "{s:?}");
}

/// Calls of random small shapes on `ctx`, every result checked against the
/// f64 CPU reference; after each, the free buffers are within `budget` and
/// only they are alive. Returns the number of buffers made before each call.
fn soak(ctx: &GpuContext, calls: usize, budget: u64, seed: u64) -> Vec<u64> {
    let mut rng = common::rng(seed);
    let (mut peak, mut created) = (0u64, Vec::with_capacity(calls));
    let start = std::time::Instant::now();
    for i in 0..calls {
        created.push(ctx.pool_stats().created);
        let hidden = [4, 8, 12][rng.random_range(0..3)];
        let config = GruConfig::new(rng.random_range(1..=6), hidden)
            .layers(rng.random_range(1..=2))
            .bidirectional(rng.random_bool(0.3));
        let (t, b) = (rng.random_range(1..=12), rng.random_range(1..=6));
        let case = common::case(config, t, b, rng.random_bool(0.5), seed + i as u64);
        common::check(ctx, &case, None, 1e-5);
        let pooled = ctx.pooled_bytes();
        assert!(pooled <= budget, "call {i}: {pooled} bytes pooled");
        peak = peak.max(pooled);
        let s = ctx.pool_stats();
        // Every call has let go of its buffers: only the free ones live.
        assert_eq!((s.live, s.live_bytes), (s.free, s.free_bytes), "{s:?}");
        if i % 250 == 249 || i + 1 == calls {
            eprintln!(
                "budget {budget}, call {}: {pooled} bytes pooled (peak {peak}), {} buffers \
                 alive, {} made, {} reused, {} released; resident {} MB, {:.1} s",
                i + 1,
                s.live,
                s.created,
                s.reused,
                s.released,
                resident_mb(),
                start.elapsed().as_secs_f64()
            );
        }
    }
    created
}

/// Issue 21's soak: 2000 calls of varying small shapes on one context, every
/// result checked; the free buffers stay well under the budget, and the
/// pool stops making buffers (the second half makes few: those of the rare
/// shapes it had not met).
#[test]
fn a_soak_of_varying_shapes_levels_off_under_the_pool_budget() {
    const BUDGET: u64 = 8 << 20;
    let Some(ctx) = context(BUDGET, None) else {
        return;
    };
    let calls = 2000;
    let created = soak(&ctx, calls, BUDGET, 21);
    let (half, end) = (created[calls / 2], ctx.pool_stats().created);
    assert!(
        (end - half) * 10 <= half,
        "{half} buffers made in the first {} calls, {} more in the rest",
        calls / 2,
        end - half
    );
    assert!(ctx.pooled_bytes() <= BUDGET / 2, "well under the budget");
    let s = ctx.pool_stats();
    assert!(s.reused > 100 * s.created, "most requests reuse: {s:?}");
}

/// The same calls with a budget below what they use: buffers are released
/// and made again, every result is still right, and the pool stays within
/// the budget.
#[test]
fn a_soak_under_a_budget_smaller_than_its_calls_evicts_and_stays_right() {
    const BUDGET: u64 = 256 << 10;
    let Some(ctx) = context(BUDGET, None) else {
        return;
    };
    soak(&ctx, 300, BUDGET, 5);
    let s = ctx.pool_stats();
    assert!(s.released > 0 && s.reused > 0, "{s:?}");
}
