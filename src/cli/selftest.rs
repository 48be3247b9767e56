//! `gru-wgpu selftest [--quick|--thorough] [--limits adapter|webgpu] [--json]`

use std::io::Write;
use std::process::ExitCode;

use crate::selftest::{self, Check, Level, Outcome, Report, SelftestOptions};
use gru_wgpu::gpu::LimitsProfile;

#[derive(clap::Args)]
pub struct SelftestArgs {
    /// The short suite (the default): 75 to 95 s on llvmpipe on two shared cores
    /// (f32, then f16 where the adapter has SHADER_F16; 41 to 56 s with
    /// `--precision f32`).
    #[arg(long, conflicts_with = "thorough")]
    quick: bool,
    /// More configurations: larger sizes (up to H = 512, T = 100), four layers, more random draws.
    #[arg(long)]
    thorough: bool,
    /// The limits to open the device with: the adapter's own, or WebGPU's defaults.
    #[arg(long, value_enum, default_value_t = LimitsArg::Adapter)]
    limits: LimitsArg,
    /// One JSON object a line: the adapter, each check, then the summary.
    #[arg(long)]
    json: bool,
    /// The GPU's storage precision to check: `all` (f32, then f16 where the
    /// adapter has SHADER_F16: a configuration in f16 ends in "f16" and has
    /// the bound 2e-3), `f32`, or `f16` (a failure where the adapter lacks
    /// SHADER_F16).
    #[arg(long, value_enum, default_value_t = PrecisionChoice::All)]
    precision: PrecisionChoice,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PrecisionChoice {
    All,
    F32,
    F16,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LimitsArg {
    Adapter,
    Webgpu,
}

fn fmt_worst(w: Option<f64>) -> String {
    match w {
        Some(v) if v.is_nan() => "NaN".to_string(),
        Some(v) if v.is_infinite() => "NaN/inf".to_string(),
        Some(v) => format!("{v:.3e}"),
        None => "-".to_string(),
    }
}

/// One check as a line of text.
pub fn line(c: &Check) -> String {
    match &c.outcome {
        Outcome::NotRun(why) => format!("{} | {} | not run: {why}", c.config, c.path),
        o => {
            let mut s = format!(
                "{} | {} | worst {} | bound {:.0e} | {}",
                c.config,
                c.path,
                fmt_worst(c.worst),
                c.bound,
                if matches!(o, Outcome::Passed) {
                    "OK"
                } else {
                    "FAIL"
                }
            );
            if let Outcome::Failed(why) = o {
                s.push_str(&format!(" ({why})"));
            }
            s
        }
    }
}

/// One check as a JSON object.
pub fn json(c: &Check) -> serde_json::Value {
    serde_json::json!({
        "type": "check",
        "kind": c.kind,
        "config": c.config,
        "path": c.path,
        "worst": c.worst.filter(|w| w.is_finite()),
        "bound": c.bound,
        "outcome": c.outcome.name(),
        "reason": c.outcome.reason(),
        "seconds": c.seconds,
        "precision": c.precision,
    })
}

/// Exit status: 0 when every check that ran passed, 1 when one failed, 2
/// when no adapter can be used.
pub fn run(args: &SelftestArgs, adapter: Option<&str>) -> ExitCode {
    let options = SelftestOptions {
        adapter: adapter.map(String::from),
        profile: match args.limits {
            LimitsArg::Adapter => LimitsProfile::Adapter,
            LimitsArg::Webgpu => LimitsProfile::WebGpu,
        },
        level: if args.thorough {
            Level::Thorough
        } else {
            Level::Quick
        },
        precision: match args.precision {
            PrecisionChoice::All => None,
            PrecisionChoice::F32 => Some(gru_wgpu::Precision::F32),
            PrecisionChoice::F16 => Some(gru_wgpu::Precision::F16),
        },
        ..Default::default()
    };
    let start = std::time::Instant::now();
    let suite = match selftest::Suite::open(&options) {
        Ok(s) => s,
        Err(e) => {
            super::report_gpu_error(&e, None);
            return ExitCode::from(2);
        }
    };
    let level = if args.thorough { "thorough" } else { "quick" };
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "type": "adapter",
                "adapter": suite.adapter(),
                "limits": options.profile,
                "level": options.level,
            })
        );
    } else {
        println!(
            "selftest ({level}) on {}, {} limits; each line: configuration | plan | worst relative error | bound | outcome",
            suite.adapter(),
            options.profile
        );
    }
    let report: Report = suite.run(|c| {
        let mut out = std::io::stdout().lock();
        let _ = if args.json {
            writeln!(out, "{}", json(c))
        } else {
            writeln!(out, "{}", line(c))
        };
        let _ = out.flush();
    });
    let seconds = start.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "type": "summary",
                "adapter": report.adapter,
                "limits": report.profile,
                "level": report.level,
                "passed": report.passed(),
                "failed": report.failed(),
                "not_run": report.not_run(),
                "seconds": seconds,
            })
        );
    } else {
        println!(
            "adapter: {}; limits: {}; {} checks not run; {seconds:.1} s",
            report.adapter,
            report.profile,
            report.not_run()
        );
        println!(
            "selftest: {} passed, {} failed",
            report.passed(),
            report.failed()
        );
    }
    ExitCode::from(report.exit_status())
}
