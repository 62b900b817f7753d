//! The refusals shared by the MX and NVFP4 entry points: each names the
//! operation and the argument, before any op runs.

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::strided::check_strided;

/// The dtype of a strided tensor argument; a dtype tch has no `Kind` for
/// (libtorch's `float8_e8m0fnu`, `uint16`, ...) is an invalid argument.
pub(super) fn kind_of(op: &'static str, arg: &'static str, t: &Tensor) -> Result<Kind> {
    check_strided(op, arg, t)?;
    t.f_kind().map_err(|e| {
        Error::invalid(
            op,
            arg,
            "a tensor",
            format!("has a dtype tch cannot name: {e}"),
        )
    })
}

/// `t` is strided and of one of `kinds`.
pub(super) fn check_kind(
    op: &'static str,
    arg: &'static str,
    t: &Tensor,
    kinds: &[Kind],
    expected: &'static str,
) -> Result<Kind> {
    let got = kind_of(op, arg, t)?;
    if kinds.contains(&got) {
        Ok(got)
    } else {
        Err(Error::UnsupportedKind {
            op,
            arg,
            expected,
            got,
        })
    }
}

/// The input of `to_mx` and `nvfp4_quantize`: torchao takes float32 and
/// bfloat16 only.
pub(super) fn check_input(op: &'static str, arg: &'static str, t: &Tensor) -> Result<Kind> {
    check_kind(
        op,
        arg,
        t,
        &[Kind::Float, Kind::BFloat16],
        "float32 or bfloat16",
    )
}

/// A dequantized output dtype: float32, bfloat16, float16 or float64 (the
/// float dtypes torchao's `.to(target_dtype)` casts and multiplies in).
pub(super) fn check_output(op: &'static str, arg: &'static str, kind: Kind) -> Result<()> {
    if matches!(
        kind,
        Kind::Float | Kind::BFloat16 | Kind::Half | Kind::Double
    ) {
        Ok(())
    } else {
        Err(Error::UnsupportedKind {
            op,
            arg,
            expected: "float32, bfloat16, float16 or float64",
            got: kind,
        })
    }
}

/// A block size of at least one.
pub(super) fn check_block_size(op: &'static str, block_size: i64) -> Result<()> {
    if block_size < 1 {
        return Err(Error::invalid(
            op,
            "block_size",
            block_size,
            "must be at least 1",
        ));
    }
    Ok(())
}

/// The last dim of `size` is a multiple of `block_size` (rank at least 1).
pub(super) fn check_last_dim(
    op: &'static str,
    arg: &'static str,
    size: &[i64],
    block_size: i64,
) -> Result<()> {
    match size.last() {
        None => Err(Error::ShapeMismatch {
            op,
            arg,
            got: size.to_vec(),
            reason: "expected at least one dim, the one cut into blocks".into(),
        }),
        Some(last) if last % block_size != 0 => Err(Error::ShapeMismatch {
            op,
            arg,
            got: size.to_vec(),
            reason: format!("its last dim must be divisible by block_size {block_size}"),
        }),
        Some(_) => Ok(()),
    }
}

/// `t` lives on `device`, or is a 0-d CPU tensor (which libtorch takes
/// beside tensors on any device) when `cpu_scalar_ok`.
pub(super) fn check_device(
    op: &'static str,
    arg: &'static str,
    t: &Tensor,
    device: Device,
    cpu_scalar_ok: bool,
) -> Result<()> {
    let ok = t.device() == device || (cpu_scalar_ok && t.device() == Device::Cpu && t.dim() == 0);
    if ok {
        return Ok(());
    }
    let also = if cpu_scalar_ok {
        ", or be a 0-d CPU tensor"
    } else {
        ""
    };
    Err(Error::invalid(
        op,
        arg,
        format!("{:?}", t.device()),
        format!("must be on the data's device, {device:?}{also}"),
    ))
}
