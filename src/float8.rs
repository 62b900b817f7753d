//! Float8 quantization: torchao 0.11's tensorwise
//! `choose_qparams_affine_float8`, torchao 0.18's per-tensor, per-row and
//! per-block `_choose_scale_float8` ([`choose_scale_float8`]), and the
//! `quantize_affine_float8` / `dequantize_affine_float8` pair both releases
//! share.
//!
//! Float8 codes are libtorch float8 tensors; the scale is a float32 tensor
//! (one value for the whole tensor when it comes from
//! [`choose_qparams_affine_float8`], one per block from
//! [`choose_scale_float8`]).
//!
//! # torchao 0.11 and 0.18
//!
//! 0.18 removed `choose_qparams_affine_float8` and renamed the pair to
//! `_quantize_affine_float8` / `_dequantize_affine_float8`. Their op
//! sequence is 0.11's (`to(float32)`, divide, clamp, cast; `to(float32)`,
//! multiply, cast), and they differ only in the scales they take: 0.18 also
//! takes one scale per block (`_maybe_expand_scale_to_tensor_shape` repeats
//! each scale over its block with `repeat_interleave`), which 0.11 refuses.
//! So [`quantize_affine_float8`] and [`dequantize_affine_float8`] serve both
//! releases without a semantics argument: every scale that broadcasts gives
//! both releases' bits, and a per-block scale gives 0.18's. (0.18 also
//! raises for a scale of lower rank that is not a single value, e.g. `[K]`
//! for a `[N, K]` input, which 0.11 broadcasts; the crate broadcasts it,
//! with 0.11's bits.)

use tch::{Device, Kind, Tensor};

use crate::block::BlockLayout;
use crate::dtype::{check_output_float, is_input_float, INPUT_FLOATS};
use crate::error::{Error, Result, TorchContext};
use crate::qparams::{check_float_input, check_not_empty};
use crate::scalar_ops;
use crate::strided::check_strided;
use crate::QuantDtype;

/// Chooses the tensorwise float8 scale of `input`, bit-identical to
/// torchao 0.11's `choose_qparams_affine_float8`.
///
/// In the input's dtype, `amax = max(-min(input), max(input))` over the whole
/// tensor, then `scale = amax / ((fmax - fmin) / 2)` where `fmin..fmax` is the
/// finite range of `float8_dtype` (the divisor is 448 for `float8_e4m3fn`,
/// 57344 for the e5m2 kinds, 240 for `float8_e4m3fnuz`); the quotient is
/// rounded to the input's dtype and then cast to float32. The result is a
/// 0-d float32 tensor.
///
/// No eps is applied, as in torchao: an all-zero input gives a zero scale
/// (and [`quantize_affine_float8`] then gives NaN codes for its zeros). A NaN
/// anywhere in the input gives a NaN scale, an infinite element an infinite
/// scale.
///
/// # Errors
/// `float8_dtype` not one of the four float8 kinds; `input` not
/// float32/float16/bfloat16, or empty.
///
/// # Examples
/// ```
/// use tch::Tensor;
/// use tch_quant::{choose_qparams_affine_float8, QuantDtype};
/// let x = Tensor::from_slice(&[-896.0f32, 1.0, 224.0]);
/// let scale = choose_qparams_affine_float8(&x, QuantDtype::Float8E4M3Fn)?;
/// assert_eq!(scale.size(), Vec::<i64>::new());
/// assert_eq!(scale.double_value(&[]), 2.0);
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn choose_qparams_affine_float8(input: &Tensor, float8_dtype: QuantDtype) -> Result<Tensor> {
    const OP: &str = "choose_qparams_affine_float8";
    check_strided(OP, "input", input)?;
    let (fmin, fmax) = float8_bounds(OP, float8_dtype)?;
    check_float_input(OP, "input", input)?;
    check_not_empty(OP, "input", input)?;
    let compute = || -> std::result::Result<Tensor, tch::TchError> {
        let min_neg = input.f_min()?;
        let max_pos = input.f_max()?;
        let amax = min_neg.f_neg()?.f_maximum(&max_pos)?;
        scalar_ops::div(&amax, (fmax - fmin) / 2.0)?.f_to_kind(Kind::Float)
    };
    compute().op(OP)
}

/// The dtype [`choose_scale_float8`] rounds its scales to (torchao 0.18's
/// `scale_dtype`); the scales are returned as float32 either way, as torchao
/// returns them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Float8ScaleDtype {
    /// `torch.float32`: `amax / fmax` as computed.
    #[default]
    Float32,
    /// `torch.float8_e8m0fnu`: the scale rounded to a power of two,
    /// `exp2(round(log2(scale)))`, for formats whose scales are bare
    /// exponents.
    Float8E8M0Fnu,
}

impl std::fmt::Display for Float8ScaleDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Float8ScaleDtype::Float32 => "float32",
            Float8ScaleDtype::Float8E8M0Fnu => "float8_e8m0fnu",
        })
    }
}

/// The optional arguments of [`choose_scale_float8`], defaulting as torchao
/// 0.18's `_choose_scale_float8` does.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Float8ScaleOptions {
    /// `scale_dtype`: float32 (default) or e8m0 power-of-two scales.
    pub scale_dtype: Float8ScaleDtype,
    /// `hp_value_lb`: the smallest block amax used (`None`: no bound).
    pub hp_value_lb: Option<f64>,
    /// `hp_value_ub`: the largest block amax used (`None`: no bound).
    pub hp_value_ub: Option<f64>,
}

/// Chooses one float8 scale per block of `input`, bit-identical to torchao
/// 0.18's `_choose_scale_float8`.
///
/// `block_size` has one entry per input dim: the input's shape for one
/// scale (per tensor), `[1, ..., 1, K]` for one per row, e.g. `[128, 128]`
/// for square blocks. Per block, in the input's dtype:
///
/// 1. `amax = max(|block|)` (NaN when the block holds one);
/// 2. with bounds, `amax = clamp(amax, hp_value_lb, hp_value_ub)` (libtorch's
///    scalar clamp: compared in float32 and rounded to the input's dtype);
/// 3. `scale = amax / fmax`, `fmax` the largest finite value of
///    `float8_dtype` (448 for `float8_e4m3fn`, 57344 for the e5m2 kinds,
///    240 for `float8_e4m3fnuz`), rounded to the input's dtype;
/// 4. with [`Float8ScaleDtype::Float8E8M0Fnu`],
///    `scale = exp2(round(log2(scale)))` (round half to even, still in the
///    input's dtype);
/// 5. cast to float32.
///
/// The result has the input's rank, dim `i` of size
/// `input.size(i) / block_size[i]`. No eps is applied, as in torchao: an
/// all-zero block gives a zero scale (and [`quantize_affine_float8`] NaN
/// codes for it).
///
/// # Errors
/// `float8_dtype` not a float8 kind; `input` not float32/float16/bfloat16,
/// or empty; `block_size` without one entry per dim, with an entry below 1
/// or one that does not divide its dim, or that reduces no dim of a tensor
/// with more than one element (torchao's reshape fails there); a NaN bound,
/// or `hp_value_lb > hp_value_ub`.
///
/// # Examples
/// ```
/// use tch::Tensor;
/// use tch_quant::{choose_scale_float8, Float8ScaleDtype, Float8ScaleOptions, QuantDtype};
/// let x = Tensor::from_slice(&[1.0f32, -1344.0, 3.0, 112.0]).view([2, 2]);
/// let per_row = choose_scale_float8(&x, &[1, 2], QuantDtype::Float8E4M3Fn,
///                                   &Float8ScaleOptions::default())?;
/// assert_eq!(per_row.size(), [2, 1]);
/// assert_eq!(Vec::<f32>::try_from(per_row.view(-1))?, [3.0, 0.25]);
/// let e8m0 = Float8ScaleOptions { scale_dtype: Float8ScaleDtype::Float8E8M0Fnu, ..Default::default() };
/// let pow2 = choose_scale_float8(&x, &[1, 2], QuantDtype::Float8E4M3Fn, &e8m0)?;
/// assert_eq!(Vec::<f32>::try_from(pow2.view(-1))?, [4.0, 0.25]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn choose_scale_float8(
    input: &Tensor,
    block_size: &[i64],
    float8_dtype: QuantDtype,
    options: &Float8ScaleOptions,
) -> Result<Tensor> {
    const OP: &str = "choose_scale_float8";
    check_strided(OP, "input", input)?;
    let (_, fmax) = float8_bounds(OP, float8_dtype)?;
    check_float_input(OP, "input", input)?;
    check_not_empty(OP, "input", input)?;
    let shape = input.size();
    let layout = BlockLayout::new(OP, block_size, &shape)?;
    let (lb, ub) = (options.hp_value_lb, options.hp_value_ub);
    for (arg, bound) in [("hp_value_lb", lb), ("hp_value_ub", ub)] {
        if bound.is_some_and(f64::is_nan) {
            return Err(Error::invalid(OP, arg, "NaN", "must be a number or None"));
        }
    }
    if let (Some(lo), Some(hi)) = (lb, ub) {
        if lo > hi {
            return Err(Error::invalid(
                OP,
                "hp_value_lb",
                lo,
                format!("must not exceed hp_value_ub = {hi}"),
            ));
        }
    }
    let scale_shape: Vec<i64> = shape
        .iter()
        .zip(block_size)
        .map(|(&size, &b)| size / b)
        .collect();
    let compute = || -> std::result::Result<Tensor, tch::TchError> {
        let blocks = input.f_reshape(layout.shape_for_reduction.as_slice())?;
        let mut amax = blocks
            .f_abs()?
            .f_amax(layout.reduction_dims.as_slice(), true)?;
        amax = match (lb, ub) {
            (Some(lo), Some(hi)) => scalar_ops::clamp(&amax, lo, hi)?,
            (Some(lo), None) => scalar_ops::clamp_min(&amax, lo)?,
            (None, Some(hi)) => scalar_ops::clamp_max(&amax, hi)?,
            (None, None) => amax,
        };
        let mut scale = scalar_ops::div(&amax, fmax)?.f_reshape(scale_shape.as_slice())?;
        if options.scale_dtype == Float8ScaleDtype::Float8E8M0Fnu {
            scale = scale.f_log2()?.f_round()?.f_exp2()?;
        }
        scale.f_to_kind(Kind::Float)
    };
    compute().op(OP)
}

/// Quantizes `input` to `float8_dtype` codes, bit-identical to torchao 0.11's
/// `quantize_affine_float8` and 0.18's `_quantize_affine_float8`.
///
/// `code = to_float8(clamp(float32(input) / scale, -fmax, fmax))`: the input
/// is upcast to float32 and divided by `scale` (float32 division, or libtorch's
/// multiply-by-reciprocal where it uses one, e.g. a CPU 0-d scale with a CUDA
/// input, exactly as in torchao), clamped to the finite range of
/// `float8_dtype` and rounded to nearest, ties to even, by libtorch's float8
/// cast.
///
/// Because of the clamp, values beyond the float8 range (infinities
/// included) saturate to `±fmax`; NaN stays NaN (the fnuz kinds have a single
/// NaN code, `0x80`). `-0.0` gives the negative-zero code for the `fn`/e5m2
/// kinds and `+0` for the fnuz kinds, which have no negative zero.
///
/// `scale` must be float32, float16 or bfloat16 and either broadcast to the
/// input's shape (a 0-d tensorwise scale, or e.g. one scale per row shaped
/// `[rows, 1]`: both torchao releases) or hold one scale per block (the
/// input's rank, dim `i` dividing `input.size(i)`, e.g. `[N / 128, K / 128]`
/// from [`choose_scale_float8`]: torchao 0.18, which repeats each scale over
/// its block with `repeat_interleave` before dividing, as done here). The
/// codes have the input's shape.
///
/// # Errors
/// `float8_dtype` not a float8 kind; `input` or `scale` not
/// float32/float16/bfloat16; `scale` neither broadcastable to the input's
/// shape nor one per block, or on another device (a 0-d CPU scale is accepted with any input, as in
/// libtorch).
///
/// # Examples
/// ```
/// use tch::{Kind, Tensor};
/// use tch_quant::{quantize_affine_float8, QuantDtype};
/// let x = Tensor::from_slice(&[1.0f32, -3.0, 1000.0]);
/// let q = quantize_affine_float8(&x, &Tensor::from(2.0f32), QuantDtype::Float8E4M3Fn)?;
/// assert_eq!(q.kind(), Kind::Float8e4m3fn);
/// let back = Vec::<f32>::try_from(q.to_kind(Kind::Float))?;
/// assert_eq!(back, [0.5, -1.5, 448.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn quantize_affine_float8(
    input: &Tensor,
    scale: &Tensor,
    float8_dtype: QuantDtype,
) -> Result<Tensor> {
    const OP: &str = "quantize_affine_float8";
    check_strided(OP, "input", input)?;
    check_strided(OP, "scale", scale)?;
    let (_, fmax) = float8_bounds(OP, float8_dtype)?;
    check_float_input(OP, "input", input)?;
    check_not_empty(OP, "input", input)?;
    let repeats = check_scale(OP, scale, input)?;
    let compute = || -> std::result::Result<Tensor, tch::TchError> {
        let scale = expand_scale(scale, repeats.as_deref())?;
        let scaled = input.f_to_kind(Kind::Float)?.f_div(&scale)?;
        scalar_ops::clamp(&scaled, -fmax, fmax)?.f_to_kind(float8_dtype.storage_kind())
    };
    compute().op(OP)
}

/// Dequantizes float8 codes, bit-identical to torchao 0.11's
/// `dequantize_affine_float8` and 0.18's `_dequantize_affine_float8`.
///
/// `output = to(output_dtype, float32(codes) * scale)`: the codes are
/// widened exactly to float32, multiplied by `scale` in float32 (one
/// rounding) and cast to `output_dtype` (a second rounding, to nearest even,
/// for float16 and bfloat16). NaN codes give NaN, the e5m2 infinities give
/// infinities.
///
/// `scale` broadcasts to the codes' shape or holds one scale per block, as
/// in [`quantize_affine_float8`] (per-block scales are repeated over their
/// blocks first, as torchao 0.18's `_dequantize_affine_float8` does).
///
/// # Errors
/// `input` not a float8 tensor; `scale` not float32/float16/bfloat16,
/// neither broadcastable to the input's shape nor one per block, or on
/// another device (0-d CPU scales excepted); `output_dtype` not
/// float32/float16/bfloat16.
///
/// # Examples
/// ```
/// use tch::{Kind, Tensor};
/// use tch_quant::{dequantize_affine_float8, quantize_affine_float8, QuantDtype};
/// let x = Tensor::from_slice(&[1.0f32, -3.0]);
/// let scale = Tensor::from(2.0f32);
/// let q = quantize_affine_float8(&x, &scale, QuantDtype::Float8E5M2)?;
/// let y = dequantize_affine_float8(&q, &scale, Kind::BFloat16)?;
/// assert_eq!(y.kind(), Kind::BFloat16);
/// assert_eq!(Vec::<f32>::try_from(y.to_kind(Kind::Float))?, [1.0, -3.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn dequantize_affine_float8(
    input: &Tensor,
    scale: &Tensor,
    output_dtype: Kind,
) -> Result<Tensor> {
    const OP: &str = "dequantize_affine_float8";
    check_strided(OP, "input", input)?;
    check_strided(OP, "scale", scale)?;
    if !is_float8_kind(input.kind()) {
        return Err(Error::UnsupportedKind {
            op: OP,
            arg: "input",
            expected:
                "a float8 dtype (float8_e4m3fn, float8_e5m2, float8_e4m3fnuz or float8_e5m2fnuz)",
            got: input.kind(),
        });
    }
    let repeats = check_scale(OP, scale, input)?;
    check_output_float(OP, output_dtype)?;
    let compute = || -> std::result::Result<Tensor, tch::TchError> {
        let scale = expand_scale(scale, repeats.as_deref())?;
        input
            .f_to_kind(Kind::Float)?
            .f_mul(&scale)?
            .f_to_kind(output_dtype)
    };
    compute().op(OP)
}

/// `(finfo.min, finfo.max)` of a float8 target, refusing the integer ones.
fn float8_bounds(op: &'static str, float8_dtype: QuantDtype) -> Result<(f64, f64)> {
    if !float8_dtype.is_float8() {
        return Err(Error::invalid(
            op,
            "float8_dtype",
            float8_dtype,
            "must be float8_e4m3fn, float8_e5m2, float8_e4m3fnuz or float8_e5m2fnuz",
        ));
    }
    Ok(float8_dtype.bounds())
}

fn is_float8_kind(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Float8e4m3fn | Kind::Float8e5m2 | Kind::Float8e4m3fnuz | Kind::Float8e5m2fnuz
    )
}

/// A float scale that broadcasts to `input`'s shape without growing it, or
/// one scale per block (the input's rank, each dim dividing the input's),
/// on `input`'s device (libtorch also takes a 0-d CPU tensor as a scalar).
/// Returns the per-dim repeats of a per-block scale, `None` for one that
/// broadcasts as it is.
fn check_scale(op: &'static str, scale: &Tensor, input: &Tensor) -> Result<Option<Vec<i64>>> {
    if !is_input_float(scale.kind()) {
        return Err(Error::UnsupportedKind {
            op,
            arg: "scale",
            expected: INPUT_FLOATS,
            got: scale.kind(),
        });
    }
    let (shape, target) = (scale.size(), input.size());
    let broadcasts = shape.len() <= target.len()
        && shape
            .iter()
            .rev()
            .zip(target.iter().rev())
            .all(|(&s, &t)| s == 1 || s == t);
    let per_block = shape.len() == target.len()
        && shape
            .iter()
            .zip(&target)
            .all(|(&s, &t)| s >= 1 && t % s == 0);
    if !broadcasts && !per_block {
        return Err(Error::ShapeMismatch {
            op,
            arg: "scale",
            got: shape,
            reason: format!(
                "must broadcast to the input's shape {target:?} or hold one scale per block \
                 (the input's rank, each dim dividing the input's)"
            ),
        });
    }
    let cpu_scalar = scale.device() == Device::Cpu && scale.dim() == 0;
    if scale.device() != input.device() && !cpu_scalar {
        return Err(Error::invalid(
            op,
            "scale",
            format!("{:?}", scale.device()),
            format!(
                "must be on the input's device, {:?}, or be a 0-d CPU tensor",
                input.device()
            ),
        ));
    }
    Ok((!broadcasts).then(|| target.iter().zip(&shape).map(|(&t, &s)| t / s).collect()))
}

/// A per-block scale repeated over its blocks, as torchao 0.18's
/// `_maybe_expand_scale_to_tensor_shape` does (`repeat_interleave` along
/// each dim whose block is longer than 1); a broadcasting scale as it is.
fn expand_scale(
    scale: &Tensor,
    repeats: Option<&[i64]>,
) -> std::result::Result<Tensor, tch::TchError> {
    let mut expanded = scale.shallow_clone();
    for (dim, &r) in repeats.unwrap_or_default().iter().enumerate() {
        if r > 1 {
            expanded = expanded.f_repeat_interleave_self_int(r, dim as i64, None)?;
        }
    }
    Ok(expanded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(t: &Tensor) -> Vec<u8> {
        Vec::<u8>::try_from(t.view_dtype(Kind::Uint8).flatten(0, -1)).unwrap()
    }

    #[test]
    fn scale_is_amax_over_half_range() {
        let x = Tensor::from_slice(&[-3.0f32, 1.0, 2.0]);
        for (dtype, divisor) in [
            (QuantDtype::Float8E4M3Fn, 448.0f32),
            (QuantDtype::Float8E5M2, 57344.0),
            (QuantDtype::Float8E4M3Fnuz, 240.0),
            (QuantDtype::Float8E5M2Fnuz, 57344.0),
        ] {
            let s = choose_qparams_affine_float8(&x, dtype).unwrap();
            assert_eq!(s.kind(), Kind::Float);
            assert_eq!(s.dim(), 0);
            assert_eq!(s.double_value(&[]) as f32, 3.0f32 / divisor);
        }
        let h = Tensor::from_slice(&[0.1f32, -0.7]).to_kind(Kind::Half);
        let s = choose_qparams_affine_float8(&h, QuantDtype::Float8E4M3Fn).unwrap();
        let expect = half::f16::from_f32(half::f16::from_f32(0.7).to_f32() / 448.0);
        assert_eq!(s.double_value(&[]) as f32, expect.to_f32());
    }

    #[test]
    fn nan_input_gives_nan_scale() {
        let x = Tensor::from_slice(&[1.0f32, f32::NAN]);
        let s = choose_qparams_affine_float8(&x, QuantDtype::Float8E4M3Fn).unwrap();
        assert!(s.double_value(&[]).is_nan());
    }

    #[test]
    fn quantize_saturates_and_keeps_specials() {
        let x = Tensor::from_slice(&[
            1.0f32,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1e6,
        ]);
        let one = Tensor::from(1.0f32);
        let q = quantize_affine_float8(&x, &one, QuantDtype::Float8E4M3Fn).unwrap();
        // e4m3fn: 1.0 = 0x38, -0 = 0x80, 448 = 0x7e, NaN = 0x7f.
        assert_eq!(bits(&q), [0x38, 0x80, 0x7e, 0xfe, 0x7f, 0x7e]);
        let q = quantize_affine_float8(&x, &one, QuantDtype::Float8E5M2).unwrap();
        // e5m2: 1.0 = 0x3c, 57344 = 0x7b; NaN keeps a NaN pattern.
        let b = bits(&q);
        assert_eq!(&b[..4], [0x3c, 0x80, 0x7b, 0xfb]);
        assert_eq!(b[4] & 0x7c, 0x7c);
        assert_eq!(b[5], 0x7b);
        let q = quantize_affine_float8(&x, &one, QuantDtype::Float8E4M3Fnuz).unwrap();
        // fnuz: no negative zero, single NaN 0x80.
        assert_eq!(bits(&q)[1], 0x00);
        assert_eq!(bits(&q)[4], 0x80);
    }

    #[test]
    fn round_trip_per_row_scale() {
        let x = Tensor::from_slice(&[1.0f32, 2.0, 30.0, 40.0]).view([2, 2]);
        let scale = Tensor::from_slice(&[1.0f32, 10.0]).view([2, 1]);
        let q = quantize_affine_float8(&x, &scale, QuantDtype::Float8E4M3Fn).unwrap();
        assert_eq!(q.size(), [2, 2]);
        let y = dequantize_affine_float8(&q, &scale, Kind::Float).unwrap();
        assert_eq!(
            Vec::<f32>::try_from(y.flatten(0, -1)).unwrap(),
            [1.0, 2.0, 30.0, 40.0]
        );
    }

    #[test]
    fn refusals_are_errors() {
        let x = Tensor::from_slice(&[1.0f32, 2.0]);
        let one = Tensor::from(1.0f32);
        assert!(matches!(
            choose_qparams_affine_float8(&x, QuantDtype::Int8),
            Err(Error::InvalidArgument {
                arg: "float8_dtype",
                ..
            })
        ));
        assert!(matches!(
            quantize_affine_float8(&x, &one, QuantDtype::UInt4),
            Err(Error::InvalidArgument {
                arg: "float8_dtype",
                ..
            })
        ));
        let ints = Tensor::from_slice(&[1i32, 2]);
        assert!(matches!(
            choose_qparams_affine_float8(&ints, QuantDtype::Float8E4M3Fn),
            Err(Error::UnsupportedKind { arg: "input", .. })
        ));
        let doubles = Tensor::from_slice(&[1.0f64]);
        assert!(matches!(
            quantize_affine_float8(&doubles, &one, QuantDtype::Float8E4M3Fn),
            Err(Error::UnsupportedKind { arg: "input", .. })
        ));
        assert!(matches!(
            quantize_affine_float8(&x, &Tensor::from(1i64), QuantDtype::Float8E4M3Fn),
            Err(Error::UnsupportedKind { arg: "scale", .. })
        ));
        let empty = Tensor::from_slice::<f32>(&[]);
        assert!(matches!(
            choose_qparams_affine_float8(&empty, QuantDtype::Float8E4M3Fn),
            Err(Error::ShapeMismatch { arg: "input", .. })
        ));
        let three = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
        assert!(matches!(
            quantize_affine_float8(&x, &three, QuantDtype::Float8E4M3Fn),
            Err(Error::ShapeMismatch { arg: "scale", .. })
        ));
        let grows = Tensor::from_slice(&[1.0f32, 2.0]).view([2, 1]);
        assert!(matches!(
            quantize_affine_float8(&x, &grows, QuantDtype::Float8E4M3Fn),
            Err(Error::ShapeMismatch { arg: "scale", .. })
        ));
        let q = quantize_affine_float8(&x, &one, QuantDtype::Float8E4M3Fn).unwrap();
        assert!(matches!(
            dequantize_affine_float8(&x, &one, Kind::Float),
            Err(Error::UnsupportedKind { arg: "input", .. })
        ));
        assert!(matches!(
            dequantize_affine_float8(&q, &one, Kind::Double),
            Err(Error::InvalidArgument {
                arg: "output_dtype",
                ..
            })
        ));
        assert!(matches!(
            dequantize_affine_float8(&q, &one, Kind::Int),
            Err(Error::InvalidArgument {
                arg: "output_dtype",
                ..
            })
        ));
    }

    #[test]
    fn block_scales_choose_and_expand() {
        let x =
            Tensor::from_slice(&[1.0f32, -2.0, 4.0, 8.0, 16.0, -32.0, 64.0, 128.0]).view([2, 4]);
        let opts = Float8ScaleOptions::default();
        let blocks = choose_scale_float8(&x, &[1, 2], QuantDtype::Float8E4M3Fn, &opts).unwrap();
        assert_eq!(blocks.size(), [2, 2]);
        let want = [2.0f32, 8.0, 32.0, 128.0].map(|a| a / 448.0);
        assert_eq!(Vec::<f32>::try_from(blocks.view(-1)).unwrap(), want);
        let tensor = choose_scale_float8(&x, &[2, 4], QuantDtype::Float8E5M2, &opts).unwrap();
        assert_eq!(tensor.size(), [1, 1]);
        assert_eq!(tensor.double_value(&[0, 0]) as f32, 128.0f32 / 57344.0);
        // Each block's codes are its values over its own scale.
        let q = quantize_affine_float8(&x, &blocks, QuantDtype::Float8E4M3Fn).unwrap();
        let y = dequantize_affine_float8(&q, &blocks, Kind::Float).unwrap();
        assert_eq!(q.size(), [2, 4]);
        let expanded = blocks.repeat_interleave_self_int(2, 1, None);
        let by_hand = quantize_affine_float8(&x, &expanded, QuantDtype::Float8E4M3Fn).unwrap();
        assert_eq!(bits(&q), bits(&by_hand));
        assert_eq!(
            bits(&y),
            bits(&dequantize_affine_float8(&q, &expanded, Kind::Float).unwrap())
        );
    }

    #[test]
    fn bounds_clamp_the_amax() {
        let x = Tensor::from_slice(&[0.0f32, 0.0, 1.0, 8960.0]).view([2, 2]);
        let opts = Float8ScaleOptions {
            hp_value_lb: Some(44.8),
            hp_value_ub: Some(4480.0),
            ..Default::default()
        };
        let s = choose_scale_float8(&x, &[1, 2], QuantDtype::Float8E4M3Fn, &opts).unwrap();
        let got = Vec::<f32>::try_from(s.view(-1)).unwrap();
        assert_eq!(got, [44.8f32 / 448.0, 10.0]);
        let e8m0 = Float8ScaleOptions {
            scale_dtype: Float8ScaleDtype::Float8E8M0Fnu,
            ..opts
        };
        let s = choose_scale_float8(&x, &[1, 2], QuantDtype::Float8E4M3Fn, &e8m0).unwrap();
        assert_eq!(Vec::<f32>::try_from(s.view(-1)).unwrap(), [0.125, 8.0]);
    }

    #[test]
    fn choose_scale_refusals_name_the_argument() {
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([2, 2]);
        let opts = Float8ScaleOptions::default();
        let f8 = QuantDtype::Float8E4M3Fn;
        let arg = |r: Result<Tensor>| match r {
            Err(Error::InvalidArgument { arg, .. })
            | Err(Error::ShapeMismatch { arg, .. })
            | Err(Error::UnsupportedKind { arg, .. }) => arg,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert_eq!(
            arg(choose_scale_float8(&x, &[1, 3], f8, &opts)),
            "block_size"
        );
        assert_eq!(arg(choose_scale_float8(&x, &[2], f8, &opts)), "block_size");
        assert_eq!(
            arg(choose_scale_float8(&x, &[1, 1], f8, &opts)),
            "block_size"
        );
        assert_eq!(
            arg(choose_scale_float8(&x, &[0, 2], f8, &opts)),
            "block_size"
        );
        assert_eq!(
            arg(choose_scale_float8(&x, &[1, 2], QuantDtype::Int8, &opts)),
            "float8_dtype"
        );
        let ints = Tensor::from_slice(&[1i32, 2]);
        assert_eq!(arg(choose_scale_float8(&ints, &[2], f8, &opts)), "input");
        let inverted = Float8ScaleOptions {
            hp_value_lb: Some(2.0),
            hp_value_ub: Some(1.0),
            ..opts
        };
        let err = choose_scale_float8(&x, &[1, 2], f8, &inverted).unwrap_err();
        assert!(
            err.to_string().contains("hp_value_lb") && err.to_string().contains('2'),
            "{err}"
        );
        let nan = Float8ScaleOptions {
            hp_value_ub: Some(f64::NAN),
            ..opts
        };
        assert_eq!(
            arg(choose_scale_float8(&x, &[1, 2], f8, &nan)),
            "hp_value_ub"
        );
        // A scale that neither broadcasts nor gives whole blocks.
        let odd = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
        let wide = Tensor::ones([2, 6], (Kind::Float, Device::Cpu));
        assert_eq!(
            arg(quantize_affine_float8(
                &wide,
                &Tensor::ones([2, 4], (Kind::Float, Device::Cpu)),
                f8
            )),
            "scale"
        );
        assert!(quantize_affine_float8(&wide, &odd, f8).is_ok());
        let q = quantize_affine_float8(&wide, &odd, f8).unwrap();
        assert_eq!(
            arg(dequantize_affine_float8(
                &q,
                &Tensor::ones([4, 6], (Kind::Float, Device::Cpu)),
                Kind::Float
            )),
            "scale"
        );
    }

    #[test]
    fn empty_input_is_refused() {
        let empty = Tensor::from_slice::<f32>(&[]);
        let r = quantize_affine_float8(&empty, &Tensor::from(1.0f32), QuantDtype::Float8E5M2);
        assert!(matches!(r, Err(Error::ShapeMismatch { arg: "input", .. })));
    }
}
