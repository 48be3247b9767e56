//! The GEMM kernels alone (`gru-wgpu bench-gemm`): `C = A · Bᵀ` timed on
//! one kernel and checked against an f64 product, and a product through
//! `encode_gemm` for the tests of the kernels.

use std::time::Instant;

use super::{f32s, random_vec, summarize};
use crate::error::Result;
use crate::gpu::{GemmVariant, GpuContext};

/// Which GEMM kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GemmKernel {
    /// A storage-buffer kernel of `gemm.wgsl`: one [`GemmVariant`].
    Storage(GemmVariant),
    /// Uniform-buffer windows on the chunked layout (`windows.wgsl`).
    Windows,
}

impl GemmKernel {
    /// Every kernel: the GEMM variants in their order, then the windows.
    pub fn all() -> Vec<GemmKernel> {
        let mut v: Vec<GemmKernel> = GemmVariant::ALL
            .iter()
            .map(|&g| GemmKernel::Storage(g))
            .collect();
        v.push(GemmKernel::Windows);
        v
    }

    /// The variant's name, or `windows`.
    pub fn name(self) -> &'static str {
        match self {
            GemmKernel::Storage(v) => v.name(),
            GemmKernel::Windows => "windows",
        }
    }

    /// The kernels a `bench-gemm --kernel` value names: a variant name,
    /// `windows`, `storage` (the simple kernel), `both` (simple and windows)
    /// or `all`.
    pub fn parse(name: &str) -> Option<Vec<GemmKernel>> {
        Some(match name {
            "storage" => vec![GemmKernel::Storage(GemmVariant::Simple)],
            "windows" => vec![GemmKernel::Windows],
            "both" => vec![
                GemmKernel::Storage(GemmVariant::Simple),
                GemmKernel::Windows,
            ],
            "all" => Self::all(),
            _ => vec![GemmKernel::Storage(GemmVariant::from_name(name)?)],
        })
    }
}

impl serde::Serialize for GemmKernel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// One GEMM measurement.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GemmRecord {
    pub kernel: GemmKernel,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub median_ms: f64,
    pub gflops: f64,
    /// `||C - C_ref|| / ||C_ref||` against an f64 product on the CPU.
    pub rel_error: f64,
    pub dispatches: u32,
}

/// Checks, before anything is allocated, that `C = A · Bᵀ` of these sizes
/// fits the host (A, B, C and an f64 reference of C) and the device (A, B,
/// C and their chunked copies, each within the buffer limits).
pub fn check_gemm_fits(ctx: &GpuContext, m: usize, n: usize, k: usize) -> Result<()> {
    for (name, v) in [("m", m), ("n", n), ("k", k)] {
        if v == 0 {
            return Err(crate::GruError::InvalidConfig(format!(
                "{name} is 0; it must be at least 1"
            )));
        }
    }
    crate::memory::check_host(
        &format!("the GEMM's operands and reference ({m}x{k}, {n}x{k}, {m}x{n})"),
        crate::memory::sum(&[f32s(&[m, k]), f32s(&[n, k]), f32s(&[m, n, 3])]),
    )?;
    // The chunked layout pads rows to a multiple of 8 and adds 64 KiB.
    let pad = |r: usize| r.saturating_add(8);
    for (what, bytes) in [
        ("the GEMM's A (m·k)", f32s(&[pad(m), k])),
        ("the GEMM's B (n·k)", f32s(&[pad(n), k])),
        ("the GEMM's C (m·n)", f32s(&[m, n])),
    ] {
        ctx.dev().check_buffer_size(
            what,
            bytes.saturating_add(crate::gpu::ops::windows::WINDOW_BYTES),
        )?;
    }
    Ok(())
}

/// Times `C = A · Bᵀ` (A: (m, k), B: (n, k), both from U(-1, 1)) on one kernel:
/// the product alone, submitted and waited, median of `iters` after one warm-up.
pub fn bench_gemm(
    ctx: &GpuContext,
    m: usize,
    n: usize,
    k: usize,
    kernel: GemmKernel,
    iters: usize,
) -> Result<GemmRecord> {
    use crate::gpu::ops::gemm::{encode_gemm, Gemm};
    use crate::gpu::ops::windows::{
        encode_chunk, encode_windows, window_storage, Chunked, Strided, WinOut,
    };
    check_gemm_fits(ctx, m, n, k)?;
    let a = random_vec(m * k, 11);
    let b = random_vec(n * k, 12);
    ctx.scoped(|| {
        let ab = ctx.upload("A", &a)?;
        let bb = ctx.upload("B", &b)?;
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
        if kernel == GemmKernel::Windows {
            let mut rec = ctx.recorder(false);
            encode_chunk(&mut rec, &rows(ab.buffer()), ac.buffer(), &la, 0, 1)?;
            encode_chunk(&mut rec, &rows(bb.buffer()), bc.buffer(), &lb, 0, 1)?;
            rec.submit()?;
            ctx.synchronize()?;
        }
        let mut times = Vec::new();
        let mut dispatches = 0;
        for i in 0..=iters {
            let mut rec = ctx.recorder(false);
            match kernel {
                GemmKernel::Storage(variant) => encode_gemm(
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
                        ..Default::default()
                    },
                    ab.buffer(),
                    bb.buffer(),
                    None,
                    c.buffer(),
                )?,
                GemmKernel::Windows => encode_windows(
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
                times.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        let st = ctx.staging((m * n * 4) as u64);
        let mut rec = ctx.recorder(false);
        rec.copy(c.buffer(), 0, st.buffer(), 0, (m * n * 4) as u64);
        rec.submit()?;
        let got = ctx.read_staging(&[(&st, m * n)])?.remove(0);
        // The f64 reference, its rows split over the host's threads (at
        // 4096³ it is minutes on one).
        let mut reference = vec![0.0f64; m * n];
        let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
        let rows_per = m.div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            for (c, block) in reference.chunks_mut(rows_per * n).enumerate() {
                let (a, b) = (&a, &b);
                scope.spawn(move || {
                    for (r, row) in block.chunks_mut(n).enumerate() {
                        let i = c * rows_per + r;
                        for (j, v) in row.iter_mut().enumerate() {
                            *v = (0..k)
                                .map(|p| a[i * k + p] as f64 * b[j * k + p] as f64)
                                .sum();
                        }
                    }
                });
            }
        });
        let median = summarize(&times).0;
        Ok(GemmRecord {
            kernel,
            m,
            n,
            k,
            median_ms: median,
            gflops: 2.0 * (m * n * k) as f64 / (median * 1e-3) / 1e9,
            rel_error: crate::real::rel_error(got.iter().map(|&v| v as f64), &reference),
            dispatches,
        })
    })
}

/// A product for [`gemm_for_tests`]: `C = op(A) op(B) (+ bias)` for each of
/// `batch` batches, A, B and C packed per batch (A (M, K), or (K, M) with
/// `trans_a`; B (K, N), or (N, K) with `trans_b`; C (M, N)), each buffer
/// starting at float `off`.
#[doc(hidden)]
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
#[doc(hidden)]
pub fn gemm_for_tests(ctx: &GpuContext, g: &GemmCase) -> Result<Vec<f32>> {
    use crate::gpu::ops::gemm::{encode_gemm, Gemm};
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
        ctx.read_back(c.buffer(), off, batch * m * n)
    })
}
