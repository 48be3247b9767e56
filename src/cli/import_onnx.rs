//! `gru-wgpu import-onnx MODEL.onnx OUT.safetensors [--node NAME]`

use std::path::PathBuf;
use std::process::ExitCode;

use gru_wgpu::onnx::OnnxGru;

#[derive(clap::Args)]
pub struct ImportOnnxArgs {
    /// The ONNX model (weights inside the file, as initializers).
    model: PathBuf,
    /// Where to write the parameters (safetensors, float32).
    out: PathBuf,
    /// The GRU node to import, where the model has several.
    #[arg(long)]
    node: Option<String>,
}

/// Exit status 0, or 2 when the model cannot be imported.
pub fn run(args: &ImportOnnxArgs) -> ExitCode {
    let result = OnnxGru::load(&args.model, args.node.as_deref()).and_then(|gru| {
        let params = gru.params()?;
        params.save_safetensors(&args.out)?;
        Ok((gru, params))
    });
    match result {
        Ok((gru, params)) => {
            let c = params.config();
            println!(
                "{}: GRU node `{}` -> {}: input_size={} hidden_size={} bidirectional={} batch_first={} bias={} reset_form={}",
                args.model.display(),
                gru_wgpu::error::untrusted(&gru.name),
                args.out.display(),
                c.input_size,
                c.hidden_size,
                c.is_bidirectional(),
                c.batch_first,
                c.bias,
                c.reset_form.name()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
