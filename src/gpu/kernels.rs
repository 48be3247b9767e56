//! The compute pipelines, built once per context, and one host function per
//! kernel that records its dispatches. The WGSL lives in `shaders/`.
//!
//! The host functions take one argument per buffer the kernel binds, so some
//! take many.
#![allow(clippy::too_many_arguments)]

use crate::error::{GruError, Result};
use crate::gpu::recorder::{Recorder, Slot};

const COMMON: &str = include_str!("../../shaders/common.wgsl");

/// Every shader file, with `common.wgsl` prepended as the host compiles it.
pub const SHADERS: [(&str, &str); 5] = [
    ("gemm.wgsl", include_str!("../../shaders/gemm.wgsl")),
    (
        "gru_forward.wgsl",
        include_str!("../../shaders/gru_forward.wgsl"),
    ),
    (
        "gru_backward.wgsl",
        include_str!("../../shaders/gru_backward.wgsl"),
    ),
    ("reduce.wgsl", include_str!("../../shaders/reduce.wgsl")),
    ("util.wgsl", include_str!("../../shaders/util.wgsl")),
];

/// The source of a shader as compiled: `common.wgsl` followed by the file.
pub fn shader_source(file: &str) -> Option<String> {
    SHADERS
        .iter()
        .find(|(f, _)| *f == file)
        .map(|(_, src)| format!("{COMMON}\n{src}"))
}

/// How a kernel's storage binding is used.
#[derive(Clone, Copy)]
enum Access {
    Read,
    ReadWrite,
}
use Access::{Read, ReadWrite};

/// One pipeline and its bind group layout: binding 0 is the parameter slot
/// (uniform, dynamic offset), bindings 1.. the storage buffers.
pub(crate) struct Kernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    n_storage: usize,
}

impl Kernel {
    fn new(
        device: &wgpu::Device,
        module: &wgpu::ShaderModule,
        entry: &str,
        params_size: u64,
        storage: &[Access],
        constants: &[(&str, f64)],
    ) -> Self {
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: true,
                min_binding_size: wgpu::BufferSize::new(params_size),
            },
            count: None,
        }];
        for (i, a) in storage.iter().enumerate() {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: i as u32 + 1,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: matches!(a, Read),
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(entry),
            entries: &entries,
        });
        let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(entry),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: Some(&pl),
            module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        Kernel {
            pipeline,
            layout,
            n_storage: storage.len(),
        }
    }

    /// A bind group of this kernel for the arena chunk of `slot` and `buffers`.
    fn bind<P>(&self, rec: &Recorder, chunk: usize, buffers: &[&wgpu::Buffer]) -> wgpu::BindGroup {
        debug_assert_eq!(buffers.len(), self.n_storage);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: rec.arena_binding::<P>(chunk),
        }];
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.as_entire_binding(),
            });
        }
        rec.ctx
            .inner
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &self.layout,
                entries: &entries,
            })
    }

    /// Records one dispatch with its own parameter slot and bind group.
    fn run<P: bytemuck::Pod>(
        &self,
        rec: &mut Recorder,
        params: &P,
        buffers: &[&wgpu::Buffer],
        wg: [u32; 3],
    ) -> Result<()> {
        check_groups(rec, wg)?;
        let slot = rec.slot(params);
        let bg = self.bind::<P>(rec, slot.chunk, buffers);
        rec.dispatch(&self.pipeline, &bg, slot, wg);
        Ok(())
    }
}

fn check_groups(rec: &Recorder, wg: [u32; 3]) -> Result<()> {
    let max = rec.ctx.inner.limits.max_compute_workgroups_per_dimension;
    if let Some(&w) = wg.iter().find(|&&w| w > max) {
        return Err(GruError::LimitExceeded {
            what: "a dispatch".into(),
            requested: w as u64,
            limit: max as u64,
            limit_name: "max_compute_workgroups_per_dimension",
        });
    }
    Ok(())
}

/// Workgroups `(x, y)` for `count` threads of a 1-D kernel of 64 threads per
/// workgroup, spilling into y so that x stays within the device's limit.
fn groups_1d(rec: &Recorder, count: usize) -> [u32; 3] {
    let max = rec
        .ctx
        .inner
        .limits
        .max_compute_workgroups_per_dimension
        .max(1) as usize;
    let n = count.div_ceil(64).max(1);
    let x = n.min(max);
    [x as u32, n.div_ceil(x) as u32, 1]
}

fn u32_of(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| GruError::LimitExceeded {
        what: what.to_string(),
        requested: v as u64,
        limit: u32::MAX as u64,
        limit_name: "32-bit indexing of the kernels",
    })
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GemmParams {
    m: u32,
    n: u32,
    k: u32,
    k_chunk: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    n_split: u32,
    a_off: u32,
    b_off: u32,
    c_off: u32,
    bias_off: u32,
    a_batch: u32,
    b_batch: u32,
    c_batch: u32,
    c_split: u32,
    flags: u32,
    _p: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct StepParams {
    t_len: u32,
    batch: u32,
    hidden: u32,
    dirs: u32,
    s: i32,
    has_bias: u32,
    _p: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ReduceParams {
    cols: u32,
    rows: u32,
    ld: u32,
    chunk: u32,
    in_off: u32,
    in_batch: u32,
    out_off: u32,
    out_batch: u32,
    out_ld: u32,
    _p: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct UtilParams {
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
    _p: [u32; 2],
}

/// A matrix product `C = op(A) op(B) (+ bias)`; see `shaders/gemm.wgsl`.
/// Offsets and strides are in floats.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub a_off: usize,
    pub b_off: usize,
    pub c_off: usize,
    pub bias_off: usize,
    pub batch: usize,
    pub a_batch: usize,
    pub b_batch: usize,
    pub c_batch: usize,
}

/// The buffers of the fused steps of one layer (see the shaders for shapes).
pub(crate) struct StepShape {
    pub t_len: usize,
    pub batch: usize,
    pub hidden: usize,
    pub dirs: usize,
    pub has_bias: bool,
}

/// Rows of a split-K chunk, and of a column-sum chunk.
const K_CHUNK: usize = 256;
/// Split-K partials are kept under this many floats.
const MAX_PARTIAL_FLOATS: usize = 1 << 24;

/// The pipelines of every kernel.
pub(crate) struct Kernels {
    gemm_nn: Kernel,
    gemm_nt: Kernel,
    gemm_tn: Kernel,
    fwd_step: Kernel,
    bwd_step: Kernel,
    sum_rows: Kernel,
    permute01: Kernel,
    transpose: Kernel,
    dropout: Kernel,
    /// Bound where a kernel reads an optional buffer that is absent.
    dummy: wgpu::Buffer,
}

impl Kernels {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        let module = |file: &str| {
            let src = shader_source(file).expect("a known shader file");
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(file),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            })
        };
        let gemm = module("gemm.wgsl");
        let fwd = module("gru_forward.wgsl");
        let bwd = module("gru_backward.wgsl");
        let reduce = module("reduce.wgsl");
        let util = module("util.wgsl");
        let gp = std::mem::size_of::<GemmParams>() as u64;
        let sp = std::mem::size_of::<StepParams>() as u64;
        let up = std::mem::size_of::<UtilParams>() as u64;
        let gemm_io = [Read, Read, Read, ReadWrite];
        let tf = |a: bool, b: bool| [("TRANS_A", a as u8 as f64), ("TRANS_B", b as u8 as f64)];
        Kernels {
            gemm_nn: Kernel::new(device, &gemm, "main", gp, &gemm_io, &tf(false, false)),
            gemm_nt: Kernel::new(device, &gemm, "main", gp, &gemm_io, &tf(false, true)),
            gemm_tn: Kernel::new(device, &gemm, "main", gp, &gemm_io, &tf(true, false)),
            fwd_step: Kernel::new(
                device,
                &fwd,
                "step",
                sp,
                &[Read, Read, Read, ReadWrite, ReadWrite, ReadWrite],
                &[],
            ),
            bwd_step: Kernel::new(
                device,
                &bwd,
                "step",
                sp,
                &[Read, Read, Read, Read, ReadWrite, ReadWrite, ReadWrite],
                &[],
            ),
            sum_rows: Kernel::new(
                device,
                &reduce,
                "sum_rows",
                std::mem::size_of::<ReduceParams>() as u64,
                &[Read, ReadWrite],
                &[],
            ),
            permute01: Kernel::new(device, &util, "permute01", up, &[Read, ReadWrite], &[]),
            transpose: Kernel::new(device, &util, "transpose", up, &[Read, ReadWrite], &[]),
            dropout: Kernel::new(device, &util, "dropout", up, &[Read, ReadWrite], &[]),
            dummy: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("gru-wgpu dummy"),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            }),
        }
    }

    /// `C = op(A) op(B) (+ bias)`. Long K ranges (the weight gradients, summed
    /// over all T·B rows) are split into chunks whose partial products are
    /// summed by [`sum_rows`](Self::sum_rows): more parallel work, shorter f32
    /// sums, and a fixed summation order.
    pub(crate) fn gemm(
        &self,
        rec: &mut Recorder,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        bias: Option<&wgpu::Buffer>,
        c: &wgpu::Buffer,
        g: &Gemm,
    ) -> Result<()> {
        let kernel = match (g.trans_a, g.trans_b) {
            (false, false) => &self.gemm_nn,
            (false, true) => &self.gemm_nt,
            (true, false) => &self.gemm_tn,
            (true, true) => unreachable!("no GRU product needs both operands transposed"),
        };
        let batch = g.batch.max(1);
        let mn = g.m * g.n * batch;
        let mut n_split = 1;
        if bias.is_none() && g.ldc == g.n && g.k > 2 * K_CHUNK {
            n_split =
                g.k.div_ceil(K_CHUNK)
                    .min(64)
                    .min((MAX_PARTIAL_FLOATS / mn.max(1)).max(1));
        }
        let k_chunk = g.k.div_ceil(n_split);
        let n_split = g.k.div_ceil(k_chunk);
        let wg = [
            u32_of("GEMM columns", g.n.div_ceil(64))?,
            u32_of("GEMM rows", g.m.div_ceil(32))?,
            u32_of("GEMM batch", batch * n_split)?,
        ];
        let mut p = GemmParams {
            m: u32_of("GEMM rows", g.m)?,
            n: u32_of("GEMM columns", g.n)?,
            k: u32_of("GEMM depth", g.k)?,
            k_chunk: k_chunk as u32,
            lda: u32_of("GEMM stride", g.lda)?,
            ldb: u32_of("GEMM stride", g.ldb)?,
            ldc: u32_of("GEMM stride", g.ldc)?,
            n_split: n_split as u32,
            a_off: u32_of("GEMM offset", g.a_off)?,
            b_off: u32_of("GEMM offset", g.b_off)?,
            c_off: u32_of("GEMM offset", g.c_off)?,
            bias_off: u32_of("GEMM offset", g.bias_off)?,
            a_batch: u32_of("GEMM stride", g.a_batch)?,
            b_batch: u32_of("GEMM stride", g.b_batch)?,
            c_batch: u32_of("GEMM stride", g.c_batch)?,
            c_split: 0,
            flags: bias.is_some() as u32,
            _p: [0; 3],
        };
        let bias_buf = bias.unwrap_or(&self.dummy);
        if n_split == 1 {
            return kernel.run(rec, &p, &[a, b, bias_buf, c], wg);
        }
        // Partials laid out (batch, split, M, N): batch z of C is the column sum of
        // an (n_split, M·N) matrix.
        let part_len = batch * n_split * g.m * g.n;
        let part = rec.ctx.storage("split-K partial products", part_len)?;
        p.c_off = 0;
        p.c_split = (g.m * g.n) as u32;
        p.c_batch = (n_split * g.m * g.n) as u32;
        kernel.run(rec, &p, &[a, b, bias_buf, part.buffer()], wg)?;
        self.sum_rows(
            rec,
            part.buffer(),
            c,
            RowSum {
                cols: g.m * g.n,
                rows: n_split,
                ld: g.m * g.n,
                in_off: 0,
                in_batch: n_split * g.m * g.n,
                out_off: g.c_off,
                out_batch: g.c_batch,
                batch,
            },
        )?;
        rec.keep(part);
        Ok(())
    }

    /// Column sums `out[z][n] = sum_r inp[z][r][n]`, in a fixed order; long
    /// columns are summed in chunks of rows, then the chunks' partials.
    pub(crate) fn sum_rows(
        &self,
        rec: &mut Recorder,
        inp: &wgpu::Buffer,
        out: &wgpu::Buffer,
        r: RowSum,
    ) -> Result<()> {
        let batch = r.batch.max(1);
        let cols_groups = u32_of("column sums", r.cols.div_ceil(64))?;
        let mut p = ReduceParams {
            cols: u32_of("column sums", r.cols)?,
            rows: u32_of("column sums", r.rows)?,
            ld: u32_of("column sums", r.ld)?,
            chunk: u32_of("column sums", r.rows.max(1))?,
            in_off: u32_of("column sums", r.in_off)?,
            in_batch: u32_of("column sums", r.in_batch)?,
            out_off: u32_of("column sums", r.out_off)?,
            out_batch: u32_of("column sums", r.out_batch)?,
            out_ld: 0,
            _p: [0; 3],
        };
        if r.rows <= 2 * K_CHUNK {
            return self
                .sum_rows
                .run(rec, &p, &[inp, out], [cols_groups, 1, batch as u32]);
        }
        let chunks = r.rows.div_ceil(K_CHUNK);
        let part = rec
            .ctx
            .storage("column-sum partials", batch * chunks * r.cols)?;
        let first = ReduceParams {
            chunk: K_CHUNK as u32,
            out_off: 0,
            out_batch: (chunks * r.cols) as u32,
            out_ld: r.cols as u32,
            ..p
        };
        self.sum_rows.run(
            rec,
            &first,
            &[inp, part.buffer()],
            [cols_groups, chunks as u32, batch as u32],
        )?;
        p.rows = chunks as u32;
        p.chunk = chunks as u32;
        p.ld = r.cols as u32;
        p.in_off = 0;
        p.in_batch = (chunks * r.cols) as u32;
        self.sum_rows.run(
            rec,
            &p,
            &[part.buffer(), out],
            [cols_groups, 1, batch as u32],
        )?;
        rec.keep(part);
        Ok(())
    }

    /// The forward time loop of one layer: T fused steps, both directions in
    /// each dispatch. One bind group and T parameter slots, made before the loop.
    pub(crate) fn forward_steps(
        &self,
        rec: &mut Recorder,
        sh: &StepShape,
        gi: &wgpu::Buffer,
        w_hh_t: &wgpu::Buffer,
        b_hh: Option<&wgpu::Buffer>,
        hs: &wgpu::Buffer,
        out: &wgpu::Buffer,
        gates: &wgpu::Buffer,
    ) -> Result<()> {
        let wg = [
            u32_of("hidden units", sh.hidden.div_ceil(64))?,
            u32_of("batch", sh.batch.div_ceil(4))?,
            sh.dirs as u32,
        ];
        check_groups(rec, wg)?;
        rec.reserve(sh.t_len);
        let mut p = StepParams {
            t_len: u32_of("sequence length", sh.t_len)?,
            batch: sh.batch as u32,
            hidden: sh.hidden as u32,
            dirs: sh.dirs as u32,
            s: 0,
            has_bias: sh.has_bias as u32,
            _p: [0; 2],
        };
        let slots: Vec<Slot> = (0..sh.t_len)
            .map(|s| {
                p.s = s as i32;
                rec.slot(&p)
            })
            .collect();
        let bg = self.fwd_step.bind::<StepParams>(
            rec,
            slots[0].chunk,
            &[gi, w_hh_t, b_hh.unwrap_or(&self.dummy), hs, out, gates],
        );
        for slot in slots {
            rec.dispatch(&self.fwd_step.pipeline, &bg, slot, wg);
        }
        Ok(())
    }

    /// The backward time loop of one layer: steps T-1 down to 0, then the step
    /// -1 that leaves dL/dh0 in slot 1 of `dh`.
    pub(crate) fn backward_steps(
        &self,
        rec: &mut Recorder,
        sh: &StepShape,
        d_out: &wgpu::Buffer,
        gates: &wgpu::Buffer,
        hs: &wgpu::Buffer,
        w_hh: &wgpu::Buffer,
        dgh: &wgpu::Buffer,
        dgi: &wgpu::Buffer,
        dh: &wgpu::Buffer,
    ) -> Result<()> {
        let wg = [
            u32_of("hidden units", sh.hidden.div_ceil(64))?,
            u32_of("batch", sh.batch.div_ceil(4))?,
            sh.dirs as u32,
        ];
        check_groups(rec, wg)?;
        rec.reserve(sh.t_len + 1);
        let mut p = StepParams {
            t_len: u32_of("sequence length", sh.t_len)?,
            batch: sh.batch as u32,
            hidden: sh.hidden as u32,
            dirs: sh.dirs as u32,
            s: 0,
            has_bias: sh.has_bias as u32,
            _p: [0; 2],
        };
        let slots: Vec<Slot> = (-1..sh.t_len as i32)
            .rev()
            .map(|s| {
                p.s = s;
                rec.slot(&p)
            })
            .collect();
        let bg = self.bwd_step.bind::<StepParams>(
            rec,
            slots[0].chunk,
            &[d_out, gates, hs, w_hh, dgh, dgi, dh],
        );
        for slot in slots {
            rec.dispatch(&self.bwd_step.pipeline, &bg, slot, wg);
        }
        Ok(())
    }

    /// `(A, B, C) -> (B, A, C)`: between `batch_first` and sequence-first.
    pub(crate) fn permute01(
        &self,
        rec: &mut Recorder,
        inp: &wgpu::Buffer,
        in_off: usize,
        out: &wgpu::Buffer,
        out_off: usize,
        a: usize,
        b: usize,
        c: usize,
    ) -> Result<()> {
        let count = a * b * c;
        let p = UtilParams {
            count: u32_of("permute", count)?,
            in_off: u32_of("permute", in_off)?,
            out_off: u32_of("permute", out_off)?,
            a: a as u32,
            b: b as u32,
            c: c as u32,
            ..Default::default()
        };
        let wg = groups_1d(rec, count);
        self.permute01.run(rec, &p, &[inp, out], wg)
    }

    /// `(Z, R, C) -> (Z, C, R)`.
    pub(crate) fn transpose(
        &self,
        rec: &mut Recorder,
        inp: &wgpu::Buffer,
        out: &wgpu::Buffer,
        z: usize,
        r: usize,
        c: usize,
    ) -> Result<()> {
        let count = z * r * c;
        let p = UtilParams {
            count: u32_of("transpose", count)?,
            a: r as u32,
            b: c as u32,
            ..Default::default()
        };
        let wg = groups_1d(rec, count);
        self.transpose.run(rec, &p, &[inp, out], wg)
    }

    /// `out = inp * mask / (1 - p)` with the mask of `crate::dropout`.
    pub(crate) fn dropout(
        &self,
        rec: &mut Recorder,
        inp: &wgpu::Buffer,
        out: &wgpu::Buffer,
        count: usize,
        seed: u32,
        layer: u32,
        prob: f32,
    ) -> Result<()> {
        let p = UtilParams {
            count: u32_of("dropout", count)?,
            seed,
            layer,
            threshold: crate::dropout::threshold(prob),
            scale: (1.0 / (1.0 - prob as f64)) as f32,
            ..Default::default()
        };
        let wg = groups_1d(rec, count);
        self.dropout.run(rec, &p, &[inp, out], wg)
    }
}

/// Arguments of [`Kernels::sum_rows`] (floats).
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
