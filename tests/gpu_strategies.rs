//! Every time loop (`Strategy`) that `Strategy::check` accepts, forced (as
//! a plan, with the simple GEMM and with the window family where it runs)
//! on both limit profiles, against the f64 CPU reference: uni- and
//! bidirectional, one and two layers, with and without bias, odd batch and
//! hidden sizes, T = 1 and T > 1. Each also runs twice with bitwise equal
//! results, and its forward without a tape gives bitwise what it gives with
//! one. A strategy that should run on the adapter and is refused fails the
//! test under `GRU_WGPU_REQUIRE_GPU`, with the reason.

mod common;

use common::check::RandomCase;
use gru_wgpu::gpu::{Family, ForwardOptions, GemmVariant, GpuContext, GpuGru, Plan, Strategy};
use gru_wgpu::GruConfig;

const BOUND: f64 = 1e-5;

/// Whether `s` should run hidden size `h` on every adapter this project
/// tests on (WebGPU's default limits included).
fn expected(s: Strategy, h: usize) -> bool {
    match s {
        Strategy::Sequence => h <= 256,
        Strategy::Resident => h <= 64,
        _ => true,
    }
}

/// The plans (each strategy with the simple GEMM, and with the window
/// family where the context has it) that run `h` on `ctx`; a refusal is
/// printed, and fails under `GRU_WGPU_REQUIRE_GPU` where [`expected`] says
/// it should run.
fn accepted(label: &str, ctx: &GpuContext, h: usize, b: usize) -> Vec<Plan> {
    let mut out = Vec::new();
    let families = [Family::Gemm(GemmVariant::Simple), Family::Windows];
    for (f, &s) in families
        .into_iter()
        .filter(|f| ctx.families().contains(f))
        .flat_map(|f| Strategy::ALL.iter().map(move |s| (f, s)))
    {
        let windows = f == Family::Windows;
        match s.check(h, b, ctx.limits(), ctx.features(), windows) {
            Ok(()) => out.push(Plan::new(f, s)),
            Err(why) if expected(s, h) && common::require_gpu() => {
                panic!("{label}: {} should run H={h} and is refused: {why}", s)
            }
            Err(why) => eprintln!("not run: {label}, {} at H={h}: {why}", s),
        }
    }
    out
}

fn cfg(i: usize, h: usize, l: usize, bidir: bool, bias: bool) -> GruConfig {
    GruConfig::new(i, h)
        .layers(l)
        .bidirectional(bidir)
        .bias(bias)
}

/// (I, H, L, bidirectional, bias, T, B, h0)
type Case = (usize, usize, usize, bool, bool, usize, usize, bool);
const CASES: [Case; 7] = [
    (3, 1, 1, false, true, 1, 1, true),
    (4, 5, 2, true, false, 3, 3, false),
    (7, 33, 1, true, true, 5, 17, true),
    (5, 64, 2, false, true, 4, 1, true),
    (6, 64, 1, true, false, 1, 3, true),
    (6, 100, 1, true, true, 3, 3, false),
    (8, 64, 2, true, true, 16, 17, true),
];

#[test]
fn every_strategy_matches_the_cpu_reference() {
    let Some(ctxs) = common::gpu_all() else {
        return;
    };
    let mut worst = 0.0f64;
    let mut runs = 0;
    for (n, &(i, h, l, bd, bias, t, b, h0)) in CASES.iter().enumerate() {
        let case = common::case(cfg(i, h, l, bd, bias), t, b, h0, 700 + n as u64);
        for (label, ctx) in &ctxs {
            for s in accepted(label, ctx, h, b) {
                let errors = case.compare_plan(ctx, None, Some(s)).unwrap();
                for e in &errors {
                    assert!(
                        e.rel <= BOUND,
                        "{label}, {s}: {:?} T={t} B={b}: {} relative error {:e} > {BOUND:e}",
                        case.config,
                        e.name,
                        e.rel
                    );
                }
                worst = worst.max(common::check::worst(&errors));
                runs += 1;
            }
        }
    }
    println!("strategies: {runs} runs, worst relative error {worst:.3e}");
}

/// The forward without a tape against the forward with one, bitwise.
fn assert_tape_free_same(case: &RandomCase, ctx: &GpuContext, s: Plan, what: &str) {
    let m = GpuGru::new(ctx, &case.params).unwrap();
    m.set_plan(Some(s));
    let h0 = case.h0.as_ref().map(|h| h.view());
    let with = m
        .forward(case.x.view(), ForwardOptions::default().h0(h0).keep_tape())
        .unwrap();
    let h0 = case.h0.as_ref().map(|h| h.view());
    let without = m
        .forward(case.x.view(), ForwardOptions::default().h0(h0))
        .unwrap();
    assert!(without.tape.is_none());
    assert_eq!(
        common::bits(&with.output),
        common::bits(&without.output),
        "{what}: output"
    );
    assert_eq!(
        common::bits(&with.h_n),
        common::bits(&without.h_n),
        "{what}: h_n"
    );
}

#[test]
fn every_strategy_is_reproducible_and_tape_free_forward_is_the_same() {
    let Some(ctxs) = common::gpu_all() else {
        return;
    };
    for (n, &(i, h, l, bd, bias, t, b)) in [
        (9, 33, 2, true, true, 6, 5),
        (4, 64, 1, false, false, 5, 1),
        (5, 17, 1, true, true, 1, 3),
    ]
    .iter()
    .enumerate()
    {
        let case = common::case(cfg(i, h, l, bd, bias), t, b, true, 800 + n as u64);
        for (label, ctx) in &ctxs {
            for s in accepted(label, ctx, h, b) {
                let what = format!("{label}, {s}, H={h} B={b} T={t}");
                let a = case.run_gpu_plan(ctx, None, Some(s)).unwrap();
                let c = case.run_gpu_plan(ctx, None, Some(s)).unwrap();
                common::assert_same(&a, &c, &what);
                assert_tape_free_same(&case, ctx, s, &what);
            }
        }
    }
}

#[test]
fn a_refused_strategy_fails_the_call_with_its_reason() {
    let Some(ctx) = common::gpu() else {
        return;
    };
    let case = common::case(cfg(3, 300, 1, false, true), 2, 2, false, 900);
    for s in [Strategy::Sequence, Strategy::Resident] {
        let why = s
            .check(300, 2, ctx.limits(), ctx.features(), false)
            .unwrap_err();
        let plan = Plan::new(Family::Gemm(GemmVariant::Simple), s);
        let e = case.run_gpu_plan(&ctx, None, Some(plan)).unwrap_err();
        assert!(e.to_string().contains(&why), "{e} / {why}");
    }
}

#[test]
fn the_recurrence_setting_maps_to_strategies() {
    let Some(ctxs) = common::gpu_all() else {
        return;
    };
    let params = gru_wgpu::GruParams::<f32>::init(&cfg(3, 8, 1, false, true), 1).unwrap();
    for (label, ctx) in &ctxs {
        let m = GpuGru::new(ctx, &params).unwrap();
        let family = match ctx.products() {
            gru_wgpu::gpu::Products::Windows => Family::Windows,
            _ => Family::Gemm(GemmVariant::Simple),
        };
        let per_step = match family {
            Family::Windows => Strategy::Products,
            _ => Strategy::Step,
        };
        let plan = |m: &GpuGru| m.plan_for(2, 1).unwrap().plan;
        // The shorthands are plan names of the context (the command
        // line's `--recurrence`), forced like any plan.
        m.set_plan(Some(ctx.plan_named("per-step").unwrap()));
        assert_eq!(plan(&m), Plan::new(family, per_step), "{label}");
        m.set_plan(Some(ctx.plan_named("persistent").unwrap()));
        assert_eq!(plan(&m), Plan::new(family, Strategy::Sequence), "{label}");
        // Another forced plan replaces the shorthand's, and taking it back
        // gives the shape's own plan (the fixed rule on these contexts).
        let splitk = Plan::new(family, Strategy::SplitK);
        m.set_plan(Some(splitk));
        assert_eq!(plan(&m), splitk, "{label}");
        assert_eq!(
            ctx.plan_named(&splitk.to_string()).unwrap(),
            splitk,
            "{label}: a plan's own name"
        );
        m.set_plan(None);
        assert_eq!(plan(&m), m.fallback_plan(2, 1), "{label}");
        assert_eq!(
            m.plan_for(2, 1).unwrap().source,
            gru_wgpu::gpu::PlanSource::Fallback,
            "{label}"
        );
        for &s in Strategy::ALL {
            assert_eq!(Strategy::from_name(&s.to_string()), Some(s));
        }
    }
}

#[test]
fn the_ranges_of_the_checks() {
    let f = wgpu::Features::empty();
    let webgpu = wgpu::Limits::default();
    let big = wgpu::Limits {
        max_compute_invocations_per_workgroup: 1024,
        max_compute_workgroup_size_x: 1024,
        ..Default::default()
    };
    let mid = wgpu::Limits {
        max_compute_invocations_per_workgroup: 512,
        max_compute_workgroup_size_x: 512,
        ..Default::default()
    };
    // 1024 threads take H <= 113 (13 rows a thread: 64 registers), 512
    // up to 128, 256 up to 85: the largest allowed size that fits.
    for (limits, hmax) in [(&webgpu, 85), (&mid, 128), (&big, 128)] {
        for h in [1, 5, 33, 64, 85, 113, 114, hmax] {
            if h > hmax {
                continue;
            }
            Strategy::Resident.check(h, 1, limits, f, false).unwrap();
        }
        assert!(Strategy::Resident
            .check(hmax + 1, 1, limits, f, false)
            .is_err());
    }
    for windows in [false, true] {
        for h in [1, 100, 257, 1000] {
            Strategy::SplitK.check(h, 1, &webgpu, f, windows).unwrap();
            Strategy::Products.check(h, 1, &webgpu, f, windows).unwrap();
            Strategy::Step.check(h, 1, &webgpu, f, windows).unwrap();
        }
    }
    assert!(Strategy::Sequence.check(257, 1, &webgpu, f, false).is_err());
    let small = wgpu::Limits {
        max_compute_invocations_per_workgroup: 128,
        ..wgpu::Limits::downlevel_webgl2_defaults()
    };
    assert!(Strategy::SplitK.check(8, 1, &small, f, false).is_err());
    assert!(Strategy::Resident.check(8, 1, &small, f, false).is_err());
}

/// The loops the host writes out for GPUs (`// unroll`: `resident`'s slice
/// of W_hh kept in registers) compute bitwise what the loops do: on this
/// adapter, every plan that runs `resident`, in the plain and the
/// reset-before form, stacked and bidirectional, forward and backward, with
/// the loops written out and without. (CPU adapters run the loops; GPUs the
/// written-out form, which this is the one run of. SwiftShader is left
/// out: its compiler took over 20 GB on the written-out reset-before kernels.)
#[test]
fn the_written_out_loops_compute_bitwise_what_the_loops_do() {
    let Some(base) = common::gpu() else {
        return;
    };
    if base.adapter().name.contains("SwiftShader") {
        eprintln!("not run: SwiftShader (see the test's note)");
        return;
    }
    let open = |unroll: bool| {
        GpuContext::with_options(gru_wgpu::gpu::ContextOptions {
            unroll: Some(unroll),
            ..Default::default()
        })
        .unwrap()
    };
    let (rolled, unrolled) = (open(false), open(true));
    let cases = [
        common::case(
            GruConfig::new(4, 24).layers(2).bidirectional(true),
            5,
            3,
            true,
            1,
        ),
        common::case(GruConfig::new(3, 70).reset_before(true), 4, 2, false, 2),
        common::case(
            GruConfig::new(5, 9).reset_before(true).bidirectional(true),
            3,
            5,
            true,
            3,
        ),
    ];
    let mut ran = 0;
    for plan in common::check::coverage_plans(&unrolled) {
        if plan.strategy != Strategy::Resident {
            continue;
        }
        for (i, case) in cases.iter().enumerate() {
            if !common::applies(&unrolled, &case.config, case.batch, plan, "written out") {
                continue;
            }
            let a = case.run_gpu_plan(&rolled, None, Some(plan)).unwrap();
            let b = case.run_gpu_plan(&unrolled, None, Some(plan)).unwrap();
            common::assert_same(&a, &b, &format!("{plan}, case {i}"));
            ran += 1;
        }
    }
    assert!(ran > 0, "no resident plan ran");
}
