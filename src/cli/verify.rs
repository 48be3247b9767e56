//! `gru-wgpu verify [--device cpu|gpu|both] [--precision f32|f16] FILE...`

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
    /// Reference files (safetensors, format gru-golden-v1, with lengths,
    /// resets or the reset-before form, or onnx-gru-v1 beside its .onnx model).
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

/// An onnx-gru-v1 case: the CPU reference (f64) and the GPU (f32) against
/// onnxruntime's float32 `Y` and `Y_h`, both within `ONNX_BOUND`.
fn verify_onnx(
    path: &std::path::Path,
    want_cpu: bool,
    (ctx, precision): (Option<&gru_wgpu::gpu::GpuContext>, gru_wgpu::Precision),
    status: &mut u8,
    (worst_cpu, worst_gpu): (&mut Option<f64>, &mut Option<f64>),
) {
    use gru_wgpu::onnx::{OnnxCase, ONNX_BOUND};
    let case = match OnnxCase::load(path) {
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
        let checks = case.run_cpu::<f64>().map(|r| case.compare(&r, ONNX_BOUND));
        print_checks(path, "cpu", checks, status, worst_cpu);
    }
    if let Some(ctx) = ctx {
        // onnxruntime's float32 bound, or f16's where that is wider.
        let bound = match precision {
            gru_wgpu::Precision::F32 => ONNX_BOUND,
            gru_wgpu::Precision::F16 => ONNX_BOUND.max(GPU_F16_BOUND),
        };
        let checks = case
            .run_gpu_in(ctx, precision)
            .map(|r| case.compare(&r, bound));
        print_checks(path, "gpu", checks, status, worst_gpu);
    }
}

/// Exit status: 0 when every tensor is within its bound, 1 when one is not,
/// 2 when a file or the GPU could not be used.
pub fn run(args: &VerifyArgs, adapter: Option<&str>) -> ExitCode {
    let want_cpu = args.device != Device::Gpu;
    let want_gpu = args.device != Device::Cpu;
    let precision = args.precision.get();
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
        if gru_wgpu::onnx::is_onnx_case(path) {
            verify_onnx(
                path,
                want_cpu,
                (ctx.as_ref(), precision),
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
            let checks = case.run_gpu(ctx).map(|r| case.compare(&r, bound));
            print_checks(path, "gpu", checks, &mut status, &mut worst_gpu);
        }
    }
    println!(
        "worst relative error: cpu {}, gpu {}",
        fmt_worst(worst_cpu),
        fmt_worst(worst_gpu)
    );
    ExitCode::from(status)
}
