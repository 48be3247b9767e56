//! The CPU reference: plain ndarray code, generic over `f32` and `f64`.
//!
//! It is the oracle every GPU result is checked against, so it stays simple:
//! one step of the cell forward and backward in [`cell`], the whole `nn.GRU`
//! (layers, directions, layouts) on top of it in [`layer`].

pub mod cell;
pub mod layer;

pub use cell::{
    step_backward, step_backward_form, step_forward, step_forward_form, GruCell, StepTape,
};
pub use layer::{Gru, GruGrads, SeqOptions};
