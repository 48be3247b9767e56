//! The GPU path: WGSL kernels on wgpu, driven from here.
//!
//! - [`context`]: the device, its limits, pipelines built once, a buffer pool;
//! - [`kernels`]: one host function per kernel;
//! - [`recorder`]: a whole call recorded into one encoder, submitted once;
//! - [`model`]: the GRU stack, forward and backward.

pub mod cell;
pub mod context;
pub mod kernels;
pub mod model;
pub mod optim;
pub(crate) mod recorder;

pub use cell::GpuGruCell;
pub use context::{
    list_adapters, AdapterSummary, ContextOptions, GpuContext, PooledBuffer, Products,
};
pub use model::{CallStats, GpuBackward, GpuForward, GpuGru, GpuLayerGrads, GpuTape, Recurrence};
pub use optim::{clip_grad_norm, GpuOptimizer, GradNorm, Rule};
