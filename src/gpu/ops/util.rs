//! Data movement around the GRU kernels (`shaders/util.wgsl`): permutes,
//! transposes, dropout, accumulation; and the chunked copies of the window
//! path (recorded by [`windows`](super::windows), which owns that layout).

use crate::error::Result;
use crate::gpu::device::LOOP_PROBE_ITERATIONS;
use crate::gpu::ops::params_struct;
use crate::gpu::pipeline::{bindings, grid3, types, u32_of, Flat, KernelSpec};
use crate::gpu::recorder::Recorder;

pub(crate) const SOURCE: &str = include_str!("../../../shaders/util.wgsl");

params_struct! {
    /// `Params` of `util.wgsl`. `a`, `b`, `c` are the dimensions of the
    /// input, outermost first (see the shader's header); `kc` the chunk width
    /// of `chunk`.
    UtilParams {
        count: u32,
        in_off: u32,
        out_off: u32,
        a: u32,
        b: u32,
        c: u32,
        seed: u32,
        layer: u32,
        threshold: u32,
        scale: f32,
        rs: u32,
        ks: u32,
        in_batch: u32,
        out_batch: u32,
        gx: u32,
        gy: u32,
        gz: u32,
        gtx: u32,
        kc: u32,
        _p0: u32,
    }
}
grid3!(UtilParams);

impl Flat for UtilParams {
    fn set_width(&mut self, gtx: u32) {
        self.gtx = gtx;
    }
}

/// The kernel `entry` of `util.wgsl` (all bind `inp` read, `out` written).
pub(crate) const fn spec(entry: &'static str) -> KernelSpec {
    KernelSpec::new::<UtilParams>(("util.wgsl", SOURCE), entry, bindings![Read, ReadWrite])
}

const GATHER_ROWS: KernelSpec = KernelSpec::new::<UtilParams>(
    ("util.wgsl", SOURCE),
    "gather_rows",
    bindings![Read, ReadWrite, Read],
);
const PERMUTE01: KernelSpec = spec("permute01");
const TRANSPOSE: KernelSpec = spec("transpose");
const DROPOUT: KernelSpec = spec("dropout");
const ADD: KernelSpec = spec("add");
const COPY: KernelSpec = spec("copy");
const FILL: KernelSpec = spec("fill");
const LOOP_PROBE: KernelSpec = spec("loop_probe");

/// Every kernel of this module, as it is dispatched (see
/// [`kernel_variants`](super::kernel_variants)).
#[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
pub(crate) const SPECS: &[KernelSpec] = &[
    PERMUTE01,
    TRANSPOSE,
    DROPOUT,
    ADD,
    GATHER_ROWS,
    COPY,
    FILL,
    LOOP_PROBE,
];

/// The storage of a data-movement kernel's input and output: f16 where true
/// (an f16 model's weights and activations), else f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Io {
    pub inp: bool,
    pub out: bool,
}

impl Io {
    /// f32 in and out.
    pub(crate) const F32: Io = Io {
        inp: false,
        out: false,
    };

    /// The same storage in and out: f16 where `f16`.
    pub(crate) fn same(f16: bool) -> Io {
        Io { inp: f16, out: f16 }
    }

    fn spec(self, spec: &KernelSpec) -> KernelSpec {
        spec.typed(types::io(self.inp, self.out))
    }
}

/// `out[out_off..][..count] = inp[in_off..][..count]`, converted between the
/// storage types of `io`. Offsets in elements.
pub(crate) fn encode_copy(
    rec: &mut Recorder,
    io: Io,
    count: usize,
    inp: (&wgpu::Buffer, usize),
    out: (&wgpu::Buffer, usize),
) -> Result<()> {
    let p = UtilParams {
        count: u32_of("copy", count)?,
        in_off: u32_of("copy", inp.1)?,
        out_off: u32_of("copy", out.1)?,
        ..Default::default()
    };
    rec.run_1d(&io.spec(&COPY), &p, &[inp.0, out.0], count)
}

/// `out[out_off..][..count] = 0` in storage `f16` or f32. Offsets in elements.
pub(crate) fn encode_fill(
    rec: &mut Recorder,
    f16: bool,
    count: usize,
    out: (&wgpu::Buffer, usize),
) -> Result<()> {
    let p = UtilParams {
        count: u32_of("fill", count)?,
        out_off: u32_of("fill", out.1)?,
        ..Default::default()
    };
    let dev = rec.dev;
    let spec = Io {
        inp: false,
        out: f16,
    }
    .spec(&FILL);
    rec.run_1d(&spec, &p, &[&dev.dummy, out.0], count)
}

/// `(A, B, C) -> (B, A, C)`: between `batch_first` and sequence-first.
/// Offsets in floats.
pub(crate) fn encode_permute01(
    rec: &mut Recorder,
    io: Io,
    [a, b, c]: [usize; 3],
    inp: (&wgpu::Buffer, usize),
    out: (&wgpu::Buffer, usize),
) -> Result<()> {
    let count = a * b * c;
    let p = UtilParams {
        count: u32_of("permute", count)?,
        in_off: u32_of("permute", inp.1)?,
        out_off: u32_of("permute", out.1)?,
        a: a as u32,
        b: b as u32,
        c: c as u32,
        ..Default::default()
    };
    rec.run_1d(&io.spec(&PERMUTE01), &p, &[inp.0, out.0], count)
}

/// `(A, B, C)` with the rows of B reordered: row `i` of the output is row
/// `idx[i]` of the input (`idx`: B `u32` values).
pub(crate) fn encode_gather_rows(
    rec: &mut Recorder,
    io: Io,
    [a, b, c]: [usize; 3],
    inp: &wgpu::Buffer,
    idx: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<()> {
    let count = a * b * c;
    let p = UtilParams {
        count: u32_of("gather", count)?,
        a: u32_of("gather", a)?,
        b: u32_of("gather", b)?,
        c: u32_of("gather", c)?,
        ..Default::default()
    };
    rec.run_1d(&io.spec(&GATHER_ROWS), &p, &[inp, out, idx], count)
}

/// `(Z, R, C) -> (Z, C, R)`.
pub(crate) fn encode_transpose(
    rec: &mut Recorder,
    io: Io,
    [z, r, c]: [usize; 3],
    inp: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<()> {
    let count = z * r * c;
    let p = UtilParams {
        count: u32_of("transpose", count)?,
        a: u32_of("transpose", z)?,
        b: u32_of("transpose", r)?,
        c: u32_of("transpose", c)?,
        ..Default::default()
    };
    rec.run_1d(&io.spec(&TRANSPOSE), &p, &[inp, out], count)
}

/// A dropout mask: that of [`crate::dropout`] for `seed` and `layer`, each
/// element dropped with probability `prob`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dropout {
    pub seed: u32,
    pub layer: u32,
    pub prob: f32,
}

/// `out = inp * mask / (1 - p)` over `count` floats.
pub(crate) fn encode_dropout(
    rec: &mut Recorder,
    io: Io,
    d: &Dropout,
    count: usize,
    inp: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<()> {
    let p = UtilParams {
        count: u32_of("dropout", count)?,
        seed: d.seed,
        layer: d.layer,
        threshold: crate::dropout::threshold(d.prob),
        scale: (1.0 / (1.0 - d.prob as f64)) as f32,
        ..Default::default()
    };
    rec.run_1d(&io.spec(&DROPOUT), &p, &[inp, out], count)
}

/// `out[..len] += inp[..len]`.
pub(crate) fn encode_add(
    rec: &mut Recorder,
    len: usize,
    inp: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<()> {
    let p = UtilParams {
        count: u32_of("accumulation", len)?,
        ..Default::default()
    };
    rec.run_1d(&ADD, &p, &[inp, out], len)
}

/// One invocation of a loop of `iterations` iterations that writes into
/// `out[0]` how many ran (`inp[0]` must hold 0): the loop probe.
pub(crate) fn encode_loop_probe(
    rec: &mut Recorder,
    iterations: usize,
    inp: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<()> {
    let p = UtilParams {
        count: u32_of("the loop probe", iterations)?,
        ..Default::default()
    };
    rec.run(&LOOP_PROBE, &p, &[inp, out], [1, 1, 1])
}

/// Runs the loop probe (`loop_probe` of `util.wgsl`) once: the loop
/// iterations the driver lets one invocation run, where it ends the
/// probe's loop before its end (`None` where the loop ran to the end). Its
/// pipeline is built apart from the context's cache.
pub(crate) fn probe_loop_limit(dev: &crate::gpu::device::Device) -> Result<Option<u64>> {
    let pipelines = crate::gpu::pipeline::Pipelines::default();
    let out = dev.scoped(|| {
        let inp = dev.upload("loop probe input", &[0.0])?;
        let out = dev.storage("loop probe result", 1)?;
        let mut rec = Recorder::new(dev, &pipelines, false);
        encode_loop_probe(
            &mut rec,
            LOOP_PROBE_ITERATIONS as usize,
            inp.buffer(),
            out.buffer(),
        )?;
        rec.submit()?;
        Ok(out)
    })?;
    let ran = dev.read_back(out.buffer(), 0, 1)?[0];
    if !(ran >= 1.0 && ran <= LOOP_PROBE_ITERATIONS as f32) {
        return Err(crate::error::GruError::Gpu(format!(
            "{}: the loop probe counted {ran} of {LOOP_PROBE_ITERATIONS} loop iterations \
             (a device that cannot run a plain loop cannot run the kernels)",
            dev.summary
        )));
    }
    Ok(((ran as u64) < LOOP_PROBE_ITERATIONS).then_some(ran as u64))
}
