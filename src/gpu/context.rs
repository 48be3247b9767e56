//! The device: adapter choice, limits, pipelines built once, a buffer pool,
//! and the error handling that turns every device failure into a [`GruError`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{GruError, Result};
use crate::gpu::kernels::Kernels;

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
    /// Uniform-buffer windows: `gemm.wgsl`'s `windows` on the chunked layout,
    /// for the recurrent products too. Suited to CPU adapters such as
    /// llvmpipe, where storage loads in loops are slow.
    Windows,
}

/// What the adapter is.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, {})", self.name, self.backend, self.device_type)?;
        if !self.driver.is_empty() {
            write!(f, ", driver {}", self.driver)?;
        }
        Ok(())
    }
}

pub(crate) struct Inner {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) summary: AdapterSummary,
    pub(crate) limits: wgpu::Limits,
    pub(crate) features: wgpu::Features,
    pub(crate) kernels: Kernels,
    pub(crate) pool: Arc<Pool>,
    pub(crate) poison: bool,
    pub(crate) products: Products,
    lost: Arc<Mutex<Option<String>>>,
    uncaptured: Arc<Mutex<Option<String>>>,
}

/// A GPU device with its pipelines, built once and shared by every model on
/// it. Cheap to clone (a reference count); `Send + Sync`.
#[derive(Clone)]
pub struct GpuContext {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.inner.summary)
            .finish()
    }
}

fn backend_name(b: wgpu::Backend) -> &'static str {
    match b {
        wgpu::Backend::Vulkan => "vulkan",
        wgpu::Backend::Metal => "metal",
        wgpu::Backend::Dx12 => "dx12",
        wgpu::Backend::Gl => "gl",
        wgpu::Backend::BrowserWebGpu => "webgpu",
        _ => "other",
    }
}

fn summarize(info: &wgpu::AdapterInfo) -> AdapterSummary {
    AdapterSummary {
        name: info.name.clone(),
        backend: backend_name(info.backend).to_string(),
        device_type: match info.device_type {
            wgpu::DeviceType::DiscreteGpu => "discrete GPU",
            wgpu::DeviceType::IntegratedGpu => "integrated GPU",
            wgpu::DeviceType::VirtualGpu => "virtual GPU",
            wgpu::DeviceType::Cpu => "CPU (software)",
            wgpu::DeviceType::Other => "other",
        }
        .to_string(),
        driver: [info.driver.as_str(), info.driver_info.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// The adapters wgpu can see, as summaries.
pub fn list_adapters() -> Vec<AdapterSummary> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
        .iter()
        .map(|a| summarize(&a.get_info()))
        .collect()
}

impl GpuContext {
    /// Opens the default adapter (or the one `GRU_WGPU_ADAPTER` names).
    pub fn new() -> Result<Self> {
        Self::with_options(ContextOptions::default())
    }

    /// Opens an adapter as `options` say.
    pub fn with_options(options: ContextOptions) -> Result<Self> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let selector = options
            .adapter
            .clone()
            .or_else(|| std::env::var("GRU_WGPU_ADAPTER").ok())
            .filter(|s| !s.trim().is_empty());
        let adapter = match &selector {
            Some(sel) => {
                let sel_l = sel.trim().to_lowercase();
                let all = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
                let names: Vec<String> = all
                    .iter()
                    .map(|a| summarize(&a.get_info()).to_string())
                    .collect();
                all.into_iter()
                    .find(|a| {
                        let info = a.get_info();
                        info.name.to_lowercase().contains(&sel_l) || backend_name(info.backend) == sel_l
                    })
                    .ok_or_else(|| {
                        GruError::NoAdapter(format!(
                            "none matches `{sel}` (by name substring or backend); adapters found: {}",
                            if names.is_empty() { "none".to_string() } else { names.join("; ") }
                        ))
                    })?
            }
            None => pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            }))
            .map_err(|e| GruError::NoAdapter(e.to_string()))?,
        };
        let summary = summarize(&adapter.get_info());
        let adapter_limits = adapter.limits();
        let limits = match options.limits {
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
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| GruError::RequestDevice(format!("{summary}: {e}")))?;

        // Never let wgpu panic on an error: record it, and report it from the call.
        let uncaptured = Arc::new(Mutex::new(None));
        let u2 = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut g = u2.lock().unwrap_or_else(|p| p.into_inner());
            if g.is_none() {
                *g = Some(e.to_string());
            }
        }));
        let lost = Arc::new(Mutex::new(None));
        let l2 = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            let mut g = l2.lock().unwrap_or_else(|p| p.into_inner());
            *g = Some(format!("{reason:?}: {msg}"));
        });

        // The window kernels need 64 KiB uniform bindings at 32-byte offsets.
        let windows_fit = limits.max_uniform_buffer_binding_size >= WINDOW_BYTES
            && limits.min_uniform_buffer_offset_alignment <= 32;
        let products = match options.products {
            Some(Products::Windows) if !windows_fit => {
                return Err(GruError::RequestDevice(format!(
                    "{summary}: the window kernels need uniform bindings of 64 KiB at 32-byte offsets; \
                     this device allows {} bytes at {}-byte offsets",
                    limits.max_uniform_buffer_binding_size, limits.min_uniform_buffer_offset_alignment
                )))
            }
            Some(p) => p,
            None if windows_fit && adapter.get_info().device_type == wgpu::DeviceType::Cpu => Products::Windows,
            None => Products::Storage,
        };
        let scope = ErrorScopes::push(&device);
        let kernels = Kernels::new(&device);
        scope.pop(&device, &lost)?;
        Ok(GpuContext {
            inner: Arc::new(Inner {
                device,
                queue,
                summary,
                limits,
                features,
                kernels,
                pool: Arc::new(Pool::default()),
                poison: options.poison_buffers,
                products,
                lost,
                uncaptured,
            }),
        })
    }

    /// The adapter in use.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.inner.summary
    }

    /// The limits the device was opened with.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.inner.limits
    }

    /// Whether the adapter is a CPU (software) device, such as llvmpipe.
    pub fn is_cpu(&self) -> bool {
        self.inner.summary.device_type == "CPU (software)"
    }

    /// Which kernels compute the matrix products.
    pub fn products(&self) -> Products {
        self.inner.products
    }

    /// Whether the device can time its own work (timestamp queries).
    pub fn has_timestamps(&self) -> bool {
        self.inner.features.contains(
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS,
        )
    }

    /// The wgpu device, for callers that keep their own data on it.
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }

    /// Releases every buffer the pool keeps for reuse.
    pub fn trim_pool(&self) {
        self.inner.pool.clear();
    }

    /// Bytes held by the pool for reuse.
    pub fn pooled_bytes(&self) -> u64 {
        self.inner.pool.bytes()
    }

    /// A model id, unique in the process (across every context), so that a
    /// tape can name the one model that made it.
    pub(crate) fn next_id(&self) -> u64 {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    }

    /// Fails if the device was lost (it polls the device first, so that a
    /// loss the driver has reported is seen).
    pub fn check_alive(&self) -> Result<()> {
        let _ = self.inner.device.poll(wgpu::PollType::Poll);
        let g = self.inner.lost.lock().unwrap_or_else(|p| p.into_inner());
        match &*g {
            Some(m) => Err(GruError::DeviceLost(m.clone())),
            None => Ok(()),
        }
    }

    /// Runs `f` inside error scopes: any out-of-memory, validation or internal
    /// error that the device reports during `f` comes back as an `Err`.
    pub(crate) fn scoped<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.check_alive()?;
        let scope = ErrorScopes::push(&self.inner.device);
        let out = f();
        let popped = scope.pop(&self.inner.device, &self.inner.lost);
        let uncaptured = self
            .inner
            .uncaptured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let out = out?;
        popped?;
        if let Some(m) = uncaptured {
            return Err(GruError::Gpu(m));
        }
        Ok(out)
    }

    /// Waits until the device has finished all submitted work.
    pub fn synchronize(&self) -> Result<()> {
        self.wait()
    }

    pub(crate) fn wait(&self) -> Result<()> {
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| {
                self.check_alive()
                    .err()
                    .unwrap_or_else(|| GruError::Gpu(format!("waiting for the device: {e}")))
            })
    }

    /// Checks that a buffer of `bytes` fits the device, naming `what` otherwise.
    pub(crate) fn check_buffer_size(&self, what: &str, bytes: u64) -> Result<()> {
        let l = &self.inner.limits;
        if bytes > l.max_buffer_size {
            return Err(GruError::LimitExceeded {
                what: what.to_string(),
                requested: bytes,
                limit: l.max_buffer_size,
                limit_name: "max_buffer_size",
                unit: "bytes",
            });
        }
        if bytes > l.max_storage_buffer_binding_size {
            return Err(GruError::LimitExceeded {
                what: what.to_string(),
                requested: bytes,
                limit: l.max_storage_buffer_binding_size,
                limit_name: "max_storage_buffer_binding_size",
                unit: "bytes",
            });
        }
        Ok(())
    }

    /// A storage buffer of `len` floats from the pool (NaN-filled when poisoning).
    ///
    /// Every such buffer can also be read through a uniform-buffer window
    /// (see `shaders/gemm.wgsl`): it has the usage `UNIFORM` and 64 KiB more
    /// than asked for, so that a window that starts anywhere in the data fits.
    pub(crate) fn storage(&self, what: &str, len: usize) -> Result<PooledBuffer> {
        let bytes = (len.max(1) as u64)
            .saturating_mul(4)
            .saturating_add(WINDOW_BYTES);
        self.check_buffer_size(what, bytes)?;
        let buf = self.inner.pool.take_raw(
            &self.inner.device,
            bytes,
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::UNIFORM
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        );
        let mut buf = buf;
        buf.len = len;
        if self.inner.poison {
            let nan = vec![f32::NAN; (bytes / 4) as usize];
            self.inner
                .queue
                .write_buffer(buf.buffer(), 0, bytemuck::cast_slice(&nan));
        }
        Ok(buf)
    }

    /// A storage buffer holding `data`.
    pub(crate) fn upload(&self, what: &str, data: &[f32]) -> Result<PooledBuffer> {
        let buf = self.storage(what, data.len())?;
        if !data.is_empty() {
            self.inner
                .queue
                .write_buffer(buf.buffer(), 0, bytemuck::cast_slice(data));
        }
        Ok(buf)
    }

    /// A buffer the host can map for reading, of `bytes`.
    pub(crate) fn staging(&self, bytes: u64) -> PooledBuffer {
        self.inner.pool.take_raw(
            &self.inner.device,
            bytes.max(4),
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )
    }

    /// Reads `len` floats of `buf` from float `offset` back to the host: a
    /// copy to a staging buffer, one submission, a wait.
    pub(crate) fn read_back(
        &self,
        buf: &wgpu::Buffer,
        offset: usize,
        len: usize,
    ) -> Result<Vec<f32>> {
        self.scoped(|| {
            let st = self.staging((len * 4) as u64);
            let mut enc =
                self.inner
                    .device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("gru-wgpu read back"),
                    });
            enc.copy_buffer_to_buffer(buf, (offset * 4) as u64, st.buffer(), 0, (len * 4) as u64);
            self.inner.queue.submit(Some(enc.finish()));
            Ok(self.read_staging(&[(&st, len)])?.remove(0))
        })
    }

    /// Maps staging buffers (after their copies were submitted) and reads them as floats.
    pub(crate) fn read_staging(&self, bufs: &[(&PooledBuffer, usize)]) -> Result<Vec<Vec<f32>>> {
        Ok(self
            .read_staging_words(bufs)?
            .into_iter()
            .map(|w| w.into_iter().map(f32::from_bits).collect())
            .collect())
    }

    /// Maps staging buffers and reads `len` 32-bit words from each.
    pub(crate) fn read_staging_words(
        &self,
        bufs: &[(&PooledBuffer, usize)],
    ) -> Result<Vec<Vec<u32>>> {
        type MapStatus = Option<std::result::Result<(), wgpu::BufferAsyncError>>;
        let results: Arc<Mutex<Vec<MapStatus>>> = Arc::new(Mutex::new(vec![None; bufs.len()]));
        for (i, (b, len)) in bufs.iter().enumerate() {
            let r = results.clone();
            b.buffer().slice(..(*len as u64 * 4).max(4)).map_async(
                wgpu::MapMode::Read,
                move |res| {
                    r.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(res);
                },
            );
        }
        // The callbacks run inside some poll of the device; where several
        // threads use it, another thread's poll may be running ours while our
        // wait returns. So wait until every callback has run (bounded).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            self.wait()?;
            if results
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .all(Option::is_some)
            {
                break;
            }
            if std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        let mut out = Vec::with_capacity(bufs.len());
        for (i, (b, len)) in bufs.iter().enumerate() {
            let status = results.lock().unwrap_or_else(|p| p.into_inner())[i].take();
            match status {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    self.check_alive()?;
                    return Err(GruError::Gpu(format!("reading results back: {e}")));
                }
                None => {
                    self.check_alive()?;
                    return Err(GruError::Gpu(
                        "reading results back: the map never completed".into(),
                    ));
                }
            }
            let v = {
                let view = b
                    .buffer()
                    .slice(..(*len as u64 * 4).max(4))
                    .get_mapped_range()
                    .map_err(|e| GruError::Gpu(format!("reading results back: {e}")))?;
                view.chunks_exact(4)
                    .take(*len)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect::<Vec<u32>>()
            };
            b.buffer().unmap();
            out.push(v);
        }
        Ok(out)
    }
}

/// The size of a uniform-buffer window: the most a uniform binding may span
/// on many adapters (and the size the window kernels declare).
pub(crate) const WINDOW_BYTES: u64 = 65536;

/// Error scopes for out-of-memory, validation and internal errors.
struct ErrorScopes(Vec<wgpu::ErrorScopeGuard>);

impl ErrorScopes {
    fn push(device: &wgpu::Device) -> Self {
        ErrorScopes(vec![
            device.push_error_scope(wgpu::ErrorFilter::Internal),
            device.push_error_scope(wgpu::ErrorFilter::Validation),
            device.push_error_scope(wgpu::ErrorFilter::OutOfMemory),
        ])
    }

    fn pop(self, _device: &wgpu::Device, lost: &Mutex<Option<String>>) -> Result<()> {
        let mut first: Option<GruError> = None;
        for guard in self.0.into_iter().rev() {
            if let Some(e) = pollster::block_on(guard.pop()) {
                let err = match e {
                    wgpu::Error::OutOfMemory { .. } => GruError::OutOfMemory(e.to_string()),
                    other => GruError::Gpu(other.to_string()),
                };
                first.get_or_insert(err);
            }
        }
        if let Some(m) = lost.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(GruError::DeviceLost(m));
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Buffers kept for reuse, by size and usage.
#[derive(Default)]
pub(crate) struct Pool {
    free: Mutex<HashMap<(u64, wgpu::BufferUsages), Vec<wgpu::Buffer>>>,
}

/// At most this many bytes stay in the pool; beyond it, returned buffers are freed.
const POOL_CAP_BYTES: u64 = 1 << 30;

impl Pool {
    pub(crate) fn take_raw(
        self: &Arc<Self>,
        device: &wgpu::Device,
        bytes: u64,
        usage: wgpu::BufferUsages,
    ) -> PooledBuffer {
        let reused = self
            .free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&(bytes, usage))
            .and_then(|v| v.pop());
        let buf = reused.unwrap_or_else(|| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("gru-wgpu pooled"),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        });
        PooledBuffer {
            len: (bytes / 4) as usize,
            buf: Some(buf),
            pool: Some(self.clone()),
        }
    }

    fn give(&self, buf: wgpu::Buffer) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let held: u64 = free.iter().map(|((s, _), v)| s * v.len() as u64).sum();
        if held + buf.size() <= POOL_CAP_BYTES {
            free.entry((buf.size(), buf.usage())).or_default().push(buf);
        }
    }

    fn clear(&self) {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn bytes(&self) -> u64 {
        let free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        free.iter().map(|((s, _), v)| s * v.len() as u64).sum()
    }
}

/// A buffer on loan from the pool: it goes back when dropped.
pub struct PooledBuffer {
    /// Floats of data (the buffer may be larger).
    len: usize,
    buf: Option<wgpu::Buffer>,
    pool: Option<Arc<Pool>>,
}

impl PooledBuffer {
    /// The wgpu buffer.
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buf.as_ref().expect("present until drop")
    }

    /// Floats of data in the buffer (it may be larger: see `GpuContext::storage`).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no data.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Takes the buffer out of the pool's care: it is freed, not reused, when dropped.
    pub fn into_inner(mut self) -> wgpu::Buffer {
        self.pool = None;
        self.buf.take().expect("present until drop")
    }
}

impl std::fmt::Debug for PooledBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PooledBuffer({} bytes)", self.buffer().size())
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let (Some(b), Some(p)) = (self.buf.take(), self.pool.as_ref()) {
            p.give(b);
        }
    }
}
