//! torchao 0.18's microscaling formats (`torchao.prototype.mx_formats`):
//! MX (OCP Microscaling 1.0: blocks of elements sharing one e8m0
//! power-of-two scale) and NVFP4 (blocks of 16 fp4 e2m1 elements sharing
//! one float8 e4m3 scale, with an optional float32 per-tensor scale),
//! bit-identical to torchao 0.18.0 on torch 2.13.0.
//!
//! Each function issues torchao's libtorch op sequence itself, in the same
//! order and dtypes, so results match torchao's eager path on whatever
//! device the input lives on.
//!
//! | need | items | file |
//! | --- | --- | --- |
//! | MX quantization and back | [`to_mx`], [`to_dtype`], [`MxTensor`] | `mx_tensor.rs` |
//! | the e8m0 block scale and its value | [`ScaleCalculationMode`] (defined here), [`get_fp_scale`] | `scale.rs` (the checked `get_fp_scale` in `mx_tensor.rs`) |
//! | fp6 / fp4 element codes, fp4 packing | (internal) | `elements.rs` |
//! | NVFP4 | [`nvfp4_quantize`], [`per_tensor_amax_to_scale`], [`Nvfp4Tensor`] | `nvfp4.rs` |
//!
//! # Storage
//!
//! tch 0.26 has no `Kind` for libtorch's `float8_e8m0fnu` nor
//! `float4_e2m1fn_x2`, so e8m0 scales are their bytes as uint8 (torchao's
//! scale viewed as `torch.uint8`), and fp4 elements are uint8 bytes holding
//! two codes (torchao also returns them as uint8). fp8 elements are
//! `Kind::Float8e4m3fn` / `Kind::Float8e5m2`; fp6 codes are one per uint8,
//! in the low six bits.

mod checks;
mod elements;
mod mx_tensor;
mod nvfp4;
mod scale;

use std::fmt;

pub(crate) use elements::{f32_to_floatx_unpacked, SubByteFloat};
pub use mx_tensor::{get_fp_scale, to_dtype, to_mx, MxTensor};
pub use nvfp4::{nvfp4_quantize, per_tensor_amax_to_scale, Nvfp4Tensor};

use crate::error::{Error, Result};

/// torchao's `BLOCK_SIZE_DEFAULT`: the MX block size of the OCP spec.
pub const MX_BLOCK_SIZE_DEFAULT: i64 = 32;
/// The block size NVFP4 requires.
pub const NVFP4_BLOCK_SIZE: i64 = 16;
/// The largest fp4 e2m1 magnitude, 6.
pub const F4_E2M1_MAX: f64 = 6.0;
/// The largest float8 e4m3fn magnitude, 448.
pub const F8E4M3_MAX: f64 = 448.0;

/// How `to_mx` picks each block's power-of-two scale from the block's
/// largest magnitude `amax` (torchao's `ScaleCalculationMode`). `emax` is
/// the exponent of the element dtype's largest power of two
/// ([`MxElemDtype::max_pow2`]), `max_pos` its largest value.
///
/// ```
/// assert_eq!(tch_quant::ScaleCalculationMode::default(), tch_quant::ScaleCalculationMode::Floor);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ScaleCalculationMode {
    /// `2^(floor(log2(amax)) - emax)`, the OCP spec's rule (torchao's
    /// default): the exponent field of amax's float32 bits. The largest
    /// elements may exceed the element range and saturate.
    #[default]
    Floor,
    /// `2^ceil(log2(amax / max_pos))`, computed in float32 with `log2` and
    /// `ceil` (NVIDIA's cuBLAS rule): no element saturates. The data is
    /// multiplied by the reciprocal scale rather than divided.
    Rceil,
    /// `2^(ceil(log2(amax)) - emax)`: FLOOR plus one when amax is not a
    /// power of two. No saturation, at the cost of small values.
    Ceil,
    /// `2^(floor(log2(round(amax))) - emax)`, amax first rounded to the
    /// element's mantissa width (half up), then FLOOR.
    Even,
}

impl ScaleCalculationMode {
    /// torchao's value string: `floor`, `rceil`, `ceil`, `even`.
    pub fn name(self) -> &'static str {
        match self {
            ScaleCalculationMode::Floor => "floor",
            ScaleCalculationMode::Rceil => "rceil",
            ScaleCalculationMode::Ceil => "ceil",
            ScaleCalculationMode::Even => "even",
        }
    }

    /// The mode named by torchao's value string (case-insensitive).
    ///
    /// ```
    /// use tch_quant::ScaleCalculationMode;
    /// assert_eq!(ScaleCalculationMode::parse("RCEIL")?, ScaleCalculationMode::Rceil);
    /// assert!(ScaleCalculationMode::parse("nearest").is_err());
    /// # Ok::<(), tch_quant::Error>(())
    /// ```
    pub fn parse(name: &str) -> Result<Self> {
        let all = [Self::Floor, Self::Rceil, Self::Ceil, Self::Even];
        all.into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| {
                Error::invalid(
                    "ScaleCalculationMode::parse",
                    "name",
                    format!("{name:?}"),
                    "must be floor, rceil, ceil or even",
                )
            })
    }
}

impl fmt::Display for ScaleCalculationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The element dtypes of MX (torchao's `SUPPORTED_ELEM_DTYPES`).
///
/// ```
/// use tch_quant::MxElemDtype;
/// assert_eq!(MxElemDtype::parse("fp6_e2m3")?, MxElemDtype::Fp6E2m3);
/// assert_eq!(MxElemDtype::Float4E2m1fnX2.max_pos(), 6.0);
/// # Ok::<(), tch_quant::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MxElemDtype {
    /// `torch.float8_e4m3fn`: largest 448, stored as `Kind::Float8e4m3fn`.
    Float8E4m3fn,
    /// `torch.float8_e5m2`: largest 57344, stored as `Kind::Float8e5m2`.
    Float8E5m2,
    /// `"fp6_e2m3"`: largest 7.5, one code per uint8 (low six bits).
    Fp6E2m3,
    /// `"fp6_e3m2"`: largest 28, one code per uint8 (low six bits).
    Fp6E3m2,
    /// `torch.float4_e2m1fn_x2`: largest 6, two codes per uint8 (the
    /// even-indexed element in the low nibble).
    Float4E2m1fnX2,
}

impl MxElemDtype {
    /// Every element dtype, in torchao's order.
    pub const ALL: [MxElemDtype; 5] = [
        MxElemDtype::Float8E4m3fn,
        MxElemDtype::Float8E5m2,
        MxElemDtype::Fp6E2m3,
        MxElemDtype::Fp6E3m2,
        MxElemDtype::Float4E2m1fnX2,
    ];

    /// torchao's name: the torch dtype's (`float8_e4m3fn`, `float8_e5m2`,
    /// `float4_e2m1fn_x2`) or its string (`fp6_e2m3`, `fp6_e3m2`).
    pub fn name(self) -> &'static str {
        match self {
            MxElemDtype::Float8E4m3fn => "float8_e4m3fn",
            MxElemDtype::Float8E5m2 => "float8_e5m2",
            MxElemDtype::Fp6E2m3 => "fp6_e2m3",
            MxElemDtype::Fp6E3m2 => "fp6_e3m2",
            MxElemDtype::Float4E2m1fnX2 => "float4_e2m1fn_x2",
        }
    }

    /// The element dtype torchao names `name` (with or without `torch.`),
    /// or torchao's short name (`f8e4m3`, `f8e5m2`, `f6e2m3`, `f6e3m2`,
    /// `f4e2m1`). Any other name, MX int8 included (which torchao does not
    /// support), is an [`Error::InvalidArgument`].
    pub fn parse(name: &str) -> Result<Self> {
        let lower = name.trim().to_ascii_lowercase();
        let bare = lower.strip_prefix("torch.").unwrap_or(&lower);
        let short = ["f8e4m3", "f8e5m2", "f6e2m3", "f6e3m2", "f4e2m1"];
        Self::ALL
            .into_iter()
            .zip(short)
            .find(|(e, s)| e.name() == bare || *s == bare)
            .map(|(e, _)| e)
            .ok_or_else(|| {
                Error::invalid(
                    "MxElemDtype::parse",
                    "name",
                    format!("{name:?}"),
                    "must be float8_e4m3fn, float8_e5m2, fp6_e2m3, fp6_e3m2 or float4_e2m1fn_x2",
                )
            })
    }

    /// The largest magnitude (`max_pos`): 448, 57344, 7.5, 28, 6.
    pub fn max_pos(self) -> f64 {
        match self {
            MxElemDtype::Float8E4m3fn => F8E4M3_MAX,
            MxElemDtype::Float8E5m2 => 57344.0,
            MxElemDtype::Fp6E2m3 => 7.5,
            MxElemDtype::Fp6E3m2 => 28.0,
            MxElemDtype::Float4E2m1fnX2 => F4_E2M1_MAX,
        }
    }

    /// The exponent of the largest power of two (`emax`): 8, 15, 2, 4, 2.
    pub fn max_pow2(self) -> i64 {
        match self {
            MxElemDtype::Float8E4m3fn => 8,
            MxElemDtype::Float8E5m2 => 15,
            MxElemDtype::Fp6E2m3 => 2,
            MxElemDtype::Fp6E3m2 => 4,
            MxElemDtype::Float4E2m1fnX2 => 2,
        }
    }

    /// Mantissa bits: 3, 2, 3, 2, 1.
    pub fn mbits(self) -> i64 {
        match self {
            MxElemDtype::Float8E4m3fn | MxElemDtype::Fp6E2m3 => 3,
            MxElemDtype::Float8E5m2 | MxElemDtype::Fp6E3m2 => 2,
            MxElemDtype::Float4E2m1fnX2 => 1,
        }
    }

    /// The `Kind` of the elements `to_mx` returns: the float8 kind, or
    /// uint8 for fp6 (one code a byte) and fp4 (two codes a byte).
    pub fn storage_kind(self) -> tch::Kind {
        match self {
            MxElemDtype::Float8E4m3fn => tch::Kind::Float8e4m3fn,
            MxElemDtype::Float8E5m2 => tch::Kind::Float8e5m2,
            _ => tch::Kind::Uint8,
        }
    }

    fn is_float8(self) -> bool {
        matches!(self, MxElemDtype::Float8E4m3fn | MxElemDtype::Float8E5m2)
    }

    /// The sub-byte layout of fp6 and fp4 codes.
    fn sub_byte(self) -> Option<SubByteFloat> {
        match self {
            MxElemDtype::Fp6E2m3 => Some(elements::F6_E2M3),
            MxElemDtype::Fp6E3m2 => Some(elements::F6_E3M2),
            MxElemDtype::Float4E2m1fnX2 => Some(elements::F4_E2M1),
            _ => None,
        }
    }
}

impl fmt::Display for MxElemDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
