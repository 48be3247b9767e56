//! The backward recurrence of a GRU layer (`shaders/gru_backward.wgsl`): the
//! fused backward step, one dispatch per step (T-1 down to the step -1 that
//! leaves dL/dh0: `step`, `splitk`, and the step after a precomputed
//! product), and the persistent kernels (`sequence`, `resident`). The parameters are
//! `StepParams` (see [`common`](super::common)).

use crate::error::Result;
use crate::gpu::device::Device;
use crate::gpu::ops::common::{lp, w_private, LoopCost, StepParams, StepShape, RES_KMAX, SEQ_ROWS};
use crate::gpu::ops::gru_forward::resident_slices;
use crate::gpu::ops::steps::{encode_loop, LoopCall, Pass, TimeLoop};
use crate::gpu::pipeline::{bindings, Binding, KernelSpec};
use crate::gpu::recorder::Recorder;

pub(crate) const SOURCE: &str = include_str!("../../../shaders/gru_backward.wgsl");

const BINDINGS: &[(u32, Binding)] =
    bindings![Read, Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite];

/// The kernels of this shader, but for the entry point, the override
/// constants and the storage types, which each step kernel's description
/// gives ([`StepKernel`](super::steps::StepKernel) builds them from this).
pub(crate) const fn base() -> KernelSpec {
    KernelSpec::new::<StepParams>(("gru_backward.wgsl", SOURCE), "step", BINDINGS)
}

/// The buffers of the backward recurrence of one layer (shapes in the shader).
pub(crate) struct BackwardStepBufs<'a> {
    /// `(T, B, D·H)`: dL/d(layer output).
    pub d_out: &'a wgpu::Buffer,
    /// `(D, T, B, 4, H)`: the forward's tape.
    pub gates: &'a wgpu::Buffer,
    /// `(D, T+1, B, H)`
    pub hs: &'a wgpu::Buffer,
    /// `(D, 3H, H)`
    pub w_hh: &'a wgpu::Buffer,
    /// `(D, T, B, 3H)`
    pub dgh: &'a wgpu::Buffer,
    /// `(T·B, D·3H)`
    pub dgi: &'a wgpu::Buffer,
    /// `(D, 2, B, H)`
    pub dh: &'a wgpu::Buffer,
}

/// The loops of one invocation of the backward `sequence` (see
/// [`LoopCost`]): before the loop, (`w_private`) the thread's columns of
/// W_hh and the rows of dG_h of the step after; per step, for each unit the
/// carry (both of its branches, and the product over 3H), the gate
/// gradients of each row, in the reset-before form (`rb`) the second
/// half's product over H, and the copy of dG_h.
pub(crate) fn sequence_cost(hidden: usize, w_private: bool, rb: bool) -> LoopCost {
    let units = hidden.div_ceil(64) as u64;
    let u = lp(units as usize);
    let r = lp(SEQ_ROWS);
    let carry = r + r + lp(3 * hidden) + r;
    let second = if rb {
        r + u + units * (lp(hidden) + r)
    } else {
        0
    };
    LoopCost {
        prologue: u + if w_private { units * lp(3 * hidden) } else { 0 } + u + units * r,
        per_step: 4 + u + units * (carry + r) + second + u + units * r,
    }
}

/// The loops of one invocation of the backward `resident` (see
/// [`LoopCost`]): the weights' copy; per step, `rows_active_s`, the
/// thread's slice of 3H and the sum over the slices (twice in the
/// reset-before form, `rb`).
pub(crate) fn resident_cost(hidden: usize, wg: u32, rb: bool) -> LoopCost {
    let half = lp(1) + lp(3 * RES_KMAX) + lp(resident_slices(hidden, 3 * hidden, wg));
    LoopCost {
        prologue: lp(3 * RES_KMAX),
        per_step: 4 + half * (1 + rb as u64),
    }
}

impl BackwardStepBufs<'_> {
    /// Bindings 1 to 8 of the step kernels, `scratch` (the reset-before
    /// form's) or a dummy in the last.
    fn bound<'b>(
        &'b self,
        dev: &'b Device,
        scratch: Option<&'b wgpu::Buffer>,
    ) -> [&'b wgpu::Buffer; 8] {
        [
            self.d_out,
            self.gates,
            self.hs,
            self.w_hh,
            self.dgh,
            self.dgi,
            self.dh,
            scratch.unwrap_or(&dev.dummy_rw),
        ]
    }
}

/// Records the backward of the time loop `lp` of one layer, steps T-1 down
/// to -1 (see [`steps`](super::steps)); `rb`: the reset-before form, whose
/// steps carry c2 = d(r·h) r from one step to the next in a scratch
/// `(D, B, H)` of the recording (zeros before the last step).
pub(crate) fn encode_backward_loop(
    rec: &mut Recorder,
    lp: &TimeLoop,
    sh: &StepShape,
    b: &BackwardStepBufs,
    rb: bool,
) -> Result<()> {
    let (nd, batch, h) = (sh.dirs, sh.batch, sh.hidden);
    let scratch = match rb {
        true => {
            let s = rec.storage("d(r·h) r of a step", nd * batch * h)?;
            rec.clear(s.buffer(), 0, (nd * batch * h * 4) as u64);
            Some(s)
        }
        false => None,
    };
    let bufs = b.bound(rec.dev, scratch.as_ref().map(|s| s.buffer()));
    let call = LoopCall {
        pass: Pass::Backward,
        sh,
        bufs: &bufs,
        rb,
        tape: true,
        w_private: w_private(rec, h),
    };
    encode_loop(rec, lp, &call)
}
