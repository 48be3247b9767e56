//! Importing an ONNX model: the `GRU` node of an `.onnx` file as parameters
//! in PyTorch's names (what `gru-wgpu import-onnx` writes), run on the GPU
//! against onnxruntime's own output for the same input.
//!
//! `cargo run --release --example onnx [MODEL.onnx CASE.safetensors]` (by
//! default the model `tests/data/golden-extra/onnx_fwd_lbr0.onnx`, a GRU
//! with `linear_before_reset = 0`, and the onnxruntime case beside it: its
//! `X`, `initial_h` and `Y`).

use gru_wgpu::gpu::{ForwardOptions, GpuContext, GpuGru};
use gru_wgpu::onnx::{OnnxCase, OnnxGru};
use gru_wgpu::real::rel_error;
use gru_wgpu::{GruParams, ResetForm};

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
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/golden-extra");
    let mut args = std::env::args().skip(1);
    let model_path = args.next().unwrap_or(format!("{data}/onnx_fwd_lbr0.onnx"));
    let case_path = args
        .next()
        .unwrap_or(format!("{data}/onnx_fwd_lbr0.safetensors"));

    // The GRU node (`None`: the model's only one; name it where there are several).
    let node = OnnxGru::load(&model_path, None)?;
    let params = node.params()?; // gates reordered to PyTorch's r, z, n
    let config = params.config().clone();
    println!(
        "{model_path}: input_size={} hidden_size={} bidirectional={} reset_form={}",
        config.input_size,
        config.hidden_size,
        config.is_bidirectional(),
        config.reset_form.name()
    );
    // What `import-onnx` writes, read back as any parameter file is: the
    // configuration (the reset-before form included) is in its metadata.
    let file = std::env::temp_dir().join(format!(
        "gru-wgpu-onnx-example-{}.safetensors",
        std::process::id()
    ));
    params.save_safetensors(&file)?;
    let stored = GruParams::<f32>::config_in_safetensors(&file)?;
    let params = GruParams::<f32>::load_safetensors(&file, &stored)?;
    std::fs::remove_file(&file)?;
    if config.reset_form == ResetForm::Before {
        println!("linear_before_reset = 0: the reset-before form,");
        println!("  n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)");
    }

    if config.is_bidirectional() {
        return Err("this example compares the output of a one-direction model".into());
    }

    // onnxruntime's X, initial_h and Y for this model.
    let case = OnnxCase::load(&case_path)?;
    let ctx = GpuContext::new()?;
    let model = GpuGru::new(&ctx, &params)?;
    let opts = ForwardOptions::default()
        .h0(case.initial_h.view())
        .lengths(case.lengths.clone());
    let f = model.forward(case.x.view(), opts)?;
    // Y is (T, D, B, H), nn.GRU's output (T, B, D·H): the same order for D = 1.
    let e_y = rel_error(f.output.iter().map(|&v| v.into()), &case.y);
    let e_h = rel_error(f.h_n.iter().map(|&v| v.into()), &case.y_h);
    println!(
        "{}: Y relative error {e_y:.2e}, Y_h {e_h:.2e} against onnxruntime (float32)",
        ctx.adapter()
    );
    if [e_y, e_h].iter().any(|e| e.is_nan() || *e > 1e-5) {
        return Err("the GPU is off by more than 1e-5".into());
    }
    println!("within 1e-5: OK");
    Ok(())
}
