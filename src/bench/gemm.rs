//! The GEMM kernels alone (`gru-wgpu bench-gemm`): `C = A · Bᵀ` timed on
//! one kernel (through the library's hidden `gpu::gemm`) and
//! checked against an f64 product.

use super::{f32s, random_vec, summarize};
use gru_wgpu::error::Result;
use gru_wgpu::gpu::gemm::{check_device_fits, time_product};
use gru_wgpu::gpu::{GemmVariant, GpuContext};

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
    pub fn name(self) -> String {
        match self {
            GemmKernel::Storage(v) => v.to_string(),
            GemmKernel::Windows => "windows".to_string(),
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
            _ => vec![GemmKernel::Storage(name.parse::<GemmVariant>().ok()?)],
        })
    }
}

impl serde::Serialize for GemmKernel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
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
            return Err(gru_wgpu::GruError::InvalidConfig(format!(
                "{name} is 0; it must be at least 1"
            )));
        }
    }
    gru_wgpu::memory::check_host(
        &format!("the GEMM's operands and reference ({m}x{k}, {n}x{k}, {m}x{n})"),
        gru_wgpu::memory::sum(&[f32s(&[m, k]), f32s(&[n, k]), f32s(&[m, n, 3])]),
    )?;
    check_device_fits(ctx, m, n, k)
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
    check_gemm_fits(ctx, m, n, k)?;
    let a = random_vec(m * k, 11);
    let b = random_vec(n * k, 12);
    let variant = match kernel {
        GemmKernel::Storage(v) => Some(v),
        GemmKernel::Windows => None,
    };
    let run = time_product(ctx, &a, &b, (m, n, k), variant, iters)?;
    let (got, times, dispatches) = (run.c, run.times_ms, run.dispatches);
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
        rel_error: gru_wgpu::real::rel_error(got.iter().map(|&v| v as f64), &reference),
        dispatches,
    })
}
