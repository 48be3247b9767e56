//! Every WGSL file parses and validates with naga, without a GPU.

use gru_wgpu::gpu::ops::{shader_source, SHADERS};

#[test]
fn every_shader_validates_with_naga() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".wgsl") && n != "common.wgsl")
        .collect();
    on_disk.sort();
    let mut compiled: Vec<String> = SHADERS.iter().map(|(f, _)| f.to_string()).collect();
    compiled.sort();
    assert_eq!(
        on_disk, compiled,
        "every shader file is compiled by the host, and only those"
    );

    for (file, _) in SHADERS {
        let src = shader_source(file).unwrap();
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{file}: {}", e.emit_to_string(&src)));
        // Subgroup operations only in the file that needs them (compiled
        // only on devices with wgpu's SUBGROUP feature).
        let mut caps = naga::valid::Capabilities::default();
        if file == "gemm_subgroup.wgsl" {
            caps |= naga::valid::Capabilities::SUBGROUP;
        }
        let mut validator = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
        validator
            .validate(&module)
            .unwrap_or_else(|e| panic!("{file}: {}", e.emit_to_string(&src)));
        assert!(!module.entry_points.is_empty(), "{file} has no entry point");
    }
}

#[test]
fn every_shader_opens_with_its_equations_and_buffers() {
    for (file, src) in SHADERS {
        let head: Vec<&str> = src.lines().take_while(|l| l.starts_with("//")).collect();
        assert!(
            head.len() >= 8,
            "{file} opens with a comment of only {} lines",
            head.len()
        );
        assert!(
            head[0].starts_with(&format!("// {file}:")),
            "{file}: the first line names the file"
        );
    }
}
