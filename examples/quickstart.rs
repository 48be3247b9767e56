//! The README's first example ("Using it"), end to end: a two-layer
//! bidirectional GRU forward and backward on the GPU, checked against the
//! f64 CPU reference. `cargo run --release --example quickstart`; the
//! README shows this file from `use` on (`tests/examples.rs` checks that
//! the two agree).

use gru_wgpu::cpu::Gru;
use gru_wgpu::gpu::{BackwardOptions, ForwardOptions, GpuContext, GpuGru};
use gru_wgpu::ndarray::Array3; // ndarray 0.17, as the crate uses it
use gru_wgpu::real::rel_error;
use gru_wgpu::{GruConfig, GruParams};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}"); // without an adapter: "no GPU adapter: ..."
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // T = 24 steps of a batch of B = 8, I = 32 inputs, H = 64 hidden units;
    // L = 2 layers, D = 2 directions: L·D = 4 states.
    let (t, b, i, h) = (24, 8, 32, 64);
    let data = |shape: (usize, usize, usize), k: f32| {
        Array3::from_shape_fn(shape, |(p, q, r)| ((p * 31 + q * 7 + r) as f32 * k).sin())
    };
    let x = data((t, b, i), 0.37); // (T, B, I)
    let h0 = data((4, b, h), 0.11); // (L·D, B, H)
    let grad_output = data((t, b, 2 * h), 0.23); // dL/d(output), (T, B, D·H)
    let grad_h_n = data((4, b, h), 0.05); // dL/d(h_n), (L·D, B, H)

    let ctx = GpuContext::new()?; // the adapter; kernels built on first use
    let config = GruConfig::new(i, h).layers(2).bidirectional(true);
    let params = GruParams::<f32>::init(&config, 42)?; // or load_safetensors(...)
    let model = GpuGru::new(&ctx, &params)?; // parameters live on the device
    let f = model.forward(
        x.view(),
        ForwardOptions::default().h0(h0.view()).keep_tape(),
    )?;
    let grads = model.backward(
        f.tape.unwrap(),
        grad_output.view(),
        BackwardOptions::default().grad_h_n(grad_h_n.view()),
    )?;
    // f.output, f.h_n; grads.x, grads.h0, grads.params.get("weight_hh_l1_reverse"), ...

    // The same on the CPU reference, in f64.
    let f64s = |a: &Array3<f32>| a.mapv(f64::from);
    let mut cpu = Gru::new(params.cast::<f64>());
    let (output, h_n) = cpu.forward(f64s(&x).view(), Some(f64s(&h0).view()))?;
    let cpu_grads = cpu.backward(f64s(&grad_output).view(), Some(f64s(&grad_h_n).view()))?;
    let name = "weight_hh_l1_reverse";
    let (dw_gpu, dw_cpu) = (grads.params.get(name), cpu_grads.params.get(name));
    let (dw_gpu, dw_cpu) = (dw_gpu.ok_or(name)?, dw_cpu.ok_or(name)?);
    let rel = |gpu: &Array3<f32>, cpu: &Array3<f64>| rel_error(gpu.iter().map(|&v| v.into()), cpu);
    let errors = [
        ("output", rel(&f.output, &output)),
        ("h_n", rel(&f.h_n, &h_n)),
        ("dL/dx", rel(&grads.x, &cpu_grads.x)),
        ("dL/dh0", rel(&grads.h0, &cpu_grads.h0)),
        (name, rel_error(dw_gpu.iter().map(|&v| v.into()), &dw_cpu)),
    ];
    println!("{} against the f64 CPU reference:", ctx.adapter());
    for (what, e) in &errors {
        println!("  {what:<22} relative error {e:.2e}");
    }
    if let Some((what, e)) = errors.iter().find(|(_, e)| e.is_nan() || *e > 1e-5) {
        return Err(format!("{what}: the GPU is off by {e:.2e} (bound 1e-5)").into());
    }
    println!("every relative error within 1e-5: OK");
    Ok(())
}
