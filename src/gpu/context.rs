//! The handle every GPU object holds: the device layer, the pipeline cache,
//! and which kernels compute the matrix products.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{GruError, Result};
use crate::gpu::device::{find_adapter, summarize, AdapterSummary, Device};
use crate::gpu::ops::gemm::GemmVariant;
use crate::gpu::ops::util::probe_loop_limit;
use crate::gpu::ops::windows::{windows_fit, WINDOW_BYTES};
use crate::gpu::pipeline::Pipelines;
use crate::gpu::plan::{Family, PlanCache, PlanCacheLocation, PlanCacheStatus, TuneMode};
use crate::gpu::pool::PooledBuffer;
use crate::gpu::recorder::Recorder;

// The GEMM kernels alone, for `gru-wgpu bench-gemm` and the kernels' tests.
#[cfg(any(feature = "cli", feature = "test-hooks"))]
#[doc(hidden)]
pub mod gemm;
pub(crate) mod limits;
#[cfg(feature = "test-hooks")]
pub use limits::window_kernels_fit;
use limits::{forced_products, missing_limits};
pub use limits::{LimitsProfile, Products};

/// How to open a [`GpuContext`].
#[derive(Clone, Debug, Default)]
pub struct ContextOptions {
    /// Which adapter: a case-insensitive substring of its name, or a backend
    /// (`vulkan`, `metal`, `dx12`, `gl`). `None` reads the environment variable
    /// `GRU_WGPU_ADAPTER`, and without it takes the default high-performance adapter.
    pub adapter: Option<String>,
    /// Limits to ask the device for. `None` takes those of `profile`.
    /// Lower limits make the splitting paths run on small data.
    pub limits: Option<wgpu::Limits>,
    /// The limits asked for where `limits` is `None`: the adapter's own
    /// (the default), or WebGPU's defaults, the floor every Vulkan, Metal and
    /// DX12 GPU meets.
    pub profile: LimitsProfile,
    /// Fill every buffer the pool hands out with NaN before use (a testing
    /// aid: an element that no kernel writes shows up as NaN).
    pub poison_buffers: bool,
    /// A testing aid: which kernels compute the matrix products, the only
    /// family (or families) plans may use. `None` (and without the
    /// `test-hooks` feature, always) chooses: the window kernels on CPU
    /// (software) adapters, the storage kernels on GPUs; a plan is the one
    /// knob that forces a family.
    #[cfg(feature = "test-hooks")]
    pub products: Option<Products>,
    /// How a shape's plan is chosen where no plan is forced: measured
    /// (`Quick`, `Full`) or the fixed fallback rule (`Off`). `None` reads
    /// `GRU_WGPU_TUNE` (`off`, `quick`, `full`), and without it `Quick`.
    pub tune: Option<TuneMode>,
    /// Where measured plans are kept between processes.
    pub plan_cache: PlanCacheLocation,
    /// A testing aid: the share of the loop iterations the loop probe saw
    /// run that one invocation may be given (default 0.5; see
    /// [`GpuContext::loop_limit`]). 1.0 runs the kernels' loop bounds at
    /// the driver's very limit; `f64::INFINITY` disregards the limit (a
    /// driver that ends long loops early then gives wrong numbers).
    #[cfg(feature = "test-hooks")]
    pub loop_share: Option<f64>,
    /// A testing aid: whether shaders are compiled with their `// unroll`
    /// loops written out (`None`: on GPUs, not on CPU adapters), so that a
    /// test runs the GPUs' form on a CPU adapter.
    #[cfg(feature = "test-hooks")]
    pub unroll: Option<bool>,
    /// Bytes of free device buffers the context keeps for reuse. `None`
    /// takes 256 MiB; `Some(0)` keeps none.
    ///
    /// Every buffer a call needs comes from the context's pool and goes back
    /// to it when the call (or the caller's [`PooledBuffer`]) lets go of it.
    /// A request is served with a buffer of its size class, the next step of
    /// four per doubling at or above it (256 bytes at least): up to a
    /// quarter more than asked, so that a buffer serves requests of sizes
    /// near its own. A returned buffer is kept while the free buffers stay
    /// within this budget, the least recently returned released first to
    /// make room (one larger than the budget is never kept); see also
    /// `pool_max_idle`, [`GpuContext::trim_pool`] and
    /// [`GpuContext::pooled_bytes`].
    pub pool_budget: Option<u64>,
    /// How long a free buffer is kept without being reused before it is
    /// released. `None` takes 30 s. Checked
    /// whenever the pool hands out or takes back a buffer: a context left
    /// idle keeps its free buffers until its next call (or `trim_pool`).
    pub pool_max_idle: Option<std::time::Duration>,
}

/// The pool's budget where `ContextOptions::pool_budget` is `None`: 256 MiB.
pub(crate) const DEFAULT_POOL_BUDGET: u64 = 256 << 20;

/// How long a free buffer is kept unused where
/// `ContextOptions::pool_max_idle` is `None`: 30 seconds.
pub(crate) const DEFAULT_POOL_MAX_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

struct Inner {
    dev: Device,
    pipelines: Pipelines,
    /// The family of the fallback rule and of the shorthand plans.
    products: Products,
    /// Whether the caller restricted the families to `products`.
    products_forced: bool,
    profile: LimitsProfile,
    tune: TuneMode,
    plans: PlanCache,
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
        let limits = options
            .limits
            .clone()
            .unwrap_or_else(|| options.profile.limits(&adapter_limits));
        if !limits.check_limits(&adapter_limits) {
            return Err(GruError::RequestDevice(format!(
                "the limits asked for ({} profile) exceed those of {summary}",
                options.profile.name()
            )));
        }
        // Timestamps to time work on the device; subgroup operations for the
        // GEMM variants that use them (each variant's `check` says).
        // and half floats in shaders for models in f16 (`Precision::F16`).
        let wanted = wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
            | wgpu::Features::SUBGROUP
            | wgpu::Features::SHADER_F16;
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
        Self::assemble(device, queue, summary, &options, true)
    }

    /// A context on a device and queue that the caller already owns (those
    /// of a renderer, of another wgpu program, of burn): the crate's buffers
    /// and pipelines are made on it, and its work is submitted to `queue`.
    ///
    /// It checks the limits the kernels need (workgroups of 64 threads, 8
    /// storage buffers and 9 bindings per bind group, 12 KiB of workgroup
    /// memory, dynamic uniform buffers) and says which is missing; no
    /// feature is needed (timestamp queries are used where the device has
    /// them, and the subgroup GEMM variant where it has subgroups).
    /// `options.adapter` and `options.limits` do not apply. The device keeps
    /// its own uncaptured-error handler and device-lost callback: every call
    /// of the crate runs inside error scopes of its own.
    pub fn from_device(
        device: wgpu::Device,
        queue: wgpu::Queue,
        options: ContextOptions,
    ) -> Result<Self> {
        let summary = summarize(&device.adapter_info());
        let forced = forced_products(&options);
        let windows = forced == Some(Products::Windows);
        let missing = missing_limits(&device.limits(), windows);
        if !missing.is_empty() {
            return Err(GruError::RequestDevice(format!(
                "{summary}: the device lacks what the kernels need: {}",
                missing.join("; ")
            )));
        }
        Self::assemble(device, queue, summary, &options, false)
    }

    /// The context on top of an open device: the products chosen and checked.
    fn assemble(
        device: wgpu::Device,
        queue: wgpu::Queue,
        summary: AdapterSummary,
        options: &ContextOptions,
        own_handlers: bool,
    ) -> Result<Self> {
        let pool = (
            options.pool_budget.unwrap_or(DEFAULT_POOL_BUDGET),
            options.pool_max_idle.unwrap_or(DEFAULT_POOL_MAX_IDLE),
        );
        let mut dev = Device::new(
            device,
            queue,
            summary,
            options.poison_buffers,
            own_handlers,
            pool,
        );
        dev.loop_limit = probe_loop_limit(&dev)?;
        // The probe's buffers are not the caller's: the pool starts empty.
        dev.pool.reset();
        #[cfg(feature = "test-hooks")]
        if let Some(share) = options.loop_share {
            dev.loop_share = share;
        }
        #[cfg(feature = "test-hooks")]
        if let Some(unroll) = options.unroll {
            dev.unroll = unroll;
        }
        let fit = windows_fit(&dev.limits);
        let forced = forced_products(options);
        let products = match forced {
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
            None if fit && dev.summary.is_cpu() => Products::Windows,
            None => Products::Storage,
        };
        let tune = match options.tune {
            Some(t) => t,
            None => TuneMode::from_env()?,
        };
        // Without tuning nothing is read from or written to disk.
        let location = match tune {
            TuneMode::Off => PlanCacheLocation::MemoryOnly,
            _ => options.plan_cache.clone(),
        };
        let plans = PlanCache::open(&dev.summary, &location);
        Ok(GpuContext {
            inner: Arc::new(Inner {
                dev,
                pipelines: Pipelines::default(),
                products,
                products_forced: forced.is_some(),
                profile: options.profile,
                tune,
                plans,
            }),
        })
    }

    /// The adapter in use.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.inner.dev.summary
    }

    /// The loop iterations the driver lets one invocation of a kernel run,
    /// where it has such a limit: llvmpipe (and so lavapipe) ends every loop
    /// of an invocation once 65535 iterations have run, all its loops
    /// counted together, without an error. Measured when the device is
    /// opened (a probe kernel counts how many iterations of a long loop
    /// run); `None` where the probe's loop of 2^22 iterations ran to the
    /// end. The kernels whose loops grow with the data split their work so
    /// that one invocation runs at most half of it (or of 2^22): a long
    /// time loop runs in several dispatches, each taking up the state the
    /// one before stored (bitwise the same results).
    pub fn loop_limit(&self) -> Option<u64> {
        self.inner.dev.loop_limit
    }

    /// The limits the device was opened with.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.inner.dev.limits
    }

    /// The product family of the fallback rule and of the shorthand plans
    /// of [`plan_named`](Self::plan_named): the one
    /// `ContextOptions::products` forced, else the window kernels on CPU
    /// adapters where they fit and the storage kernels elsewhere.
    pub(crate) fn product_kernels(&self) -> Products {
        self.inner.products
    }

    /// [`product_kernels`](Self::product_kernels), for the tests.
    #[cfg(feature = "test-hooks")]
    pub fn products(&self) -> Products {
        self.inner.products
    }

    /// The product families plans may use on this device: those of the
    /// family `ContextOptions::products` forced, or all that run here (the
    /// GEMM variants whose needs the device meets, and the window kernels
    /// where they fit).
    pub fn families(&self) -> Vec<Family> {
        let dev = &self.inner.dev;
        let gemm = GemmVariant::ALL
            .iter()
            .filter(|v| v.check(&dev.limits, dev.features).is_ok())
            .map(|v| Family::Gemm(*v));
        let windows = windows_fit(&dev.limits);
        match (self.inner.products_forced, self.inner.products) {
            (true, Products::Storage) => gemm.collect(),
            (true, Products::Windows) => vec![Family::Windows],
            _ => gemm.chain(windows.then_some(Family::Windows)).collect(),
        }
    }

    /// The limits profile the device was opened with (`Adapter` for a device
    /// the caller opened).
    pub(crate) fn profile(&self) -> LimitsProfile {
        self.inner.profile
    }

    test_hook! {
        /// How plans are chosen for new shapes.
        pub fn tune_mode(&self) -> TuneMode {
            self.inner.tune
        }
    }

    /// Where the plan cache keeps its plans and what went wrong with its
    /// file, as of now.
    pub fn plan_cache(&self) -> PlanCacheStatus {
        let plans = &self.inner.plans;
        PlanCacheStatus {
            file: plans.file().map(|p| p.to_path_buf()),
            warning: plans.warning(),
            write_error: plans.write_error(),
        }
    }

    pub(crate) fn plans(&self) -> &PlanCache {
        &self.inner.plans
    }

    /// A testing aid: puts `entry` into the plan cache under `key` (as a
    /// tuning would), so that a test can plant a plan checked at a shape.
    #[cfg(feature = "test-hooks")]
    pub fn cache_plan(
        &self,
        key: &str,
        plan: crate::gpu::plan::Plan,
        mode: TuneMode,
        candidates: &[crate::gpu::plan::Plan],
        checked: (usize, usize),
    ) {
        let names: Vec<String> = candidates.iter().map(|p| p.name()).collect();
        let entry = crate::gpu::plan::CachedPlan {
            plan: plan.name(),
            mode,
            candidates_hash: crate::gpu::plan::names_hash(names.iter().map(|s| s.as_str())),
            timings: vec![],
            checked,
        };
        self.inner.plans.put(key, entry);
    }

    /// Whether the device can time its own work (timestamp queries).
    pub fn has_timestamps(&self) -> bool {
        self.inner.dev.features.contains(
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS,
        )
    }

    /// The features the device was opened with (timestamp queries and
    /// subgroup operations where the adapter has them).
    pub fn features(&self) -> wgpu::Features {
        self.inner.dev.features
    }

    /// The wgpu device, for callers that keep their own data on it.
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.dev.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.dev.queue
    }

    /// Releases every buffer the pool keeps for reuse (see
    /// [`ContextOptions::pool_budget`]).
    pub fn trim_pool(&self) {
        self.inner.dev.pool.clear();
    }

    /// Bytes of the free buffers the pool keeps for reuse (at most
    /// [`ContextOptions::pool_budget`]); the buffers on loan are not counted.
    pub fn pooled_bytes(&self) -> u64 {
        self.inner.dev.pool.bytes()
    }

    /// The pool's counts: device buffers made, reused, released, alive.
    #[cfg(feature = "test-hooks")]
    pub fn pool_stats(&self) -> crate::gpu::pool::PoolStats {
        self.inner.dev.pool.stats()
    }

    /// The size of the buffer the pool serves a request of `bytes` with
    /// (its size class, see [`ContextOptions::pool_budget`]).
    #[cfg(feature = "test-hooks")]
    pub fn pool_size_class(&self, bytes: u64) -> u64 {
        self.inner.dev.pool.class_of(bytes)
    }

    /// The bytes of `buf` that hold data, as the size checks of the calls
    /// see them: what was asked for, for a buffer of the crate's pools (not
    /// its size class), else its size.
    #[cfg(feature = "test-hooks")]
    pub fn data_bytes(buf: &wgpu::Buffer) -> u64 {
        crate::gpu::pool::data_bytes(buf)
    }

    /// The compute pipelines built so far, as `file:entry(constants)`,
    /// sorted: each is built the first time a call needs it.
    #[cfg(feature = "test-hooks")]
    pub fn pipelines_built(&self) -> Vec<String> {
        self.inner.pipelines.names()
    }

    /// A new model id, unique within this context.
    /// A model id, unique in the process (across every context), so that a
    /// tape can name the one model that made it.
    pub(crate) fn next_id(&self) -> u64 {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    }

    /// Fails if the device was lost (it polls the device first, so that a
    /// loss the driver has reported is seen).
    #[cfg(feature = "test-hooks")]
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
        if self.families().contains(&Family::Windows) {
            WINDOW_BYTES
        } else {
            0
        }
    }

    /// Runs `f` inside error scopes: any out-of-memory, validation or internal
    /// error that the device reports during `f` comes back as an `Err`.
    pub(crate) fn scoped<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.inner.dev.scoped(f)
    }

    /// A storage buffer of `len` floats from the pool (NaN-filled when poisoning).
    pub(crate) fn storage(&self, what: &str, len: usize) -> Result<PooledBuffer> {
        self.inner.dev.storage(what, len)
    }

    /// A new storage buffer of the crate holding `data` (labelled `label`),
    /// with the usages `STORAGE`, `COPY_SRC` and `COPY_DST`: what the device
    /// calls of [`GpuGru`](crate::gpu::GpuGru) take. It comes from the
    /// context's pool and goes back to it when dropped. `data` is a slice
    /// (`&[f32]`, `&Vec<f32>`) or an array view of any shape, taken in its
    /// logical (row-major) order whatever its memory layout.
    pub fn upload<'a, D: ndarray::Dimension>(
        &self,
        label: &str,
        data: impl Into<ndarray::ArrayView<'a, f32, D>>,
    ) -> Result<PooledBuffer> {
        let data = data.into();
        let s = data.as_standard_layout();
        self.inner
            .dev
            .upload(label, s.as_slice().expect("standard layout"))
    }

    /// Reads the first floats of `buf` back as an array of `shape`
    /// (row-major): a copy, one submission, a wait. The buffer needs the
    /// usage `COPY_SRC` and room for the array, and must be of this
    /// context's device ([`GruError::ForeignBuffer`] otherwise).
    pub fn read_array<D: ndarray::Dimension>(
        &self,
        buf: &wgpu::Buffer,
        shape: D,
    ) -> Result<ndarray::Array<f32, D>> {
        let len = crate::error::elements("the array read back", shape.slice())?;
        let dims = shape;
        self.check_readable("the buffer read back", buf, len)?;
        let v = self.inner.dev.read_back(buf, 0, len)?;
        Ok(ndarray::Array::from_shape_vec(dims, v).expect("length matches"))
    }

    /// Fails unless `buf` has the usage `COPY_SRC` and `len` floats, and
    /// this context's device made it.
    fn check_readable(&self, what: &str, buf: &wgpu::Buffer, len: usize) -> Result<()> {
        self.inner
            .dev
            .check_caller_buffer(what, buf, len, wgpu::BufferUsages::COPY_SRC, "COPY_SRC")
    }

    /// A buffer the host can map for reading, of `bytes`.
    pub(crate) fn staging(&self, bytes: u64) -> PooledBuffer {
        self.inner.dev.staging(bytes)
    }

    /// Maps staging buffers (after their copies were submitted) and reads them as floats.
    pub(crate) fn read_staging(&self, bufs: &[(&PooledBuffer, usize)]) -> Result<Vec<Vec<f32>>> {
        self.inner.dev.read_staging(bufs)
    }
}
