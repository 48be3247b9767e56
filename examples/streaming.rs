//! Streaming inference: frames arriving a chunk at a time, each layer's
//! state kept on the device between chunks, and the result bit for bit the
//! model's own forward over the whole sequence, with the default settings.
//!
//! `cargo run --release --example streaming`. `GpuStream::new` takes the
//! plan the model measured for chunks of one frame and, where the model
//! has no plan of its own for every length, forces it on the model: the
//! model's whole call then runs the same plan and gives the same bits.

use gru_wgpu::gpu::{ForwardOptions, GpuContext, GpuGru, GpuStream};
use gru_wgpu::ndarray::{concatenate, s, Array3, Axis};
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
    let ctx = GpuContext::new()?; // default settings: plans measured and cached
    let config = GruConfig::new(16, 32).layers(2); // unidirectional: it can stream
    let model = GpuGru::new(&ctx, &GruParams::<f32>::init(&config, 5)?)?;
    let (t, b) = (40, 2); // 40 frames of 2 independent streams
    let x = Array3::from_shape_fn((t, b, 16), |(t, b, i)| {
        ((t * 13 + b * 5 + i) as f32 * 0.21).sin()
    });

    let mut stream = GpuStream::new(&model, b)?;
    println!(
        "stream plan {} (forced on the model: {})",
        stream.plan(),
        stream.pinned_model()
    );
    // Chunks of 1, 3, 8, 4 and the remaining 24 frames, as they arrive.
    let mut outputs = Vec::new();
    let mut at = 0;
    for len in [1, 3, 8, 4, 24] {
        let chunk = x.slice(s![at..at + len, .., ..]); // (T_c, B, I)
        outputs.push(stream.push(chunk)?); // (T_c, B, H)
        at += len;
    }
    let state = stream.state()?; // (L, B, H), read back only when asked
    let streamed = concatenate(
        Axis(0),
        &outputs.iter().map(|o| o.view()).collect::<Vec<_>>(),
    )?;

    // The model's own forward over all 40 frames.
    let whole = model.forward(x.view(), ForwardOptions::default())?;
    let same =
        |a: &Array3<f32>, b: &Array3<f32>| a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits());
    if !same(&streamed, &whole.output) || !same(&state, &whole.h_n) {
        return Err("the stream and the whole forward differ".into());
    }
    println!(
        "{} frames in 5 chunks on {}: output and state bit for bit the whole forward's",
        stream.frames_seen(),
        ctx.adapter()
    );
    Ok(())
}
