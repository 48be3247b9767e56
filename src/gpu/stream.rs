//! Streaming inference on the GPU: [`GpuStream`], a stateful runner that
//! takes a chunk of one or more frames per call and keeps each layer's
//! state on the device between calls.
//!
//! Each [`push`](GpuStream::push) runs the forward of the whole stack on its
//! chunk with `h0` the state the previous chunk left, and its `h_n` becomes
//! the state: a buffer swap on the device, never a round trip through the
//! host. The stream fixes one [`Plan`] for its whole life: every plan sums
//! in its own order, and the same plan on every call is what makes a
//! stream fed in chunks of any size give, bit for bit, the output and final
//! state of one forward over the whole sequence with that plan (the GEMMs
//! split their sums by K and N only, never by the number of rows T·B).
//!
//! **The stream and its model agree.** A whole call of `T` frames runs the
//! plan of its shape's bucket (`GpuGru::plan_for(T, B)`, tuned per bucket of
//! T), which the stream cannot know in advance: a stream of chunks and the
//! model's own forward over the same frames would then run two plans and
//! differ in the last bits. So [`GpuStream::new`] makes them agree: where
//! the model runs a measured plan (cached or tuned: the default), it forces
//! the stream's plan on the model (`GpuGru::set_plan`), and from then on the
//! model's own calls run that plan too, at every `T`. Where the model
//! already runs one plan at every `T` (a plan forced with `set_plan` or a
//! shorthand plan, or the fixed rule of `TuneMode::Off`), the
//! stream takes that plan and leaves the model as it is.
//! [`GpuStream::with_plan`] runs the plan it is given and never touches the
//! model (`model.set_plan(Some(stream.plan()))` then makes them agree).
//!
//! Evaluation mode only: no dropout, no tape. A bidirectional GRU cannot
//! stream (its reverse direction starts at the end of the sequence) and is
//! refused.

use ndarray::{Array3, ArrayView3};

use crate::error::{elements, GruError, Result};
use crate::gpu::gru::seq::SeqRun;
use crate::gpu::gru::{GpuGru, OnDevice};
use crate::gpu::plan::Plan;
use crate::gpu::pool::PooledBuffer;

/// A stateful forward over a stream of chunks, for inference.
///
/// It borrows the model (its parameters are read at each call: a change of
/// them between calls applies from the next chunk on) and holds the state
/// `(L, B, H)` of a batch of `B` independent streams on the device, zeros at
/// the start. Each batch row can be restarted on its own
/// ([`reset_rows`](Self::reset_rows)), for instance when one of the `B`
/// streams ends and another takes its row.
///
/// ```no_run
/// # fn f(model: &gru_wgpu::gpu::GpuGru, frames: &[gru_wgpu::ndarray::Array3<f32>]) -> gru_wgpu::Result<()> {
/// use gru_wgpu::gpu::GpuStream;
/// let mut stream = GpuStream::new(model, 2)?; // two streams side by side
/// for chunk in frames {
///     // chunk: (T_c, 2, I), or (2, T_c, I) where the GRU is batch_first
///     let out = stream.push(chunk.view())?; // (T_c, 2, H)
///     # let _ = out;
/// }
/// // The model now runs the stream's plan: its forward over all the frames
/// // is, bit for bit, the outputs above one after the other.
/// assert_eq!(model.plan_for(1000, 2)?.plan, stream.plan());
/// stream.reset_rows(&[1])?; // row 1 starts a new sequence
/// # Ok(()) }
/// ```
///
/// Streams made one after the other on one model all take the plan the
/// first one forced, so they agree with each other and with the model; two
/// made at the same moment on different threads may each force their own
/// (the last one stays forced).
pub struct GpuStream<'m> {
    model: &'m GpuGru,
    batch: usize,
    plan: Plan,
    /// Whether [`new`](Self::new) forced `plan` on the model.
    pinned: bool,
    /// `(L·D, B, H)` on the device; swapped for each call's `h_n`.
    state: PooledBuffer,
    frames: u64,
    row_frames: Vec<u64>,
}

impl std::fmt::Debug for GpuStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuStream")
            .field("model", self.model)
            .field("batch", &self.batch)
            .field("plan", &self.plan)
            .field("pinned", &self.pinned)
            .field("frames", &self.frames)
            .finish()
    }
}

impl<'m> GpuStream<'m> {
    /// Records the forward of a chunk `x` of `t_len` frames from the
    /// stream's state, in evaluation mode and without a tape.
    fn record_chunk(
        &self,
        rec: &mut crate::gpu::recorder::Recorder,
        x: &wgpu::Buffer,
        t_len: usize,
    ) -> Result<crate::gpu::gru::ForwardOut> {
        let seq = SeqRun::plain(t_len);
        let state = Some(self.state.buffer());
        let (batch, plan) = (self.batch, self.plan);
        self.model
            .record_forward(rec, x, state, (&seq, batch), None, false, plan)
    }

    /// A stream of `batch` rows on `model`, state zero, whose output agrees
    /// bit for bit with the model's own forward over the same frames (see
    /// the module's documentation).
    ///
    /// Its plan: the plan the model runs at every `T` where it has one (the
    /// plan forced by `GpuGru::set_plan` (a shorthand plan among them), or the
    /// fixed rule of `TuneMode::Off`); else the plan the model measured for
    /// a chunk of one frame of this batch (`model.plan_for(1, batch)`: from
    /// the plan cache, tuned first where the cache has none), which it then
    /// forces on the model (`model.set_plan(Some(plan))`, as
    /// [`pinned_model`](Self::pinned_model) says; `model.set_plan(None)`
    /// undoes it). The model's calls then run that plan at every shape,
    /// whatever their own bucket's measured plan would have been (a forward
    /// made before the stream was made ran its own shape's plan).
    ///
    /// Refuses a bidirectional GRU ([`GruError::InvalidConfig`]) and a
    /// batch of 0 ([`GruError::ZeroSize`]).
    pub fn new(model: &'m GpuGru, batch: usize) -> Result<Self> {
        use crate::gpu::gru::PlanSource;
        Self::check_model(model, batch)?;
        let choice = model.plan_for(1, batch)?;
        // Cached and tuned plans are measured per bucket of T: a whole call
        // of another length may run another one, unless the model is forced
        // to this one.
        let measured = matches!(choice.source, PlanSource::Cached | PlanSource::Tuned);
        let mut stream = Self::with_plan(model, batch, choice.plan)?;
        if measured {
            model.set_plan(Some(choice.plan));
            stream.pinned = true;
        }
        Ok(stream)
    }

    /// [`new`](Self::new) with `plan` for every call; refused
    /// ([`GruError::InvalidConfig`]) where it does not run this model on
    /// this batch (see `GpuGru::check_plan`). The model is left as it is:
    /// its own calls run their own plans (the same bits as the stream's
    /// only where that is `plan`; `model.set_plan(Some(stream.plan()))`
    /// makes it so).
    pub fn with_plan(model: &'m GpuGru, batch: usize, plan: Plan) -> Result<Self> {
        Self::check_model(model, batch)?;
        model.check_plan(plan, batch).map_err(|why| {
            GruError::InvalidConfig(format!("the plan {plan} does not apply: {why}"))
        })?;
        let len = elements("the stream's state", &model.config().state_shape(batch))?;
        let ctx = model.context();
        let state = ctx.scoped(|| {
            let state = model.act("stream state", len)?;
            let mut rec = model.recorder_timed(false);
            model.clear_act(&mut rec, (state.buffer(), 0), len)?;
            rec.submit()?;
            Ok(state)
        })?;
        Ok(GpuStream {
            model,
            batch,
            plan,
            pinned: false,
            state,
            frames: 0,
            row_frames: vec![0; batch],
        })
    }

    fn check_model(model: &GpuGru, batch: usize) -> Result<()> {
        let cfg = model.config();
        if cfg.direction != crate::config::Direction::Forward {
            return Err(GruError::InvalidConfig(format!(
                "a {} GRU cannot stream: its reverse direction starts at the end \
                 of the whole sequence (run GpuGru::forward on the whole sequence)",
                cfg.direction.name()
            )));
        }
        if batch == 0 {
            return Err(GruError::ZeroSize {
                name: "the stream's batch".into(),
                dim: "B",
                shape: cfg.state_shape(0).to_vec().into(),
            });
        }
        Ok(())
    }

    /// The model it runs.
    pub fn model(&self) -> &'m GpuGru {
        self.model
    }

    /// The plan of every call (fixed for the stream's life).
    pub fn plan(&self) -> Plan {
        self.plan
    }

    /// Whether [`new`](Self::new) forced this stream's plan on the model
    /// (`GpuGru::set_plan`), so that the model's own calls run it too: the
    /// model had no plan of its own for every `T`. It stays forced after
    /// the stream is dropped, until `model.set_plan(None)`.
    pub fn pinned_model(&self) -> bool {
        self.pinned
    }

    test_hook! {
        /// The number of rows `B` of every chunk.
        pub fn batch(&self) -> usize {
            self.batch
        }
    }

    /// Frames pushed since the stream was made (each frame is a step of
    /// all `B` rows).
    pub fn frames_seen(&self) -> u64 {
        self.frames
    }

    test_hook! {
        /// Per batch row, the frames pushed since the row's state was last
        /// reset or set (or since the stream was made).
        pub fn row_frames(&self) -> &[u64] {
            &self.row_frames
        }
    }

    /// Runs the chunk `x`, `(T_c, B, I)` (or `(B, T_c, I)` where the GRU is
    /// `batch_first`), from the stream's state, and keeps the new state on
    /// the device; returns the chunk's output `(T_c, B, H)` (or `(B, T_c,
    /// H)`). One submission and one read back.
    ///
    /// A chunk of the wrong rank, input size or batch, or with no frame, is
    /// refused with the error of `GpuGru::forward` (the state is unchanged).
    pub fn push(&mut self, x: ArrayView3<f32>) -> Result<Array3<f32>> {
        let model = self.model;
        let cfg = model.config();
        let (t_len, batch) = cfg.check_input("x", x.shape())?;
        self.check_batch(t_len, batch, x.shape())?;
        model.check_sizes(t_len, batch)?;
        let ctx = model.context();
        let (output, h_n) = ctx.scoped(|| {
            let mut rec = model.recorder();
            let xb = ctx.upload("x", x.view())?;
            let xb = model.f32_to_act(&mut rec, "x (f16)", xb)?;
            let out = self.record_chunk(&mut rec, xb.buffer(), t_len)?;
            let o_len = t_len * batch * cfg.hidden_size;
            let so = ctx.staging((o_len * 4) as u64);
            let output = model.act_to_f32(&mut rec, "output (f32)", out.output)?;
            rec.copy(output.buffer(), 0, so.buffer(), 0, (o_len * 4) as u64);
            rec.scratch(xb);
            rec.scratch(output);
            model.finish(rec)?;
            let data = ctx.read_staging(&[(&so, o_len)])?.pop().expect("read");
            let output = Array3::from_shape_vec(cfg.output_shape(t_len, batch), data)
                .expect("length matches");
            Ok((output, out.h_n))
        })?;
        self.advance(h_n, t_len);
        Ok(output)
    }

    /// [`push`](Self::push) on a device buffer holding the chunk in the
    /// configuration's layout (usage `COPY_SRC`; it is copied, so the
    /// caller may reuse it at once): returns the chunk's output as a device
    /// buffer the caller owns, nothing read back. One submission, not
    /// waited for.
    pub fn push_device(&mut self, x: OnDevice) -> Result<PooledBuffer> {
        let model = self.model;
        let cfg = model.config();
        let (t_len, batch) = (x.seq_len, x.batch);
        let shape = cfg.input_shape(t_len, batch);
        model.check_dims(t_len, batch)?;
        self.check_batch(t_len, batch, &shape)?;
        let n = elements("x", &shape)?;
        // (An f16 model's chunk holds f16 values: two to a float's bytes.)
        let words = if model.f16() { n.div_ceil(2) } else { n };
        model.check_buffer("x", x.buffer, words)?;
        let ctx = model.context();
        let (output, h_n) = ctx.scoped(|| {
            let mut rec = model.recorder();
            let out = self.record_chunk(&mut rec, x.buffer, t_len)?;
            model.finish(rec)?;
            Ok((out.output, out.h_n))
        })?;
        self.advance(h_n, t_len);
        Ok(output)
    }

    /// A chunk's batch must be the stream's.
    fn check_batch(&self, t_len: usize, batch: usize, shape: &[usize]) -> Result<()> {
        if batch != self.batch {
            let cfg = self.model.config();
            return Err(GruError::shape(
                "x",
                cfg.input_shape(t_len, self.batch).to_vec(),
                shape.to_vec(),
            ));
        }
        Ok(())
    }

    /// The new state after a chunk of `t_len` frames.
    fn advance(&mut self, h_n: PooledBuffer, t_len: usize) {
        self.state = h_n;
        self.frames += t_len as u64;
        for f in &mut self.row_frames {
            *f += t_len as u64;
        }
    }

    /// Sets the state of the batch rows `rows` to zero in every layer: each
    /// starts a new sequence at the next chunk, the other rows go on
    /// untouched. A row out of range is refused ([`GruError::OutOfRange`])
    /// and nothing is changed.
    pub fn reset_rows(&mut self, rows: &[usize]) -> Result<()> {
        if let Some(&r) = rows.iter().find(|&&r| r >= self.batch) {
            return Err(GruError::OutOfRange {
                what: "the batch row".into(),
                index: r,
                len: self.batch,
            });
        }
        if rows.is_empty() {
            return Ok(());
        }
        let h = self.model.config().hidden_size;
        let layers = self.model.config().state_shape(self.batch)[0];
        let (model, ctx) = (self.model, self.model.context());
        ctx.scoped(|| {
            let mut rec = model.recorder_timed(false);
            for l in 0..layers {
                for &r in rows {
                    let at = (l * self.batch + r) * h;
                    model.clear_act(&mut rec, (self.state.buffer(), at), h)?;
                }
            }
            rec.submit().map(|_| ())
        })?;
        for &r in rows {
            self.row_frames[r] = 0;
        }
        Ok(())
    }

    /// Sets the state of every row to zero (see [`reset_rows`](Self::reset_rows)).
    pub fn reset(&mut self) -> Result<()> {
        let rows: Vec<usize> = (0..self.batch).collect();
        self.reset_rows(&rows)
    }

    /// The state `(L, B, H)` read back: what `h_n` of one forward over
    /// everything pushed would be (one submission and a wait).
    pub fn state(&self) -> Result<Array3<f32>> {
        let shape = self.model.config().state_shape(self.batch);
        let (model, ctx) = (self.model, self.model.context());
        if !model.f16() {
            return ctx.scoped(|| ctx.read_array(self.state.buffer(), ndarray::Dim(shape)));
        }
        // f16: converted to f32 on the device first.
        ctx.scoped(|| {
            let len = shape.iter().product();
            let copy = model.act("stream state", len)?;
            let mut rec = model.recorder_timed(false);
            model.copy_act(&mut rec, (self.state.buffer(), 0), (copy.buffer(), 0), len)?;
            let f32s = model.act_to_f32(&mut rec, "stream state (f32)", copy)?;
            rec.submit()?;
            ctx.read_array(f32s.buffer(), ndarray::Dim(shape))
        })
    }

    /// Sets the state of every row to `state` `(L, B, H)`: the next chunk
    /// goes on from it as from `h0`. A state of another shape is refused
    /// ([`GruError::ShapeMismatch`]) and nothing is changed.
    pub fn set_state(&mut self, state: ArrayView3<f32>) -> Result<()> {
        let cfg = self.model.config();
        cfg.check_state("state", state.shape(), self.batch)?;
        let (model, ctx) = (self.model, self.model.context());
        self.state = ctx.scoped(|| {
            let b = ctx.upload("stream state", state)?;
            let mut rec = model.recorder_timed(false);
            let b = model.f32_to_act(&mut rec, "stream state (f16)", b)?;
            rec.submit()?;
            Ok(b)
        })?;
        self.row_frames.iter_mut().for_each(|f| *f = 0);
        Ok(())
    }
}
