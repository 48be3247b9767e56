//! Faults and odd numbers: device loss, errors the device reports, threads,
//! NaN and Inf, huge inputs.

mod common;

use std::sync::Arc;

use common::check::RandomCase;
use gru_wgpu::gpu::{ContextOptions, ForwardOptions, GpuContext, GpuGru, OnDevice};
use gru_wgpu::{GruConfig, GruError, GruParams};
use ndarray::Array3;
use wgpu::util::DeviceExt;

#[test]
fn a_lost_device_is_an_error_not_a_panic() {
    if common::gpu().is_none() {
        return;
    }
    let ctx = GpuContext::with_options(ContextOptions::default()).unwrap();
    let config = GruConfig::new(3, 4);
    let model = GpuGru::new(&ctx, &GruParams::init(&config, 1).unwrap()).unwrap();
    let x = Array3::<f32>::zeros((2, 1, 3));
    let keep = || ForwardOptions::default().keep_tape();
    model.forward(x.view(), keep()).unwrap();
    ctx.device().destroy();
    let e = model.forward(x.view(), keep()).unwrap_err();
    assert!(matches!(e, GruError::DeviceLost(_)), "{e:?}");
    assert!(
        e.to_string().starts_with("the GPU device was lost: "),
        "{e}"
    );
    // The context says it is not usable any more.
    assert!(matches!(ctx.check_alive(), Err(GruError::DeviceLost(_))));
    assert!(GpuGru::new(&ctx, &GruParams::init(&config, 1).unwrap()).is_err());
}

#[test]
fn an_error_the_device_reports_comes_back_and_the_context_stays_usable() {
    let Some(ctx) = common::gpu() else { return };
    // A buffer the caller destroyed: the device rejects the submission.
    let config = GruConfig::new(3, 4);
    let model = GpuGru::new(&ctx, &GruParams::init(&config, 1).unwrap()).unwrap();
    let gone = ctx
        .device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&[0.5f32; 6]),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        });
    gone.destroy();
    let gone_x = OnDevice {
        buffer: &gone,
        seq_len: 2,
        batch: 1,
    };
    let e = model
        .forward(gone_x, ForwardOptions::default().keep_tape())
        .unwrap_err();
    assert!(matches!(e, GruError::Gpu(_)), "{e:?}");
    assert!(e.to_string().starts_with("GPU error: "), "{e}");
    // The same model and context still work, and give the right answer.
    let case = RandomCase::new(config, 4, 2, true, 3).unwrap();
    common::check(&ctx, &case, None, 1e-5);
    ctx.check_alive().unwrap();
}

#[test]
fn two_threads_two_models_one_device() {
    let Some(ctx) = common::gpu() else { return };
    let a = Arc::new(RandomCase::new(GruConfig::new(6, 10).layers(2), 9, 3, true, 11).unwrap());
    let b = Arc::new(
        RandomCase::new(GruConfig::new(5, 7).bidirectional(true), 7, 4, false, 12).unwrap(),
    );
    let threads: Vec<_> = [a, b]
        .into_iter()
        .map(|case| {
            let ctx = ctx.clone();
            std::thread::spawn(move || {
                let mut worst = 0.0f64;
                for _ in 0..4 {
                    worst = worst.max(common::check(&ctx, &case, None, 1e-5));
                }
                worst
            })
        })
        .collect();
    for t in threads {
        let worst = t.join().expect("no thread panics");
        assert!(worst <= 1e-5);
    }
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<GpuContext>();
    assert_send_sync::<GpuGru>();
    assert_send_sync::<gru_wgpu::gpu::GpuTape>();
}

/// GPU against the f64 CPU reference: NaN where the reference has NaN, the
/// same infinities, and the finite values within 1e-5 relative.
fn same_numbers<D: ndarray::Dimension>(
    name: &str,
    gpu: ndarray::ArrayView<f32, D>,
    cpu: ndarray::ArrayView<f64, D>,
) {
    assert_eq!(gpu.shape(), cpu.shape(), "{name}: shapes");
    assert!(!gpu.is_empty(), "{name}: no values to compare");
    let mut num = 0.0f64;
    let mut den = 0.0f64;
    for (i, (&g, &c)) in gpu.iter().zip(cpu.iter()).enumerate() {
        if c.is_nan() {
            assert!(g.is_nan(), "{name}[{i}]: reference NaN, GPU {g}");
        } else if c.is_infinite() {
            assert_eq!(g as f64, c, "{name}[{i}]");
        } else {
            assert!(g.is_finite(), "{name}[{i}]: reference {c}, GPU {g}");
            num += (g as f64 - c) * (g as f64 - c);
            den += c * c;
        }
    }
    let rel = if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    };
    assert!(rel <= 1e-5, "{name}: finite values off by {rel:e}");
}

fn compare_everything(case: &RandomCase) {
    for (label, ctx, r) in common::gpu_paths() {
        if !common::applies(&ctx, &case.config, case.batch, r, &label) {
            continue;
        }
        let (o, hn, g) = case.run_gpu_plan(&ctx, None, Some(r)).unwrap();
        let (ro, rhn, rg) = case.run_cpu(None).unwrap();
        same_numbers(&format!("{label} output"), o.view(), ro.view());
        same_numbers(&format!("{label} h_n"), hn.view(), rhn.view());
        same_numbers(&format!("{label} grad x"), g.x.view(), rg.x.view());
        same_numbers(&format!("{label} grad h0"), g.h0.view(), rg.h0.view());
        // Every parameter's gradient, by name.
        let (gp, rp) = (g.params.named(), rg.params.named());
        assert_eq!(gp.len(), rp.len(), "{label}: parameter gradients");
        assert_eq!(gp.len(), case.config.param_specs().len());
        for ((spec, a), (rspec, b)) in gp.into_iter().zip(rp) {
            assert_eq!(spec.name, rspec.name);
            same_numbers(&format!("{label} grad {}", spec.name), a, b);
        }
    }
}

#[test]
fn nan_propagates_as_in_pytorch() {
    if common::gpu_all().is_none() {
        return;
    }
    // A NaN in one input element: the rows and steps it reaches become NaN,
    // the others stay as they were.
    let mut case = RandomCase::new(
        GruConfig::new(4, 6).layers(2).bidirectional(true),
        5,
        3,
        true,
        21,
    )
    .unwrap();
    case.x[[2, 1, 3]] = f32::NAN;
    let (ro, _, _) = case.run_cpu(None).unwrap();
    assert!(
        ro.iter().any(|v| v.is_nan()) && ro.iter().any(|v| !v.is_nan()),
        "the case mixes NaN and numbers"
    );
    compare_everything(&case);
    // NaN in a weight poisons everything downstream of it.
    let mut case = RandomCase::new(GruConfig::new(3, 5), 4, 2, false, 22).unwrap();
    case.params.dir_mut(0, 0).unwrap().weight_hh[[1, 2]] = f32::NAN;
    compare_everything(&case);
}

#[test]
fn infinities_propagate_as_in_pytorch() {
    if common::gpu_all().is_none() {
        return;
    }
    let mut case =
        RandomCase::new(GruConfig::new(4, 6).bidirectional(true), 6, 2, true, 23).unwrap();
    case.x[[1, 0, 0]] = f32::INFINITY;
    case.x[[3, 1, 2]] = f32::NEG_INFINITY;
    compare_everything(&case);
}

#[test]
fn huge_inputs_saturate() {
    if common::gpu_all().is_none() {
        return;
    }
    let mut case = RandomCase::new(GruConfig::new(5, 8).layers(2), 7, 3, true, 24).unwrap();
    case.x.mapv_inplace(|v| if v >= 0.0 { 1e4 } else { -1e4 });
    let (ro, rhn, rg) = case.run_cpu(None).unwrap();
    for (label, ctx, r) in common::gpu_paths() {
        if !common::applies(&ctx, &case.config, case.batch, r, &label) {
            continue;
        }
        let (o, hn, g) = case.run_gpu_plan(&ctx, None, Some(r)).unwrap();
        for a in [&o, &hn, &g.x, &g.h0] {
            assert!(
                a.iter().all(|v| v.is_finite()),
                "{label}: saturated gates give finite results"
            );
        }
        assert!(
            o.iter().all(|v| v.abs() <= 1.0 + 1e-6),
            "a GRU output is a convex mix of values in [-1, 1]"
        );
        same_numbers(&format!("{label} output"), o.view(), ro.view());
        same_numbers(&format!("{label} h_n"), hn.view(), rhn.view());
        same_numbers(&format!("{label} grad h0"), g.h0.view(), rg.h0.view());
        // Through saturated gates dL/dx is around 1e-130, which is 0 in f32.
        assert_eq!(g.x.shape(), rg.x.shape());
        let worst =
            g.x.iter()
                .zip(rg.x.iter())
                .map(|(&a, &b)| (a as f64 - b).abs())
                .fold(0.0, f64::max);
        assert!(worst <= 1e-30, "{label}: grad x differs by {worst:e}");
    }
}

#[test]
fn activations_saturate_exactly_at_plus_minus_100() {
    // I = H = 1, no recurrent weights, h0 = 0.5: the pre-activations are
    // w * x with x = 1, so gates see exactly +-100 (and +-1e4).
    let Some(ctx) = common::gpu() else { return };
    for (a_z, a_n, want) in [
        // z = sigmoid(-100) = 0, n = tanh(100) = 1: h' = n = 1.
        (-100.0f32, 100.0f32, 1.0f32),
        // z = 0, n = tanh(-100) = -1: h' = -1.
        (-100.0, -100.0, -1.0),
        // z = sigmoid(100) = 1: h' = h0.
        (100.0, 100.0, 0.5),
        (-1e4, 1e4, 1.0),
        (1e4, -1e4, 0.5),
    ] {
        let config = GruConfig::new(1, 1).bias(false);
        let mut p = GruParams::<f32>::zeros(&config).unwrap();
        let d = p.dir_mut(0, 0).unwrap();
        d.weight_ih[[0, 0]] = 3.0; // r: any value, it multiplies W_hn h = 0
        d.weight_ih[[1, 0]] = a_z;
        d.weight_ih[[2, 0]] = a_n;
        let x = Array3::<f32>::ones((1, 1, 1));
        let h0 = Array3::<f32>::from_elem((1, 1, 1), 0.5);
        for (label, ctx, r) in common::gpu_paths()
            .into_iter()
            .map(|(l, c, p)| (l, c, Some(p)))
            .chain(std::iter::once(("auto".to_string(), ctx.clone(), None)))
        {
            if r.is_some_and(|r| !common::applies(&ctx, &config, 1, r, &label)) {
                continue;
            }
            let m = GpuGru::new(&ctx, &p).unwrap();
            m.set_plan(r);
            let (out, _, _) = m
                .forward(
                    x.view(),
                    ForwardOptions::default().h0(h0.view()).keep_tape(),
                )
                .unwrap()
                .into_parts();
            assert_eq!(
                out[[0, 0, 0]],
                want,
                "{label}: z pre-activation {a_z}, n pre-activation {a_n}"
            );
        }
    }
}
