//! Column sums in a fixed order (`shaders/reduce.wgsl`): the bias gradients,
//! the split-K partials of [`gemm`](super::gemm), the squared norms of
//! [`optim`](super::optim).

use crate::error::Result;
use crate::gpu::ops::params_struct;
use crate::gpu::pipeline::{bindings, grid3, u32_of, KernelSpec};
use crate::gpu::recorder::Recorder;

pub(crate) const SOURCE: &str = include_str!("../../../shaders/reduce.wgsl");

params_struct! {
    /// `Params` of `reduce.wgsl`.
    ReduceParams {
        cols: u32,
        rows: u32,
        ld: u32,
        chunk: u32,
        in_off: u32,
        in_batch: u32,
        out_off: u32,
        out_batch: u32,
        out_ld: u32,
        gx: u32,
        gy: u32,
        gz: u32,
    }
}
grid3!(ReduceParams);

const SUM_ROWS: KernelSpec = KernelSpec::new::<ReduceParams>(
    ("reduce.wgsl", SOURCE),
    "sum_rows",
    bindings![Read, ReadWrite],
);

/// Every kernel of this module, as it is dispatched (see
/// [`kernel_variants`](super::kernel_variants)).
#[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
pub(crate) const SPECS: &[KernelSpec] = &[SUM_ROWS];

/// Rows of a column-sum chunk.
const ROW_CHUNK: usize = 256;

/// A column sum `out[out_off + z·out_batch + n] = sum_r inp[in_off + z·in_batch + r·ld + n]`
/// for `n < cols`, `r < rows`, `z < batch` (all in floats).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowSum {
    pub cols: usize,
    pub rows: usize,
    pub ld: usize,
    pub in_off: usize,
    pub in_batch: usize,
    pub out_off: usize,
    pub out_batch: usize,
    pub batch: usize,
}

/// Records the column sums `r` of `inp` into `out`, in a fixed order; long
/// columns are summed in chunks of rows, then the chunks' partials.
pub(crate) fn encode_sum_rows(
    rec: &mut Recorder,
    r: &RowSum,
    inp: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<()> {
    let batch = r.batch.max(1);
    let cols_groups = u32_of("column sums", r.cols.div_ceil(64))?;
    let p = ReduceParams {
        cols: u32_of("column sums", r.cols)?,
        rows: u32_of("column sums", r.rows)?,
        ld: u32_of("column sums", r.ld)?,
        chunk: u32_of("column sums", r.rows.max(1))?,
        in_off: u32_of("column sums", r.in_off)?,
        in_batch: u32_of("column sums", r.in_batch)?,
        out_off: u32_of("column sums", r.out_off)?,
        out_batch: u32_of("column sums", r.out_batch)?,
        out_ld: 0,
        ..Default::default()
    };
    if r.rows <= 2 * ROW_CHUNK {
        return rec.run(&SUM_ROWS, &p, &[inp, out], [cols_groups, 1, batch as u32]);
    }
    let chunks = r.rows.div_ceil(ROW_CHUNK);
    let part = rec.storage("column-sum partials", batch * chunks * r.cols)?;
    let first = ReduceParams {
        chunk: ROW_CHUNK as u32,
        out_off: 0,
        out_batch: (chunks * r.cols) as u32,
        out_ld: r.cols as u32,
        ..p
    };
    rec.run(
        &SUM_ROWS,
        &first,
        &[inp, part.buffer()],
        [cols_groups, chunks as u32, batch as u32],
    )?;
    // The chunks' partials, summed the same way: in one pass where they are
    // few, else in chunks again, so that no thread sums more than
    // 2·ROW_CHUNK rows (a thread's loop stays short on every driver, see
    // `Device::loop_budget`).
    encode_sum_rows(
        rec,
        &RowSum {
            cols: r.cols,
            rows: chunks,
            ld: r.cols,
            in_off: 0,
            in_batch: chunks * r.cols,
            out_off: r.out_off,
            out_batch: r.out_batch,
            batch,
        },
        part.buffer(),
        out,
    )?;
    Ok(())
}
