//! The planner: candidates timed on the device, the fastest kept in memory
//! and in the plan cache's file, a second process starting from the file,
//! the fixed rule without tuning, forced plans, and the tuned plan's results
//! against the f64 CPU reference.

mod common;

use std::path::PathBuf;

use gru_wgpu::gpu::{
    ContextOptions, Family, ForwardOptions, GpuContext, GpuGru, Plan, PlanCacheLocation,
    PlanSource, Strategy, TuneMode,
};
use gru_wgpu::{GruConfig, GruParams};

fn temp_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("planner-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn context(tune: TuneMode, cache: PlanCacheLocation) -> Option<GpuContext> {
    common::gpu()?;
    Some(
        GpuContext::with_options(ContextOptions {
            tune: Some(tune),
            plan_cache: cache,
            poison_buffers: true,
            ..Default::default()
        })
        .unwrap(),
    )
}

fn model(ctx: &GpuContext, config: &GruConfig) -> GpuGru {
    GpuGru::new(ctx, &GruParams::init(config, 3).unwrap()).unwrap()
}

#[test]
fn tuning_times_every_candidate_and_a_second_process_reads_the_winner() {
    let dir = temp_dir("cache");
    let Some(ctx) = context(TuneMode::Quick, PlanCacheLocation::Dir(dir.clone())) else {
        return;
    };
    let config = GruConfig::new(8, 16).bidirectional(true);
    let m = model(&ctx, &config);
    let report = m.tune(5, 3, TuneMode::Quick).unwrap();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert_eq!(report.seq_measured, 5);
    assert_eq!(report.key, "adapter D2 L1 B4 T8 I8 H16");
    assert_eq!(
        report.clock,
        if ctx.has_timestamps() { "gpu" } else { "wall" }
    );
    // Every GEMM variant the device runs is timed (with the fallback loop),
    // and every time loop that applies (with the fastest variant).
    let timed: Vec<Plan> = report.candidates.iter().map(|c| c.plan).collect();
    for f in ctx.families() {
        assert!(
            timed.iter().any(|p| p.family == f),
            "family {} not timed: {timed:?}",
            f
        );
    }
    for s in Strategy::ALL {
        if m.candidates(3).iter().any(|p| p.strategy == *s) {
            assert!(
                timed.iter().any(|p| p.strategy == *s),
                "loop {} not timed",
                s
            );
        }
    }
    // Every candidate ran (nothing fails on lavapipe) and the chosen one is the fastest.
    for c in &report.candidates {
        assert!(c.error.is_none(), "{}: {:?}", c.plan, c.error);
        assert!(c.median_ms.is_some_and(|m| m > 0.0) && !c.samples_ms.is_empty());
    }
    let chosen: Vec<_> = report.candidates.iter().filter(|c| c.chosen).collect();
    assert_eq!(chosen.len(), 1);
    assert_eq!(chosen[0].plan, report.chosen);
    assert_eq!(chosen[0].stage, "loop");
    // The score is the fastest sample, among the final round's candidates.
    let fastest = report
        .candidates
        .iter()
        .filter(|c| c.stage == "loop")
        .map(|c| c.min_ms.unwrap())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(chosen[0].min_ms.unwrap(), fastest);
    for c in &report.candidates {
        assert!(c.min_ms.unwrap() <= c.median_ms.unwrap());
        assert_eq!(c.seq, 5, "T = 5 is below both step limits");
    }
    // In memory: a call of the same bucket (T 5..8, B 3..4) runs it untuned
    // (its results checked again first at the larger shape).
    let again = m.plan_for(7, 4).unwrap();
    assert_eq!(
        (again.plan, again.source, again.tuned_ms),
        (report.chosen, PlanSource::Cached, 0.0)
    );
    // On disk, for a new context (a new process).
    let file = ctx.plan_cache().file.unwrap();
    assert!(file.starts_with(&dir), "{}", file.display());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains(&report.key) && text.contains(&report.chosen.to_string()),
        "{text}"
    );
    assert!(ctx.plan_cache().warning.is_none());
    let ctx2 = context(TuneMode::Quick, PlanCacheLocation::Dir(dir.clone())).unwrap();
    let m2 = model(&ctx2, &config);
    let c2 = m2.plan_for(5, 3).unwrap();
    assert_eq!((c2.plan, c2.source), (report.chosen, PlanSource::Cached));
    // The forward runs it, and its tape says so.
    let x = ndarray::Array3::<f32>::ones((5, 3, 8));
    let f = m2
        .forward(x.view(), ForwardOptions::default().keep_tape())
        .unwrap();
    assert_eq!(f.tape.unwrap().plan(), report.chosen);
    // A full-mode context does not take a quick-mode entry.
    let ctx3 = context(TuneMode::Full, PlanCacheLocation::Dir(dir.clone())).unwrap();
    let c3 = model(&ctx3, &config).plan_for(5, 3).unwrap();
    assert_eq!(c3.source, PlanSource::Tuned);
    assert!(c3.tuned_ms > 0.0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_first_call_of_a_shape_tunes_it_and_its_results_match_the_cpu() {
    let Some(ctx) = context(TuneMode::Quick, PlanCacheLocation::MemoryOnly) else {
        return;
    };
    assert!(ctx.plan_cache().file.is_none());
    let config = GruConfig::new(5, 12).layers(2);
    let case = common::case(config.clone(), 6, 2, true, 77);
    // The automatic plan: tuned by the forward itself.
    let worst = common::check(&ctx, &case, None, 1e-5);
    println!("tuned plan: worst relative error {worst:.3e}");
    let m = model(&ctx, &config);
    let c = m.plan_for(6, 2).unwrap();
    assert_eq!(c.source, PlanSource::Cached, "the forward tuned it first");
    assert!(m.check_plan(c.plan, 2).is_ok());
}

#[test]
fn without_tuning_the_fixed_rule_runs_and_nothing_is_written() {
    let dir = temp_dir("off");
    let Some(ctx) = context(TuneMode::Off, PlanCacheLocation::Dir(dir.clone())) else {
        return;
    };
    assert_eq!(ctx.tune_mode(), TuneMode::Off);
    assert!(ctx.plan_cache().file.is_none());
    let m = model(&ctx, &GruConfig::new(4, 8));
    let c = m.plan_for(3, 2).unwrap();
    assert_eq!(c.source, PlanSource::Fallback);
    assert_eq!(c.plan, m.fallback_plan(3, 2));
    assert_eq!(c.tuned_ms, 0.0);
    let x = ndarray::Array3::<f32>::ones((3, 2, 4));
    m.forward(x.view(), ForwardOptions::default()).unwrap();
    assert!(!dir.exists(), "nothing written without tuning");
}

#[test]
fn a_forced_plan_runs_as_asked_and_one_that_does_not_apply_is_an_error() {
    let Some(ctx) = context(TuneMode::Off, PlanCacheLocation::MemoryOnly) else {
        return;
    };
    let small = model(&ctx, &GruConfig::new(4, 8));
    for plan in small.candidates(2) {
        small.set_plan(Some(plan));
        let c = small.plan_for(3, 2).unwrap();
        assert_eq!((c.plan, c.source), (plan, PlanSource::Forced));
        let x = ndarray::Array3::<f32>::ones((3, 2, 4));
        let f = small
            .forward(x.view(), ForwardOptions::default().keep_tape())
            .unwrap();
        assert_eq!(f.tape.unwrap().plan(), plan);
    }
    // The sequence kernels take H <= 256.
    let big = model(&ctx, &GruConfig::new(4, 300));
    let seq = Plan::new(
        Family::Gemm(gru_wgpu::gpu::GemmVariant::Simple),
        Strategy::Sequence,
    );
    assert!(big.check_plan(seq, 1).unwrap_err().contains("256"));
    big.set_plan(Some(seq));
    let x = ndarray::Array3::<f32>::ones((2, 1, 4));
    let e = big
        .forward(x.view(), ForwardOptions::default())
        .unwrap_err();
    assert!(
        e.to_string().contains("simple/sequence does not apply"),
        "{e}"
    );
    // Unknown names list the known ones.
    let e = "fastest/step".parse::<Plan>().unwrap_err().to_string();
    assert!(
        e.contains("unknown plan `fastest/step`") && e.contains("simple"),
        "{e}"
    );
    assert!("sometimes".parse::<TuneMode>().is_err());
}

#[test]
fn the_window_family_is_a_candidate_where_it_fits() {
    let Some(ctx) = context(TuneMode::Off, PlanCacheLocation::MemoryOnly) else {
        return;
    };
    let fits = gru_wgpu::gpu::window_kernels_fit(ctx.limits()).is_ok();
    assert_eq!(ctx.families().contains(&Family::Windows), fits);
    let m = model(&ctx, &GruConfig::new(4, 8));
    let windows = Plan::new(Family::Windows, Strategy::Products);
    assert_eq!(m.candidates(2).contains(&windows), fits);
    if !fits {
        eprintln!("not run: the window family on {}", ctx.adapter());
        assert!(!common::require_gpu() || !ctx.adapter().is_cpu());
    }
}

/// A context on which the loop limit of the driver is disregarded (the
/// persistent loops then run in one dispatch however long: on a driver
/// that ends long loops early, such as lavapipe's, they give wrong
/// results past a few hundred steps), or `None` where the driver has no
/// such limit (nothing then gives wrong results to reject).
fn context_with_wrong_loops(cache: PlanCacheLocation) -> Option<GpuContext> {
    let base = common::gpu()?;
    if base.loop_limit().is_none() {
        eprintln!(
            "not run: {} ends no loop early, so no candidate gives wrong results here",
            base.adapter()
        );
        return None;
    }
    Some(
        GpuContext::with_options(ContextOptions {
            tune: Some(TuneMode::Quick),
            plan_cache: cache,
            poison_buffers: true,
            loop_share: Some(f64::INFINITY),
            ..Default::default()
        })
        .unwrap(),
    )
}

/// The planner never chooses a plan that gives a different answer: with
/// the persistent loops broken (`context_with_wrong_loops`), the tuning of
/// the shape that showed it (T=1024, H=16, B=2, where the quick tuner
/// times only 256 steps) rejects them with their error, chooses and caches
/// a plan whose results agree, and a call's results match the CPU.
#[test]
fn a_candidate_with_wrong_results_is_rejected_and_never_chosen() {
    let dir = temp_dir("wrong");
    let Some(ctx) = context_with_wrong_loops(PlanCacheLocation::Dir(dir.clone())) else {
        return;
    };
    let config = GruConfig::new(2, 16);
    let m = model(&ctx, &config);
    let report = m.tune(1024, 2, TuneMode::Quick).unwrap();
    assert_eq!(report.checked, (1024, 2));
    assert_eq!(report.seq_measured, 256);
    assert_eq!(report.reference.to_string(), "simple/step");
    let mut rejected = Vec::new();
    for c in report.candidates.iter().filter(|c| c.stage == "loop") {
        assert!(c.checked || c.error.is_some(), "{}: not checked", c.plan);
        if let Some(why) = &c.rejected {
            println!("rejected {}: {why}", c.plan);
            assert!(!c.chosen, "{} was chosen with wrong results", c.plan);
            assert!(why.contains("disagree with the reference plan simple/step at T=1024, B=2"));
            rejected.push(c.plan.strategy);
        }
    }
    for s in [Strategy::Sequence, Strategy::Resident] {
        if m.check_plan(Plan::new(report.chosen.family, s), 2).is_ok() {
            assert!(rejected.contains(&s), "{} was not rejected", s);
        }
    }
    assert!(!matches!(
        report.chosen.strategy,
        Strategy::Sequence | Strategy::Resident
    ));
    // The cache holds the chosen plan, checked at the call's shape, and the
    // rejected ones' timings as failures.
    let c2 = context_with_wrong_loops(PlanCacheLocation::Dir(dir.clone())).unwrap();
    let m2 = model(&c2, &config);
    let choice = m2.plan_for(1024, 2).unwrap();
    assert_eq!(choice.source, PlanSource::Cached);
    assert_eq!(choice.plan, report.chosen);
    // A call on the automatic plan is right.
    let case = common::case(config, 1024, 2, true, 5);
    let errors = case.compare_plan(&ctx, None, None).unwrap();
    for e in &errors {
        assert!(e.rel <= 1e-5, "{}: {:e}", e.name, e.rel);
    }
}

/// A cached plan checked at a shorter length is checked again before a
/// longer call of its bucket runs it, and retuned where it disagrees: the
/// `resident` loop (right at T=520) is wrong at T=1024 when the loop limit
/// is disregarded, and a call at T=1024 does not run it.
#[test]
fn a_cached_plan_is_checked_again_on_a_longer_call() {
    let dir = temp_dir("recheck");
    let Some(ctx) = context_with_wrong_loops(PlanCacheLocation::Dir(dir.clone())) else {
        return;
    };
    let config = GruConfig::new(2, 4);
    let m = model(&ctx, &config);
    // The bucket of T = 520 and 1024 is T1024; put `resident` into the
    // cache as if tuned at T = 520, where its results are right.
    let key = "adapter D1 L1 B1 T1024 I2 H4";
    let report = m.tune(520, 1, TuneMode::Quick).unwrap();
    assert_eq!(report.key, key);
    let seq_plan = Plan::new(report.chosen.family, Strategy::Resident);
    let case = common::case(config.clone(), 520, 1, true, 6);
    m.set_plan(Some(seq_plan));
    for e in case.compare_plan(&ctx, None, Some(seq_plan)).unwrap() {
        assert!(e.rel <= 1e-5, "resident at T=520: {}: {:e}", e.name, e.rel);
    }
    m.set_plan(None);
    ctx.cache_plan(key, seq_plan, TuneMode::Quick, &m.candidates(1), (520, 1));
    assert_eq!(m.plan_for(520, 1).unwrap().plan, seq_plan);
    // At T = 1024 it is checked again, found wrong, and the shape retuned.
    let choice = m.plan_for(1024, 1).unwrap();
    assert_ne!(choice.plan, seq_plan);
    assert_eq!(choice.source, PlanSource::Tuned);
    let long = common::case(config, 1024, 1, true, 7);
    for e in long.compare_plan(&ctx, None, None).unwrap() {
        assert!(
            e.rel <= 1e-5,
            "automatic plan at T=1024: {}: {:e}",
            e.name,
            e.rel
        );
    }
}

/// A context opened in a thread, or a failure after `secs` seconds (a
/// context whose cache file cannot be opened must not hang its caller).
fn context_within(secs: u64, dir: &std::path::Path) -> GpuContext {
    let (tx, rx) = std::sync::mpsc::channel();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(context(TuneMode::Quick, PlanCacheLocation::Dir(dir)).unwrap());
    });
    rx.recv_timeout(std::time::Duration::from_secs(secs))
        .expect("the context opens within the time")
}

#[cfg(unix)]
#[test]
fn a_huge_or_fifo_cache_file_is_a_warning_and_the_cache_works_in_memory() {
    let dir = temp_dir("odd");
    let Some(ctx) = context(TuneMode::Quick, PlanCacheLocation::Dir(dir.clone())) else {
        return;
    };
    let file = ctx.plan_cache().file.unwrap();
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    // 3 GB (sparse): refused by its size, not read whole.
    std::fs::File::create(&file)
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    let start = std::time::Instant::now();
    let ctx2 = context_within(30, &dir);
    let w = ctx2.plan_cache().warning.unwrap();
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(
        w.contains("3221225472 bytes") && w.contains("at most"),
        "{w}"
    );
    // The cache works in memory, and the next write replaces the file.
    let config = GruConfig::new(2, 3);
    let m = model(&ctx2, &config);
    m.forward(
        ndarray::Array3::<f32>::ones((2, 1, 2)).view(),
        ForwardOptions::default(),
    )
    .unwrap();
    assert_eq!(m.plan_for(2, 1).unwrap().source, PlanSource::Cached);
    assert!(std::fs::metadata(&file).unwrap().len() < 1 << 20);
    // A FIFO no one writes to: a warning at once, not a hang.
    std::fs::remove_file(&file).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&file)
        .status()
        .unwrap();
    assert!(made.success());
    let ctx3 = context_within(30, &dir);
    let w = ctx3.plan_cache().warning.unwrap();
    assert!(w.contains("not a regular file"), "{w}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(unix)]
#[test]
fn the_cache_never_writes_through_a_planted_link() {
    let dir = temp_dir("link");
    let Some(ctx) = context(TuneMode::Quick, PlanCacheLocation::Dir(dir.clone())) else {
        return;
    };
    let file = ctx.plan_cache().file.unwrap();
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    // The temporary file's name as it was: `<file>.json.<pid>.tmp`.
    let planted = file.with_extension(format!("json.{}.tmp", std::process::id()));
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let config = GruConfig::new(3, 5);
    let m = model(&ctx, &config);
    m.forward(
        ndarray::Array3::<f32>::ones((2, 1, 3)).view(),
        ForwardOptions::default(),
    )
    .unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(std::fs::symlink_metadata(&planted)
        .unwrap()
        .file_type()
        .is_symlink());
    // The plans were written all the same, beside it.
    assert!(
        ctx.plan_cache().warning.is_none(),
        "{:?}",
        ctx.plan_cache().warning
    );
    let ctx2 = context(TuneMode::Quick, PlanCacheLocation::Dir(dir.clone())).unwrap();
    assert_eq!(
        model(&ctx2, &config).plan_for(2, 1).unwrap().source,
        PlanSource::Cached
    );
    let _ = std::fs::remove_dir_all(&dir);
}
