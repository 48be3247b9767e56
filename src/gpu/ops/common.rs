//! What `common.wgsl` defines for more than one shader: the parameters of the
//! forward and backward steps (`StepParams`), and the grid of a step.

use crate::error::Result;
use crate::gpu::ops::params_struct;
use crate::gpu::pipeline::{grid3, pieces, u32_of};

params_struct! {
    /// `StepParams` of `common.wgsl`: the parameters of `gru_forward.wgsl`
    /// and `gru_backward.wgsl`.
    StepParams {
        t_len: u32,
        batch: u32,
        hidden: u32,
        dirs: u32,
        s: i32,
        has_bias: u32,
        kc: u32,
        win_len: u32,
        gx: u32,
        gy: u32,
        gz: u32,
        rows: u32,
        flags: u32,
        flags_at: u32,
        phase: u32,
        steps: u32,
        rev0: u32,
        pad1: u32,
        pad2: u32,
        pad3: u32,
    }
}
grid3!(StepParams);

/// The sizes of the fused steps of one layer (see the shaders for the buffers).
#[derive(Clone, Debug)]
pub(crate) struct StepShape {
    pub t_len: usize,
    pub batch: usize,
    pub hidden: usize,
    pub dirs: usize,
    pub has_bias: bool,
    /// The layer's only direction runs in reverse time (a reverse layer,
    /// ONNX's `direction = "reverse"`; `dirs` is 1).
    pub reverse: bool,
    /// Where the step flags (lengths and episode resets, see
    /// `common.wgsl`) lie in `hs`, in words; `None` where every step of
    /// every row is a plain step.
    pub flags_at: Option<usize>,
    /// Per step (processing order), the rows a recurrent product must
    /// cover: one past the last row that runs the step in either direction
    /// (rows past it are padding there); `None`: every row.
    pub active: Option<std::sync::Arc<[usize]>>,
}

impl StepShape {
    /// The rows the recurrent product of step `s` covers (see `active`).
    pub(crate) fn rows_at(&self, s: usize) -> usize {
        self.active.as_ref().map_or(self.batch, |a| a[s])
    }
}

impl StepShape {
    /// The step parameters of this shape (step 0, no window state).
    pub(crate) fn params(&self) -> Result<StepParams> {
        Ok(StepParams {
            t_len: u32_of("sequence length", self.t_len)?,
            batch: u32_of("batch", self.batch)?,
            hidden: u32_of("hidden size", self.hidden)?,
            dirs: self.dirs as u32,
            has_bias: self.has_bias as u32,
            rev0: self.reverse as u32,
            flags: self.flags_at.is_some() as u32,
            flags_at: u32_of("the step flags' offset", self.flags_at.unwrap_or(0))?,
            ..Default::default()
        })
    }

    /// The grid of a step: (ceil(H/64), ceil(B/4), D) workgroups.
    pub(crate) fn step_grid(&self) -> Result<[u32; 3]> {
        Ok([
            u32_of("hidden units", self.hidden.div_ceil(64))?,
            u32_of("batch", self.batch.div_ceil(4))?,
            self.dirs as u32,
        ])
    }

    /// The pieces of [`step_grid`](Self::step_grid) on a device that allows
    /// `max` workgroups per dimension.
    pub(crate) fn step_pieces(&self, max: u32) -> Result<Vec<([u32; 3], [u32; 3])>> {
        Ok(pieces(self.step_grid()?, max))
    }

    /// The pieces of the grid of `splitk`: (ceil(H/8), ceil(B/4), D) workgroups.
    pub(crate) fn splitk_pieces(&self, max: u32) -> Result<Vec<([u32; 3], [u32; 3])>> {
        let wg = [
            u32_of("hidden units", self.hidden.div_ceil(SK_UNITS))?,
            u32_of("batch", self.batch.div_ceil(SK_ROWS))?,
            self.dirs as u32,
        ];
        Ok(pieces(wg, max))
    }
}

/// An upper bound of the loop iterations one invocation of a persistent
/// kernel (`sequence`, `resident`) runs: before its first step, and per step.
///
/// Some drivers end an invocation's loops early once it has run a number of
/// loop iterations in all (llvmpipe, and so lavapipe: 65535, counted over
/// every loop of the shader together), and a time loop of thousands of steps
/// passes that; a kernel cut short gives wrong numbers without an error. So
/// the host measures that limit when it opens the device
/// ([`Device::loop_budget`](crate::gpu::device::Device::loop_budget)) and
/// runs a long time loop in several dispatches of at most
/// [`steps_per_dispatch`] steps, each within the budget.
///
/// The bounds mirror each shader's loops: a loop of `n` iterations counts
/// as [`lp`]`(n)`, and a loop a thread skips (the lanes of a SIMD group run
/// a branch when any of them takes it) counts too. Measured on llvmpipe
/// (65535 over the step where results first went wrong in one dispatch, at
/// H = 4 to 200, B = 1 and 5, both reset forms), the true cost per step is
/// 59 to 98% of these bounds; the default share of the limit (one half)
/// leaves a margin of two beyond that, and `tests/gpu_loop_limit.rs` runs
/// every persistent loop at the limit itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LoopCost {
    pub prologue: u64,
    pub per_step: u64,
}

/// A loop of `n` iterations as [`LoopCost`] counts it: two more, for the
/// check that ends it and the compiler's own bookkeeping.
pub(crate) const fn lp(n: usize) -> u64 {
    n as u64 + 2
}

/// How many steps one dispatch of a persistent kernel of cost `cost` may
/// run on `dev` (at least one), or an error naming `what` where not even
/// one step fits the device's loop budget.
pub(crate) fn steps_per_dispatch(
    dev: &crate::gpu::device::Device,
    what: &str,
    cost: LoopCost,
) -> Result<usize> {
    let budget = dev.loop_budget();
    dev.check_loop(what, cost.prologue + cost.per_step)?;
    let steps = (budget - cost.prologue) / cost.per_step;
    Ok(usize::try_from(steps).unwrap_or(usize::MAX).max(1))
}

/// Records the time loop of a persistent kernel over grid `wg` in
/// dispatches of at most `per` steps each (one bind group for all): forward,
/// steps `s .. s + per` from 0 up to T - 1; backward (`backward`), steps
/// `s` down to `s - per + 1` from T - 1 down to -1.
pub(crate) fn run_persistent(
    rec: &mut crate::gpu::recorder::Recorder,
    spec: &crate::gpu::pipeline::KernelSpec,
    mut p: StepParams,
    buffers: &[&wgpu::Buffer],
    wg: [u32; 3],
    per: usize,
    backward: bool,
) -> Result<()> {
    let t = p.t_len as usize;
    // The backward's steps T-1 .. -1 are T + 1.
    let total = t + backward as usize;
    let per = per.clamp(1, total.max(1));
    let kernel = rec.kernel(spec)?;
    let parts = pieces(wg, rec.max_groups());
    let runs = total.div_ceil(per).max(1);
    rec.reserve(runs * parts.len());
    let chunk = rec.current_chunk();
    let bg = rec.bind(&kernel, chunk, buffers);
    p.steps = u32_of("steps per dispatch", per)?;
    for i in 0..runs {
        let first = i * per;
        p.s = if backward {
            t as i32 - 1 - first as i32
        } else {
            first as i32
        };
        rec.dispatch_pieces(&kernel, &bg, chunk, p, &parts)?;
    }
    Ok(())
}

// The tile constants the shaders share with the host, defined once in
// `pipeline::shared` and emitted into every shader by `compose`.
#[allow(unused_imports)]
pub(crate) use crate::gpu::pipeline::shared::{
    RES_HMAX, RES_KMAX, RES_WG_MAX, SEQ_HMAX, SEQ_PRIVATE, SEQ_ROWS, SK_ROWS, SK_THREADS, SK_UNITS,
};

/// The workgroup sizes `resident` is built with (`RES_WG`), largest first.
pub(crate) const RES_SIZES: [u32; 3] = [RES_WG_MAX as u32, 512, 256];

/// The workgroup size of `resident` for hidden size `hidden` on a device
/// with these limits: the largest of [`RES_SIZES`] it allows whose threads
/// can own their rows ([`resident_fits`]), else the largest it allows
/// (which [`resident_fits`] then refuses).
pub(crate) fn resident_wg(limits: &wgpu::Limits, hidden: usize) -> Option<u32> {
    let most = limits
        .max_compute_invocations_per_workgroup
        .min(limits.max_compute_workgroup_size_x);
    let allowed = || RES_SIZES.iter().copied().filter(move |&w| w <= most);
    allowed()
        .find(|&w| resident_fits(hidden, w))
        .or_else(|| allowed().next())
}

/// The registers a thread of a `wg`-thread workgroup has on the GPUs the
/// kernels are shaped for: a 64 K-register file per NVIDIA SM (65536 / wg),
/// and on AMD's GCN 256 VGPRs per lane shared by the waves a workgroup puts
/// on one SIMD (the same 65536 / wg); RDNA has more.
fn registers_per_thread(wg: u32) -> usize {
    65536 / wg as usize
}

/// `RES_L`: the rows of the product a thread of `resident` with `wg`
/// threads owns at most (3·RES_L floats of W_hh in its registers, beside
/// about 24 for the rest, as AMD's compiler counts them: `kernel-stats`),
/// at most `RES_KMAX`: 13 at 1024 threads, 32 at 512 and 256.
pub(crate) fn resident_rows(wg: u32) -> usize {
    (registers_per_thread(wg).saturating_sub(24) / 3).min(RES_KMAX)
}

/// Whether `resident` with `wg` threads runs hidden size `h`: one K-slice
/// per `wg / h` threads of a unit, each of at most [`resident_rows`] rows.
pub(crate) fn resident_fits(h: usize, wg: u32) -> bool {
    let (wgu, rows) = (wg as usize, resident_rows(wg));
    (1..=RES_HMAX).contains(&h) && h <= wgu && h.div_ceil(wgu / h) <= rows
}

/// Whether the persistent kernels can keep a thread's columns of W_hh in
/// private memory: `3·ceil(H/64)·H <= SEQ_PRIVATE` (768) floats.
/// Whether `sequence` keeps each thread's columns of W_hh in registers
/// (private memory): on CPU adapters, where it fits.
pub(crate) fn w_private(rec: &crate::gpu::recorder::Recorder, hidden: usize) -> bool {
    rec.dev.summary.is_cpu() && seq_private_fits(hidden)
}

pub(crate) fn seq_private_fits(hidden: usize) -> bool {
    3 * hidden.div_ceil(64) * hidden <= SEQ_PRIVATE
}
