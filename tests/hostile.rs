//! Hostile input (issue 10): crafted files and absurd sizes are refused with
//! a typed error (exit status 2 on the command line) before any large
//! allocation, GPU work or loop. The command-line cases run as child
//! processes under an address-space limit of 4 GiB and a time budget.

mod common;
// The command line's benchmark and the adding problem's trainer (of
// `examples/adding.rs`), their sources included from the binary's.
#[path = "../src/bench.rs"]
#[allow(dead_code)]
mod bench;
#[path = "../examples/adding/trainer.rs"]
#[allow(dead_code)]
mod train;
// `bench` names the checks' helpers `crate::check`, as the binary has them.
use common::check;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gru_wgpu::gpu::{
    BackwardOptions, ContextOptions, ForwardOptions, GpuContext, GpuGru, GpuOptimizer,
};
use gru_wgpu::optim::{adam_step, sgd_step, Adam, Sgd};
use gru_wgpu::reference::ReferenceCase;
use gru_wgpu::{GruConfig, GruError, GruParams};
use ndarray::{Array2, Array3, ShapeBuilder};
use train::{train_adding, AddingOptions};

// ---------------------------------------------------------------- helpers

fn golden(name: &str) -> PathBuf {
    common::golden_files()
        .into_iter()
        .find(|p| p.ends_with(name))
        .unwrap()
}

fn extra(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/golden-extra")
        .join(name)
}

/// The tensors (name, dtype, shape, bytes) and metadata of a safetensors file.
type Tensors = Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>;

fn read_st(path: &Path) -> (Tensors, HashMap<String, String>) {
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Tensors = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    (tensors, meta.metadata().clone().unwrap_or_default())
}

fn write_st(tensors: &Tensors, meta: &HashMap<String, String>) -> Vec<u8> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, Some(meta.clone())).unwrap()
}

/// `seq_basic` with `edit` applied to its tensors and metadata.
fn crafted(edit: impl FnOnce(&mut Tensors, &mut HashMap<String, String>)) -> Vec<u8> {
    let (mut t, mut m) = read_st(&golden("seq_basic.safetensors"));
    edit(&mut t, &mut m);
    write_st(&t, &m)
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gru-wgpu-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    seconds: f64,
}

/// Runs the command line under `ulimit -v` of 4 GiB, with `env` set.
fn run_limited(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        // A child that hangs is ended after a minute (exit 124), not waited for.
        .arg(
            "ulimit -v 4194304 && if command -v timeout >/dev/null; \
             then exec timeout 60 \"$0\" \"$@\"; else exec \"$0\" \"$@\"; fi",
        )
        .arg(env!("CARGO_BIN_EXE_gru-wgpu"))
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// A command that must be refused: exit status 2, a message containing
/// every one of `needles`, within the time budget.
fn refused(args: &[&str], needles: &[&str]) -> Run {
    let r = run_limited(args, &[]);
    assert_eq!(
        r.code,
        Some(2),
        "{args:?}: exit status\nstdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    for n in needles {
        assert!(r.stderr.contains(n), "{args:?}: `{n}` not in\n{}", r.stderr);
    }
    assert!(!r.stderr.contains("panicked"), "{args:?}: {}", r.stderr);
    assert!(
        r.seconds < BUDGET.as_secs_f64(),
        "{args:?} took {:.1} s",
        r.seconds
    );
    r
}

/// Nothing hostile may run for more than a few seconds (opening the device
/// on llvmpipe takes about half a second).
const BUDGET: Duration = Duration::from_secs(10);

// ------------------------------------------- 1. sizes read from a file

#[test]
fn a_reference_file_whose_metadata_the_tensors_do_not_hold_is_refused() {
    // The case: a billion layers, more than any GPU index can hold.
    let bytes = crafted(|_, m| {
        m.insert("num_layers".into(), "1000000000".into());
        m.insert("has_h0".into(), "false".into());
    });
    let start = Instant::now();
    let e = ReferenceCase::from_bytes(&bytes, "crafted.safetensors").unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(matches!(e, GruError::Format { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "crafted.safetensors: invalid configuration: num_layers is 1000000000; at most 16777216 is supported"
    );
    // A million layers is a configuration, but not the one the file holds:
    // refused before any list of a million layers' tensors is built.
    let bytes = crafted(|_, m| {
        m.insert("num_layers".into(), "1000000".into());
        m.insert("has_h0".into(), "false".into());
    });
    let start = Instant::now();
    let e = ReferenceCase::from_bytes(&bytes, "crafted.safetensors").unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(matches!(e, GruError::Format { .. }), "{e:?}");
    // Without h0: per layer 4 parameters and their 4 gradients, and the 6
    // fixed tensors; seq_basic holds 16 (one layer, with an h0).
    assert_eq!(
        e.to_string(),
        "crafted.safetensors: the metadata (num_layers 1000000, bidirectional false, bias true, \
         has_h0 false) describes 8000006 tensors, the file holds 16"
    );
    // A layer count whose product with the directions overflows.
    let bytes = crafted(|_, m| {
        m.insert("num_layers".into(), usize::MAX.to_string());
        m.insert("bidirectional".into(), "true".into());
    });
    let e = ReferenceCase::from_bytes(&bytes, "crafted.safetensors").unwrap_err();
    assert!(matches!(e, GruError::Format { .. }), "{e:?}");
    assert!(
        e.to_string().contains("num_layers is 18446744073709551615"),
        "{e}"
    );
    // The command line: exit 2 at once, under 4 GiB.
    for (layers, says) in [
        (
            "1000000000",
            "num_layers is 1000000000; at most 16777216 is supported",
        ),
        ("1000000", "describes 8000006 tensors, the file holds 16"),
    ] {
        let path = temp_file(
            &format!("layers{layers}.safetensors"),
            &crafted(|_, m| {
                m.insert("num_layers".into(), layers.into());
                m.insert("has_h0".into(), "false".into());
            }),
        );
        refused(
            &["verify", "--device", "cpu", path.to_str().unwrap()],
            &[&format!("layers{layers}.safetensors"), says],
        );
    }
}

#[test]
fn configurations_too_large_for_memory_are_refused_before_allocation() {
    // num_layers · directions overflows: refused, not wrapped.
    let c = GruConfig::new(4, 4).layers(usize::MAX).bidirectional(true);
    let e = c.validate().unwrap_err();
    assert!(matches!(e, GruError::InvalidConfig(_)), "{e:?}");
    assert!(
        e.to_string().contains("num_layers is 18446744073709551615"),
        "{e}"
    );
    // A parameter count that overflows.
    let c = GruConfig::new(1 << 24, 1 << 24).layers(1 << 20);
    let e = GruParams::<f32>::zeros(&c).unwrap_err();
    assert!(matches!(e, GruError::InvalidConfig(_)), "{e:?}");
    assert!(
        e.to_string().contains("more parameters than fit in memory"),
        "{e}"
    );
    // 100,000 layers of H = 1000: 6e11 values, more than any host has.
    let c = GruConfig::new(1000, 1000).layers(100_000);
    // Per layer 3H·(I_l + H) weights and 2·3H biases.
    let count: u64 = 100_000 * (3 * 1000 * (1000 + 1000) + 2 * 3 * 1000);
    for (e, size) in [
        (GruParams::<f32>::zeros(&c).unwrap_err(), 4),
        (GruParams::<f64>::init(&c, 1).unwrap_err(), 8),
    ] {
        assert!(matches!(e, GruError::HostMemory { .. }), "{e:?}");
        assert!(
            e.to_string().starts_with(&format!(
                "the parameters ({count} values) needs {} bytes of host memory but ",
                count * size
            )),
            "{e}"
        );
        assert!(e.to_string().contains("bytes of host memory but "), "{e}");
    }
}

#[test]
fn a_cpu_run_whose_tape_cannot_fit_is_refused_before_it_starts() {
    // A broadcast view: 10^8 steps of a batch of 1000 without the memory.
    let one = Array3::<f64>::zeros((1, 1, 3));
    let x = one.broadcast((100_000_000, 1000, 3)).unwrap();
    let mut gru =
        gru_wgpu::cpu::Gru::new(GruParams::<f64>::init(&GruConfig::new(3, 4), 1).unwrap());
    let e = gru.forward(x, None).unwrap_err();
    assert!(matches!(e, GruError::HostMemory { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("the CPU reference's forward and backward of T=100000000, B=1000 needs "),
        "{e}"
    );
    // The test helper that draws random cases checks the same.
    let e = common::check::RandomCase::new(GruConfig::new(3, 4), 100_000_000, 1000, true, 1)
        .unwrap_err();
    assert!(matches!(e, GruError::HostMemory { .. }), "{e:?}");
}

// ----------------------------------- 2 and 3. sizes from the command line

#[test]
fn absurd_sizes_on_the_command_line_exit_2_at_once() {
    let gpu = common::gpu().is_some();
    let mut cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec![
                "bench", "--hidden", "100000", "--batch", "100000", "--device", "cpu",
            ],
            vec![
                "the CPU reference's run of B=100000 T=64 I=100000 H=100000",
                "host memory",
            ],
        ),
        (
            vec!["train", "--lr", "nan"],
            vec!["the learning rate is NaN"],
        ),
    ];
    if gpu {
        cases.extend([
            // Host arrays that cannot fit.
            (
                vec!["bench", "--hidden", "100000", "--batch", "100000"],
                vec!["B=100000 T=64 I=100000 H=100000", "bytes of host memory"],
            ),
            (
                vec![
                    "bench", "--hidden", "100000", "--batch", "100000", "--device", "gpu",
                ],
                vec![
                    "the data and parameters of B=100000 T=64 I=100000 H=100000",
                    "host memory",
                ],
            ),
            (
                vec!["train", "--hidden", "100000"],
                vec!["the adding problem's data", "bytes of host memory"],
            ),
            (
                vec!["train", "--seq", "100000000"],
                vec!["T=100000000", "bytes of host memory"],
            ),
            (
                vec![
                    "bench-gemm",
                    "--m",
                    "100000",
                    "--n",
                    "100000",
                    "--k",
                    "100000",
                ],
                vec!["the GEMM's operands", "bytes of host memory"],
            ),
            // Device buffers larger than the device allows (under 4 GiB the
            // host estimate may refuse it first: either is a clear refusal).
            (
                vec![
                    "bench", "--hidden", "2048", "--batch", "4096", "--seq", "64", "--mode", "fwd",
                ],
                vec!["B=4096 T=64 I=2048 H=2048", "needs "],
            ),
        ]);
    } else {
        assert!(
            !common::require_gpu(),
            "GRU_WGPU_REQUIRE_GPU is set and no adapter opened"
        );
    }
    for (args, needles) in &cases {
        refused(args, needles);
    }
}

#[test]
fn the_bench_checks_its_own_buffers_against_the_device_first() {
    let Some(base) = common::gpu() else { return };
    let mut limits = base.limits().clone();
    limits.max_buffer_size = 1 << 24;
    limits.max_storage_buffer_binding_size = 1 << 24;
    let ctx = GpuContext::with_options(ContextOptions {
        limits: Some(limits),
        ..Default::default()
    })
    .unwrap();
    // x alone is 64·512·256 floats, 32 MiB: more than the lowered limit.
    let shape = bench::BenchShape {
        batch: 512,
        seq: 64,
        input: 256,
        hidden: 64,
        layers: 1,
        bidirectional: false,
        precision: gru_wgpu::Precision::F32,
    };
    let e =
        bench::bench_gpu_with_lengths(&ctx, &shape, bench::Mode::Fwd, 1, 0, None, None, &mut || {})
            .unwrap_err();
    assert!(matches!(e, GruError::LimitExceeded { .. }), "{e:?}");
    assert!(
        e.to_string().starts_with("the layer input (T·B·I) needs "),
        "{e}"
    );
    // The GEMM bench too.
    let e = bench::check_gemm_fits(&ctx, 4096, 4096, 4096).unwrap_err();
    assert!(matches!(e, GruError::LimitExceeded { .. }), "{e:?}");
    assert!(
        e.to_string().starts_with("the GEMM's A (m·k) needs "),
        "{e}"
    );
    ctx.check_alive().unwrap();
}

// ------------------------------------------------- 4. tapes and models

#[test]
fn a_tape_is_refused_by_every_model_but_its_own_across_contexts() {
    if common::gpu().is_none() {
        return;
    }
    // Two fresh contexts, each with its first model: ids must still differ.
    let c1 = GpuContext::with_options(ContextOptions::default()).unwrap();
    let c2 = GpuContext::with_options(ContextOptions::default()).unwrap();
    let one = GruConfig::new(3, 4);
    let two = GruConfig::new(3, 4).layers(2);
    let a = GpuGru::new(&c1, &GruParams::init(&one, 1).unwrap()).unwrap();
    let b = GpuGru::new(&c2, &GruParams::init(&two, 2).unwrap()).unwrap();
    let x = Array3::<f32>::zeros((2, 1, 3));
    let keep = || ForwardOptions::default().keep_tape();
    let tape = a.forward(x.view(), keep()).unwrap().tape.unwrap();
    let go = Array3::<f32>::zeros((2, 1, 4));
    let e = b
        .backward(tape, go.view(), BackwardOptions::default())
        .unwrap_err();
    assert!(matches!(e, GruError::Tape(_)), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("tape: this tape was made by the forward of another model"),
        "{e}"
    );
    // A model of the same configuration in the other context, too.
    let a2 = GpuGru::new(&c2, &GruParams::init(&one, 1).unwrap()).unwrap();
    let tape = a.forward(x.view(), keep()).unwrap().tape.unwrap();
    let e = a2
        .backward(tape, go.view(), BackwardOptions::default())
        .unwrap_err();
    assert!(matches!(e, GruError::Tape(_)), "{e:?}");
}

// -------------------------------------------- 5. training settings

#[test]
fn training_settings_that_cannot_train_are_refused() {
    for lr in ["nan", "inf", "-1"] {
        let r = refused(&["train", "--lr", lr], &["the learning rate is "]);
        assert!(
            r.stderr
                .contains("it must be a finite number of at least 0"),
            "{}",
            r.stderr
        );
    }
    let o = AddingOptions {
        report_every: 0,
        ..Default::default()
    };
    let e = o.check().unwrap_err();
    assert!(matches!(e, GruError::InvalidConfig(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "invalid configuration: report_every is 0; it must be at least 1"
    );
    let Some(ctx) = common::gpu() else { return };
    let e = train_adding(&ctx, &o, &mut |_, _| {}).unwrap_err();
    assert!(matches!(e, GruError::InvalidConfig(_)), "{e:?}");
    let o = AddingOptions {
        lr: f32::NAN,
        ..Default::default()
    };
    let e = train_adding(&ctx, &o, &mut |_, _| {}).unwrap_err();
    assert!(e.to_string().contains("the learning rate is NaN"), "{e}");
}

#[test]
fn a_plot_that_cannot_be_written_exits_2() {
    let bad = "/nonexistent-directory-of-gru-wgpu/plot.svg";
    // Refused before any work (not after a whole run): bench, on the CPU
    // alone (no adapter needed), prints no table.
    let r = refused(
        &[
            "bench", "--device", "cpu", "--batch", "1", "--seq", "2", "--input", "2", "--hidden",
            "2", "--iters", "1", "--warmup", "0", "--plot", bad,
        ],
        &[bad],
    );
    assert!(
        !r.stdout.contains("gru-wgpu"),
        "nothing measured: {}",
        r.stdout
    );
    if common::gpu().is_none() {
        return;
    }
    let r = refused(
        &[
            "train", "--seq", "4", "--steps", "2", "--hidden", "2", "--batch", "2", "--plot", bad,
        ],
        &[bad],
    );
    assert!(!r.stdout.contains("trained "), "no training: {}", r.stdout);
    // A writable path is left as it was: no file where there was none.
    let dir = std::env::temp_dir().join(format!("gru-wgpu-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ok = dir.join("p.svg");
    let r = run_limited(
        &[
            "bench",
            "--device",
            "cpu",
            "--batch",
            "1",
            "--seq",
            "2",
            "--input",
            "2",
            "--hidden",
            "2",
            "--iters",
            "1",
            "--warmup",
            "0",
            "--plot",
            ok.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(std::fs::read_to_string(&ok).unwrap().starts_with("<svg"));
    std::fs::remove_dir_all(&dir).unwrap();
}

// ------------------------------ 6. parameters, optimisers, indexing

#[test]
fn parameters_of_the_wrong_shape_are_refused_by_every_model() {
    let config = GruConfig::new(3, 4).layers(2);
    let mut p = GruParams::<f32>::init(&config, 1).unwrap();
    p.dir_mut(1, 0).unwrap().weight_hh = Array2::zeros((12, 5));
    let e = p.check().unwrap_err();
    assert_eq!(
        e.to_string(),
        "`weight_hh_l1`: expected shape (12, 4), got (12, 5)"
    );
    let mut cpu = gru_wgpu::cpu::Gru::new(p.clone());
    let x = Array3::<f32>::zeros((2, 1, 3));
    let e = cpu.forward(x.view(), None).unwrap_err();
    assert!(matches!(e, GruError::ShapeMismatch { .. }), "{e:?}");
    let mut q = GruParams::<f32>::init(&config, 1).unwrap();
    q.dir_mut(0, 0).unwrap().bias_ih = None;
    let e = q.check().unwrap_err();
    assert!(matches!(e, GruError::MissingTensor { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "missing tensor `bias_ih_l0` (expected shape (12,))"
    );
    let Some(ctx) = common::gpu() else { return };
    for bad in [&p, &q] {
        let e = GpuGru::new(&ctx, bad).unwrap_err();
        assert!(
            matches!(
                e,
                GruError::ShapeMismatch { .. } | GruError::MissingTensor { .. }
            ),
            "{e:?}"
        );
    }
    // set_params checks too, and leaves the model as it was.
    let good = GruParams::<f32>::init(&config, 1).unwrap();
    let mut m = GpuGru::new(&ctx, &good).unwrap();
    assert!(m.set_params(&p).is_err());
    assert_eq!(m.params().unwrap(), good);
}

#[test]
fn parameters_in_a_non_standard_layout_give_the_same_results() {
    let Some(ctx) = common::gpu() else { return };
    let config = GruConfig::new(3, 4).bidirectional(true);
    let p = GruParams::<f32>::init(&config, 5).unwrap();
    // The same values, stored column-major.
    let mut f = p.clone();
    for l in 0..1 {
        for d in 0..2 {
            let dp = f.dir_mut(l, d).unwrap();
            for w in [&mut dp.weight_ih, &mut dp.weight_hh] {
                let mut c = Array2::<f32>::zeros(w.raw_dim().f());
                c.assign(w);
                assert!(c.as_slice().is_none(), "column-major");
                *w = c;
            }
        }
    }
    assert_eq!(f, p);
    let x = common::random((5, 2, 3), 1.0, &mut common::rng(3)).mapv(|v| v as f32);
    let a = GpuGru::new(&ctx, &p).unwrap();
    let b = GpuGru::new(&ctx, &f).unwrap();
    let (oa, ha, _) = a
        .forward(x.view(), ForwardOptions::default())
        .unwrap()
        .into_parts();
    let (ob, hb, _) = b
        .forward(x.view(), ForwardOptions::default())
        .unwrap()
        .into_parts();
    assert_eq!(oa, ob);
    assert_eq!(ha, hb);
    let mut cpu = gru_wgpu::cpu::Gru::new(f.cast::<f64>());
    let (oc, _) = cpu.forward(x.mapv(|v| v as f64).view(), None).unwrap();
    let e = gru_wgpu::real::rel_error(oa.iter().map(|&v| v as f64), oc.iter());
    assert!(e <= 1e-5, "{e:e}");
}

#[test]
fn optimisers_and_indexing_refuse_what_they_cannot_do() {
    let (mut p, g) = (vec![1.0f64; 4], vec![0.5f64; 3]);
    let e = sgd_step(&Sgd::new(0.1), &mut p, &g, &mut [0.0; 4], true).unwrap_err();
    assert!(matches!(e, GruError::LengthMismatch { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "`gradient`: expected 4 values (the parameter's length), got 3"
    );
    let g = vec![0.5f64; 4];
    let e = adam_step(&Adam::new(0.1), 1, &mut p, &g, &mut [0.0; 4], &mut [0.0; 2]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "`second moment`: expected 4 values (the parameter's length), got 2"
    );
    let e = adam_step(&Adam::new(0.1), 0, &mut p, &g, &mut [0.0; 4], &mut [0.0; 4]).unwrap_err();
    assert!(matches!(e, GruError::InvalidConfig(_)), "{e:?}");
    assert!(e.to_string().contains("step count starts at 1"), "{e}");
    let e = sgd_step(&Sgd::new(f32::NAN), &mut p, &g, &mut [0.0; 4], true).unwrap_err();
    assert!(e.to_string().contains("the learning rate is NaN"), "{e}");
    assert_eq!(p, vec![1.0; 4], "nothing was changed by a refused step");
    let e = gru_wgpu::optim::clip_grad_norm(&mut [&mut [1.0f64][..]], f32::NAN).unwrap_err();
    assert!(e.to_string().contains("max_norm is NaN"), "{e}");

    let params = GruParams::<f32>::init(&GruConfig::new(2, 3).layers(2), 1).unwrap();
    let e = params.dir(2, 0).unwrap_err();
    assert!(matches!(e, GruError::OutOfRange { .. }), "{e:?}");
    assert_eq!(e.to_string(), "layer 2 is out of range: there are 2");
    let e = params.dir(0, 1).unwrap_err();
    assert_eq!(e.to_string(), "direction 1 is out of range: there are 1");

    let Some(ctx) = common::gpu() else { return };
    let buf = |n: usize| {
        ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: (n * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    };
    let (a, b) = (buf(8), buf(4));
    // clip_grad_norm: a length past the end of its buffer.
    let e = gru_wgpu::gpu::clip_grad_norm(&ctx, &[&a, &b], &[8, 5], 1.0).unwrap_err();
    assert!(matches!(e, GruError::LengthMismatch { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "`gradient 1`: expected 20 bytes (at least), got 16"
    );
    let e = gru_wgpu::gpu::clip_grad_norm(&ctx, &[&a], &[8], f32::INFINITY).unwrap_err();
    assert!(e.to_string().contains("max_norm is inf"), "{e}");
    // A GPU optimiser with a learning rate that is not a number.
    let mut opt = GpuOptimizer::new(&ctx, Adam::new(f32::NAN));
    let e = opt.step(&[&a], &[&a], &[8]).unwrap_err();
    assert!(e.to_string().contains("the learning rate is NaN"), "{e}");
    assert_eq!(opt.steps(), 0);
}

// ------------------------------------------------------- 7. messages

#[test]
fn a_tensor_error_from_a_file_names_the_file() {
    let config = GruConfig::new(3, 4).layers(2).bidirectional(true);
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/torch_state_dict.safetensors");
    let e = GruParams::<f32>::load_safetensors(&path, &config.clone().layers(3)).unwrap_err();
    assert!(matches!(e, GruError::MissingTensor { .. }), "{e:?}");
    assert!(
        e.to_string().starts_with(&format!(
            "{}: missing tensor `weight_ih_l2`",
            path.display()
        )),
        "{e}"
    );
    let e = GruParams::<f32>::load_safetensors(&path, &config.clone().layers(1)).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{}: unexpected tensor `", path.display())),
        "{e}"
    );
    let e = GruParams::<f32>::load_safetensors(
        &path,
        &GruConfig::new(2, 4).layers(2).bidirectional(true),
    )
    .unwrap_err();
    assert!(matches!(e, GruError::ShapeMismatch { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "{}: `weight_ih_l0`: expected shape (12, 2), got (12, 3)",
            path.display()
        )
    );
}

/// `verify` on what looks like a file of weights says what it needs (the
/// sizes read from the file's names and shapes): with 200 000 layer names
/// that takes as long as reading the header, not the square of its names.
#[test]
fn verify_on_a_weights_file_of_many_layer_names_answers_at_once() {
    let zeros = [0u8; 12];
    let mut names: Vec<String> = (0..200_000).map(|l| format!("weight_ih_l{l}")).collect();
    names.push("weight_hh_l0".into());
    let views: Vec<(String, safetensors::tensor::TensorView)> = names
        .iter()
        .map(|n| {
            let shape = if n.ends_with("_l0") {
                vec![3, 1]
            } else {
                vec![0]
            };
            let data = if n.ends_with("_l0") {
                &zeros[..]
            } else {
                &zeros[..0]
            };
            let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, data);
            (n.clone(), v.unwrap())
        })
        .collect();
    let path = temp_file(
        "many_layers.safetensors",
        &safetensors::serialize(views, None).unwrap(),
    );
    refused(
        &["verify", "--device", "cpu", path.to_str().unwrap()],
        &[
            "a file of GRU weights (200001 tensors",
            "--input-size 1 --hidden-size 1 --num-layers 200000 --no-bias --seq-len 10",
        ],
    );
}

#[test]
fn reference_files_of_another_computation_or_dtype_are_refused() {
    // A metadata key this reader does not implement: refused, never ignored.
    let bytes = crafted(|_, m| {
        m.insert("has_masks".into(), "true".into());
    });
    let unknown = temp_file("unknown_key.safetensors", &bytes);
    let e = ReferenceCase::load(&unknown).unwrap_err();
    assert!(matches!(e, GruError::Format { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("unknown_key.safetensors"), "{msg}");
    assert!(msg.contains("metadata `has_masks` = `true`"), "{msg}");
    assert!(msg.contains("is not supported by this reader"), "{msg}");
    // The cases beyond nn.GRU load, with their features.
    for file in [
        "packed_basic.safetensors",
        "seg_basic.safetensors",
        "rb_basic.safetensors",
    ] {
        let case = ReferenceCase::load(extra(file)).unwrap();
        assert_eq!(case.features().len(), 1, "{file}");
    }
    // The ONNX format is not gru-golden-v1 (verify reads it with its own reader).
    let e = ReferenceCase::load(extra("onnx_fwd_lbr0.safetensors")).unwrap_err();
    assert!(
        e.to_string()
            .contains("metadata `format` is `onnx-gru-v1`, expected `gru-golden-v1`"),
        "{e}"
    );
    // Hostile values of the new tensors and keys: typed errors.
    for (edit, needle) in [
        (
            (
                "has_lengths",
                "true",
                "lengths",
                safetensors::Dtype::I64,
                8,
                8i64,
            ),
            "lengths[0] is 8; every length must be in 1..=7 (seq_len)",
        ),
        (
            (
                "has_lengths",
                "true",
                "lengths",
                safetensors::Dtype::I64,
                8,
                0,
            ),
            "lengths[0] is 0; every length must be in 1..=7 (seq_len)",
        ),
        (
            (
                "has_lengths",
                "true",
                "lengths",
                safetensors::Dtype::I32,
                4,
                1,
            ),
            "tensor `lengths`: expected dtype I64, got I32",
        ),
        (
            ("has_resets", "true", "resets", safetensors::Dtype::U8, 1, 2),
            "resets holds 2 at flat index 0; every value must be 0 or 1",
        ),
        (
            ("has_resets", "yes", "resets", safetensors::Dtype::U8, 1, 1),
            "metadata `has_resets` is `yes`, not true or false",
        ),
    ] {
        let (key, val, name, dtype, width, first) = edit;
        let bytes = crafted(|t, m| {
            let (t_len, b) = (7usize, 4usize);
            assert_eq!(m.get("seq_len").map(String::as_str), Some("7"));
            assert_eq!(m.get("batch").map(String::as_str), Some("4"));
            m.insert(key.into(), val.into());
            let shape = if name == "lengths" {
                vec![b]
            } else {
                vec![t_len, b]
            };
            let n: usize = shape.iter().product();
            let mut data = vec![0u8; n * width];
            data[0] = first as u8;
            if name == "lengths" {
                for i in 1..n {
                    data[i * width] = 1;
                }
            }
            t.push((name.into(), dtype, shape, data));
        });
        let e = ReferenceCase::from_bytes(&bytes, "new.safetensors").unwrap_err();
        assert!(e.to_string().contains(needle), "{e}");
    }
    let bytes = crafted(|_, m| {
        m.insert("reset_form".into(), "sideways".into());
    });
    let e = ReferenceCase::from_bytes(&bytes, "form.safetensors").unwrap_err();
    assert!(
        e.to_string()
            .contains("metadata `reset_form` is `sideways`, expected `after` or `before`"),
        "{e}"
    );
    // A float32 `output` (the format says float64).
    let bytes = crafted(|t, _| {
        let o = t.iter_mut().find(|x| x.0 == "output").unwrap();
        let vals: Vec<u8> =
            o.3.chunks_exact(8)
                .flat_map(|c| (f64::from_le_bytes(c.try_into().unwrap()) as f32).to_le_bytes())
                .collect();
        o.1 = safetensors::Dtype::F32;
        o.3 = vals;
    });
    let e = ReferenceCase::from_bytes(&bytes, "f32.safetensors").unwrap_err();
    assert!(matches!(e, GruError::DType { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "f32.safetensors: tensor `output`: expected dtype F64, got F32"
    );
    // A tensor the format does not have.
    let bytes = crafted(|t, _| {
        t.push((
            "lengths".into(),
            safetensors::Dtype::I64,
            vec![2],
            vec![0; 16],
        ));
        // Keep the count of tensors right: drop one it knows.
        t.retain(|x| x.0 != "grad_h_n");
    });
    let e = ReferenceCase::from_bytes(&bytes, "extra.safetensors").unwrap_err();
    assert!(matches!(e, GruError::UnexpectedTensor { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("extra.safetensors: unexpected tensor `lengths` with shape (2,)"),
        "{e}"
    );
    // And on the command line: exit 2, the file and the key named.
    let r = refused(
        &["verify", "--device", "cpu", unknown.to_str().unwrap()],
        &["unknown_key.safetensors", "has_masks"],
    );
    assert!(
        r.stdout.ends_with("worst relative error: cpu -, gpu -\n"),
        "{}",
        r.stdout
    );
}

#[test]
fn verify_prints_nan_as_nan() {
    let bytes = crafted(|t, _| {
        let o = t.iter_mut().find(|x| x.0 == "output").unwrap();
        o.3[0..8].copy_from_slice(&f64::NAN.to_le_bytes());
    });
    let path = temp_file("nan.safetensors", &bytes);
    let r = run_limited(&["verify", "--device", "cpu", path.to_str().unwrap()], &[]);
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.contains(" output ") && l.contains("NaN") && l.ends_with("FAIL")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.ends_with("worst relative error: cpu NaN, gpu -\n"),
        "{}",
        r.stdout
    );
}

#[test]
fn the_install_hint_appears_only_when_no_adapter_exists() {
    let case = golden("seq_basic.safetensors");
    let case = case.to_str().unwrap();
    // No Vulkan driver at all: wgpu sees no adapter.
    let none = run_limited(
        &["verify", "--device", "gpu", case],
        &[
            ("VK_ICD_FILENAMES", "/nonexistent/icd.json"),
            ("VK_DRIVER_FILES", "/nonexistent/icd.json"),
        ],
    );
    assert_eq!(none.code, Some(2), "{}", none.stderr);
    assert!(
        none.stderr.contains("apt-get install mesa-vulkan-drivers"),
        "{}",
        none.stderr
    );
    if common::gpu().is_none() {
        return;
    }
    // Adapters exist, none matches: no install hint, the adapters listed.
    let other = run_limited(
        &["verify", "--device", "gpu", case],
        &[("GRU_WGPU_ADAPTER", "no-such-adapter-anywhere")],
    );
    assert_eq!(other.code, Some(2), "{}", other.stderr);
    assert!(
        other
            .stderr
            .contains("none matches `no-such-adapter-anywhere`"),
        "{}",
        other.stderr
    );
    assert!(!other.stderr.contains("apt-get"), "{}", other.stderr);
}

// ------------------- issue 21: repeated fields, odd files, untrusted text

/// A varint of the protobuf wire format.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field (`tag` is the field number).
fn len_field(tag: u64, body: &[u8], out: &mut Vec<u8>) {
    varint(tag << 3 | 2, out);
    varint(body.len() as u64, out);
    out.extend_from_slice(body);
}

/// A model whose graph (or, with `in_node`, whose one node) holds `count`
/// empty messages of field `tag`: two bytes each on disk, a whole
/// `NodeProto`, `TensorProto` or `AttributeProto` each once decoded.
fn empty_messages(tag: u64, count: usize, in_node: bool) -> Vec<u8> {
    let mut many = Vec::with_capacity(2 * count);
    for _ in 0..count {
        many.extend_from_slice(&[(tag << 3 | 2) as u8, 0]);
    }
    let graph = if in_node {
        let mut g = Vec::new();
        len_field(1, &many, &mut g);
        g
    } else {
        many
    };
    let mut model = Vec::new();
    len_field(7, &graph, &mut model);
    model
}

#[test]
fn onnx_files_of_millions_of_empty_messages_are_refused_before_decoding() {
    // 3e7 empty nodes, initializers, attributes of one node or declared values: 60 MB on
    // disk, several GB once decoded (the abort in prost's
    // `merge_repeated`).
    let dir = std::env::temp_dir().join(format!("gru-wgpu-hostile-many-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out.safetensors");
    for (name, tag, in_node, says) in [
        ("nodes", 1, false, "30000000 nodes"),
        ("initializers", 5, false, "30000000 initializers"),
        ("attributes", 5, true, "30000000 attributes"),
        ("value_info", 13, false, "30000000 declared values"),
    ] {
        let model = dir.join(format!("{name}.onnx"));
        std::fs::write(&model, empty_messages(tag, 30_000_000, in_node)).unwrap();
        let r = refused(
            &[
                "import-onnx",
                model.to_str().unwrap(),
                out.to_str().unwrap(),
            ],
            &[&format!("{name}.onnx"), says],
        );
        eprintln!("import-onnx of 3e7 empty {name}: {:.2} s", r.seconds);
        assert!(!out.exists());
        if name == "nodes" {
            // The same model behind an onnx-gru-v1 case, through `verify`.
            std::fs::copy(
                extra("onnx_fwd_lbr0.safetensors"),
                dir.join("case.safetensors"),
            )
            .unwrap();
            std::fs::rename(&model, dir.join("onnx_fwd_lbr0.onnx")).unwrap();
            let case = dir.join("case.safetensors");
            let r = refused(
                &["verify", "--device", "cpu", case.to_str().unwrap()],
                &["onnx_fwd_lbr0.onnx", says],
            );
            eprintln!("verify of a case beside it: {:.2} s", r.seconds);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(unix)]
#[test]
fn fifos_devices_folders_and_huge_files_are_refused_at_once() {
    let dir = std::env::temp_dir().join(format!("gru-wgpu-hostile-odd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo.onnx");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let out = dir.join("out.safetensors");
    let out = out.to_str().unwrap();
    // A FIFO no one writes to (the reads hung), a device that never ends
    // (2 GB read before), a folder.
    for path in [fifo.to_str().unwrap(), "/dev/zero", dir.to_str().unwrap()] {
        refused(&["import-onnx", path, out], &[path, "not a regular file"]);
        refused(
            &["verify", "--device", "cpu", path],
            &[path, "not a regular file"],
        );
    }
    // A FIFO as the model an onnx-gru-v1 case names.
    let case_dir = dir.join("case");
    std::fs::create_dir_all(&case_dir).unwrap();
    std::fs::copy(
        extra("onnx_fwd_lbr0.safetensors"),
        case_dir.join("case.safetensors"),
    )
    .unwrap();
    let model = case_dir.join("onnx_fwd_lbr0.onnx");
    assert!(Command::new("mkfifo")
        .arg(&model)
        .status()
        .unwrap()
        .success());
    refused(
        &[
            "verify",
            "--device",
            "cpu",
            case_dir.join("case.safetensors").to_str().unwrap(),
        ],
        &["onnx_fwd_lbr0.onnx", "not a regular file"],
    );
    // Sparse files of 3 GB: a model larger than protobuf allows, a
    // reference file whose header describes a few bytes.
    let huge = dir.join("huge.onnx");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    refused(
        &["import-onnx", huge.to_str().unwrap(), out],
        &["huge.onnx", "3221225472 bytes", "at most 2147483648"],
    );
    let mut bytes = std::fs::read(golden("seq_basic.safetensors")).unwrap();
    let real_len = bytes.len();
    bytes.resize(3 << 30, 0);
    let big = dir.join("big.safetensors");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&big).unwrap();
        f.write_all(&bytes[..real_len]).unwrap();
        f.set_len(3 << 30).unwrap();
    }
    drop(bytes);
    refused(
        &["verify", "--device", "cpu", big.to_str().unwrap()],
        &[
            "big.safetensors",
            "3221225472 bytes",
            "its header describes",
        ],
    );
    // The library refuses them too, with a typed error.
    for e in [
        ReferenceCase::load(&fifo).unwrap_err(),
        GruParams::<f32>::load_safetensors(&fifo, &GruConfig::new(3, 4)).unwrap_err(),
        GruParams::<f32>::config_in_safetensors("/dev/zero").unwrap_err(),
        gru_wgpu::onnx::OnnxGru::load(&fifo, None).unwrap_err(),
    ] {
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ------------------------------- issue 22: external data of ONNX models

fn exports(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/onnx-exports")
        .join(name)
}

/// `hand_ext_past_end.onnx` with its `W`'s external data entries replaced.
fn external_w(entries: &[(&str, &str)]) -> Vec<u8> {
    use prost::Message;
    let bytes = std::fs::read(exports("hand_ext_past_end.onnx")).unwrap();
    let mut m = gru_wgpu::onnx::proto::ModelProto::decode(&bytes[..]).unwrap();
    let g = m.graph.as_mut().unwrap();
    let w = g.initializer.iter_mut().find(|t| t.name == "W").unwrap();
    w.external_data = entries
        .iter()
        .map(|(k, v)| gru_wgpu::onnx::proto::StringStringEntryProto {
            key: k.to_string(),
            value: v.to_string(),
        })
        .collect();
    m.encode_to_vec()
}

/// The right bytes of `W` (they are at offset 0 of `hand_ext_past_end.onnx.data`).
fn w_bytes() -> Vec<u8> {
    std::fs::read(exports("hand_ext_past_end.onnx.data")).unwrap()
}

#[cfg(unix)]
#[test]
fn external_data_out_of_the_model_folder_or_past_its_file_is_refused_before_any_read() {
    use std::os::unix::fs::symlink;
    let dir = std::env::temp_dir().join(format!("gru-wgpu-hostile-ext-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let folder = dir.join("model");
    std::fs::create_dir_all(&folder).unwrap();
    let out = dir.join("out.safetensors");
    let out = out.to_str().unwrap();
    let import = |model: &Path, says: &[&str]| {
        let r = refused(&["import-onnx", model.to_str().unwrap(), out], says);
        assert!(!Path::new(out).exists());
        r
    };
    // The stored models: `..`, an absolute path, an offset past the end.
    import(
        &exports("hand_ext_dotdot.onnx"),
        &["initializer `W`: external data location `../x.bin` has a `..` component; it must be a path inside the model's folder"],
    );
    import(
        &exports("hand_ext_absolute.onnx"),
        &["external data location `/etc/passwd` is an absolute path"],
    );
    import(
        &exports("hand_ext_past_end.onnx"),
        &[
            "hand_ext_past_end.onnx.data",
            "initializer `W`: bytes 1099511627776 to 1099511627776 + 180 are past the end of the file (180 bytes)",
        ],
    );
    // Where `../x.bin` and the absolute path lead there are FIFOs: opening
    // one would say so (or hang); the location is refused from its text.
    assert!(Command::new("mkfifo")
        .arg(dir.join("x.bin"))
        .status()
        .unwrap()
        .success());
    let fifo = dir.join("fifo.bin");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let model = folder.join("m.onnx");
    std::fs::copy(exports("hand_ext_dotdot.onnx"), &model).unwrap();
    let r = import(&model, &["has a `..` component"]);
    assert!(!r.stderr.contains("regular"), "{}", r.stderr);
    let length = w_bytes().len().to_string();
    let length = length.as_str();
    std::fs::write(
        &model,
        external_w(&[("location", fifo.to_str().unwrap()), ("length", length)]),
    )
    .unwrap();
    import(&model, &["is an absolute path"]);
    // Links: one leading out (to a file with the right bytes), a folder
    // link leading out, and one that stays inside (imported).
    std::fs::write(dir.join("outside.bin"), w_bytes()).unwrap();
    std::fs::write(folder.join("inside.bin"), w_bytes()).unwrap();
    symlink("../outside.bin", folder.join("out.bin")).unwrap();
    symlink("..", folder.join("up")).unwrap();
    symlink("inside.bin", folder.join("in.bin")).unwrap();
    for location in ["out.bin", "up/outside.bin"] {
        std::fs::write(&model, external_w(&[("location", location)])).unwrap();
        import(
            &model,
            &[&format!(
                "`{location}` leads out of it through a symbolic link"
            )],
        );
    }
    std::fs::write(
        &model,
        external_w(&[("location", "in.bin"), ("offset", "0")]),
    )
    .unwrap();
    let r = run_limited(&["import-onnx", model.to_str().unwrap(), out], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout
            .contains("weights: 1 initializer (180 bytes) from external data: `in.bin`"),
        "{}",
        r.stdout
    );
    std::fs::remove_file(out).unwrap();
    // A FIFO, a folder, a missing file inside the folder.
    assert!(Command::new("mkfifo")
        .arg(folder.join("pipe.bin"))
        .status()
        .unwrap()
        .success());
    std::fs::create_dir_all(folder.join("dir.bin")).unwrap();
    for (location, says) in [
        ("pipe.bin", "not a regular file (a FIFO)"),
        ("dir.bin", "not a regular file (a folder)"),
        ("missing.bin", "missing.bin"),
    ] {
        std::fs::write(&model, external_w(&[("location", location)])).unwrap();
        import(&model, &[says]);
    }
    // A sparse file of 3 GB and an offset past its end, or an offset and
    // length that overflow: refused from its size, at once.
    std::fs::File::create(folder.join("huge.bin"))
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    for offset in ["3221225400", "18446744073709551615"] {
        std::fs::write(
            &model,
            external_w(&[
                ("location", "huge.bin"),
                ("offset", offset),
                ("length", length),
            ]),
        )
        .unwrap();
        let r = import(
            &model,
            &[
                "huge.bin",
                "are past the end of the file (3221225472 bytes)",
            ],
        );
        assert!(r.seconds < 5.0, "{:.1} s", r.seconds);
    }
    // A length that is not the tensor's: refused before the file is opened
    // (it is a FIFO); keys that are not ONNX's, or given twice; numbers
    // that are not numbers.
    for (entries, says) in [
        (
            &[("location", "pipe.bin"), ("length", "4")][..],
            "its external data length is 4 bytes, but its shape and type make 180",
        ),
        (
            &[("location", "inside.bin"), ("basepath", "/")][..],
            "external data key `basepath` is not supported",
        ),
        (
            &[("location", "inside.bin"), ("location", "out.bin")][..],
            "external data key `location` is given twice",
        ),
        (
            &[("location", "inside.bin"), ("offset", "-1")][..],
            "external data `offset` is `-1`, not a number of bytes",
        ),
        (&[("offset", "0")][..], "its external data has no location"),
        (
            &[("location", "")][..],
            "external data location `` is empty",
        ),
    ] {
        std::fs::write(&model, external_w(entries)).unwrap();
        import(&model, &[says]);
    }
    // Bytes in memory have no folder: nothing is read.
    let e = gru_wgpu::onnx::OnnxStack::from_bytes(
        &external_w(&[("location", "inside.bin")]),
        "mem.onnx",
        None,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("initializer `W` is stored in an external data file (`inside.bin`), which is read only for a model read from its file"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
