//! Bring your own device: a context on a wgpu device and queue that the
//! caller made (here the test itself), the crate's upload and read-back
//! helpers on it, and a device that lacks a limit the kernels need refused
//! with the limit named.

mod common;

use gru_wgpu::gpu::{ContextOptions, ForwardOptions, GpuContext, GpuGru, OnDevice};
use gru_wgpu::{GruConfig, GruError, GruParams};

/// A device and queue opened by the caller, with `limits` (the adapter's own
/// where `None`).
fn own_device(limits: Option<wgpu::Limits>) -> Option<(wgpu::Device, wgpu::Queue)> {
    common::gpu()?;
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        force_fallback_adapter: false,
        compatible_surface: None,
        apply_limit_buckets: false,
    }))
    .ok()?;
    let limits = limits.unwrap_or_else(|| adapter.limits());
    let desc = wgpu::DeviceDescriptor {
        label: Some("the caller's device"),
        required_features: wgpu::Features::empty(),
        required_limits: limits,
        experimental_features: wgpu::ExperimentalFeatures::disabled(),
        memory_hints: wgpu::MemoryHints::Performance,
        trace: wgpu::Trace::Off,
    };
    Some(pollster::block_on(adapter.request_device(&desc)).unwrap())
}

#[test]
fn a_context_on_the_callers_device_runs_the_gru() {
    let Some((device, queue)) = own_device(None) else {
        return;
    };
    let ctx =
        GpuContext::from_device(device.clone(), queue.clone(), ContextOptions::default()).unwrap();
    // Right answers on it, against the f64 CPU reference.
    let config = GruConfig::new(5, 9).layers(2).bidirectional(true);
    let case = common::case(config.clone(), 6, 3, true, 21);
    common::check(&ctx, &case, None, 1e-5);
    // The upload and read-back helpers: the device path agrees with the host path.
    let model = GpuGru::new(&ctx, &GruParams::init(&config, 4).unwrap()).unwrap();
    let x = common::random((6, 3, 5), 1.0, &mut common::rng(2)).mapv(|v| v as f32);
    let host = model.forward(x.view(), ForwardOptions::default()).unwrap();
    let xb = ctx.upload("x", x.view()).unwrap();
    let input = OnDevice {
        buffer: xb.buffer(),
        seq_len: 6,
        batch: 3,
    };
    let f = model.forward(input, ForwardOptions::default()).unwrap();
    let out = ctx
        .read_array(f.output.buffer(), ndarray::Ix3(6, 3, 18))
        .unwrap();
    assert_eq!(out, host.output);
    let h_n = ctx
        .read_array(f.h_n.buffer(), ndarray::Ix3(4, 3, 9))
        .unwrap();
    assert_eq!(h_n, host.h_n);
    // Reading more than the buffer holds is an error, not a panic.
    let e = ctx
        .read_array(f.h_n.buffer(), ndarray::Ix3(5, 3, 9))
        .unwrap_err();
    assert!(matches!(e, GruError::LengthMismatch { .. }), "{e:?}");
    // The caller's device is still the caller's: it runs its own work.
    let mine = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("the caller's buffer"),
        size: 16,
        usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    queue.write_buffer(&mine, 0, bytemuck::cast_slice(&[1.0f32, 2.0, 3.0, 4.0]));
    assert_eq!(
        ctx.read_array(&mine, ndarray::Ix1(4)).unwrap().to_vec(),
        [1.0, 2.0, 3.0, 4.0]
    );
}

#[test]
fn a_device_without_the_limits_the_kernels_need_is_refused_with_the_limit_named() {
    let Some((probe, _)) = own_device(None) else {
        return;
    };
    let limits = wgpu::Limits {
        max_storage_buffers_per_shader_stage: 4,
        ..probe.limits()
    };
    drop(probe);
    let (device, queue) = own_device(Some(limits)).unwrap();
    let e = GpuContext::from_device(device, queue, ContextOptions::default()).unwrap_err();
    assert!(matches!(e, GruError::RequestDevice(_)), "{e:?}");
    assert!(
        e.to_string()
            .contains("max_storage_buffers_per_shader_stage: has 4, needs at least 8"),
        "{e}"
    );
}

/// A device opened without `SHADER_F16` refuses a model in f16 with an
/// error that names the feature (never a silent fall back to f32).
#[test]
fn an_f16_model_needs_shader_f16() {
    let Some((device, queue)) = own_device(None) else {
        return;
    };
    let ctx = GpuContext::from_device(device, queue, ContextOptions::default()).unwrap();
    assert!(!ctx.features().contains(wgpu::Features::SHADER_F16));
    let config = GruConfig::new(3, 4).precision(gru_wgpu::Precision::F16);
    let p = GruParams::<f32>::init(&config, 1).unwrap();
    let e = GpuGru::new(&ctx, &p).unwrap_err();
    assert!(
        matches!(
            e,
            GruError::MissingFeature {
                feature: "SHADER_F16",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("SHADER_F16"), "{e}");
    // f32 runs there.
    let p = GruParams::<f32>::init(&GruConfig::new(3, 4), 1).unwrap();
    GpuGru::new(&ctx, &p).unwrap();
}
