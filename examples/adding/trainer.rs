//! A model that really trains, entirely on the GPU: a GRU and a linear head
//! learn the adding problem.
//!
//! One file, included where it is needed: the example `examples/adding.rs`,
//! the binary's `gru-wgpu train` (`src/main.rs`, module `train`) and the
//! tests `tests/train.rs` and `tests/hostile.rs`. It uses nothing but the
//! library's public API.
//!
//! The adding problem (Hochreiter and Schmidhuber): each step of a sequence
//! carries a value drawn from U(0, 1) and a marker; exactly two steps are
//! marked (one in each half of the sequence), and the target is the sum of
//! their two values. Predicting the constant 1 gives a mean squared error of
//! 2/12 ≈ 0.167; a GRU that has learnt to find and add the marked values
//! drives it towards 0.
//!
//! Each training step: one batch drawn on the host and uploaded; the GRU's
//! forward (`GpuGru::forward` on device buffers); the head's forward, loss and backward
//! (`head.wgsl`); the GRU's backward with the head's gradient as `dL/dh_n`;
//! gradient clipping by global norm; one Adam step for the GRU and one for
//! the head. All of it runs on the device; only the loss is read back, every
//! `report_every` steps, for the progress display and the loss curve.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use gru_wgpu::error::{GruError, Result};
use gru_wgpu::gpu::{
    clip_grad_norm, BackwardOptions, ForwardOptions, GpuContext, GpuGru, GpuLinearHead,
    GpuOptimizer, OnDevice, PooledBuffer,
};
use gru_wgpu::optim::Adam;
use gru_wgpu::{GruConfig, GruParams};

/// The settings of a training run.
#[derive(Clone, Debug)]
pub struct AddingOptions {
    /// Sequence length T.
    pub seq: usize,
    /// Training steps (batches).
    pub steps: usize,
    pub seed: u64,
    pub hidden: usize,
    pub batch: usize,
    /// Adam's learning rate.
    pub lr: f32,
    /// The gradient's global norm is clipped to this.
    pub clip: f32,
    /// Held-out sequences for the final evaluation (drawn from another seed).
    pub held_out: usize,
    /// The loss is read back every this many steps (and at the last).
    pub report_every: usize,
}

impl Default for AddingOptions {
    fn default() -> Self {
        AddingOptions {
            seq: 50,
            steps: 600,
            seed: 1,
            hidden: 32,
            batch: 64,
            lr: 1e-2,
            clip: 1.0,
            held_out: 1000,
            report_every: 10,
        }
    }
}

impl AddingOptions {
    /// Refuses settings that cannot train: a sequence shorter than 2 steps,
    /// a size of 0, a learning rate or clipping norm that is not a finite
    /// number of at least 0 (above 0 for the norm), a report interval of 0.
    pub fn check(&self) -> Result<()> {
        if self.seq < 2 {
            return Err(GruError::InvalidConfig(format!(
                "the adding problem needs a sequence of at least 2 steps, got {}",
                self.seq
            )));
        }
        for (name, v) in [
            ("steps", self.steps),
            ("batch", self.batch),
            ("hidden", self.hidden),
            ("held_out", self.held_out),
            ("report_every", self.report_every),
        ] {
            if v == 0 {
                return Err(GruError::InvalidConfig(format!(
                    "{name} is 0; it must be at least 1"
                )));
            }
        }
        Adam::new(self.lr).check()?;
        if !(self.clip.is_finite() && self.clip > 0.0) {
            return Err(GruError::InvalidConfig(format!(
                "the gradient clipping norm is {}; it must be a finite number above 0",
                self.clip
            )));
        }
        Ok(())
    }
}

/// What a training run did.
#[derive(Clone, Debug)]
pub struct TrainReport {
    pub steps: usize,
    /// `(step, training loss of that step's batch)`, every `report_every` steps.
    pub losses: Vec<(usize, f32)>,
    /// The mean squared error on the held-out sequences after training.
    pub held_out_mse: f32,
    /// The same before training (about 0.167 and more for an untrained model).
    pub initial_mse: f32,
    /// Wall time of the training loop, in seconds.
    pub seconds: f64,
}

impl TrainReport {
    /// The line that sums the run up: steps, time, the last training loss.
    pub fn timing(&self) -> String {
        format!(
            "trained {} steps in {:.1} s ({:.1} ms a step); last training loss {:.4}",
            self.steps,
            self.seconds,
            self.seconds * 1e3 / self.steps as f64,
            self.losses.last().map_or(f32::NAN, |l| l.1)
        )
    }
}

/// A batch of the adding problem: inputs `(T, B, 2)` sequence-first
/// (value, marker) and targets `(B)`.
pub fn adding_batch(rng: &mut ChaCha8Rng, seq: usize, batch: usize) -> (Vec<f32>, Vec<f32>) {
    let mut x = vec![0.0f32; seq * batch * 2];
    let mut y = vec![0.0f32; batch];
    let half = (seq / 2).max(1);
    for b in 0..batch {
        for t in 0..seq {
            x[(t * batch + b) * 2] = rng.random_range(0.0f32..1.0);
        }
        let first = rng.random_range(0..half);
        let second = if seq > 1 {
            rng.random_range(half.min(seq - 1)..seq)
        } else {
            0
        };
        for &t in &[first, second] {
            x[(t * batch + b) * 2 + 1] = 1.0;
        }
        y[b] = x[(first * batch + b) * 2]
            + if second != first {
                x[(second * batch + b) * 2]
            } else {
                0.0
            };
    }
    (x, y)
}

/// The mean squared error of the model on `n` sequences drawn from `seed`.
fn evaluate(
    ctx: &GpuContext,
    model: &GpuGru,
    head: &GpuLinearHead,
    seq: usize,
    n: usize,
    seed: u64,
) -> Result<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (x, y) = adding_batch(&mut rng, seq, n);
    let xb = ctx.upload("held-out inputs", &x)?;
    let yb = ctx.upload("held-out targets", &y)?;
    let input = OnDevice {
        buffer: xb.buffer(),
        seq_len: seq,
        batch: n,
    };
    let f = model.forward(input, ForwardOptions::default())?;
    head.step(f.h_n.buffer(), yb.buffer(), n)?.read_loss(ctx)
}

/// Trains a GRU (one layer, `hidden` units) and a linear head on the adding
/// problem. `on_report(step, loss)` is called every `report_every` steps.
pub fn train_adding(
    ctx: &GpuContext,
    o: &AddingOptions,
    on_report: &mut dyn FnMut(usize, f32),
) -> Result<TrainReport> {
    o.check()?;
    let (t, b, h) = (o.seq, o.batch, o.hidden);
    let config = GruConfig::new(2, h);
    config.validate()?;
    // The host holds one batch (or the held-out set) of inputs at a time,
    // and the parameters with their upload copy.
    let rows = b.max(o.held_out);
    let host = gru_wgpu::memory::sum(&[
        gru_wgpu::memory::bytes_of(t, 8).saturating_mul(rows as u64),
        gru_wgpu::memory::bytes_of(config.param_count()?, 8),
    ]);
    gru_wgpu::memory::check_host(
        &format!("the adding problem's data (T={t}, {rows} sequences) and parameters"),
        host,
    )?;
    let model = GpuGru::new(ctx, &GruParams::<f32>::init(&config, o.seed)?)?;
    model.check_fits(t, b)?;
    model.check_fits(t, o.held_out)?;
    // nn.Linear(H, 1)'s initialisation: U(-1/sqrt(H), 1/sqrt(H)) for weight and bias.
    let mut rng = ChaCha8Rng::seed_from_u64(o.seed ^ 0x5eed);
    let k = 1.0 / (h as f32).sqrt();
    let p0: Vec<f32> = (0..=h).map(|_| rng.random_range(-k..k)).collect();
    let head = GpuLinearHead::new(ctx, h, &p0)?;
    let held_out_seed = o.seed.wrapping_add(1_000_003);
    let initial_mse = evaluate(ctx, &model, &head, t, o.held_out, held_out_seed)?;

    // The batch's buffers, written anew at every step; the output's gradient
    // is zero (the loss sees only h_n).
    let xb = ctx.upload("inputs", &vec![0.0; t * b * 2])?;
    let yb = ctx.upload("targets", &vec![0.0; b])?;
    let zeros = ctx.upload("zero output gradient", &vec![0.0; t * b * h])?;
    let adam = Adam::new(o.lr);
    let mut opt_gru = GpuOptimizer::new(ctx, adam);
    let mut opt_head = GpuOptimizer::new(ctx, adam);
    let mut losses = Vec::new();
    let start = Instant::now();
    for step in 1..=o.steps {
        let (x, y) = adding_batch(&mut rng, t, b);
        ctx.queue()
            .write_buffer(xb.buffer(), 0, bytemuck::cast_slice(&x));
        ctx.queue()
            .write_buffer(yb.buffer(), 0, bytemuck::cast_slice(&y));
        let input = OnDevice {
            buffer: xb.buffer(),
            seq_len: t,
            batch: b,
        };
        // GRU forward (keeping the tape), the head's loss and gradients,
        // the GRU's backward from the head's dL/dh_n.
        let f = model.forward(input, ForwardOptions::default().keep_tape())?;
        let hs = head.step(f.h_n.buffer(), yb.buffer(), b)?;
        let tape = f.tape.expect("kept");
        let opts = BackwardOptions::default().grad_h_n(hs.grad_h.buffer());
        let g = model.backward(tape, zeros.buffer(), opts)?;
        // Clip the global norm of every gradient, the head's included, then step.
        let grads: Vec<&PooledBuffer> = g
            .grads
            .iter()
            .flat_map(|l| l.tensors())
            .chain([&hs.grad_params])
            .collect();
        let bufs: Vec<&wgpu::Buffer> = grads.iter().map(|p| p.buffer()).collect();
        let lens: Vec<usize> = grads.iter().map(|p| p.len()).collect();
        clip_grad_norm(ctx, &bufs, &lens, o.clip)?;
        head.update(&mut opt_head, &hs)?;
        model.update(&mut opt_gru, &g)?;
        if step % o.report_every == 0 || step == o.steps {
            let loss = hs.read_loss(ctx)?;
            losses.push((step, loss));
            on_report(step, loss);
        }
    }
    ctx.synchronize()?;
    let seconds = start.elapsed().as_secs_f64();
    let held_out_mse = evaluate(ctx, &model, &head, t, o.held_out, held_out_seed)?;
    Ok(TrainReport {
        steps: o.steps,
        losses,
        held_out_mse,
        initial_mse,
        seconds,
    })
}
