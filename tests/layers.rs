//! The GPU engine's layers, read from its sources: each module of
//! `src/gpu/` uses only modules of its own layer or below (in every path
//! form: `use`, expressions, groups, re-exported names, `super::`), so
//! there is no import circle; and no source file there is much over 600 lines.

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

/// The source without comments (line comments and doc comments), each
/// removed character replaced by a space so that offsets keep their lines.
fn strip_comments(src: &str) -> String {
    src.lines()
        .map(|line| match line.find("//") {
            Some(at) => format!("{}{}", &line[..at], " ".repeat(line.len() - at)),
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The item after a path prefix: the first name of a plain path
/// (`x::Y` gives `x`), or every first name of a group (`{x::Y, z}` gives
/// `x` and `z`), with their offsets.
fn first_names(code: &str, at: usize) -> Vec<(String, usize)> {
    let rest = &code[at..];
    let word = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    if !rest.starts_with('{') {
        return vec![(word(rest), at)];
    }
    let mut out = Vec::new();
    let mut depth = 0;
    let mut expect = true;
    for (i, c) in rest.char_indices() {
        match c {
            '{' => {
                depth += 1;
                expect = depth == 1;
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => expect = true,
            c if expect && depth == 1 && (c.is_ascii_alphanumeric() || c == '_') => {
                out.push((word(&rest[i..]), at + i));
                expect = false;
            }
            _ => {}
        }
    }
    out
}

/// The names `src/gpu/mod.rs` re-exports (`pub use x::{Y, Z}`), each with
/// the module it comes from.
fn reexports(mod_rs: &str) -> Vec<(String, String)> {
    let code = strip_comments(mod_rs);
    let mut out = Vec::new();
    for (at, _) in code.match_indices("pub use ") {
        let rest = &code[at + "pub use ".len()..];
        let stmt = &rest[..rest.find(';').unwrap()];
        let module: String = stmt
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if layer(&module).is_none() {
            continue;
        }
        let names = match stmt.find('{') {
            Some(b) => stmt[b + 1..].trim_end_matches('}').to_string(),
            None => stmt.rsplit("::").next().unwrap().to_string(),
        };
        for n in names.split([',', '{', '}']) {
            let n = n.trim().rsplit("::").next().unwrap().trim();
            if !n.is_empty() {
                out.push((n.to_string(), module.clone()));
            }
        }
    }
    out
}

/// Every use of a module of `src/gpu/` in `src` (a file of module `module`,
/// `depth` folders below `src/gpu/`): `crate::gpu::x::...`, grouped
/// imports `crate::gpu::{x::Y, z}`, re-exported names `crate::gpu::Y`
/// (through `pub use` in `src/gpu/mod.rs`), and `super::` paths that reach
/// `src/gpu/`, in `use` lines or in expressions and types alike. Returns
/// the line (1-based) and the module of each.
fn gpu_uses(src: &str, depth: usize, exports: &[(String, String)]) -> Vec<(usize, String)> {
    let code = strip_comments(src);
    let mut prefixes = vec!["crate::gpu::".to_string()];
    prefixes.push("super::".repeat(depth + 1));
    let mut out = Vec::new();
    for prefix in &prefixes {
        for (at, _) in code.match_indices(prefix.as_str()) {
            // `super::super::` also contains `super::` deeper in: only the
            // whole prefix, not one that continues a longer one.
            let before = &code[..at];
            if prefix.starts_with("super::") && before.ends_with("super::") {
                continue;
            }
            if prefix.starts_with("super::") && code[at + prefix.len()..].starts_with("super::") {
                continue;
            }
            for (name, off) in first_names(&code, at + prefix.len()) {
                let module = if layer(&name).is_some() {
                    Some(name)
                } else {
                    exports
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, m)| m.clone())
                };
                if let Some(m) = module {
                    let line = code[..off].matches('\n').count() + 1;
                    out.push((line, m));
                }
            }
        }
    }
    out
}

fn violations(
    module: &str,
    src: &str,
    depth: usize,
    exports: &[(String, String)],
) -> Vec<(usize, String)> {
    let own = layer(module).unwrap_or_else(|| panic!("{module}: no layer assigned"));
    gpu_uses(src, depth, exports)
        .into_iter()
        .filter(|(_, m)| layer(m).unwrap() > own)
        .collect()
}

fn gpu_exports() -> Vec<(String, String)> {
    let mod_rs = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gpu/mod.rs");
    reexports(&std::fs::read_to_string(mod_rs).unwrap())
}

#[test]
fn every_module_imports_only_its_own_layer_or_those_below() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gpu");
    let exports = gpu_exports();
    assert!(
        exports
            .iter()
            .any(|(n, m)| n == "GpuOptimizer" && m == "optim"),
        "{exports:?}"
    );
    let files = gpu_sources();
    assert!(files.len() > 10, "{files:?}");
    let mut found = Vec::new();
    for (module, path) in files {
        let own = layer(&module).unwrap_or_else(|| panic!("{module}: no layer assigned"));
        let depth = path.strip_prefix(&root).unwrap().components().count() - 1;
        let src = std::fs::read_to_string(&path).unwrap();
        for (line, target) in violations(&module, &src, depth, &exports) {
            found.push(format!(
                "{}:{line}: `{module}` (layer {own}) uses `{target}` (layer {}), a layer above it",
                path.display(),
                layer(&target).unwrap()
            ));
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The reader sees every path form: the old violation (`GpuGru::update`
/// taking `crate::gpu::GpuOptimizer`, a re-exported name in uppercase)
/// and the others are found; imports of lower layers are not.
#[test]
fn the_layer_reader_sees_every_path_form() {
    let exports = gpu_exports();
    let cases = [
        // a re-exported name in a type, inside an expression-level path
        "pub fn update(&self, opt: &mut crate::gpu::GpuOptimizer) {}",
        // a plain module path
        "use crate::gpu::optim::GpuOptimizer;",
        // a grouped import
        "use crate::gpu::{ops::util::Io, optim::Rule};",
        // a re-export in a group
        "use crate::gpu::{GpuStream, ops};",
        // in an expression
        "let x = crate::gpu::head::GpuLinearHead::new();",
        // a re-export of the module's own
        "pub use crate::gpu::cell::GpuGruCell;",
        // `super::super::` from a file of `src/gpu/gru/`
        "use super::super::optim::Rule;",
    ];
    for case in cases {
        assert_eq!(
            violations("gru", case, 1, &exports).len(),
            1,
            "not seen: {case}"
        );
    }
    assert_eq!(
        violations("context", "use super::stream::GpuStream;", 0, &exports).len(),
        1
    );
    for fine in [
        "use crate::gpu::ops::util::Io;",
        "use crate::gpu::{ops, plan::Plan, GpuContext};",
        "use super::products::Layer;",
        "// use crate::gpu::optim::Rule;",
        "let _ = crate::gpu::Plan::default();",
    ] {
        assert!(
            violations("gru", fine, 1, &exports).is_empty(),
            "seen: {fine}"
        );
    }
}

#[test]
fn no_source_file_of_the_engine_is_much_over_600_lines() {
    for (_, path) in gpu_sources() {
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 650, "{}: {lines} lines", path.display());
    }
}
