//! Bitwise the same results as before a change of the engine: a fingerprint
//! (a hash of the bits of the output, h_n and every gradient) of every plan
//! of the coverage set, under both limit profiles, in f32 and f16, on a few
//! shapes (stacked and bidirectional, lengths and resets, the reset-before
//! form, a reverse layer), held against the fingerprints recorded in
//! `tests/data/fingerprints.json` for this adapter and driver.
//!
//! A refactoring of the engine must not change a single bit of any result:
//! run with `GRU_WGPU_RECORD_FINGERPRINTS=1` before it (on each Vulkan
//! driver the suite runs on) to record them, commit the file, and this test
//! holds every later build to them. An adapter with no fingerprints
//! recorded is reported as not run (a failure under GRU_WGPU_REQUIRE_GPU
//! for lavapipe and SwiftShader, whose fingerprints are committed).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::check::RandomCase;
use gru_wgpu::cpu::SeqOptions;
use gru_wgpu::{Direction, GruConfig, Precision};

fn file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/fingerprints.json")
}

/// FNV-1a over the bits of every tensor of a run, in a fixed order.
fn fingerprint(r: &common::Run) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |a: &[u32]| {
        for w in a {
            for b in w.to_le_bytes() {
                h ^= b as u64;
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    };
    eat(&common::bits(&r.0));
    eat(&common::bits(&r.1));
    eat(&common::bits(&r.2.x));
    eat(&common::bits(&r.2.h0));
    for (_, g) in r.2.params.named() {
        let v: Vec<u32> = g.iter().map(|v| v.to_bits()).collect();
        eat(&v);
    }
    format!("{h:016x}")
}

fn cases() -> Vec<(&'static str, RandomCase)> {
    let mut resets = ndarray::Array2::from_elem((7, 3), false);
    resets[[2, 1]] = true;
    resets[[4, 0]] = true;
    vec![
        (
            "stacked bidirectional",
            common::case(
                GruConfig::new(5, 24).layers(2).bidirectional(true),
                6,
                5,
                true,
                1,
            ),
        ),
        (
            "lengths and resets",
            common::case(GruConfig::new(3, 17).bidirectional(true), 7, 3, true, 2).with_seq(
                SeqOptions::new()
                    .lengths(Some(vec![7, 3, 5]))
                    .resets(Some(resets)),
            ),
        ),
        (
            "reset-before",
            common::case(GruConfig::new(4, 70).reset_before(true), 5, 6, false, 3),
        ),
        (
            "reverse",
            common::case(
                GruConfig::new(3, 9)
                    .direction(Direction::Reverse)
                    .batch_first(true),
                8,
                2,
                true,
                4,
            ),
        ),
    ]
}

#[test]
fn every_plan_gives_the_recorded_bits() {
    let Some(base) = common::gpu() else {
        return;
    };
    let adapter = base.adapter().to_string();
    let text = std::fs::read_to_string(file()).unwrap_or_else(|_| "{}".into());
    let mut all: BTreeMap<String, BTreeMap<String, String>> =
        serde_json::from_str(&text).expect("fingerprints.json");
    let record = std::env::var("GRU_WGPU_RECORD_FINGERPRINTS").is_ok_and(|v| v == "1");
    let mut got = BTreeMap::new();
    let has_f16 = base.features().contains(wgpu::Features::SHADER_F16);
    for (name, case) in cases() {
        for precision in [Precision::F32, Precision::F16] {
            if precision == Precision::F16 && !has_f16 {
                continue;
            }
            let mut case = case.clone();
            case.config = case.config.precision(precision);
            case.params = case.params.with_precision(precision);
            for (label, ctx, plan) in common::gpu_paths() {
                if !common::applies(&ctx, &case.config, case.batch, plan, &label) {
                    continue;
                }
                let r = case.run_gpu_plan(&ctx, None, Some(plan)).unwrap();
                got.insert(
                    format!("{name}, {}, {label}", precision.name()),
                    fingerprint(&r),
                );
            }
        }
    }
    if record {
        all.insert(adapter.clone(), got);
        std::fs::write(file(), serde_json::to_string_pretty(&all).unwrap() + "\n").unwrap();
        println!("recorded the fingerprints of {adapter}");
        return;
    }
    let Some(want) = all.get(&adapter) else {
        let known = adapter.contains("llvmpipe") || adapter.contains("SwiftShader");
        assert!(
            !(known && common::require_gpu()),
            "no fingerprints recorded for {adapter} in {}",
            file().display()
        );
        eprintln!("not run: no fingerprints recorded for {adapter}");
        return;
    };
    let mut differ = Vec::new();
    for (k, v) in &got {
        match want.get(k) {
            Some(w) if w == v => {}
            Some(w) => differ.push(format!("{k}: {v}, recorded {w}")),
            None => differ.push(format!("{k}: {v}, none recorded")),
        }
    }
    for k in want.keys() {
        if !got.contains_key(k) {
            differ.push(format!("{k}: recorded but not run"));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} fingerprints differ from those recorded:\n{}",
        differ.len(),
        got.len(),
        differ.join("\n")
    );
    println!("{} fingerprints as recorded on {adapter}", got.len());
}

/// The same on SwiftShader.
#[test]
fn swiftshader_too() {
    common::rerun_on_swiftshader(&["every_plan_gives_the_recorded_bits"]);
}
