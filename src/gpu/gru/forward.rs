//! The forward of the whole stack, and its entry points.

use ndarray::{Array3, ArrayView3};

use crate::config::ResetForm;
use crate::error::{elements, GruError, Result};
use crate::gpu::gru::exec::{ExecPlan, LayerStep};
use crate::gpu::gru::io::{FlatInput, Forward, ForwardOptions, OnDevice};
use crate::gpu::gru::products::{Layer, ProductPath};
use crate::gpu::gru::rows::{RowsIn, RowsOut};
use crate::gpu::gru::seq::SeqRun;
use crate::gpu::gru::types::{CallStats, ForwardOut, GpuForward, GpuTape, LayerTape};
use crate::gpu::gru::GpuGru;
use crate::gpu::ops::common::StepShape;
use crate::gpu::ops::gru_forward::{encode_forward_loop, ForwardStepBufs};
use crate::gpu::ops::util::{encode_copy, encode_dropout, encode_permute01, Dropout, Io};
use crate::gpu::plan::Plan;
use crate::gpu::plan::Strategy;
use crate::gpu::pool::PooledBuffer;
use crate::gpu::recorder::Recorder;

/// What every layer of one forward call shares.
struct LayerCall<'a> {
    seq: &'a SeqRun,
    batch: usize,
    keep_tape: bool,
    plan: Plan,
    dropout: Option<(u32, f32)>,
    /// The step flags (lengths and resets), where the call has them.
    flags: Option<&'a wgpu::Buffer>,
    active: Option<std::sync::Arc<[usize]>>,
    /// `(L·D, B, H)`, in the rows' running order.
    h0: Option<&'a wgpu::Buffer>,
    /// `(L·D, B, H)`: each layer writes its part.
    h_n: PooledBuffer,
    path: &'a dyn ProductPath,
}

/// The buffers one layer's steps hand on to the next steps.
#[derive(Default)]
struct ForwardLayerBufs {
    /// The layer's input, `(T·B, I_l)` sequence-first.
    xin: Option<PooledBuffer>,
    gi: Option<std::sync::Arc<PooledBuffer>>,
    hs: Option<PooledBuffer>,
    gates: Option<PooledBuffer>,
    out: Option<PooledBuffer>,
    tape: Option<LayerTape>,
}

/// The buffer an earlier step of the layer made (the execution plan's
/// order: see `exec.rs`'s tests).
pub(crate) fn made<T>(b: &Option<T>) -> &T {
    b.as_ref().expect("made by an earlier step of the layer")
}

impl GpuGru {
    /// Records the forward of the whole stack. `x` is in the caller's layout,
    /// `h0` is `(L·D, B, H)`. Without `keep_tape` no gates are written, the
    /// states of a layer are a ring of two slots, and every layer's buffers
    /// are let go after the call. The steps, in a line: the rows sorted
    /// into the order they run, layer 0's input sequence-first, each layer
    /// as the call's [`ExecPlan`] lists its steps
    /// ([`forward_layer`](Self::forward_layer)), the output and `h_n` back
    /// in the caller's order and layout.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record_forward(
        &self,
        rec: &mut Recorder,
        x: &wgpu::Buffer,
        h0: Option<&wgpu::Buffer>,
        (seq, batch): (&SeqRun, usize),
        dropout: Option<(u32, f32)>,
        keep_tape: bool,
        plan: Plan,
    ) -> Result<ForwardOut> {
        let cfg = &self.config;
        let (nd, h) = (cfg.num_directions(), cfg.hidden_size);
        // Where the rows run in another order (ragged lengths, longest
        // first), x and h0 are gathered into it here, and the output and h_n
        // back at the end.
        let perm = self.perm_buffers(rec, seq.perm.as_deref())?;
        let inputs = RowsIn {
            seq: (x, cfg.input_size, "x, rows sorted"),
            state: (h0, "h0, rows sorted"),
            t_full: seq.t_len,
            batch,
            f16: self.f16(),
        };
        let (x, h0) = self.sorted_rows(rec, inputs, perm.as_ref().map(|p| &p.0))?;
        let mut xin = self.layer0_input(rec, &x, seq, batch)?;
        let flags = seq
            .flags
            .as_ref()
            .map(|f| self.ctx.upload("step flags", f))
            .transpose()?
            .map(|f| rec.scratch(f).buffer().clone());
        let path = self.path_of(plan.family)?;
        let call = LayerCall {
            seq,
            batch,
            keep_tape,
            plan,
            dropout,
            flags: flags.as_ref(),
            active: seq.active_rows(cfg),
            h0: h0.as_ref(),
            h_n: self.act("h_n", cfg.num_layers * nd * batch * h)?,
            path: path.get(),
        };
        let exec = ExecPlan::forward(cfg, plan, dropout.is_some(), keep_tape);
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for (l, steps) in &exec.layers {
            let (next, tape) = self.forward_layer(rec, *l, &call, steps, xin)?;
            xin = next;
            layers.extend(tape);
        }
        let outputs = RowsOut {
            seq: (xin, nd * h, "output"),
            state: (call.h_n, "h_n"),
            t_run: seq.t_run,
            t_full: seq.t_len,
            batch,
            f16: self.f16(),
        };
        let (output, h_n) = self.caller_rows(rec, outputs, perm.as_ref().map(|p| &p.1))?;
        let t_full = seq.t_len;
        Ok(ForwardOut {
            output,
            h_n,
            tape: keep_tape.then(|| GpuTape {
                model_id: self.id,
                // Stamped again when the call is submitted (`finish_forward`).
                version: self.params_version(),
                t_len: seq.t_run,
                t_full,
                flags: seq.flags.is_some(),
                active: call.active,
                perm: seq.perm.clone(),
                batch,
                dropout,
                plan,
                layers,
            }),
        })
    }

    /// Layer 0's input, sequence-first, `t_run` steps (owned by the tape).
    fn layer0_input(
        &self,
        rec: &mut Recorder,
        x: &wgpu::Buffer,
        seq: &SeqRun,
        batch: usize,
    ) -> Result<PooledBuffer> {
        let (i_sz, t_full) = (self.config.input_size, seq.t_len);
        let io = Io::same(self.f16());
        if self.config.batch_first {
            let xin = self.act("x", t_full * batch * i_sz)?;
            encode_permute01(rec, io, [batch, t_full, i_sz], (x, 0), (xin.buffer(), 0))?;
            Ok(xin)
        } else {
            let tb = seq.t_run * batch;
            let xin = self.act("x", tb * i_sz)?;
            self.copy_act(rec, (x, 0), (xin.buffer(), 0), tb * i_sz)?;
            Ok(xin)
        }
    }

    /// Records layer `l` of the forward on its input `xin`, walking its
    /// `steps` (see [`LayerStep`]): the input projection, the states from
    /// h0 (and step 0's resets), the time loop, the layer's h_n, dropout on
    /// its output, the tape. Returns the next layer's input and, with the
    /// tape, the layer's tape; every other buffer of the layer is the
    /// recording's.
    fn forward_layer(
        &self,
        rec: &mut Recorder,
        l: usize,
        call: &LayerCall,
        steps: &[LayerStep],
        xin: PooledBuffer,
    ) -> Result<(PooledBuffer, Option<LayerTape>)> {
        let cfg = &self.config;
        let (nd, h, batch) = (cfg.num_directions(), cfg.hidden_size, call.batch);
        let t_len = call.seq.t_run;
        let (tb, state) = (t_len * batch, batch * h);
        let layer = self.layer(l);
        let lp = &self.layers[l];
        // All T + 1 states for the tape; without it a ring of two.
        let slots = if call.keep_tape { t_len + 1 } else { 2 };
        // The element where slot s of direction d starts.
        let slot = |d: usize, s: usize| -> usize {
            let at = if call.keep_tape {
                d * (t_len + 1) + s
            } else {
                d * 2 + s % 2
            };
            at * state
        };
        let hs_len = nd * slots * batch * h;
        let mut b = ForwardLayerBufs {
            xin: Some(xin),
            ..Default::default()
        };
        for step in steps {
            match step {
                LayerStep::InputProjection => {
                    let gi = rec.storage("gi (input projections)", tb * nd * 3 * h)?;
                    call.path
                        .input_projection(rec, &layer, made(&b.xin), &gi, tb)?;
                    b.gi = Some(gi);
                }
                LayerStep::InitialStates => {
                    b.hs = Some(self.initial_states(rec, l, call, hs_len, slot)?);
                }
                LayerStep::TimeLoop => {
                    // The tape's gates, where it is kept (the steps write them then only).
                    let gates = match call.keep_tape {
                        true => Some(self.act("gates", nd * t_len * batch * 4 * h)?),
                        false => None,
                    };
                    let out = self.act("layer output", tb * nd * h)?;
                    let flags_at = call.flags.map(|_| hs_len);
                    let shape = self.step_shape((t_len, batch), flags_at, &call.active);
                    let bufs = ForwardStepBufs {
                        gi: made(&b.gi).buffer(),
                        w_hh_t: lp.w_hh_t.buffer(),
                        b_hh: lp.b_hh.as_ref().map(|b| b.buffer()),
                        hs: made(&b.hs).buffer(),
                        out: out.buffer(),
                        gates: gates.as_ref().map(|g| g.buffer()),
                    };
                    let strategy = call.plan.strategy;
                    self.forward_loop(rec, strategy, call.path, &layer, &shape, &bufs, call.h0)?;
                    (b.gates, b.out) = (gates, Some(out));
                }
                LayerStep::FinalState => {
                    for d in 0..nd {
                        let src = (made(&b.hs).buffer(), slot(d, t_len));
                        let dst = (call.h_n.buffer(), (l * nd + d) * state);
                        self.copy_act(rec, src, dst, state)?;
                    }
                }
                LayerStep::Dropout => self.dropout_output(rec, l, call, &mut b, tb * nd * h)?,
                LayerStep::KeepTape => {
                    let take =
                        |o: &mut Option<PooledBuffer>| o.take().expect("made before the tape");
                    let (xin, hs, gates) = (take(&mut b.xin), take(&mut b.hs), take(&mut b.gates));
                    b.tape = Some(LayerTape { xin, hs, gates });
                }
                step => unreachable!("{step:?} is not a forward step"),
            }
        }
        let next = b
            .out
            .take()
            .expect("the time loop makes the layer's output");
        let tape = b.tape.take();
        // What no later layer or tape takes is the recording's.
        for buf in [b.xin, b.hs, b.gates].into_iter().flatten() {
            rec.scratch(buf);
        }
        Ok((next, tape))
    }

    /// Layer `l`'s dropout on its output (`n` elements): the output after
    /// dropout replaces it in `b`, the one before is the recording's.
    fn dropout_output(
        &self,
        rec: &mut Recorder,
        l: usize,
        call: &LayerCall,
        b: &mut ForwardLayerBufs,
        n: usize,
    ) -> Result<()> {
        let (seed, prob) = call.dropout.expect("a dropout step where the call has one");
        let dropped = self.act("layer output after dropout", n)?;
        let mask = Dropout {
            seed,
            layer: l as u32,
            prob,
        };
        let io = Io::same(self.f16());
        encode_dropout(rec, io, &mask, n, made(&b.out).buffer(), dropped.buffer())?;
        if let Some(out) = b.out.replace(dropped) {
            rec.scratch(out);
        }
        Ok(())
    }

    /// The states of layer `l` (`hs_len` elements, then the step flags
    /// where the call has them): slot 0 of each direction from h0 (or
    /// zeros), the rows reset at step 0 zeroed.
    fn initial_states(
        &self,
        rec: &mut Recorder,
        l: usize,
        call: &LayerCall,
        hs_len: usize,
        slot: impl Fn(usize, usize) -> usize,
    ) -> Result<PooledBuffer> {
        let cfg = &self.config;
        let (nd, h) = (cfg.num_directions(), cfg.hidden_size);
        let (tb, state) = (call.seq.t_run * call.batch, call.batch * h);
        let hs = self.act("hidden states", hs_len + call.flags.map_or(0, |_| tb))?;
        if let Some(f) = call.flags {
            // (f32 on the host; in hs's storage precision here, 0..7 exactly)
            let io = Io {
                inp: false,
                out: self.f16(),
            };
            encode_copy(rec, io, tb, (f, 0), (hs.buffer(), hs_len))?;
        }
        for d in 0..nd {
            let dst = (hs.buffer(), slot(d, 0));
            match call.h0 {
                Some(b) => self.copy_act(rec, (b, (l * nd + d) * state), dst, state)?,
                None => self.clear_act(rec, dst, state)?,
            }
        }
        // A reset at step 0: the forward direction starts those rows
        // from zero (a reverse layer has none: it ends at step 0).
        let zero0 = if cfg.runs_reversed(0) {
            &[][..]
        } else {
            &call.seq.zero0[..]
        };
        for &b in zero0 {
            self.clear_act(rec, (hs.buffer(), slot(0, 0) + b * h), h)?;
        }
        Ok(hs)
    }

    /// Submits a forward's recording and stamps its tape with the version
    /// of the parameters that the submitted work reads (read under the
    /// submission lock: see [`finish_at`](GpuGru::finish_at)).
    pub(crate) fn finish_forward(
        &self,
        rec: Recorder,
        tape: &mut Option<GpuTape>,
    ) -> Result<CallStats> {
        let (stats, version) = self.finish_at(rec, |_| Ok(()))?;
        if let Some(tape) = tape.as_mut() {
            tape.version = version;
        }
        Ok(stats)
    }

    /// Records the time loop of one layer as `strategy` runs it.
    #[allow(clippy::too_many_arguments)]
    fn forward_loop(
        &self,
        rec: &mut Recorder,
        strategy: Strategy,
        path: &dyn ProductPath,
        layer: &Layer,
        shape: &StepShape,
        bufs: &ForwardStepBufs,
        h0: Option<&wgpu::Buffer>,
    ) -> Result<()> {
        let what = "one step's product over the hidden units";
        let Some(lp) = self.fused_loop(strategy, shape.hidden, what)? else {
            // The product path keeps its own scratch.
            return path.forward_steps(rec, layer, shape, bufs, h0);
        };
        let rb = self.config.reset_form == ResetForm::Before;
        encode_forward_loop(rec, lp, shape, bufs, rb)
    }

    /// The dropout of a forward with `opts`: `(seed, p)` in training mode
    /// where the configuration has dropout.
    fn dropout_of<S>(&self, opts: &ForwardOptions<S>) -> Option<(u32, f32)> {
        let p = self.config.dropout;
        opts.train.filter(|_| p > 0.0).map(|seed| (seed, p))
    }

    /// The forward on device buffers (see [`OnDevice`]); `h0` `(L·D, B, H)`
    /// with the usage `COPY_SRC`.
    pub(crate) fn forward_device(
        &self,
        x: OnDevice,
        opts: &ForwardOptions<&wgpu::Buffer>,
    ) -> Result<GpuForward> {
        let (seq_len, batch) = (x.seq_len, x.batch);
        self.check_dims(seq_len, batch)?;
        let cfg = &self.config;
        let xe = elements("x", &cfg.input_shape(seq_len, batch))?;
        // (In f16, the caller's buffers hold f16 values: two to a float's bytes.)
        let words = |n: usize| if self.f16() { n.div_ceil(2) } else { n };
        self.check_buffer("x", x.buffer, words(xe))?;
        if let Some(h0) = opts.h0 {
            let n = elements("h0", &cfg.state_shape(batch))?;
            self.check_buffer("h0", h0, words(n))?;
        }
        let seq = SeqRun::new(
            cfg,
            &opts.seq,
            seq_len,
            batch,
            self.dropout_of(opts).is_none(),
        )?;
        let plan = self.plan_for(seq.t_run, batch)?.plan;
        self.forward_with_plan(x, opts, plan, self.timing_on())
            .map(|(f, _)| f)
    }

    /// The forward on device buffers with `plan` (timed where `timed`), and
    /// the call's statistics; the buffers' sizes already checked.
    pub(crate) fn forward_with_plan(
        &self,
        x: OnDevice,
        opts: &ForwardOptions<&wgpu::Buffer>,
        plan: Plan,
        timed: bool,
    ) -> Result<(GpuForward, CallStats)> {
        let seq = SeqRun::new(
            &self.config,
            &opts.seq,
            x.seq_len,
            x.batch,
            self.dropout_of(opts).is_none(),
        )?;
        self.ctx.scoped(|| {
            let mut rec = self.recorder_timed(timed);
            let mut out = self.record_forward(
                &mut rec,
                x.buffer,
                opts.h0,
                (&seq, x.batch),
                self.dropout_of(opts),
                opts.tape(),
                plan,
            )?;
            let stats = self.finish_forward(rec, &mut out.tape)?;
            let f = GpuForward {
                output: out.output,
                h_n: out.h_n,
                tape: out.tape,
            };
            Ok((f, stats))
        })
    }

    /// The forward from flat slices in the layouts of the arrays.
    pub(crate) fn forward_flat(
        &self,
        x: FlatInput,
        opts: &ForwardOptions<&[f32]>,
    ) -> Result<Forward> {
        let cfg = &self.config;
        let (seq_len, batch) = (x.seq_len, x.batch);
        self.check_dims(seq_len, batch)?;
        let xv = view3("x", x.data, cfg.input_shape(seq_len, batch))?;
        let h0 = opts
            .h0
            .map(|h| view3("h0", h, cfg.state_shape(batch)))
            .transpose()?;
        self.forward_host(xv, h0, opts)
    }

    /// The forward from host arrays: `x` `(T, B, I)` (or `(B, T, I)` where
    /// `batch_first`), `h0` `(L·D, B, H)` or zeros.
    pub(crate) fn forward_host<S>(
        &self,
        x: ArrayView3<f32>,
        h0: Option<ArrayView3<f32>>,
        opts: &ForwardOptions<S>,
    ) -> Result<Forward> {
        let cfg = &self.config;
        let (t_len, batch) = cfg.check_input("x", x.shape())?;
        if let Some(h0) = &h0 {
            cfg.check_state("h0", h0.shape(), batch)?;
        }
        self.check_sizes(t_len, batch)?;
        let seq = SeqRun::new(
            cfg,
            &opts.seq,
            t_len,
            batch,
            self.dropout_of(opts).is_none(),
        )?;
        let plan = self.plan_for(seq.t_run, batch)?.plan;
        // Padding is never read, but the weight gradient multiplies it by
        // zero: zeros make a NaN or an infinity there harmless.
        // (`seq.lengths` are in the order the rows run; x is in the caller's.)
        let ragged = seq.lengths.is_some();
        let masked = opts.seq.lengths.as_ref().filter(|_| ragged).map(|lengths| {
            let mut x = x.to_owned();
            for (b, &len) in lengths.iter().enumerate() {
                let pad = if cfg.batch_first {
                    x.slice_mut(ndarray::s![b, len.., ..])
                } else {
                    x.slice_mut(ndarray::s![len.., b, ..])
                };
                pad.into_iter().for_each(|v| *v = 0.0);
            }
            x
        });
        let x = masked.as_ref().map_or(x, |m| m.view());
        self.ctx.scoped(|| {
            let mut rec = self.recorder();
            let xb = self.ctx.upload("x", x.view())?;
            let xb = self.f32_to_act(&mut rec, "x (f16)", xb)?;
            let h0b = h0
                .as_ref()
                .map(|h| {
                    let b = self.ctx.upload("h0", h.view())?;
                    self.f32_to_act(&mut rec, "h0 (f16)", b)
                })
                .transpose()?;
            let mut out = self.record_forward(
                &mut rec,
                xb.buffer(),
                h0b.as_ref().map(|b| b.buffer()),
                (&seq, batch),
                self.dropout_of(opts),
                opts.tape(),
                plan,
            )?;
            let o_len = t_len * batch * cfg.num_directions() * cfg.hidden_size;
            let s_len = cfg.state_shape(batch).iter().product();
            let so = self.ctx.staging((o_len * 4) as u64);
            let sh = self.ctx.staging((s_len * 4) as u64);
            let output = self.act_to_f32(&mut rec, "output (f32)", out.output)?;
            let h_n = self.act_to_f32(&mut rec, "h_n (f32)", out.h_n)?;
            rec.copy(output.buffer(), 0, so.buffer(), 0, (o_len * 4) as u64);
            rec.copy(h_n.buffer(), 0, sh.buffer(), 0, (s_len * 4) as u64);
            rec.scratch(xb);
            rec.scratch(output);
            rec.scratch(h_n);
            if let Some(b) = h0b {
                rec.scratch(b);
            }
            self.finish_forward(rec, &mut out.tape)?;
            let mut data = self
                .ctx
                .read_staging(&[(&so, o_len), (&sh, s_len)])?
                .into_iter();
            let output =
                Array3::from_shape_vec(cfg.output_shape(t_len, batch), data.next().expect("read"))
                    .expect("length matches");
            let h_n = Array3::from_shape_vec(cfg.state_shape(batch), data.next().expect("read"))
                .expect("length matches");
            Ok(Forward {
                output,
                h_n,
                tape: out.tape,
            })
        })
    }
}

/// A flat slice as an array of `shape`, or an error naming it.
pub(crate) fn view3<'a>(
    name: &str,
    data: &'a [f32],
    shape: [usize; 3],
) -> Result<ArrayView3<'a, f32>> {
    let want = crate::error::elements(name, &shape)?;
    if data.len() != want {
        return Err(GruError::LengthMismatch {
            name: name.to_string(),
            expected: want as u64,
            actual: data.len() as u64,
            unit: "floats",
        });
    }
    Ok(ArrayView3::from_shape(shape, data).expect("length checked"))
}
