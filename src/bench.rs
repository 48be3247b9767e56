//! Throughput measurement: the shapes, the flop count, the timing loop and
//! the records `gru-wgpu bench` prints (also as JSON lines, the same fields
//! as `benches/torch_gru.py`).
//!
//! Flops: one layer-direction's forward costs `2·T·B·3H·(I_l + H)` flops
//! (the input and recurrent products, a multiply-add counted as two flops;
//! the gate math is not counted), with `I_l = I` for the first layer and `D·H`
//! above it. A backward costs twice its forward (the gradients of the inputs
//! and of the weights), so forward plus backward costs three forwards.

// A path from this file's folder, so that the tests that include this file
// (`#[path = "../src/bench.rs"]`) find it too.
#[path = "bench/gemm.rs"]
mod gemm;
pub use gemm::*;

use std::time::Instant;

use ndarray::Array3;
use rand::{Rng, SeedableRng};
use wgpu::util::DeviceExt;

use gru_wgpu::error::Result;
use gru_wgpu::gpu::{GpuContext, GpuGru, Plan};
use gru_wgpu::{GruConfig, GruParams, Precision};

/// One benchmark shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BenchShape {
    pub batch: usize,
    pub seq: usize,
    pub input: usize,
    pub hidden: usize,
    pub layers: usize,
    pub bidirectional: bool,
    /// The GPU's storage precision (`bench --precision`; the CPU reference
    /// always runs in f32, and says so); `f32` where a record has none.
    #[serde(default)]
    pub precision: Precision,
}

impl BenchShape {
    pub fn config(&self) -> GruConfig {
        GruConfig::new(self.input, self.hidden)
            .layers(self.layers)
            .bidirectional(self.bidirectional)
            .precision(self.precision)
    }
}

impl std::fmt::Display for BenchShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "B={} T={} I={} H={}",
            self.batch, self.seq, self.input, self.hidden
        )?;
        if self.layers > 1 {
            write!(f, " L={}", self.layers)?;
        }
        if self.bidirectional {
            write!(f, " bidir")?;
        }
        if self.precision != Precision::F32 {
            write!(f, " {}", self.precision.name())?;
        }
        Ok(())
    }
}

/// Forward only, or forward and backward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Mode {
    Fwd,
    Fwdbwd,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Fwd => "fwd",
            Mode::Fwdbwd => "fwdbwd",
        })
    }
}

/// The flops of one call: `sum over layers and directions of 2·T·B·3H·(I_l + H)`,
/// times 3 with the backward.
pub fn flops(s: &BenchShape, mode: Mode) -> f64 {
    let d = if s.bidirectional { 2 } else { 1 };
    let mut fwd = 0.0;
    for l in 0..s.layers {
        let i_l = if l == 0 { s.input } else { d * s.hidden };
        fwd += d as f64
            * 2.0
            * (s.seq * s.batch) as f64
            * (3 * s.hidden) as f64
            * (i_l + s.hidden) as f64;
    }
    match mode {
        Mode::Fwd => fwd,
        Mode::Fwdbwd => 3.0 * fwd,
    }
}

/// The shapes measured when none are given: the three of the performance
/// targets, and a sweep of hidden sizes at B = 16, T = 64.
pub fn default_shapes() -> Vec<BenchShape> {
    let s = |batch, seq, h| BenchShape {
        batch,
        seq,
        input: h,
        hidden: h,
        layers: 1,
        bidirectional: false,
        precision: Precision::F32,
    };
    vec![
        s(1, 256, 64),
        s(16, 64, 32),
        s(16, 64, 64),
        s(16, 64, 128),
        s(16, 64, 256),
        s(64, 64, 256),
    ]
}

/// The lengths a bench call passes (`gru-wgpu bench --lengths`); without
/// any, every sequence runs all `T` steps and no lengths are passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lengths {
    /// Every length is `T`: the lengths' handling at no saving.
    Uniform,
    /// Lengths drawn independently and uniformly from `1..=T`
    /// ([`LENGTHS_SEED`]), in the batch's order (unsorted).
    Random,
    /// The same draws as [`Lengths::Random`], sorted longest first.
    RandomSorted,
}

/// The seed of [`Lengths::Random`]: `ChaCha8Rng::seed_from_u64(LENGTHS_SEED)`,
/// then `random_range(1..=T)` once per batch element, in order.
pub const LENGTHS_SEED: u64 = 5;

impl Lengths {
    /// The name `--lengths` takes and the JSON's `lengths` holds.
    pub fn name(self) -> &'static str {
        match self {
            Lengths::Uniform => "uniform",
            Lengths::Random => "random",
            Lengths::RandomSorted => "random-sorted",
        }
    }

    /// The lengths of a batch of `batch` sequences of `seq` steps: the same
    /// for the same `(batch, seq)` on every run.
    pub fn draw(self, batch: usize, seq: usize) -> Vec<usize> {
        match self {
            Lengths::Uniform => vec![seq; batch],
            Lengths::Random | Lengths::RandomSorted => {
                let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(LENGTHS_SEED);
                let mut l: Vec<usize> = (0..batch).map(|_| r.random_range(1..=seq)).collect();
                if self == Lengths::RandomSorted {
                    l.sort_unstable_by(|a, b| b.cmp(a));
                }
                l
            }
        }
    }
}

impl std::fmt::Display for Lengths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The valid steps' share of the padded batch's `B·T` steps.
pub fn valid_fraction(lengths: &[usize], seq: usize) -> f64 {
    let valid: usize = lengths.iter().sum();
    valid as f64 / (lengths.len() * seq) as f64
}

/// One measured row (one JSON line of `--json`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// `gru-wgpu` or `torch`.
    pub framework: String,
    /// `gpu` or `cpu`.
    #[serde(rename = "impl")]
    pub implementation: String,
    /// The adapter (or CPU) it ran on.
    pub adapter: String,
    pub mode: Mode,
    /// `batch`, `seq`, `input`, `hidden`, `layers`, `bidirectional`, at the top level of the JSON.
    #[serde(flatten)]
    pub shape: BenchShape,
    /// Wall time per call, each call waited to completion.
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// The device's own time per call (median), from timestamp queries; null where not measured.
    pub gpu_ms: Option<f64>,
    /// `flops / median time`.
    pub gflops: f64,
    /// `B / median time`.
    pub seqs_per_s: f64,
    /// Compute dispatches per call (null for the CPU).
    pub dispatches: Option<u32>,
    /// Queue submissions per call (null for the CPU).
    pub submissions: Option<u32>,
    pub iters: usize,
    pub warmup: usize,
    /// How the GPU ran it: the plan's name, such as `windows/products`,
    /// after `auto:` where the plan was the automatic one (null for the CPU
    /// and for PyTorch).
    #[serde(default)]
    pub path: Option<String>,
    /// The plan that ran (`family/strategy`, the names `gru-wgpu tune`
    /// prints; null for the CPU and for PyTorch).
    #[serde(default)]
    pub plan: Option<String>,
    /// Milliseconds spent choosing the plan by measurement before the
    /// timed calls: 0 where it was cached, forced or the fallback rule
    /// (null for the CPU and for PyTorch).
    #[serde(default)]
    pub tuned_ms: Option<f64>,
    /// The host's milliseconds recording one call (forward, plus backward
    /// in `fwdbwd`), median over the timed calls: the engine's CPU cost
    /// (null for the CPU and for PyTorch).
    #[serde(default)]
    pub record_ms: Option<f64>,
    /// The lengths passed (`bench --lengths`); absent from the JSON where
    /// none were (the padded batch). The flop count, `gflops` and
    /// `seqs_per_s` are those of the padded shape all the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lengths: Option<Lengths>,
    /// The mean length, where lengths were passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_length: Option<f64>,
    /// The valid steps' share of `B·T`, where lengths were passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_fraction: Option<f64>,
}

impl Record {
    /// This record with the lengths it ran with.
    fn with_lengths(self, kind: Option<Lengths>, lengths: Option<&[usize]>) -> Record {
        let Some(l) = lengths else { return self };
        let seq = self.shape.seq;
        Record {
            lengths: kind,
            mean_length: Some(l.iter().sum::<usize>() as f64 / l.len() as f64),
            valid_fraction: Some(valid_fraction(l, seq)),
            ..self
        }
    }
}

/// `(median, min, max)`; the median of an even count is the mean of the middle two.
pub fn summarize(times: &[f64]) -> (f64, f64, f64) {
    if times.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mut t = times.to_vec();
    t.sort_by(|a, b| a.total_cmp(b));
    let n = t.len();
    let median = if n % 2 == 1 {
        t[n / 2]
    } else {
        0.5 * (t[n / 2 - 1] + t[n / 2])
    };
    (median, t[0], t[n - 1])
}

#[allow(clippy::too_many_arguments)]
fn make_record(
    implementation: &str,
    adapter: &str,
    shape: &BenchShape,
    mode: Mode,
    times: &[f64],
    gpu_times: &[f64],
    stats: Option<(u32, u32)>,
    iters: usize,
    warmup: usize,
    path: Option<String>,
) -> Record {
    let (median, min, max) = summarize(times);
    Record {
        framework: "gru-wgpu".into(),
        implementation: implementation.into(),
        adapter: adapter.into(),
        mode,
        shape: *shape,
        median_ms: median,
        min_ms: min,
        max_ms: max,
        gpu_ms: (!gpu_times.is_empty()).then(|| summarize(gpu_times).0),
        gflops: flops(shape, mode) / (median * 1e-3) / 1e9,
        seqs_per_s: shape.batch as f64 / (median * 1e-3),
        dispatches: stats.map(|s| s.0),
        submissions: stats.map(|s| s.1),
        iters,
        warmup,
        plan: path.clone(),
        path,
        tuned_ms: None,
        record_ms: None,
        lengths: None,
        mean_length: None,
        valid_fraction: None,
    }
}

/// Host bytes of `values` f32 values (saturating).
fn f32s(values: &[usize]) -> u64 {
    values.iter().fold(4u64, |a, &v| a.saturating_mul(v as u64))
}

/// What a shape's data (input and output gradient, f32) take on the host.
fn data_bytes(shape: &BenchShape) -> u64 {
    let d = if shape.bidirectional { 2 } else { 1 };
    gru_wgpu::memory::sum(&[
        f32s(&[shape.seq, shape.batch, shape.input]),
        f32s(&[shape.seq, shape.batch, d, shape.hidden]),
    ])
}

fn check_shape_sizes(shape: &BenchShape) -> Result<()> {
    for (name, v) in [
        ("batch", shape.batch),
        ("seq", shape.seq),
        ("input", shape.input),
        ("hidden", shape.hidden),
        ("layers", shape.layers),
    ] {
        if v == 0 {
            return Err(gru_wgpu::GruError::InvalidConfig(format!(
                "{name} is 0; it must be at least 1"
            )));
        }
    }
    shape.config().validate()
}

/// Checks, before anything is allocated, that the CPU reference's run of
/// `shape` fits the host (see [`gru_wgpu::cpu::layer::run_bytes`]).
pub fn check_cpu_fits(shape: &BenchShape) -> Result<()> {
    check_shape_sizes(shape)?;
    let cfg = shape.config();
    let need = gru_wgpu::cpu::layer::run_bytes(&cfg, shape.seq, shape.batch, 4);
    gru_wgpu::memory::check_host(&format!("the CPU reference's run of {shape}"), need)
}

fn random_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| r.random_range(-1.0f32..1.0)).collect()
}

/// Measures the GPU on one shape with `plan` (or the `recurrence`
/// shorthand, or the shape's automatic plan where both are unset): `warmup` calls, then `iters` timed ones.
/// `tick` is called after every call. With `lengths`, their lengths are
/// passed to every forward (the backward follows its tape's lengths).
#[allow(clippy::too_many_arguments)]
pub fn bench_gpu_with_lengths(
    ctx: &GpuContext,
    shape: &BenchShape,
    mode: Mode,
    iters: usize,
    warmup: usize,
    plan: Option<Plan>,
    lengths: Option<Lengths>,
    tick: &mut dyn FnMut(),
) -> Result<Record> {
    check_shape_sizes(shape)?;
    let lens = lengths.map(|l| l.draw(shape.batch, shape.seq));
    let cfg = shape.config();
    // The host holds the parameters (and their upload) and the data once.
    gru_wgpu::memory::check_host(
        &format!("the data and parameters of {shape}"),
        gru_wgpu::memory::sum(&[
            data_bytes(shape),
            gru_wgpu::memory::bytes_of(cfg.param_count()?, 8),
        ]),
    )?;
    let model = GpuGru::new(ctx, &GruParams::<f32>::init(&cfg, 1)?)?;
    // The device's limits, before the data buffers are made.
    model.check_fits(shape.seq, shape.batch)?;
    model.set_timing(ctx.has_timestamps());
    model.set_plan(plan);
    // The plan, measured first where the shape's bucket has none cached:
    // with lengths, that of the steps the loop runs (the longest length),
    // as the forward chooses it.
    let t_run = lens
        .as_ref()
        .and_then(|l| l.iter().copied().max())
        .unwrap_or(shape.seq);
    let choice = model.plan_for(t_run, shape.batch)?;
    let forced = choice.source == gru_wgpu::gpu::PlanSource::Forced;
    let path = choice.plan.to_string();
    let (t, b) = (shape.seq, shape.batch);
    let init = |data: Vec<f32>| {
        ctx.device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("bench data"),
                contents: bytemuck::cast_slice(&data),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            })
    };
    // x in the model's storage precision (f16 under `--precision f16`);
    // the upstream gradient is f32 in both.
    let x = model.upload_input("bench x", &random_vec(t * b * cfg.input_size, 2))?;
    let go = init(random_vec(
        t * b * cfg.num_directions() * cfg.hidden_size,
        3,
    ));
    let mut times = Vec::new();
    let mut gpu_times = Vec::new();
    let mut stats = (0, 0);
    let mut record_times = Vec::new();
    for i in 0..warmup + iters {
        let start = Instant::now();
        // The tape is kept in both modes (the forward of training).
        let input = gru_wgpu::gpu::OnDevice {
            buffer: x.buffer(),
            seq_len: t,
            batch: b,
        };
        let f = model.forward(
            input,
            gru_wgpu::gpu::ForwardOptions::default()
                .keep_tape()
                .lengths(lens.clone()),
        )?;
        let s1 = model.last_call_stats();
        let (mut dispatches, mut submissions, mut gpu) = (s1.dispatches, s1.submissions, s1.gpu_ms);
        let mut record = s1.record_ms;
        if mode == Mode::Fwdbwd {
            let tape = f.tape.expect("kept");
            let _grads = model.backward(tape, &go, gru_wgpu::gpu::BackwardOptions::default())?;
            let s2 = model.last_call_stats();
            dispatches += s2.dispatches;
            submissions += s2.submissions;
            gpu = gpu.zip(s2.gpu_ms).map(|(a, b)| a + b);
            record += s2.record_ms;
            ctx.synchronize()?;
        } else {
            ctx.synchronize()?;
        }
        let ms = start.elapsed().as_secs_f64() * 1e3;
        if i >= warmup {
            times.push(ms);
            gpu_times.extend(gpu);
            record_times.push(record);
            stats = (dispatches, submissions);
        }
        tick();
    }
    Ok(make_record(
        "gpu",
        &ctx.adapter().to_string(),
        shape,
        mode,
        &times,
        &gpu_times,
        Some(stats),
        iters,
        warmup,
        Some(path),
    ))
    .map(|r| Record {
        tuned_ms: Some(choice.tuned_ms),
        record_ms: Some(summarize(&record_times).0),
        path: Some(match forced {
            true => choice.plan.to_string(),
            false => format!("auto:{}", choice.plan),
        }),
        ..r.with_lengths(lengths, lens.as_deref())
    })
}

/// The plans of the context's coverage set that apply to `shape` (every
/// GEMM kernel with the `step` and `products` loops, the simple kernel and
/// the window family with every loop; see `check::coverage`).
pub fn plans_for(ctx: &GpuContext, shape: &BenchShape) -> Result<Vec<Plan>> {
    check_shape_sizes(shape)?;
    let model = GpuGru::new(ctx, &GruParams::<f32>::zeros(&shape.config())?)?;
    Ok(crate::check::coverage_plans(ctx)
        .into_iter()
        .filter(|p| model.check_plan(*p, shape.batch).is_ok())
        .collect())
}

/// A description of this machine's CPU, for the CPU reference's records.
pub fn cpu_name() -> String {
    let model = gru_wgpu::files::read_system("/proc/cpuinfo".as_ref())
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    format!("CPU reference (ndarray, 1 thread) on {model}")
}

/// Measures the CPU reference (f32) on one shape, with the lengths of
/// `lengths` passed to every forward (`cpu::Gru::forward_with`) where set.
pub fn bench_cpu_with_lengths(
    shape: &BenchShape,
    mode: Mode,
    iters: usize,
    warmup: usize,
    lengths: Option<Lengths>,
    tick: &mut dyn FnMut(),
) -> Result<Record> {
    // The CPU reference computes in f32 whatever the GPU's precision: its
    // record says so.
    let shape = &BenchShape {
        precision: Precision::F32,
        ..*shape
    };
    check_cpu_fits(shape)?;
    let lens = lengths.map(|l| l.draw(shape.batch, shape.seq));
    let seq_opts = gru_wgpu::cpu::SeqOptions::new().lengths(lens.clone());
    let cfg = shape.config();
    let mut gru = gru_wgpu::cpu::Gru::new(GruParams::<f32>::init(&cfg, 1)?);
    let (t, b) = (shape.seq, shape.batch);
    let x = Array3::from_shape_vec(cfg.input_shape(t, b), random_vec(t * b * cfg.input_size, 2))
        .expect("length");
    let go = Array3::from_shape_vec(
        cfg.output_shape(t, b),
        random_vec(t * b * cfg.num_directions() * cfg.hidden_size, 3),
    )
    .expect("length");
    let mut times = Vec::new();
    for i in 0..warmup + iters {
        let start = Instant::now();
        gru.forward_with(x.view(), None, &seq_opts)?;
        if mode == Mode::Fwdbwd {
            gru.backward(go.view(), None)?;
        }
        let ms = start.elapsed().as_secs_f64() * 1e3;
        if i >= warmup {
            times.push(ms);
        }
        tick();
    }
    Ok(make_record(
        "cpu",
        &cpu_name(),
        shape,
        mode,
        &times,
        &[],
        None,
        iters,
        warmup,
        None,
    )
    .with_lengths(lengths, lens.as_deref()))
}

fn shape_label(r: &Record) -> String {
    r.shape.to_string()
}

/// The human-readable table of `records`.
pub fn table(records: &[Record]) -> String {
    let mut out = format!(
        "{:<9} {:<4} {:<7} {:<28} {:>10} {:>10} {:>10} {:>10} {:>9} {:>10} {:>6}\n",
        "framework",
        "impl",
        "mode",
        "shape",
        "median ms",
        "min ms",
        "max ms",
        "gpu ms",
        "GFLOP/s",
        "seqs/s",
        "disp"
    );
    for r in records {
        out.push_str(&format!(
            "{:<9} {:<4} {:<7} {:<28} {:>10.2} {:>10.2} {:>10.2} {:>10} {:>9.2} {:>10.1} {:>6}  {}\n",
            r.framework,
            r.implementation,
            r.mode.to_string(),
            shape_label(r),
            r.median_ms,
            r.min_ms,
            r.max_ms,
            r.gpu_ms.map_or("-".to_string(), |v| format!("{v:.2}")),
            r.gflops,
            r.seqs_per_s,
            r.dispatches.map_or("-".to_string(), |v| v.to_string()),
            r.path.as_deref().unwrap_or("-")
        ));
        if let (Some(l), Some(v)) = (r.lengths, r.valid_fraction) {
            // After the path, so that the columns stay as they were.
            out.pop();
            out.push_str(&format!("  lengths={l} valid={v:.3}\n"));
        }
    }
    out
}

/// Ours beside theirs (say PyTorch's, from `benches/torch_gru.py --json`),
/// row by row where shape and mode match, with `their median / our median`
/// (above 1: ours is faster). Rows with lengths match rows with the same
/// `lengths` only (PyTorch's packed batch, `benches/torch_packed.py`).
pub fn compare_table(ours: &[Record], theirs: &[Record]) -> String {
    let mut out = format!(
        "{:<7} {:<28} {:<14} {:>10} {:<14} {:>10} {:>8}\n",
        "mode", "shape", "ours", "ms", "theirs", "ms", "ratio"
    );
    let mut any = false;
    for o in ours {
        for t in theirs
            .iter()
            .filter(|t| t.shape == o.shape && t.mode == o.mode && t.lengths == o.lengths)
        {
            any = true;
            out.push_str(&format!(
                "{:<7} {:<28} {:<14} {:>10.2} {:<14} {:>10.2} {:>8.2}\n",
                o.mode.to_string(),
                shape_label(o),
                format!("{} {}", o.framework, o.implementation),
                o.median_ms,
                format!("{} {}", t.framework, t.implementation),
                t.median_ms,
                t.median_ms / o.median_ms
            ));
        }
    }
    if !any {
        out.push_str("(no rows of the same shape and mode)\n");
    }
    out
}
