//! `gru-wgpu selftest`: the GPU-vs-CPU suite inside the binary, run as a user
//! runs it, and its library half with a check made to fail.

mod common;
// The command line's suite, its source included from the binary's; it reads
// `super::check` (the random cases), here the tests' own.
#[path = "../src/selftest.rs"]
#[allow(dead_code)]
mod selftest;
use common::check;

use std::process::{Command, Output};

use gru_wgpu::gpu::LimitsProfile;
use selftest::{Outcome, SelftestOptions};

fn selftest(args: &[&str]) -> (Output, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gru-wgpu"))
        .arg("selftest")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    (out, stdout)
}

/// The reasons a check may be "not run" on an adapter that works, each
/// documented in `src/selftest.rs` and the README: the `sequence` loop past
/// H = 256, the `resident` loop past the hidden sizes its workgroup holds,
/// the window family under limits with uniform offsets above 32 bytes.
const DOCUMENTED_NOT_RUN: [&str; 4] = [
    "the sequence kernels take hidden sizes up to 256",
    "the resident kernels take hidden sizes up to",
    "32-byte offsets",
    "f16 storage needs the adapter feature SHADER_F16",
];

/// The shared test context of a limits profile: the same families as the
/// suite's own context (every family that runs, no forced products).
fn context_of(limits: &str) -> gru_wgpu::gpu::GpuContext {
    common::gpu_all()
        .unwrap()
        .into_iter()
        .find(|(l, _)| l.starts_with(limits))
        .unwrap()
        .1
}

/// `selftest --quick` under a limits profile: exit 0, the closing line
/// alone, every plan of the profile's coverage set on every configuration
/// (passed, or not run with a documented reason), the families that do not
/// run listed with a reason and not counted.
fn quick_passes(limits: &str) {
    if common::gpu().is_none() {
        return;
    }
    let (out, stdout) = selftest(&["--quick", "--limits", limits]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let last = *lines.last().unwrap();
    let rest = last
        .strip_prefix("selftest: ")
        .and_then(|s| s.strip_suffix(" passed, 0 failed"))
        .unwrap_or_else(|| panic!("closing line: {last:?}"));
    let passed: usize = rest.parse().unwrap();
    assert!(passed > 0, "{last}");
    let oks = lines.iter().filter(|l| l.ends_with("| OK")).count();
    let not_run: Vec<&&str> = lines.iter().filter(|l| l.contains("| not run: ")).collect();
    assert_eq!(
        oks, passed,
        "every OK line counted, nothing else:\n{stdout}"
    );
    assert!(!stdout.contains("FAIL"), "{stdout}");
    // H = 257 is past the sequence kernels on every adapter.
    assert!(
        not_run
            .iter()
            .any(|l| l.contains("/sequence |") && l.contains("hidden sizes up to 256")),
        "{stdout}"
    );
    for l in &not_run {
        let reason = l.split("| not run: ").nth(1).unwrap();
        assert!(reason.len() > 10, "a reason: {l}");
        if common::require_gpu() {
            assert!(
                DOCUMENTED_NOT_RUN.iter().any(|d| reason.contains(d)),
                "not run for a reason the suite does not document: {l}"
            );
        }
    }
    // Every plan of the coverage set runs every configuration: each line of
    // the plan passed or is not run with a reason, and the configurations
    // are the same on every plan.
    let ctx = context_of(limits);
    let plans = common::check::coverage_plans(&ctx);
    assert!(!plans.is_empty());
    let per_plan = |plan: &str| -> Vec<&str> {
        let tag = format!(" | {plan} |");
        lines
            .iter()
            .filter(|l| l.contains(&tag))
            .map(|l| l.split(&tag).next().unwrap())
            .collect()
    };
    let configs = per_plan(&plans[0].to_string());
    assert!(configs.len() > 20, "{stdout}");
    for plan in &plans {
        let name = plan.to_string();
        assert_eq!(per_plan(&name), configs, "{name}:\n{stdout}");
        for l in lines.iter().filter(|l| l.contains(&format!(" | {name} |"))) {
            assert!(l.ends_with("| OK") || l.contains("| not run: "), "{l}");
        }
    }
    // A plan that applies anywhere passes somewhere: on lavapipe every
    // plan but the GEMM family's per-step products (not yet written).
    for plan in &plans {
        let name = plan.to_string();
        let ran = lines
            .iter()
            .any(|l| l.contains(&format!(" | {name} |")) && l.ends_with("| OK"));
        let refused_everywhere = lines
            .iter()
            .filter(|l| l.contains(&format!(" | {name} |")))
            .all(|l| l.contains("the per-step products run on the window family only"));
        assert!(ran || refused_everywhere, "{name} never ran:\n{stdout}");
    }
    // Only plans of the coverage set run, and the cpu reference.
    for l in lines.iter().filter(|l| l.ends_with("| OK")) {
        let path = l.split(" | ").nth(1).unwrap();
        assert!(
            path == "cpu-f64" || plans.iter().any(|p| p.to_string() == path),
            "{l}"
        );
    }
    if limits == "webgpu" {
        // The window kernels need 32-byte uniform offsets; WebGPU's are 256.
        for p in ["windows/step", "windows/sequence", "windows/products"] {
            assert!(
                not_run.iter().any(|l| l.starts_with("every configuration")
                    && l.contains(&format!("| {p} |"))
                    && l.contains("32-byte offsets")),
                "{p} listed as not run:\n{stdout}"
            );
            assert!(
                !lines.iter().any(|l| l.contains(p) && l.ends_with("| OK")),
                "{stdout}"
            );
        }
    } else if common::require_gpu() && gru_wgpu::gpu::window_kernels_fit(ctx.limits()).is_ok() {
        // Where the window kernels fit (lavapipe), their plans run.
        assert!(plans.iter().any(|p| p.family.is_windows()), "{plans:?}");
        assert!(!stdout.contains("every configuration |"), "{stdout}");
    }
    // Every kind of check ran: PyTorch cases, the CPU reference on them,
    // random configurations, dropout, determinism.
    for needle in [
        "PyTorch seq_basic",
        "| cpu-f64 |",
        "dropout=",
        "(the same call twice)",
    ] {
        assert!(stdout.contains(needle), "{needle}:\n{stdout}");
    }
    // Then all of it again in f16 where the adapter has SHADER_F16 (lavapipe
    // has it), against the bound 2e-3; the CPU reference once.
    if ctx.features().contains(wgpu::Features::SHADER_F16) {
        let f16: Vec<&&str> = lines.iter().filter(|l| l.contains(" f16 | ")).collect();
        assert!(
            f16.iter()
                .any(|l| l.starts_with("PyTorch seq_basic") && l.ends_with("| OK")),
            "{stdout}"
        );
        for l in &f16 {
            assert!(!l.contains("| cpu-f64 |"), "{l}");
            assert!(
                l.contains("| bound 2e-3 |")
                    || l.contains("(the same call twice)")
                    || l.contains("| not run: "),
                "{l}"
            );
        }
        let all = lines
            .iter()
            .filter(|l| l.contains(" | simple/step |"))
            .count();
        let f16_configs = f16
            .iter()
            .filter(|l| l.contains(" | simple/step |"))
            .count();
        assert_eq!(
            2 * f16_configs,
            all,
            "as many configurations in each precision"
        );
    }
}

#[test]
fn quick_passes_under_the_adapters_limits() {
    quick_passes("adapter");
}

#[test]
fn quick_passes_under_webgpu_limits() {
    quick_passes("webgpu");
}

#[test]
fn json_lines_carry_every_field() {
    if common::gpu().is_none() {
        return;
    }
    // (f16 only: the JSON of the f32 checks is the same but for `precision`.)
    let (out, stdout) = selftest(&[
        "--quick",
        "--json",
        "--limits",
        "webgpu",
        "--precision",
        "f16",
    ]);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let objs: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(objs[0]["type"], "adapter");
    assert_eq!(objs[0]["limits"], "webgpu");
    assert_eq!(objs[0]["level"], "quick");
    assert!(objs[0]["adapter"].as_str().unwrap().len() > 3);
    let summary = objs.last().unwrap();
    assert_eq!(summary["type"], "summary");
    let checks: Vec<&serde_json::Value> = objs[1..objs.len() - 1].iter().collect();
    let count = |o: &str| checks.iter().filter(|c| c["outcome"] == o).count() as u64;
    assert_eq!(summary["passed"], count("passed"));
    assert_eq!(summary["failed"], 0);
    assert_eq!(summary["not_run"], count("not run"));
    assert!(count("passed") > 0 && count("not run") > 0);
    for c in checks {
        assert_eq!(c["type"], "check");
        for f in ["kind", "config", "path", "outcome"] {
            assert!(c[f].is_string(), "{f}: {c}");
        }
        // The `path` field holds a plan's name, or the CPU reference.
        let path = c["path"].as_str().unwrap();
        assert!(
            path == "cpu-f64" || path.parse::<gru_wgpu::gpu::Plan>().is_ok(),
            "{c}"
        );
        assert!(c["bound"].is_number(), "{c}");
        assert!(c["seconds"].is_number(), "{c}");
        assert_eq!(c["precision"], "f16", "{c}");
        if c["outcome"] == "passed" {
            assert!(c["worst"].as_f64().unwrap() <= c["bound"].as_f64().unwrap());
            assert!(c["reason"].is_null());
        } else {
            assert!(c["worst"].is_null(), "{c}");
            assert!(c["reason"].as_str().unwrap().len() > 10, "{c}");
        }
    }
}

#[test]
fn no_adapter_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_gru-wgpu"))
        .args(["selftest", "--quick"])
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("error: "), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("selftest: "),
        "no closing line without an adapter"
    );
}

#[test]
fn a_failing_check_fails_the_suite() {
    if common::gpu().is_none() {
        return;
    }
    // An impossible bound: every GPU check that runs fails (an error of
    // exactly 0 against the f64 reference does not happen), the determinism
    // checks (bound 0 by nature) still pass.
    let options = SelftestOptions {
        profile: LimitsProfile::WebGpu,
        gpu_bound: -1.0,
        gpu_f16_bound: -1.0,
        ..Default::default()
    };
    let mut seen = 0;
    let report = selftest::run(&options, |_| seen += 1).unwrap();
    assert_eq!(seen, report.checks.len());
    assert!(report.failed() > 0);
    assert_eq!(report.exit_status(), 1);
    for c in &report.checks {
        match (&c.outcome, c.kind) {
            (Outcome::Passed, k) => assert!(k == "cpu" || k == "determinism", "{c:?}"),
            (Outcome::Failed(why), _) => assert!(why.contains("> -1e0"), "{c:?}"),
            (Outcome::NotRun(_), _) => assert!(c.worst.is_none()),
        }
    }
    let ok = SelftestOptions {
        profile: LimitsProfile::WebGpu,
        precision: Some(gru_wgpu::Precision::F32),
        ..Default::default()
    };
    assert_eq!(selftest::run(&ok, |_| {}).unwrap().exit_status(), 0);
}

/// `selftest --quick` on SwiftShader too, the second Vulkan driver.
#[test]
fn swiftshader_too() {
    common::rerun_on_swiftshader(&["quick_passes_under_the_adapters_limits"]);
}
