//! The device layer: the wgpu device and queue (on an adapter of
//! [`adapter`](crate::gpu::adapter)), its limits, the buffer pool, the error scopes that turn every device failure into a
//! [`GruError`], and reading results back. It knows nothing of kernels.

use std::sync::{Arc, Mutex};

use crate::error::{GruError, Result};
pub(crate) use crate::gpu::adapter::AdapterSummary;
pub(crate) use crate::gpu::adapter::{find_adapter, summarize};
use crate::gpu::pool::{Pool, PoolPolicy, PooledBuffer};

/// Whether `e`, or an error it came from, is wgpu-core's report of a
/// resource used with a device that did not make it (in a command encoder,
/// where it comes as a `CommandEncoderError` whose source chain stops there).
fn is_device_mismatch(e: &(dyn std::error::Error + 'static)) -> bool {
    use wgpu::wgc::command::CommandEncoderError;
    use wgpu::wgc::device::{DeviceError, DeviceMismatch};
    let mut at = Some(e);
    while let Some(err) = at {
        let mismatch = err.is::<DeviceMismatch>()
            || matches!(
                err.downcast_ref::<DeviceError>(),
                Some(DeviceError::DeviceMismatch(_))
            )
            || matches!(
                err.downcast_ref::<CommandEncoderError>(),
                Some(CommandEncoderError::Device(DeviceError::DeviceMismatch(_)))
            );
        if mismatch {
            return true;
        }
        at = err.source();
    }
    false
}

/// A wgpu device and queue with what the crate keeps beside them.
pub(crate) struct Device {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) summary: AdapterSummary,
    pub(crate) limits: wgpu::Limits,
    pub(crate) features: wgpu::Features,
    pub(crate) pool: Arc<Pool>,
    /// Fill every storage buffer with NaN before use.
    poison: bool,
    lost: Arc<Mutex<Option<String>>>,
    uncaptured: Arc<Mutex<Option<String>>>,
    /// Bound where a kernel reads an optional buffer that is absent.
    pub(crate) dummy: wgpu::Buffer,
    /// Bound where a kernel writes a buffer that its mode does not use (a
    /// buffer cannot be bound both read-only and read-write in one dispatch).
    pub(crate) dummy_rw: wgpu::Buffer,
    /// The loop iterations one invocation ran before the driver ended its
    /// loop, where the probe saw that happen (llvmpipe: 65535, see
    /// [`LOOP_PROBE_ITERATIONS`]); `None` where the probe's loop ran to the
    /// end. Set by whoever opens the device, once.
    pub(crate) loop_limit: Option<u64>,
    /// The share of the loop iterations seen to run that one invocation may
    /// be given (see [`loop_budget`](Self::loop_budget)).
    pub(crate) loop_share: f64,
    /// Whether the shaders are compiled with their `// unroll` loops written
    /// out (`pipeline/unroll.rs`): on GPUs, whose registers it is for; not
    /// on CPU adapters, whose compilers keep private arrays in memory at no
    /// cost and where SwiftShader's compiler took over 20 GB on the
    /// written-out reset-before `resident`.
    pub(crate) unroll: bool,
    /// The destination of the empty copy that asks wgpu-core which device
    /// made a caller's buffer (see [`check_owned`](Self::check_owned)).
    probe: wgpu::Buffer,
}

/// The iterations of the loop probe's loop: a kernel may count on this many
/// loop iterations per invocation where the probe saw them all run.
pub(crate) const LOOP_PROBE_ITERATIONS: u64 = 1 << 22;

/// The share of the iterations seen to run that one invocation is given by
/// default: a margin of two over the kernels' own bounds.
pub(crate) const LOOP_SHARE: f64 = 0.5;

impl Device {
    /// Wraps `device` and `queue`. With `own_handlers` (a device the crate
    /// opened) an error that wgpu reports outside a call's error scopes is
    /// recorded (and returned by the next call) instead of panicking, and a
    /// loss of the device is recorded; a caller's device keeps its own
    /// handlers (every call of the crate runs inside error scopes anyway).
    /// The pool keeps free buffers within `budget` bytes and for at most
    /// `max_idle`.
    pub(crate) fn new(
        device: wgpu::Device,
        queue: wgpu::Queue,
        summary: AdapterSummary,
        poison: bool,
        own_handlers: bool,
        (budget, max_idle): (u64, std::time::Duration),
    ) -> Self {
        let cpu = summary.is_cpu();
        let uncaptured = Arc::new(Mutex::new(None));
        let lost = Arc::new(Mutex::new(None));
        if own_handlers {
            let u2 = uncaptured.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                let mut g = u2.lock().unwrap_or_else(|p| p.into_inner());
                if g.is_none() {
                    *g = Some(e.to_string());
                }
            }));
            let l2 = lost.clone();
            device.set_device_lost_callback(move |reason, msg| {
                let mut g = l2.lock().unwrap_or_else(|p| p.into_inner());
                *g = Some(format!("{reason:?}: {msg}"));
            });
        }
        let dummy = |label| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        let probe = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("gru-wgpu ownership probe"),
            size: 4,
            usage: wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let limits = device.limits();
        let policy = PoolPolicy {
            budget,
            max_idle,
            max_class: limits
                .max_buffer_size
                .min(limits.max_storage_buffer_binding_size),
        };
        Device {
            probe,
            dummy: dummy("gru-wgpu dummy"),
            dummy_rw: dummy("gru-wgpu dummy (written)"),
            limits,
            features: device.features(),
            device,
            queue,
            summary,
            pool: Arc::new(Pool::new(policy)),
            poison,
            lost,
            uncaptured,
            loop_limit: None,
            loop_share: LOOP_SHARE,
            unroll: !cpu,
        }
    }

    /// The loop iterations (all loops together) that one invocation of a
    /// dispatch may run here: a share of what the loop probe saw run to the
    /// end (the driver's limit where it has one, else the probe's own
    /// [`LOOP_PROBE_ITERATIONS`]). Kernels whose loops grow with the data
    /// (the persistent time loops, long sums) split their work to stay
    /// within it.
    pub(crate) fn loop_budget(&self) -> u64 {
        let seen = self.loop_limit.unwrap_or(LOOP_PROBE_ITERATIONS) as f64;
        let b = seen * self.loop_share;
        if b >= u64::MAX as f64 {
            u64::MAX
        } else {
            b as u64
        }
    }

    /// Fails, naming `what`, where one invocation would run more loop
    /// iterations than [`loop_budget`](Self::loop_budget) allows: a kernel
    /// that the driver would cut short, giving wrong numbers.
    pub(crate) fn check_loop(&self, what: &str, iterations: u64) -> Result<()> {
        let budget = self.loop_budget();
        if iterations > budget {
            return Err(GruError::LimitExceeded {
                what: format!("{what} on {}", self.summary),
                requested: iterations,
                limit: budget,
                limit_name:
                    "loop iterations per invocation (a share of those the loop probe saw run)",
                unit: "iterations",
            });
        }
        Ok(())
    }

    /// Fails if the device was lost (it polls the device first, so that a
    /// loss the driver has reported is seen).
    pub(crate) fn check_alive(&self) -> Result<()> {
        let _ = self.device.poll(wgpu::PollType::Poll);
        let g = self.lost.lock().unwrap_or_else(|p| p.into_inner());
        match &*g {
            Some(m) => Err(GruError::DeviceLost(m.clone())),
            None => Ok(()),
        }
    }

    /// Checks a buffer the caller hands in: room for `floats` floats in its
    /// data (what its loan asked for, for a buffer of the crate's pools: not
    /// the slack of its size class), the usage `usage` (named `usage_name`
    /// in the message), and made by this device
    /// ([`check_owned`](Self::check_owned)).
    pub(crate) fn check_caller_buffer(
        &self,
        name: &str,
        buf: &wgpu::Buffer,
        floats: usize,
        usage: wgpu::BufferUsages,
        usage_name: &str,
    ) -> Result<()> {
        let need = (floats as u64).saturating_mul(4);
        let has = crate::gpu::pool::data_bytes(buf);
        if has < need {
            return Err(GruError::LengthMismatch {
                name: name.to_string(),
                expected: need,
                actual: has,
                unit: "bytes (at least)",
            });
        }
        if !buf.usage().contains(usage) {
            return Err(GruError::InvalidConfig(format!(
                "`{name}`: the buffer needs the usage {usage_name}, it has {:?}",
                buf.usage()
            )));
        }
        self.check_owned(name, buf)
    }

    /// Refuses ([`GruError::ForeignBuffer`], naming the argument `name`) a
    /// buffer that another device made.
    ///
    /// wgpu does not: a `wgpu::Buffer` is an id in the registry of the
    /// instance that made it, and a command of this device looks the id up
    /// in this device's registry. Under another instance the id names
    /// another buffer or none (wgpu then panics); under the same instance
    /// wgpu-core finds the buffer, and checks its device only when the
    /// command encoder is finished. So: a buffer of the crate's pools is
    /// known by its address (`pool::lent`),
    /// whatever instance made it; any other buffer (one the caller made, a
    /// clone) is asked about with an empty copy from it, recorded and
    /// finished (never submitted) inside an error scope, where wgpu-core
    /// reports a device mismatch. That question has an answer for the
    /// buffers of devices of the instance of this one, which every context
    /// the crate opens shares. A buffer not known by its address (one the
    /// caller made, a clone of one of the crate's, one taken out with
    /// `PooledBuffer::into_inner`) that comes from another wgpu instance
    /// than this context's device cannot be told apart: wgpu would look its
    /// id up in this instance's registry.
    pub(crate) fn check_owned(&self, name: &str, buf: &wgpu::Buffer) -> Result<()> {
        let foreign = || GruError::ForeignBuffer {
            name: name.to_string(),
        };
        if let Some(lent) = crate::gpu::pool::lent(buf) {
            return match lent.pool == self.pool.id() {
                true => Ok(()),
                false => Err(foreign()),
            };
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("gru-wgpu ownership probe"),
            });
        enc.copy_buffer_to_buffer(buf, 0, &self.probe, 0, 0);
        drop(enc.finish());
        match pollster::block_on(scope.pop()) {
            // Any other complaint (a usage this copy needs and the call does
            // not, a destroyed buffer) is the call's to report.
            Some(e) if is_device_mismatch(&e) => Err(foreign()),
            _ => Ok(()),
        }
    }

    /// Runs `f` inside error scopes: any out-of-memory, validation or internal
    /// error that the device reports during `f` comes back as an `Err`.
    pub(crate) fn scoped<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.check_alive()?;
        let scope = ErrorScopes::push(&self.device);
        let out = f();
        let popped = scope.pop(&self.lost);
        let uncaptured = self
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

    /// Runs `f` (the creation of device objects) inside error scopes of its own.
    pub(crate) fn checked<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let scope = ErrorScopes::push(&self.device);
        let out = f();
        scope.pop(&self.lost)?;
        Ok(out)
    }

    /// Waits until the device has finished all submitted work.
    pub(crate) fn wait(&self) -> Result<()> {
        self.device
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
        let l = &self.limits;
        let limits = [
            (l.max_buffer_size, "max_buffer_size"),
            (
                l.max_storage_buffer_binding_size,
                "max_storage_buffer_binding_size",
            ),
        ];
        match limits.into_iter().find(|&(limit, _)| bytes > limit) {
            Some((limit, limit_name)) => Err(GruError::LimitExceeded {
                what: what.to_string(),
                requested: bytes,
                limit,
                limit_name,
                unit: "bytes",
            }),
            None => Ok(()),
        }
    }

    /// A storage buffer of `len` floats from the pool (NaN-filled when poisoning).
    pub(crate) fn storage(&self, what: &str, len: usize) -> Result<PooledBuffer> {
        self.storage_with(what, len, 0, wgpu::BufferUsages::empty())
    }

    /// A storage buffer of `len` floats and `slack` bytes more, with the
    /// usages `extra` besides the storage and copy ones.
    pub(crate) fn storage_with(
        &self,
        what: &str,
        len: usize,
        slack: u64,
        extra: wgpu::BufferUsages,
    ) -> Result<PooledBuffer> {
        let bytes = (len.max(1) as u64).saturating_mul(4).saturating_add(slack);
        self.check_buffer_size(what, bytes)?;
        let mut buf = self.pool.take_raw(
            &self.device,
            what,
            bytes,
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST
                | extra,
        );
        buf.len = len;
        if self.poison {
            // The whole buffer: its size class may pass what was asked.
            let nan = vec![f32::NAN; (buf.buffer().size() / 4) as usize];
            self.queue
                .write_buffer(buf.buffer(), 0, bytemuck::cast_slice(&nan));
        }
        Ok(buf)
    }

    /// A storage buffer of `len` f16 values (`len / 2` floats, rounded up),
    /// every half filled with an f16 NaN when poisoning.
    pub(crate) fn storage_f16(&self, what: &str, len: usize) -> Result<PooledBuffer> {
        let mut buf = self.storage_with(what, len.div_ceil(2), 0, wgpu::BufferUsages::empty())?;
        buf.len = len;
        if self.poison {
            // 0x7E00 is a quiet NaN in f16: both halves of each word.
            let nan = vec![0x7E00_7E00u32; (buf.buffer().size() / 4) as usize];
            self.queue
                .write_buffer(buf.buffer(), 0, bytemuck::cast_slice(&nan));
        }
        Ok(buf)
    }

    /// A storage buffer holding `data`.
    pub(crate) fn upload(&self, what: &str, data: &[f32]) -> Result<PooledBuffer> {
        let buf = self.storage(what, data.len())?;
        if !data.is_empty() {
            self.queue
                .write_buffer(buf.buffer(), 0, bytemuck::cast_slice(data));
        }
        Ok(buf)
    }

    /// A buffer the host can map for reading, of `bytes`.
    pub(crate) fn staging(&self, bytes: u64) -> PooledBuffer {
        self.pool.take_raw(
            &self.device,
            "gru-wgpu staging",
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
            let mut enc = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("gru-wgpu read back"),
                });
            enc.copy_buffer_to_buffer(buf, (offset * 4) as u64, st.buffer(), 0, (len * 4) as u64);
            self.queue.submit(Some(enc.finish()));
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

/// Error scopes for out-of-memory, validation and internal errors.
pub(crate) struct ErrorScopes(Vec<wgpu::ErrorScopeGuard>);

impl ErrorScopes {
    pub(crate) fn push(device: &wgpu::Device) -> Self {
        ErrorScopes(vec![
            device.push_error_scope(wgpu::ErrorFilter::Internal),
            device.push_error_scope(wgpu::ErrorFilter::Validation),
            device.push_error_scope(wgpu::ErrorFilter::OutOfMemory),
        ])
    }

    pub(crate) fn pop(self, lost: &Mutex<Option<String>>) -> Result<()> {
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
