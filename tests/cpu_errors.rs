//! Every bad input to the CPU reference and the loaders gives a typed error
//! that names the tensor, the expected and the actual shape.

mod common;

use gru_wgpu::cpu::{Gru, GruCell};
use gru_wgpu::reference::ReferenceCase;
use gru_wgpu::{GruConfig, GruError, GruParams};
use ndarray::{Array2, Array3};

fn gru(cfg: &GruConfig) -> Gru<f64> {
    Gru::new(GruParams::init(cfg, 0).unwrap())
}

#[test]
fn zero_sizes_in_config() {
    for (cfg, what) in [
        (GruConfig::new(0, 4), "input_size is 0"),
        (GruConfig::new(3, 0), "hidden_size is 0"),
        (GruConfig::new(3, 4).layers(0), "num_layers is 0"),
    ] {
        let e = GruParams::<f64>::init(&cfg, 0).unwrap_err();
        assert!(matches!(e, GruError::InvalidConfig(_)), "{e:?}");
        assert!(e.to_string().contains(what), "{e}");
    }
    let e = GruParams::<f64>::init(&GruConfig::new(3, 4).dropout(1.0), 0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid configuration: dropout is 1; it must be in [0, 1)"
    );
}

#[test]
fn zero_sizes_in_data() {
    let cfg = GruConfig::new(3, 4);
    let mut g = gru(&cfg);
    let e = g
        .forward(Array3::<f64>::zeros((0, 2, 3)).view(), None)
        .unwrap_err();
    assert!(matches!(e, GruError::ZeroSize { dim: "T", .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "`x` has a size of zero in dimension T (shape (0, 2, 3)); every size must be at least 1"
    );
    let e = g
        .forward(Array3::<f64>::zeros((5, 0, 3)).view(), None)
        .unwrap_err();
    assert!(matches!(e, GruError::ZeroSize { dim: "B", .. }), "{e:?}");
    let e = g
        .forward(Array3::<f64>::zeros((5, 2, 0)).view(), None)
        .unwrap_err();
    assert!(matches!(e, GruError::ZeroSize { dim: "I", .. }), "{e:?}");
    // batch_first names the dimensions in its own order.
    let mut g = gru(&cfg.clone().batch_first(true));
    let e = g
        .forward(Array3::<f64>::zeros((0, 5, 3)).view(), None)
        .unwrap_err();
    assert!(matches!(e, GruError::ZeroSize { dim: "B", .. }), "{e:?}");
}

#[test]
fn mismatched_shapes() {
    let cfg = GruConfig::new(3, 4).layers(2).bidirectional(true);
    let mut g = gru(&cfg);
    let e = g
        .forward(Array3::<f64>::zeros((5, 2, 7)).view(), None)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "`x`: expected shape (5, 2, 3), got (5, 2, 7)"
    );
    assert!(matches!(e, GruError::ShapeMismatch { .. }));
    let h0 = Array3::<f64>::zeros((2, 2, 4));
    let e = g
        .forward(Array3::<f64>::zeros((5, 2, 3)).view(), Some(h0.view()))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "`h0`: expected shape (4, 2, 4), got (2, 2, 4)"
    );

    let e = g
        .backward(Array3::<f64>::zeros((5, 2, 8)).view(), None)
        .unwrap_err();
    assert!(matches!(e, GruError::Tape(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "tape: backward called without a forward before it"
    );

    g.forward(Array3::<f64>::zeros((5, 2, 3)).view(), None)
        .unwrap();
    let e = g
        .backward(Array3::<f64>::zeros((5, 2, 4)).view(), None)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "`grad_output`: expected shape (5, 2, 8), got (5, 2, 4)"
    );
    let gh = Array3::<f64>::zeros((4, 3, 4));
    let e = g
        .backward(Array3::<f64>::zeros((5, 2, 8)).view(), Some(gh.view()))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "`grad_h_n`: expected shape (4, 2, 4), got (4, 3, 4)"
    );
    // A failed backward keeps the tape: a corrected call works.
    g.backward(Array3::<f64>::zeros((5, 2, 8)).view(), None)
        .unwrap();
}

#[test]
fn cell_errors() {
    let mut cell = GruCell::<f64>::new(3, 4, true, 1).unwrap();
    let e = cell
        .forward(Array2::zeros((2, 5)).view(), Array2::zeros((2, 4)).view())
        .unwrap_err();
    assert_eq!(e.to_string(), "`x`: expected shape (2, 3), got (2, 5)");
    let e = cell
        .forward(Array2::zeros((2, 3)).view(), Array2::zeros((3, 4)).view())
        .unwrap_err();
    assert_eq!(e.to_string(), "`h_prev`: expected shape (2, 4), got (3, 4)");
    let e = cell
        .forward(Array2::zeros((0, 3)).view(), Array2::zeros((0, 4)).view())
        .unwrap_err();
    assert!(matches!(e, GruError::ZeroSize { dim: "B", .. }), "{e:?}");
    let e = cell.backward(Array2::zeros((2, 4)).view()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "tape: backward called with no forward step on the tape"
    );
    cell.forward(Array2::zeros((2, 3)).view(), Array2::zeros((2, 4)).view())
        .unwrap();
    let e = cell.backward(Array2::zeros((2, 5)).view()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "`dh_next`: expected shape (2, 4), got (2, 5)"
    );
    assert_eq!(
        cell.tape_len(),
        1,
        "a failed backward leaves the step on the tape"
    );
    assert!(GruCell::<f64>::new(0, 4, true, 1).is_err());
}

fn write_tensors(tensors: &[(&str, safetensors::Dtype, Vec<usize>)]) -> Vec<u8> {
    let data: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, dt, s)| vec![0u8; s.iter().product::<usize>() * dt.bitsize() / 8])
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .zip(&data)
        .map(|((n, dt, s), d)| {
            (
                n.to_string(),
                safetensors::tensor::TensorView::new(*dt, s.clone(), d).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

#[test]
fn weight_file_errors() {
    use safetensors::Dtype::{F32, F64, I64};
    let cfg = GruConfig::new(3, 4);
    let good = [
        ("weight_ih_l0", F32, vec![12, 3]),
        ("weight_hh_l0", F32, vec![12, 4]),
        ("bias_ih_l0", F32, vec![12]),
        ("bias_hh_l0", F64, vec![12]),
    ];
    let bytes = write_tensors(&good);
    assert!(GruParams::<f32>::from_safetensors_bytes(&bytes, &cfg, "w").is_ok());

    let e = GruParams::<f32>::from_safetensors_bytes(&write_tensors(&good[..3]), &cfg, "w")
        .unwrap_err();
    assert!(matches!(e, GruError::MissingTensor { .. }));
    assert_eq!(
        e.to_string(),
        "w: missing tensor `bias_hh_l0` (expected shape (12,))"
    );

    let mut extra = good.to_vec();
    extra.push(("weight_ih_l1", F32, vec![12, 4]));
    let e =
        GruParams::<f32>::from_safetensors_bytes(&write_tensors(&extra), &cfg, "w").unwrap_err();
    assert!(matches!(e, GruError::UnexpectedTensor { .. }));
    assert_eq!(
        e.to_string(),
        "w: unexpected tensor `weight_ih_l1` with shape (12, 4): the configuration has no such parameter"
    );

    let mut misnamed = good.to_vec();
    misnamed[1].0 = "weight_hh_0";
    let e =
        GruParams::<f32>::from_safetensors_bytes(&write_tensors(&misnamed), &cfg, "w").unwrap_err();
    assert!(e.to_string().contains("`weight_hh_0`"), "{e}");

    let mut shaped = good.to_vec();
    shaped[0].2 = vec![3, 12];
    let e =
        GruParams::<f32>::from_safetensors_bytes(&write_tensors(&shaped), &cfg, "w").unwrap_err();
    assert_eq!(
        e.to_string(),
        "w: `weight_ih_l0`: expected shape (12, 3), got (3, 12)"
    );

    let mut typed = good.to_vec();
    typed[2].1 = I64;
    let e =
        GruParams::<f32>::from_safetensors_bytes(&write_tensors(&typed), &cfg, "w").unwrap_err();
    assert!(matches!(e, GruError::DType { .. }));
    assert_eq!(
        e.to_string(),
        "w: tensor `bias_ih_l0`: expected dtype F32 or F64, got I64"
    );

    // No bias in the configuration: the bias tensors are extra.
    let e = GruParams::<f32>::from_safetensors_bytes(&bytes, &cfg.clone().bias(false), "w")
        .unwrap_err();
    assert!(matches!(e, GruError::UnexpectedTensor { .. }), "{e:?}");

    // Truncated and corrupt files.
    let e =
        GruParams::<f32>::from_safetensors_bytes(&bytes[..bytes.len() - 5], &cfg, "w.safetensors")
            .unwrap_err();
    assert!(matches!(e, GruError::SafeTensors { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("w.safetensors: not a valid safetensors file"),
        "{e}"
    );
    let e = GruParams::<f32>::from_safetensors_bytes(b"garbage", &cfg, "w").unwrap_err();
    assert!(matches!(e, GruError::SafeTensors { .. }), "{e:?}");

    let e = GruParams::<f32>::load_safetensors("/nonexistent/w.safetensors", &cfg).unwrap_err();
    assert!(matches!(e, GruError::Io { .. }), "{e:?}");
    assert!(
        e.to_string().starts_with("/nonexistent/w.safetensors: "),
        "{e}"
    );
}

#[test]
fn reference_file_errors() {
    let path = common::golden_files()
        .into_iter()
        .find(|p| p.ends_with("seq_basic.safetensors"))
        .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let e = ReferenceCase::from_bytes(&bytes[..bytes.len() / 2], "ref").unwrap_err();
    assert!(matches!(e, GruError::SafeTensors { .. }), "{e:?}");
    // A weight file is not a reference file.
    let w = GruParams::<f32>::init(&GruConfig::new(2, 2), 0)
        .unwrap()
        .to_safetensors_bytes()
        .unwrap();
    let e = ReferenceCase::from_bytes(&w, "w").unwrap_err();
    assert!(matches!(e, GruError::Format { .. }), "{e:?}");
    let e = e.to_string();
    assert!(
        e.starts_with(
            "w: a file of GRU weights (4 tensors, `weight_ih_l0` among them, and no `format`"
        ),
        "{e}"
    );
    assert!(
        e.contains(
            "`python3 scripts/make_reference.py --input-size 2 --hidden-size 2 --num-layers 1 \
             --seq-len 10 --batch 2 --state-dict w out.safetensors`"
        ),
        "{e}"
    );
    // Any other file without a `format` is what it was.
    let other = safetensors::serialize(
        [(
            "x",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &[0; 4])
                .unwrap(),
        )],
        None,
    )
    .unwrap();
    let e = ReferenceCase::from_bytes(&other, "x").unwrap_err();
    assert_eq!(e.to_string(), "x: metadata `format` is missing");
}
