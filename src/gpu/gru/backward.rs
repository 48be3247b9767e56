//! The backward of the whole stack (backpropagation through time), and its
//! entry points.

use ndarray::{Array1, Array2, Array3, ArrayView3};

use crate::config::ResetForm;
use crate::cpu::GruGrads;
use crate::error::{elements, GruError, Result};
use crate::gpu::gru::forward::view3;
use crate::gpu::gru::products::{GradBufs, Layer, ProductPath};
use crate::gpu::gru::seq::upload_perm;
use crate::gpu::gru::types::{BackwardOut, CallStats, GpuBackward, GpuLayerGrads, GpuTape};
use crate::gpu::gru::GpuGru;
use crate::gpu::ops::common::{lp, seq_private_fits, StepShape, Strategy};
use crate::gpu::ops::gru_backward::{
    encode_backward_resident, encode_backward_sequence, encode_backward_splitk,
    encode_backward_splitk_rb, encode_backward_steps, encode_backward_steps_rb, BackwardStepBufs,
};
use crate::gpu::ops::reduce::{encode_sum_rows, RowSum};
use crate::gpu::ops::util::{encode_dropout, encode_gather_rows, encode_permute01, Dropout, Io};
use crate::gpu::pool::PooledBuffer;
use crate::gpu::recorder::Recorder;
use crate::params::GruParams;

impl GpuGru {
    /// Records the backward of the whole stack for `tape`.
    pub(crate) fn record_backward(
        &self,
        rec: &mut Recorder,
        tape: &GpuTape,
        grad_output: &wgpu::Buffer,
        grad_h_n: Option<&wgpu::Buffer>,
    ) -> Result<BackwardOut> {
        let cfg = &self.config;
        let (nd, h) = (cfg.num_directions(), cfg.hidden_size);
        // Every buffer of the tape has the `t_len` steps the forward ran;
        // `t_full` is the caller's `T`.
        let (t_len, t_full, batch) = (tape.t_len, tape.t_full, tape.batch);
        let (tb, h3) = (t_len * batch, 3 * h);
        let state_bytes = (batch * h * 4) as u64;
        // Where the forward ran the rows in another order, grad_output and
        // grad_h_n are gathered into it, and dL/dx and dL/dh0 back at the end.
        let perm = upload_perm(&self.ctx, tape.perm.as_deref())?
            .map(|(fwd, inv)| (rec.scratch(fwd), rec.scratch(inv)));
        let mut sorted_go = None;
        let grad_output = match &perm {
            Some((fwd, _)) => {
                let shape = if cfg.batch_first {
                    [1, batch, t_full * nd * h]
                } else {
                    [t_full, batch, nd * h]
                };
                let sorted = self
                    .ctx
                    .storage("grad_output, rows sorted", t_full * batch * nd * h)?;
                let b = sorted_go.insert(rec.scratch(sorted));
                encode_gather_rows(rec, Io::F32, shape, grad_output, fwd.buffer(), b.buffer())?;
                b.buffer()
            }
            None => grad_output,
        };
        let mut sorted_ghn = None;
        let grad_h_n = match (&perm, grad_h_n) {
            (Some((fwd, _)), Some(g)) => {
                let sorted = self
                    .ctx
                    .storage("grad_h_n, rows sorted", cfg.num_layers * nd * batch * h)?;
                let b = sorted_ghn.insert(rec.scratch(sorted));
                encode_gather_rows(
                    rec,
                    Io::F32,
                    [cfg.num_layers * nd, batch, h],
                    g,
                    fwd.buffer(),
                    b.buffer(),
                )?;
                Some(b.buffer())
            }
            (_, g) => g,
        };
        // dL/d(output of the top layer), sequence-first (its first `t_len` steps).
        let mut d_out;
        if cfg.batch_first {
            d_out = self.ctx.storage("grad_output", t_full * batch * nd * h)?;
            encode_permute01(
                rec,
                Io::F32,
                [batch, t_full, nd * h],
                (grad_output, 0),
                (d_out.buffer(), 0),
            )?;
        } else {
            d_out = self.ctx.storage("grad_output", tb * nd * h)?;
            rec.copy(grad_output, 0, d_out.buffer(), 0, (tb * nd * h * 4) as u64);
        }
        let grad_h0 = self
            .ctx
            .storage("grad_h0", cfg.num_layers * nd * batch * h)?;
        let mut grads: Vec<[Option<PooledBuffer>; 4]> = Vec::with_capacity(cfg.num_layers);
        let plan = tape.plan;
        self.check_plan(plan, batch)
            .map_err(|why| GruError::InvalidConfig(format!("the tape's plan {plan}: {why}")))?;
        let path = self.path_of(plan.family)?;
        let path = path.get();
        for l in (0..cfg.num_layers).rev() {
            let lp = &self.layers[l];
            let layer = self.layer(l);
            let lt = &tape.layers[l];
            let i_l = cfg.layer_input_size(l);
            let dgi = rec.scratch(self.ctx.storage("dG_i", tb * nd * h3)?);
            let dgh = rec.scratch(self.ctx.storage("dG_h", nd * tb * h3)?);
            let dh = rec.scratch(self.ctx.storage("dh", nd * 2 * batch * h)?);
            for d in 0..nd {
                let slot = ((d * 2 + t_len % 2) * batch * h * 4) as u64;
                let src = grad_h_n.map(|b| (b, ((l * nd + d) as u64) * state_bytes));
                rec.copy_or_clear(src, dh.buffer(), slot, state_bytes);
            }
            let shape = StepShape {
                t_len,
                batch,
                hidden: h,
                dirs: nd,
                has_bias: cfg.bias,
                reverse: cfg.direction == crate::config::Direction::Reverse,
                flags_at: tape.flags.then_some(nd * (t_len + 1) * batch * h),
                active: tape.active.clone(),
            };
            let bufs = BackwardStepBufs {
                d_out: d_out.buffer(),
                gates: lt.gates.buffer(),
                hs: lt.hs.buffer(),
                w_hh: lp.w_hh.buffer(),
                dgh: dgh.buffer(),
                dgi: dgi.buffer(),
                dh: dh.buffer(),
            };
            self.backward_loop(rec, plan.strategy, path, &layer, &shape, &bufs)?;
            for d in 0..nd {
                let slot = ((d * 2 + 1) * batch * h * 4) as u64;
                rec.copy(
                    dh.buffer(),
                    slot,
                    grad_h0.buffer(),
                    ((l * nd + d) as u64) * state_bytes,
                    state_bytes,
                );
            }
            let dw_ih = self.ctx.storage("grad weight_ih", nd * h3 * i_l)?;
            let dw_hh = self.ctx.storage("grad weight_hh", nd * h3 * h)?;
            let g = GradBufs {
                dgi: &dgi,
                dgh: &dgh,
                dw_ih: &dw_ih,
                dw_hh: &dw_hh,
            };
            path.weight_grads(rec, &layer, lt, &g, t_len, batch)?;
            let (db_ih, db_hh) = if cfg.bias {
                let db_ih = self.ctx.storage("grad bias_ih", nd * h3)?;
                encode_sum_rows(
                    rec,
                    &RowSum {
                        cols: nd * h3,
                        rows: tb,
                        ld: nd * h3,
                        in_off: 0,
                        in_batch: 0,
                        out_off: 0,
                        out_batch: 0,
                        batch: 1,
                    },
                    dgi.buffer(),
                    db_ih.buffer(),
                )?;
                let db_hh = self.ctx.storage("grad bias_hh", nd * h3)?;
                encode_sum_rows(
                    rec,
                    &RowSum {
                        cols: h3,
                        rows: tb,
                        ld: h3,
                        in_off: 0,
                        in_batch: tb * h3,
                        out_off: 0,
                        out_batch: h3,
                        batch: nd,
                    },
                    dgh.buffer(),
                    db_hh.buffer(),
                )?;
                (Some(db_ih), Some(db_hh))
            } else {
                (None, None)
            };
            let dx = self.ctx.storage("grad of the layer input", tb * i_l)?;
            path.input_grad(rec, &layer, &dgi, &dx, tb)?;
            let next = match tape.dropout {
                Some((seed, prob)) if l > 0 => {
                    let masked = self
                        .ctx
                        .storage("grad of the layer input after dropout", tb * i_l)?;
                    let mask = Dropout {
                        seed,
                        layer: (l - 1) as u32,
                        prob,
                    };
                    encode_dropout(rec, Io::F32, &mask, tb * i_l, dx.buffer(), masked.buffer())?;
                    rec.keep(dx);
                    masked
                }
                _ => dx,
            };
            rec.keep(std::mem::replace(&mut d_out, next));
            grads.push([Some(dw_ih), Some(dw_hh), db_ih, db_hh]);
        }
        grads.reverse();
        // Past the steps the forward ran, the gradient of x is zero.
        if t_len < t_full {
            let i = cfg.input_size;
            let full = self.ctx.storage("grad_x", t_full * batch * i)?;
            let done = (tb * i * 4) as u64;
            rec.copy(d_out.buffer(), 0, full.buffer(), 0, done);
            rec.clear(
                full.buffer(),
                done,
                ((t_full - t_len) * batch * i * 4) as u64,
            );
            rec.keep(std::mem::replace(&mut d_out, full));
        }
        let (t_len, tb) = (t_full, t_full * batch);
        let mut grad_h0 = grad_h0;
        if let Some((_, inv)) = &perm {
            let i = cfg.input_size;
            let g = self.ctx.storage("grad_x", tb * i)?;
            encode_gather_rows(
                rec,
                Io::F32,
                [t_len, batch, i],
                d_out.buffer(),
                inv.buffer(),
                g.buffer(),
            )?;
            rec.keep(std::mem::replace(&mut d_out, g));
            let g0 = self
                .ctx
                .storage("grad_h0", cfg.num_layers * nd * batch * h)?;
            encode_gather_rows(
                rec,
                Io::F32,
                [cfg.num_layers * nd, batch, h],
                grad_h0.buffer(),
                inv.buffer(),
                g0.buffer(),
            )?;
            rec.keep(std::mem::replace(&mut grad_h0, g0));
        }
        let grad_x = if cfg.batch_first {
            let g = self.ctx.storage("grad_x", tb * cfg.input_size)?;
            encode_permute01(
                rec,
                Io::F32,
                [t_len, batch, cfg.input_size],
                (d_out.buffer(), 0),
                (g.buffer(), 0),
            )?;
            rec.keep(d_out);
            g
        } else {
            d_out
        };
        Ok(BackwardOut {
            grad_x,
            grad_h0,
            grads,
        })
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
        // A step kernel's thread loops over 3H: within the device's loop
        // budget (see `Device::loop_budget`).
        self.ctx.dev().check_loop(
            "one backward step's product over the gates",
            2 * lp(3 * shape.hidden) + 32,
        )?;
        if self.config.reset_form == ResetForm::Before {
            if strategy == Strategy::Products {
                // The product path keeps its own scratch.
                return path.backward_steps(rec, layer, shape, bufs);
            }
            let (nd, b, h) = (shape.dirs, shape.batch, shape.hidden);
            // c2 of the step after (zero before the last step).
            let scratch = rec.scratch(self.ctx.storage("d(r·h) r of a step", nd * b * h)?);
            rec.clear(scratch.buffer(), 0, (nd * b * h * 4) as u64);
            match strategy {
                Strategy::Step => encode_backward_steps_rb(rec, shape, bufs, scratch.buffer())?,
                Strategy::Sequence => {
                    let private = self.ctx.is_cpu() && seq_private_fits(shape.hidden);
                    encode_backward_sequence(rec, shape, bufs, private, Some(scratch.buffer()))?
                }
                Strategy::SplitK => encode_backward_splitk_rb(rec, shape, bufs, scratch.buffer())?,
                Strategy::Resident => {
                    encode_backward_resident(rec, shape, bufs, Some(scratch.buffer()))?
                }
                Strategy::Products => unreachable!("handled above"),
            }
            return Ok(());
        }
        match strategy {
            Strategy::Step => encode_backward_steps(rec, shape, bufs),
            Strategy::Sequence => {
                let private = self.ctx.is_cpu() && seq_private_fits(shape.hidden);
                encode_backward_sequence(rec, shape, bufs, private, None)
            }
            Strategy::Products => path.backward_steps(rec, layer, shape, bufs),
            Strategy::SplitK => encode_backward_splitk(rec, shape, bufs),
            Strategy::Resident => encode_backward_resident(rec, shape, bufs, None),
        }
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
            let go = self.ctx.upload_array("grad_output", grad_output.view())?;
            let gh = grad_h_n
                .as_ref()
                .map(|g| self.ctx.upload_array("grad_h_n", g.view()))
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
            rec.keep(go);
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
                let w_ih = it.next().expect("read");
                let w_hh = it.next().expect("read");
                let (b_ih, b_hh) = if cfg.bias {
                    (it.next(), it.next())
                } else {
                    (None, None)
                };
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
