//! AVX-512 kernels written with intrinsics, where LLVM's auto-vectorization
//! of the plain loops falls well short: called only when
//! [`simd::level`](super::simd::level) is AVX-512, beside the portable code
//! that every other level runs.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;
use std::sync::OnceLock;

use half::bf16;

use super::codes8::{Blocks8, Codes8, MAGIC};

/// Runs reduced together by [`bf16_runs32`]: one per `i16` lane.
pub(crate) const RUNS: usize = 32;

/// After the butterfly of [`bf16_runs32`], word `PERM[r]` holds run `r`'s
/// result (the order falls out of the shuffles; `tests` checks it).
const PERM: [i16; 32] = [
    0, 8, 16, 24, 2, 10, 18, 26, 4, 12, 20, 28, 6, 14, 22, 30, 1, 9, 17, 25, 3, 11, 19, 27, 5, 13,
    21, 29, 7, 15, 23, 31,
];

/// `ordered` of `minmax.rs`, 32 lanes at once: `b ^ ((b >> 15) & 0x7FFF)`
/// (its own inverse).
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn ordered(b: __m512i) -> __m512i {
    // 0x78: a ^ (b & c).
    _mm512_ternarylogic_epi32::<0x78>(b, _mm512_srai_epi16::<15>(b), _mm512_set1_epi16(0x7FFF))
}

/// The lane-wise `min` (or `max`) of `u` and `v` as `LANE`-bit signed
/// integers (16 or 32): one halving step of a butterfly.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn pick<const MIN: bool, const LANE: u32>(u: __m512i, v: __m512i) -> __m512i {
    match (MIN, LANE) {
        (true, 16) => _mm512_min_epi16(u, v),
        (false, 16) => _mm512_max_epi16(u, v),
        (true, _) => _mm512_min_epi32(u, v),
        (false, _) => _mm512_max_epi32(u, v),
    }
}

/// The two shuffles that pair the `GRANULE`-bit granules (256, 128, 64 or
/// 32) of `a` and `b`: the even granules of both, and the odd ones.
#[inline]
#[target_feature(enable = "avx512f")]
fn granules<const GRANULE: u32>(a: __m512i, b: __m512i) -> (__m512i, __m512i) {
    match GRANULE {
        256 => (
            _mm512_shuffle_i64x2::<0x44>(a, b),
            _mm512_shuffle_i64x2::<0xEE>(a, b),
        ),
        128 => (
            _mm512_shuffle_i64x2::<0x88>(a, b),
            _mm512_shuffle_i64x2::<0xDD>(a, b),
        ),
        64 => (_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b)),
        _ => {
            let (a, b) = (_mm512_castsi512_ps(a), _mm512_castsi512_ps(b));
            (
                _mm512_castps_si512(_mm512_shuffle_ps::<0x88>(a, b)),
                _mm512_castps_si512(_mm512_shuffle_ps::<0xDD>(a, b)),
            )
        }
    }
}

/// One level of a butterfly: the `N` pairs of vectors of `v` each halved
/// into one, by their `GRANULE`-bit granules and `LANE`-bit min or max.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn level<const MIN: bool, const LANE: u32, const GRANULE: u32, const N: usize>(
    v: &[__m512i],
) -> [__m512i; N] {
    std::array::from_fn(|i| {
        let (u, w) = granules::<GRANULE>(v[2 * i], v[2 * i + 1]);
        pick::<MIN, LANE>(u, w)
    })
}

/// Reduces 32 vectors of 32 partial results (one vector per run) to one
/// vector holding each run's result, in the order [`PERM`] undoes: five
/// levels, each pairing the vectors and halving the partials per run
/// (256-, 128-, 64-, 32- and 16-bit granules), two shuffles and one
/// min/max per pair instead of a horizontal reduction per run.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn butterfly<const MIN: bool>(v: &[__m512i; RUNS]) -> __m512i {
    let p: [_; 16] = level::<MIN, 16, 256, 16>(v);
    let q: [_; 8] = level::<MIN, 16, 128, 8>(&p);
    let r: [_; 4] = level::<MIN, 16, 64, 4>(&q);
    let [a, b] = level::<MIN, 16, 32, 2>(&r);
    let odd = 0xAAAA_AAAA;
    let u = _mm512_mask_blend_epi16(odd, a, _mm512_slli_epi32::<16>(b));
    let w = _mm512_mask_blend_epi16(odd, _mm512_srli_epi32::<16>(a), b);
    let t = pick::<MIN, 16>(u, w);
    // SAFETY: `PERM` holds 32 `i16`, the 64 bytes loaded.
    let perm = unsafe { _mm512_loadu_si512(PERM.as_ptr().cast()) };
    _mm512_permutexvar_epi16(perm, t)
}

/// Element `at` and the 31 after it, as `ordered` bits.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn load_ordered(x: &[bf16], at: usize) -> __m512i {
    let c = &x[at..at + 32];
    // SAFETY: `c` holds 32 bfloat16, the 64 bytes loaded.
    ordered(unsafe { _mm512_loadu_si512(c.as_ptr().cast()) })
}

/// The bfloat16 values whose `ordered` bits are `t`, as `f32`, into `out`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn store_values(t: __m512i, out: &mut [f32; RUNS]) {
    let b = ordered(t);
    let halves = [_mm512_castsi512_si256(b), _mm512_extracti64x4_epi64::<1>(b)];
    for (h, o) in halves.into_iter().zip(out.chunks_exact_mut(16)) {
        let f = _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h));
        // SAFETY: `o` holds 16 `f32`, the 64 bytes stored.
        unsafe { _mm512_storeu_si512(o.as_mut_ptr().cast(), f) };
    }
}

/// Min and max of each of 32 consecutive runs of `len` bfloat16 elements
/// (`len` a positive multiple of 32), into `lo[r]`, `hi[r]`; `true` when a
/// run holds a NaN (the results are then unspecified). The elements are
/// reduced as `ordered` integers, 32 to a register, each run's registers
/// folded into one, and the 32 runs' registers reduced together
/// ([`butterfly`]).
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) fn bf16_runs32(
    x: &[bf16],
    len: usize,
    lo: &mut [f32; RUNS],
    hi: &mut [f32; RUNS],
) -> bool {
    let x = &x[..RUNS * len];
    // Left uninitialized, as every entry is written below: zeroing them
    // (4 KiB a call, a `memset` LLVM keeps) cost a third of the reads.
    let mut mins = [MaybeUninit::<__m512i>::uninit(); RUNS];
    let mut maxs = [MaybeUninit::<__m512i>::uninit(); RUNS];
    for r in 0..RUNS {
        let start = r * len;
        let first = load_ordered(x, start);
        let (mut mn, mut mx) = (first, first);
        for at in (start + 32..start + len).step_by(32) {
            let t = load_ordered(x, at);
            mn = _mm512_min_epi16(mn, t);
            mx = _mm512_max_epi16(mx, t);
        }
        mins[r].write(mn);
        maxs[r].write(mx);
    }
    // SAFETY: the loop wrote all `RUNS` entries of both arrays, and an array
    // of `MaybeUninit<T>` has the layout of the array of `T`.
    let (mins, maxs): ([__m512i; RUNS], [__m512i; RUNS]) = unsafe {
        (
            std::mem::transmute::<[MaybeUninit<__m512i>; RUNS], [__m512i; RUNS]>(mins),
            std::mem::transmute::<[MaybeUninit<__m512i>; RUNS], [__m512i; RUNS]>(maxs),
        )
    };
    let (mn, mx) = (butterfly::<true>(&mins), butterfly::<false>(&maxs));
    // Every NaN is ordered below -inf or above +inf.
    let below = _mm512_cmplt_epi16_mask(mn, _mm512_set1_epi16(0xFF80u16 as i16 ^ 0x7FFF));
    let above = _mm512_cmpgt_epi16_mask(mx, _mm512_set1_epi16(0x7F80));
    store_values(mn, lo);
    store_values(mx, hi);
    (below | above) != 0
}

/// Runs reduced together by [`f32_runs16`]: one per `i32` lane.
pub(crate) const RUNS_F32: usize = 16;

/// After the butterfly of [`f32_runs16`], lane `PERM_F32[r]` holds run `r`'s
/// result: the last halving leaves run `g + 4k` in lane `4g + k` (`tests`
/// checks it).
const PERM_F32: [i32; 16] = [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15];

/// The float32 counterpart of [`ordered`]: `b ^ ((b >> 31) & 0x7FFF_FFFF)`
/// on each `i32` lane, which puts the bits of floats in the order of their
/// values under signed integer compares (`-0.0` just below `+0.0`, NaNs
/// beyond the infinities); its own inverse.
#[inline]
#[target_feature(enable = "avx512f")]
fn ordered32(b: __m512i) -> __m512i {
    // 0x78: a ^ (b & c).
    _mm512_ternarylogic_epi32::<0x78>(
        b,
        _mm512_srai_epi32::<31>(b),
        _mm512_set1_epi32(0x7FFF_FFFF),
    )
}

/// Elements `at..at + 16` as [`ordered32`] bits.
#[inline]
#[target_feature(enable = "avx512f")]
fn load_ordered32(x: &[f32], at: usize) -> __m512i {
    let c = &x[at..at + 16];
    // SAFETY: `c` holds 16 `f32`, the 64 bytes loaded.
    ordered32(unsafe { _mm512_loadu_si512(c.as_ptr().cast()) })
}

/// [`butterfly`] for 16 vectors of 16 `i32` partials: four halvings (256-,
/// 128-, 64- and 32-bit granules), then one permute into run order.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn butterfly16<const MIN: bool>(v: &[__m512i; RUNS_F32]) -> __m512i {
    let p: [_; 8] = level::<MIN, 32, 256, 8>(v);
    let q: [_; 4] = level::<MIN, 32, 128, 4>(&p);
    let r: [_; 2] = level::<MIN, 32, 64, 2>(&q);
    let [s] = level::<MIN, 32, 32, 1>(&r);
    // SAFETY: `PERM_F32` holds 16 `i32`, the 64 bytes loaded.
    let perm = unsafe { _mm512_loadu_si512(PERM_F32.as_ptr().cast()) };
    _mm512_permutexvar_epi32(perm, s)
}

/// Min and max of each of 16 consecutive runs of `len` float32 elements
/// (`len` a positive multiple of 16), into `lo[r]`, `hi[r]`; `true` when a
/// run holds a NaN (the results are then unspecified). As
/// [`bf16_runs32`]: the elements are compared as [`ordered32`] integers,
/// so that a NaN shows in the extremes instead of needing a compare of
/// its own per vector, each run's vectors folded into one, and the 16
/// runs' vectors reduced together ([`butterfly16`]).
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) fn f32_runs16(
    x: &[f32],
    len: usize,
    lo: &mut [f32; RUNS_F32],
    hi: &mut [f32; RUNS_F32],
) -> bool {
    let x = &x[..RUNS_F32 * len];
    let runs: [(__m512i, __m512i); RUNS_F32] = std::array::from_fn(|r| {
        let start = r * len;
        let first = load_ordered32(x, start);
        let (mut mn, mut mx) = (first, first);
        for at in (start + 16..start + len).step_by(16) {
            let t = load_ordered32(x, at);
            mn = _mm512_min_epi32(mn, t);
            mx = _mm512_max_epi32(mx, t);
        }
        (mn, mx)
    });
    let mins = runs.map(|(mn, _)| mn);
    let maxs = runs.map(|(_, mx)| mx);
    let (mn, mx) = (butterfly16::<true>(&mins), butterfly16::<false>(&maxs));
    // Every NaN is ordered below -inf or above +inf.
    let below = _mm512_cmplt_epi32_mask(mn, _mm512_set1_epi32(0xFF80_0000u32 as i32 ^ 0x7FFF_FFFF));
    let above = _mm512_cmpgt_epi32_mask(mx, _mm512_set1_epi32(0x7F80_0000));
    // SAFETY: `lo` and `hi` hold 16 `f32` each, the 64 bytes stored.
    unsafe {
        _mm512_storeu_si512(lo.as_mut_ptr().cast(), ordered32(mn));
        _mm512_storeu_si512(hi.as_mut_ptr().cast(), ordered32(mx));
    }
    (below | above) != 0
}

/// Whether the CPU runs [`bf16_codes8`] (AVX-512 BF16 and VBMI besides
/// the F and BW of [`simd::level`](super::simd::level)'s AVX-512).
pub(crate) fn bf16_codes_available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        super::simd::level() == super::simd::Level::Avx512
            && is_x86_feature_detected!("avx512bf16")
            && is_x86_feature_detected!("avx512vbmi")
    })
}

/// The `VPERMT2B` indices of [`bf16_codes8`]: output byte `e = 4j + r`
/// (`j < 8`) is the low byte of lane `j` (`r` even) or `8 + j` (`r` odd)
/// of the codes of the even (`r < 2`, bytes 0..64) or odd (`r >= 2`, bytes
/// 64..128) lanes; the upper 32 bytes are not stored.
const GATHER: [u8; 64] = {
    let mut g = [0u8; 64];
    let mut e = 0;
    while e < 64 {
        let (j, r) = (e / 4 % 8, e % 4);
        g[e] = (r * 32 + 4 * j) as u8;
        e += 1;
    }
    g
};

/// Codes of the Int-domain fast path of `quantize.rs` for bfloat16 input
/// and a bfloat16 product, 8-bit codes: with `p = x * a` (exact in `f32`),
/// `v = round_bf16(p)`, clamped to `bounds`, the code is the low byte of
/// `(v + MAGIC).to_bits() - bias`. Writes `out[..n]` for the longest prefix
/// of whole 32-element chunks whose products hold no NaN and returns `n`:
/// the caller's portable loop does the rest.
///
/// Per 32 elements: the even and odd elements are widened in place (a
/// shift and a mask of the 32-bit lanes), multiplied, and rounded to
/// bfloat16 together by `VCVTNE2PS2BF16` (round to nearest even, like
/// libtorch's conversion; it reads subnormal products as zero, where the
/// exact rounding gives a value below 2^-126 whose code is the same: both
/// round to the integer 0 and take the offset's code; NaN chunks are left
/// to the caller), widened back the same way, clamped, offset by `MAGIC`,
/// and the codes' low bytes gathered into element order by one `VPERMT2B`.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512bf16")]
pub(crate) fn bf16_codes8<C: Copy>(x: &[bf16], out: &mut [MaybeUninit<C>], k: Codes8) -> usize {
    assert_eq!(std::mem::size_of::<C>(), 1);
    let n = x.len().min(out.len()) / 32 * 32;
    let c = Chunk8::new();
    let a = _mm512_set1_ps(k.a);
    let bias = _mm256_set1_epi8(k.bias as i8);
    let (lo, hi) = k.bounds.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
    let (lo, hi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
    let mut at = 0;
    while at < n {
        let codes = if k.bounds.is_some() {
            c.codes::<true>(&x[at..at + 32], a, (lo, hi), bias)
        } else {
            c.codes::<false>(&x[at..at + 32], a, (lo, hi), bias)
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

/// [`bf16_codes8`] over consecutive blocks of `len` elements (`len` a
/// positive multiple of 32), block `i` with the constants at `i` of `k`,
/// always clamped: one call for a row of small blocks (groups of 32 to 256)
/// instead of one per block, each block's constants broadcast from memory.
/// Writes the codes of the blocks before the first one whose products hold
/// a NaN and returns that block's index (the number of blocks when none
/// does): the caller quantizes that block with the portable formula and
/// calls again for the rest.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512bf16")]
pub(crate) fn bf16_codes8_blocks<C: Copy>(
    x: &[bf16],
    out: &mut [MaybeUninit<C>],
    len: usize,
    k: &Blocks8,
) -> usize {
    let blocks = k.blocks::<C>(x.len().min(out.len()), len);
    let c = Chunk8::new();
    for i in 0..blocks {
        let a = _mm512_set1_ps(k.a[i]);
        let bounds = (_mm512_set1_ps(k.lo[i]), _mm512_set1_ps(k.hi[i]));
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

/// Whether the CPU runs [`f32_codes8_blocks`] (AVX-512 VBMI besides the F
/// and BW of [`simd::level`](super::simd::level)'s AVX-512).
pub(crate) fn f32_codes_available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        super::simd::level() == super::simd::Level::Avx512 && is_x86_feature_detected!("avx512vbmi")
    })
}

/// The `VPERMT2B` indices of [`f32_codes8_blocks`]: output byte `e` is the
/// low byte of lane `e` of the pair of vectors (16 lanes each).
const GATHER_F32: [u8; 64] = {
    let mut g = [0u8; 64];
    let mut e = 0;
    while e < 32 {
        g[e] = (4 * e) as u8;
        e += 1;
    }
    g
};

/// [`bf16_codes8_blocks`] for float32 input and a float32 product, the
/// Int-domain fast path of `quantize.rs`: with `p = x * a` (rounded to
/// `f32`, as libtorch computes it), clamped to `lo..=hi`, the code is the
/// low byte of `(p + MAGIC).to_bits() - bias`. 32 elements at a time: two
/// vectors multiplied, clamped and offset, and one `VPERMT2B` gathering
/// the codes' low bytes. Returns the index of the first block whose
/// products hold a NaN (the number of blocks when none does), whose codes
/// and those after it are not written.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
pub(crate) fn f32_codes8_blocks<C: Copy>(
    x: &[f32],
    out: &mut [MaybeUninit<C>],
    len: usize,
    k: &Blocks8,
) -> usize {
    let blocks = k.blocks::<C>(x.len().min(out.len()), len);
    let magic = _mm512_set1_ps(MAGIC);
    // SAFETY: `GATHER_F32` holds 64 bytes, the 64 loaded.
    let gather = unsafe { _mm512_loadu_si512(GATHER_F32.as_ptr().cast()) };
    for i in 0..blocks {
        let a = _mm512_set1_ps(k.a[i]);
        let (lo, hi) = (_mm512_set1_ps(k.lo[i]), _mm512_set1_ps(k.hi[i]));
        let bias = _mm256_set1_epi8(k.bias[i] as i8);
        for at in (i * len..(i + 1) * len).step_by(32) {
            let c = &x[at..at + 32];
            // SAFETY: `c` holds 32 `f32`: two 64-byte loads.
            let (x0, x1) = unsafe {
                (
                    _mm512_loadu_ps(c.as_ptr()),
                    _mm512_loadu_ps(c[16..].as_ptr()),
                )
            };
            let (p0, p1) = (_mm512_mul_ps(x0, a), _mm512_mul_ps(x1, a));
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(p0, p0)
                | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(p1, p1);
            if nan != 0 {
                return i;
            }
            let v0 = _mm512_min_ps(_mm512_max_ps(p0, lo), hi);
            let v1 = _mm512_min_ps(_mm512_max_ps(p1, lo), hi);
            let m0 = _mm512_castps_si512(_mm512_add_ps(v0, magic));
            let m1 = _mm512_castps_si512(_mm512_add_ps(v1, magic));
            let bytes = _mm512_permutex2var_epi8(m0, gather, m1);
            let codes = _mm256_sub_epi8(_mm512_castsi512_si256(bytes), bias);
            // SAFETY: `at + 32 <= blocks * len <= out.len()`, one byte per
            // code: the 32 bytes stored.
            unsafe { _mm256_storeu_si256(out[at..at + 32].as_mut_ptr().cast(), codes) };
        }
    }
    blocks
}

/// The constants that every chunk of [`bf16_codes8`] and
/// [`bf16_codes8_blocks`] uses, loaded once per call.
#[derive(Clone, Copy)]
struct Chunk8 {
    high: __m512i,
    magic: __m512,
    gather: __m512i,
}

impl Chunk8 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn new() -> Self {
        Chunk8 {
            high: _mm512_set1_epi32(0xFFFF_0000u32 as i32),
            magic: _mm512_set1_ps(MAGIC),
            // SAFETY: `GATHER` holds 64 bytes, the 64 loaded.
            gather: unsafe { _mm512_loadu_si512(GATHER.as_ptr().cast()) },
        }
    }

    /// The 32 codes of the 32 elements of `x` (see [`bf16_codes8`]),
    /// clamped to `bounds` when `CLAMP`; `None` when a product is NaN.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512bf16")]
    fn codes<const CLAMP: bool>(
        self,
        x: &[bf16],
        a: __m512,
        (lo, hi): (__m512, __m512),
        bias: __m256i,
    ) -> Option<__m256i> {
        let x = &x[..32];
        // SAFETY: `x` holds 32 bfloat16: 64 bytes loaded.
        let xv = unsafe { _mm512_loadu_si512(x.as_ptr().cast()) };
        let even = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(xv));
        let odd = _mm512_castsi512_ps(_mm512_and_si512(xv, self.high));
        let (pe, po) = (_mm512_mul_ps(even, a), _mm512_mul_ps(odd, a));
        let nan =
            _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(pe, pe) | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(po, po);
        if nan != 0 {
            return None;
        }
        // SAFETY: both are 64-byte vectors; `__m512bh` holds 32 bfloat16.
        let w: __m512i = unsafe { std::mem::transmute(_mm512_cvtne2ps_pbh(po, pe)) };
        let mut ve = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(w));
        let mut vo = _mm512_castsi512_ps(_mm512_and_si512(w, self.high));
        if CLAMP {
            ve = _mm512_min_ps(_mm512_max_ps(ve, lo), hi);
            vo = _mm512_min_ps(_mm512_max_ps(vo, lo), hi);
        }
        let me = _mm512_castps_si512(_mm512_add_ps(ve, self.magic));
        let mo = _mm512_castps_si512(_mm512_add_ps(vo, self.magic));
        let bytes = _mm512_permutex2var_epi8(me, self.gather, mo);
        Some(_mm256_sub_epi8(_mm512_castsi512_si256(bytes), bias))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_butterfly_reduces_each_run() {
        if !(is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")) {
            return;
        }
        for len in [16usize, 32, 48, 128, 512, 4096] {
            let mut x: Vec<f32> = (0..RUNS_F32 * len)
                .map(|i| ((i * 7919) % 1013) as f32 * 0.37 - 180.0)
                .collect();
            // Values whose order the integer map must keep: signed zeros,
            // infinities, subnormals and the extremes of the range.
            for (at, v) in [
                (3usize, -0.0f32),
                (len + 1, f32::INFINITY),
                (2 * len + 5, f32::NEG_INFINITY),
                (3 * len, f32::from_bits(1)),
                (4 * len + 2, -f32::from_bits(1)),
                (5 * len + 7, f32::MAX),
                (6 * len + 9, f32::MIN),
            ] {
                x[at] = v;
            }
            let (mut lo, mut hi) = ([0.0f32; RUNS_F32], [0.0f32; RUNS_F32]);
            // SAFETY: the CPU has AVX-512 F and BW (checked above).
            let nan = unsafe { f32_runs16(&x, len, &mut lo, &mut hi) };
            assert!(!nan);
            for (r, run) in x.chunks(len).enumerate() {
                let want_lo = run.iter().copied().fold(f32::INFINITY, f32::min);
                let want_hi = run.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                assert_eq!((lo[r], hi[r]), (want_lo, want_hi), "len {len} run {r}");
            }
            for (at, nan_bits) in [
                (5usize, 0x7FC0_0000u32),
                (len * 15 + 3, 0xFFC0_0001),
                (len * 7, 0x7F80_0001),
                (len * 9 + 1, 0xFF80_0001),
            ] {
                let mut y = x.clone();
                y[at] = f32::from_bits(nan_bits);
                // SAFETY: as above.
                assert!(unsafe { f32_runs16(&y, len, &mut lo, &mut hi) });
            }
        }
    }

    #[test]
    fn butterfly_reduces_each_run() {
        if !(is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")) {
            return;
        }
        for len in [32usize, 64, 128, 96] {
            let x: Vec<bf16> = (0..RUNS * len)
                .map(|i| bf16::from_f32(((i * 7919) % 1013) as f32 - 500.0))
                .collect();
            let (mut lo, mut hi) = ([0.0f32; RUNS], [0.0f32; RUNS]);
            // SAFETY: the CPU has AVX-512 F and BW (checked above).
            let nan = unsafe { bf16_runs32(&x, len, &mut lo, &mut hi) };
            assert!(!nan);
            for (r, run) in x.chunks(len).enumerate() {
                let want_lo = run.iter().map(|v| v.to_f32()).fold(f32::INFINITY, f32::min);
                let want_hi = run
                    .iter()
                    .map(|v| v.to_f32())
                    .fold(f32::NEG_INFINITY, f32::max);
                assert_eq!((lo[r], hi[r]), (want_lo, want_hi), "len {len} run {r}");
            }
            for (at, nan_bits) in [(5usize, 0x7FC0u16), (len * 31 + 3, 0xFFC1)] {
                let mut y = x.clone();
                y[at] = bf16::from_bits(nan_bits);
                // SAFETY: as above.
                assert!(unsafe { bf16_runs32(&y, len, &mut lo, &mut hi) });
            }
        }
    }
}
