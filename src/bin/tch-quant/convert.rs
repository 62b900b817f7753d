//! Moving tensors between safetensors bytes and `tch::Tensor`.
//!
//! safetensors stores little-endian data; so do libtorch's CPU tensors on
//! every platform tch supports, so the bytes are copied as they are.

use tch::{Device, Tensor};

use crate::checkpoint::{Checkpoint, Entry};
use crate::dtypes::{dtype_name, kind_of};
use crate::exit::{fail, Categorize, Category, Result};

/// A tensor's shape as libtorch sizes. safetensors allows any `usize`
/// dims whose byte count fits, so a crafted header can give dims (or, with
/// a zero dim elsewhere, products) beyond `i64`: those are refused as
/// unreadable input rather than wrapped around.
pub fn shape_i64(name: &str, shape: &[usize]) -> Result<Vec<i64>> {
    let too_large = || {
        crate::exit::Failure::new(
            Category::Input,
            format!(
                "tensor {name} has shape {shape:?}, whose element count libtorch cannot address"
            ),
        )
    };
    let dims = shape
        .iter()
        .map(|&d| i64::try_from(d).map_err(|_| too_large()))
        .collect::<Result<Vec<i64>>>()?;
    dims.iter()
        .try_fold(1i64, |n, &d| n.checked_mul(d))
        .ok_or_else(too_large)?;
    Ok(dims)
}

/// Copies a tensor out of the checkpoint onto `device`.
pub fn load(input: &Checkpoint, entry: &Entry, device: Device) -> Result<Tensor> {
    let Some(kind) = kind_of(entry.dtype) else {
        fail!(
            Category::Tensor,
            "tensor {} has dtype {}, which libtorch cannot hold",
            entry.name,
            dtype_name(entry.dtype)
        );
    };
    let shape = shape_i64(&entry.name, &entry.shape)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_beyond_i64_are_input_errors() {
        assert_eq!(shape_i64("w", &[2, 3]).unwrap(), vec![2, 3]);
        assert_eq!(shape_i64("w", &[]).unwrap(), Vec::<i64>::new());
        let err = shape_i64("w", &[1 << 62, 2, 0]).unwrap_err();
        assert_eq!(err.category, Category::Input);
        assert!(shape_i64("w", &[usize::MAX, 0]).is_err());
    }
}
