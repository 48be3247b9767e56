//! Optimisers with PyTorch's exact update rules, on the CPU: the reference
//! that the GPU optimisers of [`crate::gpu::optim`] are checked against.

use crate::error::{GruError, Result};
use crate::real::Real;

/// A hyper-parameter that must be finite and at least `min` (and below `max` where given).
fn check_value(what: &str, v: f32, min: f32, max: Option<f32>) -> Result<()> {
    let ok = v.is_finite() && v >= min && max.is_none_or(|m| v < m);
    if ok {
        return Ok(());
    }
    Err(GruError::InvalidConfig(match max {
        Some(m) => format!("{what} is {v}; it must be a finite number in [{min}, {m})"),
        None => format!("{what} is {v}; it must be a finite number of at least {min}"),
    }))
}

/// Checks that the parameter, gradient and state slices of one tensor have one length.
fn check_lengths(p: usize, others: &[(&str, usize)]) -> Result<()> {
    for &(name, n) in others {
        if n != p {
            return Err(GruError::LengthMismatch {
                name: name.to_string(),
                expected: p as u64,
                actual: n as u64,
                unit: "values (the parameter's length)",
            });
        }
    }
    Ok(())
}

/// `torch.optim.SGD`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    pub lr: f32,
    pub momentum: f32,
    pub dampening: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
}

impl Sgd {
    /// Checks the hyper-parameters as `torch.optim.SGD` does: a finite,
    /// non-negative learning rate, momentum and weight decay, a dampening in
    /// [0, 1], and Nesterov only with momentum and no dampening.
    pub fn check(&self) -> Result<()> {
        check_value("the learning rate", self.lr, 0.0, None)?;
        check_value("the momentum", self.momentum, 0.0, None)?;
        check_value("the weight decay", self.weight_decay, 0.0, None)?;
        check_value(
            "the dampening",
            self.dampening,
            0.0,
            Some(1.0 + f32::EPSILON),
        )?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(GruError::InvalidConfig(
                "Nesterov momentum requires a momentum above 0 and zero dampening".into(),
            ));
        }
        Ok(())
    }

    /// Plain SGD at learning rate `lr`.
    pub fn new(lr: f32) -> Self {
        Sgd {
            lr,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

/// `torch.optim.Adam`, or `torch.optim.AdamW` with `decoupled`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// AdamW: the weight decay multiplies the parameter, instead of adding to the gradient.
    pub decoupled: bool,
}

impl Adam {
    /// Checks the hyper-parameters as `torch.optim.Adam` does: a finite,
    /// non-negative learning rate, epsilon and weight decay, and betas in [0, 1).
    pub fn check(&self) -> Result<()> {
        check_value("the learning rate", self.lr, 0.0, None)?;
        check_value("beta1", self.beta1, 0.0, Some(1.0))?;
        check_value("beta2", self.beta2, 0.0, Some(1.0))?;
        check_value("epsilon", self.eps, 0.0, None)?;
        check_value("the weight decay", self.weight_decay, 0.0, None)?;
        Ok(())
    }

    /// Adam with PyTorch's defaults: betas (0.9, 0.999), eps 1e-8, no weight decay.
    pub fn new(lr: f32) -> Self {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }

    /// AdamW with PyTorch's defaults (weight decay 0.01).
    pub fn adamw(lr: f32) -> Self {
        Adam {
            weight_decay: 0.01,
            decoupled: true,
            ..Adam::new(lr)
        }
    }

    /// `(lr / (1 - beta1^t), sqrt(1 - beta2^t))` for step `t` (from 1), in f64 as PyTorch computes them.
    pub fn corrections(&self, t: u64) -> (f64, f64) {
        let t = t as i32;
        let bc1 = 1.0 - (self.beta1 as f64).powi(t);
        let bc2 = 1.0 - (self.beta2 as f64).powi(t);
        (self.lr as f64 / bc1, bc2.sqrt())
    }
}

/// One SGD step on one tensor. `buf` is the momentum buffer (used where
/// momentum is not zero); `first` says whether this is the first step.
/// `p`, `g` and `buf` must have one length.
pub fn sgd_step<F: Real>(o: &Sgd, p: &mut [F], g: &[F], buf: &mut [F], first: bool) -> Result<()> {
    o.check()?;
    check_lengths(
        p.len(),
        &[("gradient", g.len()), ("momentum buffer", buf.len())],
    )?;
    let c = |v: f32| F::of(v as f64);
    for i in 0..p.len() {
        let mut d = g[i];
        if o.weight_decay != 0.0 {
            d += c(o.weight_decay) * p[i];
        }
        if o.momentum != 0.0 {
            buf[i] = if first {
                d
            } else {
                c(o.momentum) * buf[i] + (F::one() - c(o.dampening)) * d
            };
            d = if o.nesterov {
                d + c(o.momentum) * buf[i]
            } else {
                buf[i]
            };
        }
        p[i] -= c(o.lr) * d;
    }
    Ok(())
}

/// One Adam (or AdamW) step on one tensor at step `t` (from 1), with the
/// moment estimates `m` and `v`; `p`, `g`, `m` and `v` must have one length.
pub fn adam_step<F: Real>(
    o: &Adam,
    t: u64,
    p: &mut [F],
    g: &[F],
    m: &mut [F],
    v: &mut [F],
) -> Result<()> {
    o.check()?;
    if t == 0 {
        return Err(GruError::InvalidConfig(
            "Adam's step count starts at 1 (step 0 would divide by a bias correction of 0)".into(),
        ));
    }
    check_lengths(
        p.len(),
        &[
            ("gradient", g.len()),
            ("first moment", m.len()),
            ("second moment", v.len()),
        ],
    )?;
    let c = |v: f32| F::of(v as f64);
    let (step_size, bc2_sqrt) = o.corrections(t);
    let (step_size, bc2_sqrt) = (F::of(step_size), F::of(bc2_sqrt));
    for i in 0..p.len() {
        let mut d = g[i];
        if o.decoupled {
            p[i] *= F::one() - c(o.lr) * c(o.weight_decay);
        } else if o.weight_decay != 0.0 {
            d += c(o.weight_decay) * p[i];
        }
        m[i] += (F::one() - c(o.beta1)) * (d - m[i]);
        v[i] = c(o.beta2) * v[i] + (F::one() - c(o.beta2)) * d * d;
        p[i] -= step_size * m[i] / (v[i].sqrt() / bc2_sqrt + c(o.eps));
    }
    Ok(())
}

/// `torch.nn.utils.clip_grad_norm_`: scales every gradient by
/// `min(max_norm / (total + 1e-6), 1)`, where `total` is the norm of the
/// tensors' norms. Returns `total`.
pub fn clip_grad_norm<F: Real>(grads: &mut [&mut [F]], max_norm: f32) -> Result<F> {
    check_value("max_norm", max_norm, 0.0, None)?;
    let norms: Vec<F> = grads
        .iter()
        .map(|g| g.iter().map(|&v| v * v).sum::<F>().sqrt())
        .collect();
    let total = norms.iter().map(|&n| n * n).sum::<F>().sqrt();
    let coef = F::of(max_norm as f64) / (total + F::of(1e-6));
    let coef = if coef > F::one() { F::one() } else { coef };
    for g in grads.iter_mut() {
        for v in g.iter_mut() {
            *v *= coef;
        }
    }
    Ok(total)
}
