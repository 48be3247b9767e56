//! The GPU-vs-CPU suite that `gru-wgpu selftest` runs, for a user to check a
//! GPU and its driver: the PyTorch reference cases built into the crate, then
//! random configurations (sizes of 1, primes, sizes just past the kernels'
//! tiles, layers, directions, layouts, with and without bias and `h0`,
//! dropout), long sequences ([`long_specs`]), and bitwise determinism (the same call twice), each on every
//! plan of the adapter's coverage set, every buffer poisoned with NaN first.
//!
//! The suite opens one context under the chosen limits profile with every
//! product family that runs there, the fixed fallback rule and no plan cache
//! on disk, and forces each plan of [`check::coverage_plans`](crate::check::coverage_plans) in turn:
//! plans (`family/strategy`, such as `simple/sequence` or
//! `windows/products`) that together run every kernel the tuner's candidates
//! run on that device. So the suite covers every candidate the adapter can
//! run.
//!
//! The checks are data ([`Check`]): a configuration, a plan, the worst
//! relative error, the bound and an [`Outcome`]. A plan that does not apply
//! to a configuration (`GpuGru::check_plan` refuses it, such as the
//! `sequence` loop past H = 256) is a check not run, with that reason; a
//! family that does not run under the profile (the window kernels under
//! WebGPU's limits) has each of its plans listed once as not run, with the
//! reason. Neither is counted as passed.
//!
//! Time: each configuration runs once per plan. At the quick level the fixed
//! edge sizes, the PyTorch cases, dropout and determinism run on every plan
//! whatever their number, and the seeded random draws shrink as plans are
//! added ([`quick_draws`]: six up to eight plans, then draws x plans <= 48,
//! at least two), so the quick level's time grows slowly with the plans:
//! on llvmpipe's 20 plans on two cores, 41 to 56 s in f32, 75 to 95 s in
//! f32 then f16 (measured three times each).
//! The thorough level keeps all of its draws.
//!
//! Precision: the suite runs in f32, then again in f16 storage
//! ([`Precision::F16`]) where the adapter has SHADER_F16 (the PyTorch cases
//! against the bound 2e-3, the random configurations, determinism; the CPU
//! reference's checks once). On an adapter without it the f16 checks are one
//! check not run, with that reason; [`SelftestOptions::precision`] picks one.

use ndarray::Array3;
use rand::{Rng, SeedableRng};

use super::check::RandomCase;
use gru_wgpu::cpu::GruGrads;
use gru_wgpu::error::Result;
use gru_wgpu::gpu::{
    ContextOptions, Family, GemmVariant, GpuContext, GpuGru, LimitsProfile, Plan,
    PlanCacheLocation, TuneMode,
};
use gru_wgpu::real::{rel_error, Real};
use gru_wgpu::reference::{ReferenceCase, RunResult, CPU_BOUND, GPU_BOUND, GPU_F16_BOUND};
use gru_wgpu::{GruConfig, GruParams, Precision};

/// The PyTorch reference cases built into the crate (`tests/data/golden`),
/// by name.
pub const PYTORCH_CASES: [(&str, &[u8]); 10] = [
    (
        "seq_basic",
        include_bytes!("../tests/data/golden/seq_basic.safetensors"),
    ),
    (
        "cell_seed_sizes",
        include_bytes!("../tests/data/golden/cell_seed_sizes.safetensors"),
    ),
    (
        "no_h0",
        include_bytes!("../tests/data/golden/no_h0.safetensors"),
    ),
    (
        "batch_first_nobias",
        include_bytes!("../tests/data/golden/batch_first_nobias.safetensors"),
    ),
    (
        "saturated_inputs",
        include_bytes!("../tests/data/golden/saturated_inputs.safetensors"),
    ),
    (
        "stack3_bidir",
        include_bytes!("../tests/data/golden/stack3_bidir.safetensors"),
    ),
    (
        "seq_odd_sizes",
        include_bytes!("../tests/data/golden/seq_odd_sizes.safetensors"),
    ),
    (
        "medium",
        include_bytes!("../tests/data/golden/medium.safetensors"),
    ),
    (
        "packed_basic",
        include_bytes!("../tests/data/golden-extra/packed_basic.safetensors"),
    ),
    (
        "packed_bidir_bf",
        include_bytes!("../tests/data/golden-extra/packed_bidir_bf.safetensors"),
    ),
];

/// How much the suite covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Under a minute on llvmpipe.
    #[default]
    Quick,
    /// More configurations: every PyTorch case, more sizes, more random draws.
    Thorough,
}

/// What to run the suite on.
#[derive(Clone, Debug)]
pub struct SelftestOptions {
    /// Which adapter (as [`ContextOptions::adapter`]).
    pub adapter: Option<String>,
    /// The limits the contexts ask for.
    pub profile: LimitsProfile,
    pub level: Level,
    /// The bound of the GPU (f32) against the f64 references, [`GPU_BOUND`]
    /// by default.
    pub gpu_bound: f64,
    /// The bound of the f64 CPU reference against PyTorch, [`CPU_BOUND`] by default.
    pub cpu_bound: f64,
    /// The GPU's storage precision to check: `None` (the default) checks
    /// f32, then f16 where the adapter has SHADER_F16 (where it does not,
    /// the f16 checks are one check not run, with the reason); `Some(p)`
    /// only `p` (f16 without SHADER_F16 is then a failed check).
    pub precision: Option<Precision>,
    /// The bound of the GPU in f16 against the f64 references,
    /// [`GPU_F16_BOUND`] by default.
    pub gpu_f16_bound: f64,
}

impl Default for SelftestOptions {
    fn default() -> Self {
        SelftestOptions {
            adapter: None,
            profile: LimitsProfile::Adapter,
            level: Level::Quick,
            gpu_bound: GPU_BOUND,
            cpu_bound: CPU_BOUND,
            precision: None,
            gpu_f16_bound: GPU_F16_BOUND,
        }
    }
}

/// How a check ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Passed,
    /// Out of bound or an error, with what went wrong.
    Failed(String),
    /// The plan cannot run on this adapter (or this configuration), and why.
    NotRun(String),
}

impl Outcome {
    /// `passed`, `failed` or `not run`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed(_) => "failed",
            Outcome::NotRun(_) => "not run",
        }
    }

    /// What went wrong, or why it did not run.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Passed => None,
            Outcome::Failed(r) | Outcome::NotRun(r) => Some(r),
        }
    }
}

/// One check: a configuration on one plan.
#[derive(Clone, Debug)]
pub struct Check {
    /// `pytorch`, `cpu`, `random`, `dropout` or `determinism`; `path` for
    /// a plan whose family does not run under the profile.
    pub kind: &'static str,
    /// The configuration, in words.
    pub config: String,
    /// The plan's name (`simple/sequence`, `windows/products`, ...), or
    /// `cpu-f64` for the CPU reference (the `path` field of the JSON lines).
    pub path: String,
    /// The worst relative error over every tensor (output, `h_n` and every
    /// gradient); `None` where the check did not get as far. For a
    /// determinism check, the relative difference of the second call from
    /// the first.
    pub worst: Option<f64>,
    pub bound: f64,
    pub outcome: Outcome,
    /// Seconds the check took.
    pub seconds: f64,
    /// The GPU's storage precision (f32 for the CPU reference's checks).
    pub precision: Precision,
}

impl Check {
    /// A check of the CPU reference (`cpu-f64`), or of a case that could
    /// not be made: `(kind, config)`, its bound, `(worst, outcome)`, the
    /// seconds it took and the precision.
    fn cpu_f64(
        (kind, config): (&'static str, String),
        bound: f64,
        (worst, outcome): (Option<f64>, Outcome),
        seconds: f64,
        precision: Precision,
    ) -> Check {
        Check {
            kind,
            config,
            path: "cpu-f64".to_string(),
            worst,
            bound,
            outcome,
            seconds,
            precision,
        }
    }
}

/// The whole run.
#[derive(Clone, Debug)]
pub struct Report {
    /// The adapter, in words.
    pub adapter: String,
    pub profile: LimitsProfile,
    pub level: Level,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Passed))
    }

    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }

    pub fn not_run(&self) -> usize {
        self.count(|o| matches!(o, Outcome::NotRun(_)))
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.checks.iter().filter(|c| f(&c.outcome)).count()
    }

    /// The exit status of `gru-wgpu selftest`: 1 where a check failed, else 0.
    pub fn exit_status(&self) -> u8 {
        u8::from(self.failed() > 0)
    }
}

/// A random configuration: `(config, T, B, h0, train seed for dropout)`.
#[derive(Clone, Debug)]
pub struct RandomSpec {
    pub config: GruConfig,
    pub seq_len: usize,
    pub batch: usize,
    pub h0: bool,
    pub train_seed: Option<u32>,
    pub seed: u64,
    /// Variable lengths and episode resets (default: neither).
    pub seq: gru_wgpu::cpu::SeqOptions,
}

impl RandomSpec {
    /// The configuration in words.
    pub fn describe(&self) -> String {
        let c = &self.config;
        let mut s = format!(
            "I={} H={} L={} {} {} {} T={} B={} {}",
            c.input_size,
            c.hidden_size,
            c.num_layers,
            match c.direction {
                gru_wgpu::config::Direction::Bidirectional => "bidir",
                gru_wgpu::config::Direction::Forward => "unidir",
                gru_wgpu::config::Direction::Reverse => "reverse",
                // A direction added to the library later: its own name.
                other => other.name(),
            },
            if c.batch_first {
                "batch_first"
            } else {
                "seq_first"
            },
            if c.bias { "bias" } else { "no_bias" },
            self.seq_len,
            self.batch,
            if self.h0 { "h0" } else { "no_h0" },
        );
        if let Some(t) = self.train_seed {
            s.push_str(&format!(" dropout={} train_seed={t}", c.dropout));
        }
        if let Some(l) = &self.seq.lengths {
            s.push_str(&format!(" lengths={l:?}"));
        }
        if let Some(r) = &self.seq.resets {
            s.push_str(&format!(" resets={}", r.iter().filter(|&&v| v).count()));
        }
        if c.reset_form == gru_wgpu::config::ResetForm::Before {
            s.push_str(" reset_before");
        }
        s.push_str(&format!(" seed={}", self.seed));
        s
    }
}

#[allow(clippy::too_many_arguments)]
fn spec(
    (i, h, l): (usize, usize, usize),
    bidir: bool,
    batch_first: bool,
    bias: bool,
    (t, b): (usize, usize),
    h0: bool,
    seed: u64,
) -> RandomSpec {
    RandomSpec {
        config: GruConfig::new(i, h)
            .layers(l)
            .bidirectional(bidir)
            .batch_first(batch_first)
            .bias(bias),
        seq_len: t,
        batch: b,
        h0,
        train_seed: None,
        seed,
        seq: Default::default(),
    }
}

/// The random configurations of a level: fixed edge sizes (1, primes, just
/// past the tiles: the GEMM's 32 x 64, the window GEMM's 8 x 64 and 8-float
/// chunks, the step kernels' 64 hidden units x 4 batch rows, the persistent
/// kernels' 256), then seeded random draws, then dropout in training mode.
/// `plans`: how many plans each configuration runs on; at the quick level
/// the seeded draws shrink as plans are added (see [`quick_draws`]), the
/// fixed sizes do not.
pub fn random_specs(level: Level, plans: usize) -> Vec<RandomSpec> {
    let mut v = vec![
        spec((1, 1, 1), false, false, true, (1, 1), true, 100),
        spec((5, 7, 3), true, false, true, (11, 13), false, 101),
        spec((13, 17, 2), false, true, false, (19, 2), true, 102),
        spec((33, 65, 1), true, false, true, (9, 5), true, 103),
        spec((3, 257, 1), false, true, true, (2, 5), true, 104),
    ];
    v.extend([
        spec((1, 1, 2), true, true, false, (1, 1), false, 110),
        spec((2, 3, 1), false, false, true, (5, 7), true, 111),
        spec((65, 64, 1), false, false, true, (4, 4), true, 112),
        spec((64, 129, 1), false, true, true, (3, 33), false, 113),
        spec((127, 31, 2), true, true, true, (7, 65), true, 114),
        spec((257, 67, 1), false, false, false, (3, 3), true, 115),
        spec((3, 193, 1), true, false, true, (2, 67), true, 116),
        spec((9, 256, 1), false, false, true, (3, 5), true, 117),
    ]);
    // Beyond nn.GRU: lengths (the longest shorter than T), episode resets,
    // the reset-before form with lengths (which runs on the `step` loops).
    let mut lengths = spec((6, 12, 2), true, true, true, (9, 6), true, 130);
    lengths.seq.lengths = Some(vec![3, 7, 1, 7, 5, 2]);
    let mut resets = spec((5, 10, 1), true, false, true, (10, 5), true, 131);
    resets.seq.resets = Some(ndarray::Array2::from_shape_fn((10, 5), |(t, b)| {
        (t * 7 + b * 3) % 5 == 0
    }));
    let mut rb = spec((5, 8, 2), true, false, true, (7, 5), true, 132);
    rb.config = rb.config.reset_before(true);
    rb.seq.lengths = Some(vec![7, 2, 5, 1, 6]);
    v.extend([lengths, resets, rb]);
    let (draws, max_size, max_layers, max_t, max_b) = match level {
        Level::Quick => (quick_draws(plans), 96, 3, 24, 20),
        Level::Thorough => (40, 160, 4, 40, 40),
    };
    if level == Level::Thorough {
        v.extend([
            spec((8, 16, 1), false, false, true, (100, 3), true, 118),
            spec((16, 24, 2), true, true, true, (64, 9), true, 119),
            spec((12, 40, 1), true, false, false, (37, 70), false, 120),
            spec((40, 97, 1), false, false, true, (29, 17), true, 121),
            spec((300, 300, 1), false, false, true, (2, 2), true, 122),
            spec((64, 256, 2), true, true, true, (6, 9), true, 123),
            spec((128, 512, 1), false, false, true, (4, 8), true, 124),
            spec((31, 61, 4), true, false, true, (13, 3), false, 125),
        ]);
    }
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(2024);
    for n in 0..draws {
        let (i, h, l) = (
            r.random_range(1..=max_size),
            r.random_range(1..=max_size),
            r.random_range(1..=max_layers),
        );
        let (t, b) = (r.random_range(1..=max_t), r.random_range(1..=max_b));
        let (bd, bf, bias, h0) = (
            r.random_bool(0.5),
            r.random_bool(0.5),
            r.random_bool(0.7),
            r.random_bool(0.6),
        );
        v.push(spec((i, h, l), bd, bf, bias, (t, b), h0, 300 + n));
    }
    let mut dropout = spec((6, 10, 3), true, false, true, (7, 5), true, 400);
    dropout.config = dropout.config.dropout(0.4);
    dropout.train_seed = Some(1234);
    v.push(dropout);
    if level == Level::Thorough {
        let mut d = spec((17, 33, 2), false, true, true, (12, 9), false, 401);
        d.config = d.config.dropout(0.25);
        d.train_seed = Some(99);
        v.push(d);
    }
    v
}

/// The seeded random draws of the quick level on `plans` plans: six up to
/// eight plans, then as many as keep draws x plans at 48 or under, at least
/// two (the quick level's time grows slowly as plans are added; see the
/// module's documentation for what it takes on llvmpipe).
pub fn quick_draws(plans: usize) -> u64 {
    (48 / plans.max(1)).clamp(2, 6) as u64
}

/// The long sequences of a level, on every plan: past the step where the
/// persistent loops, run in one dispatch, went wrong on lavapipe (585 steps
/// at H = 4; see `GpuContext::loop_limit`). The quick level runs one, the
/// thorough level four, in each precision.
pub fn long_specs(level: Level) -> Vec<RandomSpec> {
    let mut v = vec![spec((2, 16, 1), false, false, true, (700, 2), true, 600)];
    if level == Level::Thorough {
        v.extend([
            spec((3, 4, 1), false, false, true, (4096, 1), true, 601),
            spec((2, 16, 2), true, false, true, (1024, 2), true, 602),
            spec((8, 64, 2), false, true, true, (300, 32), true, 603),
        ]);
    }
    v
}

/// The configurations the determinism checks run twice.
fn determinism_specs(level: Level) -> Vec<RandomSpec> {
    let mut d = spec((16, 24, 2), true, true, true, (8, 5), true, 500);
    d.config = d.config.dropout(0.3);
    d.train_seed = Some(7);
    let mut v = vec![d];
    if level == Level::Thorough {
        v.push(spec((40, 97, 1), false, false, true, (29, 17), true, 501));
    }
    v
}

/// Every tensor of a run as vectors, in a fixed order.
fn tensors<F: Real>(o: &Array3<F>, hn: &Array3<F>, g: &GruGrads<F>) -> Vec<(String, Vec<F>)> {
    let mut v = vec![
        ("output".to_string(), o.iter().copied().collect()),
        ("h_n".to_string(), hn.iter().copied().collect()),
        ("grad.x".to_string(), g.x.iter().copied().collect()),
        ("grad.h0".to_string(), g.h0.iter().copied().collect()),
    ];
    for (spec, a) in g.params.named() {
        v.push((format!("grad.{}", spec.name), a.iter().copied().collect()));
    }
    v
}

/// The worst relative error of `ours` against `reference`, tensor by
/// tensor, and the tensor it was on (NaN counts as infinitely bad).
fn worst_of(ours: &[(String, Vec<f64>)], reference: &[(String, Vec<f64>)]) -> (f64, String) {
    let mut worst = (0.0f64, String::new());
    for ((name, a), (_, b)) in ours.iter().zip(reference) {
        let mut e = rel_error(a.iter().copied(), b.iter());
        if e.is_nan() || a.len() != b.len() {
            e = f64::INFINITY;
        }
        if e >= worst.0 {
            worst = (e, name.clone());
        }
    }
    worst
}

fn widen(v: Vec<(String, Vec<f32>)>) -> Vec<(String, Vec<f64>)> {
    v.into_iter()
        .map(|(n, a)| (n, a.into_iter().map(f64::from).collect()))
        .collect()
}

/// The worst relative error of a run against a PyTorch case, and the tensor
/// it was on (NaN counts as infinitely bad).
fn worst_against(case: &ReferenceCase, r: &RunResult) -> (f64, String) {
    let mut worst = (0.0f64, String::new());
    for c in case.compare(r, 0.0) {
        let e = if c.rel.is_nan() { f64::INFINITY } else { c.rel };
        if e >= worst.0 {
            worst = (e, c.name);
        }
    }
    worst
}

/// The outcome of a worst error against its bound.
fn judge(worst: f64, tensor: &str, bound: f64) -> Outcome {
    if worst <= bound {
        Outcome::Passed
    } else if worst.is_infinite() {
        Outcome::Failed(format!("{tensor} is not a number (NaN or infinite)"))
    } else {
        Outcome::Failed(format!("{tensor}: {worst:.3e} > {bound:.0e}"))
    }
}

/// The suite's context: every product family that runs under the limits
/// profile, the fixed fallback rule where no plan is forced (every check
/// forces one), no plan cache on disk, every buffer poisoned with NaN.
fn open(options: &SelftestOptions) -> Result<GpuContext> {
    GpuContext::with_options(ContextOptions {
        adapter: options.adapter.clone(),
        profile: options.profile,
        poison_buffers: true,
        tune: Some(TuneMode::Off),
        plan_cache: PlanCacheLocation::MemoryOnly,
        ..Default::default()
    })
}

/// The plans of the families that do not run on `ctx` (the window kernels
/// under WebGPU's limits, a GEMM variant whose needs the device does not
/// meet), each with the reason.
fn plans_not_running(ctx: &GpuContext) -> Vec<(Plan, String)> {
    let here = ctx.families();
    let every: Vec<Family> = GemmVariant::ALL
        .iter()
        .map(|v| Family::Gemm(*v))
        .chain([Family::Windows])
        .collect();
    crate::check::coverage(&every)
        .into_iter()
        .filter(|p| !here.contains(&p.family))
        .map(|p| {
            let why = p
                .family
                .check(ctx.limits(), ctx.features())
                .err()
                .unwrap_or_else(|| format!("the family `{}` is not open here", p.family));
            (p, why)
        })
        .collect()
}

/// Runs the suite, calling `each` on every check as it completes (to print
/// as it goes). `Err` only where no adapter can be used. (The binary opens
/// a [`Suite`] itself; this is the entry of `tests/selftest.rs`.)
#[allow(dead_code)]
pub fn run(options: &SelftestOptions, each: impl FnMut(&Check)) -> Result<Report> {
    Ok(Suite::open(options)?.run(each))
}

/// The suite on its open device.
pub struct Suite {
    options: SelftestOptions,
    ctx: GpuContext,
}

impl Suite {
    /// Opens the adapter under the options' limits profile. `Err` where no
    /// adapter can be used.
    pub fn open(options: &SelftestOptions) -> Result<Suite> {
        Ok(Suite {
            options: options.clone(),
            ctx: open(options)?,
        })
    }

    /// The adapter, in words.
    pub fn adapter(&self) -> String {
        self.ctx.adapter().to_string()
    }

    /// Runs every check, calling `each` on each as it completes.
    pub fn run(&self, each: impl FnMut(&Check)) -> Report {
        run_on(&self.options, &self.ctx, each)
    }
}

/// One check on every plan: `run` on each plan that applies to the GRU of
/// `params` on a batch of `batch` rows (the others are not run, with the
/// reason `GpuGru::check_plan` gives), each pushed with its time.
#[allow(clippy::too_many_arguments)]
fn on_every_plan(
    ctx: &GpuContext,
    plans: &[Plan],
    (params, batch): (&GruParams<f32>, usize),
    kind: &'static str,
    config: &str,
    bound: f64,
    push: &mut dyn FnMut(Check),
    mut run: impl FnMut(Plan) -> (Option<f64>, Outcome),
) {
    let model = GpuGru::new(ctx, params);
    for &plan in plans {
        let start = std::time::Instant::now();
        let (worst, outcome) = match &model {
            Err(e) => (None, Outcome::Failed(e.to_string())),
            Ok(m) => match m.check_plan(plan, batch) {
                Err(why) => (None, Outcome::NotRun(why)),
                Ok(()) => run(plan),
            },
        };
        push(Check {
            kind,
            config: config.to_string(),
            path: plan.to_string(),
            worst,
            bound,
            outcome,
            seconds: start.elapsed().as_secs_f64(),
            precision: params.config().precision,
        });
    }
}

fn run_on(options: &SelftestOptions, ctx: &GpuContext, mut each: impl FnMut(&Check)) -> Report {
    let mut report = Report {
        adapter: ctx.adapter().to_string(),
        profile: options.profile,
        level: options.level,
        checks: Vec::new(),
    };
    let mut push = |c: Check| {
        each(&c);
        report.checks.push(c);
    };
    let gpu_bound = options.gpu_bound;

    // A family that does not run here: its plans, once each, not run (for
    // every precision; labelled with the first the suite runs).
    for (plan, why) in plans_not_running(ctx) {
        push(Check {
            kind: "path",
            config: "every configuration".to_string(),
            path: plan.to_string(),
            worst: None,
            bound: gpu_bound,
            outcome: Outcome::NotRun(why),
            seconds: 0.0,
            precision: options.precision.unwrap_or(Precision::F32),
        });
    }
    let plans = crate::check::coverage_plans(ctx);
    let has_f16 = ctx.features().contains(wgpu::Features::SHADER_F16);
    let precisions = match options.precision {
        Some(p) => vec![p],
        None => vec![Precision::F32, Precision::F16],
    };
    for precision in precisions {
        if precision == Precision::F16 && !has_f16 {
            let why = "f16 storage needs the adapter feature SHADER_F16, which this adapter \
                       does not have"
                .to_string();
            push(Check {
                kind: "path",
                config: "every configuration (f16)".to_string(),
                path: "every plan".to_string(),
                worst: None,
                bound: options.gpu_f16_bound,
                outcome: match options.precision {
                    Some(_) => Outcome::Failed(why),
                    None => Outcome::NotRun(why),
                },
                seconds: 0.0,
                precision,
            });
            continue;
        }
        run_precision(options, ctx, &plans, precision, &mut push);
    }
    report
}

/// Every check of the suite in one storage precision: the PyTorch cases
/// (and, in f32, the CPU reference on them), the random configurations and
/// determinism, each on every plan. In f16 each configuration is named with
/// "f16" and judged against the f16 bound.
fn run_precision(
    options: &SelftestOptions,
    ctx: &GpuContext,
    plans: &[Plan],
    precision: Precision,
    push: &mut dyn FnMut(Check),
) {
    let f16 = precision == Precision::F16;
    let gpu_bound = match f16 {
        true => options.gpu_f16_bound,
        false => options.gpu_bound,
    };
    let tag = |s: String| if f16 { format!("{s} f16") } else { s };

    // The PyTorch cases.
    for (name, bytes) in &PYTORCH_CASES {
        let start = std::time::Instant::now();
        let case = match ReferenceCase::from_bytes(bytes, &format!("built-in PyTorch case {name}"))
        {
            Ok(c) => c,
            Err(e) => {
                push(Check::cpu_f64(
                    ("pytorch", format!("PyTorch {name}")),
                    options.cpu_bound,
                    (None, Outcome::Failed(e.to_string())),
                    start.elapsed().as_secs_f64(),
                    precision,
                ));
                continue;
            }
        };
        let case = case.with_precision(precision);
        let config = tag(format!("PyTorch {name} ({})", case.describe()));
        // The CPU reference against PyTorch: once, in the f32 pass.
        if !f16 {
            let (worst, outcome) = match case.run_cpu::<f64>() {
                Ok(r) => {
                    let (w, t) = worst_against(&case, &r);
                    (Some(w), judge(w, &t, options.cpu_bound))
                }
                Err(e) => (None, Outcome::Failed(e.to_string())),
            };
            push(Check::cpu_f64(
                ("cpu", config.clone()),
                options.cpu_bound,
                (worst, outcome),
                start.elapsed().as_secs_f64(),
                precision,
            ));
        }
        on_every_plan(
            ctx,
            plans,
            (&case.params, case.batch),
            "pytorch",
            &config,
            gpu_bound,
            push,
            |plan| match case.run_gpu_plan(ctx, Some(plan)) {
                Ok(r) => {
                    let (w, t) = worst_against(&case, &r);
                    (Some(w), judge(w, &t, gpu_bound))
                }
                Err(e) => (None, Outcome::Failed(e.to_string())),
            },
        );
    }

    // Random configurations against the f64 CPU reference, then long
    // sequences.
    let long = long_specs(options.level);
    let random = random_specs(options.level, plans.len())
        .into_iter()
        .map(|s| (false, s));
    for (is_long, mut s) in random.chain(long.into_iter().map(|s| (true, s))) {
        s.config = s.config.precision(precision);
        let config = tag(s.describe());
        let kind = if is_long {
            "long"
        } else if s.train_seed.is_some() {
            "dropout"
        } else {
            "random"
        };
        let prepared = RandomCase::new(s.config.clone(), s.seq_len, s.batch, s.h0, s.seed)
            .map(|c| c.with_seq(s.seq.clone()))
            .and_then(|c| {
                let (o, hn, g) = c.run_cpu(s.train_seed)?;
                Ok((c, tensors(&o, &hn, &g)))
            });
        let prepared = made_or_failed(prepared, (kind, &config), gpu_bound, precision, push);
        let Some((case, reference)) = prepared else {
            continue;
        };
        on_every_plan(
            ctx,
            plans,
            (&case.params, case.batch),
            kind,
            &config,
            gpu_bound,
            push,
            |plan| match case.run_gpu_plan(ctx, s.train_seed, Some(plan)) {
                Ok((o, hn, g)) => {
                    let (w, t) = worst_of(&widen(tensors(&o, &hn, &g)), &reference);
                    (Some(w), judge(w, &t, gpu_bound))
                }
                Err(e) => (None, Outcome::Failed(e.to_string())),
            },
        );
    }

    // Determinism: the same call twice, bit for bit.
    for mut s in determinism_specs(options.level) {
        s.config = s.config.precision(precision);
        let config = tag(format!("{} (the same call twice)", s.describe()));
        let case = RandomCase::new(s.config.clone(), s.seq_len, s.batch, s.h0, s.seed);
        let Some(case) = made_or_failed(case, ("determinism", &config), 0.0, precision, push)
        else {
            continue;
        };
        on_every_plan(
            ctx,
            plans,
            (&case.params, case.batch),
            "determinism",
            &config,
            0.0,
            push,
            |plan| {
                let once = || {
                    case.run_gpu_plan(ctx, s.train_seed, Some(plan))
                        .map(|r| tensors(&r.0, &r.1, &r.2))
                };
                match once().and_then(|a| Ok((a, once()?))) {
                    Ok((a, b)) => determinism(&a, &b),
                    Err(e) => (None, Outcome::Failed(e.to_string())),
                }
            },
        );
    }
}

/// A case that was made, or `None` where it could not be, pushing then a
/// failed `cpu-f64` check of `(kind, config)` against `bound` in its stead.
fn made_or_failed<T>(
    made: Result<T>,
    (kind, config): (&'static str, &str),
    bound: f64,
    precision: Precision,
    push: &mut dyn FnMut(Check),
) -> Option<T> {
    match made {
        Ok(t) => Some(t),
        Err(e) => {
            let failed = (None, Outcome::Failed(e.to_string()));
            push(Check::cpu_f64(
                (kind, config.to_string()),
                bound,
                failed,
                0.0,
                precision,
            ));
            None
        }
    }
}

/// Compares two runs bit for bit: the relative difference of the second from
/// the first, and passed only where every bit is equal.
fn determinism(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> (Option<f64>, Outcome) {
    let mut differ = 0usize;
    let mut total = 0usize;
    let mut first = None;
    for ((name, x), (_, y)) in a.iter().zip(b) {
        let d = x
            .iter()
            .zip(y)
            .filter(|(p, q)| p.to_bits() != q.to_bits())
            .count()
            + x.len().abs_diff(y.len());
        total += x.len();
        if d > 0 && first.is_none() {
            first = Some(name.clone());
        }
        differ += d;
    }
    let (w, _) = worst_of(&widen(b.to_vec()), &widen(a.to_vec()));
    let outcome = match first {
        None => Outcome::Passed,
        Some(name) => Outcome::Failed(format!(
            "{differ} of {total} elements differ between two identical calls (first in {name})"
        )),
    };
    (Some(w), outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_draws_shrink_as_plans_are_added() {
        assert_eq!(quick_draws(0), 6);
        assert_eq!(quick_draws(6), 6);
        assert_eq!(quick_draws(8), 6);
        assert_eq!(quick_draws(9), 5);
        assert_eq!(quick_draws(20), 2);
        assert_eq!(quick_draws(100), 2);
        let (few, many) = (
            random_specs(Level::Quick, 6),
            random_specs(Level::Quick, 20),
        );
        assert_eq!(few.len(), many.len() + 4);
        // The fixed sizes and dropout stay whatever the number of plans.
        for s in &many {
            assert!(few.iter().any(|f| f.describe() == s.describe()));
        }
        assert!(many.iter().any(|s| s.config.hidden_size == 257));
        assert!(many.iter().any(|s| s.train_seed.is_some()));
        // The thorough level keeps all of its draws.
        assert_eq!(
            random_specs(Level::Thorough, 6).len(),
            random_specs(Level::Thorough, 20).len()
        );
    }
}
