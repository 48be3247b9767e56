//! The subcommands of the command line.

pub mod bench;
pub mod main_job;
pub mod verify;

use gru_wgpu::gpu::{ContextOptions, GpuContext};

/// Opens the GPU the user asked for.
pub fn open_gpu(adapter: Option<&str>) -> gru_wgpu::Result<GpuContext> {
    GpuContext::with_options(ContextOptions {
        adapter: adapter.map(String::from),
        ..Default::default()
    })
}
