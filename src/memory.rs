//! How much host memory a call may ask for, checked before it is allocated.
//!
//! Rust aborts the process when an allocation fails, so a size read from a
//! file or the command line must be refused before anything is sized from
//! it. The estimate is the smaller of the machine's memory (`MemTotal` in
//! `/proc/meminfo`) and the process's address-space limit (`ulimit -v`,
//! `Max address space` in `/proc/self/limits`). Where neither can be read
//! (not Linux), only sizes that overflow are refused.

use crate::error::{GruError, Result};

/// The host memory limit in bytes and what it is, where one can be read.
pub fn host_limit() -> Option<(u64, &'static str)> {
    let total = crate::files::read_system("/proc/meminfo".as_ref()).and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb.saturating_mul(1024))
    });
    let address_space = crate::files::read_system("/proc/self/limits".as_ref()).and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("Max address space"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|soft| soft.parse::<u64>().ok())
    });
    match (total, address_space) {
        (Some(t), Some(a)) if a < t => Some((a, "the address-space limit (ulimit -v)")),
        (Some(t), _) => Some((t, "the machine's memory (MemTotal)")),
        (None, Some(a)) => Some((a, "the address-space limit (ulimit -v)")),
        (None, None) => None,
    }
}

/// Refuses `bytes` of host memory for `what` where they exceed the limit.
pub fn check_host(what: &str, bytes: u64) -> Result<()> {
    if let Some((limit, limit_name)) = host_limit() {
        if bytes > limit {
            return Err(GruError::HostMemory {
                what: what.to_string(),
                requested: bytes,
                limit,
                limit_name,
            });
        }
    }
    Ok(())
}

/// `count` values of `size` bytes each, or `u64::MAX` where that overflows.
pub fn bytes_of(count: usize, size: usize) -> u64 {
    (count as u64).saturating_mul(size as u64)
}

/// The sum of some counts, saturating.
pub fn sum(counts: &[u64]) -> u64 {
    counts.iter().fold(0u64, |a, &b| a.saturating_add(b))
}
