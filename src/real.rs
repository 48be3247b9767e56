//! The floating-point types the CPU reference runs on: `f32` and `f64`.

use ndarray::{LinalgScalar, ScalarOperand};
use num_traits::Float;

/// A float the CPU reference is generic over (`f32` or `f64`).
pub trait Real:
    Float
    + num_traits::NumAssign
    + LinalgScalar
    + ScalarOperand
    + std::fmt::Debug
    + std::fmt::Display
    + std::iter::Sum
    + Send
    + Sync
    + 'static
{
    /// The safetensors dtype of this type.
    const DTYPE: safetensors::Dtype;
    /// The name of the dtype, as PyTorch spells it.
    const NAME: &'static str;

    /// Converts from `f64`, rounding to nearest.
    fn of(v: f64) -> Self;
    /// Converts to `f64` exactly.
    fn f64(self) -> f64;
    /// Appends the little-endian bytes of `self`.
    fn put_le(self, out: &mut Vec<u8>);
}

impl Real for f32 {
    const DTYPE: safetensors::Dtype = safetensors::Dtype::F32;
    const NAME: &'static str = "float32";
    fn of(v: f64) -> Self {
        v as f32
    }
    fn f64(self) -> f64 {
        self as f64
    }
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Real for f64 {
    const DTYPE: safetensors::Dtype = safetensors::Dtype::F64;
    const NAME: &'static str = "float64";
    fn of(v: f64) -> Self {
        v
    }
    fn f64(self) -> f64 {
        self
    }
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

/// The logistic sigmoid, computed so that no input overflows:
/// `1 / (1 + e^-x)` for `x >= 0`, `e^x / (1 + e^x)` otherwise.
pub fn sigmoid<F: Real>(x: F) -> F {
    if x >= F::zero() {
        F::one() / (F::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (F::one() + e)
    }
}

/// `||a - b|| / ||b||` over all elements (Frobenius norms); `||a||` where `b` is all zeros.
/// NaN anywhere gives NaN, so a NaN never passes a bound.
pub fn rel_error<'a>(
    ours: impl IntoIterator<Item = f64>,
    reference: impl IntoIterator<Item = &'a f64>,
) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    let mut a = ours.into_iter();
    let mut b = reference.into_iter();
    loop {
        match (a.next(), b.next()) {
            (Some(x), Some(y)) => {
                num += (x - y) * (x - y);
                den += y * y;
            }
            (None, None) => break,
            _ => return f64::NAN,
        }
    }
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

/// The largest `|a - b|` over all elements; NaN if any element is NaN or the lengths differ.
pub fn max_abs_error<'a>(
    ours: impl IntoIterator<Item = f64>,
    reference: impl IntoIterator<Item = &'a f64>,
) -> f64 {
    let mut worst = 0.0f64;
    let mut a = ours.into_iter();
    let mut b = reference.into_iter();
    loop {
        match (a.next(), b.next()) {
            (Some(x), Some(y)) => {
                let d = (x - y).abs();
                if d.is_nan() {
                    return f64::NAN;
                }
                worst = worst.max(d);
            }
            (None, None) => return worst,
            _ => return f64::NAN,
        }
    }
}
