//! Which plan a call runs, and the tuner that chooses one by measurement.
//!
//! A call of shape (T, B) runs the plan `set_plan` forced (a shorthand plan
//! of `GpuContext::plan_named` among them), or else the plan of its shape's bucket: from
//! the context's cache (memory, then the file of the adapter), measured now
//! where the cache has none (`TuneMode::Quick` or `Full`), or the fixed
//! fallback rule (`TuneMode::Off`).
//!
//! Tuning times whole forward+backward calls of the shape on random data,
//! on the device's own clock (timestamp queries) where it has one, with the
//! host's time recording the calls added (the host's cost per dispatch
//! counts against the plans of many dispatches), else the wall clock around
//! the calls and a wait:
//!
//! 1. every GEMM variant the device runs, with the fallback time loop, on at
//!    most 16 steps (its share of a call grows with T·B as the call's does):
//!    the fastest goes on;
//! 2. that variant with every time loop that applies, on at most 256 steps;
//! 3. the window family (where it runs) with its per-step products, and with
//!    the fastest loop of 2, on as many steps.
//!
//! Then every candidate of the final round is checked: its output and
//! gradients on random data of the call's whole shape (T and B, not only
//! the steps timed) against those of the reference plan
//! ([`GpuGru::reference_plan`]: the simplest per-step plan, kept as the
//! baseline the way a naive kernel is kept beside tuned ones), within the
//! precision's bound; at small sizes the reference plan is itself checked
//! against the f64 CPU reference first. A candidate that disagrees is
//! reported with its error and never chosen or cached; a cached plan is
//! checked again before a call longer or wider than it was checked at.
//! This guards users against kernel and driver defects on hardware the
//! project cannot test (lavapipe's loop limit cut the persistent loops
//! short past a few hundred steps, and the tuner, timing 256 steps, never
//! saw it).
//!
//! A candidate that fails (a kernel the driver refuses) is reported and
//! skipped. Each is first run once on two steps (building its pipelines, off
//! the clock); quick mode times each once and those of 2-3 within 20% of the
//! best once more, full mode three times on the whole shape. A candidate's
//! score is its fastest sample (interference only adds time); the fastest of
//! 2-3 is chosen. The rounds, scores and checks are the generic tuner's
//! (`crate::tune`); this module makes its candidates from the plans.

use std::time::Instant;

use crate::config::ResetForm;
use crate::error::{GruError, Result};
use crate::gpu::context::Products;
use crate::gpu::gru::check::{call_data, Check};
use crate::gpu::gru::products::{ProductPath, StoragePath};
use crate::gpu::gru::rule::gpu_rule;
use crate::gpu::gru::windows::WindowPath;
use crate::gpu::gru::{BackwardOptions, ForwardOptions, GpuGru, OnDevice};
use crate::gpu::ops::gemm::GemmVariant;
use crate::gpu::plan::Strategy;
use crate::gpu::plan::{names_hash, CachedPlan, Family, Plan, ShapeKey, TuneMode};
use crate::tune::{Call, Outcome, Rounds, TunableSet};

/// Where the plan of a call came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum PlanSource {
    /// `set_plan`.
    Forced,
    /// The plan cache (this process's, or the file).
    Cached,
    /// Measured just now.
    Tuned,
    /// The fixed rule (`TuneMode::Off`).
    Fallback,
}

/// The plan of a shape and how it was chosen.
#[derive(Clone, Debug)]
pub struct PlanChoice {
    pub plan: Plan,
    pub source: PlanSource,
    /// Milliseconds spent measuring for this choice (0 unless `Tuned`).
    pub tuned_ms: f64,
}

/// One candidate of a tuning run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Candidate {
    /// `family/strategy`.
    #[serde(serialize_with = "plan_name")]
    pub plan: Plan,
    /// `gemm`: a GEMM kernel's ranking (with the fallback loop, on fewer
    /// steps: only the fastest goes on); `loop`: the final round, among
    /// which the fastest is chosen.
    pub stage: &'static str,
    /// The steps of each timed forward+backward.
    pub seq: usize,
    /// The median of the samples, in milliseconds of forward+backward.
    pub median_ms: Option<f64>,
    /// The fastest sample: the score (interference only adds time).
    pub min_ms: Option<f64>,
    pub samples_ms: Vec<f64>,
    /// Why it could not run, where it could not.
    pub error: Option<String>,
    /// Whether its results were checked against the reference plan's (the
    /// final round's are; the GEMM ranking's are not).
    pub checked: bool,
    /// How its results disagreed with the reference plan's, where they
    /// did: such a candidate is never chosen nor cached.
    pub rejected: Option<String>,
    pub chosen: bool,
}

impl Candidate {
    /// The candidate of a tuner's outcome, in `stage` on `seq` steps (not
    /// chosen).
    fn of(o: &Outcome<Plan>, stage: &'static str, seq: usize) -> Self {
        Candidate {
            plan: o.key,
            stage,
            seq,
            median_ms: o.median(),
            min_ms: o.score(),
            samples_ms: o.samples.clone(),
            error: o.error.clone(),
            checked: o.checked,
            rejected: o.rejected.clone(),
            chosen: false,
        }
    }
}

fn plan_name<S: serde::Serializer>(p: &Plan, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&p.name())
}

/// What a tuning run measured and chose.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TuneReport {
    /// The cache key of the shape's bucket.
    pub key: String,
    pub mode: TuneMode,
    /// The steps each candidate was timed on.
    pub seq_measured: usize,
    /// `gpu` (timestamp queries) or `wall`.
    pub clock: &'static str,
    pub candidates: Vec<Candidate>,
    #[serde(serialize_with = "plan_name")]
    pub chosen: Plan,
    /// Milliseconds the whole run took.
    pub tuned_ms: f64,
    /// The plan every candidate's results were held against.
    #[serde(serialize_with = "plan_name")]
    pub reference: Plan,
    /// `(T, B)` of the check: the call's whole shape.
    pub checked: (usize, usize),
    /// Whether the reference plan was itself checked against the f64 CPU
    /// reference (at small sizes).
    pub cpu_checked: bool,
}

/// A product path of a plan's family.
pub(crate) enum PathRef<'a> {
    Storage(StoragePath),
    Windows(&'a WindowPath),
}

impl PathRef<'_> {
    pub(crate) fn get(&self) -> &dyn ProductPath {
        match self {
            PathRef::Storage(p) => p,
            PathRef::Windows(w) => *w,
        }
    }
}

impl GpuGru {
    /// The product path of `family`, or an error where the model has none.
    pub(crate) fn path_of(&self, family: Family) -> Result<PathRef<'_>> {
        match family {
            Family::Gemm(gemm) => Ok(PathRef::Storage(StoragePath { gemm })),
            Family::Windows => self.windows.as_ref().map(PathRef::Windows).ok_or_else(|| {
                GruError::InvalidConfig(
                    "the window family does not run on this context (see GpuContext::families)"
                        .into(),
                )
            }),
        }
    }

    /// Forces `plan` on every call (`None`: back to the plan of each shape).
    /// A plan that does not apply to a call's shape makes the call fail.
    pub fn set_plan(&self, plan: Option<Plan>) {
        *self.forced_plan.lock().unwrap_or_else(|p| p.into_inner()) = plan;
    }

    /// Whether `plan` runs this model on a batch of `batch` rows here, and
    /// why not where it does not.
    pub fn check_plan(&self, plan: Plan, batch: usize) -> std::result::Result<(), String> {
        if !self.ctx.families().contains(&plan.family) {
            return Err(format!(
                "the family `{}` does not run on this context (it has {})",
                plan.family.name(),
                self.ctx
                    .families()
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let limits = self.ctx.limits();
        plan.strategy.check(
            self.config.hidden_size,
            batch,
            limits,
            self.ctx.features(),
            plan.family.is_windows(),
        )
    }

    /// Every plan that runs this model on a batch of `batch` rows here:
    /// each family of the context with each time loop that applies.
    pub fn candidates(&self, batch: usize) -> Vec<Plan> {
        self.ctx
            .families()
            .into_iter()
            .flat_map(|f| Strategy::ALL.iter().map(move |s| Plan::new(f, *s)))
            .filter(|p| self.check_plan(*p, batch).is_ok())
            .collect()
    }

    test_hook! {
        /// The fixed rule (`TuneMode::Off`) for a call of `t_len` steps of
        /// `batch` rows: reasoned from the kernels' figures (`kernel-stats`,
        /// `tests/access_patterns.rs`, BENCHMARKS.md), not measured on a GPU.
        /// On CPU adapters, the family of
        /// [`GpuContext::products`](crate::gpu::GpuContext::products) (the
        /// window family's per-step products where it fits) with
        /// `sequence` where it applies and `step` elsewhere. On GPUs,
        /// [`gpu_rule`](crate::gpu::gru::rule::gpu_rule) on the tiled GEMMs.
        pub fn fallback_plan(&self, t_len: usize, batch: usize) -> Plan {
            let families = self.ctx.families();
            let tiled = Family::Gemm(GemmVariant::Tile64K8);
            if self.ctx.adapter().is_cpu() || !families.contains(&tiled) {
                let family = match self.ctx.product_kernels() {
                    Products::Windows if self.windows.is_some() => Family::Windows,
                    _ if families.contains(&tiled) => tiled,
                    _ => Family::Gemm(GemmVariant::Simple),
                };
                return self.default_loop(family, batch);
            }
            let cfg = &self.config;
            let rule = gpu_rule(
                t_len * batch,
                cfg.num_directions() * 3 * cfg.hidden_size,
                batch,
            );
            rule.into_iter()
                .filter(|p| families.contains(&p.family))
                .find(|p| self.check_plan(*p, batch).is_ok())
                .unwrap_or(Plan::new(tiled, Strategy::Step))
        }
    }

    /// The fallback time loop of a family.
    fn default_loop(&self, family: Family, batch: usize) -> Plan {
        let order: &[Strategy] = match family {
            Family::Windows => &[Strategy::Products, Strategy::Step],
            Family::Gemm(_) => &[Strategy::Sequence, Strategy::Step],
        };
        order
            .iter()
            .map(|s| Plan::new(family, *s))
            .find(|p| self.check_plan(*p, batch).is_ok())
            .unwrap_or(Plan::new(family, Strategy::Step))
    }

    /// The plan every tuning candidate's results are held against: the
    /// simplest per-step plan (the simple GEMM with the `step` loop, or
    /// the `step` loop of the context's only family).
    pub(crate) fn reference_plan(&self) -> Plan {
        let families = self.ctx.families();
        let simple = Family::Gemm(GemmVariant::Simple);
        let family = if families.contains(&simple) {
            simple
        } else {
            families.first().copied().unwrap_or(simple)
        };
        Plan::new(family, Strategy::Step)
    }

    /// The cache key of a call of `(t_len, batch)`.
    fn plan_key(&self, t_len: usize, batch: usize) -> String {
        let cfg = &self.config;
        ShapeKey {
            dirs: cfg.num_directions(),
            layers: cfg.num_layers,
            batch,
            seq: t_len,
            input: cfg.input_size,
            hidden: cfg.hidden_size,
        }
        .key(self.ctx.profile().name())
            + if self.reset_before() {
                "/reset-before"
            } else {
                ""
            }
            + if self.f16() { "/f16" } else { "" }
    }

    /// Whether the model has the reset-before form (its plans are tuned apart).
    fn reset_before(&self) -> bool {
        self.config.reset_form == ResetForm::Before
    }

    /// The plan a call of `(t_len, batch)` runs, and how it was chosen; it
    /// tunes the shape's bucket first where that is needed (see the module's
    /// documentation). A forced plan that does not apply is an error.
    pub fn plan_for(&self, t_len: usize, batch: usize) -> Result<PlanChoice> {
        let forced = *self.forced_plan.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(plan) = forced {
            self.check_plan(plan, batch).map_err(|why| {
                GruError::InvalidConfig(format!("the plan {plan} does not apply: {why}"))
            })?;
            return Ok(PlanChoice {
                plan,
                source: PlanSource::Forced,
                tuned_ms: 0.0,
            });
        }
        let mode = self.ctx.tune_mode();
        if mode == TuneMode::Off {
            return Ok(PlanChoice {
                plan: self.fallback_plan(t_len, batch),
                source: PlanSource::Fallback,
                tuned_ms: 0.0,
            });
        }
        let key = self.plan_key(t_len, batch);
        // One tuning at a time per context; a second thread asking for the
        // same shape waits and finds it cached.
        let _guard = self.tuning_lock();
        if let Some((plan, entry)) = self.cached_plan(&key, mode, batch) {
            let (ct, cb) = entry.checked;
            if t_len <= ct && batch <= cb {
                return Ok(PlanChoice {
                    plan,
                    source: PlanSource::Cached,
                    tuned_ms: 0.0,
                });
            }
            // A call longer or wider than the plan was checked at: check it
            // again on this shape (not tuning: `tuned_ms` stays 0), and tune
            // again where it disagrees.
            let check = Check::new(self, t_len, batch)?;
            if check.disagreement(plan)?.is_none() {
                self.ctx.plans().put(
                    &key,
                    CachedPlan {
                        checked: (t_len.max(ct), batch.max(cb)),
                        ..entry
                    },
                );
                return Ok(PlanChoice {
                    plan,
                    source: PlanSource::Cached,
                    tuned_ms: 0.0,
                });
            }
        }
        let report = self.tune_locked(t_len, batch, mode)?;
        Ok(PlanChoice {
            plan: report.chosen,
            source: PlanSource::Tuned,
            tuned_ms: report.tuned_ms,
        })
    }

    /// The cached plan of `key`, where it was measured in `mode` (or more
    /// thoroughly) over the candidates this build would measure, and applies.
    fn cached_plan(&self, key: &str, mode: TuneMode, batch: usize) -> Option<(Plan, CachedPlan)> {
        let entry = self.ctx.plans().get(key)?;
        if mode == TuneMode::Full && entry.mode != TuneMode::Full {
            return None;
        }
        if entry.candidates_hash != self.candidates_hash(batch) {
            return None;
        }
        let plan = Plan::from_name(&entry.plan).ok()?;
        self.check_plan(plan, batch).ok().map(|_| (plan, entry))
    }

    fn candidates_hash(&self, batch: usize) -> String {
        let names: Vec<String> = self.candidates(batch).iter().map(|p| p.name()).collect();
        names_hash(names.iter().map(|s| s.as_str()))
    }

    /// Measures the candidate plans of `(t_len, batch)` now (whatever the
    /// cache holds), keeps the fastest in the cache, and reports every
    /// candidate's time.
    pub fn tune(&self, t_len: usize, batch: usize, mode: TuneMode) -> Result<TuneReport> {
        let _guard = self.tuning_lock();
        self.tune_locked(t_len, batch, mode)
    }

    /// The context's tuning lock: one tuning at a time.
    fn tuning_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.ctx
            .plans()
            .tuning
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn tune_locked(&self, t_len: usize, batch: usize, mode: TuneMode) -> Result<TuneReport> {
        self.check_dims(t_len, batch)?;
        let start = Instant::now();
        let steps = Steps::of(t_len, mode);
        let key = self.plan_key(t_len, batch);
        let all = self.candidates(batch);
        if all.is_empty() {
            return Err(GruError::InvalidConfig(format!(
                "no plan runs this GRU on a batch of {batch} on this device"
            )));
        }
        let bench = Bench::new(self, steps.loops, batch)?;
        let rounds = match mode {
            TuneMode::Full => Rounds::FULL,
            _ => Rounds::QUICK,
        };
        let ranking = self.rank_gemms(&bench, &all, steps, rounds);
        let mut finals = self.final_round(&bench, &all, &ranking, steps, rounds);
        // Quick mode: the ones within 20% of the best once more.
        finals.finalists();
        // Every candidate that ran, checked on the call's whole shape
        // against the reference plan.
        let check = Check::new(self, t_len, batch)?;
        finals.check(|p| check.disagreement(*p));
        let ranked = ranking
            .outcomes()
            .map(|o| Candidate::of(o, "gemm", steps.gemm));
        let last = finals
            .outcomes()
            .map(|o| Candidate::of(o, "loop", steps.loops));
        let mut cands: Vec<Candidate> = ranked.chain(last).collect();
        let chosen = *finals
            .best()
            .ok_or_else(|| no_plan_agreed(&cands, check.reference))?;
        for c in cands.iter_mut().filter(|c| c.stage == "loop") {
            c.chosen = c.plan == chosen;
        }
        self.ctx.plans().put(
            &key,
            CachedPlan {
                plan: chosen.name(),
                mode,
                candidates_hash: self.candidates_hash(batch),
                timings: finals
                    .outcomes()
                    .map(|o| (o.key.name(), o.eligible()))
                    .collect(),
                checked: (t_len, batch),
            },
        );
        Ok(TuneReport {
            key,
            mode,
            seq_measured: steps.loops,
            clock: if bench.gpu_clock { "gpu" } else { "wall" },
            candidates: cands,
            chosen,
            tuned_ms: start.elapsed().as_secs_f64() * 1e3,
            reference: check.reference,
            checked: (t_len, batch),
            cpu_checked: check.cpu_checked,
        })
    }

    /// The GEMM families of the context, in its order.
    fn gemm_families(&self) -> Vec<Family> {
        let families = self.ctx.families();
        families.into_iter().filter(|f| !f.is_windows()).collect()
    }

    /// Round 1, where the device runs several GEMM variants: each with its
    /// fallback loop, on `steps.gemm` steps.
    fn rank_gemms<'b>(
        &self,
        bench: &'b Bench<'_>,
        all: &[Plan],
        steps: Steps,
        rounds: Rounds,
    ) -> TunableSet<'b, Plan, GruError> {
        let mut set = TunableSet::new(rounds);
        let gemms = self.gemm_families();
        if gemms.len() > 1 {
            for f in gemms {
                let p = self.default_loop(f, bench.batch);
                if all.contains(&p) {
                    set.add(p, bench.runner(p, steps.gemm));
                }
            }
        }
        set
    }

    /// Rounds 2 and 3, on `steps.loops` steps: the fastest (or only) GEMM
    /// variant with every loop that applies, then the window family (where
    /// it runs) with its per-step products and the fastest loop of 2 (with
    /// every loop where it is the only family).
    fn final_round<'b>(
        &self,
        bench: &'b Bench<'_>,
        all: &[Plan],
        ranking: &TunableSet<'_, Plan, GruError>,
        steps: Steps,
        rounds: Rounds,
    ) -> TunableSet<'b, Plan, GruError> {
        let mut set = TunableSet::new(rounds);
        let add = |set: &mut TunableSet<'b, Plan, GruError>, p: Plan| {
            if !all.contains(&p) {
                return;
            }
            let run = bench.runner(p, steps.loops);
            // A ranking sample on the same steps counts.
            match ranking.outcome(&p).filter(|_| steps.gemm == steps.loops) {
                Some(o) => set.add_measured(o.clone(), run),
                None => set.add(p, run),
            }
        };
        let gemms = self.gemm_families();
        let gemm = ranking.best().map(|p| p.family).or(gemms.first().copied());
        if let Some(g) = gemm {
            for s in Strategy::ALL {
                add(&mut set, Plan::new(g, *s));
            }
        }
        if self.ctx.families().contains(&Family::Windows) {
            let loops: Vec<Strategy> = if gemms.is_empty() {
                Strategy::ALL.to_vec()
            } else {
                let best_loop = set.best().map(|b| b.strategy);
                std::iter::once(Strategy::Products)
                    .chain(best_loop)
                    .collect()
            };
            for s in loops {
                add(&mut set, Plan::new(Family::Windows, s));
            }
        }
        set
    }
}

/// The error of a tuning in which no candidate ran and agreed with the
/// reference plan: each candidate's reason.
fn no_plan_agreed(cands: &[Candidate], reference: Plan) -> GruError {
    let why: Vec<String> = cands
        .iter()
        .map(|c| {
            let e = c.rejected.as_deref().or(c.error.as_deref());
            format!("{}: {}", c.plan, e.unwrap_or("?"))
        })
        .collect();
    GruError::InvalidConfig(format!(
        "no candidate plan ran and agreed with the reference plan {}: {}",
        reference,
        why.join("; ")
    ))
}

/// The steps each round times: the GEMM kernels' ranking (their share of
/// a call grows with T·B like the call) at most 16, the final round at
/// most 256 (on fewer, a family whose products are faster but whose fixed
/// cost is higher loses where it wins at full length); the whole call in
/// full mode.
#[derive(Clone, Copy)]
struct Steps {
    gemm: usize,
    loops: usize,
}

impl Steps {
    fn of(t_len: usize, mode: TuneMode) -> Self {
        let (gemm, loops) = match mode {
            TuneMode::Full => (t_len, t_len),
            _ => (t_len.min(16), t_len.min(256)),
        };
        Steps { gemm, loops }
    }
}

/// Random data of one shape on the device, and the timing of a plan on it.
struct Bench<'a> {
    model: &'a GpuGru,
    seq: usize,
    batch: usize,
    x: crate::gpu::PooledBuffer,
    g: crate::gpu::PooledBuffer,
    gpu_clock: bool,
}

impl<'a> Bench<'a> {
    fn new(model: &'a GpuGru, seq: usize, batch: usize) -> Result<Self> {
        let (_, x, g) = call_data(model, seq, batch, 7)?;
        Ok(Bench {
            model,
            seq,
            batch,
            x,
            g,
            gpu_clock: model.ctx.has_timestamps(),
        })
    }

    /// One forward+backward of `seq` steps with `plan`: its time in ms. On
    /// the device's clock, the device's time plus the host's recording of
    /// the two calls (a plan of many dispatches costs the host time per
    /// dispatch, which the device's clock alone would not count); else the
    /// wall clock, which holds both.
    fn call(&self, plan: Plan, seq: usize, timed: bool) -> Result<f64> {
        let m = self.model;
        let x = OnDevice {
            buffer: self.x.buffer(),
            seq_len: seq,
            batch: self.batch,
        };
        let start = Instant::now();
        let (f, fs) =
            m.forward_with_plan(x, &ForwardOptions::default().keep_tape(), plan, timed)?;
        let tape = f.tape.expect("kept");
        let bs = m.backward_with_plan(tape, self.g.buffer(), &BackwardOptions::default(), timed)?;
        m.ctx.synchronize()?;
        let wall = start.elapsed().as_secs_f64() * 1e3;
        match (self.gpu_clock, fs.gpu_ms, bs.gpu_ms) {
            (true, Some(a), Some(b)) => Ok(a + b + fs.record_ms + bs.record_ms),
            _ => Ok(wall),
        }
    }

    /// `plan` as a tuning candidate: a warm-up is an untimed call on two
    /// steps (building its pipelines), a sample a timed call of `seq` steps
    /// (at most the data's).
    fn runner(&self, plan: Plan, seq: usize) -> impl FnMut(Call) -> Result<f64> + '_ {
        let seq = seq.min(self.seq);
        move |call| match call {
            Call::WarmUp => self.call(plan, seq.min(2), false),
            Call::Sample => self.call(plan, seq, true),
        }
    }
}
