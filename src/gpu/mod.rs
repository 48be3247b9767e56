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

pub(crate) mod adapter;
pub(crate) mod cell;
pub(crate) mod context;
pub(crate) mod device;
mod gru;
pub(crate) mod head;
// The shaders and kernel specs are the test hooks' (`tests/backends.rs`, `tests/shaders.rs`).
#[cfg(feature = "test-hooks")]
pub mod ops;
#[cfg(not(feature = "test-hooks"))]
pub(crate) mod ops;
pub(crate) mod optim;
pub(crate) mod pipeline;
pub(crate) mod plan;
pub(crate) mod pool;
pub use plan::{Family, Plan, PlanCacheLocation, PlanCacheStatus, TuneMode};
pub(crate) mod recorder;
pub(crate) mod stream;

pub use adapter::{list_adapters, AdapterSummary};
pub use cell::GpuGruCell;
#[cfg(feature = "test-hooks")]
pub use context::window_kernels_fit;
#[cfg(feature = "test-hooks")]
pub use context::Products;
pub use context::{ContextOptions, GpuContext, LimitsProfile};
pub use gru::{
    BackwardInput, BackwardOptions, CallStats, Candidate, FlatInput, Forward, ForwardInput,
    ForwardOptions, GpuBackward, GpuForward, GpuGru, GpuLayerGrads, GpuTape, OnDevice, PlanChoice,
    PlanSource, TuneReport,
};
pub use head::{GpuLinearHead, HeadStep};
pub use ops::gemm::GemmVariant;
pub use optim::{clip_grad_norm, GpuOptimizer, GradNorm, Rule};
pub use plan::strategy::Strategy;
#[cfg(feature = "test-hooks")]
pub use pool::PoolStats;
pub use pool::PooledBuffer;
pub use stream::GpuStream;
// The GEMM kernels alone, for `gru-wgpu bench-gemm` and the kernels' tests.
#[cfg(any(feature = "cli", feature = "test-hooks"))]
#[doc(hidden)]
pub use context::gemm;
