//! The window products of CPU adapters (`shaders/windows.wgsl`): `C = A · Bᵀ
//! (+ bias)` with both operands in the chunked layout, read through 64 KiB
//! uniform-buffer windows; the chunked copies (`util.wgsl`'s `chunk`) that
//! make those operands; and the time loops of the window path, which compute
//! each step's recurrent product here and then run the step with it
//! precomputed.
//!
//! Everything the window path needs on the device is here: its buffers are
//! made by [`window_storage`] (64 KiB of slack and the usage `UNIFORM`, which
//! no other buffer carries), and its pipelines are built the first time a
//! window product is recorded.

use std::ops::Range;

use crate::error::Result;
use crate::gpu::device::Device;
use crate::gpu::ops::common::StepShape;
use crate::gpu::ops::gru_backward::BackwardStepBufs;
use crate::gpu::ops::gru_forward::ForwardStepBufs;
use crate::gpu::ops::params_struct;
use crate::gpu::ops::steps::{Body, Gh, Pass, StepKernel};
use crate::gpu::ops::util::{self, UtilParams};
use crate::gpu::pipeline::{groups_1d, types, u32_of, Binding, Grid, Kernel, KernelSpec};
use crate::gpu::pool::PooledBuffer;
use crate::gpu::recorder::Recorder;

pub(crate) const SOURCE: &str = include_str!("../../../shaders/windows.wgsl");

/// The size of a uniform-buffer window: the most a uniform binding may span
/// on many adapters (and the size the window kernel declares).
pub(crate) const WINDOW_BYTES: u64 = (crate::gpu::pipeline::shared::WINDOW_VEC4S * 16) as u64;
/// The floats of a uniform window.
const WINDOW_FLOATS: usize = (WINDOW_BYTES / 4) as usize;
/// The longest K chunk of the chunked layout.
const KC_MAX: usize = 256;

params_struct! {
    /// `Params` of `windows.wgsl`.
    WinParams {
        ra: u32,
        rb: u32,
        kc4: u32,
        m0: u32,
        n0: u32,
        m: u32,
        n: u32,
        ldc: u32,
        c_off: u32,
        bias_off: u32,
        flags: u32,
        gx: u32,
        gy: u32,
        _p0: u32,
        _p1: u32,
        _p2: u32,
    }
}

impl Grid for WinParams {
    fn at(&mut self, off: [u32; 3]) {
        [self.gx, self.gy] = [off[0], off[1]];
    }
}

const WINDOWS: KernelSpec = KernelSpec::new::<WinParams>(
    ("windows.wgsl", SOURCE),
    "windows",
    &[
        (3, Binding::Read),
        (4, Binding::ReadWrite),
        (5, Binding::Params),
        (6, Binding::Window(WINDOW_BYTES)),
        (7, Binding::Window(WINDOW_BYTES)),
    ],
);

const CHUNK: KernelSpec = util::spec("chunk");

/// The window kernel of a recording: in one for an f16 model the bias (a
/// parameter) is f16; the windows themselves are always f32.
fn windows_kernel(rec: &Recorder) -> KernelSpec {
    WINDOWS.typed(types::gemm(false, rec.is_f16()))
}

/// Every kernel of this module, as it is dispatched (see
/// [`kernel_variants`](super::kernel_variants)).
#[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
pub(crate) const SPECS: &[KernelSpec] = &[WINDOWS, CHUNK];

/// Whether a device with `limits` can run the window kernels: uniform
/// bindings of 64 KiB at 32-byte offsets.
pub(crate) fn windows_fit(limits: &wgpu::Limits) -> bool {
    limits.max_uniform_buffer_binding_size >= WINDOW_BYTES
        && limits.min_uniform_buffer_offset_alignment <= 32
}

/// A buffer the window kernels read through windows: `len` floats, 64 KiB
/// more (so that a window that starts anywhere in the data fits) and the
/// usage `UNIFORM`.
pub(crate) fn window_storage(dev: &Device, what: &str, len: usize) -> Result<PooledBuffer> {
    dev.storage_with(what, len, WINDOW_BYTES, wgpu::BufferUsages::UNIFORM)
}

/// An operand of the window product in the chunked layout of `util.wgsl`'s
/// `chunk`: the logical (rows, k) matrix as ceil(k / kc) chunks of (rows, kc).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Chunked {
    pub rows: usize,
    pub k: usize,
    pub kc: usize,
    /// Offset in floats (a multiple of 8).
    pub off: usize,
}

impl Chunked {
    /// The layout of a (rows, k) matrix: chunks of `min(round8(k), 256)`.
    pub(crate) fn new(rows: usize, k: usize, off: usize) -> Self {
        Chunked {
            rows,
            k,
            kc: k.div_ceil(8).clamp(1, KC_MAX / 8) * 8,
            off,
        }
    }

    /// The same layout at offset `off`.
    pub(crate) fn at(&self, off: usize) -> Self {
        Chunked { off, ..*self }
    }

    pub(crate) fn chunks(&self) -> usize {
        self.k.div_ceil(self.kc)
    }

    /// Floats the layout takes.
    pub(crate) fn len(&self) -> usize {
        self.chunks() * self.rows * self.kc
    }
}

/// The source of a chunked copy: the logical (rows, k) matrix
/// `M(r, k) = buf[off + z·batch + r·rs + k·ks]` for `z < count` matrices.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Strided<'a> {
    pub buf: &'a wgpu::Buffer,
    pub off: usize,
    pub rs: usize,
    pub ks: usize,
    pub batch: usize,
    /// The source is f16 (an f16 model's weights or activations); the
    /// chunked copy is always f32.
    pub f16: bool,
}

/// Records the copy of `count` matrices `src` into the chunked layout `dst`
/// of `out` (plus `z · out_batch` for matrix z).
pub(crate) fn encode_chunk(
    rec: &mut Recorder,
    src: &Strided,
    out: &wgpu::Buffer,
    dst: &Chunked,
    out_batch: usize,
    count: usize,
) -> Result<()> {
    let n = dst.len();
    let what = "chunked copy";
    let p = UtilParams {
        count: u32_of(what, n)?,
        in_off: u32_of(what, src.off)?,
        out_off: u32_of(what, dst.off)?,
        a: u32_of(what, dst.rows)?,
        b: u32_of(what, dst.k)?,
        kc: dst.kc as u32,
        rs: u32_of(what, src.rs)?,
        ks: u32_of(what, src.ks)?,
        in_batch: u32_of(what, src.batch)?,
        out_batch: u32_of(what, out_batch)?,
        ..Default::default()
    };
    let mut wg = groups_1d(n, rec.max_groups());
    wg[2] = u32_of(what, count)?;
    let p = UtilParams { gtx: wg[0], ..p };
    let spec = CHUNK.typed(types::io(src.f16, false));
    rec.run(&spec, &p, &[src.buf, out], wg)
}

/// The number of dispatches of one window product on a device that allows
/// `max` workgroups per dimension.
fn windows_dispatches(la: &Chunked, lb: &Chunked, max: u32) -> usize {
    let rows = WINDOW_FLOATS / la.kc;
    let max = max.max(1) as usize;
    let mut n = 0;
    for m0 in (0..la.rows).step_by(rows) {
        for n0 in (0..lb.rows).step_by(rows) {
            let gy = (la.rows - m0).min(rows).div_ceil(8);
            let gx = (lb.rows - n0).min(rows).div_ceil(64);
            n += gy.div_ceil(max) * gx.div_ceil(max);
        }
    }
    la.chunks() * n
}

/// The output of a window product: `C` `(M, N)` at `c_off` with stride
/// `ldc`, and where it adds one, the bias `(N)` at `bias_off` (floats).
#[derive(Clone, Copy, Debug)]
pub(crate) struct WinOut {
    pub c_off: usize,
    pub ldc: usize,
    pub bias_off: Option<usize>,
}

/// Records `C[m][n] = sum_k A(m, k) B(n, k) (+ bias[n])` with both operands
/// in the chunked layout: one dispatch per K chunk and pair of windows, in a
/// fixed order, the chunks after the first accumulating into C.
#[allow(clippy::too_many_arguments)]
pub(crate) fn encode_windows(
    rec: &mut Recorder,
    a: &wgpu::Buffer,
    la: &Chunked,
    b: &wgpu::Buffer,
    lb: &Chunked,
    bias: Option<&wgpu::Buffer>,
    c: &wgpu::Buffer,
    o: &WinOut,
) -> Result<()> {
    encode_windows_part(rec, (a, la, la.rows), (b, lb, 0..lb.rows), bias, c, o)
}

/// [`encode_windows`] for the first `m_rows` rows of A and the rows `n` of
/// B only: `C[m][n]` for `m < m_rows` and `n` in the range (C's columns keep
/// their numbers; nothing else of C is written).
pub(crate) fn encode_windows_part(
    rec: &mut Recorder,
    (a, la, m_rows): (&wgpu::Buffer, &Chunked, usize),
    (b, lb, n): (&wgpu::Buffer, &Chunked, Range<usize>),
    bias: Option<&wgpu::Buffer>,
    c: &wgpu::Buffer,
    o: &WinOut,
) -> Result<()> {
    let kernel = rec.kernel(&windows_kernel(rec))?;
    rec.reserve(windows_dispatches(la, lb, rec.max_groups()));
    let chunk = rec.current_chunk();
    let dev = rec.dev;
    let bg = rec.bind(&kernel, chunk, &[bias.unwrap_or(&dev.dummy), c, a, b]);
    record_windows(rec, &kernel.pipeline, &bg, chunk, (la, m_rows), (lb, n), o)
}

/// Records the dispatches of one window product with a bind group made for
/// arena chunk `chunk` (whose slots must have been reserved).
///
/// Only the first `m_rows` rows of A (and of C) are computed (a step whose
/// later rows are padding), and only the rows `n_rows` of B (the columns of
/// C with those numbers); the layouts keep all their rows.
fn record_windows(
    rec: &mut Recorder,
    pipeline: &wgpu::ComputePipeline,
    bg: &wgpu::BindGroup,
    chunk: usize,
    (la, m_rows): (&Chunked, usize),
    (lb, n_rows): (&Chunked, Range<usize>),
    o: &WinOut,
) -> Result<()> {
    debug_assert_eq!((la.kc, la.k), (lb.kc, lb.k));
    let kc = la.kc;
    let rows_per_window = WINDOW_FLOATS / kc;
    let (m, n) = (m_rows.min(la.rows), n_rows.end.min(lb.rows));
    let max = rec.max_groups().max(1);
    for ch in 0..la.chunks() {
        for n0 in (n_rows.start..n).step_by(rows_per_window) {
            for m0 in (0..m).step_by(rows_per_window) {
                let p = WinParams {
                    ra: (m - m0).min(rows_per_window) as u32,
                    rb: (n - n0).min(rows_per_window) as u32,
                    kc4: (kc / 4) as u32,
                    m0: u32_of("GEMM rows", m0)?,
                    n0: u32_of("GEMM columns", n0)?,
                    m: u32_of("GEMM rows", m)?,
                    n: u32_of("GEMM columns", n)?,
                    ldc: u32_of("GEMM stride", o.ldc)?,
                    c_off: u32_of("GEMM offset", o.c_off)?,
                    bias_off: u32_of("GEMM offset", o.bias_off.unwrap_or(0))?,
                    flags: (ch == 0 && o.bias_off.is_some()) as u32 | (((ch > 0) as u32) << 1),
                    ..Default::default()
                };
                let wg = [
                    u32_of("GEMM columns", (p.rb as usize).div_ceil(64))?,
                    u32_of("GEMM rows", (p.ra as usize).div_ceil(8))?,
                    1,
                ];
                let a_off = u32_of("window offset", (la.off + (ch * la.rows + m0) * kc) * 4)?;
                let b_off = u32_of("window offset", (lb.off + (ch * lb.rows + n0) * kc) * 4)?;
                for gy in (0..wg[1]).step_by(max as usize) {
                    for gx in (0..wg[0]).step_by(max as usize) {
                        let slot = rec.slot_in(&WinParams { gx, gy, ..p }, chunk)?;
                        let size = [(wg[0] - gx).min(max), (wg[1] - gy).min(max), 1];
                        rec.dispatch(pipeline, bg, &[slot.offset, a_off, b_off], size);
                    }
                }
            }
        }
    }
    Ok(())
}

/// The buffers of the window path of a time loop.
pub(crate) struct StepWindows<'a> {
    /// The product of each step: `gh` `(D, B, 3H)` forward, the carry `(D, B, H)` backward.
    pub product: &'a wgpu::Buffer,
    /// The state read by the product, chunked, two parities by D directions:
    /// `h` forward, `dG_h` backward.
    pub state_buf: &'a wgpu::Buffer,
    /// The layout of one region of it: `(B, H)` or `(B, 3H)`.
    pub state: Chunked,
    /// `W_hh` `(3H, H)` (forward) or `W_hhᵀ` `(H, 3H)` (backward) chunked, one region per direction.
    pub weights_buf: &'a wgpu::Buffer,
    /// The layout of one region of it.
    pub weights: Chunked,
}

/// The products of one step of the window path, each direction's: the
/// state of parity `parity` (its first `rows` rows) times the weights, into
/// `w.product` laid out `(D, B, width)`, with the bias where `bias`.
fn step_products(
    rec: &mut Recorder,
    (gemm, bg, chunk): (&Kernel, &wgpu::BindGroup, usize),
    sh: &StepShape,
    w: &StepWindows,
    (parity, rows): (usize, usize),
    (width, bias): (usize, bool),
) -> Result<()> {
    for d in 0..sh.dirs {
        let state = w.state.at((parity * sh.dirs + d) * w.state.len());
        let weights = w.weights.at(d * w.weights.len());
        let o = WinOut {
            c_off: d * sh.batch * width,
            ldc: width,
            bias_off: bias.then_some(d * width),
        };
        record_windows(
            rec,
            &gemm.pipeline,
            bg,
            chunk,
            (&state, rows),
            (&weights, 0..weights.rows),
            &o,
        )?;
    }
    Ok(())
}

/// The forward time loop of one layer on the window path: each step is
/// first the product `gh = h · W_hhᵀ + b_hh` of each direction, then the
/// step with it precomputed. Bind groups and slots are made before the loop.
pub(crate) fn encode_forward_steps(
    rec: &mut Recorder,
    sh: &StepShape,
    b: &ForwardStepBufs,
    w: &StepWindows,
) -> Result<()> {
    let step = rec.kernel(
        StepKernel::new(Pass::Forward, Body::Step)
            .gh(Gh::Window)
            .tape(b.gates.is_some())
            .for_rec(rec)
            .spec(),
    )?;
    let gemm = rec.kernel(&windows_kernel(rec))?;
    let parts = sh.step_pieces(rec.max_groups())?;
    let mut p = sh.params()?;
    p.kc = w.state.kc as u32;
    p.win_len = u32_of("window state", w.state.len())?;
    let per_product = windows_dispatches(&w.state, &w.weights, rec.max_groups());
    rec.reserve(sh.t_len * (sh.dirs * per_product + parts.len()));
    let chunk = rec.current_chunk();
    let dev = rec.dev;
    let bias = b.b_hh.unwrap_or(&dev.dummy);
    let gates = b.gates.unwrap_or(&dev.dummy_rw);
    let bg_step = rec.bind(
        &step,
        chunk,
        &[b.gi, w.product, bias, b.hs, b.out, gates, w.state_buf],
    );
    let bg_gemm = rec.bind(&gemm, chunk, &[bias, w.product, w.state_buf, w.weights_buf]);
    let h3 = 3 * sh.hidden;
    for s in 0..sh.t_len {
        let out = (h3, b.b_hh.is_some());
        let at = (s % 2, sh.rows_at(s));
        step_products(rec, (&gemm, &bg_gemm, chunk), sh, w, at, out)?;
        p.s = s as i32;
        rec.dispatch_pieces(&step, &bg_step, chunk, p, &parts)?;
    }
    Ok(())
}

/// The backward time loop of one layer on the window path: each step but
/// the first is preceded by the products `dG_h,{s+1} · W_hh` of each direction.
pub(crate) fn encode_backward_steps(
    rec: &mut Recorder,
    sh: &StepShape,
    b: &BackwardStepBufs,
    w: &StepWindows,
) -> Result<()> {
    let step = rec.kernel(
        StepKernel::new(Pass::Backward, Body::Step)
            .gh(Gh::Window)
            .for_rec(rec)
            .spec(),
    )?;
    let gemm = rec.kernel(&windows_kernel(rec))?;
    let parts = sh.step_pieces(rec.max_groups())?;
    let mut p = sh.params()?;
    p.kc = w.state.kc as u32;
    p.win_len = u32_of("window state", w.state.len())?;
    let t_len = sh.t_len as i32;
    let per_product = windows_dispatches(&w.state, &w.weights, rec.max_groups());
    rec.reserve((sh.t_len + 1) * (sh.dirs * per_product + parts.len()));
    let chunk = rec.current_chunk();
    let dev = rec.dev;
    let bg_step = rec.bind(
        &step,
        chunk,
        &[
            b.d_out,
            b.gates,
            b.hs,
            w.product,
            b.dgh,
            b.dgi,
            b.dh,
            w.state_buf,
        ],
    );
    let bg_gemm = rec.bind(
        &gemm,
        chunk,
        &[&dev.dummy, w.product, w.state_buf, w.weights_buf],
    );
    for s in (-1..t_len).rev() {
        if s < t_len - 1 {
            let next = (s + 1) as usize;
            let at = (next % 2, sh.rows_at(next));
            step_products(rec, (&gemm, &bg_gemm, chunk), sh, w, at, (sh.hidden, false))?;
        }
        p.s = s;
        rec.dispatch_pieces(&step, &bg_step, chunk, p, &parts)?;
    }
    Ok(())
}

/// The buffers of a reset-before time loop on the window path: the product
/// of each step and one chunked operand region per direction, which the loop
/// fills by a chunked copy before each product.
pub(crate) struct RbWindows<'a> {
    /// `gh` `(D, B, 3H)` forward (without the bias), the carry `(D, B, H)` backward.
    pub product: &'a wgpu::Buffer,
    /// The chunked operand, D regions of `operand`.
    pub operand_buf: &'a wgpu::Buffer,
    /// `(B, H)` forward (h, then r·h); `(B, 2H)` backward (dG_h's r and z columns).
    pub operand: Chunked,
    /// `W_hh` `(3H, H)` forward, `W_hhᵀ`'s r and z columns `(H, 2H)` backward,
    /// chunked, one region per direction.
    pub weights_buf: &'a wgpu::Buffer,
    pub weights: Chunked,
    /// The scratch of the reset-before kernels: r, z and r·h `(D, B, 3H)`
    /// forward, d(r·h)·r `(D, B, H)` backward (zeroed by the caller).
    pub scratch: &'a wgpu::Buffer,
}

/// The forward time loop of a reset-before layer on the window path. Each
/// step: h_s chunked; `gh_{r,z} = h_s W_h{r,z}ᵀ`; `rb_rz` (r, z, r·h into
/// the scratch, with b_hh); r·h chunked; `gh_n = (r·h) W_hnᵀ`; the step
/// (with b_hn). The kernels are those of the storage family's `products`.
pub(crate) fn encode_forward_steps_rb(
    rec: &mut Recorder,
    sh: &StepShape,
    b: &ForwardStepBufs,
    w: &RbWindows,
) -> Result<()> {
    let (batch, h, nd) = (sh.batch, sh.hidden, sh.dirs);
    let h3 = 3 * h;
    let tape = b.gates.is_some();
    let slots = if tape { sh.t_len + 1 } else { 2 };
    let dev = rec.dev;
    let bufs = [
        b.gi,
        w.product,
        b.b_hh.unwrap_or(&dev.dummy),
        b.hs,
        b.out,
        b.gates.unwrap_or(&dev.dummy_rw),
        w.scratch,
    ];
    let grid = sh.step_grid()?;
    let mut p = sh.params()?;
    let (op, wt) = (&w.operand, &w.weights);
    // The products of one step for the weight rows `rows` (C's columns).
    let products = |rec: &mut Recorder, m: usize, rows: Range<usize>| -> Result<()> {
        for d in 0..nd {
            let o = WinOut {
                c_off: d * batch * h3,
                ldc: h3,
                bias_off: None,
            };
            encode_windows_part(
                rec,
                (w.operand_buf, &op.at(d * op.len()), m),
                (w.weights_buf, &wt.at(d * wt.len()), rows.clone()),
                None,
                w.product,
                &o,
            )?;
        }
        Ok(())
    };
    for s in 0..sh.t_len {
        let slot = if tape { s } else { s % 2 };
        let rows = sh.rows_at(s);
        let h_s = Strided {
            buf: b.hs,
            off: slot * batch * h,
            rs: h,
            ks: 1,
            batch: slots * batch * h,
            f16: rec.is_f16(),
        };
        encode_chunk(rec, &h_s, w.operand_buf, op, op.len(), nd)?;
        products(rec, rows, 0..2 * h)?;
        p.s = s as i32;
        rec.run(
            StepKernel::new(Pass::Forward, Body::RbRz)
                .gh(Gh::Storage)
                .rb(true)
                .tape(tape)
                .for_rec(rec)
                .spec(),
            &p,
            &bufs,
            grid,
        )?;
        let rh = Strided {
            buf: w.scratch,
            off: 2 * h,
            rs: h3,
            ks: 1,
            batch: batch * h3,
            f16: false,
        };
        encode_chunk(rec, &rh, w.operand_buf, op, op.len(), nd)?;
        products(rec, rows, 2 * h..h3)?;
        rec.run(
            StepKernel::new(Pass::Forward, Body::Step)
                .gh(Gh::Storage)
                .rb(true)
                .tape(tape)
                .for_rec(rec)
                .spec(),
            &p,
            &bufs,
            grid,
        )?;
    }
    Ok(())
}

/// The backward time loop of a reset-before layer on the window path. Each
/// step s < T-1 first makes the carry `dG_h,{s+1}[:, :2H] · W_h{r,z}`
/// (dG_h's r and z columns chunked), then runs the storage family's
/// reset-before gradient step and, for s ≥ 0, `rb_dr`, which reads W_hn
/// from the dense weights.
pub(crate) fn encode_backward_steps_rb(
    rec: &mut Recorder,
    sh: &StepShape,
    b: &BackwardStepBufs,
    w: &RbWindows,
) -> Result<()> {
    let (batch, h, nd, t_len) = (sh.batch, sh.hidden, sh.dirs, sh.t_len);
    let h3 = 3 * h;
    let grid = sh.step_grid()?;
    let mut p = sh.params()?;
    let (op, wt) = (&w.operand, &w.weights);
    for s in (-1..t_len as i32).rev() {
        if s + 1 < t_len as i32 {
            let next = (s + 1) as usize;
            let dg = Strided {
                buf: b.dgh,
                off: next * batch * h3,
                rs: h3,
                ks: 1,
                batch: t_len * batch * h3,
                f16: false,
            };
            encode_chunk(rec, &dg, w.operand_buf, op, op.len(), nd)?;
            for d in 0..nd {
                let o = WinOut {
                    c_off: d * batch * h,
                    ldc: h,
                    bias_off: None,
                };
                encode_windows_part(
                    rec,
                    (w.operand_buf, &op.at(d * op.len()), sh.rows_at(next)),
                    (w.weights_buf, &wt.at(d * wt.len()), 0..h),
                    None,
                    w.product,
                    &o,
                )?;
            }
        }
        p.s = s;
        let bufs = [
            b.d_out, b.gates, b.hs, w.product, b.dgh, b.dgi, b.dh, w.scratch,
        ];
        let step = StepKernel::new(Pass::Backward, Body::Step)
            .gh(Gh::Storage)
            .rb(true);
        rec.run(step.for_rec(rec).spec(), &p, &bufs, grid)?;
        if s >= 0 {
            let bufs = [
                b.d_out, b.gates, b.hs, b.w_hh, b.dgh, b.dgi, b.dh, w.scratch,
            ];
            let dr = StepKernel::new(Pass::Backward, Body::RbDr).rb(true);
            rec.run(dr.for_rec(rec).spec(), &p, &bufs, grid)?;
        }
    }
    Ok(())
}
