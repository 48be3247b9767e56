//! A reverse GRU (ONNX's `direction = "reverse"`, Keras' `go_backwards`)
//! on every plan of both limit profiles against the f64 CPU reference: one
//! and two layers, with and without bias and h0, batch_first, variable
//! lengths (each sequence's reverse pass starts at its own last valid
//! step), episode resets and the reset-before form; and the same call twice
//! gives the same bits. The CPU reference's reverse layer is checked
//! against the reverse half of a bidirectional one in `tests/cpu_extra.rs`.

mod common;

use gru_wgpu::cpu::SeqOptions;
use gru_wgpu::{Direction, GruConfig};

const BOUND: f64 = 1e-5;

fn reverse(i: usize, h: usize) -> GruConfig {
    GruConfig::new(i, h).direction(Direction::Reverse)
}

#[test]
fn a_reverse_gru_matches_the_cpu_on_every_plan() {
    let mut resets = ndarray::Array2::from_elem((9, 4), false);
    resets[[3, 0]] = true;
    resets[[5, 2]] = true;
    resets[[1, 3]] = true;
    let lengths = SeqOptions::new().lengths(Some(vec![9, 4, 7, 1]));
    let both = SeqOptions::new()
        .lengths(Some(vec![9, 4, 7, 2]))
        .resets(Some(resets));
    // (config, T, B, h0, seq)
    let cases = [
        (reverse(3, 5), 6, 2, true, SeqOptions::new()),
        (
            reverse(4, 33).layers(2).bias(false),
            5,
            3,
            false,
            SeqOptions::new(),
        ),
        (
            reverse(3, 8).layers(2).batch_first(true),
            9,
            4,
            true,
            lengths.clone(),
        ),
        (reverse(2, 12), 9, 4, true, both),
        (reverse(3, 7).reset_before(true), 9, 4, true, lengths),
        (
            reverse(5, 70).reset_before(true).layers(2),
            4,
            5,
            true,
            SeqOptions::new(),
        ),
    ];
    let mut runs = 0;
    let mut worst = 0.0f64;
    for (n, (config, t, b, h0, seq)) in cases.into_iter().enumerate() {
        let case = common::case(config.clone(), t, b, h0, 900 + n as u64).with_seq(seq);
        let reference = case.run_cpu(None).unwrap();
        for (label, ctx, plan) in common::gpu_paths() {
            if !common::applies(&ctx, &config, b, plan, &label) {
                continue;
            }
            let a = case.run_gpu_plan(&ctx, None, Some(plan)).unwrap();
            let c = case.run_gpu_plan(&ctx, None, Some(plan)).unwrap();
            let what = format!("{label}, {config:?} T={t} B={b}");
            common::assert_same(&a, &c, &what);
            for e in common::check::RandomCase::errors(&a, &reference) {
                assert!(
                    e.rel <= BOUND,
                    "{what}: {} relative error {:e} > {BOUND:e}",
                    e.name,
                    e.rel
                );
                worst = worst.max(e.rel);
            }
            runs += 1;
        }
    }
    println!("reverse GRUs: {runs} runs, worst relative error {worst:.3e}");
}

/// A reverse GRU cannot stream (its first step is the sequence's last).
#[test]
fn a_reverse_gru_cannot_stream() {
    let Some(ctx) = common::gpu() else {
        return;
    };
    let params = gru_wgpu::GruParams::<f32>::init(&reverse(2, 3), 1).unwrap();
    let model = gru_wgpu::gpu::GpuGru::new(&ctx, &params).unwrap();
    let e = gru_wgpu::gpu::GpuStream::new(&model, 1).unwrap_err();
    assert!(e.to_string().contains("a reverse GRU cannot stream"), "{e}");
}
