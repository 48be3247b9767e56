//! The fixed rule of a GPU (`GRU_WGPU_TUNE=off`): the plan a call takes
//! without measuring, from the kernels' figures (`kernel-stats`,
//! `tests/access_patterns.rs`, BENCHMARKS.md).

use crate::gpu::ops::gemm::{GemmVariant, FILL_TILES};
use crate::gpu::plan::{Family, Plan, Strategy};

/// The GPU fallback rule ([`GpuGru::fallback_plan`]) for an input
/// projection of `rows` (T·B) x `cols` (D·3H) and `batch` rows a step, in
/// order of preference; the first that applies to the model and device is
/// taken, else `step` on the 64 x 64 GEMM.
///
/// - The family: the 128 x 128 tiles (BK = 16) where a step's product
///   fills their rows (B >= 128) and the input projection has
///   [`FILL_TILES`] of them, enough to fill a large GPU; else 64 x 64
///   (BK = 8), whose per-step products give twice the workgroups.
/// - The time loop: `resident` where it applies (W_hh read once a call and
///   held in registers, no spills or scratch on AMD's compiler: one
///   dispatch); else `products` from B = 64, where the step's product
///   reads W_hh once per 64 or 128 rows (`step`, `splitk` and `sequence`
///   read it once per 4 rows: 50 MB a step at B = 64, H = 512); else
///   `splitk`, ceil(H/8)·ceil(B/4)·D workgroups even at B = 1, each row
///   of W_hhᵀ in whole 32-byte sectors, where `sequence` runs ceil(B/4)·D
///   workgroups of 64 threads.
pub(crate) fn gpu_rule(rows: usize, cols: usize, batch: usize) -> Vec<Plan> {
    let big = rows.div_ceil(128) * cols.div_ceil(128) >= FILL_TILES && batch >= 128;
    let family = Family::Gemm(match big {
        true => GemmVariant::Tile128K16,
        false => GemmVariant::Tile64K8,
    });
    let per_step = match batch >= 64 {
        true => Strategy::Products,
        false => Strategy::SplitK,
    };
    vec![
        Plan::new(family, Strategy::Resident),
        Plan::new(family, per_step),
        Plan::new(family, Strategy::Step),
    ]
}

#[cfg(test)]
mod rule_tests {
    use super::*;

    fn first_two(rows: usize, cols: usize, batch: usize) -> (Plan, Plan) {
        let r = gpu_rule(rows, cols, batch);
        assert_eq!(r.last(), Some(&Plan::new(r[0].family, Strategy::Step)));
        (r[0], r[1])
    }

    #[test]
    fn the_gpu_rule_at_the_three_target_shapes() {
        let t64 = Family::Gemm(GemmVariant::Tile64K8);
        let t128 = Family::Gemm(GemmVariant::Tile128K16);
        // B = 16, T = 256, H = 64: resident (where it fits), else splitk.
        assert_eq!(
            first_two(256 * 16, 3 * 64, 16),
            (
                Plan::new(t64, Strategy::Resident),
                Plan::new(t64, Strategy::SplitK)
            )
        );
        // B = 64, T = 100, H = 512: the per-step products on 64 x 64 tiles.
        assert_eq!(
            first_two(100 * 64, 3 * 512, 64).1,
            Plan::new(t64, Strategy::Products)
        );
        // B = 256, T = 64, H = 1024: on 128 x 128 tiles.
        assert_eq!(
            first_two(64 * 256, 3 * 1024, 256).1,
            Plan::new(t128, Strategy::Products)
        );
        // Rows enough for 128-row steps, but too few tiles: 64 x 64.
        assert_eq!(first_two(2 * 128, 3 * 64, 128).1.family, t64);
    }
}
