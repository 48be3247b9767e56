//! ONNX models: the GRU node loaded into PyTorch's names and order, the
//! onnxruntime cases on the CPU reference, `import-onnx`, and hostile models.

mod common;

use std::path::PathBuf;
use std::process::Command;

use gru_wgpu::onnx::{proto, OnnxCase, OnnxGru, ONNX_BOUND};
use gru_wgpu::{GruConfig, GruError, GruParams, ResetForm};
use prost::Message;

fn extra(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/golden-extra")
        .join(name)
}

fn tmp(name: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("onnx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gru-wgpu"))
}

const CASES: [&str; 2] = [
    "onnx_fwd_lbr0.safetensors",
    "onnx_bidir_lbr1_lens.safetensors",
];

#[test]
fn onnxruntime_cases_on_the_cpu_within_1e5() {
    for name in CASES {
        let case = OnnxCase::load(extra(name)).unwrap();
        for (ty, res) in [
            ("f64", case.run_cpu::<f64>().unwrap()),
            ("f32", case.run_cpu::<f32>().unwrap()),
        ] {
            let checks = case.compare(&res, ONNX_BOUND);
            assert_eq!(checks.len(), 2);
            for c in &checks {
                println!(
                    "{name} {ty} {}: rel {:.3e} max abs {:.3e}",
                    c.name, c.rel, c.max_abs
                );
                assert!(c.ok(), "{name} {ty} {}: {:e}", c.name, c.rel);
            }
        }
    }
    let c = OnnxCase::load(extra("onnx_bidir_lbr1_lens.safetensors")).unwrap();
    assert!(c.lengths.iter().any(|&l| l < c.seq_len), "{:?}", c.lengths);
}

#[test]
fn the_gru_node_maps_to_pytorch_names_and_order() {
    let g = OnnxGru::load(extra("onnx_fwd_lbr0.onnx"), None).unwrap();
    assert!(!g.linear_before_reset);
    let p = g.params().unwrap();
    let c = p.config();
    assert_eq!(c.reset_form, ResetForm::Before);
    assert!(!c.bidirectional && c.bias);
    let h = g.hidden_size;
    let d = p.dir(0, 0).unwrap();
    // weight_ih rows r, z, n are W's rows r (H..2H), z (0..H), h (2H..3H).
    for k in 0..h {
        assert_eq!(d.weight_ih.row(k), g.w.slice(ndarray::s![0, h + k, ..]));
        assert_eq!(d.weight_ih.row(h + k), g.w.slice(ndarray::s![0, k, ..]));
        assert_eq!(
            d.weight_hh.row(2 * h + k),
            g.r.slice(ndarray::s![0, 2 * h + k, ..])
        );
        let b = g.b.as_ref().unwrap();
        assert_eq!(d.bias_ih.as_ref().unwrap()[k], b[[0, h + k]]);
        assert_eq!(d.bias_hh.as_ref().unwrap()[h + k], b[[0, 3 * h + k]]);
        assert_eq!(d.bias_hh.as_ref().unwrap()[2 * h + k], b[[0, 5 * h + k]]);
    }
    let g2 = OnnxGru::load(extra("onnx_bidir_lbr1_lens.onnx"), None).unwrap();
    let c2 = g2.config().unwrap();
    assert!(c2.bidirectional);
    assert_eq!(c2.reset_form, ResetForm::After);
}

#[test]
fn import_onnx_writes_loadable_parameters_with_their_configuration() {
    for model in ["onnx_fwd_lbr0.onnx", "onnx_bidir_lbr1_lens.onnx"] {
        let out = tmp(&format!("{model}.safetensors"));
        let r = bin()
            .args([
                "import-onnx",
                extra(model).to_str().unwrap(),
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let want = OnnxGru::load(extra(model), None).unwrap().params().unwrap();
        let cfg = GruParams::<f32>::config_in_safetensors(&out).unwrap();
        assert_eq!(&cfg, want.config());
        let p = GruParams::<f32>::load_safetensors(&out, &cfg).unwrap();
        assert_eq!(p, want);
        // The reset form in the metadata must agree with the configuration.
        let wrong = cfg.clone().reset_before(cfg.reset_form == ResetForm::After);
        let e = GruParams::<f32>::load_safetensors(&out, &wrong).unwrap_err();
        assert!(e.to_string().contains("metadata `reset_form`"), "{e}");
    }
}

#[test]
fn verify_reads_onnx_cases_on_the_cpu_and_the_gpu() {
    let files: Vec<String> = CASES
        .iter()
        .map(|c| extra(c).to_str().unwrap().to_string())
        .collect();
    let r = bin()
        .args(["verify", "--device", "cpu"])
        .args(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert_eq!(
        r.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains(" Y ") && l.ends_with("OK")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .last()
            .unwrap()
            .starts_with("worst relative error: cpu "),
        "{stdout}"
    );
    if common::gpu().is_none() {
        return;
    }
    // The GPU runs every case beyond nn.GRU too, within the bounds (the
    // ONNX cases' 1e-5, PyTorch's cases' 1e-5 on the GPU).
    let mut all = files.clone();
    for f in [
        "rb_basic.safetensors",
        "rb_stack_bidir.safetensors",
        "packed_basic.safetensors",
        "packed_bidir_bf.safetensors",
        "seg_basic.safetensors",
        "seg_bidir_stack.safetensors",
    ] {
        all.push(extra(f).to_str().unwrap().to_string());
    }
    let r = bin()
        .args(["verify", "--device", "gpu"])
        .args(&all)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&r.stdout);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(0), "{stdout}{stderr}");
    // The rows of checks (not the `gpu plan ...` line above each block).
    let gpu_rows = || {
        stdout.lines().filter(|l| {
            let l = l.trim_start();
            l.starts_with("gpu ") && !l.starts_with("gpu plan ")
        })
    };
    assert!(gpu_rows().count() >= 2 * CASES.len() + 6 * 6, "{stdout}");
    assert!(gpu_rows().all(|l| l.ends_with("OK")), "{stdout}");
}

#[test]
fn the_gpu_runs_the_reset_before_form_on_every_plan() {
    let Some(ctx) = common::gpu() else {
        return;
    };
    let p = GruParams::<f32>::init(&GruConfig::new(3, 4).reset_before(true), 1).unwrap();
    let m = gru_wgpu::gpu::GpuGru::new(&ctx, &p).unwrap();
    let x = ndarray::Array3::<f32>::ones((2, 1, 3));
    let mut ran = 0;
    for plan in m.candidates(1) {
        m.set_plan(Some(plan));
        m.forward(x.view(), gru_wgpu::gpu::ForwardOptions::new())
            .unwrap();
        ran += 1;
    }
    // Every loop of every family this context has (the window family's
    // `products` included where the context has that family).
    let families = ctx.families().len();
    let loops = gru_wgpu::gpu::Strategy::ALL.len();
    assert_eq!(ran, families * loops, "{:?}", m.candidates(1));
    m.set_plan(None);
    m.forward(x.view(), gru_wgpu::gpu::ForwardOptions::new())
        .unwrap();
}

fn model(name: &str) -> proto::ModelProto {
    proto::ModelProto::decode(&std::fs::read(extra(name)).unwrap()[..]).unwrap()
}

fn load(m: &proto::ModelProto, node: Option<&str>) -> gru_wgpu::Result<OnnxGru> {
    OnnxGru::from_bytes(&m.encode_to_vec(), "crafted.onnx", node)
}

fn gru_node(m: &mut proto::ModelProto) -> &mut proto::NodeProto {
    let g = m.graph.as_mut().unwrap();
    g.node.iter_mut().find(|n| n.op_type == "GRU").unwrap()
}

fn attr(name: &str) -> proto::AttributeProto {
    proto::AttributeProto {
        name: name.into(),
        ..Default::default()
    }
}

#[test]
fn hostile_models_are_refused_with_clear_errors() {
    let bytes = std::fs::read(extra("onnx_fwd_lbr0.onnx")).unwrap();
    let e = OnnxGru::from_bytes(&bytes[..bytes.len() / 2], "cut.onnx", None).unwrap_err();
    assert!(
        e.to_string().contains("cut.onnx: not a valid ONNX model"),
        "{e}"
    );
    // No GRU node.
    let mut m = model("onnx_fwd_lbr0.onnx");
    gru_node(&mut m).op_type = "LSTM".into();
    let e = load(&m, None).unwrap_err();
    assert!(
        e.to_string().contains("the ONNX model has no GRU node"),
        "{e}"
    );
    // Two GRU nodes side by side are no stack: name the one wanted.
    let mut m = model("onnx_fwd_lbr0.onnx");
    gru_node(&mut m).name = "first".into();
    let mut second = gru_node(&mut m).clone();
    second.name = "second".into();
    second.output = vec!["Y2".into()];
    m.graph.as_mut().unwrap().node.push(second);
    let e = load(&m, None).unwrap_err();
    assert!(
        e.to_string()
            .contains("2 GRU nodes (`first`, `second`), but they are not one stack"),
        "{e}"
    );
    assert!(e.to_string().contains("with --node NAME"), "{e}");
    assert_eq!(load(&m, Some("second")).unwrap().name, "second");
    let e = load(&m, Some("third")).unwrap_err();
    assert!(e.to_string().contains("no GRU node named `third`"), "{e}");
    // External data.
    let mut m = model("onnx_fwd_lbr0.onnx");
    let w = gru_node(&mut m).input[1].clone();
    let t = m
        .graph
        .as_mut()
        .unwrap()
        .initializer
        .iter_mut()
        .find(|t| t.name == w)
        .unwrap();
    t.data_location = proto::EXTERNAL;
    t.raw_data.clear();
    t.external_data.push(proto::StringStringEntryProto {
        key: "location".into(),
        value: "weights.bin".into(),
    });
    let e = load(&m, None).unwrap_err();
    assert!(
        e.to_string().contains("external data file (`weights.bin`)"),
        "{e}"
    );
    // clip, activations, reverse.
    let mut m = model("onnx_fwd_lbr0.onnx");
    let mut clip = attr("clip");
    clip.f = 3.0;
    gru_node(&mut m).attribute.push(clip);
    assert!(load(&m, None).unwrap_err().to_string().contains("`clip`"));
    let mut m = model("onnx_fwd_lbr0.onnx");
    let mut act = attr("activations");
    act.strings = vec![b"Sigmoid".to_vec(), b"Relu".to_vec()];
    gru_node(&mut m).attribute.push(act);
    let e = load(&m, None).unwrap_err();
    assert!(
        e.to_string()
            .contains("activations [\"Sigmoid\", \"Relu\"] are not supported"),
        "{e}"
    );
    let mut m = model("onnx_fwd_lbr0.onnx");
    let mut act = attr("activations");
    act.strings = vec![b"Sigmoid".to_vec(), b"Tanh".to_vec()];
    gru_node(&mut m).attribute.push(act);
    load(&m, None).unwrap();
    let mut m = model("onnx_fwd_lbr0.onnx");
    let n = gru_node(&mut m);
    n.attribute.retain(|a| a.name != "direction");
    let mut dir = attr("direction");
    dir.s = b"reverse".to_vec();
    n.attribute.push(dir);
    let g = load(&m, None).unwrap();
    let e = g.params().unwrap_err();
    assert!(matches!(e, GruError::NotImplemented { .. }), "{e:?}");
    assert!(e.to_string().contains("direction `reverse`"), "{e}");
    // A W of the wrong size.
    let mut m = model("onnx_fwd_lbr0.onnx");
    let w = gru_node(&mut m).input[1].clone();
    let t = m
        .graph
        .as_mut()
        .unwrap()
        .initializer
        .iter_mut()
        .find(|t| t.name == w)
        .unwrap();
    t.raw_data.truncate(8);
    assert!(load(&m, None)
        .unwrap_err()
        .to_string()
        .contains("holds 8 bytes"));
    // And on the command line: exit 2, no panic.
    let cut = tmp("cut.onnx");
    std::fs::write(&cut, &bytes[..100]).unwrap();
    let r = bin()
        .args([
            "import-onnx",
            cut.to_str().unwrap(),
            tmp("x.safetensors").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a valid ONNX model"), "{stderr}");
    // Sizes whose product is zero but whose 3H would overflow.
    let mut m = model("onnx_fwd_lbr0.onnx");
    let r_name = gru_node(&mut m).input[2].clone();
    let t = m
        .graph
        .as_mut()
        .unwrap()
        .initializer
        .iter_mut()
        .find(|t| t.name == r_name)
        .unwrap();
    t.dims = vec![1, 0, i64::MAX];
    t.raw_data.clear();
    let e = load(&m, None).unwrap_err();
    assert!(
        e.to_string().contains("expected (D, 3H, I) and (D, 3H, H)"),
        "{e}"
    );
}

/// A copy of an onnx-gru-v1 case with its metadata edited, beside a copy of its model.
fn edited_case(edit: impl FnOnce(&mut std::collections::HashMap<String, String>)) -> PathBuf {
    let bytes = std::fs::read(extra("onnx_fwd_lbr0.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut m = meta.metadata().clone().unwrap();
    edit(&mut m);
    let out = safetensors::serialize(st.tensors(), Some(m)).unwrap();
    let p = tmp("case.safetensors");
    std::fs::write(&p, out).unwrap();
    std::fs::copy(extra("onnx_fwd_lbr0.onnx"), tmp("onnx_fwd_lbr0.onnx")).unwrap();
    p
}

#[test]
fn hostile_onnx_cases_are_refused() {
    for (edit, needle) in [
        (
            ("model", "../onnx_fwd_lbr0.onnx"),
            "it must be a file name in the case's folder",
        ),
        (
            ("linear_before_reset", "1"),
            "metadata `linear_before_reset` is `1` but the model",
        ),
        (
            ("layout", "1"),
            "metadata `layout` is `1` but the model onnx_fwd_lbr0.onnx has `0`",
        ),
        (("layout", "2"), "metadata `layout` is `2`, expected 0 or 1"),
        (("clip", "3"), "metadata `clip` = `3` is not supported"),
        (("model", "missing.onnx"), "missing.onnx"),
    ] {
        let p = edited_case(|m| {
            m.insert(edit.0.into(), edit.1.into());
        });
        let e = OnnxCase::load(&p).unwrap_err();
        assert!(e.to_string().contains(needle), "{e}");
    }
    assert!(OnnxCase::load(edited_case(|_| {})).is_ok());
}

#[test]
fn text_from_a_model_is_escaped_and_capped_in_messages() {
    // Terminal escapes in node names, in an external data location, in
    // attribute names: printed escaped, never raw.
    let evil = "\u{1b}[2J\u{1b}[31mevil\u{7}";
    let mut m = model("onnx_fwd_lbr0.onnx");
    gru_node(&mut m).name = evil.into();
    let mut second = gru_node(&mut m).clone();
    second.name = format!("{evil}2");
    m.graph.as_mut().unwrap().node.push(second);
    let e = load(&m, None).unwrap_err().to_string();
    assert!(!e.contains('\u{1b}') && !e.contains('\u{7}'), "{e:?}");
    assert!(e.contains("`\\u{1b}[2J\\u{1b}[31mevil\\u{7}`"), "{e}");
    let e = load(&m, Some("nothing")).unwrap_err().to_string();
    assert!(!e.contains('\u{1b}'), "{e:?}");
    let mut m = model("onnx_fwd_lbr0.onnx");
    let w = gru_node(&mut m).input[1].clone();
    let t = m
        .graph
        .as_mut()
        .unwrap()
        .initializer
        .iter_mut()
        .find(|t| t.name == w)
        .unwrap();
    t.data_location = proto::EXTERNAL;
    t.external_data.push(proto::StringStringEntryProto {
        key: "location".into(),
        value: format!("{evil}.bin"),
    });
    let e = load(&m, None).unwrap_err().to_string();
    assert!(
        !e.contains('\u{1b}') && e.contains("\\u{1b}[31mevil"),
        "{e:?}"
    );
    let mut m = model("onnx_fwd_lbr0.onnx");
    gru_node(&mut m).attribute.push(attr(evil));
    let e = load(&m, None).unwrap_err().to_string();
    assert!(
        !e.contains('\u{1b}') && e.contains("unknown attribute"),
        "{e:?}"
    );
    // A name of a megabyte is cut to a few hundred characters.
    let mut m = model("onnx_fwd_lbr0.onnx");
    gru_node(&mut m).attribute.push(attr(&"x".repeat(1 << 20)));
    let e = load(&m, None).unwrap_err().to_string();
    assert!(e.len() < 1000, "{} bytes", e.len());
    assert!(e.contains("more bytes)"), "{e}");
    // A list of 100000 activations: the message names a few.
    let mut m = model("onnx_fwd_lbr0.onnx");
    let mut act = attr("activations");
    act.strings = vec![b"Relu".to_vec(); 100_000];
    gru_node(&mut m).attribute.push(act);
    let e = load(&m, None).unwrap_err().to_string();
    assert!(e.len() < 1000, "{} bytes", e.len());
    assert!(
        e.contains("\"Relu\", \"Relu\"") && e.contains("99996 more"),
        "{e}"
    );
    // import-onnx prints the node's name escaped.
    let mut m = model("onnx_fwd_lbr0.onnx");
    gru_node(&mut m).name = evil.into();
    let path = tmp("evil.onnx");
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    let r = bin()
        .args([
            "import-onnx",
            path.to_str().unwrap(),
            tmp("evil.safetensors").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert_eq!(r.status.code(), Some(0), "{stdout}");
    assert!(
        !stdout.contains('\u{1b}') && stdout.contains("\\u{1b}[31mevil"),
        "{stdout:?}"
    );
}

#[test]
fn a_model_whose_layout_differs_from_the_case_is_refused() {
    // In a folder of its own: the other tests use the original model.
    let dir = tmp("layout");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("case.safetensors");
    std::fs::copy(extra("onnx_fwd_lbr0.safetensors"), &p).unwrap();
    let mut m = model("onnx_fwd_lbr0.onnx");
    let n = gru_node(&mut m);
    n.attribute.retain(|a| a.name != "layout");
    let mut layout = attr("layout");
    layout.i = 1;
    n.attribute.push(layout);
    std::fs::write(dir.join("onnx_fwd_lbr0.onnx"), m.encode_to_vec()).unwrap();
    let e = OnnxCase::load(&p).unwrap_err();
    assert!(
        e.to_string()
            .contains("metadata `layout` is `0` but the model onnx_fwd_lbr0.onnx has `1`"),
        "{e}"
    );
}
