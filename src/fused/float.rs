//! Float emulation: how libtorch's CPU kernels round each intermediate.
//!
//! libtorch computes float16 and bfloat16 arithmetic in float32 ("opmath")
//! and rounds every op's result back to the tensor's dtype, round to nearest
//! even. Float32 arithmetic is IEEE single precision. So every intermediate
//! of the reference op sequence can be reproduced in `f32`, followed by
//! [`Prec::round`] to the dtype the op's output has.
//!
//! Everything here is branch-free so that loops over these functions
//! vectorize; the unit tests check each function against the `half` crate
//! (itself round-to-nearest-even, like c10) on every 16-bit pattern and on
//! sampled and edge-case 32-bit patterns.

use half::{bf16, f16};
use tch::Kind;

/// A float dtype libtorch rounds intermediates to: `round(x)` is `x`
/// converted to the dtype (round to nearest even, overflow to infinity) and
/// back to `f32`, exactly.
pub(crate) trait Prec: Copy + Send + Sync + 'static {
    /// Whether this is bfloat16 (kernels written for its rounding).
    const IS_BF16: bool = false;
    /// Whether this is float32 (kernels that leave results unrounded).
    const IS_F32: bool = false;
    /// Every integer of magnitude up to this is exact in the dtype.
    const EXACT_INTS: f32;
    fn round(x: f32) -> f32;
    /// [`round`](Prec::round) for a non-NaN `x`; a NaN gives any value.
    fn round_non_nan(x: f32) -> f32;
}

/// float32: intermediates are already `f32`.
#[derive(Clone, Copy)]
pub(crate) struct F32;

/// bfloat16.
#[derive(Clone, Copy)]
pub(crate) struct Bf16;

/// float16.
#[derive(Clone, Copy)]
pub(crate) struct F16;

impl Prec for F32 {
    const IS_F32: bool = true;
    const EXACT_INTS: f32 = 16_777_216.0;
    #[inline(always)]
    fn round(x: f32) -> f32 {
        x
    }
    #[inline(always)]
    fn round_non_nan(x: f32) -> f32 {
        x
    }
}

impl Prec for Bf16 {
    const IS_BF16: bool = true;
    const EXACT_INTS: f32 = 256.0;
    #[inline(always)]
    fn round(x: f32) -> f32 {
        round_bf16(x)
    }
    #[inline(always)]
    fn round_non_nan(x: f32) -> f32 {
        let b = x.to_bits();
        f32::from_bits(b.wrapping_add(0x7FFF + ((b >> 16) & 1)) & 0xFFFF_0000)
    }
}

impl Prec for F16 {
    const EXACT_INTS: f32 = 2048.0;
    #[inline(always)]
    fn round(x: f32) -> f32 {
        round_f16(x)
    }
    #[inline(always)]
    fn round_non_nan(x: f32) -> f32 {
        round_f16(x)
    }
}

/// A float dtype an input tensor can have, as stored.
pub(crate) trait Elem: Copy + Send + Sync + 'static {
    /// Whether this is bfloat16, whose kernels may work on the bits
    /// ([`bf16_bits`](Elem::bf16_bits)) instead of widened values.
    const BF16: bool = false;
    fn to_f32(self) -> f32;
    /// The bfloat16 bits of the element; 0 for the other dtypes, whose
    /// kernels never ask.
    #[inline(always)]
    fn bf16_bits(self) -> u16 {
        0
    }
    /// `x` itself when this is bfloat16, for kernels written for it.
    #[inline(always)]
    fn as_bf16(_x: &[Self]) -> Option<&[bf16]> {
        None
    }
    /// `x` itself when this is float32, for kernels written for it.
    #[inline(always)]
    fn as_f32(_x: &[Self]) -> Option<&[f32]> {
        None
    }
}

impl Elem for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn as_f32(x: &[Self]) -> Option<&[f32]> {
        Some(x)
    }
}

impl Elem for bf16 {
    const BF16: bool = true;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f32::from_bits((self.to_bits() as u32) << 16)
    }
    #[inline(always)]
    fn bf16_bits(self) -> u16 {
        self.to_bits()
    }
    #[inline(always)]
    fn as_bf16(x: &[Self]) -> Option<&[bf16]> {
        Some(x)
    }
}

impl Elem for f16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16_bits_to_f32(self.to_bits())
    }
}

/// The dtype to which an input dtype's arithmetic rounds (itself).
pub(crate) trait InputElem: Elem {
    type Prec: Prec;
}

impl InputElem for f32 {
    type Prec = F32;
}

impl InputElem for bf16 {
    type Prec = Bf16;
}

impl InputElem for f16 {
    type Prec = F16;
}

/// `x` rounded to bfloat16 (nearest, ties to even), as `f32`. NaN stays NaN.
#[inline(always)]
pub(crate) fn round_bf16(x: f32) -> f32 {
    let b = x.to_bits();
    let rounded = f32::from_bits(b.wrapping_add(0x7FFF + ((b >> 16) & 1)) & 0xFFFF_0000);
    // The carry of a NaN with a large payload would wrap into the sign bit.
    if x.is_nan() {
        x
    } else {
        rounded
    }
}

/// `x` rounded to float16 (nearest, ties to even; beyond the largest finite
/// float16 to infinity; subnormals kept), as `f32`. NaN stays NaN.
#[inline(always)]
pub(crate) fn round_f16(x: f32) -> f32 {
    const MIN_NORMAL: f32 = 6.103_515_6e-5; // 2^-14
    const OVERFLOW: f32 = 65520.0; // halfway between f16::MAX and 2^16
    let a = x.abs();
    let b = a.to_bits();
    // Normal range: drop 13 of the 23 mantissa bits, rounding to even.
    let normal = f32::from_bits(b.wrapping_add(0x0FFF + ((b >> 13) & 1)) & !0x1FFF);
    // Subnormal range: multiples of 2^-24. Adding 0.5 (whose ulp is 2^-24)
    // makes the FPU round there, and subtracting it back is exact.
    let subnormal = (a + 0.5) - 0.5;
    let r = if a < MIN_NORMAL { subnormal } else { normal };
    let r = if a >= OVERFLOW { f32::INFINITY } else { r };
    if x.is_nan() {
        x
    } else {
        r.copysign(x)
    }
}

/// The float16 with bits `h`, exactly, as `f32`.
#[inline(always)]
pub(crate) fn f16_bits_to_f32(h: u16) -> f32 {
    const TWO_POW_112: f32 = f32::from_bits(0x7780_0000);
    let h = h as u32;
    let sign = (h & 0x8000) << 16;
    let magnitude = h & 0x7FFF;
    // Moving exponent and mantissa into f32 position and scaling by 2^112
    // rebases the exponent (bias 15 -> 127); subnormals come out exact.
    let finite = f32::from_bits(magnitude << 13) * TWO_POW_112;
    let special = f32::from_bits((magnitude << 13) | 0x7F80_0000);
    let v = if magnitude >= 0x7C00 { special } else { finite };
    f32::from_bits(v.to_bits() | sign)
}

/// The bits of the float16 equal to `x`, which must be a float16 value
/// (as [`round_f16`] gives) and not NaN. Branch-free, unlike
/// `f16::from_f32`, so that loops storing float16 vectorize.
#[inline(always)]
pub(crate) fn f16_bits_exact(x: f32) -> u16 {
    const MIN_NORMAL: f32 = 6.103_515_6e-5; // 2^-14
    let b = x.to_bits();
    let sign = (b >> 16) & 0x8000;
    let a = x.abs();
    // Normal: rebase the exponent (bias 127 -> 15) and drop the 13 mantissa
    // bits that are zero in a float16 value.
    let normal = ((a.to_bits() >> 13).wrapping_sub(112 << 10)) & 0x7FFF;
    // Subnormal: a multiple of 2^-24 below 2^-14; added to 0.5 (whose ulp
    // is 2^-24) it lands exactly in the low mantissa bits.
    let subnormal = (a + 0.5).to_bits().wrapping_sub(0.5f32.to_bits());
    let m = if a < MIN_NORMAL { subnormal } else { normal };
    let m = if a == f32::INFINITY { 0x7C00 } else { m };
    (sign | m) as u16
}

/// `torch.round` (`nearbyint`): round half to even, sign kept (-0.3 -> -0.0).
#[inline(always)]
pub(crate) fn round_half_even(x: f32) -> f32 {
    const TWO_POW_23: f32 = 8_388_608.0;
    let a = x.abs();
    // Below 2^23, adding 2^23 leaves no fraction bits, so the FPU rounds to
    // an integer (ties to even) and subtracting is exact. At and above 2^23
    // every f32 is an integer; NaN and infinity pass through that branch.
    let r = if a < TWO_POW_23 {
        (a + TWO_POW_23) - TWO_POW_23
    } else {
        a
    };
    r.copysign(x)
}

/// `torch.clamp(x, lo, hi)`: NaN propagates, `lo`/`hi` are compared the way
/// libtorch's `min(max(x, lo), hi)` does.
#[inline(always)]
pub(crate) fn clamp(x: f32, lo: f32, hi: f32) -> f32 {
    let y = if x < lo { lo } else { x };
    if y > hi {
        hi
    } else {
        y
    }
}

/// `torch.clamp_min(x, lo)`: NaN propagates.
#[inline(always)]
pub(crate) fn clamp_min(x: f32, lo: f32) -> f32 {
    if x < lo {
        lo
    } else {
        x
    }
}

/// `torch.maximum(a, b)`: NaN if either is NaN. The sign of a zero result is
/// not libtorch's (it depends on its code path); callers only use it where
/// that sign cannot reach an output.
#[inline(always)]
pub(crate) fn maximum(a: f32, b: f32) -> f32 {
    let m = if a > b { a } else { b };
    if a.is_nan() {
        a
    } else {
        m
    }
}

/// The dtype that libtorch's type promotion gives two float dtypes among
/// float32, float16 and bfloat16 (float16 with bfloat16 is float32).
pub(crate) fn promote(a: Kind, b: Kind) -> Kind {
    if a == b {
        a
    } else {
        Kind::Float
    }
}

/// `v` as libtorch converts a C++ `double` scalar or an integer to `kind`
/// (float32, float16 or bfloat16): to `float` first, then rounded to the
/// 16-bit dtype. That double rounding is c10's, and is kept here.
pub(crate) fn scalar_to(kind: Kind, v: f64) -> f32 {
    round_to(kind, v as f32)
}

/// `x` rounded to `kind` (float32, float16 or bfloat16), as `f32`.
pub(crate) fn round_to(kind: Kind, x: f32) -> f32 {
    match kind {
        Kind::BFloat16 => round_bf16(x),
        Kind::Half => round_f16(x),
        _ => x,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    /// Every 2^step-th f32 bit pattern, plus the neighbourhoods of the
    /// values where rounding changes regime.
    fn patterns(step: u32) -> impl Iterator<Item = u32> {
        let edges = [
            0.0f32,
            1.0,
            65504.0,
            65520.0,
            6.103_515_6e-5,
            5.960_464_5e-8,
            8_388_608.0,
            0.5,
            1.5,
            2.5,
        ];
        let around = edges.into_iter().flat_map(|e| {
            let b = e.to_bits();
            (b.saturating_sub(4096)..b + 4096).flat_map(|x| [x, x | 0x8000_0000])
        });
        (0..=u32::MAX >> step).map(move |i| i << step).chain(around)
    }

    #[test]
    fn bf16_rounding_matches_half() {
        for b in patterns(9) {
            let x = f32::from_bits(b);
            let want = bf16::from_f32(x).to_f32();
            assert!(same(round_bf16(x), want), "{b:#x}");
        }
    }

    #[test]
    fn f16_rounding_matches_half() {
        for b in patterns(9) {
            let x = f32::from_bits(b);
            let want = f16::from_f32(x).to_f32();
            assert!(same(round_f16(x), want), "{b:#x}: {x:e}");
        }
    }

    #[test]
    #[ignore = "all 2^32 patterns: run with --release -- --ignored"]
    fn every_f32_pattern_rounds_like_half() {
        for b in 0..=u32::MAX {
            let x = f32::from_bits(b);
            assert!(same(round_bf16(x), bf16::from_f32(x).to_f32()), "{b:#x}");
            assert!(same(round_f16(x), f16::from_f32(x).to_f32()), "{b:#x}");
            assert!(same(round_half_even(x), x.round_ties_even()), "{b:#x}");
        }
    }

    #[test]
    fn every_16_bit_pattern_widens_exactly() {
        for h in 0..=u16::MAX {
            assert!(same(f16::from_bits(h).to_f32(), f16_bits_to_f32(h)));
            assert!(same(
                Elem::to_f32(bf16::from_bits(h)),
                bf16::from_bits(h).to_f32()
            ));
        }
    }

    #[test]
    fn every_float16_value_gives_its_bits() {
        for h in 0..=u16::MAX {
            let v = f16::from_bits(h);
            if !v.is_nan() {
                assert_eq!(f16_bits_exact(v.to_f32()), h, "{h:#x}");
            }
        }
    }

    #[test]
    fn round_half_even_matches_std() {
        for b in patterns(9) {
            let x = f32::from_bits(b);
            assert!(same(round_half_even(x), x.round_ties_even()), "{b:#x}");
        }
        assert_eq!(round_half_even(-0.3).to_bits(), (-0.0f32).to_bits());
        assert_eq!(round_half_even(2.5), 2.0);
    }

    #[test]
    fn scalars_round_through_f32() {
        // 2^24 + 2^16 + 1 rounds to 2^24 via f32 (c10), but up when rounded
        // directly to bfloat16.
        assert_eq!(scalar_to(Kind::BFloat16, 16_842_753.0), 16_777_216.0);
        assert_eq!(promote(Kind::Half, Kind::BFloat16), Kind::Float);
    }
}
