//! The whole `nn.GRU` on the CPU: layers, directions, layouts, optional `h0`,
//! forward and backpropagation through time.
//!
//! Layer `l`, direction `d` runs the cell of [`super::cell`] over the sequence,
//! forwards in time for `d = 0`, backwards for `d = 1`. Its input is `x` for
//! the first layer, and the concatenated outputs of both directions of layer
//! `l - 1` above it (after dropout in training mode). `output` is the last
//! layer's hidden states, `h_n[l*D + d]` the final state of each layer-direction.

use ndarray::{s, Array3, ArrayView3, Axis};

use super::cell::{step_backward, step_forward, StepTape};
use crate::config::GruConfig;
use crate::dropout;
use crate::error::{GruError, Result};
use crate::params::GruParams;
use crate::real::Real;

/// Gradients of the loss with respect to everything the forward read.
#[derive(Clone, Debug)]
pub struct GruGrads<F> {
    /// `dL/dx`, in the layout of `x`.
    pub x: Array3<F>,
    /// `dL/dh0`, `(L*D, B, H)` (also when no `h0` was given: then it is the
    /// gradient with respect to the zero initial state).
    pub h0: Array3<F>,
    /// `dL/dθ` for every parameter, under the parameters' names.
    pub params: GruParams<F>,
}

/// What the forward keeps for the backward.
#[derive(Debug)]
struct SeqTape<F> {
    t: usize,
    b: usize,
    /// Step tapes per layer-direction (`l * D + d`), in processing order.
    steps: Vec<Vec<StepTape<F>>>,
    /// Dropout applied to the output of each layer but the last: `(seed, p)`.
    dropout: Option<(u32, f32)>,
}

/// A GRU layer stack on the CPU with PyTorch's `nn.GRU` semantics.
#[derive(Debug)]
pub struct Gru<F> {
    params: GruParams<F>,
    tape: Option<SeqTape<F>>,
}

/// Host bytes a forward and backward of the CPU reference take for `t_len`
/// steps of a batch of `batch`, values of `elem` bytes: the parameters, their
/// gradients and one more copy; the input, output and their gradients twice
/// over; and the tape, per layer-direction and step the input, the previous
/// state and the four gates of every batch row (`I_l + 5H` values, counted as
/// `I_l + 6H` with the step's new state). Saturates instead of overflowing.
pub fn run_bytes(config: &GruConfig, t_len: usize, batch: usize, elem: usize) -> u64 {
    let tb = (t_len as u64).saturating_mul(batch as u64);
    let (d, h) = (config.num_directions() as u64, config.hidden_size as u64);
    let params = config.param_count().map_or(u64::MAX, |c| c as u64);
    let io = (config.input_size as u64).saturating_add(d.saturating_mul(h));
    let mut values = params
        .saturating_mul(3)
        .saturating_add(tb.saturating_mul(io).saturating_mul(2));
    for l in 0..config.num_layers {
        let per_row = (config.layer_input_size(l) as u64).saturating_add(h.saturating_mul(6));
        values = values.saturating_add(tb.saturating_mul(d).saturating_mul(per_row));
    }
    values.saturating_mul(elem as u64)
}

impl<F: Real> Gru<F> {
    pub fn new(params: GruParams<F>) -> Self {
        Gru { params, tape: None }
    }

    pub fn config(&self) -> &GruConfig {
        self.params.config()
    }

    pub fn params(&self) -> &GruParams<F> {
        &self.params
    }

    pub fn params_mut(&mut self) -> &mut GruParams<F> {
        &mut self.params
    }

    /// Evaluation-mode forward: `x` is `(T, B, I)` (or `(B, T, I)` where
    /// `batch_first`), `h0` is `(L*D, B, H)` or zeros when `None`. Returns
    /// `(output, h_n)` with PyTorch's shapes and keeps a tape for `backward`.
    pub fn forward(
        &mut self,
        x: ArrayView3<F>,
        h0: Option<ArrayView3<F>>,
    ) -> Result<(Array3<F>, Array3<F>)> {
        self.forward_impl(x, h0, None)
    }

    /// Training-mode forward: as [`forward`](Self::forward), with dropout of
    /// probability `config.dropout` on the outputs of every layer but the
    /// last, the mask drawn from `seed` (see [`crate::dropout`]).
    pub fn forward_train(
        &mut self,
        x: ArrayView3<F>,
        h0: Option<ArrayView3<F>>,
        seed: u32,
    ) -> Result<(Array3<F>, Array3<F>)> {
        let p = self.config().dropout;
        self.forward_impl(x, h0, (p > 0.0).then_some((seed, p)))
    }

    fn forward_impl(
        &mut self,
        x: ArrayView3<F>,
        h0: Option<ArrayView3<F>>,
        dropout: Option<(u32, f32)>,
    ) -> Result<(Array3<F>, Array3<F>)> {
        self.params.check()?;
        let cfg = self.params.config().clone();
        let (t_len, b) = cfg.check_input("x", x.shape())?;
        crate::memory::check_host(
            &format!("the CPU reference's forward and backward of T={t_len}, B={b}"),
            run_bytes(&cfg, t_len, b, std::mem::size_of::<F>()),
        )?;
        if let Some(h0) = &h0 {
            cfg.check_state("h0", h0.shape(), b)?;
        }
        let (nd, hs) = (cfg.num_directions(), cfg.hidden_size);
        // Work sequence-first: (T, B, C).
        let mut input = if cfg.batch_first {
            x.permuted_axes([1, 0, 2]).to_owned()
        } else {
            x.to_owned()
        };
        let mut h_n = Array3::<F>::zeros((cfg.num_layers * nd, b, hs));
        let mut steps = Vec::with_capacity(cfg.num_layers * nd);
        for l in 0..cfg.num_layers {
            let mut out = Array3::<F>::zeros((t_len, b, nd * hs));
            for d in 0..nd {
                let p = self.params.dir(l, d)?;
                let k = l * nd + d;
                let mut h = match &h0 {
                    Some(h0) => h0.index_axis(Axis(0), k).to_owned(),
                    None => ndarray::Array2::zeros((b, hs)),
                };
                let mut tapes = Vec::with_capacity(t_len);
                for s in 0..t_len {
                    let t = if d == 0 { s } else { t_len - 1 - s };
                    let (h_next, tape) = step_forward(p, input.index_axis(Axis(0), t), h.view());
                    out.slice_mut(s![t, .., d * hs..(d + 1) * hs])
                        .assign(&h_next);
                    tapes.push(tape);
                    h = h_next;
                }
                h_n.index_axis_mut(Axis(0), k).assign(&h);
                steps.push(tapes);
            }
            if let (Some((seed, p)), true) = (dropout, l + 1 < cfg.num_layers) {
                apply_dropout(&mut out, seed, l as u32, p);
            }
            input = out;
        }
        let output = if cfg.batch_first {
            input
                .permuted_axes([1, 0, 2])
                .as_standard_layout()
                .to_owned()
        } else {
            input
        };
        self.tape = Some(SeqTape {
            t: t_len,
            b,
            steps,
            dropout,
        });
        Ok((output, h_n))
    }

    /// Backpropagation through time for the last forward: `grad_output` has
    /// the shape of `output`, `grad_h_n` that of `h_n` (zeros when `None`).
    /// Consumes the tape.
    pub fn backward(
        &mut self,
        grad_output: ArrayView3<F>,
        grad_h_n: Option<ArrayView3<F>>,
    ) -> Result<GruGrads<F>> {
        self.params.check()?;
        let cfg = self.params.config().clone();
        let (t_len, b) = match &self.tape {
            Some(tape) => (tape.t, tape.b),
            None => {
                return Err(GruError::Tape(
                    "backward called without a forward before it".into(),
                ))
            }
        };
        cfg.check_output_like("grad_output", grad_output.shape(), t_len, b)?;
        if let Some(g) = &grad_h_n {
            cfg.check_state("grad_h_n", g.shape(), b)?;
        }
        let tape = self.tape.take().expect("checked above");
        let (nd, hs) = (cfg.num_directions(), cfg.hidden_size);
        let mut grads = GruParams::<F>::zeros(&cfg)?;
        let mut grad_h0 = Array3::<F>::zeros((cfg.num_layers * nd, b, hs));
        // dL/d(output of the current layer), sequence-first.
        let mut d_out = if cfg.batch_first {
            grad_output.permuted_axes([1, 0, 2]).to_owned()
        } else {
            grad_output.to_owned()
        };
        for l in (0..cfg.num_layers).rev() {
            let in_size = cfg.layer_input_size(l);
            let mut d_in = Array3::<F>::zeros((t_len, b, in_size));
            for d in 0..nd {
                let k = l * nd + d;
                let p = self.params.dir(l, d)?;
                let g = grads.dir_mut(l, d)?;
                // dL/dh_T of this layer-direction comes from h_n.
                let mut dh = match &grad_h_n {
                    Some(gh) => gh.index_axis(Axis(0), k).to_owned(),
                    None => ndarray::Array2::zeros((b, hs)),
                };
                for s in (0..t_len).rev() {
                    let t = if d == 0 { s } else { t_len - 1 - s };
                    // h_t feeds the output at t and the next step: add the output's gradient.
                    dh += &d_out.slice(s![t, .., d * hs..(d + 1) * hs]);
                    let (dx, dh_prev) = step_backward(p, &tape.steps[k][s], dh.view(), g);
                    // The layer input at t feeds both directions: the gradients add.
                    let mut row = d_in.index_axis_mut(Axis(0), t);
                    row += &dx;
                    dh = dh_prev;
                }
                grad_h0.index_axis_mut(Axis(0), k).assign(&dh);
            }
            // Dropout sat between layer l-1's output and this layer's input.
            if let (Some((seed, p)), true) = (tape.dropout, l > 0) {
                apply_dropout(&mut d_in, seed, (l - 1) as u32, p);
            }
            d_out = d_in;
        }
        let gx = if cfg.batch_first {
            d_out
                .permuted_axes([1, 0, 2])
                .as_standard_layout()
                .to_owned()
        } else {
            d_out
        };
        Ok(GruGrads {
            x: gx,
            h0: grad_h0,
            params: grads,
        })
    }
}

/// Multiplies `a` (sequence-first, standard layout) by the dropout mask of
/// `layer` scaled by `1 / (1 - p)`: the forward of dropout, and also its
/// backward (the mask is the same, the scale is the same).
fn apply_dropout<F: Real>(a: &mut Array3<F>, seed: u32, layer: u32, p: f32) {
    let th = dropout::threshold(p);
    let scale = F::of(1.0 / (1.0 - p as f64));
    for (i, v) in a.iter_mut().enumerate() {
        // x * 0 for a dropped element, so that a NaN stays NaN, as in PyTorch.
        let m = if dropout::keep(seed, layer, i as u32, th) {
            scale
        } else {
            F::zero()
        };
        *v *= m;
    }
}
