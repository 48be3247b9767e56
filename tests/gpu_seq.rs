//! Variable lengths and episode resets on the GPU, every coverage plan
//! (each GEMM family with each time loop that applies, the window family,
//! both limit profiles) against the f64 CPU reference, forward and backward:
//! lengths in any order with the longest shorter than T (steps past it are
//! not run), lengths equal to T, resets at step 0 and inside, both together,
//! uni- and bidirectional, one and two layers, sequence- and batch-first.

mod common;

use gru_wgpu::cpu::SeqOptions;
use gru_wgpu::GruConfig;
use ndarray::Array2;
use rand::Rng;

const BOUND: f64 = 1e-5;

fn lengths(t: usize, b: usize, seed: u64, full: bool) -> Vec<usize> {
    let mut r = common::rng(seed);
    let mut l: Vec<usize> = (0..b).map(|_| r.random_range(1..=t)).collect();
    if full {
        l[b / 2] = t;
    } else {
        // The longest is shorter than T: the last steps are not run.
        l.iter_mut().for_each(|v| *v = (*v).min(t - 2).max(1));
    }
    l
}

fn resets(t: usize, b: usize, seed: u64, batch_first: bool) -> Array2<bool> {
    let mut r = common::rng(seed);
    let mut a = Array2::from_shape_fn((t, b), |_| r.random_bool(0.2));
    a[[0, 0]] = true;
    a[[1, b - 1]] = true;
    if batch_first {
        a.t().to_owned()
    } else {
        a
    }
}

/// (I, H, L, bidirectional, batch_first, T, B)
type Shape = (usize, usize, usize, bool, bool, usize, usize);
const SHAPES: [Shape; 3] = [
    (5, 7, 1, false, false, 9, 5),
    (4, 9, 2, true, true, 8, 6),
    (6, 33, 1, true, false, 6, 9),
];

#[test]
fn lengths_and_resets_match_the_cpu_reference_on_every_plan() {
    let paths = common::gpu_paths();
    let mut runs = 0;
    let mut worst = 0.0f64;
    for (n, &(i, h, l, bidir, bf, t, b)) in SHAPES.iter().enumerate() {
        let config = GruConfig::new(i, h)
            .layers(l)
            .bidirectional(bidir)
            .batch_first(bf);
        let seed = 40 + n as u64;
        let variants = [
            (
                "lengths < T",
                SeqOptions::new().lengths(Some(lengths(t, b, seed, false))),
            ),
            (
                "lengths",
                SeqOptions::new().lengths(Some(lengths(t, b, seed, true))),
            ),
            (
                // Longest first: the products cover fewer rows step by step.
                "lengths sorted",
                SeqOptions::new().lengths(Some({
                    let mut l = lengths(t, b, seed + 2, true);
                    l.sort_unstable_by(|a, b| b.cmp(a));
                    l
                })),
            ),
            (
                "resets",
                SeqOptions::new().resets(Some(resets(t, b, seed, bf))),
            ),
            (
                "lengths and resets",
                SeqOptions::new()
                    .lengths(Some(lengths(t, b, seed, true)))
                    .resets(Some(resets(t, b, seed + 1, bf))),
            ),
        ];
        for (label, ctx, plan) in &paths {
            if !common::applies(ctx, &config, b, *plan, label) {
                continue;
            }
            for (what, seq) in &variants {
                let case = common::case(config.clone(), t, b, n != 1, seed).with_seq(seq.clone());
                let errors = case.compare_plan(ctx, None, Some(*plan)).unwrap();
                for e in &errors {
                    assert!(
                        e.rel <= BOUND,
                        "{label} {config:?} {what}: {} relative error {:e} > {BOUND:e}",
                        e.name,
                        e.rel
                    );
                }
                worst = worst.max(common::check::worst(&errors));
                runs += 1;
            }
        }
    }
    eprintln!("{runs} runs, worst relative error {worst:e}");
    if common::require_gpu() {
        assert!(runs > 0, "no plan ran");
    }
}

/// The reset-before form on every plan (every time loop of every family),
/// alone and with lengths and resets; a plan is refused only where its loop
/// does not run the shape at all.
#[test]
fn the_reset_before_form_matches_the_cpu_reference() {
    let paths = common::gpu_paths();
    let mut runs = 0;
    let mut worst = 0.0f64;
    // H = 129 too: past what the persistent kernels keep in private memory
    // on CPU adapters, so that their storage-read variant runs here as well.
    let shapes = [
        SHAPES[0],
        SHAPES[1],
        SHAPES[2],
        (4, 129, 1, true, false, 4, 5),
    ];
    for (n, &(i, h, l, bidir, bf, t, b)) in shapes.iter().enumerate() {
        let config = GruConfig::new(i, h)
            .layers(l)
            .bidirectional(bidir)
            .batch_first(bf)
            .reset_before(true);
        let seed = 60 + n as u64;
        let variants = [
            ("plain", SeqOptions::new()),
            (
                "lengths < T and resets",
                SeqOptions::new()
                    .lengths(Some(lengths(t, b, seed, false)))
                    .resets(Some(resets(t, b, seed + 1, bf))),
            ),
        ];
        for (label, ctx, plan) in &paths {
            let params = gru_wgpu::GruParams::<f32>::zeros(&config).unwrap();
            let m = gru_wgpu::gpu::GpuGru::new(ctx, &params).unwrap();
            let loop_runs = plan
                .strategy
                .check(h, b, ctx.limits(), ctx.features(), false)
                .is_ok();
            match m.check_plan(*plan, b) {
                Ok(()) => assert!(loop_runs, "{label}: accepted where the loop does not run"),
                Err(why) => {
                    assert!(!loop_runs, "{label}: the reset-before form refused: {why}");
                    continue;
                }
            }
            for (what, seq) in &variants {
                let case = common::case(config.clone(), t, b, n != 1, seed).with_seq(seq.clone());
                let errors = case.compare_plan(ctx, None, Some(*plan)).unwrap();
                for e in &errors {
                    assert!(
                        e.rel <= BOUND,
                        "{label} {config:?} {what}: {} relative error {:e} > {BOUND:e}",
                        e.name,
                        e.rel
                    );
                }
                worst = worst.max(common::check::worst(&errors));
                runs += 1;
            }
        }
        // The automatic plan runs it too (the fallback rule, or the tuner).
        let ctx = common::gpu();
        if let Some(ctx) = ctx {
            let case = common::case(config.clone(), t, b, true, seed);
            let errors = case.compare_plan(&ctx, None, None).unwrap();
            assert!(common::check::worst(&errors) <= BOUND, "{errors:?}");
        }
    }
    eprintln!("{runs} reset-before runs, worst relative error {worst:e}");
    if common::require_gpu() {
        assert!(runs > 0, "no plan ran");
    }
}

fn upload(ctx: &gru_wgpu::gpu::GpuContext, data: &[f32]) -> wgpu::Buffer {
    use wgpu::util::DeviceExt;
    ctx.device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("test input"),
            contents: bytemuck::cast_slice(data),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        })
}

/// Device buffers with lengths (the longest shorter than T, batch-first)
/// give bitwise what host arrays give; NaN in the host array's padding
/// changes nothing (the padding is never read, and is zeroed before the
/// weight gradients see it).
#[test]
fn lengths_on_device_buffers_and_nan_padding() {
    use gru_wgpu::gpu::{BackwardOptions, ForwardOptions, GpuGru, OnDevice};
    let Some(ctx) = common::gpu() else {
        return;
    };
    let (t, b) = (7, 4);
    let config = GruConfig::new(5, 8)
        .layers(2)
        .bidirectional(true)
        .batch_first(true);
    let lens = vec![3, 5, 1, 4];
    let mut case = common::case(config, t, b, true, 77);
    for (bi, &len) in lens.iter().enumerate() {
        case.x.slice_mut(ndarray::s![bi, len.., ..]).fill(0.0);
    }
    let model = GpuGru::new(&ctx, &case.params).unwrap();
    let run_host = |x: &ndarray::Array3<f32>| {
        let f = model
            .forward(
                x.view(),
                ForwardOptions::default()
                    .h0(case.h0.as_ref().map(|h| h.view()))
                    .lengths(lens.clone())
                    .keep_tape(),
            )
            .unwrap();
        let g = model
            .backward(
                f.tape.unwrap(),
                case.grad_output.view(),
                BackwardOptions::default().grad_h_n(case.grad_h_n.view()),
            )
            .unwrap();
        (f.output, f.h_n, g)
    };
    let (o, hn, g) = run_host(&case.x);
    // Zeros past each length and past the longest (5 < T = 7).
    for (bi, &len) in lens.iter().enumerate() {
        assert!(o
            .slice(ndarray::s![bi, len.., ..])
            .iter()
            .all(|&v| v == 0.0));
        assert!(g
            .x
            .slice(ndarray::s![bi, len.., ..])
            .iter()
            .all(|&v| v == 0.0));
    }
    let mut nan = case.x.clone();
    for (bi, &len) in lens.iter().enumerate() {
        nan.slice_mut(ndarray::s![bi, len.., ..]).fill(f32::NAN);
    }
    let (o2, hn2, g2) = run_host(&nan);
    assert_eq!(o, o2);
    assert_eq!(hn, hn2);
    assert_eq!(g.x, g2.x);
    for ((_, a), (_, c)) in g.params.named().into_iter().zip(g2.params.named()) {
        assert_eq!(a, c);
    }

    let xb = upload(&ctx, case.x.as_slice().unwrap());
    let h0b = upload(&ctx, case.h0.as_ref().unwrap().as_slice().unwrap());
    let f = model
        .forward(
            OnDevice {
                buffer: &xb,
                seq_len: t,
                batch: b,
            },
            ForwardOptions::default()
                .h0(&h0b)
                .lengths(lens.clone())
                .keep_tape(),
        )
        .unwrap();
    assert_eq!(
        common::download(&ctx, f.output.buffer(), o.len()),
        o.as_slice().unwrap()
    );
    assert_eq!(
        common::download(&ctx, f.h_n.buffer(), hn.len()),
        hn.as_slice().unwrap()
    );
    let gob = upload(&ctx, case.grad_output.as_slice().unwrap());
    let ghb = upload(&ctx, case.grad_h_n.as_slice().unwrap());
    let bw = model
        .backward(
            f.tape.unwrap(),
            &gob,
            BackwardOptions::default().grad_h_n(&ghb),
        )
        .unwrap();
    assert_eq!(
        common::download(&ctx, bw.grad_x.buffer(), g.x.len()),
        g.x.as_slice().unwrap()
    );
    assert_eq!(
        common::download(&ctx, bw.grad_h0.buffer(), g.h0.len()),
        g.h0.as_slice().unwrap()
    );
}

/// Bad lengths and resets are refused with the CPU reference's typed
/// errors, before any work; nothing panics.
#[test]
fn bad_lengths_and_resets_are_refused_on_the_gpu() {
    use gru_wgpu::gpu::{ForwardOptions, GpuGru};
    use gru_wgpu::GruError;
    let Some(ctx) = common::gpu() else {
        return;
    };
    let case = common::case(GruConfig::new(3, 4), 5, 2, false, 3);
    let model = GpuGru::new(&ctx, &case.params).unwrap();
    let run = |o: ForwardOptions<ndarray::ArrayView3<f32>>| model.forward(case.x.view(), o);
    let e = run(ForwardOptions::default().lengths(vec![5])).unwrap_err();
    assert!(matches!(e, GruError::LengthMismatch { .. }), "{e:?}");
    let e = run(ForwardOptions::default().lengths(vec![0, 5])).unwrap_err();
    assert!(e.to_string().contains("lengths[0] is 0"), "{e}");
    let e = run(ForwardOptions::default().lengths(vec![6, 5])).unwrap_err();
    assert!(e.to_string().contains("lengths[0] is 6"), "{e}");
    let e = run(ForwardOptions::default().resets(Array2::from_elem((2, 5), false))).unwrap_err();
    assert!(e.to_string().contains("resets"), "{e}");
    // Lengths all T and no resets at all: the plain call, bitwise.
    let plain = run(ForwardOptions::default()).unwrap();
    let full = run(ForwardOptions::default()
        .lengths(vec![5, 5])
        .resets(Array2::from_elem((5, 2), false)))
    .unwrap();
    assert_eq!(plain.output, full.output);
    assert_eq!(plain.h_n, full.h_n);
}

/// Ragged lengths run longest first (the rows gathered into that order and
/// back): the result is bitwise that of the caller sorting the batch
/// themselves, forward and backward; and a training forward with dropout
/// (whose mask follows the caller's order, so no sorting there) matches the
/// CPU reference.
#[test]
fn rows_run_longest_first_bitwise_and_dropout_keeps_the_callers_order() {
    use gru_wgpu::gpu::{BackwardOptions, ForwardOptions, GpuGru};
    let Some(ctx) = common::gpu() else {
        return;
    };
    let (t, b) = (6, 5);
    let config = GruConfig::new(4, 9).layers(2).bidirectional(true);
    let case = common::case(config.clone(), t, b, true, 91);
    let lens = vec![2, 6, 1, 4, 6];
    let order = [1, 4, 3, 0, 2]; // longest first, stable
    let pick = |a: &ndarray::Array3<f32>| a.select(ndarray::Axis(1), &order);
    let model = GpuGru::new(&ctx, &case.params).unwrap();
    let run = |x: ndarray::Array3<f32>,
               h0: ndarray::Array3<f32>,
               go: ndarray::Array3<f32>,
               ghn: ndarray::Array3<f32>,
               l: Vec<usize>| {
        let f = model
            .forward(
                x.view(),
                ForwardOptions::default()
                    .h0(h0.view())
                    .lengths(l)
                    .keep_tape(),
            )
            .unwrap();
        let g = model
            .backward(
                f.tape.unwrap(),
                go.view(),
                BackwardOptions::default().grad_h_n(ghn.view()),
            )
            .unwrap();
        (f.output, f.h_n, g)
    };
    let h0 = case.h0.clone().unwrap();
    let (o, hn, g) = run(
        case.x.clone(),
        h0.clone(),
        case.grad_output.clone(),
        case.grad_h_n.clone(),
        lens.clone(),
    );
    let (o2, hn2, g2) = run(
        pick(&case.x),
        pick(&h0),
        pick(&case.grad_output),
        pick(&case.grad_h_n),
        order.iter().map(|&i| lens[i]).collect(),
    );
    assert_eq!(pick(&o), o2);
    assert_eq!(pick(&hn), hn2);
    assert_eq!(pick(&g.x), g2.x);
    assert_eq!(pick(&g.h0), g2.h0);
    for ((_, a), (_, c)) in g.params.named().into_iter().zip(g2.params.named()) {
        assert_eq!(a, c);
    }

    let dropped = config.dropout(0.4);
    let case = common::case(dropped, t, b, true, 92)
        .with_seq(SeqOptions::new().lengths(Some(lens.clone())));
    let errors = case.compare_plan(&ctx, Some(17), None).unwrap();
    assert!(common::check::worst(&errors) <= BOUND, "{errors:?}");
}
