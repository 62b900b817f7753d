//! AVX2 kernels written with intrinsics, where LLVM's auto-vectorization
//! of the plain loops falls well short: called only when
//! [`simd::level`](super::simd::level) is AVX2 or above, beside the
//! portable code that every other level runs. The AVX-512 versions of the
//! same reductions and codes are in [`avx512`](super::avx512).

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use half::bf16;

use super::codes8::{Blocks8, Codes8, MAGIC};

/// `2^16 + 1`: Veltkamp's splitting constant that rounds float32's 24
/// significant bits to bfloat16's 8 ([`Chunk8::round`]).
const SPLIT: f32 = 65_537.0;

/// Runs reduced together by [`bf16_runs16`]: one per `i16` lane.
pub(crate) const RUNS: usize = 16;

/// `ordered` of `minmax.rs`, 16 lanes at once: `b ^ ((b >> 15) & 0x7FFF)`
/// (its own inverse).
#[inline]
#[target_feature(enable = "avx2")]
fn ordered(b: __m256i) -> __m256i {
    let magnitude = _mm256_and_si256(_mm256_srai_epi16::<15>(b), _mm256_set1_epi16(0x7FFF));
    _mm256_xor_si256(b, magnitude)
}

/// The lane-wise `min` (or `max`) of two vectors of `i16`.
#[inline]
#[target_feature(enable = "avx2")]
fn pick<const MIN: bool>(u: __m256i, v: __m256i) -> __m256i {
    if MIN {
        _mm256_min_epi16(u, v)
    } else {
        _mm256_max_epi16(u, v)
    }
}

/// Which slot of [`butterfly`]'s input word `w` of its result holds: bits
/// 0 and 3 of `w` swapped. (Word `8l + 2g + p`, `l` the 128-bit lane, `g`
/// the 32-bit granule in it, `p` the word in that, holds slot
/// `8p + 2g + l`; the map is its own inverse.)
#[cfg(test)]
const fn word_slot(w: usize) -> usize {
    (w & 0b0110) | ((w & 1) << 3) | ((w >> 3) & 1)
}

/// Reduces 16 vectors of 16 partial results (one vector per slot) to one
/// vector holding each slot's result (see `word_slot`, in the tests, for where): four
/// levels, each pairing the vectors and halving the partials per slot
/// (128-, 64-, 32- and 16-bit granules), two shuffles and one min/max per
/// pair instead of a horizontal reduction per run.
#[inline]
#[target_feature(enable = "avx2")]
fn butterfly<const MIN: bool>(v: &[__m256i; RUNS]) -> __m256i {
    // Lane 0 of p[i] holds slot 2i's 8 partials, lane 1 slot 2i+1's.
    let mut p = [_mm256_setzero_si256(); 8];
    for (i, p) in p.iter_mut().enumerate() {
        let (a, b) = (v[2 * i], v[2 * i + 1]);
        let (u, w) = (
            _mm256_permute2x128_si256::<0x20>(a, b),
            _mm256_permute2x128_si256::<0x31>(a, b),
        );
        *p = pick::<MIN>(u, w);
    }
    // Lane l of q[i]: slot 4i+l's 4 partials, then slot 4i+2+l's.
    let mut q = [_mm256_setzero_si256(); 4];
    for (i, q) in q.iter_mut().enumerate() {
        let (a, b) = (p[2 * i], p[2 * i + 1]);
        *q = pick::<MIN>(_mm256_unpacklo_epi64(a, b), _mm256_unpackhi_epi64(a, b));
    }
    // Granule g of lane l of s[i]: slot 8i+2g+l's 2 partials.
    let mut s = [_mm256_setzero_si256(); 2];
    for (i, s) in s.iter_mut().enumerate() {
        let (a, b) = (
            _mm256_castsi256_ps(q[2 * i]),
            _mm256_castsi256_ps(q[2 * i + 1]),
        );
        let (u, w) = (
            _mm256_castps_si256(_mm256_shuffle_ps::<0x88>(a, b)),
            _mm256_castps_si256(_mm256_shuffle_ps::<0xDD>(a, b)),
        );
        *s = pick::<MIN>(u, w);
    }
    // Word p of granule g of lane l: slot 8p+2g+l.
    let (a, b) = (s[0], s[1]);
    let u = _mm256_blend_epi16::<0xAA>(a, _mm256_slli_epi32::<16>(b));
    let w = _mm256_blend_epi16::<0xAA>(_mm256_srli_epi32::<16>(a), b);
    pick::<MIN>(u, w)
}

/// Element `at` and the 15 after it, as `ordered` bits.
#[inline]
#[target_feature(enable = "avx2")]
fn load_ordered(x: &[bf16], at: usize) -> __m256i {
    let c = &x[at..at + 16];
    // SAFETY: `c` holds 16 bfloat16, the 32 bytes loaded.
    ordered(unsafe { _mm256_loadu_si256(c.as_ptr().cast()) })
}

/// The bfloat16 values whose `ordered` bits are `t`, a result of
/// [`butterfly`], as `f32` into `out`, slot `r`'s into `out[r]`.
///
/// Widened, words 0-7 are `l` and words 8-15 `h`; `out[0..8]` is
/// `[l0 h0 l2 h2 l4 h4 l6 h6]` and `out[8..16]` `[l1 h1 l3 h3 l5 h5 l7 h7]`
/// (see `word_slot`): each 128-bit lane of `l` and `h` reordered to
/// `[0 2 1 3]`, then their low and high pairs interleaved.
#[inline]
#[target_feature(enable = "avx2")]
fn store_values(t: __m256i, out: &mut [f32; RUNS]) {
    let b = ordered(t);
    let widen = |h: __m128i| {
        let f = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)));
        _mm256_permute_ps::<0xD8>(f)
    };
    let l = widen(_mm256_castsi256_si128(b));
    let h = widen(_mm256_extracti128_si256::<1>(b));
    let (first, second) = out.split_at_mut(8);
    // SAFETY: `first` and `second` hold 8 `f32` each, the 32 bytes stored.
    unsafe {
        _mm256_storeu_ps(first.as_mut_ptr(), _mm256_unpacklo_ps(l, h));
        _mm256_storeu_ps(second.as_mut_ptr(), _mm256_unpackhi_ps(l, h));
    }
}

/// Min and max of each of 16 consecutive runs of `len` bfloat16 elements
/// (`len` a positive multiple of 16), into `lo[r]`, `hi[r]`; `true` when a
/// run holds a NaN (the results are then unspecified). The elements are
/// reduced as `ordered` integers, 16 to a register, each run's registers
/// folded into one, and the 16 runs' registers reduced together
/// ([`butterfly`]).
#[target_feature(enable = "avx2")]
pub(crate) fn bf16_runs16(
    x: &[bf16],
    len: usize,
    lo: &mut [f32; RUNS],
    hi: &mut [f32; RUNS],
) -> bool {
    let x = &x[..RUNS * len];
    // Left uninitialized, as every entry is written below (see
    // `avx512::bf16_runs32`).
    let mut mins = [MaybeUninit::<__m256i>::uninit(); RUNS];
    let mut maxs = [MaybeUninit::<__m256i>::uninit(); RUNS];
    // Runs in memory order: a permuted order costs the prefetcher its
    // streams (per channel, 1.6x slower here).
    for slot in 0..RUNS {
        let start = slot * len;
        let first = load_ordered(x, start);
        let (mut mn, mut mx) = (first, first);
        for at in (start + 16..start + len).step_by(16) {
            let t = load_ordered(x, at);
            mn = _mm256_min_epi16(mn, t);
            mx = _mm256_max_epi16(mx, t);
        }
        mins[slot].write(mn);
        maxs[slot].write(mx);
    }
    // SAFETY: the loop wrote all `RUNS` entries of both arrays, and an array
    // of `MaybeUninit<T>` has the layout of the array of `T`.
    let (mins, maxs): ([__m256i; RUNS], [__m256i; RUNS]) = unsafe {
        (
            std::mem::transmute::<[MaybeUninit<__m256i>; RUNS], [__m256i; RUNS]>(mins),
            std::mem::transmute::<[MaybeUninit<__m256i>; RUNS], [__m256i; RUNS]>(maxs),
        )
    };
    let (mn, mx) = (butterfly::<true>(&mins), butterfly::<false>(&maxs));
    // Every NaN is ordered below -inf or above +inf.
    let neg_inf = _mm256_set1_epi16(0xFF80u16 as i16 ^ 0x7FFF);
    let below = _mm256_cmpgt_epi16(neg_inf, mn);
    let above = _mm256_cmpgt_epi16(mx, _mm256_set1_epi16(0x7F80));
    store_values(mn, lo);
    store_values(mx, hi);
    _mm256_movemask_epi8(_mm256_or_si256(below, above)) != 0
}

/// The `VPSHUFB` pattern that moves byte 0 of each 32-bit lane `k` (`k <
/// 4`) of each 128-bit lane to byte `first + step * k` of that lane and
/// zeroes the others.
const fn spread(first: usize, step: usize) -> [u8; 32] {
    let mut g = [0x80u8; 32];
    let mut k = 0;
    while k < 4 {
        g[first + step * k] = 4 * k as u8;
        g[16 + first + step * k] = 4 * k as u8;
        k += 1;
    }
    g
}

/// [`Gather`]'s patterns for [`bf16_codes8`]'s four vectors (the even and
/// odd elements of 16, then of the next 16): in each 128-bit lane, bytes
/// `0..8` are elements `0..8` of the first 16's lane, bytes `8..16` those
/// of the second's.
const BF16_SPREAD: [[u8; 32]; 4] = [spread(0, 2), spread(1, 2), spread(8, 2), spread(9, 2)];

/// [`Gather`]'s patterns for [`f32_codes8_blocks`]'s four vectors of 8
/// consecutive elements: vector `q`'s lane's 4 bytes go to bytes `4q..4q+4`.
const F32_SPREAD: [[u8; 32]; 4] = [spread(0, 1), spread(4, 1), spread(8, 1), spread(12, 1)];

/// The low bytes of `(v + MAGIC).to_bits()` of four vectors, in one vector
/// by four byte shuffles ([`spread`]).
#[derive(Clone, Copy)]
struct Gather {
    spread: [__m256i; 4],
    magic: __m256,
}

impl Gather {
    #[inline]
    #[target_feature(enable = "avx2")]
    fn new(spread: &[[u8; 32]; 4]) -> Self {
        // Opaque to LLVM: seeing the constant patterns, it rewrites the four
        // shuffles and three ORs into about twice the instructions.
        let spread = &std::hint::black_box(*spread);
        // SAFETY: each pattern holds 32 bytes, the 32 loaded.
        let load = |p: &[u8; 32]| unsafe { _mm256_loadu_si256(p.as_ptr().cast()) };
        Gather {
            spread: [
                load(&spread[0]),
                load(&spread[1]),
                load(&spread[2]),
                load(&spread[3]),
            ],
            magic: _mm256_set1_ps(MAGIC),
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn bytes(&self, v: [__m256; 4]) -> __m256i {
        let mut b = [_mm256_setzero_si256(); 4];
        for (b, (&v, &s)) in b.iter_mut().zip(v.iter().zip(&self.spread)) {
            *b = _mm256_shuffle_epi8(_mm256_castps_si256(_mm256_add_ps(v, self.magic)), s);
        }
        _mm256_or_si256(_mm256_or_si256(b[0], b[1]), _mm256_or_si256(b[2], b[3]))
    }
}

/// `clamp` of `quantize.rs` on a vector without NaN.
#[inline]
#[target_feature(enable = "avx2")]
fn clamp(v: __m256, (lo, hi): (__m256, __m256)) -> __m256 {
    _mm256_min_ps(_mm256_max_ps(v, lo), hi)
}

/// The constants that every chunk of [`bf16_codes8`] and
/// [`bf16_codes8_blocks`] uses, loaded once per call.
#[derive(Clone, Copy)]
struct Chunk8 {
    high: __m256i,
    split: __m256,
    gather: Gather,
}

impl Chunk8 {
    #[inline]
    #[target_feature(enable = "avx2")]
    fn new() -> Self {
        Chunk8 {
            high: _mm256_set1_epi32(0xFFFF_0000u32 as i32),
            split: _mm256_set1_ps(SPLIT),
            gather: Gather::new(&BF16_SPREAD),
        }
    }

    /// `round_bf16` of the products `p`, as libtorch rounds float32 to
    /// bfloat16 (to nearest, ties to even), by Veltkamp's splitting in
    /// three float operations where the integer rounding on the bits takes
    /// five: with `g = p * SPLIT`, `g + (p - g)` is `p` rounded to nearest
    /// even on bfloat16's 8 significant bits. That is `round_bf16(p)` for
    /// every normal `p` whose `g` is finite (checked against every normal
    /// float32 once, and in part by the test `split_rounding_is_round_bf16`);
    /// a subnormal `p` gives another value of magnitude at most 2^-126, whose
    /// code is the same (the one of 0, or a clamp bound of the same sign),
    /// and a `p` of magnitude 2^112 or more (where `g` overflows; from
    /// slightly below 2^112) or an infinite or NaN one gives NaN, which
    /// stops the kernel at its chunk.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn round(self, p: __m256) -> __m256 {
        let g = _mm256_mul_ps(p, self.split);
        _mm256_add_ps(g, _mm256_sub_ps(p, g))
    }

    /// The 32 codes of the 32 elements of `x` (see [`bf16_codes8`]),
    /// clamped to `bounds` when `CLAMP`; `None` when a rounded product is
    /// NaN (see [`round`](Chunk8::round)).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn codes<const CLAMP: bool>(
        self,
        x: &[bf16],
        a: __m256,
        bounds: (__m256, __m256),
        bias: __m256i,
    ) -> Option<__m256i> {
        let x = &x[..32];
        // SAFETY: `x` holds 32 bfloat16: two 32-byte loads.
        let (x0, x1) = unsafe {
            (
                _mm256_loadu_si256(x.as_ptr().cast()),
                _mm256_loadu_si256(x[16..].as_ptr().cast()),
            )
        };
        let even = |w: __m256i| _mm256_castsi256_ps(_mm256_slli_epi32::<16>(w));
        let odd = |w: __m256i| _mm256_castsi256_ps(_mm256_and_si256(w, self.high));
        let p = [
            _mm256_mul_ps(even(x0), a),
            _mm256_mul_ps(odd(x0), a),
            _mm256_mul_ps(even(x1), a),
            _mm256_mul_ps(odd(x1), a),
        ];
        let mut v = [_mm256_setzero_ps(); 4];
        for (v, &p) in v.iter_mut().zip(&p) {
            *v = self.round(p);
        }
        let nan = _mm256_or_ps(
            _mm256_cmp_ps::<_CMP_UNORD_Q>(v[0], v[1]),
            _mm256_cmp_ps::<_CMP_UNORD_Q>(v[2], v[3]),
        );
        if _mm256_movemask_ps(nan) != 0 {
            return None;
        }
        if CLAMP {
            for v in &mut v {
                *v = clamp(*v, bounds);
            }
        }
        // Bytes in 64-bit granules `[0..8, 16..24 | 8..16, 24..32]`.
        let bytes = _mm256_permute4x64_epi64::<0xD8>(self.gather.bytes(v));
        Some(_mm256_sub_epi8(bytes, bias))
    }
}

/// `avx512::bf16_codes8` on AVX2: the same codes (the Int-domain fast path
/// of `quantize.rs` for bfloat16 input and a bfloat16 product, 8-bit
/// codes) of the longest prefix of whole 32-element chunks whose products
/// are finite and of magnitude below 2^111 (the AVX-512 build stops only at
/// NaN; the caller's portable formula takes the chunk either way); returns
/// its length.
///
/// Per 32 elements: the even and odd elements of each 16 are widened in
/// place (a shift and a mask of the 32-bit lanes), multiplied, rounded to
/// bfloat16 by Veltkamp's splitting (where the AVX-512 build has an
/// instruction), checked for NaN (one compare per two vectors), clamped,
/// offset by `MAGIC`, and the codes' low bytes gathered into element order
/// by four byte shuffles and one 64-bit permute.
#[target_feature(enable = "avx2")]
pub(crate) fn bf16_codes8<C: Copy>(x: &[bf16], out: &mut [MaybeUninit<C>], k: Codes8) -> usize {
    assert_eq!(std::mem::size_of::<C>(), 1);
    let n = x.len().min(out.len()) / 32 * 32;
    let c = Chunk8::new();
    let a = _mm256_set1_ps(k.a);
    let bias = _mm256_set1_epi8(k.bias as i8);
    let (lo, hi) = k.bounds.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
    let bounds = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
    let mut at = 0;
    while at < n {
        let codes = if k.bounds.is_some() {
            c.codes::<true>(&x[at..at + 32], a, bounds, bias)
        } else {
            c.codes::<false>(&x[at..at + 32], a, bounds, bias)
        };
        let Some(codes) = codes else {
            break;
        };
        // SAFETY: `at + 32 <= n <= out.len()`, one byte per code: the 32
        // bytes stored.
        unsafe { _mm256_storeu_si256(out[at..at + 32].as_mut_ptr().cast(), codes) };
        at += 32;
    }
    at
}

/// `avx512::bf16_codes8_blocks` on AVX2: [`bf16_codes8`] over consecutive
/// blocks of `len` elements (a positive multiple of 32), block `i` with the
/// constants at `i` of `k`, always clamped; returns the index of the first
/// block where [`bf16_codes8`] would stop (the number of blocks when none
/// does), whose codes and those after it are not written.
#[target_feature(enable = "avx2")]
pub(crate) fn bf16_codes8_blocks<C: Copy>(
    x: &[bf16],
    out: &mut [MaybeUninit<C>],
    len: usize,
    k: &Blocks8,
) -> usize {
    let blocks = k.blocks::<C>(x.len().min(out.len()), len);
    let c = Chunk8::new();
    for i in 0..blocks {
        let a = _mm256_set1_ps(k.a[i]);
        let bounds = (_mm256_set1_ps(k.lo[i]), _mm256_set1_ps(k.hi[i]));
        let bias = _mm256_set1_epi8(k.bias[i] as i8);
        for at in (i * len..(i + 1) * len).step_by(32) {
            let Some(codes) = c.codes::<true>(&x[at..at + 32], a, bounds, bias) else {
                return i;
            };
            // SAFETY: `at + 32 <= blocks * len <= out.len()`, one byte per
            // code: the 32 bytes stored.
            unsafe { _mm256_storeu_si256(out[at..at + 32].as_mut_ptr().cast(), codes) };
        }
    }
    blocks
}

/// `avx512::f32_codes8_blocks` on AVX2: for float32 input and a float32
/// product, with `p = x * a` clamped to `lo..=hi`, the code is the low byte
/// of `(p + MAGIC).to_bits() - bias`. 32 elements at a time: four vectors
/// multiplied, checked for NaN, clamped and offset, their codes' low bytes
/// gathered by four byte shuffles and one 32-bit permute. Returns the index
/// of the first block whose products hold a NaN (the number of blocks when
/// none does), whose codes and those after it are not written.
#[target_feature(enable = "avx2")]
pub(crate) fn f32_codes8_blocks<C: Copy>(
    x: &[f32],
    out: &mut [MaybeUninit<C>],
    len: usize,
    k: &Blocks8,
) -> usize {
    let blocks = k.blocks::<C>(x.len().min(out.len()), len);
    let gather = Gather::new(&F32_SPREAD);
    // Dwords `[0..4, 8..12, 16..20, 24..28 | 4..8, 12..16, ..]` into order.
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for i in 0..blocks {
        let a = _mm256_set1_ps(k.a[i]);
        let bounds = (_mm256_set1_ps(k.lo[i]), _mm256_set1_ps(k.hi[i]));
        let bias = _mm256_set1_epi8(k.bias[i] as i8);
        for at in (i * len..(i + 1) * len).step_by(32) {
            let c = &x[at..at + 32];
            let mut p = [_mm256_setzero_ps(); 4];
            for (q, p) in p.iter_mut().enumerate() {
                // SAFETY: `c` holds 32 `f32`: 8 loaded at `8q`, `q < 4`.
                *p = _mm256_mul_ps(unsafe { _mm256_loadu_ps(c[8 * q..].as_ptr()) }, a);
            }
            let nan = _mm256_or_ps(
                _mm256_cmp_ps::<_CMP_UNORD_Q>(p[0], p[1]),
                _mm256_cmp_ps::<_CMP_UNORD_Q>(p[2], p[3]),
            );
            if _mm256_movemask_ps(nan) != 0 {
                return i;
            }
            for p in &mut p {
                *p = clamp(*p, bounds);
            }
            let bytes = _mm256_permutevar8x32_epi32(gather.bytes(p), order);
            let codes = _mm256_sub_epi8(bytes, bias);
            // SAFETY: `at + 32 <= blocks * len <= out.len()`, one byte per
            // code: the 32 bytes stored.
            unsafe { _mm256_storeu_si256(out[at..at + 32].as_mut_ptr().cast(), codes) };
        }
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::super::float::round_bf16;
    use super::*;

    /// [`Chunk8::round`] of each of `v`, 8 at a time.
    fn split_round(v: &[f32]) -> Vec<f32> {
        // SAFETY: the caller checked the CPU has AVX2.
        let c = unsafe { Chunk8::new() };
        v.chunks(8)
            .flat_map(|v| {
                let mut lanes = [0.0f32; 8];
                lanes[..v.len()].copy_from_slice(v);
                // SAFETY: the caller checked the CPU has AVX2; 8 lanes are
                // loaded from and stored to `lanes`.
                unsafe {
                    let r = c.round(_mm256_loadu_ps(lanes.as_ptr()));
                    _mm256_storeu_ps(lanes.as_mut_ptr(), r);
                }
                lanes[..v.len()].to_vec()
            })
            .collect()
    }

    #[test]
    fn split_rounding_is_round_bf16() {
        if !is_x86_feature_detected!("avx2") {
            return;
        }
        // Every bfloat16 pattern with the low halves that make ties (both
        // parities), their neighbours and the ends, and a sample of all
        // float32 patterns; both signs.
        let mut bits: Vec<u32> = (0..=u16::MAX as u32)
            .flat_map(|h| [0u32, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF].map(|l| (h << 16) | l))
            .collect();
        bits.extend((0..=u32::MAX).step_by(4099));
        let v: Vec<f32> = bits.into_iter().map(f32::from_bits).collect();
        let r = split_round(&v);
        let huge = 2f32.powi(111);
        for (&v, &r) in v.iter().zip(&r) {
            let want = round_bf16(v);
            if v.is_nan() || v.abs() >= 2.0 * huge {
                // NaN in, or `g` overflows: NaN, which stops the kernel.
                assert!(r.is_nan(), "{:#010x} gives {r:e}", v.to_bits());
            } else if v.abs() >= huge {
                // Near the overflow: rounded, or NaN.
                assert!(r.is_nan() || r == want, "{:#010x} gives {r:e}", v.to_bits());
            } else if v.abs() < f32::MIN_POSITIVE {
                // Subnormal: a value whose code is the one of 0.
                assert!(r.abs() <= f32::MIN_POSITIVE, "{:#010x}", v.to_bits());
            } else {
                assert_eq!(r.to_bits(), want.to_bits(), "{:#010x}", v.to_bits());
            }
        }
        // Just below the overflow the splitting still rounds.
        let big = f32::from_bits(huge.to_bits() - 0x0001_0000);
        assert_eq!(split_round(&[big, -big]), [big, -big]);
    }

    #[test]
    fn slots_are_a_permutation() {
        let mut seen = [false; RUNS];
        for i in 0..RUNS {
            seen[word_slot(i)] = true;
            assert_eq!(word_slot(word_slot(i)), i);
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn butterfly_reduces_each_run() {
        if !is_x86_feature_detected!("avx2") {
            return;
        }
        for len in [16usize, 32, 48, 128] {
            let x: Vec<bf16> = (0..RUNS * len)
                .map(|i| bf16::from_f32(((i * 7919) % 1013) as f32 - 500.0))
                .collect();
            let (mut lo, mut hi) = ([0.0f32; RUNS], [0.0f32; RUNS]);
            // SAFETY: the CPU has AVX2 (checked above).
            let nan = unsafe { bf16_runs16(&x, len, &mut lo, &mut hi) };
            assert!(!nan);
            for (r, run) in x.chunks(len).enumerate() {
                let want_lo = run.iter().map(|v| v.to_f32()).fold(f32::INFINITY, f32::min);
                let want_hi = run
                    .iter()
                    .map(|v| v.to_f32())
                    .fold(f32::NEG_INFINITY, f32::max);
                assert_eq!((lo[r], hi[r]), (want_lo, want_hi), "len {len} run {r}");
            }
            for (at, nan_bits) in [(5usize, 0x7FC0u16), (len * 15 + 3, 0xFFC1)] {
                let mut y = x.clone();
                y[at] = bf16::from_bits(nan_bits);
                // SAFETY: as above.
                assert!(unsafe { bf16_runs16(&y, len, &mut lo, &mut hi) });
            }
            // Infinities and signed zeros are values, not NaN.
            let mut y = x.clone();
            y[len] = bf16::INFINITY;
            y[len + 1] = bf16::NEG_INFINITY;
            y[2 * len] = bf16::NEG_ZERO;
            // SAFETY: as above.
            assert!(!unsafe { bf16_runs16(&y, len, &mut lo, &mut hi) });
            assert_eq!((lo[1], hi[1]), (f32::NEG_INFINITY, f32::INFINITY));
        }
    }
}
