//! The SPIR-V wgpu 30's Vulkan back end makes of one of the crate's
//! pipelines (`kernel_variants`): the shader composed and validated as
//! wgpu-core does, the override constants applied by naga, and naga's SPIR-V
//! writer with the options `wgpu-hal/src/vulkan` passes it. Shared by the
//! back-end test (`tests/backends.rs`, which also translates for Metal and
//! DX12) and `kernel-stats` (`tools/kernel-stats`, which compiles the SPIR-V
//! with AMD's compiler), each including this file by `#[path]`.

use gru_wgpu::gpu::ops::{shader_source_typed, Binding, KernelVariant};
use naga::back::spv;
use naga::proc::{BoundsCheckPolicies, BoundsCheckPolicy};
use naga::valid::{ModuleInfo, ValidationFlags, Validator};
use naga::{Module, ResourceBinding, ShaderStage};

/// The crate's zero-initialisation of workgroup memory (`src/gpu/pipeline.rs`).
pub const ZERO_INIT_WORKGROUP: bool = false;

/// The shader `file` composed with the storage types `types`, parsed and
/// validated as wgpu-core validates it; where a type is f16, with the
/// SHADER_F16 feature's capabilities too.
pub fn parse_and_validate_typed(file: &str, types: &[(&str, &str)]) -> (Module, ModuleInfo) {
    let src = shader_source_typed(file, types).unwrap();
    let module = naga::front::wgsl::parse_str(&src)
        .unwrap_or_else(|e| panic!("{file}: {}", e.emit_to_string(&src)));
    // As wgpu-core: the capabilities of the features the crate may request
    // (timestamp queries; subgroup operations, for the one shader that
    // needs them) on an adapter with no downlevel flags.
    let mut features =
        wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
    if needs_subgroups(file) {
        features |= wgpu::Features::SUBGROUP;
    }
    if is_f16(types) {
        features |= wgpu::Features::SHADER_F16;
    }
    let caps =
        wgpu_naga_bridge::features_to_naga_capabilities(features, wgpu::DownlevelFlags::empty());
    let info = Validator::new(ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{file}: {}", e.emit_to_string(&src)));
    (module, info)
}

/// Whether a variant has f16 storage: it is compiled only where the device
/// has SHADER_F16, which wgpu offers on Metal (every MSL version), on DX12
/// from shader model 6.2 (`dx12/adapter.rs`), and on Vulkan with the
/// `Float16` capability (`vulkan/adapter.rs`).
pub fn is_f16(types: &[(&str, &str)]) -> bool {
    types.iter().any(|&(_, t)| t == "f16")
}

/// Whether a shader uses subgroup operations: it is compiled only where the
/// device has wgpu's SUBGROUP feature, which wgpu offers with SPIR-V 1.3 and
/// later (Vulkan 1.1) and shader model 6.0 and later (DX12), so it is not
/// translated for SPIR-V 1.0 or shader model 5.1.
pub fn needs_subgroups(file: &str) -> bool {
    file == "gemm_subgroup.wgsl"
}

/// The bindings in the order of the bind group layout (wgpu-core sorts the
/// entries by binding number).
pub fn sorted_bindings(v: &KernelVariant) -> Vec<(u32, Binding)> {
    let mut b = v.bindings.to_vec();
    b.sort_by_key(|e| e.0);
    b
}

pub fn rb(binding: u32) -> ResourceBinding {
    ResourceBinding { group: 0, binding }
}

/// `vulkan/adapter.rs` (`open`) and `vulkan/device.rs` (`compile_stage`).
pub fn spv_options(v: &KernelVariant, lang_version: (u8, u8)) -> spv::Options<'static> {
    let binding_map: spv::BindingMap = sorted_bindings(v)
        .iter()
        .enumerate()
        .map(|(i, &(binding, _))| {
            (
                rb(binding),
                spv::BindingInfo {
                    descriptor_set: 0,
                    binding: i as u32,
                    binding_array_size: None,
                },
            )
        })
        .collect();
    let capabilities = [
        spv::Capability::Shader,
        spv::Capability::Matrix,
        spv::Capability::Sampled1D,
        spv::Capability::Image1D,
        spv::Capability::ImageQuery,
        spv::Capability::DerivativeControl,
        spv::Capability::StorageImageExtendedFormats,
    ];
    // `vulkan/adapter.rs`: the capabilities of the SUBGROUP feature.
    let subgroup = [
        spv::Capability::GroupNonUniform,
        spv::Capability::GroupNonUniformVote,
        spv::Capability::GroupNonUniformArithmetic,
        spv::Capability::GroupNonUniformBallot,
        spv::Capability::GroupNonUniformShuffle,
        spv::Capability::GroupNonUniformShuffleRelative,
        spv::Capability::GroupNonUniformQuad,
    ];
    let mut capabilities: Vec<spv::Capability> = if needs_subgroups(v.file) {
        capabilities.into_iter().chain(subgroup).collect()
    } else {
        capabilities.to_vec()
    };
    // `vulkan/adapter.rs`: the capability of the SHADER_F16 feature.
    if is_f16(v.types) {
        capabilities.push(spv::Capability::Float16);
    }
    let limits = wgpu::Limits::default();
    spv::Options {
        lang_version,
        flags: spv::WriterFlags::LABEL_VARYINGS | spv::WriterFlags::FORCE_POINT_SIZE,
        fake_missing_bindings: false,
        binding_map,
        capabilities: Some(capabilities.into_iter().collect()),
        // `Restrict` where the device lacks robust buffer access 2 (the
        // policy with the most code in it).
        bounds_check_policies: BoundsCheckPolicies {
            index: BoundsCheckPolicy::Restrict,
            buffer: BoundsCheckPolicy::Restrict,
            image_load: BoundsCheckPolicy::Restrict,
            binding_array: BoundsCheckPolicy::Unchecked,
        },
        zero_initialize_workgroup_memory: if ZERO_INIT_WORKGROUP {
            spv::ZeroInitializeWorkgroupMemoryMode::Polyfill
        } else {
            spv::ZeroInitializeWorkgroupMemoryMode::None
        },
        force_loop_bounding: true,
        ray_query_initialization_tracking: true,
        trace_ray_argument_validation: true,
        use_storage_input_output_16: false,
        debug_info: None,
        task_dispatch_limits: Some(naga::back::TaskDispatchLimits {
            max_mesh_workgroups_per_dim: limits.max_mesh_workgroups_per_dimension,
            max_mesh_workgroups_total: limits.max_mesh_workgroup_total_count,
        }),
        mesh_shader_primitive_indices_clamp: true,
        emit_int_div_checks: true,
    }
}

pub fn describe(v: &KernelVariant) -> String {
    let c: Vec<String> = v
        .constants
        .iter()
        .map(|(n, x)| format!("{n}={x}"))
        .chain(v.types.iter().map(|(n, t)| format!("{n}:{t}")))
        .collect();
    format!("{}:{}({})", v.file, v.entry, c.join(","))
}

/// The SPIR-V (version `lang`) of variant `v` of `module`: its override
/// constants applied for its one entry point, then naga's writer with
/// wgpu's options.
pub fn spirv(
    v: &KernelVariant,
    module: &Module,
    info: &ModuleInfo,
    lang: (u8, u8),
) -> Result<Vec<u32>, String> {
    let (module, info) = with_overrides(v, module, info)?;
    let pipeline = spv::PipelineOptions {
        shader_stage: ShaderStage::Compute,
        entry_point: v.entry.to_string(),
    };
    spv::write_vec(&module, &info, &spv_options(v, lang), Some(&pipeline))
        .map_err(|e| format!("{}: SPIR-V {lang:?}: {e:?}", describe(v)))
}

/// `module` with the override constants of `v` applied for its entry point
/// (`naga::back::pipeline_constants::process_overrides`, as every wgpu back
/// end does first).
pub fn with_overrides(
    v: &KernelVariant,
    module: &Module,
    info: &ModuleInfo,
) -> Result<(Module, ModuleInfo), String> {
    let mut constants = naga::back::PipelineConstants::default();
    for &(n, x) in v.constants {
        constants.insert(n.to_string(), x);
    }
    naga::back::pipeline_constants::process_overrides(
        module,
        info,
        Some((ShaderStage::Compute, v.entry)),
        &constants,
    )
    .map(|(m, i)| (m.into_owned(), i.into_owned()))
    .map_err(|e| format!("{}: process_overrides: {e:?}", describe(v)))
}
