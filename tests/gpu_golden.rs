//! The GPU against PyTorch's reference cases, on every path: both limit
//! profiles, each with every plan of its coverage set.

mod common;

use gru_wgpu::gpu::{BackwardOptions, ForwardOptions, GpuGru};
use gru_wgpu::reference::{ReferenceCase, RunResult, GPU_BOUND};

fn run(ctx: &gru_wgpu::gpu::GpuContext, case: &ReferenceCase, r: gru_wgpu::gpu::Plan) -> RunResult {
    let model = GpuGru::new(ctx, &case.params).unwrap();
    model.set_plan(Some(r));
    let (output, h_n, tape) = model
        .forward(
            case.x.view(),
            ForwardOptions::default()
                .h0(case.h0.as_ref().map(|h| h.view()))
                .keep_tape(),
        )
        .unwrap()
        .into_parts();
    let g = model
        .backward(
            tape.unwrap(),
            case.grad_output.view(),
            BackwardOptions::default().grad_h_n(case.grad_h_n.view()),
        )
        .unwrap();
    let c = |a: &ndarray::Array3<f32>| a.mapv(|v| v as f64);
    RunResult {
        output: c(&output),
        h_n: c(&h_n),
        grad_x: c(&g.x),
        grad_h0: Some(c(&g.h0)),
        grad_params: g.params.cast::<f64>(),
    }
}

#[test]
fn golden_cases_on_gpu_within_1e5() {
    let Some(ctx) = common::gpu() else { return };
    for path in common::golden_files() {
        let case = ReferenceCase::load(&path).unwrap();
        // The API the verify command uses, with the automatic choices.
        let ours = case.run_gpu(&ctx).unwrap();
        let checks = case.compare(&ours, GPU_BOUND);
        assert_eq!(
            checks.len(),
            3 + case.config.param_specs().len() + usize::from(case.h0.is_some())
        );
        for c in checks {
            assert!(
                c.ok(),
                "{} {}: relative error {:e} > 1e-5",
                path.display(),
                c.name,
                c.rel
            );
        }
    }
}

#[test]
fn golden_cases_on_every_path() {
    for (label, ctx, r) in common::gpu_paths() {
        for path in common::golden_files() {
            let case = ReferenceCase::load(&path).unwrap();
            let batch = case.x.shape()[usize::from(case.config.batch_first)];
            if !common::applies(&ctx, &case.config, batch, r, &label) {
                continue;
            }
            for c in case.compare(&run(&ctx, &case, r), GPU_BOUND) {
                println!(
                    "{label} {} {}: rel {:.3e} max abs {:.3e}",
                    path.display(),
                    c.name,
                    c.rel,
                    c.max_abs
                );
                assert!(
                    c.ok(),
                    "{label} {} {}: relative error {:e} > 1e-5",
                    path.display(),
                    c.name,
                    c.rel
                );
            }
        }
    }
}
