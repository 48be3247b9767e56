//! The whole `nn.GRU` on the CPU: layers, directions, layouts, optional `h0`,
//! forward and backpropagation through time.
//!
//! Layer `l`, direction `d` runs the cell of [`super::cell`] over the sequence,
//! forwards in time for `d = 0`, backwards for `d = 1` (and for the only
//! direction of a reverse GRU, [`Direction::Reverse`](crate::Direction):
//! `GruConfig::runs_reversed`). Its input is `x` for
//! the first layer, and the concatenated outputs of both directions of layer
//! `l - 1` above it (after dropout in training mode). `output` is the last
//! layer's hidden states, `h_n[l*D + d]` the final state of each layer-direction.
//!
//! [`SeqOptions`] adds, per call:
//! - `lengths`: PyTorch's packed sequences. Batch element `b` has
//!   `lengths[b]` valid steps (any order); the forward direction runs steps
//!   `0..len`, the reverse direction `len-1` down to `0`; `output` is zero past
//!   the length and `h_n` is the state after the last valid step. Padding
//!   steps are not computed: each step runs the cell on the rows still valid.
//! - `resets`: episode boundaries, `(T, B)` (`(B, T)` where `batch_first`).
//!   `resets[t, b]` starts a new sequence at step `t` of column `b`: the
//!   forward direction's state before step `t` is zero; the reverse
//!   direction's state before step `t - 1` (the segment ending there) is zero.
//!   The first segment's forward pass and the last segment's reverse pass
//!   start from `h0`. Every layer resets at the same points.

use ndarray::{s, Array2, Array3, ArrayView3, Axis};

use super::cell::{step_backward_form, step_forward_form, StepTape};
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

/// Per-call options of the forward beyond `x` and `h0`: variable lengths and
/// episode resets (see the module documentation). The default is neither:
/// every column runs all `T` steps as one sequence.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeqOptions {
    /// The valid length of each batch element, each in `1..=T` (PyTorch's
    /// `pack_padded_sequence` with `enforce_sorted=False`).
    pub lengths: Option<Vec<usize>>,
    /// `true` where a new sequence starts: `(T, B)`, or `(B, T)` where
    /// `batch_first` (the layout of `x`).
    pub resets: Option<Array2<bool>>,
}

impl SeqOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Per-sequence valid lengths.
    pub fn lengths(mut self, lengths: Option<Vec<usize>>) -> Self {
        self.lengths = lengths;
        self
    }

    /// Episode resets, in the layout of `x`.
    pub fn resets(mut self, resets: Option<Array2<bool>>) -> Self {
        self.resets = resets;
        self
    }

    /// Checks the options against a call of `t` steps and `b` columns and
    /// returns them sequence-first: every length (all `T` when none) and the
    /// resets as `(T, B)`.
    pub(crate) fn resolve(
        &self,
        cfg: &GruConfig,
        t: usize,
        b: usize,
    ) -> Result<(Vec<usize>, Option<Array2<bool>>)> {
        let lengths = match &self.lengths {
            None => vec![t; b],
            Some(l) => {
                if l.len() != b {
                    return Err(GruError::LengthMismatch {
                        name: "lengths".into(),
                        expected: b as u64,
                        unit: "values (one per batch element)",
                        actual: l.len() as u64,
                    });
                }
                if let Some((i, v)) = l.iter().enumerate().find(|(_, &v)| v == 0 || v > t) {
                    return Err(GruError::InvalidConfig(format!(
                        "lengths[{i}] is {v}; every length must be in 1..={t} (T)"
                    )));
                }
                l.clone()
            }
        };
        let resets = match &self.resets {
            None => None,
            Some(r) => {
                let (want, dims) = if cfg.batch_first {
                    ([b, t], ["B", "T"])
                } else {
                    ([t, b], ["T", "B"])
                };
                crate::error::check_shape("resets", &want, r.shape(), &dims)?;
                Some(if cfg.batch_first {
                    r.t().to_owned()
                } else {
                    r.clone()
                })
            }
        };
        Ok((lengths, resets))
    }
}

/// One step of one layer-direction on the tape: the batch rows it ran
/// (those whose length reaches the step), the rows among them whose state
/// was reset to zero before it (positions in `rows`), and the cell's tape.
#[derive(Debug)]
struct RowStep<F> {
    rows: Vec<usize>,
    cut: Vec<usize>,
    tape: StepTape<F>,
}

/// What the forward keeps for the backward.
#[derive(Debug)]
struct SeqTape<F> {
    t: usize,
    b: usize,
    /// Step tapes per layer-direction (`l * D + d`), in processing order;
    /// `None` for a step no row ran.
    steps: Vec<Vec<Option<RowStep<F>>>>,
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
        self.forward_impl(x, h0, None, &SeqOptions::default())
    }

    /// Evaluation-mode forward with variable lengths and/or episode resets
    /// (see [`SeqOptions`]); [`backward`](Self::backward) follows it as usual.
    pub fn forward_with(
        &mut self,
        x: ArrayView3<F>,
        h0: Option<ArrayView3<F>>,
        opts: &SeqOptions,
    ) -> Result<(Array3<F>, Array3<F>)> {
        self.forward_impl(x, h0, None, opts)
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
        self.forward_impl(
            x,
            h0,
            (p > 0.0).then_some((seed, p)),
            &SeqOptions::default(),
        )
    }

    /// [`forward_train`](Self::forward_train) with variable lengths and/or
    /// episode resets.
    pub fn forward_train_with(
        &mut self,
        x: ArrayView3<F>,
        h0: Option<ArrayView3<F>>,
        seed: u32,
        opts: &SeqOptions,
    ) -> Result<(Array3<F>, Array3<F>)> {
        let p = self.config().dropout;
        self.forward_impl(x, h0, (p > 0.0).then_some((seed, p)), opts)
    }

    fn forward_impl(
        &mut self,
        x: ArrayView3<F>,
        h0: Option<ArrayView3<F>>,
        dropout: Option<(u32, f32)>,
        opts: &SeqOptions,
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
        let (lengths, resets) = opts.resolve(&cfg, t_len, b)?;
        let form = cfg.reset_form;
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
                let rev = cfg.runs_reversed(d);
                for s in 0..t_len {
                    let t = if rev { t_len - 1 - s } else { s };
                    // The rows whose sequence reaches step t; padding is not computed.
                    let rows: Vec<usize> = (0..b).filter(|&i| t < lengths[i]).collect();
                    if rows.is_empty() {
                        tapes.push(None);
                        continue;
                    }
                    // The rows whose state restarts from zero before this step.
                    let cut: Vec<usize> = match &resets {
                        None => Vec::new(),
                        Some(r) => (0..rows.len())
                            .filter(|&j| {
                                let i = rows[j];
                                if rev {
                                    t + 1 < lengths[i] && r[[t + 1, i]]
                                } else {
                                    r[[t, i]]
                                }
                            })
                            .collect(),
                    };
                    let xs = input.index_axis(Axis(0), t).select(Axis(0), &rows);
                    let mut hp = h.select(Axis(0), &rows);
                    for &j in &cut {
                        hp.row_mut(j).fill(F::zero());
                    }
                    let (h_next, tape) = step_forward_form(form, p, xs.view(), hp.view());
                    for (j, &i) in rows.iter().enumerate() {
                        h.row_mut(i).assign(&h_next.row(j));
                        out.slice_mut(s![t, i, d * hs..(d + 1) * hs])
                            .assign(&h_next.row(j));
                    }
                    tapes.push(Some(RowStep { rows, cut, tape }));
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
        let form = cfg.reset_form;
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
                let rev = cfg.runs_reversed(d);
                for s in (0..t_len).rev() {
                    let t = if rev { t_len - 1 - s } else { s };
                    let Some(step) = &tape.steps[k][s] else {
                        continue;
                    };
                    // h_t feeds the output at t and the next step: add the
                    // output's gradient (rows past their length have none:
                    // their output is the constant zero).
                    let mut dh_rows = dh.select(Axis(0), &step.rows);
                    for (j, &i) in step.rows.iter().enumerate() {
                        let mut row = dh_rows.row_mut(j);
                        row += &d_out.slice(s![t, i, d * hs..(d + 1) * hs]);
                    }
                    let (dx, mut dh_prev) =
                        step_backward_form(form, p, &step.tape, dh_rows.view(), g);
                    // A reset cut the path to the previous state.
                    for &j in &step.cut {
                        dh_prev.row_mut(j).fill(F::zero());
                    }
                    for (j, &i) in step.rows.iter().enumerate() {
                        dh.row_mut(i).assign(&dh_prev.row(j));
                        // The layer input at t feeds both directions: the gradients add.
                        let mut row = d_in.slice_mut(s![t, i, ..]);
                        row += &dx.row(j);
                    }
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
