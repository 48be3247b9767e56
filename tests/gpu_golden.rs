//! The GPU against PyTorch's reference cases.

mod common;

use gru_wgpu::gpu::GpuGru;
use gru_wgpu::reference::{ReferenceCase, RunResult};

fn run_gpu(ctx: &gru_wgpu::gpu::GpuContext, case: &ReferenceCase) -> RunResult {
    let model = GpuGru::new(ctx, &case.params).unwrap();
    let (out, hn, tape) = model
        .forward(case.x.view(), case.h0.as_ref().map(|h| h.view()))
        .unwrap();
    let g = model
        .backward(tape, case.grad_output.view(), Some(case.grad_h_n.view()))
        .unwrap();
    let c = |a: &ndarray::Array3<f32>| a.mapv(|v| v as f64);
    RunResult {
        output: c(&out),
        h_n: c(&hn),
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
        let ours = run_gpu(&ctx, &case);
        for c in case.compare(&ours, 1e-5) {
            println!(
                "{} {}: rel {:.3e} max abs {:.3e}",
                path.display(),
                c.name,
                c.rel,
                c.max_abs
            );
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
