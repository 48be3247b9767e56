//! Helpers shared by the test suites.
#![allow(dead_code)]

use std::path::PathBuf;

use ndarray::{Array, Dimension, ShapeBuilder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The PyTorch reference cases, copied byte for byte from `shared/golden`.
pub fn golden_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        8,
        "expected the 8 PyTorch reference cases in {}",
        dir.display()
    );
    files
}

/// An array of the given shape with elements drawn from U(-scale, scale).
pub fn random<D: Dimension, Sh: ShapeBuilder<Dim = D>>(
    shape: Sh,
    scale: f64,
    rng: &mut ChaCha8Rng,
) -> Array<f64, D> {
    Array::from_shape_simple_fn(shape, || rng.random_range(-scale..scale))
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

use gru_wgpu::gpu::{ContextOptions, GpuContext, Products, Recurrence};
use std::sync::OnceLock;

/// The shared GPU context of a test binary (buffers poisoned with NaN), or
/// `None` without an adapter. With `GRU_WGPU_REQUIRE_GPU=1` a missing adapter
/// fails the test instead.
pub fn gpu() -> Option<GpuContext> {
    static CTX: OnceLock<Option<GpuContext>> = OnceLock::new();
    CTX.get_or_init(|| open(None)).clone()
}

/// Contexts with each family of product kernels forced, so that both run on
/// any adapter: `[storage, windows]`.
pub fn gpu_both() -> Option<[GpuContext; 2]> {
    static CTX: OnceLock<Option<[GpuContext; 2]>> = OnceLock::new();
    CTX.get_or_init(|| {
        Some([
            open(Some(Products::Storage))?,
            open(Some(Products::Windows))?,
        ])
    })
    .clone()
}

/// Every combination of product kernels and time loop, with a label.
pub fn gpu_paths() -> Vec<(String, GpuContext, Recurrence)> {
    let Some(ctxs) = gpu_both() else {
        return vec![];
    };
    let mut out = Vec::new();
    for ctx in ctxs {
        for r in [Recurrence::PerStep, Recurrence::Persistent] {
            out.push((
                format!("{:?} products, {r:?}", ctx.products()),
                ctx.clone(),
                r,
            ));
        }
    }
    out
}

fn open(products: Option<Products>) -> Option<GpuContext> {
    match GpuContext::with_options(ContextOptions {
        poison_buffers: true,
        products,
        ..Default::default()
    }) {
        Ok(ctx) => {
            eprintln!(
                "GPU tests on {} ({:?} products)",
                ctx.adapter(),
                ctx.products()
            );
            Some(ctx)
        }
        Err(e) => {
            if std::env::var("GRU_WGPU_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("GRU_WGPU_REQUIRE_GPU=1 but no GPU adapter: {e}");
            }
            eprintln!(
                "skipping GPU tests: {e} (set GRU_WGPU_REQUIRE_GPU=1 to make this a failure)"
            );
            None
        }
    }
}

use gru_wgpu::check::RandomCase;
use gru_wgpu::GruConfig;

/// A random case, as `RandomCase::new`.
pub fn case(config: GruConfig, t: usize, b: usize, with_h0: bool, seed: u64) -> RandomCase {
    RandomCase::new(config, t, b, with_h0, seed).unwrap()
}

/// Every tensor of the GPU run against the f64 CPU reference, each within
/// `bound` (a NaN fails); returns the worst relative error.
pub fn check(ctx: &GpuContext, case: &RandomCase, train_seed: Option<u32>, bound: f64) -> f64 {
    check_with(ctx, case, train_seed, Recurrence::Auto, bound)
}

/// [`check`] with the time loop forced.
pub fn check_with(
    ctx: &GpuContext,
    case: &RandomCase,
    train_seed: Option<u32>,
    r: Recurrence,
    bound: f64,
) -> f64 {
    let errors = case.compare_with(ctx, train_seed, r).unwrap();
    assert_eq!(errors.len(), 4 + case.config.param_specs().len());
    for e in &errors {
        assert!(
            e.rel <= bound,
            "{:?} {:?} {r:?} T={} B={} h0={}: {} relative error {:e} > {bound:e}",
            ctx.products(),
            case.config,
            case.seq_len,
            case.batch,
            case.h0.is_some(),
            e.name,
            e.rel
        );
    }
    gru_wgpu::check::worst(&errors)
}

/// The first `len` floats of a device buffer, read back. Waits until the map
/// callback has run: with tests sharing the device across threads, another
/// thread's poll may be running it when this thread's poll returns.
pub fn download(ctx: &GpuContext, buf: &wgpu::Buffer, len: usize) -> Vec<f32> {
    assert!(
        buf.size() >= (len * 4) as u64,
        "buffer of {} bytes, {len} floats expected",
        buf.size()
    );
    let staging = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (len * 4) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = ctx.device().create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(buf, 0, &staging, 0, (len * 4) as u64);
    ctx.queue().submit(Some(enc.finish()));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
        r.unwrap();
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    while !done.load(std::sync::atomic::Ordering::SeqCst) {
        ctx.device()
            .poll(wgpu::PollType::wait_indefinitely())
            .unwrap();
        std::thread::yield_now();
    }
    let v =
        bytemuck::cast_slice::<u8, f32>(&staging.slice(..).get_mapped_range().unwrap()).to_vec();
    v
}
