//! The CPU reference against PyTorch, against finite differences, and the
//! cell against the layer.

mod common;

use gru_wgpu::cpu::{Gru, GruCell};
use gru_wgpu::reference::ReferenceCase;
use gru_wgpu::{GruConfig, GruParams};
use ndarray::{s, Array2, Array3, ArrayD, Axis};

fn check_golden<F: gru_wgpu::Real>(bound: f64) {
    for path in common::golden_files() {
        let case = ReferenceCase::load(&path).unwrap();
        let ours = case.run_cpu::<F>().unwrap();
        let checks = case.compare(&ours, bound);
        // output, h_n, grad.x, every parameter gradient, and grad.h0 where there is an h0.
        let n_params = case.config.param_specs().len();
        assert_eq!(checks.len(), 3 + n_params + usize::from(case.h0.is_some()));
        for c in &checks {
            println!(
                "{} {}: rel {:.3e} max abs {:.3e}",
                path.display(),
                c.name,
                c.rel,
                c.max_abs
            );
            assert!(
                c.ok(),
                "{} {}: relative error {:e} > {:e}",
                path.display(),
                c.name,
                c.rel,
                bound
            );
        }
    }
}

#[test]
fn golden_cases_f64_within_1e12() {
    check_golden::<f64>(1e-12);
}

#[test]
fn golden_cases_f32_within_1e5() {
    check_golden::<f32>(1e-5);
}

/// The loss of the reference cases: sum(output * go) + sum(h_n * gh).
fn loss(
    gru: &mut Gru<f64>,
    x: &Array3<f64>,
    h0: Option<&Array3<f64>>,
    go: &Array3<f64>,
    gh: &Array3<f64>,
    seed: Option<u32>,
) -> f64 {
    let (out, hn) = match seed {
        Some(s) => gru
            .forward_train(x.view(), h0.map(|h| h.view()), s)
            .unwrap(),
        None => gru.forward(x.view(), h0.map(|h| h.view())).unwrap(),
    };
    (&out * go).sum() + (&hn * gh).sum()
}

/// Central differences, element by element, of every input and parameter.
fn finite_difference_check(
    config: GruConfig,
    t: usize,
    b: usize,
    with_h0: bool,
    train_seed: Option<u32>,
    seed: u64,
) {
    let mut rng = common::rng(seed);
    let params = GruParams::<f64>::init(&config, seed).unwrap();
    let x = common::random(config.input_shape(t, b), 1.0, &mut rng);
    let h0 = with_h0.then(|| common::random(config.state_shape(b), 0.8, &mut rng));
    let go = common::random(config.output_shape(t, b), 1.0, &mut rng);
    let gh = common::random(config.state_shape(b), 1.0, &mut rng);
    let mut gru = Gru::new(params.clone());
    loss(&mut gru, &x, h0.as_ref(), &go, &gh, train_seed);
    let grads = gru.backward(go.view(), Some(gh.view())).unwrap();

    let eps = 1e-6;
    let rel = |num: &ArrayD<f64>, ana: &ArrayD<f64>| {
        let d = (num - ana).mapv(|v| v * v).sum().sqrt();
        let n = ana.mapv(|v| v * v).sum().sqrt();
        d / n.max(1e-300)
    };
    let bound = 1e-7;

    // dL/dx
    let mut num = ArrayD::zeros(x.shape());
    for idx in 0..x.len() {
        let mut xp = x.clone();
        let mut xm = x.clone();
        xp.as_slice_mut().unwrap()[idx] += eps;
        xm.as_slice_mut().unwrap()[idx] -= eps;
        let lp = loss(&mut gru, &xp, h0.as_ref(), &go, &gh, train_seed);
        let lm = loss(&mut gru, &xm, h0.as_ref(), &go, &gh, train_seed);
        num.as_slice_mut().unwrap()[idx] = (lp - lm) / (2.0 * eps);
    }
    let e = rel(&num, &grads.x.clone().into_dyn());
    assert!(e < bound, "{config:?}: grad x rel error {e:e}");

    // dL/dh0 (with respect to the zero state where no h0 was given)
    let base_h0 = h0
        .clone()
        .unwrap_or_else(|| Array3::zeros(config.state_shape(b)));
    let mut num = ArrayD::zeros(base_h0.shape());
    for idx in 0..base_h0.len() {
        let mut hp = base_h0.clone();
        let mut hm = base_h0.clone();
        hp.as_slice_mut().unwrap()[idx] += eps;
        hm.as_slice_mut().unwrap()[idx] -= eps;
        let lp = loss(&mut gru, &x, Some(&hp), &go, &gh, train_seed);
        let lm = loss(&mut gru, &x, Some(&hm), &go, &gh, train_seed);
        num.as_slice_mut().unwrap()[idx] = (lp - lm) / (2.0 * eps);
    }
    let e = rel(&num, &grads.h0.clone().into_dyn());
    assert!(e < bound, "{config:?}: grad h0 rel error {e:e}");

    // dL/dθ for every parameter
    let specs = config.param_specs();
    assert_eq!(specs.len(), grads.params.named().len());
    for spec in specs {
        let len: usize = spec.shape.iter().product();
        let mut num = ArrayD::zeros(spec.shape.clone());
        for idx in 0..len {
            let eval = |delta: f64| {
                let mut p = params.clone();
                p.dir_mut(spec.layer, spec.direction)
                    .unwrap()
                    .get_mut(spec.kind)
                    .unwrap()[idx] += delta;
                let mut g = Gru::new(p);
                loss(&mut g, &x, h0.as_ref(), &go, &gh, train_seed)
            };
            num.as_slice_mut().unwrap()[idx] = (eval(eps) - eval(-eps)) / (2.0 * eps);
        }
        let ana = grads.params.get(&spec.name).unwrap().to_owned();
        let e = rel(&num, &ana);
        assert!(e < bound, "{config:?}: grad {} rel error {e:e}", spec.name);
    }
}

#[test]
fn finite_differences_two_layers_bidirectional() {
    finite_difference_check(
        GruConfig::new(3, 4).layers(2).bidirectional(true),
        4,
        2,
        true,
        None,
        1,
    );
}

#[test]
fn finite_differences_batch_first_no_bias_no_h0() {
    finite_difference_check(
        GruConfig::new(4, 3).layers(2).batch_first(true).bias(false),
        3,
        3,
        false,
        None,
        2,
    );
}

#[test]
fn finite_differences_three_layers() {
    finite_difference_check(GruConfig::new(2, 5).layers(3), 5, 1, true, None, 3);
}

#[test]
fn finite_differences_bidirectional_batch_first_one_layer() {
    finite_difference_check(
        GruConfig::new(5, 2).bidirectional(true).batch_first(true),
        6,
        2,
        false,
        None,
        4,
    );
}

#[test]
fn finite_differences_with_dropout_mask() {
    // The mask is a pure function of the seed, so the loss is differentiable as is.
    finite_difference_check(
        GruConfig::new(3, 4)
            .layers(3)
            .bidirectional(true)
            .dropout(0.3),
        3,
        2,
        true,
        Some(77),
        5,
    );
}

#[test]
fn cell_steps_match_layer_and_pytorch() {
    let mut ran = Vec::new();
    for path in common::golden_files() {
        let case = ReferenceCase::load(&path).unwrap();
        let cfg = &case.config;
        if cfg.num_layers != 1 || cfg.is_bidirectional() || cfg.batch_first {
            continue;
        }
        ran.push(path.clone());
        let p = case.params.cast::<f64>();
        let mut cell = GruCell::from_params(p.dir(0, 0).unwrap().clone()).unwrap();
        let x = case.x.mapv(|v| v as f64);
        let (t_len, b, h) = (case.seq_len, case.batch, cfg.hidden_size);
        let mut hcur = match &case.h0 {
            Some(h0) => h0.index_axis(Axis(0), 0).mapv(|v| v as f64),
            None => Array2::zeros((b, h)),
        };
        let mut out = Array3::<f64>::zeros((t_len, b, h));
        for t in 0..t_len {
            hcur = cell.forward(x.index_axis(Axis(0), t), hcur.view()).unwrap();
            out.index_axis_mut(Axis(0), t).assign(&hcur);
        }
        assert_eq!(cell.tape_len(), t_len);
        let go = case.grad_output.mapv(|v| v as f64);
        let mut dh = case.grad_h_n.index_axis(Axis(0), 0).mapv(|v| v as f64);
        let mut dx = Array3::<f64>::zeros(x.raw_dim());
        for t in (0..t_len).rev() {
            dh += &go.index_axis(Axis(0), t);
            let (dxt, dhp) = cell.backward(dh.view()).unwrap();
            dx.index_axis_mut(Axis(0), t).assign(&dxt);
            dh = dhp;
        }
        assert_eq!(cell.tape_len(), 0);

        // Exactly the layer's results: the same arithmetic in the same order.
        let layer = case.run_cpu::<f64>().unwrap();
        assert_eq!(out, layer.output, "{}", path.display());
        assert_eq!(dx, layer.grad_x);
        assert_eq!(dh, layer.grad_h0.clone().unwrap().index_axis(Axis(0), 0));
        assert_eq!(
            &cell.grads().weight_ih,
            &layer.grad_params.dir(0, 0).unwrap().weight_ih
        );
        assert_eq!(
            &cell.grads().weight_hh,
            &layer.grad_params.dir(0, 0).unwrap().weight_hh
        );
        assert_eq!(
            &cell.grads().bias_ih,
            &layer.grad_params.dir(0, 0).unwrap().bias_ih
        );
        assert_eq!(
            &cell.grads().bias_hh,
            &layer.grad_params.dir(0, 0).unwrap().bias_hh
        );

        // And PyTorch's, within the f64 bound.
        let r = gru_wgpu::real::rel_error(out.iter().copied(), case.expected.output.iter());
        assert!(r <= 1e-12, "{}: output {r:e}", path.display());
        let r = gru_wgpu::real::rel_error(dx.iter().copied(), case.expected.grad_x.iter());
        assert!(r <= 1e-12, "{}: grad x {r:e}", path.display());
        let expect_hn = case.expected.h_n.slice(s![0, .., ..]);
        let r = gru_wgpu::real::rel_error(hcur.iter().copied(), expect_hn.iter());
        assert!(r <= 1e-12, "{}: h_n {r:e}", path.display());
        let w = cell.grads().weight_hh.clone();
        let r = gru_wgpu::real::rel_error(
            w.iter().copied(),
            case.expected
                .grad_params
                .dir(0, 0)
                .unwrap()
                .weight_hh
                .iter(),
        );
        assert!(r <= 1e-12, "{}: grad weight_hh {r:e}", path.display());
    }
    // The cases of one layer, one direction, sequence-first: the filter must
    // leave some (cell_seed_sizes, no_h0, saturated_inputs, seq_basic, ...).
    assert!(
        ran.len() >= 3,
        "only {} golden cases were stepped: {ran:?}",
        ran.len()
    );
}

#[test]
fn cell_zero_grad_and_clear() {
    let mut cell = GruCell::<f64>::new(3, 2, true, 9).unwrap();
    let x = Array2::<f64>::ones((2, 3));
    let h = Array2::<f64>::zeros((2, 2));
    cell.forward(x.view(), h.view()).unwrap();
    cell.backward(Array2::<f64>::ones((2, 2)).view()).unwrap();
    assert!(cell.grads().weight_ih.iter().any(|&v| v != 0.0));
    cell.zero_grad();
    assert!(cell.grads().weight_ih.iter().all(|&v| v == 0.0));
    cell.forward(x.view(), h.view()).unwrap();
    cell.clear_tape();
    assert_eq!(cell.tape_len(), 0);
}

#[test]
fn init_is_pytorch_uniform_and_seeded() {
    let cfg = GruConfig::new(7, 16).layers(2).bidirectional(true);
    let a = GruParams::<f64>::init(&cfg, 42).unwrap();
    let b = GruParams::<f64>::init(&cfg, 42).unwrap();
    let c = GruParams::<f64>::init(&cfg, 43).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    let k = 1.0 / 4.0;
    let named = a.named();
    assert_eq!(named.len(), 16);
    let mut all = Vec::new();
    for (_, v) in named {
        all.extend(v.iter().copied());
    }
    assert!(all.iter().all(|v| (-k..k).contains(v)));
    // Uniform on (-k, k): mean near 0, variance near k^2 / 3.
    let n = all.len() as f64;
    let mean = all.iter().sum::<f64>() / n;
    let var = all.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    assert!(mean.abs() < 0.01, "mean {mean}");
    assert!(
        (var - k * k / 3.0).abs() < 0.1 * k * k / 3.0,
        "variance {var}"
    );
}

#[test]
fn safetensors_round_trip_both_dtypes() {
    let cfg = GruConfig::new(5, 6).layers(2).bidirectional(true);
    let p = GruParams::<f32>::init(&cfg, 1).unwrap();
    let dir = std::env::temp_dir().join(format!("gru_wgpu_rt_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("p32.safetensors");
    p.save_safetensors(&f).unwrap();
    assert_eq!(GruParams::<f32>::load_safetensors(&f, &cfg).unwrap(), p);
    // An f32 file read as f64 is exact; an f64 file read as f32 rounds.
    let p64 = GruParams::<f64>::load_safetensors(&f, &cfg).unwrap();
    assert_eq!(p64, p.cast::<f64>());
    let f64path = dir.join("p64.safetensors");
    p64.save_safetensors(&f64path).unwrap();
    assert_eq!(
        GruParams::<f32>::load_safetensors(&f64path, &cfg).unwrap(),
        p
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reference_case_parameters_load_as_a_state_dict() {
    // The parameters of a PyTorch reference case, saved under their state_dict
    // names, load back as the same values.
    let case = ReferenceCase::load(
        common::golden_files()
            .iter()
            .find(|p| p.ends_with("stack3_bidir.safetensors"))
            .unwrap(),
    )
    .unwrap();
    let bytes = case.params.to_safetensors_bytes().unwrap();
    let back = GruParams::<f32>::from_safetensors_bytes(&bytes, &case.config, "mem").unwrap();
    assert_eq!(back, case.params);
    let names: Vec<String> = back.named().into_iter().map(|(s, _)| s.name).collect();
    assert_eq!(
        &names[..4],
        ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    );
    assert_eq!(names[4], "weight_ih_l0_reverse");
    assert_eq!(names.len(), 24);
}

#[test]
fn a_state_dict_saved_by_pytorch_loads() {
    // Written by `safetensors.torch.save_file(nn.GRU(3, 4, num_layers=2,
    // bidirectional=True).state_dict(), ...)` with torch 2.15; the JSON beside
    // it holds the same values as Python printed them.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let cfg = GruConfig::new(3, 4).layers(2).bidirectional(true);
    let p =
        GruParams::<f32>::load_safetensors(dir.join("torch_state_dict.safetensors"), &cfg).unwrap();
    let json: std::collections::BTreeMap<String, Vec<f64>> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("torch_state_dict.json")).unwrap())
            .unwrap();
    assert_eq!(json.len(), 16);
    for (name, values) in &json {
        let t = p.get(name).unwrap_or_else(|| panic!("{name} missing"));
        let ours: Vec<f32> = t.iter().copied().collect();
        let theirs: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        assert_eq!(ours, theirs, "{name}");
    }
    // The same file against a configuration it does not fit.
    let e = GruParams::<f32>::load_safetensors(
        dir.join("torch_state_dict.safetensors"),
        &GruConfig::new(3, 4).layers(2),
    )
    .unwrap_err();
    assert!(
        matches!(e, gru_wgpu::GruError::UnexpectedTensor { .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("_l0_reverse`"), "{e}");
}

#[test]
fn the_dropout_mask_keeps_one_minus_p_and_depends_on_seed_and_layer() {
    use gru_wgpu::dropout::{keep, threshold};
    for p in [0.1f32, 0.5, 0.8] {
        let th = threshold(p);
        let n = 200_000u32;
        let kept = (0..n).filter(|&i| keep(7, 0, i, th)).count() as f64 / n as f64;
        assert!(
            (kept - (1.0 - p as f64)).abs() < 0.005,
            "p = {p}: kept {kept}"
        );
    }
    let th = threshold(0.5);
    let a: Vec<bool> = (0..1000).map(|i| keep(1, 0, i, th)).collect();
    let b: Vec<bool> = (0..1000).map(|i| keep(2, 0, i, th)).collect();
    let c: Vec<bool> = (0..1000).map(|i| keep(1, 1, i, th)).collect();
    assert_ne!(a, b);
    assert_ne!(a, c);
    assert!(
        (0..1000).all(|i| keep(9, 3, i, threshold(0.0))),
        "p = 0 keeps everything"
    );
}

#[test]
fn dropout_only_in_training_mode_and_only_between_layers() {
    let cfg = GruConfig::new(3, 6).layers(2).dropout(0.5);
    let p = GruParams::<f64>::init(&cfg, 3).unwrap();
    let x = Array3::<f64>::ones((4, 2, 3));
    let eval = Gru::new(p.clone()).forward(x.view(), None).unwrap();
    let eval_again = Gru::new(p.clone()).forward(x.view(), None).unwrap();
    assert_eq!(eval, eval_again);
    let train = Gru::new(p.clone())
        .forward_train(x.view(), None, 5)
        .unwrap();
    assert_ne!(eval.0, train.0, "training mode drops");
    // With one layer there is nothing between layers to drop.
    let cfg1 = GruConfig::new(3, 6).dropout(0.5);
    let p1 = GruParams::<f64>::init(&cfg1, 3).unwrap();
    assert_eq!(
        Gru::new(p1.clone()).forward(x.view(), None).unwrap(),
        Gru::new(p1).forward_train(x.view(), None, 5).unwrap()
    );
}
