//! The CPU reference beyond plain nn.GRU: variable lengths, episode resets,
//! the reset-before form. Every case of `tests/data/golden-extra/` in f64
//! (1e-12) and f32 (1e-5), and finite differences of the new backward terms.

mod common;

use std::path::PathBuf;

use gru_wgpu::cpu::{Gru, SeqOptions};
use gru_wgpu::reference::ReferenceCase;
use gru_wgpu::{GruConfig, GruError, GruParams, ResetForm};
use ndarray::{Array2, Array3, ArrayD};

fn extra(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/golden-extra")
        .join(name)
}

const GOLDEN: [&str; 6] = [
    "packed_basic.safetensors",
    "packed_bidir_bf.safetensors",
    "seg_basic.safetensors",
    "seg_bidir_stack.safetensors",
    "rb_basic.safetensors",
    "rb_stack_bidir.safetensors",
];

fn check_extra<F: gru_wgpu::Real>(bound: f64) {
    for name in GOLDEN {
        let case = ReferenceCase::load(extra(name)).unwrap();
        assert!(!case.features().is_empty(), "{name}");
        let ours = case.run_cpu::<F>().unwrap();
        let checks = case.compare(&ours, bound);
        let n_params = case.config.param_specs().len();
        assert_eq!(checks.len(), 3 + n_params + usize::from(case.h0.is_some()));
        let worst = checks.iter().map(|c| c.rel).fold(0.0, f64::max);
        println!("{name}: worst relative error {worst:.3e}");
        for c in &checks {
            assert!(
                c.rel <= bound,
                "{name} {}: relative error {:e} > {:e}",
                c.name,
                c.rel,
                bound
            );
        }
    }
}

#[test]
fn golden_extra_f64_within_1e12() {
    check_extra::<f64>(1e-12);
}

#[test]
fn golden_extra_f32_within_1e5() {
    check_extra::<f32>(1e-5);
}

#[test]
fn the_extra_cases_carry_their_features() {
    let p = ReferenceCase::load(extra("packed_basic.safetensors")).unwrap();
    let l = p.lengths.clone().unwrap();
    assert_eq!(l.len(), p.batch);
    assert!(l.iter().all(|&v| (1..=p.seq_len).contains(&v)));
    assert!(l.windows(2).any(|w| w[0] < w[1]), "not sorted: {l:?}");
    let s = ReferenceCase::load(extra("seg_bidir_stack.safetensors")).unwrap();
    let r = s.resets.clone().unwrap();
    assert_eq!(r.shape(), [s.batch, s.seq_len]);
    assert!(r.iter().any(|&v| v));
    let rb = ReferenceCase::load(extra("rb_basic.safetensors")).unwrap();
    assert_eq!(rb.config.reset_form, ResetForm::Before);
    assert!(rb.describe().contains("reset_form=before"));
}

/// The loss of the reference cases: sum(output * go) + sum(h_n * gh).
fn loss(
    gru: &mut Gru<f64>,
    x: &Array3<f64>,
    h0: &Array3<f64>,
    go: &Array3<f64>,
    gh: &Array3<f64>,
    opts: &SeqOptions,
) -> f64 {
    let (out, hn) = gru.forward_with(x.view(), Some(h0.view()), opts).unwrap();
    (&out * go).sum() + (&hn * gh).sum()
}

/// Central differences of every input and parameter against the backward,
/// with the options of the call.
fn finite_difference_check(config: GruConfig, t: usize, b: usize, opts: SeqOptions, seed: u64) {
    let mut rng = common::rng(seed);
    let params = GruParams::<f64>::init(&config, seed).unwrap();
    let x = common::random(config.input_shape(t, b), 1.0, &mut rng);
    let h0 = common::random(config.state_shape(b), 0.8, &mut rng);
    let go = common::random(config.output_shape(t, b), 1.0, &mut rng);
    let gh = common::random(config.state_shape(b), 1.0, &mut rng);
    let mut gru = Gru::new(params.clone());
    loss(&mut gru, &x, &h0, &go, &gh, &opts);
    let grads = gru.backward(go.view(), Some(gh.view())).unwrap();
    let eps = 1e-6;
    let bound = 1e-7;
    let rel = |num: &ArrayD<f64>, ana: &ArrayD<f64>| {
        let d = (num - ana).mapv(|v| v * v).sum().sqrt();
        let n = ana.mapv(|v| v * v).sum().sqrt();
        d / n.max(1e-300)
    };
    let numeric = |base: &Array3<f64>, f: &mut dyn FnMut(&Array3<f64>) -> f64| {
        let mut num = ArrayD::zeros(base.shape());
        for idx in 0..base.len() {
            let mut p = base.clone();
            let mut m = base.clone();
            p.as_slice_mut().unwrap()[idx] += eps;
            m.as_slice_mut().unwrap()[idx] -= eps;
            num.as_slice_mut().unwrap()[idx] = (f(&p) - f(&m)) / (2.0 * eps);
        }
        num
    };
    let num = numeric(&x, &mut |xv| loss(&mut gru, xv, &h0, &go, &gh, &opts));
    let e = rel(&num, &grads.x.clone().into_dyn());
    assert!(e < bound, "{config:?} {opts:?}: grad x rel error {e:e}");
    let num = numeric(&h0, &mut |hv| loss(&mut gru, &x, hv, &go, &gh, &opts));
    let e = rel(&num, &grads.h0.clone().into_dyn());
    assert!(e < bound, "{config:?} {opts:?}: grad h0 rel error {e:e}");
    for spec in config.param_specs() {
        let len: usize = spec.shape.iter().product();
        let mut num = ArrayD::zeros(spec.shape.clone());
        for idx in 0..len {
            let eval = |delta: f64| {
                let mut p = params.clone();
                p.dir_mut(spec.layer, spec.direction)
                    .unwrap()
                    .get_mut(spec.kind)
                    .unwrap()[idx] += delta;
                loss(&mut Gru::new(p), &x, &h0, &go, &gh, &opts)
            };
            num.as_slice_mut().unwrap()[idx] = (eval(eps) - eval(-eps)) / (2.0 * eps);
        }
        let ana = grads.params.get(&spec.name).unwrap().to_owned();
        let e = rel(&num, &ana);
        assert!(
            e < bound,
            "{config:?} {opts:?}: grad {} rel error {e:e}",
            spec.name
        );
    }
}

#[test]
fn finite_differences_lengths_bidirectional_two_layers() {
    finite_difference_check(
        GruConfig::new(3, 4).layers(2).bidirectional(true),
        5,
        3,
        SeqOptions::new().lengths(Some(vec![3, 5, 1])),
        11,
    );
}

#[test]
fn finite_differences_resets_bidirectional_batch_first() {
    // (B, T): column 0 resets at 0 and 3, column 1 at 2 and 4, column 2 never.
    let mut r = Array2::from_elem((3, 5), false);
    r[[0, 0]] = true;
    r[[0, 3]] = true;
    r[[1, 2]] = true;
    r[[1, 4]] = true;
    finite_difference_check(
        GruConfig::new(3, 4)
            .layers(2)
            .bidirectional(true)
            .batch_first(true),
        5,
        3,
        SeqOptions::new().resets(Some(r)),
        12,
    );
}

#[test]
fn finite_differences_reset_before_bidirectional() {
    finite_difference_check(
        GruConfig::new(3, 4)
            .layers(2)
            .bidirectional(true)
            .reset_before(true),
        4,
        2,
        SeqOptions::new(),
        13,
    );
}

#[test]
fn finite_differences_all_together_no_bias() {
    let mut r = Array2::from_elem((5, 2), false);
    r[[2, 0]] = true;
    r[[1, 1]] = true;
    finite_difference_check(
        GruConfig::new(2, 3)
            .bidirectional(true)
            .bias(false)
            .reset_before(true),
        5,
        2,
        SeqOptions::new().lengths(Some(vec![4, 5])).resets(Some(r)),
        14,
    );
}

#[test]
fn full_lengths_and_no_resets_are_plain_nn_gru() {
    let cfg = GruConfig::new(3, 4).layers(2).bidirectional(true);
    let p = GruParams::<f64>::init(&cfg, 5).unwrap();
    let mut rng = common::rng(5);
    let x = common::random(cfg.input_shape(6, 3), 1.0, &mut rng);
    let (o1, h1) = Gru::new(p.clone()).forward(x.view(), None).unwrap();
    let opts = SeqOptions::new()
        .lengths(Some(vec![6; 3]))
        .resets(Some(Array2::from_elem((6, 3), false)));
    let (o2, h2) = Gru::new(p).forward_with(x.view(), None, &opts).unwrap();
    assert_eq!(o1, o2);
    assert_eq!(h1, h2);
}

#[test]
fn a_length_is_a_shorter_sequence_and_a_reset_a_new_one() {
    let cfg = GruConfig::new(2, 3).bidirectional(true);
    let p = GruParams::<f64>::init(&cfg, 6).unwrap();
    let mut rng = common::rng(6);
    let x = common::random(cfg.input_shape(6, 1), 1.0, &mut rng);
    let h0 = common::random(cfg.state_shape(1), 1.0, &mut rng);
    // Length 4: the first four steps alone, zeros after.
    let opts = SeqOptions::new().lengths(Some(vec![4]));
    let (o, h) = Gru::new(p.clone())
        .forward_with(x.view(), Some(h0.view()), &opts)
        .unwrap();
    let x4 = x.slice(ndarray::s![0..4, .., ..]).to_owned();
    let (o4, h4) = Gru::new(p.clone())
        .forward(x4.view(), Some(h0.view()))
        .unwrap();
    assert_eq!(o.slice(ndarray::s![0..4, .., ..]), o4);
    assert!(o.slice(ndarray::s![4.., .., ..]).iter().all(|&v| v == 0.0));
    assert_eq!(h, h4);
    // A reset at 4: steps 4..6 are their own sequence with a zero state
    // (forward direction), and the reverse pass of steps 0..4 starts from zero.
    let mut r = Array2::from_elem((6, 1), false);
    r[[4, 0]] = true;
    let (o, _) = Gru::new(p.clone())
        .forward_with(
            x.view(),
            Some(h0.view()),
            &SeqOptions::new().resets(Some(r)),
        )
        .unwrap();
    let zero = Array3::<f64>::zeros(cfg.state_shape(1));
    let (o4z, _) = Gru::new(p.clone())
        .forward(x4.view(), Some(zero.view()))
        .unwrap();
    // The reverse half of steps 0..4 starts from zero: equal to a 4-step run from zeros.
    assert_eq!(
        o.slice(ndarray::s![0..4, .., 3..6]),
        o4z.slice(ndarray::s![.., .., 3..6])
    );
    // The forward half of steps 0..4 starts from h0.
    assert_eq!(
        o.slice(ndarray::s![0..4, .., 0..3]),
        o4.slice(ndarray::s![.., .., 0..3])
    );
    let x2 = x.slice(ndarray::s![4..6, .., ..]).to_owned();
    let (o2, _) = Gru::new(p).forward(x2.view(), Some(zero.view())).unwrap();
    assert_eq!(
        o.slice(ndarray::s![4..6, .., 0..3]),
        o2.slice(ndarray::s![.., .., 0..3])
    );
}

#[test]
fn bad_lengths_and_resets_are_refused() {
    let cfg = GruConfig::new(2, 3);
    let p = GruParams::<f64>::init(&cfg, 7).unwrap();
    let x = Array3::<f64>::zeros((4, 2, 2));
    let mut gru = Gru::new(p);
    for (lengths, msg) in [
        (
            vec![4],
            "`lengths`: expected 2 values (one per batch element), got 1",
        ),
        (
            vec![0, 4],
            "lengths[0] is 0; every length must be in 1..=4 (T)",
        ),
        (
            vec![4, 5],
            "lengths[1] is 5; every length must be in 1..=4 (T)",
        ),
    ] {
        let e = gru
            .forward_with(x.view(), None, &SeqOptions::new().lengths(Some(lengths)))
            .unwrap_err();
        assert!(e.to_string().contains(msg), "{e}");
    }
    let e = gru
        .forward_with(
            x.view(),
            None,
            &SeqOptions::new().resets(Some(Array2::from_elem((2, 4), false))),
        )
        .unwrap_err();
    assert!(matches!(e, GruError::ShapeMismatch { .. }), "{e:?}");
}

/// A reverse GRU (ONNX's `direction = "reverse"`) is the reverse half of a
/// bidirectional one on its own: with that half's parameters (PyTorch's
/// `_reverse` names) its output, h_n and every gradient are those of the
/// bidirectional layer's reverse half (checked against PyTorch in
/// `packed_bidir_bf` and the other bidirectional cases), with lengths,
/// both reset forms and h0.
#[test]
fn a_reverse_layer_is_the_reverse_half_of_a_bidirectional_one() {
    use gru_wgpu::Direction;
    for rb in [false, true] {
        let bi = GruConfig::new(3, 5).bidirectional(true).reset_before(rb);
        let rev = GruConfig::new(3, 5)
            .direction(Direction::Reverse)
            .reset_before(rb);
        assert_eq!(rev.num_directions(), 1);
        let pb = GruParams::<f64>::init(&bi, 11).unwrap();
        let mut named = std::collections::BTreeMap::new();
        for (spec, a) in pb.named() {
            if spec.name.ends_with("_reverse") {
                named.insert(spec.name.clone(), a.to_owned());
            }
        }
        let pr = GruParams::<f64>::from_named(&rev, &named).unwrap();
        assert!(pr.named().iter().all(|(s, _)| s.name.ends_with("_reverse")));
        let (t, b, h) = (6, 3, 5);
        let mut rng = common::rng(12);
        let x: Array3<f64> = common::random((t, b, 3), 1.0, &mut rng);
        let h0b: Array3<f64> = common::random((2, b, h), 1.0, &mut rng);
        let h0r = h0b.slice(ndarray::s![1..2, .., ..]).to_owned();
        let go_r: Array3<f64> = common::random((t, b, h), 1.0, &mut rng);
        let ghn_r: Array3<f64> = common::random((1, b, h), 1.0, &mut rng);
        // The bidirectional layer's upstream gradients: zero on the forward half.
        let mut go_b = Array3::<f64>::zeros((t, b, 2 * h));
        go_b.slice_mut(ndarray::s![.., .., h..]).assign(&go_r);
        let mut ghn_b = Array3::<f64>::zeros((2, b, h));
        ghn_b.slice_mut(ndarray::s![1..2, .., ..]).assign(&ghn_r);
        let seq = SeqOptions::new().lengths(Some(vec![6, 2, 4]));
        let mut gb = Gru::new(pb);
        let (ob, hb) = gb.forward_with(x.view(), Some(h0b.view()), &seq).unwrap();
        let grads_b = gb.backward(go_b.view(), Some(ghn_b.view())).unwrap();
        let mut gr = Gru::new(pr);
        let (or, hr) = gr.forward_with(x.view(), Some(h0r.view()), &seq).unwrap();
        let grads_r = gr.backward(go_r.view(), Some(ghn_r.view())).unwrap();
        let close = |a: &Array3<f64>, b: ndarray::ArrayView3<f64>, what: &str| {
            let d = (a - &b).mapv(f64::abs).fold(0.0f64, |m, &v| m.max(v));
            assert!(d <= 1e-14, "reset-before {rb}: {what}: {d:e}");
        };
        close(&or, ob.slice(ndarray::s![.., .., h..]), "output");
        close(&hr, hb.slice(ndarray::s![1..2, .., ..]), "h_n");
        // dL/dx: the forward half's upstream gradient is zero, so all of it
        // comes through the reverse half.
        close(&grads_r.x, grads_b.x.view(), "grad x");
        close(
            &grads_r.h0,
            grads_b.h0.slice(ndarray::s![1..2, .., ..]),
            "grad h0",
        );
        for (spec, g) in grads_r.params.named() {
            let gbp = grads_b.params.get(&spec.name).unwrap();
            let d = (&g - &gbp).mapv(f64::abs).fold(0.0f64, |m, &v| m.max(v));
            assert!(d <= 1e-14, "reset-before {rb}: grad {}: {d:e}", spec.name);
        }
    }
}

/// A stack of reverse layers is the same stack run forwards on each
/// sequence reversed within its length (and its output reversed back):
/// two layers, lengths, episode resets (a reset at step t of the forward
/// run on the flipped sequence is one at step len - t of the reverse run),
/// batch_first, and the gradients of x, h0 and every parameter.
#[test]
fn a_reverse_stack_is_a_forward_stack_on_flipped_sequences() {
    use gru_wgpu::Direction;
    let (t, b, i, h) = (7, 3, 2, 4);
    let lengths = vec![7usize, 3, 5];
    let fwd = GruConfig::new(i, h).layers(2).batch_first(true);
    let rev = fwd.clone().direction(Direction::Reverse);
    let pf = GruParams::<f64>::init(&fwd, 21).unwrap();
    // The same values under the reverse layer's names.
    let named: std::collections::BTreeMap<String, ArrayD<f64>> = pf
        .named()
        .into_iter()
        .map(|(s, a)| (GruConfig::param_name(s.kind, s.layer, 1), a.to_owned()))
        .collect();
    let pr = GruParams::<f64>::from_named(&rev, &named).unwrap();
    let mut rng = common::rng(22);
    let x: Array3<f64> = common::random((b, t, i), 1.0, &mut rng);
    let h0: Array3<f64> = common::random((2, b, h), 1.0, &mut rng);
    let go: Array3<f64> = common::random((b, t, h), 1.0, &mut rng);
    let ghn: Array3<f64> = common::random((2, b, h), 1.0, &mut rng);
    let mut resets = Array2::from_elem((b, t), false);
    resets[[0, 4]] = true;
    resets[[2, 2]] = true;
    resets[[1, 1]] = true;
    // Time reversed within each row's length (batch-first), padding kept.
    let flip = |a: &Array3<f64>| {
        let mut o = a.clone();
        for (r, &len) in lengths.iter().enumerate() {
            for s in 0..len {
                o.slice_mut(ndarray::s![r, s, ..])
                    .assign(&a.slice(ndarray::s![r, len - 1 - s, ..]));
            }
        }
        o
    };
    // The reverse run zeroes the state before step t where resets[t + 1]:
    // in the flipped run that is before step len - 1 - t, i.e. flipped
    // resets[s] = resets[len - s] for 1 <= s < len.
    let mut fr = Array2::from_elem((b, t), false);
    for (r, &len) in lengths.iter().enumerate() {
        for s in 1..len {
            fr[[r, s]] = resets[[r, len - s]];
        }
    }
    let mut gr = Gru::new(pr);
    let seq = SeqOptions::new()
        .lengths(Some(lengths.clone()))
        .resets(Some(resets));
    let (or, hr) = gr.forward_with(x.view(), Some(h0.view()), &seq).unwrap();
    let grads_r = gr.backward(go.view(), Some(ghn.view())).unwrap();
    let mut gf = Gru::new(pf);
    let seqf = SeqOptions::new()
        .lengths(Some(lengths.clone()))
        .resets(Some(fr));
    let (of, hf) = gf
        .forward_with(flip(&x).view(), Some(h0.view()), &seqf)
        .unwrap();
    let grads_f = gf.backward(flip(&go).view(), Some(ghn.view())).unwrap();
    let close = |a: &Array3<f64>, b: &Array3<f64>, what: &str| {
        let d = (a - b).mapv(f64::abs).fold(0.0f64, |m, &v| m.max(v));
        assert!(d <= 1e-14, "{what}: {d:e}");
    };
    close(&or, &flip(&of), "output");
    close(&hr, &hf, "h_n");
    close(&grads_r.x, &flip(&grads_f.x), "grad x");
    close(&grads_r.h0, &grads_f.h0, "grad h0");
    for ((sr, a), (_, bb)) in grads_r
        .params
        .named()
        .into_iter()
        .zip(grads_f.params.named())
    {
        let d = (&a - &bb).mapv(f64::abs).fold(0.0f64, |m, &v| m.max(v));
        assert!(d <= 1e-14, "grad {}: {d:e}", sr.name);
    }
}
