//! The pipeline layer: a kernel (an entry point of a shader with its bind
//! group layout), built lazily on first use and cached by shader, entry point
//! and override constants; grids larger than the device allows, split into
//! pieces. It knows the device layer and nothing above it.

mod unroll;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::error::{GruError, Result};
use crate::gpu::device::Device;

/// `common.wgsl`: the functions every shader shares; the host prepends it to
/// each shader before compiling it.
pub(crate) const COMMON: &str = include_str!("../../shaders/common.wgsl");

/// The storage types a shader's buffers are declared with: WGSL aliases
/// that the host defines before compiling it. `S` is the precision of the
/// model's weights and activations (`f32`, or `f16` under
/// [`Precision::F16`](crate::Precision)); `SA`, `SB` (the GEMM's operands)
/// and `SI`, `SO` (the input and output of the data-movement kernels) are
/// each `f32` or `S`. Everything is computed and accumulated in f32: a
/// shader converts what it loads with `f32(..)` and what it stores with
/// the buffer's type.
pub(crate) const TYPE_ALIASES: [&str; 6] = ["S", "SW", "SA", "SB", "SI", "SO"];

/// The storage-type sets the kernels are built with (see [`TYPE_ALIASES`]).
pub(crate) mod types {
    type Set = &'static [(&'static str, &'static str)];
    /// The step kernels of an f16 model: weights, states, outputs and tape in f16.
    pub(crate) const STEP_F16: Set = &[("S", "f16"), ("SW", "f16")];
    /// The same where binding `SW` holds a precomputed f32 product instead of weights.
    pub(crate) const STEP_F16_PRECOMPUTED: Set = &[("S", "f16")];

    /// A GEMM whose operands A and B are f16 where `a16`, `b16` (the bias is of B's type).
    pub(crate) fn gemm(a16: bool, b16: bool) -> Set {
        match (a16, b16) {
            (false, false) => &[],
            (true, false) => &[("SA", "f16")],
            (false, true) => &[("SB", "f16")],
            (true, true) => &[("SA", "f16"), ("SB", "f16")],
        }
    }

    /// A data-movement kernel whose input and output are f16 where `in16`, `out16`.
    pub(crate) fn io(in16: bool, out16: bool) -> Set {
        match (in16, out16) {
            (false, false) => &[],
            (true, false) => &[("SI", "f16")],
            (false, true) => &[("SO", "f16")],
            (true, true) => &[("SI", "f16"), ("SO", "f16")],
        }
    }
}

/// `gemm_shared.wgsl`: what `gemm.wgsl` and `gemm_subgroup.wgsl` share.
pub(crate) const GEMM_SHARED: &str = include_str!("../../shaders/gemm_shared.wgsl");
/// `gru_shared.wgsl`: what `gru_forward.wgsl` and `gru_backward.wgsl` share.
pub(crate) const GRU_SHARED: &str = include_str!("../../shaders/gru_shared.wgsl");

/// The shared part a shader file is composed with (after it: naga wants the
/// unnamed overrides of arrays sized by override constants, as in
/// `gemm_shared.wgsl`, after every named override, which the files declare).
fn shared_part(file: &str) -> &'static str {
    match file {
        "gemm.wgsl" | "gemm_subgroup.wgsl" => GEMM_SHARED,
        "gru_forward.wgsl" | "gru_backward.wgsl" => GRU_SHARED,
        _ => "",
    }
}

/// Defines the constants the host and the shaders share, once: each is a
/// `usize` of [`shared`] for the host, and [`compose`] emits it before every
/// shader as `const NAME: u32 = V;`, so that the shaders use the name
/// without defining it.
macro_rules! shared_consts {
    ($($(#[doc = $doc:literal])* $name:ident = $v:expr;)*) => {
        /// The constants of the shaders that the host reads too (see [`compose`]).
        pub(crate) mod shared {
            $($(#[doc = $doc])* pub(crate) const $name: usize = $v;)*
        }
        /// `(name, value)` of each constant of [`shared`].
        pub(crate) const SHARED_CONSTS: &[(&str, usize)] = &[$((stringify!($name), shared::$name)),*];
    };
}

shared_consts! {
    /// Step flag (`common.wgsl`): the step runs (t < the row's length).
    F_VALID = 1;
    /// Step flag: the forward direction's state is 0 before the step.
    F_FWD_ZERO = 2;
    /// Step flag: the reverse direction's state is 0 before the step.
    F_REV_ZERO = 4;
    /// vec4s of one uniform window of `windows.wgsl` (64 KiB).
    WINDOW_VEC4S = 4096;
    /// Batch rows per workgroup of the persistent kernels (`sequence`).
    SEQ_ROWS = 4;
    /// The largest hidden size of the persistent kernels (`sequence`).
    SEQ_HMAX = 256;
    /// The floats of `W_hh` a thread of `sequence` keeps in private memory
    /// with `W_PRIVATE` (`wp`): `3·ceil(H/64)·H` at most.
    SEQ_PRIVATE = 768;
    /// Hidden units per workgroup of `splitk`.
    SK_UNITS = 8;
    /// Batch rows per workgroup of `splitk`.
    SK_ROWS = 4;
    /// Threads per workgroup of `splitk`.
    SK_THREADS = 256;
    /// Rows of `W_hhᵀ` per thread in `resident` (`rw`: 3·RES_KMAX floats).
    RES_KMAX = 32;
    /// The largest hidden size of `resident` (`res_h`).
    RES_HMAX = 256;
    /// The largest workgroup size of `resident` (`RES_WG`; `res_red`).
    RES_WG_MAX = 1024;
}

/// The source of a shader as compiled: `enable f16;` where a type is f16,
/// the aliases of [`TYPE_ALIASES`] (`f32` unless `types` says otherwise),
/// the constants of [`SHARED_CONSTS`], `common.wgsl`, the file, and the
/// part it shares with another (`gemm_shared.wgsl`, `gru_shared.wgsl`: see
/// [`shared_part`]), with the loops marked `// unroll` written out
/// ([`unroll::unroll`]).
#[cfg(any(test, feature = "test-hooks"))]
pub(crate) fn compose(file: &str, body: &str, types: &[(&str, &str)]) -> String {
    compose_for(file, body, types, true)
}

/// [`compose`], with the `// unroll` loops written out only where `unroll`
/// (a device's choice: `Device::unroll`).
pub(crate) fn compose_for(file: &str, body: &str, types: &[(&str, &str)], unroll: bool) -> String {
    let mut head = String::new();
    if types.iter().any(|&(_, t)| t == "f16") {
        head.push_str("enable f16;\n");
    }
    for name in TYPE_ALIASES {
        let t = types
            .iter()
            .find(|&&(n, _)| n == name)
            .map_or("f32", |&(_, t)| t);
        head.push_str(&format!("alias {name} = {t};\n"));
    }
    for (name, v) in SHARED_CONSTS {
        head.push_str(&format!("const {name}: u32 = {v}u;\n"));
    }
    let src = format!("{head}{COMMON}\n{body}\n{}", shared_part(file));
    match unroll {
        true => unroll::unroll(&src),
        false => src,
    }
}

/// What a binding of a kernel is.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// The parameter slot: uniform, dynamic offset into the recorder's arena.
    Params,
    /// A uniform window of this many bytes into a data buffer, at a dynamic
    /// offset (the window products of `windows.wgsl`).
    Window(u64),
    /// A storage buffer, read only.
    Read,
    /// A storage buffer, read and written.
    ReadWrite,
}

/// The bindings of a kernel whose parameter slot is binding 0 and whose
/// other bindings follow it in order: `bindings![Read, ReadWrite]` is
/// `&[(0, Params), (1, Read), (2, ReadWrite)]`.
macro_rules! bindings {
    ($($kind:ident),* $(,)?) => {
        $crate::gpu::pipeline::bindings!(@n 1u32; [(0u32, $crate::gpu::pipeline::Binding::Params)]; $($kind),*)
    };
    (@n $n:expr; [$($out:expr),*]; $kind:ident $(, $rest:ident)*) => {
        $crate::gpu::pipeline::bindings!(@n $n + 1; [$($out,)* ($n, $crate::gpu::pipeline::Binding::$kind)]; $($rest),*)
    };
    (@n $n:expr; [$($out:expr),*];) => {
        &[$($out),*]
    };
}
pub(crate) use bindings;

/// Everything needed to build a kernel: the shader (its file name and
/// source), the entry point, the size of its parameter struct, its bindings
/// `(number, kind)`, and the values of its override constants.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KernelSpec {
    pub file: &'static str,
    pub source: &'static str,
    pub entry: &'static str,
    pub params_size: usize,
    pub bindings: &'static [(u32, Binding)],
    pub constants: &'static [(&'static str, f64)],
    /// The storage types of [`TYPE_ALIASES`] that are not `f32`.
    pub types: &'static [(&'static str, &'static str)],
}

impl KernelSpec {
    /// The kernel `entry` of the shader `file` (`source`), its parameters a
    /// `P`, with these bindings, no override constants and f32 storage.
    pub(crate) const fn new<P>(
        (file, source): (&'static str, &'static str),
        entry: &'static str,
        bindings: &'static [(u32, Binding)],
    ) -> Self {
        KernelSpec {
            file,
            source,
            entry,
            params_size: std::mem::size_of::<P>(),
            bindings,
            constants: &[],
            types: &[],
        }
    }

    /// The same kernel built with these override constants.
    pub(crate) const fn with(self, constants: &'static [(&'static str, f64)]) -> Self {
        KernelSpec { constants, ..self }
    }
}

impl KernelSpec {
    /// The same kernel with the storage types `types` (see [`TYPE_ALIASES`]).
    pub(crate) const fn typed(self, types: &'static [(&'static str, &'static str)]) -> Self {
        KernelSpec { types, ..self }
    }
}

/// One pipeline and its bind group layout.
pub(crate) struct Kernel {
    pub(crate) pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    /// Sorted by binding number.
    bindings: Vec<(u32, Binding)>,
    params_size: u64,
}

impl Kernel {
    fn build(device: &wgpu::Device, module: &wgpu::ShaderModule, spec: &KernelSpec) -> Self {
        let params_size = spec.params_size as u64;
        let entries: Vec<wgpu::BindGroupLayoutEntry> = spec
            .bindings
            .iter()
            .map(|&(binding, kind)| wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match kind {
                    Binding::Params => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: wgpu::BufferSize::new(params_size),
                    },
                    Binding::Window(bytes) => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: wgpu::BufferSize::new(bytes),
                    },
                    Binding::Read | Binding::ReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage {
                            read_only: kind == Binding::Read,
                        },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                },
                count: None,
            })
            .collect();
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(spec.entry),
            entries: &entries,
        });
        let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(spec.entry),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&format!("{} {}", spec.file, spec.entry)),
            layout: Some(&pl),
            module,
            entry_point: Some(spec.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: spec.constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        let mut bindings = spec.bindings.to_vec();
        bindings.sort_by_key(|b| b.0);
        Kernel {
            pipeline,
            layout,
            bindings,
            params_size,
        }
    }

    /// A bind group: `params` for the parameter slot, and one buffer of
    /// `buffers` for each other binding, in binding order (a window binding
    /// spans its size from offset 0; the dispatch moves it).
    pub(crate) fn bind(
        &self,
        device: &wgpu::Device,
        params: &wgpu::Buffer,
        buffers: &[&wgpu::Buffer],
    ) -> wgpu::BindGroup {
        let mut it = buffers.iter();
        let entries: Vec<wgpu::BindGroupEntry> = self
            .bindings
            .iter()
            .map(|&(binding, kind)| wgpu::BindGroupEntry {
                binding,
                resource: match kind {
                    Binding::Params => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: params,
                        offset: 0,
                        size: wgpu::BufferSize::new(self.params_size),
                    }),
                    Binding::Window(bytes) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: it.next().expect("a buffer for every binding"),
                        offset: 0,
                        size: wgpu::BufferSize::new(bytes),
                    }),
                    Binding::Read | Binding::ReadWrite => it
                        .next()
                        .expect("a buffer for every binding")
                        .as_entire_binding(),
                },
            })
            .collect();
        debug_assert!(it.next().is_none(), "one buffer per binding");
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &self.layout,
            entries: &entries,
        })
    }
}

/// The key of a cached pipeline: shader file, entry point, the override
/// constants sorted by name, as the bits of their values, and the storage types.
type PipelineKey = (
    &'static str,
    &'static str,
    Vec<(&'static str, u64)>,
    &'static [(&'static str, &'static str)],
);

/// The key of a shader module: the file and its storage types.
type ModuleKey = (&'static str, &'static [(&'static str, &'static str)]);

/// The pipelines built so far, and their shader modules.
#[derive(Default)]
pub(crate) struct Pipelines {
    kernels: RwLock<HashMap<PipelineKey, Arc<Kernel>>>,
    modules: Mutex<HashMap<ModuleKey, wgpu::ShaderModule>>,
}

impl Pipelines {
    /// The kernel of `spec`, built on first use: a read lock for the common
    /// case; on a miss, the write lock, a second look, and the build inside
    /// error scopes (a shader that does not compile comes back as an `Err`
    /// and is not cached).
    pub(crate) fn get(&self, dev: &Device, spec: &KernelSpec) -> Result<Arc<Kernel>> {
        let mut consts: Vec<(&'static str, u64)> = spec
            .constants
            .iter()
            .map(|&(n, v)| (n, v.to_bits()))
            .collect();
        consts.sort_unstable();
        let key = (spec.file, spec.entry, consts, spec.types);
        if let Some(k) = self
            .kernels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(k.clone());
        }
        let mut kernels = self.kernels.write().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = kernels.get(&key) {
            return Ok(k.clone());
        }
        let kernel = dev
            .checked(|| {
                let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
                let module = modules.entry((spec.file, spec.types)).or_insert_with(|| {
                    dev.device
                        .create_shader_module(wgpu::ShaderModuleDescriptor {
                            label: Some(spec.file),
                            source: wgpu::ShaderSource::Wgsl(
                                compose_for(spec.file, spec.source, spec.types, dev.unroll).into(),
                            ),
                        })
                });
                Kernel::build(&dev.device, module, spec)
            })
            .map_err(|e| {
                GruError::Gpu(format!(
                    "building the pipeline `{}` of {}: {e}",
                    spec.entry, spec.file
                ))
            })?;
        let kernel = Arc::new(kernel);
        kernels.insert(key, kernel.clone());
        Ok(kernel)
    }

    /// The pipelines built so far, as `file:entry` and their constants (and
    /// storage types other than f32), sorted.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .kernels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .map(|(file, entry, consts, types)| {
                let c: Vec<String> = consts
                    .iter()
                    .map(|(n, bits)| format!("{n}={}", f64::from_bits(*bits)))
                    .chain(types.iter().map(|(n, t)| format!("{n}:{t}")))
                    .collect();
                format!("{file}:{entry}({})", c.join(","))
            })
            .collect();
        v.sort();
        v
    }
}

/// Parameters that carry the offset of a piece of a grid (see [`pieces`]).
pub(crate) trait Grid: bytemuck::Pod {
    fn at(&mut self, off: [u32; 3]);
}

/// Parameters of the 1-D kernels, which linearise the grid with its width.
pub(crate) trait Flat: Grid {
    fn set_width(&mut self, gtx: u32);
}

/// `impl Grid` for parameter structs with fields `gx, gy, gz`.
macro_rules! grid3 {
    ($($t:ty),*) => {$(
        impl $crate::gpu::pipeline::Grid for $t {
            fn at(&mut self, off: [u32; 3]) {
                [self.gx, self.gy, self.gz] = off;
            }
        }
    )*};
}
pub(crate) use grid3;

/// A grid of workgroups cut into pieces of at most `max` workgroups per
/// dimension: `(offset, size)` of each, in order. The kernels add the offset
/// to their workgroup id (`grid_id` of `common.wgsl`), so the pieces together
/// run the whole grid.
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

/// Workgroups `(x, y)` for `count` threads of a 1-D kernel of 64 threads per
/// workgroup, spilling into y so that x stays within `max`.
pub(crate) fn groups_1d(count: usize, max: u32) -> [u32; 3] {
    let max = max.max(1) as usize;
    let n = count.div_ceil(64).max(1);
    let x = n.min(max);
    [x as u32, n.div_ceil(x) as u32, 1]
}

/// `v` as a kernel's 32-bit index, or an error naming `what`.
pub(crate) fn u32_of(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| GruError::LimitExceeded {
        what: what.to_string(),
        requested: v as u64,
        limit: u32::MAX as u64,
        limit_name: "32-bit indexing of the kernels",
        unit: "elements",
    })
}
