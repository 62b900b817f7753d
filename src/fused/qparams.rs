//! Scale and zero point from a block's min and max: torchao's op sequence
//! (`Plan::compute` in `crate::qparams`) in the input dtype `T`, each op
//! rounded as libtorch rounds it.
//!
//! Scalars reach libtorch as C++ doubles: a divisor or multiplier is used as
//! `float` (float16/bfloat16 ops compute in float32 with the scalar as
//! float), and a clamp bound or fill value is converted to `T` through
//! `float` ([`scalar_to`]).
//!
//! Signed zeros: `amin`, `minimum(min, 0)` and `maximum(max, 0)` give
//! libtorch-path-dependent signs of zero, which this module does not
//! reproduce. They never reach an output as long as `eps` is positive in
//! `T` (required by [`Consts::new`]): a zero numerator becomes `eps` in
//! `clamp_min`, `x - (±0)` and `0 - round(±0 / scale)` do not depend on the
//! sign, and `±0 + scale * mid` is `+0` or non-zero.

use tch::Kind;

use super::float::{clamp, clamp_min, maximum, round_half_even, scalar_to, Prec};
use crate::formula::{mid_point, symmetric_zero_point, ChooseSpec};
use crate::mapping::{MappingType, ZeroPointDomain};

/// The scalars of the op sequence, converted once as libtorch converts them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Consts {
    mapping_type: MappingType,
    domain: ZeroPointDomain,
    preserve_zero: bool,
    /// `float(quant_max - quant_min)`.
    asym_divisor: f32,
    /// `float(quant_max - quant_min) / 2`.
    sym_divisor: f32,
    /// `quant_min` and `quant_max` as divisors.
    qmin_divisor: f32,
    qmax_divisor: f32,
    /// `eps` in `T`.
    eps: f32,
    /// `quant_min`, `quant_max` as clamp and `rsub` bounds in `T`.
    qmin: f32,
    qmax: f32,
    /// `(quant_max + quant_min + 1) / 2` as a multiplier.
    mid: f32,
    /// `int((quant_max + quant_min + 1) / 2)` filled in `T`.
    sym_zero_point: f32,
}

impl Consts {
    /// `None` where the fused path would not be bit-identical: a zero `eps`
    /// in `T` (signed zeros would reach the scale), an empty range
    /// (`quant_min == quant_max` divides by zero: NaN scales, whose sign is
    /// libtorch's code path's), or Int-domain bounds that `T` cannot hold
    /// exactly (libtorch's mixed scalar conversions).
    pub fn new(spec: &ChooseSpec, input: Kind) -> Option<Self> {
        let (qmin, qmax) = (spec.quant_min, spec.quant_max);
        let c = Consts {
            mapping_type: spec.mapping_type,
            domain: spec.domain,
            preserve_zero: spec.preserve_zero,
            asym_divisor: (qmax - qmin) as f32,
            sym_divisor: ((qmax - qmin) / 2.0) as f32,
            qmin_divisor: qmin as f32,
            qmax_divisor: qmax as f32,
            eps: scalar_to(input, spec.eps),
            qmin: scalar_to(input, qmin as i64 as f64),
            qmax: scalar_to(input, qmax as i64 as f64),
            mid: mid_point(qmin, qmax) as f32,
            sym_zero_point: scalar_to(input, symmetric_zero_point(qmin, qmax) as f64),
        };
        let asym_int =
            spec.mapping_type == MappingType::Asymmetric && spec.domain == ZeroPointDomain::Int;
        let exact_bounds = c.qmin as f64 == qmin && c.qmax as f64 == qmax;
        (c.eps > 0.0 && qmin < qmax && (exact_bounds || !asym_int)).then_some(c)
    }

    /// The zero point's range of values (as `T` floats, NaN aside), to check
    /// that an integer zero-point dtype holds them.
    pub fn zero_point_range(&self) -> Option<(f64, f64)> {
        match (self.mapping_type, self.domain) {
            (_, ZeroPointDomain::None) => None,
            (MappingType::Asymmetric, ZeroPointDomain::Int) => {
                Some((self.qmin as f64, self.qmax as f64))
            }
            (MappingType::Asymmetric, ZeroPointDomain::Float) => {
                Some((f64::NEG_INFINITY, f64::INFINITY))
            }
            _ => Some((self.sym_zero_point as f64, self.sym_zero_point as f64)),
        }
    }

    /// Whether a scale or zero point of these blocks (as
    /// [`blocks`](Self::blocks) wrote them) is NaN.
    ///
    /// NaN qparams come from NaN-free input too: `inf - inf` for a block of
    /// `+inf` without `preserve_zero`, `-inf + inf` for a Float-domain zero
    /// point of a block holding both infinities, `0 / 0` where `quant_max`
    /// (or `quant_min`) is 0 as for int1, `inf / inf` once a range overflows.
    /// The bits of such a NaN in the stored dtype depend on which of
    /// libtorch's code paths produced and cast it (a vectorized float to
    /// bfloat16 cast writes `0xffff`, the scalar one `0x7fc0`), so those
    /// blocks are left to the reference path, as NaN inputs are.
    pub fn any_nan(&self, scale: &[f32], zp: &[f32]) -> bool {
        let has_zp = self.domain != ZeroPointDomain::None;
        let nan = |v: &[f32]| v.iter().fold(false, |acc, x| acc | x.is_nan());
        nan(scale) || (has_zp && nan(&zp[..scale.len()]))
    }

    /// Scale and zero point of each block, as values of `T` (`P` rounds to
    /// `T`). The zero point is left untouched in the None domain. One loop
    /// per mapping and domain, so that each vectorizes.
    #[inline(always)]
    pub fn blocks<P: Prec>(&self, lo: &[f32], hi: &[f32], scale: &mut [f32], zp: &mut [f32]) {
        let n = lo.len();
        let (hi, scale, zp) = (&hi[..n], &mut scale[..n], &mut zp[..n]);
        let c = *self;
        // minimum(min, 0) and maximum(max, 0), NaN-propagating.
        let preserve = |min: f32, max: f32| {
            let keep_min = !c.preserve_zero || min < 0.0 || min.is_nan();
            let keep_max = !c.preserve_zero || max > 0.0 || max.is_nan();
            (
                if keep_min { min } else { 0.0 },
                if keep_max { max } else { 0.0 },
            )
        };
        let asym_scale = |min_neg: f32, max_pos: f32| {
            clamp_min(
                P::round(P::round(max_pos - min_neg) / c.asym_divisor),
                c.eps,
            )
        };
        let blocks = scale.iter_mut().zip(lo.iter().zip(hi));
        match (c.mapping_type, c.domain) {
            (MappingType::Asymmetric, ZeroPointDomain::Int) => {
                for ((s, (&min, &max)), z) in blocks.zip(zp.iter_mut()) {
                    let (min_neg, max_pos) = preserve(min, max);
                    let sc = asym_scale(min_neg, max_pos);
                    let r = round_half_even(P::round(min_neg / sc));
                    *s = sc;
                    *z = clamp(P::round(c.qmin - r), c.qmin, c.qmax);
                }
            }
            (MappingType::Asymmetric, ZeroPointDomain::Float) => {
                for ((s, (&min, &max)), z) in blocks.zip(zp.iter_mut()) {
                    let (min_neg, max_pos) = preserve(min, max);
                    let sc = asym_scale(min_neg, max_pos);
                    *s = sc;
                    *z = P::round(min_neg + P::round(sc * c.mid));
                }
            }
            (MappingType::Asymmetric, ZeroPointDomain::None) => {
                for (s, (&min, &max)) in blocks {
                    let (min_neg, max_pos) = preserve(min, max);
                    *s = asym_scale(min_neg, max_pos);
                }
            }
            (MappingType::Symmetric, _) => {
                for (s, (&min, &max)) in blocks {
                    let (min_neg, max_pos) = preserve(min, max);
                    let amax = maximum(-min_neg, max_pos);
                    *s = clamp_min(P::round(amax / c.sym_divisor), c.eps);
                }
                zp.fill(c.sym_zero_point);
            }
            (MappingType::SymmetricNoClippingErr, _) => {
                for (s, (&min, &max)) in blocks {
                    let (min_neg, max_pos) = preserve(min, max);
                    let smin = P::round(min_neg / c.qmin_divisor);
                    let smax = P::round(max_pos / c.qmax_divisor);
                    let sc = if smin > smax { smin } else { smax };
                    *s = clamp_min(sc, c.eps);
                }
                zp.fill(c.sym_zero_point);
            }
        }
    }
}

kernel! {
    /// [`Consts::blocks`] as a kernel.
    pub(crate) fn qparams_blocks<P: Prec>(
        consts: &Consts,
        lo: &[f32],
        hi: &[f32],
        scale: &mut [f32],
        zp: &mut [f32],
    ) {
        consts.blocks::<P>(lo, hi, scale, zp);
    }
}

#[cfg(test)]
mod tests {
    use super::super::float::F32;
    use super::*;

    fn spec(mapping_type: MappingType, qmin: f64, qmax: f64) -> ChooseSpec {
        ChooseSpec {
            mapping_type,
            quant_min: qmin,
            quant_max: qmax,
            eps: f32::EPSILON as f64,
            scale_dtype: Kind::Float,
            zero_point_dtype: None,
            preserve_zero: true,
            domain: ZeroPointDomain::Int,
        }
    }

    #[test]
    fn asymmetric_uint8() {
        let c = Consts::new(&spec(MappingType::Asymmetric, 0.0, 255.0), Kind::Float).unwrap();
        let (mut s, mut z) = ([0.0f32; 1], [0.0f32; 1]);
        c.blocks::<F32>(&[-1.0], &[3.0], &mut s, &mut z);
        assert_eq!(s[0], 4.0f32 / 255.0);
        assert_eq!(
            z[0],
            (0.0f32 - (-1.0f32 / s[0]).round_ties_even()).clamp(0.0, 255.0)
        );
    }

    #[test]
    fn refuses_zero_eps_and_inexact_bounds() {
        let mut s = spec(MappingType::Asymmetric, 0.0, 255.0);
        s.eps = 0.0;
        assert!(Consts::new(&s, Kind::Float).is_none());
        s.eps = 1e-30; // 0 in bfloat16? no: bfloat16 has float32's range.
        assert!(Consts::new(&s, Kind::BFloat16).is_some());
        assert!(Consts::new(&s, Kind::Half).is_none());
        let int16 = spec(MappingType::Asymmetric, -32768.0, 32767.0);
        assert!(Consts::new(&int16, Kind::BFloat16).is_none());
        assert!(Consts::new(&int16, Kind::Float).is_some());
    }
}
