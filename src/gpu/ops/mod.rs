//! The op families: one module per shader of `shaders/`, named like it, each
//! holding its parameter struct (`#[repr(C)]`, the mirror of the shader's
//! `Params`), the specs of its kernels, and host functions of the shape
//! `encode_x(rec, &XDescription, buffers...)` that record dispatches into the
//! caller's recorder (`gpu::recorder`). The caller owns the
//! encoder, so a whole call is one submission.
//!
//! - `common`: what `common.wgsl` defines for several shaders (the step parameters);
//! - `gemm`: matrix products on storage buffers, split along K (and
//!   `gemm_subgroup.wgsl`, the kernel that needs subgroup operations);
//! - `windows`: the same products through uniform windows (CPU adapters),
//!   with the chunked layout they read;
//! - `gru_forward`, `gru_backward`: the recurrence steps and the persistent kernels;
//! - `reduce`: column sums;
//! - `util`: elementwise data movement (permute, transpose, dropout, add);
//! - `optim`: optimiser steps and gradient clipping;
//! - `head`: the regression head of the training example.

pub(crate) mod common;
pub(crate) mod gemm;
pub(crate) mod gru_backward;
pub(crate) mod gru_forward;
pub(crate) mod head;
pub(crate) mod optim;
pub(crate) mod reduce;
pub(crate) mod steps;
pub(crate) mod util;
pub(crate) mod windows;

/// Every shader file, as it is on disk (without `common.wgsl`).
#[cfg(feature = "test-hooks")]
pub const SHADERS: [(&str, &str); 9] = [
    ("gemm.wgsl", gemm::SOURCE),
    ("gemm_subgroup.wgsl", gemm::SUBGROUP_SOURCE),
    ("windows.wgsl", windows::SOURCE),
    ("gru_forward.wgsl", gru_forward::SOURCE),
    ("gru_backward.wgsl", gru_backward::SOURCE),
    ("reduce.wgsl", reduce::SOURCE),
    ("util.wgsl", util::SOURCE),
    ("optim.wgsl", optim::SOURCE),
    ("head.wgsl", head::SOURCE),
];

/// The source of a shader as compiled: `common.wgsl` followed by the file.
#[cfg(feature = "test-hooks")]
pub fn shader_source(file: &str) -> Option<String> {
    shader_source_typed(file, &[])
}

/// [`shader_source`] with the loops marked `// unroll` left as written (what
/// a device that does not unroll compiles; the shared parts appear in it as
/// they are on disk).
#[cfg(feature = "test-hooks")]
pub fn shader_source_rolled(file: &str) -> Option<String> {
    SHADERS
        .iter()
        .find(|(f, _)| *f == file)
        .map(|(f, src)| crate::gpu::pipeline::compose_for(f, src, &[], false))
}

/// [`shader_source`] with the storage types `types` (see [`KernelVariant::types`]).
#[cfg(feature = "test-hooks")]
pub fn shader_source_typed(file: &str, types: &[(&str, &str)]) -> Option<String> {
    SHADERS
        .iter()
        .find(|(f, _)| *f == file)
        .map(|(f, src)| crate::gpu::pipeline::compose(f, src, types))
}

#[cfg(feature = "test-hooks")]
pub use crate::gpu::pipeline::Binding;
#[cfg(feature = "test-hooks")]
use crate::gpu::pipeline::KernelSpec;

/// A pipeline the crate can build: a shader, one of its entry points, the
/// values of the override constants it is built with, and the bindings of its
/// bind group layout (group 0). See [`kernel_variants`].
#[cfg(feature = "test-hooks")]
#[derive(Clone, Debug)]
pub struct KernelVariant {
    /// The shader file (compiled after `common.wgsl`, see [`shader_source`]).
    pub file: &'static str,
    /// The entry point.
    pub entry: &'static str,
    /// The override constants, as the pipeline passes them.
    pub constants: &'static [(&'static str, f64)],
    /// `(binding, kind)` of group 0, as the bind group layout declares them.
    pub bindings: &'static [(u32, Binding)],
    /// The storage types other than f32 (`("S", "f16")`, ...: the WGSL
    /// aliases the host defines before the shader); empty for f32.
    pub types: &'static [(&'static str, &'static str)],
}

/// Every pipeline the crate can dispatch, from the same `KernelSpec` values
/// the host functions use (each op module's `SPECS`), in module order. The
/// back-end test (`tests/backends.rs`) translates each of them for Metal,
/// DX12 and Vulkan.
#[cfg(feature = "test-hooks")]
pub fn kernel_variants() -> Vec<KernelVariant> {
    let steps: Vec<KernelSpec> = steps::StepKernel::all()
        .filter(|k| !k.f16)
        .map(|k| *k.spec())
        .collect();
    [
        gemm::SPECS,
        windows::SPECS,
        &steps,
        reduce::SPECS,
        util::SPECS,
        optim::SPECS,
        head::SPECS,
    ]
    .iter()
    .flat_map(|specs| specs.iter())
    .map(variant)
    .collect()
}

#[cfg(feature = "test-hooks")]
fn variant(s: &KernelSpec) -> KernelVariant {
    KernelVariant {
        file: s.file,
        entry: s.entry,
        constants: s.constants,
        bindings: s.bindings,
        types: s.types,
    }
}

/// The pipelines of models in f16 (`Precision::F16`): each variant of
/// [`kernel_variants`] whose shader reads or writes an f16 model's storage,
/// with each set of storage types the host builds it with (the step
/// kernels' from their descriptions, [`steps::StepKernel`]).
#[cfg(feature = "test-hooks")]
pub fn kernel_variants_f16() -> Vec<KernelVariant> {
    use crate::gpu::pipeline::types;
    let others = kernel_variants().into_iter().flat_map(|v| {
        let sets: Vec<&'static [(&'static str, &'static str)]> = match v.file {
            "gemm.wgsl" | "gemm_subgroup.wgsl" => {
                vec![types::gemm(false, true), types::gemm(true, true)]
            }
            "windows.wgsl" => vec![types::gemm(false, true)],
            "util.wgsl" => vec![
                types::io(true, true),
                types::io(false, true),
                types::io(true, false),
            ],
            _ => vec![],
        };
        sets.into_iter().map(move |t| KernelVariant {
            types: t,
            ..v.clone()
        })
    });
    let steps = steps::StepKernel::all()
        .filter(|k| k.f16)
        .map(|k| variant(k.spec()));
    others.chain(steps).collect()
}

/// The layout of a parameter struct on the Rust side, to check against the
/// shader's (see `tests/params_layout.rs`).
#[cfg(feature = "test-hooks")]
#[derive(Clone, Debug)]
pub struct ParamsLayout {
    /// The shader file.
    pub shader: &'static str,
    /// The struct's name in the shader.
    pub wgsl_struct: &'static str,
    /// The Rust struct's name.
    pub rust_struct: &'static str,
    /// `size_of` the Rust struct.
    pub size: usize,
    /// Field names and byte offsets, in declaration order.
    pub fields: &'static [(&'static str, usize)],
}

/// Every parameter struct, with the shader and WGSL struct it mirrors.
#[cfg(feature = "test-hooks")]
pub fn params_layouts() -> Vec<ParamsLayout> {
    fn of<P: Params>(shader: &'static str, wgsl_struct: &'static str) -> ParamsLayout {
        ParamsLayout {
            shader,
            wgsl_struct,
            rust_struct: P::NAME,
            size: std::mem::size_of::<P>(),
            fields: P::FIELDS,
        }
    }
    vec![
        of::<gemm::GemmParams>("gemm.wgsl", "Params"),
        of::<gemm::GemmParams>("gemm_subgroup.wgsl", "Params"),
        of::<windows::WinParams>("windows.wgsl", "Params"),
        of::<common::StepParams>("gru_forward.wgsl", "StepParams"),
        of::<common::StepParams>("gru_backward.wgsl", "StepParams"),
        of::<reduce::ReduceParams>("reduce.wgsl", "Params"),
        of::<util::UtilParams>("util.wgsl", "Params"),
        of::<optim::OptimParams>("optim.wgsl", "Params"),
        of::<head::HeadParams>("head.wgsl", "Params"),
    ]
}

/// A parameter struct: its name and its fields with their offsets.
#[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
pub(crate) trait Params: bytemuck::Pod {
    const NAME: &'static str;
    const FIELDS: &'static [(&'static str, usize)];
}

/// Declares a parameter struct, `#[repr(C)]` and `Pod`, with its field list
/// ([`Params`]), so that a test can hold it against the shader.
macro_rules! params_struct {
    ($(#[$m:meta])* $name:ident { $($f:ident: $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
        pub(crate) struct $name {
            $(pub(crate) $f: $t),*
        }

        impl $crate::gpu::ops::Params for $name {
            const NAME: &'static str = stringify!($name);
            const FIELDS: &'static [(&'static str, usize)] =
                &[$((stringify!($f), std::mem::offset_of!($name, $f))),*];
        }
    };
}
pub(crate) use params_struct;
