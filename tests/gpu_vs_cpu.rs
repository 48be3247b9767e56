//! The GPU against the f64 CPU reference over many seeded configurations:
//! sizes of 1, primes, and sizes just past the kernels' tiles (the GEMM's 32 x
//! 64 tile, the window GEMM's 8 x 64 tile and 8-float chunks, the step
//! kernels' 64 hidden units x 4 batch rows). Every case runs on every path:
//! both limit profiles, each with every plan of its coverage set (each GEMM
//! variant, each time loop, the window family where it runs); a plan that
//! does not apply to a shape must be refused with an error. Every buffer the GPU uses starts filled with
//! NaN, so an element no kernel wrote fails.

mod common;

use gru_wgpu::GruConfig;
use rand::Rng;

const BOUND: f64 = 1e-5;

/// Checks a case on every path; returns the worst relative error.
fn check_all(case: &common::check::RandomCase, train_seed: Option<u32>) -> f64 {
    let mut worst = 0.0f64;
    for (label, ctx, r) in common::gpu_paths() {
        if !common::applies(&ctx, &case.config, case.batch, r, &label) {
            // A plan that does not apply is refused with an error, never run.
            let e = case.compare_plan(&ctx, train_seed, Some(r)).unwrap_err();
            assert!(e.to_string().contains("does not apply"), "{label}: {e}");
            continue;
        }
        worst = worst.max(common::check_with(&ctx, case, train_seed, Some(r), BOUND));
    }
    worst
}

fn cfg(i: usize, h: usize, l: usize, bidir: bool, batch_first: bool, bias: bool) -> GruConfig {
    GruConfig::new(i, h)
        .layers(l)
        .bidirectional(bidir)
        .batch_first(batch_first)
        .bias(bias)
}

#[test]
fn edge_sizes() {
    if common::gpu_all().is_none() {
        return;
    }
    // (I, H, L, bidirectional, batch_first, bias, T, B, h0)
    let cases = [
        (1, 1, 1, false, false, true, 1, 1, true),
        (1, 1, 2, true, true, false, 1, 1, false),
        (2, 3, 1, false, false, true, 5, 7, true),
        (5, 7, 3, true, false, true, 11, 13, false),
        (13, 17, 2, false, true, false, 19, 2, true),
        (33, 65, 1, true, false, true, 9, 5, true),
        (65, 64, 1, false, false, true, 4, 4, true),
        (64, 129, 1, false, true, true, 3, 33, false),
        (127, 31, 2, true, true, true, 7, 65, true),
        (257, 67, 1, false, false, false, 3, 3, true),
        (3, 193, 1, true, false, true, 2, 67, true),
        (300, 300, 1, false, false, true, 2, 2, true),
    ];
    let mut worst = 0.0f64;
    for (n, &(i, h, l, bd, bf, bias, t, b, h0)) in cases.iter().enumerate() {
        let case = common::case(cfg(i, h, l, bd, bf, bias), t, b, h0, 100 + n as u64);
        worst = worst.max(check_all(&case, None));
    }
    println!("edge sizes: worst relative error {worst:.3e}");
}

#[test]
fn long_sequences_and_large_batches() {
    if common::gpu_all().is_none() {
        return;
    }
    let cases = [
        (8, 16, 1, false, false, true, 100, 3, true),
        (16, 24, 2, true, true, true, 64, 9, true),
        (12, 40, 1, true, false, false, 37, 70, false),
        (40, 97, 1, false, false, true, 29, 17, true),
    ];
    let mut worst = 0.0f64;
    for (n, &(i, h, l, bd, bf, bias, t, b, h0)) in cases.iter().enumerate() {
        let case = common::case(cfg(i, h, l, bd, bf, bias), t, b, h0, 200 + n as u64);
        worst = worst.max(check_all(&case, None));
    }
    println!("long sequences: worst relative error {worst:.3e}");
}

#[test]
fn random_configurations() {
    if common::gpu_all().is_none() {
        return;
    }
    let mut r = common::rng(2024);
    let mut worst = 0.0f64;
    for n in 0..24 {
        let i = r.random_range(1..=96);
        let h = r.random_range(1..=96);
        let l = r.random_range(1..=3);
        let t = r.random_range(1..=24);
        let b = r.random_range(1..=20);
        let config = cfg(
            i,
            h,
            l,
            r.random_bool(0.5),
            r.random_bool(0.5),
            r.random_bool(0.7),
        );
        let case = common::case(config, t, b, r.random_bool(0.6), 300 + n);
        worst = worst.max(check_all(&case, None));
    }
    println!("random configurations: worst relative error {worst:.3e}");
}

#[test]
fn dropout_in_training_mode_matches_the_cpu_mask() {
    if common::gpu_all().is_none() {
        return;
    }
    let config = cfg(6, 10, 3, true, false, true).dropout(0.4);
    let case = common::case(config, 7, 5, true, 400);
    check_all(&case, Some(1234));
    // In evaluation mode there is no dropout.
    check_all(&case, None);
}

#[test]
fn same_call_twice_is_bitwise_equal() {
    if common::gpu_all().is_none() {
        return;
    }
    let case = common::case(cfg(33, 70, 2, true, false, true), 40, 9, true, 500);
    for (label, ctx, r) in common::gpu_paths() {
        if common::applies(&ctx, &case.config, case.batch, r, &label) {
            same_twice(&case, &ctx, r, &label);
        }
    }
}

fn same_twice(
    case: &common::check::RandomCase,
    ctx: &gru_wgpu::gpu::GpuContext,
    r: gru_wgpu::gpu::Plan,
    label: &str,
) {
    let (o1, h1, g1) = case.run_gpu_plan(ctx, None, Some(r)).unwrap();
    let (o2, h2, g2) = case.run_gpu_plan(ctx, None, Some(r)).unwrap();
    let bits = |a: &ndarray::Array3<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&o1), bits(&o2), "{label}");
    assert_eq!(bits(&h1), bits(&h2));
    assert_eq!(bits(&g1.x), bits(&g2.x));
    assert_eq!(bits(&g1.h0), bits(&g2.h0));
    for ((_, a), (_, b)) in g1.params.named().into_iter().zip(g2.params.named()) {
        let a: Vec<u32> = a.iter().map(|v| v.to_bits()).collect();
        let b: Vec<u32> = b.iter().map(|v| v.to_bits()).collect();
        assert_eq!(a, b);
    }
}

/// Subnormal inputs (1e-40), as README.md's "Subnormal inputs" says: beside
/// normal biases they are below f32's rounding, and the result equals the
/// result with zeros in their place, bit for bit, within the usual bound;
/// without biases and with h0 = 0 every output is itself subnormal, where
/// f32 holds fewer significant bits: on llvmpipe (which keeps subnormals)
/// within a few steps of 2^-149 of the f64 reference, on a device that
/// flushes them (WGSL allows it) exactly zero.
#[test]
fn subnormal_inputs_are_kept_or_flushed_as_the_readme_says() {
    if common::gpu_all().is_none() {
        return;
    }
    use gru_wgpu::gpu::{ForwardOptions, GpuGru};
    use gru_wgpu::real::{max_abs_error, rel_error};
    use gru_wgpu::GruParams;
    let (t, b, i, h) = (5, 3, 4, 8);
    let x = ndarray::Array3::<f32>::from_shape_fn((t, b, i), |(s, r, k)| {
        if (s + r + k) % 2 == 0 {
            1e-40
        } else {
            -7e-41
        }
    });
    assert!(x.iter().all(|v| v.is_subnormal()));
    let zeros = ndarray::Array3::<f32>::zeros((t, b, i));
    let step = f64::from(f32::from_bits(1)); // 2^-149, f32's smallest step
    for (label, ctx, plan) in common::gpu_paths() {
        let keeps = ctx.adapter().name.contains("llvmpipe");
        for bias in [true, false] {
            let config = GruConfig::new(i, h).bias(bias);
            if !common::applies(&ctx, &config, b, plan, &label) {
                continue;
            }
            let params = GruParams::<f32>::init(&config, 7).unwrap();
            let m = GpuGru::new(&ctx, &params).unwrap();
            m.set_plan(Some(plan));
            let ours = m
                .forward(x.view(), ForwardOptions::default())
                .unwrap()
                .output;
            let zeroed = m
                .forward(zeros.view(), ForwardOptions::default())
                .unwrap()
                .output;
            let mut cpu = gru_wgpu::cpu::Gru::new(params.cast::<f64>());
            let (want, _) = cpu.forward(x.mapv(f64::from).view(), None).unwrap();
            let got = || ours.iter().map(|&v| f64::from(v));
            let rel = rel_error(got(), want.iter());
            let abs = max_abs_error(got(), want.iter());
            if bias {
                let same = ours
                    .iter()
                    .zip(&zeroed)
                    .all(|(a, z)| a.to_bits() == z.to_bits());
                assert!(same, "{label}: with biases, as with zero inputs");
                assert!(rel <= BOUND, "{label}: rel {rel:.3e}");
            } else if keeps {
                assert!(
                    ours.iter().all(|v| *v != 0.0 && v.is_subnormal()),
                    "{label}"
                );
                assert!(abs <= 16.0 * step, "{label}: max abs {abs:.3e}");
                eprintln!("{label}: all-subnormal outputs, rel {rel:.3e}, max abs {abs:.3e}");
            } else {
                // A device that flushes: the outputs are zero.
                assert!(
                    ours.iter().all(|v| *v == 0.0) || abs <= 16.0 * step,
                    "{label}"
                );
            }
        }
    }
}
