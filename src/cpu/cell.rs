//! One GRU step, forward and backward, and the cell that keeps a tape of steps.
//!
//! Forward, for a batch `x: (B, I)`, `h: (B, H)` (PyTorch's equations):
//!
//! ```text
//! gi = x W_ih^T + b_ih            (B, 3H), columns r | z | n
//! gh = h W_hh^T + b_hh            (B, 3H)
//! r  = sigmoid(gi_r + gh_r)
//! z  = sigmoid(gi_z + gh_z)
//! n  = tanh(gi_n + r * gh_n)
//! h' = (1 - z) * n + z * h
//! ```
//!
//! The tape of a step keeps `x`, `h`, `r`, `z`, `n` and `gh_n = W_hn h + b_hn`:
//! everything backward needs, nothing recomputed.
//!
//! The reset-before form ([`ResetForm::Before`]) changes only the candidate:
//!
//! ```text
//! gh_n = (r * h) W_hn^T + b_hn
//! n    = tanh(gi_n + gh_n)
//! ```

use ndarray::{concatenate, s, Array2, ArrayView2, Axis};

use crate::config::ResetForm;
use crate::error::{check_shape, GruError, Result};
use crate::params::DirParams;
use crate::real::{sigmoid, Real};

/// What one forward step saves for its backward step.
#[derive(Clone, Debug)]
pub struct StepTape<F> {
    /// The step's input, `(B, I)`.
    pub x: Array2<F>,
    /// The hidden state before the step, `(B, H)`.
    pub h_prev: Array2<F>,
    /// Reset gate, `(B, H)`.
    pub r: Array2<F>,
    /// Update gate, `(B, H)`.
    pub z: Array2<F>,
    /// Candidate state, `(B, H)`.
    pub n: Array2<F>,
    /// `W_hn h + b_hn`, `(B, H)`: the part of the candidate that the reset
    /// gate scales (reset-before form: `W_hn (r * h) + b_hn`).
    pub ghn: Array2<F>,
}

/// One forward step of PyTorch's (reset-after) form. Shapes must already be
/// checked: `x: (B, I)`, `h: (B, H)`.
pub fn step_forward<F: Real>(
    p: &DirParams<F>,
    x: ArrayView2<F>,
    h: ArrayView2<F>,
) -> (Array2<F>, StepTape<F>) {
    step_forward_form(ResetForm::After, p, x, h)
}

/// One forward step in the given form of the candidate.
pub fn step_forward_form<F: Real>(
    form: ResetForm,
    p: &DirParams<F>,
    x: ArrayView2<F>,
    h: ArrayView2<F>,
) -> (Array2<F>, StepTape<F>) {
    let hs = p.weight_hh.ncols();
    let mut gi = x.dot(&p.weight_ih.t());
    if let Some(b) = &p.bias_ih {
        gi += b;
    }
    let mut gh = h.dot(&p.weight_hh.t());
    if let Some(b) = &p.bias_hh {
        gh += b;
    }
    let part = |a: &Array2<F>, k: usize| a.slice(s![.., k * hs..(k + 1) * hs]).to_owned();
    let r = (part(&gi, 0) + part(&gh, 0)).mapv(sigmoid);
    let z = (part(&gi, 1) + part(&gh, 1)).mapv(sigmoid);
    let (ghn, n) = match form {
        ResetForm::After => {
            // n = tanh(gi_n + r * (W_hn h + b_hn))
            let ghn = part(&gh, 2);
            let n = (part(&gi, 2) + &r * &ghn).mapv(|v| v.tanh());
            (ghn, n)
        }
        ResetForm::Before => {
            // n = tanh(gi_n + (r * h) W_hn^T + b_hn); the gh_n column block above is unused.
            let rh = &r * &h;
            let mut ghn = rh.dot(&p.weight_hh.slice(s![2 * hs..3 * hs, ..]).t());
            if let Some(b) = &p.bias_hh {
                ghn += &b.slice(s![2 * hs..3 * hs]);
            }
            let n = (part(&gi, 2) + &ghn).mapv(|v| v.tanh());
            (ghn, n)
        }
    };
    let one = F::one();
    let h_next = z.mapv(|z| one - z) * &n + &z * &h;
    let tape = StepTape {
        x: x.to_owned(),
        h_prev: h.to_owned(),
        r,
        z,
        n,
        ghn,
    };
    (h_next, tape)
}

/// One backward step of PyTorch's (reset-after) form: from `dh = dL/dh'`
/// and the step's tape, returns `(dx, dh_prev)` and adds the step's
/// parameter gradients into `grads`.
pub fn step_backward<F: Real>(
    p: &DirParams<F>,
    tape: &StepTape<F>,
    dh: ArrayView2<F>,
    grads: &mut DirParams<F>,
) -> (Array2<F>, Array2<F>) {
    step_backward_form(ResetForm::After, p, tape, dh, grads)
}

/// One backward step in the given form of the candidate (the form of the
/// forward step that made `tape`).
pub fn step_backward_form<F: Real>(
    form: ResetForm,
    p: &DirParams<F>,
    tape: &StepTape<F>,
    dh: ArrayView2<F>,
    grads: &mut DirParams<F>,
) -> (Array2<F>, Array2<F>) {
    let one = F::one();
    let hs = p.weight_hh.ncols();
    let StepTape {
        x,
        h_prev,
        r,
        z,
        n,
        ghn,
    } = tape;
    // h' = (1 - z) n + z h: the three paths out of h'.
    // dL/dn through h' = (1 - z) n
    let dn = &dh * &z.mapv(|z| one - z);
    // dL/dz through h' = ... - z n + z h
    let dz = &dh * &(h_prev - n);
    // dL/dh_prev, direct path through z h
    let mut dh_prev = &dh * z;
    // n = tanh(a_n): dL/da_n = dn (1 - n^2)
    let da_n = dn * n.mapv(|n| one - n * n);
    // z = sigmoid(a_z): dL/da_z = dz z (1 - z)
    let da_z = dz * z.mapv(|z| z * (one - z));
    // gh = h W_hh^T + b_hh: its r and z blocks are the same in both forms.
    let (da_r, dgh_n) = match form {
        ResetForm::After => {
            // a_n = gi_n + r gh_n: dL/dr = da_n gh_n
            let dr = &da_n * ghn;
            // r = sigmoid(a_r): dL/da_r = dr r (1 - r)
            let da_r = dr * r.mapv(|r| r * (one - r));
            // a_n = gi_n + r gh_n: dL/dgh_n = da_n r
            let dgh_n = &da_n * r;
            (da_r, dgh_n)
        }
        ResetForm::Before => {
            // a_n = gi_n + (r h) W_hn^T + b_hn:
            //   dW_hn += da_n^T (r h), db_hn += sum over the batch of da_n
            let rh = r * h_prev;
            let mut gw = grads.weight_hh.slice_mut(s![2 * hs..3 * hs, ..]);
            gw += &da_n.t().dot(&rh);
            if let Some(b) = grads.bias_hh.as_mut() {
                let mut gb = b.slice_mut(s![2 * hs..3 * hs]);
                gb += &da_n.sum_axis(Axis(0));
            }
            //   dL/d(r h) = da_n W_hn
            let drh = da_n.dot(&p.weight_hh.slice(s![2 * hs..3 * hs, ..]));
            //   dL/dr = dL/d(r h) h_prev; dL/dh_prev += dL/d(r h) r
            let dr = &drh * h_prev;
            dh_prev += &(&drh * r);
            // r = sigmoid(a_r): dL/da_r = dr r (1 - r)
            let da_r = dr * r.mapv(|r| r * (one - r));
            // The n block of gh (h W_hn^T) is not part of this form: no gradient.
            (da_r, Array2::zeros(da_n.raw_dim()))
        }
    };
    // Pre-activation gradients of the input part (B, 3H) and of the hidden part.
    let dgi = concatenate![Axis(1), da_r, da_z, da_n];
    let dgh = concatenate![Axis(1), da_r, da_z, dgh_n];
    // gi = x W_ih^T + b_ih: dW_ih += dgi^T x, db_ih += sum over the batch of dgi
    grads.weight_ih += &dgi.t().dot(x);
    if let Some(b) = grads.bias_ih.as_mut() {
        *b += &dgi.sum_axis(Axis(0));
    }
    // gh = h W_hh^T + b_hh: dW_hh += dgh^T h_prev, db_hh += sum over the batch of dgh
    // (reset-before: the n block of dgh is zero, its terms were added above)
    grads.weight_hh += &dgh.t().dot(h_prev);
    if let Some(b) = grads.bias_hh.as_mut() {
        *b += &dgh.sum_axis(Axis(0));
    }
    // dL/dx = dgi W_ih
    let dx = dgi.dot(&p.weight_ih);
    // dL/dh_prev += the recurrent path dgh W_hh
    dh_prev += &dgh.dot(&p.weight_hh);
    (dx, dh_prev)
}

/// A GRU cell with a tape, as in the NumPy original: `forward` pushes a step,
/// `backward` pops the newest one and accumulates the parameter gradients.
///
/// Calling `forward` T times, then `backward` T times, each time feeding the
/// returned `dh_prev` (plus any gradient from outside) into the next call, is
/// backpropagation through time. Parameter names are `nn.GRUCell`'s:
/// `weight_ih (3H, I)`, `weight_hh (3H, H)`, `bias_ih (3H)`, `bias_hh (3H)`.
#[derive(Clone, Debug)]
pub struct GruCell<F> {
    params: DirParams<F>,
    grads: DirParams<F>,
    tape: Vec<StepTape<F>>,
}

impl<F: Real> GruCell<F> {
    /// A cell with PyTorch's default initialisation `U(-1/sqrt(H), 1/sqrt(H))` from `seed`.
    pub fn new(input_size: usize, hidden_size: usize, bias: bool, seed: u64) -> Result<Self> {
        let config = crate::GruConfig::new(input_size, hidden_size).bias(bias);
        let p = crate::GruParams::<F>::init(&config, seed)?;
        Self::from_params(p.dir(0, 0)?.clone())
    }

    /// A cell with the given parameters, checked for consistent shapes.
    pub fn from_params(params: DirParams<F>) -> Result<Self> {
        let h3 = params.weight_hh.nrows();
        let h = params.weight_hh.ncols();
        let i = params.weight_ih.ncols();
        if h == 0 || i == 0 {
            return Err(GruError::InvalidConfig(format!(
                "cell with input size {i} and hidden size {h}; both must be at least 1"
            )));
        }
        check_shape("weight_hh", &[3 * h, h], &[h3, h], &["3H", "H"])?;
        check_shape(
            "weight_ih",
            &[3 * h, i],
            params.weight_ih.shape(),
            &["3H", "I"],
        )?;
        match (&params.bias_ih, &params.bias_hh) {
            (Some(a), Some(b)) => {
                check_shape("bias_ih", &[3 * h], a.shape(), &["3H"])?;
                check_shape("bias_hh", &[3 * h], b.shape(), &["3H"])?;
            }
            (None, None) => {}
            _ => {
                return Err(GruError::InvalidConfig(
                    "a cell has both biases or neither".to_string(),
                ))
            }
        }
        let grads = DirParams {
            weight_ih: Array2::zeros(params.weight_ih.raw_dim()),
            weight_hh: Array2::zeros(params.weight_hh.raw_dim()),
            bias_ih: params
                .bias_ih
                .as_ref()
                .map(|b| ndarray::Array1::zeros(b.len())),
            bias_hh: params
                .bias_hh
                .as_ref()
                .map(|b| ndarray::Array1::zeros(b.len())),
        };
        Ok(GruCell {
            params,
            grads,
            tape: Vec::new(),
        })
    }

    pub fn input_size(&self) -> usize {
        self.params.weight_ih.ncols()
    }

    pub fn hidden_size(&self) -> usize {
        self.params.weight_hh.ncols()
    }

    pub fn params(&self) -> &DirParams<F> {
        &self.params
    }

    /// The accumulated parameter gradients.
    pub fn grads(&self) -> &DirParams<F> {
        &self.grads
    }

    /// Sets the accumulated gradients to zero.
    pub fn zero_grad(&mut self) {
        self.grads = GruCell::from_params(self.params.clone())
            .expect("parameters were checked")
            .grads;
    }

    /// Steps on the tape, waiting for their backward.
    pub fn tape_len(&self) -> usize {
        self.tape.len()
    }

    /// Forgets every step on the tape.
    pub fn clear_tape(&mut self) {
        self.tape.clear();
    }

    /// One step: `x: (B, I)`, `h_prev: (B, H)` to `h_next: (B, H)`, pushing the step onto the tape.
    pub fn forward(&mut self, x: ArrayView2<F>, h_prev: ArrayView2<F>) -> Result<Array2<F>> {
        let b = x.nrows();
        check_shape("x", &[b, self.input_size()], x.shape(), &["B", "I"])?;
        check_shape(
            "h_prev",
            &[b, self.hidden_size()],
            h_prev.shape(),
            &["B", "H"],
        )?;
        let (h_next, tape) = step_forward(&self.params, x, h_prev);
        self.tape.push(tape);
        Ok(h_next)
    }

    /// Pops the newest step: from `dh_next: (B, H)` returns `(dx, dh_prev)`
    /// and adds the step's contribution to the parameter gradients.
    pub fn backward(&mut self, dh_next: ArrayView2<F>) -> Result<(Array2<F>, Array2<F>)> {
        let tape = self.tape.pop().ok_or_else(|| {
            GruError::Tape("backward called with no forward step on the tape".into())
        })?;
        let b = tape.x.nrows();
        if let Err(e) = check_shape(
            "dh_next",
            &[b, self.hidden_size()],
            dh_next.shape(),
            &["B", "H"],
        ) {
            self.tape.push(tape);
            return Err(e);
        }
        Ok(step_backward(&self.params, &tape, dh_next, &mut self.grads))
    }
}
