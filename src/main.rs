//! The `gru-wgpu` command line.
//!
//! Its machinery lives here, in the binary, not in the library:
//! `bench` (throughput and the GEMM kernels alone), `selftest` (the
//! GPU-vs-CPU suite), `train` (the adding-problem trainer, shared with
//! `examples/adding.rs`) and `check` (one random case, GPU against the CPU
//! reference, shared with the tests' helpers).

mod bench;
// Shared with the tests' helpers (`tests/common`), some of which the
// binary does not use.
#[path = "../tests/common/check.rs"]
#[allow(dead_code)]
mod check;
mod cli;
mod selftest;
#[path = "../examples/adding/trainer.rs"]
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "gru-wgpu",
    version,
    about = "PyTorch-exact GRU forward and backward on wgpu"
)]
struct Cli {
    /// Adapter to use: a substring of its name or a backend (vulkan, metal, dx12).
    /// Default: the environment variable GRU_WGPU_ADAPTER, else the high-performance adapter.
    #[arg(long, global = true)]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check reference files (PyTorch-computed, format gru-golden-v1) on the CPU reference and the GPU.
    Verify(cli::verify::VerifyArgs),
    /// Read the GRU node of an ONNX model and write its parameters in
    /// PyTorch's names and order, with the configuration in the metadata.
    ImportOnnx(cli::import_onnx::ImportOnnxArgs),
    /// Measure throughput (GPU and CPU reference), optionally beside PyTorch's.
    Bench(cli::bench::BenchArgs),
    /// Measure the GEMM kernels alone (C = A·Bᵀ), checked against the CPU.
    BenchGemm(cli::bench::GemmArgs),
    /// Train a GRU on a task (the adding problem), entirely on the GPU.
    Train(cli::train::TrainArgs),
    /// Time every candidate plan (GEMM kernel and time loop) of a shape on
    /// this adapter, mark the fastest and keep it in the plan cache.
    Tune(cli::tune::TuneArgs),
    /// List the adapters wgpu can see.
    Adapters,
    /// Check this GPU and driver: PyTorch cases and random configurations on
    /// every kernel path, against the CPU reference (exit 1 on a failure).
    Selftest(cli::selftest::SelftestArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Verify(args)) => cli::verify::run(&args, cli.adapter.as_deref()),
        Some(Command::ImportOnnx(args)) => cli::import_onnx::run(&args),
        Some(Command::Bench(args)) => cli::bench::run(&args, cli.adapter.as_deref()),
        Some(Command::BenchGemm(args)) => cli::bench::run_gemm(&args, cli.adapter.as_deref()),
        Some(Command::Train(args)) => cli::train::run(&args, cli.adapter.as_deref()),
        Some(Command::Tune(args)) => cli::tune::run(&args, cli.adapter.as_deref()),
        Some(Command::Selftest(args)) => cli::selftest::run(&args, cli.adapter.as_deref()),
        Some(Command::Adapters) => {
            let all = gru_wgpu::gpu::list_adapters();
            if all.is_empty() {
                println!("no adapters found");
            }
            for a in all {
                println!("{a}");
            }
            ExitCode::SUCCESS
        }
        None => cli::main_job::run(cli.adapter.as_deref()),
    }
}
