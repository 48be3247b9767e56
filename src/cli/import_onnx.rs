//! `gru-wgpu import-onnx MODEL.onnx OUT.safetensors [--node NAME]`

use std::path::PathBuf;
use std::process::ExitCode;

use gru_wgpu::onnx::OnnxStack;

#[derive(clap::Args)]
pub struct ImportOnnxArgs {
    /// The ONNX model: its GRU nodes (one, or one a layer of a stack, as
    /// torch.onnx.export writes them) with their weights as initializers,
    /// inside the file or in external data files beside it.
    model: PathBuf,
    /// Where to write the parameters (safetensors, float32).
    out: PathBuf,
    /// Import only the GRU node of this name (one layer), even where the
    /// model's GRU nodes make a stack.
    #[arg(long)]
    node: Option<String>,
}

/// Exit status 0, or 2 when the model cannot be imported. Prints what it
/// found and decided: the layers, how they are joined, the direction,
/// `batch_first` and why, the initial state, the lengths input, external
/// data, and the exporter whose pattern the graph has.
pub fn run(args: &ImportOnnxArgs) -> ExitCode {
    let result = OnnxStack::load(&args.model, args.node.as_deref()).and_then(|stack| {
        let params = stack.params()?;
        params.save_safetensors(&args.out)?;
        Ok((stack, params))
    });
    match result {
        Ok((stack, params)) => {
            let c = params.config();
            let nodes: Vec<String> = stack
                .report
                .nodes
                .iter()
                .map(|n| format!("`{}`", gru_wgpu::error::untrusted(n)))
                .collect();
            println!(
                "{}: GRU node{} {} -> {}",
                args.model.display(),
                if nodes.len() == 1 { "" } else { "s" },
                nodes.join(", "),
                args.out.display(),
            );
            for line in stack.describe() {
                println!("  {line}");
            }
            println!(
                "  config: input_size={} hidden_size={} num_layers={} bidirectional={} batch_first={} bias={} reset_form={}",
                c.input_size,
                c.hidden_size,
                c.num_layers,
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
