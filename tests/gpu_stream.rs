//! Streaming inference ([`GpuStream`]): a stream fed in chunks (of 1, 3 and
//! the rest of T = 10 frames) gives bit for bit the output and final state
//! of one forward over the whole sequence with the same plan, on every plan
//! of the coverage set that applies; a reset row starts again from zero
//! while the others go on; bad chunks, rows and models are refused with
//! typed errors and change nothing. With the default settings (plans
//! measured per shape), a stream and its model's own forward over the same
//! frames agree bit for bit: the stream forces its plan on the model.

mod common;

use gru_wgpu::gpu::{
    ContextOptions, Family, ForwardOptions, GpuContext, GpuGru, GpuStream, OnDevice,
    PlanCacheLocation, PlanSource, Strategy,
};
use gru_wgpu::{GruConfig, GruError, GruParams};
use ndarray::{s, Array3, Axis};

const T: usize = 10;
const B: usize = 3;
const I: usize = 5;
const H: usize = 16;

/// Asserts that two arrays are equal bit for bit, naming the first element
/// that differs.
fn assert_bits(what: &str, got: &Array3<f32>, want: &Array3<f32>) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    for ((idx, g), w) in got.indexed_iter().zip(want.iter()) {
        assert!(
            g.to_bits() == w.to_bits(),
            "{what}: element {idx:?} differs: {g:e} ({:#010x}) vs {w:e} ({:#010x}) \
             (one forward over the whole sequence)",
            g.to_bits(),
            w.to_bits()
        );
    }
}

fn random(shape: (usize, usize, usize), seed: u64) -> Array3<f32> {
    common::random(shape, 1.0, &mut common::rng(seed)).mapv(|v| v as f32)
}

/// The GRUs streamed: one layer from zero state; two layers from a state
/// set with `set_state`; two layers, batch first, without bias; and the
/// second again with f16 storage.
fn configs() -> Vec<(GruConfig, bool)> {
    vec![
        (GruConfig::new(I, H), false),
        (GruConfig::new(I, H).layers(2), true),
        (
            GruConfig::new(I, H).layers(2).batch_first(true).bias(false),
            false,
        ),
        (
            GruConfig::new(I, H)
                .layers(2)
                .precision(gru_wgpu::Precision::F16),
            true,
        ),
    ]
}

/// Frames `range` of `x` (along T, or along axis 1 where batch first).
fn frames(cfg: &GruConfig, x: &Array3<f32>, from: usize, to: usize) -> Array3<f32> {
    match cfg.batch_first {
        true => x.slice(s![.., from..to, ..]).to_owned(),
        false => x.slice(s![from..to, .., ..]).to_owned(),
    }
}

/// The chunk's output along the time axis, concatenated.
fn concat_time(cfg: &GruConfig, parts: &[Array3<f32>]) -> Array3<f32> {
    let axis = Axis(cfg.batch_first as usize);
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(axis, &views).unwrap()
}

/// A chunk on the device, pushed with `push_device`, its output read back.
fn push_on_device(stream: &mut GpuStream, cfg: &GruConfig, chunk: &Array3<f32>) -> Array3<f32> {
    let t = chunk.shape()[cfg.batch_first as usize];
    let buf = stream
        .model()
        .upload_input("chunk", chunk.as_standard_layout().as_slice().unwrap())
        .unwrap();
    let out = stream
        .push_device(OnDevice {
            buffer: buf.buffer(),
            seq_len: t,
            batch: B,
        })
        .unwrap();
    let shape = cfg.output_shape(t, B);
    let v = stream
        .model()
        .read_stored(out.buffer(), shape.iter().product())
        .unwrap();
    Array3::from_shape_vec(shape, v).unwrap()
}

#[test]
fn chunks_of_one_three_and_the_rest_give_one_forward_bit_for_bit() {
    let mut runs = 0;
    for (label, ctx, plan) in common::gpu_paths() {
        for (n, (cfg, with_state)) in configs().into_iter().enumerate() {
            if !common::applies(&ctx, &cfg, B, plan, &label) {
                continue;
            }
            let label = format!("{label}, {cfg:?}");
            let m = GpuGru::new(&ctx, &GruParams::init(&cfg, 11 + n as u64).unwrap()).unwrap();
            m.set_plan(Some(plan));
            let x = random(
                (cfg.input_shape(T, B)[0], cfg.input_shape(T, B)[1], I),
                20 + n as u64,
            );
            let h0 = random((cfg.num_layers, B, H), 30 + n as u64);
            let opts = match with_state {
                true => ForwardOptions::default().h0(h0.view()),
                false => ForwardOptions::default(),
            };
            let whole = m.forward(x.view(), opts).unwrap();

            let mut stream = GpuStream::new(&m, B).unwrap();
            assert_eq!(stream.plan(), plan, "{label}: the forced plan");
            if with_state {
                stream.set_state(h0.view()).unwrap();
            }
            // 1 frame from the host, 3 on the device, the rest from the host.
            let a = stream.push(frames(&cfg, &x, 0, 1).view()).unwrap();
            let b = push_on_device(&mut stream, &cfg, &frames(&cfg, &x, 1, 4));
            let c = stream.push(frames(&cfg, &x, 4, T).view()).unwrap();
            assert_eq!(stream.frames_seen(), T as u64);
            assert_eq!(stream.row_frames(), &[T as u64; B]);
            assert_bits(
                &format!("{label}: output"),
                &concat_time(&cfg, &[a, b, c]),
                &whole.output,
            );
            assert_bits(
                &format!("{label}: state"),
                &stream.state().unwrap(),
                &whole.h_n,
            );
            runs += 1;
        }
    }
    if common::gpu().is_some() {
        assert!(runs > 0, "no plan ran");
        eprintln!("{runs} streams matched one forward bit for bit");
    }
}

#[test]
fn a_reset_row_starts_again_from_zero_and_the_others_go_on() {
    let cfg = GruConfig::new(I, H).layers(2);
    let mut runs = 0;
    for (label, ctx, plan) in common::gpu_paths() {
        if !common::applies(&ctx, &cfg, B, plan, &label) {
            continue;
        }
        let m = GpuGru::new(&ctx, &GruParams::init(&cfg, 3).unwrap()).unwrap();
        m.set_plan(Some(plan));
        let x = random((T, B, I), 40);
        let whole = m.forward(x.view(), ForwardOptions::default()).unwrap();
        let mut stream = GpuStream::new(&m, B).unwrap();
        let a = stream.push(x.slice(s![..4, .., ..])).unwrap();
        let before = stream.state().unwrap();
        stream.reset_rows(&[1]).unwrap();
        assert_eq!(stream.row_frames(), &[4, 0, 4], "{label}");
        let after = stream.state().unwrap();
        for r in 0..B {
            let (got, want) = (after.index_axis(Axis(1), r), before.index_axis(Axis(1), r));
            match r {
                1 => assert!(got.iter().all(|v| v.to_bits() == 0), "{label}: row 1 zero"),
                _ => assert!(
                    got.iter()
                        .zip(want)
                        .all(|(g, w)| g.to_bits() == w.to_bits()),
                    "{label}: row {r} untouched"
                ),
            }
        }
        let b = stream.push(x.slice(s![4.., .., ..])).unwrap();
        let out = concat_time(&cfg, &[a, b]);
        let state = stream.state().unwrap();
        // Row 1 from frame 4 on: a fresh sequence of those frames.
        let fresh = m
            .forward(x.slice(s![4.., .., ..]), ForwardOptions::default())
            .unwrap();
        // The other rows: the whole sequence, as if nothing had happened.
        for r in 0..B {
            let (want_out, want_state, from) = match r {
                1 => (&fresh.output, &fresh.h_n, 4),
                _ => (&whole.output, &whole.h_n, 0),
            };
            let row = |a: &Array3<f32>, t0: usize| a.slice(s![t0.., r..r + 1, ..]).to_owned();
            assert_bits(
                &format!("{label}: row {r}, output"),
                &row(&out, 4),
                &row(want_out, 4 - from),
            );
            if r != 1 {
                assert_bits(
                    &format!("{label}: row {r}, output before the reset"),
                    &row(&out, 0).slice(s![..4, .., ..]).to_owned(),
                    &row(want_out, 0).slice(s![..4, .., ..]).to_owned(),
                );
            }
            assert_bits(
                &format!("{label}: row {r}, state"),
                &state.slice(s![.., r..r + 1, ..]).to_owned(),
                &want_state.slice(s![.., r..r + 1, ..]).to_owned(),
            );
        }
        // `reset` restarts every row.
        stream.reset().unwrap();
        assert!(stream.state().unwrap().iter().all(|v| v.to_bits() == 0));
        assert_eq!(stream.row_frames(), &[0; B]);
        assert_eq!(stream.frames_seen(), T as u64);
        runs += 1;
    }
    if common::gpu().is_some() {
        assert!(runs > 0, "no plan ran");
    }
}

#[test]
fn bad_models_chunks_rows_and_states_are_refused_and_change_nothing() {
    let Some(ctx) = common::gpu() else { return };
    let bidir = GruConfig::new(I, H).bidirectional(true);
    let m2 = GpuGru::new(&ctx, &GruParams::init(&bidir, 1).unwrap()).unwrap();
    let e = GpuStream::new(&m2, B).unwrap_err();
    assert!(matches!(e, GruError::InvalidConfig(_)), "{e}");
    assert!(e.to_string().contains("bidirectional"), "{e}");

    let cfg = GruConfig::new(I, H).layers(2);
    let m = GpuGru::new(&ctx, &GruParams::init(&cfg, 2).unwrap()).unwrap();
    let e = GpuStream::new(&m, 0).unwrap_err();
    assert!(matches!(e, GruError::ZeroSize { dim: "B", .. }), "{e}");

    // A plan that does not apply to the model is refused.
    let refused = ctx
        .families()
        .into_iter()
        .flat_map(|f| Strategy::ALL.iter().map(move |s| (f, *s)))
        .map(|(f, s)| gru_wgpu::gpu::Plan::new(f, s))
        .chain([gru_wgpu::gpu::Plan::new(Family::Windows, Strategy::Step)])
        .find(|p| m.check_plan(*p, B).is_err());
    if let Some(p) = refused {
        let e = GpuStream::with_plan(&m, B, p).unwrap_err();
        assert!(matches!(e, GruError::InvalidConfig(_)), "{p}: {e}");
    }

    let mut stream = GpuStream::new(&m, B).unwrap();
    assert_eq!(stream.plan(), m.plan_for(1, B).unwrap().plan);
    let x = random((T, B, I), 50);
    let first = stream.push(x.slice(s![..2, .., ..])).unwrap();
    assert_eq!(first.shape(), &[2, B, H]);
    let state = stream.state().unwrap();

    let unchanged = |stream: &GpuStream, what: &str| {
        assert_eq!(stream.frames_seen(), 2, "{what}");
        let now = stream.state().unwrap();
        assert!(
            now.iter()
                .zip(&state)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{what}: the state changed"
        );
    };
    // Another batch in a later chunk.
    let e = stream.push(random((2, B + 1, I), 51).view()).unwrap_err();
    assert!(matches!(e, GruError::ShapeMismatch { .. }), "{e}");
    unchanged(&stream, "wrong batch");
    // Another input size.
    let e = stream.push(random((2, B, I + 1), 52).view()).unwrap_err();
    assert!(matches!(e, GruError::ShapeMismatch { .. }), "{e}");
    unchanged(&stream, "wrong input size");
    // No frame.
    let e = stream.push(Array3::zeros((0, B, I)).view()).unwrap_err();
    assert!(matches!(e, GruError::ZeroSize { dim: "T", .. }), "{e}");
    unchanged(&stream, "no frame");
    // On the device: another batch, no frame, a buffer too small.
    let buf = ctx.upload("x", x.view()).unwrap();
    let on = |seq_len, batch| OnDevice {
        buffer: buf.buffer(),
        seq_len,
        batch,
    };
    let e = stream.push_device(on(2, B - 1)).unwrap_err();
    assert!(matches!(e, GruError::ShapeMismatch { .. }), "{e}");
    let e = stream.push_device(on(0, B)).unwrap_err();
    assert!(matches!(e, GruError::ZeroSize { dim: "T", .. }), "{e}");
    let e = stream.push_device(on(T + 1, B)).unwrap_err();
    assert!(matches!(e, GruError::LengthMismatch { .. }), "{e}");
    unchanged(&stream, "bad device chunks");
    // Rows out of range: nothing reset, even the rows in range.
    let e = stream.reset_rows(&[0, B]).unwrap_err();
    assert!(
        matches!(e, GruError::OutOfRange { index, len, .. } if index == B && len == B),
        "{e}"
    );
    unchanged(&stream, "a row out of range");
    assert_eq!(stream.row_frames(), &[2; B]);
    // A state of another shape.
    let e = stream
        .set_state(Array3::zeros((2, B + 1, H)).view())
        .unwrap_err();
    assert!(matches!(e, GruError::ShapeMismatch { .. }), "{e}");
    unchanged(&stream, "a state of another shape");

    // After all that, the stream goes on as one forward.
    let rest = stream.push(x.slice(s![2.., .., ..])).unwrap();
    let whole = m.forward(x.view(), ForwardOptions::default()).unwrap();
    assert_bits("output", &concat_time(&cfg, &[first, rest]), &whole.output);
    assert_bits("state", &stream.state().unwrap(), &whole.h_n);
}

/// Without biases and with an input size over 512, the input projection's
/// GEMM splits its sums along K; over T·B = 4000 rows (H = 512) its
/// partials pass the bound on partial products, and the rows then go in
/// slices with the same split, so chunks of 250 frames still give the one
/// forward bit for bit (before, 89% of the outputs differed in the last bits).
#[test]
fn a_long_sequence_with_a_split_input_projection_streams_bit_for_bit() {
    let Some(ctx) = common::gpu() else {
        return;
    };
    let cfg = GruConfig::new(520, 512).bias(false);
    let p = GruParams::<f32>::init(&cfg, 5).unwrap();
    let m = GpuGru::new(&ctx, &p).unwrap();
    let x = common::case(cfg.clone(), 1000, 4, false, 3).x;
    m.set_plan(Some("simple/step".parse::<gru_wgpu::gpu::Plan>().unwrap()));
    let mut st = GpuStream::new(&m, 4).unwrap();
    m.set_plan(Some(st.plan()));
    let whole = m.forward(x.view(), ForwardOptions::default()).unwrap();
    let mut outs = Vec::new();
    for c in 0..4 {
        outs.push(
            st.push(x.slice(ndarray::s![c * 250..(c + 1) * 250, .., ..]))
                .unwrap(),
        );
    }
    let views: Vec<_> = outs.iter().map(|o| o.view()).collect();
    let cat = ndarray::concatenate(ndarray::Axis(0), &views).unwrap();
    let diff = cat
        .iter()
        .zip(whole.output.iter())
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    eprintln!("plan {} differing {diff} of {}", st.plan(), cat.len());
    assert_eq!(diff, 0);
}

/// A context with the default settings (`ContextOptions::default()`: the
/// plans measured, in quick mode unless `GRU_WGPU_TUNE` says otherwise),
/// its plan cache in a folder of this run.
fn default_context() -> Option<GpuContext> {
    common::gpu()?;
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("stream-plans-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Some(
        GpuContext::with_options(ContextOptions {
            plan_cache: PlanCacheLocation::Dir(dir),
            ..Default::default()
        })
        .unwrap(),
    )
}

/// The promise with the default settings: a stream made from a model and
/// the model's own forward over the same frames give the same bits, in
/// chunks of any sizes, whatever plan the tuner would have measured for
/// the whole call's length.
#[test]
fn with_the_default_settings_a_stream_and_its_models_forward_agree_bit_for_bit() {
    let Some(ctx) = default_context() else {
        return;
    };
    const T: usize = 40;
    // (On llvmpipe the second one's plans fall into five groups of equal
    // bits: the storage families' loops but splitk, their splitk, and
    // three of the window family's.)
    for (n, cfg) in [GruConfig::new(I, H), GruConfig::new(16, 32).layers(2)]
        .into_iter()
        .enumerate()
    {
        let m = GpuGru::new(&ctx, &GruParams::init(&cfg, 60 + n as u64).unwrap()).unwrap();
        // The plan the whole call would run without the stream (measured
        // for its own bucket of T), and the one measured for one frame.
        let own = m.plan_for(T, B).unwrap().plan;
        let before = m.plan_for(1, B).unwrap();
        let x = random((T, B, cfg.input_size), 70 + n as u64);
        let mut stream = GpuStream::new(&m, B).unwrap();
        let measured = matches!(before.source, PlanSource::Cached | PlanSource::Tuned);
        assert_eq!(stream.plan(), before.plan, "{cfg:?}");
        assert_eq!(stream.pinned_model(), measured, "{cfg:?}: {before:?}");
        // The model now runs the stream's plan at every length, forced (not
        // measured per bucket of T, where it could differ).
        for t in [1, 3, 17, T, 4 * T] {
            let c = m.plan_for(t, B).unwrap();
            assert_eq!(c.plan, stream.plan(), "T = {t}");
            if measured {
                assert_eq!(c.source, PlanSource::Forced, "T = {t}");
            }
        }
        let whole = m.forward(x.view(), ForwardOptions::default()).unwrap();
        eprintln!(
            "{cfg:?}: stream plan {} ({:?}, pinned {})",
            stream.plan(),
            before.source,
            stream.pinned_model()
        );
        for sizes in [
            vec![1; T],
            vec![3; T / 3 + 1],
            vec![1, 3, 5, 8, 2, 21],
            vec![T],
            vec![7, 1, 32],
        ] {
            stream.reset().unwrap();
            let mut parts = Vec::new();
            let mut at = 0;
            for &size in &sizes {
                let len = size.min(T - at);
                if len == 0 {
                    break;
                }
                parts.push(stream.push(x.slice(s![at..at + len, .., ..])).unwrap());
                at += len;
            }
            assert_eq!(at, T);
            let label = format!("{cfg:?}, chunks {sizes:?}");
            assert_bits(
                &format!("{label}: output"),
                &concat_time(&cfg, &parts),
                &whole.output,
            );
            assert_bits(
                &format!("{label}: state"),
                &stream.state().unwrap(),
                &whole.h_n,
            );
        }
        // What the pin changed here: the whole call's own plan, and
        // whether its bits are the stream's.
        m.set_plan(Some(own));
        let unpinned = m.forward(x.view(), ForwardOptions::default()).unwrap();
        m.set_plan(Some(stream.plan()));
        let same = unpinned
            .output
            .iter()
            .zip(&whole.output)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        eprintln!(
            "  the whole call's own plan {own}: {} bits",
            if same { "the same" } else { "other" }
        );
        // A second stream on the model takes the plan it now runs, and
        // leaves it as it is.
        let second = GpuStream::new(&m, B + 2).unwrap();
        assert_eq!(second.plan(), stream.plan());
        assert!(!second.pinned_model());
        // `with_plan` never touches the model; `set_plan(None)` undoes the pin.
        m.set_plan(None);
        let other = GpuStream::with_plan(&m, B, stream.plan()).unwrap();
        assert!(!other.pinned_model());
        assert_ne!(m.plan_for(1, B).unwrap().source, PlanSource::Forced);
    }
}
