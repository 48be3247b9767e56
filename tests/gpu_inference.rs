//! Inference without a tape: an evaluation forward that is not asked for its
//! tape writes no gates and keeps nothing but its output and states; its
//! results are those of a forward that keeps the tape, bit for bit.

mod common;

use gru_wgpu::gpu::{
    BackwardOptions, ContextOptions, ForwardOptions, GpuContext, GpuGru, OnDevice, Products,
};
use gru_wgpu::{GruConfig, GruParams};

fn model(ctx: &GpuContext, r: &str) -> (GruConfig, GpuGru) {
    let config = GruConfig::new(6, 20).layers(2).bidirectional(true);
    let m = GpuGru::new(ctx, &GruParams::init(&config, 5).unwrap()).unwrap();
    m.set_plan(Some(ctx.plan_named(r).unwrap()));
    (config, m)
}

fn model_plan(ctx: &GpuContext, r: gru_wgpu::gpu::Plan) -> GpuGru {
    let config = GruConfig::new(6, 20).layers(2).bidirectional(true);
    let m = GpuGru::new(ctx, &GruParams::init(&config, 5).unwrap()).unwrap();
    m.set_plan(Some(r));
    m
}

#[test]
fn an_evaluation_forward_keeps_no_tape_and_gives_the_same_numbers() {
    let mut rng = common::rng(4);
    let h0 = common::random((4, 3, 20), 1.0, &mut rng).mapv(|v| v as f32);
    // Sequences of one, two and an odd number of steps (the states of an
    // evaluation forward are a ring of two slots).
    for t in [1, 2, 7] {
        let x = common::random((t, 3, 6), 1.0, &mut rng).mapv(|v| v as f32);
        for (label, ctx, r) in common::gpu_paths() {
            let label = format!("{label}, T = {t}");
            let m = model_plan(&ctx, r);
            if let Err(why) = m.check_plan(r, 3) {
                eprintln!("not run: {label}: {why}");
                continue;
            }
            let opts = || ForwardOptions::default().h0(h0.view());
            let eval = m.forward(x.view(), opts()).unwrap();
            assert!(eval.tape.is_none(), "{label}: no tape unless asked");
            let taped = m.forward(x.view(), opts().keep_tape()).unwrap();
            assert_eq!(eval.output, taped.output, "{label}");
            assert_eq!(eval.h_n, taped.h_n, "{label}");
            // The kept tape serves a backward.
            let go = taped.output.clone();
            m.backward(taped.tape.unwrap(), go.view(), BackwardOptions::default())
                .unwrap();
            // Training keeps the tape without being asked.
            assert!(m.forward(x.view(), opts().train(3)).unwrap().tape.is_some());
        }
    }
}

/// Bytes of device buffers that one forward on device buffers takes: the
/// pool is emptied first, and every buffer goes back to it afterwards.
fn bytes_of_a_forward(ctx: &GpuContext, m: &GpuGru, x: &wgpu::Buffer, keep: bool) -> (u64, u64) {
    ctx.synchronize().unwrap();
    ctx.trim_pool();
    let input = OnDevice {
        buffer: x,
        seq_len: 7,
        batch: 3,
    };
    let opts = match keep {
        true => ForwardOptions::default().keep_tape(),
        false => ForwardOptions::default(),
    };
    let f = m.forward(input, opts).unwrap();
    assert_eq!(f.tape.is_some(), keep);
    ctx.synchronize().unwrap();
    // What the call leaves the caller: the output and h_n (and the tape).
    let held = ((f.output.len() + f.h_n.len()) * 4) as u64;
    drop(f);
    (ctx.pooled_bytes(), held)
}

/// Contexts of this test alone (the pool of a shared one sees other tests'
/// buffers), with each family of products, and each time loop.
fn own_paths() -> Vec<(String, GpuContext, &'static str)> {
    if common::gpu().is_none() {
        return vec![];
    }
    let mut out = Vec::new();
    for products in [Products::Storage, Products::Windows] {
        if !common::can_run(products) {
            continue;
        }
        let ctx = GpuContext::with_options(ContextOptions {
            products: Some(products),
            ..Default::default()
        })
        .unwrap();
        for r in ["per-step", "persistent"] {
            out.push((format!("{products:?} products, {r:?}"), ctx.clone(), r));
        }
    }
    out
}

#[test]
fn an_evaluation_forward_takes_the_memory_of_its_output_and_states_only() {
    for (label, ctx, r) in own_paths() {
        let (config, m) = model(&ctx, r);
        let x = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("x"),
            size: 7 * 3 * 6 * 4,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let (eval, eval_held) = bytes_of_a_forward(&ctx, &m, &x, false);
        let (taped, taped_held) = bytes_of_a_forward(&ctx, &m, &x, true);
        // The output (T, B, D·H) and h_n (L·D, B, H), nothing else, stay with the caller.
        assert_eq!(eval_held, ((7 * 3 * 40) + (4 * 3 * 20)) * 4, "{label}");
        assert_eq!(eval_held, taped_held, "{label}");
        // The whole call takes less by exactly the gates of every layer (D, T, B, 4H)
        // and all but two of its T + 1 states (D, T + 1, B, H): the tape
        // (each buffer of its size class in the pool).
        let class = |floats: usize| ctx.pool_size_class((floats * 4) as u64);
        let layers = config.num_layers as u64;
        let gates = layers * class(2 * 7 * 3 * 4 * 20);
        let states = layers * (class(2 * 8 * 3 * 20) - class(2 * 2 * 3 * 20));
        assert_eq!(
            taped - eval,
            gates + states,
            "{label}: {taped} bytes with the tape, {eval} without"
        );
    }
}
