//! How float ranges map onto quantized ranges: the mapping type and the
//! domain of the zero point.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// How the float range of a block is mapped onto `[quant_min, quant_max]`
/// (torchao's `MappingType`).
///
/// # Examples
/// ```
/// use tch_quant::MappingType;
/// assert_eq!("asymmetric".parse::<MappingType>().unwrap(), MappingType::Asymmetric);
/// assert_eq!(MappingType::SymmetricNoClippingErr.to_string(), "symmetric_no_clipping_err");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MappingType {
    /// `scale = max(-min_neg, max_pos) / ((quant_max - quant_min) / 2)`; the
    /// range is centred on zero.
    Symmetric,
    /// `scale = max(min_neg / quant_min, max_pos / quant_max)`: neither end
    /// of the float range is clipped.
    SymmetricNoClippingErr,
    /// `scale = (max_pos - min_neg) / (quant_max - quant_min)` with a zero
    /// point that shifts the range.
    Asymmetric,
}

/// Where the zero point lives (torchao's `ZeroPointDomain`).
///
/// # Examples
/// ```
/// use tch_quant::ZeroPointDomain;
/// assert_eq!(ZeroPointDomain::default(), ZeroPointDomain::Int);
/// assert_eq!("FLOAT".parse::<ZeroPointDomain>().unwrap(), ZeroPointDomain::Float);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ZeroPointDomain {
    /// An integer added to the rounded codes: `q = round(x / scale) + zp`.
    #[default]
    Int,
    /// A float subtracted before rounding (the tinygemm layout):
    /// `q = round((x - (zp - scale * mid)) / scale)`.
    Float,
    /// No zero point at all.
    None,
}

macro_rules! names {
    ($ty:ident, $what:literal, $($variant:ident => $name:literal),+ $(,)?) => {
        impl $ty {
            /// The lower-case torchao name of the variant.
            pub fn name(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $ty {
            type Err = Error;

            /// Parses torchao's name, case-insensitively, with `-` or `_`.
            fn from_str(s: &str) -> Result<Self, Error> {
                let norm = s.trim().to_ascii_lowercase().replace('-', "_");
                let norm = norm.rsplit('.').next().unwrap_or_default();
                match norm {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(Error::invalid(
                        "parse",
                        $what,
                        format!("{s:?}"),
                        concat!("expected one of: ", $($name, " "),+),
                    )),
                }
            }
        }
    };
}

names!(MappingType, "mapping_type",
    Symmetric => "symmetric",
    SymmetricNoClippingErr => "symmetric_no_clipping_err",
    Asymmetric => "asymmetric",
);

names!(ZeroPointDomain, "zero_point_domain",
    Int => "int",
    Float => "float",
    None => "none",
);
