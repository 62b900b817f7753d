//! The e8m0 block scale of `to_mx`, per [`ScaleCalculationMode`], and its
//! float32 value (`get_fp_scale`): torchao 0.18's op sequences
//! (`mx_formats/mx_tensor.py`), issued through libtorch in the same order
//! and dtypes.
//!
//! An e8m0 scale is a biased power-of-two exponent `e` in a byte: the
//! scale is `2^(e - 127)`, `e` from 0 (`2^-127`) to 254 (`2^127`), and 255
//! is NaN. libtorch's `float8_e8m0fnu` has no `tch::Kind`, so the crate
//! keeps these bytes as uint8 (torchao's scale viewed as `torch.uint8`).

use tch::{Kind, Tensor};

use super::{MxElemDtype, ScaleCalculationMode};
use crate::scalar_ops;

/// The exponent bias of e8m0 and of float32.
pub(crate) const E8M0_EXPONENT_BIAS: i64 = 127;
/// The e8m0 byte of NaN.
pub(crate) const E8M0_EXPONENT_NAN_VAL: i64 = 255;
/// The smallest normal float32, `2^-126`: the floor torchao puts under the
/// float32 scale of the FLOOR, CEIL and EVEN modes.
const F32_MIN_NORMAL: f64 = f32::MIN_POSITIVE as f64;
const MBITS_F32: i64 = 23;
const EBITS_F32: i64 = 8;
const SBITS: i64 = 1;

/// The e8m0 scale bytes (uint8, the block's trailing dim of 1 kept) and
/// the scaled float32 data, clamped to the element's range where torchao
/// clamps, still to be cast to the element dtype.
pub(crate) struct Scaled {
    pub(crate) scale_e8m0: Tensor,
    pub(crate) data_lp: Tensor,
}

/// Scales float32 blocks `data_hp` (`(..., blocks, block_size)`) by the
/// power of two of their float32 amax `max_abs` (`(..., blocks, 1)`).
pub(crate) fn scale_blocks(
    data_hp: &Tensor,
    max_abs: &Tensor,
    elem: MxElemDtype,
    mode: ScaleCalculationMode,
) -> Result<Scaled, tch::TchError> {
    match mode {
        ScaleCalculationMode::Rceil => rceil(data_hp, max_abs, elem.max_pos()),
        ScaleCalculationMode::Floor | ScaleCalculationMode::Ceil | ScaleCalculationMode::Even => {
            power_of_two(data_hp, max_abs, elem, mode)
        }
    }
}

/// `_to_mx_rceil`: `e = clamp(ceil(log2(amax / max_pos)), -127, 127) + 127`
/// (255 for a NaN amax, 254 for an infinite one), and the data multiplied
/// by the reciprocal `2^(127 - e)` (the amax itself for NaN, `2^-127` for
/// infinity, 1 for `e = 0`), then clamped to `[-max_pos, max_pos]`.
fn rceil(data_hp: &Tensor, max_abs: &Tensor, max_pos: f64) -> Result<Scaled, tch::TchError> {
    let descale = scalar_ops::div(max_abs, max_pos)?;
    let normal = scalar_ops::add(
        &scalar_ops::clamp(
            &descale.f_log2()?.f_ceil()?,
            -E8M0_EXPONENT_BIAS,
            E8M0_EXPONENT_BIAS,
        )?,
        E8M0_EXPONENT_BIAS,
    )?
    .f_to_kind(Kind::Uint8)?;
    let exponent = scalar_ops::where_scalar_self(
        &descale.f_isnan()?,
        255i64,
        &scalar_ops::where_scalar_self(&descale.f_isinf()?, 254i64, &normal)?,
    )?;

    let reciprocal =
        scalar_ops::rsub(&exponent.f_to_kind(Kind::Float)?, E8M0_EXPONENT_BIAS)?.f_exp2()?;
    let reciprocal =
        scalar_ops::where_scalar_self(&scalar_ops::eq(&exponent, 0i64)?, 1.0, &reciprocal)?;
    let reciprocal = scalar_ops::where_scalar_self(
        &scalar_ops::eq(&exponent, 254i64)?,
        2f64.powi(-127),
        &reciprocal,
    )?;
    let reciprocal = descale.f_where_self(&scalar_ops::eq(&exponent, 255i64)?, &reciprocal)?;

    let data_lp = scalar_ops::clamp(&data_hp.f_mul(&reciprocal)?, -max_pos, max_pos)?;
    Ok(Scaled {
        scale_e8m0: exponent,
        data_lp,
    })
}

/// The FLOOR, CEIL and EVEN modes, on the amax's float32 bits: its
/// unbiased exponent `p` (EVEN first rounds the amax to `mbits` mantissa
/// bits, half up, by adding `2^(22 - mbits)` to the bits and clearing the
/// mantissa; CEIL adds one when the mantissa is nonzero), less the
/// element's largest power of two, clamped to `[-127, 128]` and biased
/// (255 for a NaN amax). The data is divided by that scale as float32
/// (bits `e << 23`, at least `2^-126`); float8 elements are then clamped to
/// their range.
fn power_of_two(
    data_hp: &Tensor,
    max_abs: &Tensor,
    elem: MxElemDtype,
    mode: ScaleCalculationMode,
) -> Result<Scaled, tch::TchError> {
    let mut max_abs = max_abs.shallow_clone();
    if mode == ScaleCalculationMode::Even {
        let nan_mask = max_abs.f_isnan()?;
        let bits = max_abs.f_view_dtype(Kind::Int)?;
        let val_to_add = 1i64 << (MBITS_F32 - elem.mbits() - 1);
        // Python's int 0xff800000: an int64 scalar libtorch narrows to
        // int32, keeping the sign and exponent.
        let mask = ((1i64 << (EBITS_F32 + SBITS)) - 1) << MBITS_F32;
        let rounded = scalar_ops::bitwise_and(&scalar_ops::add(&bits, val_to_add)?, mask)?;
        max_abs = rounded.f_view_dtype(Kind::Float)?;
        let nan = Tensor::f_from_slice(&[f32::NAN])?
            .f_view(())?
            .f_to_device(max_abs.device())?;
        let _ = max_abs.f_index_put_(&[Some(&nan_mask)], &nan, false)?;
    }

    let max_abs_int32 = max_abs.f_view_dtype(Kind::Int)?;
    let extracted_pow2 = scalar_ops::sub(
        &scalar_ops::bitwise_and(
            &scalar_ops::shift_right(&max_abs_int32, MBITS_F32)?,
            0xffi64,
        )?,
        E8M0_EXPONENT_BIAS,
    )?;
    let extracted_pow2 = if mode == ScaleCalculationMode::Ceil {
        let mantissa_gt_one = scalar_ops::gt(
            &scalar_ops::bitwise_and(&max_abs_int32, 0x7f_ffffi64)?,
            0i64,
        )?;
        extracted_pow2.f_add(&mantissa_gt_one)?
    } else {
        extracted_pow2
    };
    let unbiased = scalar_ops::sub(&extracted_pow2, elem.max_pow2())?;
    let unbiased = scalar_ops::clamp(&unbiased, -E8M0_EXPONENT_BIAS, E8M0_EXPONENT_BIAS + 1)?;
    let biased = scalar_ops::add(&unbiased, E8M0_EXPONENT_BIAS)?.f_to_kind(Kind::Uint8)?;
    let scale_e8m0 =
        scalar_ops::where_scalar_self(&max_abs.f_isnan()?, E8M0_EXPONENT_NAN_VAL, &biased)?;

    let scale_fp32 = scalar_ops::shift_left(&scale_e8m0.f_to_kind(Kind::Int)?, MBITS_F32)?
        .f_view_dtype(Kind::Float)?;
    let scale_fp32 = scalar_ops::clamp_min(&scale_fp32, F32_MIN_NORMAL)?;
    let mut data_lp = data_hp.f_div(&scale_fp32)?;
    if elem.is_float8() {
        let max_pos = elem.max_pos();
        data_lp = scalar_ops::clamp(&data_lp, -max_pos, max_pos)?;
    }
    Ok(Scaled {
        scale_e8m0,
        data_lp,
    })
}

/// `get_fp_scale`: the float32 value of e8m0 bytes, `2^(e - 127)` computed
/// as `pow(2.0, e - 127)` with the exponent in int16, NaN for 255.
pub(crate) fn get_fp_scale(scale_e8m0: &Tensor) -> Result<Tensor, tch::TchError> {
    let s_offset = scalar_ops::sub(&scale_e8m0.f_to_kind(Kind::Int16)?, E8M0_EXPONENT_BIAS)?;
    let two = scalar_ops::full_like(
        &Tensor::f_empty(s_offset.size(), (Kind::Float, s_offset.device()))?,
        2.0,
    )?;
    let s_fp = two.f_pow(&s_offset)?;
    scalar_ops::where_scalar_other(
        &scalar_ops::ne(scale_e8m0, E8M0_EXPONENT_NAN_VAL)?,
        &s_fp,
        f64::NAN,
    )
}
