//! `gru-wgpu verify [--device cpu|gpu|both] [--precision f32|f16] [--plan auto|all|NAME] FILE...`
//!
//! FILE: a PyTorch case (`gru-golden-v1`), one ONNX GRU node's onnxruntime
//! case (`onnx-gru-v1`), or a whole ONNX model's (`onnx-model-v1`).

use std::path::PathBuf;
use std::process::ExitCode;

use gru_wgpu::reference::{ReferenceCase, TensorCheck, CPU_BOUND, GPU_F16_BOUND};

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Where to run: the f64 CPU reference, the f32 GPU, or both.
    #[arg(long, value_enum, default_value_t = Device::Both)]
    device: Device,
    /// The GPU's storage precision: `f32` (bound 1e-5), or `f16` (weights,
    /// inputs, states, outputs and tape in f16, arithmetic in f32; bound
    /// 2e-3; it needs the adapter's SHADER_F16). The CPU reference is f64
    /// either way.
    #[arg(long, value_enum, default_value_t = super::bench::PrecisionArg::F32)]
    precision: super::bench::PrecisionArg,
    /// Which GPU plans to check: `auto` (the plan a call of the case's shape
    /// chooses, tuning it where the plan cache has none), `all` (every
    /// plan that applies to the case, one block of rows each), or one plan
    /// by the name `gru-wgpu tune` prints (`simple/step`, `windows/products`, ...).
    #[arg(long, default_value = "auto")]
    plan: String,
    /// Reference files (safetensors, format gru-golden-v1, with lengths,
    /// resets or the reset-before form; onnx-gru-v1 or onnx-model-v1 beside
    /// its .onnx model).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Device {
    Cpu,
    Gpu,
    Both,
}

fn fmt_worst(w: Option<f64>) -> String {
    match w {
        Some(v) if v.is_nan() => "NaN".to_string(),
        Some(v) => format!("{v:.3e}"),
        None => "-".to_string(),
    }
}

/// The worse of two relative errors, where NaN (a result that is not a
/// number) is worse than any number.
fn worse(a: Option<f64>, b: f64) -> f64 {
    match a {
        None => b,
        Some(a) if a.is_nan() || b.is_nan() => f64::NAN,
        Some(a) => a.max(b),
    }
}

/// The header of a case's table of checks.
fn print_header() {
    println!(
        "  {:<6} {:<28} {:>10} {:>10} {:>7}",
        "device", "tensor", "max abs", "rel error", "bound"
    );
}

/// One device's rows of a case's table: each tensor's errors against its
/// bound, OK or FAIL. A FAIL sets `status` to 1 if it is still 0; a run
/// that failed prints its error and sets `status` to 2.
fn print_checks(
    path: &std::path::Path,
    device: &str,
    checks: gru_wgpu::Result<Vec<TensorCheck>>,
    status: &mut u8,
    worst: &mut Option<f64>,
) {
    match checks {
        Ok(checks) => {
            for c in checks {
                let ok = c.ok();
                println!(
                    "  {:<6} {:<28} {:>10.3e} {:>10.3e} {:>7.0e} {}",
                    device,
                    c.name,
                    c.max_abs,
                    c.rel,
                    c.bound,
                    if ok { "OK" } else { "FAIL" }
                );
                *worst = Some(worse(*worst, c.rel));
                if !ok && *status == 0 {
                    *status = 1;
                }
            }
        }
        Err(e) => {
            eprintln!("error: {device} on {}: {e}", path.display());
            *status = 2;
        }
    }
}

/// Which plans `--plan` asks for.
#[derive(Clone, Copy)]
enum PlanArg {
    Auto,
    All,
    One(gru_wgpu::gpu::Plan),
}

impl PlanArg {
    fn parse(s: &str) -> gru_wgpu::Result<Self> {
        match s {
            "auto" => Ok(PlanArg::Auto),
            "all" => Ok(PlanArg::All),
            name => name.parse::<gru_wgpu::gpu::Plan>().map(PlanArg::One),
        }
    }

    /// The GPU runs of a case of `params` at `(seq, batch)`: each with the
    /// label of its block of rows and the plan to force (`None`: the
    /// automatic one), or why the plan asked for cannot run it.
    fn runs(
        self,
        ctx: &gru_wgpu::gpu::GpuContext,
        params: &gru_wgpu::GruParams<f32>,
        seq: usize,
        batch: usize,
    ) -> gru_wgpu::Result<Vec<(String, Option<gru_wgpu::gpu::Plan>)>> {
        let model = gru_wgpu::gpu::GpuGru::new(ctx, params)?;
        Ok(match self {
            PlanArg::Auto => {
                let c = model.plan_for(seq, batch)?;
                let how = format!("{:?}", c.source).to_lowercase();
                vec![(format!("auto: {} ({how})", c.plan), None)]
            }
            PlanArg::All => model
                .candidates(batch)
                .into_iter()
                .map(|p| (p.to_string(), Some(p)))
                .collect(),
            PlanArg::One(p) => {
                model.check_plan(p, batch).map_err(|why| {
                    gru_wgpu::GruError::InvalidConfig(format!("the plan {p} does not apply: {why}"))
                })?;
                vec![(p.to_string(), Some(p))]
            }
        })
    }
}

/// The GPU's blocks of rows of one case: one per run of `plans`, each
/// after a line naming its plan, from `check(plan)`.
fn print_gpu_blocks(
    path: &std::path::Path,
    runs: gru_wgpu::Result<Vec<(String, Option<gru_wgpu::gpu::Plan>)>>,
    mut check: impl FnMut(Option<gru_wgpu::gpu::Plan>) -> gru_wgpu::Result<Vec<TensorCheck>>,
    status: &mut u8,
    worst: &mut Option<f64>,
) {
    let runs = match runs {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: gpu on {}: {e}", path.display());
            *status = 2;
            return;
        }
    };
    for (label, plan) in runs {
        println!("  plan {label}");
        print_checks(path, "gpu", check(plan), status, worst);
    }
}

/// An ONNX case: one GRU node's (`onnx-gru-v1`) or a whole model's
/// (`onnx-model-v1`).
enum OnnxFile {
    Node(gru_wgpu::onnx::OnnxCase),
    Model(gru_wgpu::onnx::OnnxModelCase),
}

impl OnnxFile {
    fn describe(&self) -> String {
        match self {
            OnnxFile::Node(c) => c.describe(),
            OnnxFile::Model(c) => c.describe(),
        }
    }

    /// The checks of a run against onnxruntime's (and torch's) outputs,
    /// each within `bound`: of the CPU reference (f64) where `gpu` is
    /// `None`, else of the GPU in that precision with that plan forced.
    fn checks(
        &self,
        gpu: Option<(
            &gru_wgpu::gpu::GpuContext,
            gru_wgpu::Precision,
            Option<gru_wgpu::gpu::Plan>,
        )>,
        bound: f64,
    ) -> gru_wgpu::Result<Vec<TensorCheck>> {
        match (self, gpu) {
            (OnnxFile::Node(c), None) => c.run_cpu::<f64>().map(|r| c.compare(&r, bound)),
            (OnnxFile::Model(c), None) => c.run_cpu::<f64>().map(|r| c.compare(&r, bound)),
            (OnnxFile::Node(c), Some((ctx, precision, plan))) => c
                .run_gpu_plan(ctx, precision, plan)
                .map(|r| c.compare(&r, bound)),
            (OnnxFile::Model(c), Some((ctx, precision, plan))) => c
                .run_gpu_plan(ctx, precision, plan)
                .map(|r| c.compare(&r, bound)),
        }
    }

    /// The imported parameters, and the steps and batch a GPU call of the
    /// case runs (to the longest length).
    fn gpu_shape(&self) -> gru_wgpu::Result<(gru_wgpu::GruParams<f32>, usize, usize)> {
        Ok(match self {
            OnnxFile::Node(c) => {
                let t_run = c.lengths.iter().max().copied().unwrap_or(c.seq_len);
                (c.gru.params()?, t_run, c.batch)
            }
            OnnxFile::Model(c) => (c.stack.params()?, c.steps(), c.batch),
        })
    }
}

/// An ONNX case (as read): the CPU reference (f64) and the GPU against
/// onnxruntime's float32 outputs (and torch's, where a model's file has
/// them), all within `ONNX_BOUND`.
fn verify_onnx(
    path: &std::path::Path,
    case: gru_wgpu::Result<OnnxFile>,
    want_cpu: bool,
    (ctx, precision, plans): (
        Option<&gru_wgpu::gpu::GpuContext>,
        gru_wgpu::Precision,
        PlanArg,
    ),
    status: &mut u8,
    (worst_cpu, worst_gpu): (&mut Option<f64>, &mut Option<f64>),
) {
    use gru_wgpu::onnx::ONNX_BOUND;
    let case = match case {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            *status = 2;
            return;
        }
    };
    println!("{}: {}", path.display(), case.describe());
    print_header();
    if want_cpu {
        print_checks(
            path,
            "cpu",
            case.checks(None, ONNX_BOUND),
            status,
            worst_cpu,
        );
    }
    if let Some(ctx) = ctx {
        // onnxruntime's float32 bound, or f16's where that is wider.
        let bound = match precision {
            gru_wgpu::Precision::F32 => ONNX_BOUND,
            gru_wgpu::Precision::F16 => ONNX_BOUND.max(GPU_F16_BOUND),
        };
        let runs = case.gpu_shape().and_then(|(p, steps, batch)| {
            plans.runs(ctx, &p.with_precision(precision), steps, batch)
        });
        let check = |plan| case.checks(Some((ctx, precision, plan)), bound);
        print_gpu_blocks(path, runs, check, status, worst_gpu);
    }
}

/// Exit status: 0 when every tensor is within its bound, 1 when one is not,
/// 2 when a file or the GPU could not be used.
pub fn run(args: &VerifyArgs, adapter: Option<&str>) -> ExitCode {
    let want_cpu = args.device != Device::Gpu;
    let want_gpu = args.device != Device::Cpu;
    let precision = args.precision.get();
    let plans = match PlanArg::parse(&args.plan) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: --plan: `auto`, `all` or a plan's name: {e}");
            return ExitCode::from(2);
        }
    };
    let mut status = 0u8;
    let ctx = if want_gpu {
        match super::open_gpu(adapter) {
            Ok(c) => {
                match precision {
                    gru_wgpu::Precision::F32 => println!("gpu: {}", c.adapter()),
                    p => println!("gpu: {} ({} storage)", c.adapter(), p.name()),
                }
                Some(c)
            }
            Err(e) => {
                super::report_gpu_error(&e, Some("or use --device cpu"));
                status = 2;
                None
            }
        }
    } else {
        None
    };
    let mut worst_cpu: Option<f64> = None;
    let mut worst_gpu: Option<f64> = None;
    for path in &args.files {
        let onnx = match gru_wgpu::onnx::case_format(path).as_deref() {
            Some("onnx-gru-v1") => Some(gru_wgpu::onnx::OnnxCase::load(path).map(OnnxFile::Node)),
            Some("onnx-model-v1") => {
                Some(gru_wgpu::onnx::OnnxModelCase::load(path).map(OnnxFile::Model))
            }
            _ => None,
        };
        if let Some(case) = onnx {
            verify_onnx(
                path,
                case,
                want_cpu,
                (ctx.as_ref(), precision, plans),
                &mut status,
                (&mut worst_cpu, &mut worst_gpu),
            );
            continue;
        }
        let case = match ReferenceCase::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                status = 2;
                continue;
            }
        };
        println!("{}: {}", path.display(), case.describe());
        print_header();
        if want_cpu {
            let checks = case.run_cpu::<f64>().map(|r| case.compare(&r, CPU_BOUND));
            print_checks(path, "cpu", checks, &mut status, &mut worst_cpu);
        }
        if let Some(ctx) = &ctx {
            let case = case.with_precision(precision);
            let bound = case.gpu_bound();
            // The steps a call runs: to the longest length.
            let t_run = case.lengths.as_ref().and_then(|l| l.iter().max().copied());
            let runs = plans.runs(ctx, &case.params, t_run.unwrap_or(case.seq_len), case.batch);
            let check = |plan| {
                case.run_gpu_plan(ctx, plan)
                    .map(|r| case.compare(&r, bound))
            };
            print_gpu_blocks(path, runs, check, &mut status, &mut worst_gpu);
        }
    }
    println!(
        "worst relative error: cpu {}, gpu {}",
        fmt_worst(worst_cpu),
        fmt_worst(worst_gpu)
    );
    ExitCode::from(status)
}
