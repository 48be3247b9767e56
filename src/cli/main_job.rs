//! The main job, `gru-wgpu` with no arguments: the adapter, the checks, the benchmark.

use std::process::ExitCode;

use crate::check::{worst, RandomCase};
use gru_wgpu::reference::{ReferenceCase, CPU_BOUND, GPU_BOUND};
use gru_wgpu::GruConfig;

use super::bench::{self, BenchArgs, DeviceArg};

/// A PyTorch reference case built into the binary (`tests/data/golden/seq_basic.safetensors`).
const BUILT_IN_CASE: &[u8] = include_bytes!("../../tests/data/golden/seq_basic.safetensors");

fn verdict(ok: bool) -> &'static str {
    if ok {
        "OK"
    } else {
        "FAIL"
    }
}

pub fn run(adapter: Option<&str>) -> ExitCode {
    println!(
        "gru-wgpu {}: PyTorch's nn.GRU, forward and backward, on wgpu",
        env!("CARGO_PKG_VERSION")
    );
    let mut ok = true;
    let ctx = match super::open_gpu(adapter) {
        Ok(c) => {
            println!("adapter: {}", c.adapter());
            Some(c)
        }
        Err(e) => {
            if super::no_adapter_hint(&e).is_some() {
                println!("no GPU adapter found ({e}).");
                println!(
                    "To get one on Linux without a GPU: `apt-get install mesa-vulkan-drivers` (a software Vulkan device); \
                     otherwise install your GPU's Vulkan, Metal or DX12 driver. Running the CPU reference alone."
                );
            } else {
                println!("the GPU could not be used: {e}");
                println!("(`gru-wgpu adapters` lists the adapters wgpu sees.) Running the CPU reference alone.");
            }
            None
        }
    };

    let case = match ReferenceCase::from_bytes(BUILT_IN_CASE, "built-in PyTorch case") {
        Ok(c) => c,
        Err(e) => {
            println!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let worst_of = |r: gru_wgpu::Result<gru_wgpu::reference::RunResult>, bound| {
        r.map(|r| {
            case.compare(&r, bound)
                .iter()
                .map(|c| if c.rel.is_nan() { f64::INFINITY } else { c.rel })
                .fold(0.0, f64::max)
        })
    };
    match worst_of(case.run_cpu::<f64>(), CPU_BOUND) {
        Ok(w) => {
            ok &= w <= CPU_BOUND;
            println!(
                "check: CPU reference (f64) against PyTorch ({}): worst relative error {w:.3e} (bound {CPU_BOUND:.0e}) {}",
                case.describe(),
                verdict(w <= CPU_BOUND)
            );
        }
        Err(e) => {
            ok = false;
            println!("check: CPU reference failed: {e}");
        }
    }

    let Some(ctx) = ctx else {
        println!("benchmark: the CPU reference (no GPU adapter)");
        let args = BenchArgs {
            device: DeviceArg::Cpu,
            ..Default::default()
        };
        return match bench::measure(&args, None) {
            Ok(records) => {
                bench::print_records(&args, &records);
                ExitCode::FAILURE
            }
            Err(e) => {
                println!("error: {e}");
                ExitCode::FAILURE
            }
        };
    };

    match worst_of(case.run_gpu(&ctx), GPU_BOUND) {
        Ok(w) => {
            ok &= w <= GPU_BOUND;
            println!(
                "check: GPU (f32) against PyTorch (same case): worst relative error {w:.3e} (bound {GPU_BOUND:.0e}) {}",
                verdict(w <= GPU_BOUND)
            );
        }
        Err(e) => {
            ok = false;
            println!("check: GPU failed on the PyTorch case: {e}");
        }
    }
    let config = GruConfig::new(24, 40).layers(2).bidirectional(true);
    let (t, b) = (12, 6);
    let result = RandomCase::new(config, t, b, true, 7).and_then(|c| c.compare(&ctx, None));
    match result {
        Ok(errors) => {
            let fwd = worst(errors.iter().filter(|e| e.forward));
            let bwd = worst(errors.iter().filter(|e| !e.forward));
            let pass = fwd <= GPU_BOUND && bwd <= GPU_BOUND;
            ok &= pass;
            println!(
                "check: GPU (f32) against the CPU reference (f64) on a random GRU (I=24 H=40 layers=2 bidirectional T={t} B={b}): \
                 worst relative error forward {fwd:.3e}, backward {bwd:.3e} (bound {GPU_BOUND:.0e}) {}",
                verdict(pass)
            );
        }
        Err(e) => {
            ok = false;
            println!("check: GPU against the CPU reference failed: {e}");
        }
    }

    let args = BenchArgs::default();
    println!("benchmark: GPU, forward and forward+backward, median of 5 calls after 1 warm-up (gru-wgpu bench --help for more):");
    match bench::measure(&args, Some(&ctx)) {
        Ok(records) => {
            bench::print_records(&args, &records);
        }
        Err(e) => {
            ok = false;
            println!("error: {e}");
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
