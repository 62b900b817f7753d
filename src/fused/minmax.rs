//! Block minima and maxima: `amin`/`amax` over each block.
//!
//! Values are carried as `f32` (exact for every input dtype). NaN is only
//! detected, once per batch: the fused path hands inputs with a NaN to the
//! reference path (see `choose_impl` in `drive/choose.rs`), so a block's
//! min and max need not propagate it. Which zero a block whose extreme is a
//! mix of `-0.0` and `0.0` reports is not libtorch's (its order of
//! reduction decides); the qparams never depend on it (see `qparams.rs`).

#[cfg(target_arch = "x86_64")]
use half::bf16;

use super::float::Elem;
use super::layout::{Batch, Folded};
use super::simd;
#[cfg(target_arch = "x86_64")]
use super::{avx2, avx512};

/// Independent accumulators per run: two AVX-512 (four AVX2) registers, so
/// that several dependency chains overlap.
const LANES: usize = 32;

/// Per-lane NaN flags, OR-ed over everything a kernel reads.
type NanLanes = [u32; LANES];

/// `(min, max)` of the non-NaN values of `x` (`(inf, -inf)` if there are
/// none); sets `nan` lanes for NaN values.
#[inline(always)]
pub(crate) fn run_min_max<E: Elem>(x: &[E], nan: &mut NanLanes) -> (f32, f32) {
    if E::BF16 {
        return bf16_run_min_max(x, nan);
    }
    let Some(first) = x.first().map(|e| e.to_f32()) else {
        return (f32::INFINITY, f32::NEG_INFINITY);
    };
    // Starting from an element of the run (and padding the last chunk with
    // it) keeps the accumulators in registers: no lane is ever special.
    let (mut lo, mut hi) = ([first; LANES], [first; LANES]);
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        let mut v = [0.0f32; LANES];
        for (v, e) in v.iter_mut().zip(c) {
            *v = e.to_f32();
        }
        fold_lanes(&mut lo, &mut hi, nan, &v);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut v = [first; LANES];
        for (v, e) in v.iter_mut().zip(rest) {
            *v = e.to_f32();
        }
        fold_lanes(&mut lo, &mut hi, nan, &v);
    }
    (min_of(&lo), max_of(&hi))
}

/// bfloat16 bits as an `i16` in the order of the values they encode:
/// non-negative values keep their bits, negative ones have their magnitude
/// bits flipped, so that a larger magnitude comes out smaller. Signed
/// integer min/max on these (32 lanes to an AVX-512 register, and no
/// widening to `f32`) then give the values' min/max. `-0.0` maps to -1,
/// just below `+0.0` at 0, so a run holding both has min `-0.0` and max
/// `+0.0` (the float compares of [`fold_lanes`] keep whichever they meet
/// first; no qparams depend on it, see `qparams.rs`). The map is its own
/// inverse.
#[inline(always)]
fn ordered(bits: u16) -> i16 {
    let s = bits as i16;
    s ^ ((s >> 15) & 0x7FFF)
}

/// `ordered` of `+inf` and of `-inf`: every NaN maps above the first
/// (positive NaNs) or below the second (negative NaNs).
const ORDERED_INF: i16 = 0x7F80;
const ORDERED_NEG_INF: i16 = 0xFF80u16 as i16 ^ 0x7FFF;

/// The value whose [`ordered`] bits are `t`, as `f32` (exact).
#[inline(always)]
fn ordered_value(t: i16) -> f32 {
    f32::from_bits((ordered(t as u16) as u16 as u32) << 16)
}

/// Lanes of the bfloat16 run kernel: one AVX-512 register of `i16`. The
/// min/max chains are one instruction per register, so one accumulator of
/// each keeps up with the loads.
const LANES16: usize = 32;

/// [`run_min_max`] for bfloat16, on [`ordered`] bits.
#[inline(always)]
fn bf16_run_min_max<E: Elem>(x: &[E], nan: &mut NanLanes) -> (f32, f32) {
    let Some(first) = x.first().map(|e| ordered(e.bf16_bits())) else {
        return (f32::INFINITY, f32::NEG_INFINITY);
    };
    let (mut lo, mut hi) = ([first; LANES16], [first; LANES16]);
    let mut chunks = x.chunks_exact(LANES16);
    for c in &mut chunks {
        for j in 0..LANES16 {
            let t = ordered(c[j].bf16_bits());
            lo[j] = lo[j].min(t);
            hi[j] = hi[j].max(t);
        }
    }
    for (j, e) in chunks.remainder().iter().enumerate() {
        let t = ordered(e.bf16_bits());
        lo[j] = lo[j].min(t);
        hi[j] = hi[j].max(t);
    }
    let (l, h) = ordered_min_max(&lo, &hi);
    nan[0] |= (h > ORDERED_INF || l < ORDERED_NEG_INF) as u32;
    (ordered_value(l), ordered_value(h))
}

/// `(min(lo), max(hi))`, with the max taken as the min of the complements
/// (`!t` reverses the order of `i16`) so that both halve in one register:
/// [`LANES16`] lanes of min and of complemented max folded to 16 each, then
/// four halvings of both halves at once.
#[inline(always)]
fn ordered_min_max(lo: &[i16; LANES16], hi: &[i16; LANES16]) -> (i16, i16) {
    let mut v: [i16; 32] = [0; 32];
    for j in 0..16 {
        v[j] = lo[j].min(lo[j + 16]);
        v[j + 16] = !hi[j].max(hi[j + 16]);
    }
    let mut w = 16;
    while w > 1 {
        let h = w / 2;
        let mut n = v;
        for j in 0..h {
            n[j] = v[j].min(v[j + h]);
            n[j + 16] = v[j + 16].min(v[j + 16 + h]);
        }
        v = n;
        w = h;
    }
    (v[0], !v[16])
}

#[inline(always)]
fn fold_lanes(lo: &mut [f32; LANES], hi: &mut [f32; LANES], nan: &mut NanLanes, v: &[f32; LANES]) {
    for j in 0..LANES {
        lo[j] = if v[j] < lo[j] { v[j] } else { lo[j] };
        hi[j] = if v[j] > hi[j] { v[j] } else { hi[j] };
        nan[j] |= v[j].is_nan() as u32;
    }
}

/// Halves `v` lane-wise with `pick` until one value is left, in fixed-width
/// steps that vectorize (32 -> 16 -> 8 -> 4 -> 2 -> 1).
#[inline(always)]
fn tree(v: &[f32; LANES], pick: impl Fn(f32, f32) -> f32) -> f32 {
    let v16: [f32; 16] = std::array::from_fn(|j| pick(v[j], v[j + 16]));
    tree16(&v16, pick)
}

/// [`tree`] of 16 values (16 -> 8 -> 4 -> 2 -> 1).
#[inline(always)]
fn tree16(v: &[f32; 16], pick: impl Fn(f32, f32) -> f32) -> f32 {
    let v8: [f32; 8] = std::array::from_fn(|j| pick(v[j], v[j + 8]));
    let v4: [f32; 4] = std::array::from_fn(|j| pick(v8[j], v8[j + 4]));
    pick(pick(v4[0], v4[2]), pick(v4[1], v4[3]))
}

#[inline(always)]
fn min_of(v: &[f32; LANES]) -> f32 {
    tree(v, |a, b| if b < a { b } else { a })
}

#[inline(always)]
fn max_of(v: &[f32; LANES]) -> f32 {
    tree(v, |a, b| if b > a { b } else { a })
}

/// `acc[j] = min(acc[j], v[j])` over `v`'s length.
///
/// Computed in registers and stored whole: written as a select on the
/// accumulator in memory, LLVM emits masked stores (`vmaskmovps`), which are
/// slow and stall store forwarding.
#[inline(always)]
fn min_into(acc: &mut [f32], v: &[f32]) {
    let mut chunks = acc.chunks_exact_mut(8).zip(v.chunks_exact(8));
    for (a, v) in &mut chunks {
        let new: [f32; 8] = std::array::from_fn(|j| if v[j] < a[j] { v[j] } else { a[j] });
        a.copy_from_slice(&new);
    }
    let done = acc.len() / 8 * 8;
    for (a, &v) in acc[done..].iter_mut().zip(&v[done.min(v.len())..]) {
        let new = if v < *a { v } else { *a };
        *a = new;
    }
}

/// `acc[j] = max(acc[j], v[j])`, as [`min_into`].
#[inline(always)]
fn max_into(acc: &mut [f32], v: &[f32]) {
    let mut chunks = acc.chunks_exact_mut(8).zip(v.chunks_exact(8));
    for (a, v) in &mut chunks {
        let new: [f32; 8] = std::array::from_fn(|j| if v[j] > a[j] { v[j] } else { a[j] });
        a.copy_from_slice(&new);
    }
    let done = acc.len() / 8 * 8;
    for (a, &v) in acc[done..].iter_mut().zip(&v[done.min(v.len())..]) {
        let new = if v > *a { v } else { *a };
        *a = new;
    }
}

/// Elementwise `lo[i] = min(lo[i], x[i])`, `hi[i] = max(hi[i], x[i])` over
/// the non-NaN values; sets `nan` when `x` holds a NaN. One plain loop with
/// unconditional stores and an OR-reduced NaN flag, which LLVM vectorizes
/// whole (chunked versions compiled either to a scalar loop with masked
/// stores or to gathers across chunks: 3 to 8 cycles an element for a
/// per-column choose of a 4096-wide input).
#[inline(always)]
pub(crate) fn kept_min_max<E: Elem>(x: &[E], lo: &mut [f32], hi: &mut [f32], nan: &mut u32) {
    let mut seen = 0u32;
    for ((e, l), h) in x.iter().zip(lo.iter_mut()).zip(hi.iter_mut()) {
        let v = e.to_f32();
        *l = if v < *l { v } else { *l };
        *h = if v > *h { v } else { *h };
        seen |= v.is_nan() as u32;
    }
    *nan |= seen;
}

/// [`kept_min_max`] of four runs of the same length into the same
/// accumulators, each accumulator element read and written once.
#[inline(always)]
fn kept_min_max4<E: Elem>(x: [&[E]; 4], lo: &mut [f32], hi: &mut [f32], nan: &mut u32) {
    let n = x[0].len();
    let [a, b, c, d] = x.map(|r| &r[..n]);
    let (lo, hi) = (&mut lo[..n], &mut hi[..n]);
    let mut seen = 0u32;
    for j in 0..n {
        let v = [a[j].to_f32(), b[j].to_f32(), c[j].to_f32(), d[j].to_f32()];
        let (mut l, mut h) = (lo[j], hi[j]);
        for v in v {
            l = if v < l { v } else { l };
            h = if v > h { v } else { h };
            seen |= v.is_nan() as u32;
        }
        lo[j] = l;
        hi[j] = h;
    }
    *nan |= seen;
}

/// [`kept_min_max`] for [`folded_runs`]' accumulators: whole chunks of 16
/// computed in registers and stored whole (see [`min_into`]), the tail one
/// by one; there, [`kept_min_max`]'s chunks, whose last may be short,
/// compile to scalar code.
#[inline(always)]
fn fold_min_max<E: Elem>(x: &[E], lo: &mut [f32], hi: &mut [f32], nan: &mut u32) {
    const W: usize = 16;
    let n = x.len();
    let (lo, hi) = (&mut lo[..n], &mut hi[..n]);
    let whole = n / W * W;
    let mut seen = [0u32; W];
    let chunks = x[..whole]
        .chunks_exact(W)
        .zip(lo[..whole].chunks_exact_mut(W))
        .zip(hi[..whole].chunks_exact_mut(W));
    for ((c, l), h) in chunks {
        let v: [f32; W] = std::array::from_fn(|j| c[j].to_f32());
        let new_lo: [f32; W] = std::array::from_fn(|j| if v[j] < l[j] { v[j] } else { l[j] });
        let new_hi: [f32; W] = std::array::from_fn(|j| if v[j] > h[j] { v[j] } else { h[j] });
        for j in 0..W {
            seen[j] |= v[j].is_nan() as u32;
        }
        l.copy_from_slice(&new_lo);
        h.copy_from_slice(&new_hi);
    }
    let tail = x[whole..]
        .iter()
        .zip(&mut lo[whole..])
        .zip(&mut hi[whole..]);
    for ((e, l), h) in tail {
        let v = e.to_f32();
        *l = if v < *l { v } else { *l };
        *h = if v > *h { v } else { *h };
        seen[0] |= v.is_nan() as u32;
    }
    *nan |= seen.iter().fold(0, |a, &b| a | b);
}

/// Width of the accumulator that consecutive narrow kept runs are folded
/// into (see [`kept_runs`]): 1 KiB each for min and max, in L1.
const WIDE: usize = 256;

/// Runs at most this long (and a multiple of 8) are reduced eight at a
/// time ([`eight_runs`]); longer ones one by one ([`run_min_max`]).
const SHORT_RUN: usize = 128;

kernel! {
    /// Folds each run of a batch of reduced runs (elements `x[batch.elem..]`)
    /// into its block's `lo[i]`, `hi[i]` (blocks from `batch.block`), or
    /// stores it there when `assign` (the run is the block's only one).
    /// `true` when the batch holds a NaN.
    pub(crate) fn reduced_runs<E: Elem>(
        x: &[E],
        batch: Batch,
        assign: bool,
        lo: &mut [f32],
        hi: &mut [f32],
    ) -> bool {
        let x = &x[batch.elem..batch.elem + batch.span()];
        let (lo, hi) = (&mut lo[..batch.reps], &mut hi[..batch.reps]);
        let mut nan = [0u32; LANES];
        let mut first = 0;
        if batch.stride == batch.len && batch.len < 8 {
            // Consecutive runs shorter than a vector: the per-run path would
            // spend a reduction tree on two to seven elements.
            let mut seen = 0u32;
            match batch.len {
                2 => tiny_runs::<E, 2>(x, assign, lo, hi, &mut seen),
                3 => tiny_runs::<E, 3>(x, assign, lo, hi, &mut seen),
                4 => tiny_runs::<E, 4>(x, assign, lo, hi, &mut seen),
                5 => tiny_runs::<E, 5>(x, assign, lo, hi, &mut seen),
                6 => tiny_runs::<E, 6>(x, assign, lo, hi, &mut seen),
                7 => tiny_runs::<E, 7>(x, assign, lo, hi, &mut seen),
                _ => seen = u32::MAX,
            }
            if seen != u32::MAX {
                return seen != 0;
            }
        }
        // bfloat16 runs of whole registers of `i16` are reduced as their
        // bits (see `ordered`): 32 consecutive runs at a time on AVX-512,
        // 16 on AVX2 (short runs of a multiple of 16), the rest one by one.
        let bf16_lanes = E::BF16 && batch.len.is_multiple_of(LANES16) && batch.len > 0;
        #[cfg(target_arch = "x86_64")]
        if let Some(xb) = E::as_bf16(x) {
            let (len, reps) = (batch.len, batch.reps);
            let consecutive = batch.stride == len && len > 0;
            match simd::level() {
                simd::Level::Avx512 if consecutive && bf16_lanes => {
                    // SAFETY: the CPU runs AVX-512 (`level` says so).
                    let k = |x: &[bf16], l: &mut _, h: &mut _| unsafe { runs32(x, len, l, h) };
                    first = block_runs(xb, len, reps, assign, lo, hi, &mut nan, k);
                }
                // Longer runs gain nothing from sharing their reductions,
                // and measured slower in it (per channel, one register of
                // each accumulator against the one-by-one path's two).
                simd::Level::Avx2
                    if consecutive && len.is_multiple_of(avx2::RUNS) && len <= SHORT_RUN =>
                {
                    // SAFETY: the CPU runs AVX2 (`level` says so).
                    let k = |x: &[bf16], l: &mut _, h: &mut _| unsafe { runs16(x, len, l, h) };
                    first = block_runs(xb, len, reps, assign, lo, hi, &mut nan, k);
                }
                _ => {}
            }
        }
        // float32 runs of whole registers: 16 consecutive runs at a time on
        // AVX-512, as ordered integers (see `avx512::f32_runs16`), whatever
        // their length, as bfloat16 runs are: the one-by-one path's
        // reduction tree per run made runs of 512 1.75x slower per element
        // than runs of 4096 (4096x4096 in groups of 512: 1.30 -> 0.75 ms).
        #[cfg(target_arch = "x86_64")]
        if let Some(xf) = E::as_f32(x) {
            let len = batch.len;
            let fits = len > 0 && len.is_multiple_of(avx512::RUNS_F32);
            if simd::level() == simd::Level::Avx512 && batch.stride == len && fits {
                // SAFETY: the CPU runs AVX-512 (`level` says so).
                let k = |x: &[f32], l: &mut _, h: &mut _| unsafe { runs16_f32(x, len, l, h) };
                first = block_runs(xf, len, batch.reps, assign, lo, hi, &mut nan, k);
            }
        }
        let short = batch.len & 7 == 0 && batch.len <= SHORT_RUN && batch.stride == batch.len;
        if first == 0 && short && !bf16_lanes {
            // Consecutive short runs: eight at a time.
            let whole = batch.reps / 8 * 8;
            let groups = x[..whole * batch.len].chunks_exact(8 * batch.len);
            let outs = lo[..whole].chunks_exact_mut(8).zip(hi[..whole].chunks_exact_mut(8));
            for (runs, (l, h)) in groups.zip(outs) {
                let (rl, rh) = eight_runs(runs, batch.len, &mut nan);
                if assign {
                    l.copy_from_slice(&rl);
                    h.copy_from_slice(&rh);
                } else {
                    min_into(l, &rl);
                    max_into(h, &rh);
                }
            }
            first = whole;
        }
        for (i, (l, h)) in lo.iter_mut().zip(hi.iter_mut()).enumerate().skip(first) {
            let run = &x[i * batch.stride..i * batch.stride + batch.len];
            let (rl, rh) = run_min_max(run, &mut nan);
            if assign {
                (*l, *h) = (rl, rh);
            } else {
                *l = if rl < *l { rl } else { *l };
                *h = if rh > *h { rh } else { *h };
            }
        }
        nan.iter().any(|&n| n != 0)
    }
}

/// [`avx512::bf16_runs32`], callable from every copy of a kernel.
///
/// # Safety
/// The CPU must run AVX-512 F and BW.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn runs32(x: &[bf16], len: usize, lo: &mut [f32; 32], hi: &mut [f32; 32]) -> bool {
    // SAFETY: the caller guarantees AVX-512 F and BW, all it requires.
    unsafe { avx512::bf16_runs32(x, len, lo, hi) }
}

/// [`avx512::f32_runs16`], callable from every copy of a kernel.
///
/// # Safety
/// The CPU must run AVX-512 F and BW.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn runs16_f32(x: &[f32], len: usize, lo: &mut [f32; 16], hi: &mut [f32; 16]) -> bool {
    // SAFETY: the caller guarantees AVX-512 F and BW, all it requires.
    unsafe { avx512::f32_runs16(x, len, lo, hi) }
}

/// [`avx2::bf16_runs16`], callable from every copy of a kernel.
///
/// # Safety
/// The CPU must run AVX2.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn runs16(x: &[bf16], len: usize, lo: &mut [f32; 16], hi: &mut [f32; 16]) -> bool {
    // SAFETY: the caller guarantees AVX2, all it requires.
    unsafe { avx2::bf16_runs16(x, len, lo, hi) }
}

/// The first `reps / N * N` of `reps` consecutive runs of `len` elements
/// into `lo`, `hi` (folded in unless `assign`), `N` runs at a time by
/// `kernel`: [`avx512::bf16_runs32`] (bfloat16, `N` = 32, `len` a multiple
/// of 32), [`avx2::bf16_runs16`] (bfloat16, `N` = 16) or
/// [`avx512::f32_runs16`] (float32, `N` = 16); sets `nan` when they hold a
/// NaN. Returns how many runs it did. Only for CPUs that run that kernel's
/// instruction set.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn block_runs<T, const N: usize>(
    x: &[T],
    len: usize,
    reps: usize,
    assign: bool,
    lo: &mut [f32],
    hi: &mut [f32],
    nan: &mut NanLanes,
    kernel: impl Fn(&[T], &mut [f32; N], &mut [f32; N]) -> bool,
) -> usize {
    let whole = reps / N * N;
    let groups = x[..whole * len].chunks_exact(N * len);
    let outs = lo[..whole]
        .chunks_exact_mut(N)
        .zip(hi[..whole].chunks_exact_mut(N));
    for (runs, (l, h)) in groups.zip(outs) {
        let (mut rl, mut rh) = ([0.0f32; N], [0.0f32; N]);
        nan[0] |= kernel(runs, &mut rl, &mut rh) as u32;
        if assign {
            l.copy_from_slice(&rl);
            h.copy_from_slice(&rh);
        } else {
            min_into(l, &rl);
            max_into(h, &rh);
        }
    }
    whole
}

/// Min and max of each of the consecutive runs of `L` elements of `x` into
/// `lo[i]`, `hi[i]` (folded in unless `assign`); sets `nan` when `x` holds a
/// NaN. Written per run with `L` a constant, so that LLVM vectorizes across
/// runs with interleaved loads.
#[inline(always)]
fn tiny_runs<E: Elem, const L: usize>(
    x: &[E],
    assign: bool,
    lo: &mut [f32],
    hi: &mut [f32],
    nan: &mut u32,
) {
    let runs = x.chunks_exact(L).zip(lo.iter_mut().zip(hi.iter_mut()));
    let mut seen = 0u32;
    let reduce = |run: &[E], seen: &mut u32| {
        let v: [f32; L] = std::array::from_fn(|j| run[j].to_f32());
        let (mut l, mut h) = (v[0], v[0]);
        for &v in &v {
            l = if v < l { v } else { l };
            h = if v > h { v } else { h };
            *seen |= v.is_nan() as u32;
        }
        (l, h)
    };
    if assign {
        for (run, (l, h)) in runs {
            (*l, *h) = reduce(run, &mut seen);
        }
    } else {
        for (run, (l, h)) in runs {
            let (rl, rh) = reduce(run, &mut seen);
            *l = if rl < *l { rl } else { *l };
            *h = if rh > *h { rh } else { *h };
        }
    }
    *nan |= seen;
}

/// Min and max of each of eight consecutive runs of `len` elements
/// (`len` a multiple of 8): each run is folded into 8 lanes, then the eight
/// lane vectors are reduced together by a butterfly (pairs of lanes, pairs
/// of pairs, halves) whose shuffles are AVX's unpack and permute
/// instructions, instead of eight separate horizontal reductions.
#[inline(always)]
fn eight_runs<E: Elem>(x: &[E], len: usize, nan: &mut NanLanes) -> ([f32; 8], [f32; 8]) {
    let mut lo = [[0.0f32; 8]; 8];
    let mut hi = [[0.0f32; 8]; 8];
    for (r, run) in x.chunks_exact(len).take(8).enumerate() {
        let mut chunks = run.chunks_exact(8);
        let mut l = [0.0f32; 8];
        if let Some(c) = chunks.next() {
            for (l, e) in l.iter_mut().zip(c) {
                *l = e.to_f32();
            }
        }
        let mut h = l;
        let mut n = [0u32; 8];
        for j in 0..8 {
            n[j] |= (l[j].is_nan() as u32).wrapping_neg();
        }
        for c in chunks {
            let mut v = [0.0f32; 8];
            for (v, e) in v.iter_mut().zip(c) {
                *v = e.to_f32();
            }
            for j in 0..8 {
                l[j] = if v[j] < l[j] { v[j] } else { l[j] };
                h[j] = if v[j] > h[j] { v[j] } else { h[j] };
                n[j] |= (v[j].is_nan() as u32).wrapping_neg();
            }
        }
        for j in 0..8 {
            nan[j] |= n[j];
        }
        lo[r] = l;
        hi[r] = h;
    }
    let min = |a: f32, b: f32| if b < a { b } else { a };
    let max = |a: f32, b: f32| if b > a { b } else { a };
    (butterfly(&lo, min), butterfly(&hi, max))
}

/// `out[r] = pick` over the 8 lanes of `rows[r]`.
#[inline(always)]
fn butterfly(rows: &[[f32; 8]; 8], pick: impl Fn(f32, f32) -> f32) -> [f32; 8] {
    let both = |a: [f32; 8], b: [f32; 8]| -> [f32; 8] { std::array::from_fn(|j| pick(a[j], b[j])) };
    // Interleaved lanes (unpacklo/unpackhi): [x0 y0 x1 y1 | x4 y4 x5 y5]
    // against [x2 y2 x3 y3 | x6 y6 x7 y7].
    let pairs = |x: [f32; 8], y: [f32; 8]| {
        both(
            [x[0], y[0], x[1], y[1], x[4], y[4], x[5], y[5]],
            [x[2], y[2], x[3], y[3], x[6], y[6], x[7], y[7]],
        )
    };
    // Interleaved lane pairs (unpacklo_pd/unpackhi_pd).
    let quads = |x: [f32; 8], y: [f32; 8]| {
        both(
            [x[0], x[1], y[0], y[1], x[4], x[5], y[4], y[5]],
            [x[2], x[3], y[2], y[3], x[6], x[7], y[6], y[7]],
        )
    };
    let a = quads(pairs(rows[0], rows[1]), pairs(rows[2], rows[3]));
    let b = quads(pairs(rows[4], rows[5]), pairs(rows[6], rows[7]));
    // Low halves against high halves (permute2f128): row r in lane r.
    both(
        [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]],
        [a[4], a[5], a[6], a[7], b[4], b[5], b[6], b[7]],
    )
}

/// Folded batches at most this wide (runs times their length) are reduced
/// elementwise over their copies first (see [`folded_runs`]): 4 KiB each
/// for min and max, in L1.
const FOLD_WIDTH: usize = 1024;

kernel! {
    /// [`reduced_runs`] of every copy of a folded batch. When the copies
    /// are narrow and their runs consecutive, they are first folded
    /// elementwise into one copy's width (vectorized, in L1), whose runs are
    /// then reduced once: the short runs pay their reduction once instead
    /// of once per copy.
    pub(crate) fn folded_runs<E: Elem>(
        x: &[E],
        folded: Folded,
        assign: bool,
        lo: &mut [f32],
        hi: &mut [f32],
    ) -> bool {
        let b = folded.batch;
        let w = b.reps * b.len;
        if folded.outer > 1 && b.stride == b.len {
            // Copies one to four AVX-512 registers wide (4-D blocks such as
            // `[2, 1, 16, 16]`: 4 runs of 16 per copy) fold in registers.
            let nan = match w {
                16 => Some(fold_copies::<E, 16>(x, folded, lo, hi)),
                32 => Some(fold_copies::<E, 32>(x, folded, lo, hi)),
                48 => Some(fold_copies::<E, 48>(x, folded, lo, hi)),
                64 => Some(fold_copies::<E, 64>(x, folded, lo, hi)),
                _ => None,
            };
            if let Some(nan) = nan {
                return nan;
            }
        }
        if folded.outer > 1 && b.stride == b.len && w <= FOLD_WIDTH {
            let mut nan = 0u32;
            let (mut al, mut ah) = ([f32::INFINITY; FOLD_WIDTH], [f32::NEG_INFINITY; FOLD_WIDTH]);
            for o in 0..folded.outer {
                let at = b.elem + o * folded.outer_stride;
                fold_min_max(&x[at..at + w], &mut al[..w], &mut ah[..w], &mut nan);
            }
            // The blocks' minima are the runs' minima of `al`, their maxima
            // those of `ah`; the other half of each reduction is discarded.
            let runs = Batch { elem: 0, block: 0, len: b.len, reps: b.reps, stride: b.len };
            let mut unused = [0.0f32; FOLD_WIDTH];
            reduced_runs(&al[..w], runs, false, lo, &mut unused);
            reduced_runs(&ah[..w], runs, false, &mut unused, hi);
            return nan != 0;
        }
        let mut nan = false;
        for o in 0..folded.outer {
            let batch = Batch { elem: b.elem + o * folded.outer_stride, ..b };
            nan |= reduced_runs(x, batch, assign, lo, hi);
        }
        nan
    }
}

/// [`folded_runs`] of a folded batch whose copies are `W` consecutive
/// elements: the copies folded elementwise into accumulators that stay in
/// registers, whose runs are then reduced into `lo`, `hi`. `true` when the
/// batch holds a NaN.
#[inline(always)]
fn fold_copies<E: Elem, const W: usize>(
    x: &[E],
    folded: Folded,
    lo: &mut [f32],
    hi: &mut [f32],
) -> bool {
    let b = folded.batch;
    let (mut l, mut h) = ([f32::INFINITY; W], [f32::NEG_INFINITY; W]);
    let mut seen = [0u32; W];
    for o in 0..folded.outer {
        let at = b.elem + o * folded.outer_stride;
        let c = &x[at..at + W];
        let v: [f32; W] = std::array::from_fn(|j| c[j].to_f32());
        for j in 0..W {
            l[j] = if v[j] < l[j] { v[j] } else { l[j] };
            h[j] = if v[j] > h[j] { v[j] } else { h[j] };
            seen[j] |= v[j].is_nan() as u32;
        }
    }
    // As in `folded_runs`: the blocks' minima are the runs' minima of `l`,
    // their maxima those of `h`. Runs of 16 (4-D blocks such as
    // `[2, 1, 16, 16]`) are reduced here, in registers: the kernel call
    // per accumulator cost more than the copies' fold.
    if b.len == 16 && b.reps * 16 == W {
        let runs = l.chunks_exact(16).zip(h.chunks_exact(16));
        for ((l, h), (lo, hi)) in runs.zip(lo.iter_mut().zip(hi.iter_mut())) {
            let (Ok(l), Ok(h)) = (<&[f32; 16]>::try_from(l), <&[f32; 16]>::try_from(h)) else {
                continue;
            };
            let mn = tree16(l, |a, b| if b < a { b } else { a });
            let mx = tree16(h, |a, b| if b > a { b } else { a });
            *lo = if mn < *lo { mn } else { *lo };
            *hi = if mx > *hi { mx } else { *hi };
        }
        return seen.iter().any(|&s| s != 0);
    }
    let runs = Batch {
        elem: 0,
        block: 0,
        len: b.len,
        reps: b.reps,
        stride: b.len,
    };
    let mut unused = [0.0f32; W];
    reduced_runs(&l, runs, false, lo, &mut unused);
    reduced_runs(&h, runs, false, &mut unused, hi);
    seen.iter().any(|&s| s != 0)
}

kernel! {
    /// Folds every run of a batch of kept runs (elements `x[batch.elem..]`)
    /// into `lo[j]`, `hi[j]` elementwise (blocks from `batch.block`).
    /// `true` when the batch holds a NaN.
    pub(crate) fn kept_runs<E: Elem>(
        x: &[E],
        batch: Batch,
        lo: &mut [f32],
        hi: &mut [f32],
    ) -> bool {
        let x = &x[batch.elem..batch.elem + batch.span()];
        let (lo, hi) = (&mut lo[..batch.len], &mut hi[..batch.len]);
        let mut nan = 0u32;
        let mut first = 0;
        if batch.stride == batch.len && LANES.is_multiple_of(batch.len) {
            // Consecutive runs whose length divides the register width
            // (per column of an input 1, 2, 4, ..., 32 wide): lane `j` of
            // every chunk belongs to block `j % len`.
            first = narrow_kept_runs(x, batch.len, lo, hi, &mut nan);
        } else if batch.stride == batch.len && batch.len <= WIDE / 4 {
            // Consecutive narrow runs (a tall, narrow input reduced per
            // column): `m` runs side by side are folded elementwise into a
            // `m * len`-wide accumulator, whose lane `j` belongs to block
            // `j % len`, and only that accumulator is folded to `len`.
            let m = WIDE / batch.len;
            let w = m * batch.len;
            let (mut wl, mut wh) = ([f32::INFINITY; WIDE], [f32::NEG_INFINITY; WIDE]);
            let groups = batch.reps / m;
            for g in x[..groups * w].chunks_exact(w) {
                kept_min_max(g, &mut wl[..w], &mut wh[..w], &mut nan);
            }
            for (j, (&l, &h)) in wl[..w].iter().zip(&wh[..w]).enumerate() {
                let (lo, hi) = (&mut lo[j % batch.len], &mut hi[j % batch.len]);
                *lo = if l < *lo { l } else { *lo };
                *hi = if h > *hi { h } else { *hi };
            }
            first = groups * m;
        }
        // Four runs at a time: the accumulators, as wide as a run, are read
        // and written once per four runs (a 4096-wide run's 16 KiB of each
        // do not stay in L1 with the runs streaming through).
        let run = |i: usize| &x[i * batch.stride..i * batch.stride + batch.len];
        let mut i = first;
        while i + 4 <= batch.reps {
            kept_min_max4([run(i), run(i + 1), run(i + 2), run(i + 3)], lo, hi, &mut nan);
            i += 4;
        }
        for i in i..batch.reps {
            kept_min_max(run(i), lo, hi, &mut nan);
        }
        nan != 0
    }
}

/// [`kept_runs`] of consecutive runs of `len` elements, `len` dividing
/// [`LANES`]: the whole chunks of `LANES` elements of `x` folded into
/// accumulators that stay in registers, lane `j` into block `j % len`; the
/// runs left over are the caller's. Returns how many runs it folded.
#[inline(always)]
fn narrow_kept_runs<E: Elem>(
    x: &[E],
    len: usize,
    lo: &mut [f32],
    hi: &mut [f32],
    nan: &mut u32,
) -> usize {
    let mut chunks = x.chunks_exact(LANES);
    let (mut l, mut h) = ([f32::INFINITY; LANES], [f32::NEG_INFINITY; LANES]);
    let mut seen = [0u32; LANES];
    for c in &mut chunks {
        let v: [f32; LANES] = std::array::from_fn(|j| c[j].to_f32());
        fold_lanes(&mut l, &mut h, &mut seen, &v);
    }
    for j in 0..LANES {
        let (lo, hi) = (&mut lo[j % len], &mut hi[j % len]);
        *lo = if l[j] < *lo { l[j] } else { *lo };
        *hi = if h[j] > *hi { h[j] } else { *hi };
    }
    *nan |= seen.iter().fold(0, |a, &b| a | b);
    (x.len() - chunks.remainder().len()) / len
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::bf16;

    #[test]
    fn min_max_and_nan() {
        let x: Vec<f32> = (0..37).map(|i| (i as f32 - 20.0) * 0.5).collect();
        let mut nan = [0; LANES];
        assert_eq!(run_min_max(&x, &mut nan), (-10.0, 8.0));
        assert!(nan.iter().all(|&n| n == 0));
        let mut y = x.clone();
        y[33] = f32::NAN;
        run_min_max(&y, &mut nan);
        assert!(nan.iter().any(|&n| n != 0));
        let b: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
        assert_eq!(run_min_max(&b, &mut [0; LANES]), (-10.0, 8.0));
        assert_eq!(
            run_min_max(&[f32::INFINITY], &mut [0; LANES]),
            (f32::INFINITY, f32::INFINITY)
        );
    }

    #[test]
    fn bf16_bits_reduce_like_values() {
        // Every non-NaN pattern is ordered as its value.
        let values: Vec<u16> = (0..=u16::MAX)
            .filter(|&b| !bf16::from_bits(b).is_nan())
            .collect();
        let mut sorted = values.clone();
        sorted.sort_by_key(|&b| ordered(b));
        for w in sorted.windows(2) {
            let (a, b) = (
                bf16::from_bits(w[0]).to_f32(),
                bf16::from_bits(w[1]).to_f32(),
            );
            assert!(a < b || (a == 0.0 && b == 0.0), "{:#x} {:#x}", w[0], w[1]);
        }
        for &b in &values {
            assert_eq!(
                ordered_value(ordered(b)).to_bits(),
                bf16::from_bits(b).to_f32().to_bits()
            );
        }
        // Runs of every length up to 100 from a seeded stream with zeros of
        // both signs, subnormals, infinities and huge values: the same
        // min/max values as the float compares; any NaN is seen.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let special = [
            0x0000u16, 0x8000, 0x0001, 0x8001, 0x7F80, 0xFF80, 0x7F7F, 0xFF7F,
        ];
        for len in 1..100 {
            for _ in 0..20 {
                let x: Vec<bf16> = (0..len)
                    .map(|_| {
                        let r = next();
                        let bits = if r % 4 == 0 {
                            special[(r >> 8) as usize % 8]
                        } else {
                            (r >> 16) as u16
                        };
                        let b = bf16::from_bits(bits);
                        if b.is_nan() {
                            bf16::from_bits(bits & 0x7F00)
                        } else {
                            b
                        }
                    })
                    .collect();
                let mut nan = [0; LANES];
                let (lo, hi) = bf16_run_min_max(&x, &mut nan);
                assert!(nan.iter().all(|&n| n == 0));
                let want_lo = x.iter().map(|v| v.to_f32()).fold(f32::INFINITY, f32::min);
                let want_hi = x
                    .iter()
                    .map(|v| v.to_f32())
                    .fold(f32::NEG_INFINITY, f32::max);
                assert_eq!((lo, hi), (want_lo, want_hi), "{x:?}");
                for nan_bits in [0x7FC0u16, 0xFFC0, 0x7F81, 0xFFFF] {
                    let mut y = x.clone();
                    y[(next() % len as u64) as usize] = bf16::from_bits(nan_bits);
                    let mut nan = [0; LANES];
                    bf16_run_min_max(&y, &mut nan);
                    assert!(nan.iter().any(|&n| n != 0), "{nan_bits:#x} in {len}");
                }
            }
        }
    }

    #[test]
    fn eight_short_runs_at_once() {
        for len in [8usize, 16, 32, 64] {
            let reps = 19;
            let x: Vec<f32> = (0..reps * len)
                .map(|i| ((i * 7919) % 1013) as f32 - 500.0)
                .collect();
            let batch = Batch {
                elem: 0,
                block: 0,
                len,
                reps,
                stride: len,
            };
            let (mut lo, mut hi) = (vec![f32::INFINITY; reps], vec![f32::NEG_INFINITY; reps]);
            assert!(!reduced_runs(&x, batch, false, &mut lo, &mut hi));
            for (r, run) in x.chunks(len).enumerate() {
                let want_lo = run.iter().copied().fold(f32::INFINITY, f32::min);
                let want_hi = run.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                assert_eq!((lo[r], hi[r]), (want_lo, want_hi), "len {len} run {r}");
            }
            let mut y = x.clone();
            y[3 * len + 5] = f32::NAN;
            assert!(reduced_runs(&y, batch, true, &mut lo, &mut hi));
        }
    }

    #[test]
    fn batches_fold_into_blocks() {
        let x: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let (mut lo, mut hi) = ([f32::INFINITY; 3], [f32::NEG_INFINITY; 3]);
        let runs = Batch {
            elem: 0,
            block: 0,
            len: 4,
            reps: 3,
            stride: 4,
        };
        assert!(!reduced_runs(&x, runs, true, &mut lo, &mut hi));
        assert_eq!((lo, hi), ([0.0, 4.0, 8.0], [3.0, 7.0, 11.0]));
        let (mut lo, mut hi) = ([f32::INFINITY; 4], [f32::NEG_INFINITY; 4]);
        assert!(!kept_runs(&x, runs, &mut lo, &mut hi));
        assert_eq!((lo, hi), ([0.0, 1.0, 2.0, 3.0], [8.0, 9.0, 10.0, 11.0]));
        let mut y = x.clone();
        y[5] = f32::NAN;
        assert!(kept_runs(&y, runs, &mut lo, &mut hi));
    }
}
