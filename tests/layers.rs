//! The GPU engine's layers, read from its sources: each module of
//! `src/gpu/` imports only modules of its own layer or below, so there is no
//! import circle; and no source file there is much over 600 lines.

use std::path::{Path, PathBuf};

/// The layer of a module of `src/gpu/` (the first name after `crate::gpu::`).
fn layer(module: &str) -> Option<u32> {
    Some(match module {
        "pool" | "adapter" | "device" => 0,
        "pipeline" => 1,
        "recorder" => 2,
        "ops" => 3,
        "context" | "plan" => 4,
        "gru" => 5,
        "cell" | "optim" | "head" | "stream" => 6,
        _ => return None,
    })
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn gpu_sources() -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gpu");
    let mut files = Vec::new();
    sources(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(&root).unwrap().to_string_lossy().to_string();
            let module = rel.split(['/', '.']).next().unwrap().to_string();
            (module != "mod").then_some((module, p))
        })
        .collect()
}

#[test]
fn every_module_imports_only_its_own_layer_or_those_below() {
    let files = gpu_sources();
    assert!(files.len() > 10, "{files:?}");
    for (module, path) in files {
        let own = layer(&module).unwrap_or_else(|| panic!("{module}: no layer assigned"));
        let src = std::fs::read_to_string(&path).unwrap();
        for (i, line) in src.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for (at, _) in code.match_indices("crate::gpu::") {
                let rest = &code[at + "crate::gpu::".len()..];
                let target: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                let Some(l) = layer(&target) else { continue };
                assert!(
                    l <= own,
                    "{}:{}: `{module}` (layer {own}) imports `{target}` (layer {l}), a layer above it",
                    path.display(),
                    i + 1
                );
            }
        }
    }
}

#[test]
fn no_source_file_of_the_engine_is_much_over_600_lines() {
    for (_, path) in gpu_sources() {
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 650, "{}: {lines} lines", path.display());
    }
}
