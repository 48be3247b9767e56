//! `gru-wgpu train --task adding --seq N --steps N --seed N`

use std::path::PathBuf;
use std::process::ExitCode;

use gru_wgpu::train::{train_adding, AddingOptions};
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
    #[arg(long, default_value_t = 1e-2)]
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
    let ctx = match super::open_gpu(adapter) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!(
                "(on Linux, `apt-get install mesa-vulkan-drivers` gives a software Vulkan device)"
            );
            return ExitCode::from(2);
        }
    };
    let o = AddingOptions {
        seq: args.seq,
        steps: args.steps,
        seed: args.seed,
        hidden: args.hidden,
        batch: args.batch,
        lr: args.lr,
        ..Default::default()
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
    println!(
        "trained {} steps in {:.1} s ({:.1} ms a step); last training loss {:.4}",
        report.steps,
        report.seconds,
        report.seconds * 1e3 / report.steps as f64,
        report.losses.last().map_or(f32::NAN, |l| l.1)
    );
    match plot(&args.plot, &report.losses) {
        Ok(()) => println!("loss curve written to {}", args.plot.display()),
        Err(e) => eprintln!("error: {}: {e}", args.plot.display()),
    }
    println!("held-out mse: {:.5}", report.held_out_mse);
    ExitCode::SUCCESS
}

fn plot(path: &PathBuf, losses: &[(usize, f32)]) -> Result<(), String> {
    use plotters::prelude::*;
    let xmax = losses.last().map_or(1, |l| l.0) as f64;
    let ymax = losses.iter().map(|l| l.1 as f64).fold(0.2, f64::max);
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "GRU on the adding problem: training loss",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..xmax, 0.0..ymax)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("mean squared error")
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(LineSeries::new(
            losses.iter().map(|&(s, l)| (s as f64, l as f64)),
            BLUE.stroke_width(2),
        ))
        .map_err(|e| e.to_string())?
        .label("training batch")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            [(0.0, 1.0 / 6.0), (xmax, 1.0 / 6.0)],
            RED.stroke_width(1),
        ))
        .map_err(|e| e.to_string())?
        .label("constant predictor (1/6)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED.stroke_width(1)));
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
