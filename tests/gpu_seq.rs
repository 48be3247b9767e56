//! Variable lengths and episode resets on the GPU, every coverage plan
//! (each GEMM family with each time loop that applies, the window family,
//! both limit profiles) against the f64 CPU reference, forward and backward:
//! lengths in any order with the longest shorter than T (steps past it are
//! not run), lengths equal to T, resets at step 0 and inside, both together,
//! uni- and bidirectional, one and two layers, sequence- and batch-first.

mod common;

use gru_wgpu::cpu::SeqOptions;
use gru_wgpu::GruConfig;
use ndarray::Array2;
use rand::Rng;

const BOUND: f64 = 1e-5;

fn lengths(t: usize, b: usize, seed: u64, full: bool) -> Vec<usize> {
    let mut r = common::rng(seed);
    let mut l: Vec<usize> = (0..b).map(|_| r.random_range(1..=t)).collect();
    if full {
        l[b / 2] = t;
    } else {
        // The longest is shorter than T: the last steps are not run.
        l.iter_mut().for_each(|v| *v = (*v).min(t - 2).max(1));
    }
    l
}

fn resets(t: usize, b: usize, seed: u64, batch_first: bool) -> Array2<bool> {
    let mut r = common::rng(seed);
    let mut a = Array2::from_shape_fn((t, b), |_| r.random_bool(0.2));
    a[[0, 0]] = true;
    a[[1, b - 1]] = true;
    if batch_first {
        a.t().to_owned()
    } else {
        a
    }
}

/// (I, H, L, bidirectional, batch_first, T, B)
type Shape = (usize, usize, usize, bool, bool, usize, usize);
const SHAPES: [Shape; 3] = [
    (5, 7, 1, false, false, 9, 5),
    (4, 9, 2, true, true, 8, 6),
    (6, 33, 1, true, false, 6, 9),
];

#[test]
fn lengths_and_resets_match_the_cpu_reference_on_every_plan() {
    let paths = common::gpu_paths();
    let mut runs = 0;
    let mut worst = 0.0f64;
    for (n, &(i, h, l, bidir, bf, t, b)) in SHAPES.iter().enumerate() {
        let config = GruConfig::new(i, h)
            .layers(l)
            .bidirectional(bidir)
            .batch_first(bf);
        let seed = 40 + n as u64;
        let variants = [
            (
                "lengths < T",
                SeqOptions::new().lengths(Some(lengths(t, b, seed, false))),
            ),
            (
                "lengths",
                SeqOptions::new().lengths(Some(lengths(t, b, seed, true))),
            ),
            (
                "resets",
                SeqOptions::new().resets(Some(resets(t, b, seed, bf))),
            ),
            (
                "lengths and resets",
                SeqOptions::new()
                    .lengths(Some(lengths(t, b, seed, true)))
                    .resets(Some(resets(t, b, seed + 1, bf))),
            ),
        ];
        for (label, ctx, plan) in &paths {
            if !common::applies(ctx, &config, b, *plan, label) {
                continue;
            }
            for (what, seq) in &variants {
                let case = common::case(config.clone(), t, b, n != 1, seed).with_seq(seq.clone());
                let errors = case.compare_plan(ctx, None, Some(*plan)).unwrap();
                for e in &errors {
                    assert!(
                        e.rel <= BOUND,
                        "{label} {config:?} {what}: {} relative error {:e} > {BOUND:e}",
                        e.name,
                        e.rel
                    );
                }
                worst = worst.max(gru_wgpu::check::worst(&errors));
                runs += 1;
            }
        }
    }
    eprintln!("{runs} runs, worst relative error {worst:e}");
    if common::require_gpu() {
        assert!(runs > 0, "no plan ran");
    }
}

/// The reset-before form on every plan that runs it (the `step` loop of each
/// storage family), alone and with lengths and resets; every other plan is
/// refused by `check_plan` with the reason.
#[test]
fn the_reset_before_form_matches_the_cpu_reference() {
    let paths = common::gpu_paths();
    let mut runs = 0;
    let mut worst = 0.0f64;
    for (n, &(i, h, l, bidir, bf, t, b)) in SHAPES.iter().enumerate() {
        let config = GruConfig::new(i, h)
            .layers(l)
            .bidirectional(bidir)
            .batch_first(bf)
            .reset_before(true);
        let seed = 60 + n as u64;
        let variants = [
            ("plain", SeqOptions::new()),
            (
                "lengths < T and resets",
                SeqOptions::new()
                    .lengths(Some(lengths(t, b, seed, false)))
                    .resets(Some(resets(t, b, seed + 1, bf))),
            ),
        ];
        for (label, ctx, plan) in &paths {
            let params = gru_wgpu::GruParams::<f32>::zeros(&config).unwrap();
            let m = gru_wgpu::gpu::GpuGru::new(ctx, &params).unwrap();
            let runs_here =
                plan.strategy == gru_wgpu::gpu::Strategy::Step && !plan.family.is_windows();
            match m.check_plan(*plan, b) {
                Ok(()) => assert!(runs_here, "{label}: the reset-before form accepted"),
                Err(why) => {
                    assert!(!runs_here, "{label}: refused: {why}");
                    assert!(why.contains("reset-before"), "{label}: {why}");
                    continue;
                }
            }
            for (what, seq) in &variants {
                let case = common::case(config.clone(), t, b, n != 1, seed).with_seq(seq.clone());
                let errors = case.compare_plan(ctx, None, Some(*plan)).unwrap();
                for e in &errors {
                    assert!(
                        e.rel <= BOUND,
                        "{label} {config:?} {what}: {} relative error {:e} > {BOUND:e}",
                        e.name,
                        e.rel
                    );
                }
                worst = worst.max(gru_wgpu::check::worst(&errors));
                runs += 1;
            }
        }
        // The automatic plan runs it too (the fallback rule, or the tuner).
        let ctx = common::gpu();
        if let Some(ctx) = ctx {
            let case = common::case(config.clone(), t, b, true, seed);
            let errors = case.compare_plan(&ctx, None, None).unwrap();
            assert!(gru_wgpu::check::worst(&errors) <= BOUND, "{errors:?}");
        }
    }
    eprintln!("{runs} reset-before runs, worst relative error {worst:e}");
    if common::require_gpu() {
        assert!(runs > 0, "no plan ran");
    }
}
