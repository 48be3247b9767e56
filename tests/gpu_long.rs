//! Long sequences on every plan, against the f64 CPU reference, each run
//! twice with bitwise equal results: where users go (thousands of steps at
//! small H, hundreds of steps at H = 64..128 with B = 32, stacked and
//! bidirectional, the reset-before form, lengths and resets), not only
//! where it is quick.
//!
//! These are the tests that did not exist when the persistent loops
//! (`sequence`, `resident`) gave wrong gradients past a few hundred steps on
//! lavapipe: llvmpipe ends every loop of an invocation once 65535 loop
//! iterations have run, and one dispatch ran the whole time loop. Between
//! them the cases run every plan of the coverage set (see [`paths`]), and
//! again on SwiftShader, a second, independent
//! Vulkan implementation (`swiftshader_too`), so that a driver's defect
//! and a kernel's bug can be told apart.

mod common;

use common::check::{worst, RandomCase};
use gru_wgpu::cpu::SeqOptions;
use gru_wgpu::gpu::{Family, GemmVariant, GpuContext, Plan, Strategy};
use gru_wgpu::GruConfig;

const BOUND: f64 = 1e-5;

/// The paths of a case: entries `FAMILY/LOOP` (under the adapter's own
/// limits), `webgpu FAMILY/LOOP` (under WebGPU's: its `resident` has 256
/// threads, not 1024; the other kernels are the same), and `gemms` (every
/// GEMM variant but the simple one, with `step` and `products`: their share
/// of a call is the input projection, the weight gradients over K = T·B
/// rows and the per-step products). Between them the cases run every plan
/// of the coverage set: the persistent loops (whose long time loops are
/// split into dispatches) on every case, the per-step loops on the
/// stacked, wide and reset-before ones. An entry that names no path here
/// fails the test.
fn paths(entries: &[&str]) -> Vec<(String, GpuContext, Plan)> {
    let all = common::gpu_paths();
    let mut out = Vec::new();
    for e in entries {
        let found: Vec<_> = all
            .iter()
            .filter(|(label, _, plan)| {
                let adapter = label.starts_with("adapter");
                match e.strip_prefix("webgpu ") {
                    Some(name) => !adapter && plan.to_string() == name,
                    None if *e == "gemms" => {
                        adapter
                            && !matches!(
                                plan.family,
                                Family::Windows | Family::Gemm(GemmVariant::Simple)
                            )
                            && matches!(plan.strategy, Strategy::Step | Strategy::Products)
                    }
                    None => adapter && plan.to_string() == *e,
                }
            })
            .cloned()
            .collect();
        assert!(
            !found.is_empty() || !common::require_gpu() || e.starts_with("windows"),
            "no path `{e}` on this adapter"
        );
        if found.is_empty() {
            eprintln!("not run: `{e}`: not on this adapter");
        }
        out.extend(found);
    }
    out
}

/// Runs `case` on every path that applies, twice: both runs bitwise equal,
/// every tensor within `BOUND` of one f64 CPU reference run. Prints the
/// worst error and the time per path.
fn long(name: &str, entries: &[&str], case: RandomCase) {
    let Some(_) = common::gpu() else {
        return;
    };
    let t0 = std::time::Instant::now();
    let reference = case.run_cpu(None).unwrap();
    eprintln!("{name}: CPU reference in {:.1?}", t0.elapsed());
    let mut runs = 0;
    let mut worst_all = 0.0f64;
    for (label, ctx, plan) in paths(entries) {
        if !common::applies(&ctx, &case.config, case.batch, plan, &label) {
            continue;
        }
        let what = format!("{name}, {label}");
        let t0 = std::time::Instant::now();
        let a = case.run_gpu_plan(&ctx, None, Some(plan)).unwrap();
        let b = case.run_gpu_plan(&ctx, None, Some(plan)).unwrap();
        common::assert_same(&a, &b, &what);
        let errors = RandomCase::errors(&a, &reference);
        for e in &errors {
            assert!(
                e.rel <= BOUND,
                "{what}: {} relative error {:e} > {BOUND:e}",
                e.name,
                e.rel
            );
        }
        let w = worst(&errors);
        eprintln!("{what}: worst {w:.2e}, two runs in {:.1?}", t0.elapsed());
        worst_all = worst_all.max(w);
        runs += 1;
    }
    assert!(runs > 0, "{name}: no plan ran");
    println!(
        "{name} on {}: {runs} plans, worst relative error {worst_all:.3e}",
        common::gpu().unwrap().adapter()
    );
}

/// The persistent loops of every family and profile.
const PERSISTENT: &[&str] = &[
    "simple/sequence",
    "simple/resident",
    "windows/sequence",
    "windows/resident",
    "webgpu simple/sequence",
    "webgpu simple/resident",
];

#[test]
fn t4096_h4() {
    long(
        "T=4096 H=4 B=1",
        PERSISTENT,
        common::case(GruConfig::new(3, 4), 4096, 1, true, 41),
    );
}

#[test]
fn t1024_h16_stacked_bidirectional() {
    long(
        "T=1024 H=16 B=2, 2 layers, bidirectional",
        &[
            "simple/step",
            "simple/products",
            "simple/splitk",
            "simple/sequence",
            "simple/resident",
            "webgpu simple/resident",
        ],
        common::case(
            GruConfig::new(2, 16).layers(2).bidirectional(true),
            1024,
            2,
            true,
            42,
        ),
    );
}

#[test]
fn t300_h64_b32_stacked() {
    long(
        "T=300 H=64 B=32, 2 layers",
        &[
            "simple/step",
            "simple/products",
            "simple/sequence",
            "windows/products",
            "windows/sequence",
            "webgpu simple/sequence",
        ],
        common::case(GruConfig::new(8, 64).layers(2), 300, 32, true, 43),
    );
}

/// Every GEMM variant, on a call whose weight gradients sum over
/// T·B = 4096 rows (split along K).
#[test]
fn t256_h32_b16_every_gemm() {
    long(
        "T=256 H=32 B=16, 2 layers",
        &["gemms"],
        common::case(GruConfig::new(8, 32).layers(2), 256, 16, true, 48),
    );
}

#[test]
fn t300_h128_b8_bidirectional() {
    long(
        "T=300 H=128 B=8, bidirectional",
        &[
            "simple/step",
            "simple/sequence",
            "simple/resident",
            "webgpu simple/sequence",
        ],
        common::case(
            GruConfig::new(8, 128).bidirectional(true),
            300,
            8,
            false,
            44,
        ),
    );
}

#[test]
fn t2048_h16_reset_before() {
    long(
        "T=2048 H=16 B=2, reset-before",
        &[
            "simple/sequence",
            "simple/resident",
            "webgpu simple/resident",
        ],
        common::case(GruConfig::new(3, 16).reset_before(true), 2048, 2, true, 45),
    );
}

#[test]
fn t600_h24_reset_before_every_loop() {
    long(
        "T=600 H=24 B=3, reset-before",
        &[
            "simple/step",
            "simple/products",
            "simple/splitk",
            "windows/step",
            "windows/products",
            "windows/splitk",
            "windows/sequence",
        ],
        common::case(GruConfig::new(3, 24).reset_before(true), 600, 3, true, 47),
    );
}

#[test]
fn t1536_h16_lengths_and_resets() {
    let mut resets = ndarray::Array2::from_elem((1536, 3), false);
    for (t, b) in [(500, 0), (20, 1), (1200, 0), (699, 1)] {
        resets[[t, b]] = true;
    }
    let seq = SeqOptions::new()
        .lengths(Some(vec![1536, 700, 1]))
        .resets(Some(resets));
    long(
        "T=1536 H=16 B=3, bidirectional, lengths and resets",
        &["simple/sequence", "simple/resident", "windows/products"],
        common::case(GruConfig::new(3, 16).bidirectional(true), 1536, 3, true, 46).with_seq(seq),
    );
}

#[test]
fn t1500_h16_reverse() {
    long(
        "T=1500 H=16 B=2, reverse, 2 layers",
        &[
            "simple/step",
            "simple/sequence",
            "simple/resident",
            "windows/products",
            "webgpu simple/resident",
        ],
        common::case(
            GruConfig::new(3, 16)
                .direction(gru_wgpu::Direction::Reverse)
                .layers(2),
            1500,
            2,
            true,
            49,
        )
        .with_seq(SeqOptions::new().lengths(Some(vec![1500, 900]))),
    );
}

/// The same tests on SwiftShader.
#[test]
fn swiftshader_too() {
    common::rerun_on_swiftshader(&[
        "t4096_h4",
        "t1024_h16_stacked_bidirectional",
        "t300_h64_b32_stacked",
        "t256_h32_b16_every_gemm",
        "t300_h128_b8_bidirectional",
        "t2048_h16_reset_before",
        "t600_h24_reset_before_every_loop",
        "t1536_h16_lengths_and_resets",
        "t1500_h16_reverse",
    ]);
}
