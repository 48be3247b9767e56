//! Helpers shared by the test suites.
#![allow(dead_code)]

use std::path::PathBuf;

use ndarray::{Array, Dimension, ShapeBuilder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The PyTorch reference cases, copied byte for byte from `shared/golden`.
pub fn golden_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        8,
        "expected the 8 PyTorch reference cases in {}",
        dir.display()
    );
    files
}

/// An array of the given shape with elements drawn from U(-scale, scale).
pub fn random<D: Dimension, Sh: ShapeBuilder<Dim = D>>(
    shape: Sh,
    scale: f64,
    rng: &mut ChaCha8Rng,
) -> Array<f64, D> {
    Array::from_shape_simple_fn(shape, || rng.random_range(-scale..scale))
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

use gru_wgpu::gpu::{ContextOptions, GpuContext};
use std::sync::OnceLock;

/// The shared GPU context of a test binary (buffers poisoned with NaN), or
/// `None` without an adapter. With `GRU_WGPU_REQUIRE_GPU=1` a missing adapter
/// fails the test instead.
pub fn gpu() -> Option<GpuContext> {
    static CTX: OnceLock<Option<GpuContext>> = OnceLock::new();
    CTX.get_or_init(|| {
        match GpuContext::with_options(ContextOptions {
            poison_buffers: true,
            ..Default::default()
        }) {
            Ok(ctx) => {
                eprintln!("GPU tests on {}", ctx.adapter());
                Some(ctx)
            }
            Err(e) => {
                if std::env::var("GRU_WGPU_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                    panic!("GRU_WGPU_REQUIRE_GPU=1 but no GPU adapter: {e}");
                }
                eprintln!(
                    "skipping GPU tests: {e} (set GRU_WGPU_REQUIRE_GPU=1 to make this a failure)"
                );
                None
            }
        }
    })
    .clone()
}

use gru_wgpu::cpu::Gru;
use gru_wgpu::gpu::GpuGru;
use gru_wgpu::real::rel_error;
use gru_wgpu::{GruConfig, GruParams};
use ndarray::Array3;

/// One random case: parameters, inputs and upstream gradients.
pub struct Case {
    pub config: GruConfig,
    pub t: usize,
    pub b: usize,
    pub params: GruParams<f32>,
    pub x: Array3<f32>,
    pub h0: Option<Array3<f32>>,
    pub go: Array3<f32>,
    pub gh: Array3<f32>,
}

impl Case {
    pub fn new(config: GruConfig, t: usize, b: usize, with_h0: bool, seed: u64) -> Self {
        let mut r = rng(seed);
        let params = GruParams::<f32>::init(&config, seed).unwrap();
        let f = |a: ndarray::Array3<f64>| a.mapv(|v| v as f32);
        let x = f(random(config.input_shape(t, b), 1.0, &mut r));
        let h0 = with_h0.then(|| f(random(config.state_shape(b), 1.0, &mut r)));
        let go = f(random(config.output_shape(t, b), 1.0, &mut r));
        let gh = f(random(config.state_shape(b), 1.0, &mut r));
        Case {
            config,
            t,
            b,
            params,
            x,
            h0,
            go,
            gh,
        }
    }

    /// The f64 CPU reference on the same (f32) values.
    pub fn cpu(
        &self,
        train_seed: Option<u32>,
    ) -> (Array3<f64>, Array3<f64>, gru_wgpu::cpu::GruGrads<f64>) {
        let c = |a: &Array3<f32>| a.mapv(|v| v as f64);
        let mut g = Gru::new(self.params.cast::<f64>());
        let h0 = self.h0.as_ref().map(c);
        let (o, hn) = match train_seed {
            Some(s) => g
                .forward_train(c(&self.x).view(), h0.as_ref().map(|h| h.view()), s)
                .unwrap(),
            None => g
                .forward(c(&self.x).view(), h0.as_ref().map(|h| h.view()))
                .unwrap(),
        };
        let grads = g
            .backward(c(&self.go).view(), Some(c(&self.gh).view()))
            .unwrap();
        (o, hn, grads)
    }

    /// GPU forward and backward.
    pub fn gpu(
        &self,
        ctx: &GpuContext,
        train_seed: Option<u32>,
    ) -> (Array3<f32>, Array3<f32>, gru_wgpu::cpu::GruGrads<f32>) {
        let m = GpuGru::new(ctx, &self.params).unwrap();
        let (o, hn, tape) = match train_seed {
            Some(s) => m
                .forward_train(self.x.view(), self.h0.as_ref().map(|h| h.view()), s)
                .unwrap(),
            None => m
                .forward(self.x.view(), self.h0.as_ref().map(|h| h.view()))
                .unwrap(),
        };
        let g = m
            .backward(tape, self.go.view(), Some(self.gh.view()))
            .unwrap();
        (o, hn, g)
    }

    /// Every tensor of the GPU run against the CPU reference: returns the worst
    /// relative error, panicking past `bound` (NaN included).
    pub fn check(&self, ctx: &GpuContext, train_seed: Option<u32>, bound: f64) -> f64 {
        let (o, hn, g) = self.gpu(ctx, train_seed);
        let (ro, rhn, rg) = self.cpu(train_seed);
        let mut worst = 0.0f64;
        let mut check = |name: &str, ours: Vec<f64>, reference: Vec<f64>| {
            let e = rel_error(ours, &reference);
            assert!(
                e <= bound,
                "{:?} T={} B={} h0={}: {name} relative error {e:e} > {bound:e}",
                self.config,
                self.t,
                self.b,
                self.h0.is_some()
            );
            worst = worst.max(e);
        };
        let v32 = |a: &Array3<f32>| a.iter().map(|&v| v as f64).collect::<Vec<_>>();
        let v64 = |a: &Array3<f64>| a.iter().copied().collect::<Vec<_>>();
        check("output", v32(&o), v64(&ro));
        check("h_n", v32(&hn), v64(&rhn));
        check("grad x", v32(&g.x), v64(&rg.x));
        check("grad h0", v32(&g.h0), v64(&rg.h0));
        for ((spec, a), (_, b)) in g.params.named().into_iter().zip(rg.params.named()) {
            check(
                &format!("grad {}", spec.name),
                a.iter().map(|&v| v as f64).collect(),
                b.iter().copied().collect(),
            );
        }
        worst
    }
}
