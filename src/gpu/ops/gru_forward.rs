//! The forward recurrence of a GRU layer (`shaders/gru_forward.wgsl`): the
//! fused steps, one dispatch per step (`step`, `splitk`, and the step after
//! a precomputed product), and the persistent kernels that run all T steps
//! in one dispatch (`sequence`, `resident`). The parameters are `StepParams` (see
//! [`common`](super::common)).

use crate::error::Result;
use crate::gpu::device::Device;
use crate::gpu::ops::common::{lp, w_private, LoopCost, StepParams, StepShape, RES_KMAX, SEQ_ROWS};
use crate::gpu::ops::steps::{encode_loop, LoopCall, Pass, TimeLoop};
use crate::gpu::pipeline::{bindings, Binding, KernelSpec};
use crate::gpu::recorder::Recorder;

pub(crate) const SOURCE: &str = include_str!("../../../shaders/gru_forward.wgsl");

const BINDINGS: &[(u32, Binding)] =
    bindings![Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite];

/// The kernels of this shader, but for the entry point, the override
/// constants and the storage types, which each step kernel's description
/// gives ([`StepKernel`](super::steps::StepKernel) builds them from this).
pub(crate) const fn base() -> KernelSpec {
    KernelSpec::new::<StepParams>(("gru_forward.wgsl", SOURCE), "step", BINDINGS)
}

/// The buffers of the forward recurrence of one layer (shapes in the shader).
pub(crate) struct ForwardStepBufs<'a> {
    /// `(T·B, D·3H)`: the input projections.
    pub gi: &'a wgpu::Buffer,
    /// `(D, H, 3H)`: `W_hh` transposed.
    pub w_hh_t: &'a wgpu::Buffer,
    /// `(D·3H)`, where the GRU has biases.
    pub b_hh: Option<&'a wgpu::Buffer>,
    /// `(D, T+1, B, H)`; without the tape `(D, 2, B, H)`, a ring.
    pub hs: &'a wgpu::Buffer,
    /// `(T, B, D·H)`
    pub out: &'a wgpu::Buffer,
    /// `(D, T, B, 4, H)`: the tape; `None` keeps no tape (the gates are not written).
    pub gates: Option<&'a wgpu::Buffer>,
}

/// The loops of one invocation of the forward `sequence` (see [`LoopCost`]):
/// before the loop, the state's rows and (`w_private`) the thread's columns
/// of W_hh; per step, `rows_active`, the products of each unit (twice in the
/// reset-before form, `rb`) and the state's refresh.
pub(crate) fn sequence_cost(hidden: usize, w_private: bool, rb: bool) -> LoopCost {
    let units = hidden.div_ceil(64) as u64;
    let r = lp(SEQ_ROWS);
    let products = lp(units as usize) + units * (lp(hidden) + r);
    LoopCost {
        prologue: lp(units as usize) + units * (r + if w_private { lp(hidden) } else { 0 }),
        per_step: 4 + r + products * (1 + rb as u64) + lp(units as usize) + units * r,
    }
}

/// K-slices of `resident` with `wg` threads at hidden size `h` over `k`
/// rows of the product (`H` forward, `3H` backward), as the shader cuts them.
pub(crate) fn resident_slices(h: usize, k: usize, wg: u32) -> usize {
    let per = (wg as usize / h).max(1);
    let len = k.div_ceil(per);
    k.div_ceil(len)
}

/// The loops of one invocation of the forward `resident` (see [`LoopCost`]):
/// the weights' copy; per step, `rows_active`, the thread's slice and the
/// sum over the slices (twice in the reset-before form, `rb`).
pub(crate) fn resident_cost(hidden: usize, wg: u32, rb: bool) -> LoopCost {
    let half = lp(RES_KMAX) + lp(resident_slices(hidden, hidden, wg));
    LoopCost {
        prologue: lp(RES_KMAX),
        per_step: 4 + lp(1) + half * (1 + rb as u64),
    }
}

impl ForwardStepBufs<'_> {
    /// Bindings 1 to 7 of the step kernels, `scratch` (the reset-before
    /// form's) or a dummy in the last.
    fn bound<'b>(
        &'b self,
        dev: &'b Device,
        scratch: Option<&'b wgpu::Buffer>,
    ) -> [&'b wgpu::Buffer; 7] {
        [
            self.gi,
            self.w_hh_t,
            self.b_hh.unwrap_or(&dev.dummy),
            self.hs,
            self.out,
            self.gates.unwrap_or(&dev.dummy_rw),
            scratch.unwrap_or(&dev.dummy_rw),
        ]
    }
}

/// Records the forward of the time loop `lp` of one layer (see
/// [`steps`](super::steps)); `rb`: the reset-before form, whose steps keep
/// r, z and r·h of a step in a scratch `(D, B, 3H)` of the recording.
pub(crate) fn encode_forward_loop(
    rec: &mut Recorder,
    lp: &TimeLoop,
    sh: &StepShape,
    b: &ForwardStepBufs,
    rb: bool,
) -> Result<()> {
    let (nd, batch, h) = (sh.dirs, sh.batch, sh.hidden);
    let scratch = match rb {
        true => Some(rec.storage("r, z and r·h of a step", nd * batch * 3 * h)?),
        false => None,
    };
    let bufs = b.bound(rec.dev, scratch.as_ref().map(|s| s.buffer()));
    let call = LoopCall {
        pass: Pass::Forward,
        sh,
        bufs: &bufs,
        rb,
        tape: b.gates.is_some(),
        w_private: w_private(rec, h),
    };
    encode_loop(rec, lp, &call)
}
