//! Metal and DX12 without a Mac or Windows: every pipeline the crate can
//! build (`kernel_variants`: each shader, entry point and set of override
//! constants) goes through naga's MSL, HLSL and SPIR-V back ends with the
//! options wgpu 30 passes them, and any error fails the test. A shader that
//! cannot translate for a back end is a bug, not a skip. The list is checked
//! complete against the shaders' entry points, the op modules' `KernelSpec`
//! constants, and the pipelines the GRU builds on the adapter. The
//! pipelines of f16 models (`kernel_variants_f16`) go through the same back
//! ends wherever wgpu offers SHADER_F16.
//!
//! What wgpu does, and where (wgpu-hal 30 and wgpu-core 30):
//! - validation: `wgpu-core/src/device/resource.rs` (`create_shader_module`)
//!   validates with `ValidationFlags::all()` and the capabilities of
//!   `wgpu_naga_bridge::features_to_naga_capabilities(features, downlevel)`;
//!   the only feature the crate asks for that maps to a capability is
//!   SUBGROUP, used by one shader (`gemm_subgroup.wgsl`, validated with it,
//!   the others without), and the downlevel flags are taken as empty (the
//!   fewest capabilities); the subgroup shader is not translated where wgpu
//!   does not offer SUBGROUP (SPIR-V 1.0, shader model 5.1);
//! - every back end first applies the override constants with
//!   `naga::back::pipeline_constants::process_overrides`, for the one entry
//!   point; `wgpu::Device::create_shader_module` gives
//!   `ShaderRuntimeChecks::checked()` (bounds checks, loop bounding and
//!   integer-division checks on), and the crate passes
//!   `zero_initialize_workgroup_memory: false` (`src/gpu/pipeline.rs`);
//! - Metal: `wgpu-hal/src/metal/device.rs` (`load_shader` for the options,
//!   `create_pipeline_layout` for the per-entry-point resources: one buffer
//!   slot per binding in order, `mutable` for read-write storage, then the
//!   sizes buffer, since storage buffers are bound), with every MSL version
//!   `metal/adapter.rs` can pick, 1.0 to 4.0;
//! - DX12: `wgpu-hal/src/dx12/device.rs` (`create_pipeline_layout` for the
//!   options and the binding map: read-only storage to SRV registers,
//!   read-write storage to UAV registers, dynamic uniforms to root CBVs with
//!   `restrict_indexing`; `load_shader` for the per-stage overrides), with
//!   shader model 5.1 (FXC) and 6.0 to 6.9 (DXC), as `dx12/adapter.rs` picks;
//! - Vulkan: `wgpu-hal/src/vulkan/adapter.rs` (`device_from_raw`: the
//!   `spv::Options`: SPIR-V 1.0, 1.3, 1.5 or 1.6 by the Vulkan version, the
//!   capabilities always available, `Restrict` bounds checks) and
//!   `vulkan/device.rs` (`compile_stage`; `create_bind_group_layout` and
//!   `create_pipeline_layout`: the binding map).

mod common;
#[path = "common/spirv.rs"]
#[allow(dead_code)]
mod spirv;

use std::collections::{BTreeMap, BTreeSet};

use gru_wgpu::gpu::ops::{kernel_variants, kernel_variants_f16, Binding, KernelVariant, SHADERS};
use naga::back::{hlsl, msl, spv};
use naga::proc::{BoundsCheckPolicies, BoundsCheckPolicy};
use naga::valid::ModuleInfo;
use naga::{Module, ShaderStage};
use spirv::{
    describe, is_f16, needs_subgroups, parse_and_validate_typed, rb, sorted_bindings, spv_options,
    with_overrides, ZERO_INIT_WORKGROUP,
};

/// Every MSL version wgpu's Metal back end can ask for.
const MSL_VERSIONS: [(u8, u8); 12] = [
    (1, 0),
    (1, 1),
    (1, 2),
    (2, 0),
    (2, 1),
    (2, 2),
    (2, 3),
    (2, 4),
    (3, 0),
    (3, 1),
    (3, 2),
    (4, 0),
];

/// Every shader model wgpu's DX12 back end can ask for.
const SHADER_MODELS: [hlsl::ShaderModel; 11] = [
    hlsl::ShaderModel::V5_1,
    hlsl::ShaderModel::V6_0,
    hlsl::ShaderModel::V6_1,
    hlsl::ShaderModel::V6_2,
    hlsl::ShaderModel::V6_3,
    hlsl::ShaderModel::V6_4,
    hlsl::ShaderModel::V6_5,
    hlsl::ShaderModel::V6_6,
    hlsl::ShaderModel::V6_7,
    hlsl::ShaderModel::V6_8,
    hlsl::ShaderModel::V6_9,
];

/// Every SPIR-V version wgpu's Vulkan back end can ask for.
const SPV_VERSIONS: [(u8, u8); 4] = [(1, 0), (1, 3), (1, 5), (1, 6)];

fn parse_and_validate(file: &str) -> (Module, ModuleInfo) {
    parse_and_validate_typed(file, &[])
}

/// `metal/device.rs`, `create_pipeline_layout` and `load_shader`.
fn msl_options(v: &KernelVariant, lang_version: (u8, u8)) -> msl::Options {
    let mut resources = msl::BindingMap::default();
    let mut slot = 0u8;
    let mut has_storage = false;
    for (binding, kind) in sorted_bindings(v) {
        has_storage |= matches!(kind, Binding::Read | Binding::ReadWrite);
        resources.insert(
            rb(binding),
            msl::BindTarget {
                buffer: Some(slot),
                mutable: kind == Binding::ReadWrite,
                ..Default::default()
            },
        );
        slot += 1;
    }
    let ep = msl::EntryPointResources {
        resources,
        immediates_buffer: None,
        sizes_buffer: has_storage.then_some(slot),
    };
    let checked = BoundsCheckPolicy::Restrict;
    msl::Options {
        lang_version,
        per_entry_point_map: msl::EntryPointResourceMap::from([(v.entry.to_string(), ep)]),
        inline_samplers: Vec::new(),
        spirv_cross_compatibility: false,
        fake_missing_bindings: false,
        bounds_check_policies: BoundsCheckPolicies {
            index: checked,
            buffer: checked,
            image_load: checked,
            binding_array: BoundsCheckPolicy::Unchecked,
        },
        zero_initialize_workgroup_memory: ZERO_INIT_WORKGROUP,
        force_loop_bounding: true,
        task_dispatch_limits: None,
        mesh_shader_primitive_indices_clamp: true,
        emit_int_div_checks: true,
        ray_query_initialization_tracking: true,
    }
}

/// `dx12/device.rs`, `create_pipeline_layout` and `load_shader`.
fn hlsl_options(v: &KernelVariant, shader_model: hlsl::ShaderModel) -> hlsl::Options {
    let mut binding_map = hlsl::BindingMap::default();
    let (mut srv, mut uav, mut cbv) = (0u32, 0u32, 0u32);
    let target = |register| hlsl::BindTarget {
        space: 0,
        register,
        binding_array_size: None,
        dynamic_storage_buffer_offsets_index: None,
        restrict_indexing: false,
    };
    // The descriptor table: storage buffers (no dynamic offsets here).
    for (binding, kind) in sorted_bindings(v) {
        let t = match kind {
            Binding::Read => {
                srv += 1;
                target(srv - 1)
            }
            Binding::ReadWrite => {
                uav += 1;
                target(uav - 1)
            }
            Binding::Params | Binding::Window(_) => continue,
        };
        binding_map.insert(rb(binding), t);
    }
    // The root descriptors: the uniforms, all with dynamic offsets.
    for (binding, kind) in sorted_bindings(v) {
        if matches!(kind, Binding::Params | Binding::Window(_)) {
            binding_map.insert(
                rb(binding),
                hlsl::BindTarget {
                    restrict_indexing: true,
                    ..target(cbv)
                },
            );
            cbv += 1;
        }
    }
    let limits = wgpu::Limits::default();
    hlsl::Options {
        shader_model,
        binding_map,
        fake_missing_bindings: false,
        special_constants_binding: None,
        immediates_target: None,
        dynamic_storage_buffer_offsets_targets: Default::default(),
        zero_initialize_workgroup_memory: ZERO_INIT_WORKGROUP,
        restrict_indexing: true,
        sampler_heap_target: hlsl::SamplerHeapBindTargets {
            standard_samplers: target(0),
            comparison_samplers: target(2048),
        },
        sampler_buffer_binding_map: Default::default(),
        external_texture_binding_map: Default::default(),
        force_loop_bounding: true,
        task_dispatch_limits: Some(naga::back::TaskDispatchLimits {
            max_mesh_workgroups_per_dim: limits.max_mesh_workgroups_per_dimension,
            max_mesh_workgroups_total: limits.max_mesh_workgroup_total_count,
        }),
        mesh_shader_primitive_indices_clamp: true,
        ray_query_initialization_tracking: true,
    }
}

/// Translates one variant for every back end and version; returns the
/// number of translations, or the errors.
fn translate(v: &KernelVariant, module: &Module, info: &ModuleInfo) -> (usize, Vec<String>) {
    let mut errors = Vec::new();
    let mut done = 0;
    let name = describe(v);
    let (module, info) = match with_overrides(v, module, info) {
        Ok(r) => r,
        Err(e) => return (0, vec![e]),
    };

    for lang in MSL_VERSIONS {
        let pipeline = msl::PipelineOptions {
            entry_point: Some((ShaderStage::Compute, v.entry.to_string())),
            allow_and_force_point_size: false,
            vertex_pulling_transform: true,
            vertex_buffer_mappings: Vec::new(),
            binding_array_length_map: Default::default(),
        };
        match msl::write_string(&module, &info, &msl_options(v, lang), &pipeline) {
            Ok((src, t))
                if t.entry_point_names.len() == 1
                    && t.entry_point_names[0].is_ok()
                    && src.contains("kernel void") =>
            {
                done += 1
            }
            Ok((_, t)) => errors.push(format!(
                "{name}: MSL {lang:?}: entry points {:?}",
                t.entry_point_names
            )),
            Err(e) => errors.push(format!("{name}: MSL {lang:?}: {e:?}")),
        }
    }

    let sub = needs_subgroups(v.file);
    for sm in SHADER_MODELS {
        if sub && sm < hlsl::ShaderModel::V6_0 {
            continue;
        }
        if is_f16(v.types) && sm < hlsl::ShaderModel::V6_2 {
            continue;
        }
        let mut src = String::new();
        let pipeline = hlsl::PipelineOptions {
            entry_point: Some((ShaderStage::Compute, v.entry.to_string())),
        };
        let options = hlsl_options(v, sm);
        match hlsl::Writer::new(&mut src, &options, &pipeline).write(&module, &info, None) {
            Ok(r) if r.entry_point_names.len() == 1 && r.entry_point_names[0].is_ok() => done += 1,
            Ok(r) => errors.push(format!(
                "{name}: HLSL {sm:?}: entry points {:?}",
                r.entry_point_names
            )),
            Err(e) => errors.push(format!("{name}: HLSL {sm:?}: {e:?}")),
        }
    }

    for lang in SPV_VERSIONS {
        if sub && lang < (1, 3) {
            continue;
        }
        let pipeline = spv::PipelineOptions {
            shader_stage: ShaderStage::Compute,
            entry_point: v.entry.to_string(),
        };
        match spv::write_vec(&module, &info, &spv_options(v, lang), Some(&pipeline)) {
            Ok(words) if words.first() == Some(&0x0723_0203) => done += 1,
            Ok(_) => errors.push(format!("{name}: SPIR-V {lang:?}: no magic number")),
            Err(e) => errors.push(format!("{name}: SPIR-V {lang:?}: {e:?}")),
        }
    }
    (done, errors)
}

#[test]
fn every_kernel_translates_for_metal_dx12_and_vulkan() {
    let variants = kernel_variants();
    let modules: BTreeMap<&str, (Module, ModuleInfo)> = SHADERS
        .iter()
        .map(|(file, _)| (*file, parse_and_validate(file)))
        .collect();
    let mut errors = Vec::new();
    let mut done = 0;
    for v in &variants {
        let (module, info) = modules
            .get(v.file)
            .unwrap_or_else(|| panic!("{}: not a shader of SHADERS", describe(v)));
        let (n, e) = translate(v, module, info);
        done += n;
        errors.extend(e);
    }
    assert!(
        errors.is_empty(),
        "{} translations failed:\n{}",
        errors.len(),
        errors.join("\n")
    );
    let per_variant = MSL_VERSIONS.len() + SHADER_MODELS.len() + SPV_VERSIONS.len();
    // Subgroup kernels skip shader model 5.1 and SPIR-V 1.0.
    let skipped = 2 * variants.iter().filter(|v| needs_subgroups(v.file)).count();
    assert_eq!(done, variants.len() * per_variant - skipped);
    eprintln!(
        "{} variants x {per_variant} back-end versions = {done} translations",
        variants.len()
    );
}

/// The pipelines of f16 models (`kernel_variants_f16`) translate for every
/// back-end version where wgpu offers SHADER_F16: every MSL version, shader
/// model 6.2 and later, and every SPIR-V version (with `Float16`).
#[test]
fn every_f16_kernel_translates_for_metal_dx12_and_vulkan() {
    let variants = kernel_variants_f16();
    let mut modules: BTreeMap<(&str, String), (Module, ModuleInfo)> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut done = 0;
    let mut expected = 0;
    for v in &variants {
        assert!(is_f16(v.types), "{}", describe(v));
        let key = (v.file, format!("{:?}", v.types));
        let (module, info) = modules
            .entry(key)
            .or_insert_with(|| parse_and_validate_typed(v.file, v.types));
        let (n, e) = translate(v, module, info);
        done += n;
        errors.extend(e);
        let hlsl = SHADER_MODELS
            .iter()
            .filter(|&&sm| sm >= hlsl::ShaderModel::V6_2)
            .count();
        let spv = match needs_subgroups(v.file) {
            true => SPV_VERSIONS.len() - 1,
            false => SPV_VERSIONS.len(),
        };
        expected += MSL_VERSIONS.len() + hlsl + spv;
    }
    assert!(
        errors.is_empty(),
        "{} translations failed:\n{}",
        errors.len(),
        errors.join("\n")
    );
    // Every shader that holds an f16 model's data has f16 variants.
    for file in [
        "gemm.wgsl",
        "gemm_subgroup.wgsl",
        "windows.wgsl",
        "util.wgsl",
        "gru_forward.wgsl",
        "gru_backward.wgsl",
    ] {
        assert!(variants.iter().any(|v| v.file == file), "{file}");
    }
    assert_eq!(done, expected);
    eprintln!("{} f16 variants: {done} translations", variants.len());
}

/// The list is the code's: every entry point of every shader is in it, its
/// constants are overrides of its shader, no variant appears twice, its
/// bindings are the shader's, and every `KernelSpec` constant of an op module
/// is in the module's `SPECS`.
#[test]
fn the_variant_list_is_complete() {
    let variants = kernel_variants();
    let mut seen = BTreeSet::new();
    for v in &variants {
        let key = (v.file, v.entry, format!("{:?}", v.constants));
        assert!(seen.insert(key), "{} is listed twice", describe(v));
    }
    for (file, _) in SHADERS {
        let (module, _) = parse_and_validate(file);
        let overrides: BTreeSet<&str> = module
            .overrides
            .iter()
            .filter_map(|(_, o)| o.name.as_deref())
            .collect();
        for ep in &module.entry_points {
            assert_eq!(ep.stage, ShaderStage::Compute, "{file}:{}", ep.name);
            assert!(
                variants
                    .iter()
                    .any(|v| v.file == file && v.entry == ep.name),
                "{file}:{} is in no kernel variant",
                ep.name
            );
        }
        for v in variants.iter().filter(|v| v.file == file) {
            assert!(
                module.entry_points.iter().any(|ep| ep.name == v.entry),
                "{}: no such entry point",
                describe(v)
            );
            for (n, _) in v.constants {
                assert!(
                    overrides.contains(n),
                    "{}: `{n}` is not an override of {file}",
                    describe(v)
                );
            }
            // The layout's bindings and the shader's group-0 globals.
            let globals: BTreeSet<u32> = module
                .global_variables
                .iter()
                .filter_map(|(_, g)| g.binding.as_ref())
                .map(|b| {
                    assert_eq!(b.group, 0, "{file}: a binding outside group 0");
                    b.binding
                })
                .collect();
            for (b, _) in v.bindings {
                assert!(
                    globals.contains(b),
                    "{}: binding {b} is not in the shader",
                    describe(v)
                );
            }
        }
    }

    // Every `KernelSpec` constant of src/gpu/ops/*.rs is listed in `SPECS`.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gpu/ops");
    let mut modules = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let src = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let specs_at = src
            .find("const SPECS: &[KernelSpec] =")
            .map(|at| at + src[at..].find('=').unwrap());
        // `(name, type)` of each `const NAME: KernelSpec` or array of them.
        let decls: Vec<(&str, &str)> = src
            .lines()
            .map(str::trim_start)
            .map(|l| l.strip_prefix("pub(crate) ").unwrap_or(l))
            .filter_map(|l| l.strip_prefix("const "))
            .filter(|l| !l.starts_with("fn ") && !l.starts_with("SPECS:"))
            .filter_map(|l| {
                let (n, rest) = l.split_once(':')?;
                let ty = rest.split('=').next()?.trim();
                ty.trim_start_matches('[')
                    .starts_with("KernelSpec")
                    .then_some((n.trim(), ty))
            })
            .collect();
        if decls.is_empty() {
            continue;
        }
        modules += 1;
        let at = specs_at.unwrap_or_else(|| panic!("{name} declares kernels but no SPECS"));
        let list = &src[at..at + src[at..].find("];").unwrap()];
        let items: BTreeSet<String> = list
            .split_once("&[")
            .unwrap()
            .1
            .split(',')
            .map(|i| i.split_whitespace().collect::<String>())
            .filter(|i| !i.is_empty())
            .collect();
        for (d, ty) in decls {
            // The lengths of the array's dimensions, outermost first.
            let mut dims: Vec<usize> = ty
                .split(';')
                .skip(1)
                .map(|p| p.trim().trim_end_matches(']').trim().parse().unwrap())
                .collect();
            dims.reverse();
            let mut wanted = vec![d.to_string()];
            for n in dims {
                wanted = wanted
                    .iter()
                    .flat_map(|w| (0..n).map(move |i| format!("{w}[{i}]")))
                    .collect();
            }
            for w in wanted {
                assert!(
                    items.contains(&w),
                    "{name}: `{w}` is not in its SPECS (so not in kernel_variants)"
                );
            }
        }
    }
    // gru_forward.rs and gru_backward.rs declare no spec: their kernels are
    // enumerated from the axes of `ops::steps::StepKernel` (so every one
    // is in the list by construction).
    assert_eq!(modules, 6, "the op modules with kernels written out");
}

/// The name `GpuContext::pipelines_built` gives a pipeline: constants sorted
/// by name, values as `f64` prints them.
fn built_name(v: &KernelVariant) -> String {
    let mut c: Vec<(&str, f64)> = v.constants.to_vec();
    c.sort_by(|a, b| a.0.cmp(b.0));
    let c: Vec<String> = c
        .iter()
        .map(|(n, x)| format!("{n}={x}"))
        .chain(v.types.iter().map(|(n, t)| format!("{n}:{t}")))
        .collect();
    format!("{}:{}({})", v.file, v.entry, c.join(","))
}

/// On the adapter, every pipeline the GRU builds on every path (both
/// product families, both time loops, with and without a tape, in f32 and
/// in f16) is one of `kernel_variants` or `kernel_variants_f16`: the lists
/// the translations above run over.
#[test]
fn every_pipeline_built_on_the_adapter_is_listed() {
    use gru_wgpu::gpu::{BackwardOptions, ForwardOptions, GpuGru};
    use gru_wgpu::reference::ReferenceCase;

    let listed: BTreeSet<String> = kernel_variants()
        .iter()
        .chain(&kernel_variants_f16())
        .map(built_name)
        .collect();
    let f16 = gru_wgpu::Precision::F16;
    for (label, ctx, r) in common::gpu_paths() {
        let cases = common::golden_files().into_iter().flat_map(|path| {
            let case = ReferenceCase::load(&path).unwrap();
            [case.clone().with_precision(f16), case]
        });
        for case in cases {
            let model = GpuGru::new(&ctx, &case.params).unwrap();
            model.set_plan(Some(r));
            let batch = case.x.shape()[usize::from(case.config.batch_first)];
            if model.check_plan(r, batch).is_err() {
                continue;
            }
            let h0 = case.h0.as_ref().map(|h| h.view());
            model
                .forward(case.x.view(), ForwardOptions::default().h0(h0))
                .unwrap();
            let (_, _, tape) = model
                .forward(case.x.view(), ForwardOptions::default().h0(h0).keep_tape())
                .unwrap()
                .into_parts();
            model
                .backward(
                    tape.unwrap(),
                    case.grad_output.view(),
                    BackwardOptions::default().grad_h_n(case.grad_h_n.view()),
                )
                .unwrap();
        }
        let built = ctx.pipelines_built();
        assert!(!built.is_empty(), "{label}: no pipeline built");
        for p in &built {
            assert!(
                listed.contains(p),
                "{label}: `{p}` is not in kernel_variants"
            );
        }
    }
}
