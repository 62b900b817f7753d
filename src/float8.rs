//! Tensorwise float8 quantization: torchao's `choose_qparams_affine_float8`,
//! `quantize_affine_float8` and `dequantize_affine_float8`.
//!
//! Float8 codes are libtorch float8 tensors; the scale is a float32 tensor
//! (one value for the whole tensor when it comes from
//! [`choose_qparams_affine_float8`]).

use tch::{Device, Kind, Tensor};

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

/// Quantizes `input` to `float8_dtype` codes, bit-identical to torchao 0.11's
/// `quantize_affine_float8`.
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
/// `scale` must be float32, float16 or bfloat16 and broadcast to the input's
/// shape (a 0-d tensorwise scale, or e.g. one scale per row shaped
/// `[rows, 1]`); the codes have the input's shape.
///
/// # Errors
/// `float8_dtype` not a float8 kind; `input` or `scale` not
/// float32/float16/bfloat16; `scale` not broadcastable to the input's shape,
/// or on another device (a 0-d CPU scale is accepted with any input, as in
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
    check_scale(OP, scale, input)?;
    let compute = || -> std::result::Result<Tensor, tch::TchError> {
        let scaled = input.f_to_kind(Kind::Float)?.f_div(scale)?;
        scalar_ops::clamp(&scaled, -fmax, fmax)?.f_to_kind(float8_dtype.storage_kind())
    };
    compute().op(OP)
}

/// Dequantizes float8 codes, bit-identical to torchao 0.11's
/// `dequantize_affine_float8`.
///
/// `output = to(output_dtype, float32(codes) * scale)`: the codes are
/// widened exactly to float32, multiplied by `scale` in float32 (one
/// rounding) and cast to `output_dtype` (a second rounding, to nearest even,
/// for float16 and bfloat16). NaN codes give NaN, the e5m2 infinities give
/// infinities.
///
/// # Errors
/// `input` not a float8 tensor; `scale` not float32/float16/bfloat16, not
/// broadcastable to the input's shape, or on another device (0-d CPU scales
/// excepted); `output_dtype` not float32/float16/bfloat16.
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
    check_scale(OP, scale, input)?;
    check_output_float(OP, output_dtype)?;
    let compute = || -> std::result::Result<Tensor, tch::TchError> {
        input
            .f_to_kind(Kind::Float)?
            .f_mul(scale)?
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

/// A float scale that broadcasts to `input`'s shape without growing it, on
/// `input`'s device (libtorch also takes a 0-d CPU tensor as a scalar).
fn check_scale(op: &'static str, scale: &Tensor, input: &Tensor) -> Result<()> {
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
    if !broadcasts {
        return Err(Error::ShapeMismatch {
            op,
            arg: "scale",
            got: shape,
            reason: format!("must broadcast to the input's shape {target:?}"),
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
    Ok(())
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
    fn empty_input_is_refused() {
        let empty = Tensor::from_slice::<f32>(&[]);
        let r = quantize_affine_float8(&empty, &Tensor::from(1.0f32), QuantDtype::Float8E5M2);
        assert!(matches!(r, Err(Error::ShapeMismatch { arg: "input", .. })));
    }
}
