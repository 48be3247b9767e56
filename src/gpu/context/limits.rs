//! What a context asks of its device: the limits profile, the limits the
//! kernels need, and which product kernels it uses.

use crate::gpu::context::ContextOptions;
use crate::gpu::ops::windows::windows_fit;

/// Which limits a context asks the device for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LimitsProfile {
    /// The adapter's own limits.
    #[default]
    Adapter,
    /// `wgpu::Limits::default()`: WebGPU's default limits (256-byte uniform
    /// and storage offset alignment, 16 KiB of workgroup memory, 256
    /// invocations per workgroup, 128 MiB storage bindings). The window
    /// kernels, which need 32-byte uniform offsets, do not run under it.
    WebGpu,
}

impl LimitsProfile {
    /// `adapter` or `webgpu` (its `Display`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            LimitsProfile::Adapter => "adapter",
            LimitsProfile::WebGpu => "webgpu",
        }
    }

    test_hook! {
        /// The limits this profile asks for, on an adapter with `adapter` limits.
        pub fn limits(self, adapter: &wgpu::Limits) -> wgpu::Limits {
            match self {
                LimitsProfile::Adapter => adapter.clone(),
                LimitsProfile::WebGpu => wgpu::Limits::default(),
            }
        }
    }
}

test_hook! {
    /// Whether the window kernels can run on a device with these limits
    /// (uniform bindings of 64 KiB at offsets aligned to at most 32 bytes), and
    /// why not where they cannot.
    pub fn window_kernels_fit(limits: &wgpu::Limits) -> std::result::Result<(), String> {
        if windows_fit(limits) {
            Ok(())
        } else {
            Err(format!(
                "the window kernels need uniform bindings of 64 KiB at 32-byte offsets; \
                 the device allows {} bytes at {}-byte offsets",
                limits.max_uniform_buffer_binding_size, limits.min_uniform_buffer_offset_alignment
            ))
        }
    }
}

/// The kernels that compute the matrix products (the input projections, the
/// recurrent products, the gradients).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Products {
    /// Storage-buffer kernels with register tiles: `gemm.wgsl`'s `main`, the
    /// recurrent product inside the fused steps. Suited to GPUs.
    Storage,
    /// Uniform-buffer windows: `windows.wgsl` on the chunked layout, for the
    /// recurrent products too. Suited to CPU adapters such as llvmpipe,
    /// where storage loads in loops are slow.
    Windows,
}

/// The product kernels `options` force (only the tests can).
pub(super) fn forced_products(options: &ContextOptions) -> Option<Products> {
    #[cfg(feature = "test-hooks")]
    return options.products;
    #[cfg(not(feature = "test-hooks"))]
    {
        let _ = options;
        None
    }
}

/// The limits of `limits` below what the kernels need, each as `name: has
/// N, needs at least M` (`windows`: the window kernels' too).
pub(super) fn missing_limits(limits: &wgpu::Limits, windows: bool) -> Vec<String> {
    let uniforms = if windows { 3 } else { 1 };
    let need: [(&str, u64, u64); 8] = [
        (
            "max_compute_workgroup_size_x",
            limits.max_compute_workgroup_size_x.into(),
            64,
        ),
        (
            "max_compute_invocations_per_workgroup",
            limits.max_compute_invocations_per_workgroup.into(),
            64,
        ),
        (
            "max_compute_workgroup_storage_size",
            limits.max_compute_workgroup_storage_size.into(),
            12288,
        ),
        (
            "max_storage_buffers_per_shader_stage",
            limits.max_storage_buffers_per_shader_stage.into(),
            8,
        ),
        (
            "max_bindings_per_bind_group",
            limits.max_bindings_per_bind_group.into(),
            9,
        ),
        (
            "max_uniform_buffers_per_shader_stage",
            limits.max_uniform_buffers_per_shader_stage.into(),
            uniforms,
        ),
        (
            "max_dynamic_uniform_buffers_per_pipeline_layout",
            limits
                .max_dynamic_uniform_buffers_per_pipeline_layout
                .into(),
            uniforms,
        ),
        (
            "max_compute_workgroups_per_dimension",
            limits.max_compute_workgroups_per_dimension.into(),
            1,
        ),
    ];
    need.iter()
        .filter(|(_, has, min)| has < min)
        .map(|(name, has, min)| format!("{name}: has {has}, needs at least {min}"))
        .collect()
}
