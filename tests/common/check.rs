//! The GPU checked against the CPU reference on one random case: what the
//! main job runs, and what the GPU-vs-CPU test suite runs over many cases.
//!
//! One file in two crates: the tests' helper `common::check`, and the
//! binary's module `check` (`src/main.rs` includes it by `#[path]`, for the
//! main job and `selftest`). It uses nothing but the library's public API.

use ndarray::Array3;
use rand::{Rng, SeedableRng};

use gru_wgpu::cpu::{Gru, GruGrads, SeqOptions};
use gru_wgpu::error::Result;
use gru_wgpu::gpu::{BackwardOptions, Family, ForwardOptions, GpuContext, GpuGru, Plan};
use gru_wgpu::real::rel_error;
use gru_wgpu::{GruConfig, GruParams};

/// One random case: parameters, inputs and upstream gradients, all f32.
#[derive(Clone, Debug)]
pub struct RandomCase {
    pub config: GruConfig,
    pub seq_len: usize,
    pub batch: usize,
    pub params: GruParams<f32>,
    pub x: Array3<f32>,
    pub h0: Option<Array3<f32>>,
    pub grad_output: Array3<f32>,
    pub grad_h_n: Array3<f32>,
    /// Variable lengths and episode resets of both runs (default: neither).
    pub seq: SeqOptions,
}

/// The relative error `||gpu - cpu|| / ||cpu||` of one tensor.
#[derive(Clone, Debug)]
pub struct TensorError {
    pub name: String,
    /// Part of the forward's results (`output`, `h_n`) rather than a gradient.
    pub forward: bool,
    pub rel: f64,
}

fn uniform(shape: [usize; 3], rng: &mut rand_chacha::ChaCha8Rng) -> Array3<f32> {
    Array3::from_shape_simple_fn(shape, || rng.random_range(-1.0f32..1.0))
}

impl RandomCase {
    /// Parameters from PyTorch's initialisation, inputs, `h0` (where
    /// `with_h0`) and upstream gradients from U(-1, 1), all from `seed`.
    pub fn new(
        config: GruConfig,
        seq_len: usize,
        batch: usize,
        with_h0: bool,
        seed: u64,
    ) -> Result<Self> {
        config.validate()?;
        gru_wgpu::memory::check_host(
            &format!("a random case of T={seq_len}, B={batch} and its f64 reference run"),
            gru_wgpu::cpu::layer::run_bytes(&config, seq_len, batch, 8),
        )?;
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let params = GruParams::<f32>::init(&config, seed)?;
        let x = uniform(config.input_shape(seq_len, batch), &mut r);
        let h0 = with_h0.then(|| uniform(config.state_shape(batch), &mut r));
        let grad_output = uniform(config.output_shape(seq_len, batch), &mut r);
        let grad_h_n = uniform(config.state_shape(batch), &mut r);
        Ok(RandomCase {
            config,
            seq_len,
            batch,
            params,
            x,
            h0,
            grad_output,
            grad_h_n,
            seq: SeqOptions::default(),
        })
    }

    /// The same case with lengths and resets.
    pub fn with_seq(mut self, seq: SeqOptions) -> Self {
        self.seq = seq;
        self
    }

    /// The f64 CPU reference on the same values: `(output, h_n, gradients)`.
    pub fn run_cpu(
        &self,
        train_seed: Option<u32>,
    ) -> Result<(Array3<f64>, Array3<f64>, GruGrads<f64>)> {
        let c = |a: &Array3<f32>| a.mapv(|v| v as f64);
        let mut g = Gru::new(self.params.cast::<f64>());
        let h0 = self.h0.as_ref().map(c);
        let h0v = h0.as_ref().map(|h| h.view());
        let (o, hn) = match train_seed {
            Some(s) => g.forward_train_with(c(&self.x).view(), h0v, s, &self.seq)?,
            None => g.forward_with(c(&self.x).view(), h0v, &self.seq)?,
        };
        let grads = g.backward(c(&self.grad_output).view(), Some(c(&self.grad_h_n).view()))?;
        Ok((o, hn, grads))
    }

    /// The GPU: `(output, h_n, gradients)`.
    pub fn run_gpu(
        &self,
        ctx: &GpuContext,
        train_seed: Option<u32>,
    ) -> Result<(Array3<f32>, Array3<f32>, GruGrads<f32>)> {
        self.run_gpu_plan(ctx, train_seed, None)
    }

    /// The GPU with `plan` forced (`None`: the shape's automatic plan).
    pub fn run_gpu_plan(
        &self,
        ctx: &GpuContext,
        train_seed: Option<u32>,
        plan: Option<Plan>,
    ) -> Result<(Array3<f32>, Array3<f32>, GruGrads<f32>)> {
        let m = GpuGru::new(ctx, &self.params)?;
        m.set_plan(plan);
        self.run_model(&m, train_seed)
    }

    fn run_model(
        &self,
        m: &GpuGru,
        train_seed: Option<u32>,
    ) -> Result<(Array3<f32>, Array3<f32>, GruGrads<f32>)> {
        let h0 = self.h0.as_ref().map(|h| h.view());
        let mut opts = ForwardOptions::default()
            .h0(h0)
            .seq(self.seq.clone())
            .keep_tape();
        if let Some(seed) = train_seed {
            opts = opts.train(seed);
        }
        let f = m.forward(self.x.view(), opts)?;
        let (o, hn, tape) = (f.output, f.h_n, f.tape.expect("kept"));
        let g = m.backward(
            tape,
            self.grad_output.view(),
            BackwardOptions::default().grad_h_n(self.grad_h_n.view()),
        )?;
        Ok((o, hn, g))
    }

    /// Runs both and compares every tensor: output, h_n, and the gradients of
    /// x, h0 and every parameter.
    pub fn compare(&self, ctx: &GpuContext, train_seed: Option<u32>) -> Result<Vec<TensorError>> {
        self.compare_plan(ctx, train_seed, None)
    }

    /// [`compare`](Self::compare) with `plan` forced.
    pub fn compare_plan(
        &self,
        ctx: &GpuContext,
        train_seed: Option<u32>,
        plan: Option<Plan>,
    ) -> Result<Vec<TensorError>> {
        let gpu = self.run_gpu_plan(ctx, train_seed, plan)?;
        self.compare_run(gpu, train_seed)
    }

    fn compare_run(
        &self,
        gpu: (Array3<f32>, Array3<f32>, GruGrads<f32>),
        train_seed: Option<u32>,
    ) -> Result<Vec<TensorError>> {
        Ok(Self::errors(&gpu, &self.run_cpu(train_seed)?))
    }

    /// Every tensor of a GPU run (as [`run_gpu`](Self::run_gpu) returns it)
    /// against a CPU reference run (as [`run_cpu`](Self::run_cpu) returns
    /// it): output, h_n, and the gradients of x, h0 and every parameter.
    /// One reference run serves many GPU runs.
    pub fn errors(
        (o, hn, g): &(Array3<f32>, Array3<f32>, GruGrads<f32>),
        (ro, rhn, rg): &(Array3<f64>, Array3<f64>, GruGrads<f64>),
    ) -> Vec<TensorError> {
        let err = |name: &str, forward: bool, ours: Vec<f64>, reference: Vec<f64>| TensorError {
            name: name.to_string(),
            forward,
            rel: rel_error(ours, &reference),
        };
        let v32 = |a: &Array3<f32>| a.iter().map(|&v| v as f64).collect::<Vec<_>>();
        let v64 = |a: &Array3<f64>| a.iter().copied().collect::<Vec<_>>();
        let mut out = vec![
            err("output", true, v32(o), v64(ro)),
            err("h_n", true, v32(hn), v64(rhn)),
            err("grad.x", false, v32(&g.x), v64(&rg.x)),
            err("grad.h0", false, v32(&g.h0), v64(&rg.h0)),
        ];
        for ((spec, a), (_, b)) in g.params.named().into_iter().zip(rg.params.named()) {
            out.push(err(
                &format!("grad.{}", spec.name),
                false,
                a.iter().map(|&v| v as f64).collect(),
                b.iter().copied().collect(),
            ));
        }
        out
    }
}

/// The worst of some errors (NaN counts as infinitely bad).
pub fn worst<'a>(errors: impl IntoIterator<Item = &'a TensorError>) -> f64 {
    errors
        .into_iter()
        .map(|e| if e.rel.is_nan() { f64::INFINITY } else { e.rel })
        .fold(0.0, f64::max)
}

/// A set of plans that together run every kernel the candidates of any
/// shape run on these families: every family with the `step` loop and with
/// its per-step `products` (the GEMM at the recurrent product's shapes), and
/// the first GEMM variant and the window family with every loop. The test
/// suite and `selftest` check each against the CPU reference; some may not
/// apply to a given shape (`GpuGru::check_plan` says why).
pub fn coverage(families: &[Family]) -> Vec<Plan> {
    let mut out: Vec<Plan> = Vec::new();
    let first_gemm = families.iter().find(|f| **f != Family::Windows);
    for f in families {
        let every = Some(f) == first_gemm || *f == Family::Windows;
        for &strategy in gru_wgpu::gpu::Strategy::ALL {
            let per_step = matches!(strategy.to_string().as_str(), "step" | "products");
            let plan = Plan {
                family: *f,
                strategy,
            };
            if (every || per_step) && !out.contains(&plan) {
                out.push(plan);
            }
        }
    }
    out
}

/// [`coverage`] of the families that run on `ctx` (`GpuContext::families`).
pub fn coverage_plans(ctx: &GpuContext) -> Vec<Plan> {
    coverage(&ctx.families())
}
