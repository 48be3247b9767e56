//! burn 0.22.1's `Gru` on its wgpu backend with autodiff, forward and
//! backward, timed as `gru-wgpu bench` times its calls (median wall time of
//! `--iters` calls after one warm-up, each waited to completion), printed as
//! the same JSON lines. For the side-by-side numbers of BENCHMARKS.md; not
//! part of the crate's build or tests:
//!
//!     cargo run --release --manifest-path benches/burn_gru/Cargo.toml -- [ITERS [WARMUP]] > burn.jsonl

use std::time::Instant;

use burn::nn::GruConfig;
use burn::tensor::{Device, Distribution, Tensor};

fn main() {
    let iters: usize = std::env::args().nth(1).map_or(5, |s| s.parse().expect("iterations"));
    let warmup: usize = std::env::args().nth(2).map_or(1, |s| s.parse().expect("warm-up calls"));
    let device = Device::wgpu(Default::default()).autodiff();
    for (b, t, i, h) in [(1usize, 256usize, 64usize, 64usize), (16, 64, 128, 128), (64, 64, 256, 256)] {
        let gru = GruConfig::new(i, h, true).init(&device);
        let mut times = Vec::new();
        for it in 0..warmup + iters {
            let x = Tensor::<3>::random([b, t, i], Distribution::Uniform(-1.0, 1.0), &device).require_grad();
            device.sync().expect("sync");
            let start = Instant::now();
            let out = gru.forward(x.clone(), None);
            let grads = out.sum().backward();
            let gx = x.grad(&grads).expect("a gradient for x");
            let _: f32 = gx.sum().into_scalar();
            device.sync().expect("sync");
            if it >= warmup {
                times.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        times.sort_by(|a, b| a.total_cmp(b));
        let median = times[times.len() / 2];
        let flops = 3.0 * 2.0 * (t * b) as f64 * (3 * h) as f64 * (i + h) as f64;
        println!(
            "{}",
            serde_json::json!({
                "framework": "burn", "impl": "gpu", "adapter": "burn 0.22.1 wgpu (Autodiff)", "mode": "fwdbwd",
                "batch": b, "seq": t, "input": i, "hidden": h, "layers": 1, "bidirectional": false,
                "median_ms": median, "min_ms": times[0], "max_ms": times[times.len() - 1], "gpu_ms": null,
                "gflops": flops / (median * 1e-3) / 1e9, "seqs_per_s": b as f64 / (median * 1e-3),
                "dispatches": null, "submissions": null, "iters": iters, "warmup": warmup
            })
        );
    }
}
