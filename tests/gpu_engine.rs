//! The engine's structure as a user can see it: pipelines built on first use
//! only, and the window path of CPU adapters costing nothing where it is not
//! in use (no window pipelines, no slack, no `UNIFORM` usage).

mod common;

use gru_wgpu::gpu::{
    BackwardOptions, ContextOptions, ForwardOptions, GpuContext, GpuGru, OnDevice, Products,
};
use gru_wgpu::{GruConfig, GruParams};

fn fresh(products: Products) -> Option<GpuContext> {
    if !common::can_run(products) {
        return None;
    }
    Some(
        GpuContext::with_options(ContextOptions {
            products: Some(products),
            ..Default::default()
        })
        .unwrap(),
    )
}

/// One forward and backward of a small bidirectional GRU on `ctx`.
fn run(ctx: &GpuContext, r: &str) -> gru_wgpu::gpu::GpuForward {
    let config = GruConfig::new(5, 12).layers(2).bidirectional(true);
    let model = GpuGru::new(ctx, &GruParams::init(&config, 3).unwrap()).unwrap();
    model.set_plan(Some(ctx.plan_named(r).unwrap()));
    let x = ndarray::Array3::<f32>::from_elem((4, 3, 5), 0.25);
    let (out, _, tape) = model
        .forward(x.view(), ForwardOptions::default().keep_tape())
        .unwrap()
        .into_parts();
    model
        .backward(tape.unwrap(), out.view(), BackwardOptions::default())
        .unwrap();
    let xb = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("x"),
        size: (4 * 3 * 5 * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let input = OnDevice {
        buffer: &xb,
        seq_len: 4,
        batch: 3,
    };
    model.forward(input, ForwardOptions::default()).unwrap()
}

#[test]
fn pipelines_are_built_on_first_use() {
    let Some(ctx) = fresh(Products::Storage) else {
        return;
    };
    assert!(
        ctx.pipelines_built().is_empty(),
        "{:?}",
        ctx.pipelines_built()
    );
    run(&ctx, "per-step");
    let built = ctx.pipelines_built();
    assert!(
        built
            .iter()
            .any(|p| p.starts_with("gru_forward.wgsl:step(")),
        "{built:?}"
    );
    // Nothing of the persistent kernels, the optimisers or the head yet.
    for unused in [":sequence(", "optim.wgsl", "head.wgsl"] {
        assert!(!built.iter().any(|p| p.contains(unused)), "{built:?}");
    }
    // A second call builds nothing new.
    run(&ctx, "per-step");
    assert_eq!(ctx.pipelines_built(), built);
}

#[test]
fn the_storage_path_builds_no_window_pipeline_and_pads_no_buffer() {
    let Some(ctx) = fresh(Products::Storage) else {
        return;
    };
    for r in ["per-step", "persistent"] {
        let f = run(&ctx, r);
        for b in [&f.output, &f.h_n] {
            assert!(!b.buffer().usage().contains(wgpu::BufferUsages::UNIFORM));
            let class = ctx.pool_size_class((b.len() * 4) as u64);
            assert_eq!(b.buffer().size(), class, "no slack but the size class's");
        }
    }
    let built = ctx.pipelines_built();
    assert!(
        !built
            .iter()
            .any(|p| p.contains("windows.wgsl") || p.contains("PRECOMPUTED=1")),
        "{built:?}"
    );
}

#[test]
fn the_window_path_keeps_its_slack_to_its_own_buffers() {
    let Some(ctx) = fresh(Products::Windows) else {
        return;
    };
    let f = run(&ctx, "per-step");
    for b in [&f.output, &f.h_n] {
        assert!(!b.buffer().usage().contains(wgpu::BufferUsages::UNIFORM));
        let class = ctx.pool_size_class((b.len() * 4) as u64);
        assert_eq!(b.buffer().size(), class, "no slack but the size class's");
    }
    let built = ctx.pipelines_built();
    assert!(
        built.iter().any(|p| p.starts_with("windows.wgsl:windows(")),
        "{built:?}"
    );
    assert!(
        !built.iter().any(|p| p.starts_with("gemm.wgsl")),
        "{built:?}"
    );
}

#[test]
fn threads_racing_for_the_pipelines_build_each_once() {
    let (Some(alone), Some(shared)) = (fresh(Products::Storage), fresh(Products::Storage)) else {
        return;
    };
    run(&alone, "per-step");
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| run(&shared, "per-step"));
        }
    });
    let built = shared.pipelines_built();
    assert_eq!(built, alone.pipelines_built());
    let mut unique = built.clone();
    unique.dedup();
    assert_eq!(unique, built, "one pipeline per key");
    // The same entry point in two shaders is two pipelines.
    for file in ["gru_forward.wgsl", "gru_backward.wgsl"] {
        let prefix = format!("{file}:step(");
        assert!(built.iter().any(|p| p.starts_with(&prefix)), "{built:?}");
    }
}

/// A time loop binds its kernels' buffers once, not once per step: on every
/// plan of the coverage set, the bind groups of a forward and of a backward
/// of 64 steps are those of 8 steps (one per kernel, buffers and chunk of
/// the parameter arena, which holds 256 dispatches), while the dispatches
/// grow with the steps on the per-step plans.
#[test]
fn bind_groups_do_not_grow_with_the_steps_on_any_plan() {
    let Some(ctx) = common::gpu() else {
        return;
    };
    let config = GruConfig::new(5, 12);
    let model = GpuGru::new(&ctx, &GruParams::init(&config, 3).unwrap()).unwrap();
    let mut checked = 0;
    for plan in common::check::coverage_plans(&ctx) {
        if model.check_plan(plan, 3).is_err() {
            continue;
        }
        model.set_plan(Some(plan));
        let mut seen = Vec::new();
        for t in [8, 64] {
            let x = ndarray::Array3::<f32>::from_elem((t, 3, 5), 0.25);
            let f = model
                .forward(x.view(), ForwardOptions::default().keep_tape())
                .unwrap();
            let fwd = model.last_call_stats();
            model
                .backward(f.tape.unwrap(), f.output.view(), BackwardOptions::default())
                .unwrap();
            seen.push((fwd, model.last_call_stats()));
        }
        for (pass, short, long) in [
            ("forward", seen[0].0, seen[1].0),
            ("backward", seen[0].1, seen[1].1),
        ] {
            let chunks = long.dispatches.div_ceil(256);
            assert!(
                long.bind_groups <= short.bind_groups * chunks,
                "{plan} {pass}: {} bind groups at T = 64 ({} dispatches), {} at T = 8",
                long.bind_groups,
                long.dispatches,
                short.bind_groups
            );
            assert!(
                long.bind_groups > 0,
                "{plan} {pass}: no bind groups counted"
            );
            if long.dispatches > 2 * short.dispatches {
                assert!(
                    long.bind_groups < long.dispatches / 4,
                    "{plan} {pass}: {} bind groups for {} dispatches",
                    long.bind_groups,
                    long.dispatches
                );
            }
        }
        checked += 1;
    }
    assert!(checked > 0, "no plan applies");
}
