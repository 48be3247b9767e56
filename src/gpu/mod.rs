//! The GPU path: WGSL kernels on wgpu, in layers that each know only those
//! below them.
//!
//! - [`device`]: the adapter, the wgpu device and queue, limits, the buffer
//!   pool (`pool`), error scopes, reading results back; no kernel knowledge;
//! - `pipeline` and `recorder`: kernels built lazily on first use and
//!   cached by shader, entry point and override constants; grids split into
//!   pieces; a whole call recorded into one encoder, submitted once;
//! - [`ops`]: one module per shader of `shaders/` (its parameter struct and
//!   host functions), the window products of CPU adapters among them;
//! - [`context`]: [`GpuContext`], the handle that holds the device and the
//!   pipeline cache;
//! - on top, the GRU: [`GpuGru`] (device weights, forward, backward),
//!   [`GpuGruCell`], [`GpuStream`] (streaming inference, a chunk of frames
//!   per call), the optimisers of [`optim`], and the regression head of
//!   [`head`].

pub mod adapter;
pub mod cell;
pub mod context;
pub mod device;
mod gru;
pub mod head;
pub mod ops;
pub mod optim;
pub(crate) mod pipeline;
pub mod plan;
pub(crate) mod pool;
pub use plan::{Family, Plan, PlanCacheLocation, TuneMode};
pub(crate) mod recorder;
pub mod stream;

pub use cell::GpuGruCell;
pub use context::{
    window_kernels_fit, ContextOptions, GpuContext, LimitsProfile, Products, DEFAULT_POOL_BUDGET,
    DEFAULT_POOL_MAX_IDLE,
};
pub use device::{list_adapters, AdapterSummary};
pub use gru::{
    BackwardInput, BackwardOptions, CallStats, Candidate, FlatInput, Forward, ForwardInput,
    ForwardOptions, GpuBackward, GpuForward, GpuGru, GpuLayerGrads, GpuTape, OnDevice, PlanChoice,
    PlanSource, TuneReport,
};
pub use head::{GpuLinearHead, HeadStep};
pub use ops::gemm::GemmVariant;
pub use optim::{clip_grad_norm, GpuOptimizer, GradNorm, Rule};
pub use plan::Strategy;
#[cfg(feature = "test-hooks")]
pub use pool::PoolStats;
pub use pool::PooledBuffer;
pub use stream::GpuStream;
