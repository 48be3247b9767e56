//! Optimisers with PyTorch's exact update rules, on the CPU: the reference
//! that the GPU optimisers of [`crate::gpu::optim`] are checked against.

use crate::real::Real;

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
pub fn sgd_step<F: Real>(o: &Sgd, p: &mut [F], g: &[F], buf: &mut [F], first: bool) {
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
}

/// One Adam (or AdamW) step on one tensor at step `t` (from 1), with the
/// moment estimates `m` and `v`.
pub fn adam_step<F: Real>(o: &Adam, t: u64, p: &mut [F], g: &[F], m: &mut [F], v: &mut [F]) {
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
}

/// `torch.nn.utils.clip_grad_norm_`: scales every gradient by
/// `min(max_norm / (total + 1e-6), 1)`, where `total` is the norm of the
/// tensors' norms. Returns `total`.
pub fn clip_grad_norm<F: Real>(grads: &mut [&mut [F]], max_norm: f32) -> F {
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
    total
}
