//! Optimiser steps and gradient clipping (`shaders/optim.wgsl`), with
//! PyTorch's update rules, elementwise over one flat tensor.

use crate::error::Result;
use crate::gpu::ops::params_struct;
use crate::gpu::ops::reduce::{encode_sum_rows, RowSum};
use crate::gpu::pipeline::{bindings, grid3, u32_of, Flat, KernelSpec};
use crate::gpu::recorder::Recorder;
use crate::optim::{Adam, Sgd};

pub(crate) const SOURCE: &str = include_str!("../../../shaders/optim.wgsl");

params_struct! {
    /// `Params` of `optim.wgsl`.
    OptimParams {
        count: u32,
        flags: u32,
        lr: f32,
        weight_decay: f32,
        momentum: f32,
        dampening: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        step_size: f32,
        bc2_sqrt: f32,
        max_norm: f32,
        out_off: u32,
        coef_at: u32,
        gx: u32,
        gy: u32,
        gz: u32,
        gtx: u32,
        _p0: u32,
        _p1: u32,
    }
}
grid3!(OptimParams);

impl Flat for OptimParams {
    fn set_width(&mut self, gtx: u32) {
        self.gtx = gtx;
    }
}

const fn spec(entry: &'static str) -> KernelSpec {
    let bindings = bindings![ReadWrite, ReadWrite, ReadWrite, ReadWrite];
    KernelSpec::new::<OptimParams>(("optim.wgsl", SOURCE), entry, bindings)
}

const SGD: KernelSpec = spec("sgd");
const ADAM: KernelSpec = spec("adam");
const SUMSQ: KernelSpec = spec("sumsq");
const CLIP_COEF: KernelSpec = spec("clip_coef");
const SCALE: KernelSpec = spec("scale");

/// Every kernel of this module, as it is dispatched (see
/// [`kernel_variants`](super::kernel_variants)).
#[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
pub(crate) const SPECS: &[KernelSpec] = &[SGD, ADAM, SUMSQ, CLIP_COEF, SCALE];

/// One SGD step on a tensor of `len` floats; `buf` is its momentum buffer.
pub(crate) fn encode_sgd(
    rec: &mut Recorder,
    o: &Sgd,
    first: bool,
    len: usize,
    [param, grad, buf]: [&wgpu::Buffer; 3],
) -> Result<()> {
    let p = OptimParams {
        count: u32_of("parameter", len)?,
        flags: first as u32 | ((o.nesterov as u32) << 1),
        lr: o.lr,
        weight_decay: o.weight_decay,
        momentum: o.momentum,
        dampening: o.dampening,
        ..Default::default()
    };
    let dev = rec.dev;
    rec.run_1d(&SGD, &p, &[param, grad, buf, &dev.dummy_rw], len)
}

/// One Adam or AdamW step `t` (from 1) on a tensor of `len` floats.
pub(crate) fn encode_adam(
    rec: &mut Recorder,
    o: &Adam,
    t: u64,
    len: usize,
    [param, grad, m, v]: [&wgpu::Buffer; 4],
) -> Result<()> {
    let (step_size, bc2_sqrt) = o.corrections(t);
    let p = OptimParams {
        count: u32_of("parameter", len)?,
        flags: (o.decoupled as u32) << 2,
        lr: o.lr,
        weight_decay: o.weight_decay,
        beta1: o.beta1,
        beta2: o.beta2,
        eps: o.eps,
        step_size: step_size as f32,
        bc2_sqrt: bc2_sqrt as f32,
        ..Default::default()
    };
    rec.run_1d(&ADAM, &p, &[param, grad, m, v], len)
}

/// `norms[at] = sum of grad^2` over `len` floats, in a fixed order: sums of
/// 256-element chunks, then the chunks summed by `reduce.wgsl`.
pub(crate) fn encode_sumsq(
    rec: &mut Recorder,
    grad: &wgpu::Buffer,
    len: usize,
    norms: &wgpu::Buffer,
    at: usize,
) -> Result<()> {
    let dev = rec.dev;
    let chunks = len.div_ceil(256).max(1);
    let part = rec.storage("sum-of-squares partials", chunks)?;
    let p = OptimParams {
        count: u32_of("gradient", len)?,
        ..Default::default()
    };
    rec.run_1d(
        &SUMSQ,
        &p,
        &[&dev.dummy_rw, grad, &dev.dummy_rw, part.buffer()],
        chunks,
    )?;
    encode_sum_rows(
        rec,
        &RowSum {
            cols: 1,
            rows: chunks,
            ld: 1,
            in_off: 0,
            in_batch: 0,
            out_off: at,
            out_batch: 0,
            batch: 1,
        },
        part.buffer(),
        norms,
    )?;
    Ok(())
}

/// From `n` squared norms in `norms`, the total norm at `norms[n]` and the
/// clipping coefficient at `norms[n + 1]`.
pub(crate) fn encode_clip_coef(
    rec: &mut Recorder,
    norms: &wgpu::Buffer,
    n: usize,
    max_norm: f32,
) -> Result<()> {
    let p = OptimParams {
        count: u32_of("tensors", n)?,
        max_norm,
        ..Default::default()
    };
    let dev = rec.dev;
    rec.run(
        &CLIP_COEF,
        &p,
        &[&dev.dummy_rw, &dev.dummy_rw, &dev.dummy_rw, norms],
        [1, 1, 1],
    )
}

/// `grad *= norms[coef_at]` over `len` floats.
pub(crate) fn encode_scale(
    rec: &mut Recorder,
    grad: &wgpu::Buffer,
    len: usize,
    norms: &wgpu::Buffer,
    coef_at: usize,
) -> Result<()> {
    let p = OptimParams {
        count: u32_of("gradient", len)?,
        coef_at: coef_at as u32,
        ..Default::default()
    };
    let dev = rec.dev;
    rec.run_1d(
        &SCALE,
        &p,
        &[&dev.dummy_rw, grad, &dev.dummy_rw, norms],
        len,
    )
}
