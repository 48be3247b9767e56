//! Variable lengths and episode resets on the GPU: what a call's
//! [`SeqOptions`] become before anything is recorded.
//!
//! - The loop runs `t_run` steps, the longest length (all `T` without
//!   lengths): steps past every row's length are not run at all, and the
//!   output past `t_run` is zeros, the gradient of `x` there too.
//! - Within those steps each row's padding is masked by the step flags
//!   (`common.wgsl`): a padding step passes the state through and writes a
//!   zero output; a group of rows that is all padding skips its recurrent
//!   product, and the products of the product-kernel loops cover only the
//!   rows up to the last one still running. The rows run longest first (the
//!   call gathers them into that order and back), so that both skip the
//!   most.
//! - Resets zero the state before a step: the forward direction's before
//!   step `t` where `resets[t, b]`, the reverse direction's before step `t`
//!   where `resets[t + 1, b]` and `t + 1 < lengths[b]`, as the CPU reference
//!   (`crate::cpu::layer`) does.

use crate::gpu::pipeline::shared;
use ndarray::Array2;

use crate::config::GruConfig;
use crate::cpu::SeqOptions;
use crate::error::Result;
use crate::gpu::pool::PooledBuffer;

/// The step flags (`common.wgsl`), defined once for the host and the shaders.
const F_VALID: u32 = shared::F_VALID as u32;
const F_FWD_ZERO: u32 = shared::F_FWD_ZERO as u32;
const F_REV_ZERO: u32 = shared::F_REV_ZERO as u32;

/// A call's lengths and resets, resolved for the GPU.
#[derive(Clone, Debug)]
pub(crate) struct SeqRun {
    /// The caller's `T`.
    pub t_len: usize,
    /// The steps the loop runs: the longest length, or `T`.
    pub t_run: usize,
    /// The step flags, `(t_run, B)` in time order, as the floats the
    /// shaders read; `None` where every step of every row is plain.
    pub flags: Option<Vec<f32>>,
    /// Rows whose forward direction starts from zero (a reset at step 0):
    /// their `h0` is not read, and its gradient is zero.
    pub zero0: Vec<usize>,
    /// The lengths, where some row is shorter than `t_run` (in the order
    /// the rows run).
    pub lengths: Option<Vec<usize>>,
    /// The order the rows run in, where it is not the caller's: row `i` of
    /// the run is the caller's row `perm[i]` (longest first). Every
    /// field above is in that order.
    pub perm: Option<Vec<usize>>,
}

impl SeqRun {
    /// Per processing step of a layer of `cfg`, one past the last row that
    /// runs it in any of its directions (see `StepShape::active`); `None`
    /// without lengths.
    pub(crate) fn active_rows(&self, cfg: &GruConfig) -> Option<std::sync::Arc<[usize]>> {
        let lengths = self.lengths.as_ref()?;
        let t = self.t_run;
        let last = |time: usize| lengths.iter().rposition(|&l| time < l).map_or(0, |b| b + 1);
        Some(
            (0..t)
                .map(|s| {
                    (0..cfg.num_directions())
                        .map(|d| last(if cfg.runs_reversed(d) { t - 1 - s } else { s }))
                        .max()
                        .unwrap_or(0)
                })
                .collect(),
        )
    }
}

impl SeqRun {
    /// A call of `t_len` steps with neither lengths nor resets.
    pub(crate) fn plain(t_len: usize) -> Self {
        SeqRun {
            t_len,
            t_run: t_len,
            flags: None,
            zero0: Vec::new(),
            lengths: None,
            perm: None,
        }
    }

    /// Checks `opts` against a call of `t_len` steps on `batch` rows (the
    /// CPU reference's errors) and resolves them. `sort_rows`: let ragged
    /// lengths run longest first (not with dropout, whose mask is a function
    /// of each element's place in the caller's order).
    pub(crate) fn new(
        cfg: &GruConfig,
        opts: &SeqOptions,
        t_len: usize,
        batch: usize,
        sort_rows: bool,
    ) -> Result<Self> {
        let (lengths, resets) = opts.resolve(cfg, t_len, batch)?;
        let t_run = lengths.iter().copied().max().unwrap_or(t_len);
        let ragged = lengths.iter().any(|&l| l < t_run);
        let resets = resets.filter(|r| r.iter().any(|&v| v));
        if !ragged && resets.is_none() {
            return Ok(SeqRun::plain(t_len).with_run(t_run));
        }
        // Ragged lengths: the rows run longest first (a stable sort), so that
        // at each step the rows still running come first and the products
        // cover a prefix of the batch.
        let mut order: Vec<usize> = (0..batch).collect();
        if ragged && sort_rows {
            order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]));
        }
        let perm = order
            .iter()
            .enumerate()
            .any(|(i, &o)| i != o)
            .then(|| order.clone());
        let lengths: Vec<usize> = order.iter().map(|&o| lengths[o]).collect();
        let resets = resets.map(|r| r.select(ndarray::Axis(1), &order));
        let mut flags = vec![0f32; t_run * batch];
        let mut zero0 = Vec::new();
        for b in 0..batch {
            let len = lengths[b];
            for t in 0..len {
                let mut f = F_VALID;
                if let Some(r) = &resets {
                    if r[[t, b]] {
                        f |= F_FWD_ZERO;
                    }
                    if t + 1 < len && r[[t + 1, b]] {
                        f |= F_REV_ZERO;
                    }
                }
                flags[t * batch + b] = f as f32;
            }
            if resets.as_ref().is_some_and(|r: &Array2<bool>| r[[0, b]]) {
                zero0.push(b);
            }
        }
        Ok(SeqRun {
            t_len,
            t_run,
            flags: Some(flags),
            zero0,
            lengths: ragged.then_some(lengths),
            perm,
        })
    }

    fn with_run(mut self, t_run: usize) -> Self {
        self.t_run = t_run;
        self
    }
}

/// `perm` and its inverse uploaded as the index buffers of `gather_rows`
/// (`None` without a permutation).
pub(crate) fn upload_perm(
    ctx: &crate::gpu::context::GpuContext,
    perm: Option<&[usize]>,
) -> Result<Option<(PooledBuffer, PooledBuffer)>> {
    let Some(perm) = perm else {
        return Ok(None);
    };
    let (fwd, inv) = perm_indices(perm);
    Ok(Some((
        ctx.upload("row order", bytemuck::cast_slice::<_, f32>(&fwd))?,
        ctx.upload("row order, inverse", bytemuck::cast_slice::<_, f32>(&inv))?,
    )))
}

/// `perm` and its inverse as the `u32` index buffers of `gather_rows`.
fn perm_indices(perm: &[usize]) -> (Vec<u32>, Vec<u32>) {
    let fwd: Vec<u32> = perm.iter().map(|&p| p as u32).collect();
    let mut inv = vec![0u32; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i as u32;
    }
    (fwd, inv)
}
