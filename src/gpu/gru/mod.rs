//! The GRU on the GPU: parameters kept on the device, forward and backward of
//! the whole layer stack, each recorded into one command encoder and
//! submitted once.
//!
//! ```text
//! Forward, per layer l (both directions together):
//!   1. input projections: gi = X_l · W_ihᵀ + b_ih, all T steps at once   (T·B, D·3H)
//!   2. time loop (a `Strategy`): per-step or persistent dispatches      hs, out, gates
//!   3. dropout (training, between layers): X_{l+1} = out · mask / (1 - p)
//! The tape keeps X_l, hs and gates of every layer, where it is kept (a
//! training forward, or one asked for it); otherwise no gates are written.
//!
//! Backward, per layer from the top:
//!   1. time loop (the same `Strategy`): T + 1 backward steps           dG_i, dG_h, dL/dh0
//!   2. products: dW_ih = dG_iᵀ · X_l, dW_hh = dG_hᵀ · H_prev, dX_l = dG_i · W_ih
//!   3. column sums: db_ih, db_hh (of dG_i, dG_h)
//!   4. dropout of dX_l with the forward's mask, which is dL/d(out) of layer l-1.
//! ```
//!
//! The time loop is a [`Strategy`] (`GpuGru::strategy`: forced by
//! `set_strategy`, or a shorthand plan of `GpuContext::plan_named`): `Step`, `SplitK`
//! (per-step kernels), `Sequence`, `Resident` (persistent kernels) or
//! `Products` (per step, the recurrent product through the path's product
//! kernels, then the gates). The products (1 of the forward, the `Products`
//! time loop, 2 of the backward) go through one
//! [`ProductPath`](products::ProductPath): storage kernels, or the window
//! path of CPU adapters. Modules: `io` (the public
//! forward and backward with their options), `types` (tape, results,
//! statistics), `params` (uploading and reading back the parameters,
//! updates), `forward`, `backward`, `products`,
//! `windows`.

mod backward;
mod check;
mod exec;
mod forward;
mod io;
mod params;
mod planning;
pub(crate) mod products;
mod rows;
mod rule;
pub(crate) mod seq;
mod types;
mod windows;

use crate::config::{GruConfig, Precision};
use crate::error::{elements, GruError, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::ops::util::{encode_copy, encode_fill, Io};
use crate::gpu::plan::Plan;
use crate::gpu::pool::PooledBuffer;
use crate::gpu::recorder::Recorder;
use crate::params::GruParams;

pub use io::{
    BackwardInput, BackwardOptions, FlatInput, Forward, ForwardInput, ForwardOptions, OnDevice,
};
pub(crate) use params::RecordUpdate;
pub use planning::{Candidate, PlanChoice, PlanSource, TuneReport};
pub(crate) use types::ForwardOut;
pub use types::{CallStats, GpuBackward, GpuForward, GpuLayerGrads, GpuTape};

/// The parameters of one layer, both directions stacked, on the device.
#[derive(Debug)]
pub(crate) struct LayerParams {
    /// `(D·3H, I_l)`
    pub(crate) w_ih: PooledBuffer,
    /// `(D·3H)`
    pub(crate) b_ih: Option<PooledBuffer>,
    /// `(D, 3H, H)`
    pub(crate) w_hh: PooledBuffer,
    /// `(D, H, 3H)`: `W_hh` transposed, for the forward step.
    pub(crate) w_hh_t: PooledBuffer,
    /// `(D·3H)`
    pub(crate) b_hh: Option<PooledBuffer>,
    /// An f16 model's f32 master copies of `w_ih`, `w_hh`, `b_ih`, `b_hh`
    /// (the biases where the GRU has them): what the optimisers update and
    /// [`GpuGru::params`] reads; the f16 tensors above are made from them.
    /// Empty in f32.
    pub(crate) master: Vec<PooledBuffer>,
}

impl LayerParams {
    /// `w_ih`, `w_hh`, `b_ih`, `b_hh` as the kernels read them (the biases
    /// where the GRU has them).
    pub(crate) fn stored(&self) -> Vec<&PooledBuffer> {
        types::param_order(&self.w_ih, &self.w_hh, &self.b_ih, &self.b_hh)
    }

    /// The same tensors in f32: the masters of an f16 model, else `stored`.
    pub(crate) fn f32_tensors(&self) -> Vec<&PooledBuffer> {
        match self.master.is_empty() {
            true => self.stored(),
            false => self.master.iter().collect(),
        }
    }
}

/// A GRU whose parameters live on the GPU.
pub struct GpuGru {
    ctx: GpuContext,
    config: GruConfig,
    id: u64,
    /// Bumped by every change of the parameters; a tape records the version
    /// its forward read, and a backward refuses a tape of another version.
    version: std::sync::atomic::AtomicU64,
    /// Held from reading `version` to the submission of a call's work (see
    /// [`finish_at`](Self::finish_at)), and by `update` from changing it to
    /// the submission of the change: the queue runs submissions in order, so
    /// the version a call reads under it is that of the weights its work runs
    /// with.
    submission: std::sync::Mutex<()>,
    layers: Vec<LayerParams>,
    /// The chunked weights of the window family, where the context lets
    /// plans use it.
    windows: Option<windows::WindowPath>,
    /// A plan forced by `set_plan`.
    forced_plan: std::sync::Mutex<Option<Plan>>,
    timing: std::sync::atomic::AtomicBool,
    stats: std::sync::Mutex<CallStats>,
}

impl std::fmt::Debug for GpuGru {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuGru")
            .field("config", &self.config)
            .field("id", &self.id)
            .finish()
    }
}

impl GpuGru {
    /// Uploads `params` to the device of `ctx`.
    pub fn new(ctx: &GpuContext, params: &GruParams<f32>) -> Result<Self> {
        params.config().validate()?;
        params.check()?;
        if params.config().precision == Precision::F16
            && !ctx.features().contains(wgpu::Features::SHADER_F16)
        {
            return Err(GruError::MissingFeature {
                what: "a model in f16 (Precision::F16)".into(),
                feature: "SHADER_F16",
                adapter: ctx.adapter().to_string(),
            });
        }
        let mut m = GpuGru {
            ctx: ctx.clone(),
            config: params.config().clone(),
            id: ctx.next_id(),
            version: 0.into(),
            submission: Default::default(),
            layers: Vec::new(),
            windows: None,
            forced_plan: Default::default(),
            timing: false.into(),
            stats: Default::default(),
        };
        m.set_params(params)?;
        Ok(m)
    }

    pub fn config(&self) -> &GruConfig {
        &self.config
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// Times every forward and backward call on the device with timestamp
    /// queries (where the adapter has them); the call then waits for the
    /// device to finish. See [`last_call_stats`](Self::last_call_stats).
    pub fn set_timing(&self, on: bool) {
        self.timing.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Dispatches, submissions and device time of the last forward or backward call.
    pub fn last_call_stats(&self) -> CallStats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn recorder(&self) -> Recorder<'_> {
        self.recorder_timed(self.timing_on())
    }

    /// A recorder for this model's work, timed where `timed`: with its step
    /// kernels in the model's storage precision.
    pub(crate) fn recorder_timed(&self, timed: bool) -> Recorder<'_> {
        let mut rec = self.ctx.recorder(timed);
        rec.set_f16(self.f16());
        rec
    }

    /// Whether the model stores its weights and activations in f16.
    pub(crate) fn f16(&self) -> bool {
        self.config.precision == Precision::F16
    }

    /// A buffer of `len` elements in the model's storage precision (the
    /// weights and activations: layer inputs and outputs, states, the tape).
    pub(crate) fn act(&self, what: &str, len: usize) -> Result<PooledBuffer> {
        match self.f16() {
            true => self.ctx.dev().storage_f16(what, len),
            false => self.ctx.storage(what, len),
        }
    }

    /// The shape of a layer's time loop of `t_len` steps on `batch` rows
    /// (`flags_at`, `active`: see [`StepShape`]).
    pub(crate) fn step_shape(
        &self,
        (t_len, batch): (usize, usize),
        flags_at: Option<usize>,
        active: &Option<std::sync::Arc<[usize]>>,
    ) -> crate::gpu::ops::common::StepShape {
        let cfg = &self.config;
        crate::gpu::ops::common::StepShape {
            t_len,
            batch,
            hidden: cfg.hidden_size,
            dirs: cfg.num_directions(),
            has_bias: cfg.bias,
            reverse: cfg.direction == crate::config::Direction::Reverse,
            flags_at,
            active: active.clone(),
        }
    }

    /// The fused time loop of `strategy` (`None`: the products loop, which
    /// the plan's product path records), after checking that a step's
    /// thread loop over 3H (`what`) stays within the device's loop budget
    /// (see `Device::loop_budget`).
    pub(crate) fn fused_loop(
        &self,
        strategy: crate::gpu::plan::Strategy,
        hidden: usize,
        what: &str,
    ) -> Result<Option<&'static crate::gpu::ops::steps::TimeLoop>> {
        let cost = 2 * crate::gpu::ops::common::lp(3 * hidden) + 32;
        self.ctx.dev().check_loop(what, cost)?;
        let lp = strategy.time_loop();
        Ok((!matches!(lp.kind, crate::gpu::ops::steps::LoopKind::Products)).then_some(lp))
    }

    /// Records the copy of `n` elements in the model's storage precision
    /// (offsets in elements): a buffer copy in f32, a kernel in f16 (whose
    /// offsets a buffer copy cannot always take).
    pub(crate) fn copy_act(
        &self,
        rec: &mut Recorder,
        src: (&wgpu::Buffer, usize),
        dst: (&wgpu::Buffer, usize),
        n: usize,
    ) -> Result<()> {
        let bytes = |floats: usize| (floats * 4) as u64;
        match (n, self.f16()) {
            (0, _) => Ok(()),
            (_, true) => encode_copy(rec, Io::same(true), n, src, dst),
            (_, false) => {
                rec.copy(src.0, bytes(src.1), dst.0, bytes(dst.1), bytes(n));
                Ok(())
            }
        }
    }

    /// Records zeros into `n` elements in the model's storage precision.
    pub(crate) fn clear_act(
        &self,
        rec: &mut Recorder,
        dst: (&wgpu::Buffer, usize),
        n: usize,
    ) -> Result<()> {
        match (n, self.f16()) {
            (0, _) => Ok(()),
            (_, true) => encode_fill(rec, true, n, dst),
            (_, false) => {
                rec.clear(dst.0, (dst.1 * 4) as u64, (n * 4) as u64);
                Ok(())
            }
        }
    }

    /// `src` (f32) in the model's storage precision: `src` itself in f32, a
    /// converted copy in f16 (`src` kept by `rec` until submission).
    pub(crate) fn f32_to_act(
        &self,
        rec: &mut Recorder,
        what: &str,
        src: PooledBuffer,
    ) -> Result<PooledBuffer> {
        self.convert(rec, what, src, true)
    }

    /// `src` (in the model's storage precision) as f32: `src` itself in f32,
    /// a converted copy in f16.
    pub(crate) fn act_to_f32(
        &self,
        rec: &mut Recorder,
        what: &str,
        src: PooledBuffer,
    ) -> Result<PooledBuffer> {
        self.convert(rec, what, src, false)
    }

    /// In f16, a copy of `src` converted to f16 (`to_f16`) or from it, `src`
    /// kept by `rec`; in f32, `src`.
    fn convert(
        &self,
        rec: &mut Recorder,
        what: &str,
        src: PooledBuffer,
        to_f16: bool,
    ) -> Result<PooledBuffer> {
        if !self.f16() {
            return Ok(src);
        }
        let len = src.len();
        let b = match to_f16 {
            true => self.act(what, len)?,
            false => self.ctx.storage(what, len)?,
        };
        let io = Io {
            inp: !to_f16,
            out: to_f16,
        };
        encode_copy(rec, io, len, (src.buffer(), 0), (b.buffer(), 0))?;
        rec.scratch(src);
        Ok(b)
    }

    /// A buffer holding `data` in the model's storage precision (converted
    /// on the device in f16), as a device forward's `x` or `h0` takes it.
    pub fn upload_input(&self, what: &str, data: &[f32]) -> Result<PooledBuffer> {
        let b = self.ctx.upload(what, data)?;
        if !self.f16() {
            return Ok(b);
        }
        self.ctx.scoped(|| {
            let mut rec = self.ctx.recorder(false);
            let out = self.f32_to_act(&mut rec, what, b)?;
            rec.submit()?;
            Ok(out)
        })
    }

    /// Reads back `len` values of a buffer in the model's storage precision
    /// (a device forward's `output` and `h_n`, a stream's state): as they
    /// are in f32, converted from f16 on the device in f16.
    pub fn read_stored(&self, buf: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        // (A copy reads an f32 buffer; a kernel reads an f16 one, two values a word.)
        let (words, usage, usage_name) = match self.f16() {
            true => (len.div_ceil(2), wgpu::BufferUsages::STORAGE, "STORAGE"),
            false => (len, wgpu::BufferUsages::COPY_SRC, "COPY_SRC"),
        };
        self.ctx.dev().check_caller_buffer(
            "the buffer read back",
            buf,
            words,
            usage,
            usage_name,
        )?;
        if !self.f16() {
            return self.ctx.dev().read_back(buf, 0, len);
        }
        self.ctx.scoped(|| {
            let out = self.ctx.storage("read back (f32)", len)?;
            let mut rec = self.ctx.recorder(false);
            let io = Io {
                inp: true,
                out: false,
            };
            encode_copy(&mut rec, io, len, (buf, 0), (out.buffer(), 0))?;
            rec.submit()?;
            self.ctx.dev().read_back(out.buffer(), 0, len)
        })
    }

    /// Whether calls are timed (see `set_timing`).
    pub(crate) fn timing_on(&self) -> bool {
        self.timing.load(std::sync::atomic::Ordering::Relaxed)
    }

    test_hook! {
        /// The version of the parameters: it changes with every change of them
        /// (`set_params`, `update`).
        pub fn params_version(&self) -> u64 {
            self.version.load(std::sync::atomic::Ordering::Acquire)
        }
    }

    /// Marks the parameters changed.
    pub(crate) fn bump_version(&self) {
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Layer `l` as the products see it.
    pub(crate) fn layer(&self, l: usize) -> products::Layer<'_> {
        products::Layer {
            cfg: &self.config,
            l,
            p: &self.layers[l],
        }
    }

    /// Submits a call's recording, once, and keeps its statistics.
    pub(crate) fn finish(&self, rec: Recorder) -> Result<CallStats> {
        self.finish_at(rec, |_| Ok(())).map(|(stats, _)| stats)
    }

    /// [`finish`](Self::finish) under the model's submission lock, and the
    /// version of the parameters that the submitted work reads: `check` sees
    /// that version first and may refuse the submission (a backward's stale
    /// tape). No change of the parameters (`update`) is submitted between
    /// the check and this submission, and the queue runs its submissions in
    /// order, so the work runs with the weights of that version. The lock
    /// is let go before a timed call waits for its timestamps.
    pub(crate) fn finish_at(
        &self,
        rec: Recorder,
        check: impl FnOnce(u64) -> Result<()>,
    ) -> Result<(CallStats, u64)> {
        let dispatches = rec.dispatches;
        let bind_groups = rec.bind_groups_made();
        let record_ms = rec.host_ms();
        let (sent, version) = {
            let _held = self.submission_lock();
            let version = self.params_version();
            check(version)?;
            (rec.send(), version)
        };
        let gpu_ms = sent.gpu_ms()?;
        let stats = CallStats {
            dispatches,
            bind_groups,
            submissions: 1,
            gpu_ms,
            record_ms,
        };
        *self.stats.lock().unwrap_or_else(|p| p.into_inner()) = stats;
        Ok((stats, version))
    }

    /// The lock that orders the model's submissions with the changes of
    /// its parameters (see [`finish_at`](Self::finish_at)).
    pub(crate) fn submission_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.submission.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks, before any work or allocation, that a forward and backward
    /// of `t_len` steps on a batch of `batch` fit the device: no size is 0,
    /// and no buffer exceeds the device's limits (the error names the buffer,
    /// its size and the limit).
    pub fn check_fits(&self, t_len: usize, batch: usize) -> Result<()> {
        self.check_dims(t_len, batch)
    }

    pub(crate) fn check_dims(&self, t_len: usize, batch: usize) -> Result<()> {
        if t_len == 0 || batch == 0 {
            return Err(GruError::ZeroSize {
                name: "x".into(),
                dim: if t_len == 0 { "T" } else { "B" },
                shape: self.config.input_shape(t_len, batch).to_vec().into(),
            });
        }
        self.check_sizes(t_len, batch)
    }

    /// Refuses, before any work, a call whose largest buffers exceed what the
    /// device allows, naming the buffer, its size and the limit. On the
    /// window path each size is checked with a window's slack, the most a
    /// chunked copy adds.
    pub(crate) fn check_sizes(&self, t_len: usize, batch: usize) -> Result<()> {
        let cfg = &self.config;
        let (nd, h) = (cfg.num_directions(), cfg.hidden_size);
        let i_max = if cfg.num_layers > 1 {
            cfg.input_size.max(nd * h)
        } else {
            cfg.input_size
        };
        let tb1 = t_len.saturating_add(1);
        let checks: [(&str, [usize; 4]); 5] = [
            ("the layer input (T·B·I)", [t_len, batch, i_max, 1]),
            (
                "the gates on the tape (D·T·B·4H)",
                [nd, t_len, batch, 4 * h],
            ),
            (
                "the hidden states on the tape (D·(T+1)·B·H)",
                [nd, tb1, batch, h],
            ),
            (
                "the input projections and their gradients (T·B·D·3H)",
                [t_len, batch, nd, 3 * h],
            ),
            // The chunked copies of the window kernels pad T·B to a multiple of 8.
            (
                "a chunked copy (D·3H·T·B, padded)",
                [nd * 3 * h, t_len.saturating_add(8), batch, 1],
            ),
        ];
        for (what, dims) in checks {
            let floats = elements(what, &dims)?;
            self.ctx.dev().check_buffer_size(
                what,
                (floats as u64)
                    .saturating_mul(4)
                    .saturating_add(self.ctx.window_slack()),
            )?;
        }
        Ok(())
    }

    /// Checks a caller's buffer: large enough for `floats`, usable as a
    /// copy source, and made by this model's device.
    pub(crate) fn check_buffer(&self, name: &str, buf: &wgpu::Buffer, floats: usize) -> Result<()> {
        self.ctx.dev().check_caller_buffer(
            name,
            buf,
            floats,
            wgpu::BufferUsages::COPY_SRC,
            "COPY_SRC",
        )
    }
}
