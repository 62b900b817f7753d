//! Values from codes: torchao's `dequantize_affine` per element, as libtorch
//! rounds it.
//!
//! The reference op sequence (`Prepared::dequantize` in `quantize.rs`),
//! with `O` the output dtype, `S` the scale's and `Z` the zero point's:
//!
//! - Int domain: `q.to(int32) - zp.to(int32)` (int32, wrapping), `.to(O)`,
//!   `* scale` (in `promote(O, S)`), `.to(O)`.
//! - None domain: `q.to(O) * scale`, `.to(O)`: the Int formula with a zero
//!   point of 0 (`q.to(int32)` is exact for every code dtype).
//! - Int domain under torchao 0.18: `q.to(O) - zp.to(O)` (in `O`),
//!   `* scale` (in `promote(O, S)`), `.to(O)`; without a zero point this is
//!   the None domain's formula.
//! - Float domain: `q - mid` (float32: `q` converted to nearest, `mid` a
//!   Python float through `float`), `.to(O)`, `.mul_(scale)` and
//!   `.add_(zp)` in place (each computed in `promote(O, S)` or
//!   `promote(O, Z)` and stored in `O`; an integer `Z` is converted to `O`
//!   first).
//!
//! Among float32, float16 and bfloat16, libtorch computes each op in float32
//! and rounds its result to the op's dtype, so every op above is the `f32`
//! operation followed by a rounding to `O`: when the op's dtype is wider
//! than `O`, the later cast to `O` rounds once from float32 as well.
//! Integers reach a 16-bit float through float32 (c10 converts them to
//! `float` first), so the kernels do too.
//!
//! NaN outputs are left to the reference path: their sign and payload
//! depend on libtorch's code paths. With finite scales and finite Float
//! zero points the only NaN is `inf * 0`, where a value that overflows
//! float16 meets a zero scale; [`nan_free`] refuses the blocks where that
//! can happen.

use std::mem::MaybeUninit;

use half::{bf16, f16};
use tch::Kind;

use super::float::{f16_bits_exact, Prec};
use super::layout::{four_runs_mut, Batch, Folded};
use crate::mapping::ZeroPointDomain;

/// A code dtype as `dequantize_affine` reads it: converted to int32 exactly.
pub(crate) trait Code: Copy + Send + Sync + 'static {
    /// The smallest and largest value of the dtype.
    const RANGE: (i64, i64);
    fn int(self) -> i32;
}

macro_rules! code {
    ($($t:ty),*) => {$(
        impl Code for $t {
            const RANGE: (i64, i64) = (<$t>::MIN as i64, <$t>::MAX as i64);
            #[inline(always)]
            fn int(self) -> i32 {
                self as i32
            }
        }
    )*};
}
code!(u8, i8, i16, i32);

/// An output dtype: float32, bfloat16 or float16.
pub(crate) trait OutElem: Copy + Send + Sync + 'static {
    /// How the dtype rounds.
    type Prec: Prec;
    /// `y`, a value of this dtype that is not NaN, as stored.
    fn from_exact(y: f32) -> Self;
}

impl OutElem for f32 {
    type Prec = super::float::F32;
    #[inline(always)]
    fn from_exact(y: f32) -> Self {
        y
    }
}

impl OutElem for bf16 {
    type Prec = super::float::Bf16;
    #[inline(always)]
    fn from_exact(y: f32) -> Self {
        bf16::from_bits((y.to_bits() >> 16) as u16)
    }
}

impl OutElem for f16 {
    type Prec = super::float::F16;
    #[inline(always)]
    fn from_exact(y: f32) -> Self {
        f16::from_bits(f16_bits_exact(y))
    }
}

/// The per-block constants of a run of blocks, each slice starting at the
/// first of them.
#[derive(Clone, Copy)]
pub(crate) struct Blocks<'a> {
    /// The scale, as a value of its dtype.
    pub scale: &'a [f32],
    /// Int domain: the zero point as `.to(int32)` gives it; 0 in the None
    /// domain.
    pub zp_int: &'a [i32],
    /// Float domain: the zero point as the in-place add reads it (converted
    /// to `O` when `Z` is an integer dtype); Int domain under 0.18:
    /// `zp.to(O)`.
    pub zp: &'a [f32],
    /// Float domain: `mid` as a float32.
    pub mid: f32,
}

impl<'a> Blocks<'a> {
    /// The blocks from the `k`-th on.
    #[inline(always)]
    pub fn from(self, k: usize) -> Blocks<'a> {
        Blocks {
            scale: &self.scale[k..],
            zp_int: &self.zp_int[k..],
            zp: &self.zp[k..],
            mid: self.mid,
        }
    }
}

/// The value of one code, rounded as the reference op sequence rounds it;
/// never NaN when [`nan_free`] holds for its block.
pub(crate) trait Formula: Copy + Send + Sync + 'static {
    fn value<P: Prec>(c: i32, mid: f32, scale: f32, zp_int: i32, zp: f32) -> f32;
    /// [`value`](Formula::value) for a block where [`exact`](Formula::exact)
    /// holds: the code's first conversion to `P` needs no rounding.
    fn value_exact<P: Prec>(c: i32, mid: f32, scale: f32, zp_int: i32, zp: f32) -> f32;
    /// Whether every code in `codes` converts to `P` exactly in a block with
    /// this zero point (`q - zp` in the Int domain, `q - mid` in the Float
    /// one, each an integer of magnitude at most `P::EXACT_INTS`; under 0.18
    /// `q` and `zp` too).
    fn exact<P: Prec>(codes: (i64, i64), mid: f32, zp_int: i32, zp: f32) -> bool;
}

/// Int and None domains.
#[derive(Clone, Copy)]
pub(crate) struct IntFormula;

/// Int domain under torchao 0.18 (subtraction in the output dtype).
#[derive(Clone, Copy)]
pub(crate) struct IntOutFormula;

/// Float domain.
#[derive(Clone, Copy)]
pub(crate) struct FloatFormula;

/// Whether every integer in `lo - at..=hi - at` is exact in `P`.
#[inline(always)]
fn exact_ints<P: Prec>((lo, hi): (i64, i64), at: i64) -> bool {
    let limit = P::EXACT_INTS as i64;
    (lo - at).abs() <= limit && (hi - at).abs() <= limit
}

impl Formula for IntFormula {
    #[inline(always)]
    fn value<P: Prec>(c: i32, _: f32, scale: f32, zp_int: i32, _: f32) -> f32 {
        let f = P::round_non_nan(c.wrapping_sub(zp_int) as f32);
        P::round_non_nan(f * scale)
    }
    #[inline(always)]
    fn value_exact<P: Prec>(c: i32, _: f32, scale: f32, zp_int: i32, _: f32) -> f32 {
        P::round_non_nan(c.wrapping_sub(zp_int) as f32 * scale)
    }
    #[inline(always)]
    fn exact<P: Prec>(codes: (i64, i64), _: f32, zp_int: i32, _: f32) -> bool {
        exact_ints::<P>(codes, zp_int as i64)
    }
}

impl Formula for IntOutFormula {
    #[inline(always)]
    fn value<P: Prec>(c: i32, _: f32, scale: f32, _: i32, zp: f32) -> f32 {
        let d = P::round_non_nan(P::round_non_nan(c as f32) - zp);
        P::round_non_nan(d * scale)
    }
    #[inline(always)]
    fn value_exact<P: Prec>(c: i32, _: f32, scale: f32, _: i32, zp: f32) -> f32 {
        P::round_non_nan((c as f32 - zp) * scale)
    }
    #[inline(always)]
    fn exact<P: Prec>(codes: (i64, i64), _: f32, _: i32, zp: f32) -> bool {
        // An integral zero point exact in `P`, codes exact in `P`, and their
        // differences exact in `P`: both conversions and the subtraction are
        // exact, leaving the product's rounding alone (8-bit and sub-byte
        // codes with their zero points, in every output dtype).
        let limit = P::EXACT_INTS as f64;
        let zp = zp as f64;
        zp == zp.round()
            && zp.abs() <= limit
            && exact_ints::<P>(codes, 0)
            && exact_ints::<P>(codes, zp as i64)
    }
}

impl Formula for FloatFormula {
    #[inline(always)]
    fn value<P: Prec>(c: i32, mid: f32, scale: f32, _: i32, zp: f32) -> f32 {
        let d = P::round_non_nan(c as f32 - mid);
        let y = P::round_non_nan(d * scale);
        P::round_non_nan(y + zp)
    }
    #[inline(always)]
    fn value_exact<P: Prec>(c: i32, mid: f32, scale: f32, _: i32, zp: f32) -> f32 {
        let y = P::round_non_nan((c as f32 - mid) * scale);
        P::round_non_nan(y + zp)
    }
    #[inline(always)]
    fn exact<P: Prec>(codes: (i64, i64), mid: f32, _: i32, _: f32) -> bool {
        // An integral `mid` below 2^24 makes `q - mid` an exact float32
        // integer for the codes of the range checked.
        mid == mid.round() && mid.abs() < 16_777_216.0 && exact_ints::<P>(codes, mid as i64)
    }
}

/// Values of a run whose codes share one block (`k`'s first), all in
/// `range`.
#[inline(always)]
fn run<C: Code, O: OutElem, F: Formula>(
    codes: &[C],
    k: Blocks,
    range: (i64, i64),
    out: &mut [MaybeUninit<O>],
) {
    run_of::<C, O, F>(codes, k, range, |c| c, out);
}

/// [`run`] of the codes `code(c)` for the stored `c` (bits of packed
/// bytes).
#[inline(always)]
fn run_of<C: Code, O: OutElem, F: Formula>(
    stored: &[C],
    k: Blocks,
    range: (i64, i64),
    code: impl Fn(i32) -> i32,
    out: &mut [MaybeUninit<O>],
) {
    let (mid, s, zi, z) = (k.mid, k.scale[0], k.zp_int[0], k.zp[0]);
    if F::exact::<O::Prec>(range, mid, zi, z) {
        map_run(stored, out, |c| {
            F::value_exact::<O::Prec>(code(c), mid, s, zi, z)
        });
    } else {
        map_run(stored, out, |c| F::value::<O::Prec>(code(c), mid, s, zi, z));
    }
}

/// `out[i] = value(stored[i])`.
#[inline(always)]
fn map_run<C: Code, O: OutElem>(
    stored: &[C],
    out: &mut [MaybeUninit<O>],
    value: impl Fn(i32) -> f32,
) {
    for (o, &c) in out.iter_mut().zip(stored) {
        *o = MaybeUninit::new(O::from_exact(value(c.int())));
    }
}

/// Values of a run whose codes each have their own block, in order.
#[inline(always)]
fn kept<C: Code, O: OutElem, F: Formula>(codes: &[C], k: Blocks, out: &mut [MaybeUninit<O>]) {
    let n = out.len().min(codes.len());
    let (s, zi, z) = (&k.scale[..n], &k.zp_int[..n], &k.zp[..n]);
    for ((((o, &c), &s), &zi), &z) in out.iter_mut().zip(codes).zip(s).zip(zi).zip(z) {
        *o = MaybeUninit::new(O::from_exact(F::value::<O::Prec>(c.int(), k.mid, s, zi, z)));
    }
}

/// Elements per call of [`kept`] when short runs are dequantized with
/// their blocks' constants replicated per element: 1 KiB of each constant,
/// in L1.
const WIDE: usize = 256;

/// Per-element constants for [`kept`], `WIDE` at a time.
struct Wide {
    scale: [f32; WIDE],
    zp_int: [i32; WIDE],
    zp: [f32; WIDE],
}

impl Wide {
    fn new() -> Self {
        Wide {
            scale: [0.0; WIDE],
            zp_int: [0; WIDE],
            zp: [0.0; WIDE],
        }
    }

    /// The first `n` constants as blocks, one per element.
    #[inline(always)]
    fn blocks(&self, n: usize, mid: f32) -> Blocks<'_> {
        Blocks {
            scale: &self.scale[..n],
            zp_int: &self.zp_int[..n],
            zp: &self.zp[..n],
            mid,
        }
    }

    /// Each of the first blocks of `k` over `len` consecutive elements,
    /// for the first `n` elements (`n` a multiple of `len`).
    #[inline(always)]
    fn replicate(&mut self, len: usize, k: Blocks, n: usize) {
        let runs = n / len;
        replicate_runs(len, &k.scale[..runs], &mut self.scale[..n]);
        replicate_runs(len, &k.zp_int[..runs], &mut self.zp_int[..n]);
        replicate_runs(len, &k.zp[..runs], &mut self.zp[..n]);
    }

    /// The first `len` blocks of `k` repeated over the first `n` elements
    /// (`n` a multiple of `len`).
    #[inline(always)]
    fn repeat(&mut self, len: usize, k: Blocks, n: usize) {
        for at in (0..n).step_by(len) {
            self.scale[at..at + len].copy_from_slice(&k.scale[..len]);
            self.zp_int[at..at + len].copy_from_slice(&k.zp_int[..len]);
            self.zp[at..at + len].copy_from_slice(&k.zp[..len]);
        }
    }
}

/// `dst[j] = src[j / L]`, `L` a constant so that the stores vectorize
/// instead of dividing per element.
#[inline(always)]
fn replicate<T: Copy, const L: usize>(src: &[T], dst: &mut [T]) {
    for (d, &v) in dst.chunks_exact_mut(L).zip(src) {
        d.fill(v);
    }
}

/// [`replicate`] for a run length known at run time (2 to 7).
#[inline(always)]
fn replicate_runs<T: Copy>(len: usize, src: &[T], dst: &mut [T]) {
    match len {
        2 => replicate::<T, 2>(src, dst),
        3 => replicate::<T, 3>(src, dst),
        4 => replicate::<T, 4>(src, dst),
        5 => replicate::<T, 5>(src, dst),
        6 => replicate::<T, 6>(src, dst),
        _ => replicate::<T, 7>(src, dst),
    }
}

/// Runs at most this long, consecutive in memory, are dequantized with
/// replicated constants ([`Wide`]).
const TINY_RUN: usize = 7;

/// Kept runs at most this long, consecutive in memory, are dequantized
/// `WIDE / len` runs at a time.
const NARROW_RUN: usize = WIDE / 4;

/// [`dequantize_reduced`]'s body for one batch.
#[inline(always)]
fn reduced_batch<C: Code, O: OutElem, F: Formula>(
    codes: &[C],
    batch: Batch,
    k: Blocks<'_>,
    range: (i64, i64),
    out: &mut [MaybeUninit<O>],
) {
    if batch.stride == batch.len && (2..=TINY_RUN).contains(&batch.len) {
        // Consecutive runs shorter than a vector: each block's constants
        // replicated over its elements, `WIDE / len` blocks at a time, then
        // dequantized as kept elements (vectorized across blocks).
        let (len, m) = (batch.len, WIDE / batch.len);
        let span = batch.span();
        let mut wide = Wide::new();
        let chunks = codes[..span]
            .chunks(m * len)
            .zip(out[..span].chunks_mut(m * len));
        for (g, (c, o)) in chunks.enumerate() {
            let n = c.len();
            wide.replicate(len, k.from(g * m), n);
            kept::<C, O, F>(c, wide.blocks(n, k.mid), o);
        }
        return;
    }
    for i in 0..batch.reps {
        let at = i * batch.stride..i * batch.stride + batch.len;
        run::<C, O, F>(&codes[at.clone()], k.from(i), range, &mut out[at]);
    }
}

kernel! {
    /// Values of a folded batch of reduced runs: for every copy `o` of
    /// `folded.batch`, run `i` (codes `codes[o * folded.outer_stride + i *
    /// stride..]`, values to `out` at the same offsets) with block `i` of
    /// `k`.
    pub(crate) fn dequantize_reduced<C: Code, O: OutElem, F: Formula>(
        codes: &[C],
        folded: Folded,
        k: Blocks<'_>,
        out: &mut [MaybeUninit<O>],
    ) {
        let batch = folded.batch;
        for o in 0..folded.outer {
            let at = o * folded.outer_stride;
            let span = at..at + batch.span();
            reduced_batch::<C, O, F>(&codes[span.clone()], batch, k, C::RANGE, &mut out[span]);
        }
    }
}

/// [`dequantize_kept`]'s body for one batch.
#[inline(always)]
fn kept_batch<C: Code, O: OutElem, F: Formula>(
    codes: &[C],
    batch: Batch,
    k: Blocks<'_>,
    out: &mut [MaybeUninit<O>],
) {
    let mut first = 0;
    if batch.stride == batch.len && batch.len <= NARROW_RUN {
        // Consecutive narrow runs (tall, narrow codes per column): the
        // constants repeated over `m` runs side by side dequantize `m * len`
        // elements per call.
        let (len, m) = (batch.len, WIDE / batch.len);
        let (w, groups) = (m * len, batch.reps / m);
        let mut wide = Wide::new();
        wide.repeat(len, k, w);
        let whole = groups * w;
        let chunks = codes[..whole]
            .chunks_exact(w)
            .zip(out[..whole].chunks_exact_mut(w));
        for (c, o) in chunks {
            kept::<C, O, F>(c, wide.blocks(w, k.mid), o);
        }
        first = groups * m;
    }
    // Four runs at a time where they do not overlap: each block's constants
    // are read once per four runs (a 4096-wide run's 48 KiB of them do not
    // stay in L1 with the runs streaming through).
    let (len, stride) = (batch.len, batch.stride);
    let mut i = first;
    if stride >= len {
        while i + 4 <= batch.reps {
            let o = four_runs_mut(out, i, stride, len);
            let c: [&[C]; 4] = std::array::from_fn(|r| &codes[(i + r) * stride..][..len]);
            kept4::<C, O, F>(c, k, o);
            i += 4;
        }
    }
    for i in i..batch.reps {
        let at = i * stride..i * stride + len;
        kept::<C, O, F>(&codes[at.clone()], k, &mut out[at]);
    }
}

/// [`kept`] of four runs of the same blocks, each block's constants read
/// once for the four.
#[inline(always)]
fn kept4<C: Code, O: OutElem, F: Formula>(
    codes: [&[C]; 4],
    k: Blocks,
    out: [&mut [MaybeUninit<O>]; 4],
) {
    let n = codes
        .iter()
        .map(|c| c.len())
        .fold(k.scale.len(), usize::min);
    let (s, zi, z) = (&k.scale[..n], &k.zp_int[..n], &k.zp[..n]);
    let c = codes.map(|c| &c[..n]);
    let [o0, o1, o2, o3] = out;
    let (o0, o1, o2, o3) = (&mut o0[..n], &mut o1[..n], &mut o2[..n], &mut o3[..n]);
    for j in 0..n {
        let value = |c: C| O::from_exact(F::value::<O::Prec>(c.int(), k.mid, s[j], zi[j], z[j]));
        o0[j] = MaybeUninit::new(value(c[0][j]));
        o1[j] = MaybeUninit::new(value(c[1][j]));
        o2[j] = MaybeUninit::new(value(c[2][j]));
        o3[j] = MaybeUninit::new(value(c[3][j]));
    }
}

kernel! {
    /// Values of a batch of kept runs: element `j` of every run with block
    /// `j` of `k`.
    pub(crate) fn dequantize_kept<C: Code, O: OutElem, F: Formula>(
        codes: &[C],
        batch: Batch,
        k: Blocks<'_>,
        out: &mut [MaybeUninit<O>],
    ) {
        kept_batch::<C, O, F>(codes, batch, k, out);
    }
}

/// One shard of packed codes: bit plane `width` bits wide, holding bits
/// `shift..shift + width` of every code (see `bitpacking.rs`).
#[derive(Clone, Copy)]
pub(crate) struct Plane<'a> {
    pub bytes: &'a [u8],
    pub width: u32,
    pub shift: u32,
}

/// Codes packed along the last dim, lines of `line` codes, as
/// `pack_uintx(codes, bits, -1)` stores them: in the plane of width `w`,
/// each line is cut into `8 / w` slices of `line * w / 8` codes, and slice
/// `i` lies in bits `w * i..` of the plane's bytes of that line.
pub(crate) struct Packed<'a> {
    pub planes: Vec<Plane<'a>>,
    pub line: usize,
}

/// Codes in a chunk of a packed run, unpacked before their values.
pub(crate) const CHUNK: usize = 1024;

impl Packed<'_> {
    /// The largest code.
    pub fn max_code(&self) -> i64 {
        self.planes
            .iter()
            .map(|p| ((1i64 << p.width) - 1) << p.shift)
            .sum()
    }

    /// When the codes are one plane and elements `start..start + len` lie
    /// in one slice of one line: the bytes that hold them, and the shift and
    /// mask that take each code out of its byte.
    #[inline(always)]
    fn one_slice(&self, start: usize, len: usize) -> Option<(&[u8], i32, i32)> {
        let [plane] = self.planes.as_slice() else {
            return None;
        };
        let row = start / self.line;
        let slice = self.line * plane.width as usize / 8;
        let (mut i, mut at) = (0, start - row * self.line);
        while at >= slice {
            at -= slice;
            i += 1;
        }
        if at + len > slice {
            return None;
        }
        let bytes = &plane.bytes[row * slice + at..row * slice + at + len];
        let mask = (1i32 << plane.width) - 1;
        Some((bytes, (plane.width * i) as i32, mask))
    }

    /// Codes of elements `start..start + out.len()` into `out`.
    #[inline(always)]
    fn unpack(&self, start: usize, out: &mut [u8]) {
        let (mut e, mut o) = (start, 0);
        while o < out.len() {
            let row = e / self.line;
            let j = e - row * self.line;
            let seg = (out.len() - o).min(self.line - j);
            for (p, plane) in self.planes.iter().enumerate() {
                let slice = self.line * plane.width as usize / 8;
                let mask = ((1u32 << plane.width) - 1) as u8;
                let bytes = &plane.bytes[row * slice..(row + 1) * slice];
                let (mut jj, mut oo) = (j, o);
                // The slice of `j` by subtraction: at most 8 slices, where
                // a division would cost more than unpacking a short run.
                let (mut i, mut at) = (0, j);
                while at >= slice {
                    at -= slice;
                    i += 1;
                }
                while jj < j + seg {
                    let m = (j + seg - jj).min(slice - at);
                    let shift = plane.width * i as u32;
                    let dst = &mut out[oo..oo + m];
                    let src = &bytes[at..at + m];
                    if p == 0 {
                        for (d, &b) in dst.iter_mut().zip(src) {
                            *d = ((b >> shift) & mask) << plane.shift;
                        }
                    } else {
                        for (d, &b) in dst.iter_mut().zip(src) {
                            *d |= ((b >> shift) & mask) << plane.shift;
                        }
                    }
                    jj += m;
                    oo += m;
                    (i, at) = (i + 1, 0);
                }
            }
            e += seg;
            o += seg;
        }
    }
}

kernel! {
    /// [`dequantize_reduced`] of packed codes (`batch.elem` counted in
    /// codes), unpacked a chunk at a time into `scratch` (at least
    /// [`CHUNK`] long).
    pub(crate) fn dequantize_reduced_packed<O: OutElem, F: Formula>(
        packed: &Packed<'_>,
        batch: Batch,
        k: Blocks<'_>,
        scratch: &mut [u8],
        out: &mut [MaybeUninit<O>],
    ) {
        let range = (0, packed.max_code());
        if batch.stride == batch.len && batch.len <= TINY_RUN {
            // Consecutive tiny runs: whole runs unpacked a chunk at a time,
            // then dequantized as plain codes.
            let len = batch.len;
            let (span, per) = (batch.span(), CHUNK / len * len);
            for c in (0..span).step_by(per) {
                let n = per.min(span - c);
                let codes = &mut scratch[..n];
                packed.unpack(batch.elem + c, codes);
                let sub = Batch {
                    reps: n / len,
                    ..batch
                };
                let o = &mut out[c..c + n];
                reduced_batch::<u8, O, F>(codes, sub, k.from(c / len), range, o);
            }
            return;
        }
        for i in 0..batch.reps {
            let first = i * batch.stride;
            let run_out = &mut out[first..first + batch.len];
            if let Some((bytes, shift, mask)) = packed.one_slice(batch.elem + first, batch.len) {
                // One plane, and the run inside one slice of it: its codes
                // are bits of consecutive bytes, read in place.
                let code = |b: i32| (b >> shift) & mask;
                run_of::<u8, O, F>(bytes, k.from(i), range, code, run_out);
                continue;
            }
            for c in (0..batch.len).step_by(CHUNK) {
                let n = CHUNK.min(batch.len - c);
                let codes = &mut scratch[..n];
                packed.unpack(batch.elem + first + c, codes);
                run::<u8, O, F>(codes, k.from(i), range, &mut run_out[c..c + n]);
            }
        }
    }
}

kernel! {
    /// [`dequantize_kept`] of packed codes, as [`dequantize_reduced_packed`].
    pub(crate) fn dequantize_kept_packed<O: OutElem, F: Formula>(
        packed: &Packed<'_>,
        batch: Batch,
        k: Blocks<'_>,
        scratch: &mut [u8],
        out: &mut [MaybeUninit<O>],
    ) {
        if batch.stride == batch.len && batch.len <= NARROW_RUN {
            // Consecutive narrow runs: whole runs unpacked a chunk at a
            // time, then dequantized as plain codes.
            let len = batch.len;
            let (span, per) = (batch.span(), CHUNK / len * len);
            for c in (0..span).step_by(per) {
                let n = per.min(span - c);
                let codes = &mut scratch[..n];
                packed.unpack(batch.elem + c, codes);
                let sub = Batch {
                    reps: n / len,
                    ..batch
                };
                kept_batch::<u8, O, F>(codes, sub, k, &mut out[c..c + n]);
            }
            return;
        }
        for i in 0..batch.reps {
            let first = i * batch.stride;
            for c in (0..batch.len).step_by(CHUNK) {
                let n = CHUNK.min(batch.len - c);
                let codes = &mut scratch[..n];
                packed.unpack(batch.elem + first + c, codes);
                kept::<u8, O, F>(codes, k.from(c), &mut out[first + c..first + c + n]);
            }
        }
    }
}

/// The dtypes of one dequantize computation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DeqKinds {
    pub domain: ZeroPointDomain,
    /// Int domain under torchao 0.18: `q.to(O) - zp.to(O)`.
    pub int_in_output: bool,
    pub output: Kind,
    /// Whether the zero point is of an integer dtype.
    pub int_zero_point: bool,
    /// `mid` as the float32 subtraction reads it.
    pub mid: f32,
}

/// Magnitudes from which a value converted to float16 may be infinite (the
/// overflow threshold is 65520; this bound is conservative).
const F16_LARGE: i64 = 65504;

kernel! {
    /// Whether no code in `codes` (the range of the code dtype) gives NaN in
    /// any of the `n` blocks of `k` (see the module docs): every scale
    /// finite, every Float zero point finite, and for float16 outputs no
    /// zero scale in a block where a converted value could overflow.
    pub(crate) fn nan_free<>(kinds: &DeqKinds, k: Blocks<'_>, n: usize, codes: (i64, i64)) -> bool {
        let (lo, hi) = codes;
        let half = kinds.output == Kind::Half;
        let float = kinds.domain == ZeroPointDomain::Float;
        let int_out = kinds.int_in_output;
        let mid = kinds.mid as f64;
        let float_large =
            (lo as f64 - mid).abs() >= F16_LARGE as f64 || (hi as f64 - mid).abs() >= F16_LARGE as f64;
        let mut bad = false;
        for ((&s, &zi), &z) in k.scale[..n].iter().zip(&k.zp_int[..n]).zip(&k.zp[..n]) {
            let large = if float {
                float_large
            } else if int_out {
                // `q.to(O)` or `q.to(O) - zp.to(O)` may overflow float16.
                (lo.abs().max(hi.abs()) as f64 + (z as f64).abs()) >= F16_LARGE as f64
            } else {
                let zi = zi as i64;
                (lo - zi <= -F16_LARGE) | (hi - zi >= F16_LARGE)
            };
            bad |= !s.is_finite() | ((float | int_out) & !z.is_finite()) | (half & (s == 0.0) & large);
        }
        !bad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpack_matches_the_planar_layout() {
        // uint6 of the torchao docstring: shards [0, 105, 151, 37], [39, 146].
        let (a, b) = ([0u8, 105, 151, 37], [39u8, 146]);
        let packed = Packed {
            planes: vec![
                Plane {
                    bytes: &a,
                    width: 4,
                    shift: 0,
                },
                Plane {
                    bytes: &b,
                    width: 2,
                    shift: 4,
                },
            ],
            line: 8,
        };
        assert_eq!(packed.max_code(), 63);
        let mut out = [0u8; 8];
        packed.unpack(0, &mut out);
        assert_eq!(out, [0x30, 0x29, 0x17, 0x5, 0x20, 0x16, 0x9, 0x22]);
        let mut part = [0u8; 3];
        packed.unpack(3, &mut part);
        assert_eq!(part, [0x5, 0x20, 0x16]);
    }

    #[test]
    fn int_formula_wraps_and_rounds() {
        use super::super::float::{Bf16, F32};
        assert_eq!(
            IntFormula::value::<F32>(i32::MIN, 0.0, 1.0, 1, 0.0),
            i32::MAX as f32
        );
        // 257 is not a bfloat16: it rounds to 256 before the product.
        assert_eq!(IntFormula::value::<Bf16>(257, 0.0, 1.0, 0, 0.0), 256.0);
    }
}
