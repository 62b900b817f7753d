//! The MX element casts that have no libtorch dtype: float32 to and from
//! fp6 (e2m3, e3m2) and fp4 (e2m1) codes kept one per uint8, and the
//! packing of two fp4 codes into a byte. Each is torchao 0.18's op sequence
//! (`torchao/prototype/custom_fp_utils.py` and `mx_formats/kernels.py`),
//! issued through libtorch in the same order and dtypes.
//!
//! A code sits in the low bits of its byte: `s eeee m` for fp4 e2m1 is
//! `0000 s e e m`; fp6 e2m3 is `00 s ee mmm`, e3m2 `00 s eee mm`. No code
//! is reserved for infinity or NaN: the cast rounds to nearest, ties to
//! even, and saturates everything at or above the largest magnitude
//! (infinity included) to it, sign kept. A NaN fails every comparison, so
//! its bits are rounded as a normal float32's would be: the canonical NaN
//! becomes the code of 1.5, its sign kept, in all three formats.

use tch::{Device, Kind, Tensor};

use crate::scalar_ops;

const EBITS_F32: i64 = 8;
const MBITS_F32: i64 = 23;
const F32_EXP_BIAS: i64 = 127;

/// The layout of one sub-byte float code: exponent and mantissa widths,
/// after one sign bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SubByteFloat {
    pub(crate) ebits: i64,
    pub(crate) mbits: i64,
}

/// fp4 e2m1: values 0, 0.5, 1, 1.5, 2, 3, 4, 6.
pub(crate) const F4_E2M1: SubByteFloat = SubByteFloat { ebits: 2, mbits: 1 };
/// fp6 e2m3: largest 7.5, smallest subnormal 0.125.
pub(crate) const F6_E2M3: SubByteFloat = SubByteFloat { ebits: 2, mbits: 3 };
/// fp6 e3m2: largest 28, smallest subnormal 0.0625.
pub(crate) const F6_E3M2: SubByteFloat = SubByteFloat { ebits: 3, mbits: 2 };

fn n_ones(n: i64) -> i64 {
    (1 << n) - 1
}

impl SubByteFloat {
    fn exp_bias(self) -> i64 {
        n_ones(self.ebits - 1)
    }

    /// The largest magnitude, `2^(2^ebits - 1 - bias) * (2 - 2^-mbits)`,
    /// as torchao computes it in Python floats.
    fn max_normal(self) -> f64 {
        let exp = (n_ones(self.ebits) - self.exp_bias()) as i32;
        2f64.powi(exp) * (n_ones(self.mbits + 1) as f64 / 2f64.powi(self.mbits as i32))
    }

    fn min_normal(self) -> f64 {
        2f64.powi((1 - self.exp_bias()) as i32)
    }

    fn sign_mask(self) -> i64 {
        1 << (self.ebits + self.mbits)
    }
}

/// A 0-d int32 tensor on `device` (the value torchao assigns through a
/// boolean mask, `t[mask] = v`).
fn int32_scalar(v: i64, device: Device) -> Result<Tensor, tch::TchError> {
    Tensor::f_from_slice(&[v as i32])?
        .f_view(())?
        .f_to_device(device)
}

/// `_f32_to_floatx_unpacked(x, ebits, mbits)`: float32 `x` to codes of
/// `format`, one per uint8.
///
/// On the magnitude's bits: values at or above the largest magnitude take
/// the all-ones code; values below the smallest normal are added to
/// `2^(denorm_exp - 127)`, so that the float32 addition rounds the
/// subnormal's mantissa to nearest even, and the bias subtracted back;
/// normal values get the exponent rebiased and `2^(22 - mbits) - 1 + odd`
/// added before the shift, which rounds to nearest, ties to even. The sign
/// bit is moved to bit `ebits + mbits`.
pub(crate) fn f32_to_floatx_unpacked(
    x: &Tensor,
    format: SubByteFloat,
) -> Result<Tensor, tch::TchError> {
    let SubByteFloat { ebits, mbits } = format;
    let exp_bias = format.exp_bias();
    let max_int = n_ones(ebits + mbits);
    let magic_adder = n_ones(MBITS_F32 - mbits - 1);
    let denorm_exp = (F32_EXP_BIAS - exp_bias) + (MBITS_F32 - mbits) + 1;
    let denorm_mask_int = denorm_exp << MBITS_F32;
    // torchao builds this 0-d tensor on the CPU whatever x's device; a 0-d
    // CPU operand is accepted beside tensors on any device.
    let denorm_mask_float = Tensor::f_from_slice(&[denorm_mask_int as i32])?
        .f_view(())?
        .f_view_dtype(Kind::Float)?;

    let bits = x.f_view_dtype(Kind::Int)?;
    // Python's 0x80000000, an int64 scalar libtorch narrows to int32.
    let sign = scalar_ops::bitwise_and(&bits, 0x8000_0000i64)?;
    let magnitude = bits
        .f_bitwise_xor_tensor(&sign)?
        .f_view_dtype(Kind::Float)?;

    let saturate_mask = scalar_ops::ge(&magnitude, format.max_normal())?;
    let denormal_mask = saturate_mask
        .f_logical_not()?
        .f_logical_and(&scalar_ops::lt(&magnitude, format.min_normal())?)?;
    let normal_mask = saturate_mask
        .f_logical_or(&denormal_mask)?
        .f_logical_not()?;

    let denormal_x = magnitude
        .f_add(&denorm_mask_float)?
        .f_view_dtype(Kind::Int)?;
    let denormal_x = scalar_ops::sub(&denormal_x, denorm_mask_int)?.f_to_kind(Kind::Uint8)?;

    let normal_x = magnitude.f_view_dtype(Kind::Int)?;
    let mant_odd = scalar_ops::bitwise_and(
        &scalar_ops::shift_right(&normal_x, MBITS_F32 - mbits)?,
        1i64,
    )?;
    let val_to_add = ((exp_bias - F32_EXP_BIAS) << MBITS_F32) + magic_adder;
    let normal_x = scalar_ops::add(&normal_x, val_to_add)?.f_add(&mant_odd)?;
    let normal_x = scalar_ops::shift_right(&normal_x, MBITS_F32 - mbits)?.f_to_kind(Kind::Uint8)?;

    let saturated = scalar_ops::full_like(
        &Tensor::f_empty(magnitude.size(), (Kind::Uint8, x.device()))?,
        max_int,
    )?;
    let combined = denormal_x.f_where_self(&denormal_mask, &saturated)?;
    let combined = normal_x.f_where_self(&normal_mask, &combined)?;

    let sign_lp = scalar_ops::shift_right(&sign, MBITS_F32 + EBITS_F32 - mbits - ebits)?
        .f_to_kind(Kind::Uint8)?;
    // The arithmetic shift of a negative int32 fills the high bits with
    // ones; the mask keeps the sign bit alone.
    let sign_lp = scalar_ops::bitwise_and(&sign_lp, format.sign_mask())?;
    combined
        .f_bitwise_or_tensor(&sign_lp)?
        .f_to_kind(Kind::Uint8)
}

/// `_floatx_unpacked_to_f32(x, ebits, mbits)`: codes of `format`, one per
/// uint8, to their float32 values.
///
/// The exponent is rebiased in uint8 arithmetic (so bits above the code
/// wrap as torchao's do); zero codes are set to 0; subnormal codes (zero
/// exponent, nonzero mantissa) get the float32 bits of `m * 2^(1 - bias -
/// mbits)`, per mantissa value, as torchao assigns them; the sign is moved
/// to bit 31.
pub(crate) fn floatx_unpacked_to_f32(
    x: &Tensor,
    format: SubByteFloat,
) -> Result<Tensor, tch::TchError> {
    let SubByteFloat { ebits, mbits } = format;
    let exp_bias = format.exp_bias();
    let device = x.device();

    let sign_lp = scalar_ops::bitwise_and(x, format.sign_mask())?;
    let x_pos = x.f_bitwise_xor_tensor(&sign_lp)?;
    let zero_mask = scalar_ops::eq(&x_pos, 0i64)?;
    let denormal_mask = scalar_ops::gt(&x_pos, 0i64)?.f_logical_and(&scalar_ops::eq(
        &scalar_ops::shift_right(&x_pos, mbits)?,
        0i64,
    )?)?;

    let exp_biased_lp = scalar_ops::shift_right(&x_pos, mbits)?;
    let exp_biased_f32 =
        scalar_ops::add(&scalar_ops::sub(&exp_biased_lp, exp_bias)?, F32_EXP_BIAS)?;
    let exp_biased_f32 = scalar_ops::shift_left(&exp_biased_f32.f_to_kind(Kind::Int)?, MBITS_F32)?;

    let mut mantissa_lp_int32 =
        scalar_ops::bitwise_and(&x_pos, n_ones(mbits))?.f_to_kind(Kind::Int)?;
    let mantissa_f32 = scalar_ops::shift_left(&mantissa_lp_int32, MBITS_F32 - mbits)?;
    let mut result = exp_biased_f32.f_bitwise_or_tensor(&mantissa_f32)?;

    let _ = result.f_index_put_(&[Some(&zero_mask)], &int32_scalar(0, device)?, false)?;

    let denormal_exp_biased = 1 - exp_bias + F32_EXP_BIAS;
    if mbits == 1 {
        let value = int32_scalar((denormal_exp_biased - mbits) << MBITS_F32, device)?;
        let _ = result.f_index_put_(&[Some(&denormal_mask)], &value, false)?;
    } else {
        // Subnormal mantissa m with its leading one at bit i: shift it into
        // the implicit bit and lower the exponent by the same amount. The
        // assigned values (>= 2^23) never equal a later m.
        for i in 0..mbits {
            for mantissa_cmp in (1i64 << i)..(1i64 << (i + 1)) {
                let left_shift = mbits - i;
                let mantissa = (mantissa_cmp - (1 << i)) << (left_shift + MBITS_F32 - mbits);
                let exponent = (denormal_exp_biased - left_shift) << MBITS_F32;
                let hit = scalar_ops::eq(&mantissa_lp_int32, mantissa_cmp)?;
                let value = int32_scalar(exponent + mantissa, device)?;
                let _ = mantissa_lp_int32.f_index_put_(&[Some(&hit)], &value, false)?;
            }
        }
        result = mantissa_lp_int32.f_where_self(&denormal_mask, &result)?;
    }

    let sign_f32 = scalar_ops::shift_left(
        &sign_lp.f_to_kind(Kind::Int)?,
        MBITS_F32 - mbits + EBITS_F32 - ebits,
    )?;
    result
        .f_bitwise_or_tensor(&sign_f32)?
        .f_view_dtype(Kind::Float)
}

/// `pack_uint4`: the codes in flat (row-major) order, two per byte, the
/// even-indexed code in the low nibble and the odd-indexed one in the high
/// nibble; the last dim halves. The caller checks it is even.
pub(crate) fn pack_uint4(codes: &Tensor) -> Result<Tensor, tch::TchError> {
    let mut shape = codes.size();
    let flat = codes.f_contiguous()?.f_view([-1i64])?;
    let low = flat.f_slice(0, None, None, 2)?;
    let high = scalar_ops::shift_left(&flat.f_slice(0, Some(1), None, 2)?, 4i64)?;
    if let Some(last) = shape.last_mut() {
        *last /= 2;
    }
    low.f_bitwise_or_tensor(&high)?.f_view(shape.as_slice())
}

/// `unpack_uint4`: each byte to its low nibble then its high nibble, as
/// uint8; the last dim doubles. The caller checks `packed` is contiguous.
pub(crate) fn unpack_uint4(packed: &Tensor) -> Result<Tensor, tch::TchError> {
    let mut shape = packed.size();
    let first = scalar_ops::bitwise_and(packed, 0b1111i64)?.f_to_kind(Kind::Uint8)?;
    let second = scalar_ops::shift_right(packed, 4i64)?.f_to_kind(Kind::Uint8)?;
    if let Some(last) = shape.last_mut() {
        *last *= 2;
    }
    Tensor::f_stack(&[first, second], -1)?.f_view(shape.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(x: &[f32], format: SubByteFloat) -> Vec<u8> {
        let t = f32_to_floatx_unpacked(&Tensor::from_slice(x), format).unwrap();
        Vec::<u8>::try_from(t).unwrap()
    }

    fn values(c: &[u8], format: SubByteFloat) -> Vec<f32> {
        let t = floatx_unpacked_to_f32(&Tensor::from_slice(c), format).unwrap();
        Vec::<f32>::try_from(t).unwrap()
    }

    #[test]
    fn largest_magnitudes() {
        assert_eq!(F4_E2M1.max_normal(), 6.0);
        assert_eq!(F6_E2M3.max_normal(), 7.5);
        assert_eq!(F6_E3M2.max_normal(), 28.0);
    }

    #[test]
    fn e2m1_rounds_ties_to_even_saturates_and_keeps_the_sign() {
        let x = [0.25f32, 0.75, 2.5, 5.0, 7.0, f32::INFINITY, -0.0, -1.5];
        assert_eq!(codes(&x, F4_E2M1), [0, 2, 4, 6, 7, 7, 8, 11]);
    }

    #[test]
    fn every_code_round_trips() {
        for format in [F4_E2M1, F6_E2M3, F6_E3M2] {
            let all: Vec<u8> = (0..(2 * format.sign_mask()) as u8).collect();
            assert_eq!(codes(&values(&all, format), format), all, "{format:?}");
        }
    }

    #[test]
    fn packing_puts_the_even_code_low() {
        let c = Tensor::from_slice(&[1u8, 2, 3, 4]).view([1, 4]);
        let packed = pack_uint4(&c).unwrap();
        assert_eq!(packed.size(), [1, 2]);
        assert_eq!(
            Vec::<u8>::try_from(packed.view([-1])).unwrap(),
            [0x21, 0x43]
        );
        let back = unpack_uint4(&packed).unwrap();
        assert_eq!(Vec::<u8>::try_from(back.view([-1])).unwrap(), [1, 2, 3, 4]);
    }
}
