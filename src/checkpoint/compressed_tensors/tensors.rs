//! A quantized weight as the tensors compressed-tensors stores for its
//! module: torchao's codes, scale and zero point moved into
//! compressed-tensors' conventions without changing what they dequantize to.

use tch::{Kind, Tensor};

use super::pack::pack_to_int32;
use super::scheme::{AsymmetricLayout, CtScheme};
use crate::checkpoint::Context as _;
use crate::error::{CheckpointErrorKind, Result};
use crate::quantized::AffineQuantizedTensor;

/// The module a weight belongs to: `name` without its `.weight`.
///
/// # Errors
/// A name that does not end in `.weight` (compressed-tensors names every
/// stored tensor after the module's `weight` parameter).
pub fn module_of(name: &str) -> Result<&str> {
    match name.strip_suffix(".weight") {
        Some(module) if !module.is_empty() => Ok(module),
        _ => crate::checkpoint::bail!(
            Unquantizable,
            "tensor {name} was chosen for quantization, but compressed-tensors stores only \
             `<module>.weight` parameters; exclude it (--exclude) or rename it"
        ),
    }
}

/// The stored tensors of weight `name` quantized as `q` with `scheme`, by
/// name, in the order they are written.
///
/// - `pack-quantized`: `weight_packed` (torchao's unsigned codes, which are
///   compressed-tensors' signed codes `q - 2^(b-1)` plus the offset its
///   packing adds back), `weight_scale` `[rows, groups]` in the scale's
///   dtype, `weight_zero_point` (`zp - 2^(b-1)` as int8, or packed along
///   dim 0 for [`AsymmetricLayout::Group`]), `weight_shape` (int64).
/// - `int-quantized`: `weight` (the int8 codes), `weight_scale` `[rows, groups]`.
/// - `float-quantized`: `weight` (float8_e4m3fn), `weight_scale` `[rows, 1]`.
///
/// # Errors
/// A weight that is not 2-D; a name not ending in `.weight`; a failed
/// conversion.
pub fn stored_tensors(
    name: &str,
    q: &AffineQuantizedTensor,
    scheme: &CtScheme,
) -> Result<Vec<(String, Tensor)>> {
    let module = module_of(name)?;
    let shape = q.shape();
    if shape.len() != 2 {
        crate::checkpoint::bail!(
            Unquantizable,
            "tensor {name} has shape {shape:?}; the compressed-tensors export quantizes only 2-D \
             (Linear) weights; exclude it (--exclude)"
        );
    }
    let io = |what: &'static str| move || format!("converting {name} ({what})");
    let rows = shape[0];
    let scale = q
        .scale()
        .f_reshape([rows, -1])
        .and_then(|s| s.f_contiguous())
        .context(CheckpointErrorKind::Io, io("scale"))?;
    let codes = q.codes()?;
    let key = |suffix: &str| format!("{module}.{suffix}");
    Ok(match *scheme {
        CtScheme::PackedAsymmetric { bits, layout, .. } => {
            let Some(zp) = q.zero_point() else {
                crate::checkpoint::bail!(
                    Unquantizable,
                    "tensor {name}: an asymmetric scheme without a zero point"
                );
            };
            let zp = zp
                .f_reshape([rows, -1])
                .context(CheckpointErrorKind::Io, io("zero point"))?;
            let packed = pack_to_int32(&codes, bits, 1)?;
            let zero_point = match layout {
                AsymmetricLayout::Group => pack_to_int32(&zp, bits, 0)?,
                AsymmetricLayout::Block => zp
                    .f_to_kind(Kind::Int)
                    .and_then(|z| crate::scalar_ops::sub(&z, 1i64 << (bits - 1)))
                    .and_then(|z| z.f_to_kind(Kind::Int8))
                    .and_then(|z| z.f_contiguous())
                    .context(CheckpointErrorKind::Io, io("zero point"))?,
            };
            vec![
                (key("weight_packed"), packed),
                (key("weight_scale"), scale),
                (key("weight_zero_point"), zero_point),
                (key("weight_shape"), Tensor::from_slice(shape)),
            ]
        }
        CtScheme::Int8 { .. } | CtScheme::Float8 => {
            let codes = codes
                .f_contiguous()
                .context(CheckpointErrorKind::Io, io("codes"))?;
            vec![(key("weight"), codes), (key("weight_scale"), scale)]
        }
    })
}
