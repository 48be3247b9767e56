//! The backward recurrence of a GRU layer (`shaders/gru_backward.wgsl`): the
//! fused backward step, one dispatch per step (T-1 down to the step -1 that
//! leaves dL/dh0: `step`, `splitk`, and the step after a precomputed
//! product), and the persistent kernels (`sequence`, `resident`). The parameters are
//! `StepParams` (see [`common`](super::common)).

use crate::error::Result;
use crate::gpu::ops::common::{
    lp, run_persistent, steps_per_dispatch, LoopCost, StepShape, RES_KMAX, RES_SIZES, SEQ_ROWS,
};
use crate::gpu::ops::gru_forward::{resident_index, resident_slices};
use crate::gpu::pipeline::{u32_of, Binding, KernelSpec};
use crate::gpu::recorder::Recorder;

pub(crate) const SOURCE: &str = include_str!("../../../shaders/gru_backward.wgsl");

const BINDINGS: &[(u32, Binding)] = &[
    (0, Binding::Params),
    (1, Binding::Read),
    (2, Binding::Read),
    (3, Binding::Read),
    (4, Binding::Read),
    (5, Binding::ReadWrite),
    (6, Binding::ReadWrite),
    (7, Binding::ReadWrite),
    (8, Binding::ReadWrite),
];

const fn spec(entry: &'static str, constants: &'static [(&'static str, f64)]) -> KernelSpec {
    KernelSpec {
        file: "gru_backward.wgsl",
        source: SOURCE,
        entry,
        params_size: std::mem::size_of::<crate::gpu::ops::common::StepParams>(),
        bindings: BINDINGS,
        constants,
        types: &[],
    }
}

const STEP: KernelSpec = spec("step", &[("PRECOMPUTED", 0.0)]);
/// The step of the window path: the recurrent product precomputed.
pub(crate) const STEP_PRECOMPUTED: KernelSpec = spec("step", &[("PRECOMPUTED", 1.0)]);
/// The step of `Products` on the storage family: the carry from
/// `gemm.wgsl`, no window copy.
pub(crate) const STEP_STORAGE_GH: KernelSpec =
    spec("step", &[("PRECOMPUTED", 1.0), ("STORAGE_GH", 1.0)]);
const SPLITK: KernelSpec = spec("splitk", &[]);
/// The reset-before step: `step` with `RB`, then `rb_dr`.
const STEP_RB: KernelSpec = spec("step", &[("RB", 1.0)]);
pub(crate) const RB_DR: KernelSpec = spec("rb_dr", &[]);
/// The reset-before form of `Products` on the storage family.
pub(crate) const STEP_STORAGE_GH_RB: KernelSpec = spec(
    "step",
    &[("PRECOMPUTED", 1.0), ("STORAGE_GH", 1.0), ("RB", 1.0)],
);
const SPLITK_RB: KernelSpec = spec("splitk", &[("RB", 1.0)]);
const RESIDENT_RB: [KernelSpec; 3] = [
    spec("resident", &[("RES_WG", 1024.0), ("RB", 1.0)]),
    spec("resident", &[("RES_WG", 512.0), ("RB", 1.0)]),
    spec("resident", &[("RES_WG", 256.0), ("RB", 1.0)]),
];
const SEQUENCE_RB: KernelSpec = spec("sequence", &[("W_PRIVATE", 0.0), ("RB", 1.0)]);
const SEQUENCE_RB_PRIVATE: KernelSpec = spec("sequence", &[("W_PRIVATE", 1.0), ("RB", 1.0)]);
/// `resident` for each workgroup size of `RES_SIZES`.
const RESIDENT: [KernelSpec; 3] = [
    spec("resident", &[("RES_WG", 1024.0)]),
    spec("resident", &[("RES_WG", 512.0)]),
    spec("resident", &[("RES_WG", 256.0)]),
];
const SEQUENCE: KernelSpec = spec("sequence", &[("W_PRIVATE", 0.0)]);
const SEQUENCE_PRIVATE: KernelSpec = spec("sequence", &[("W_PRIVATE", 1.0)]);

/// Every kernel of this module, as it is dispatched (see
/// [`kernel_variants`](super::kernel_variants)).
pub(crate) const SPECS: &[KernelSpec] = &[
    STEP,
    STEP_PRECOMPUTED,
    SEQUENCE,
    SEQUENCE_PRIVATE,
    STEP_STORAGE_GH,
    SPLITK,
    RESIDENT[0],
    RESIDENT[1],
    RESIDENT[2],
    STEP_RB,
    RB_DR,
    SEQUENCE_RB,
    SEQUENCE_RB_PRIVATE,
    SPLITK_RB,
    STEP_STORAGE_GH_RB,
    RESIDENT_RB[0],
    RESIDENT_RB[1],
    RESIDENT_RB[2],
];

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

/// Records the backward steps T-1 down to -1 of one layer, the recurrent
/// product inside the step.
pub(crate) fn encode_backward_steps(
    rec: &mut Recorder,
    sh: &StepShape,
    b: &BackwardStepBufs,
) -> Result<()> {
    let kernel = rec.kernel(&STEP)?;
    let parts = sh.step_pieces(rec.max_groups())?;
    let mut p = sh.params()?;
    let dev = rec.dev;
    rec.reserve((sh.t_len + 1) * parts.len());
    let chunk = rec.current_chunk();
    let bg = rec.bind(
        &kernel,
        chunk,
        &[
            b.d_out,
            b.gates,
            b.hs,
            b.w_hh,
            b.dgh,
            b.dgi,
            b.dh,
            &dev.dummy_rw,
        ],
    );
    for s in (-1..sh.t_len as i32).rev() {
        p.s = s;
        rec.dispatch_pieces(&kernel, &bg, chunk, p, &parts)?;
    }
    Ok(())
}

/// Records the backward steps T-1 to -1 of one layer in the reset-before
/// form: per step `step` with `RB`, then (for s >= 0) `rb_dr`; `scratch`
/// `(D, B, H)` carries c2 = d(r·h) r from one step to the next.
pub(crate) fn encode_backward_steps_rb(
    rec: &mut Recorder,
    sh: &StepShape,
    b: &BackwardStepBufs,
    scratch: &wgpu::Buffer,
) -> Result<()> {
    let parts = sh.step_pieces(rec.max_groups())?;
    backward_rb_loop(rec, sh, b, scratch, &STEP_RB, &parts)
}

/// [`encode_backward_steps_rb`] with the carry product split along K
/// (`splitk` with `RB`), then `rb_dr`, per step.
pub(crate) fn encode_backward_splitk_rb(
    rec: &mut Recorder,
    sh: &StepShape,
    b: &BackwardStepBufs,
    scratch: &wgpu::Buffer,
) -> Result<()> {
    let parts = sh.splitk_pieces(rec.max_groups())?;
    backward_rb_loop(rec, sh, b, scratch, &SPLITK_RB, &parts)
}

/// The reset-before backward loop: per step s (T-1 down to -1) the gradient
/// step `step` over its grid pieces, then for s >= 0 `rb_dr`.
fn backward_rb_loop(
    rec: &mut Recorder,
    sh: &StepShape,
    b: &BackwardStepBufs,
    scratch: &wgpu::Buffer,
    step: &KernelSpec,
    step_parts: &[([u32; 3], [u32; 3])],
) -> Result<()> {
    let step = rec.kernel(step)?;
    let dr = rec.kernel(&RB_DR)?;
    let parts = sh.step_pieces(rec.max_groups())?;
    let mut p = sh.params()?;
    rec.reserve((sh.t_len + 1) * (step_parts.len() + parts.len()));
    let chunk = rec.current_chunk();
    let bufs = [b.d_out, b.gates, b.hs, b.w_hh, b.dgh, b.dgi, b.dh, scratch];
    let bg_step = rec.bind(&step, chunk, &bufs);
    let bg_dr = rec.bind(&dr, chunk, &bufs);
    for s in (-1..sh.t_len as i32).rev() {
        p.s = s;
        rec.dispatch_pieces(&step, &bg_step, chunk, p, step_parts)?;
        if s >= 0 {
            rec.dispatch_pieces(&dr, &bg_dr, chunk, p, &parts)?;
        }
    }
    Ok(())
}

/// Records the backward time loop of one layer in one dispatch (steps T-1 to -1).
///
/// `rb_scratch`: the reset-before form (`RB`), with its scratch `(D, B, H)`
/// (zeros before the call).
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

pub(crate) fn encode_backward_sequence(
    rec: &mut Recorder,
    sh: &StepShape,
    b: &BackwardStepBufs,
    w_private: bool,
    rb_scratch: Option<&wgpu::Buffer>,
) -> Result<()> {
    let spec = match (rb_scratch.is_some(), w_private) {
        (false, false) => &SEQUENCE,
        (false, true) => &SEQUENCE_PRIVATE,
        (true, false) => &SEQUENCE_RB,
        (true, true) => &SEQUENCE_RB_PRIVATE,
    };
    let mut p = sh.params()?;
    p.rows = SEQ_ROWS as u32;
    let wg = [
        u32_of("batch", sh.batch.div_ceil(SEQ_ROWS))?,
        sh.dirs as u32,
        1,
    ];
    let dev = rec.dev;
    let per = steps_per_dispatch(
        dev,
        "one step of the backward `sequence` loop",
        sequence_cost(sh.hidden, w_private, rb_scratch.is_some()),
    )?;
    let bufs = [
        b.d_out,
        b.gates,
        b.hs,
        b.w_hh,
        b.dgh,
        b.dgi,
        b.dh,
        rb_scratch.unwrap_or(&dev.dummy_rw),
    ];
    run_persistent(rec, spec, p, &bufs, wg, per, true)
}

/// The bindings of the backward kernels without a window copy.
fn bound<'a>(b: &BackwardStepBufs<'a>, dummy_rw: &'a wgpu::Buffer) -> [&'a wgpu::Buffer; 8] {
    [b.d_out, b.gates, b.hs, b.w_hh, b.dgh, b.dgi, b.dh, dummy_rw]
}

/// Records the backward steps T-1 down to -1 of one layer with the product
/// split along K (the shader's `splitk`).
pub(crate) fn encode_backward_splitk(
    rec: &mut Recorder,
    sh: &StepShape,
    b: &BackwardStepBufs,
) -> Result<()> {
    let kernel = rec.kernel(&SPLITK)?;
    let parts = sh.splitk_pieces(rec.max_groups())?;
    let mut p = sh.params()?;
    let dev = rec.dev;
    rec.reserve((sh.t_len + 1) * parts.len());
    let chunk = rec.current_chunk();
    let bg = rec.bind(&kernel, chunk, &bound(b, &dev.dummy_rw));
    for s in (-1..sh.t_len as i32).rev() {
        p.s = s;
        rec.dispatch_pieces(&kernel, &bg, chunk, p, &parts)?;
    }
    Ok(())
}

/// Records the backward time loop of one layer in one dispatch of
/// `resident`: one workgroup per (batch row, direction).
///
/// `rb_scratch`: the reset-before form (`RB`), with its scratch `(D, B, H)`
/// (zeros before the call).
pub(crate) fn encode_backward_resident(
    rec: &mut Recorder,
    sh: &StepShape,
    b: &BackwardStepBufs,
    rb_scratch: Option<&wgpu::Buffer>,
) -> Result<()> {
    let at = resident_index(&rec.dev.limits)?;
    let spec = match rb_scratch {
        None => &RESIDENT[at],
        Some(_) => &RESIDENT_RB[at],
    };
    let p = sh.params()?;
    let wg = [u32_of("batch", sh.batch)?, sh.dirs as u32, 1];
    let dev = rec.dev;
    let per = steps_per_dispatch(
        dev,
        "one step of the backward `resident` loop",
        resident_cost(sh.hidden, RES_SIZES[at], rb_scratch.is_some()),
    )?;
    let bufs = bound(b, rb_scratch.unwrap_or(&dev.dummy_rw));
    run_persistent(rec, spec, p, &bufs, wg, per, true)
}
