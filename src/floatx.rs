//! Sub-byte floating point ("floatx", e.g. fp6 e3m2, fp4 e2m1) quantization:
//! torchao's `choose_qparams_affine_floatx`, `quantize_affine_floatx` and
//! `dequantize_affine_floatx`.
//!
//! A floatx format has 1 sign bit, `ebits` exponent bits and `mbits`
//! mantissa bits, with exponent bias `2^(ebits-1) - 1`, subnormals, and no
//! infinities or NaN: every bit pattern is a finite number. Codes are stored
//! unpacked, one per uint8, in the low `1 + ebits + mbits` bits
//! (`00SEEEMM` for e3m2). torchao accepts `ebits >= 1`, `mbits >= 0` and
//! `1 + ebits + mbits <= 8`: 28 formats, from e1m0 to e7m0.

use tch::{Kind, Tensor};

use crate::dtype::{check_output_float, is_input_float, INPUT_FLOATS};
use crate::error::{Error, Result, TorchContext};
use crate::qparams::{check_float_input, check_not_empty};
use crate::scalar_ops;
use crate::strided::check_strided;

const MBITS_F32: u32 = 23;
const EBITS_F32: u32 = 8;
const F32_EXP_BIAS: i64 = 127;

/// The constants of one validated floatx format.
/// A floatx format torchao accepts: a sign bit, `ebits` exponent bits and
/// `mbits` mantissa bits in at most 8 bits, without infinities or NaN (the
/// top exponent is a normal binade), exponent bias `2^(ebits-1) - 1`; the
/// codes are stored one per uint8 as `00SEEEMM`-style bytes.
///
/// # Examples
/// ```
/// use tch_quant::FloatxDtype;
/// let fp6 = FloatxDtype::new(3, 2)?;
/// assert_eq!(fp6, FloatxDtype::FP6_E3M2);
/// assert_eq!((fp6.ebits(), fp6.mbits()), (3, 2));
/// assert_eq!(fp6.to_string(), "fp6_e3m2");
/// assert!(FloatxDtype::new(4, 4).is_err()); // 9 bits
/// # Ok::<(), tch_quant::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FloatxDtype {
    ebits: u32,
    mbits: u32,
}

impl std::fmt::Display for FloatxDtype {
    /// `fp{1 + ebits + mbits}_e{ebits}m{mbits}`, e.g. `fp6_e3m2`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bits = 1 + self.ebits + self.mbits;
        write!(f, "fp{bits}_e{}m{}", self.ebits, self.mbits)
    }
}

impl FloatxDtype {
    /// fp6 with 3 exponent and 2 mantissa bits (largest value 28).
    pub const FP6_E3M2: FloatxDtype = FloatxDtype { ebits: 3, mbits: 2 };
    /// fp6 with 2 exponent and 3 mantissa bits (largest value 7.5).
    pub const FP6_E2M3: FloatxDtype = FloatxDtype { ebits: 2, mbits: 3 };
    /// fp5 with 2 exponent and 2 mantissa bits.
    pub const FP5_E2M2: FloatxDtype = FloatxDtype { ebits: 2, mbits: 2 };
    /// fp4 with 2 exponent bits and 1 mantissa bit (largest value 6).
    pub const FP4_E2M1: FloatxDtype = FloatxDtype { ebits: 2, mbits: 1 };

    /// The format with `ebits` exponent and `mbits` mantissa bits.
    ///
    /// # Errors
    /// `ebits` outside `1..=7`, or `1 + ebits + mbits > 8`.
    pub fn new(ebits: u32, mbits: u32) -> Result<Self> {
        const OP: &str = "FloatxDtype::new";
        let op = OP;
        if !(1..=7).contains(&ebits) {
            return Err(Error::invalid(
                op,
                "ebits",
                ebits,
                "must be 1 to 7: a floatx format has a sign bit and at least one exponent bit \
                 in 8 bits",
            ));
        }
        if mbits > 7 - ebits {
            return Err(Error::invalid(
                op,
                "mbits",
                mbits,
                format!(
                    "1 + ebits + mbits must be at most 8, so at most {} for ebits = {ebits}",
                    7 - ebits
                ),
            ));
        }
        Ok(FloatxDtype { ebits, mbits })
    }

    /// Exponent bits.
    pub fn ebits(self) -> u32 {
        self.ebits
    }

    /// Mantissa bits.
    pub fn mbits(self) -> u32 {
        self.mbits
    }

    fn exp_bias(self) -> i64 {
        (1 << (self.ebits - 1)) - 1
    }

    /// Largest finite magnitude: all exponent and mantissa bits set. Exact
    /// in f64 (and in f32) for every accepted format.
    fn max_normal(self) -> f64 {
        let exponent = ((1i64 << self.ebits) - 1 - self.exp_bias()) as i32;
        let mantissa = ((1u64 << (self.mbits + 1)) - 1) as f64 / (1u64 << self.mbits) as f64;
        2f64.powi(exponent) * mantissa
    }

    fn sign_mask(self) -> i64 {
        1 << (self.ebits + self.mbits)
    }
}

/// Chooses one floatx scale per row of the 2-D `input`, bit-identical to
/// torchao 0.11's `choose_qparams_affine_floatx`.
///
/// In float32, `scale = max(amax(|row|), 1e-12) / max_normal`, where
/// `max_normal = 2^(2^(ebits-1)) * (2 - 2^-mbits)` is the format's largest
/// value (28 for e3m2, 7.5 for e2m3, 6 for e2m1); the division is libtorch's
/// division by a scalar (which CUDA performs as a multiply by the
/// reciprocal). The scale is then cast to the input's dtype, rounding to
/// nearest even. NaN in a row gives a NaN scale.
///
/// # Errors
/// `input` not float32/float16/bfloat16, not 2-D,
/// or empty.
///
/// # Examples
/// ```
/// use tch::Tensor;
/// use tch_quant::{choose_qparams_affine_floatx, FloatxDtype};
/// let w = Tensor::from_slice(&[1.0f32, -56.0, 0.0, 14.0]).view([2, 2]);
/// let scale = choose_qparams_affine_floatx(&w, FloatxDtype::FP6_E3M2)?; // max 28
/// assert_eq!(Vec::<f32>::try_from(scale)?, [2.0, 0.5]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn choose_qparams_affine_floatx(input: &Tensor, format: FloatxDtype) -> Result<Tensor> {
    const OP: &str = "choose_qparams_affine_floatx";
    check_strided(OP, "input", input)?;
    let kind = check_float_input(OP, "input", input)?;
    check_2d(OP, "input", input)?;
    check_not_empty(OP, "input", input)?;
    let compute = || -> std::result::Result<Tensor, tch::TchError> {
        let amax = input
            .f_to_kind(Kind::Float)?
            .f_abs()?
            .f_amax([1i64].as_slice(), false)?;
        scalar_ops::div(&scalar_ops::clamp_min(&amax, 1e-12)?, format.max_normal())?.f_to_kind(kind)
    };
    compute().op(OP)
}

/// Quantizes the 2-D `input` to unpacked floatx codes with one scale per row,
/// bit-identical to torchao 0.11's `quantize_affine_floatx`.
///
/// `x = float32(input) / scale[row]` (float32 division, one rounding), then
/// `x` is rounded to the nearest floatx value, ties to even, by integer
/// manipulation of its float32 bits:
/// - `|x| >= max_normal` (infinities included) saturates to the largest
///   code, sign kept;
/// - `|x| < 2^(1 - bias)` becomes a subnormal code (or rounds up to the
///   smallest normal);
/// - otherwise the exponent is rebiased and the mantissa rounded; a value
///   that rounds past `max_normal` also lands on the largest code.
///
/// The code is `sign << (ebits + mbits) | magnitude` in a uint8 with the
/// input's shape; `-0.0` gives the negative-zero code.
///
/// NaN has no floatx encoding and is not detected, as in torchao: it takes
/// the normal-range path and its code is whatever the rebiasing makes of the
/// NaN's bits. For e3m2 the default quiet NaN gives `0x0e` (1.5) and its
/// negative `0x2e` (-1.5); for e1m0 a NaN even sets bits above the format
/// (`0x81`). The NaN a division produces differs between devices: the CPU
/// keeps the input NaN's sign and payload and makes `0/0` a negative NaN,
/// CUDA gives a canonical positive NaN. NaN codes can therefore differ
/// between CPU and CUDA, exactly as they do in torchao.
///
/// # Errors
/// `input` or `scale` not
/// float32/float16/bfloat16; `input` not 2-D; `scale` without one element
/// per row of `input` or on another device.
///
/// # Examples
/// ```
/// use tch::Tensor;
/// use tch_quant::{quantize_affine_floatx, FloatxDtype};
/// let x = Tensor::from_slice(&[1.0f32, -3.0, 100.0, 0.0625]).view([1, 4]);
/// let codes = quantize_affine_floatx(&x, &Tensor::from_slice(&[1.0f32]), FloatxDtype::FP6_E3M2)?;
/// // e3m2 (bias 3): 1.0 = 0b0_011_00, -3.0 = 0b1_100_10, 100 saturates to 28,
/// // 0.0625 = 0.25 * 2^-2 is the subnormal 0b0_000_01.
/// assert_eq!(Vec::<u8>::try_from(codes.view(-1))?, [0x0c, 0x32, 0x1f, 0x01]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn quantize_affine_floatx(
    input: &Tensor,
    scale: &Tensor,
    format: FloatxDtype,
) -> Result<Tensor> {
    const OP: &str = "quantize_affine_floatx";
    check_strided(OP, "input", input)?;
    check_strided(OP, "scale", scale)?;
    check_float_input(OP, "input", input)?;
    check_not_empty(OP, "input", input)?;
    check_row_scale(OP, scale, input)?;
    let compute = || -> std::result::Result<Tensor, tch::TchError> {
        let scaled = input
            .f_to_kind(Kind::Float)?
            .f_div(&scale.f_reshape([-1i64, 1].as_slice())?)?;
        f32_to_floatx(&scaled, format)
    };
    compute().op(OP)
}

/// Dequantizes unpacked floatx codes with one scale per row, bit-identical
/// to torchao 0.11's `dequantize_affine_floatx`.
///
/// Each code is first decoded exactly to float32 (sign, rebiased exponent,
/// mantissa; subnormals included), then multiplied by `scale[row]` in float32
/// (one rounding) and cast to `output_dtype` (rounding to nearest even for
/// float16/bfloat16).
///
/// Codes with bits set above the format's `1 + ebits + mbits` (which
/// [`quantize_affine_floatx`] produces only from NaN) are decoded the way
/// torchao decodes them, to the same numbers.
///
/// # Errors
/// `input` not uint8 or not 2-D;
/// `scale` not float32/float16/bfloat16, without one element per row, or on
/// another device; `output_dtype` not float32/float16/bfloat16.
///
/// # Examples
/// ```
/// use tch::{Kind, Tensor};
/// use tch_quant::{dequantize_affine_floatx, FloatxDtype};
/// let codes = Tensor::from_slice(&[0x0cu8, 0x32, 0x1f, 0x01]).view([1, 4]);
/// let x = dequantize_affine_floatx(&codes, &Tensor::from_slice(&[2.0f32]),
///                                  FloatxDtype::FP6_E3M2, Kind::Float)?;
/// assert_eq!(Vec::<f32>::try_from(x.view(-1))?, [2.0, -6.0, 56.0, 0.125]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn dequantize_affine_floatx(
    input: &Tensor,
    scale: &Tensor,
    format: FloatxDtype,
    output_dtype: Kind,
) -> Result<Tensor> {
    const OP: &str = "dequantize_affine_floatx";
    check_strided(OP, "input", input)?;
    check_strided(OP, "scale", scale)?;
    if input.kind() != Kind::Uint8 {
        return Err(Error::UnsupportedKind {
            op: OP,
            arg: "input",
            expected: "uint8 (unpacked floatx codes)",
            got: input.kind(),
        });
    }
    check_row_scale(OP, scale, input)?;
    check_output_float(OP, output_dtype)?;
    let table = decode_table(format);
    let compute = || -> std::result::Result<Tensor, tch::TchError> {
        let table = Tensor::f_from_slice(&table)?.f_to(input.device())?;
        let values = table
            .f_take(&input.f_to_kind(Kind::Int64)?)?
            .f_view_dtype(Kind::Float)?;
        let scale = scale
            .f_to_kind(Kind::Float)?
            .f_reshape([-1i64, 1].as_slice())?;
        values.f_mul(&scale)?.f_to_kind(output_dtype)
    };
    compute().op(OP)
}

/// torchao's float32 to floatx conversion, `_f32_to_floatx_unpacked`, op
/// for op: the three branches (saturate, subnormal, normal) are computed for
/// every element on the float32 bits and combined with masks, so that every
/// intermediate, NaN included, matches. torchao 0.11 and 0.18 share that
/// function, and so do this module and MX's fp6/fp4 elements
/// (`mx/elements.rs`).
fn f32_to_floatx(x: &Tensor, format: FloatxDtype) -> std::result::Result<Tensor, tch::TchError> {
    crate::mx::f32_to_floatx_unpacked(
        x,
        crate::mx::SubByteFloat {
            ebits: format.ebits as i64,
            mbits: format.mbits as i64,
        },
    )
}

/// The float32 bits torchao's `_floatx_unpacked_to_f32` gives each of the
/// 256 uint8 codes, as int32.
///
/// torchao computes the exponent in uint8 arithmetic, so codes with bits
/// above the format wrap modulo 256 exactly as here; for valid codes the
/// table is the exact value of the code.
fn decode_table(format: FloatxDtype) -> Vec<i32> {
    let (ebits, mbits) = (format.ebits, format.mbits);
    let exp_bias = format.exp_bias();
    let subnormal_exp = 1 - exp_bias + F32_EXP_BIAS;
    (0u32..256)
        .map(|code| {
            let sign = code & format.sign_mask() as u32;
            let magnitude = code ^ sign;
            let mantissa = magnitude & ((1u32 << mbits) - 1);
            let bits: u32 = if magnitude == 0 {
                0
            } else if magnitude >> mbits == 0 {
                // A subnormal m * 2^(1 - bias - mbits): shift the leading one
                // of m into the implicit bit.
                let lead = 31 - mantissa.leading_zeros();
                let left_shift = mbits - lead;
                let fraction = (mantissa - (1 << lead)) << (left_shift + MBITS_F32 - mbits);
                (((subnormal_exp - left_shift as i64) << MBITS_F32) as u32).wrapping_add(fraction)
            } else {
                let exponent = ((magnitude >> mbits) as u8)
                    .wrapping_sub(exp_bias as u8)
                    .wrapping_add(F32_EXP_BIAS as u8);
                ((exponent as u32) << MBITS_F32) | (mantissa << (MBITS_F32 - mbits))
            };
            let sign_f32 = sign << (MBITS_F32 - mbits + EBITS_F32 - ebits);
            (bits | sign_f32) as i32
        })
        .collect()
}

fn check_2d(op: &'static str, arg: &'static str, t: &Tensor) -> Result<Vec<i64>> {
    let size = t.size();
    if size.len() != 2 {
        return Err(Error::ShapeMismatch {
            op,
            arg,
            got: size,
            reason: "expected a 2-D tensor (rows, columns) with one scale per row".into(),
        });
    }
    Ok(size)
}

/// `input` is 2-D and `scale` holds one float per row of it, on its device.
fn check_row_scale(op: &'static str, scale: &Tensor, input: &Tensor) -> Result<()> {
    let rows = check_2d(op, "input", input)?[0];
    if !is_input_float(scale.kind()) {
        return Err(Error::UnsupportedKind {
            op,
            arg: "scale",
            expected: INPUT_FLOATS,
            got: scale.kind(),
        });
    }
    if scale.numel() as i64 != rows {
        return Err(Error::ShapeMismatch {
            op,
            arg: "scale",
            got: scale.size(),
            reason: format!("expected one element per row of the input, {rows}"),
        });
    }
    if scale.device() != input.device() {
        return Err(Error::invalid(
            op,
            "scale",
            format!("{:?}", scale.device()),
            format!("must be on the input's device, {:?}", input.device()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(x: &[f32], format: FloatxDtype) -> Vec<u8> {
        let t = Tensor::from_slice(x).view([1, -1]);
        let q = quantize_affine_floatx(&t, &Tensor::from_slice(&[1.0f32]), format).unwrap();
        Vec::<u8>::try_from(q.view(-1)).unwrap()
    }

    fn values(c: &[u8], format: FloatxDtype) -> Vec<f32> {
        let t = Tensor::from_slice(c).view([1, -1]);
        let x = dequantize_affine_floatx(&t, &Tensor::from_slice(&[1.0f32]), format, Kind::Float)
            .unwrap();
        Vec::<f32>::try_from(x.view(-1)).unwrap()
    }

    #[test]
    fn max_normal_of_known_formats() {
        let max = |e, m| FloatxDtype::new(e, m).unwrap().max_normal();
        assert_eq!(max(3, 2), 28.0);
        assert_eq!(max(2, 3), 7.5);
        assert_eq!(max(2, 1), 6.0);
        assert_eq!(max(4, 3), 480.0);
        assert_eq!(max(5, 2), 114688.0);
        assert_eq!(max(1, 0), 2.0);
        assert_eq!(max(7, 0), 2f64.powi(64));
    }

    #[test]
    fn e2m1_rounds_ties_to_even_and_saturates() {
        // fp4 e2m1 values: 0, 0.5, 1, 1.5, 2, 3, 4, 6.
        assert_eq!(
            codes(
                &[
                    0.25,
                    0.75,
                    1.25,
                    1.75,
                    2.5,
                    3.5,
                    5.0,
                    7.0,
                    1e9,
                    f32::INFINITY
                ],
                FloatxDtype::FP4_E2M1
            ),
            [0, 2, 2, 4, 4, 6, 6, 7, 7, 7]
        );
        assert_eq!(
            codes(
                &[-0.0, -0.5, -6.0, f32::NEG_INFINITY],
                FloatxDtype::FP4_E2M1
            ),
            [8, 9, 15, 15]
        );
    }

    #[test]
    fn e3m2_subnormals() {
        // e3m2 subnormals are k * 2^-4; half the smallest one rounds to 0.
        assert_eq!(
            codes(
                &[0.0625, 0.125, 0.1875, 0.03125, 0.03126],
                FloatxDtype::FP6_E3M2
            ),
            [1, 2, 3, 0, 1]
        );
        assert_eq!(
            values(&[1, 2, 3, 4, 0x21], FloatxDtype::FP6_E3M2),
            [0.0625, 0.125, 0.1875, 0.25, -0.0625]
        );
    }

    #[test]
    fn every_valid_code_round_trips() {
        for ebits in 1..=7 {
            for mbits in 0..=(7 - ebits) {
                let n = 1u32 << (1 + ebits + mbits);
                let all: Vec<u8> = (0..n).map(|c| c as u8).collect();
                let format = FloatxDtype::new(ebits, mbits).unwrap();
                let decoded = values(&all, format);
                assert_eq!(codes(&decoded, format), all, "e{ebits}m{mbits}");
            }
        }
    }

    #[test]
    fn nan_takes_the_normal_path() {
        // As torchao on CPU: the quiet NaN's bits rebias to 1.5, keeping the sign.
        assert_eq!(
            codes(&[f32::NAN, -f32::NAN], FloatxDtype::FP6_E3M2),
            [0x0e, 0x2e]
        );
        assert_eq!(codes(&[f32::NAN], FloatxDtype::new(1, 0).unwrap()), [0x81]);
        // Codes above the format decode as torchao decodes them, finite here.
        assert_eq!(values(&[0x81], FloatxDtype::new(1, 0).unwrap()), [0.0]);
    }

    #[test]
    fn strided_input_matches_contiguous() {
        let x = Tensor::randn([16, 8], (Kind::Float, tch::Device::Cpu)).tr();
        let scale = choose_qparams_affine_floatx(&x, FloatxDtype::FP6_E2M3).unwrap();
        let q = quantize_affine_floatx(&x, &scale, FloatxDtype::FP6_E2M3).unwrap();
        assert!(q.equal(
            &quantize_affine_floatx(&x.contiguous(), &scale, FloatxDtype::FP6_E2M3).unwrap()
        ));
        let y = dequantize_affine_floatx(
            &q.tr(),
            &scale.ones_like().repeat([2]),
            FloatxDtype::FP6_E2M3,
            Kind::Float,
        );
        let z = dequantize_affine_floatx(
            &q.tr().contiguous(),
            &scale.ones_like().repeat([2]),
            FloatxDtype::FP6_E2M3,
            Kind::Float,
        );
        assert!(y.unwrap().equal(&z.unwrap()));
    }

    #[test]
    fn empty_inputs_are_refused_and_empty_codes_dequantize() {
        let no_rows = Tensor::zeros([0, 4], (Kind::Float, tch::Device::Cpu));
        let none = Tensor::zeros([0], (Kind::Float, tch::Device::Cpu));
        assert!(quantize_affine_floatx(&no_rows, &none, FloatxDtype::FP6_E3M2).is_err());
        assert!(choose_qparams_affine_floatx(&no_rows, FloatxDtype::FP6_E3M2).is_err());
        let no_cols = Tensor::zeros([2, 0], (Kind::Float, tch::Device::Cpu));
        assert!(choose_qparams_affine_floatx(&no_cols, FloatxDtype::FP6_E3M2).is_err());
        let two = Tensor::ones([2], (Kind::Float, tch::Device::Cpu));
        let codes = Tensor::zeros([2, 0], (Kind::Uint8, tch::Device::Cpu));
        let x = dequantize_affine_floatx(&codes, &two, FloatxDtype::FP6_E3M2, Kind::Half).unwrap();
        assert_eq!((x.size(), x.kind()), (vec![2, 0], Kind::Half));
    }

    #[test]
    fn choose_scale_per_row() {
        let w = Tensor::from_slice(&[0.0f32, 0.0, 3.0, -12.0]).view([2, 2]);
        let s = choose_qparams_affine_floatx(&w, FloatxDtype::FP4_E2M1).unwrap();
        assert_eq!(Vec::<f32>::try_from(s).unwrap(), [(1e-12f32 / 6.0), 2.0]);
        let b = w.to_kind(Kind::BFloat16);
        assert_eq!(
            choose_qparams_affine_floatx(&b, FloatxDtype::FP4_E2M1)
                .unwrap()
                .kind(),
            Kind::BFloat16
        );
    }

    #[test]
    fn refusals_are_errors() {
        let x = Tensor::from_slice(&[1.0f32, 2.0]).view([1, 2]);
        let one = Tensor::from_slice(&[1.0f32]);
        assert!(matches!(
            FloatxDtype::new(0, 2),
            Err(Error::InvalidArgument { arg: "ebits", .. })
        ));
        assert!(matches!(
            FloatxDtype::new(4, 4),
            Err(Error::InvalidArgument { arg: "mbits", .. })
        ));
        assert!(matches!(
            FloatxDtype::new(u32::MAX, u32::MAX),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            choose_qparams_affine_floatx(&x.view(-1), FloatxDtype::FP6_E3M2),
            Err(Error::ShapeMismatch { arg: "input", .. })
        ));
        assert!(matches!(
            choose_qparams_affine_floatx(
                &Tensor::zeros([2, 0], (Kind::Float, tch::Device::Cpu)),
                FloatxDtype::FP6_E3M2
            ),
            Err(Error::ShapeMismatch { arg: "input", .. })
        ));
        assert!(matches!(
            choose_qparams_affine_floatx(&x.to_kind(Kind::Double), FloatxDtype::FP6_E3M2),
            Err(Error::UnsupportedKind { arg: "input", .. })
        ));
        assert!(matches!(
            quantize_affine_floatx(
                &x,
                &Tensor::from_slice(&[1.0f32, 2.0]),
                FloatxDtype::FP6_E3M2
            ),
            Err(Error::ShapeMismatch { arg: "scale", .. })
        ));
        assert!(matches!(
            quantize_affine_floatx(&x, &one.to_kind(Kind::Double), FloatxDtype::FP6_E3M2),
            Err(Error::UnsupportedKind { arg: "scale", .. })
        ));
        let c = Tensor::from_slice(&[1u8, 2]).view([1, 2]);
        assert!(matches!(
            dequantize_affine_floatx(&x, &one, FloatxDtype::FP6_E3M2, Kind::Float),
            Err(Error::UnsupportedKind { arg: "input", .. })
        ));
        assert!(matches!(
            dequantize_affine_floatx(&c, &one, FloatxDtype::FP6_E3M2, Kind::Int8),
            Err(Error::InvalidArgument {
                arg: "output_dtype",
                ..
            })
        ));
        assert!(matches!(
            dequantize_affine_floatx(&c.view(-1), &one, FloatxDtype::FP6_E3M2, Kind::Float),
            Err(Error::ShapeMismatch { arg: "input", .. })
        ));
        assert!(matches!(
            FloatxDtype::new(8, 0),
            Err(Error::InvalidArgument { arg: "ebits", .. })
        ));
    }
}
