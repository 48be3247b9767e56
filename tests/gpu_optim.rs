//! The GPU optimisers and gradient clipping against PyTorch's rules computed
//! in f64 on the CPU (`gru_wgpu::optim`).

mod common;

use gru_wgpu::gpu::{clip_grad_norm, GpuContext, GpuOptimizer, Rule};
use gru_wgpu::optim::{adam_step, clip_grad_norm as cpu_clip, sgd_step, Adam, Sgd};
use rand::Rng;
use wgpu::util::DeviceExt;

fn buffer(ctx: &GpuContext, data: &[f32]) -> wgpu::Buffer {
    ctx.device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(data),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        })
}

use common::download as read;

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut r = common::rng(seed);
    (0..n).map(|_| r.random_range(-1.0f32..1.0)).collect()
}

fn rel(a: &[f32], b: &[f64]) -> f64 {
    gru_wgpu::real::rel_error(a.iter().map(|&v| v as f64), b)
}

/// Runs `steps` steps of `rule` on two tensors on the GPU and in f64 on the
/// CPU (fresh gradients each step), and compares the parameters.
fn run(ctx: &GpuContext, rule: Rule, steps: usize) -> f64 {
    let lens = [37usize, 300];
    let p0: Vec<Vec<f32>> = lens
        .iter()
        .enumerate()
        .map(|(i, &n)| random(n, i as u64))
        .collect();
    let params: Vec<wgpu::Buffer> = p0.iter().map(|p| buffer(ctx, p)).collect();
    let mut cpu: Vec<Vec<f64>> = p0
        .iter()
        .map(|p| p.iter().map(|&v| v as f64).collect())
        .collect();
    let mut s1: Vec<Vec<f64>> = lens.iter().map(|&n| vec![0.0; n]).collect();
    let mut s2 = s1.clone();
    let mut opt = GpuOptimizer::new(ctx, rule);
    for t in 1..=steps {
        let g32: Vec<Vec<f32>> = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| random(n, 100 * t as u64 + i as u64))
            .collect();
        let grads: Vec<wgpu::Buffer> = g32.iter().map(|g| buffer(ctx, g)).collect();
        opt.step(
            &params.iter().collect::<Vec<_>>(),
            &grads.iter().collect::<Vec<_>>(),
            &lens,
        )
        .unwrap();
        for i in 0..lens.len() {
            let g: Vec<f64> = g32[i].iter().map(|&v| v as f64).collect();
            match rule {
                Rule::Sgd(o) => sgd_step(&o, &mut cpu[i], &g, &mut s1[i], t == 1),
                Rule::Adam(o) => adam_step(&o, t as u64, &mut cpu[i], &g, &mut s1[i], &mut s2[i]),
                _ => unreachable!("a rule this test does not know"),
            }
            .unwrap();
        }
    }
    assert_eq!(opt.steps(), steps as u64);
    let mut worst = 0.0f64;
    for i in 0..lens.len() {
        let got = read(ctx, &params[i], lens[i]);
        worst = worst.max(rel(&got, &cpu[i]));
    }
    worst
}

#[test]
fn sgd_variants_follow_pytorch() {
    let Some(ctx) = common::gpu() else { return };
    let variants = [
        Sgd::new(0.1),
        Sgd {
            momentum: 0.9,
            ..Sgd::new(0.05)
        },
        Sgd {
            momentum: 0.9,
            dampening: 0.3,
            weight_decay: 1e-2,
            ..Sgd::new(0.05)
        },
        Sgd {
            momentum: 0.8,
            nesterov: true,
            weight_decay: 5e-3,
            ..Sgd::new(0.02)
        },
    ];
    for o in variants {
        let e = run(&ctx, Rule::Sgd(o), 5);
        assert!(e < 1e-6, "{o:?}: relative error {e:e}");
    }
}

#[test]
fn adam_and_adamw_follow_pytorch() {
    let Some(ctx) = common::gpu() else { return };
    let variants = [
        Adam::new(1e-2),
        Adam {
            weight_decay: 1e-2,
            ..Adam::new(3e-3)
        },
        Adam::adamw(1e-2),
        Adam {
            beta1: 0.5,
            beta2: 0.9,
            eps: 1e-6,
            ..Adam::adamw(5e-3)
        },
    ];
    for o in variants {
        let e = run(&ctx, Rule::Adam(o), 6);
        assert!(e < 1e-6, "{o:?}: relative error {e:e}");
    }
}

#[test]
fn adam_first_step_moves_each_parameter_by_about_lr() {
    // Adam's first step is lr * g / (|g| + eps): a hand-checkable fact.
    let Some(ctx) = common::gpu() else { return };
    let p = buffer(&ctx, &[1.0, 1.0, 1.0]);
    let g = buffer(&ctx, &[0.5, -2.0, 1e-3]);
    let mut opt = GpuOptimizer::new(&ctx, Adam::new(0.1));
    opt.step(&[&p], &[&g], &[3]).unwrap();
    let got = read(&ctx, &p, 3);
    for (v, want) in got.iter().zip([0.9f32, 1.1, 0.9]) {
        assert!((v - want).abs() < 1e-4, "{got:?}");
    }
}

#[test]
fn gradient_clipping_by_global_norm() {
    let Some(ctx) = common::gpu() else { return };
    let lens = [5usize, 700, 1];
    let g32: Vec<Vec<f32>> = lens
        .iter()
        .enumerate()
        .map(|(i, &n)| random(n, 40 + i as u64))
        .collect();
    let bufs: Vec<wgpu::Buffer> = g32.iter().map(|g| buffer(&ctx, g)).collect();
    let refs: Vec<&wgpu::Buffer> = bufs.iter().collect();
    let mut cpu: Vec<Vec<f64>> = g32
        .iter()
        .map(|g| g.iter().map(|&v| v as f64).collect())
        .collect();
    let total = {
        let mut slices: Vec<&mut [f64]> = cpu.iter_mut().map(|v| v.as_mut_slice()).collect();
        cpu_clip(&mut slices, 1.5).unwrap()
    };
    let norm = clip_grad_norm(&ctx, &refs, &lens, 1.5).unwrap();
    let got_total = norm.read(&ctx).unwrap() as f64;
    assert!(
        (got_total - total).abs() <= 1e-6 * total,
        "{got_total} vs {total}"
    );
    assert!(total > 1.5, "the case clips");
    for i in 0..lens.len() {
        let e = rel(&read(&ctx, &bufs[i], lens[i]), &cpu[i]);
        assert!(e < 1e-6, "tensor {i}: {e:e}");
    }
    // Below the limit nothing changes.
    let before = read(&ctx, &bufs[1], lens[1]);
    clip_grad_norm(&ctx, &refs, &lens, 1e6).unwrap();
    assert_eq!(read(&ctx, &bufs[1], lens[1]), before);
}

#[test]
fn optimiser_misuse_is_an_error() {
    let Some(ctx) = common::gpu() else { return };
    let p = buffer(&ctx, &[0.0; 4]);
    let g = buffer(&ctx, &[0.0; 4]);
    let mut opt = GpuOptimizer::new(&ctx, Sgd::new(0.1));
    let e = opt.step(&[&p], &[&g], &[8]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "`parameter 0`: expected 32 bytes (at least), got 16"
    );
    opt.step(&[&p], &[&g], &[4]).unwrap();
    let e = opt.step(&[&p, &p], &[&g, &g], &[4, 4]).unwrap_err();
    assert!(
        e.to_string().contains("set up for tensors of [4] floats"),
        "{e}"
    );
    let e = opt.step(&[&p], &[], &[4]).unwrap_err();
    assert!(e.to_string().contains("1 parameters, 0 gradients"), "{e}");
}

/// The cases of `tests/data/torch_optim.json`, written by
/// `scripts/make_optim_reference.py` with torch.optim in float32.
#[derive(serde::Deserialize)]
struct TorchOptim {
    params: Vec<f32>,
    grads: Vec<Vec<f32>>,
    cases: Vec<TorchCase>,
    clip: TorchClip,
}

#[derive(serde::Deserialize)]
struct TorchCase {
    kind: String,
    options: serde_json::Map<String, serde_json::Value>,
    after: Vec<Vec<f32>>,
}

#[derive(serde::Deserialize)]
struct TorchClip {
    grads: Vec<Vec<f32>>,
    runs: Vec<TorchClipRun>,
}

#[derive(serde::Deserialize)]
struct TorchClipRun {
    max_norm: f32,
    total: f32,
    after: Vec<Vec<f32>>,
}

fn torch_optim() -> TorchOptim {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/torch_optim.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn rule_of(c: &TorchCase) -> Rule {
    let f = |k: &str, d: f32| {
        c.options
            .get(k)
            .and_then(|v| v.as_f64())
            .map_or(d, |v| v as f32)
    };
    match c.kind.as_str() {
        "sgd" => Rule::Sgd(Sgd {
            lr: f("lr", 0.0),
            momentum: f("momentum", 0.0),
            dampening: f("dampening", 0.0),
            weight_decay: f("weight_decay", 0.0),
            nesterov: c
                .options
                .get("nesterov")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
        }),
        kind => {
            let base = if kind == "adamw" {
                Adam::adamw(f("lr", 0.0))
            } else {
                Adam::new(f("lr", 0.0))
            };
            let betas = c
                .options
                .get("betas")
                .and_then(|v| v.as_array())
                .map(|b| (b[0].as_f64().unwrap() as f32, b[1].as_f64().unwrap() as f32));
            Rule::Adam(Adam {
                beta1: betas.map_or(base.beta1, |b| b.0),
                beta2: betas.map_or(base.beta2, |b| b.1),
                eps: f("eps", base.eps),
                weight_decay: f("weight_decay", base.weight_decay),
                ..base
            })
        }
    }
}

#[test]
fn the_cpu_rules_reproduce_torch_optim() {
    // The f32 CPU rules step for step against torch.optim in f32.
    let t = torch_optim();
    assert_eq!(t.cases.len(), 8);
    for c in &t.cases {
        let rule = rule_of(c);
        let mut p = t.params.clone();
        let (mut s1, mut s2) = (vec![0.0f32; p.len()], vec![0.0f32; p.len()]);
        // One PyTorch result per step: a short list would compare fewer steps.
        assert!(!t.grads.is_empty());
        assert_eq!(t.grads.len(), c.after.len(), "{} {:?}", c.kind, c.options);
        for (step, (g, want)) in t.grads.iter().zip(&c.after).enumerate() {
            match rule {
                Rule::Sgd(o) => sgd_step(&o, &mut p, g, &mut s1, step == 0),
                Rule::Adam(o) => adam_step(&o, step as u64 + 1, &mut p, g, &mut s1, &mut s2),
                _ => unreachable!("a rule this test does not know"),
            }
            .unwrap();
            let e = gru_wgpu::real::rel_error(
                p.iter().map(|&v| v as f64),
                &want.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            );
            assert!(
                e <= 1e-6,
                "{} {:?} step {}: {e:e}",
                c.kind,
                c.options,
                step + 1
            );
        }
    }
    assert!(!t.clip.runs.is_empty());
    for run in &t.clip.runs {
        let mut g = t.clip.grads.clone();
        let mut slices: Vec<&mut [f32]> = g.iter_mut().map(|v| v.as_mut_slice()).collect();
        let total = cpu_clip(&mut slices, run.max_norm).unwrap();
        assert!(
            (total - run.total).abs() <= 1e-6 * run.total,
            "{total} vs {}",
            run.total
        );
        assert_eq!(g.len(), run.after.len());
        for (a, b) in g.iter().zip(&run.after) {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 1e-6 * y.abs().max(1e-3), "{x} vs {y}");
            }
        }
    }
}

#[test]
fn the_gpu_optimisers_reproduce_torch_optim() {
    let Some(ctx) = common::gpu() else { return };
    let t = torch_optim();
    for c in &t.cases {
        let p = buffer(&ctx, &t.params);
        let mut opt = GpuOptimizer::new(&ctx, rule_of(c));
        assert!(!t.grads.is_empty());
        assert_eq!(t.grads.len(), c.after.len(), "{} {:?}", c.kind, c.options);
        for (step, (g, want)) in t.grads.iter().zip(&c.after).enumerate() {
            let gb = buffer(&ctx, g);
            opt.step(&[&p], &[&gb], &[t.params.len()]).unwrap();
            let got = read(&ctx, &p, t.params.len());
            let e = gru_wgpu::real::rel_error(
                got.iter().map(|&v| v as f64),
                &want.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            );
            assert!(
                e <= 1e-6,
                "{} {:?} step {}: {e:e}",
                c.kind,
                c.options,
                step + 1
            );
        }
    }
    assert!(!t.clip.runs.is_empty());
    for run in &t.clip.runs {
        let bufs: Vec<wgpu::Buffer> = t.clip.grads.iter().map(|g| buffer(&ctx, g)).collect();
        let lens: Vec<usize> = t.clip.grads.iter().map(|g| g.len()).collect();
        let norm =
            clip_grad_norm(&ctx, &bufs.iter().collect::<Vec<_>>(), &lens, run.max_norm).unwrap();
        let total = norm.read(&ctx).unwrap();
        assert!(
            (total - run.total).abs() <= 1e-6 * run.total,
            "{total} vs {}",
            run.total
        );
        assert_eq!(bufs.len(), run.after.len());
        for ((b, want), &len) in bufs.iter().zip(&run.after).zip(&lens) {
            assert_eq!(want.len(), len);
            for (x, y) in read(&ctx, b, len).iter().zip(want) {
                assert!((x - y).abs() <= 1e-6 * y.abs().max(1e-3), "{x} vs {y}");
            }
        }
    }
}
