//! Moving tensors between safetensors bytes and `tch::Tensor`.
//!
//! safetensors stores little-endian data; so do libtorch's CPU tensors on
//! every platform tch supports, so the bytes are copied as they are.

use safetensors::Dtype;
use tch::{Device, Kind, Tensor};

use crate::checkpoint::{Checkpoint, Entry};
use crate::exit::{fail, Categorize, Category, Result};

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

/// Copies a tensor out of the checkpoint onto `device`.
pub fn load(input: &Checkpoint, entry: &Entry, device: Device) -> Result<Tensor> {
    let Some(kind) = kind_of(entry.dtype) else {
        fail!(
            Category::Tensor,
            "tensor {} has dtype {:?}, which libtorch cannot hold",
            entry.name,
            entry.dtype
        );
    };
    let shape: Vec<i64> = entry.shape.iter().map(|&d| d as i64).collect();
    Tensor::f_from_data_size(input.bytes(entry), &shape, kind)
        .and_then(|t| t.f_to_device(device))
        .fail_with(Category::Internal, || {
            format!("loading tensor {}", entry.name)
        })
}

/// The little-endian bytes of a tensor (any device), for writing.
pub fn bytes_of(t: &Tensor) -> std::result::Result<Vec<u8>, tch::TchError> {
    let t = t.f_to_device(Device::Cpu)?.f_contiguous()?;
    let numel = t.numel();
    let mut buf = vec![0u8; numel * t.f_kind()?.elt_size_in_bytes()];
    t.f_copy_data_u8(&mut buf, numel)?;
    Ok(buf)
}
