//! Half precision (`Precision::F16`) on the GPU against the f64 CPU
//! reference and PyTorch's float64 cases, on every coverage plan (each GEMM
//! family with each time loop that applies, the window family, both limit
//! profiles), forward and backward. The bound is 2e-3; on each PyTorch case
//! ours must also be no worse than PyTorch's own f16 GRU (its figures:
//! `benches/results/devbox-torch-half-accuracy.jsonl`, from
//! `scripts/torch_half_accuracy.py`).

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use gru_wgpu::cpu::SeqOptions;
use gru_wgpu::reference::{ReferenceCase, GPU_F16_BOUND};
use gru_wgpu::{GruConfig, GruParams, Precision};
use ndarray::Array2;
use rand::Rng;

const BOUND: f64 = GPU_F16_BOUND;

/// (I, H, L, bidirectional, batch_first, T, B)
type Shape = (usize, usize, usize, bool, bool, usize, usize);
const SHAPES: [Shape; 4] = [
    (5, 7, 1, false, false, 9, 5),
    (4, 9, 2, true, true, 8, 6),
    (6, 33, 1, true, false, 6, 9),
    // I and H multiples of 4: the tiled products read f16 operands as vec4s.
    (12, 8, 1, false, false, 5, 4),
];

fn seq_options(t: usize, b: usize, seed: u64, batch_first: bool) -> SeqOptions {
    let mut r = common::rng(seed);
    let lengths: Vec<usize> = (0..b).map(|_| r.random_range(1..=t - 1)).collect();
    let mut resets = Array2::from_shape_fn((t, b), |_| r.random_bool(0.2));
    resets[[0, 0]] = true;
    let resets = if batch_first {
        resets.t().to_owned()
    } else {
        resets
    };
    SeqOptions::new()
        .lengths(Some(lengths))
        .resets(Some(resets))
}

/// Random cases (plain, with lengths and resets, and the reset-before form,
/// training with dropout between layers) on every plan against the f64
/// reference.
#[test]
fn f16_matches_the_cpu_reference_on_every_plan() {
    let paths = common::gpu_paths();
    let mut runs = 0;
    let mut worst = 0.0f64;
    for (n, &(i, h, l, bidir, bf, t, b)) in SHAPES.iter().enumerate() {
        let seed = 80 + n as u64;
        let base = GruConfig::new(i, h)
            .layers(l)
            .bidirectional(bidir)
            .batch_first(bf)
            .precision(Precision::F16);
        let variants = [
            ("plain", base.clone(), SeqOptions::new(), None),
            (
                "lengths and resets",
                base.clone(),
                seq_options(t, b, seed, bf),
                None,
            ),
            (
                "reset-before",
                base.clone().reset_before(true),
                SeqOptions::new(),
                None,
            ),
            (
                "dropout",
                base.clone().dropout(0.3),
                SeqOptions::new(),
                Some(5),
            ),
        ];
        for (label, ctx, plan) in &paths {
            for (what, config, seq, train) in &variants {
                if !common::applies(ctx, config, b, *plan, label) {
                    continue;
                }
                let case = common::case(config.clone(), t, b, n != 1, seed).with_seq(seq.clone());
                let errors = case.compare_plan(ctx, *train, Some(*plan)).unwrap();
                for e in &errors {
                    assert!(
                        e.rel <= BOUND,
                        "{label} {what} {config:?}: {} relative error {:e} > {BOUND:e}",
                        e.name,
                        e.rel
                    );
                }
                worst = worst.max(common::check::worst(&errors));
                runs += 1;
            }
        }
    }
    eprintln!("{runs} f16 runs, worst relative error {worst:e}");
    if common::require_gpu() {
        assert!(runs > 0, "no plan ran");
    }
    // The aligned shape ran the tiled products' vec4 loads of f16 storage.
    if runs > 0 {
        let built: Vec<String> = paths
            .iter()
            .flat_map(|(_, c, _)| c.pipelines_built())
            .collect();
        assert!(
            built
                .iter()
                .any(|p| p.contains("VEC4=1") && p.contains(":f16")),
            "no f16 vec4 product ran: {built:?}"
        );
    }
}

/// PyTorch's own f16 figure of each case, by case name.
fn torch_f16() -> HashMap<String, (f64, f64)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("benches/results/devbox-torch-half-accuracy.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let case = v["case"].as_str().unwrap().to_string();
            (
                case,
                (v["f16"].as_f64().unwrap(), v["bf16"].as_f64().unwrap()),
            )
        })
        .collect()
}

/// Every PyTorch reference case (the public ones and the packed, segmented
/// and reset-before extras), in f16 on every plan: within 2e-3, and no worse
/// than PyTorch's own f16 GRU where it has a figure. Prints the table of the
/// README (the worst over every plan).
#[test]
fn f16_on_every_reference_case_is_no_worse_than_pytorch_f16() {
    let torch = torch_f16();
    let extra = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden-extra");
    let mut files = common::golden_files();
    for name in [
        "packed_basic",
        "packed_bidir_bf",
        "seg_basic",
        "seg_bidir_stack",
        "rb_basic",
        "rb_stack_bidir",
    ] {
        files.push(extra.join(format!("{name}.safetensors")));
    }
    let paths = common::gpu_paths();
    let mut rows = Vec::new();
    for path in &files {
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        let case = ReferenceCase::load(path)
            .unwrap()
            .with_precision(Precision::F16);
        assert_eq!(case.gpu_bound(), BOUND);
        let batch = case.x.shape()[usize::from(case.config.batch_first)];
        let mut worst = 0.0f64;
        let mut ran = 0;
        for (label, ctx, plan) in &paths {
            if !common::applies(ctx, &case.config, batch, *plan, label) {
                continue;
            }
            let ours = case.run_gpu_plan(ctx, Some(*plan)).unwrap();
            for c in case.compare(&ours, BOUND) {
                assert!(
                    c.ok(),
                    "{name} {label} {}: relative error {:e} > {BOUND:e}",
                    c.name,
                    c.rel
                );
                worst = worst.max(c.rel);
            }
            ran += 1;
        }
        if common::require_gpu() {
            assert!(ran > 0, "{name}: no plan ran");
        }
        if let Some(&(t16, _)) = torch.get(&name) {
            assert!(
                worst <= t16,
                "{name}: ours {worst:.3e} is worse than PyTorch's f16 {t16:.3e}"
            );
        }
        rows.push((
            name,
            worst,
            torch
                .get(path.file_stem().unwrap().to_str().unwrap())
                .copied(),
        ));
    }
    eprintln!("| case | ours (f16, worst over every plan) | PyTorch f16 | PyTorch bf16 |");
    eprintln!("|---|---|---|---|");
    for (name, ours, t) in rows {
        let (a, b) = t.map_or(("-".into(), "-".into()), |(a, b)| {
            (format!("{a:.2e}"), format!("{b:.2e}"))
        });
        eprintln!("| {name} | {ours:.2e} | {a} | {b} |");
    }
}

/// On an adapter with `SHADER_F16` (lavapipe has it) an f16 model runs,
/// and the parameters it hands back are its f32 masters, exactly (not their
/// f16 roundings), before and after an optimiser step on them.
/// (`tests/gpu_own_device.rs` checks the refusal on a device without it.)
#[test]
fn f16_keeps_f32_master_parameters() {
    let Some(ctx) = common::gpu() else { return };
    assert!(
        ctx.features().contains(wgpu::Features::SHADER_F16),
        "the test adapter has SHADER_F16"
    );
    let config = GruConfig::new(3, 5).layers(2).precision(Precision::F16);
    let p = GruParams::<f32>::init(&config, 3).unwrap();
    let m = gru_wgpu::gpu::GpuGru::new(&ctx, &p).unwrap();
    assert_eq!(m.params().unwrap(), p);
    for (b, len) in m.param_buffers() {
        let data = gru_wgpu::gpu::GpuContext::data_bytes(b);
        assert_eq!(data, (len * 4) as u64, "f32 masters");
    }
    // Parameters of the same GRU, whatever their configuration's precision
    // (a file loads as f32): the model keeps f16 storage.
    let mut m = m;
    let q = GruParams::<f32>::init(&config.clone().precision(Precision::F32), 4).unwrap();
    m.set_params(&q).unwrap();
    assert_eq!(m.config().precision, Precision::F16);
    assert_eq!(m.params().unwrap(), q.with_precision(Precision::F16));
    // Another GRU is refused.
    let other = GruParams::<f32>::init(&GruConfig::new(3, 6), 4).unwrap();
    assert!(m.set_params(&other).is_err());
}

/// An optimiser step on an f16 model updates its f32 masters (SGD: exactly
/// `p - lr * g` from the gradients it returned) and remakes the f16 weights
/// from them: a forward after the step equals, bit for bit, that of a new
/// f16 model made from the updated masters.
#[test]
fn an_update_of_an_f16_model_changes_the_masters_and_the_f16_weights() {
    let Some(ctx) = common::gpu() else { return };
    let config = GruConfig::new(4, 6).layers(2).precision(Precision::F16);
    let p = GruParams::<f32>::init(&config, 9).unwrap();
    let m = gru_wgpu::gpu::GpuGru::new(&ctx, &p).unwrap();
    let x = common::random((5, 3, 4), 1.0, &mut common::rng(2)).mapv(|v| v as f32);
    let g = common::random((5, 3, 6), 1.0, &mut common::rng(3)).mapv(|v| v as f32);
    let opts = gru_wgpu::gpu::ForwardOptions::default().keep_tape();
    let (_, _, tape) = m.forward(x.view(), opts).unwrap().into_parts();
    let gb = ctx.upload("grad_output", g.view()).unwrap();
    let opts = gru_wgpu::gpu::BackwardOptions::<&wgpu::Buffer>::default();
    let grads = m.backward(tape.unwrap(), gb.buffer(), opts).unwrap();
    // The gradients, in the order of the parameter tensors.
    let flat: Vec<Vec<f32>> = grads
        .grads
        .iter()
        .flat_map(|l| l.tensors())
        .map(|b| common::download(&ctx, b.buffer(), b.len()))
        .collect();
    let lr = 0.5f32;
    let sgd = gru_wgpu::optim::Sgd {
        lr,
        momentum: 0.0,
        dampening: 0.0,
        weight_decay: 0.0,
        nesterov: false,
    };
    let mut opt = gru_wgpu::gpu::GpuOptimizer::new(&ctx, sgd);
    let before: Vec<Vec<f32>> = m
        .param_buffers()
        .iter()
        .map(|(b, len)| common::download(&ctx, b, *len))
        .collect();
    m.update(&mut opt, &grads).unwrap();
    let after: Vec<Vec<f32>> = m
        .param_buffers()
        .iter()
        .map(|(b, len)| common::download(&ctx, b, *len))
        .collect();
    assert_eq!(after.len(), flat.len());
    for ((a, b), g) in after.iter().zip(&before).zip(&flat) {
        for ((&v, &v0), &gv) in a.iter().zip(b).zip(g) {
            assert_eq!(v, v0 - lr * gv);
        }
    }
    let fresh = gru_wgpu::gpu::GpuGru::new(&ctx, &m.params().unwrap()).unwrap();
    let o1 = m
        .forward(x.view(), gru_wgpu::gpu::ForwardOptions::default())
        .unwrap();
    let o2 = fresh
        .forward(x.view(), gru_wgpu::gpu::ForwardOptions::default())
        .unwrap();
    assert_ne!(o1.output, m_before_output(&ctx, &p, &x));
    assert_eq!(o1.output, o2.output);
    assert_eq!(o1.h_n, o2.h_n);
}

/// The output of a new f16 model of `p` on `x`.
fn m_before_output(
    ctx: &gru_wgpu::gpu::GpuContext,
    p: &GruParams<f32>,
    x: &ndarray::Array3<f32>,
) -> ndarray::Array3<f32> {
    let m = gru_wgpu::gpu::GpuGru::new(ctx, p).unwrap();
    m.forward(x.view(), gru_wgpu::gpu::ForwardOptions::default())
        .unwrap()
        .output
}

/// The planner tunes an f16 model like an f32 one, apart: every candidate
/// timed in f16 (none failing), the fastest cached under a key of its own
/// (`/f16`), and the model's automatic plan is then that one.
#[test]
fn the_planner_tunes_f16_plans_apart() {
    let Some(base) = common::gpu() else { return };
    let _ = base;
    let ctx = gru_wgpu::gpu::GpuContext::with_options(gru_wgpu::gpu::ContextOptions {
        tune: Some(gru_wgpu::gpu::TuneMode::Quick),
        plan_cache: gru_wgpu::gpu::PlanCacheLocation::MemoryOnly,
        ..Default::default()
    })
    .unwrap();
    let config = GruConfig::new(8, 16).precision(Precision::F16);
    let m = gru_wgpu::gpu::GpuGru::new(&ctx, &GruParams::<f32>::init(&config, 4).unwrap()).unwrap();
    let report = m.tune(6, 4, gru_wgpu::gpu::TuneMode::Quick).unwrap();
    assert!(report.key.ends_with("/f16"), "{}", report.key);
    assert!(report.candidates.len() > 1);
    for c in &report.candidates {
        assert!(c.error.is_none(), "{:?}: {:?}", c.plan, c.error);
    }
    assert_eq!(m.plan_for(6, 4).unwrap().plan, report.chosen);
    // The same shape in f32 has a bucket of its own.
    let f32m = gru_wgpu::gpu::GpuGru::new(
        &ctx,
        &GruParams::<f32>::init(&config.clone().precision(Precision::F32), 4).unwrap(),
    )
    .unwrap();
    let r32 = f32m.tune(6, 4, gru_wgpu::gpu::TuneMode::Quick).unwrap();
    assert_ne!(r32.key, report.key);
}
