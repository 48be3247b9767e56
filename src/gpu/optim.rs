//! Optimisers and gradient clipping on the GPU, with PyTorch's update rules
//! (see [`crate::optim`] for the same rules on the CPU, and
//! `shaders/optim.wgsl`). Nothing is read back to the host.

use crate::error::{GruError, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::gru::{GpuBackward, GpuGru, RecordUpdate};
use crate::gpu::ops::optim::{
    encode_adam, encode_clip_coef, encode_scale, encode_sgd, encode_sumsq,
};
use crate::gpu::pool::PooledBuffer;
use crate::gpu::recorder::Recorder;
use crate::optim::{Adam, Sgd};

/// The update rule of a [`GpuOptimizer`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Rule {
    Sgd(Sgd),
    Adam(Adam),
}

impl From<Sgd> for Rule {
    fn from(s: Sgd) -> Rule {
        Rule::Sgd(s)
    }
}

impl From<Adam> for Rule {
    fn from(a: Adam) -> Rule {
        Rule::Adam(a)
    }
}

impl GpuGru {
    /// One optimiser step on the parameters from a backward's gradients, then
    /// the derived copies of the weights: one submission, all on the device.
    pub fn update(&self, opt: &mut GpuOptimizer, grads: &GpuBackward) -> Result<()> {
        let g: Vec<&PooledBuffer> = grads.grads.iter().flat_map(|l| l.tensors()).collect();
        self.update_from(opt, &g)
    }
}

/// An optimiser whose state (momentum buffers, moment estimates) lives on the
/// device, one state per parameter tensor, in the order the tensors are given.
pub struct GpuOptimizer {
    ctx: GpuContext,
    rule: Rule,
    lens: Vec<usize>,
    state: Vec<(PooledBuffer, PooledBuffer)>,
    steps: u64,
}

impl std::fmt::Debug for GpuOptimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuOptimizer")
            .field("rule", &self.rule)
            .field("steps", &self.steps)
            .finish()
    }
}

impl GpuOptimizer {
    /// An optimiser of `rule` (an [`Sgd`] or an [`Adam`], or a [`Rule`]).
    pub fn new(ctx: &GpuContext, rule: impl Into<Rule>) -> Self {
        GpuOptimizer {
            ctx: ctx.clone(),
            rule: rule.into(),
            lens: Vec::new(),
            state: Vec::new(),
            steps: 0,
        }
    }

    test_hook! {
        pub fn rule(&self) -> &Rule {
            &self.rule
        }
    }

    /// Changes the learning rate for the next steps (a schedule).
    pub fn set_lr(&mut self, lr: f32) {
        match &mut self.rule {
            Rule::Sgd(s) => s.lr = lr,
            Rule::Adam(a) => a.lr = lr,
        }
    }

    test_hook! {
        /// Steps taken so far.
        pub fn steps(&self) -> u64 {
            self.steps
        }
    }

    /// Updates `params[i]` (of `lens[i]` floats) from `grads[i]`: one
    /// submission. Buffers of another device than the optimiser's are
    /// refused ([`GruError::ForeignBuffer`]).
    pub fn step(
        &mut self,
        params: &[&wgpu::Buffer],
        grads: &[&wgpu::Buffer],
        lens: &[usize],
    ) -> Result<()> {
        let ctx = self.ctx.clone();
        for (what, bufs) in [("parameter", params), ("gradient", grads)] {
            for (i, b) in bufs.iter().enumerate() {
                ctx.dev().check_owned(&format!("{what} {i}"), b)?;
            }
        }
        ctx.scoped(|| {
            let mut rec = ctx.recorder(false);
            self.record_update(&mut rec, params, grads, lens)?;
            rec.submit()?;
            Ok(())
        })
    }
}

impl RecordUpdate for GpuOptimizer {
    /// Records one step into `rec`.
    fn record_update(
        &mut self,
        rec: &mut Recorder,
        params: &[&wgpu::Buffer],
        grads: &[&wgpu::Buffer],
        lens: &[usize],
    ) -> Result<()> {
        match self.rule {
            Rule::Sgd(o) => o.check()?,
            Rule::Adam(o) => o.check()?,
        }
        // Its state lives on the device of its own context.
        if !std::ptr::eq(rec.dev, self.ctx.dev()) {
            return Err(GruError::ForeignBuffer {
                name: "the optimiser state".into(),
            });
        }
        if params.len() != lens.len() || grads.len() != lens.len() {
            return Err(GruError::InvalidConfig(format!(
                "an optimiser step takes as many gradients and lengths as parameters: {} parameters, {} gradients, {} lengths",
                params.len(),
                grads.len(),
                lens.len()
            )));
        }
        for (i, ((p, g), &len)) in params.iter().zip(grads).zip(lens).enumerate() {
            for (what, b) in [("parameter", p), ("gradient", g)] {
                let has = crate::gpu::pool::data_bytes(b);
                if has < (len as u64) * 4 {
                    return Err(GruError::LengthMismatch {
                        name: format!("{what} {i}"),
                        expected: (len as u64) * 4,
                        actual: has,
                        unit: "bytes (at least)",
                    });
                }
            }
        }
        if self.state.is_empty() {
            for &len in lens {
                let a = self.ctx.storage("optimiser state", len)?;
                let b = self.ctx.storage("optimiser state", len)?;
                rec.clear(a.buffer(), 0, (len * 4) as u64);
                rec.clear(b.buffer(), 0, (len * 4) as u64);
                self.state.push((a, b));
            }
            self.lens = lens.to_vec();
        } else if self.lens != lens {
            return Err(GruError::InvalidConfig(format!(
                "this optimiser was set up for tensors of {:?} floats; the step got {:?}",
                self.lens, lens
            )));
        }
        self.steps += 1;
        for (i, ((p, g), &len)) in params.iter().zip(grads).zip(lens).enumerate() {
            let (s1, s2) = (self.state[i].0.buffer(), self.state[i].1.buffer());
            match self.rule {
                Rule::Sgd(o) => encode_sgd(rec, &o, self.steps == 1, len, [p, g, s1])?,
                Rule::Adam(o) => encode_adam(rec, &o, self.steps, len, [p, g, s1, s2])?,
            }
        }
        Ok(())
    }
}

/// Scales the gradients so that their global norm (the norm of the tensors'
/// norms) is at most `max_norm`, as `torch.nn.utils.clip_grad_norm_`; one
/// submission, nothing read back. Returns the norm before clipping, on the
/// device: read it with [`GradNorm::read`] if wanted.
pub fn clip_grad_norm(
    ctx: &GpuContext,
    grads: &[&wgpu::Buffer],
    lens: &[usize],
    max_norm: f32,
) -> Result<GradNorm> {
    ctx.scoped(|| {
        let mut rec = ctx.recorder(false);
        let norm = record_clip(ctx, &mut rec, grads, lens, max_norm)?;
        rec.submit()?;
        Ok(norm)
    })
}

pub(crate) fn record_clip(
    ctx: &GpuContext,
    rec: &mut Recorder,
    grads: &[&wgpu::Buffer],
    lens: &[usize],
    max_norm: f32,
) -> Result<GradNorm> {
    if grads.len() != lens.len() {
        return Err(GruError::InvalidConfig(format!(
            "{} gradients but {} lengths",
            grads.len(),
            lens.len()
        )));
    }
    if !max_norm.is_finite() || max_norm < 0.0 {
        return Err(GruError::InvalidConfig(format!(
            "max_norm is {max_norm}; it must be a finite number of at least 0"
        )));
    }
    for (i, (g, &len)) in grads.iter().zip(lens).enumerate() {
        ctx.dev().check_caller_buffer(
            &format!("gradient {i}"),
            g,
            len,
            wgpu::BufferUsages::STORAGE,
            "STORAGE",
        )?;
    }
    let n = grads.len();
    // norms: n squared norms, then the total and the coefficient.
    let norms = ctx.storage("gradient norms", n + 2)?;
    for (i, (g, &len)) in grads.iter().zip(lens).enumerate() {
        encode_sumsq(rec, g, len, norms.buffer(), i)?;
    }
    encode_clip_coef(rec, norms.buffer(), n, max_norm)?;
    for (g, &len) in grads.iter().zip(lens) {
        encode_scale(rec, g, len, norms.buffer(), n + 1)?;
    }
    Ok(GradNorm { buf: norms, at: n })
}

/// The global norm of some gradients, on the device.
#[derive(Debug)]
pub struct GradNorm {
    buf: PooledBuffer,
    at: usize,
}

impl GradNorm {
    /// Reads the norm back (waits for the device); `ctx` is the context
    /// that computed it ([`GruError::ForeignBuffer`] otherwise).
    pub fn read(&self, ctx: &GpuContext) -> Result<f32> {
        ctx.dev()
            .check_owned("the gradient norm", self.buf.buffer())?;
        Ok(ctx.dev().read_back(self.buf.buffer(), self.at, 1)?[0])
    }
}
