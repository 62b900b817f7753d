//! safetensors dtypes and libtorch kinds: the conversions between them and
//! torch's names for both (the tool shows and records torch's spelling,
//! `float32`, everywhere).

use safetensors::Dtype;
use tch::Kind;

/// torch's name for a safetensors dtype (`F32` is `float32`), including the
/// unsigned 16 to 64-bit integers libtorch cannot hold.
///
/// # Examples
/// ```
/// use tch_quant::checkpoint::dtype::dtype_name;
/// assert_eq!(dtype_name(safetensors::Dtype::BF16), "bfloat16");
/// ```
pub fn dtype_name(dtype: Dtype) -> String {
    if let Some(kind) = kind_of(dtype) {
        return crate::kind_name(kind).to_string();
    }
    let name = match dtype {
        Dtype::U16 => "uint16",
        Dtype::U32 => "uint32",
        Dtype::U64 => "uint64",
        // A dtype a newer safetensors adds: its own spelling.
        other => return format!("{other:?}"),
    };
    name.to_string()
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
            assert_eq!(dtype_name(dtype), crate::kind_name(kind));
        }
        assert_eq!(dtype_name(Dtype::U16), "uint16");
    }
}
