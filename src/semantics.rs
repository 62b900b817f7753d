//! Which torchao release a call is bit-identical to.
//!
//! The crate follows torchao 0.11.0 by default (the seed page's API, with
//! `preserve_zero` and `zero_point_domain`). [`Semantics::Torchao0_18`]
//! follows torchao 0.18.0 instead, whose primitives give different bits for
//! the same arguments (README's semantics table lists every difference).

use std::fmt;
use std::str::FromStr;

use tch::Kind;

use crate::dtype::float_eps;
use crate::error::Error;

/// The torchao release whose op sequence (and so whose bits) a call
/// reproduces.
///
/// # Examples
/// ```
/// use tch_quant::Semantics;
/// assert_eq!(Semantics::default(), Semantics::Torchao0_11);
/// assert_eq!("0.18".parse::<Semantics>().unwrap(), Semantics::Torchao0_18);
/// assert_eq!(Semantics::Torchao0_18.to_string(), "0.18");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Semantics {
    /// torchao 0.11.0 on torch 2.13.0, the seed's API.
    #[default]
    Torchao0_11,
    /// torchao 0.18.0 on torch 2.13.0.
    Torchao0_18,
}

impl Semantics {
    /// Every semantics, oldest first.
    pub const ALL: [Semantics; 2] = [Semantics::Torchao0_11, Semantics::Torchao0_18];

    /// The torchao version, as `"0.11"` or `"0.18"` (what the CLI's
    /// `--semantics` takes and checkpoint metadata records).
    pub fn name(self) -> &'static str {
        match self {
            Semantics::Torchao0_11 => "0.11",
            Semantics::Torchao0_18 => "0.18",
        }
    }

    /// The exact torchao release, `"0.11.0"` or `"0.18.0"`.
    pub fn torchao_version(self) -> &'static str {
        match self {
            Semantics::Torchao0_11 => "0.11.0",
            Semantics::Torchao0_18 => "0.18.0",
        }
    }

    /// The smallest scale the chooses clamp to when `eps` is not given, for
    /// an input (or observed min/max) of float dtype `kind`:
    /// `torch.finfo(kind).eps` under 0.11 (float32 2^-23, float16 2^-10,
    /// bfloat16 2^-7, float64 2^-52), `torch.finfo(kind).smallest_normal`
    /// under 0.18 (float32 and bfloat16 2^-126, float16 2^-14, float64
    /// 2^-1022).
    ///
    /// # Examples
    /// ```
    /// use tch::Kind;
    /// use tch_quant::Semantics;
    /// assert_eq!(Semantics::Torchao0_11.default_eps(Kind::BFloat16), 2f64.powi(-7));
    /// assert_eq!(Semantics::Torchao0_18.default_eps(Kind::BFloat16), 2f64.powi(-126));
    /// assert_eq!(Semantics::Torchao0_18.default_eps(Kind::Half), 2f64.powi(-14));
    /// ```
    pub fn default_eps(self, kind: Kind) -> f64 {
        match self {
            Semantics::Torchao0_11 => float_eps(kind),
            Semantics::Torchao0_18 => match kind {
                Kind::Half => f64::powi(2.0, -14),
                Kind::Double => f64::MIN_POSITIVE,
                _ => f64::powi(2.0, -126),
            },
        }
    }
}

impl fmt::Display for Semantics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Semantics {
    type Err = Error;

    /// Parses `0.11`, `0.11.0`, `torchao0_11` (and the same for 0.18).
    fn from_str(s: &str) -> Result<Self, Error> {
        let norm = s.trim().to_ascii_lowercase().replace(['-', '_'], ".");
        let norm = norm.strip_prefix("torchao").unwrap_or(&norm);
        let norm = norm.trim_start_matches('.');
        match norm {
            "0.11" | "0.11.0" => Ok(Semantics::Torchao0_11),
            "0.18" | "0.18.0" => Ok(Semantics::Torchao0_18),
            _ => Err(Error::invalid(
                "parse",
                "semantics",
                format!("{s:?}"),
                "expected 0.11 or 0.18",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Semantics::ALL {
            assert_eq!(s.name().parse::<Semantics>().unwrap(), s);
            assert_eq!(s.torchao_version().parse::<Semantics>().unwrap(), s);
        }
        assert_eq!(
            "torchao0_18".parse::<Semantics>().unwrap(),
            Semantics::Torchao0_18
        );
        let err = "0.12".parse::<Semantics>().unwrap_err().to_string();
        assert!(err.contains("semantics") && err.contains("0.12"), "{err}");
    }
}
