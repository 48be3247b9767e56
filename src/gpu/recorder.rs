//! Recording a whole call into one command encoder.
//!
//! Every dispatch takes its parameters from one slot of a uniform "arena"
//! buffer through a dynamic offset; the arena is written once, just before the
//! single submission, so recording allocates nothing per dispatch on the device.

use std::num::NonZeroU64;

use crate::error::Result;
use crate::gpu::context::{GpuContext, PooledBuffer};

/// Slots per arena chunk when no more are reserved.
const CHUNK_SLOTS: usize = 256;

pub(crate) struct Recorder<'c> {
    pub(crate) ctx: &'c GpuContext,
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    /// Arena chunks: a buffer, its bytes so far, and its capacity in slots.
    chunks: Vec<(PooledBuffer, Vec<u8>, usize)>,
    align: usize,
    /// Buffers that must live until the submission.
    keep: Vec<PooledBuffer>,
    timestamps: Option<(wgpu::QuerySet, PooledBuffer, PooledBuffer)>,
    pub(crate) dispatches: u32,
}

/// A reference to a slot of the arena, for a bind group and its dynamic offset.
#[derive(Clone, Copy)]
pub(crate) struct Slot {
    pub(crate) chunk: usize,
    pub(crate) offset: u32,
}

impl<'c> Recorder<'c> {
    pub(crate) fn new(ctx: &'c GpuContext, timed: bool) -> Self {
        let device = &ctx.inner.device;
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("gru-wgpu call"),
        });
        let timestamps = if timed && ctx.has_timestamps() {
            let qs = device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("gru-wgpu timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            });
            encoder.write_timestamp(&qs, 0);
            let resolve = ctx.inner.pool.take_raw(
                device,
                16,
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            );
            let read = ctx.staging(16);
            Some((qs, resolve, read))
        } else {
            None
        };
        let align = ctx
            .inner
            .limits
            .min_uniform_buffer_offset_alignment
            .max(256) as usize;
        Recorder {
            ctx,
            encoder: Some(encoder),
            pass: None,
            chunks: Vec::new(),
            align,
            keep: Vec::new(),
            timestamps,
            dispatches: 0,
        }
    }

    fn encoder(&mut self) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        self.encoder.as_mut().expect("encoder present until submit")
    }

    /// The open compute pass (opening one if needed).
    pub(crate) fn pass(&mut self) -> &mut wgpu::ComputePass<'static> {
        if self.pass.is_none() {
            let p = self
                .encoder
                .as_mut()
                .expect("encoder present until submit")
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("gru-wgpu"),
                    timestamp_writes: None,
                })
                .forget_lifetime();
            self.pass = Some(p);
        }
        self.pass.as_mut().expect("just opened")
    }

    /// Makes sure the current arena chunk has `n` free slots, so that the next
    /// `n` slots share one chunk (and so one bind group).
    pub(crate) fn reserve(&mut self, n: usize) {
        let fits = self
            .chunks
            .last()
            .is_some_and(|(_, bytes, cap)| bytes.len() / self.align + n <= *cap);
        if !fits {
            let cap = n.max(CHUNK_SLOTS);
            let buf = self.ctx.inner.pool.take_raw(
                &self.ctx.inner.device,
                (cap * self.align) as u64,
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            );
            self.chunks
                .push((buf, Vec::with_capacity(cap * self.align), cap));
        }
    }

    /// The arena chunk that the next slot goes into (after a `reserve`).
    pub(crate) fn current_chunk(&self) -> usize {
        self.chunks.len().saturating_sub(1)
    }

    /// Puts `params` in the next slot, which must fall in arena chunk `chunk`
    /// (the one a bind group was made for; its slots were reserved).
    pub(crate) fn slot_in<P: bytemuck::Pod>(&mut self, params: &P, chunk: usize) -> Result<Slot> {
        let slot = self.slot(params);
        if slot.chunk != chunk {
            return Err(crate::error::GruError::Gpu(format!(
                "internal error: a parameter slot fell in arena chunk {} instead of {chunk} (too few slots reserved)",
                slot.chunk
            )));
        }
        Ok(slot)
    }

    /// Puts `params` in the next slot of the current chunk.
    pub(crate) fn slot<P: bytemuck::Pod>(&mut self, params: &P) -> Slot {
        self.reserve(1);
        let chunk = self.chunks.len() - 1;
        let (_, bytes, _) = self.chunks.last_mut().expect("reserved");
        let offset = bytes.len();
        bytes.extend_from_slice(bytemuck::bytes_of(params));
        bytes.resize(offset + self.align, 0);
        Slot {
            chunk,
            offset: offset as u32,
        }
    }

    /// The arena buffer of a chunk, bound with `size` bytes.
    pub(crate) fn arena_binding(&self, chunk: usize, size: u64) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.chunks[chunk].0.buffer(),
            offset: 0,
            size: NonZeroU64::new(size),
        })
    }

    /// Records one dispatch; `offsets` are the dynamic offsets of the bind
    /// group, in binding order (the parameter slot's among them).
    pub(crate) fn dispatch(
        &mut self,
        pipeline: &wgpu::ComputePipeline,
        bg: &wgpu::BindGroup,
        offsets: &[u32],
        wg: [u32; 3],
    ) {
        let pass = self.pass();
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, bg, offsets);
        pass.dispatch_workgroups(wg[0], wg[1], wg[2]);
        self.dispatches += 1;
    }

    /// Copies `bytes` between buffers (outside any compute pass).
    pub(crate) fn copy(
        &mut self,
        src: &wgpu::Buffer,
        src_off: u64,
        dst: &wgpu::Buffer,
        dst_off: u64,
        bytes: u64,
    ) {
        if bytes > 0 {
            self.encoder()
                .copy_buffer_to_buffer(src, src_off, dst, dst_off, bytes);
        }
    }

    /// Copies `bytes` from `src` (a buffer and offset) to `dst`, or zeroes them
    /// where there is no source (an absent `h0` or `grad_h_n`).
    pub(crate) fn copy_or_clear(
        &mut self,
        src: Option<(&wgpu::Buffer, u64)>,
        dst: &wgpu::Buffer,
        dst_off: u64,
        bytes: u64,
    ) {
        match src {
            Some((b, off)) => self.copy(b, off, dst, dst_off, bytes),
            None => self.clear(dst, dst_off, bytes),
        }
    }

    /// Sets `bytes` of `buf` from `offset` to zero.
    pub(crate) fn clear(&mut self, buf: &wgpu::Buffer, offset: u64, bytes: u64) {
        if bytes > 0 {
            self.encoder().clear_buffer(buf, offset, Some(bytes));
        }
    }

    /// Keeps a temporary buffer alive until the submission.
    pub(crate) fn keep(&mut self, b: PooledBuffer) {
        self.keep.push(b);
    }

    /// Writes the arena, closes the encoder and submits it: one submission.
    /// Returns the GPU time in milliseconds where timestamps are available.
    pub(crate) fn submit(mut self) -> Result<Option<f64>> {
        self.pass = None;
        let mut encoder = self.encoder.take().expect("encoder present until submit");
        if let Some((qs, resolve, read)) = &self.timestamps {
            encoder.write_timestamp(qs, 1);
            encoder.resolve_query_set(qs, 0..2, resolve.buffer(), 0);
            encoder.copy_buffer_to_buffer(resolve.buffer(), 0, read.buffer(), 0, 16);
        }
        for (buf, bytes, _) in &self.chunks {
            if !bytes.is_empty() {
                self.ctx.inner.queue.write_buffer(buf.buffer(), 0, bytes);
            }
        }
        self.ctx.inner.queue.submit(Some(encoder.finish()));
        if let Some((_, _, read)) = &self.timestamps {
            let ticks = self.ctx.read_staging_words(&[(read, 4)])?;
            let raw: &[u32] = &ticks[0];
            let t0 = raw[0] as u64 | ((raw[1] as u64) << 32);
            let t1 = raw[2] as u64 | ((raw[3] as u64) << 32);
            let period = self.ctx.inner.queue.get_timestamp_period() as f64;
            return Ok(Some(t1.saturating_sub(t0) as f64 * period / 1e6));
        }
        Ok(None)
    }
}
