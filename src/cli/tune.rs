//! `gru-wgpu tune`: every candidate plan of a shape timed on this adapter,
//! the fastest marked and kept in the plan cache.

use std::process::ExitCode;

use crate::bench::BenchShape;
use gru_wgpu::gpu::{GpuGru, TuneMode, TuneReport};
use gru_wgpu::GruParams;

use super::bench::ShapeArgs;

#[derive(clap::Args, Clone, Debug)]
pub struct TuneArgs {
    #[command(flatten)]
    pub shape: ShapeArgs,
    /// How thoroughly: `quick` (each candidate once, on at most 16 steps for
    /// the GEMM ranking and 256 for the final round, the closest twice) or
    /// `full` (three times on the whole shape).
    #[arg(long, default_value = "quick")]
    pub mode: String,
    /// One JSON object per candidate a line, instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// One candidate as a JSON line.
#[derive(serde::Serialize)]
struct Line<'a> {
    plan: String,
    median_ms: Option<f64>,
    chosen: bool,
    min_ms: Option<f64>,
    stage: &'static str,
    steps: usize,
    samples_ms: &'a [f64],
    error: Option<&'a str>,
    /// Whether its results were checked against the reference plan's.
    checked: bool,
    /// How they disagreed, where they did (never chosen nor cached).
    rejected: Option<&'a str>,
    reference: String,
    checked_seq: usize,
    checked_batch: usize,
    cpu_checked: bool,
    adapter: String,
    #[serde(flatten)]
    shape: BenchShape,
    mode: TuneMode,
    seq_measured: usize,
    clock: &'static str,
    key: &'a str,
    tuned_ms: f64,
}

pub fn run(args: &TuneArgs, adapter: Option<&str>) -> ExitCode {
    let mode = match args.mode.parse::<TuneMode>() {
        Ok(TuneMode::Off) => {
            eprintln!("error: --mode off measures nothing: use quick or full");
            return ExitCode::from(2);
        }
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: --mode: {e}");
            return ExitCode::from(2);
        }
    };
    let shapes = args.shape.shapes();
    for s in &shapes {
        if s.batch == 0 || s.seq == 0 || s.input == 0 || s.hidden == 0 || s.layers == 0 {
            eprintln!("error: every size must be at least 1");
            return ExitCode::from(2);
        }
        if let Err(e) = s.config().validate() {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    let ctx = match super::open_gpu_or_report(adapter) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if !args.json {
        println!("adapter: {}", ctx.adapter());
    }
    for shape in &shapes {
        let report = GruParams::<f32>::init(&shape.config(), 1)
            .and_then(|p| GpuGru::new(&ctx, &p))
            .and_then(|m| m.tune(shape.seq, shape.batch, mode));
        match report {
            Ok(r) => print_report(args, &ctx, shape, &r),
            Err(e) => {
                eprintln!("error: {shape}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    // A write that failed loses what was measured with the process: said
    // as an error, exit 2, and no "plans kept in".
    if let Some(e) = ctx.plan_cache().write_error {
        eprintln!("error: plan cache: {e}; the plans measured were not kept");
        return ExitCode::from(2);
    }
    if let Some(w) = ctx.plan_cache().warning {
        eprintln!("warning: plan cache: {w}");
    }
    if !args.json {
        match ctx.plan_cache().file {
            Some(f) => println!("plans kept in {}", f.display()),
            None => println!("plans kept in memory only"),
        }
    }
    ExitCode::SUCCESS
}

fn print_report(
    args: &TuneArgs,
    ctx: &gru_wgpu::gpu::GpuContext,
    shape: &BenchShape,
    r: &TuneReport,
) {
    if args.json {
        for c in &r.candidates {
            let line = Line {
                plan: c.plan.to_string(),
                median_ms: c.median_ms,
                chosen: c.chosen,
                min_ms: c.min_ms,
                stage: c.stage,
                steps: c.seq,
                samples_ms: &c.samples_ms,
                error: c.error.as_deref(),
                checked: c.checked,
                rejected: c.rejected.as_deref(),
                reference: r.reference.to_string(),
                checked_seq: r.checked.0,
                checked_batch: r.checked.1,
                cpu_checked: r.cpu_checked,
                adapter: ctx.adapter().to_string(),
                shape: *shape,
                mode: r.mode,
                seq_measured: r.seq_measured,
                clock: r.clock,
                key: &r.key,
                tuned_ms: r.tuned_ms,
            };
            println!("{}", serde_json::to_string(&line).expect("serializes"));
        }
        return;
    }
    println!(
        "\n{shape}: {} candidates ({} clock, {} mode), {:.0} ms",
        r.candidates.len(),
        r.clock,
        r.mode,
        r.tuned_ms
    );
    println!(
        "  results of the final round checked at T={}, B={} against {}{}",
        r.checked.0,
        r.checked.1,
        r.reference,
        if r.cpu_checked {
            " (itself checked against the f64 CPU reference)"
        } else {
            ""
        }
    );
    println!(
        "  {:<26} {:<5} {:>5} {:>12} {:>12}  samples (ms)",
        "plan", "stage", "steps", "median ms", "fastest ms"
    );
    for c in &r.candidates {
        let median = c
            .median_ms
            .map_or("failed".to_string(), |m| format!("{m:.3}"));
        let samples: Vec<String> = c.samples_ms.iter().map(|s| format!("{s:.3}")).collect();
        let mark = if c.chosen { "  <- chosen" } else { "" };
        let fastest = c.min_ms.map_or("-".to_string(), |m| format!("{m:.3}"));
        println!(
            "  {:<26} {:<5} {:>5} {:>12} {:>12}  {}{mark}",
            c.plan.to_string(),
            c.stage,
            c.seq,
            median,
            fastest,
            samples.join(" ")
        );
        if let Some(e) = &c.error {
            println!("      {e}");
        }
        if let Some(e) = &c.rejected {
            println!("      rejected: {e}");
        }
    }
}
