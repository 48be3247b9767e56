//! The benchmark's arithmetic and its output formats (never its speed).

mod common;
// The command line's benchmark module, its source included from the binary's.
#[path = "../src/bench.rs"]
#[allow(dead_code, unused_imports)]
mod bench;
// `bench` names the checks' helpers `crate::check`, as the binary has them.
use common::check;

use std::process::Command;

use bench::{compare_table, flops, summarize, valid_fraction, BenchShape, Lengths, Mode, Record};

fn shape(
    batch: usize,
    seq: usize,
    input: usize,
    hidden: usize,
    layers: usize,
    bidirectional: bool,
) -> BenchShape {
    BenchShape {
        batch,
        seq,
        input,
        hidden,
        layers,
        bidirectional,
        precision: gru_wgpu::Precision::F32,
    }
}

#[test]
fn flop_formula() {
    // One layer, one direction: 2·T·B·3H·(I + H).
    assert_eq!(
        flops(&shape(16, 64, 128, 128, 1, false), Mode::Fwd),
        2.0 * 64.0 * 16.0 * 384.0 * 256.0
    );
    // The backward costs twice the forward.
    assert_eq!(
        flops(&shape(16, 64, 128, 128, 1, false), Mode::Fwdbwd),
        3.0 * flops(&shape(16, 64, 128, 128, 1, false), Mode::Fwd)
    );
    // Two directions double it; the second layer reads D·H inputs.
    let l0 = 2.0 * (2.0 * 5.0 * 3.0 * 12.0 * (7.0 + 4.0));
    let l1 = 2.0 * (2.0 * 5.0 * 3.0 * 12.0 * (8.0 + 4.0));
    assert_eq!(flops(&shape(3, 5, 7, 4, 2, true), Mode::Fwd), l0 + l1);
}

#[test]
fn median_min_max() {
    assert_eq!(summarize(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
    assert_eq!(summarize(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
    assert!(summarize(&[]).0.is_nan());
}

const FIELDS: [&str; 17] = [
    "impl",
    "adapter",
    "mode",
    "batch",
    "seq",
    "input",
    "hidden",
    "layers",
    "bidirectional",
    "median_ms",
    "min_ms",
    "max_ms",
    "gpu_ms",
    "gflops",
    "seqs_per_s",
    "dispatches",
    "submissions",
];

fn run_json(args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_gru-wgpu"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is one JSON object"))
        .collect()
}

#[test]
fn json_lines_of_the_cpu_reference() {
    let rows = run_json(&[
        "--device", "cpu", "--batch", "2", "--seq", "3", "--hidden", "4,5", "--input", "3",
        "--iters", "2", "--warmup", "0",
    ]);
    assert_eq!(rows.len(), 4, "two hidden sizes, two modes");
    for r in &rows {
        for f in FIELDS {
            assert!(r.get(f).is_some(), "field {f} missing in {r}");
        }
        assert_eq!(r["impl"], "cpu");
        assert_eq!(r["framework"], "gru-wgpu");
        assert!(r["gpu_ms"].is_null() && r["dispatches"].is_null() && r["submissions"].is_null());
        let rec: Record = serde_json::from_value(r.clone()).unwrap();
        assert_eq!((rec.shape.batch, rec.shape.seq, rec.shape.input), (2, 3, 3));
        assert!(rec.min_ms <= rec.median_ms && rec.median_ms <= rec.max_ms);
        // The derived figures follow from the median.
        let f = flops(&rec.shape, rec.mode);
        assert!((rec.gflops - f / (rec.median_ms * 1e-3) / 1e9).abs() <= 1e-9 * rec.gflops);
        assert!((rec.seqs_per_s - 2.0 / (rec.median_ms * 1e-3)).abs() <= 1e-9 * rec.seqs_per_s);
    }
    let modes: Vec<&str> = rows.iter().map(|r| r["mode"].as_str().unwrap()).collect();
    assert_eq!(modes, ["fwd", "fwdbwd", "fwd", "fwdbwd"]);
}

#[test]
fn json_lines_of_the_gpu() {
    if common::gpu().is_none() {
        return;
    }
    let rows = run_json(&[
        "--batch", "3", "--seq", "5", "--hidden", "8", "--iters", "2", "--warmup", "1", "--mode",
        "fwdbwd",
    ]);
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    for f in FIELDS {
        assert!(r.get(f).is_some(), "field {f} missing in {r}");
    }
    assert_eq!(r["impl"], "gpu");
    assert_eq!(r["mode"], "fwdbwd");
    assert_eq!(
        r["submissions"], 2,
        "one submission for the forward, one for the backward"
    );
    assert!(r["dispatches"].as_u64().unwrap() > 0);
}

/// `bench --lengths`: the new fields on the CPU reference (always) and the
/// GPU (where there is one), absent without the flag; every old field kept.
#[test]
fn lengths_flag() {
    let base = [
        "--batch", "4", "--seq", "6", "--hidden", "5", "--input", "3", "--iters", "1", "--warmup",
        "0",
    ];
    let mut devices = vec!["cpu"];
    if common::gpu().is_some() {
        devices.push("gpu");
    }
    for dev in devices {
        let plain = run_json(&[&base[..], &["--device", dev]].concat());
        for r in &plain {
            for f in ["lengths", "mean_length", "valid_fraction"] {
                assert!(r.get(f).is_none(), "{f} without --lengths: {r}");
            }
        }
        for kind in ["uniform", "random", "random-sorted"] {
            let rows = run_json(&[&base[..], &["--device", dev, "--lengths", kind]].concat());
            assert_eq!(rows.len(), 2, "two modes");
            for r in &rows {
                for f in FIELDS {
                    assert!(r.get(f).is_some(), "field {f} missing in {r}");
                }
                assert_eq!(r["impl"], dev);
                assert_eq!(r["lengths"], kind, "{r}");
                let mean = r["mean_length"].as_f64().unwrap();
                let frac = r["valid_fraction"].as_f64().unwrap();
                assert!((mean / 6.0 - frac).abs() < 1e-12, "{r}");
                let rec: Record = serde_json::from_value(r.clone()).unwrap();
                assert_eq!(rec.lengths.map(|l| l.name()), Some(kind));
            }
            if kind == "uniform" {
                assert_eq!(rows[0]["valid_fraction"], 1.0);
            }
        }
    }
    // The draw: in 1..=T, fixed, and the sorted case the same lengths.
    let r = Lengths::Random.draw(64, 10);
    assert_eq!(r, Lengths::Random.draw(64, 10), "deterministic");
    assert!(r.iter().all(|&l| (1..=10).contains(&l)));
    let mut sorted = r.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(Lengths::RandomSorted.draw(64, 10), sorted);
    assert_eq!(Lengths::Uniform.draw(3, 7), vec![7; 3]);
    assert!((valid_fraction(&[1, 3], 4) - 0.5).abs() < 1e-12);
}

#[test]
fn lengths_flag_refuses_an_unknown_value() {
    for bad in [
        &["--lengths", "sorted"][..],
        &["--lengths"][..],
        &["--lengths", ""][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_gru-wgpu"))
            .args([
                "bench", "--device", "cpu", "--batch", "2", "--seq", "3", "--hidden", "4",
            ])
            .args(bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--lengths"), "{bad:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn compare_and_plot() {
    let dir = std::env::temp_dir().join(format!("gru_wgpu_bench_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A line as benches/torch_gru.py writes it.
    let theirs = r#"{"framework": "torch", "impl": "cpu", "adapter": "torch", "mode": "fwd", "batch": 2, "seq": 3, "input": 4, "hidden": 4, "layers": 1, "bidirectional": false, "median_ms": 10.0, "min_ms": 9.0, "max_ms": 11.0, "gpu_ms": null, "gflops": 0.1, "seqs_per_s": 200.0, "dispatches": null, "submissions": null, "iters": 5, "warmup": 1}"#;
    let file = dir.join("torch.jsonl");
    std::fs::write(&file, format!("{theirs}\n")).unwrap();
    let svg = dir.join("plot.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_gru-wgpu"))
        .args([
            "bench", "--device", "cpu", "--batch", "2", "--seq", "3", "--hidden", "4", "--mode",
            "fwd", "--iters", "1",
        ])
        .arg("--compare")
        .arg(&file)
        .arg("--plot")
        .arg(&svg)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    let row = stdout
        .lines()
        .find(|l| l.contains("torch cpu"))
        .expect("a compared row");
    // The ratio itself is checked exactly in `compare_table_matches_shape_and_mode`.
    let ratio: f64 = row.split_whitespace().last().unwrap().parse().unwrap();
    assert!(ratio > 0.0, "{row}");
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.contains("hidden size H"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compare_table_matches_shape_and_mode() {
    let rec = |framework: &str, mode: Mode, hidden: usize, ms: f64| Record {
        framework: framework.into(),
        implementation: "cpu".into(),
        adapter: "x".into(),
        mode,
        shape: shape(1, 2, 3, hidden, 1, false),
        median_ms: ms,
        min_ms: ms,
        max_ms: ms,
        gpu_ms: None,
        gflops: 1.0,
        seqs_per_s: 1.0,
        dispatches: None,
        submissions: None,
        iters: 1,
        warmup: 0,
        path: None,
        plan: None,
        tuned_ms: None,
        record_ms: None,
        lengths: None,
        mean_length: None,
        valid_fraction: None,
    };
    let ours = [
        rec("gru-wgpu", Mode::Fwd, 4, 2.0),
        rec("gru-wgpu", Mode::Fwdbwd, 4, 5.0),
    ];
    let theirs = [
        rec("torch", Mode::Fwd, 4, 8.0),
        rec("torch", Mode::Fwd, 5, 1.0),
    ];
    let t = compare_table(&ours, &theirs);
    let rows: Vec<&str> = t.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{t}");
    assert!(rows[0].trim_end().ends_with("4.00"), "{t}");
    // Rows with lengths pair with rows of the same lengths only (PyTorch's
    // packed rows from benches/torch_packed.py), never with the padded ones.
    let with = |r: Record, l: Option<Lengths>| Record { lengths: l, ..r };
    let ours = [with(
        rec("gru-wgpu", Mode::Fwd, 4, 2.0),
        Some(Lengths::Random),
    )];
    let theirs = [
        rec("torch", Mode::Fwd, 4, 8.0),
        with(rec("torch", Mode::Fwd, 4, 3.0), Some(Lengths::Random)),
        with(rec("torch", Mode::Fwd, 4, 5.0), Some(Lengths::Uniform)),
    ];
    let t = compare_table(&ours, &theirs);
    let rows: Vec<&str> = t.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{t}");
    assert!(rows[0].trim_end().ends_with("1.50"), "{t}");
}
