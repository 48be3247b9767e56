//! Work larger than a device limit allows: split into pieces where it can be
//! (workgroups per dimension), refused up front with the size asked for and
//! the limit otherwise (buffer sizes). The device is opened with limits
//! lowered on purpose, so that the splitting paths run on small data.

mod common;

use gru_wgpu::check::RandomCase;
use gru_wgpu::gpu::{
    ContextOptions, ForwardOptions, GpuContext, GpuGru, OnDevice, Products, Recurrence,
};
use gru_wgpu::{GruConfig, GruError};

fn lowered(products: Products, f: impl FnOnce(&mut wgpu::Limits)) -> Option<GpuContext> {
    let base = common::gpu()?;
    let mut limits = base.limits().clone();
    f(&mut limits);
    Some(
        GpuContext::with_options(ContextOptions {
            limits: Some(limits),
            products: Some(products),
            poison_buffers: true,
            ..Default::default()
        })
        .unwrap(),
    )
}

#[test]
fn grids_larger_than_the_device_allows_run_in_pieces() {
    for products in [Products::Storage, Products::Windows] {
        // At most 2 workgroups per dimension: every grid below is larger.
        let Some(ctx) = lowered(products, |l| l.max_compute_workgroups_per_dimension = 2) else {
            return;
        };
        assert_eq!(ctx.limits().max_compute_workgroups_per_dimension, 2);
        // H = 130: 3 groups of 64 units; B = 9: 3 groups of 4 rows, 3 persistent
        // slices; T·B = 81 GEMM rows: 3 tiles of 32; 1-D kernels of thousands of
        // elements; window products of more than 2 x 2 groups.
        let config = GruConfig::new(20, 130).layers(2).bidirectional(true);
        let case = RandomCase::new(config, 9, 9, true, 61).unwrap();
        for r in [Recurrence::PerStep, Recurrence::Persistent] {
            let worst = common::check_with(&ctx, &case, None, r, 1e-5);
            println!("{products:?} {r:?}: worst relative error {worst:.3e}");
        }
    }
}

#[test]
fn buffers_larger_than_the_device_allows_are_refused_with_the_sizes() {
    let Some(ctx) = lowered(Products::Windows, |l| {
        l.max_storage_buffer_binding_size = 1 << 20;
        l.max_buffer_size = 1 << 21;
    }) else {
        return;
    };
    let config = GruConfig::new(8, 64);
    let model = GpuGru::new(&ctx, &gru_wgpu::GruParams::init(&config, 1).unwrap()).unwrap();
    // The gates of T = 200, B = 16, H = 64: 200·16·4·64 floats, 3.3 MB.
    let x = ndarray::Array3::<f32>::zeros((200, 16, 8));
    let e = model
        .forward(x.view(), ForwardOptions::new().keep_tape())
        .unwrap_err();
    match &e {
        GruError::LimitExceeded {
            requested,
            limit,
            limit_name,
            ..
        } => {
            assert!(requested > limit, "{e}");
            assert!(
                *limit_name == "max_buffer_size"
                    || *limit_name == "max_storage_buffer_binding_size",
                "{e}"
            );
        }
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
    let msg = e.to_string();
    assert_eq!(msg, "the gates on the tape (D·T·B·4H) needs 3342336 bytes but the device allows at most 2097152 (max_buffer_size)");
    // The context stays usable: a call that fits still works, and is right.
    let case = RandomCase::new(config, 5, 3, true, 62).unwrap();
    common::check(&ctx, &case, None, 1e-5);
}

#[test]
fn a_tape_of_several_gigabytes_is_refused_before_any_work() {
    let Some(ctx) = common::gpu() else { return };
    // T = 10,000, B = 64, H = 512: the gates alone are 10,000·64·4·512 floats, 5.2 GB.
    let config = GruConfig::new(16, 512);
    let model = GpuGru::new(&ctx, &gru_wgpu::GruParams::init(&config, 1).unwrap()).unwrap();
    let x = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 10_000 * 64 * 16 * 4,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let big = OnDevice {
        buffer: &x,
        seq_len: 10_000,
        batch: 64,
    };
    let e = model
        .forward(big, ForwardOptions::new().keep_tape())
        .unwrap_err();
    assert!(matches!(e, GruError::LimitExceeded { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(
            "the gates on the tape (D·T·B·4H) needs 5242945536 bytes but the device allows at most"
        ),
        "{msg}"
    );
    assert!(
        model.last_call_stats().dispatches == 0,
        "nothing was recorded"
    );
}
