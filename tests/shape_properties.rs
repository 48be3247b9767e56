//! Property tests: no shape of input reaches a panic; each call succeeds
//! exactly when the shapes fit the configuration, and fails with a typed
//! error otherwise, on the CPU reference and on the GPU alike.

mod common;

use gru_wgpu::cpu::Gru;
use gru_wgpu::gpu::{BackwardOptions, FlatInput, ForwardOptions, GpuGru};
use gru_wgpu::{GruConfig, GruError, GruParams};
use ndarray::Array3;
use proptest::prelude::*;

fn config() -> impl Strategy<Value = GruConfig> {
    (
        1usize..5,
        1usize..5,
        1usize..3,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(i, h, l, bd, bf, b)| {
            GruConfig::new(i, h)
                .layers(l)
                .bidirectional(bd)
                .batch_first(bf)
                .bias(b)
        })
}

fn dims() -> impl Strategy<Value = [usize; 3]> {
    [0usize..5, 0usize..5, 0usize..7]
}

/// Whether `x` of `shape` (and h0, grad shapes) fit `cfg`, by the rules.
fn fits(cfg: &GruConfig, x: [usize; 3], h0: Option<[usize; 3]>) -> Option<(usize, usize)> {
    let (t, b) = if cfg.batch_first {
        (x[1], x[0])
    } else {
        (x[0], x[1])
    };
    if t == 0 || b == 0 || x[2] != cfg.input_size {
        return None;
    }
    if let Some(h) = h0 {
        if h != cfg.state_shape(b) {
            return None;
        }
    }
    Some((t, b))
}

fn is_shape_error(e: &GruError) -> bool {
    matches!(
        e,
        GruError::ShapeMismatch { .. } | GruError::ZeroSize { .. }
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn cpu_forward_and_backward_check_every_shape(
        cfg in config(),
        x in dims(),
        h0 in proptest::option::of(dims()),
        go in dims(),
        gh in proptest::option::of(dims()),
    ) {
        let mut gru = Gru::new(GruParams::<f64>::init(&cfg, 1).unwrap());
        let xa = Array3::<f64>::zeros(x);
        let h0a = h0.map(Array3::<f64>::zeros);
        let r = gru.forward(xa.view(), h0a.as_ref().map(|h| h.view()));
        match fits(&cfg, x, h0) {
            Some((t, b)) => {
                prop_assert!(r.is_ok(), "{:?}", r.err());
                let ga = Array3::<f64>::zeros(go);
                let gha = gh.map(Array3::<f64>::zeros);
                let ok = go == cfg.output_shape(t, b) && gh.is_none_or(|g| g == cfg.state_shape(b));
                let r = gru.backward(ga.view(), gha.as_ref().map(|g| g.view()));
                prop_assert_eq!(r.is_ok(), ok);
                if let Err(e) = r {
                    prop_assert!(is_shape_error(&e), "{e:?}");
                }
            }
            None => {
                let e = r.unwrap_err();
                prop_assert!(is_shape_error(&e), "{e:?}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn gpu_forward_and_backward_check_every_shape(
        cfg in config(),
        x in dims(),
        h0 in proptest::option::of(dims()),
        go in dims(),
        slice_extra in 0usize..3,
    ) {
        let Some(ctx) = common::gpu() else { return Ok(()) };
        let model = GpuGru::new(&ctx, &GruParams::<f32>::init(&cfg, 1).unwrap()).unwrap();
        let xa = Array3::<f32>::zeros(x);
        let h0a = h0.map(Array3::<f32>::zeros);
        let r = model.forward(
            xa.view(),
            ForwardOptions::default()
                .h0(h0a.as_ref().map(|h| h.view()))
                .keep_tape(),
        );
        match fits(&cfg, x, h0) {
            Some((t, b)) => {
                let (_, _, tape) = r.unwrap().into_parts();
                let ga = Array3::<f32>::zeros(go);
                let r = model.backward(tape.unwrap(), ga.view(), BackwardOptions::default());
                prop_assert_eq!(r.is_ok(), go == cfg.output_shape(t, b));
                // The slice API: a slice of the wrong length is an error.
                let n = t * b * cfg.input_size;
                let data = vec![0.0f32; n + slice_extra];
                let r = model.forward(
                    FlatInput {
                        data: &data,
                        seq_len: t,
                        batch: b,
                    },
                    ForwardOptions::default().keep_tape(),
                );
                if slice_extra == 0 {
                    prop_assert!(r.is_ok());
                } else {
                    let e = r.unwrap_err();
                    prop_assert!(matches!(e, GruError::LengthMismatch { .. }), "{e:?}");
                }
            }
            None => {
                let e = r.unwrap_err();
                prop_assert!(is_shape_error(&e), "{e:?}");
            }
        }
    }
}
