//! `nn.GRUCell` on the GPU: the cell of the NumPy original, with its tape on
//! the device.
//!
//! `forward(x_t, h_prev)` runs one step and pushes what its backward needs
//! (the step's input, states and gates) onto the tape; `backward(dh)` pops the
//! newest step, returns `dx_t` and `dh_prev`, and adds the step's parameter
//! gradients to the cell's accumulated gradients. Any number of steps,
//! interleaved with the caller's own work, backpropagate through time, and
//! nothing is read back to the host between steps: inputs and results are
//! device buffers. A step is the GRU layer's forward for `T = 1`, a backward
//! step its backward plus the accumulation, each one submission.

use ndarray::{Array1, Array2, ArrayView2};

use crate::config::{GruConfig, Precision};
use crate::error::{check_shape, GruError, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::gru::{ForwardOptions, GpuGru, GpuTape, OnDevice};
use crate::gpu::ops::util::encode_add;
use crate::gpu::optim::GpuOptimizer;
use crate::gpu::pool::PooledBuffer;
use crate::params::{DirParams, GruParams};

/// A GRU cell whose parameters, tape and gradients live on the GPU.
/// Parameter names are `nn.GRUCell`'s: `weight_ih (3H, I)`, `weight_hh (3H,
/// H)`, `bias_ih (3H)`, `bias_hh (3H)`.
pub struct GpuGruCell {
    model: GpuGru,
    tape: Vec<GpuTape>,
    /// Accumulated gradients, in the order of `GpuGru::param_buffers`.
    grads: Vec<PooledBuffer>,
}

impl std::fmt::Debug for GpuGruCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuGruCell")
            .field("input_size", &self.input_size())
            .field("hidden_size", &self.hidden_size())
            .field("tape_len", &self.tape.len())
            .finish()
    }
}

impl GpuGruCell {
    /// A cell with the given parameters (checked as the CPU cell checks them).
    pub fn new(ctx: &GpuContext, params: &DirParams<f32>) -> Result<Self> {
        Self::with_precision(ctx, params, Precision::F32)
    }

    /// [`new`](Self::new) storing its weights and states in `precision`
    /// (see [`Precision`]: in f16 the device buffers of `x`, `h_prev` and
    /// `h_next` hold f16 values, made and read by `GpuGru::upload_input`
    /// and `read_stored` of [`model`](Self::model); the gradients stay f32).
    pub fn with_precision(
        ctx: &GpuContext,
        params: &DirParams<f32>,
        precision: Precision,
    ) -> Result<Self> {
        // The CPU cell's checks: consistent shapes, no zero size, both biases or neither.
        crate::cpu::GruCell::from_params(params.clone())?;
        let (input, hidden) = (params.weight_ih.ncols(), params.weight_hh.ncols());
        let config = GruConfig::new(input, hidden)
            .bias(params.bias_ih.is_some())
            .precision(precision);
        let mut p = GruParams::<f32>::zeros(&config)?;
        *p.dir_mut(0, 0)? = params.clone();
        let model = GpuGru::new(ctx, &p)?;
        let grads = model
            .param_buffers()
            .iter()
            .map(|(_, len)| ctx.storage("accumulated gradient", *len))
            .collect::<Result<Vec<_>>>()?;
        let cell = GpuGruCell {
            model,
            tape: Vec::new(),
            grads,
        };
        cell.zero_grad()?;
        Ok(cell)
    }

    /// A cell with PyTorch's default initialisation from `seed`.
    pub fn init(
        ctx: &GpuContext,
        input_size: usize,
        hidden_size: usize,
        bias: bool,
        seed: u64,
    ) -> Result<Self> {
        let config = GruConfig::new(input_size, hidden_size).bias(bias);
        let p = GruParams::<f32>::init(&config, seed)?;
        Self::new(ctx, p.dir(0, 0)?)
    }

    pub(crate) fn input_size(&self) -> usize {
        self.model.config().input_size
    }

    pub(crate) fn hidden_size(&self) -> usize {
        self.model.config().hidden_size
    }

    pub(crate) fn context(&self) -> &GpuContext {
        self.model.context()
    }

    /// The one-step GRU that runs the cell.
    pub fn model(&self) -> &GpuGru {
        &self.model
    }

    /// Steps on the tape, waiting for their backward.
    pub fn tape_len(&self) -> usize {
        self.tape.len()
    }

    /// Forgets every step on the tape.
    pub fn clear_tape(&mut self) {
        self.tape.clear();
    }

    /// One step: `x` holds `(B, I)`, `h_prev` `(B, H)` (device buffers with the
    /// usage `COPY_SRC`, such as the buffers this cell returns). Returns
    /// `h_next` `(B, H)` and pushes the step onto the tape.
    pub fn forward(
        &mut self,
        x: &wgpu::Buffer,
        h_prev: &wgpu::Buffer,
        batch: usize,
    ) -> Result<PooledBuffer> {
        let dev = self.model.context().dev();
        dev.check_owned("x", x)?;
        dev.check_owned("h_prev", h_prev)?;
        let x = OnDevice {
            buffer: x,
            seq_len: 1,
            batch,
        };
        let f = self
            .model
            .forward(x, ForwardOptions::default().h0(h_prev).keep_tape())?;
        self.tape.push(f.tape.expect("kept"));
        Ok(f.h_n)
    }

    /// Pops the newest step: from `dh_next` `(B, H)`, the gradient of the loss
    /// with respect to that step's `h_next`, returns `(dx, dh_prev)` and adds
    /// the step's parameter gradients to the accumulated ones.
    pub fn backward(&mut self, dh_next: &wgpu::Buffer) -> Result<(PooledBuffer, PooledBuffer)> {
        self.backward_as(dh_next, "backward")
    }

    /// [`backward`](Self::backward), its errors naming the call `name`.
    fn backward_as(
        &mut self,
        dh_next: &wgpu::Buffer,
        name: &str,
    ) -> Result<(PooledBuffer, PooledBuffer)> {
        let tape = self
            .tape
            .pop()
            .ok_or_else(|| GruError::Tape(format!("{name} called with no step on the tape")))?;
        let checked = self.model.check_tape(&tape).and_then(|_| {
            let dev = self.model.context().dev();
            dev.check_owned("dh_next", dh_next)
        });
        if let Err(e) = checked {
            self.tape.push(tape);
            return Err(e);
        }
        let batch = tape.dims().1;
        let need = (batch * self.hidden_size() * 4) as u64;
        let has = crate::gpu::pool::data_bytes(dh_next);
        if has < need {
            self.tape.push(tape);
            return Err(GruError::LengthMismatch {
                name: "dh_next".into(),
                expected: need,
                actual: has,
                unit: "bytes (at least)",
            });
        }
        let model = &self.model;
        let grads = &self.grads;
        let ctx = model.context().clone();
        let out = ctx.scoped(|| {
            let mut rec = model.recorder();
            // The step's h_next is the output of a sequence of one step.
            let out = model.record_backward(&mut rec, &tape, dh_next, None)?;
            let step_grads = out.grads[0].iter().flatten();
            for (acc, g) in grads.iter().zip(step_grads) {
                encode_add(&mut rec, acc.len(), g.buffer(), acc.buffer())?;
            }
            // Refused, as above, where the parameters changed meanwhile.
            model.finish_backward(rec, &tape)?;
            Ok((out.grad_x, out.grad_h0))
        });
        if let Err(GruError::StaleTape { .. }) = out {
            self.tape.push(tape);
        }
        out
    }

    /// Sets the accumulated gradients to zero.
    pub fn zero_grad(&self) -> Result<()> {
        let ctx = self.model.context();
        ctx.scoped(|| {
            let mut enc = ctx
                .device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("gru-wgpu zero_grad"),
                });
            for g in &self.grads {
                enc.clear_buffer(g.buffer(), 0, Some((g.len() * 4) as u64));
            }
            ctx.queue().submit(Some(enc.finish()));
            Ok(())
        })
    }

    /// The accumulated gradients, read back.
    pub fn grads(&self) -> Result<DirParams<f32>> {
        let ctx = self.model.context();
        let data = ctx.scoped(|| {
            let mut rec = self.model.recorder();
            let mut reads = Vec::new();
            for g in &self.grads {
                let st = ctx.staging((g.len() * 4) as u64);
                rec.copy(g.buffer(), 0, st.buffer(), 0, (g.len() * 4) as u64);
                reads.push((st, g.len()));
            }
            rec.submit()?;
            ctx.read_staging(&reads.iter().map(|(b, l)| (b, *l)).collect::<Vec<_>>())
        })?;
        let (i, h) = (self.input_size(), self.hidden_size());
        let mut it = data.into_iter();
        let weight_ih =
            Array2::from_shape_vec((3 * h, i), it.next().expect("read")).expect("length matches");
        let weight_hh =
            Array2::from_shape_vec((3 * h, h), it.next().expect("read")).expect("length matches");
        let has_bias = self.grads.len() == 4;
        let bias_ih = has_bias.then(|| Array1::from(it.next().expect("read")));
        let bias_hh = has_bias.then(|| Array1::from(it.next().expect("read")));
        Ok(DirParams {
            weight_ih,
            weight_hh,
            bias_ih,
            bias_hh,
        })
    }

    /// The parameters, read back.
    pub fn params(&self) -> Result<DirParams<f32>> {
        Ok(self.model.params()?.dir(0, 0)?.clone())
    }

    /// One optimiser step from the accumulated gradients (which it leaves as they are).
    pub fn update(&self, opt: &mut GpuOptimizer) -> Result<()> {
        let g: Vec<&PooledBuffer> = self.grads.iter().collect();
        self.model.update_from(opt, &g)
    }

    /// [`forward`](Self::forward) from host arrays `x: (B, I)`, `h_prev: (B, H)`,
    /// reading `h_next` back.
    pub fn forward_array(
        &mut self,
        x: ArrayView2<f32>,
        h_prev: ArrayView2<f32>,
    ) -> Result<Array2<f32>> {
        let b = x.nrows();
        check_shape("x", &[b, self.input_size()], x.shape(), &["B", "I"])?;
        check_shape(
            "h_prev",
            &[b, self.hidden_size()],
            h_prev.shape(),
            &["B", "H"],
        )?;
        // (In the model's storage precision: converted on the device in f16.)
        let std = |a: ArrayView2<f32>| a.iter().copied().collect::<Vec<_>>();
        let xb = self.model.upload_input("x", &std(x))?;
        let hb = self.model.upload_input("h_prev", &std(h_prev))?;
        let h = self.forward(xb.buffer(), hb.buffer(), b)?;
        let v = self.model.read_stored(h.buffer(), h.len())?;
        Ok(Array2::from_shape_vec((b, self.hidden_size()), v).expect("length matches"))
    }

    /// [`backward`](Self::backward) from a host array `dh_next: (B, H)`,
    /// reading `(dx, dh_prev)` back.
    pub fn backward_array(
        &mut self,
        dh_next: ArrayView2<f32>,
    ) -> Result<(Array2<f32>, Array2<f32>)> {
        self.backward_array_as(dh_next, "backward")
    }

    fn backward_array_as(
        &mut self,
        dh_next: ArrayView2<f32>,
        name: &str,
    ) -> Result<(Array2<f32>, Array2<f32>)> {
        let b = match self.tape.last() {
            Some(t) => t.dims().1,
            None => {
                return Err(GruError::Tape(format!(
                    "{name} called with no step on the tape"
                )))
            }
        };
        check_shape(
            "dh_next",
            &[b, self.hidden_size()],
            dh_next.shape(),
            &["B", "H"],
        )?;
        let ctx = self.context().clone();
        let db = ctx.upload("dh_next", dh_next.view())?;
        let (dx, dh) = self.backward_as(db.buffer(), name)?;
        let dx = Array2::from_shape_vec(
            (b, self.input_size()),
            ctx.dev().read_back(dx.buffer(), 0, dx.len())?,
        )
        .expect("length matches");
        let dh = Array2::from_shape_vec(
            (b, self.hidden_size()),
            ctx.dev().read_back(dh.buffer(), 0, dh.len())?,
        )
        .expect("length matches");
        Ok((dx, dh))
    }
}
