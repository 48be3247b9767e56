//! The cell (`nn.GRUCell`), step by step on the GPU: each step's input and
//! state as device buffers, nothing read back between steps, then
//! backpropagation through time one step at a time; checked against the
//! f64 CPU cell (`cpu::GruCell`) on the same parameters.
//!
//! `cargo run --release --example cell`

use gru_wgpu::cpu::GruCell;
use gru_wgpu::gpu::{GpuContext, GpuGruCell};
use gru_wgpu::ndarray::{Array2, Dim};
use gru_wgpu::real::rel_error;
use gru_wgpu::{GruConfig, GruParams};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (steps, batch, input, hidden) = (6, 3, 5, 8);
    let params = GruParams::<f32>::init(&GruConfig::new(input, hidden), 7)?;
    let ctx = GpuContext::new()?;
    let mut cell = GpuGruCell::new(&ctx, params.dir(0, 0)?)?;
    let mut cpu = GruCell::<f64>::from_params(params.cast::<f64>().dir(0, 0)?.clone())?;

    let xs: Vec<Array2<f32>> = (0..steps)
        .map(|s| {
            Array2::from_shape_fn((batch, input), |(b, i)| {
                ((s * 11 + b * 3 + i) as f32 * 0.4).sin()
            })
        })
        .collect();
    // Forward: the state stays on the device from step to step.
    let mut h = ctx.upload("h0", Array2::<f32>::zeros((batch, hidden)).view())?;
    let mut h_cpu = Array2::<f64>::zeros((batch, hidden));
    for x in &xs {
        let xb = ctx.upload("x", x.view())?;
        h = cell.forward(xb.buffer(), h.buffer(), batch)?; // pushes the step's tape
        h_cpu = cpu.forward(x.mapv(f64::from).view(), h_cpu.view())?;
    }
    let h_last = ctx.read_array(h.buffer(), Dim([batch, hidden]))?;

    // Backward from dL/dh_last = 1, newest step first; the gradients add up.
    let mut dh = ctx.upload("dh", Array2::<f32>::ones((batch, hidden)).view())?;
    let mut dh_cpu = Array2::<f64>::ones((batch, hidden));
    for _ in 0..steps {
        let (_dx, dh_prev) = cell.backward(dh.buffer())?; // pops the newest step
        dh = dh_prev;
        dh_cpu = cpu.backward(dh_cpu.view())?.1;
    }
    let dh0 = ctx.read_array(dh.buffer(), Dim([batch, hidden]))?;
    let grads = cell.grads()?; // accumulated over the steps

    let rel = |gpu: &Array2<f32>, cpu: &Array2<f64>| rel_error(gpu.iter().map(|&v| v.into()), cpu);
    let errors = [
        ("h after 6 steps", rel(&h_last, &h_cpu)),
        ("dL/dh0", rel(&dh0, &dh_cpu)),
        (
            "dL/dweight_hh",
            rel(&grads.weight_hh, &cpu.grads().weight_hh),
        ),
    ];
    for (what, e) in &errors {
        println!("{what:<16} relative error {e:.2e} against the f64 CPU cell");
    }
    if errors.iter().any(|(_, e)| e.is_nan() || *e > 1e-5) {
        return Err("the GPU cell is off by more than 1e-5".into());
    }
    println!("{}: within 1e-5: OK", ctx.adapter());
    Ok(())
}
