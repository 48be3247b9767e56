//! The public regression head against the same arithmetic in f64 on the CPU.

mod common;

use gru_wgpu::gpu::{GpuLinearHead, GpuOptimizer};
use gru_wgpu::optim::Sgd;
use gru_wgpu::GruError;

#[test]
fn the_head_matches_linear_and_mse_on_the_cpu() {
    let Some(ctx) = common::gpu() else { return };
    let (b, h) = (5usize, 7usize);
    let mut r = common::rng(9);
    let hs = common::random((b, h), 1.0, &mut r).mapv(|v| v as f32);
    let targets = common::random(b, 1.0, &mut r).mapv(|v| v as f32);
    let p: Vec<f32> = common::random(h + 1, 0.5, &mut r)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let head = GpuLinearHead::new(&ctx, h, &p).unwrap();
    let hb = ctx.upload("h", hs.view()).unwrap();
    let tb = ctx.upload("targets", targets.view()).unwrap();
    let step = head.step(hb.buffer(), tb.buffer(), b).unwrap();
    // The CPU: y = h w + c, loss = mean (y - t)^2, dy = 2 (y - t) / B.
    let (w, c) = (&p[..h], p[h] as f64);
    let y: Vec<f64> = (0..b)
        .map(|i| (0..h).map(|j| hs[[i, j]] as f64 * w[j] as f64).sum::<f64>() + c)
        .collect();
    let dy: Vec<f64> = (0..b)
        .map(|i| 2.0 * (y[i] - targets[i] as f64) / b as f64)
        .collect();
    let loss: f64 = (0..b)
        .map(|i| (y[i] - targets[i] as f64).powi(2))
        .sum::<f64>()
        / b as f64;
    let got = step.read_loss(&ctx).unwrap() as f64;
    assert!(
        (got - loss).abs() <= 1e-6 * loss.abs().max(1e-3),
        "{got} vs {loss}"
    );
    let pred = ctx
        .read_array(step.predictions.buffer(), ndarray::Ix1(b))
        .unwrap();
    let gh = ctx
        .read_array(step.grad_h.buffer(), ndarray::Ix2(b, h))
        .unwrap();
    let gp = ctx
        .read_array(step.grad_params.buffer(), ndarray::Ix1(h + 1))
        .unwrap();
    for i in 0..b {
        assert!((pred[i] as f64 - y[i]).abs() <= 1e-5, "y[{i}]");
        for j in 0..h {
            let want = dy[i] * w[j] as f64;
            assert!((gh[[i, j]] as f64 - want).abs() <= 1e-5, "dh[{i},{j}]");
        }
    }
    for j in 0..=h {
        let want: f64 = (0..b)
            .map(|i| dy[i] * if j < h { hs[[i, j]] as f64 } else { 1.0 })
            .sum();
        assert!(
            (gp[j] as f64 - want).abs() <= 1e-5,
            "dp[{j}]: {} vs {want}",
            gp[j]
        );
    }
    // One SGD step moves the parameters by -lr times the gradient.
    let mut opt = GpuOptimizer::new(&ctx, Sgd::new(0.5));
    head.update(&mut opt, &step).unwrap();
    let after = head.params().unwrap();
    for j in 0..=h {
        let want = p[j] as f64 - 0.5 * gp[j] as f64;
        assert!((after[j] as f64 - want).abs() <= 1e-6, "p[{j}]");
    }
    // Wrong sizes are refused.
    let e = GpuLinearHead::new(&ctx, h, &p[..h]).unwrap_err();
    assert!(matches!(e, GruError::LengthMismatch { .. }), "{e:?}");
    let e = head.step(hb.buffer(), tb.buffer(), b + 1).unwrap_err();
    assert!(matches!(e, GruError::LengthMismatch { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "`h`: expected {} bytes (at least), got {}",
            (b + 1) * h * 4,
            hb.len() * 4
        )
    );
}
