//! The GPU API around the kernels: adapter choice, limits, device buffers in
//! and out, tapes.

mod common;

use gru_wgpu::gpu::{
    BackwardOptions, ContextOptions, FlatInput, ForwardOptions, GpuContext, GpuGru, OnDevice,
};

fn on_device(buffer: &wgpu::Buffer, seq_len: usize, batch: usize) -> OnDevice<'_> {
    OnDevice {
        buffer,
        seq_len,
        batch,
    }
}

fn flat(data: &[f32], seq_len: usize, batch: usize) -> FlatInput<'_> {
    FlatInput {
        data,
        seq_len,
        batch,
    }
}
use gru_wgpu::{GruConfig, GruError};
use wgpu::util::DeviceExt;

#[test]
fn adapter_by_name_or_backend_and_its_own_limits() {
    let Some(ctx) = common::gpu() else { return };
    let name = ctx.adapter().name.clone();
    let word = name.split_whitespace().next().unwrap().to_uppercase();
    let by_name = GpuContext::with_options(ContextOptions {
        adapter: Some(word),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(by_name.adapter().name, name);
    let by_backend = GpuContext::with_options(ContextOptions {
        adapter: Some(ctx.adapter().backend_name().to_string()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(by_backend.adapter().backend, ctx.adapter().backend);

    // The device gets the adapter's own limits, not wgpu's defaults.
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    let adapter = adapters.iter().find(|a| a.get_info().name == name).unwrap();
    assert_eq!(by_name.limits(), &adapter.limits());

    let e = GpuContext::with_options(ContextOptions {
        adapter: Some("no-such-adapter-anywhere".into()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(e, GruError::NoAdapter(_)), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("none matches `no-such-adapter-anywhere`"),
        "{msg}"
    );
    assert!(
        msg.contains(&name),
        "the message lists the adapters found: {msg}"
    );
}

fn upload(ctx: &GpuContext, data: &[f32]) -> wgpu::Buffer {
    ctx.device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("test input"),
            contents: bytemuck::cast_slice(data),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        })
}

use common::download as download_n;

#[test]
fn device_buffers_in_and_out_match_the_array_api() {
    let Some(ctx) = common::gpu() else { return };
    let case = common::case(
        GruConfig::new(7, 12)
            .layers(2)
            .bidirectional(true)
            .batch_first(true),
        6,
        3,
        true,
        9,
    );
    let model = GpuGru::new(&ctx, &case.params).unwrap();
    let (o, hn, tape) = model
        .forward(
            case.x.view(),
            ForwardOptions::default()
                .h0(case.h0.as_ref().map(|h| h.view()))
                .keep_tape(),
        )
        .unwrap()
        .into_parts();
    let g = model
        .backward(
            tape.unwrap(),
            case.grad_output.view(),
            BackwardOptions::default().grad_h_n(case.grad_h_n.view()),
        )
        .unwrap();

    let xb = upload(&ctx, case.x.as_slice().unwrap());
    let h0b = upload(&ctx, case.h0.as_ref().unwrap().as_slice().unwrap());
    let f = model
        .forward(
            on_device(&xb, 6, 3),
            ForwardOptions::default().h0(&h0b).keep_tape(),
        )
        .unwrap();
    assert_eq!(
        download_n(&ctx, f.output.buffer(), o.len()),
        o.as_slice().unwrap()
    );
    assert_eq!(
        download_n(&ctx, f.h_n.buffer(), hn.len()),
        hn.as_slice().unwrap()
    );
    let gob = upload(&ctx, case.grad_output.as_slice().unwrap());
    let ghb = upload(&ctx, case.grad_h_n.as_slice().unwrap());
    let b = model
        .backward(
            f.tape.unwrap(),
            &gob,
            BackwardOptions::default().grad_h_n(&ghb),
        )
        .unwrap();
    assert_eq!(
        (f.output.len(), b.grad_x.len()),
        (o.len(), g.x.len()),
        "len() is the data's length"
    );
    assert_eq!(
        download_n(&ctx, b.grad_x.buffer(), g.x.len()),
        g.x.as_slice().unwrap()
    );
    assert_eq!(
        download_n(&ctx, b.grad_h0.buffer(), g.h0.len()),
        g.h0.as_slice().unwrap()
    );
    // Parameter gradients on the device: both directions stacked per layer.
    for (l, lg) in b.grads.iter().enumerate() {
        let mut expect: Vec<f32> = Vec::new();
        for d in 0..2 {
            expect.extend(g.params.dir(l, d).unwrap().weight_ih.iter());
        }
        assert_eq!(
            download_n(&ctx, lg.w_ih.buffer(), expect.len()),
            expect,
            "layer {l}"
        );
        let mut expect: Vec<f32> = Vec::new();
        for d in 0..2 {
            expect.extend(g.params.dir(l, d).unwrap().bias_hh.as_ref().unwrap().iter());
        }
        assert_eq!(
            download_n(&ctx, lg.b_hh.as_ref().unwrap().buffer(), expect.len()),
            expect,
            "layer {l}"
        );
    }
}

#[test]
fn parameters_round_trip_through_the_device() {
    let Some(ctx) = common::gpu() else { return };
    let cfg = GruConfig::new(5, 9).layers(2).bidirectional(true);
    let p = gru_wgpu::GruParams::<f32>::init(&cfg, 3).unwrap();
    let model = GpuGru::new(&ctx, &p).unwrap();
    assert_eq!(model.params().unwrap(), p);
    let cfg2 = GruConfig::new(5, 9).bias(false);
    let p2 = gru_wgpu::GruParams::<f32>::init(&cfg2, 3).unwrap();
    assert_eq!(GpuGru::new(&ctx, &p2).unwrap().params().unwrap(), p2);
}

#[test]
fn buffers_too_small_or_without_copy_src_are_refused() {
    let Some(ctx) = common::gpu() else { return };
    let cfg = GruConfig::new(4, 6);
    let model = GpuGru::new(&ctx, &gru_wgpu::GruParams::init(&cfg, 1).unwrap()).unwrap();
    let small = upload(&ctx, &[0.0; 10]);
    let e = model
        .forward(on_device(&small, 3, 2), ForwardOptions::default())
        .unwrap_err();
    assert!(matches!(e, GruError::LengthMismatch { .. }), "{e:?}");
    assert_eq!(e.to_string(), "`x`: expected 96 bytes (at least), got 40");
    let no_copy = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 96,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let e = model
        .forward(on_device(&no_copy, 3, 2), ForwardOptions::default())
        .unwrap_err();
    assert!(e.to_string().contains("COPY_SRC"), "{e}");
}

#[test]
fn a_tape_of_another_model_is_refused() {
    let Some(ctx) = common::gpu() else { return };
    let cfg = GruConfig::new(4, 6);
    let p = gru_wgpu::GruParams::init(&cfg, 1).unwrap();
    let a = GpuGru::new(&ctx, &p).unwrap();
    let b = GpuGru::new(&ctx, &p).unwrap();
    let x = ndarray::Array3::<f32>::zeros((3, 2, 4));
    let (_, _, tape) = a
        .forward(x.view(), ForwardOptions::default().keep_tape())
        .unwrap()
        .into_parts();
    let go = ndarray::Array3::<f32>::zeros((3, 2, 6));
    let e = b
        .backward(tape.unwrap(), go.view(), BackwardOptions::default())
        .unwrap_err();
    assert!(matches!(e, GruError::Tape(_)), "{e:?}");
    assert!(e.to_string().contains("another model"), "{e}");
}

#[test]
fn slices_of_the_wrong_length_are_refused() {
    let Some(ctx) = common::gpu() else { return };
    let cfg = GruConfig::new(4, 6).layers(2);
    let model = GpuGru::new(&ctx, &gru_wgpu::GruParams::init(&cfg, 1).unwrap()).unwrap();
    let e = model
        .forward(flat(&[0.0; 23], 3, 2), ForwardOptions::default())
        .unwrap_err();
    assert!(matches!(e, GruError::LengthMismatch { .. }), "{e:?}");
    assert_eq!(e.to_string(), "`x`: expected 24 floats, got 23");
    let e = model
        .forward(
            flat(&[0.0; 24], 3, 2),
            ForwardOptions::default().h0(&[0.0; 5][..]),
        )
        .unwrap_err();
    assert_eq!(e.to_string(), "`h0`: expected 24 floats, got 5");
    let (out, _, tape) = model
        .forward(
            flat(&[0.5; 24], 3, 2),
            ForwardOptions::default().h0(&[0.1; 24][..]).keep_tape(),
        )
        .unwrap()
        .into_parts();
    assert_eq!(out.shape(), &[3, 2, 6]);
    let e = model
        .backward(tape.unwrap(), &[0.0; 35][..], BackwardOptions::default())
        .unwrap_err();
    assert_eq!(e.to_string(), "`grad_output`: expected 36 floats, got 35");
    let e = model
        .forward(flat(&[], 0, 2), ForwardOptions::default())
        .unwrap_err();
    assert!(matches!(e, GruError::ZeroSize { dim: "T", .. }), "{e:?}");
}
