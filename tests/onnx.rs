//! ONNX models: the GRU node loaded into PyTorch's names and order, the
//! onnxruntime cases on the CPU reference, `import-onnx`, and hostile models.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use gru_wgpu::onnx::stack::{BatchFirst, Flatten, InitialState, TargetSource};
use gru_wgpu::onnx::{proto, OnnxCase, OnnxGru, OnnxModelCase, ONNX_BOUND};
use gru_wgpu::{GruConfig, GruParams, ResetForm};
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
    assert!(!c.is_bidirectional() && c.bias);
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
    assert!(c2.is_bidirectional());
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
        m.forward(x.view(), gru_wgpu::gpu::ForwardOptions::default())
            .unwrap();
        ran += 1;
    }
    // Every loop of every family this context has (the window family's
    // `products` included where the context has that family).
    let families = ctx.families().len();
    let loops = gru_wgpu::gpu::Strategy::ALL.len();
    assert_eq!(ran, families * loops, "{:?}", m.candidates(1));
    m.set_plan(None);
    m.forward(x.view(), gru_wgpu::gpu::ForwardOptions::default())
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
    // A reverse node is a reverse GRU (its one direction under PyTorch's
    // `_reverse` names), and import-onnx takes it.
    let g = load(&m, None).unwrap();
    let c = g.config().unwrap();
    assert_eq!(c.direction, gru_wgpu::Direction::Reverse);
    assert!(g
        .params()
        .unwrap()
        .named()
        .iter()
        .all(|(s, _)| s.name.ends_with("_l0_reverse")));
    let reverse = tmp("reverse.onnx");
    std::fs::write(&reverse, m.encode_to_vec()).unwrap();
    let out = tmp("reverse.safetensors");
    let r = bin()
        .args([
            "import-onnx",
            reverse.to_str().unwrap(),
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert_eq!(r.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("direction: reverse"), "{stdout}");
    let p = gru_wgpu::GruParams::<f32>::load_safetensors(&out, &c).unwrap();
    assert_eq!(p.config().direction, gru_wgpu::Direction::Reverse);
    // A direction that is none of ONNX's is refused, naming the file as
    // every other refusal does.
    let n = gru_node(&mut m);
    n.attribute.retain(|a| a.name != "direction");
    let mut dir = attr("direction");
    dir.s = b"sideways".to_vec();
    n.attribute.push(dir);
    let e = load(&m, None).unwrap_err();
    assert!(e.to_string().starts_with("crafted.onnx: GRU node `"), "{e}");
    assert!(e.to_string().contains("direction `sideways`"), "{e}");
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

// ------------------------------------------------ torch exports (issue 22)

fn exports_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/onnx-exports")
}

fn exports(name: &str) -> PathBuf {
    exports_dir().join(name)
}

/// What each stored `onnx-model-v1` case's model must import as.
struct Expect {
    name: &'static str,
    layers: usize,
    bidirectional: bool,
    /// A single reverse direction (ONNX's `direction = "reverse"`).
    reverse: bool,
    batch_first: bool,
    h0: bool,
    lengths: bool,
    /// Initializers read from external data.
    external: usize,
    /// The exporter `import-onnx` names (`dynamo=False`, `dynamo=True`), if any.
    exporter: Option<&'static str>,
    /// How the layers are joined (`Squeeze`, or the Reshape's target source).
    join: Option<Join>,
}

#[derive(Debug, PartialEq)]
enum Join {
    Squeeze,
    Reshape(TargetSource),
}

const LEGACY: Option<&str> = Some("dynamo=False");
const DYNAMO: Option<&str> = Some("dynamo=True");

#[rustfmt::skip]
const EXPECT: [Expect; 16] = [
    Expect { name: "torch_l1_legacy", layers: 1, bidirectional: false, reverse: false, batch_first: false, h0: false, lengths: false, external: 0, exporter: LEGACY, join: None },
    Expect { name: "torch_l1_dynamo", layers: 1, bidirectional: false, reverse: false, batch_first: false, h0: false, lengths: false, external: 1, exporter: DYNAMO, join: None },
    Expect { name: "torch_l2_legacy", layers: 2, bidirectional: false, reverse: false, batch_first: false, h0: true, lengths: false, external: 0, exporter: LEGACY, join: Some(Join::Squeeze) },
    Expect { name: "torch_l2_dynamo", layers: 2, bidirectional: false, reverse: false, batch_first: false, h0: true, lengths: false, external: 3, exporter: DYNAMO, join: Some(Join::Reshape(TargetSource::Computed)) },
    Expect { name: "torch_l2_bidir_legacy", layers: 2, bidirectional: true, reverse: false, batch_first: false, h0: false, lengths: false, external: 0, exporter: LEGACY, join: Some(Join::Reshape(TargetSource::ConstantNode)) },
    Expect { name: "torch_l2_bidir_dynamo", layers: 2, bidirectional: true, reverse: false, batch_first: false, h0: false, lengths: false, external: 4, exporter: DYNAMO, join: Some(Join::Reshape(TargetSource::Initializer)) },
    Expect { name: "torch_bf_legacy", layers: 1, bidirectional: false, reverse: false, batch_first: true, h0: false, lengths: false, external: 0, exporter: LEGACY, join: None },
    Expect { name: "torch_bf_dynamo", layers: 1, bidirectional: false, reverse: false, batch_first: true, h0: false, lengths: false, external: 1, exporter: DYNAMO, join: None },
    Expect { name: "torch_bf_stack_legacy", layers: 2, bidirectional: true, reverse: false, batch_first: true, h0: true, lengths: false, external: 0, exporter: LEGACY, join: Some(Join::Reshape(TargetSource::ConstantNode)) },
    Expect { name: "torch_bf_stack_dynamo", layers: 2, bidirectional: true, reverse: false, batch_first: true, h0: true, lengths: false, external: 4, exporter: DYNAMO, join: Some(Join::Reshape(TargetSource::Computed)) },
    Expect { name: "torch_l2_ext_dynamo", layers: 2, bidirectional: false, reverse: false, batch_first: false, h0: true, lengths: false, external: 6, exporter: DYNAMO, join: Some(Join::Reshape(TargetSource::Initializer)) },
    Expect { name: "torch_l2_bidir_legacy_ext", layers: 2, bidirectional: true, reverse: false, batch_first: false, h0: false, lengths: false, external: 6, exporter: LEGACY, join: Some(Join::Reshape(TargetSource::ConstantNode)) },
    Expect { name: "hand_chain3", layers: 3, bidirectional: true, reverse: false, batch_first: false, h0: true, lengths: true, external: 0, exporter: None, join: Some(Join::Reshape(TargetSource::Initializer)) },
    Expect { name: "hand_ext_subfolder", layers: 1, bidirectional: false, reverse: false, batch_first: false, h0: false, lengths: false, external: 3, exporter: None, join: None },
    Expect { name: "hand_reverse", layers: 1, bidirectional: false, reverse: true, batch_first: false, h0: true, lengths: false, external: 0, exporter: None, join: None },
    Expect { name: "hand_reverse_stack", layers: 2, bidirectional: false, reverse: true, batch_first: false, h0: true, lengths: true, external: 0, exporter: None, join: Some(Join::Squeeze) },
];

/// Every `onnx-model-v1` case of the folder, with what it must import as.
fn model_cases() -> Vec<(OnnxModelCase, &'static Expect)> {
    let mut stored: Vec<String> = std::fs::read_dir(exports_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| gru_wgpu::onnx::is_onnx_model_case(p))
        .map(|p| p.file_stem().unwrap().to_str().unwrap().to_string())
        .collect();
    stored.sort();
    let mut listed: Vec<String> = EXPECT.iter().map(|e| e.name.to_string()).collect();
    listed.sort();
    assert_eq!(stored, listed, "every stored case has its expectation");
    EXPECT
        .iter()
        .map(|e| {
            let case = OnnxModelCase::load(exports(&format!("{}.safetensors", e.name)))
                .unwrap_or_else(|err| panic!("{}: {err}", e.name));
            (case, e)
        })
        .collect()
}

fn check_import(case: &OnnxModelCase, e: &Expect) {
    let c = &case.config;
    let r = &case.stack.report;
    let what = e.name;
    assert_eq!(c.num_layers, e.layers, "{what}");
    assert_eq!(c.is_bidirectional(), e.bidirectional, "{what}");
    assert_eq!(
        c.direction == gru_wgpu::Direction::Reverse,
        e.reverse,
        "{what}"
    );
    assert_eq!(c.batch_first, e.batch_first, "{what}");
    assert!(c.bias, "{what}");
    let before = ["hand_chain3", "hand_reverse"].contains(&e.name);
    assert_eq!(c.reset_form == ResetForm::Before, before, "{what}");
    assert_eq!(case.h0.is_some(), e.h0, "{what}");
    assert_eq!(case.lengths.is_some(), e.lengths, "{what}");
    assert_eq!(r.lengths.is_some(), e.lengths, "{what}");
    assert_eq!(r.external.len(), e.external, "{what}: {:?}", r.external);
    let exporter = r.exporter();
    match e.exporter {
        Some(want) => assert!(
            exporter.is_some_and(|x| x.contains(want)),
            "{what}: {exporter:?}"
        ),
        None => assert_eq!(exporter, None, "{what}"),
    }
    assert_eq!(r.joins.len(), e.layers - 1, "{what}");
    for j in &r.joins {
        let kind = match j {
            Flatten::Squeeze => Join::Squeeze,
            Flatten::TransposeReshape { source, .. } => Join::Reshape(*source),
        };
        assert_eq!(Some(kind), e.join, "{what}: {j:?}");
    }
    assert_eq!(
        r.batch_first,
        if e.batch_first {
            BatchFirst::Transposes { input: "x".into() }
        } else {
            BatchFirst::No
        },
        "{what}"
    );
    // Each layer from zeros, or from its rows of `h0`.
    for (l, s) in r.initial_state.iter().enumerate() {
        let d = if e.bidirectional { 2 } else { 1 };
        if e.h0 {
            let rows = Some((l as i64 * d, (l as i64 + 1) * d));
            let input = "h0".to_string();
            assert_eq!(s, &InitialState::Input { input, rows }, "{what}");
        } else {
            assert!(s.is_zeros(), "{what}: {s:?}");
        }
    }
    assert!(r.notes.is_empty(), "{what}: {:?}", r.notes);
}

#[test]
fn every_stored_export_imports_as_its_nn_gru_and_matches_onnxruntime_and_torch_on_the_cpu() {
    let mut worst = 0.0f64;
    for (case, e) in model_cases() {
        check_import(&case, e);
        for (ty, res) in [
            ("f64", case.run_cpu::<f64>().unwrap()),
            ("f32", case.run_cpu::<f32>().unwrap()),
        ] {
            let checks = case.compare(&res, ONNX_BOUND);
            let want = if case.torch.is_some() { 4 } else { 2 };
            assert_eq!(checks.len(), want, "{}", e.name);
            for c in &checks {
                assert!(c.ok(), "{} {ty} {}: {:e}", e.name, c.name, c.rel);
                worst = worst.max(c.rel);
            }
        }
        assert_eq!(case.torch.is_some(), e.name.starts_with("torch_"));
    }
    println!("worst relative error of the CPU reference on the stored exports: {worst:.3e}");
}

#[test]
fn every_stored_export_matches_onnxruntime_on_the_gpu() {
    let Some(ctx) = common::gpu() else {
        return;
    };
    let mut worst = 0.0f64;
    for (case, e) in model_cases() {
        let res = case
            .run_gpu_plan(&ctx, gru_wgpu::Precision::F32, None)
            .unwrap();
        for c in case.compare(&res, ONNX_BOUND) {
            assert!(c.ok(), "{} {}: {:e}", e.name, c.name, c.rel);
            worst = worst.max(c.rel);
        }
    }
    // The stacks with lengths, h0, reset-before and batch_first on every plan.
    let mut plans = 0;
    for name in ["hand_chain3", "torch_bf_stack_dynamo", "hand_reverse_stack"] {
        let case = OnnxModelCase::load(exports(&format!("{name}.safetensors"))).unwrap();
        let model = gru_wgpu::gpu::GpuGru::new(&ctx, &case.stack.params().unwrap()).unwrap();
        for plan in model.candidates(case.batch) {
            let res = case
                .run_gpu_plan(&ctx, gru_wgpu::Precision::F32, Some(plan))
                .unwrap();
            for c in case.compare(&res, ONNX_BOUND) {
                assert!(c.ok(), "{name} on {plan}: {} {:e}", c.name, c.rel);
                worst = worst.max(c.rel);
            }
            plans += 1;
        }
    }
    assert!(plans >= 4, "{plans}");
    println!("worst relative error of the GPU on the stored exports: {worst:.3e} ({plans} plans)");
}

#[test]
fn a_layout_1_node_runs_with_onnx_batch_first_shapes() {
    let case = OnnxCase::load(exports("hand_layout1.safetensors")).unwrap();
    assert_eq!(case.gru.layout, 1);
    assert!(case.config.batch_first && case.config.is_bidirectional());
    let (t, b) = (case.seq_len, case.batch);
    assert_eq!(case.x.shape(), &[b, t, 3]);
    assert_eq!(case.y.shape(), &[b, t, 2, 5]);
    assert_eq!(case.y_h.shape(), &[b, 2, 5]);
    assert_eq!(case.initial_h.shape(), &[2, b, 5], "nn.GRU's (D, B, H)");
    assert!(case.lengths.iter().any(|&l| l < t));
    let mut results = vec![("cpu f64", case.run_cpu::<f64>().unwrap())];
    results.push(("cpu f32", case.run_cpu::<f32>().unwrap()));
    if let Some(ctx) = common::gpu() {
        results.push(("gpu", case.run_gpu(&ctx).unwrap()));
    }
    for (what, res) in results {
        for c in case.compare(&res, ONNX_BOUND) {
            println!("layout 1 {what} {}: {:.3e}", c.name, c.rel);
            assert!(c.ok(), "{what} {}: {:e}", c.name, c.rel);
        }
    }
    let stack = gru_wgpu::onnx::OnnxStack::load(exports("hand_layout1.onnx"), None).unwrap();
    assert_eq!(stack.report.batch_first, BatchFirst::Layout1);
}

#[test]
fn without_the_transposes_a_batch_first_export_would_be_far_off() {
    // torch_bf_legacy's (B, T, I) input run as sequence first, as the
    // import read it before: the output is not onnxruntime's.
    let case = OnnxModelCase::load(exports("torch_bf_legacy.safetensors")).unwrap();
    assert!(case.config.batch_first);
    let mut config = case.config.clone();
    config.batch_first = false;
    let params = case.stack.params().unwrap();
    let named: std::collections::BTreeMap<String, ndarray::ArrayD<f64>> = params
        .named()
        .into_iter()
        .map(|(spec, v)| (spec.name, v.mapv(f64::from)))
        .collect();
    let wrong = GruParams::<f64>::from_named(&config, &named).unwrap();
    let mut gru = gru_wgpu::cpu::Gru::new(wrong);
    let (out, _) = gru.forward(case.x.mapv(f64::from).view(), None).unwrap();
    let rel = gru_wgpu::real::rel_error(out.iter().copied(), case.output.iter());
    println!("torch_bf_legacy read as sequence first: relative error {rel:.3}");
    assert!(rel > 0.1, "{rel}");
}

fn run_import(model: &Path, extra: &[&str]) -> (std::process::Output, PathBuf) {
    let out = tmp(&format!(
        "{}-{}.safetensors",
        model.file_stem().unwrap().to_str().unwrap(),
        extra.len()
    ));
    let r = bin()
        .args([
            "import-onnx",
            model.to_str().unwrap(),
            out.to_str().unwrap(),
        ])
        .args(extra)
        .output()
        .unwrap();
    (r, out)
}

#[test]
fn import_onnx_prints_what_it_decided_and_writes_the_stack() {
    for (name, says) in [
        (
            "torch_bf_stack_dynamo",
            &[
                "GRU nodes `node_GRU_74`, `node_GRU_157`",
                "layers: 2 GRU nodes as one stack (num_layers = 2)",
                "join 0->1: Transpose (0, 2, 1, 3) and Reshape to [T, B, D·H] (computed from the tensor's Shape)",
                "direction: bidirectional (bidirectional = true)",
                "batch_first: true (Transpose (1, 0, 2) of the graph input `x` and of the output",
                "initial_h: rows l·D..(l+1)·D of the graph input `h0` for layer l",
                "lengths: none (no sequence_lens input)",
                "weights: 4 initializers (2760 bytes) from external data: `torch_bf_stack_dynamo.onnx.data`",
                "the graph has the pattern of torch.onnx.export with dynamo=True",
                "config: input_size=3 hidden_size=5 num_layers=2 bidirectional=true batch_first=true bias=true reset_form=after",
            ][..],
        ),
        (
            "torch_l2_legacy",
            &[
                "join 0->1: Squeeze of axis 1 (the direction axis)",
                "batch_first: false",
                "weights: inside the model file",
                "pattern of torch.onnx.export with dynamo=False",
                "num_layers=2 bidirectional=false batch_first=false",
            ][..],
        ),
        (
            "torch_bf_legacy",
            &[
                "layers: 1 (GRU node `/gru/GRU`)",
                "output: Y through Squeeze of axis 1",
                "batch_first: true (Transpose (1, 0, 2) of the graph input `x`",
                "initial_h: zeros (Expand of a Constant of zeros; the model takes no h0)",
            ][..],
        ),
        (
            "hand_chain3",
            &[
                "layers: 3 GRU nodes as one stack (num_layers = 3)",
                "lengths: the sequence_lens input `lens`",
                "producer: onnx.helper (by hand)",
                "reset_form=before",
            ][..],
        ),
        (
            "hand_layout1",
            &[
                "batch_first: true (the node's layout = 1)",
                "initial_h: the graph input `initial_h`",
            ][..],
        ),
    ] {
        let model = exports(&format!("{name}.onnx"));
        let (r, out) = run_import(&model, &[]);
        let stdout = String::from_utf8_lossy(&r.stdout);
        assert!(
            r.status.success(),
            "{name}: {stdout}{}",
            String::from_utf8_lossy(&r.stderr)
        );
        for s in says {
            assert!(stdout.contains(s), "{name}: `{s}` not in\n{stdout}");
        }
        let want = gru_wgpu::onnx::OnnxStack::load(&model, None)
            .unwrap()
            .params()
            .unwrap();
        let cfg = GruParams::<f32>::config_in_safetensors(&out).unwrap();
        assert_eq!(&cfg, want.config(), "{name}");
        assert_eq!(GruParams::<f32>::load_safetensors(&out, &cfg).unwrap(), want);
    }
}

#[test]
fn a_stack_is_layer_by_layer_its_nodes_weights() {
    let stack =
        gru_wgpu::onnx::OnnxStack::load(exports("torch_l2_bidir_legacy.onnx"), None).unwrap();
    let p = stack.params().unwrap();
    for (l, node) in ["/gru/GRU", "/gru/GRU_1"].into_iter().enumerate() {
        let one = OnnxGru::load(exports("torch_l2_bidir_legacy.onnx"), Some(node)).unwrap();
        assert_eq!(stack.layers[l].name, node);
        let single = one.params().unwrap();
        for d in 0..2 {
            let (a, b) = (p.dir(l, d).unwrap(), single.dir(0, d).unwrap());
            assert_eq!(a.weight_ih, b.weight_ih);
            assert_eq!(a.weight_hh, b.weight_hh);
            assert_eq!(a.bias_ih, b.bias_ih);
            assert_eq!(a.bias_hh, b.bias_hh);
        }
    }
    // OnnxGru alone says that the model is a stack.
    let e = OnnxGru::load(exports("torch_l2_bidir_legacy.onnx"), None).unwrap_err();
    assert!(
        e.to_string()
            .contains("2 GRU nodes (`/gru/GRU`, `/gru/GRU_1`) are one stack of 2 layers"),
        "{e}"
    );
}

#[test]
fn node_picks_one_node_of_a_stack_or_of_a_graph_that_is_none() {
    // The top layer of a stack: one layer reading D·H features, its
    // initial state rows 1..2 of h0.
    let (r, out) = run_import(&exports("torch_l2_legacy.onnx"), &["--node", "/gru/GRU_1"]);
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(
        r.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(
        stdout.contains("layers: 1 (GRU node `/gru/GRU_1`, picked by --node of the model's 2)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("initial_h: rows 1..2 of the graph input `h0`"),
        "{stdout}"
    );
    assert!(stdout.contains("note: initial_h is rows 1..2"), "{stdout}");
    let cfg = GruParams::<f32>::config_in_safetensors(&out).unwrap();
    assert_eq!((cfg.num_layers, cfg.input_size, cfg.hidden_size), (1, 5, 5));
    // Nodes that are no stack, one at a time.
    for (model, node) in [("hand_parallel", "gru_b"), ("hand_add_between", "gru_b")] {
        let (r, _) = run_import(&exports(&format!("{model}.onnx")), &["--node", node]);
        let stdout = String::from_utf8_lossy(&r.stdout);
        assert!(
            r.status.success(),
            "{model}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        assert!(stdout.contains(&format!("GRU node `{node}`")), "{stdout}");
    }
    let (r, _) = run_import(&exports("hand_add_between.onnx"), &["--node", "gru_b"]);
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(
        stdout.contains("note: the first layer reads `Xb`, made by `Add` node `between`"),
        "{stdout}"
    );
}

#[test]
fn graphs_between_gru_nodes_that_are_not_a_stack_are_refused_with_what_was_found() {
    let err = |name: &str| {
        let (r, out) = run_import(&exports(&format!("{name}.onnx")), &[]);
        assert_eq!(r.status.code(), Some(2), "{name}");
        assert!(!out.exists(), "{name}");
        String::from_utf8_lossy(&r.stderr).into_owned()
    };
    let e = err("hand_parallel");
    assert!(
        e.contains("2 GRU nodes (`gru_a`, `gru_b`), but they are not one stack")
            && e.contains("GRU node `gru_a` reads the graph input `x`; GRU node `gru_b` reads the graph input `x`")
            && e.contains("import one of them with --node NAME"),
        "{e}"
    );
    let e = err("hand_add_between");
    assert!(
        e.contains("GRU node `gru_b` reads `Xb`, made by `Add` node `between`"),
        "{e}"
    );
}

fn export_model(name: &str) -> proto::ModelProto {
    proto::ModelProto::decode(&std::fs::read(exports(name)).unwrap()[..]).unwrap()
}

fn node_named<'m>(m: &'m mut proto::ModelProto, name: &str) -> &'m mut proto::NodeProto {
    let g = m.graph.as_mut().unwrap();
    g.node.iter_mut().find(|n| n.name == name).unwrap()
}

/// A crafted model read with the stored exports' folder for its external data.
fn load_stack(m: &proto::ModelProto) -> gru_wgpu::Result<gru_wgpu::onnx::OnnxStack> {
    gru_wgpu::onnx::OnnxStack::from_bytes_in(
        &m.encode_to_vec(),
        "crafted.onnx",
        Some(&exports_dir()),
        None,
    )
}

fn refusal(m: &proto::ModelProto) -> String {
    load_stack(m).unwrap_err().to_string()
}

fn ints(v: &[i64]) -> proto::TensorProto {
    proto::TensorProto {
        dims: vec![v.len() as i64],
        data_type: proto::INT64,
        raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn set_constant(m: &mut proto::ModelProto, output: &str, v: &[i64]) {
    let g = m.graph.as_mut().unwrap();
    let n = g.node.iter_mut().find(|n| n.output == [output]).unwrap();
    n.attribute[0].t = Some(ints(v));
}

#[test]
fn crafted_joins_and_layers_that_are_not_an_nn_gru_stack_are_refused() {
    // A Squeeze of another axis.
    let mut m = export_model("torch_l2_legacy.onnx");
    set_constant(&mut m, "/gru/Constant_3_output_0", &[0]);
    let e = refusal(&m);
    assert!(
        e.contains("GRU node `/gru/GRU_1` reads `Squeeze` node `/gru/Squeeze`, a Squeeze of GRU node `/gru/GRU`'s Y with axes [0], not [1]"),
        "{e}"
    );
    // The layer below's Y_h instead of its Y.
    let mut m = export_model("torch_l2_legacy.onnx");
    node_named(&mut m, "/gru/Squeeze").input[0] = "/gru/GRU_output_1".into();
    let e = refusal(&m);
    assert!(
        e.contains("the Y_h (output 1) of GRU node `/gru/GRU`, not its Y"),
        "{e}"
    );
    // A Transpose of another perm.
    let mut m = export_model("torch_l2_bidir_legacy.onnx");
    let t = node_named(&mut m, "/gru/Transpose");
    t.attribute[0].ints = vec![0, 1, 2, 3];
    let e = refusal(&m);
    assert!(
        e.contains("Transpose with perm [0, 1, 2, 3], not [0, 2, 1, 3]"),
        "{e}"
    );
    // A Reshape to (B, T, D·H): the default exporter's static target, swapped.
    let mut m = export_model("torch_l2_bidir_dynamo.onnx");
    let g = m.graph.as_mut().unwrap();
    let target = g
        .initializer
        .iter_mut()
        .find(|t| t.name == "val_93")
        .unwrap();
    assert_eq!(target.raw_data, ints(&[6, 4, 10]).raw_data);
    *target = proto::TensorProto {
        name: "val_93".into(),
        ..ints(&[4, 6, 10])
    };
    let e = refusal(&m);
    assert!(
        e.contains("a Reshape of GRU node `node_GRU_79`'s Y to [4, 6, 10], not to (T, B, D·H): its entry 0 is not T (D·H = 10) (T = 6, B = 4 here)"),
        "{e}"
    );
    // [0, 0, -1] with allowzero = 1 would make a dimension of size 0.
    let mut m = export_model("torch_l2_bidir_legacy.onnx");
    let r = node_named(&mut m, "/gru/Reshape");
    r.attribute
        .iter_mut()
        .find(|a| a.name == "allowzero")
        .unwrap()
        .i = 1;
    assert!(
        refusal(&m).contains("its entry 0 is not T"),
        "{}",
        refusal(&m)
    );
    // One Y feeding two GRU nodes.
    let mut m = export_model("torch_l2_legacy.onnx");
    let mut third = node_named(&mut m, "/gru/GRU_1").clone();
    third.name = "third".into();
    third.output = vec!["Y3".into(), "Yh3".into()];
    m.graph.as_mut().unwrap().node.push(third);
    let e = refusal(&m);
    assert!(
        e.contains("GRU node `/gru/GRU`'s Y feeds both GRU node `/gru/GRU_1` and GRU node `third`"),
        "{e}"
    );
    // Layers that differ.
    let mut m = export_model("torch_l2_legacy.onnx");
    let n = node_named(&mut m, "/gru/GRU_1");
    n.attribute
        .iter_mut()
        .find(|a| a.name == "linear_before_reset")
        .unwrap()
        .i = 0;
    let e = refusal(&m);
    assert!(
        e.contains("layer 1 (GRU node `/gru/GRU_1`) has linear_before_reset = 0 where layer 0 (GRU node `/gru/GRU`) has 1"),
        "{e}"
    );
    // Initial states that are not nn.GRU's h0: one layer from zeros, one
    // from h0; the wrong rows.
    let mut m = export_model("torch_l2_legacy.onnx");
    node_named(&mut m, "/gru/GRU_1").input[5] = String::new();
    let e = refusal(&m);
    assert!(
        e.contains(
            "the initial_h of layer 1 (GRU node `/gru/GRU_1`) is not what nn.GRU's h0 gives it"
        ) && e.contains("layer 0: rows 0..1 of the graph input `h0`; layer 1: none (zeros)"),
        "{e}"
    );
    let mut m = export_model("torch_l2_legacy.onnx");
    set_constant(&mut m, "/gru/Constant_5_output_0", &[0]);
    let e = refusal(&m);
    assert!(
        e.contains("layer 1: rows 0..2 of the graph input `h0`"),
        "{e}"
    );
    // Lengths for one layer only.
    let mut m = export_model("torch_l2_legacy.onnx");
    node_named(&mut m, "/gru/GRU_1").input[4] = "h0".into();
    let e = refusal(&m);
    assert!(
        e.contains(
            "layer 1 (GRU node `/gru/GRU_1`) takes sequence_lens `h0` where layer 0 takes none"
        ),
        "{e}"
    );
    // A stack of reverse layers is a reverse stack (the direction becomes
    // the configuration's in one place: onnx::config_direction); a stack
    // whose layers run in different directions is refused as it is read.
    let mut m = export_model("torch_l2_legacy.onnx");
    for name in ["/gru/GRU", "/gru/GRU_1"] {
        let mut dir = attr("direction");
        dir.s = b"reverse".to_vec();
        node_named(&mut m, name).attribute.push(dir);
    }
    let stack = load_stack(&m).unwrap();
    assert_eq!(stack.layers.len(), 2);
    let c = stack.config().unwrap();
    assert_eq!(
        (c.num_layers, c.direction),
        (2, gru_wgpu::Direction::Reverse)
    );
    let mut m = export_model("torch_l2_legacy.onnx");
    let mut dir = attr("direction");
    dir.s = b"reverse".to_vec();
    node_named(&mut m, "/gru/GRU_1").attribute.push(dir);
    let e = load_stack(&m).unwrap_err();
    assert!(
        e.to_string().contains(
            "layer 1 (GRU node `/gru/GRU_1`) has direction = reverse where layer 0 (GRU node `/gru/GRU`) has forward"
        ),
        "{e}"
    );
}

#[test]
fn a_model_transposed_one_way_only_is_imported_sequence_first_with_a_note() {
    // torch_bf_legacy without the Transpose back: the output is (T, B, H).
    let mut m = export_model("torch_bf_legacy.onnx");
    let g = m.graph.as_mut().unwrap();
    g.node.retain(|n| n.name != "/gru/Transpose_1");
    g.node
        .iter_mut()
        .find(|n| n.name == "/gru/Squeeze")
        .unwrap()
        .output = vec!["output".into()];
    let stack = load_stack(&m).unwrap();
    assert!(!stack.batch_first);
    assert_eq!(stack.report.batch_first, BatchFirst::No);
    assert!(
        stack.report.notes[0].contains("reaches the first layer through Transpose (1, 0, 2), but the output is not transposed back"),
        "{:?}",
        stack.report.notes
    );
    // A model that returns only h_n: its input transposed is all there is.
    let mut m = export_model("torch_bf_legacy.onnx");
    let g = m.graph.as_mut().unwrap();
    g.node
        .retain(|n| n.name != "/gru/Transpose_1" && n.name != "/gru/Squeeze");
    g.output.retain(|o| o.name == "h_n");
    let stack = load_stack(&m).unwrap();
    assert!(stack.batch_first, "{:?}", stack.report);
}

#[test]
fn verify_runs_every_stored_export_case() {
    let mut files: Vec<String> = std::fs::read_dir(exports_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .map(|p| p.to_str().unwrap().to_string())
        .collect();
    files.sort();
    assert_eq!(files.len(), EXPECT.len() + 1, "{files:?}");
    for device in ["cpu", "gpu"] {
        if device == "gpu" && common::gpu().is_none() {
            return;
        }
        let r = bin()
            .args(["verify", "--device", device])
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
        let rows = stdout
            .lines()
            .map(str::trim_start)
            .filter(|l| l.starts_with(&format!("{device} ")) && !l.starts_with("gpu plan "))
            .collect::<Vec<_>>();
        // 4 rows for a torch export, 2 for a hand-made model.
        assert_eq!(rows.len(), 4 * 12 + 2 * 4 + 2, "{stdout}");
        assert!(rows.iter().all(|l| l.ends_with("OK")), "{stdout}");
        assert!(
            stdout.contains("output (torch)") && stdout.contains(" Y_h "),
            "{stdout}"
        );
    }
}

#[test]
fn hostile_onnx_model_cases_are_refused() {
    // A copy of a case with its metadata edited, beside its model and data.
    let dir = tmp("model-case");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["torch_l2_dynamo.onnx", "torch_l2_dynamo.onnx.data"] {
        std::fs::copy(exports(f), dir.join(f)).unwrap();
    }
    let bytes = std::fs::read(exports("torch_l2_dynamo.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let original = meta.metadata().clone().unwrap();
    for (key, value, needle) in [
        ("num_layers", "1", "metadata `num_layers` is `1` but the model torch_l2_dynamo.onnx imports with `2`"),
        ("batch_first", "true", "metadata `batch_first` is `true`"),
        ("has_h0", "false", "metadata `has_h0` is `false` but the model torch_l2_dynamo.onnx takes an initial state"),
        ("has_lengths", "true", "takes no sequence_lens"),
        ("model", "../torch_l2_dynamo.onnx", "it must be a file name in the case's folder"),
        ("layout", "0", "metadata `layout` = `0` is not supported"),
        ("format", "onnx-gru-v1", "metadata `format` is `onnx-gru-v1`, expected `onnx-model-v1`"),
    ] {
        let mut m = original.clone();
        m.insert(key.into(), value.into());
        let p = dir.join("case.safetensors");
        std::fs::write(&p, safetensors::serialize(st.tensors(), Some(m)).unwrap()).unwrap();
        let e = OnnxModelCase::load(&p).unwrap_err();
        assert!(e.to_string().contains(needle), "{key}: {e}");
    }
    let p = dir.join("case.safetensors");
    std::fs::write(
        &p,
        safetensors::serialize(st.tensors(), Some(original)).unwrap(),
    )
    .unwrap();
    OnnxModelCase::load(&p).unwrap();
}

#[test]
fn mutated_exports_are_refused_or_imported_never_a_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(22);
    let mut models: Vec<PathBuf> = std::fs::read_dir(exports_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    models.sort();
    let (mut ok, mut refused) = (0, 0);
    for path in &models {
        let bytes = std::fs::read(path).unwrap();
        for _ in 0..200 {
            let mut b = bytes.clone();
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..b.len());
                b[i] = rng.random();
            }
            if rng.random_range(0..8) == 0 {
                b.truncate(rng.random_range(0..b.len()));
            }
            match gru_wgpu::onnx::OnnxStack::from_bytes_in(
                &b,
                "mutated.onnx",
                Some(&exports_dir()),
                None,
            ) {
                Ok(stack) => {
                    let _ = stack.describe();
                    match stack.params() {
                        Ok(_) => ok += 1,
                        Err(_) => refused += 1,
                    }
                }
                Err(_) => refused += 1,
            }
        }
    }
    println!("mutated exports: {ok} imported, {refused} refused");
    assert!(ok > 0 && refused > 0);
}
