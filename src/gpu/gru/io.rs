//! The GRU's public calls: one [`forward`](GpuGru::forward) and one
//! [`backward`](GpuGru::backward), each with an options struct, for three
//! kinds of data: host arrays (`ArrayView3`), flat host slices ([`FlatInput`]),
//! and device buffers ([`OnDevice`] for the forward, `&wgpu::Buffer` for the
//! backward). The kind of the input fixes the kind of the optional state and
//! of the results (host arrays, or device buffers the caller owns).

use ndarray::{Array3, ArrayView3};

use crate::cpu::{GruGrads, SeqOptions};
use crate::error::Result;
use crate::gpu::gru::types::{GpuBackward, GpuForward, GpuTape};
use crate::gpu::gru::GpuGru;

/// The options of [`GpuGru::forward`]. `S` is the kind of `h0`, that of the
/// input (`ArrayView3<f32>`, `&[f32]` or `&wgpu::Buffer`).
#[derive(Clone, Debug)]
pub struct ForwardOptions<S> {
    /// The initial state `(L·D, B, H)`; zeros when `None`.
    pub h0: Option<S>,
    /// Training mode, with dropout between layers from this seed (the mask
    /// of [`crate::dropout`]) where the configuration has dropout. A
    /// training forward keeps its tape.
    pub train: Option<u32>,
    /// Keep the tape in evaluation mode too, for a backward. Without it an
    /// evaluation forward writes no gates and hands out no tape: it holds
    /// only the output and the states.
    pub keep_tape: bool,
    /// Variable lengths and episode resets (see [`SeqOptions`]); the
    /// default is neither. Steps past the longest length are not run.
    pub seq: SeqOptions,
}

impl<S> Default for ForwardOptions<S> {
    fn default() -> Self {
        ForwardOptions {
            h0: None,
            train: None,
            keep_tape: false,
            seq: SeqOptions::default(),
        }
    }
}

impl<S> ForwardOptions<S> {
    /// With the initial state `h0` (`Some` or `None`, or a state).
    pub fn h0(mut self, h0: impl Into<Option<S>>) -> Self {
        self.h0 = h0.into();
        self
    }

    /// Training mode with dropout drawn from `seed` (keeps the tape).
    pub fn train(mut self, seed: u32) -> Self {
        self.train = Some(seed);
        self
    }

    test_hook! {
        /// Training mode where `seed` is `Some`, evaluation mode otherwise.
        pub fn train_if(mut self, seed: Option<u32>) -> Self {
            self.train = seed;
            self
        }
    }

    /// Keeps the tape for a backward.
    pub fn keep_tape(mut self) -> Self {
        self.keep_tape = true;
        self
    }

    /// Per-sequence valid lengths, each in `1..=T` (PyTorch's packed
    /// sequences: output zero past each length, `h_n` at each sequence's last
    /// valid step, the reverse direction starting at `length - 1`).
    pub fn lengths(mut self, lengths: impl Into<Option<Vec<usize>>>) -> Self {
        self.seq.lengths = lengths.into();
        self
    }

    /// Episode resets, `(T, B)` (or `(B, T)` where `batch_first`): `true`
    /// starts a new sequence at that step of that column (see
    /// [`SeqOptions`]).
    pub fn resets(mut self, resets: impl Into<Option<ndarray::Array2<bool>>>) -> Self {
        self.seq.resets = resets.into();
        self
    }

    /// Lengths and resets together.
    pub fn seq(mut self, seq: SeqOptions) -> Self {
        self.seq = seq;
        self
    }

    /// Whether the forward keeps its tape: asked for, or training.
    pub(crate) fn tape(&self) -> bool {
        self.keep_tape || self.train.is_some()
    }
}

/// The options of [`GpuGru::backward`]. `S` is the kind of `grad_h_n`, that
/// of `grad_output`.
#[derive(Clone, Debug)]
pub struct BackwardOptions<S> {
    /// `dL/dh_n` `(L·D, B, H)`; zeros when `None`.
    pub grad_h_n: Option<S>,
}

impl<S> Default for BackwardOptions<S> {
    fn default() -> Self {
        BackwardOptions { grad_h_n: None }
    }
}

impl<S> BackwardOptions<S> {
    /// With the gradient of `h_n` (`Some` or `None`, or a gradient).
    pub fn grad_h_n(mut self, g: impl Into<Option<S>>) -> Self {
        self.grad_h_n = g.into();
        self
    }
}

/// A forward's results on the host.
#[derive(Debug)]
pub struct Forward {
    /// `output`, `(T, B, D·H)` (or `(B, T, D·H)` with `batch_first`).
    pub output: Array3<f32>,
    /// `h_n`, `(L·D, B, H)`.
    pub h_n: Array3<f32>,
    /// The tape, where it was kept (see [`ForwardOptions::keep_tape`]).
    pub tape: Option<GpuTape>,
}

impl Forward {
    test_hook! {
        /// `(output, h_n, tape)`.
        pub fn into_parts(self) -> (Array3<f32>, Array3<f32>, Option<GpuTape>) {
            (self.output, self.h_n, self.tape)
        }
    }
}

/// A flat host slice in the layout of an array: `x` holds the `T·B·I`
/// floats of `(T, B, I)` (or `(B, T, I)`). A slice of another length is an
/// error.
#[derive(Clone, Copy, Debug)]
pub struct FlatInput<'a> {
    pub data: &'a [f32],
    pub seq_len: usize,
    pub batch: usize,
}

/// A device buffer holding the input `x` in the configuration's layout. It
/// needs the usage `COPY_SRC`; its contents are copied, so the caller may
/// reuse it at once. It must be a buffer of the model's device (one the
/// crate made on its context, or one made on `GpuContext::device()`): a
/// buffer of another device is refused with [`GruError::ForeignBuffer`](crate::GruError::ForeignBuffer).
#[derive(Clone, Copy, Debug)]
pub struct OnDevice<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub seq_len: usize,
    pub batch: usize,
}

/// A kind of input of [`GpuGru::forward`]: host arrays, flat slices, device buffers.
pub trait ForwardInput: Sized {
    /// The kind of `h0`.
    type State;
    /// What the forward returns.
    type Output;
    #[doc(hidden)]
    fn run_forward(
        self,
        model: &GpuGru,
        opts: &ForwardOptions<Self::State>,
    ) -> Result<Self::Output>;
}

/// A kind of `grad_output` of [`GpuGru::backward`]: host arrays, flat slices,
/// device buffers.
pub trait BackwardInput: Sized {
    /// The kind of `grad_h_n`.
    type State;
    /// What the backward returns.
    type Output;
    #[doc(hidden)]
    fn run_backward(
        self,
        model: &GpuGru,
        tape: GpuTape,
        opts: &BackwardOptions<Self::State>,
    ) -> Result<Self::Output>;
}

impl<'a> ForwardInput for ArrayView3<'a, f32> {
    type State = ArrayView3<'a, f32>;
    type Output = Forward;
    fn run_forward(self, model: &GpuGru, opts: &ForwardOptions<Self::State>) -> Result<Forward> {
        model.forward_host(self, opts.h0.as_ref().map(|h| h.view()), opts)
    }
}

impl<'a> ForwardInput for FlatInput<'a> {
    type State = &'a [f32];
    type Output = Forward;
    fn run_forward(self, model: &GpuGru, opts: &ForwardOptions<Self::State>) -> Result<Forward> {
        model.forward_flat(self, opts)
    }
}

impl<'a> ForwardInput for OnDevice<'a> {
    type State = &'a wgpu::Buffer;
    type Output = GpuForward;
    fn run_forward(self, model: &GpuGru, opts: &ForwardOptions<Self::State>) -> Result<GpuForward> {
        model.forward_device(self, opts)
    }
}

impl<'a> BackwardInput for ArrayView3<'a, f32> {
    type State = ArrayView3<'a, f32>;
    type Output = GruGrads<f32>;
    fn run_backward(
        self,
        model: &GpuGru,
        tape: GpuTape,
        opts: &BackwardOptions<Self::State>,
    ) -> Result<GruGrads<f32>> {
        model.backward_host(tape, self, opts.grad_h_n.as_ref().map(|g| g.view()))
    }
}

impl<'a> BackwardInput for &'a [f32] {
    type State = &'a [f32];
    type Output = GruGrads<f32>;
    fn run_backward(
        self,
        model: &GpuGru,
        tape: GpuTape,
        opts: &BackwardOptions<Self::State>,
    ) -> Result<GruGrads<f32>> {
        model.backward_flat(tape, self, opts.grad_h_n)
    }
}

impl<'a> BackwardInput for &'a wgpu::Buffer {
    type State = &'a wgpu::Buffer;
    type Output = GpuBackward;
    fn run_backward(
        self,
        model: &GpuGru,
        tape: GpuTape,
        opts: &BackwardOptions<Self::State>,
    ) -> Result<GpuBackward> {
        model.backward_device(tape, self, opts.grad_h_n)
    }
}

impl GpuGru {
    /// The forward of the whole stack, from host arrays (`x` `(T, B, I)`, or
    /// `(B, T, I)` where `batch_first`), a [`FlatInput`] slice, or a device buffer
    /// ([`OnDevice`]); `opts` holds `h0` (of the same kind), the mode and
    /// whether to keep the tape. Host inputs give host results ([`Forward`]),
    /// device inputs device buffers ([`GpuForward`]).
    ///
    /// ```no_run
    /// # fn f(model: &gru_wgpu::gpu::GpuGru, x: ndarray::Array3<f32>) -> gru_wgpu::Result<()> {
    /// use gru_wgpu::gpu::{BackwardOptions, ForwardOptions};
    /// let f = model.forward(x.view(), ForwardOptions::default().keep_tape())?;
    /// let tape = f.tape.expect("kept");
    /// let grads = model.backward(tape, f.output.view(), BackwardOptions::default())?;
    /// # Ok(()) }
    /// ```
    pub fn forward<X: ForwardInput>(
        &self,
        x: X,
        opts: ForwardOptions<X::State>,
    ) -> Result<X::Output> {
        x.run_forward(self, &opts)
    }

    /// The backward of the whole stack for `tape` (which it consumes):
    /// `grad_output` with the output's shape and layout, as a host array, a
    /// flat slice or a device buffer; `opts` holds `grad_h_n` of the same
    /// kind. Host inputs give the gradients on the host ([`GruGrads`]),
    /// device buffers on the device ([`GpuBackward`]).
    ///
    /// A tape serves one backward: using it twice does not compile.
    ///
    /// ```compile_fail
    /// # fn twice(model: &gru_wgpu::gpu::GpuGru, tape: gru_wgpu::gpu::GpuTape, g: ndarray::Array3<f32>) {
    /// use gru_wgpu::gpu::BackwardOptions;
    /// let _ = model.backward(tape, g.view(), BackwardOptions::default());
    /// let _ = model.backward(tape, g.view(), BackwardOptions::default()); // error: use of moved value `tape`
    /// # }
    /// ```
    pub fn backward<G: BackwardInput>(
        &self,
        tape: GpuTape,
        grad_output: G,
        opts: BackwardOptions<G::State>,
    ) -> Result<G::Output> {
        grad_output.run_backward(self, tape, &opts)
    }
}
