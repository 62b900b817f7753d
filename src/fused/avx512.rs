//! AVX-512 kernels written with intrinsics, where LLVM's auto-vectorization
//! of the plain loops falls well short: called only when
//! [`simd::level`](super::simd::level) is AVX-512, beside the portable code
//! that every other level runs.

use std::arch::x86_64::*;

use half::bf16;

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

/// One halving step of the butterfly: the lane-wise `min` (or `max`) of
/// the two shuffles `u`, `v` of a pair of vectors.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn pick<const MIN: bool>(u: __m512i, v: __m512i) -> __m512i {
    if MIN {
        _mm512_min_epi16(u, v)
    } else {
        _mm512_max_epi16(u, v)
    }
}

/// Reduces 32 vectors of 32 partial results (one vector per run) to one
/// vector holding each run's result, in the order [`PERM`] undoes: five
/// levels, each pairing the vectors and halving the partials per run
/// (256-, 128-, 64-, 32- and 16-bit granules), two shuffles and one
/// min/max per pair instead of a horizontal reduction per run.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn butterfly<const MIN: bool>(v: &[__m512i; RUNS]) -> __m512i {
    let mut p = [_mm512_setzero_si512(); 16];
    for (i, p) in p.iter_mut().enumerate() {
        let (a, b) = (v[2 * i], v[2 * i + 1]);
        let (u, w) = (
            _mm512_shuffle_i64x2::<0x44>(a, b),
            _mm512_shuffle_i64x2::<0xEE>(a, b),
        );
        *p = pick::<MIN>(u, w);
    }
    let mut q = [_mm512_setzero_si512(); 8];
    for (i, q) in q.iter_mut().enumerate() {
        let (a, b) = (p[2 * i], p[2 * i + 1]);
        let (u, w) = (
            _mm512_shuffle_i64x2::<0x88>(a, b),
            _mm512_shuffle_i64x2::<0xDD>(a, b),
        );
        *q = pick::<MIN>(u, w);
    }
    let mut r = [_mm512_setzero_si512(); 4];
    for (i, r) in r.iter_mut().enumerate() {
        let (a, b) = (q[2 * i], q[2 * i + 1]);
        *r = pick::<MIN>(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
    }
    let mut s = [_mm512_setzero_si512(); 2];
    for (i, s) in s.iter_mut().enumerate() {
        let (a, b) = (
            _mm512_castsi512_ps(r[2 * i]),
            _mm512_castsi512_ps(r[2 * i + 1]),
        );
        let (u, w) = (
            _mm512_castps_si512(_mm512_shuffle_ps::<0x88>(a, b)),
            _mm512_castps_si512(_mm512_shuffle_ps::<0xDD>(a, b)),
        );
        *s = pick::<MIN>(u, w);
    }
    let (a, b) = (s[0], s[1]);
    let odd = 0xAAAA_AAAA;
    let u = _mm512_mask_blend_epi16(odd, a, _mm512_slli_epi32::<16>(b));
    let w = _mm512_mask_blend_epi16(odd, _mm512_srli_epi32::<16>(a), b);
    let t = pick::<MIN>(u, w);
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
    let mut mins = [_mm512_setzero_si512(); RUNS];
    let mut maxs = [_mm512_setzero_si512(); RUNS];
    for r in 0..RUNS {
        let start = r * len;
        let first = load_ordered(x, start);
        let (mut mn, mut mx) = (first, first);
        for at in (start + 32..start + len).step_by(32) {
            let t = load_ordered(x, at);
            mn = _mm512_min_epi16(mn, t);
            mx = _mm512_max_epi16(mx, t);
        }
        mins[r] = mn;
        maxs[r] = mx;
    }
    let (mn, mx) = (butterfly::<true>(&mins), butterfly::<false>(&maxs));
    // Every NaN is ordered below -inf or above +inf.
    let below = _mm512_cmplt_epi16_mask(mn, _mm512_set1_epi16(0xFF80u16 as i16 ^ 0x7FFF));
    let above = _mm512_cmpgt_epi16_mask(mx, _mm512_set1_epi16(0x7F80));
    store_values(mn, lo);
    store_values(mx, hi);
    (below | above) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

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
