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
//! `set_strategy`, or from the `set_recurrence` setting): `Step`, `SplitK`
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
mod forward;
mod io;
mod params;
mod planning;
pub(crate) mod products;
pub(crate) mod seq;
mod types;
mod windows;

use crate::config::GruConfig;
use crate::error::{elements, GruError, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::plan::Plan;
use crate::gpu::pool::PooledBuffer;
use crate::gpu::recorder::Recorder;
use crate::params::GruParams;

pub use io::{
    BackwardInput, BackwardOptions, Flat, Forward, ForwardInput, ForwardOptions, OnDevice,
};
pub use planning::{Candidate, PlanChoice, PlanSource, TuneReport};
pub use types::{CallStats, GpuBackward, GpuForward, GpuLayerGrads, GpuTape, Recurrence};

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
}

/// A GRU whose parameters live on the GPU.
pub struct GpuGru {
    ctx: GpuContext,
    config: GruConfig,
    id: u64,
    /// Bumped by every change of the parameters; a tape records the version
    /// its forward read, and a backward refuses a tape of another version.
    version: std::sync::atomic::AtomicU64,
    layers: Vec<LayerParams>,
    /// The chunked weights of the window family, where the context lets
    /// plans use it.
    windows: Option<windows::WindowPath>,
    /// A plan forced by `set_plan`.
    forced_plan: std::sync::Mutex<Option<Plan>>,
    timing: std::sync::atomic::AtomicBool,
    stats: std::sync::Mutex<CallStats>,
    recurrence: std::sync::Mutex<Recurrence>,
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
        let mut m = GpuGru {
            ctx: ctx.clone(),
            config: params.config().clone(),
            id: ctx.next_id(),
            version: 0.into(),
            layers: Vec::new(),
            windows: None,
            forced_plan: Default::default(),
            timing: false.into(),
            stats: Default::default(),
            recurrence: Default::default(),
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

    /// Forces the persistent or the per-step time loop of the context's
    /// product family ([`GpuContext::products`]): a shorthand for
    /// [`set_plan`](Self::set_plan) (`Persistent` is the `sequence`
    /// strategy, `PerStep` the `step` strategy, or `products` on the window
    /// family); `Auto` goes back to the plan of each shape (forced by
    /// `set_plan`, cached, measured or the fallback rule). A plan that does
    /// not apply to a call's shape makes the call fail with an error.
    pub fn set_recurrence(&self, r: Recurrence) {
        *self.recurrence.lock().unwrap_or_else(|p| p.into_inner()) = r;
    }

    pub(crate) fn recorder(&self) -> Recorder<'_> {
        self.ctx.recorder(self.timing_on())
    }

    /// Whether calls are timed (see `set_timing`).
    pub(crate) fn timing_on(&self) -> bool {
        self.timing.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The version of the parameters: it changes with every change of them
    /// (`set_params`, `update`).
    pub fn params_version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
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
        let dispatches = rec.dispatches;
        let gpu_ms = rec.submit()?;
        let stats = CallStats {
            dispatches,
            submissions: 1,
            gpu_ms,
        };
        *self.stats.lock().unwrap_or_else(|p| p.into_inner()) = stats;
        Ok(stats)
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

    /// Checks a caller's buffer: large enough for `floats` and usable as a copy source.
    pub(crate) fn check_buffer(name: &str, buf: &wgpu::Buffer, floats: usize) -> Result<()> {
        crate::gpu::device::check_caller_buffer(
            name,
            buf,
            floats,
            wgpu::BufferUsages::COPY_SRC,
            "COPY_SRC",
        )
    }
}
