//! The subcommands of the command line.

pub mod bench;
pub mod main_job;
pub mod train;
pub mod verify;

use gru_wgpu::gpu::{ContextOptions, GpuContext};

/// Opens the GPU the user asked for.
pub fn open_gpu(adapter: Option<&str>) -> gru_wgpu::Result<GpuContext> {
    open_gpu_with(adapter, None)
}

/// Opens the GPU the user asked for, with the product kernels forced or not.
pub fn open_gpu_with(
    adapter: Option<&str>,
    products: Option<gru_wgpu::gpu::Products>,
) -> gru_wgpu::Result<GpuContext> {
    GpuContext::with_options(ContextOptions {
        adapter: adapter.map(String::from),
        products,
        ..Default::default()
    })
}
