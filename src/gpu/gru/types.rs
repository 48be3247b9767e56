//! What the GRU's calls hand out: the tape, the forward's and backward's
//! device buffers, the statistics of a call, and the choice of time loop.

use crate::gpu::pool::PooledBuffer;
#[cfg(doc)]
use crate::gpu::GpuGru;

/// What the forward leaves on the device for the backward: per layer its
/// input, the hidden states and the gates of every step.
#[derive(Debug)]
pub struct GpuTape {
    pub(crate) model_id: u64,
    /// The version of the model's parameters the forward read.
    pub(crate) version: u64,
    /// The steps the forward ran (the longest length, or `T`): the
    /// length of every buffer on the tape.
    pub(crate) t_len: usize,
    /// The caller's `T`.
    pub(crate) t_full: usize,
    /// Whether the layers' `hs` carry step flags after the states.
    pub(crate) flags: bool,
    /// Per step, the rows its recurrent product covers (see
    /// `StepShape::active`); `None`: every row.
    pub(crate) active: Option<std::sync::Arc<[usize]>>,
    /// The order the rows ran in, where it is not the caller's (see
    /// `SeqRun::perm`): the backward gathers into it and back too.
    pub(crate) perm: Option<Vec<usize>>,
    pub(crate) batch: usize,
    pub(crate) dropout: Option<(u32, f32)>,
    /// The plan the forward ran; the backward runs it too.
    pub(crate) plan: crate::gpu::plan::Plan,
    pub(crate) layers: Vec<LayerTape>,
}

#[derive(Debug)]
pub(crate) struct LayerTape {
    /// `(T·B, I_l)`, sequence-first.
    pub(crate) xin: PooledBuffer,
    /// `(D, T+1, B, H)`
    pub(crate) hs: PooledBuffer,
    /// `(D, T, B, 4, H)`
    pub(crate) gates: PooledBuffer,
}

impl GpuTape {
    /// The plan the forward ran (the backward of this tape runs it too).
    pub fn plan(&self) -> crate::gpu::plan::Plan {
        self.plan
    }

    /// `(T, B)` of the forward that made it.
    pub fn dims(&self) -> (usize, usize) {
        (self.t_full, self.batch)
    }

    test_hook! {
        /// The version of the model's parameters that the forward read
        /// ([`GpuGru::params_version`] of the weights its submitted work ran
        /// with): its backward is accepted only while the model is still at
        /// this version.
        pub fn params_version(&self) -> u64 {
            self.version
        }
    }
}

/// The result of [`GpuGru::forward`] on device buffers: buffers the caller owns.
///
/// The buffers come from the context's pool and go back to it when dropped
/// (`PooledBuffer::into_inner` keeps one); `.buffer()` is the `wgpu::Buffer`,
/// `.len()` the values of data at its start (the buffer may be longer). For
/// a model in [`Precision::F16`](crate::Precision) `output` and `h_n` hold
/// f16 values, two to a float's bytes ([`GpuGru::read_stored`] reads them as
/// f32).
#[derive(Debug)]
pub struct GpuForward {
    /// `output`, in the layout of the configuration.
    pub output: PooledBuffer,
    /// `h_n`, `(L·D, B, H)`.
    pub h_n: PooledBuffer,
    /// The tape, where it was kept (see `ForwardOptions::keep_tape`).
    pub tape: Option<GpuTape>,
}

/// The gradients of one layer's parameters on the device, in the layout of
/// [`GpuGru`]'s own parameters (both directions stacked).
#[derive(Debug)]
pub struct GpuLayerGrads {
    /// `(D·3H, I_l)`
    pub w_ih: PooledBuffer,
    /// `(D, 3H, H)`
    pub w_hh: PooledBuffer,
    /// `(D·3H)`, where the GRU has biases
    pub b_ih: Option<PooledBuffer>,
    /// `(D·3H)`, where the GRU has biases
    pub b_hh: Option<PooledBuffer>,
}

impl GpuLayerGrads {
    /// The gradients in the order of the layer's parameters: `w_ih`, `w_hh`, `b_ih`, `b_hh`.
    pub fn tensors(&self) -> Vec<&PooledBuffer> {
        param_order(&self.w_ih, &self.w_hh, &self.b_ih, &self.b_hh)
    }
}

/// The result of [`GpuGru::backward`] on device buffers.
#[derive(Debug)]
pub struct GpuBackward {
    /// `dL/dx`, in the layout of `x`.
    pub grad_x: PooledBuffer,
    /// `dL/dh0`, `(L·D, B, H)`.
    pub grad_h0: PooledBuffer,
    /// Per layer.
    pub grads: Vec<GpuLayerGrads>,
}

/// What the last forward or backward call did on the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct CallStats {
    /// Compute dispatches recorded.
    pub dispatches: u32,
    /// Bind groups made: one per kernel, arena chunk and set of buffers,
    /// however many steps dispatch it.
    pub bind_groups: u32,
    /// Queue submissions.
    pub submissions: u32,
    /// The device's own time for the call in milliseconds, from timestamp
    /// queries, where timing is on and the adapter offers them.
    pub gpu_ms: Option<f64>,
    /// The host's milliseconds recording the call (from its recorder's
    /// start to its submission): what the engine costs the CPU per call.
    pub record_ms: f64,
}

/// Forward's device-side results before they are handed out.
pub(crate) struct ForwardOut {
    pub(crate) output: PooledBuffer,
    pub(crate) h_n: PooledBuffer,
    pub(crate) tape: Option<GpuTape>,
}

/// Backward's device-side results: per layer the gradients of `w_ih`,
/// `w_hh`, `b_ih`, `b_hh`.
pub(crate) struct BackwardOut {
    pub(crate) grad_x: PooledBuffer,
    pub(crate) grad_h0: PooledBuffer,
    pub(crate) grads: Vec<[Option<PooledBuffer>; 4]>,
}

/// A layer's tensors in PyTorch's order of its parameters, `w_ih`, `w_hh`,
/// `b_ih`, `b_hh`, the biases where there are any.
pub(crate) fn param_order<'a>(
    w_ih: &'a PooledBuffer,
    w_hh: &'a PooledBuffer,
    b_ih: &'a Option<PooledBuffer>,
    b_hh: &'a Option<PooledBuffer>,
) -> Vec<&'a PooledBuffer> {
    [Some(w_ih), Some(w_hh), b_ih.as_ref(), b_hh.as_ref()]
        .into_iter()
        .flatten()
        .collect()
}

/// The next layer's `w_ih`, `w_hh`, `b_ih`, `b_hh` from tensors read back in
/// [`param_order`] (the biases where `bias`).
pub(crate) fn next_layer<T>(
    it: &mut impl Iterator<Item = T>,
    bias: bool,
) -> (T, T, Option<T>, Option<T>) {
    let w_ih = it.next().expect("read");
    let w_hh = it.next().expect("read");
    match bias {
        true => (w_ih, w_hh, it.next(), it.next()),
        false => (w_ih, w_hh, None, None),
    }
}
