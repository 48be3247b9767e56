//! The forward recurrence of a GRU layer (`shaders/gru_forward.wgsl`): the
//! fused steps, one dispatch per step (`step`, `splitk`, and the step after
//! a precomputed product), and the persistent kernels that run all T steps
//! in one dispatch (`sequence`, `resident`). The parameters are `StepParams` (see
//! [`common`](super::common)).

use crate::error::GruError;
use crate::error::Result;
use crate::gpu::ops::common::{
    lp, resident_wg, run_persistent, steps_per_dispatch, LoopCost, StepShape, RES_KMAX, RES_SIZES,
    SEQ_ROWS,
};
use crate::gpu::pipeline::{u32_of, Binding, KernelSpec};
use crate::gpu::recorder::Recorder;

pub(crate) const SOURCE: &str = include_str!("../../../shaders/gru_forward.wgsl");

const BINDINGS: &[(u32, Binding)] = &[
    (0, Binding::Params),
    (1, Binding::Read),
    (2, Binding::Read),
    (3, Binding::Read),
    (4, Binding::ReadWrite),
    (5, Binding::ReadWrite),
    (6, Binding::ReadWrite),
    (7, Binding::ReadWrite),
];

const fn spec(entry: &'static str, constants: &'static [(&'static str, f64)]) -> KernelSpec {
    KernelSpec {
        file: "gru_forward.wgsl",
        source: SOURCE,
        entry,
        params_size: std::mem::size_of::<crate::gpu::ops::common::StepParams>(),
        bindings: BINDINGS,
        constants,
        types: &[],
    }
}

/// `[without tape, with tape]`
const STEP: [KernelSpec; 2] = [
    spec("step", &[("PRECOMPUTED", 0.0), ("TAPE", 0.0)]),
    spec("step", &[("PRECOMPUTED", 0.0), ("TAPE", 1.0)]),
];
/// The step of the window path: the recurrent product precomputed.
pub(crate) const STEP_PRECOMPUTED: [KernelSpec; 2] = [
    spec("step", &[("PRECOMPUTED", 1.0), ("TAPE", 0.0)]),
    spec("step", &[("PRECOMPUTED", 1.0), ("TAPE", 1.0)]),
];
/// The step of `Products` on the storage family: gh from `gemm.wgsl`
/// without bias; no window copy (`[without tape, with tape]`).
pub(crate) const STEP_STORAGE_GH: [KernelSpec; 2] = [
    spec(
        "step",
        &[("PRECOMPUTED", 1.0), ("STORAGE_GH", 1.0), ("TAPE", 0.0)],
    ),
    spec(
        "step",
        &[("PRECOMPUTED", 1.0), ("STORAGE_GH", 1.0), ("TAPE", 1.0)],
    ),
];
/// The reset-before step: `rb_rz`, then `step` with `RB`
/// (`[without tape, with tape]` each).
const RB_RZ: [KernelSpec; 2] = [
    spec("rb_rz", &[("TAPE", 0.0)]),
    spec("rb_rz", &[("TAPE", 1.0)]),
];
/// The reset-before form of `Products` on the storage family: `rb_rz`
/// from gh_r and gh_z of gemm.wgsl, then the step from gh_n of gemm.wgsl.
pub(crate) const RB_RZ_STORAGE_GH: [KernelSpec; 2] = [
    spec(
        "rb_rz",
        &[("PRECOMPUTED", 1.0), ("STORAGE_GH", 1.0), ("TAPE", 0.0)],
    ),
    spec(
        "rb_rz",
        &[("PRECOMPUTED", 1.0), ("STORAGE_GH", 1.0), ("TAPE", 1.0)],
    ),
];
pub(crate) const STEP_STORAGE_GH_RB: [KernelSpec; 2] = [
    spec(
        "step",
        &[
            ("PRECOMPUTED", 1.0),
            ("STORAGE_GH", 1.0),
            ("RB", 1.0),
            ("TAPE", 0.0),
        ],
    ),
    spec(
        "step",
        &[
            ("PRECOMPUTED", 1.0),
            ("STORAGE_GH", 1.0),
            ("RB", 1.0),
            ("TAPE", 1.0),
        ],
    ),
];
const STEP_RB: [KernelSpec; 2] = [
    spec("step", &[("RB", 1.0), ("TAPE", 0.0)]),
    spec("step", &[("RB", 1.0), ("TAPE", 1.0)]),
];
/// The reset-before `sequence`: `[[shared, private] without tape, [shared, private] with tape]`.
const SEQUENCE_RB: [[KernelSpec; 2]; 2] = [
    [
        spec(
            "sequence",
            &[("W_PRIVATE", 0.0), ("TAPE", 0.0), ("RB", 1.0)],
        ),
        spec(
            "sequence",
            &[("W_PRIVATE", 1.0), ("TAPE", 0.0), ("RB", 1.0)],
        ),
    ],
    [
        spec(
            "sequence",
            &[("W_PRIVATE", 0.0), ("TAPE", 1.0), ("RB", 1.0)],
        ),
        spec(
            "sequence",
            &[("W_PRIVATE", 1.0), ("TAPE", 1.0), ("RB", 1.0)],
        ),
    ],
];
/// The reset-before `resident`, as `RESIDENT`.
const RESIDENT_RB: [[KernelSpec; 2]; 3] = [
    [
        spec(
            "resident",
            &[("RES_WG", 1024.0), ("TAPE", 0.0), ("RB", 1.0)],
        ),
        spec(
            "resident",
            &[("RES_WG", 1024.0), ("TAPE", 1.0), ("RB", 1.0)],
        ),
    ],
    [
        spec("resident", &[("RES_WG", 512.0), ("TAPE", 0.0), ("RB", 1.0)]),
        spec("resident", &[("RES_WG", 512.0), ("TAPE", 1.0), ("RB", 1.0)]),
    ],
    [
        spec("resident", &[("RES_WG", 256.0), ("TAPE", 0.0), ("RB", 1.0)]),
        spec("resident", &[("RES_WG", 256.0), ("TAPE", 1.0), ("RB", 1.0)]),
    ],
];
/// The reset-before `splitk` (two dispatches a step: `phase` 0 and 1),
/// `[without tape, with tape]`.
const SPLITK_RB: [KernelSpec; 2] = [
    spec("splitk", &[("TAPE", 0.0), ("RB", 1.0)]),
    spec("splitk", &[("TAPE", 1.0), ("RB", 1.0)]),
];
/// `[without tape, with tape]`
const SPLITK: [KernelSpec; 2] = [
    spec("splitk", &[("TAPE", 0.0)]),
    spec("splitk", &[("TAPE", 1.0)]),
];
/// `[without tape, with tape]` for each workgroup size of `RES_SIZES`.
const RESIDENT: [[KernelSpec; 2]; 3] = [
    [
        spec("resident", &[("RES_WG", 1024.0), ("TAPE", 0.0)]),
        spec("resident", &[("RES_WG", 1024.0), ("TAPE", 1.0)]),
    ],
    [
        spec("resident", &[("RES_WG", 512.0), ("TAPE", 0.0)]),
        spec("resident", &[("RES_WG", 512.0), ("TAPE", 1.0)]),
    ],
    [
        spec("resident", &[("RES_WG", 256.0), ("TAPE", 0.0)]),
        spec("resident", &[("RES_WG", 256.0), ("TAPE", 1.0)]),
    ],
];
/// `[[shared, private] without tape, [shared, private] with tape]`
const SEQUENCE: [[KernelSpec; 2]; 2] = [
    [
        spec("sequence", &[("W_PRIVATE", 0.0), ("TAPE", 0.0)]),
        spec("sequence", &[("W_PRIVATE", 1.0), ("TAPE", 0.0)]),
    ],
    [
        spec("sequence", &[("W_PRIVATE", 0.0), ("TAPE", 1.0)]),
        spec("sequence", &[("W_PRIVATE", 1.0), ("TAPE", 1.0)]),
    ],
];

/// Every kernel of this module, as it is dispatched (see
/// [`kernel_variants`](super::kernel_variants)).
pub(crate) const SPECS: &[KernelSpec] = &[
    STEP[0],
    STEP[1],
    STEP_PRECOMPUTED[0],
    STEP_PRECOMPUTED[1],
    SEQUENCE[0][0],
    SEQUENCE[0][1],
    SEQUENCE[1][0],
    SEQUENCE[1][1],
    STEP_STORAGE_GH[0],
    STEP_STORAGE_GH[1],
    SPLITK[0],
    SPLITK[1],
    RESIDENT[0][0],
    RESIDENT[0][1],
    RESIDENT[1][0],
    RESIDENT[1][1],
    RESIDENT[2][0],
    RESIDENT[2][1],
    RB_RZ[0],
    RB_RZ[1],
    STEP_RB[0],
    STEP_RB[1],
    SEQUENCE_RB[0][0],
    SEQUENCE_RB[0][1],
    SEQUENCE_RB[1][0],
    SEQUENCE_RB[1][1],
    SPLITK_RB[0],
    SPLITK_RB[1],
    RESIDENT_RB[0][0],
    RESIDENT_RB[0][1],
    RESIDENT_RB[1][0],
    RESIDENT_RB[1][1],
    RESIDENT_RB[2][0],
    RESIDENT_RB[2][1],
    RB_RZ_STORAGE_GH[0],
    RB_RZ_STORAGE_GH[1],
    STEP_STORAGE_GH_RB[0],
    STEP_STORAGE_GH_RB[1],
];

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

/// Records the T fused steps of one layer, both directions in each dispatch,
/// the recurrent product inside the step. One bind group and all parameter
/// slots are made before the loop.
pub(crate) fn encode_forward_steps(
    rec: &mut Recorder,
    sh: &StepShape,
    b: &ForwardStepBufs,
) -> Result<()> {
    let kernel = rec.kernel(&STEP[b.gates.is_some() as usize])?;
    let parts = sh.step_pieces(rec.max_groups())?;
    let mut p = sh.params()?;
    let dev = rec.dev;
    let bias = b.b_hh.unwrap_or(&dev.dummy);
    let gates = b.gates.unwrap_or(&dev.dummy_rw);
    rec.reserve(sh.t_len * parts.len());
    let chunk = rec.current_chunk();
    let bg = rec.bind(
        &kernel,
        chunk,
        &[b.gi, b.w_hh_t, bias, b.hs, b.out, gates, &dev.dummy_rw],
    );
    for s in 0..sh.t_len {
        p.s = s as i32;
        rec.dispatch_pieces(&kernel, &bg, chunk, p, &parts)?;
    }
    Ok(())
}

/// Records the T steps of one layer in the reset-before form: per step
/// `rb_rz` (r, z and r·h into `scratch`, `(D, B, 3H)`), then `step` with
/// `RB` (gh_n from r·h, the gates), both directions in each dispatch.
pub(crate) fn encode_forward_steps_rb(
    rec: &mut Recorder,
    sh: &StepShape,
    b: &ForwardStepBufs,
    scratch: &wgpu::Buffer,
) -> Result<()> {
    let tape = b.gates.is_some() as usize;
    let rz = rec.kernel(&RB_RZ[tape])?;
    let step = rec.kernel(&STEP_RB[tape])?;
    let parts = sh.step_pieces(rec.max_groups())?;
    let mut p = sh.params()?;
    let dev = rec.dev;
    let bias = b.b_hh.unwrap_or(&dev.dummy);
    let gates = b.gates.unwrap_or(&dev.dummy_rw);
    rec.reserve(2 * sh.t_len * parts.len());
    let chunk = rec.current_chunk();
    let bufs = [b.gi, b.w_hh_t, bias, b.hs, b.out, gates, scratch];
    let bg_rz = rec.bind(&rz, chunk, &bufs);
    let bg_step = rec.bind(&step, chunk, &bufs);
    for s in 0..sh.t_len {
        p.s = s as i32;
        rec.dispatch_pieces(&rz, &bg_rz, chunk, p, &parts)?;
        rec.dispatch_pieces(&step, &bg_step, chunk, p, &parts)?;
    }
    Ok(())
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

/// Records the forward time loop of one layer: workgroups of `SEQ_ROWS`
/// batch rows by direction (see the shader's `sequence`), in as few
/// dispatches as the device's loop budget allows (one on most GPUs). With
/// `w_private`, each thread keeps its columns of `W_hh` in private memory.
///
/// `rb_scratch`: the reset-before form (`RB`), with its scratch `(D, B, 3H)`.
pub(crate) fn encode_forward_sequence(
    rec: &mut Recorder,
    sh: &StepShape,
    b: &ForwardStepBufs,
    w_private: bool,
    rb_scratch: Option<&wgpu::Buffer>,
) -> Result<()> {
    let tape = b.gates.is_some() as usize;
    let spec = match rb_scratch {
        None => &SEQUENCE[tape][w_private as usize],
        Some(_) => &SEQUENCE_RB[tape][w_private as usize],
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
        "one step of the forward `sequence` loop",
        sequence_cost(sh.hidden, w_private, rb_scratch.is_some()),
    )?;
    let bias = b.b_hh.unwrap_or(&dev.dummy);
    let gates = b.gates.unwrap_or(&dev.dummy_rw);
    let bufs = [
        b.gi,
        b.w_hh_t,
        bias,
        b.hs,
        b.out,
        gates,
        rb_scratch.unwrap_or(&dev.dummy_rw),
    ];
    run_persistent(rec, spec, p, &bufs, wg, per, false)
}

/// Records the T steps of one layer with the product split along K (the
/// shader's `splitk`), both directions in each dispatch.
pub(crate) fn encode_forward_splitk(
    rec: &mut Recorder,
    sh: &StepShape,
    b: &ForwardStepBufs,
) -> Result<()> {
    let kernel = rec.kernel(&SPLITK[b.gates.is_some() as usize])?;
    let parts = sh.splitk_pieces(rec.max_groups())?;
    let mut p = sh.params()?;
    let dev = rec.dev;
    let bias = b.b_hh.unwrap_or(&dev.dummy);
    let gates = b.gates.unwrap_or(&dev.dummy_rw);
    rec.reserve(sh.t_len * parts.len());
    let chunk = rec.current_chunk();
    let bg = rec.bind(
        &kernel,
        chunk,
        &[b.gi, b.w_hh_t, bias, b.hs, b.out, gates, &dev.dummy_rw],
    );
    for s in 0..sh.t_len {
        p.s = s as i32;
        rec.dispatch_pieces(&kernel, &bg, chunk, p, &parts)?;
    }
    Ok(())
}

/// Records the T steps of one layer in the reset-before form with the
/// product split along K: per step `splitk` with `RB` twice (`phase` 0: r,
/// z and r·h into `scratch`; `phase` 1: gh_n from r·h and the gates).
pub(crate) fn encode_forward_splitk_rb(
    rec: &mut Recorder,
    sh: &StepShape,
    b: &ForwardStepBufs,
    scratch: &wgpu::Buffer,
) -> Result<()> {
    let kernel = rec.kernel(&SPLITK_RB[b.gates.is_some() as usize])?;
    let parts = sh.splitk_pieces(rec.max_groups())?;
    let mut p = sh.params()?;
    let dev = rec.dev;
    let bias = b.b_hh.unwrap_or(&dev.dummy);
    let gates = b.gates.unwrap_or(&dev.dummy_rw);
    rec.reserve(2 * sh.t_len * parts.len());
    let chunk = rec.current_chunk();
    let bg = rec.bind(
        &kernel,
        chunk,
        &[b.gi, b.w_hh_t, bias, b.hs, b.out, gates, scratch],
    );
    for s in 0..sh.t_len {
        p.s = s as i32;
        for phase in 0..2 {
            p.phase = phase;
            rec.dispatch_pieces(&kernel, &bg, chunk, p, &parts)?;
        }
    }
    Ok(())
}

/// The index in `RES_SIZES` of the workgroup size of `resident` on this
/// device, or why it has none.
pub(crate) fn resident_index(limits: &wgpu::Limits) -> Result<usize> {
    let wg = resident_wg(limits).ok_or_else(|| {
        GruError::InvalidConfig("the resident kernels need workgroups of 256 invocations".into())
    })?;
    Ok(RES_SIZES
        .iter()
        .position(|&w| w == wg)
        .expect("one of the sizes"))
}

/// Records the forward time loop of one layer through `resident`: one
/// workgroup per (batch row, direction), in as few dispatches as the
/// device's loop budget allows (one on most GPUs).
///
/// `rb_scratch`: the reset-before form (`RB`), with its scratch `(D, B, 3H)`.
pub(crate) fn encode_forward_resident(
    rec: &mut Recorder,
    sh: &StepShape,
    b: &ForwardStepBufs,
    rb_scratch: Option<&wgpu::Buffer>,
) -> Result<()> {
    let at = resident_index(&rec.dev.limits)?;
    let tape = b.gates.is_some() as usize;
    let spec = match rb_scratch {
        None => &RESIDENT[at][tape],
        Some(_) => &RESIDENT_RB[at][tape],
    };
    let p = sh.params()?;
    let wg = [u32_of("batch", sh.batch)?, sh.dirs as u32, 1];
    let dev = rec.dev;
    let per = steps_per_dispatch(
        dev,
        "one step of the forward `resident` loop",
        resident_cost(sh.hidden, RES_SIZES[at], rb_scratch.is_some()),
    )?;
    let bias = b.b_hh.unwrap_or(&dev.dummy);
    let gates = b.gates.unwrap_or(&dev.dummy_rw);
    let bufs = [
        b.gi,
        b.w_hh_t,
        bias,
        b.hs,
        b.out,
        gates,
        rb_scratch.unwrap_or(&dev.dummy_rw),
    ];
    run_persistent(rec, spec, p, &bufs, wg, per, false)
}
