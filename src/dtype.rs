//! Target dtypes of quantization and facts about float input dtypes.

use std::fmt;
use std::str::FromStr;

use tch::Kind;

use crate::error::{Error, Result};

/// A dtype that quantized codes can have: every target dtype torchao 0.11
/// accepts.
///
/// Sub-byte integers have no libtorch storage of their own: `UInt1..=UInt7`
/// codes are stored in `uint8` (as torchao does) and `Int1..=Int7` codes in
/// `int8` (torchao 0.11 fails to cast to `torch.int1..int7`; see the README).
///
/// # Examples
/// ```
/// use tch_quant::QuantDtype;
/// let d: QuantDtype = "torch.uint4".parse().unwrap();
/// assert_eq!(d, QuantDtype::UInt4);
/// assert_eq!(d.bounds(), (0.0, 15.0));
/// assert_eq!(d.storage_kind(), tch::Kind::Uint8);
/// assert_eq!(d.to_string(), "uint4");
/// ```
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantDtype {
    Int8,
    UInt8,
    Int16,
    Int32,
    UInt1,
    UInt2,
    UInt3,
    UInt4,
    UInt5,
    UInt6,
    UInt7,
    Int1,
    Int2,
    Int3,
    Int4,
    Int5,
    Int6,
    Int7,
    Float8E4M3Fn,
    Float8E5M2,
    Float8E4M3Fnuz,
    Float8E5M2Fnuz,
}

impl QuantDtype {
    /// Every dtype, in declaration order.
    pub const ALL: [QuantDtype; 22] = [
        QuantDtype::Int8,
        QuantDtype::UInt8,
        QuantDtype::Int16,
        QuantDtype::Int32,
        QuantDtype::UInt1,
        QuantDtype::UInt2,
        QuantDtype::UInt3,
        QuantDtype::UInt4,
        QuantDtype::UInt5,
        QuantDtype::UInt6,
        QuantDtype::UInt7,
        QuantDtype::Int1,
        QuantDtype::Int2,
        QuantDtype::Int3,
        QuantDtype::Int4,
        QuantDtype::Int5,
        QuantDtype::Int6,
        QuantDtype::Int7,
        QuantDtype::Float8E4M3Fn,
        QuantDtype::Float8E5M2,
        QuantDtype::Float8E4M3Fnuz,
        QuantDtype::Float8E5M2Fnuz,
    ];

    /// The torch name without the `torch.` prefix, e.g. `"float8_e4m3fn"`.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(tch_quant::QuantDtype::Int3.name(), "int3");
    /// ```
    pub fn name(self) -> &'static str {
        use QuantDtype::*;
        match self {
            Int8 => "int8",
            UInt8 => "uint8",
            Int16 => "int16",
            Int32 => "int32",
            UInt1 => "uint1",
            UInt2 => "uint2",
            UInt3 => "uint3",
            UInt4 => "uint4",
            UInt5 => "uint5",
            UInt6 => "uint6",
            UInt7 => "uint7",
            Int1 => "int1",
            Int2 => "int2",
            Int3 => "int3",
            Int4 => "int4",
            Int5 => "int5",
            Int6 => "int6",
            Int7 => "int7",
            Float8E4M3Fn => "float8_e4m3fn",
            Float8E5M2 => "float8_e5m2",
            Float8E4M3Fnuz => "float8_e4m3fnuz",
            Float8E5M2Fnuz => "float8_e5m2fnuz",
        }
    }

    /// Bit width of one code (8 for the float8 kinds).
    ///
    /// # Examples
    /// ```
    /// assert_eq!(tch_quant::QuantDtype::UInt5.bits(), 5);
    /// ```
    pub fn bits(self) -> u32 {
        use QuantDtype::*;
        match self {
            UInt1 | Int1 => 1,
            UInt2 | Int2 => 2,
            UInt3 | Int3 => 3,
            UInt4 | Int4 => 4,
            UInt5 | Int5 => 5,
            UInt6 | Int6 => 6,
            UInt7 | Int7 => 7,
            Int8 | UInt8 | Float8E4M3Fn | Float8E5M2 | Float8E4M3Fnuz | Float8E5M2Fnuz => 8,
            Int16 => 16,
            Int32 => 32,
        }
    }

    /// Whether this is one of the four float8 kinds.
    pub fn is_float8(self) -> bool {
        matches!(
            self,
            QuantDtype::Float8E4M3Fn
                | QuantDtype::Float8E5M2
                | QuantDtype::Float8E4M3Fnuz
                | QuantDtype::Float8E5M2Fnuz
        )
    }

    /// Whether this is an unsigned sub-byte integer (`uint1..=uint7`).
    pub fn is_sub_byte_unsigned(self) -> bool {
        !self.is_float8() && self.bits() < 8 && self.is_unsigned()
    }

    /// Whether this is a signed sub-byte integer (`int1..=int7`).
    pub fn is_sub_byte_signed(self) -> bool {
        !self.is_float8() && self.bits() < 8 && !self.is_unsigned()
    }

    fn is_unsigned(self) -> bool {
        use QuantDtype::*;
        matches!(
            self,
            UInt8 | UInt1 | UInt2 | UInt3 | UInt4 | UInt5 | UInt6 | UInt7
        )
    }

    /// The default `(quant_min, quant_max)`: the integer range of the dtype
    /// (`uintN`: `0..=2^N-1`, `intN`: `-2^(N-1)..=2^(N-1)-1`), or
    /// `(finfo.min, finfo.max)` for float8.
    ///
    /// # Examples
    /// ```
    /// use tch_quant::QuantDtype;
    /// assert_eq!(QuantDtype::Int4.bounds(), (-8.0, 7.0));
    /// assert_eq!(QuantDtype::Float8E4M3Fn.bounds(), (-448.0, 448.0));
    /// ```
    pub fn bounds(self) -> (f64, f64) {
        use QuantDtype::*;
        let max = match self {
            Float8E4M3Fn => return (-448.0, 448.0),
            Float8E5M2 | Float8E5M2Fnuz => return (-57344.0, 57344.0),
            Float8E4M3Fnuz => return (-240.0, 240.0),
            _ => (1i64 << self.bits()) - 1,
        };
        if self.is_unsigned() {
            (0.0, max as f64)
        } else {
            let half = 1i64 << (self.bits() - 1);
            (-(half as f64), (half - 1) as f64)
        }
    }

    /// The libtorch dtype that holds codes of this dtype.
    ///
    /// # Examples
    /// ```
    /// use tch_quant::QuantDtype;
    /// assert_eq!(QuantDtype::Int3.storage_kind(), tch::Kind::Int8);
    /// assert_eq!(QuantDtype::Float8E5M2.storage_kind(), tch::Kind::Float8e5m2);
    /// ```
    pub fn storage_kind(self) -> Kind {
        use QuantDtype::*;
        match self {
            Int16 => Kind::Int16,
            Int32 => Kind::Int,
            Float8E4M3Fn => Kind::Float8e4m3fn,
            Float8E5M2 => Kind::Float8e5m2,
            Float8E4M3Fnuz => Kind::Float8e4m3fnuz,
            Float8E5M2Fnuz => Kind::Float8e5m2fnuz,
            _ if self.is_unsigned() => Kind::Uint8,
            _ => Kind::Int8,
        }
    }

    /// Resolves optional `quant_min`/`quant_max` overrides against
    /// [`bounds`](Self::bounds): a missing value takes the dtype's bound, a
    /// given one must be finite, integral for integer dtypes, inside the
    /// bounds, and `quant_min <= quant_max`.
    pub(crate) fn resolve_range(
        self,
        op: &'static str,
        quant_min: Option<f64>,
        quant_max: Option<f64>,
    ) -> Result<(f64, f64)> {
        let (lo, hi) = self.bounds();
        let check = |arg: &'static str, v: f64| -> Result<f64> {
            if !v.is_finite() {
                return Err(Error::invalid(op, arg, v, "must be finite"));
            }
            if !self.is_float8() && v.fract() != 0.0 {
                return Err(Error::invalid(
                    op,
                    arg,
                    v,
                    format!("must be an integer for {self}"),
                ));
            }
            if v < lo || v > hi {
                return Err(Error::invalid(
                    op,
                    arg,
                    v,
                    format!("must lie inside the bounds of {self}, [{lo}, {hi}]"),
                ));
            }
            Ok(v)
        };
        let qmin = check("quant_min", quant_min.unwrap_or(lo))?;
        let qmax = check("quant_max", quant_max.unwrap_or(hi))?;
        if qmin > qmax {
            return Err(Error::invalid(
                op,
                "quant_min",
                qmin,
                format!("must not exceed quant_max = {qmax}"),
            ));
        }
        Ok((qmin, qmax))
    }
}

impl fmt::Display for QuantDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for QuantDtype {
    type Err = Error;

    /// Parses a torch dtype name, with or without the `torch.` prefix.
    fn from_str(s: &str) -> Result<Self> {
        let bare = s.strip_prefix("torch.").unwrap_or(s);
        QuantDtype::ALL
            .into_iter()
            .find(|d| d.name() == bare)
            .ok_or_else(|| Error::UnknownDtype(s.to_string()))
    }
}

/// The float dtypes that inputs, scales and dequantized outputs may have.
pub(crate) fn is_input_float(kind: Kind) -> bool {
    matches!(kind, Kind::Float | Kind::Half | Kind::BFloat16)
}

pub(crate) const INPUT_FLOATS: &str = "float32, float16 or bfloat16";

/// `torch.finfo(kind).eps` for the input float dtypes.
pub(crate) fn float_eps(kind: Kind) -> f64 {
    match kind {
        Kind::Half => f64::powi(2.0, -10),
        Kind::BFloat16 => f64::powi(2.0, -7),
        Kind::Double => f64::EPSILON,
        _ => f64::powi(2.0, -23),
    }
}

/// The largest finite value of a float dtype; libtorch refuses to convert a
/// scalar beyond it into that dtype (and tch panics when that happens inside
/// an op that takes a `Scalar`), so scalars are checked against it first.
pub(crate) fn float_max(kind: Kind) -> f64 {
    match kind {
        Kind::Half => 65504.0,
        Kind::BFloat16 => half::bf16::MAX.to_f64(),
        Kind::Double => f64::MAX,
        _ => f32::MAX as f64,
    }
}

/// torch's name for a libtorch kind (`float32`, `int32`, ...), as torchao
/// code spells dtypes; `"other"` for kinds quantization never produces.
///
/// # Examples
/// ```
/// assert_eq!(tch_quant::kind_name(tch::Kind::BFloat16), "bfloat16");
/// ```
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Float => "float32",
        Kind::Half => "float16",
        Kind::BFloat16 => "bfloat16",
        Kind::Double => "float64",
        Kind::Uint8 => "uint8",
        Kind::Int8 => "int8",
        Kind::Int16 => "int16",
        Kind::Int => "int32",
        Kind::Int64 => "int64",
        Kind::Bool => "bool",
        Kind::Float8e4m3fn => "float8_e4m3fn",
        Kind::Float8e5m2 => "float8_e5m2",
        Kind::Float8e4m3fnuz => "float8_e4m3fnuz",
        Kind::Float8e5m2fnuz => "float8_e5m2fnuz",
        _ => "other",
    }
}

/// The float or integer libtorch kind a torch dtype name gives (with or
/// without `torch.`, and the short spellings `f32`, `bf16`, `i64`, `half`,
/// `long`, ...), for scale and zero-point dtypes.
///
/// # Examples
/// ```
/// use tch::Kind;
/// assert_eq!(tch_quant::parse_kind("torch.bfloat16")?, Kind::BFloat16);
/// assert_eq!(tch_quant::parse_kind("i32")?, Kind::Int);
/// assert!(tch_quant::parse_kind("complex64").is_err());
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn parse_kind(name: &str) -> Result<Kind> {
    let lower = name.trim().to_ascii_lowercase();
    let bare = lower.strip_prefix("torch.").unwrap_or(&lower);
    Ok(match bare {
        "float32" | "f32" | "float" => Kind::Float,
        "float16" | "f16" | "half" => Kind::Half,
        "bfloat16" | "bf16" => Kind::BFloat16,
        "float64" | "f64" | "double" => Kind::Double,
        "uint8" | "u8" => Kind::Uint8,
        "int8" | "i8" => Kind::Int8,
        "int16" | "i16" => Kind::Int16,
        "int32" | "i32" | "int" => Kind::Int,
        "int64" | "i64" | "long" => Kind::Int64,
        _ => {
            return Err(Error::invalid(
                "parse_kind",
                "name",
                format!("{name:?}"),
                "must be a float or integer torch dtype (float32, bfloat16, int32, ...)",
            ))
        }
    })
}

/// `torch.finfo(kind).eps` (the gap between 1 and the next value) for the
/// float kinds, torchao's default `eps`: float32 2^-23, float16 2^-10,
/// bfloat16 2^-7, float64 2^-52; `None` for other kinds.
///
/// # Examples
/// ```
/// assert_eq!(tch_quant::finfo_eps(tch::Kind::BFloat16), Some(2f64.powi(-7)));
/// assert_eq!(tch_quant::finfo_eps(tch::Kind::Int), None);
/// ```
pub fn finfo_eps(kind: Kind) -> Option<f64> {
    matches!(
        kind,
        Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double
    )
    .then(|| float_eps(kind))
}

/// Refuses a scalar that libtorch could not convert into `kind` without
/// overflow. libtorch checks this in `clamp`, `clamp_min` and `full_like`
/// (not in arithmetic), and a failed conversion inside an op that takes a
/// `Scalar` makes tch 0.26 panic; so every such scalar is checked first.
pub(crate) fn check_scalar_fits(
    op: &'static str,
    arg: &'static str,
    value: f64,
    kind: Kind,
) -> Result<()> {
    let max = float_max(kind);
    if value.is_finite() && value.abs() > max {
        return Err(Error::invalid(
            op,
            arg,
            value,
            format!(
                "does not fit the computation dtype {} (largest finite value {max}); \
                 libtorch refuses the conversion",
                kind_name(kind)
            ),
        ));
    }
    Ok(())
}

/// Refuses an output dtype other than the input floats.
pub(crate) fn check_output_float(op: &'static str, output_dtype: Kind) -> Result<()> {
    if !is_input_float(output_dtype) {
        return Err(Error::invalid(
            op,
            "output_dtype",
            kind_name(output_dtype),
            format!("must be {INPUT_FLOATS}"),
        ));
    }
    Ok(())
}
