//! A short training run: the loss on held-out sequences falls well below the
//! constant predictor's (about 0.167). A loss threshold, never a time.

mod common;
// The trainer of `examples/adding.rs` (and of `gru-wgpu train`).
#[path = "../examples/adding/trainer.rs"]
#[allow(dead_code)]
mod train;

use rand::SeedableRng;
use train::{adding_batch, train_adding, AddingOptions};

#[test]
fn the_adding_problem_is_learnt() {
    let Some(ctx) = common::gpu() else { return };
    let o = AddingOptions {
        seq: 20,
        steps: 300,
        batch: 32,
        hidden: 24,
        held_out: 500,
        report_every: 50,
        ..Default::default()
    };
    let mut reports = 0;
    let r = train_adding(&ctx, &o, &mut |_, loss| {
        assert!(loss.is_finite());
        reports += 1;
    })
    .unwrap();
    assert_eq!(reports, 6);
    assert_eq!(r.losses.len(), 6);
    println!(
        "held-out mse {} -> {} in {:.1} s",
        r.initial_mse, r.held_out_mse, r.seconds
    );
    assert!(
        r.held_out_mse < 0.05,
        "held-out mse {} is not well below 0.167",
        r.held_out_mse
    );
    assert!(r.held_out_mse < r.initial_mse / 4.0);
}

#[test]
fn adding_batches_are_what_the_task_says() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let (t, b) = (50, 400);
    let (x, y) = adding_batch(&mut rng, t, b);
    let mut sq = 0.0f64;
    for bi in 0..b {
        let marked: Vec<usize> = (0..t)
            .filter(|&ti| x[(ti * b + bi) * 2 + 1] == 1.0)
            .collect();
        assert_eq!(marked.len(), 2, "two marked steps");
        assert!(marked[0] < t / 2 && marked[1] >= t / 2, "one in each half");
        let sum: f32 = marked.iter().map(|&ti| x[(ti * b + bi) * 2]).sum();
        assert_eq!(sum, y[bi]);
        assert!((0.0..1.0).contains(&x[bi * 2]));
        sq += (y[bi] as f64 - 1.0).powi(2);
    }
    // The constant 1 predicts with a mean squared error near 2/12.
    let mse = sq / b as f64;
    assert!((mse - 1.0 / 6.0).abs() < 0.03, "{mse}");
}
