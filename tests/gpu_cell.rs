//! The GPU cell against the CPU cell and PyTorch: forward and backward over
//! chains of steps, gradients accumulated across steps.

mod common;

use gru_wgpu::cpu::GruCell;
use gru_wgpu::gpu::GpuGruCell;
use gru_wgpu::real::rel_error;
use gru_wgpu::reference::ReferenceCase;
use gru_wgpu::GruError;
use ndarray::{Array2, Array3, Axis};

fn rel2(a: &Array2<f32>, b: &Array2<f64>) -> f64 {
    rel_error(a.iter().map(|&v| v as f64), b.iter())
}

/// Steps both cells through a chain and back, comparing each result.
fn chain(
    ctx: &gru_wgpu::gpu::GpuContext,
    cpu: &mut GruCell<f64>,
    gpu: &mut GpuGruCell,
    xs: &Array3<f32>,
    h0: &Array2<f32>,
    dhs: &Array3<f32>,
) -> f64 {
    let mut worst = 0.0f64;
    let mut hg = h0.clone();
    let mut hc = h0.mapv(|v| v as f64);
    for t in 0..xs.len_of(Axis(0)) {
        let x = xs.index_axis(Axis(0), t);
        hg = gpu.forward_array(x, hg.view()).unwrap();
        hc = cpu.forward(x.mapv(|v| v as f64).view(), hc.view()).unwrap();
        worst = worst.max(rel2(&hg, &hc));
    }
    assert_eq!(gpu.tape_len(), xs.len_of(Axis(0)));
    // Backward: the gradient from outside at each step plus what flows back.
    let mut dg = Array2::<f32>::zeros(h0.raw_dim());
    let mut dc = Array2::<f64>::zeros(h0.raw_dim());
    for t in (0..xs.len_of(Axis(0))).rev() {
        let ext = dhs.index_axis(Axis(0), t);
        let (dxg, dhg) = gpu.backward_array((&dg + &ext).view()).unwrap();
        let (dxc, dhc) = cpu
            .backward((&dc + &ext.mapv(|v| v as f64)).view())
            .unwrap();
        worst = worst.max(rel2(&dxg, &dxc)).max(rel2(&dhg, &dhc));
        dg = dhg;
        dc = dhc;
    }
    assert_eq!(gpu.tape_len(), 0);
    let (g, c) = (gpu.grads().unwrap(), cpu.grads());
    worst = worst
        .max(rel2(&g.weight_ih, &c.weight_ih))
        .max(rel2(&g.weight_hh, &c.weight_hh));
    for (a, b) in [(&g.bias_ih, &c.bias_ih), (&g.bias_hh, &c.bias_hh)] {
        assert_eq!(
            a.is_some(),
            b.is_some(),
            "both cells have biases, or neither"
        );
        if let (Some(a), Some(b)) = (a, b) {
            worst = worst.max(rel_error(a.iter().map(|&v| v as f64), b.iter()));
        }
    }
    let _ = ctx;
    worst
}

#[test]
fn cell_chains_match_the_cpu_cell() {
    let Some(ctx) = common::gpu() else { return };
    for (n, &(i, h, b, t, bias)) in [
        (3, 4, 2, 1, true),
        (7, 16, 5, 12, true),
        (33, 65, 3, 9, false),
        (1, 1, 1, 20, true),
    ]
    .iter()
    .enumerate()
    {
        let mut r = common::rng(70 + n as u64);
        let mut cpu = GruCell::<f64>::new(i, h, bias, 7 + n as u64).unwrap();
        let p32 = {
            let p = cpu.params();
            gru_wgpu::DirParams {
                weight_ih: p.weight_ih.mapv(|v| v as f32),
                weight_hh: p.weight_hh.mapv(|v| v as f32),
                bias_ih: p.bias_ih.as_ref().map(|b| b.mapv(|v| v as f32)),
                bias_hh: p.bias_hh.as_ref().map(|b| b.mapv(|v| v as f32)),
            }
        };
        // The CPU cell on exactly the f32 values.
        cpu = GruCell::from_params(gru_wgpu::DirParams {
            weight_ih: p32.weight_ih.mapv(|v| v as f64),
            weight_hh: p32.weight_hh.mapv(|v| v as f64),
            bias_ih: p32.bias_ih.as_ref().map(|b| b.mapv(|v| v as f64)),
            bias_hh: p32.bias_hh.as_ref().map(|b| b.mapv(|v| v as f64)),
        })
        .unwrap();
        let mut gpu = GpuGruCell::new(&ctx, &p32).unwrap();
        let xs = common::random((t, b, i), 1.0, &mut r).mapv(|v| v as f32);
        let h0 = common::random((b, h), 1.0, &mut r).mapv(|v| v as f32);
        let dhs = common::random((t, b, h), 1.0, &mut r).mapv(|v| v as f32);
        let worst = chain(&ctx, &mut cpu, &mut gpu, &xs, &h0, &dhs);
        assert!(worst <= 1e-5, "I={i} H={h} B={b} T={t}: {worst:e}");
        // Gradients accumulate over a second chain, and zero_grad clears them.
        let g1 = gpu.grads().unwrap();
        // The CPU cell accumulates too: the second chain compares the sums.
        let worst2 = chain(&ctx, &mut cpu, &mut gpu, &xs, &h0, &dhs);
        assert!(
            worst2 <= 1e-5,
            "second chain, I={i} H={h} B={b} T={t}: {worst2:e}"
        );
        let g2 = gpu.grads().unwrap();
        let e = rel_error(
            g2.weight_hh.iter().map(|&v| v as f64),
            g1.weight_hh.mapv(|v| 2.0 * v as f64).iter(),
        );
        assert!(e <= 1e-6, "twice the gradient after two chains: {e:e}");
        gpu.zero_grad().unwrap();
        assert!(gpu.grads().unwrap().weight_ih.iter().all(|&v| v == 0.0));
    }
}

/// The cell in f16 storage (`GpuGruCell::with_precision`): chains against
/// the f64 CPU cell within the f16 bound, 2e-3.
#[test]
fn an_f16_cell_chains_within_the_f16_bound() {
    let Some(ctx) = common::gpu() else { return };
    for (n, &(i, h, b, t, bias)) in [(7, 16, 5, 12, true), (33, 65, 3, 9, false)]
        .iter()
        .enumerate()
    {
        let mut r = common::rng(90 + n as u64);
        let cpu0 = GruCell::<f64>::new(i, h, bias, 3 + n as u64).unwrap();
        let p = cpu0.params();
        let p32 = gru_wgpu::DirParams {
            weight_ih: p.weight_ih.mapv(|v| v as f32),
            weight_hh: p.weight_hh.mapv(|v| v as f32),
            bias_ih: p.bias_ih.as_ref().map(|b| b.mapv(|v| v as f32)),
            bias_hh: p.bias_hh.as_ref().map(|b| b.mapv(|v| v as f32)),
        };
        let mut cpu = GruCell::from_params(gru_wgpu::DirParams {
            weight_ih: p32.weight_ih.mapv(|v| v as f64),
            weight_hh: p32.weight_hh.mapv(|v| v as f64),
            bias_ih: p32.bias_ih.as_ref().map(|b| b.mapv(|v| v as f64)),
            bias_hh: p32.bias_hh.as_ref().map(|b| b.mapv(|v| v as f64)),
        })
        .unwrap();
        let mut gpu = GpuGruCell::with_precision(&ctx, &p32, gru_wgpu::Precision::F16).unwrap();
        assert_eq!(gpu.model().config().precision, gru_wgpu::Precision::F16);
        let xs = common::random((t, b, i), 1.0, &mut r).mapv(|v| v as f32);
        let h0 = common::random((b, h), 1.0, &mut r).mapv(|v| v as f32);
        let dhs = common::random((t, b, h), 1.0, &mut r).mapv(|v| v as f32);
        let worst = chain(&ctx, &mut cpu, &mut gpu, &xs, &h0, &dhs);
        // Above f32's rounding (it is f16), within f16's bound.
        assert!(
            worst > 1e-5 && worst <= 2e-3,
            "I={i} H={h} B={b} T={t}: {worst:e}"
        );
    }
}

#[test]
fn cell_matches_pytorch_grucell_and_a_longer_chain() {
    let Some(ctx) = common::gpu() else { return };
    // A GRU of one layer and one direction is nn.GRUCell stepped T times.
    for name in [
        "cell_seed_sizes.safetensors",
        "seq_basic.safetensors",
        "saturated_inputs.safetensors",
    ] {
        let path = common::golden_files()
            .into_iter()
            .find(|p| p.ends_with(name))
            .unwrap();
        let case = ReferenceCase::load(&path).unwrap();
        let mut cell = GpuGruCell::new(&ctx, case.params.dir(0, 0).unwrap()).unwrap();
        let mut h = case.h0.as_ref().unwrap().index_axis(Axis(0), 0).to_owned();
        let mut out = Vec::new();
        for t in 0..case.seq_len {
            h = cell
                .forward_array(case.x.index_axis(Axis(0), t), h.view())
                .unwrap();
            out.extend(h.iter().map(|&v| v as f64));
        }
        let e = rel_error(out.iter().copied(), case.expected.output.iter());
        assert!(e <= 1e-5, "{name}: output {e:e}");
        let mut dh = case.grad_h_n.index_axis(Axis(0), 0).to_owned();
        let mut dx = vec![Vec::new(); case.seq_len];
        for t in (0..case.seq_len).rev() {
            dh += &case.grad_output.index_axis(Axis(0), t);
            let (dxt, dhp) = cell.backward_array(dh.view()).unwrap();
            dx[t] = dxt.iter().map(|&v| v as f64).collect::<Vec<_>>();
            dh = dhp;
        }
        let dx: Vec<f64> = dx.concat();
        let e = rel_error(dx.iter().copied(), case.expected.grad_x.iter());
        assert!(e <= 1e-5, "{name}: grad x {e:e}");
        let e = rel_error(
            dh.iter().map(|&v| v as f64),
            case.expected.grad_h0.as_ref().unwrap().iter(),
        );
        assert!(e <= 1e-5, "{name}: grad h0 {e:e}");
        let g = cell.grads().unwrap();
        let want = case.expected.grad_params.dir(0, 0).unwrap();
        for (a, b) in [
            (&g.weight_ih, &want.weight_ih),
            (&g.weight_hh, &want.weight_hh),
        ] {
            let e = rel_error(a.iter().map(|&v| v as f64), b.iter());
            assert!(e <= 1e-5, "{name}: weights {e:e}");
        }
        for (what, a, b) in [
            ("bias_ih", &g.bias_ih, &want.bias_ih),
            ("bias_hh", &g.bias_hh, &want.bias_hh),
        ] {
            let e = rel_error(
                a.as_ref().unwrap().iter().map(|&v| v as f64),
                b.as_ref().unwrap().iter(),
            );
            assert!(e <= 1e-5, "{name}: {what} {e:e}");
        }
    }
}

#[test]
fn cell_steps_stay_on_the_device() {
    // Device buffers in and out: the state of one step feeds the next with no read-back.
    let Some(ctx) = common::gpu() else { return };
    let mut cell = GpuGruCell::init(&ctx, 4, 6, true, 3).unwrap();
    let x = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 2 * 4 * 4,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    ctx.queue()
        .write_buffer(&x, 0, bytemuck::cast_slice(&[0.5f32; 8]));
    let h0 = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 2 * 6 * 4,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut h = cell.forward(&x, &h0, 2).unwrap();
    for _ in 0..5 {
        h = cell.forward(&x, h.buffer(), 2).unwrap();
    }
    assert_eq!(cell.tape_len(), 6);
    let (mut dx, mut dh) = cell.backward(h.buffer()).unwrap();
    for _ in 0..5 {
        (dx, dh) = cell.backward(dh.buffer()).unwrap();
    }
    assert_eq!((dx.len(), dh.len()), (8, 12));
    let e = cell.backward(dh.buffer()).unwrap_err();
    assert!(matches!(e, GruError::Tape(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "tape: backward called with no step on the tape"
    );
    // A wrong shape is refused, and the tape keeps its step.
    cell.forward_array(Array2::zeros((3, 4)).view(), Array2::zeros((3, 6)).view())
        .unwrap();
    let e = cell
        .backward_array(Array2::zeros((2, 6)).view())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "`dh_next`: expected shape (3, 6), got (2, 6)"
    );
    assert_eq!(cell.tape_len(), 1);
}
