//! A model that really trains, entirely on the GPU: a GRU and a linear head
//! learn the adding problem (the sum of the two marked values of a
//! sequence), with Adam and gradient clipping (`trainer.rs`, the same
//! trainer `gru-wgpu train` runs). Prints the training loss as it goes and
//! the mean squared error on held-out sequences before and after.
//!
//! `cargo run --release --example adding`, or with settings:
//! `cargo run --release --example adding -- --seq 50 --steps 600 --hidden 32 --batch 64`
//! (also `--seed N`, `--lr X`, `--report-every N`).

#[path = "adding/trainer.rs"]
mod trainer;

use gru_wgpu::gpu::GpuContext;
use trainer::{train_adding, AddingOptions};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The settings: a short run by default (a few seconds on a GPU), which
/// learns the task well below the constant predictor's error.
fn options() -> Result<AddingOptions, String> {
    let mut o = AddingOptions {
        seq: 20,
        steps: 300,
        batch: 32,
        hidden: 24,
        held_out: 500,
        report_every: 25,
        ..Default::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--seq" => o.seq = value.parse().map_err(|e| bad(&e))?,
            "--steps" => o.steps = value.parse().map_err(|e| bad(&e))?,
            "--batch" => o.batch = value.parse().map_err(|e| bad(&e))?,
            "--hidden" => o.hidden = value.parse().map_err(|e| bad(&e))?,
            "--seed" => o.seed = value.parse().map_err(|e| bad(&e))?,
            "--lr" => o.lr = value.parse().map_err(|e| bad(&e))?,
            "--report-every" => o.report_every = value.parse().map_err(|e| bad(&e))?,
            _ => {
                return Err(format!(
                    "unknown flag {flag} (--seq, --steps, --batch, --hidden, --seed, --lr, --report-every)"
                ))
            }
        }
    }
    o.check().map_err(|e| e.to_string())?;
    Ok(o)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let o = options()?;
    let ctx = GpuContext::new()?;
    println!("adapter: {}", ctx.adapter());
    println!(
        "adding problem: T={}, batch {}, GRU hidden {}, Adam lr {}, {} steps, seed {}",
        o.seq, o.batch, o.hidden, o.lr, o.steps, o.seed
    );
    let r = train_adding(&ctx, &o, &mut |step, loss| {
        println!("step {step:>5}: training loss {loss:.4}");
    })?;
    println!("{}", r.timing());
    println!(
        "held-out mse: {:.4} before training, {:.5} after (predicting the constant 1 gives about 0.167)",
        r.initial_mse, r.held_out_mse
    );
    if r.held_out_mse < 0.05 && r.held_out_mse < r.initial_mse / 4.0 {
        println!("learnt: held-out mse below 0.05 and a quarter of the untrained model's: OK");
    } else {
        println!("not learnt yet: try more steps (--steps)");
    }
    Ok(())
}
