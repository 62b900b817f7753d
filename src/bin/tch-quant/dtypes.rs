//! Every dtype name and fact the tool needs, in one place: torch's names for
//! libtorch kinds and safetensors dtypes (the tool shows and records torch's
//! spelling, `float32`, everywhere), the conversions between safetensors
//! dtypes and libtorch kinds, and `torch.finfo(dtype).eps`.
//!
//! The library keeps its own helpers of this kind crate-private, so the
//! binary states them here, with the same semantics (checked by the tests
//! below against the values torch documents).

use safetensors::Dtype;
use tch::Kind;

use crate::exit::{fail, Category, Result};

/// `torch.finfo(dtype).eps` (the gap between 1 and the next value) for the
/// float dtypes; torchao's default `eps`. float32: 2^-23, float16: 2^-10,
/// bfloat16: 2^-7, float64: 2^-52. `None` for non-float kinds.
pub fn finfo_eps(kind: Kind) -> Option<f64> {
    Some(match kind {
        Kind::Float => f64::from(f32::EPSILON),
        Kind::Half => half::f16::EPSILON.to_f64(),
        Kind::BFloat16 => half::bf16::EPSILON.to_f64(),
        Kind::Double => f64::EPSILON,
        _ => return None,
    })
}

/// `torch.finfo(torch.float32).eps`, which torchao's int8, uintx and float8
/// recipes pass whatever the weight's dtype.
pub const F32_EPS: f64 = f32::EPSILON as f64;

/// torch's name for a libtorch kind (`float32`, `int32`, ...), as torchao
/// code and the file's records spell dtypes.
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
        _ => "unsupported",
    }
}

/// torch's name for a safetensors dtype (`F32` is `float32`), including
/// the unsigned 16 to 64-bit integers libtorch cannot hold.
pub fn dtype_name(dtype: Dtype) -> String {
    let name = match dtype {
        Dtype::BOOL => "bool",
        Dtype::U8 => "uint8",
        Dtype::I8 => "int8",
        Dtype::I16 => "int16",
        Dtype::U16 => "uint16",
        Dtype::I32 => "int32",
        Dtype::U32 => "uint32",
        Dtype::I64 => "int64",
        Dtype::U64 => "uint64",
        Dtype::F16 => "float16",
        Dtype::BF16 => "bfloat16",
        Dtype::F32 => "float32",
        Dtype::F64 => "float64",
        Dtype::F8_E4M3 => "float8_e4m3fn",
        Dtype::F8_E5M2 => "float8_e5m2",
        // A dtype a newer safetensors adds: its own spelling.
        other => return format!("{other:?}"),
    };
    name.to_string()
}

/// The float kind a record names as a tensor's original dtype.
pub fn float_kind(name: &str) -> Option<Kind> {
    Some(match name {
        "float32" => Kind::Float,
        "float16" => Kind::Half,
        "bfloat16" => Kind::BFloat16,
        _ => return None,
    })
}

/// Parses a torch dtype name given for scales and zero points
/// (`--scale-dtype`, `--zero-point-dtype`).
pub fn parse_kind(flag: &str, s: &str) -> Result<Kind> {
    let bare = s.trim().to_ascii_lowercase();
    let bare = bare.strip_prefix("torch.").unwrap_or(&bare);
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
        _ => fail!(
            Category::Usage,
            "{flag} must be a float or integer torch dtype (float32, bfloat16, int32, ...), \
             got {s:?}"
        ),
    })
}

/// The libtorch kind of a safetensors dtype; `None` for the unsigned 16 to
/// 64-bit integers, which libtorch (through tch) cannot hold.
pub fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::BOOL => Kind::Bool,
        Dtype::U8 => Kind::Uint8,
        Dtype::I8 => Kind::Int8,
        Dtype::I16 => Kind::Int16,
        Dtype::I32 => Kind::Int,
        Dtype::I64 => Kind::Int64,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::F8_E4M3 => Kind::Float8e4m3fn,
        Dtype::F8_E5M2 => Kind::Float8e5m2,
        _ => return None,
    })
}

/// The safetensors dtype of a libtorch kind; `None` where safetensors has
/// none (the float8 `fnuz` kinds, complex, quantized kinds).
pub fn dtype_of(kind: Kind) -> Option<Dtype> {
    Some(match kind {
        Kind::Bool => Dtype::BOOL,
        Kind::Uint8 => Dtype::U8,
        Kind::Int8 => Dtype::I8,
        Kind::Int16 => Dtype::I16,
        Kind::Int => Dtype::I32,
        Kind::Int64 => Dtype::I64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Float8e4m3fn => Dtype::F8_E4M3,
        Kind::Float8e5m2 => Dtype::F8_E5M2,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eps_is_torch_finfo_eps() {
        assert_eq!(finfo_eps(Kind::Float), Some(2f64.powi(-23)));
        assert_eq!(finfo_eps(Kind::Half), Some(2f64.powi(-10)));
        assert_eq!(finfo_eps(Kind::BFloat16), Some(2f64.powi(-7)));
        assert_eq!(finfo_eps(Kind::Double), Some(2f64.powi(-52)));
        assert_eq!(finfo_eps(Kind::Int), None);
        assert_eq!(Some(F32_EPS), finfo_eps(Kind::Float));
    }

    #[test]
    fn names_are_torch_names_and_agree() {
        for dtype in [
            Dtype::BOOL,
            Dtype::U8,
            Dtype::I8,
            Dtype::I16,
            Dtype::I32,
            Dtype::I64,
            Dtype::F16,
            Dtype::BF16,
            Dtype::F32,
            Dtype::F64,
            Dtype::F8_E4M3,
            Dtype::F8_E5M2,
        ] {
            let kind = kind_of(dtype).unwrap();
            assert_eq!(dtype_of(kind), Some(dtype));
            assert_eq!(dtype_name(dtype), kind_name(kind));
        }
        assert_eq!(dtype_name(Dtype::U16), "uint16");
        for name in ["float32", "float16", "bfloat16"] {
            assert_eq!(kind_name(float_kind(name).unwrap()), name);
            assert_eq!(parse_kind("--x", name).unwrap(), float_kind(name).unwrap());
        }
        assert!(parse_kind("--x", "complex64").is_err());
    }
}
