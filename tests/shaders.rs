//! Every WGSL file parses and validates with naga, without a GPU.
//!
//! Besides the shaders of `SHADERS`, `shaders/` holds `common.wgsl` and the
//! shared parts (`*_shared.wgsl`), which the host composes with the shaders
//! that share them (`compose` in src/gpu/pipeline.rs).

use gru_wgpu::gpu::ops::{shader_source, shader_source_rolled, SHADERS};

#[test]
fn every_shader_validates_with_naga() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".wgsl") && n != "common.wgsl" && !n.ends_with("_shared.wgsl"))
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

/// The `*_shared.wgsl` files of `shaders/`, as `(name, text)`.
fn shared_parts() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut v: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("_shared.wgsl"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

/// Each shared part opens with its header, as the shaders do, and is composed
/// into at least two shaders (it is what they share), as written on disk
/// before the `// unroll` loops are written out.
#[test]
fn every_shared_part_is_headed_and_shared() {
    let parts = shared_parts();
    assert!(parts.len() >= 2, "{parts:?}");
    for (file, src) in &parts {
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
        let users: Vec<&str> = SHADERS
            .iter()
            .filter(|(f, _)| shader_source_rolled(f).unwrap().contains(src.as_str()))
            .map(|(f, _)| *f)
            .collect();
        assert!(users.len() >= 2, "{file} is composed into {users:?}");
    }
}

/// The constants the host shares with the shaders are defined once, in Rust:
/// the composed source defines each exactly once (the host's line), and no
/// shader file, shared part or `common.wgsl` defines it again.
#[test]
fn shared_constants_are_defined_once_by_the_host() {
    let names = [
        "SEQ_ROWS",
        "SEQ_HMAX",
        "SEQ_PRIVATE",
        "SK_UNITS",
        "SK_ROWS",
        "SK_THREADS",
        "RES_KMAX",
        "RES_HMAX",
        "RES_WG_MAX",
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let src = std::fs::read_to_string(&path).unwrap();
        for n in names {
            for decl in ["const ", "override "] {
                assert!(
                    !src.contains(&format!("{decl}{n}:")),
                    "{}: defines `{n}`, which the host emits",
                    path.display()
                );
            }
        }
    }
    for (file, _) in SHADERS {
        let src = shader_source(file).unwrap();
        for n in names {
            let defs = src.matches(&format!("const {n}: u32 = ")).count();
            assert_eq!(
                defs, 1,
                "{file}: `{n}` defined {defs} times in the composed source"
            );
        }
    }
    // The files that use them.
    for (file, n) in [
        ("gru_forward.wgsl", "SEQ_ROWS"),
        ("gru_backward.wgsl", "SEQ_ROWS"),
        ("gru_forward.wgsl", "RES_KMAX"),
        ("gru_backward.wgsl", "RES_KMAX"),
        ("gru_shared.wgsl", "SK_UNITS"),
    ] {
        let src = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(src.contains(n), "{file} does not use `{n}`");
    }
}
