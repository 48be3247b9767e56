//! A regression head on the GPU: `nn.Linear(H, 1)` on a batch of hidden
//! states with `nn.MSELoss`, forward, loss and backward in one submission
//! (`shaders/head.wgsl`). With [`GpuGru`](crate::gpu::GpuGru), an optimiser
//! and [`clip_grad_norm`](crate::gpu::clip_grad_norm) it is what a
//! sequence-regression model needs; `examples/adding.rs` (its trainer,
//! `examples/adding/trainer.rs`) trains one with nothing but the public API.
//!
//! ```text
//! y_b  = h_b · w + c                     (B)      predictions
//! loss = mean_b (y_b - target_b)^2       (1)
//! dL/dh_b = 2 (y_b - target_b) / B · w   (B, H)   the GRU's dL/dh_n
//! dL/dw   = sum_b 2 (y_b - target_b) / B · h_b,  dL/dc = sum_b 2 (y_b - target_b) / B
//! ```

use crate::error::{GruError, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::ops::head::{encode_head, HeadOut};
use crate::gpu::optim::GpuOptimizer;
use crate::gpu::pool::PooledBuffer;

/// `nn.Linear(H, 1)` with the mean squared error, its parameters `[w; c]`
/// (`H + 1` floats) on the device.
#[derive(Debug)]
pub struct GpuLinearHead {
    ctx: GpuContext,
    hidden: usize,
    params: PooledBuffer,
}

/// What one [`GpuLinearHead::step`] leaves on the device.
#[derive(Debug)]
pub struct HeadStep {
    /// The predictions, `(B)`.
    pub predictions: PooledBuffer,
    /// The mean squared error, one float.
    pub loss: PooledBuffer,
    /// `dL/dh`, `(B, H)`: the `grad_h_n` of the GRU below.
    pub grad_h: PooledBuffer,
    /// `dL/d[w; c]`, `(H + 1)`.
    pub grad_params: PooledBuffer,
}

impl HeadStep {
    /// Reads the loss back (waits for the device).
    pub fn read_loss(&self, ctx: &GpuContext) -> Result<f32> {
        Ok(ctx.read_array(self.loss.buffer(), ndarray::Ix1(1))?[0])
    }
}

/// Checks a caller's buffer: `floats` of room, the usage `STORAGE`, made by
/// the device of `ctx`.
fn check_buffer(ctx: &GpuContext, name: &str, buf: &wgpu::Buffer, floats: usize) -> Result<()> {
    ctx.dev()
        .check_caller_buffer(name, buf, floats, wgpu::BufferUsages::STORAGE, "STORAGE")
}

impl GpuLinearHead {
    /// A head on `hidden` features with the parameters `[w; c]` (`hidden + 1` floats).
    pub fn new(ctx: &GpuContext, hidden: usize, params: &[f32]) -> Result<Self> {
        if hidden == 0 {
            return Err(GruError::InvalidConfig(
                "the head's hidden size is 0; it must be at least 1".into(),
            ));
        }
        if params.len() != hidden + 1 {
            return Err(GruError::LengthMismatch {
                name: "head parameters".into(),
                expected: hidden as u64 + 1,
                actual: params.len() as u64,
                unit: "floats (w, then c)",
            });
        }
        Ok(GpuLinearHead {
            ctx: ctx.clone(),
            hidden,
            params: ctx.upload("head parameters", params)?,
        })
    }

    test_hook! {
        /// Features in.
        pub fn hidden_size(&self) -> usize {
            self.hidden
        }
    }

    /// The parameters `[w; c]` on the device (`hidden + 1` floats).
    #[cfg(feature = "test-hooks")]
    pub fn param_buffer(&self) -> &wgpu::Buffer {
        self.params.buffer()
    }

    /// The parameters `[w; c]`, read back.
    pub fn params(&self) -> Result<Vec<f32>> {
        Ok(self
            .ctx
            .read_array(self.params.buffer(), ndarray::Ix1(self.hidden + 1))?
            .to_vec())
    }

    /// Forward, loss and backward on `h` `(batch, H)` against `targets`
    /// `(batch)`, both device buffers with the usage `STORAGE` holding f32
    /// values (the output of a model in f32; the head has no f16 mode): one
    /// submission, nothing read back.
    pub fn step(&self, h: &wgpu::Buffer, targets: &wgpu::Buffer, batch: usize) -> Result<HeadStep> {
        if batch == 0 {
            return Err(GruError::InvalidConfig(
                "the head's batch is 0; it must be at least 1".into(),
            ));
        }
        let rows = crate::error::elements("h", &[batch, self.hidden])?;
        check_buffer(&self.ctx, "h", h, rows)?;
        check_buffer(&self.ctx, "targets", targets, batch)?;
        let ctx = &self.ctx;
        ctx.scoped(|| {
            let out = HeadStep {
                predictions: ctx.storage("head predictions", batch)?,
                loss: ctx.storage("head loss", 1)?,
                grad_h: ctx.storage("head gradient of h", rows)?,
                grad_params: ctx.storage("head parameter gradients", self.hidden + 1)?,
            };
            let dy = ctx.storage("head output gradient", batch)?;
            let mut rec = ctx.recorder(false);
            encode_head(
                &mut rec,
                [batch, self.hidden],
                h,
                self.params.buffer(),
                targets,
                &HeadOut {
                    y: out.predictions.buffer(),
                    dy: dy.buffer(),
                    loss: out.loss.buffer(),
                    dh: out.grad_h.buffer(),
                    dp: out.grad_params.buffer(),
                },
            )?;
            rec.submit()?;
            Ok(out)
        })
    }

    /// One optimiser step of the parameters from a step's gradients.
    pub fn update(&self, opt: &mut GpuOptimizer, step: &HeadStep) -> Result<()> {
        opt.step(
            &[self.params.buffer()],
            &[step.grad_params.buffer()],
            &[self.hidden + 1],
        )
    }
}
