//! The compute pipelines, built once per context, and one host function per
//! kernel that records its dispatches. The WGSL lives in `shaders/`.
//!
//! The host functions take one argument per buffer the kernel binds, so some
//! take many.
#![allow(clippy::too_many_arguments)]

use crate::error::{GruError, Result};
use crate::gpu::context::WINDOW_BYTES;
use crate::gpu::recorder::Recorder;

const COMMON: &str = include_str!("../../shaders/common.wgsl");

/// Every shader file, with `common.wgsl` prepended as the host compiles it.
pub const SHADERS: [(&str, &str); 7] = [
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
    ("optim.wgsl", include_str!("../../shaders/optim.wgsl")),
    ("head.wgsl", include_str!("../../shaders/head.wgsl")),
];

/// The source of a shader as compiled: `common.wgsl` followed by the file.
pub fn shader_source(file: &str) -> Option<String> {
    SHADERS
        .iter()
        .find(|(f, _)| *f == file)
        .map(|(_, src)| format!("{COMMON}\n{src}"))
}

/// What a binding of a kernel is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The parameter slot: uniform, dynamic offset into the recorder's arena.
    Params,
    /// A 64 KiB uniform window into a data buffer, at a dynamic offset.
    Window,
    /// A storage buffer, read only.
    Read,
    /// A storage buffer, read and written.
    ReadWrite,
}
use Kind::{Params, Read, ReadWrite, Window};

/// One pipeline and its bind group layout.
pub(crate) struct Kernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    bindings: Vec<(u32, Kind)>,
    params_size: u64,
}

impl Kernel {
    /// A kernel whose bindings are `bindings` (binding number and kind); the
    /// parameter struct has `params_size` bytes.
    fn new(
        device: &wgpu::Device,
        module: &wgpu::ShaderModule,
        entry: &str,
        params_size: u64,
        bindings: &[(u32, Kind)],
        constants: &[(&str, f64)],
    ) -> Self {
        let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
            .iter()
            .map(|&(binding, kind)| wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match kind {
                    Params => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: wgpu::BufferSize::new(params_size),
                    },
                    Window => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: wgpu::BufferSize::new(WINDOW_BYTES),
                    },
                    Read | ReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage {
                            read_only: kind == Read,
                        },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                },
                count: None,
            })
            .collect();
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
        let mut bindings = bindings.to_vec();
        bindings.sort_by_key(|b| b.0);
        Kernel {
            pipeline,
            layout,
            bindings,
            params_size,
        }
    }

    /// A bind group for the arena chunk `chunk` and `buffers`, one for each
    /// binding that is not the parameter slot, in binding order.
    fn bind(&self, rec: &Recorder, chunk: usize, buffers: &[&wgpu::Buffer]) -> wgpu::BindGroup {
        let mut it = buffers.iter();
        let entries: Vec<wgpu::BindGroupEntry> = self
            .bindings
            .iter()
            .map(|&(binding, kind)| wgpu::BindGroupEntry {
                binding,
                resource: match kind {
                    Params => rec.arena_binding(chunk, self.params_size),
                    Window => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: it.next().expect("a buffer for every binding"),
                        offset: 0,
                        size: wgpu::BufferSize::new(WINDOW_BYTES),
                    }),
                    Read | ReadWrite => it
                        .next()
                        .expect("a buffer for every binding")
                        .as_entire_binding(),
                },
            })
            .collect();
        debug_assert!(it.next().is_none(), "one buffer per binding");
        rec.ctx
            .inner
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &self.layout,
                entries: &entries,
            })
    }

    /// Records the dispatch of a grid `wg` (in pieces where it is larger than
    /// the device allows), each piece with its parameter slot, one bind group.
    fn run<P: Grid>(
        &self,
        rec: &mut Recorder,
        params: &P,
        buffers: &[&wgpu::Buffer],
        wg: [u32; 3],
    ) -> Result<()> {
        let parts = pieces(
            wg,
            rec.ctx.inner.limits.max_compute_workgroups_per_dimension,
        );
        rec.reserve(parts.len());
        let chunk = rec.current_chunk();
        let bg = self.bind(rec, chunk, buffers);
        self.dispatch_pieces(rec, &bg, chunk, *params, &parts)
    }

    /// Records a 1-D kernel over `count` threads (64 per workgroup).
    fn run_1d<P: Flat>(
        &self,
        rec: &mut Recorder,
        params: &P,
        buffers: &[&wgpu::Buffer],
        count: usize,
    ) -> Result<()> {
        let wg = groups_1d(rec, count);
        let mut p = *params;
        p.set_width(wg[0]);
        self.run(rec, &p, buffers, wg)
    }

    /// Records the pieces of one grid with a bind group made for the current
    /// arena chunk (whose slots must have been reserved).
    fn dispatch_pieces<P: Grid>(
        &self,
        rec: &mut Recorder,
        bg: &wgpu::BindGroup,
        chunk: usize,
        mut params: P,
        parts: &[([u32; 3], [u32; 3])],
    ) -> Result<()> {
        for &(off, size) in parts {
            params.at(off);
            let slot = rec.slot_in(&params, chunk)?;
            rec.dispatch(&self.pipeline, bg, &[slot.offset], size);
        }
        Ok(())
    }
}

/// Bindings `(0, Params), (1, kinds[0]), (2, kinds[1]), ...`.
fn numbered(kinds: &[Kind]) -> Vec<(u32, Kind)> {
    std::iter::once((0, Params))
        .chain(kinds.iter().enumerate().map(|(i, &k)| (i as u32 + 1, k)))
        .collect()
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
        unit: "elements",
    })
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
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
    gx: u32,
    gy: u32,
    gz: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct StepParams {
    t_len: u32,
    batch: u32,
    hidden: u32,
    dirs: u32,
    s: i32,
    has_bias: u32,
    kc: u32,
    win_len: u32,
    gx: u32,
    gy: u32,
    gz: u32,
    _p: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
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
    gx: u32,
    gy: u32,
    gz: u32,
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
    rs: u32,
    ks: u32,
    in_batch: u32,
    out_batch: u32,
    gx: u32,
    gy: u32,
    gz: u32,
    gtx: u32,
    _p: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct WinParams {
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
    _p: [u32; 3],
}

/// The floats of a uniform window.
pub(crate) const WINDOW_FLOATS: usize = (WINDOW_BYTES / 4) as usize;
/// The longest K chunk of the chunked layout.
const KC_MAX: usize = 256;

/// An operand of the window GEMM in the chunked layout of `util.wgsl`'s
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

    pub(crate) fn chunks(&self) -> usize {
        self.k.div_ceil(self.kc)
    }

    /// Floats the layout takes.
    pub(crate) fn len(&self) -> usize {
        self.chunks() * self.rows * self.kc
    }
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct OptimParams {
    count: u32,
    flags: u32,
    lr: f32,
    weight_decay: f32,
    momentum: f32,
    dampening: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    step_size: f32,
    bc2_sqrt: f32,
    max_norm: f32,
    out_off: u32,
    coef_at: u32,
    gx: u32,
    gy: u32,
    gz: u32,
    gtx: u32,
    _p: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct HeadParams {
    batch: u32,
    hidden: u32,
    gx: u32,
    _p: u32,
}

impl Grid for HeadParams {
    fn at(&mut self, off: [u32; 3]) {
        self.gx = off[0];
    }
}

/// Parameters that carry the offset of a piece of a grid (see [`pieces`]).
trait Grid: bytemuck::Pod {
    fn at(&mut self, off: [u32; 3]);
}

macro_rules! grid3 {
    ($($t:ty),*) => {$(
        impl Grid for $t {
            fn at(&mut self, off: [u32; 3]) {
                [self.gx, self.gy, self.gz] = off;
            }
        }
    )*};
}
grid3!(
    GemmParams,
    StepParams,
    ReduceParams,
    UtilParams,
    OptimParams
);

impl Grid for WinParams {
    fn at(&mut self, off: [u32; 3]) {
        [self.gx, self.gy] = [off[0], off[1]];
    }
}

/// Parameters of the 1-D kernels, which linearise the grid with its width.
trait Flat: Grid {
    fn set_width(&mut self, gtx: u32);
}

impl Flat for UtilParams {
    fn set_width(&mut self, gtx: u32) {
        self.gtx = gtx;
    }
}

impl Flat for OptimParams {
    fn set_width(&mut self, gtx: u32) {
        self.gtx = gtx;
    }
}

/// A grid of workgroups cut into pieces of at most `max` workgroups per
/// dimension: `(offset, size)` of each, in order. The kernels add the offset
/// to their workgroup id, so the pieces together run the whole grid.
pub(crate) fn pieces(wg: [u32; 3], max: u32) -> Vec<([u32; 3], [u32; 3])> {
    let max = max.max(1);
    let mut out = Vec::new();
    for z in (0..wg[2]).step_by(max as usize) {
        for y in (0..wg[1]).step_by(max as usize) {
            for x in (0..wg[0]).step_by(max as usize) {
                let size = [
                    (wg[0] - x).min(max),
                    (wg[1] - y).min(max),
                    (wg[2] - z).min(max),
                ];
                out.push(([x, y, z], size));
            }
        }
    }
    out
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
    /// The steps of the window path: the recurrent product precomputed.
    fwd_step_pre: Kernel,
    bwd_step_pre: Kernel,
    /// The persistent kernels, reading W_hh through the cache or (`_private`) from private memory.
    fwd_seq: Kernel,
    bwd_seq: Kernel,
    fwd_seq_private: Kernel,
    bwd_seq_private: Kernel,
    sum_rows: Kernel,
    gemm_windows: Kernel,
    chunk: Kernel,
    add: Kernel,
    permute01: Kernel,
    sgd: Kernel,
    adam: Kernel,
    head_forward: Kernel,
    head_mse: Kernel,
    head_backward: Kernel,
    head_param_grads: Kernel,
    sumsq: Kernel,
    clip_coef: Kernel,
    scale: Kernel,
    transpose: Kernel,
    dropout: Kernel,
    /// Bound where a kernel reads an optional buffer that is absent.
    dummy: wgpu::Buffer,
    /// Bound where a kernel writes a buffer that its mode does not use (a
    /// buffer cannot be bound both read-only and read-write in one dispatch).
    dummy_rw: wgpu::Buffer,
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
        let optim = module("optim.wgsl");
        let head = module("head.wgsl");
        let hp = std::mem::size_of::<HeadParams>() as u64;
        let head_io = numbered(&[
            Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite, ReadWrite,
        ]);
        let op = std::mem::size_of::<OptimParams>() as u64;
        let op_io = numbered(&[ReadWrite, ReadWrite, ReadWrite, ReadWrite]);
        let gp = std::mem::size_of::<GemmParams>() as u64;
        let sp = std::mem::size_of::<StepParams>() as u64;
        let up = std::mem::size_of::<UtilParams>() as u64;
        let gemm_io = [(0, Params), (1, Read), (2, Read), (3, Read), (4, ReadWrite)];
        let fwd_io = numbered(&[Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite]);
        let bwd_io = numbered(&[
            Read, Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite,
        ]);
        let tf = |a: bool, b: bool| [("TRANS_A", a as u8 as f64), ("TRANS_B", b as u8 as f64)];
        Kernels {
            gemm_nn: Kernel::new(device, &gemm, "main", gp, &gemm_io, &tf(false, false)),
            gemm_nt: Kernel::new(device, &gemm, "main", gp, &gemm_io, &tf(false, true)),
            gemm_tn: Kernel::new(device, &gemm, "main", gp, &gemm_io, &tf(true, false)),
            fwd_step: Kernel::new(device, &fwd, "step", sp, &fwd_io, &[("PRECOMPUTED", 0.0)]),
            bwd_step: Kernel::new(device, &bwd, "step", sp, &bwd_io, &[("PRECOMPUTED", 0.0)]),
            fwd_step_pre: Kernel::new(device, &fwd, "step", sp, &fwd_io, &[("PRECOMPUTED", 1.0)]),
            bwd_step_pre: Kernel::new(device, &bwd, "step", sp, &bwd_io, &[("PRECOMPUTED", 1.0)]),
            fwd_seq: Kernel::new(device, &fwd, "sequence", sp, &fwd_io, &[("W_PRIVATE", 0.0)]),
            bwd_seq: Kernel::new(device, &bwd, "sequence", sp, &bwd_io, &[("W_PRIVATE", 0.0)]),
            fwd_seq_private: Kernel::new(
                device,
                &fwd,
                "sequence",
                sp,
                &fwd_io,
                &[("W_PRIVATE", 1.0)],
            ),
            bwd_seq_private: Kernel::new(
                device,
                &bwd,
                "sequence",
                sp,
                &bwd_io,
                &[("W_PRIVATE", 1.0)],
            ),
            sum_rows: Kernel::new(
                device,
                &reduce,
                "sum_rows",
                std::mem::size_of::<ReduceParams>() as u64,
                &numbered(&[Read, ReadWrite]),
                &[],
            ),
            gemm_windows: Kernel::new(
                device,
                &gemm,
                "windows",
                std::mem::size_of::<WinParams>() as u64,
                &[
                    (3, Read),
                    (4, ReadWrite),
                    (5, Params),
                    (6, Window),
                    (7, Window),
                ],
                &[],
            ),
            chunk: Kernel::new(
                device,
                &util,
                "chunk",
                up,
                &numbered(&[Read, ReadWrite]),
                &[],
            ),
            add: Kernel::new(device, &util, "add", up, &numbered(&[Read, ReadWrite]), &[]),
            head_forward: Kernel::new(device, &head, "forward", hp, &head_io, &[]),
            head_mse: Kernel::new(device, &head, "mse", hp, &head_io, &[]),
            head_backward: Kernel::new(device, &head, "backward", hp, &head_io, &[]),
            head_param_grads: Kernel::new(device, &head, "param_grads", hp, &head_io, &[]),
            sgd: Kernel::new(device, &optim, "sgd", op, &op_io, &[]),
            adam: Kernel::new(device, &optim, "adam", op, &op_io, &[]),
            sumsq: Kernel::new(device, &optim, "sumsq", op, &op_io, &[]),
            clip_coef: Kernel::new(device, &optim, "clip_coef", op, &op_io, &[]),
            scale: Kernel::new(device, &optim, "scale", op, &op_io, &[]),
            permute01: Kernel::new(
                device,
                &util,
                "permute01",
                up,
                &numbered(&[Read, ReadWrite]),
                &[],
            ),
            transpose: Kernel::new(
                device,
                &util,
                "transpose",
                up,
                &numbered(&[Read, ReadWrite]),
                &[],
            ),
            dropout: Kernel::new(
                device,
                &util,
                "dropout",
                up,
                &numbered(&[Read, ReadWrite]),
                &[],
            ),
            dummy: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("gru-wgpu dummy"),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            }),
            dummy_rw: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("gru-wgpu dummy (written)"),
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
            ..Default::default()
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
            ..Default::default()
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

    fn step_params(sh: &StepShape, win: Option<&StepWindows>) -> Result<StepParams> {
        Ok(StepParams {
            t_len: u32_of("sequence length", sh.t_len)?,
            batch: u32_of("batch", sh.batch)?,
            hidden: u32_of("hidden size", sh.hidden)?,
            dirs: sh.dirs as u32,
            s: 0,
            has_bias: sh.has_bias as u32,
            kc: win.map_or(0, |w| w.state.kc as u32),
            win_len: u32_of("window state", win.map_or(0, |w| w.state.len()))?,
            ..Default::default()
        })
    }

    /// The pieces of the grid of a step: (ceil(H/64), ceil(B/4), D) workgroups.
    fn step_pieces(rec: &Recorder, sh: &StepShape) -> Result<Vec<([u32; 3], [u32; 3])>> {
        let wg = [
            u32_of("hidden units", sh.hidden.div_ceil(64))?,
            u32_of("batch", sh.batch.div_ceil(4))?,
            sh.dirs as u32,
        ];
        Ok(pieces(
            wg,
            rec.ctx.inner.limits.max_compute_workgroups_per_dimension,
        ))
    }

    /// The forward time loop of one layer: T fused steps, both directions in
    /// each dispatch. With `win` (the window path), each step is first the
    /// product `gh = h · W_hhᵀ + b_hh` of each direction by the window GEMM,
    /// then the step. Bind groups and parameter slots are made before the loop.
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
        win: Option<&StepWindows>,
    ) -> Result<()> {
        let parts = Self::step_pieces(rec, sh)?;
        let mut p = Self::step_params(sh, win)?;
        let bias = b_hh.unwrap_or(&self.dummy);
        let Some(w) = win else {
            rec.reserve(sh.t_len * parts.len());
            let chunk = rec.current_chunk();
            let bg = self.fwd_step.bind(
                rec,
                chunk,
                &[gi, w_hh_t, bias, hs, out, gates, &self.dummy_rw],
            );
            for s in 0..sh.t_len {
                p.s = s as i32;
                self.fwd_step.dispatch_pieces(rec, &bg, chunk, p, &parts)?;
            }
            return Ok(());
        };
        let per_product = windows_dispatches(
            &w.state,
            &w.weights,
            rec.ctx.inner.limits.max_compute_workgroups_per_dimension,
        );
        rec.reserve(sh.t_len * (sh.dirs * per_product + parts.len()));
        let chunk = rec.current_chunk();
        let bg_step = self.fwd_step_pre.bind(
            rec,
            chunk,
            &[gi, w.product, bias, hs, out, gates, w.state_buf],
        );
        let bg_gemm =
            self.gemm_windows
                .bind(rec, chunk, &[bias, w.product, w.state_buf, w.weights_buf]);
        let (b, h3) = (sh.batch, 3 * sh.hidden);
        for s in 0..sh.t_len {
            for d in 0..sh.dirs {
                let state = Chunked {
                    off: ((s % 2) * sh.dirs + d) * w.state.len(),
                    ..w.state
                };
                let weights = Chunked {
                    off: d * w.weights.len(),
                    ..w.weights
                };
                let bias = b_hh.map(|_| d * h3);
                self.record_windows(rec, &bg_gemm, chunk, &state, &weights, bias, d * b * h3, h3)?;
            }
            p.s = s as i32;
            self.fwd_step_pre
                .dispatch_pieces(rec, &bg_step, chunk, p, &parts)?;
        }
        Ok(())
    }

    /// The backward time loop of one layer: steps T-1 down to 0, then the step
    /// -1 that leaves dL/dh0 in slot 1 of `dh`. With `win`, each step but the
    /// first is preceded by the products `dG_h,{s+1} · W_hh` of each direction.
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
        win: Option<&StepWindows>,
    ) -> Result<()> {
        let parts = Self::step_pieces(rec, sh)?;
        let mut p = Self::step_params(sh, win)?;
        let t_len = sh.t_len as i32;
        let Some(w) = win else {
            rec.reserve((sh.t_len + 1) * parts.len());
            let chunk = rec.current_chunk();
            let bg = self.bwd_step.bind(
                rec,
                chunk,
                &[d_out, gates, hs, w_hh, dgh, dgi, dh, &self.dummy_rw],
            );
            for s in (-1..t_len).rev() {
                p.s = s;
                self.bwd_step.dispatch_pieces(rec, &bg, chunk, p, &parts)?;
            }
            return Ok(());
        };
        let per_product = windows_dispatches(
            &w.state,
            &w.weights,
            rec.ctx.inner.limits.max_compute_workgroups_per_dimension,
        );
        rec.reserve((sh.t_len + 1) * (sh.dirs * per_product + parts.len()));
        let chunk = rec.current_chunk();
        let bg_step = self.bwd_step_pre.bind(
            rec,
            chunk,
            &[d_out, gates, hs, w.product, dgh, dgi, dh, w.state_buf],
        );
        let bg_gemm = self.gemm_windows.bind(
            rec,
            chunk,
            &[&self.dummy, w.product, w.state_buf, w.weights_buf],
        );
        let (b, h) = (sh.batch, sh.hidden);
        for s in (-1..t_len).rev() {
            if s < t_len - 1 {
                let parity = ((s + 1) % 2) as usize;
                for d in 0..sh.dirs {
                    let state = Chunked {
                        off: (parity * sh.dirs + d) * w.state.len(),
                        ..w.state
                    };
                    let weights = Chunked {
                        off: d * w.weights.len(),
                        ..w.weights
                    };
                    self.record_windows(
                        rec,
                        &bg_gemm,
                        chunk,
                        &state,
                        &weights,
                        None,
                        d * b * h,
                        h,
                    )?;
                }
            }
            p.s = s;
            self.bwd_step_pre
                .dispatch_pieces(rec, &bg_step, chunk, p, &parts)?;
        }
        Ok(())
    }

    /// The forward time loop of one layer in one dispatch: workgroups of
    /// `SEQ_ROWS` batch rows by direction (see `gru_forward.wgsl`'s `sequence`).
    pub(crate) fn forward_sequence(
        &self,
        rec: &mut Recorder,
        sh: &StepShape,
        gi: &wgpu::Buffer,
        w_hh_t: &wgpu::Buffer,
        b_hh: Option<&wgpu::Buffer>,
        hs: &wgpu::Buffer,
        out: &wgpu::Buffer,
        gates: &wgpu::Buffer,
        w_private: bool,
    ) -> Result<()> {
        let kernel = if w_private {
            &self.fwd_seq_private
        } else {
            &self.fwd_seq
        };
        let mut p = Self::step_params(sh, None)?;
        p.kc = SEQ_ROWS as u32;
        let wg = [
            u32_of("batch", sh.batch.div_ceil(SEQ_ROWS))?,
            sh.dirs as u32,
            1,
        ];
        let bias = b_hh.unwrap_or(&self.dummy);
        kernel.run(
            rec,
            &p,
            &[gi, w_hh_t, bias, hs, out, gates, &self.dummy_rw],
            wg,
        )
    }

    /// The backward time loop of one layer in one dispatch (steps T-1 to -1).
    pub(crate) fn backward_sequence(
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
        w_private: bool,
    ) -> Result<()> {
        let kernel = if w_private {
            &self.bwd_seq_private
        } else {
            &self.bwd_seq
        };
        let mut p = Self::step_params(sh, None)?;
        p.kc = SEQ_ROWS as u32;
        let wg = [
            u32_of("batch", sh.batch.div_ceil(SEQ_ROWS))?,
            sh.dirs as u32,
            1,
        ];
        kernel.run(
            rec,
            &p,
            &[d_out, gates, hs, w_hh, dgh, dgi, dh, &self.dummy_rw],
            wg,
        )
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
        self.permute01.run_1d(rec, &p, &[inp, out], count)
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
        self.transpose.run_1d(rec, &p, &[inp, out], count)
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
        self.dropout.run_1d(rec, &p, &[inp, out], count)
    }

    /// Writes the logical (rows, k) matrix `M(r, k) = inp[in_off + z*in_batch + r*rs + k*ks]`
    /// into the chunked layout `dst` (plus `z * out_batch`), for `batch` matrices.
    pub(crate) fn chunk(
        &self,
        rec: &mut Recorder,
        inp: &wgpu::Buffer,
        in_off: usize,
        rs: usize,
        ks: usize,
        in_batch: usize,
        out: &wgpu::Buffer,
        dst: &Chunked,
        out_batch: usize,
        batch: usize,
    ) -> Result<()> {
        let count = dst.len();
        let p = UtilParams {
            count: u32_of("chunked copy", count)?,
            in_off: u32_of("chunked copy", in_off)?,
            out_off: u32_of("chunked copy", dst.off)?,
            a: dst.rows as u32,
            b: u32_of("chunked copy", dst.k)?,
            c: dst.kc as u32,
            rs: u32_of("chunked copy", rs)?,
            ks: u32_of("chunked copy", ks)?,
            in_batch: u32_of("chunked copy", in_batch)?,
            out_batch: u32_of("chunked copy", out_batch)?,
            ..Default::default()
        };
        let mut wg = groups_1d(rec, count);
        wg[2] = u32_of("chunked copy", batch)?;
        let p = UtilParams { gtx: wg[0], ..p };
        self.chunk.run(rec, &p, &[inp, out], wg)
    }

    /// `C[m][n] = sum_k A(m, k) B(n, k) (+ bias[n])` with both operands in the
    /// chunked layout, read through uniform windows (see `shaders/gemm.wgsl`):
    /// one dispatch per K chunk and pair of windows, in a fixed order, the
    /// chunks after the first accumulating into C.
    pub(crate) fn gemm_windows(
        &self,
        rec: &mut Recorder,
        a: &wgpu::Buffer,
        la: &Chunked,
        b: &wgpu::Buffer,
        lb: &Chunked,
        bias: Option<(&wgpu::Buffer, usize)>,
        c: &wgpu::Buffer,
        c_off: usize,
        ldc: usize,
    ) -> Result<()> {
        rec.reserve(windows_dispatches(
            la,
            lb,
            rec.ctx.inner.limits.max_compute_workgroups_per_dimension,
        ));
        let chunk = rec.current_chunk();
        let bias_buf = bias.map_or(&self.dummy, |(b, _)| b);
        let bg = self.gemm_windows.bind(rec, chunk, &[bias_buf, c, a, b]);
        self.record_windows(rec, &bg, chunk, la, lb, bias.map(|(_, o)| o), c_off, ldc)
    }

    /// Records the dispatches of one window product with a bind group made
    /// for arena chunk `chunk` (whose slots must have been reserved).
    fn record_windows(
        &self,
        rec: &mut Recorder,
        bg: &wgpu::BindGroup,
        chunk: usize,
        la: &Chunked,
        lb: &Chunked,
        bias_off: Option<usize>,
        c_off: usize,
        ldc: usize,
    ) -> Result<()> {
        debug_assert_eq!((la.kc, la.k), (lb.kc, lb.k));
        let kc = la.kc;
        let rows_per_window = WINDOW_FLOATS / kc;
        let (m, n) = (la.rows, lb.rows);
        for ch in 0..la.chunks() {
            for n0 in (0..n).step_by(rows_per_window) {
                for m0 in (0..m).step_by(rows_per_window) {
                    let p = WinParams {
                        ra: (m - m0).min(rows_per_window) as u32,
                        rb: (n - n0).min(rows_per_window) as u32,
                        kc4: (kc / 4) as u32,
                        m0: u32_of("GEMM rows", m0)?,
                        n0: u32_of("GEMM columns", n0)?,
                        m: u32_of("GEMM rows", m)?,
                        n: u32_of("GEMM columns", n)?,
                        ldc: u32_of("GEMM stride", ldc)?,
                        c_off: u32_of("GEMM offset", c_off)?,
                        bias_off: u32_of("GEMM offset", bias_off.unwrap_or(0))?,
                        flags: (ch == 0 && bias_off.is_some()) as u32 | (((ch > 0) as u32) << 1),
                        ..Default::default()
                    };
                    let wg = [
                        u32_of("GEMM columns", (p.rb as usize).div_ceil(64))?,
                        u32_of("GEMM rows", (p.ra as usize).div_ceil(8))?,
                        1,
                    ];
                    let a_off = u32_of("window offset", (la.off + (ch * m + m0) * kc) * 4)?;
                    let b_off = u32_of("window offset", (lb.off + (ch * n + n0) * kc) * 4)?;
                    let max = rec
                        .ctx
                        .inner
                        .limits
                        .max_compute_workgroups_per_dimension
                        .max(1);
                    for gy in (0..wg[1]).step_by(max as usize) {
                        for gx in (0..wg[0]).step_by(max as usize) {
                            let slot = rec.slot_in(&WinParams { gx, gy, ..p }, chunk)?;
                            let size = [(wg[0] - gx).min(max), (wg[1] - gy).min(max), 1];
                            rec.dispatch(
                                &self.gemm_windows.pipeline,
                                bg,
                                &[slot.offset, a_off, b_off],
                                size,
                            );
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The regression head of `head.wgsl` on `h` `(B, H)` with parameters `p`
    /// `(H + 1)` and targets `goal` `(B)`: predictions `y`, the loss, and the
    /// gradients `dh` `(B, H)` and `dp` `(H + 1)`; `dy` is scratch `(B)`.
    pub(crate) fn head(
        &self,
        rec: &mut Recorder,
        batch: usize,
        hidden: usize,
        h: &wgpu::Buffer,
        p: &wgpu::Buffer,
        goal: &wgpu::Buffer,
        out: [&wgpu::Buffer; 5],
    ) -> Result<()> {
        let prm = HeadParams {
            batch: u32_of("batch", batch)?,
            hidden: u32_of("hidden size", hidden)?,
            ..Default::default()
        };
        let [y, dy, loss, dh, dp] = out;
        let bufs = [h, p, goal, y, dy, loss, dh, dp];
        let groups = |n: usize| -> Result<[u32; 3]> { Ok([u32_of("head", n.div_ceil(64))?, 1, 1]) };
        self.head_forward.run(rec, &prm, &bufs, groups(batch)?)?;
        self.head_mse.run(rec, &prm, &bufs, [1, 1, 1])?;
        self.head_backward
            .run(rec, &prm, &bufs, groups(batch * hidden)?)?;
        self.head_param_grads
            .run(rec, &prm, &bufs, groups(hidden + 1)?)
    }

    /// `out[..len] += inp[..len]`.
    pub(crate) fn add(
        &self,
        rec: &mut Recorder,
        inp: &wgpu::Buffer,
        out: &wgpu::Buffer,
        len: usize,
    ) -> Result<()> {
        let p = UtilParams {
            count: u32_of("accumulation", len)?,
            ..Default::default()
        };
        self.add.run_1d(rec, &p, &[inp, out], len)
    }

    /// One SGD step on a tensor of `len` floats (see `optim.wgsl`).
    pub(crate) fn sgd(
        &self,
        rec: &mut Recorder,
        o: &crate::optim::Sgd,
        first: bool,
        param: &wgpu::Buffer,
        grad: &wgpu::Buffer,
        buf: &wgpu::Buffer,
        len: usize,
    ) -> Result<()> {
        let p = OptimParams {
            count: u32_of("parameter", len)?,
            flags: first as u32 | ((o.nesterov as u32) << 1),
            lr: o.lr,
            weight_decay: o.weight_decay,
            momentum: o.momentum,
            dampening: o.dampening,
            ..Default::default()
        };
        self.sgd
            .run_1d(rec, &p, &[param, grad, buf, &self.dummy_rw], len)
    }

    /// One Adam or AdamW step `t` (from 1) on a tensor of `len` floats.
    pub(crate) fn adam(
        &self,
        rec: &mut Recorder,
        o: &crate::optim::Adam,
        t: u64,
        param: &wgpu::Buffer,
        grad: &wgpu::Buffer,
        m: &wgpu::Buffer,
        v: &wgpu::Buffer,
        len: usize,
    ) -> Result<()> {
        let (step_size, bc2_sqrt) = o.corrections(t);
        let p = OptimParams {
            count: u32_of("parameter", len)?,
            flags: (o.decoupled as u32) << 2,
            lr: o.lr,
            weight_decay: o.weight_decay,
            beta1: o.beta1,
            beta2: o.beta2,
            eps: o.eps,
            step_size: step_size as f32,
            bc2_sqrt: bc2_sqrt as f32,
            ..Default::default()
        };
        self.adam.run_1d(rec, &p, &[param, grad, m, v], len)
    }

    /// `norms[at] = sum of grad^2` over `len` floats, in a fixed order: sums of
    /// 256-element chunks, then the chunks summed by `sum_rows`.
    pub(crate) fn sumsq(
        &self,
        rec: &mut Recorder,
        grad: &wgpu::Buffer,
        len: usize,
        norms: &wgpu::Buffer,
        at: usize,
    ) -> Result<()> {
        let chunks = len.div_ceil(256).max(1);
        let part = rec.ctx.storage("sum-of-squares partials", chunks)?;
        let p = OptimParams {
            count: u32_of("gradient", len)?,
            ..Default::default()
        };
        self.sumsq.run_1d(
            rec,
            &p,
            &[&self.dummy_rw, grad, &self.dummy_rw, part.buffer()],
            chunks,
        )?;
        self.sum_rows(
            rec,
            part.buffer(),
            norms,
            RowSum {
                cols: 1,
                rows: chunks,
                ld: 1,
                in_off: 0,
                in_batch: 0,
                out_off: at,
                out_batch: 0,
                batch: 1,
            },
        )?;
        rec.keep(part);
        Ok(())
    }

    /// From `n` squared norms in `norms`, the total norm at `norms[n]` and the
    /// clipping coefficient at `norms[n + 1]`.
    pub(crate) fn clip_coef(
        &self,
        rec: &mut Recorder,
        norms: &wgpu::Buffer,
        n: usize,
        max_norm: f32,
    ) -> Result<()> {
        let p = OptimParams {
            count: u32_of("tensors", n)?,
            max_norm,
            ..Default::default()
        };
        self.clip_coef.run(
            rec,
            &p,
            &[&self.dummy_rw, &self.dummy_rw, &self.dummy_rw, norms],
            [1, 1, 1],
        )
    }

    /// `grad *= norms[coef_at]` over `len` floats.
    pub(crate) fn scale(
        &self,
        rec: &mut Recorder,
        grad: &wgpu::Buffer,
        len: usize,
        norms: &wgpu::Buffer,
        coef_at: usize,
    ) -> Result<()> {
        let p = OptimParams {
            count: u32_of("gradient", len)?,
            coef_at: coef_at as u32,
            ..Default::default()
        };
        self.scale
            .run_1d(rec, &p, &[&self.dummy_rw, grad, &self.dummy_rw, norms], len)
    }
}

/// Batch rows per workgroup of the persistent kernels (`SEQ_ROWS` in the shaders).
pub(crate) const SEQ_ROWS: usize = 4;
/// The largest hidden size of the persistent kernels (`SEQ_HMAX`).
pub(crate) const SEQ_HMAX: usize = 256;

/// Whether the persistent kernels can keep a thread's columns of W_hh in
/// private memory: `3·ceil(H/64)·H <= 768` floats.
pub(crate) fn seq_private_fits(hidden: usize) -> bool {
    3 * hidden.div_ceil(64) * hidden <= 768
}

/// The number of dispatches of one window product on a device that allows
/// `max` workgroups per dimension.
pub(crate) fn windows_dispatches(la: &Chunked, lb: &Chunked, max: u32) -> usize {
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
