//! What AMD's compiler makes of every pipeline the planner can choose on an
//! AMD GPU, held to the figures that decide GPU speed (issue 24): on NAVI21
//! (RDNA2) and GFX1100 (RDNA3), in wave64 and wave32, no pipeline spills a
//! register or uses scratch memory; every time-loop kernel keeps at least 4
//! waves per SIMD and every matrix-product kernel at least 2.
//!
//! Runs `kernel-stats` (Mesa's RADV null device: AMD's compiler without the
//! hardware). Where RADV is missing the test says so and passes, but under
//! `GRU_WGPU_REQUIRE_GPU` (as in CI, which installs it) that is a failure.

use std::process::Command;

/// Whether the planner can choose a pipeline on an AMD GPU: the ones it
/// cannot are `sequence` with `W_PRIVATE` (CPU adapters only:
/// `ops::common::w_private`) and the subgroup GEMM with groups of 4 lanes
/// (adapters whose subgroups may have fewer than 8 lanes: AMD's have 32 or
/// 64; `ops::gemm`).
fn choosable_on_amd(kernel: &str) -> bool {
    !(kernel.contains("W_PRIVATE=1") || (kernel.contains("shared_a") && kernel.contains("G=4")))
}

fn require_gpu() -> bool {
    std::env::var("GRU_WGPU_REQUIRE_GPU").is_ok_and(|v| !v.is_empty() && v != "0")
}

#[test]
fn no_pipeline_the_planner_can_choose_spills_on_navi21_or_gfx1100_and_all_keep_their_waves() {
    let icd = std::env::var("GRU_WGPU_RADV_ICD")
        .unwrap_or_else(|_| "/usr/share/vulkan/icd.d/radeon_icd.x86_64.json".to_string());
    if !std::path::Path::new(&icd).exists() {
        assert!(
            !require_gpu(),
            "RADV's manifest {icd} is missing (apt-get install -y mesa-vulkan-drivers)"
        );
        eprintln!("not run: RADV's manifest {icd} is missing");
        return;
    }
    let json = std::env::temp_dir().join(format!("kernel-stats-test-{}.jsonl", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_kernel-stats"))
        .args(["--family", "NAVI21", "--family", "GFX1100", "--json"])
        .arg(&json)
        .output()
        .expect("kernel-stats runs");
    assert!(
        out.status.success(),
        "kernel-stats failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&json).unwrap();
    let _ = std::fs::remove_file(&json);
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut targets = std::collections::BTreeSet::new();
    let mut bad = Vec::new();
    let mut checked = 0;
    for r in &records {
        let kernel = r["kernel"].as_str().unwrap();
        let target = format!("{} w{}", r["family"].as_str().unwrap(), r["wave"]);
        targets.insert(target.clone());
        let name = format!(
            "{kernel} [{}] on {target}",
            r["precision"].as_str().unwrap()
        );
        assert!(r["error"].is_null(), "{name}: {}", r["error"]);
        if !choosable_on_amd(kernel) {
            continue;
        }
        checked += 1;
        let stat = |n: &str| {
            r["stats"][n]
                .as_f64()
                .unwrap_or_else(|| panic!("{name}: no statistic `{n}`: {}", r["stats"]))
        };
        let spills = stat("Spilled VGPRs") + stat("Spilled SGPRs");
        let scratch = stat("Scratch size");
        let waves = stat("Subgroups per SIMD");
        let file = r["file"].as_str().unwrap();
        let (what, least) = match file {
            "gru_forward.wgsl" | "gru_backward.wgsl" => ("time-loop kernel", 4.0),
            "gemm.wgsl" | "gemm_subgroup.wgsl" | "windows.wgsl" => ("matrix product", 2.0),
            _ => ("kernel", 1.0),
        };
        if spills > 0.0 || scratch > 0.0 {
            bad.push(format!(
                "{name}: {spills} registers spilled, {scratch} bytes of scratch"
            ));
        }
        if waves < least {
            bad.push(format!(
                "{name}: {waves} waves per SIMD, a {what} needs {least}"
            ));
        }
    }
    let want: std::collections::BTreeSet<String> =
        ["NAVI21 w64", "NAVI21 w32", "GFX1100 w64", "GFX1100 w32"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    assert_eq!(targets, want, "every target compiled");
    // Every pipeline of the crate, f32 and f16, on each of the 4 targets.
    let pipelines = records.len() / 4;
    assert!(
        pipelines > 200 && records.len().is_multiple_of(4),
        "{} records",
        records.len()
    );
    assert!(checked > 150 * 4, "{checked} pipelines checked");
    assert!(
        bad.is_empty(),
        "{} problems:\n{}",
        bad.len(),
        bad.join("\n")
    );
    eprintln!(
        "{pipelines} pipelines x 4 targets; {checked} checked (choosable on AMD): no spills, \
         no scratch, waves as needed"
    );
}
