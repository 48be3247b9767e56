//! Throughput measurement: the shapes, the flop count, the timing loop and
//! the records `gru-wgpu bench` prints (also as JSON lines, the same fields
//! as `benches/torch_gru.py`).
//!
//! Flops: one layer-direction's forward costs `2·T·B·3H·(I_l + H)` flops
//! (the input and recurrent products, a multiply-add counted as two flops;
//! the gate math is not counted), with `I_l = I` for the first layer and `D·H`
//! above it. A backward costs twice its forward (the gradients of the inputs
//! and of the weights), so forward plus backward costs three forwards.

use std::time::Instant;

use ndarray::Array3;
use rand::{Rng, SeedableRng};
use wgpu::util::DeviceExt;

use crate::error::Result;
use crate::gpu::{GemmVariant, GpuContext, GpuGru, Recurrence};
use crate::{GruConfig, GruParams};

/// One benchmark shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BenchShape {
    pub batch: usize,
    pub seq: usize,
    pub input: usize,
    pub hidden: usize,
    pub layers: usize,
    pub bidirectional: bool,
}

impl BenchShape {
    pub fn config(&self) -> GruConfig {
        GruConfig::new(self.input, self.hidden)
            .layers(self.layers)
            .bidirectional(self.bidirectional)
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
    /// How the GPU ran it: the product kernels and the time loop, such as
    /// `windows/persistent` (null for the CPU and for PyTorch).
    #[serde(default)]
    pub path: Option<String>,
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
        path,
    }
}

/// Host bytes of `values` f32 values (saturating).
fn f32s(values: &[usize]) -> u64 {
    values.iter().fold(4u64, |a, &v| a.saturating_mul(v as u64))
}

/// What a shape's data (input and output gradient, f32) take on the host.
fn data_bytes(shape: &BenchShape) -> u64 {
    let d = if shape.bidirectional { 2 } else { 1 };
    crate::memory::sum(&[
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
            return Err(crate::GruError::InvalidConfig(format!(
                "{name} is 0; it must be at least 1"
            )));
        }
    }
    shape.config().validate()
}

/// Checks, before anything is allocated, that the CPU reference's run of
/// `shape` fits the host (see [`crate::cpu::layer::run_bytes`]).
pub fn check_cpu_fits(shape: &BenchShape) -> Result<()> {
    check_shape_sizes(shape)?;
    let cfg = shape.config();
    let need = crate::cpu::layer::run_bytes(&cfg, shape.seq, shape.batch, 4);
    crate::memory::check_host(&format!("the CPU reference's run of {shape}"), need)
}

fn random_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| r.random_range(-1.0f32..1.0)).collect()
}

/// Measures the GPU on one shape: `warmup` calls, then `iters` timed ones.
/// `tick` is called after every call.
pub fn bench_gpu(
    ctx: &GpuContext,
    shape: &BenchShape,
    mode: Mode,
    iters: usize,
    warmup: usize,
    recurrence: Recurrence,
    tick: &mut dyn FnMut(),
) -> Result<Record> {
    check_shape_sizes(shape)?;
    let cfg = shape.config();
    // The host holds the parameters (and their upload) and the data once.
    crate::memory::check_host(
        &format!("the data and parameters of {shape}"),
        crate::memory::sum(&[
            data_bytes(shape),
            crate::memory::bytes_of(cfg.param_count()?, 8),
        ]),
    )?;
    let model = GpuGru::new(ctx, &GruParams::<f32>::init(&cfg, 1)?)?;
    // The device's limits, before the data buffers are made.
    model.check_fits(shape.seq, shape.batch)?;
    model.set_timing(ctx.has_timestamps());
    model.set_recurrence(recurrence);
    let path = format!(
        "{}/{}",
        serde_json::to_value(ctx.products())
            .expect("serializes")
            .as_str()
            .unwrap_or("?"),
        if model.persistent()? {
            "persistent"
        } else {
            "per-step"
        }
    );
    let (t, b) = (shape.seq, shape.batch);
    let init = |data: Vec<f32>| {
        ctx.device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("bench data"),
                contents: bytemuck::cast_slice(&data),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            })
    };
    let x = init(random_vec(t * b * cfg.input_size, 2));
    let go = init(random_vec(
        t * b * cfg.num_directions() * cfg.hidden_size,
        3,
    ));
    let mut times = Vec::new();
    let mut gpu_times = Vec::new();
    let mut stats = (0, 0);
    for i in 0..warmup + iters {
        let start = Instant::now();
        // The tape is kept in both modes (the forward of training).
        let input = crate::gpu::OnDevice {
            buffer: &x,
            seq_len: t,
            batch: b,
        };
        let f = model.forward(input, crate::gpu::ForwardOptions::new().keep_tape())?;
        let s1 = model.last_call_stats();
        let (mut dispatches, mut submissions, mut gpu) = (s1.dispatches, s1.submissions, s1.gpu_ms);
        if mode == Mode::Fwdbwd {
            let tape = f.tape.expect("kept");
            let _grads = model.backward(tape, &go, crate::gpu::BackwardOptions::new())?;
            let s2 = model.last_call_stats();
            dispatches += s2.dispatches;
            submissions += s2.submissions;
            gpu = gpu.zip(s2.gpu_ms).map(|(a, b)| a + b);
            ctx.synchronize()?;
        } else {
            ctx.synchronize()?;
        }
        let ms = start.elapsed().as_secs_f64() * 1e3;
        if i >= warmup {
            times.push(ms);
            gpu_times.extend(gpu);
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
}

/// A description of this machine's CPU, for the CPU reference's records.
pub fn cpu_name() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    format!("CPU reference (ndarray, 1 thread) on {model}")
}

/// Measures the CPU reference (f32) on one shape.
pub fn bench_cpu(
    shape: &BenchShape,
    mode: Mode,
    iters: usize,
    warmup: usize,
    tick: &mut dyn FnMut(),
) -> Result<Record> {
    check_cpu_fits(shape)?;
    let cfg = shape.config();
    let mut gru = crate::cpu::Gru::new(GruParams::<f32>::init(&cfg, 1)?);
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
        gru.forward(x.view(), None)?;
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
    ))
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
    }
    out
}

/// Ours beside theirs (say PyTorch's, from `benches/torch_gru.py --json`),
/// row by row where shape and mode match, with `their median / our median`
/// (above 1: ours is faster).
pub fn compare_table(ours: &[Record], theirs: &[Record]) -> String {
    let mut out = format!(
        "{:<7} {:<28} {:<14} {:>10} {:<14} {:>10} {:>8}\n",
        "mode", "shape", "ours", "ms", "theirs", "ms", "ratio"
    );
    let mut any = false;
    for o in ours {
        for t in theirs
            .iter()
            .filter(|t| t.shape == o.shape && t.mode == o.mode)
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

/// Which GEMM kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GemmKernel {
    /// A storage-buffer kernel of `gemm.wgsl`: one [`GemmVariant`].
    Storage(GemmVariant),
    /// Uniform-buffer windows on the chunked layout (`windows.wgsl`).
    Windows,
}

impl GemmKernel {
    /// Every kernel: the GEMM variants in their order, then the windows.
    pub fn all() -> Vec<GemmKernel> {
        let mut v: Vec<GemmKernel> = GemmVariant::ALL
            .iter()
            .map(|&g| GemmKernel::Storage(g))
            .collect();
        v.push(GemmKernel::Windows);
        v
    }

    /// The variant's name, or `windows`.
    pub fn name(self) -> &'static str {
        match self {
            GemmKernel::Storage(v) => v.name(),
            GemmKernel::Windows => "windows",
        }
    }

    /// The kernels a `bench-gemm --kernel` value names: a variant name,
    /// `windows`, `storage` (the simple kernel), `both` (simple and windows)
    /// or `all`.
    pub fn parse(name: &str) -> Option<Vec<GemmKernel>> {
        Some(match name {
            "storage" => vec![GemmKernel::Storage(GemmVariant::Simple)],
            "windows" => vec![GemmKernel::Windows],
            "both" => vec![
                GemmKernel::Storage(GemmVariant::Simple),
                GemmKernel::Windows,
            ],
            "all" => Self::all(),
            _ => vec![GemmKernel::Storage(GemmVariant::from_name(name)?)],
        })
    }
}

impl serde::Serialize for GemmKernel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// One GEMM measurement.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GemmRecord {
    pub kernel: GemmKernel,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub median_ms: f64,
    pub gflops: f64,
    /// `||C - C_ref|| / ||C_ref||` against an f64 product on the CPU.
    pub rel_error: f64,
    pub dispatches: u32,
}

/// Checks, before anything is allocated, that `C = A · Bᵀ` of these sizes
/// fits the host (A, B, C and an f64 reference of C) and the device (A, B,
/// C and their chunked copies, each within the buffer limits).
pub fn check_gemm_fits(ctx: &GpuContext, m: usize, n: usize, k: usize) -> Result<()> {
    for (name, v) in [("m", m), ("n", n), ("k", k)] {
        if v == 0 {
            return Err(crate::GruError::InvalidConfig(format!(
                "{name} is 0; it must be at least 1"
            )));
        }
    }
    crate::memory::check_host(
        &format!("the GEMM's operands and reference ({m}x{k}, {n}x{k}, {m}x{n})"),
        crate::memory::sum(&[f32s(&[m, k]), f32s(&[n, k]), f32s(&[m, n, 3])]),
    )?;
    // The chunked layout pads rows to a multiple of 8 and adds 64 KiB.
    let pad = |r: usize| r.saturating_add(8);
    for (what, bytes) in [
        ("the GEMM's A (m·k)", f32s(&[pad(m), k])),
        ("the GEMM's B (n·k)", f32s(&[pad(n), k])),
        ("the GEMM's C (m·n)", f32s(&[m, n])),
    ] {
        ctx.dev().check_buffer_size(
            what,
            bytes.saturating_add(crate::gpu::ops::windows::WINDOW_BYTES),
        )?;
    }
    Ok(())
}

/// Times `C = A · Bᵀ` (A: (m, k), B: (n, k), both from U(-1, 1)) on one kernel:
/// the product alone, submitted and waited, median of `iters` after one warm-up.
pub fn bench_gemm(
    ctx: &GpuContext,
    m: usize,
    n: usize,
    k: usize,
    kernel: GemmKernel,
    iters: usize,
) -> Result<GemmRecord> {
    use crate::gpu::ops::gemm::{encode_gemm, Gemm};
    use crate::gpu::ops::windows::{
        encode_chunk, encode_windows, window_storage, Chunked, Strided, WinOut,
    };
    check_gemm_fits(ctx, m, n, k)?;
    let a = random_vec(m * k, 11);
    let b = random_vec(n * k, 12);
    ctx.scoped(|| {
        let ab = ctx.upload("A", &a)?;
        let bb = ctx.upload("B", &b)?;
        let c = ctx.storage("C", m * n)?;
        let (la, lb) = (Chunked::new(m, k, 0), Chunked::new(n, k, 0));
        let (ac, bc) = (
            window_storage(ctx.dev(), "A chunked", la.len())?,
            window_storage(ctx.dev(), "B chunked", lb.len())?,
        );
        let rows = |buf| Strided {
            buf,
            off: 0,
            rs: k,
            ks: 1,
            batch: 0,
        };
        if kernel == GemmKernel::Windows {
            let mut rec = ctx.recorder(false);
            encode_chunk(&mut rec, &rows(ab.buffer()), ac.buffer(), &la, 0, 1)?;
            encode_chunk(&mut rec, &rows(bb.buffer()), bc.buffer(), &lb, 0, 1)?;
            rec.submit()?;
            ctx.wait()?;
        }
        let mut times = Vec::new();
        let mut dispatches = 0;
        for i in 0..=iters {
            let mut rec = ctx.recorder(false);
            match kernel {
                GemmKernel::Storage(variant) => encode_gemm(
                    &mut rec,
                    variant,
                    &Gemm {
                        m,
                        n,
                        k,
                        trans_b: true,
                        lda: k,
                        ldb: k,
                        ldc: n,
                        ..Default::default()
                    },
                    ab.buffer(),
                    bb.buffer(),
                    None,
                    c.buffer(),
                )?,
                GemmKernel::Windows => encode_windows(
                    &mut rec,
                    ac.buffer(),
                    &la,
                    bc.buffer(),
                    &lb,
                    None,
                    c.buffer(),
                    &WinOut {
                        c_off: 0,
                        ldc: n,
                        bias_off: None,
                    },
                )?,
            }
            dispatches = rec.dispatches;
            let start = Instant::now();
            rec.submit()?;
            ctx.wait()?;
            if i > 0 {
                times.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        let st = ctx.staging((m * n * 4) as u64);
        let mut rec = ctx.recorder(false);
        rec.copy(c.buffer(), 0, st.buffer(), 0, (m * n * 4) as u64);
        rec.submit()?;
        let got = ctx.read_staging(&[(&st, m * n)])?.remove(0);
        // The f64 reference, its rows split over the host's threads (at
        // 4096³ it is minutes on one).
        let mut reference = vec![0.0f64; m * n];
        let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
        let rows_per = m.div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            for (c, block) in reference.chunks_mut(rows_per * n).enumerate() {
                let (a, b) = (&a, &b);
                scope.spawn(move || {
                    for (r, row) in block.chunks_mut(n).enumerate() {
                        let i = c * rows_per + r;
                        for (j, v) in row.iter_mut().enumerate() {
                            *v = (0..k)
                                .map(|p| a[i * k + p] as f64 * b[j * k + p] as f64)
                                .sum();
                        }
                    }
                });
            }
        });
        let median = summarize(&times).0;
        Ok(GemmRecord {
            kernel,
            m,
            n,
            k,
            median_ms: median,
            gflops: 2.0 * (m * n * k) as f64 / (median * 1e-3) / 1e9,
            rel_error: crate::real::rel_error(got.iter().map(|&v| v as f64), &reference),
            dispatches,
        })
    })
}

/// A product for [`gemm_for_tests`]: `C = op(A) op(B) (+ bias)` for each of
/// `batch` batches, A, B and C packed per batch (A (M, K), or (K, M) with
/// `trans_a`; B (K, N), or (N, K) with `trans_b`; C (M, N)), each buffer
/// starting at float `off`.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct GemmCase<'a> {
    pub variant: GemmVariant,
    pub trans_a: bool,
    pub trans_b: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch: usize,
    pub off: usize,
    pub a: &'a [f32],
    pub b: &'a [f32],
    /// `n` floats, the same for every batch.
    pub bias: Option<&'a [f32]>,
}

/// Runs one product through `encode_gemm` (for the tests of the GEMM
/// kernels): C, `batch · m · n` floats.
#[doc(hidden)]
pub fn gemm_for_tests(ctx: &GpuContext, g: &GemmCase) -> Result<Vec<f32>> {
    use crate::gpu::ops::gemm::{encode_gemm, Gemm};
    let (m, n, k, batch, off) = (g.m, g.n, g.k, g.batch.max(1), g.off);
    assert_eq!(g.a.len(), batch * m * k, "A");
    assert_eq!(g.b.len(), batch * k * n, "B");
    let padded = |v: &[f32]| {
        let mut p = vec![f32::NAN; off];
        p.extend_from_slice(v);
        p
    };
    ctx.scoped(|| {
        let ab = ctx.upload("A", &padded(g.a))?;
        let bb = ctx.upload("B", &padded(g.b))?;
        let biasb = g.bias.map(|v| ctx.upload("bias", &padded(v))).transpose()?;
        let c = ctx.storage("C", off + batch * m * n)?;
        let mut rec = ctx.recorder(false);
        encode_gemm(
            &mut rec,
            g.variant,
            &Gemm {
                m,
                n,
                k,
                trans_a: g.trans_a,
                trans_b: g.trans_b,
                lda: if g.trans_a { m } else { k },
                ldb: if g.trans_b { k } else { n },
                ldc: n,
                a_off: off,
                b_off: off,
                c_off: off,
                bias_off: off,
                batch,
                a_batch: m * k,
                b_batch: k * n,
                c_batch: m * n,
            },
            ab.buffer(),
            bb.buffer(),
            biasb.as_ref().map(|b| b.buffer()),
            c.buffer(),
        )?;
        rec.submit()?;
        ctx.read_back(c.buffer(), off, batch * m * n)
    })
}
