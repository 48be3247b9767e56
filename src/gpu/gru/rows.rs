//! The batch rows of a call's tensors in the order its rows run (ragged
//! lengths run longest first), for the forward's inputs and the backward's
//! upstream gradients alike.

use crate::error::Result;
use crate::gpu::gru::seq::upload_perm;
use crate::gpu::gru::GpuGru;
use crate::gpu::ops::util::{encode_gather_rows, encode_permute01, Io};
use crate::gpu::pool::PooledBuffer;
use crate::gpu::recorder::Recorder;

/// A call's sequence tensor, `(T, B, width)` or batch-first `(B, T, width)`,
/// and its state tensor, `(L·D, B, H)`, where given; `f16`: in the model's
/// f16 storage (else f32); the names are the sorted copies'.
pub(super) struct RowsIn<'a> {
    pub seq: (&'a wgpu::Buffer, usize, &'a str),
    pub state: (Option<&'a wgpu::Buffer>, &'a str),
    pub t_full: usize,
    pub batch: usize,
    pub f16: bool,
}

impl GpuGru {
    /// The row order of a call and its inverse on the device (the
    /// recording's), where the rows run in another order than the caller's.
    pub(super) fn perm_buffers(
        &self,
        rec: &mut Recorder,
        perm: Option<&[usize]>,
    ) -> Result<Option<(wgpu::Buffer, wgpu::Buffer)>> {
        Ok(upload_perm(&self.ctx, perm)?.map(|(fwd, inv)| {
            (
                rec.scratch(fwd).buffer().clone(),
                rec.scratch(inv).buffer().clone(),
            )
        }))
    }

    /// The tensors of `t` with their batch rows in the order `fwd` gives
    /// (where it is given; the gathered copies are the recording's).
    pub(super) fn sorted_rows(
        &self,
        rec: &mut Recorder,
        t: RowsIn,
        fwd: Option<&wgpu::Buffer>,
    ) -> Result<(wgpu::Buffer, Option<wgpu::Buffer>)> {
        let (seq, width, seq_name) = t.seq;
        let (state, state_name) = t.state;
        let Some(fwd) = fwd else {
            return Ok((seq.clone(), state.cloned()));
        };
        let cfg = &self.config;
        let (nd, h, batch) = (cfg.num_directions(), cfg.hidden_size, t.batch);
        let (io, f16) = (Io::same(t.f16), t.f16);
        let alloc = |rec: &mut Recorder, what: &str, len: usize| -> Result<wgpu::Buffer> {
            let b = match f16 {
                true => self.act(what, len)?,
                false => self.ctx.storage(what, len)?,
            };
            Ok(rec.scratch(b).buffer().clone())
        };
        // Rows of B reordered.
        let shape = if cfg.batch_first {
            [1, batch, t.t_full * width]
        } else {
            [t.t_full, batch, width]
        };
        let sorted = alloc(rec, seq_name, t.t_full * batch * width)?;
        encode_gather_rows(rec, io, shape, seq, fwd, &sorted)?;
        let sorted_state = match state {
            Some(s) => {
                let b = alloc(rec, state_name, cfg.num_layers * nd * batch * h)?;
                encode_gather_rows(rec, io, [cfg.num_layers * nd, batch, h], s, fwd, &b)?;
                Some(b)
            }
            None => None,
        };
        Ok((sorted, sorted_state))
    }
}

/// A call's results on their way to the caller: the sequence tensor
/// (sequence-first, `t_run` of `t_full` steps, `width` per row) and the
/// state tensor `(L·D, B, H)`, in f16 storage or f32 (`f16`), with the
/// names their copies take.
pub(super) struct RowsOut<'a> {
    pub seq: (PooledBuffer, usize, &'a str),
    pub state: (PooledBuffer, &'a str),
    pub t_run: usize,
    pub t_full: usize,
    pub batch: usize,
    pub f16: bool,
}

impl GpuGru {
    /// The tensors of `t` as the caller sees them: zeros past `t_run`, rows
    /// back in the caller's order (`inv`, where given), batch-first where
    /// the model is. The buffers left behind are the recording's.
    pub(super) fn caller_rows(
        &self,
        rec: &mut Recorder,
        t: RowsOut,
        inv: Option<&wgpu::Buffer>,
    ) -> Result<(PooledBuffer, PooledBuffer)> {
        let cfg = &self.config;
        let (nd, h, batch, f16) = (cfg.num_directions(), cfg.hidden_size, t.batch, t.f16);
        let (mut seq, width, seq_name) = t.seq;
        let (mut state, state_name) = t.state;
        let (t_run, t_full) = (t.t_run, t.t_full);
        let io = Io::same(f16);
        let alloc = |what: &str, len: usize| match f16 {
            true => self.act(what, len),
            false => self.ctx.storage(what, len),
        };
        if t_run < t_full {
            let full = alloc(seq_name, t_full * batch * width)?;
            let done = t_run * batch * width;
            let rest = (t_full - t_run) * batch * width;
            if f16 {
                self.copy_act(rec, (seq.buffer(), 0), (full.buffer(), 0), done)?;
                self.clear_act(rec, (full.buffer(), done), rest)?;
            } else {
                let (done, rest) = ((done * 4) as u64, (rest * 4) as u64);
                rec.copy(seq.buffer(), 0, full.buffer(), 0, done);
                rec.clear(full.buffer(), done, rest);
            }
            rec.scratch(std::mem::replace(&mut seq, full));
        }
        let tb = t_full * batch;
        if let Some(inv) = inv {
            let o = alloc(seq_name, tb * width)?;
            let shape = [t_full, batch, width];
            encode_gather_rows(rec, io, shape, seq.buffer(), inv, o.buffer())?;
            rec.scratch(std::mem::replace(&mut seq, o));
            let s = alloc(state_name, cfg.num_layers * nd * batch * h)?;
            let shape = [cfg.num_layers * nd, batch, h];
            encode_gather_rows(rec, io, shape, state.buffer(), inv, s.buffer())?;
            rec.scratch(std::mem::replace(&mut state, s));
        }
        if !cfg.batch_first {
            return Ok((seq, state));
        }
        let o = alloc(seq_name, tb * width)?;
        let shape = [t_full, batch, width];
        encode_permute01(rec, io, shape, (seq.buffer(), 0), (o.buffer(), 0))?;
        rec.scratch(seq);
        Ok((o, state))
    }
}
