//! Work larger than a device limit allows: split into pieces where it can be
//! (workgroups per dimension), refused up front with the size asked for and
//! the limit otherwise (buffer sizes). The device is opened with limits
//! lowered on purpose, so that the splitting paths run on small data.

mod common;

use common::check::RandomCase;
use gru_wgpu::gpu::{ContextOptions, ForwardOptions, GpuContext, GpuGru, OnDevice, Products};
use gru_wgpu::{GruConfig, GruError};

/// The slack that buffers get on the window path (64 KiB), and in whose
/// sizes the checks count it.
const WINDOW_SLACK: u64 = 65536;

fn lowered(products: Products, f: impl FnOnce(&mut wgpu::Limits)) -> Option<GpuContext> {
    if !common::can_run(products) {
        return None;
    }
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
            continue;
        };
        assert_eq!(ctx.limits().max_compute_workgroups_per_dimension, 2);
        // H = 130: 3 groups of 64 units; B = 9: 3 groups of 4 rows, 3 persistent
        // slices; T·B = 81 GEMM rows: 3 tiles of 32; 1-D kernels of thousands of
        // elements; window products of more than 2 x 2 groups.
        let config = GruConfig::new(20, 130).layers(2).bidirectional(true);
        let case = RandomCase::new(config, 9, 9, true, 61).unwrap();
        for r in common::check::coverage_plans(&ctx) {
            let label = format!("{products:?} {r}");
            if !common::applies(&ctx, &case.config, case.batch, r, &label) {
                continue;
            }
            let worst = common::check_with(&ctx, &case, None, Some(r), 1e-5);
            println!("{label}: worst relative error {worst:.3e}");
        }
    }
}

#[test]
fn buffers_larger_than_the_device_allows_are_refused_with_the_sizes() {
    // The window path where the adapter can run it (its buffers' slack
    // counts in the sizes), else the storage path.
    let products = if common::can_run(Products::Windows) {
        Products::Windows
    } else {
        Products::Storage
    };
    let Some(ctx) = lowered(products, |l| {
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
        .forward(x.view(), ForwardOptions::default().keep_tape())
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
    // The gates of every step, D·T·B·4H floats, plus the 64 KiB of slack
    // that buffers get on the window path; the first limit they exceed.
    let slack = if products == Products::Windows {
        WINDOW_SLACK
    } else {
        0
    };
    let gates = 200 * 16 * 4 * 64 * 4 + slack;
    assert_eq!(
        msg,
        format!(
            "the gates on the tape (D·T·B·4H) needs {gates} bytes but the device allows at most {} (max_buffer_size)",
            1 << 21
        )
    );
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
    // A call that fits first, so that the statistics of the last call are not
    // those of a fresh model.
    let small = ndarray::Array3::<f32>::zeros((3, 2, 16));
    model
        .forward(small.view(), ForwardOptions::default())
        .unwrap();
    let before = model.last_call_stats();
    assert!(
        before.dispatches > 0 && before.submissions == 1,
        "{before:?}"
    );
    ctx.synchronize().unwrap();
    let pooled = ctx.pooled_bytes();
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
        .forward(big, ForwardOptions::default().keep_tape())
        .unwrap_err();
    assert!(matches!(e, GruError::LimitExceeded { .. }), "{e:?}");
    let msg = e.to_string();
    // With the window slack where that path is in use.
    let slack = if ctx.products() == Products::Windows {
        WINDOW_SLACK
    } else {
        0
    };
    let gates: u64 = 10_000 * 64 * 4 * 512 * 4 + slack;
    assert!(
        msg.starts_with(&format!(
            "the gates on the tape (D·T·B·4H) needs {gates} bytes but the device allows at most"
        )),
        "{msg}"
    );
    // Nothing was recorded or submitted (the last call's statistics are still
    // those of the small call), and no buffer was taken from the pool.
    assert_eq!(model.last_call_stats(), before);
    assert_eq!(ctx.pooled_bytes(), pooled);
}
