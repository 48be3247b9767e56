//! The GEMM kernels alone, outside the GRU: the products that the command
//! line's `bench-gemm` times and that the kernels' tests
//! (`tests/gpu_gemm.rs`) check. Hidden, not part of the library's API:
//! built with the `cli` feature (the binary's) or `test-hooks` (the tests').

use std::time::Instant;

use crate::error::Result;
use crate::gpu::ops::gemm::{encode_gemm, Gemm, GemmVariant};
use crate::gpu::ops::windows::{
    encode_chunk, encode_windows, window_storage, Chunked, Strided, WinOut, WINDOW_BYTES,
};
use crate::gpu::GpuContext;

/// Checks, before anything is allocated, that the buffers of `C = A · Bᵀ`
/// (A: (m, k), B: (n, k)) fit the device: A, B, C and their chunked copies
/// (rows padded to a multiple of 8, plus one window), each within the
/// buffer limits.
pub fn check_device_fits(ctx: &GpuContext, m: usize, n: usize, k: usize) -> Result<()> {
    let f32s = |values: &[usize]| values.iter().fold(4u64, |a, &v| a.saturating_mul(v as u64));
    let pad = |r: usize| r.saturating_add(8);
    for (what, bytes) in [
        ("the GEMM's A (m·k)", f32s(&[pad(m), k])),
        ("the GEMM's B (n·k)", f32s(&[pad(n), k])),
        ("the GEMM's C (m·n)", f32s(&[m, n])),
    ] {
        ctx.dev()
            .check_buffer_size(what, bytes.saturating_add(WINDOW_BYTES))?;
    }
    Ok(())
}

/// What [`time_product`] measured.
#[derive(Clone, Debug)]
pub struct TimedProduct {
    /// C, `m · n` floats, as the last run left it.
    pub c: Vec<f32>,
    /// Milliseconds of each timed run (submitted and waited).
    pub times_ms: Vec<f64>,
    /// Dispatches of one run.
    pub dispatches: u32,
}

/// Runs `C = A · Bᵀ` (A: (m, k), B: (n, k), row-major) on one kernel: the
/// storage kernel `variant`, or the uniform-buffer windows on the chunked
/// layout where `None` (the operands chunked once, untimed). One warm-up,
/// then `iters` runs, each timed alone.
pub fn time_product(
    ctx: &GpuContext,
    a: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
    variant: Option<GemmVariant>,
    iters: usize,
) -> Result<TimedProduct> {
    assert_eq!(a.len(), m * k, "A");
    assert_eq!(b.len(), n * k, "B");
    check_device_fits(ctx, m, n, k)?;
    ctx.scoped(|| {
        let ab = ctx.upload("A", a)?;
        let bb = ctx.upload("B", b)?;
        let c = ctx.storage("C", m * n)?;
        let (la, lb) = (Chunked::new(m, k, 0), Chunked::new(n, k, 0));
        let (ac, bc) = (
            window_storage(ctx.dev(), "A chunked", la.len())?,
            window_storage(ctx.dev(), "B chunked", lb.len())?,
        );
        let rows = |buf| Strided {
            buf,
            off: 0,
            rs: k,
            ks: 1,
            batch: 0,
            f16: false,
        };
        if variant.is_none() {
            let mut rec = ctx.recorder(false);
            encode_chunk(&mut rec, &rows(ab.buffer()), ac.buffer(), &la, 0, 1)?;
            encode_chunk(&mut rec, &rows(bb.buffer()), bc.buffer(), &lb, 0, 1)?;
            rec.submit()?;
            ctx.synchronize()?;
        }
        let mut times_ms = Vec::new();
        let mut dispatches = 0;
        for i in 0..=iters {
            let mut rec = ctx.recorder(false);
            match variant {
                Some(variant) => encode_gemm(
                    &mut rec,
                    variant,
                    &Gemm {
                        m,
                        n,
                        k,
                        trans_b: true,
                        lda: k,
                        ldb: k,
                        ldc: n,
                        // A product alone: its cut may depend on M.
                        fixed_rows: true,
                        ..Default::default()
                    },
                    ab.buffer(),
                    bb.buffer(),
                    None,
                    c.buffer(),
                )?,
                None => encode_windows(
                    &mut rec,
                    ac.buffer(),
                    &la,
                    bc.buffer(),
                    &lb,
                    None,
                    c.buffer(),
                    &WinOut {
                        c_off: 0,
                        ldc: n,
                        bias_off: None,
                    },
                )?,
            }
            dispatches = rec.dispatches;
            let start = Instant::now();
            rec.submit()?;
            ctx.synchronize()?;
            if i > 0 {
                times_ms.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        let st = ctx.staging((m * n * 4) as u64);
        let mut rec = ctx.recorder(false);
        rec.copy(c.buffer(), 0, st.buffer(), 0, (m * n * 4) as u64);
        rec.submit()?;
        let c = ctx.read_staging(&[(&st, m * n)])?.remove(0);
        Ok(TimedProduct {
            c,
            times_ms,
            dispatches,
        })
    })
}

/// A product for [`gemm_for_tests`]: `C = op(A) op(B) (+ bias)` for each of
/// `batch` batches, A, B and C packed per batch (A (M, K), or (K, M) with
/// `trans_a`; B (K, N), or (N, K) with `trans_b`; C (M, N)), each buffer
/// starting at float `off`.
#[cfg(feature = "test-hooks")]
#[derive(Clone, Copy, Debug)]
pub struct GemmCase<'a> {
    pub variant: GemmVariant,
    pub trans_a: bool,
    pub trans_b: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch: usize,
    pub off: usize,
    pub a: &'a [f32],
    pub b: &'a [f32],
    /// `n` floats, the same for every batch.
    pub bias: Option<&'a [f32]>,
}

/// Runs one product through `encode_gemm` (for the tests of the GEMM
/// kernels): C, `batch · m · n` floats.
#[cfg(feature = "test-hooks")]
pub fn gemm_for_tests(ctx: &GpuContext, g: &GemmCase) -> Result<Vec<f32>> {
    let (m, n, k, batch, off) = (g.m, g.n, g.k, g.batch.max(1), g.off);
    assert_eq!(g.a.len(), batch * m * k, "A");
    assert_eq!(g.b.len(), batch * k * n, "B");
    let padded = |v: &[f32]| {
        let mut p = vec![f32::NAN; off];
        p.extend_from_slice(v);
        p
    };
    ctx.scoped(|| {
        let ab = ctx.upload("A", &padded(g.a))?;
        let bb = ctx.upload("B", &padded(g.b))?;
        let biasb = g.bias.map(|v| ctx.upload("bias", &padded(v))).transpose()?;
        let c = ctx.storage("C", off + batch * m * n)?;
        let mut rec = ctx.recorder(false);
        encode_gemm(
            &mut rec,
            g.variant,
            &Gemm {
                m,
                n,
                k,
                trans_a: g.trans_a,
                trans_b: g.trans_b,
                lda: if g.trans_a { m } else { k },
                ldb: if g.trans_b { k } else { n },
                ldc: n,
                a_off: off,
                b_off: off,
                c_off: off,
                bias_off: off,
                batch,
                a_batch: m * k,
                b_batch: k * n,
                c_batch: m * n,
                ..Default::default()
            },
            ab.buffer(),
            bb.buffer(),
            biasb.as_ref().map(|b| b.buffer()),
            c.buffer(),
        )?;
        rec.submit()?;
        ctx.dev().read_back(c.buffer(), off, batch * m * n)
    })
}
