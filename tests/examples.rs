//! The examples in `examples/`, run: `cargo test` builds them (as it builds
//! every example), and this runs each binary it built, from the crate's
//! folder with a plan cache of its own, and checks that it exits 0 and
//! prints its key line. Without an adapter an example says so and exits
//! with 1. The README's first example ("Using it") is
//! `examples/quickstart.rs` from its first `use` on, character for character.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

/// Each example and a line it prints when it worked.
const EXAMPLES: [(&str, &str); 6] = [
    ("quickstart", "every relative error within 1e-5: OK"),
    ("state_dict", "within 1e-5: OK"),
    ("onnx", "within 1e-5: OK"),
    ("streaming", "40 frames in 5 chunks on "),
    ("cell", "within 1e-5: OK"),
    (
        "adding",
        "learnt: held-out mse below 0.05 and a quarter of the untrained model's: OK",
    ),
];

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The newest modification time of the files under `dir`.
fn newest(dir: &Path) -> SystemTime {
    newest_but(dir, &[])
}

/// The command line's own sources under `src/` (modules of the binary, not
/// of the library the examples link).
const BINARY_ONLY: [&str; 5] = ["main.rs", "cli", "bench.rs", "bench", "selftest.rs"];

/// [`newest`] of `dir`, leaving out its entries named in `skip`.
fn newest_but(dir: &Path, skip: &[&str]) -> SystemTime {
    let mut t = SystemTime::UNIX_EPOCH;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if skip.iter().any(|s| e.file_name() == *s) {
            continue;
        }
        let p = e.path();
        let m = if p.is_dir() {
            newest(&p)
        } else {
            e.metadata().unwrap().modified().unwrap()
        };
        t = t.max(m);
    }
    t
}

/// The binary cargo built for `examples/<name>.rs`, beside this test's own
/// binary (`target/<profile>/deps/examples-...` -> `target/<profile>/examples/`),
/// checked to be newer than its source (with its modules in
/// `examples/<name>/`, where it has any) and the library's.
fn example_binary(name: &str) -> PathBuf {
    let me = std::env::current_exe().unwrap();
    let profile_dir = me.parent().and_then(Path::parent).unwrap();
    let bin = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; `cargo test` builds the examples, `cargo test --test examples` \
                 alone does not: run `cargo build --examples` (with the same profile) first",
                bin.display()
            )
        });
    let root = manifest_dir();
    let mut source = std::fs::metadata(root.join(format!("examples/{name}.rs")))
        .unwrap()
        .modified()
        .unwrap();
    let modules = root.join(format!("examples/{name}"));
    if modules.is_dir() {
        source = source.max(newest(&modules));
    }
    assert!(
        built >= source.max(newest_but(&root.join("src"), &BINARY_ONLY)),
        "{} is older than its source or the library's: rebuild the examples \
         (`cargo test` does, or `cargo build --examples`)",
        bin.display()
    );
    bin
}

/// Runs an example from the crate's folder, its plan cache in a folder of
/// this run (never the user's), with `env` on top.
fn run_example(name: &str, env: &[(&str, &str)]) -> (Output, Duration) {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("examples-cache-{}", std::process::id()));
    let mut cmd = Command::new(example_binary(name));
    cmd.current_dir(manifest_dir())
        .env("GRU_WGPU_CACHE_DIR", &cache)
        .env_remove("GRU_WGPU_TUNE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let out = cmd.output().unwrap();
    (out, start.elapsed())
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_example_runs_and_prints_its_result() {
    // Every file of examples/ is in the list.
    let mut files: Vec<String> = std::fs::read_dir(manifest_dir().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut listed: Vec<String> = EXAMPLES.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(files, listed, "examples/ and the list here");
    if common::gpu().is_none() {
        eprintln!("skipping the examples: no GPU adapter");
        return;
    }
    for (name, key) in EXAMPLES {
        let (out, took) = run_example(name, &[]);
        let (stdout, stderr) = text(&out);
        eprintln!("{name} ({:.1} s):\n{stdout}{stderr}", took.as_secs_f64());
        assert!(
            out.status.success(),
            "{name} exited with {}:\n{stdout}{stderr}",
            out.status
        );
        assert!(
            stdout.contains(key),
            "{name} did not print `{key}`:\n{stdout}"
        );
    }
}

#[test]
fn without_an_adapter_an_example_says_so_and_fails() {
    let (out, _) = run_example(
        "quickstart",
        &[("GRU_WGPU_ADAPTER", "no-such-adapter-anywhere")],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.starts_with("error: no GPU adapter"),
        "{stdout}{stderr}"
    );
}

/// The first ```rust block of the README's "Using it" section.
fn readme_first_example() -> String {
    let readme = std::fs::read_to_string(manifest_dir().join("README.md")).unwrap();
    let section = readme
        .split("\n## Using it\n")
        .nth(1)
        .expect("the README has a section `## Using it`");
    let block = section
        .split("```rust\n")
        .nth(1)
        .expect("a ```rust block in `Using it`");
    block.split("\n```").next().unwrap().to_string() + "\n"
}

#[test]
fn the_readmes_first_example_is_examples_quickstart() {
    let file = std::fs::read_to_string(manifest_dir().join("examples/quickstart.rs")).unwrap();
    let from_use = &file[file.find("\nuse ").expect("a `use` line") + 1..];
    let readme = readme_first_example();
    if readme != from_use {
        let first = readme
            .lines()
            .zip(from_use.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(readme.lines().count().min(from_use.lines().count()));
        panic!(
            "README's first example and examples/quickstart.rs (from its first `use`) differ \
             at line {}:\n  README:  {:?}\n  example: {:?}",
            first + 1,
            readme.lines().nth(first),
            from_use.lines().nth(first)
        );
    }
}
