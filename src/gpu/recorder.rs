//! Recording a whole call into one command encoder.
//!
//! Every dispatch takes its parameters from one slot of a uniform "arena"
//! buffer through a dynamic offset; the arena is written once, just before the
//! single submission, so recording allocates nothing per dispatch on the device.
//!
//! The recorder sits on the pipeline layer: it looks kernels up in the cache
//! and records their dispatches, a grid larger than the device allows in
//! pieces. The op families (`ops/`) record through it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::Result;
use crate::gpu::device::Device;
use crate::gpu::pipeline::{groups_1d, pieces, Flat, Grid, Kernel, KernelSpec, Pipelines};
use crate::gpu::pool::PooledBuffer;

/// Slots per arena chunk when no more are reserved.
const CHUNK_SLOTS: usize = 256;

pub(crate) struct Recorder<'c> {
    pub(crate) dev: &'c Device,
    pipelines: &'c Pipelines,
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    /// Arena chunks: a buffer, its bytes so far, and its capacity in slots.
    chunks: Vec<(PooledBuffer, Vec<u8>, usize)>,
    align: usize,
    /// The call's scratch ([`scratch`](Self::scratch)): owned by the
    /// recording from its allocation, released to the pool at the submission.
    scratch: Vec<Arc<PooledBuffer>>,
    timestamps: Option<(wgpu::QuerySet, PooledBuffer, PooledBuffer)>,
    pub(crate) dispatches: u32,
    /// The bind groups made, by pipeline, arena chunk and buffers: a loop
    /// that dispatches one kernel on the same buffers every step (the
    /// per-step products, the step kernels) binds them once.
    bind_groups: HashMap<(wgpu::ComputePipeline, usize, Vec<wgpu::Buffer>), wgpu::BindGroup>,
    /// The step kernels store f16 (a recording for an f16 model).
    f16: bool,
    /// When the recording began (the host's cost of a call: [`host_ms`](Self::host_ms)).
    started: std::time::Instant,
}

/// A reference to a slot of the arena, for a bind group and its dynamic offset.
#[derive(Clone, Copy)]
pub(crate) struct Slot {
    pub(crate) chunk: usize,
    pub(crate) offset: u32,
}

impl<'c> Recorder<'c> {
    pub(crate) fn new(dev: &'c Device, pipelines: &'c Pipelines, timed: bool) -> Self {
        let device = &dev.device;
        let started = std::time::Instant::now();
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("gru-wgpu call"),
        });
        let timestamps = if timed
            && dev.features.contains(
                wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS,
            ) {
            let qs = device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("gru-wgpu timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            });
            encoder.write_timestamp(&qs, 0);
            let resolve = dev.pool.take_raw(
                device,
                "gru-wgpu timestamps",
                16,
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            );
            let read = dev.staging(16);
            Some((qs, resolve, read))
        } else {
            None
        };
        let align = dev.limits.min_uniform_buffer_offset_alignment.max(256) as usize;
        Recorder {
            dev,
            pipelines,
            encoder: Some(encoder),
            pass: None,
            chunks: Vec::new(),
            align,
            scratch: Vec::new(),
            timestamps,
            dispatches: 0,
            bind_groups: HashMap::new(),
            f16: false,
            started,
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
            let buf = self.dev.pool.take_raw(
                &self.dev.device,
                "gru-wgpu parameter arena",
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
    fn slot<P: bytemuck::Pod>(&mut self, params: &P) -> Slot {
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

    /// The kernel of `spec`, from the context's cache (built on first use).
    /// Its storage types are the spec's own: a step kernel's precision is
    /// part of its description (`ops::steps::StepKernel::for_rec`).
    pub(crate) fn kernel(&self, spec: &KernelSpec) -> Result<Arc<Kernel>> {
        self.pipelines.get(self.dev, spec)
    }

    /// Records for a model whose weights, states, outputs and tape are f16
    /// (see [`kernel`](Self::kernel)).
    pub(crate) fn set_f16(&mut self, yes: bool) {
        self.f16 = yes;
    }

    /// Whether this recording is for an f16 model.
    pub(crate) fn is_f16(&self) -> bool {
        self.f16
    }

    /// A bind group of `kernel` for the arena chunk `chunk` and `buffers`, one
    /// for each binding that is not the parameter slot, in binding order.
    pub(crate) fn bind(
        &mut self,
        kernel: &Kernel,
        chunk: usize,
        buffers: &[&wgpu::Buffer],
    ) -> wgpu::BindGroup {
        let key = (
            kernel.pipeline.clone(),
            chunk,
            buffers.iter().map(|&b| b.clone()).collect::<Vec<_>>(),
        );
        if let Some(bg) = self.bind_groups.get(&key) {
            return bg.clone();
        }
        let bg = kernel.bind(&self.dev.device, self.chunks[chunk].0.buffer(), buffers);
        self.bind_groups.insert(key, bg.clone());
        bg
    }

    /// The bind groups the recording made (see [`bind`](Self::bind)).
    pub(crate) fn bind_groups_made(&self) -> u32 {
        self.bind_groups.len() as u32
    }

    /// The device's limit of workgroups per dimension.
    pub(crate) fn max_groups(&self) -> u32 {
        self.dev.limits.max_compute_workgroups_per_dimension
    }

    /// Records the dispatch of `spec` over a grid `wg` (in pieces where it is
    /// larger than the device allows), each piece with its parameter slot,
    /// one bind group.
    pub(crate) fn run<P: Grid>(
        &mut self,
        spec: &KernelSpec,
        params: &P,
        buffers: &[&wgpu::Buffer],
        wg: [u32; 3],
    ) -> Result<()> {
        let kernel = self.kernel(spec)?;
        let parts = pieces(wg, self.max_groups());
        self.reserve(parts.len());
        let chunk = self.current_chunk();
        let bg = self.bind(&kernel, chunk, buffers);
        self.dispatch_pieces(&kernel, &bg, chunk, *params, &parts)
    }

    /// Records a 1-D kernel over `count` threads (64 per workgroup).
    pub(crate) fn run_1d<P: Flat>(
        &mut self,
        spec: &KernelSpec,
        params: &P,
        buffers: &[&wgpu::Buffer],
        count: usize,
    ) -> Result<()> {
        let wg = groups_1d(count, self.max_groups());
        let mut p = *params;
        p.set_width(wg[0]);
        self.run(spec, &p, buffers, wg)
    }

    /// Records the pieces of one grid with a bind group made for arena chunk
    /// `chunk` (whose slots must have been reserved).
    pub(crate) fn dispatch_pieces<P: Grid>(
        &mut self,
        kernel: &Kernel,
        bg: &wgpu::BindGroup,
        chunk: usize,
        mut params: P,
        parts: &[([u32; 3], [u32; 3])],
    ) -> Result<()> {
        for &(off, size) in parts {
            params.at(off);
            let slot = self.slot_in(&params, chunk)?;
            self.dispatch(&kernel.pipeline, bg, &[slot.offset], size);
        }
        Ok(())
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

    /// A storage buffer of `len` floats that is the call's scratch (see
    /// [`scratch`](Self::scratch)): from the pool, back to it at the
    /// submission; `what` names it in a size error.
    pub(crate) fn storage(&mut self, what: &str, len: usize) -> Result<Arc<PooledBuffer>> {
        let b = self.dev.storage(what, len)?;
        Ok(self.scratch(b))
    }

    /// Makes `b` part of the call's scratch: the recording owns it from now
    /// on and gives it back to the pool when the call is submitted (so the
    /// pool cannot lend it again to the same call); the handle returned reads
    /// it while the call records.
    pub(crate) fn scratch(&mut self, b: PooledBuffer) -> Arc<PooledBuffer> {
        let b = Arc::new(b);
        self.scratch.push(b.clone());
        b
    }

    /// Writes the arena, closes the encoder and submits it: one submission.
    /// Returns the GPU time in milliseconds where timestamps are available.
    pub(crate) fn submit(self) -> Result<Option<f64>> {
        self.send().gpu_ms()
    }

    /// Milliseconds of the host since the recording began: what recording
    /// the call cost (kernels looked up, bind groups made, dispatches
    /// encoded), up to its submission.
    pub(crate) fn host_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1e3
    }

    /// Writes the arena, closes the encoder and submits it (one
    /// submission), without waiting: the GPU time, where timed, is read
    /// from what it returns. The recording's buffers go back to the pool
    /// (the work queued after this submission, which is all that can
    /// reuse them, runs after it).
    pub(crate) fn send(mut self) -> Submitted<'c> {
        self.pass = None;
        let mut encoder = self.encoder.take().expect("encoder present until submit");
        if let Some((qs, resolve, read)) = &self.timestamps {
            encoder.write_timestamp(qs, 1);
            encoder.resolve_query_set(qs, 0..2, resolve.buffer(), 0);
            encoder.copy_buffer_to_buffer(resolve.buffer(), 0, read.buffer(), 0, 16);
        }
        for (buf, bytes, _) in &self.chunks {
            if !bytes.is_empty() {
                self.dev.queue.write_buffer(buf.buffer(), 0, bytes);
            }
        }
        self.dev.queue.submit(Some(encoder.finish()));
        Submitted {
            dev: self.dev,
            timestamps: self.timestamps.take(),
        }
    }
}

/// A recording submitted by [`Recorder::send`], its timestamps still to read.
pub(crate) struct Submitted<'c> {
    dev: &'c Device,
    timestamps: Option<(wgpu::QuerySet, PooledBuffer, PooledBuffer)>,
}

impl Submitted<'_> {
    /// The GPU time in milliseconds where the recording was timed (it waits
    /// for the device), else `None` at once.
    pub(crate) fn gpu_ms(self) -> Result<Option<f64>> {
        let Some((_, _, read)) = &self.timestamps else {
            return Ok(None);
        };
        let ticks = self.dev.read_staging_words(&[(read, 4)])?;
        let raw: &[u32] = &ticks[0];
        let t0 = raw[0] as u64 | ((raw[1] as u64) << 32);
        let t1 = raw[2] as u64 | ((raw[3] as u64) << 32);
        let period = self.dev.queue.get_timestamp_period() as f64;
        Ok(Some(t1.saturating_sub(t0) as f64 * period / 1e6))
    }
}
