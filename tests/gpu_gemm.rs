//! The GEMM kernels of `gemm.wgsl`, every [`GemmVariant`] the device can run,
//! against an f64 product on the CPU: the three layouts the GRU uses (NN,
//! NT, TN), with and without bias, batched, split along K, odd sizes and
//! offsets, under the adapter's limits and under WebGPU's defaults; and two
//! runs of a product give the same bits.
//!
//! The bound is that of a sum of k products in f32, accumulated in order
//! (what every variant does), plus the split-K partial sum and the bias:
//!
//!   |C_gpu - C| <= (k + 2) · 2⁻²⁴ · (Σ_k |A(m, k)| |B(k, n)| + |bias[n]|)
//!
//! A variant whose `check` refuses the device is reported; under
//! `GRU_WGPU_REQUIRE_GPU` that is a failure (every variant fits WebGPU's
//! default limits, see `every_variant_fits_webgpu_default_limits`), except
//! the subgroup variant on an adapter without subgroups (llvmpipe has them).

mod common;

use std::sync::OnceLock;

use gru_wgpu::gpu::gemm::{gemm_for_tests, GemmCase};
use gru_wgpu::gpu::{ContextOptions, GemmVariant, GpuContext, LimitsProfile};
use rand::Rng;

/// `(m, n, k, batch, offset)`: odd sizes, several block tiles, batches,
/// split-K (k above 512, without bias), k = 1; and the last three laid out
/// in aligned vec4s (m, n and the offset multiples of 4), which the tiled
/// kernels read with `VEC4` (partial tiles, batches, split-K).
const SHAPES: [(usize, usize, usize, usize, usize); 8] = [
    (1, 101, 255, 1, 0),
    (67, 45, 19, 3, 3),
    (130, 129, 40, 1, 1),
    (33, 70, 700, 2, 0),
    (5, 3, 1, 1, 2),
    (68, 132, 21, 2, 4),
    (4, 8, 3, 1, 0),
    (36, 64, 700, 2, 8),
];

const LAYOUTS: [(bool, bool, &str); 3] = [
    (false, false, "NN"),
    (false, true, "NT"),
    (true, false, "TN"),
];

fn webgpu() -> Option<GpuContext> {
    static CTX: OnceLock<Option<GpuContext>> = OnceLock::new();
    CTX.get_or_init(|| {
        common::gpu()?;
        let ctx = GpuContext::with_options(ContextOptions {
            profile: LimitsProfile::WebGpu,
            poison_buffers: true,
            ..Default::default()
        });
        Some(ctx.expect("WebGPU's default limits open on every adapter"))
    })
    .clone()
}

/// The variants `ctx` can run; those it cannot are reported, and under
/// `GRU_WGPU_REQUIRE_GPU` fail the test.
fn runnable(ctx: &GpuContext, label: &str) -> Vec<GemmVariant> {
    let mut out = Vec::new();
    for &v in GemmVariant::ALL {
        match v.check(ctx.limits(), ctx.features()) {
            Ok(()) => out.push(v),
            Err(why) => {
                // Only the subgroup variant may be refused (where the adapter
                // has no subgroups; llvmpipe has them).
                let excused =
                    why.contains("subgroup") && !ctx.adapter().to_string().contains("llvmpipe");
                assert!(
                    excused || !common::require_gpu(),
                    "{label}: `{}` should run on {} and is refused: {why}",
                    v,
                    ctx.adapter()
                );
                eprintln!("not run: {label}: `{}`: {why}", v);
            }
        }
    }
    out
}

struct Data {
    a: Vec<f32>,
    b: Vec<f32>,
    bias: Vec<f32>,
}

fn data(m: usize, n: usize, k: usize, batch: usize, seed: u64) -> Data {
    let mut rng = common::rng(seed);
    let mut v =
        |len: usize| -> Vec<f32> { (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect() };
    Data {
        a: v(batch * m * k),
        b: v(batch * k * n),
        bias: v(n),
    }
}

/// Checks `got` against the f64 product; returns the largest error as a
/// fraction of its bound.
fn check_against_f64(label: &str, g: &GemmCase, got: &[f32]) -> f64 {
    let (m, n, k) = (g.m, g.n, g.k);
    let a_at = |z: usize, i: usize, p: usize| -> f64 {
        let at = if g.trans_a { p * m + i } else { i * k + p };
        g.a[z * m * k + at] as f64
    };
    let b_at = |z: usize, p: usize, j: usize| -> f64 {
        let at = if g.trans_b { j * k + p } else { p * n + j };
        g.b[z * k * n + at] as f64
    };
    let mut worst = 0.0f64;
    let mut bad = Vec::new();
    for z in 0..g.batch {
        for i in 0..m {
            for j in 0..n {
                let (mut sum, mut mag) = (0.0f64, 0.0f64);
                for p in 0..k {
                    let t = a_at(z, i, p) * b_at(z, p, j);
                    sum += t;
                    mag += t.abs();
                }
                if let Some(bias) = g.bias {
                    sum += bias[j] as f64;
                    mag += (bias[j] as f64).abs();
                }
                let bound = (k + 2) as f64 * (2.0f64).powi(-24) * mag;
                let v = got[(z * m + i) * n + j] as f64;
                let err = (v - sum).abs();
                // NaN (an element no kernel wrote) fails too.
                if err.is_nan() || err > bound {
                    bad.push(format!(
                        "[{z}][{i}][{j}]: got {v}, f64 {sum}, error {err:.3e} > bound {bound:.3e}"
                    ));
                } else if bound > 0.0 {
                    worst = worst.max(err / bound);
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{label}: {} of {} elements off, first: {:?}",
        bad.len(),
        got.len(),
        &bad[..bad.len().min(5)]
    );
    worst
}

fn check_all(ctx: &GpuContext, profile: &str) {
    let info = ctx.device().adapter_info();
    eprintln!(
        "{profile}: {} (subgroups of {} to {} lanes{})",
        ctx.adapter(),
        info.subgroup_min_size,
        info.subgroup_max_size,
        if ctx.features().contains(wgpu::Features::SUBGROUP) {
            ""
        } else {
            "; no SUBGROUP feature"
        }
    );
    let mut runs = 0;
    for v in runnable(ctx, profile) {
        let mut worst = 0.0f64;
        for (s, &(m, n, k, batch, off)) in SHAPES.iter().enumerate() {
            let d = data(m, n, k, batch, 100 + s as u64);
            for (trans_a, trans_b, layout) in LAYOUTS {
                for with_bias in [false, true] {
                    let g = GemmCase {
                        variant: v,
                        trans_a,
                        trans_b,
                        m,
                        n,
                        k,
                        batch,
                        off,
                        a: &d.a,
                        b: &d.b,
                        bias: with_bias.then_some(&d.bias[..]),
                    };
                    let label = format!(
                        "{profile}, {} {layout} {m}x{n}x{k} batch {batch} offset {off}{}",
                        v,
                        if with_bias { " bias" } else { "" }
                    );
                    let got = gemm_for_tests(ctx, &g).unwrap_or_else(|e| panic!("{label}: {e}"));
                    worst = worst.max(check_against_f64(&label, &g, &got));
                    runs += 1;
                }
            }
        }
        eprintln!(
            "{profile}: {}: every case within bound (largest error {worst:.3} of its bound)",
            v
        );
    }
    assert!(runs > 0, "{profile}: no variant ran");
    let built = ctx.pipelines_built();
    eprintln!("{profile}: pipelines built: {}", built.join(" "));
    // The aligned shapes ran the vec4 kernels of every tiled variant that
    // ran (NN and TN), not only the scalar ones.
    let vec4 = built.iter().filter(|p| p.contains("VEC4")).count();
    let tiled = built
        .iter()
        .filter(|p| p.contains("tiled") || p.contains("shared_a"));
    assert!(
        vec4 >= 2 || tiled.count() == 0,
        "{profile}: no VEC4 kernel ran: {built:?}"
    );
}

#[test]
fn every_variant_matches_f64_under_adapter_limits() {
    let Some(ctx) = common::gpu() else { return };
    check_all(&ctx, "adapter limits");
}

#[test]
fn every_variant_matches_f64_under_webgpu_limits() {
    let Some(ctx) = webgpu() else { return };
    check_all(&ctx, "webgpu limits");
}

#[test]
fn every_variant_is_bitwise_deterministic() {
    let Some(ctx) = common::gpu() else { return };
    // Split along K (3 chunks) and batched; then one with bias.
    for &(m, n, k, batch, bias) in &[(33, 70, 700, 2, false), (130, 129, 40, 1, true)] {
        let d = data(m, n, k, batch, 7);
        for v in runnable(&ctx, "adapter limits") {
            for (trans_a, trans_b, layout) in LAYOUTS {
                let g = GemmCase {
                    variant: v,
                    trans_a,
                    trans_b,
                    m,
                    n,
                    k,
                    batch,
                    off: 0,
                    a: &d.a,
                    b: &d.b,
                    bias: bias.then_some(&d.bias[..]),
                };
                let one = gemm_for_tests(&ctx, &g).unwrap();
                let two = gemm_for_tests(&ctx, &g).unwrap();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert!(
                    bits(&one) == bits(&two),
                    "{} {layout} {m}x{n}x{k}: two runs differ",
                    v
                );
            }
        }
    }
}

#[test]
fn a_variant_that_does_not_fit_is_refused_with_its_reason() {
    let Some(base) = common::gpu() else { return };
    let limits = wgpu::Limits {
        max_compute_workgroup_storage_size: 8192,
        ..wgpu::Limits::default()
    };
    let ctx = GpuContext::with_options(ContextOptions {
        limits: Some(limits),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{}: {e}", base.adapter()));
    let d = data(4, 4, 4, 1, 1);
    let g = GemmCase {
        variant: GemmVariant::Tile128K16,
        trans_a: false,
        trans_b: false,
        m: 4,
        n: 4,
        k: 4,
        batch: 1,
        off: 0,
        a: &d.a,
        b: &d.b,
        bias: None,
    };
    let e = gemm_for_tests(&ctx, &g).unwrap_err().to_string();
    assert!(
        e.contains("tile128-k16") && e.contains("max_compute_workgroup_storage_size"),
        "{e}"
    );
    let g = GemmCase {
        variant: GemmVariant::Tile128K8,
        ..g
    };
    gemm_for_tests(&ctx, &g).unwrap();
}

#[test]
fn grids_larger_than_the_device_allows_run_in_pieces() {
    let Some(base) = common::gpu() else { return };
    // At most 2 workgroups per dimension: every product below is cut into
    // pieces in x, y and z (batches and splits).
    let limits = wgpu::Limits {
        max_compute_workgroups_per_dimension: 2,
        ..wgpu::Limits::default()
    };
    let ctx = GpuContext::with_options(ContextOptions {
        limits: Some(limits),
        poison_buffers: true,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{}: {e}", base.adapter()));
    for &(m, n, k, batch) in &[(300, 290, 40, 3), (140, 150, 700, 2)] {
        let d = data(m, n, k, batch, 5);
        for v in runnable(&ctx, "2 workgroups per dimension") {
            for (trans_a, trans_b, layout) in LAYOUTS {
                let g = GemmCase {
                    variant: v,
                    trans_a,
                    trans_b,
                    m,
                    n,
                    k,
                    batch,
                    off: 1,
                    a: &d.a,
                    b: &d.b,
                    bias: None,
                };
                let label = format!("pieces, {} {layout} {m}x{n}x{k} batch {batch}", v);
                let got = gemm_for_tests(&ctx, &g).unwrap_or_else(|e| panic!("{label}: {e}"));
                check_against_f64(&label, &g, &got);
            }
        }
    }
}

#[test]
fn every_variant_fits_webgpu_default_limits() {
    let limits = wgpu::Limits::default();
    for &v in GemmVariant::ALL {
        v.check(&limits, wgpu::Features::SUBGROUP)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(v.workgroup_bytes() <= limits.max_compute_workgroup_storage_size);
        let without = v.check(&limits, wgpu::Features::empty());
        if v == GemmVariant::Subgroup128K16 {
            assert!(without.unwrap_err().contains("SUBGROUP"));
        } else {
            without.unwrap();
        }
    }
}

#[test]
fn variant_names_are_stable_and_round_trip() {
    let names: Vec<String> = GemmVariant::ALL.iter().map(|v| v.to_string()).collect();
    assert_eq!(
        names,
        [
            "simple",
            "tile64-k8",
            "tile64-k16",
            "tile128-k8",
            "tile128-k16",
            "subgroup128-k16"
        ]
    );
    for &v in GemmVariant::ALL {
        assert_eq!(GemmVariant::from_name(&v.to_string()), Some(v));
        assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{v}\""));
    }
    assert_eq!(GemmVariant::from_name("tile32"), None);
}

/// Products over a K longer than one invocation's loop may run on every
/// driver, with and without bias: the simple kernel (one row of K per
/// iteration) over 5·10⁶ rows of K (a weight gradient over T·B = 5·10⁶
/// rows, an input of 5·10⁶ features), the tiled 64 x 64 kernel (8 rows
/// per iteration) over 6·10⁵ with a bias. On lavapipe, whose driver ends
/// an invocation's loops after 65535 iterations, these came out short
/// before each chunk of K was bounded by the device's loop budget (the
/// simple kernel's chunks of K/64 rows were longer, and a product with a
/// bias was never split).
#[test]
fn products_over_a_very_long_k_are_split_within_the_loop_budget() {
    let Some(ctx) = common::gpu() else {
        return;
    };
    let (m, n) = (1, 2);
    for (v, k, biases) in [
        (GemmVariant::Simple, 5_000_000, &[false, true][..]),
        (GemmVariant::Tile64K8, 600_000, &[true][..]),
    ] {
        let d = data(m, n, k, 1, 51);
        for &bias in biases {
            let g = GemmCase {
                variant: v,
                trans_a: false,
                trans_b: true,
                m,
                n,
                k,
                batch: 1,
                off: 0,
                a: &d.a,
                b: &d.b,
                bias: bias.then_some(&d.bias[..]),
            };
            let label = format!("{} K={k} bias={bias}", v);
            let got = gemm_for_tests(&ctx, &g).unwrap_or_else(|e| panic!("{label}: {e}"));
            let w = check_against_f64(&label, &g, &got);
            eprintln!("{label}: worst error {w:.3} of its bound");
        }
    }
}
