//! Loading a PyTorch `state_dict`: the weights of an `nn.GRU` saved from
//! Python as safetensors, run on the GPU and on the CPU reference.
//!
//! ```python
//! import torch
//! from safetensors.torch import save_file
//! model = torch.nn.GRU(input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
//! save_file({k: v.contiguous() for k, v in model.state_dict().items()}, "gru.safetensors")
//! ```
//!
//! `cargo run --release --example state_dict [FILE]` (by default the file
//! of that model in `tests/data/torch_state_dict.safetensors`). A file of
//! weights holds no configuration: it is given here, and the loader checks
//! every tensor's name and shape against it. To check the GPU against
//! PyTorch's own results on these weights, make a reference case:
//! `python3 scripts/make_reference.py --input-size 3 --hidden-size 4
//! --num-layers 2 --bidirectional --seq-len 10 --batch 2 --state-dict FILE
//! case.safetensors`, then `gru-wgpu verify case.safetensors`.

use gru_wgpu::cpu::Gru;
use gru_wgpu::gpu::{ForwardOptions, GpuContext, GpuGru};
use gru_wgpu::ndarray::Array3;
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
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/torch_state_dict.safetensors"
        )
        .into()
    });
    // The configuration of the nn.GRU that saved it.
    let config = GruConfig::new(3, 4).layers(2).bidirectional(true);
    let params = GruParams::<f32>::load_safetensors(&path, &config)?;
    let w = params
        .get("weight_hh_l1_reverse")
        .ok_or("weight_hh_l1_reverse")?;
    let first_row: Vec<f32> = w.iter().take(w.shape()[1]).copied().collect();
    println!(
        "{path}: weight_hh_l1_reverse {:?}, first row {first_row:?}",
        w.shape()
    );

    // T = 10 steps of a batch of 2, no h0 (zeros, as nn.GRU without one).
    let x = Array3::from_shape_fn((10, 2, 3), |(t, b, i)| {
        ((t * 5 + b * 3 + i) as f32 * 0.3).cos()
    });
    let ctx = GpuContext::new()?;
    let model = GpuGru::new(&ctx, &params)?;
    let f = model.forward(x.view(), ForwardOptions::default())?;
    let mut cpu = Gru::new(params.cast::<f64>());
    let (output, h_n) = cpu.forward(x.mapv(f64::from).view(), None)?;
    let rel = |gpu: &Array3<f32>, cpu: &Array3<f64>| rel_error(gpu.iter().map(|&v| v.into()), cpu);
    let (e_out, e_h) = (rel(&f.output, &output), rel(&f.h_n, &h_n));
    println!("{} against the f64 CPU reference:", ctx.adapter());
    println!("  output {:?} relative error {e_out:.2e}", f.output.shape());
    println!("  h_n    {:?} relative error {e_h:.2e}", f.h_n.shape());
    if [e_out, e_h].iter().any(|e| e.is_nan() || *e > 1e-5) {
        return Err("the GPU is off by more than 1e-5".into());
    }
    println!("within 1e-5: OK");
    Ok(())
}
