//! Buffers kept for reuse: the device layer hands out every buffer from here,
//! and a buffer comes back when its [`PooledBuffer`] is dropped.
//!
//! A request is served with a buffer of its size class ([`size_class`]:
//! up to a quarter larger than asked), a free one where the pool keeps one;
//! the free buffers are kept within a byte budget, the least recently
//! returned released first, and for a bounded time (see [`PoolPolicy`] and
//! `ContextOptions::pool_budget`).
//!
//! Every buffer the pool makes lives in a box of its own and is registered,
//! for its whole life, under its address with the pool that made it and the
//! size its current loan asked for: so a call handed a `&wgpu::Buffer` can
//! tell whether one of the crate's buffers is its device's or another's,
//! which wgpu itself cannot (see `Device::check_owned`), and checks its
//! size against what was asked rather than its size class ([`lent`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

/// What the registry knows of one of the crate's buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lent {
    /// The id of the pool that made it.
    pub(crate) pool: u64,
    /// The bytes its current (or last) loan asked for: its data and slack,
    /// at most its size.
    pub(crate) bytes: u64,
}

/// Every live buffer of the crate, by the address of its `wgpu::Buffer`
/// (boxed, so the address is the buffer's alone while it lives).
static OWNERS: LazyLock<Mutex<HashMap<usize, Lent>>> = LazyLock::new(Default::default);

fn owners() -> std::sync::MutexGuard<'static, HashMap<usize, Lent>> {
    OWNERS.lock().unwrap_or_else(|p| p.into_inner())
}

fn address(buf: &wgpu::Buffer) -> usize {
    buf as *const wgpu::Buffer as usize
}

/// The pool that made `buf` and the bytes its loan asked for, where the
/// crate made it and the reference is to the crate's own `wgpu::Buffer`
/// (not to a clone of it, nor to one taken out with
/// [`PooledBuffer::into_inner`]).
pub(crate) fn lent(buf: &wgpu::Buffer) -> Option<Lent> {
    owners().get(&address(buf)).copied()
}

/// The bytes of `buf` that hold data: what its loan asked for where the
/// crate's pool made it, else its size.
pub(crate) fn data_bytes(buf: &wgpu::Buffer) -> u64 {
    lent(buf).map_or(buf.size(), |l| l.bytes)
}

/// A device buffer the pool made: boxed, registered under its address while
/// it lives.
struct Owned(Option<Box<wgpu::Buffer>>);

impl Owned {
    fn new(buf: wgpu::Buffer, pool: u64, bytes: u64) -> Self {
        let b = Box::new(buf);
        owners().insert(address(&b), Lent { pool, bytes });
        Owned(Some(b))
    }

    fn buffer(&self) -> &wgpu::Buffer {
        self.0.as_ref().expect("present until taken")
    }

    /// Registers a new loan of `bytes`.
    fn lend(&self, bytes: u64) {
        if let Some(l) = owners().get_mut(&address(self.buffer())) {
            l.bytes = bytes;
        }
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

/// The smallest buffer the pool makes, in bytes.
pub(crate) const MIN_CLASS: u64 = 256;

/// The size of the buffer that serves a request of `bytes`: the next step
/// of four per doubling at or above it (..., 4·2^k, 5·2^k, 6·2^k, 7·2^k,
/// 8·2^k, ...), at least [`MIN_CLASS`], so that a buffer serves every request
/// between 80 % and 100 % of its size and wastes at most a quarter of what is
/// asked; `bytes` itself where the step would pass `max` (the largest buffer
/// the device binds).
pub(crate) fn size_class(bytes: u64, max: u64) -> u64 {
    let class = if bytes <= MIN_CLASS {
        MIN_CLASS
    } else {
        // 2^k <= bytes < 2^(k+1), k >= 8: steps of 2^(k-2).
        let step = 1u64 << (63 - bytes.leading_zeros() - 2);
        bytes.div_ceil(step).checked_mul(step).unwrap_or(bytes)
    };
    if class > max {
        bytes
    } else {
        class
    }
}

/// What the pool keeps for reuse, and when.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolPolicy {
    /// At most this many bytes of free buffers are kept (the least recently
    /// returned go first); a buffer larger than this is never kept.
    pub(crate) budget: u64,
    /// A free buffer not reused within this long is released.
    pub(crate) max_idle: std::time::Duration,
    /// The largest size class (see [`size_class`]).
    pub(crate) max_class: u64,
}

/// Counts of the pool's work since it was made (see
/// `GpuContext::pool_stats`).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Device buffers made.
    pub created: u64,
    /// Requests served by a free buffer.
    pub reused: u64,
    /// Device buffers released: evicted (over the budget, idle too long,
    /// too large to keep), trimmed, or taken out with
    /// [`PooledBuffer::into_inner`].
    pub released: u64,
    /// Device buffers alive that the pool made and still accounts for (on
    /// loan or free): `created - released`.
    pub live: u64,
    /// Their bytes.
    pub live_bytes: u64,
    /// Free buffers kept for reuse, and their bytes.
    pub free: u64,
    pub free_bytes: u64,
}

/// The key of a free list: size class and usage.
type Key = (u64, wgpu::BufferUsages);

/// A free buffer.
struct Entry {
    /// Its place in the order of returns (see `Free::order`).
    seq: u64,
    returned: std::time::Instant,
    buf: Owned,
}

/// The free buffers, and the counts.
#[derive(Default)]
struct Free {
    /// By key, in the order they were returned (oldest first).
    lists: HashMap<Key, VecDeque<Entry>>,
    /// Every free buffer's `seq`, with its key: the oldest first.
    order: BTreeMap<u64, Key>,
    next_seq: u64,
    stats: PoolStats,
}

impl Free {
    /// Takes the most recently returned buffer of `key`.
    fn take(&mut self, key: Key) -> Option<Owned> {
        let list = self.lists.get_mut(&key)?;
        let e = list.pop_back()?;
        if list.is_empty() {
            self.lists.remove(&key);
        }
        self.order.remove(&e.seq);
        self.stats.free -= 1;
        self.stats.free_bytes -= key.0;
        Some(e.buf)
    }

    /// Releases the least recently returned buffer; `false` where none is free.
    fn evict_oldest(&mut self) -> bool {
        let Some((_, key)) = self.order.pop_first() else {
            return false;
        };
        let list = self.lists.get_mut(&key).expect("listed");
        list.pop_front().expect("the oldest of its list");
        if list.is_empty() {
            self.lists.remove(&key);
        }
        self.stats.free -= 1;
        self.stats.free_bytes -= key.0;
        self.released(key.0);
        true
    }

    /// Releases every free buffer returned longer than `max_idle` ago.
    fn evict_idle(&mut self, max_idle: std::time::Duration) {
        let now = std::time::Instant::now();
        while let Some((_, key)) = self.order.first_key_value() {
            let oldest = self.lists[key].front().expect("listed");
            if now.duration_since(oldest.returned) <= max_idle {
                break;
            }
            self.evict_oldest();
        }
    }

    /// Counts a buffer of `bytes` released.
    fn released(&mut self, bytes: u64) {
        self.stats.released += 1;
        self.stats.live -= 1;
        self.stats.live_bytes -= bytes;
    }
}

/// Buffers kept for reuse, by size class and usage.
///
/// A request is served by a free buffer of its size class (see
/// [`size_class`]) and usage, or by a new buffer of that size; a buffer
/// comes back when its [`PooledBuffer`] is dropped, and is kept within the
/// policy's budget (least recently returned released first) and for at most
/// its idle time (checked whenever the pool is used).
pub(crate) struct Pool {
    /// Unique in the process: the pool id [`lent`] gives for its buffers.
    id: u64,
    policy: PoolPolicy,
    free: Mutex<Free>,
}

impl Pool {
    pub(crate) fn new(policy: PoolPolicy) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Pool {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            policy,
            free: Default::default(),
        }
    }

    fn free(&self) -> std::sync::MutexGuard<'_, Free> {
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The size of the buffer that serves a request of `bytes`.
    pub(crate) fn class_of(&self, bytes: u64) -> u64 {
        size_class(bytes, self.policy.max_class)
    }

    /// A buffer of at least `bytes` with `usage` (of `bytes`' size class): a
    /// free one, or a new one labelled `label` (a reused buffer keeps the
    /// label it was made with). Its `len` is `bytes / 4` floats.
    pub(crate) fn take_raw(
        self: &Arc<Self>,
        device: &wgpu::Device,
        label: &str,
        bytes: u64,
        usage: wgpu::BufferUsages,
    ) -> PooledBuffer {
        let class = self.class_of(bytes);
        let reused = {
            let mut free = self.free();
            free.evict_idle(self.policy.max_idle);
            let b = free.take((class, usage));
            if b.is_some() {
                free.stats.reused += 1;
            }
            b
        };
        if let Some(b) = &reused {
            b.lend(bytes);
        }
        let buf = reused.unwrap_or_else(|| {
            let b = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: class,
                usage,
                mapped_at_creation: false,
            });
            let mut free = self.free();
            free.stats.created += 1;
            free.stats.live += 1;
            free.stats.live_bytes += class;
            Owned::new(b, self.id, bytes)
        });
        PooledBuffer {
            len: (bytes / 4) as usize,
            buf: Some(buf),
            pool: Some(self.clone()),
        }
    }

    /// Takes a buffer back: kept for reuse within the budget, else released.
    fn give(&self, buf: Owned) {
        let key = (buf.buffer().size(), buf.buffer().usage());
        let mut free = self.free();
        if key.0 > self.policy.budget {
            free.released(key.0);
            return;
        }
        let seq = free.next_seq;
        free.next_seq += 1;
        free.lists.entry(key).or_default().push_back(Entry {
            seq,
            returned: std::time::Instant::now(),
            buf,
        });
        free.order.insert(seq, key);
        free.stats.free += 1;
        free.stats.free_bytes += key.0;
        while free.stats.free_bytes > self.policy.budget && free.evict_oldest() {}
        free.evict_idle(self.policy.max_idle);
    }

    /// Counts a buffer taken out of the pool's care (`into_inner`).
    fn taken_out(&self, bytes: u64) {
        self.free().released(bytes);
    }

    /// The pool id [`lent`] gives for this pool's buffers.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Releases every free buffer.
    pub(crate) fn clear(&self) {
        let mut free = self.free();
        while free.evict_oldest() {}
    }

    /// Releases every free buffer and starts the counts again from
    /// nothing: the pool as new, once the buffers it lent are back (the
    /// context opens it so after the loop probe).
    pub(crate) fn reset(&self) {
        self.clear();
        let mut free = self.free();
        free.stats = PoolStats::default();
    }

    /// Bytes of the free buffers.
    pub(crate) fn bytes(&self) -> u64 {
        self.free().stats.free_bytes
    }

    /// The counts so far.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    pub(crate) fn stats(&self) -> PoolStats {
        self.free().stats
    }
}

/// A buffer on loan from the pool: it goes back when dropped.
pub struct PooledBuffer {
    /// Floats of data (the buffer may be larger: its size class, slack).
    pub(crate) len: usize,
    buf: Option<Owned>,
    pool: Option<Arc<Pool>>,
}

impl PooledBuffer {
    /// The wgpu buffer.
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buf.as_ref().expect("present until drop").buffer()
    }

    /// Floats of data in the buffer (it may be larger: the pool serves a
    /// request with a buffer of its size class, up to a quarter larger, and
    /// window operands carry slack).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no data.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Takes the buffer out of the pool's care: it is freed, not reused, when dropped.
    pub fn into_inner(mut self) -> wgpu::Buffer {
        let buf = self.buf.take().expect("present until drop").into_buffer();
        if let Some(p) = self.pool.take() {
            p.taken_out(buf.size());
        }
        buf
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_step_four_times_a_doubling_and_waste_at_most_a_quarter() {
        let max = u64::MAX;
        assert_eq!(size_class(0, max), MIN_CLASS);
        assert_eq!(size_class(4, max), MIN_CLASS);
        assert_eq!(size_class(256, max), 256);
        assert_eq!(size_class(257, max), 320);
        assert_eq!(size_class(320, max), 320);
        assert_eq!(size_class(321, max), 384);
        assert_eq!(size_class(449, max), 512);
        assert_eq!(size_class(3360, max), 3584);
        assert_eq!(size_class(1 << 20, max), 1 << 20);
        assert_eq!(size_class((1 << 20) + 1, max), 5 << 18);
        for bytes in (MIN_CLASS..1 << 16)
            .step_by(7)
            .chain([u64::MAX / 3, u64::MAX])
        {
            let c = size_class(bytes, max);
            assert!(c >= bytes && c - bytes <= bytes / 4, "{bytes} -> {c}");
            assert_eq!(size_class(c, max), c, "a class is its own class");
        }
        // Never past the largest buffer the device binds.
        assert_eq!(size_class(1000, 1000), 1000);
        assert_eq!(size_class(1000, 1023), 1000);
        assert_eq!(size_class(1000, 1024), 1024);
    }
}
