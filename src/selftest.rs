//! The GPU-vs-CPU suite that `gru-wgpu selftest` runs, for a user to check a
//! GPU and its driver: the PyTorch reference cases built into the crate, then
//! random configurations (sizes of 1, primes, sizes just past the kernels'
//! tiles, layers, directions, layouts, with and without bias and `h0`,
//! dropout) on every kernel path the adapter can run (each family of product
//! kernels with each time loop), every buffer poisoned with NaN first, and
//! bitwise determinism (the same call twice).
//!
//! The checks are data ([`Check`]): a configuration, a path, the worst
//! relative error, the bound and an [`Outcome`]. A path the adapter cannot run
//! is a check that was not run, with the reason; it is not counted as passed.

use ndarray::Array3;
use rand::{Rng, SeedableRng};

use crate::check::RandomCase;
use crate::cpu::GruGrads;
use crate::error::Result;
use crate::gpu::{
    window_kernels_fit, ContextOptions, GpuContext, LimitsProfile, Products, Recurrence,
};
use crate::real::rel_error;
use crate::reference::{ReferenceCase, RunResult, CPU_BOUND, GPU_BOUND};
use crate::GruConfig;

/// The PyTorch reference cases built into the crate (`tests/data/golden`),
/// by name.
pub const PYTORCH_CASES: [(&str, &[u8]); 8] = [
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
}

impl Default for SelftestOptions {
    fn default() -> Self {
        SelftestOptions {
            adapter: None,
            profile: LimitsProfile::Adapter,
            level: Level::Quick,
            gpu_bound: GPU_BOUND,
            cpu_bound: CPU_BOUND,
        }
    }
}

/// How a check ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Passed,
    /// Out of bound or an error, with what went wrong.
    Failed(String),
    /// The path cannot run on this adapter (or this configuration), and why.
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

/// One check: a configuration on one path.
#[derive(Clone, Debug)]
pub struct Check {
    /// `pytorch`, `cpu`, `random`, `dropout` or `determinism`.
    pub kind: &'static str,
    /// The configuration, in words.
    pub config: String,
    /// The kernel path (`storage/per-step`, ...), or `cpu-f64`.
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

/// A kernel path: a family of product kernels and a time loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuPath {
    pub products: Products,
    pub recurrence: Recurrence,
}

impl GpuPath {
    /// Every path: storage and window products, each per-step and persistent.
    pub fn all() -> [GpuPath; 4] {
        let p = |products, recurrence| GpuPath {
            products,
            recurrence,
        };
        [
            p(Products::Storage, Recurrence::PerStep),
            p(Products::Storage, Recurrence::Persistent),
            p(Products::Windows, Recurrence::PerStep),
            p(Products::Windows, Recurrence::Persistent),
        ]
    }

    /// `storage/per-step`, `windows/persistent`, ...
    pub fn label(&self) -> String {
        let p = match self.products {
            Products::Windows => "windows",
            _ => "storage",
        };
        let r = match self.recurrence {
            Recurrence::Persistent => "persistent",
            Recurrence::PerStep => "per-step",
            _ => "auto",
        };
        format!("{p}/{r}")
    }
}

/// The largest hidden size of the persistent kernels.
const PERSISTENT_HMAX: usize = 256;

/// A random configuration: `(config, T, B, h0, train seed for dropout)`.
#[derive(Clone, Debug)]
pub struct RandomSpec {
    pub config: GruConfig,
    pub seq_len: usize,
    pub batch: usize,
    pub h0: bool,
    pub train_seed: Option<u32>,
    pub seed: u64,
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
            if c.bidirectional { "bidir" } else { "unidir" },
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
    }
}

/// The random configurations of a level: fixed edge sizes (1, primes, just
/// past the tiles: the GEMM's 32 x 64, the window GEMM's 8 x 64 and 8-float
/// chunks, the step kernels' 64 hidden units x 4 batch rows, the persistent
/// kernels' 256), then seeded random draws, then dropout in training mode.
pub fn random_specs(level: Level) -> Vec<RandomSpec> {
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
    let (draws, max_size, max_layers, max_t, max_b) = match level {
        Level::Quick => (6, 96, 3, 24, 20),
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

/// Every tensor of a run as f64 vectors, in a fixed order.
fn tensors_f32(o: &Array3<f32>, hn: &Array3<f32>, g: &GruGrads<f32>) -> Vec<(String, Vec<f32>)> {
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

fn tensors_f64(o: &Array3<f64>, hn: &Array3<f64>, g: &GruGrads<f64>) -> Vec<(String, Vec<f64>)> {
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

/// The contexts of each family of product kernels, or why one cannot run.
type Families = Vec<(Products, std::result::Result<GpuContext, String>)>;

/// Opens the contexts: the storage family must open (else the adapter cannot
/// be used, an `Err`); the window family where the device's limits allow.
fn open(options: &SelftestOptions) -> Result<Families> {
    let with = |products| {
        GpuContext::with_options(ContextOptions {
            adapter: options.adapter.clone(),
            profile: options.profile,
            poison_buffers: true,
            products: Some(products),
            ..Default::default()
        })
    };
    let storage = with(Products::Storage)?;
    let windows = match window_kernels_fit(storage.limits()) {
        Ok(()) => with(Products::Windows).map_err(|e| e.to_string()),
        Err(why) => Err(why),
    };
    Ok(vec![
        (Products::Storage, Ok(storage)),
        (Products::Windows, windows),
    ])
}

/// The context of a path's family, or why it cannot run.
fn context_of(families: &Families, p: Products) -> std::result::Result<&GpuContext, &str> {
    let (_, c) = families
        .iter()
        .find(|(q, _)| *q == p)
        .expect("every family");
    c.as_ref().map_err(|e| e.as_str())
}

/// Why a path cannot run a hidden size, if it cannot.
fn path_refuses(path: GpuPath, hidden: usize) -> Option<String> {
    (path.recurrence == Recurrence::Persistent && hidden > PERSISTENT_HMAX).then(|| {
        format!("the persistent kernels take hidden sizes up to {PERSISTENT_HMAX}; this GRU has {hidden}")
    })
}

/// Runs the suite, calling `each` on every check as it completes (to print
/// as it goes). `Err` only where no adapter can be used.
pub fn run(options: &SelftestOptions, each: impl FnMut(&Check)) -> Result<Report> {
    Ok(Suite::open(options)?.run(each))
}

/// The suite on its open devices.
pub struct Suite {
    options: SelftestOptions,
    families: Families,
}

impl Suite {
    /// Opens the adapter (one device per family of product kernels it can
    /// run). `Err` where no adapter can be used.
    pub fn open(options: &SelftestOptions) -> Result<Suite> {
        Ok(Suite {
            options: options.clone(),
            families: open(options)?,
        })
    }

    /// The adapter, in words.
    pub fn adapter(&self) -> String {
        context_of(&self.families, Products::Storage)
            .expect("storage opened")
            .adapter()
            .to_string()
    }

    /// Runs every check, calling `each` on each as it completes.
    pub fn run(&self, each: impl FnMut(&Check)) -> Report {
        run_on(&self.options, &self.families, each)
    }
}

/// One check on every runnable path: `run` on each path the GRU's hidden
/// size allows (the others are not run, with the reason), each pushed with
/// its time.
#[allow(clippy::too_many_arguments)]
fn on_every_path(
    runnable: &[(GpuPath, &GpuContext)],
    hidden: usize,
    kind: &'static str,
    config: &str,
    bound: f64,
    push: &mut dyn FnMut(Check),
    mut run: impl FnMut(&GpuContext, Recurrence) -> (Option<f64>, Outcome),
) {
    for &(path, ctx) in runnable {
        let start = std::time::Instant::now();
        let (worst, outcome) = match path_refuses(path, hidden) {
            Some(why) => (None, Outcome::NotRun(why)),
            None => run(ctx, path.recurrence),
        };
        push(Check {
            kind,
            config: config.to_string(),
            path: path.label(),
            worst,
            bound,
            outcome,
            seconds: start.elapsed().as_secs_f64(),
        });
    }
}

fn run_on(options: &SelftestOptions, families: &Families, mut each: impl FnMut(&Check)) -> Report {
    let first = context_of(families, Products::Storage).expect("storage opened");
    let mut report = Report {
        adapter: first.adapter().to_string(),
        profile: options.profile,
        level: options.level,
        checks: Vec::new(),
    };
    let mut push = |c: Check| {
        each(&c);
        report.checks.push(c);
    };
    let gpu_bound = options.gpu_bound;

    // A family that cannot run: its paths, once each, not run.
    for path in GpuPath::all() {
        if let Err(why) = context_of(families, path.products) {
            push(Check {
                kind: "path",
                config: "every configuration".to_string(),
                path: path.label(),
                worst: None,
                bound: gpu_bound,
                outcome: Outcome::NotRun(why.to_string()),
                seconds: 0.0,
            });
        }
    }
    let runnable: Vec<(GpuPath, &GpuContext)> = GpuPath::all()
        .into_iter()
        .filter_map(|p| context_of(families, p.products).ok().map(|c| (p, c)))
        .collect();

    // The PyTorch cases.
    for (name, bytes) in &PYTORCH_CASES {
        let start = std::time::Instant::now();
        let case = match ReferenceCase::from_bytes(bytes, &format!("built-in PyTorch case {name}"))
        {
            Ok(c) => c,
            Err(e) => {
                push(Check {
                    kind: "pytorch",
                    config: format!("PyTorch {name}"),
                    path: "cpu-f64".to_string(),
                    worst: None,
                    bound: options.cpu_bound,
                    outcome: Outcome::Failed(e.to_string()),
                    seconds: start.elapsed().as_secs_f64(),
                });
                continue;
            }
        };
        let config = format!("PyTorch {name} ({})", case.describe());
        let cpu = case.run_cpu::<f64>();
        let (worst, outcome) = match cpu {
            Ok(r) => {
                let (w, t) = worst_against(&case, &r);
                (Some(w), judge(w, &t, options.cpu_bound))
            }
            Err(e) => (None, Outcome::Failed(e.to_string())),
        };
        push(Check {
            kind: "cpu",
            config: config.clone(),
            path: "cpu-f64".to_string(),
            worst,
            bound: options.cpu_bound,
            outcome,
            seconds: start.elapsed().as_secs_f64(),
        });
        on_every_path(
            &runnable,
            case.config.hidden_size,
            "pytorch",
            &config,
            gpu_bound,
            &mut push,
            |ctx, r| match case.run_gpu_with(ctx, r) {
                Ok(r) => {
                    let (w, t) = worst_against(&case, &r);
                    (Some(w), judge(w, &t, gpu_bound))
                }
                Err(e) => (None, Outcome::Failed(e.to_string())),
            },
        );
    }

    // Random configurations against the f64 CPU reference.
    for s in random_specs(options.level) {
        let config = s.describe();
        let kind = if s.train_seed.is_some() {
            "dropout"
        } else {
            "random"
        };
        let prepared = RandomCase::new(s.config.clone(), s.seq_len, s.batch, s.h0, s.seed)
            .and_then(|c| {
                let (o, hn, g) = c.run_cpu(s.train_seed)?;
                Ok((c, tensors_f64(&o, &hn, &g)))
            });
        let (case, reference) = match prepared {
            Ok(p) => p,
            Err(e) => {
                push(Check {
                    kind,
                    config,
                    path: "cpu-f64".to_string(),
                    worst: None,
                    bound: gpu_bound,
                    outcome: Outcome::Failed(e.to_string()),
                    seconds: 0.0,
                });
                continue;
            }
        };
        on_every_path(
            &runnable,
            s.config.hidden_size,
            kind,
            &config,
            gpu_bound,
            &mut push,
            |ctx, r| match case.run_gpu_with(ctx, s.train_seed, r) {
                Ok((o, hn, g)) => {
                    let (w, t) = worst_of(&widen(tensors_f32(&o, &hn, &g)), &reference);
                    (Some(w), judge(w, &t, gpu_bound))
                }
                Err(e) => (None, Outcome::Failed(e.to_string())),
            },
        );
    }

    // Determinism: the same call twice, bit for bit.
    for s in determinism_specs(options.level) {
        let config = format!("{} (the same call twice)", s.describe());
        let case = RandomCase::new(s.config.clone(), s.seq_len, s.batch, s.h0, s.seed);
        on_every_path(
            &runnable,
            s.config.hidden_size,
            "determinism",
            &config,
            0.0,
            &mut push,
            |ctx, r| {
                let twice = case.as_ref().map_err(|e| e.to_string()).and_then(|c| {
                    let a = c
                        .run_gpu_with(ctx, s.train_seed, r)
                        .map_err(|e| e.to_string())?;
                    let b = c
                        .run_gpu_with(ctx, s.train_seed, r)
                        .map_err(|e| e.to_string())?;
                    Ok((tensors_f32(&a.0, &a.1, &a.2), tensors_f32(&b.0, &b.1, &b.2)))
                });
                match twice {
                    Ok((a, b)) => determinism(&a, &b),
                    Err(e) => (None, Outcome::Failed(e)),
                }
            },
        );
    }
    report
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
