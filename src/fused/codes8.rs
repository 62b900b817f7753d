//! The 8-bit codes kernels' common interface: the constants they take and
//! which instruction set's kernels this CPU runs. [`Bf16Codes`] and
//! [`F32Codes`] exist only where the CPU runs their kernels, so calling
//! them through one is safe.
//!
//! Each kernel has an AVX-512 build ([`avx512`]), where the CPU has the
//! extensions it needs, and an AVX2 one ([`avx2`]) otherwise; both compute
//! the fast path of `quantize.rs` and write the same codes.

use std::mem::MaybeUninit;
use std::sync::OnceLock;

use half::bf16;

use super::simd::{level, Level};
use super::{avx2, avx512};

/// 1.5 * 2^23, as in `quantize.rs`: `(v + MAGIC).to_bits()` is an integer
/// `v` of magnitude below 2^22 plus a constant.
pub(crate) const MAGIC: f32 = 12_582_912.0;

/// The constants of one block for [`Bf16Codes::codes8`].
#[derive(Clone, Copy)]
pub(crate) struct Codes8 {
    /// The multiplier (the reciprocal of the scale).
    pub a: f32,
    /// Clamp bounds of the rounded product, or `None` when the caller has
    /// shown that no product leaves them (no clamp).
    pub bounds: Option<(f32, f32)>,
    /// What `(v + MAGIC).to_bits()` loses to become the code.
    pub bias: i32,
}

/// The per-block constants of the blocks kernels, one entry per block: `a`
/// as in [`Codes8`], the clamp bounds `lo`, `hi` and the `bias`.
pub(crate) struct Blocks8<'a> {
    pub a: &'a [f32],
    pub lo: &'a [f32],
    pub hi: &'a [f32],
    pub bias: &'a [i32],
}

impl Blocks8<'_> {
    /// The whole blocks of `len` elements (a positive multiple of 32) in
    /// `elems` elements that have constants, for codes `C` of one byte.
    pub(crate) fn blocks<C>(&self, elems: usize, len: usize) -> usize {
        assert_eq!(std::mem::size_of::<C>(), 1);
        assert!(len > 0 && len.is_multiple_of(32));
        (elems / len)
            .min(self.a.len())
            .min(self.lo.len())
            .min(self.hi.len())
            .min(self.bias.len())
    }
}

/// The instruction set whose build of a kernel runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Isa {
    Avx512,
    Avx2,
}

impl Isa {
    /// AVX-512 where `avx512` (the CPU has what that build requires), else
    /// AVX2 where [`level`] is AVX2 or above; `None` where neither runs.
    fn pick(avx512: bool) -> Option<Isa> {
        if avx512 {
            Some(Isa::Avx512)
        } else if level() >= Level::Avx2 {
            Some(Isa::Avx2)
        } else {
            None
        }
    }
}

/// The bfloat16 codes kernels this CPU runs: AVX-512's where it has
/// AVX-512 BF16 and VBMI, AVX2's where [`level`] is AVX2 or above.
#[derive(Clone, Copy)]
pub(crate) struct Bf16Codes(Isa);

impl Bf16Codes {
    /// `None` where neither build runs (or `TCH_QUANT_SIMD` caps the level
    /// below AVX2).
    #[inline]
    pub(crate) fn detect() -> Option<Self> {
        static ISA: OnceLock<Option<Isa>> = OnceLock::new();
        ISA.get_or_init(|| Isa::pick(avx512::bf16_codes_available()))
            .map(Bf16Codes)
    }

    /// Codes of the longest prefix of whole 32-element chunks of `x` whose
    /// products hold no NaN (on AVX2 also no infinite product and none of
    /// magnitude 2^111 or more: see `avx2::bf16_codes8`), with one block's
    /// constants; how many were written (see `avx512::bf16_codes8`).
    #[inline]
    pub(crate) fn codes8<C: Copy>(
        self,
        x: &[bf16],
        out: &mut [MaybeUninit<C>],
        k: Codes8,
    ) -> usize {
        match self.0 {
            // SAFETY: `detect` found the CPU has what the kernel requires
            // (`avx512::bf16_codes_available`).
            Isa::Avx512 => unsafe { avx512::bf16_codes8(x, out, k) },
            // SAFETY: `detect` found the CPU has AVX2.
            Isa::Avx2 => unsafe { avx2::bf16_codes8(x, out, k) },
        }
    }

    /// Codes of consecutive blocks of `len` elements, block `i` with the
    /// constants at `i` of `k`, up to the first block where
    /// [`codes8`](Self::codes8) would stop; that block's index (see
    /// `avx512::bf16_codes8_blocks`).
    #[inline]
    pub(crate) fn codes8_blocks<C: Copy>(
        self,
        x: &[bf16],
        out: &mut [MaybeUninit<C>],
        len: usize,
        k: &Blocks8,
    ) -> usize {
        match self.0 {
            // SAFETY: as in `codes8`.
            Isa::Avx512 => unsafe { avx512::bf16_codes8_blocks(x, out, len, k) },
            // SAFETY: as in `codes8`.
            Isa::Avx2 => unsafe { avx2::bf16_codes8_blocks(x, out, len, k) },
        }
    }
}

/// The float32 codes kernel this CPU runs: AVX-512's where it has AVX-512
/// VBMI, AVX2's where [`level`] is AVX2 or above.
#[derive(Clone, Copy)]
pub(crate) struct F32Codes(Isa);

impl F32Codes {
    /// `None` where neither build runs.
    #[inline]
    pub(crate) fn detect() -> Option<Self> {
        static ISA: OnceLock<Option<Isa>> = OnceLock::new();
        ISA.get_or_init(|| Isa::pick(avx512::f32_codes_available()))
            .map(F32Codes)
    }

    /// [`Bf16Codes::codes8_blocks`] for float32 input and a float32
    /// product (see `avx512::f32_codes8_blocks`).
    #[inline]
    pub(crate) fn codes8_blocks<C: Copy>(
        self,
        x: &[f32],
        out: &mut [MaybeUninit<C>],
        len: usize,
        k: &Blocks8,
    ) -> usize {
        match self.0 {
            // SAFETY: `detect` found the CPU has what the kernel requires
            // (`avx512::f32_codes_available`).
            Isa::Avx512 => unsafe { avx512::f32_codes8_blocks(x, out, len, k) },
            // SAFETY: `detect` found the CPU has AVX2.
            Isa::Avx2 => unsafe { avx2::f32_codes8_blocks(x, out, len, k) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::float::round_bf16;
    use super::*;

    /// Every build this CPU runs, AVX-512's where `avx512`.
    fn builds(avx512: bool) -> Vec<Isa> {
        let avx2 = is_x86_feature_detected!("avx2");
        [(avx512, Isa::Avx512), (avx2, Isa::Avx2)]
            .into_iter()
            .filter_map(|(runs, isa)| runs.then_some(isa))
            .collect()
    }

    /// Every build of the bfloat16 kernels this CPU runs.
    fn bf16_kernels() -> Vec<Bf16Codes> {
        builds(avx512::bf16_codes_available())
            .into_iter()
            .map(Bf16Codes)
            .collect()
    }

    /// Every build of the float32 kernel this CPU runs.
    fn f32_kernels() -> Vec<F32Codes> {
        builds(avx512::f32_codes_available())
            .into_iter()
            .map(F32Codes)
            .collect()
    }

    /// `x`'s codes by `kernel` as `quantize_run` takes them: where the
    /// kernel stops, the caller's portable formula takes one chunk and the
    /// kernel goes on after it. Which 32-element chunks the kernel wrote;
    /// each chunk it left holds a product where its build may stop: NaN,
    /// or on AVX2 infinite or of magnitude 2^111 or more.
    fn codes_by_chunks(
        kernel: Bf16Codes,
        x: &[bf16],
        out: &mut [MaybeUninit<u8>],
        k: Codes8,
    ) -> Vec<bool> {
        let mut written = vec![false; x.len() / 32];
        let mut at = 0;
        while at + 32 <= x.len() {
            let done = kernel.codes8(&x[at..], &mut out[at..], k);
            assert_eq!(done % 32, 0);
            written[at / 32..(at + done) / 32].fill(true);
            at += done;
            if at + 32 <= x.len() {
                let stops = |v: &bf16| {
                    let p = round_bf16(v.to_f32() * k.a);
                    p.is_nan() || (kernel.0 == Isa::Avx2 && p.abs() >= 2f32.powi(111))
                };
                assert!(x[at..at + 32].iter().any(stops), "stopped at {at}");
                at += 32;
            }
        }
        written
    }

    #[test]
    fn bf16_codes_match_the_portable_formula() {
        for kernel in bf16_kernels() {
            // Every bfloat16 pattern but NaN, against multipliers that make
            // ties, subnormal and overflowing products; with and without the
            // clamp, and offsets of both signs.
            let x: Vec<bf16> = (0..=u16::MAX)
                .map(bf16::from_bits)
                .filter(|v| !v.is_nan())
                .collect();
            let n = x.len() / 32 * 32;
            for a in [
                1.0f32,
                0.5,
                3.0,
                127.0 / 2.5,
                1e-30,
                1e30,
                7.5e-39,
                0.0078125,
            ] {
                let a = round_bf16(a);
                for (offset, lo, hi) in [
                    (0.0f32, -128.0f32, 127.0),
                    (-7.0, 0.0, 15.0),
                    (100.0, -1.0, 255.0),
                ] {
                    let bias = (MAGIC.to_bits() as i32).wrapping_sub(offset as i32);
                    let (lo, hi) = (lo - offset, hi - offset);
                    for bounds in [Some((lo, hi)), None] {
                        let mut out = vec![MaybeUninit::<u8>::uninit(); x.len()];
                        let k = Codes8 { a, bounds, bias };
                        let written = codes_by_chunks(kernel, &x[..n], &mut out, k);
                        for (i, (v, o)) in x.iter().zip(&out).take(n).enumerate() {
                            if !written[i / 32] {
                                continue;
                            }
                            let mut y = round_bf16(v.to_f32() * a);
                            if let Some((l, h)) = bounds {
                                y = y.clamp(l, h);
                            } else if !(lo..=hi).contains(&y) {
                                continue;
                            }
                            let want = ((y + MAGIC).to_bits() as i32).wrapping_sub(bias) as u8;
                            // SAFETY: the kernel wrote `out[..done]`.
                            let got = unsafe { o.assume_init() };
                            assert_eq!(got, want, "x {:#x} a {a:e} element {i}", v.to_bits());
                        }
                    }
                }
            }
            // A NaN product, of an even or an odd element, stops the kernel
            // at its chunk.
            for (at, done) in [(40, 32), (75, 64)] {
                let mut y = x[..96].to_vec();
                y[at] = bf16::NAN;
                let mut out = vec![MaybeUninit::<u8>::uninit(); 96];
                let k = Codes8 {
                    a: 1.0,
                    bounds: Some((-128.0, 127.0)),
                    bias: MAGIC.to_bits() as i32,
                };
                assert_eq!(kernel.codes8(&y, &mut out, k), done);
            }
        }
    }

    /// Per-block constants of the blocks kernels' tests: multipliers
    /// (rounded by `round`) and int8 offsets that differ from block to
    /// block.
    struct TestBlocks {
        a: Vec<f32>,
        lo: Vec<f32>,
        hi: Vec<f32>,
        bias: Vec<i32>,
    }

    impl TestBlocks {
        fn new(blocks: usize, round: fn(f32) -> f32) -> Self {
            let offsets: Vec<f32> = (0..blocks).map(|i| (i % 5) as f32 * 3.0 - 6.0).collect();
            TestBlocks {
                a: (0..blocks).map(|i| round(0.25 + i as f32 / 7.0)).collect(),
                lo: offsets.iter().map(|o| -128.0 - o).collect(),
                hi: offsets.iter().map(|o| 127.0 - o).collect(),
                bias: offsets
                    .iter()
                    .map(|&o| (MAGIC.to_bits() as i32).wrapping_sub(o as i32))
                    .collect(),
            }
        }

        fn k(&self) -> Blocks8<'_> {
            Blocks8 {
                a: &self.a,
                lo: &self.lo,
                hi: &self.hi,
                bias: &self.bias,
            }
        }
    }

    #[test]
    fn bf16_blocks_match_one_call_per_block() {
        for kernel in bf16_kernels() {
            let x: Vec<bf16> = (0..96 * 32)
                .map(|i| bf16::from_f32(((i * 7919) % 2027) as f32 / 8.0 - 120.0))
                .collect();
            for len in [32usize, 64, 96, 256] {
                let blocks = x.len() / len;
                let c = TestBlocks::new(blocks, round_bf16);
                let (k, a, lo, hi, bias) = (c.k(), &c.a, &c.lo, &c.hi, &c.bias);
                let mut got = vec![MaybeUninit::<i8>::uninit(); x.len()];
                assert_eq!(kernel.codes8_blocks(&x, &mut got, len, &k), blocks);
                for i in 0..blocks {
                    let at = i * len..(i + 1) * len;
                    let mut want = vec![MaybeUninit::<i8>::uninit(); len];
                    let c = Codes8 {
                        a: a[i],
                        bounds: Some((lo[i], hi[i])),
                        bias: bias[i],
                    };
                    assert_eq!(kernel.codes8(&x[at.clone()], &mut want, c), len);
                    // SAFETY: both kernels wrote every code compared.
                    let (got, want): (Vec<i8>, Vec<i8>) = unsafe {
                        (
                            got[at].iter().map(|c| c.assume_init()).collect(),
                            want.iter().map(|c| c.assume_init()).collect(),
                        )
                    };
                    assert_eq!(got, want, "len {len} block {i}");
                }
                // A NaN stops the kernel at its block.
                let mut y = x.clone();
                y[2 * len + 5] = bf16::NAN;
                assert_eq!(kernel.codes8_blocks(&y, &mut got, len, &k), 2);
            }
        }
    }

    #[test]
    fn f32_blocks_match_the_portable_formula() {
        for kernel in f32_kernels() {
            // Ties, subnormals, infinities and values beyond the range, in
            // blocks whose multipliers and offsets differ.
            let mut x: Vec<f32> = (0..96 * 32)
                .map(|i| ((i * 7919) % 4099) as f32 / 16.0 - 128.0)
                .collect();
            for (i, v) in [0.5f32, -0.5, 1.5, 2.5, -0.0, 1e-40, f32::INFINITY, -1e30]
                .into_iter()
                .enumerate()
            {
                x[i * 37] = v;
            }
            for len in [32usize, 64, 96, 256] {
                let blocks = x.len() / len;
                let c = TestBlocks::new(blocks, |a| a);
                let (k, a, lo, hi, bias) = (c.k(), &c.a, &c.lo, &c.hi, &c.bias);
                let mut got = vec![MaybeUninit::<i8>::uninit(); x.len()];
                assert_eq!(kernel.codes8_blocks(&x, &mut got, len, &k), blocks);
                for (e, (&v, g)) in x.iter().zip(&got).enumerate() {
                    let i = e / len;
                    let y = (v * a[i]).clamp(lo[i], hi[i]);
                    let want = ((y + MAGIC).to_bits() as i32).wrapping_sub(bias[i]) as i8;
                    // SAFETY: the kernel wrote every code.
                    assert_eq!(unsafe { g.assume_init() }, want, "len {len} element {e}");
                }
                // A NaN stops the kernel at its block.
                let mut y = x.clone();
                y[2 * len + 5] = f32::NAN;
                assert_eq!(kernel.codes8_blocks(&y, &mut got, len, &k), 2);
            }
        }
    }
}
