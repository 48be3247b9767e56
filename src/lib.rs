//! # gru-wgpu
//!
//! PyTorch's `nn.GRU` and `nn.GRUCell`, forward and backward (backpropagation
//! through time), as WGSL compute shaders on wgpu, checked against a plain CPU
//! reference on ndarray.
//!
//! ```text
//! r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
//! z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
//! n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))
//! h' = (1 - z) * n + z * h
//! ```
//!
//! Arrays come in and go out as [`ndarray`] 0.17 arrays: use the crate
//! re-exported here (`gru_wgpu::ndarray`), or depend on ndarray 0.17 itself.
//! An array of another ndarray version is another type to the compiler:
//! with 0.16, "the trait bound `ndarray::ArrayBase<ndarray::ViewRepr<&f32>,
//! ndarray::Dim<[usize; 3]>>: ForwardInput` is not satisfied", and only a
//! note further down says "there are multiple different versions of crate
//! `ndarray` in the dependency graph".

/// The ndarray this crate takes and returns (0.17): `gru_wgpu::ndarray::Array3`.
pub use ndarray;

/// An item public with the `test-hooks` feature (for the crate's own tests)
/// and crate-private without it: `test_hook! { /// docs
/// pub fn name(..) { .. } }`, at module or impl level.
macro_rules! test_hook {
    ($(#[$m:meta])* pub $($item:tt)*) => {
        #[cfg(feature = "test-hooks")]
        $(#[$m])* pub $($item)*
        #[cfg(not(feature = "test-hooks"))]
        #[allow(dead_code)]
        $(#[$m])* pub(crate) $($item)*
    };
}

/// `Display` for a type with a stable `name(self) -> &'static str` (or
/// `-> String`): its name.
macro_rules! display_by_name {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.name())
            }
        }
    )*};
}

pub mod config;
pub mod cpu;
pub mod dropout;
pub mod error;
pub mod files;
pub mod gpu;
pub mod memory;
pub mod onnx;
pub mod optim;
pub mod params;
pub mod real;
pub mod reference;

mod tune;

pub use config::{Direction, GruConfig, ParamKind, ParamSpec, Precision, ResetForm};
pub use error::{GruError, Result, Shape};
pub use params::{DirParams, GruParams};
pub use real::Real;
