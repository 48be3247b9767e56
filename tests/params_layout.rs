//! Every shader's parameter struct, read through naga, against the
//! `#[repr(C)]` struct the host fills: the same members in the same order at
//! the same offsets, and the same size. Without a GPU.

use gru_wgpu::gpu::ops::{params_layouts, shader_source, SHADERS};

fn module(file: &str) -> naga::Module {
    let src = shader_source(file).unwrap();
    naga::front::wgsl::parse_str(&src)
        .unwrap_or_else(|e| panic!("{file}: {}", e.emit_to_string(&src)))
}

/// The members `(name, offset)` and the size of the struct `name` of `module`.
fn wgsl_struct(module: &naga::Module, name: &str) -> Option<(Vec<(String, usize)>, usize)> {
    module
        .types
        .iter()
        .find_map(|(_, ty)| match (&ty.name, &ty.inner) {
            (Some(n), naga::TypeInner::Struct { members, span }) if n == name => Some((
                members
                    .iter()
                    .map(|m| (m.name.clone().unwrap_or_default(), m.offset as usize))
                    .collect(),
                *span as usize,
            )),
            _ => None,
        })
}

#[test]
fn every_params_struct_matches_its_shader() {
    let layouts = params_layouts();
    for (file, _) in SHADERS {
        assert!(
            layouts.iter().any(|l| l.shader == file),
            "{file} has no Rust parameter struct checked against it"
        );
    }
    for l in layouts {
        let m = module(l.shader);
        let (members, span) = wgsl_struct(&m, l.wgsl_struct)
            .unwrap_or_else(|| panic!("{} declares no struct {}", l.shader, l.wgsl_struct));
        let rust: Vec<(String, usize)> =
            l.fields.iter().map(|(n, o)| (n.to_string(), *o)).collect();
        assert_eq!(
            members, rust,
            "{} `{}` against {}: members (name, offset) differ",
            l.shader, l.wgsl_struct, l.rust_struct
        );
        assert_eq!(
            span, l.size,
            "{} `{}` has {span} bytes, {} has {}",
            l.shader, l.wgsl_struct, l.rust_struct, l.size
        );
    }
}

#[test]
fn forward_and_backward_share_one_params_definition() {
    for file in ["gru_forward.wgsl", "gru_backward.wgsl"] {
        let src = SHADERS.iter().find(|(f, _)| *f == file).unwrap().1;
        assert!(
            !src.contains("struct Params") && !src.contains("struct StepParams"),
            "{file} declares its own parameter struct; it should use common.wgsl's StepParams"
        );
        assert!(wgsl_struct(&module(file), "StepParams").is_some());
    }
}

#[test]
fn the_grid_offset_prologue_lives_in_common_wgsl() {
    for (file, src) in SHADERS {
        for pattern in ["wid_in + vec3<u32>(", "wid.x + P.gx", "(wid.y * P.gtx"] {
            assert!(
                !src.contains(pattern),
                "{file} repeats the grid prologue (`{pattern}`); use grid_id / flat_id of common.wgsl"
            );
        }
    }
}
