//! Codes: torchao's `quantize_affine` per element, as libtorch rounds it.
//!
//! The reference op sequence, with `S` the scale's dtype, `Z` the zero
//! point's, `T` the input's and each op's result rounded to the dtype
//! libtorch's type promotion gives it:
//!
//! - Int domain: `r = reciprocal(scale) * 1.0` (in `S`), `y = x * r` (in
//!   `P = promote(T, S)`), `round(y)` (exact), `y + zp` (in
//!   `P2 = promote(P, Z)`; an integer `Z` does not promote), clamp in `P2`,
//!   cast to the code dtype.
//! - None domain: the same without `+ zp` (computed here as `+ 0` in `P`,
//!   which changes only the sign of a zero code before the cast).
//! - Float domain: `m = zp - scale * mid` (in `S' = promote(Z, S)`),
//!   `(x - m) / scale` (in `P = promote(T, S')`), round, clamp in `P`, cast.
//!
//! A block's constants (`a`, `b` below) are computed once per block, the
//! per-element formula is branch-free.

use std::mem::MaybeUninit;

use tch::Kind;

#[cfg(target_arch = "x86_64")]
use super::codes8::{Bf16Codes, Blocks8, Codes8, F32Codes};
use super::float::{clamp, promote, round_bf16, round_f16, round_half_even, Elem, Prec};
use super::layout::{four_runs_mut, Batch, Folded};
use crate::mapping::ZeroPointDomain;

/// A code dtype: the storage of integer quantized dtypes.
pub(crate) trait Code: Copy + Send + Sync + 'static {
    /// What libtorch's cast gives for NaN, as an `i32` for [`from_int`]:
    /// `i32::MIN` for int32, 0 for the narrower types (x86 `cvttss2si` and
    /// its truncation, the same on libtorch's scalar and vector paths).
    ///
    /// [`from_int`]: Code::from_int
    const NAN_INT: i32;

    /// An integer code inside this dtype's range.
    fn from_int(i: i32) -> Self;

    /// `y`, clamped to the quant range (so inside this dtype) or NaN, cast as
    /// libtorch casts floats: truncation toward zero, NaN as [`Code::NAN_INT`].
    fn from_clamped(y: f32) -> Self;
}

macro_rules! narrow_code {
    ($t:ty) => {
        impl Code for $t {
            const NAN_INT: i32 = 0;
            #[inline(always)]
            fn from_int(i: i32) -> Self {
                i as $t
            }
            #[inline(always)]
            fn from_clamped(y: f32) -> Self {
                small_int(y) as $t
            }
        }
    };
}
narrow_code!(u8);
narrow_code!(i8);
narrow_code!(i16);

impl Code for i32 {
    const NAN_INT: i32 = i32::MIN;
    #[inline(always)]
    fn from_int(i: i32) -> Self {
        i
    }
    #[inline(always)]
    fn from_clamped(y: f32) -> Self {
        if y.is_nan() {
            i32::MIN
        } else {
            y as i32
        }
    }
}

/// 1.5 * 2^23: adding it to an `f32` of magnitude below 2^22 rounds it to
/// an integer (ties to even, the FPU's rounding) held in the low mantissa
/// bits.
const MAGIC: f32 = 12_582_912.0;

/// `rne(y)` as an integer, for `|y| < 2^22`.
#[inline(always)]
fn magic_round(y: f32) -> i32 {
    ((y + MAGIC).to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32)
}

/// `y` truncated toward zero, NaN to 0, for `|y| < 2^22` (the 8- and 16-bit
/// quant ranges). Branch-free float arithmetic, because Rust's saturating
/// `as i32` does not vectorize on baseline x86-64.
#[inline(always)]
fn small_int(y: f32) -> i32 {
    const TWO_POW_23: f32 = 8_388_608.0;
    let y = if y.is_nan() { 0.0 } else { y };
    let a = y.abs();
    let nearest = (a + TWO_POW_23) - TWO_POW_23;
    let t = if nearest > a { nearest - 1.0 } else { nearest };
    magic_round(t.copysign(y))
}

/// The per-element formula, given a block's constants `a` and `b`.
///
/// [`code`](Formula::code) is the op sequence itself. The fast path
/// computes the same codes in fewer operations when [`fast_ok`] holds:
/// with `v = unrounded(x)` and `o = offset(b)` an integer, the code is
/// `clamp(rne(v) + o, lo, hi)` (the `P2` rounding of `rne(v) + o` cannot
/// change the clamped result when every integer in `[lo, hi]` is exact in
/// `P2`: rounding is monotonic and fixes those integers), which equals
/// `rne(clamp(v, lo - o, hi - o)) + o` (`rne` is monotonic and fixes the
/// integer bounds). On that bounded value `rne` is an exact integer
/// conversion ([`magic_round`]). The reference code is NaN exactly when `v`
/// is (`b` is finite, and `P` rounding keeps NaN and makes none), which
/// [`unrounded`]'s second value tells more cheaply; NaN gives
/// [`Code::NAN_INT`].
///
/// [`unrounded`]: Formula::unrounded
///
/// [`fast_ok`]: Formula::fast_ok
pub(crate) trait Formula: Copy + Send + Sync + 'static {
    /// Whether [`unrounded`](Formula::unrounded) is `round_bf16(x * a)`
    /// (Int and None domains with a bfloat16 product), which
    /// `Bf16Codes::codes8` computes.
    const BF16_PRODUCT: bool = false;
    /// Whether [`unrounded`](Formula::unrounded) is the float32 `x * a`
    /// (Int and None domains with a float32 product), which
    /// `F32Codes::codes8_blocks` computes.
    const F32_PRODUCT: bool = false;
    /// The clamped code as a float.
    fn code(x: f32, a: f32, b: f32, lo: f32, hi: f32) -> f32;
    /// The value that is rounded to nearest even, and a value that is NaN
    /// exactly when it is (cheaper to compute in the Int domain).
    fn unrounded(x: f32, a: f32, b: f32) -> (f32, f32);
    /// What is added after rounding.
    fn offset(b: f32) -> f32;
    /// Whether the fast path holds for blocks with constants `b` and the
    /// quant range `[lo, hi]`.
    fn fast_ok(b: &[f32], lo: f32, hi: f32) -> bool;
}

/// Int and None domains: `a = reciprocal`, `b = zero point in P2`.
#[derive(Clone, Copy)]
pub(crate) struct IntFormula<P, P2>(P, P2);

/// Float domain: `a = zp - scale * mid`, `b = scale`.
#[derive(Clone, Copy)]
pub(crate) struct FloatFormula<P>(P);

/// Bound on codes and offsets of the fast path, so that every intermediate
/// stays below 2^22.
const FAST_LIMIT: f32 = 1_048_576.0;

impl<P: Prec, P2: Prec> Formula for IntFormula<P, P2> {
    const BF16_PRODUCT: bool = P::IS_BF16;
    const F32_PRODUCT: bool = P::IS_F32;
    #[inline(always)]
    fn code(x: f32, a: f32, b: f32, lo: f32, hi: f32) -> f32 {
        let y = round_half_even(P::round(x * a));
        clamp(P2::round(y + b), lo, hi)
    }
    #[inline(always)]
    fn unrounded(x: f32, a: f32, _: f32) -> (f32, f32) {
        let product = x * a;
        (P::round_non_nan(product), product)
    }
    #[inline(always)]
    fn offset(b: f32) -> f32 {
        b
    }
    fn fast_ok(b: &[f32], lo: f32, hi: f32) -> bool {
        let limit = P2::EXACT_INTS.min(FAST_LIMIT);
        -limit <= lo && hi <= limit && small_integers(b)
    }
}

kernel! {
    /// Whether every `b` is an integer of magnitude at most [`FAST_LIMIT`]
    /// (NaN is not). Without an early exit, so that it vectorizes: with
    /// blocks of a few elements there is one `b` per couple of elements,
    /// and the short-circuiting scalar loop took a third of a quantize.
    fn small_integers<>(b: &[f32]) -> bool {
        b.iter().fold(true, |ok, &b| {
            ok & (b.abs() <= FAST_LIMIT) & (b == round_half_even(b))
        })
    }
}

impl<P: Prec> Formula for FloatFormula<P> {
    #[inline(always)]
    fn code(x: f32, a: f32, b: f32, lo: f32, hi: f32) -> f32 {
        let y = P::round(P::round(x - a) / b);
        clamp(round_half_even(y), lo, hi)
    }
    #[inline(always)]
    fn unrounded(x: f32, a: f32, b: f32) -> (f32, f32) {
        let v = P::round(P::round(x - a) / b);
        (v, v)
    }
    #[inline(always)]
    fn offset(_: f32) -> f32 {
        0.0
    }
    fn fast_ok(_: &[f32], lo: f32, hi: f32) -> bool {
        -FAST_LIMIT <= lo && hi <= FAST_LIMIT
    }
}

/// A block's constants for the fast path: `v` is clamped to `lo..=hi` and
/// the code is `(v + MAGIC).to_bits() - bias`.
#[derive(Clone, Copy)]
struct Fast {
    lo: f32,
    hi: f32,
    bias: i32,
    /// `-offset`, which converts to code 0.
    zero: f32,
}

impl Fast {
    /// The constants of a block whose `b` passed [`Formula::fast_ok`].
    #[inline(always)]
    fn new<F: Formula>(b: f32, (lo, hi): (f32, f32)) -> Self {
        let offset = F::offset(b);
        Fast {
            lo: lo - offset,
            hi: hi - offset,
            // The fast path's offset is an integer of magnitude at most
            // 2^20 (`fast_ok`), which `magic_round` converts exactly and,
            // unlike `as i32`'s saturating cast, in vector registers.
            bias: (MAGIC.to_bits() as i32).wrapping_sub(magic_round(offset)),
            zero: -offset,
        }
    }

    /// The code of the unrounded value `v`, NaN when `probe` is (see
    /// [`Formula`]).
    #[inline(always)]
    fn code<C: Code>(self, (v, probe): (f32, f32)) -> C {
        let clamped = clamp(v, self.lo, self.hi);
        if C::NAN_INT == 0 {
            // NaN becomes -offset, which converts to code 0: the select
            // happens on floats, before the codes are narrowed.
            let clamped = if probe.is_nan() { self.zero } else { clamped };
            C::from_int(((clamped + MAGIC).to_bits() as i32).wrapping_sub(self.bias))
        } else {
            let i = ((clamped + MAGIC).to_bits() as i32).wrapping_sub(self.bias);
            C::from_int(if probe.is_nan() { C::NAN_INT } else { i })
        }
    }
}

/// Codes of a run whose elements share one block.
#[inline(always)]
pub(crate) fn quantize_run<E: Elem, F: Formula, C: Code>(
    x: &[E],
    out: &mut [MaybeUninit<C>],
    (a, b): (f32, f32),
    (lo, hi): (f32, f32),
    fast: bool,
) {
    if fast {
        let k = Fast::new::<F>(b, (lo, hi));
        let mut done = 0;
        let n = x.len().min(out.len());
        let kernel = n >= BF16_KERNEL_MIN_LEN && bf16_covered::<E, F, C>();
        while done < n {
            // The kernel stops at a chunk holding a NaN product (on AVX2
            // also an infinite or huge one) and at the tail, which the
            // portable formula does.
            let end = if kernel {
                done += bf16_codes::<E, F, C>(&x[done..n], &mut out[done..n], a, k, true);
                (done + 32).min(n)
            } else {
                n
            };
            for (o, &e) in out[done..end].iter_mut().zip(&x[done..end]) {
                *o = MaybeUninit::new(k.code(F::unrounded(e.to_f32(), a, b)));
            }
            done = end;
        }
    } else {
        for (o, &e) in out.iter_mut().zip(x) {
            *o = MaybeUninit::new(C::from_clamped(F::code(e.to_f32(), a, b, lo, hi)));
        }
    }
}

/// Whether the fast path's clamp and NaN select leave every code of a block
/// alone, given bounds `x_lo <= x <= x_hi` on its elements: then
/// [`quantize_run_in_range`] gives the same codes as [`quantize_run`].
///
/// It holds when, at both bounds, the NaN probe is not NaN and
/// `v = unrounded(x).0` is above `lo - o - 0.5` and below `hi - o + 0.5`
/// (`o` the offset). Then the bounds and the block's constants are finite
/// (an infinite `x` or constant gives an infinite or NaN `v` or probe at a
/// bound), so `v` is a monotonic function of `x` (a product, or a difference
/// and a quotient, with fixed finite operands, each rounded monotonically)
/// and every element's `v` lies between its values at the bounds: it is
/// finite, its probe is not NaN, and `rne(v)` lies in `[lo - o, hi - o]`,
/// where the clamp cannot change `rne(v)` (see [`Formula`]); `|v|` stays
/// below 2^22 (`fast_ok`).
#[inline(always)]
fn in_range<F: Formula>(x_lo: f32, x_hi: f32, (a, b): (f32, f32), k: Fast) -> bool {
    let ((v1, p1), (v2, p2)) = (F::unrounded(x_lo, a, b), F::unrounded(x_hi, a, b));
    // `lo - o` and `hi - o` are integers of magnitude at most 2^21: exact
    // with the halves added.
    let (above, below) = (k.lo - 0.5, k.hi + 0.5);
    !p1.is_nan() && !p2.is_nan() && v1 > above && v2 > above && v1 < below && v2 < below
}

/// Runs at least this long check [`in_range`]: on shorter ones the check
/// costs about as much as the clamp it saves.
const IN_RANGE_MIN_LEN: usize = 128;

/// The fast path of [`quantize_run`] without its clamp and NaN select, for
/// a block where [`in_range`] holds.
#[inline(always)]
fn quantize_run_in_range<E: Elem, F: Formula, C: Code>(
    x: &[E],
    out: &mut [MaybeUninit<C>],
    (a, b): (f32, f32),
    k: Fast,
) {
    let done = bf16_codes::<E, F, C>(x, out, a, k, false);
    // In range, no product is NaN: the kernel leaves only the tail.
    for (o, &e) in out[done..].iter_mut().zip(&x[done..]) {
        let v = F::unrounded(e.to_f32(), a, b).0;
        *o = MaybeUninit::new(C::from_int(
            ((v + MAGIC).to_bits() as i32).wrapping_sub(k.bias),
        ));
    }
}

/// Runs shorter than this (blocks of 32) keep the portable loop: the
/// kernel's constants cost about what it saves on one chunk.
const BF16_KERNEL_MIN_LEN: usize = 64;

/// The bfloat16 codes kernels, where they cover these dtypes on this CPU:
/// bfloat16 input, a bfloat16 product (`Formula::BF16_PRODUCT`) and 8-bit
/// codes, whose NaN code is 0.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn bf16_kernel<E: Elem, F: Formula, C: Code>() -> Option<Bf16Codes> {
    if E::BF16 && F::BF16_PRODUCT && byte_codes::<C>() {
        Bf16Codes::detect()
    } else {
        None
    }
}

/// Whether [`bf16_kernel`] covers these dtypes on this CPU.
#[inline(always)]
fn bf16_covered<E: Elem, F: Formula, C: Code>() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        bf16_kernel::<E, F, C>().is_some()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The fast path's codes of a prefix of `x` by [`Bf16Codes::codes8`]
/// (clamped when `clamp`); how many it wrote: none where [`bf16_kernel`]
/// does not cover the call.
#[inline(always)]
fn bf16_codes<E: Elem, F: Formula, C: Code>(
    x: &[E],
    out: &mut [MaybeUninit<C>],
    a: f32,
    k: Fast,
    clamp: bool,
) -> usize {
    #[cfg(target_arch = "x86_64")]
    if let (Some(kernel), Some(x)) = (bf16_kernel::<E, F, C>(), E::as_bf16(x)) {
        let c = Codes8 {
            a,
            bounds: clamp.then_some((k.lo, k.hi)),
            bias: k.bias,
        };
        return kernel.codes8(x, out, c);
    }
    let _ = (x, out, a, k, clamp);
    0
}

/// Consecutive blocks at most this long go through [`codes_of_blocks`],
/// many to a call; longer ones take one call of the kernel each, which
/// skips the clamp when [`in_range`] allows.
const BLOCKS_KERNEL_MAX_LEN: usize = 256;

/// Blocks per call of the blocks kernels: their constants, 3 KiB, stay in
/// L1.
const BLOCKS_PER_CALL: usize = 256;

/// Whether the codes kernels write these codes: one byte each, with NaN
/// code 0.
#[inline(always)]
fn byte_codes<C: Code>() -> bool {
    C::NAN_INT == 0 && std::mem::size_of::<C>() == 1
}

/// The float32 codes kernel, where it covers a float32 product and these
/// codes (8-bit, NaN code 0) on this CPU; the input must be float32.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn f32_kernel<F: Formula, C: Code>() -> Option<F32Codes> {
    if F::F32_PRODUCT && byte_codes::<C>() {
        F32Codes::detect()
    } else {
        None
    }
}

/// Codes of consecutive blocks of `len` elements each (a multiple of 32;
/// block `i` with the constants `a[i]`, `b[i]`, on the fast path) by
/// [`Bf16Codes::codes8_blocks`] or [`F32Codes::codes8_blocks`],
/// [`BLOCKS_PER_CALL`] blocks to a call; a block where the kernel stops (a
/// NaN product, on AVX2 also an infinite or huge one) takes
/// [`quantize_run`]. `false`, with nothing written, where neither kernel
/// applies to the input and product dtypes.
#[inline(always)]
fn codes_of_blocks<E: Elem, F: Formula, C: Code>(
    x: &[E],
    len: usize,
    a: &[f32],
    b: &[f32],
    bounds: (f32, f32),
    out: &mut [MaybeUninit<C>],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        enum Input<'a> {
            Bf16(Bf16Codes, &'a [half::bf16]),
            F32(F32Codes, &'a [f32]),
        }
        // Each kernel rounds the product as its formula does: bfloat16 input
        // may come with a float32 product (a float16 or float32 scale),
        // which neither kernel computes.
        let input = if let Some(kernel) = bf16_kernel::<E, F, C>() {
            E::as_bf16(x).map(|x| Input::Bf16(kernel, x))
        } else if let Some(kernel) = f32_kernel::<F, C>() {
            E::as_f32(x).map(|x| Input::F32(kernel, x))
        } else {
            None
        };
        let Some(input) = input else {
            return false;
        };
        let reps = a.len().min(b.len());
        let (mut lo, mut hi) = ([0.0f32; BLOCKS_PER_CALL], [0.0f32; BLOCKS_PER_CALL]);
        let mut bias = [0i32; BLOCKS_PER_CALL];
        let mut i = 0;
        while i < reps {
            let m = (reps - i).min(BLOCKS_PER_CALL);
            for (j, &b) in b[i..i + m].iter().enumerate() {
                let k = Fast::new::<F>(b, bounds);
                (lo[j], hi[j], bias[j]) = (k.lo, k.hi, k.bias);
            }
            let k = Blocks8 {
                a: &a[i..i + m],
                lo: &lo[..m],
                hi: &hi[..m],
                bias: &bias[..m],
            };
            let span = i * len..(i + m) * len;
            let out = &mut out[span.clone()];
            let done = match input {
                Input::Bf16(kernel, x) => kernel.codes8_blocks(&x[span], out, len, &k),
                Input::F32(kernel, x) => kernel.codes8_blocks(&x[span], out, len, &k),
            };
            if done < m {
                let j = i + done;
                let at = j * len..(j + 1) * len;
                let out = &mut out[done * len..(done + 1) * len];
                quantize_run::<E, F, C>(&x[at], out, (a[j], b[j]), bounds, true);
            }
            i += (done + 1).min(m);
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (x, len, a, b, bounds, out);
        false
    }
}

/// `dst[j] = src[j / L]`: each block's constant over the `L` elements of
/// its run. `L` is a constant so that the stores vectorize (an interleaved
/// store group) instead of dividing per element.
#[inline(always)]
fn replicate<const L: usize>(src: &[f32], dst: &mut [f32]) {
    for (d, &v) in dst.chunks_exact_mut(L).zip(src) {
        d.fill(v);
    }
}

/// [`replicate`] for a run length known at run time (2 to 7).
#[inline(always)]
fn replicate_runs(len: usize, src: &[f32], dst: &mut [f32]) {
    match len {
        2 => replicate::<2>(src, dst),
        3 => replicate::<3>(src, dst),
        4 => replicate::<4>(src, dst),
        5 => replicate::<5>(src, dst),
        6 => replicate::<6>(src, dst),
        _ => replicate::<7>(src, dst),
    }
}

/// Codes of a run whose elements each have their own block.
#[inline(always)]
pub(crate) fn quantize_kept<E: Elem, F: Formula, C: Code>(
    x: &[E],
    out: &mut [MaybeUninit<C>],
    a: &[f32],
    b: &[f32],
    (lo, hi): (f32, f32),
    fast: bool,
) {
    let elems = out.iter_mut().zip(x).zip(a).zip(b);
    if fast {
        for (((o, &e), &a), &b) in elems {
            let k = Fast::new::<F>(b, (lo, hi));
            *o = MaybeUninit::new(k.code(F::unrounded(e.to_f32(), a, b)));
        }
    } else {
        for (((o, &e), &a), &b) in elems {
            *o = MaybeUninit::new(C::from_clamped(F::code(e.to_f32(), a, b, lo, hi)));
        }
    }
}

kernel! {
    /// Codes of a batch of reduced runs: run `i` (elements `x[batch.elem..]`,
    /// written to `out[..]`) with its block's constants `a[i]`, `b[i]`; the
    /// fast path when `fast` (see [`Formula`]). `minmax`, when given, holds
    /// bounds on each block's elements (`lo[i] <= x <= hi[i]`), which let
    /// blocks whose codes need no clamp skip it.
    pub(crate) fn quantize_reduced<E: Elem, F: Formula, C: Code>(
        x: &[E],
        batch: Batch,
        a: &[f32],
        b: &[f32],
        minmax: Option<(&[f32], &[f32])>,
        bounds: (f32, f32),
        fast: bool,
        out: &mut [MaybeUninit<C>],
    ) {
        let x = &x[batch.elem..batch.elem + batch.span()];
        let out = &mut out[..batch.span()];
        if batch.stride == batch.len && batch.len < 8 && batch.len >= 2 {
            // Consecutive runs shorter than a vector: each block's constants
            // are replicated over its elements, `WIDE / len` blocks at a
            // time, which are then quantized as kept elements, one pair of
            // constants per element (vectorized across blocks).
            let (len, m) = (batch.len, WIDE / batch.len);
            let (mut wa, mut wb) = ([0.0f32; WIDE], [0.0f32; WIDE]);
            let chunks = x.chunks(m * len).zip(out.chunks_mut(m * len));
            for (g, (x, out)) in chunks.enumerate() {
                let (n, runs) = (x.len(), x.len() / len);
                replicate_runs(len, &a[g * m..g * m + runs], &mut wa[..n]);
                replicate_runs(len, &b[g * m..g * m + runs], &mut wb[..n]);
                quantize_kept::<E, F, C>(x, out, &wa[..n], &wb[..n], bounds, fast);
            }
            return;
        }
        if fast
            && batch.stride == batch.len
            && batch.len.is_multiple_of(32)
            && batch.len <= BLOCKS_KERNEL_MAX_LEN
            && codes_of_blocks::<E, F, C>(x, batch.len, &a[..batch.reps], &b[..batch.reps], bounds, out)
        {
            return;
        }
        let blocks = a[..batch.reps].iter().zip(&b[..batch.reps]).enumerate();
        match minmax {
            Some((lo, hi)) if fast && batch.len >= IN_RANGE_MIN_LEN => {
                for (i, (&a, &b)) in blocks {
                    let at = i * batch.stride..i * batch.stride + batch.len;
                    let k = Fast::new::<F>(b, bounds);
                    if in_range::<F>(lo[i], hi[i], (a, b), k) {
                        quantize_run_in_range::<E, F, C>(&x[at.clone()], &mut out[at], (a, b), k);
                    } else {
                        quantize_run::<E, F, C>(&x[at.clone()], &mut out[at], (a, b), bounds, fast);
                    }
                }
            }
            _ => {
                for (i, (&a, &b)) in blocks {
                    let at = i * batch.stride..i * batch.stride + batch.len;
                    quantize_run::<E, F, C>(&x[at.clone()], &mut out[at], (a, b), bounds, fast);
                }
            }
        }
    }
}

kernel! {
    /// Codes of a batch of kept runs: element `j` of every run with the
    /// constants `a[j]`, `b[j]`.
    pub(crate) fn quantize_kept_runs<E: Elem, F: Formula, C: Code>(
        x: &[E],
        batch: Batch,
        a: &[f32],
        b: &[f32],
        bounds: (f32, f32),
        fast: bool,
        out: &mut [MaybeUninit<C>],
    ) {
        let x = &x[batch.elem..batch.elem + batch.span()];
        let out = &mut out[..batch.span()];
        let (a, b) = (&a[..batch.len], &b[..batch.len]);
        let mut first = 0;
        if batch.stride == batch.len && batch.len <= WIDE / 4 {
            // Consecutive narrow runs (a tall, narrow input quantized per
            // column): the constants replicated over `m` runs side by side
            // quantize `m * len` elements per call.
            let (len, m) = (batch.len, WIDE / batch.len);
            let (w, groups) = (m * len, batch.reps / m);
            let (mut wa, mut wb) = ([0.0f32; WIDE], [0.0f32; WIDE]);
            for (wa, wb) in wa[..w].chunks_exact_mut(len).zip(wb.chunks_exact_mut(len)) {
                wa.copy_from_slice(a);
                wb.copy_from_slice(b);
            }
            let whole = groups * w;
            let chunks = x[..whole].chunks_exact(w).zip(out[..whole].chunks_exact_mut(w));
            for (x, out) in chunks {
                quantize_kept::<E, F, C>(x, out, &wa[..w], &wb[..w], bounds, fast);
            }
            first = groups * m;
        }
        // Four runs at a time where they do not overlap: each constant is
        // read once per four runs (a 4096-wide run's 16 KiB of each do not
        // stay in L1 with the runs streaming through).
        let (len, stride) = (batch.len, batch.stride);
        let mut i = first;
        if stride >= len {
            while i + 4 <= batch.reps {
                let o = four_runs_mut(out, i, stride, len);
                let x: [&[E]; 4] = std::array::from_fn(|r| &x[(i + r) * stride..][..len]);
                quantize_kept4::<E, F, C>(x, o, a, b, bounds, fast);
                i += 4;
            }
        }
        for i in i..batch.reps {
            let at = i * stride..i * stride + len;
            quantize_kept::<E, F, C>(&x[at.clone()], &mut out[at], a, b, bounds, fast);
        }
    }
}

/// [`quantize_kept`] of four runs with the same constants, each constant
/// read once for the four.
#[inline(always)]
fn quantize_kept4<E: Elem, F: Formula, C: Code>(
    x: [&[E]; 4],
    out: [&mut [MaybeUninit<C>]; 4],
    a: &[f32],
    b: &[f32],
    (lo, hi): (f32, f32),
    fast: bool,
) {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let x = x.map(|r| &r[..n]);
    let [o0, o1, o2, o3] = out;
    let (o0, o1, o2, o3) = (&mut o0[..n], &mut o1[..n], &mut o2[..n], &mut o3[..n]);
    for j in 0..n {
        let (a, b) = (a[j], b[j]);
        let code = |e: E| {
            if fast {
                let k = Fast::new::<F>(b, (lo, hi));
                k.code(F::unrounded(e.to_f32(), a, b))
            } else {
                C::from_clamped(F::code(e.to_f32(), a, b, lo, hi))
            }
        };
        o0[j] = MaybeUninit::new(code(x[0][j]));
        o1[j] = MaybeUninit::new(code(x[1][j]));
        o2[j] = MaybeUninit::new(code(x[2][j]));
        o3[j] = MaybeUninit::new(code(x[3][j]));
    }
}

kernel! {
    /// Codes of a [`Folded`] batch whose copies are rows of memory: the
    /// batch's runs follow each other (`stride == len`) and so do its
    /// copies (`outer_stride == reps * len`), as with 4-D blocks such as
    /// `[2, 1, 16, 16]`, whose 16-element runs of four blocks make a row of
    /// 64 and whose next 16 rows feed the same four blocks. The row's
    /// constants are replicated over their runs once, and the rows
    /// quantized as kept elements, `WIDE / row` rows per call, instead of
    /// one walk step and one short run at a time. Callers check
    /// [`rows_fold`].
    pub(crate) fn quantize_folded_rows<E: Elem, F: Formula, C: Code>(
        x: &[E],
        folded: Folded,
        a: &[f32],
        b: &[f32],
        bounds: (f32, f32),
        fast: bool,
        out: &mut [MaybeUninit<C>],
    ) {
        let Batch { elem, len, reps, .. } = folded.batch;
        let row = len * reps;
        let w = (WIDE / row) * row;
        let (mut wa, mut wb) = ([0.0f32; WIDE], [0.0f32; WIDE]);
        for (wa, wb) in wa[..w].chunks_exact_mut(row).zip(wb[..w].chunks_exact_mut(row)) {
            let runs = wa.chunks_exact_mut(len).zip(wb.chunks_exact_mut(len));
            for ((wa, wb), (&a, &b)) in runs.zip(a[..reps].iter().zip(&b[..reps])) {
                wa.fill(a);
                wb.fill(b);
            }
        }
        let total = folded.outer * row;
        let chunks = x[elem..elem + total].chunks(w).zip(out[..total].chunks_mut(w));
        for (x, out) in chunks {
            let n = x.len();
            quantize_kept::<E, F, C>(x, out, &wa[..n], &wb[..n], bounds, fast);
        }
    }
}

/// Whether [`quantize_folded_rows`] takes `folded`: copies that are rows of
/// memory, at most [`WIDE`] elements each, of runs shorter than the codes
/// kernels' 32 (longer ones go to those kernels, run by run).
pub(crate) fn rows_fold(folded: &Folded) -> bool {
    let Batch {
        len, reps, stride, ..
    } = folded.batch;
    folded.outer > 1
        && len < 32
        && stride == len
        && reps * len <= WIDE
        && folded.outer_stride == reps * len
}

/// Elements per call of [`quantize_kept`] when short runs are quantized with
/// replicated constants: 1 KiB of each constant, in L1.
const WIDE: usize = 256;

/// The dtypes of one quantize computation, derived by libtorch's promotion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct QuantKinds {
    pub domain: ZeroPointDomain,
    /// The scale's dtype.
    pub scale: Kind,
    /// `zp - scale * mid` (Float domain).
    pub min_val: Kind,
    /// `x * r`, or `(x - m) / scale`.
    pub p: Kind,
    /// `+ zp` and the clamp (Int domain); `p` otherwise.
    pub p2: Kind,
    /// `(quant_max + quant_min + 1) / 2` as libtorch's float opmath sees it.
    pub mid: f32,
}

impl QuantKinds {
    /// `None` for dtypes the fused path does not emulate (float64 anywhere,
    /// bool zero points).
    pub fn new(
        domain: ZeroPointDomain,
        input: Kind,
        scale: Kind,
        zero_point: Option<Kind>,
        mid: f64,
    ) -> Option<Self> {
        let float = |k: Kind| matches!(k, Kind::Float | Kind::Half | Kind::BFloat16);
        let int = |k: Kind| {
            matches!(
                k,
                Kind::Uint8 | Kind::Int8 | Kind::Int16 | Kind::Int | Kind::Int64
            )
        };
        if !float(input) || !float(scale) {
            return None;
        }
        // An integer operand takes the float operand's dtype.
        let with_zp = |k: Kind| match zero_point {
            Some(z) if float(z) => Some(promote(k, z)),
            Some(z) if int(z) => Some(k),
            Some(_) => None,
            None => Some(k),
        };
        let (min_val, p, p2) = match domain {
            ZeroPointDomain::Float => {
                let min_val = with_zp(scale)?;
                let p = promote(input, min_val);
                (min_val, p, p)
            }
            ZeroPointDomain::Int | ZeroPointDomain::None => {
                let p = promote(input, scale);
                (scale, p, with_zp(p)?)
            }
        };
        Some(QuantKinds {
            domain,
            scale,
            min_val,
            p,
            p2,
            mid: mid as f32,
        })
    }

    /// The dtype the clamp runs in.
    pub fn clamp_kind(&self) -> Kind {
        self.p2
    }

    /// Per-block constants from the scale (as a value of `self.scale`) and
    /// the zero point (as a value of its dtype, converted to `f32` as
    /// libtorch converts it: integers rounded to nearest). `zp` is ignored in
    /// the None domain. Writes `a` and `b`, as long as `scale`.
    pub fn constants(&self, scale: &[f32], zp: &[f32], a: &mut [f32], b: &mut [f32]) {
        quant_constants(self, scale, zp, a, b);
    }
}

kernel! {
    /// [`QuantKinds::constants`] as a kernel.
    fn quant_constants<>(kinds: &QuantKinds, scale: &[f32], zp: &[f32], a: &mut [f32], b: &mut [f32]) {
        let n = scale.len();
        let (a, b) = (&mut a[..n], &mut b[..n]);
        match kinds.domain {
            ZeroPointDomain::Int | ZeroPointDomain::None => {
                for (r, &s) in a.iter_mut().zip(scale) {
                    *r = 1.0 / s;
                }
                round_slice(kinds.scale, a);
                if kinds.domain == ZeroPointDomain::Int {
                    b.copy_from_slice(&zp[..n]);
                    round_slice(kinds.p2, b);
                } else {
                    b.fill(0.0);
                }
            }
            ZeroPointDomain::Float => {
                for (t, &s) in b.iter_mut().zip(scale) {
                    *t = s * kinds.mid;
                }
                round_slice(kinds.scale, b);
                a.copy_from_slice(&zp[..n]);
                round_slice(kinds.min_val, a);
                for (m, &t) in a.iter_mut().zip(b.iter()) {
                    *m -= t;
                }
                round_slice(kinds.min_val, a);
                b.copy_from_slice(scale);
            }
        }
    }
}

/// Rounds every value to `kind`, with the dtype test hoisted out of the loop
/// so that each loop vectorizes.
pub(crate) fn round_slice(kind: Kind, v: &mut [f32]) {
    match kind {
        Kind::BFloat16 => v.iter_mut().for_each(|x| *x = round_bf16(*x)),
        Kind::Half => v.iter_mut().for_each(|x| *x = round_f16(*x)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::float::{Bf16, F32};
    use super::*;

    #[test]
    fn promotion_follows_libtorch() {
        let k = QuantKinds::new(
            ZeroPointDomain::Int,
            Kind::BFloat16,
            Kind::BFloat16,
            Some(Kind::Int),
            8.0,
        )
        .unwrap();
        assert_eq!((k.p, k.p2), (Kind::BFloat16, Kind::BFloat16));
        let k = QuantKinds::new(
            ZeroPointDomain::Int,
            Kind::BFloat16,
            Kind::BFloat16,
            Some(Kind::Half),
            8.0,
        )
        .unwrap();
        assert_eq!((k.p, k.p2), (Kind::BFloat16, Kind::Float));
        let k = QuantKinds::new(
            ZeroPointDomain::Float,
            Kind::Half,
            Kind::BFloat16,
            Some(Kind::BFloat16),
            8.0,
        )
        .unwrap();
        assert_eq!((k.min_val, k.p), (Kind::BFloat16, Kind::Float));
        assert!(
            QuantKinds::new(ZeroPointDomain::Int, Kind::Float, Kind::Double, None, 0.0).is_none()
        );
    }

    #[test]
    fn int_codes_round_half_even_and_saturate() {
        let x = [0.5f32, 1.5, 2.5, -0.5, 1000.0, f32::NAN];
        let mut out = [MaybeUninit::<i8>::uninit(); 6];
        quantize_run::<f32, IntFormula<F32, F32>, i8>(
            &x,
            &mut out,
            (1.0, 0.0),
            (-128.0, 127.0),
            false,
        );
        let got: Vec<i8> = out.iter().map(|c| unsafe { c.assume_init() }).collect();
        assert_eq!(got, vec![0, 2, 2, 0, 127, 0]);
        let mut out = [MaybeUninit::<i32>::uninit(); 1];
        quantize_run::<f32, IntFormula<Bf16, Bf16>, i32>(
            &[f32::NAN],
            &mut out,
            (1.0, 0.0),
            (0.0, 15.0),
            false,
        );
        assert_eq!(unsafe { out[0].assume_init() }, i32::MIN);
    }
}
