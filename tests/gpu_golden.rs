//! The GPU against PyTorch's reference cases.

mod common;

use gru_wgpu::reference::{ReferenceCase, GPU_BOUND};

#[test]
fn golden_cases_on_gpu_within_1e5() {
    let Some(ctx) = common::gpu() else { return };
    for path in common::golden_files() {
        let case = ReferenceCase::load(&path).unwrap();
        let ours = case.run_gpu(&ctx).unwrap();
        let checks = case.compare(&ours, GPU_BOUND);
        assert_eq!(
            checks.len(),
            3 + case.config.param_specs().len() + usize::from(case.h0.is_some())
        );
        for c in checks {
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
