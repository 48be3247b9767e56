//! Tapes that cannot go stale: a tape records the version of the parameters
//! its forward read; a change of the parameters between a forward and its
//! backward (`set_params`, `update`) makes the backward a typed error, as
//! PyTorch's version counters do.

mod common;

use gru_wgpu::gpu::{BackwardOptions, ForwardOptions, GpuGru, GpuGruCell, GpuOptimizer, OnDevice};
use gru_wgpu::optim::Sgd;
use gru_wgpu::{GruConfig, GruError, GruParams};
use ndarray::{Array2, Array3};

fn model(ctx: &gru_wgpu::gpu::GpuContext) -> GpuGru {
    let config = GruConfig::new(3, 5).layers(2);
    GpuGru::new(ctx, &GruParams::init(&config, 7).unwrap()).unwrap()
}

fn assert_stale(e: GruError) {
    assert!(matches!(e, GruError::StaleTape { .. }), "{e:?}");
    assert!(e.to_string().contains("parameters changed"), "{e}");
}

#[test]
fn set_params_between_forward_and_backward_is_refused() {
    let Some(ctx) = common::gpu() else { return };
    let mut m = model(&ctx);
    let x = Array3::<f32>::from_elem((4, 2, 3), 0.5);
    let go = Array3::<f32>::ones((4, 2, 5));
    let keep = || ForwardOptions::new().keep_tape();
    let tape = m.forward(x.view(), keep()).unwrap().tape.unwrap();
    let before = m.params_version();
    let p = m.params().unwrap();
    m.set_params(&p).unwrap();
    assert_ne!(m.params_version(), before);
    assert_stale(
        m.backward(tape, go.view(), BackwardOptions::new())
            .unwrap_err(),
    );
    // A forward after the change makes a tape that works.
    let tape = m.forward(x.view(), keep()).unwrap().tape.unwrap();
    m.backward(tape, go.view(), BackwardOptions::new()).unwrap();
}

#[test]
fn an_update_between_forward_and_backward_is_refused() {
    let Some(ctx) = common::gpu() else { return };
    let m = model(&ctx);
    let mut opt = GpuOptimizer::sgd(&ctx, Sgd::new(0.1));
    let x = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("x"),
        size: 4 * 2 * 3 * 4,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let go = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("grad_output"),
        size: 4 * 2 * 5 * 4,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let input = OnDevice {
        buffer: &x,
        seq_len: 4,
        batch: 2,
    };
    let keep = || ForwardOptions::new().keep_tape();
    let f = m.forward(input, keep()).unwrap();
    let g = m
        .backward(f.tape.unwrap(), &go, BackwardOptions::new())
        .unwrap();
    let f2 = m.forward(input, keep()).unwrap();
    m.update(&mut opt, &g).unwrap();
    let e = m.backward(f2.tape.unwrap(), &go, BackwardOptions::new());
    assert_stale(e.unwrap_err());
}

#[test]
fn a_cell_update_between_forward_and_backward_is_refused() {
    let Some(ctx) = common::gpu() else { return };
    let mut cell = GpuGruCell::init(&ctx, 3, 4, true, 9).unwrap();
    let mut opt = GpuOptimizer::sgd(&ctx, Sgd::new(0.1));
    let x = Array2::<f32>::from_elem((2, 3), 0.5);
    let h = Array2::<f32>::zeros((2, 4));
    cell.forward_array(x.view(), h.view()).unwrap();
    cell.update(&mut opt).unwrap();
    let dh = Array2::<f32>::ones((2, 4));
    assert_stale(cell.backward_array(dh.view()).unwrap_err());
    // The step stays on the tape; the caller clears it and steps again.
    assert_eq!(cell.tape_len(), 1);
    cell.clear_tape();
    cell.forward_array(x.view(), h.view()).unwrap();
    cell.backward_array(dh.view()).unwrap();
}
