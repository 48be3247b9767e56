//! The backward of the whole stack (backpropagation through time), and its
//! entry points.

use ndarray::{Array1, Array2, Array3, ArrayView3};

use crate::config::ResetForm;
use crate::cpu::GruGrads;
use crate::error::{elements, GruError, Result};
use crate::gpu::gru::exec::{ExecPlan, LayerStep};
use crate::gpu::gru::forward::{made, view3};
use crate::gpu::gru::products::{GradBufs, Layer, ProductPath};
use crate::gpu::gru::rows::{RowsIn, RowsOut};
use crate::gpu::gru::types::{BackwardOut, CallStats, GpuBackward, GpuLayerGrads, GpuTape};
use crate::gpu::gru::GpuGru;
use crate::gpu::ops::common::StepShape;
use crate::gpu::ops::gru_backward::{encode_backward_loop, BackwardStepBufs};
use crate::gpu::ops::reduce::{encode_sum_rows, RowSum};
use crate::gpu::ops::util::{encode_dropout, encode_permute01, Dropout, Io};
use crate::gpu::plan::Strategy;
use crate::gpu::pool::PooledBuffer;
use crate::gpu::recorder::Recorder;
use crate::params::GruParams;

/// What every layer of one backward call shares.
struct BackCall<'a> {
    tape: &'a GpuTape,
    /// `(L·D, B, H)`, in the rows' running order, where given.
    grad_h_n: Option<&'a wgpu::Buffer>,
    /// `(L·D, B, H)`: each layer writes its part.
    grad_h0: PooledBuffer,
    path: &'a dyn ProductPath,
}

impl GpuGru {
    /// Records the backward of the whole stack for `tape`. The steps, in a
    /// line: the upstream gradients' rows sorted into the order the forward
    /// ran them, the top layer's output gradient sequence-first, each layer
    /// from the top as the call's [`ExecPlan`] lists its steps
    /// ([`backward_layer`](Self::backward_layer)), dL/dx and dL/dh0 back in
    /// the caller's order and layout.
    pub(crate) fn record_backward(
        &self,
        rec: &mut Recorder,
        tape: &GpuTape,
        grad_output: &wgpu::Buffer,
        grad_h_n: Option<&wgpu::Buffer>,
    ) -> Result<BackwardOut> {
        let cfg = &self.config;
        let (nd, h, batch) = (cfg.num_directions(), cfg.hidden_size, tape.batch);
        // Where the forward ran the rows in another order, grad_output and
        // grad_h_n are gathered into it, and dL/dx and dL/dh0 back at the end.
        let perm = self.perm_buffers(rec, tape.perm.as_deref())?;
        let upstream = RowsIn {
            seq: (grad_output, nd * h, "grad_output, rows sorted"),
            state: (grad_h_n, "grad_h_n, rows sorted"),
            t_full: tape.t_full,
            batch,
            f16: false,
        };
        let (grad_output, grad_h_n) =
            self.sorted_rows(rec, upstream, perm.as_ref().map(|p| &p.0))?;
        let mut d_out = self.top_grad(rec, &grad_output, tape)?;
        let plan = tape.plan;
        self.check_plan(plan, batch)
            .map_err(|why| GruError::InvalidConfig(format!("the tape's plan {plan}: {why}")))?;
        let path = self.path_of(plan.family)?;
        let call = BackCall {
            tape,
            grad_h_n: grad_h_n.as_ref(),
            grad_h0: self
                .ctx
                .storage("grad_h0", cfg.num_layers * nd * batch * h)?,
            path: path.get(),
        };
        let exec = ExecPlan::backward(cfg, plan, tape.dropout.is_some());
        let mut grads: Vec<[Option<PooledBuffer>; 4]> = Vec::with_capacity(cfg.num_layers);
        for (l, steps) in &exec.layers {
            let (next, g) = self.backward_layer(rec, *l, &call, steps, &d_out)?;
            rec.scratch(std::mem::replace(&mut d_out, next));
            grads.push(g);
        }
        grads.reverse();
        let inv = perm.as_ref().map(|p| &p.1);
        let grads_out = RowsOut {
            seq: (d_out, cfg.input_size, "grad_x"),
            state: (call.grad_h0, "grad_h0"),
            t_run: tape.t_len,
            t_full: tape.t_full,
            batch,
            f16: false,
        };
        let (grad_x, grad_h0) = self.caller_rows(rec, grads_out, inv)?;
        Ok(BackwardOut {
            grad_x,
            grad_h0,
            grads,
        })
    }

    /// dL/d(output of the top layer), sequence-first (its first `t_len` steps).
    fn top_grad(
        &self,
        rec: &mut Recorder,
        go: &wgpu::Buffer,
        tape: &GpuTape,
    ) -> Result<PooledBuffer> {
        let cfg = &self.config;
        let (nd, h) = (cfg.num_directions(), cfg.hidden_size);
        let (t_len, t_full, batch) = (tape.t_len, tape.t_full, tape.batch);
        if cfg.batch_first {
            let d_out = self.ctx.storage("grad_output", t_full * batch * nd * h)?;
            let shape = [batch, t_full, nd * h];
            encode_permute01(rec, Io::F32, shape, (go, 0), (d_out.buffer(), 0))?;
            Ok(d_out)
        } else {
            let len = t_len * batch * nd * h;
            let d_out = self.ctx.storage("grad_output", len)?;
            rec.copy(go, 0, d_out.buffer(), 0, (len * 4) as u64);
            Ok(d_out)
        }
    }

    /// Records the backward of layer `l` from `d_out`, dL/d(its output),
    /// walking its `steps` (see [`LayerStep`]): dh from grad_h_n, the time
    /// loop, the layer's dL/dh0, the gradients of its parameters and of its
    /// input (through dropout where the forward had it). Returns dL/d(its
    /// input) and its parameters' gradients `[weight_ih, weight_hh,
    /// bias_ih, bias_hh]`.
    fn backward_layer(
        &self,
        rec: &mut Recorder,
        l: usize,
        call: &BackCall,
        steps: &[LayerStep],
        d_out: &PooledBuffer,
    ) -> Result<(PooledBuffer, [Option<PooledBuffer>; 4])> {
        let (cfg, tape) = (&self.config, call.tape);
        let (nd, h) = (cfg.num_directions(), cfg.hidden_size);
        let (t_len, batch) = (tape.t_len, tape.batch);
        let (tb, h3) = (t_len * batch, 3 * h);
        let state_bytes = (batch * h * 4) as u64;
        let lp = &self.layers[l];
        let layer = self.layer(l);
        let lt = &tape.layers[l];
        let i_l = cfg.layer_input_size(l);
        let dgi = rec.storage("dG_i", tb * nd * h3)?;
        let dgh = rec.storage("dG_h", nd * tb * h3)?;
        let dh = rec.storage("dh", nd * 2 * batch * h)?;
        // `[weight_ih, weight_hh, bias_ih, bias_hh]`, and dL/d(input).
        let mut grads: [Option<PooledBuffer>; 4] = Default::default();
        let mut dx = None;
        for step in steps {
            match step {
                LayerStep::StateGrad => {
                    for d in 0..nd {
                        let slot = ((d * 2 + t_len % 2) * batch * h * 4) as u64;
                        let src = call
                            .grad_h_n
                            .map(|b| (b, ((l * nd + d) as u64) * state_bytes));
                        rec.copy_or_clear(src, dh.buffer(), slot, state_bytes);
                    }
                }
                LayerStep::TimeLoop => {
                    let flags_at = tape.flags.then_some(nd * (t_len + 1) * batch * h);
                    let shape = self.step_shape((t_len, batch), flags_at, &tape.active);
                    let bufs = BackwardStepBufs {
                        d_out: d_out.buffer(),
                        gates: lt.gates.buffer(),
                        hs: lt.hs.buffer(),
                        w_hh: lp.w_hh.buffer(),
                        dgh: dgh.buffer(),
                        dgi: dgi.buffer(),
                        dh: dh.buffer(),
                    };
                    let strategy = tape.plan.strategy;
                    self.backward_loop(rec, strategy, call.path, &layer, &shape, &bufs)?;
                }
                LayerStep::FinalState => {
                    for d in 0..nd {
                        let slot = ((d * 2 + 1) * batch * h * 4) as u64;
                        let at = ((l * nd + d) as u64) * state_bytes;
                        rec.copy(dh.buffer(), slot, call.grad_h0.buffer(), at, state_bytes);
                    }
                }
                LayerStep::WeightGrads => {
                    let dw_ih = self.ctx.storage("grad weight_ih", nd * h3 * i_l)?;
                    let dw_hh = self.ctx.storage("grad weight_hh", nd * h3 * h)?;
                    let g = GradBufs {
                        dgi: &dgi,
                        dgh: &dgh,
                        dw_ih: &dw_ih,
                        dw_hh: &dw_hh,
                    };
                    call.path.weight_grads(rec, &layer, lt, &g, t_len, batch)?;
                    (grads[0], grads[1]) = (Some(dw_ih), Some(dw_hh));
                }
                LayerStep::BiasGrads => {
                    let (db_ih, db_hh) = self.bias_grads(rec, &dgi, &dgh, tb)?;
                    (grads[2], grads[3]) = (Some(db_ih), Some(db_hh));
                }
                LayerStep::InputGrad => {
                    let g = self.ctx.storage("grad of the layer input", tb * i_l)?;
                    call.path.input_grad(rec, &layer, &dgi, &g, tb)?;
                    dx = Some(g);
                }
                LayerStep::Dropout => {
                    let (seed, prob) = tape.dropout.expect("a dropout step where the tape has one");
                    let masked = self
                        .ctx
                        .storage("grad of the layer input after dropout", tb * i_l)?;
                    let mask = Dropout {
                        seed,
                        layer: (l - 1) as u32,
                        prob,
                    };
                    let g = made(&dx).buffer();
                    encode_dropout(rec, Io::F32, &mask, tb * i_l, g, masked.buffer())?;
                    if let Some(g) = dx.replace(masked) {
                        rec.scratch(g);
                    }
                }
                step => unreachable!("{step:?} is not a backward step"),
            }
        }
        let dx = dx.expect("the input gradient step makes dL/d(input)");
        Ok((dx, grads))
    }

    /// The bias gradients of a layer: the column sums of dG_i over its
    /// `tb` rows (bias_ih, `(D·3H)`), and of dG_h per direction (bias_hh).
    fn bias_grads(
        &self,
        rec: &mut Recorder,
        dgi: &PooledBuffer,
        dgh: &PooledBuffer,
        tb: usize,
    ) -> Result<(PooledBuffer, PooledBuffer)> {
        let (nd, h3) = (self.config.num_directions(), 3 * self.config.hidden_size);
        let db_ih = self.ctx.storage("grad bias_ih", nd * h3)?;
        let sum_i = RowSum {
            cols: nd * h3,
            rows: tb,
            ld: nd * h3,
            in_off: 0,
            in_batch: 0,
            out_off: 0,
            out_batch: 0,
            batch: 1,
        };
        encode_sum_rows(rec, &sum_i, dgi.buffer(), db_ih.buffer())?;
        let db_hh = self.ctx.storage("grad bias_hh", nd * h3)?;
        let sum_h = RowSum {
            cols: h3,
            ld: h3,
            in_batch: tb * h3,
            out_batch: h3,
            batch: nd,
            ..sum_i
        };
        encode_sum_rows(rec, &sum_h, dgh.buffer(), db_hh.buffer())?;
        Ok((db_ih, db_hh))
    }

    /// Records the backward time loop of one layer as `strategy` runs it.
    fn backward_loop(
        &self,
        rec: &mut Recorder,
        strategy: Strategy,
        path: &dyn ProductPath,
        layer: &Layer,
        shape: &StepShape,
        bufs: &BackwardStepBufs,
    ) -> Result<()> {
        let what = "one backward step's product over the gates";
        let Some(lp) = self.fused_loop(strategy, shape.hidden, what)? else {
            // The product path keeps its own scratch.
            return path.backward_steps(rec, layer, shape, bufs);
        };
        let rb = self.config.reset_form == ResetForm::Before;
        encode_backward_loop(rec, lp, shape, bufs, rb)
    }

    /// Refuses a tape of another model, or one made before the parameters
    /// changed. (Checked again at the submission: see
    /// [`finish_backward`](Self::finish_backward).)
    pub(crate) fn check_tape(&self, tape: &GpuTape) -> Result<()> {
        if tape.model_id != self.id {
            return Err(GruError::Tape(format!(
                "this tape was made by the forward of another model (model {}, not {})",
                tape.model_id, self.id
            )));
        }
        Self::check_version(tape, self.params_version())
    }

    /// Refuses a tape of a version other than `current`.
    fn check_version(tape: &GpuTape, current: u64) -> Result<()> {
        if tape.version != current {
            return Err(GruError::StaleTape {
                recorded: tape.version,
                current,
            });
        }
        Ok(())
    }

    /// Submits a backward of `tape` unless the parameters changed since its
    /// forward: the version checked under the submission lock, so that an
    /// accepted backward runs with the weights its forward ran with (an
    /// `update` on another thread is submitted wholly before the check, and
    /// refused, or wholly after this backward).
    pub(crate) fn finish_backward(&self, rec: Recorder, tape: &GpuTape) -> Result<CallStats> {
        self.finish_at(rec, |v| Self::check_version(tape, v))
            .map(|(stats, _)| stats)
    }

    /// The backward on device buffers: `grad_output` with the output's shape
    /// and layout, `grad_h_n` `(L·D, B, H)` or zeros.
    pub(crate) fn backward_device(
        &self,
        tape: GpuTape,
        grad_output: &wgpu::Buffer,
        grad_h_n: Option<&wgpu::Buffer>,
    ) -> Result<GpuBackward> {
        self.check_tape(&tape)?;
        let cfg = &self.config;
        let (t, b) = tape.dims();
        self.check_buffer(
            "grad_output",
            grad_output,
            elements("grad_output", &cfg.output_shape(t, b))?,
        )?;
        if let Some(g) = grad_h_n {
            self.check_buffer("grad_h_n", g, elements("grad_h_n", &cfg.state_shape(b))?)?;
        }
        self.backward_with_plan_checked(tape, grad_output, grad_h_n, self.timing_on())
            .map(|(b, _)| b)
    }

    /// The backward of a tape on device buffers, timed where `timed` (the
    /// tuner's), and the call's statistics.
    pub(crate) fn backward_with_plan(
        &self,
        tape: GpuTape,
        grad_output: &wgpu::Buffer,
        opts: &crate::gpu::gru::BackwardOptions<&wgpu::Buffer>,
        timed: bool,
    ) -> Result<CallStats> {
        self.check_tape(&tape)?;
        self.backward_with_plan_checked(tape, grad_output, opts.grad_h_n, timed)
            .map(|(_, s)| s)
    }

    fn backward_with_plan_checked(
        &self,
        tape: GpuTape,
        grad_output: &wgpu::Buffer,
        grad_h_n: Option<&wgpu::Buffer>,
        timed: bool,
    ) -> Result<(GpuBackward, CallStats)> {
        self.ctx.scoped(|| {
            let mut rec = self.recorder_timed(timed);
            let out = self.record_backward(&mut rec, &tape, grad_output, grad_h_n)?;
            let stats = self.finish_backward(rec, &tape)?;
            let b = GpuBackward {
                grad_x: out.grad_x,
                grad_h0: out.grad_h0,
                grads: out
                    .grads
                    .into_iter()
                    .map(|[a, b, c, d]| GpuLayerGrads {
                        w_ih: a.expect("always present"),
                        w_hh: b.expect("always present"),
                        b_ih: c,
                        b_hh: d,
                    })
                    .collect(),
            };
            Ok((b, stats))
        })
    }

    /// The backward from flat slices: `grad_output` holds the floats of the
    /// output's shape, `grad_h_n` those of `(L·D, B, H)`.
    pub(crate) fn backward_flat(
        &self,
        tape: GpuTape,
        grad_output: &[f32],
        grad_h_n: Option<&[f32]>,
    ) -> Result<GruGrads<f32>> {
        let cfg = &self.config;
        let (t, b) = tape.dims();
        let go = view3("grad_output", grad_output, cfg.output_shape(t, b))?;
        let gh = grad_h_n
            .map(|g| view3("grad_h_n", g, cfg.state_shape(b)))
            .transpose()?;
        self.backward_host(tape, go, gh)
    }

    /// The backward from host arrays: `grad_output` with the output's shape,
    /// `grad_h_n` `(L·D, B, H)` or zeros; the gradients of `x`, `h0` and
    /// every parameter.
    pub(crate) fn backward_host(
        &self,
        tape: GpuTape,
        grad_output: ArrayView3<f32>,
        grad_h_n: Option<ArrayView3<f32>>,
    ) -> Result<GruGrads<f32>> {
        self.check_tape(&tape)?;
        let cfg = &self.config;
        let (t_len, batch) = tape.dims();
        cfg.check_output_like("grad_output", grad_output.shape(), t_len, batch)?;
        if let Some(g) = &grad_h_n {
            cfg.check_state("grad_h_n", g.shape(), batch)?;
        }
        self.ctx.scoped(|| {
            let go = self.ctx.upload("grad_output", grad_output.view())?;
            let gh = grad_h_n
                .as_ref()
                .map(|g| self.ctx.upload("grad_h_n", g.view()))
                .transpose()?;
            let mut rec = self.recorder();
            let out = self.record_backward(
                &mut rec,
                &tape,
                go.buffer(),
                gh.as_ref().map(|b| b.buffer()),
            )?;
            let mut reads: Vec<(PooledBuffer, usize)> = Vec::new();
            let mut read = |rec: &mut Recorder, b: &PooledBuffer| {
                let bytes = (b.len() * 4) as u64;
                let st = self.ctx.staging(bytes);
                rec.copy(b.buffer(), 0, st.buffer(), 0, bytes);
                reads.push((st, b.len()));
            };
            read(&mut rec, &out.grad_x);
            read(&mut rec, &out.grad_h0);
            for g in &out.grads {
                for b in g.iter().flatten() {
                    read(&mut rec, b);
                }
            }
            rec.scratch(go);
            self.finish_backward(rec, &tape)?;
            let data = self
                .ctx
                .read_staging(&reads.iter().map(|(b, l)| (b, *l)).collect::<Vec<_>>())?;
            let mut it = data.into_iter();
            let x_len = t_len * batch * cfg.input_size;
            let s_len: usize = cfg.state_shape(batch).iter().product();
            let mut gx = it.next().expect("read");
            gx.truncate(x_len);
            let mut g0 = it.next().expect("read");
            g0.truncate(s_len);
            let x =
                Array3::from_shape_vec(cfg.input_shape(t_len, batch), gx).expect("length matches");
            let h0 = Array3::from_shape_vec(cfg.state_shape(batch), g0).expect("length matches");
            let mut params = GruParams::<f32>::zeros(cfg)?;
            let (nd, h) = (cfg.num_directions(), cfg.hidden_size);
            let h3 = 3 * h;
            for l in 0..cfg.num_layers {
                let i_l = cfg.layer_input_size(l);
                let (w_ih, w_hh, b_ih, b_hh) =
                    crate::gpu::gru::types::next_layer(&mut it, cfg.bias);
                for d in 0..nd {
                    let dp = params.dir_mut(l, d)?;
                    dp.weight_ih = Array2::from_shape_vec(
                        (h3, i_l),
                        w_ih[d * h3 * i_l..(d + 1) * h3 * i_l].to_vec(),
                    )
                    .expect("length matches");
                    dp.weight_hh = Array2::from_shape_vec(
                        (h3, h),
                        w_hh[d * h3 * h..(d + 1) * h3 * h].to_vec(),
                    )
                    .expect("length matches");
                    if let Some(b) = &b_ih {
                        dp.bias_ih = Some(Array1::from(b[d * h3..(d + 1) * h3].to_vec()));
                    }
                    if let Some(b) = &b_hh {
                        dp.bias_hh = Some(Array1::from(b[d * h3..(d + 1) * h3].to_vec()));
                    }
                }
            }
            Ok(GruGrads { x, h0, params })
        })
    }
}
