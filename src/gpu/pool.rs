//! Buffers kept for reuse: the device layer hands out every buffer from here,
//! and a buffer comes back when its [`PooledBuffer`] is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Buffers kept for reuse, by size and usage.
#[derive(Default)]
pub(crate) struct Pool {
    free: Mutex<HashMap<(u64, wgpu::BufferUsages), Vec<wgpu::Buffer>>>,
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
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
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
    buf: Option<wgpu::Buffer>,
    pool: Option<Arc<Pool>>,
}

impl PooledBuffer {
    /// The wgpu buffer.
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buf.as_ref().expect("present until drop")
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
