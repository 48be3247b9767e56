//! `gru-wgpu train --task adding --seq N --steps N --seed N`

use std::path::PathBuf;
use std::process::ExitCode;

use crate::train::{train_adding, AddingOptions};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Args, Clone, Debug)]
pub struct TrainArgs {
    /// The task: `adding` (the sum of the two marked values of a sequence).
    #[arg(long, value_enum, default_value_t = Task::Adding)]
    pub task: Task,
    /// Sequence length.
    #[arg(long, default_value_t = 50)]
    pub seq: usize,
    /// Training steps (batches).
    #[arg(long, default_value_t = 600)]
    pub steps: usize,
    /// Seed of the initialisation and the data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Hidden units of the GRU.
    #[arg(long, default_value_t = 32)]
    pub hidden: usize,
    /// Sequences per batch.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-2, allow_negative_numbers = true)]
    pub lr: f32,
    /// The loss curve, as SVG.
    #[arg(long, default_value = "train_loss.svg")]
    pub plot: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Task {
    Adding,
}

pub fn run(args: &TrainArgs, adapter: Option<&str>) -> ExitCode {
    let o = AddingOptions {
        seq: args.seq,
        steps: args.steps,
        seed: args.seed,
        hidden: args.hidden,
        batch: args.batch,
        lr: args.lr,
        ..Default::default()
    };
    if let Err(e) = o.check() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if let Err(e) = super::check_writable(&args.plot) {
        eprintln!("error: {}: {e}", args.plot.display());
        return ExitCode::from(2);
    }
    let ctx = match super::open_gpu_or_report(adapter) {
        Ok(c) => c,
        Err(code) => return code,
    };
    println!("adapter: {}", ctx.adapter());
    println!(
        "task: adding, T={}, batch {}, GRU hidden {}, Adam lr {}, gradient norm clipped to {}, {} steps, seed {}",
        o.seq, o.batch, o.hidden, o.lr, o.clip, o.steps, o.seed
    );
    let bar = ProgressBar::new(o.steps as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} steps, {elapsed} elapsed, ~{eta} left, loss {msg}",
        )
        .expect("a valid template"),
    );
    let report = match train_adding(&ctx, &o, &mut |step, loss| {
        bar.set_position(step as u64);
        bar.set_message(format!("{loss:.4}"));
    }) {
        Ok(r) => r,
        Err(e) => {
            bar.abandon();
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    bar.finish_and_clear();
    println!(
        "held-out mse before training: {:.4} (predicting the constant 1 gives about 0.167)",
        report.initial_mse
    );
    println!("{}", report.timing());
    let status = match plot(&args.plot, &report.losses) {
        Ok(()) => {
            println!("loss curve written to {}", args.plot.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}: {e}", args.plot.display());
            ExitCode::from(2)
        }
    };
    println!("held-out mse: {:.5}", report.held_out_mse);
    status
}

fn plot(path: &std::path::Path, losses: &[(usize, f32)]) -> Result<(), String> {
    let last = losses.last().map_or(1.0, |l| l.0 as f64);
    let series = [
        super::Series {
            label: "training batch".into(),
            points: losses.iter().map(|&(s, l)| (s as f64, l as f64)).collect(),
            dots: false,
        },
        super::Series {
            label: "constant predictor (1/6)".into(),
            points: vec![(0.0, 1.0 / 6.0), (last, 1.0 / 6.0)],
            dots: false,
        },
    ];
    super::line_chart(
        path,
        "GRU on the adding problem: training loss",
        "step",
        "mean squared error",
        &series,
    )
}
