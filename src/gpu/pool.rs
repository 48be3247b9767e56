//! Buffers kept for reuse: the device layer hands out every buffer from here,
//! and a buffer comes back when its [`PooledBuffer`] is dropped.
//!
//! Every buffer the pool makes lives in a box of its own and is registered,
//! for its whole life, under its address with the pool that made it: so a
//! call handed a `&wgpu::Buffer` can tell whether one of the crate's
//! buffers is its device's or another's ([`owner`]), which wgpu itself
//! cannot (see `Device::check_owned`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

/// The pool that made each live buffer of the crate, by the address of its
/// `wgpu::Buffer` (boxed, so the address is the buffer's alone while it lives).
static OWNERS: LazyLock<Mutex<HashMap<usize, u64>>> = LazyLock::new(Default::default);

fn owners() -> std::sync::MutexGuard<'static, HashMap<usize, u64>> {
    OWNERS.lock().unwrap_or_else(|p| p.into_inner())
}

fn address(buf: &wgpu::Buffer) -> usize {
    buf as *const wgpu::Buffer as usize
}

/// The id of the pool that made `buf`, where the crate made it and the
/// reference is to the crate's own `wgpu::Buffer` (not to a clone of it, nor
/// to one taken out with [`PooledBuffer::into_inner`]).
pub(crate) fn owner(buf: &wgpu::Buffer) -> Option<u64> {
    owners().get(&address(buf)).copied()
}

/// A device buffer the pool made: boxed, registered under its address with
/// the pool's id while it lives.
struct Owned(Option<Box<wgpu::Buffer>>);

impl Owned {
    fn new(buf: wgpu::Buffer, pool: u64) -> Self {
        let b = Box::new(buf);
        owners().insert(address(&b), pool);
        Owned(Some(b))
    }

    fn buffer(&self) -> &wgpu::Buffer {
        self.0.as_ref().expect("present until taken")
    }

    /// The buffer itself, no longer registered.
    fn into_buffer(mut self) -> wgpu::Buffer {
        let b = self.0.take().expect("present until taken");
        owners().remove(&address(&b));
        *b
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            owners().remove(&address(b));
        }
    }
}

/// Buffers kept for reuse, by size and usage.
pub(crate) struct Pool {
    /// Unique in the process: what [`owner`] returns for its buffers.
    id: u64,
    free: Mutex<HashMap<(u64, wgpu::BufferUsages), Vec<Owned>>>,
}

impl Default for Pool {
    fn default() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Pool {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            free: Default::default(),
        }
    }
}

/// At most this many bytes stay in the pool; beyond it, returned buffers are freed.
const POOL_CAP_BYTES: u64 = 1 << 30;

impl Pool {
    /// A buffer of `bytes` and `usage`: a free one of exactly that size and
    /// usage, or a new one labelled `label` (a reused buffer keeps the label
    /// it was made with).
    pub(crate) fn take_raw(
        self: &Arc<Self>,
        device: &wgpu::Device,
        label: &str,
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
            let b = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage,
                mapped_at_creation: false,
            });
            Owned::new(b, self.id)
        });
        PooledBuffer {
            len: (bytes / 4) as usize,
            buf: Some(buf),
            pool: Some(self.clone()),
        }
    }

    fn give(&self, buf: Owned) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let held: u64 = free.iter().map(|((s, _), v)| s * v.len() as u64).sum();
        let (size, usage) = (buf.buffer().size(), buf.buffer().usage());
        if held + size <= POOL_CAP_BYTES {
            free.entry((size, usage)).or_default().push(buf);
        }
    }

    /// The id [`owner`] returns for this pool's buffers.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn clear(&self) {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub(crate) fn bytes(&self) -> u64 {
        let free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        free.iter().map(|((s, _), v)| s * v.len() as u64).sum()
    }
}

/// A buffer on loan from the pool: it goes back when dropped.
pub struct PooledBuffer {
    /// Floats of data (the buffer may be larger).
    pub(crate) len: usize,
    buf: Option<Owned>,
    pool: Option<Arc<Pool>>,
}

impl PooledBuffer {
    /// The wgpu buffer.
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buf.as_ref().expect("present until drop").buffer()
    }

    /// Floats of data in the buffer (it may be larger: window operands carry slack).
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
        self.buf.take().expect("present until drop").into_buffer()
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
