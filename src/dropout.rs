//! The dropout mask, as a pure function of (seed, layer, element), so that the
//! CPU reference and the GPU draw exactly the same mask.
//!
//! Element `e` of the output of layer `l` (flat index in the sequence-first
//! `(T, B, D*H)` layout) is kept when `hash(e ^ hash(l ^ hash(seed))) >> 8`,
//! a uniform 24-bit integer, is at least `threshold = round(p * 2^24)`;
//! kept elements are scaled by `1 / (1 - p)`, as PyTorch's `dropout` does.
//! `shaders/util.wgsl` holds the same function.

/// PCG's RXS-M-XS output permutation of one LCG step: a good 32-bit hash.
pub fn pcg_hash(x: u32) -> u32 {
    let state = x.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// The 24-bit threshold of a dropout probability `p` in [0, 1).
pub fn threshold(p: f32) -> u32 {
    ((p as f64) * (1u32 << 24) as f64).round() as u32
}

/// Whether element `index` of layer `layer`'s output is kept.
pub fn keep(seed: u32, layer: u32, index: u32, threshold: u32) -> bool {
    (pcg_hash(index ^ pcg_hash(layer ^ pcg_hash(seed))) >> 8) >= threshold
}
