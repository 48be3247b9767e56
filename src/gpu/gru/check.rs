//! The check of a plan's results against the reference plan's, on random
//! data of a call's whole shape (see [`planning`](super::planning)): what
//! keeps the tuner from choosing, or a cache from keeping, a plan that gives
//! a different answer.

use rand::{Rng, SeedableRng};

use crate::error::{GruError, Result};
use crate::gpu::gru::{ForwardOptions, GpuGru, OnDevice};
use crate::gpu::plan::Plan;

/// Random `x` and `grad_output` of a call of `(seq, batch)` from U(-1, 1)
/// (seeded): on the host, and uploaded (`x` in the model's storage).
#[allow(clippy::type_complexity)]
pub(crate) fn call_data(
    model: &GpuGru,
    seq: usize,
    batch: usize,
    seed: u64,
) -> Result<(
    (Vec<f32>, Vec<f32>),
    crate::gpu::PooledBuffer,
    crate::gpu::PooledBuffer,
)> {
    let cfg = &model.config;
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut rand = |n: usize| -> Vec<f32> { (0..n).map(|_| r.random_range(-1.0..1.0)).collect() };
    let xs = rand(seq * batch * cfg.input_size);
    let gs = rand(seq * batch * cfg.num_directions() * cfg.hidden_size);
    let x = model.upload_input("call data: x", &xs)?;
    let g = model.ctx.upload("call data: grad_output", &gs)?;
    Ok(((xs, gs), x, g))
}

/// Random data of a call's whole shape, the reference plan's results on it,
/// and a candidate's results held against them.
pub(crate) struct Check<'a> {
    model: &'a GpuGru,
    seq: usize,
    batch: usize,
    x: crate::gpu::PooledBuffer,
    g: crate::gpu::PooledBuffer,
    pub(crate) reference: Plan,
    /// The reference plan's results, named.
    expected: Vec<(String, Vec<f32>)>,
    /// The relative error (per tensor) past which results disagree: the f32
    /// bound of the suite (1e-5), or 2e-3 for a model in f16.
    bound: f64,
    pub(crate) cpu_checked: bool,
}

/// A call is small enough for the f64 CPU reference to check the reference
/// plan below this many multiply-adds of its forward.
const CPU_CHECK_MACS: usize = 20_000_000;

impl<'a> Check<'a> {
    /// The data of `(seq, batch)` and the reference plan's results on it;
    /// at small sizes the reference plan's results against the f64 CPU
    /// reference first (an error where they disagree: then no plan's
    /// results can be trusted on this device).
    pub(crate) fn new(model: &'a GpuGru, seq: usize, batch: usize) -> Result<Self> {
        let cfg = &model.config;
        let ((xs, gs), x, g) = call_data(model, seq, batch, 11)?;
        let reference = model.reference_plan();
        let bound = if model.f16() { 2e-3 } else { 1e-5 };
        let mut c = Check {
            model,
            seq,
            batch,
            x,
            g,
            reference,
            expected: Vec::new(),
            bound,
            cpu_checked: false,
        };
        c.expected = c.results(reference)?;
        let macs: usize = (0..cfg.num_layers)
            .map(|l| cfg.layer_input_size(l) + cfg.hidden_size)
            .sum::<usize>()
            .saturating_mul(3 * cfg.hidden_size * cfg.num_directions() * seq * batch);
        if macs <= CPU_CHECK_MACS {
            let cpu = c.cpu_results(&xs, &gs)?;
            if let Some(why) = c.compare(&cpu) {
                return Err(GruError::Gpu(format!(
                    "on {}, the reference plan {} disagrees with the f64 CPU reference at \
                     T={seq}, B={batch}: {why}; no plan's results can be trusted on this device",
                    model.ctx.adapter(),
                    c.reference
                )));
            }
            c.cpu_checked = true;
        }
        Ok(c)
    }

    /// One forward+backward of `plan` on the data, read back: the output,
    /// h_n, dL/dx, dL/dh0 and each layer's parameter gradients (both
    /// directions stacked).
    fn results(&self, plan: Plan) -> Result<Vec<(String, Vec<f32>)>> {
        let m = self.model;
        let x = OnDevice {
            buffer: self.x.buffer(),
            seq_len: self.seq,
            batch: self.batch,
        };
        let (f, _) = m.forward_with_plan(x, &ForwardOptions::default().keep_tape(), plan, false)?;
        let tape = f.tape.expect("kept");
        let b = m.backward_device(tape, self.g.buffer(), None)?;
        let mut out = vec![
            (
                "output".to_string(),
                m.read_stored(f.output.buffer(), f.output.len())?,
            ),
            (
                "h_n".to_string(),
                m.read_stored(f.h_n.buffer(), f.h_n.len())?,
            ),
            (
                "grad.x".to_string(),
                m.ctx
                    .dev()
                    .read_back(b.grad_x.buffer(), 0, b.grad_x.len())?,
            ),
            (
                "grad.h0".to_string(),
                m.ctx
                    .dev()
                    .read_back(b.grad_h0.buffer(), 0, b.grad_h0.len())?,
            ),
        ];
        for (l, lg) in b.grads.iter().enumerate() {
            for (kind, t) in ["w_ih", "w_hh", "b_ih", "b_hh"].iter().zip(lg.tensors()) {
                out.push((
                    format!("grad of layer {l}'s {kind}"),
                    m.ctx.dev().read_back(t.buffer(), 0, t.len())?,
                ));
            }
        }
        Ok(out)
    }

    /// The f64 CPU reference on the same data, in the order and layout of
    /// [`results`](Self::results).
    fn cpu_results(&self, xs: &[f32], gs: &[f32]) -> Result<Vec<(String, Vec<f32>)>> {
        use crate::config::ParamKind;
        let m = self.model;
        let cfg = &m.config;
        let shape = |s: [usize; 3], v: &[f32]| {
            ndarray::Array3::from_shape_vec(s, v.iter().map(|&a| a as f64).collect())
                .expect("the data's shape")
        };
        let x = shape(cfg.input_shape(self.seq, self.batch), xs);
        let g = shape(cfg.output_shape(self.seq, self.batch), gs);
        let mut gru = crate::cpu::Gru::new(m.params()?.cast::<f64>());
        let (o, hn) = gru.forward(x.view(), None)?;
        let grads = gru.backward(g.view(), None)?;
        let v = |a: &ndarray::Array3<f64>| a.iter().map(|&e| e as f32).collect::<Vec<f32>>();
        let mut out = vec![
            ("output".to_string(), v(&o)),
            ("h_n".to_string(), v(&hn)),
            ("grad.x".to_string(), v(&grads.x)),
            ("grad.h0".to_string(), v(&grads.h0)),
        ];
        for l in 0..cfg.num_layers {
            for (kind, name) in ParamKind::ALL.iter().zip(["w_ih", "w_hh", "b_ih", "b_hh"]) {
                if !cfg.bias && kind.is_bias() {
                    continue;
                }
                let mut t = Vec::new();
                for d in 0..cfg.num_directions() {
                    let p = grads
                        .params
                        .get(&cfg.param_name_of(*kind, l, d))
                        .expect("every parameter has a gradient");
                    t.extend(p.iter().map(|&e| e as f32));
                }
                out.push((format!("grad of layer {l}'s {name}"), t));
            }
        }
        Ok(out)
    }

    /// How `got` disagrees with the reference plan's results, where it does:
    /// the first tensor whose relative error passes the bound (or that has
    /// a NaN where the reference has none).
    fn compare(&self, got: &[(String, Vec<f32>)]) -> Option<String> {
        if got.len() != self.expected.len() {
            return Some(format!(
                "{} tensors, the reference has {}",
                got.len(),
                self.expected.len()
            ));
        }
        for ((name, a), (_, e)) in got.iter().zip(&self.expected) {
            let reference: Vec<f64> = e.iter().map(|&v| v as f64).collect();
            let rel = crate::real::rel_error(a.iter().map(|&v| v as f64), &reference);
            if rel.is_nan() || rel > self.bound {
                return Some(format!(
                    "{name}: relative error {rel:.3e} > {:.0e}",
                    self.bound
                ));
            }
        }
        None
    }

    /// How `plan`'s results disagree with the reference plan's at the
    /// check's shape, where they do (`Ok(None)`: they agree).
    pub(crate) fn disagreement(&self, plan: Plan) -> Result<Option<String>> {
        if plan == self.reference {
            return Ok(None);
        }
        let got = self.results(plan)?;
        Ok(self.compare(&got).map(|why| {
            format!(
                "wrong results: they disagree with the reference plan {} at T={}, B={}: {why}",
                self.reference, self.seq, self.batch
            )
        }))
    }
}
