//! `gru-wgpu bench`: throughput of the GPU and the CPU reference.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::bench::{
    bench_cpu_with_lengths, bench_gpu_with_lengths, compare_table, default_shapes, table,
    BenchShape, Lengths, Mode, Record,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The shape flags of `bench` and `tune`: without any, the default shapes.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ShapeArgs {
    /// Batch sizes (comma-separated for several).
    #[arg(long, value_delimiter = ',')]
    pub batch: Vec<usize>,
    /// Sequence lengths.
    #[arg(long, value_delimiter = ',')]
    pub seq: Vec<usize>,
    /// Input sizes (default: the hidden size).
    #[arg(long, value_delimiter = ',')]
    pub input: Vec<usize>,
    /// Hidden sizes.
    #[arg(long, value_delimiter = ',')]
    pub hidden: Vec<usize>,
    /// Stacked layers.
    #[arg(long)]
    pub layers: Option<usize>,
    /// Two directions per layer.
    #[arg(long)]
    pub bidirectional: bool,
}

impl ShapeArgs {
    /// The shapes asked for: every combination of the lists, or the default
    /// shapes where no flag is given.
    pub fn shapes(&self) -> Vec<BenchShape> {
        let custom = !(self.batch.is_empty()
            && self.seq.is_empty()
            && self.input.is_empty()
            && self.hidden.is_empty()
            && self.layers.is_none()
            && !self.bidirectional);
        if !custom {
            return default_shapes();
        }
        let or = |v: &Vec<usize>, d: usize| if v.is_empty() { vec![d] } else { v.clone() };
        let mut out = Vec::new();
        for &batch in &or(&self.batch, 16) {
            for &seq in &or(&self.seq, 64) {
                for &hidden in &or(&self.hidden, 128) {
                    for &input in &or(&self.input, hidden) {
                        out.push(BenchShape {
                            batch,
                            seq,
                            input,
                            hidden,
                            layers: self.layers.unwrap_or(1),
                            bidirectional: self.bidirectional,
                            precision: gru_wgpu::Precision::F32,
                        });
                    }
                }
            }
        }
        out
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub shape: ShapeArgs,
    /// Forward only, forward and backward, or both.
    #[arg(long, value_enum, default_value_t = ModeArg::Both)]
    pub mode: ModeArg,
    /// Timed calls per shape.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Untimed calls before them.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Print one JSON object a line instead of the table.
    #[arg(long)]
    pub json: bool,
    /// What to measure: the GPU, the CPU reference, or both.
    #[arg(long, value_enum, default_value_t = DeviceArg::Gpu)]
    pub device: DeviceArg,
    /// The GPU's time loop: the measured rule, or forced.
    #[arg(long, value_enum, default_value_t = RecurrenceArg::Auto)]
    pub recurrence: RecurrenceArg,
    /// The GPU's plan: `auto` (the shape's cached or measured plan), a plan
    /// by the name `gru-wgpu tune` prints, such as `simple/sequence`, or
    /// `all` (the automatic plan, then every plan of the coverage set that
    /// applies, each forced: each GEMM kernel with the `step` and `products`
    /// loops, the simple kernel and the window family with every loop).
    #[arg(long, default_value = "auto")]
    pub plan: String,
    /// Draw throughput against hidden size to this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// JSON lines of another implementation (benches/torch_gru.py --json) to print beside ours.
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// Pass per-sequence lengths to every forward (GPU and CPU reference):
    /// `uniform` (all T: the cost of handling lengths), `random` (drawn
    /// uniformly from 1..=T with a fixed seed, in batch order), or
    /// `random-sorted` (the same lengths, longest first). Without it, the
    /// padded batch and no lengths. The JSON gains `lengths`, `mean_length`
    /// and `valid_fraction`; the flops stay the padded shape's.
    #[arg(long, value_enum)]
    pub lengths: Option<LengthsArg>,
    /// The GPU's storage precision: `f32`, or `f16` (weights, inputs,
    /// states, outputs and tape in f16, arithmetic in f32; it needs the
    /// adapter's SHADER_F16). The JSON's `precision` says which; the CPU
    /// reference always runs in f32.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionArg {
    F32,
    F16,
}

impl PrecisionArg {
    pub fn get(self) -> gru_wgpu::Precision {
        match self {
            PrecisionArg::F32 => gru_wgpu::Precision::F32,
            PrecisionArg::F16 => gru_wgpu::Precision::F16,
        }
    }
}

impl Default for BenchArgs {
    fn default() -> Self {
        BenchArgs {
            shape: ShapeArgs::default(),
            mode: ModeArg::Both,
            iters: 5,
            warmup: 1,
            json: false,
            device: DeviceArg::Gpu,
            recurrence: RecurrenceArg::Auto,
            plan: "auto".into(),
            plot: None,
            compare: None,
            lengths: None,
            precision: PrecisionArg::F32,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    Fwd,
    Fwdbwd,
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LengthsArg {
    Uniform,
    Random,
    RandomSorted,
}

impl LengthsArg {
    pub fn get(self) -> Lengths {
        match self {
            LengthsArg::Uniform => Lengths::Uniform,
            LengthsArg::Random => Lengths::Random,
            LengthsArg::RandomSorted => Lengths::RandomSorted,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RecurrenceArg {
    Auto,
    Persistent,
    PerStep,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    Gpu,
    Cpu,
    Both,
}

impl BenchArgs {
    pub fn shapes(&self) -> Vec<BenchShape> {
        self.shape.shapes()
    }

    fn modes(&self) -> Vec<Mode> {
        match self.mode {
            ModeArg::Fwd => vec![Mode::Fwd],
            ModeArg::Fwdbwd => vec![Mode::Fwdbwd],
            ModeArg::Both => vec![Mode::Fwd, Mode::Fwdbwd],
        }
    }
}

/// Runs the benchmark; `ctx` is the GPU where one is wanted. Returns the records.
pub fn measure(
    args: &BenchArgs,
    ctx: Option<&gru_wgpu::gpu::GpuContext>,
) -> gru_wgpu::Result<Vec<Record>> {
    let shapes = args.shapes();
    let modes = args.modes();
    let devices: Vec<&str> = match args.device {
        DeviceArg::Gpu => vec!["gpu"],
        DeviceArg::Cpu => vec!["cpu"],
        DeviceArg::Both => vec!["gpu", "cpu"],
    };
    let total = (shapes.len() * modes.len() * devices.len() * (args.iters + args.warmup)) as u64;
    // Shown only once the run has taken a couple of seconds, never with --json.
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} calls, {elapsed} elapsed, ~{eta} left  {msg}",
        )
        .expect("a valid template"),
    );
    let forced = match args.plan.as_str() {
        "auto" | "all" => None,
        name => Some(name.parse::<gru_wgpu::gpu::Plan>()?),
    };
    let lengths = args.lengths.map(LengthsArg::get);
    let start = Instant::now();
    let mut shown = false;
    let mut records = Vec::new();
    let shapes: Vec<BenchShape> = shapes
        .iter()
        .map(|s| BenchShape {
            precision: args.precision.get(),
            ..*s
        })
        .collect();
    for shape in &shapes {
        for &mode in &modes {
            for &dev in &devices {
                bar.set_message(format!(
                    "{dev} {mode} B={} T={} I={} H={}",
                    shape.batch, shape.seq, shape.input, shape.hidden
                ));
                let mut tick = || {
                    bar.inc(1);
                    if !shown && !args.json && start.elapsed() > Duration::from_secs(2) {
                        bar.set_draw_target(ProgressDrawTarget::stderr());
                        shown = true;
                    }
                };
                if dev == "gpu" {
                    let ctx = ctx.expect("a GPU context");
                    // `--recurrence`: a shorthand plan, where no plan is
                    // forced by name.
                    let shorthand = match args.recurrence {
                        RecurrenceArg::Auto => None,
                        RecurrenceArg::Persistent => Some(ctx.plan_named("persistent")?),
                        RecurrenceArg::PerStep => Some(ctx.plan_named("per-step")?),
                    };
                    let mut plans = vec![forced];
                    if args.plan == "all" {
                        plans.extend(crate::bench::plans_for(ctx, shape)?.into_iter().map(Some));
                    }
                    for plan in plans {
                        records.push(bench_gpu_with_lengths(
                            ctx,
                            shape,
                            mode,
                            args.iters,
                            args.warmup,
                            plan.or(shorthand),
                            lengths,
                            &mut tick,
                        )?);
                    }
                } else {
                    records.push(bench_cpu_with_lengths(
                        shape,
                        mode,
                        args.iters,
                        args.warmup,
                        lengths,
                        &mut tick,
                    )?);
                }
            }
        }
    }
    bar.finish_and_clear();
    Ok(records)
}

pub fn run(args: &BenchArgs, adapter: Option<&str>) -> ExitCode {
    if args.iters == 0 {
        eprintln!("error: --iters must be at least 1");
        return ExitCode::from(2);
    }
    if args
        .shapes()
        .iter()
        .any(|s| s.batch == 0 || s.seq == 0 || s.input == 0 || s.hidden == 0 || s.layers == 0)
    {
        eprintln!("error: every size must be at least 1");
        return ExitCode::from(2);
    }
    if let Some(p) = &args.plot {
        if let Err(e) = super::check_writable(p) {
            eprintln!("error: {}: {e}", p.display());
            return ExitCode::from(2);
        }
    }
    if args.plan != "auto" && args.plan != "all" {
        if let Err(e) = args.plan.parse::<gru_wgpu::gpu::Plan>() {
            eprintln!("error: --plan: {e}");
            return ExitCode::from(2);
        }
    }
    // Every shape's sizes before any work: host memory for the CPU
    // reference (the GPU's are checked per shape before its data exist).
    for shape in args.shapes() {
        let checked = if args.device != DeviceArg::Gpu {
            crate::bench::check_cpu_fits(&shape)
        } else {
            shape.config().validate()
        };
        if let Err(e) = checked {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    let ctx = if args.device != DeviceArg::Cpu {
        match super::open_gpu(adapter) {
            Ok(c) => Some(c),
            Err(e) => {
                super::report_gpu_error(&e, Some("or use --device cpu"));
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let records = match measure(args, ctx.as_ref()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    print_records(args, &records)
}

/// Prints the table or JSON lines, the comparison and the plot.
pub fn print_records(args: &BenchArgs, records: &[Record]) -> ExitCode {
    if args.json {
        for r in records {
            println!("{}", serde_json::to_string(r).expect("records serialize"));
        }
    } else {
        print!("{}", table(records));
    }
    let mut status = ExitCode::SUCCESS;
    if let Some(path) = &args.compare {
        match read_records(path) {
            Ok(theirs) if !args.json => print!("\n{}", compare_table(records, &theirs)),
            Ok(theirs) => eprint!("{}", compare_table(records, &theirs)),
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                status = ExitCode::from(2);
            }
        }
    }
    if let Some(path) = &args.plot {
        if let Err(e) = plot(path, records) {
            eprintln!("error: {}: {e}", path.display());
            status = ExitCode::from(2);
        } else if !args.json {
            println!("plot written to {}", path.display());
        }
    }
    status
}

fn read_records(path: &std::path::Path) -> Result<Vec<Record>, String> {
    let bytes =
        gru_wgpu::files::read_capped(path, gru_wgpu::files::BENCH_RECORDS_MAX, "a results file")
            .map_err(|e| e.to_string())?;
    let text = String::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

/// GFLOP/s against hidden size, one line per implementation and mode.
fn plot(path: &std::path::Path, records: &[Record]) -> Result<(), String> {
    let mut series: Vec<super::Series> = Vec::new();
    for r in records {
        let label = format!("{} {} {}", r.framework, r.implementation, r.mode);
        let point = (r.shape.hidden as f64, r.gflops);
        match series.iter_mut().find(|s| s.label == label) {
            Some(s) => s.points.push(point),
            None => series.push(super::Series {
                label,
                points: vec![point],
                dots: true,
            }),
        }
    }
    for s in &mut series {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    super::line_chart(
        path,
        "GRU throughput against hidden size",
        "hidden size H",
        "GFLOP/s",
        &series,
    )
}

#[derive(clap::Args, Clone, Debug)]
pub struct GemmArgs {
    /// Rows of A and C (comma-separated for several).
    #[arg(long, value_delimiter = ',', default_value = "512")]
    pub m: Vec<usize>,
    /// Rows of B, columns of C.
    #[arg(long, value_delimiter = ',', default_value = "512")]
    pub n: Vec<usize>,
    /// The shared dimension.
    #[arg(long, value_delimiter = ',', default_value = "512")]
    pub k: Vec<usize>,
    /// Which kernels (comma-separated for several): a GEMM variant (simple,
    /// tile64-k8, tile64-k16, tile128-k8, tile128-k16, subgroup128-k16), `windows` (uniform
    /// windows), `storage` (= simple), `both` (simple and windows) or `all`
    /// (every variant and windows).
    #[arg(long, value_delimiter = ',', default_value = "both", value_parser = parse_gemm_kernel)]
    pub kernel: Vec<Vec<crate::bench::GemmKernel>>,
    /// Timed runs (after one warm-up).
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// One JSON object a line.
    #[arg(long)]
    pub json: bool,
}

/// A `--kernel` value of `bench-gemm`.
fn parse_gemm_kernel(s: &str) -> Result<Vec<crate::bench::GemmKernel>, String> {
    crate::bench::GemmKernel::parse(s).ok_or_else(|| {
        let names: Vec<String> = gru_wgpu::gpu::GemmVariant::ALL
            .iter()
            .map(|v| v.to_string())
            .collect();
        format!(
            "unknown kernel `{s}`; one of {}, windows, storage, both, all",
            names.join(", ")
        )
    })
}

/// `gru-wgpu bench-gemm`: the GEMM kernels alone, `C = A · Bᵀ`, checked against the CPU.
pub fn run_gemm(args: &GemmArgs, adapter: Option<&str>) -> ExitCode {
    use crate::bench::{bench_gemm, GemmKernel};
    if args.iters == 0 || [&args.m, &args.n, &args.k].iter().any(|v| v.contains(&0)) {
        eprintln!("error: --iters and every size must be at least 1");
        return ExitCode::from(2);
    }
    let ctx = match super::open_gpu_or_report(adapter) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut kernels: Vec<GemmKernel> = Vec::new();
    for k in args.kernel.iter().flatten() {
        if !kernels.contains(k) {
            kernels.push(*k);
        }
    }
    if !args.json {
        println!("adapter: {}", ctx.adapter());
        println!(
            "{:<16} {:>6} {:>6} {:>6} {:>10} {:>9} {:>10} {:>6}",
            "kernel", "M", "N", "K", "median ms", "GFLOP/s", "rel error", "disp"
        );
    }
    let mut status = ExitCode::SUCCESS;
    for &m in &args.m {
        for &n in &args.n {
            for &k in &args.k {
                for &kernel in &kernels {
                    match bench_gemm(&ctx, m, n, k, kernel, args.iters) {
                        Ok(r) if args.json => {
                            println!("{}", serde_json::to_string(&r).expect("serializes"))
                        }
                        Ok(r) => println!(
                            "{:<16} {:>6} {:>6} {:>6} {:>10.2} {:>9.2} {:>10.2e} {:>6}",
                            r.kernel.name(),
                            m,
                            n,
                            k,
                            r.median_ms,
                            r.gflops,
                            r.rel_error,
                            r.dispatches
                        ),
                        Err(e) => {
                            eprintln!("error: {e}");
                            status = ExitCode::from(2);
                        }
                    }
                }
            }
        }
    }
    status
}
