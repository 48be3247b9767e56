//! The loop limit of a driver (the root cause of the wrong gradients of the
//! persistent loops on long sequences), and what the kernels do about it.
//!
//! llvmpipe, and so lavapipe, ends every loop of a shader invocation once
//! 65535 loop iterations have run, all its loops counted together (Mesa's
//! gallivm: `LP_MAX_TGSI_LOOP_ITERATIONS`, one counter per function,
//! decremented at every loop's end and never reset), without an error: the
//! invocation goes on with its loops cut short. A persistent time loop
//! (`sequence`, `resident`) that ran all T steps in one dispatch passed
//! that after a few hundred steps. SwiftShader has no such limit, which is
//! why the same plans were right there.
//!
//! The context measures the limit when it opens the device (a probe kernel
//! counts the iterations of a long loop), and the kernels whose loops grow
//! with the data split their work to stay within half of it: a long time
//! loop runs in several dispatches, each taking up the state the one
//! before stored; a long matrix product is split along K.

mod common;

use common::check::RandomCase;
use gru_wgpu::gpu::{ContextOptions, GpuContext, Plan};
use gru_wgpu::GruConfig;

/// A context whose kernels are given `share` of the loop iterations the
/// probe saw run (the default is 0.5).
fn with_share(share: f64) -> GpuContext {
    GpuContext::with_options(ContextOptions {
        poison_buffers: true,
        tune: Some(gru_wgpu::gpu::TuneMode::Off),
        plan_cache: gru_wgpu::gpu::PlanCacheLocation::MemoryOnly,
        loop_share: Some(share),
        ..Default::default()
    })
    .unwrap()
}

/// The worst relative error of a plan's run against the f64 CPU reference.
fn worst(ctx: &GpuContext, case: &RandomCase, plan: &str) -> f64 {
    let p = plan.parse::<Plan>().unwrap();
    let errors = case.compare_plan(ctx, None, Some(p)).unwrap();
    common::check::worst(&errors)
}

#[test]
fn the_probe_measures_the_drivers_loop_limit() {
    let Some(ctx) = common::gpu() else {
        return;
    };
    let a = ctx.adapter();
    println!("{a}: loop limit {:?}", ctx.loop_limit());
    if a.driver.contains("llvmpipe") && a.driver.contains("Mesa 22.") {
        assert_eq!(ctx.loop_limit(), Some(65535), "{a}");
    }
    if a.name.contains("SwiftShader") {
        assert_eq!(ctx.loop_limit(), None, "{a}");
    }
    if let Some(l) = ctx.loop_limit() {
        assert!(l >= 1000, "{a}: a limit of {l} iterations");
    }
}

/// The defect itself, where the driver has it: the `sequence` plan at
/// T=1024, H=16, B=2 (the shape that showed it) with the loop limit
/// disregarded (one dispatch for the whole time loop, as before) gives
/// wrong gradients, and with the split it is right.
#[test]
fn without_the_split_a_long_loop_is_wrong_where_the_driver_has_a_limit() {
    let Some(ctx) = common::gpu() else {
        return;
    };
    let case = common::case(GruConfig::new(2, 16), 1024, 2, true, 5);
    let right = worst(&ctx, &case, "simple/sequence");
    assert!(right <= 1e-5, "with the split: {right:e}");
    if ctx.loop_limit().is_none() {
        eprintln!("not run: {} ends no loop early", ctx.adapter());
        return;
    }
    let unsplit = with_share(f64::INFINITY);
    for plan in ["simple/sequence", "simple/resident"] {
        let wrong = worst(&unsplit, &case, plan);
        println!("{plan} in one dispatch: worst relative error {wrong:e}");
        assert!(wrong.is_nan() || wrong > 1e-3, "{plan}: {wrong:e}");
    }
}

/// The kernels' own bounds of their loop iterations are upper bounds: at
/// the driver's very limit (share 1.0: each dispatch takes as many steps
/// as the bounds allow within the measured limit) every persistent loop
/// is right, forward and backward, with and without the reset-before
/// form, at hidden sizes from 4 to 200 (one to four units per thread,
/// the weights in private memory or not) and one or five batch rows, each
/// case long enough for several dispatches.
#[test]
fn the_loop_bounds_hold_at_the_drivers_limit() {
    let Some(base) = common::gpu() else {
        return;
    };
    if base.loop_limit().is_none() {
        eprintln!("not run: {} ends no loop early", base.adapter());
        return;
    }
    let edge = with_share(1.0);
    // (plan, H, T, B)
    let cases = [
        ("simple/sequence", 4, 2500, 1),
        ("simple/sequence", 16, 1200, 5),
        ("simple/sequence", 64, 900, 1),
        ("simple/sequence", 200, 120, 1),
        ("simple/resident", 16, 1400, 1),
        ("simple/resident", 128, 1400, 1),
    ];
    for rb in [false, true] {
        for &(plan, h, t, b) in &cases {
            let config = GruConfig::new(3, h).reset_before(rb);
            let case = common::case(config, t, b, true, 60 + h as u64);
            let w = worst(&edge, &case, plan);
            println!("{plan} H={h} T={t} B={b} reset-before={rb}: worst {w:.2e}");
            assert!(
                w <= 1e-5,
                "{plan} H={h} T={t} B={b} reset-before={rb} at the loop limit: {w:e}"
            );
        }
    }
}

/// The same on SwiftShader (no limit there: the probe must say so, and the
/// plans run in one dispatch).
#[test]
fn swiftshader_too() {
    common::rerun_on_swiftshader(&[
        "the_probe_measures_the_drivers_loop_limit",
        "without_the_split_a_long_loop_is_wrong_where_the_driver_has_a_limit",
    ]);
}
