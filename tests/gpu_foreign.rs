//! Buffers of another device (issue 21, item 5): every entry point that
//! takes a caller's `&wgpu::Buffer` refuses a buffer that another context's
//! device made, with [`GruError::ForeignBuffer`] naming the argument, before
//! any work; buffers the caller made on the context's own device are taken.
//!
//! wgpu does not refuse them itself: a `wgpu::Buffer` is an id in the
//! registry of the instance that made it, and a context of another instance
//! looks the id up in its own registry, where it names some buffer of its
//! own device (or none, and wgpu panics).

mod common;

use gru_wgpu::gpu::{
    clip_grad_norm, BackwardOptions, ContextOptions, ForwardOptions, GpuContext, GpuGru,
    GpuGruCell, GpuLinearHead, GpuOptimizer, GpuStream, OnDevice,
};
use gru_wgpu::optim::Sgd;
use gru_wgpu::{GruConfig, GruError, GruParams};
use ndarray::Array3;

/// The test binary's context, and another context on the same adapter.
fn two() -> Option<(GpuContext, GpuContext)> {
    let a = common::gpu()?;
    let b = GpuContext::with_options(ContextOptions {
        tune: Some(gru_wgpu::gpu::TuneMode::Off),
        plan_cache: gru_wgpu::gpu::PlanCacheLocation::MemoryOnly,
        ..Default::default()
    })
    .unwrap();
    Some((a, b))
}

fn assert_foreign<T: std::fmt::Debug>(r: gru_wgpu::Result<T>, name: &str) {
    match r {
        Err(GruError::ForeignBuffer { name: n }) => {
            assert_eq!(n, name);
            let e = GruError::ForeignBuffer { name: n };
            let msg = e.to_string();
            assert!(msg.contains(&format!("`{name}`")), "{msg}");
            assert!(msg.contains("made by another device"), "{msg}");
        }
        other => panic!("`{name}`: expected ForeignBuffer, got {other:?}"),
    }
}

const T: usize = 3;
const B: usize = 2;

fn model(ctx: &GpuContext) -> GpuGru {
    GpuGru::new(ctx, &GruParams::init(&GruConfig::new(4, 5), 3).unwrap()).unwrap()
}

fn x() -> Array3<f32> {
    Array3::from_shape_fn((T, B, 4), |(t, b, i)| {
        (t + 2 * b + 3 * i) as f32 / 10.0 - 0.5
    })
}

#[test]
fn the_forward_refuses_an_input_or_h0_of_another_context() {
    let Some((a, b)) = two() else { return };
    let m = model(&a);
    let (xa, xb) = (
        a.upload("x", x().view()).unwrap(),
        b.upload("x", x().view()).unwrap(),
    );
    let h0 = Array3::<f32>::from_elem((1, B, 5), 0.25);
    let (ha, hb) = (
        a.upload("h0", h0.view()).unwrap(),
        b.upload("h0", h0.view()).unwrap(),
    );
    let input = |buf| OnDevice {
        buffer: buf,
        seq_len: T,
        batch: B,
    };
    assert_foreign(
        m.forward(input(xb.buffer()), ForwardOptions::default()),
        "x",
    );
    assert_foreign(
        m.forward(
            input(xa.buffer()),
            ForwardOptions::default().h0(hb.buffer()).keep_tape(),
        ),
        "h0",
    );
    // The context's own buffers still work, and give the host path's answer.
    let f = m
        .forward(
            input(xa.buffer()),
            ForwardOptions::default().h0(ha.buffer()),
        )
        .unwrap();
    let host = m
        .forward(x().view(), ForwardOptions::default().h0(h0.view()))
        .unwrap();
    let out = a
        .read_array(f.output.buffer(), ndarray::Ix3(T, B, 5))
        .unwrap();
    assert_eq!(out, host.output);
}

#[test]
fn the_backward_refuses_gradients_of_another_context() {
    let Some((a, b)) = two() else { return };
    let m = model(&a);
    let xa = a.upload("x", x().view()).unwrap();
    let input = OnDevice {
        buffer: xa.buffer(),
        seq_len: T,
        batch: B,
    };
    let go = Array3::<f32>::ones((T, B, 5));
    let gh = Array3::<f32>::ones((1, B, 5));
    let (goa, gob) = (
        a.upload("grad_output", go.view()).unwrap(),
        b.upload("grad_output", go.view()).unwrap(),
    );
    let (gha, ghb) = (
        a.upload("grad_h_n", gh.view()).unwrap(),
        b.upload("grad_h_n", gh.view()).unwrap(),
    );
    let keep = || ForwardOptions::default().keep_tape();
    let tape = || m.forward(input, keep()).unwrap().tape.unwrap();
    assert_foreign(
        m.backward(tape(), gob.buffer(), BackwardOptions::default()),
        "grad_output",
    );
    assert_foreign(
        m.backward(
            tape(),
            goa.buffer(),
            BackwardOptions::default().grad_h_n(ghb.buffer()),
        ),
        "grad_h_n",
    );
    m.backward(
        tape(),
        goa.buffer(),
        BackwardOptions::default().grad_h_n(gha.buffer()),
    )
    .unwrap();
}

#[test]
fn reading_back_refuses_a_buffer_of_another_context() {
    let Some((a, b)) = two() else { return };
    let data: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let (da, db) = (
        a.upload("data", &data).unwrap(),
        b.upload("data", &data).unwrap(),
    );
    assert_foreign(
        a.read_array(db.buffer(), ndarray::Ix1(12)),
        "the buffer read back",
    );
    assert_eq!(
        a.read_array(da.buffer(), ndarray::Ix1(12))
            .unwrap()
            .to_vec(),
        data
    );
    let m = model(&a);
    assert_foreign(m.read_stored(db.buffer(), 12), "the buffer read back");
    assert_eq!(m.read_stored(da.buffer(), 12).unwrap(), data);
}

#[test]
fn the_cell_refuses_buffers_of_another_context() {
    let Some((a, b)) = two() else { return };
    let mut cell = GpuGruCell::init(&a, 4, 5, true, 1).unwrap();
    let xs = vec![0.5f32; B * 4];
    let hs = vec![0.25f32; B * 5];
    let (xa, xb) = (a.upload("x", &xs).unwrap(), b.upload("x", &xs).unwrap());
    let (ha, hb) = (
        a.upload("h_prev", &hs).unwrap(),
        b.upload("h_prev", &hs).unwrap(),
    );
    assert_foreign(cell.forward(xb.buffer(), ha.buffer(), B), "x");
    assert_foreign(cell.forward(xa.buffer(), hb.buffer(), B), "h_prev");
    assert_eq!(cell.tape_len(), 0, "nothing pushed");
    cell.forward(xa.buffer(), ha.buffer(), B).unwrap();
    let (da, db) = (
        a.upload("dh_next", &hs).unwrap(),
        b.upload("dh_next", &hs).unwrap(),
    );
    assert_foreign(cell.backward(db.buffer()), "dh_next");
    assert_eq!(cell.tape_len(), 1, "the step stays on the tape");
    cell.backward(da.buffer()).unwrap();
}

#[test]
fn the_stream_refuses_a_chunk_of_another_context() {
    let Some((a, b)) = two() else { return };
    let m = model(&a);
    let mut stream = GpuStream::new(&m, B).unwrap();
    let xb = b.upload("x", x().view()).unwrap();
    let chunk = OnDevice {
        buffer: xb.buffer(),
        seq_len: T,
        batch: B,
    };
    assert_foreign(stream.push_device(chunk), "x");
    assert_eq!(stream.frames_seen(), 0);
    let xa = a.upload("x", x().view()).unwrap();
    stream
        .push_device(OnDevice {
            buffer: xa.buffer(),
            ..chunk
        })
        .unwrap();
}

#[test]
fn the_head_the_optimiser_and_clipping_refuse_buffers_of_another_context() {
    let Some((a, b)) = two() else { return };
    let head = GpuLinearHead::new(&a, 5, &[0.1; 6]).unwrap();
    let hs = vec![0.5f32; B * 5];
    let ts = vec![1.0f32; B];
    let (ha, hb) = (a.upload("h", &hs).unwrap(), b.upload("h", &hs).unwrap());
    let (ta, tb) = (
        a.upload("targets", &ts).unwrap(),
        b.upload("targets", &ts).unwrap(),
    );
    assert_foreign(head.step(hb.buffer(), ta.buffer(), B), "h");
    assert_foreign(head.step(ha.buffer(), tb.buffer(), B), "targets");
    let step = head.step(ha.buffer(), ta.buffer(), B).unwrap();
    // An optimiser of the other context, on this context's head.
    let mut opt_b = GpuOptimizer::new(&b, Sgd::new(0.1));
    assert_foreign(head.update(&mut opt_b, &step), "parameter 0");
    let mut opt = GpuOptimizer::new(&a, Sgd::new(0.1));
    let gb = b.upload("gradient", &[0.5; 6]).unwrap();
    assert_foreign(
        opt.step(&[head.param_buffer()], &[gb.buffer()], &[6]),
        "gradient 0",
    );
    head.update(&mut opt, &step).unwrap();
    assert_foreign(clip_grad_norm(&a, &[gb.buffer()], &[6], 1.0), "gradient 0");
    let norm = clip_grad_norm(&a, &[step.grad_params.buffer()], &[6], 1.0).unwrap();
    assert_foreign(norm.read(&b), "the gradient norm");
    assert!(norm.read(&a).unwrap().is_finite());
}

#[test]
fn a_models_update_refuses_gradients_or_an_optimiser_of_another_context() {
    let Some((a, b)) = two() else { return };
    let (ma, mb) = (model(&a), model(&b));
    let grads = |m: &GpuGru, ctx: &GpuContext| {
        let xb = ctx.upload("x", x().view()).unwrap();
        let input = OnDevice {
            buffer: xb.buffer(),
            seq_len: T,
            batch: B,
        };
        let f = m
            .forward(input, ForwardOptions::default().keep_tape())
            .unwrap();
        let go = ctx
            .upload("grad_output", Array3::<f32>::ones((T, B, 5)).view())
            .unwrap();
        m.backward(f.tape.unwrap(), go.buffer(), BackwardOptions::default())
            .unwrap()
    };
    let (ga, gb) = (grads(&ma, &a), grads(&mb, &b));
    let before = ma.params_version();
    let mut opt = GpuOptimizer::new(&a, Sgd::new(0.1));
    assert_foreign(ma.update(&mut opt, &gb), "gradient 0");
    let mut opt_b = GpuOptimizer::new(&b, Sgd::new(0.1));
    assert_foreign(ma.update(&mut opt_b, &ga), "the optimiser state");
    assert_eq!(ma.params_version(), before, "nothing changed");
    ma.update(&mut opt, &ga).unwrap();
}

/// A buffer the caller makes on a device: `STORAGE | COPY_SRC | COPY_DST`.
fn user_buffer(device: &wgpu::Device, floats: usize) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("the caller's buffer"),
        size: (floats * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

#[test]
fn buffers_the_caller_made_are_taken_on_their_own_device_only() {
    let Some((a, b)) = two() else { return };
    let m = model(&a);
    let data: Vec<f32> = x().iter().copied().collect();
    let (ua, ub) = (
        user_buffer(a.device(), data.len()),
        user_buffer(b.device(), data.len()),
    );
    a.queue().write_buffer(&ua, 0, bytemuck::cast_slice(&data));
    b.queue().write_buffer(&ub, 0, bytemuck::cast_slice(&data));
    let input = |buf| OnDevice {
        buffer: buf,
        seq_len: T,
        batch: B,
    };
    let f = m.forward(input(&ua), ForwardOptions::default()).unwrap();
    let host = m.forward(x().view(), ForwardOptions::default()).unwrap();
    let out = a
        .read_array(f.output.buffer(), ndarray::Ix3(T, B, 5))
        .unwrap();
    assert_eq!(out, host.output);
    assert_eq!(
        a.read_array(&ua, ndarray::Ix1(data.len()))
            .unwrap()
            .to_vec(),
        data
    );
    assert_foreign(m.forward(input(&ub), ForwardOptions::default()), "x");
    assert_foreign(
        a.read_array(&ub, ndarray::Ix1(data.len())),
        "the buffer read back",
    );
    // A clone of the crate's buffer is the same buffer.
    let xa = a.upload("x", x().view()).unwrap();
    let xb = b.upload("x", x().view()).unwrap();
    let (ca, cb) = (xa.buffer().clone(), xb.buffer().clone());
    m.forward(input(&ca), ForwardOptions::default()).unwrap();
    assert_foreign(m.forward(input(&cb), ForwardOptions::default()), "x");
    // And one taken out of the pool's care.
    let owned = b.upload("x", x().view()).unwrap().into_inner();
    assert_foreign(m.forward(input(&owned), ForwardOptions::default()), "x");
}

/// A context on a device of a wgpu instance of the caller's own: the
/// crate's buffers are told apart across instances too.
#[test]
fn buffers_of_a_context_on_another_instance_are_refused() {
    let Some(a) = common::gpu() else { return };
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        force_fallback_adapter: false,
        compatible_surface: None,
        apply_limit_buckets: false,
    }))
    .unwrap();
    let desc = wgpu::DeviceDescriptor {
        label: Some("the caller's device"),
        required_features: wgpu::Features::empty(),
        required_limits: adapter.limits(),
        experimental_features: wgpu::ExperimentalFeatures::disabled(),
        memory_hints: wgpu::MemoryHints::Performance,
        trace: wgpu::Trace::Off,
    };
    let (device, queue) = pollster::block_on(adapter.request_device(&desc)).unwrap();
    let c = GpuContext::from_device(device, queue, ContextOptions::default()).unwrap();
    let (ma, mc) = (model(&a), model(&c));
    let (xa, xc) = (
        a.upload("x", x().view()).unwrap(),
        c.upload("x", x().view()).unwrap(),
    );
    let input = |buf| OnDevice {
        buffer: buf,
        seq_len: T,
        batch: B,
    };
    assert_foreign(
        ma.forward(input(xc.buffer()), ForwardOptions::default()),
        "x",
    );
    assert_foreign(
        mc.forward(input(xa.buffer()), ForwardOptions::default()),
        "x",
    );
    assert_foreign(
        c.read_array(xa.buffer(), ndarray::Ix1(T * B * 4)),
        "the buffer read back",
    );
    let fa = ma
        .forward(input(xa.buffer()), ForwardOptions::default())
        .unwrap();
    let fc = mc
        .forward(input(xc.buffer()), ForwardOptions::default())
        .unwrap();
    let oa = a.read_array(fa.output.buffer(), ndarray::Ix1(T * B * 5));
    let oc = c.read_array(fc.output.buffer(), ndarray::Ix1(T * B * 5));
    assert_eq!(oa.unwrap(), oc.unwrap());
}
