//! The step kernels of `gru_forward.wgsl` and `gru_backward.wgsl` as data.
//!
//! A step kernel is a value of [`StepKernel`]: which pass (forward or
//! backward), what its threads do ([`Body`]: one step, a half of a
//! reset-before step, a split-K step, or a persistent loop), how it takes
//! the step's recurrent product ([`Gh`]), the reset form, whether the
//! forward keeps a tape, and the storage precision. The value yields the
//! kernel's entry point, its override constants and its storage types
//! ([`StepKernel::spec`]); [`StepKernel::all`] enumerates every kernel the
//! engine can dispatch from these axes, and nothing else writes one out.
//!
//! A time loop is a value of [`TimeLoop`]: its name, the grid of each of its
//! phases per step, or the grid and loop cost of its persistent kernel, and
//! whether it applies to a shape ([`TimeLoop::check`]). [`encode_loop`]
//! records any of them, forward or backward, from that description; adding
//! a time loop is its entry points in the two shaders and one entry of
//! [`LOOPS`].

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::error::{GruError, Result};
use crate::gpu::ops::common::{
    resident_fits, resident_rows, resident_wg, run_persistent, steps_per_dispatch, StepShape,
    RES_HMAX, RES_SIZES, SEQ_HMAX, SEQ_ROWS,
};
use crate::gpu::ops::{gru_backward, gru_forward};
use crate::gpu::pipeline::{types, u32_of, KernelSpec};
use crate::gpu::recorder::Recorder;

/// The direction of the pass through time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Pass {
    /// `gru_forward.wgsl`: steps 0 up to T-1.
    Forward,
    /// `gru_backward.wgsl`: steps T-1 down to -1 (the last leaves dL/dh0).
    Backward,
}

/// What the threads of a step kernel compute (its entry point).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Body {
    /// `step`: one step, a thread per hidden unit of four batch rows.
    Step,
    /// `rb_rz` (forward, reset-before): r, z and r·h of a step (`step`
    /// with `RB_HALF`).
    RbRz,
    /// `rb_dr` (backward, reset-before): the second half's carry (`step`
    /// with `RB_HALF`).
    RbDr,
    /// `splitk`: one step, the product split along K in a workgroup.
    SplitK,
    /// `sequence`: every step in one dispatch, four batch rows a workgroup;
    /// `w_private`: each thread keeps its columns of W_hh in registers.
    Sequence { w_private: bool },
    /// `resident`: every step in one dispatch, a workgroup of `wg` threads
    /// per batch row holding W_hh.
    Resident { wg: u32 },
}

/// How a step takes its recurrent product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Gh {
    /// Inside the kernel, from W_hh.
    Fused,
    /// Precomputed by the window family (`PRECOMPUTED`).
    Window,
    /// Precomputed by a storage-family GEMM (`PRECOMPUTED`, `STORAGE_GH`).
    Storage,
}

/// One step kernel (see the module's docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct StepKernel {
    pub pass: Pass,
    pub body: Body,
    pub gh: Gh,
    /// The reset-before form (`RB`).
    pub rb: bool,
    /// The forward writes the tape (`TAPE`); always true backward.
    pub tape: bool,
    /// Storage in f16 (weights, states, outputs, tape).
    pub f16: bool,
}

impl StepKernel {
    /// The kernel of `pass` and `body`, fused product, after form, with a
    /// tape, in f32: the other axes are set by the builders below.
    pub(crate) const fn new(pass: Pass, body: Body) -> Self {
        StepKernel {
            pass,
            body,
            gh: Gh::Fused,
            rb: false,
            tape: true,
            f16: false,
        }
    }

    /// With the product taken as `gh`.
    pub(crate) const fn gh(self, gh: Gh) -> Self {
        StepKernel { gh, ..self }
    }

    /// In the reset-before form where `rb`.
    pub(crate) const fn rb(self, rb: bool) -> Self {
        StepKernel { rb, ..self }
    }

    /// Writing the tape where `tape` (the forward only).
    pub(crate) const fn tape(self, tape: bool) -> Self {
        StepKernel { tape, ..self }
    }

    /// In the storage precision of recording `rec`.
    pub(crate) fn for_rec(self, rec: &Recorder) -> Self {
        StepKernel {
            f16: rec.is_f16(),
            ..self
        }
    }

    /// The entry point.
    pub(crate) fn entry(&self) -> &'static str {
        match self.body {
            // The reset-before halves are `step` with `RB_HALF`.
            Body::Step | Body::RbRz | Body::RbDr => "step",
            Body::SplitK => "splitk",
            Body::Sequence { .. } => "sequence",
            Body::Resident { .. } => "resident",
        }
    }

    /// The override constants: only those that differ from the shader's
    /// defaults, but for the forward's `TAPE` and the persistent kernels'
    /// own (`W_PRIVATE`, `RES_WG`), always given.
    fn constants(&self) -> Vec<(&'static str, f64)> {
        let mut c = Vec::new();
        if self.gh != Gh::Fused {
            c.push(("PRECOMPUTED", 1.0));
        }
        if self.gh == Gh::Storage {
            c.push(("STORAGE_GH", 1.0));
        }
        match self.body {
            Body::Sequence { w_private } => c.push(("W_PRIVATE", f64::from(u8::from(w_private)))),
            Body::Resident { wg } => {
                c.push(("RES_WG", f64::from(wg)));
                c.push(("RES_L", resident_rows(wg) as f64));
            }
            _ => {}
        }
        if matches!(self.body, Body::RbRz | Body::RbDr) {
            c.push(("RB_HALF", 1.0));
        } else if self.rb {
            c.push(("RB", 1.0));
        }
        if self.pass == Pass::Forward {
            c.push(("TAPE", f64::from(u8::from(self.tape))));
        }
        c
    }

    /// The storage types (see `pipeline::TYPE_ALIASES`): in f16 the states
    /// and tape, and the weights unless the product is precomputed (then
    /// binding `SW` holds that f32 product).
    fn types(&self) -> &'static [(&'static str, &'static str)] {
        match (self.f16, self.gh) {
            (false, _) => &[],
            (true, Gh::Fused) => types::STEP_F16,
            (true, _) => types::STEP_F16_PRECOMPUTED,
        }
    }

    /// The pipeline's spec (entry point, constants, storage types).
    fn build(&self) -> KernelSpec {
        let base = match self.pass {
            Pass::Forward => gru_forward::base(),
            Pass::Backward => gru_backward::base(),
        };
        KernelSpec {
            entry: self.entry(),
            constants: Vec::leak(self.constants()),
            types: self.types(),
            ..base
        }
    }

    /// The spec of this kernel, one of [`all`](Self::all) (built once).
    pub(crate) fn spec(&self) -> &'static KernelSpec {
        static TABLE: OnceLock<HashMap<StepKernel, KernelSpec>> = OnceLock::new();
        let table = TABLE.get_or_init(|| Self::all().map(|k| (k, k.build())).collect());
        table
            .get(self)
            .unwrap_or_else(|| panic!("{self:?} is not a step kernel of StepKernel::all"))
    }

    /// Every step kernel the engine dispatches, in f32 and f16: each body
    /// with the products, reset forms and tapes it is built for.
    pub(crate) fn all() -> impl Iterator<Item = StepKernel> {
        let bodies = [Body::Step, Body::RbRz, Body::RbDr, Body::SplitK]
            .into_iter()
            .chain([false, true].map(|w_private| Body::Sequence { w_private }))
            .chain(RES_SIZES.map(|wg| Body::Resident { wg }));
        let mut out = Vec::new();
        for pass in [Pass::Forward, Pass::Backward] {
            for body in bodies.clone() {
                for gh in [Gh::Fused, Gh::Window, Gh::Storage] {
                    for rb in [false, true] {
                        for tape in [false, true] {
                            for f16 in [false, true] {
                                let k = StepKernel {
                                    pass,
                                    body,
                                    gh,
                                    rb,
                                    tape,
                                    f16,
                                };
                                if k.is_built() {
                                    out.push(k);
                                }
                            }
                        }
                    }
                }
            }
        }
        out.into_iter()
    }

    /// Whether the engine builds this combination: the halves of the
    /// reset-before form exist only in it (`rb_rz` forward, `rb_dr`
    /// backward, the latter for any product); precomputed products only
    /// in the per-step kernels, and the window family's only in the after
    /// form (its reset-before steps take the storage kernels); the
    /// backward always reads a tape.
    fn is_built(&self) -> bool {
        let body_ok = match (self.pass, self.body) {
            (Pass::Forward, Body::RbRz) => self.rb,
            (Pass::Backward, Body::RbDr) => self.rb && self.gh == Gh::Fused,
            (_, Body::RbRz | Body::RbDr) => false,
            _ => true,
        };
        let gh_ok = match self.gh {
            Gh::Fused => true,
            Gh::Storage => matches!(self.body, Body::Step | Body::RbRz),
            Gh::Window => self.body == Body::Step && !self.rb,
        };
        body_ok && gh_ok && (self.tape || self.pass == Pass::Forward)
    }
}

/// How a time loop dispatches.
#[derive(Clone, Copy, Debug)]
pub(crate) enum LoopKind {
    /// Dispatches per step, over the grid of each phase in turn.
    PerStep(PerStep),
    /// One persistent kernel for all steps (in as few dispatches as the
    /// device's loop budget allows), its workgroups owning whole batch rows.
    Persistent(Persistent),
    /// Per step, the recurrent product through the plan family's GEMM, then
    /// `step` with the product precomputed: recorded by the layer above
    /// (`gru::products`, the window family's `ops::windows`), which knows
    /// the family.
    Products,
}

/// The grid of a per-step dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StepGrid {
    /// (ceil(H/64), ceil(B/4), D).
    Step,
    /// (ceil(H/SK_UNITS), ceil(B/SK_ROWS), D).
    SplitK,
}

/// One dispatch of a step: its kernel, grid and `phase` parameter.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Phase {
    pub body: Body,
    pub grid: StepGrid,
    pub phase: u32,
    /// Not at the backward's last step (-1, which only leaves dL/dh0).
    pub skip_last: bool,
}

impl Phase {
    const fn new(body: Body, grid: StepGrid) -> Self {
        Phase {
            body,
            grid,
            phase: 0,
            skip_last: false,
        }
    }
}

/// The phases of a per-step loop, per pass and reset form.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PerStep {
    pub forward: &'static [Phase],
    pub forward_rb: &'static [Phase],
    pub backward: &'static [Phase],
    pub backward_rb: &'static [Phase],
}

/// The persistent kernels of a loop.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Persistent {
    /// `sequence`: (ceil(B/SEQ_ROWS), D) workgroups.
    Sequence,
    /// `resident`: (B, D) workgroups of the device's size.
    Resident,
}

/// One time loop (see the module's docs).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TimeLoop {
    /// As in plan names (`Strategy::name`).
    pub name: &'static str,
    pub kind: LoopKind,
}

const fn ph(body: Body, grid: StepGrid) -> Phase {
    Phase::new(body, grid)
}

/// Every time loop, the fallback (`step`) first; a plan's `Strategy` names
/// one (its order is `Strategy::ALL`'s). The products loop is the family's
/// GEMM per step and `step` with a precomputed product (`gru::products`,
/// `ops::windows`).
pub(crate) const LOOPS: &[TimeLoop] = &[
    TimeLoop {
        name: "step",
        kind: LoopKind::PerStep(PerStep {
            forward: &[ph(Body::Step, StepGrid::Step)],
            forward_rb: &[
                ph(Body::RbRz, StepGrid::Step),
                ph(Body::Step, StepGrid::Step),
            ],
            backward: &[ph(Body::Step, StepGrid::Step)],
            backward_rb: &[
                ph(Body::Step, StepGrid::Step),
                Phase {
                    skip_last: true,
                    ..ph(Body::RbDr, StepGrid::Step)
                },
            ],
        }),
    },
    TimeLoop {
        name: "sequence",
        kind: LoopKind::Persistent(Persistent::Sequence),
    },
    TimeLoop {
        name: "products",
        kind: LoopKind::Products,
    },
    TimeLoop {
        name: "splitk",
        kind: LoopKind::PerStep(PerStep {
            forward: &[ph(Body::SplitK, StepGrid::SplitK)],
            forward_rb: &[
                ph(Body::SplitK, StepGrid::SplitK),
                Phase {
                    phase: 1,
                    ..ph(Body::SplitK, StepGrid::SplitK)
                },
            ],
            backward: &[ph(Body::SplitK, StepGrid::SplitK)],
            backward_rb: &[
                ph(Body::SplitK, StepGrid::SplitK),
                Phase {
                    skip_last: true,
                    ..ph(Body::RbDr, StepGrid::Step)
                },
            ],
        }),
    },
    TimeLoop {
        name: "resident",
        kind: LoopKind::Persistent(Persistent::Resident),
    },
];

impl TimeLoop {
    /// The loop of this name (`step`, `sequence`, `products`, `splitk`, `resident`).
    pub(crate) fn named(name: &str) -> Option<&'static TimeLoop> {
        LOOPS.iter().find(|l| l.name == name)
    }

    /// Whether the loop runs a layer of hidden size `hidden` on a device
    /// with these limits, and why not.
    pub(crate) fn check(
        &self,
        hidden: usize,
        limits: &wgpu::Limits,
    ) -> std::result::Result<(), String> {
        let most = limits
            .max_compute_invocations_per_workgroup
            .min(limits.max_compute_workgroup_size_x);
        match self.kind {
            LoopKind::PerStep(p) => {
                let splitk = [p.forward, p.forward_rb, p.backward, p.backward_rb]
                    .iter()
                    .any(|ph| ph.iter().any(|x| x.grid == StepGrid::SplitK));
                if splitk && most < 256 {
                    return Err("the split-K steps need workgroups of 256 invocations".into());
                }
                Ok(())
            }
            LoopKind::Products => Ok(()),
            LoopKind::Persistent(Persistent::Sequence) if hidden > SEQ_HMAX => Err(format!(
                "the sequence kernels take hidden sizes up to {SEQ_HMAX}; this GRU has {hidden}"
            )),
            LoopKind::Persistent(Persistent::Sequence) => Ok(()),
            LoopKind::Persistent(Persistent::Resident) => match resident_wg(limits, hidden) {
                None => Err("the resident kernels need workgroups of 256 invocations".into()),
                Some(wg) if !resident_fits(hidden, wg) => Err(format!(
                    "the resident kernels take hidden sizes up to {} on this device \
                     (workgroups of W <= {wg} threads, ceil(H / floor(W / H)) rows a thread: \
                     at most 13 at 1024 threads, 32 at 512 and 256); this GRU has {hidden}",
                    (1..=RES_HMAX)
                        .rev()
                        .find(|&h| resident_wg(limits, h).is_some_and(|w| resident_fits(h, w)))
                        .unwrap_or(0),
                )),
                Some(_) => Ok(()),
            },
        }
    }
}

/// What one recording of a time loop takes: the pass, the layer's shape,
/// the bindings 1.. of the pass's shader (see `ForwardStepBufs::bound`,
/// `BackwardStepBufs::bound`), the reset form, the tape, and for
/// `sequence` whether W_hh stays in registers.
pub(crate) struct LoopCall<'a> {
    pub pass: Pass,
    pub sh: &'a StepShape,
    pub bufs: &'a [&'a wgpu::Buffer],
    pub rb: bool,
    pub tape: bool,
    pub w_private: bool,
}

/// Records the time loop `lp` as `call` describes (one bind group per
/// kernel, every parameter slot reserved before the loop).
pub(crate) fn encode_loop(rec: &mut Recorder, lp: &TimeLoop, call: &LoopCall) -> Result<()> {
    match lp.kind {
        LoopKind::PerStep(p) => {
            let phases = match (call.pass, call.rb) {
                (Pass::Forward, false) => p.forward,
                (Pass::Forward, true) => p.forward_rb,
                (Pass::Backward, false) => p.backward,
                (Pass::Backward, true) => p.backward_rb,
            };
            encode_per_step(rec, phases, call)
        }
        LoopKind::Persistent(kind) => encode_persistent(rec, kind, call),
        LoopKind::Products => Err(GruError::Gpu(
            "internal error: the products loop is recorded by the layer (gru::products)".into(),
        )),
    }
}

/// The kernel of `body` for `call`.
fn kernel_of(rec: &Recorder, body: Body, call: &LoopCall) -> StepKernel {
    StepKernel::new(call.pass, body)
        .rb(call.rb)
        .tape(call.tape || call.pass == Pass::Backward)
        .for_rec(rec)
}

fn encode_per_step(rec: &mut Recorder, phases: &[Phase], call: &LoopCall) -> Result<()> {
    let sh = call.sh;
    let max = rec.max_groups();
    let mut kernels = Vec::with_capacity(phases.len());
    for ph in phases {
        let kernel = rec.kernel(kernel_of(rec, ph.body, call).spec())?;
        let parts = match ph.grid {
            StepGrid::Step => sh.step_pieces(max)?,
            StepGrid::SplitK => sh.splitk_pieces(max)?,
        };
        kernels.push((kernel, parts));
    }
    let steps: Vec<i32> = match call.pass {
        Pass::Forward => (0..sh.t_len as i32).collect(),
        Pass::Backward => (-1..sh.t_len as i32).rev().collect(),
    };
    let per_step: usize = kernels.iter().map(|(_, parts)| parts.len()).sum();
    rec.reserve(steps.len() * per_step);
    let chunk = rec.current_chunk();
    // One bind group per kernel (phases of one kernel share it).
    let mut groups: Vec<wgpu::BindGroup> = Vec::with_capacity(phases.len());
    for (i, (kernel, _)) in kernels.iter().enumerate() {
        let same = (0..i).find(|&j| std::sync::Arc::ptr_eq(&kernels[j].0, kernel));
        let bg = match same {
            Some(j) => groups[j].clone(),
            None => rec.bind(kernel, chunk, call.bufs),
        };
        groups.push(bg);
    }
    let mut p = sh.params()?;
    for s in steps {
        p.s = s;
        for (i, ph) in phases.iter().enumerate() {
            if ph.skip_last && s < 0 {
                continue;
            }
            p.phase = ph.phase;
            let (kernel, parts) = &kernels[i];
            rec.dispatch_pieces(kernel, &groups[i], chunk, p, parts)?;
        }
    }
    Ok(())
}

fn encode_persistent(rec: &mut Recorder, kind: Persistent, call: &LoopCall) -> Result<()> {
    let (sh, pass) = (call.sh, call.pass);
    let mut p = sh.params()?;
    let (h, rb) = (sh.hidden, call.rb);
    let (body, wg, cost) = match kind {
        Persistent::Sequence => {
            p.rows = SEQ_ROWS as u32;
            let wg = [
                u32_of("batch", sh.batch.div_ceil(SEQ_ROWS))?,
                sh.dirs as u32,
                1,
            ];
            let cost = match pass {
                Pass::Forward => gru_forward::sequence_cost(h, call.w_private, rb),
                Pass::Backward => gru_backward::sequence_cost(h, call.w_private, rb),
            };
            let w_private = call.w_private;
            (Body::Sequence { w_private }, wg, cost)
        }
        Persistent::Resident => {
            let size = resident_wg(&rec.dev.limits, h).ok_or_else(|| {
                GruError::InvalidConfig(
                    "the resident kernels need workgroups of 256 invocations".into(),
                )
            })?;
            let cost = match pass {
                Pass::Forward => gru_forward::resident_cost(h, size, rb),
                Pass::Backward => gru_backward::resident_cost(h, size, rb),
            };
            let wg = [u32_of("batch", sh.batch)?, sh.dirs as u32, 1];
            (Body::Resident { wg: size }, wg, cost)
        }
    };
    let kernel = kernel_of(rec, body, call);
    let pass_name = match pass {
        Pass::Forward => "forward",
        Pass::Backward => "backward",
    };
    let what = format!("one step of the {pass_name} `{}` loop", kernel.entry());
    let per = steps_per_dispatch(rec.dev, &what, cost)?;
    let backward = pass == Pass::Backward;
    run_persistent(rec, kernel.spec(), p, call.bufs, wg, per, backward)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The axes give the kernels the engine dispatched when they were
    /// written out by hand: 38 forward (with and without a tape) and 18
    /// backward, each in f32 and f16, none twice.
    #[test]
    fn the_axes_enumerate_every_step_kernel_once() {
        let all: Vec<StepKernel> = StepKernel::all().collect();
        let count = |pass, f16| {
            all.iter()
                .filter(|k| k.pass == pass && k.f16 == f16)
                .count()
        };
        for f16 in [false, true] {
            assert_eq!(count(Pass::Forward, f16), 38);
            assert_eq!(count(Pass::Backward, f16), 18);
        }
        let mut seen = std::collections::HashSet::new();
        for k in &all {
            let s = k.spec();
            let key = (s.file, s.entry, format!("{:?}", s.constants), s.types);
            assert!(seen.insert(key), "{k:?} has the spec of another kernel");
            assert_eq!(s.types.is_empty(), !k.f16, "{k:?}");
        }
    }

    /// Every phase of every per-step loop names a kernel that is built, in
    /// both reset forms and both passes.
    #[test]
    fn every_loop_phase_is_a_built_kernel() {
        for lp in LOOPS {
            let LoopKind::PerStep(p) = lp.kind else {
                continue;
            };
            for (pass, rb, phases) in [
                (Pass::Forward, false, p.forward),
                (Pass::Forward, true, p.forward_rb),
                (Pass::Backward, false, p.backward),
                (Pass::Backward, true, p.backward_rb),
            ] {
                for ph in phases {
                    for tape in [false, true] {
                        let k = StepKernel::new(pass, ph.body)
                            .rb(rb)
                            .tape(tape || pass == Pass::Backward);
                        assert!(k.is_built(), "{}: {k:?}", lp.name);
                    }
                }
            }
        }
    }
}
