//! The command line, run as a user runs it.

mod common;

use std::process::Command;

/// The binary, with its plan cache in a folder of this test run (not the
/// user's cache folder).
fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gru-wgpu"));
    c.env("GRU_WGPU_CACHE_DIR", cache_dir("shared"));
    c
}

fn cache_dir(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli-plans-{name}-{}", std::process::id()))
}

fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn tune_prints_every_candidate_and_bench_runs_the_plans_it_names() {
    if common::gpu().is_none() {
        return;
    }
    let dir = cache_dir("tune");
    let _ = std::fs::remove_dir_all(&dir);
    let shape = ["--batch", "2", "--seq", "3", "--hidden", "8"];
    let out = bin()
        .env("GRU_WGPU_CACHE_DIR", &dir)
        .arg("tune")
        .args(shape)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out.stdout);
    assert!(lines.len() >= 2, "{lines:?}");
    let mut chosen = Vec::new();
    for l in &lines {
        let plan = l["plan"].as_str().unwrap();
        assert!(!plan.contains(' ') && plan.contains('/'), "{plan}");
        assert!(l["median_ms"].as_f64().unwrap() > 0.0, "{l}");
        if l["chosen"].as_bool().unwrap() {
            chosen.push(plan.to_string());
        }
    }
    assert_eq!(chosen.len(), 1, "{lines:?}");
    // The winner is in the cache folder: bench's automatic plan is it, untuned.
    assert!(dir.join("gru-wgpu").exists());
    let bench = |plan: &str, dir: &std::path::Path| {
        let out = bin()
            .env("GRU_WGPU_CACHE_DIR", dir)
            .arg("bench")
            .args(shape)
            .args([
                "--mode", "fwdbwd", "--iters", "1", "--warmup", "0", "--json",
            ])
            .args(["--plan", plan])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_lines(&out.stdout).remove(0)
    };
    let auto = bench("auto", &dir);
    assert_eq!(auto["plan"].as_str().unwrap(), chosen[0]);
    assert_eq!(auto["tuned_ms"].as_f64().unwrap(), 0.0);
    // Every plan tune printed can be forced by name.
    for l in &lines {
        let name = l["plan"].as_str().unwrap();
        let r = bench(name, &dir);
        assert_eq!(r["plan"].as_str().unwrap(), name);
        assert_eq!(r["tuned_ms"].as_f64().unwrap(), 0.0);
    }
    // A fresh cache: the automatic plan is measured first, and says how long that took.
    let fresh = cache_dir("fresh");
    let _ = std::fs::remove_dir_all(&fresh);
    let r = bench("auto", &fresh);
    assert!(r["tuned_ms"].as_f64().unwrap() > 0.0, "{r}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&fresh);
}

#[test]
fn unknown_plans_and_tuning_modes_are_refused() {
    let out = bin()
        .args(["bench", "--plan", "fastest/step"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown plan `fastest/step`"), "{err}");
    let out = bin()
        .args(["tune", "--mode", "sometimes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    if common::gpu().is_none() {
        return;
    }
    let out = bin()
        .env("GRU_WGPU_TUNE", "sometimes")
        .args([
            "bench", "--batch", "1", "--seq", "1", "--hidden", "4", "--iters", "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("GRU_WGPU_TUNE") && err.contains("off, quick or full"),
        "{err}"
    );
    // Said once: not "invalid configuration: GRU_WGPU_TUNE: invalid configuration: ...".
    assert_eq!(err.matches("invalid configuration").count(), 1, "{err}");
}

fn golden(name: &str) -> std::path::PathBuf {
    common::golden_files()
        .into_iter()
        .find(|p| p.ends_with(name))
        .unwrap()
}

#[test]
fn verify_cpu_on_every_reference_case() {
    let out = bin()
        .arg("verify")
        .arg("--device")
        .arg("cpu")
        .args(common::golden_files())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap();
    assert!(last.starts_with("worst relative error: cpu "), "{last}");
    assert!(last.ends_with(", gpu -"), "{last}");
    let x: f64 = last["worst relative error: cpu ".len()..last.len() - ", gpu -".len()]
        .parse()
        .unwrap();
    assert!(x > 0.0 && x <= 1e-12, "{last}");
    // One line per tensor, each OK: output, h_n, grad.x, grad.h0 where there
    // is an h0, and every parameter's gradient.
    let expected: usize = common::golden_files()
        .iter()
        .map(|p| {
            let c = gru_wgpu::reference::ReferenceCase::load(p).unwrap();
            3 + usize::from(c.h0.is_some()) + c.config.param_specs().len()
        })
        .sum();
    assert_eq!(expected, 95);
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.trim_end().ends_with(" OK"))
            .count(),
        expected
    );
    assert!(!stdout.contains("FAIL"));
}

#[test]
fn verify_both_devices() {
    if common::gpu().is_none() {
        return;
    }
    let out = bin()
        .arg("verify")
        .arg(golden("seq_basic.safetensors"))
        .arg(golden("no_h0.safetensors"))
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    let last = stdout.lines().last().unwrap();
    let rest = last.strip_prefix("worst relative error: cpu ").unwrap();
    let (cpu, gpu) = rest.split_once(", gpu ").unwrap();
    let (cpu, gpu): (f64, f64) = (cpu.parse().unwrap(), gpu.parse().unwrap());
    assert!(cpu <= 1e-12 && gpu <= 1e-5 && gpu > 0.0, "{last}");
    assert!(stdout
        .lines()
        .any(|l| l.trim_start().starts_with("gpu    grad.weight_hh_l0")));
}

/// A copy of a reference case with one element of `output` changed.
fn tampered(dir: &std::path::Path) -> std::path::PathBuf {
    let bytes = std::fs::read(golden("seq_basic.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    let out = owned.iter_mut().find(|t| t.0 == "output").unwrap();
    let v = f64::from_le_bytes(out.3[..8].try_into().unwrap()) + 0.5;
    out.3[..8].copy_from_slice(&v.to_le_bytes());
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let path = dir.join("tampered.safetensors");
    std::fs::write(
        &path,
        safetensors::serialize(views, meta.metadata().clone()).unwrap(),
    )
    .unwrap();
    path
}

#[test]
fn verify_fails_on_a_wrong_reference_and_errors_on_a_bad_file() {
    let dir = std::env::temp_dir().join(format!("gru_wgpu_cli_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = tampered(&dir);
    let out = bin()
        .args(["verify", "--device", "cpu"])
        .arg(&bad)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains(" output ") && l.ends_with("FAIL")),
        "{stdout}"
    );

    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"not safetensors").unwrap();
    let out = bin()
        .args(["verify", "--device", "cpu"])
        .arg(&junk)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid safetensors file"));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().last().unwrap(),
        "worst relative error: cpu -, gpu -"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `verify` on a file of weights (a `state_dict`, or what `import-onnx`
/// writes) instead of a reference case: exit 2, saying what it needs and
/// the command that makes one from those weights, sizes filled in.
#[test]
fn verify_on_a_file_of_weights_says_what_it_needs_and_how_to_make_one() {
    let weights = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/torch_state_dict.safetensors");
    let out = bin()
        .args(["verify", "--device", "cpu"])
        .arg(&weights)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in [
        &format!(
            "error: {}: a file of GRU weights (16 tensors, `weight_ih_l0` among them",
            weights.display()
        ),
        "`verify` needs a reference case, the inputs, weights and PyTorch's outputs and \
         gradients of one forward and backward (format gru-golden-v1",
        &format!(
            "`python3 scripts/make_reference.py --input-size 3 --hidden-size 4 --num-layers 2 \
             --bidirectional --seq-len 10 --batch 2 --state-dict {} out.safetensors`, then \
             `gru-wgpu verify out.safetensors`",
            weights.display()
        ),
    ] {
        assert!(stderr.contains(needle), "{needle}\nnot in:\n{stderr}");
    }
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // What import-onnx writes: its configuration's flags, and the
    // reset-before form that nn.GRU does not compute.
    let dir = cache_dir("weights-file");
    std::fs::create_dir_all(&dir).unwrap();
    let imported = dir.join("imported.safetensors");
    let onnx = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/golden-extra/onnx_fwd_lbr0.onnx");
    let out = bin()
        .arg("import-onnx")
        .args([&onnx, &imported])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = bin()
        .args(["verify", "--device", "cpu"])
        .arg(&imported)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--input-size 5 --hidden-size 8 --num-layers 1 --seq-len 10"),
        "{stderr}"
    );
    assert!(
        stderr.contains("reset-before form (ONNX's linear_before_reset = 0)"),
        "{stderr}"
    );
}

#[test]
fn an_adapter_that_does_not_exist_is_an_error() {
    let out = bin()
        .args(["verify", "--device", "gpu"])
        .arg(golden("seq_basic.safetensors"))
        .env("GRU_WGPU_ADAPTER", "no-such-adapter-anywhere")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no GPU adapter: none matches `no-such-adapter-anywhere`"),
        "{stderr}"
    );
}

#[test]
fn the_main_job_without_an_adapter_runs_the_cpu_part_and_fails() {
    // No Vulkan driver to load: a machine with no adapter at all.
    let out = bin()
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[1].starts_with("no GPU adapter found ("), "{stdout}");
    assert!(
        lines[2].contains("apt-get install mesa-vulkan-drivers"),
        "{stdout}"
    );
    assert!(
        stdout.contains("check: CPU reference (f64) against PyTorch"),
        "{stdout}"
    );
    assert!(stdout.contains("benchmark: the CPU reference"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("gru-wgpu  cpu  fwdbwd")),
        "{stdout}"
    );
}

#[test]
fn the_main_job_with_an_adapter_that_does_not_match() {
    // Adapters exist but none matches: no install hint.
    if common::gpu().is_none() {
        return;
    }
    let out = bin()
        .env("GRU_WGPU_ADAPTER", "no-such-adapter-anywhere")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[1].starts_with(
            "the GPU could not be used: no GPU adapter: none matches `no-such-adapter-anywhere`"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("apt-get"), "{stdout}");
    assert!(
        stdout.contains("check: CPU reference (f64) against PyTorch"),
        "{stdout}"
    );
}

#[test]
fn the_main_job_with_an_adapter() {
    if common::gpu().is_none() {
        return;
    }
    let out = bin().output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.lines().nth(1).unwrap().starts_with("adapter: "),
        "{stdout}"
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("check: ") && l.ends_with(" OK"))
            .count(),
        3,
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("gru-wgpu  gpu  fwdbwd  B=64 T=64 I=256 H=256")),
        "{stdout}"
    );
}

/// `verify --precision f16` runs the GPU in f16 against the bound 2e-3 (the
/// ONNX cases too), says so, and fails a wrong reference; `bench
/// --precision f16` says `"precision": "f16"` in its JSON.
#[test]
fn verify_and_bench_take_the_precision() {
    if common::gpu().is_none() {
        return;
    }
    let extra = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/golden-extra/onnx_fwd_lbr0.safetensors");
    let out = bin()
        .args(["verify", "--device", "gpu", "--precision", "f16"])
        .arg(golden("seq_basic.safetensors"))
        .arg(golden("saturated_inputs.safetensors"))
        .arg(&extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.lines().next().unwrap().ends_with("(f16 storage)"),
        "{stdout}"
    );
    // The rows of checks, not the `gpu plan ...` line above each block.
    let rows: Vec<&str> = stdout
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("gpu ") && !l.starts_with("gpu plan "))
        .collect();
    assert!(rows.len() > 10, "{stdout}");
    assert!(rows.iter().all(|l| l.ends_with("2e-3 OK")), "{stdout}");
    let last = stdout.lines().last().unwrap();
    let gpu: f64 = last
        .strip_prefix("worst relative error: cpu -, gpu ")
        .unwrap()
        .parse()
        .unwrap();
    // Above f32's rounding, within f16's bound.
    assert!(gpu > 1e-5 && gpu <= 2e-3, "{last}");

    let dir = std::env::temp_dir().join(format!("gru_wgpu_cli_f16_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = bin()
        .args(["verify", "--device", "gpu", "--precision", "f16"])
        .arg(tampered(&dir))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    std::fs::remove_dir_all(&dir).unwrap();

    let out = bin()
        .args([
            "bench",
            "--batch",
            "2",
            "--seq",
            "3",
            "--hidden",
            "8",
            "--mode",
            "fwd",
            "--iters",
            "1",
            "--warmup",
            "0",
            "--json",
            "--precision",
            "f16",
            "--device",
            "both",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = json_lines(&out.stdout);
    assert_eq!(rows.len(), 2);
    for r in rows {
        let want = if r["impl"] == "gpu" { "f16" } else { "f32" };
        assert_eq!(r["precision"], want, "{r}");
    }
}

/// `verify --plan`: `all` prints one labelled block of GPU rows per plan
/// that applies, a plan's name runs that plan, `auto` names the plan
/// chosen; an unknown name is exit 2 with the reason.
#[test]
fn verify_runs_the_plans_asked_for() {
    let Some(ctx) = common::gpu() else {
        return;
    };
    let file = golden("seq_basic.safetensors");
    let run = |plan: &str| {
        let out = bin()
            .args(["verify", "--device", "gpu", "--plan", plan])
            .arg(&file)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let (code, text) = run("all");
    assert_eq!(code, Some(0), "{text}");
    let params = gru_wgpu::GruParams::<f32>::zeros(&gru_wgpu::GruConfig::new(10, 16)).unwrap();
    let plans = gru_wgpu::gpu::GpuGru::new(&ctx, &params)
        .unwrap()
        .candidates(4);
    assert!(plans.len() > 1);
    for p in &plans {
        let label = format!("  plan {p}\n");
        assert!(text.contains(&label), "no block for {p}: {text}");
        // 8 rows follow each label.
        let block = text.split(&label).nth(1).unwrap();
        let rows: Vec<&str> = block.lines().take(8).collect();
        assert!(rows
            .iter()
            .all(|r| r.trim_start().starts_with("gpu    ") && r.ends_with(" OK")));
    }
    let (code, text) = run("simple/sequence");
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(text.matches("  plan ").count(), 1, "{text}");
    assert!(text.contains("  plan simple/sequence\n"), "{text}");
    let (code, text) = run("auto");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("  plan auto: "), "{text}");
    let (code, text) = run("simple/nothing");
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("unknown plan `simple/nothing`"), "{text}");
}

#[test]
fn tune_says_when_its_plans_were_not_kept_and_makes_a_relative_cache_absolute() {
    if common::gpu().is_none() {
        return;
    }
    let base = cache_dir("tune-write");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let shape = [
        "tune", "--batch", "1", "--seq", "2", "--input", "2", "--hidden", "3",
    ];
    // A cache folder below a regular file: the write fails.
    let blocker = base.join("a-file");
    std::fs::write(&blocker, "x").unwrap();
    let out = bin()
        .env("GRU_WGPU_CACHE_DIR", blocker.join("plans"))
        .args(shape)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(!stdout.contains("plans kept in"), "{stdout}");
    assert!(
        stderr.contains("plan cache") && stderr.contains("not kept"),
        "{stderr}"
    );
    // A relative cache folder is taken from the current folder, and named
    // absolute.
    let out = bin()
        .current_dir(&base)
        .env("GRU_WGPU_CACHE_DIR", "rel/plans")
        .args(shape)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let kept = stdout
        .lines()
        .find_map(|l| l.strip_prefix("plans kept in "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let kept = std::path::Path::new(kept);
    assert!(
        kept.is_absolute() && kept.starts_with(base.join("rel/plans")),
        "{stdout}"
    );
    assert!(kept.is_file(), "{}", kept.display());
    let _ = std::fs::remove_dir_all(&base);
}
