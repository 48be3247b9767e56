//! The `gru-wgpu` command line.

fn main() {
    println!("gru-wgpu: the GPU path is not built yet; run `cargo test --release` for the CPU reference suite.");
}
