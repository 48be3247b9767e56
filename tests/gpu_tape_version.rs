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
    let keep = || ForwardOptions::default().keep_tape();
    let tape = m.forward(x.view(), keep()).unwrap().tape.unwrap();
    let before = m.params_version();
    let p = m.params().unwrap();
    m.set_params(&p).unwrap();
    assert_ne!(m.params_version(), before);
    assert_stale(
        m.backward(tape, go.view(), BackwardOptions::default())
            .unwrap_err(),
    );
    // A forward after the change makes a tape that works.
    let tape = m.forward(x.view(), keep()).unwrap().tape.unwrap();
    m.backward(tape, go.view(), BackwardOptions::default())
        .unwrap();
}

#[test]
fn an_update_between_forward_and_backward_is_refused() {
    let Some(ctx) = common::gpu() else { return };
    let m = model(&ctx);
    let mut opt = GpuOptimizer::new(&ctx, Sgd::new(0.1));
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
    let keep = || ForwardOptions::default().keep_tape();
    let f = m.forward(input, keep()).unwrap();
    let g = m
        .backward(f.tape.unwrap(), &go, BackwardOptions::default())
        .unwrap();
    let f2 = m.forward(input, keep()).unwrap();
    m.update(&mut opt, &g).unwrap();
    let e = m.backward(f2.tape.unwrap(), &go, BackwardOptions::default());
    assert_stale(e.unwrap_err());
}

#[test]
fn a_cell_update_between_forward_and_backward_is_refused() {
    let Some(ctx) = common::gpu() else { return };
    let mut cell = GpuGruCell::init(&ctx, 3, 4, true, 9).unwrap();
    let mut opt = GpuOptimizer::new(&ctx, Sgd::new(0.1));
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

/// Parameters whose every value is a multiple of 1/256, so that an SGD step
/// of ±1/16 (lr 0.5, gradients ±1/8) moves between two exact weight sets.
fn exact_params(config: &GruConfig) -> GruParams<f32> {
    let mut p = GruParams::init(config, 11).unwrap();
    for l in 0..config.num_layers {
        for d in 0..config.num_directions() {
            let dp = p.dir_mut(l, d).unwrap();
            let q = |v: &mut f32| *v = (*v * 256.0).round() / 256.0;
            dp.weight_ih.iter_mut().for_each(q);
            dp.weight_hh.iter_mut().for_each(q);
            dp.bias_ih.iter_mut().flat_map(|b| b.iter_mut()).for_each(q);
            dp.bias_hh.iter_mut().flat_map(|b| b.iter_mut()).for_each(q);
        }
    }
    p
}

/// A backward's device gradients overwritten with `value` everywhere: what
/// the updating thread steps with.
fn constant_grads(
    ctx: &gru_wgpu::gpu::GpuContext,
    m: &GpuGru,
    x: &Array3<f32>,
    go: &Array3<f32>,
    value: f32,
) -> gru_wgpu::gpu::GpuBackward {
    let xb = ctx.upload("x", x.view()).unwrap();
    let gb = ctx.upload("grad_output", go.view()).unwrap();
    let (t, b) = (x.shape()[0], x.shape()[1]);
    let input = OnDevice {
        buffer: xb.buffer(),
        seq_len: t,
        batch: b,
    };
    let f = m
        .forward(input, ForwardOptions::default().keep_tape())
        .unwrap();
    let g = m
        .backward(f.tape.unwrap(), gb.buffer(), BackwardOptions::default())
        .unwrap();
    for l in &g.grads {
        for t in l.tensors() {
            ctx.queue()
                .write_buffer(t.buffer(), 0, bytemuck::cast_slice(&vec![value; t.len()]));
        }
    }
    ctx.synchronize().unwrap();
    g
}

/// The forward's output and every gradient of a backward, as bits.
fn bits(output: &Array3<f32>, g: &gru_wgpu::cpu::GruGrads<f32>) -> Vec<u32> {
    let mut v: Vec<u32> = output.iter().map(|x| x.to_bits()).collect();
    v.extend(g.x.iter().map(|x| x.to_bits()));
    v.extend(g.h0.iter().map(|x| x.to_bits()));
    for (_, t) in g.params.named() {
        v.extend(t.iter().map(|x| x.to_bits()));
    }
    v
}

/// Issue 21, item 4: one thread runs forward + backward while another
/// updates the same model, back and forth between two known weight sets.
/// Every forward's output must be that of the weights its tape names, and
/// every backward accepted must give the gradients of those same weights
/// (bit for bit what a single-threaded run gives); a stale tape refused is
/// fine.
#[test]
fn a_backward_accepted_while_another_thread_updates_ran_on_the_weights_of_its_tape() {
    let Some(ctx) = common::gpu() else { return };
    let config = GruConfig::new(3, 5).layers(2);
    let m = GpuGru::new(&ctx, &exact_params(&config)).unwrap();
    let x = Array3::<f32>::from_shape_fn((4, 2, 3), |(t, b, i)| {
        ((t * 7 + b * 3 + i) % 11) as f32 / 8.0 - 0.6
    });
    let go = Array3::<f32>::from_shape_fn((4, 2, 5), |(t, b, j)| {
        ((t * 5 + b * 2 + j) % 7) as f32 / 4.0 - 0.7
    });
    let plus = constant_grads(&ctx, &m, &x, &go, 0.125);
    let minus = constant_grads(&ctx, &m, &x, &go, -0.125);
    let mut opt = GpuOptimizer::new(&ctx, Sgd::new(0.5));
    // One forward (its tape kept) and backward, on host arrays or (`device`)
    // on device buffers: the tape's version, and the output and gradients.
    let (xb, gb) = (
        ctx.upload("x", x.view()).unwrap(),
        ctx.upload("grad_output", go.view()).unwrap(),
    );
    let run = |m: &GpuGru, device: bool| -> Result<(u64, Vec<u32>), GruError> {
        if !device {
            let f = m.forward(x.view(), ForwardOptions::default().keep_tape())?;
            let tape = f.tape.unwrap();
            let v = tape.params_version();
            let g = m.backward(tape, go.view(), BackwardOptions::default())?;
            return Ok((v, bits(&f.output, &g)));
        }
        let input = OnDevice {
            buffer: xb.buffer(),
            seq_len: 4,
            batch: 2,
        };
        let f = m.forward(input, ForwardOptions::default().keep_tape())?;
        let tape = f.tape.unwrap();
        let v = tape.params_version();
        let g = m.backward(tape, gb.buffer(), BackwardOptions::default())?;
        let mut out = Vec::new();
        let tensors = [&f.output, &g.grad_x, &g.grad_h0]
            .into_iter()
            .chain(g.grads.iter().flat_map(|l| l.tensors()));
        for b in tensors {
            let a = ctx.read_array(b.buffer(), ndarray::Ix1(b.len()))?;
            out.extend(a.iter().map(|x| x.to_bits()));
        }
        Ok((v, out))
    };
    // Single-threaded: the results at the two weight sets, and the version
    // parity of each (every update moves the version by one).
    let reference = |m: &GpuGru, device| {
        let (v, r) = run(m, device).unwrap();
        assert_eq!(run(m, device).unwrap().1, r, "a run is deterministic");
        (v, r)
    };
    let p0 = m.params().unwrap();
    let ((v0, w0), (_, w0d)) = (reference(&m, false), reference(&m, true));
    m.update(&mut opt, &plus).unwrap();
    let ((v1, w1), (_, w1d)) = (reference(&m, false), reference(&m, true));
    m.update(&mut opt, &minus).unwrap();
    assert_eq!(m.params().unwrap(), p0, "the two steps return exactly");
    assert_eq!(run(&m, false).unwrap().1, w0);
    assert!(w0 != w1 && w0d != w1d);
    assert_ne!(v0 % 2, v1 % 2);
    let expected = |v: u64, device: bool| match (v % 2 == v0 % 2, device) {
        (true, false) => &w0,
        (false, false) => &w1,
        (true, true) => &w0d,
        (false, true) => &w1d,
    };

    let iterations = 300;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (mut accepted, mut stale, mut wrong) = (0, 0, Vec::new());
    let mut updates = 0;
    std::thread::scope(|s| {
        let updater = s.spawn(|| {
            // Paced (0 to 3 ms between updates, about one forward and
            // backward's time) so that many backwards are accepted.
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let g = if n.is_multiple_of(2) { &plus } else { &minus };
                m.update(&mut opt, g).unwrap();
                ctx.synchronize().unwrap();
                std::thread::sleep(std::time::Duration::from_micros(n % 4 * 1000));
                n += 1;
            }
            // End on the first weight set.
            if n % 2 == 1 {
                m.update(&mut opt, &minus).unwrap();
            }
            n
        });
        // Host arrays and device buffers in turn.
        for i in 0..iterations {
            let device = i % 2 == 1;
            match run(&m, device) {
                Ok((v, r)) => {
                    accepted += 1;
                    if r != *expected(v, device) {
                        wrong.push(i);
                    }
                }
                Err(GruError::StaleTape { .. }) => stale += 1,
                Err(e) => panic!("{e}"),
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        updates = updater.join().unwrap();
    });
    eprintln!(
        "{iterations} forward + backward beside {updates} updates: {accepted} accepted, \
         {stale} refused as stale, {} accepted with results of neither weight set",
        wrong.len()
    );
    assert!(
        wrong.is_empty(),
        "{} of {accepted} accepted backwards (iterations {:?}) gave results that are not \
         those of the weights their tape names",
        wrong.len(),
        &wrong[..wrong.len().min(20)]
    );
    assert!(accepted > 0, "{accepted} accepted, {stale} stale");
}
