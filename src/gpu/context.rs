//! The handle every GPU object holds: the device layer, the pipeline cache,
//! and which kernels compute the matrix products.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{GruError, Result};
use crate::gpu::device::{find_adapter, summarize, AdapterSummary, Device, CPU_DEVICE_TYPE};
use crate::gpu::ops::windows::{windows_fit, WINDOW_BYTES};
use crate::gpu::pipeline::Pipelines;
use crate::gpu::pool::PooledBuffer;
use crate::gpu::recorder::Recorder;

/// How to open a [`GpuContext`].
#[derive(Clone, Debug, Default)]
pub struct ContextOptions {
    /// Which adapter: a case-insensitive substring of its name, or a backend
    /// (`vulkan`, `metal`, `dx12`, `gl`). `None` reads the environment variable
    /// `GRU_WGPU_ADAPTER`, and without it takes the default high-performance adapter.
    pub adapter: Option<String>,
    /// Limits to ask the device for. `None` asks for the adapter's own limits
    /// (not wgpu's defaults). Lower limits make the splitting paths run on small data.
    pub limits: Option<wgpu::Limits>,
    /// Fill every buffer the pool hands out with NaN before use (a testing
    /// aid: an element that no kernel writes shows up as NaN).
    pub poison_buffers: bool,
    /// Which kernels compute the matrix products. `None` chooses: the window
    /// kernels on CPU (software) adapters, the storage kernels on GPUs.
    pub products: Option<Products>,
}

/// The kernels that compute the matrix products (the input projections, the
/// recurrent products, the gradients).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Products {
    /// Storage-buffer kernels with register tiles: `gemm.wgsl`'s `main`, the
    /// recurrent product inside the fused steps. Suited to GPUs.
    Storage,
    /// Uniform-buffer windows: `windows.wgsl` on the chunked layout, for the
    /// recurrent products too. Suited to CPU adapters such as llvmpipe,
    /// where storage loads in loops are slow.
    Windows,
}

struct Inner {
    dev: Device,
    pipelines: Pipelines,
    products: Products,
    next_id: AtomicU64,
}

/// A GPU device with its pipelines, built on first use and shared by every
/// model on it. Cheap to clone (a reference count); `Send + Sync`.
#[derive(Clone)]
pub struct GpuContext {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.inner.dev.summary)
            .finish()
    }
}

impl GpuContext {
    /// Opens the default adapter (or the one `GRU_WGPU_ADAPTER` names).
    pub fn new() -> Result<Self> {
        Self::with_options(ContextOptions::default())
    }

    /// Opens an adapter as `options` say.
    pub fn with_options(options: ContextOptions) -> Result<Self> {
        let selector = options
            .adapter
            .clone()
            .or_else(|| std::env::var("GRU_WGPU_ADAPTER").ok())
            .filter(|s| !s.trim().is_empty());
        let adapter = find_adapter(selector.as_deref())?;
        let summary = summarize(&adapter.get_info());
        let adapter_limits = adapter.limits();
        let limits = match options.limits.clone() {
            Some(l) => {
                if !l.check_limits(&adapter_limits) {
                    return Err(GruError::RequestDevice(format!(
                        "the limits asked for exceed those of {summary}"
                    )));
                }
                l
            }
            None => adapter_limits,
        };
        let wanted =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
        let features = adapter.features() & wanted;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("gru-wgpu"),
            required_features: features,
            required_limits: limits,
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| GruError::RequestDevice(format!("{summary}: {e}")))?;
        Self::assemble(device, queue, summary, &options)
    }

    /// The context on top of an open device: the products chosen and checked.
    fn assemble(
        device: wgpu::Device,
        queue: wgpu::Queue,
        summary: AdapterSummary,
        options: &ContextOptions,
    ) -> Result<Self> {
        let dev = Device::new(device, queue, summary, options.poison_buffers);
        let fit = windows_fit(&dev.limits);
        let products = match options.products {
            Some(Products::Windows) if !fit => {
                return Err(GruError::RequestDevice(format!(
                    "{}: the window kernels need uniform bindings of 64 KiB at 32-byte offsets; \
                     this device allows {} bytes at {}-byte offsets",
                    dev.summary,
                    dev.limits.max_uniform_buffer_binding_size,
                    dev.limits.min_uniform_buffer_offset_alignment
                )))
            }
            Some(p) => p,
            None if fit && dev.summary.device_type == CPU_DEVICE_TYPE => Products::Windows,
            None => Products::Storage,
        };
        Ok(GpuContext {
            inner: Arc::new(Inner {
                dev,
                pipelines: Pipelines::default(),
                products,
                next_id: AtomicU64::new(1),
            }),
        })
    }

    /// The adapter in use.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.inner.dev.summary
    }

    /// The limits the device was opened with.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.inner.dev.limits
    }

    /// Whether the adapter is a CPU (software) device, such as llvmpipe.
    pub fn is_cpu(&self) -> bool {
        self.inner.dev.summary.device_type == CPU_DEVICE_TYPE
    }

    /// Which kernels compute the matrix products.
    pub fn products(&self) -> Products {
        self.inner.products
    }

    /// Whether the device can time its own work (timestamp queries).
    pub fn has_timestamps(&self) -> bool {
        self.inner.dev.features.contains(
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS,
        )
    }

    /// The wgpu device, for callers that keep their own data on it.
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.dev.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.dev.queue
    }

    /// Releases every buffer the pool keeps for reuse.
    pub fn trim_pool(&self) {
        self.inner.dev.pool.clear();
    }

    /// Bytes held by the pool for reuse.
    pub fn pooled_bytes(&self) -> u64 {
        self.inner.dev.pool.bytes()
    }

    /// The compute pipelines built so far, as `file:entry(constants)`,
    /// sorted: each is built the first time a call needs it.
    pub fn pipelines_built(&self) -> Vec<String> {
        self.inner.pipelines.names()
    }

    /// A new model id, unique within this context.
    pub(crate) fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Fails if the device was lost (it polls the device first, so that a
    /// loss the driver has reported is seen).
    pub fn check_alive(&self) -> Result<()> {
        self.inner.dev.check_alive()
    }

    /// Waits until the device has finished all submitted work.
    pub fn synchronize(&self) -> Result<()> {
        self.inner.dev.wait()
    }

    /// The device layer.
    pub(crate) fn dev(&self) -> &Device {
        &self.inner.dev
    }

    /// A recorder for one call (timed with timestamp queries where asked and offered).
    pub(crate) fn recorder(&self, timed: bool) -> Recorder<'_> {
        Recorder::new(&self.inner.dev, &self.inner.pipelines, timed)
    }

    /// The slack the window path adds to its buffers (0 on the storage path),
    /// for the size checks made before a call.
    pub(crate) fn window_slack(&self) -> u64 {
        match self.inner.products {
            Products::Windows => WINDOW_BYTES,
            Products::Storage => 0,
        }
    }

    /// Runs `f` inside error scopes: any out-of-memory, validation or internal
    /// error that the device reports during `f` comes back as an `Err`.
    pub(crate) fn scoped<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.inner.dev.scoped(f)
    }

    pub(crate) fn wait(&self) -> Result<()> {
        self.inner.dev.wait()
    }

    /// A storage buffer of `len` floats from the pool (NaN-filled when poisoning).
    pub(crate) fn storage(&self, what: &str, len: usize) -> Result<PooledBuffer> {
        self.inner.dev.storage(what, len)
    }

    /// A storage buffer holding `data`.
    pub(crate) fn upload(&self, what: &str, data: &[f32]) -> Result<PooledBuffer> {
        self.inner.dev.upload(what, data)
    }

    /// A buffer the host can map for reading, of `bytes`.
    pub(crate) fn staging(&self, bytes: u64) -> PooledBuffer {
        self.inner.dev.staging(bytes)
    }

    /// Reads `len` floats of `buf` from float `offset` back to the host.
    pub(crate) fn read_back(
        &self,
        buf: &wgpu::Buffer,
        offset: usize,
        len: usize,
    ) -> Result<Vec<f32>> {
        self.inner.dev.read_back(buf, offset, len)
    }

    /// Maps staging buffers (after their copies were submitted) and reads them as floats.
    pub(crate) fn read_staging(&self, bufs: &[(&PooledBuffer, usize)]) -> Result<Vec<Vec<f32>>> {
        self.inner.dev.read_staging(bufs)
    }
}
