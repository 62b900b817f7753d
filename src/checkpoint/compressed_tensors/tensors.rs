//! A quantized weight as the tensors compressed-tensors stores for its
//! module: torchao's codes, scale and zero point moved into
//! compressed-tensors' conventions without changing what they dequantize to.

use tch::{Kind, Tensor};

use super::pack::pack_to_int32;
use super::scheme::{AsymmetricLayout, CtScheme, CtStrategy};
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
/// - `pack-quantized`: `weight_packed` (compressed-tensors' signed codes
///   `q - offset` packed as its `pack_to_int32` packs them),
///   `weight_scale` (`[rows, groups]`, `[rows, 1]` or `[1]`, in the scale's
///   dtype), for an asymmetric scheme `weight_zero_point` (`zp - offset` as
///   int8, or packed along dim 0 for [`AsymmetricLayout::Group`] per group
///   or channel), `weight_shape` (int64).
/// - `int-quantized`: `weight` (the codes `q - offset`, int8), `weight_scale`.
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
    let piece = stored_piece(name, q, scheme)?;
    let mut all = piece.rows;
    all.extend(finish(name, q.shape(), scheme, piece.zero_point)?);
    Ok(all)
}

/// What a piece of rows of a weight stores ([`stored_piece`]).
#[derive(Debug)]
pub struct StoredPiece {
    /// The stored tensors (by name) that hold one row per row of the piece,
    /// in the order they are written.
    pub rows: Vec<(String, Tensor)>,
    /// For a zero point packed along dim 0: its unsigned codes `[rows,
    /// groups]` (int32), to be packed once every piece is in
    /// ([`finish`]).
    pub zero_point: Option<Tensor>,
}

/// The stored tensors of `q`, the quantization of some rows of weight
/// `name` (or all of them), that do not span rows; a zero point packed
/// along dim 0 comes back unpacked.
///
/// # Errors
/// Those of [`stored_tensors`].
pub fn stored_piece(
    name: &str,
    q: &AffineQuantizedTensor,
    scheme: &CtScheme,
) -> Result<StoredPiece> {
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
    let per_scale: &[i64] = match scheme.strategy() {
        CtStrategy::Tensor => &[1],
        _ => &[shape[0], -1],
    };
    let scale = q
        .scale()
        .f_reshape(per_scale)
        .and_then(|s| s.f_contiguous())
        .context(CheckpointErrorKind::Io, io("scale"))?;
    let codes = q.codes()?;
    let key = |suffix: &str| format!("{module}.{suffix}");
    // torchao's codes q as the unsigned b-bit codes compressed-tensors'
    // packing stores for its signed codes q - offset: q - offset + 2^(b-1).
    let unsigned = |t: &Tensor, bits: u32, offset: i64, what: &'static str| {
        let shift = (1i64 << (bits - 1)) - offset;
        match shift {
            0 => Ok(t.shallow_clone()),
            _ => t
                .f_to_kind(Kind::Int)
                .and_then(|t| crate::scalar_ops::add(&t, shift))
                .context(CheckpointErrorKind::Io, io(what)),
        }
    };
    let signed_int8 = |t: &Tensor, offset: i64, what: &'static str| {
        t.f_to_kind(Kind::Int)
            .and_then(|t| crate::scalar_ops::sub(&t, offset))
            .and_then(|t| t.f_to_kind(Kind::Int8))
            .and_then(|t| t.f_contiguous())
            .context(CheckpointErrorKind::Io, io(what))
    };
    let mut zero_point = None;
    let rows = match *scheme {
        CtScheme::PackedAsymmetric {
            bits,
            strategy,
            layout,
            offset,
        } => {
            let Some(zp) = q.zero_point() else {
                crate::checkpoint::bail!(
                    Unquantizable,
                    "tensor {name}: an asymmetric scheme without a zero point"
                );
            };
            let zp = zp
                .f_reshape(per_scale)
                .context(CheckpointErrorKind::Io, io("zero point"))?;
            check_zero_points(name, &zp, bits, offset)?;
            let packed = pack_to_int32(&unsigned(&codes, bits, offset, "codes")?, bits, 1)?;
            let mut rows = vec![(key("weight_packed"), packed), (key("weight_scale"), scale)];
            match (layout, strategy) {
                (AsymmetricLayout::Group, CtStrategy::Group(_) | CtStrategy::Channel) => {
                    let zp = zp
                        .f_to_kind(Kind::Int)
                        .context(CheckpointErrorKind::Io, io("zero point"))?;
                    zero_point = Some(unsigned(&zp, bits, offset, "zero point")?);
                }
                _ => rows.push((
                    key("weight_zero_point"),
                    signed_int8(&zp, offset, "zero point")?,
                )),
            }
            rows
        }
        CtScheme::PackedSymmetric { bits, offset, .. } => vec![
            (
                key("weight_packed"),
                pack_to_int32(&unsigned(&codes, bits, offset, "codes")?, bits, 1)?,
            ),
            (key("weight_scale"), scale),
        ],
        CtScheme::Int8 { offset, .. } => {
            let codes = match offset {
                0 => codes
                    .f_contiguous()
                    .context(CheckpointErrorKind::Io, io("codes"))?,
                _ => signed_int8(&codes, offset, "codes")?,
            };
            vec![(key("weight"), codes), (key("weight_scale"), scale)]
        }
        CtScheme::Float8 => {
            let codes = codes
                .f_contiguous()
                .context(CheckpointErrorKind::Io, io("codes"))?;
            vec![(key("weight"), codes), (key("weight_scale"), scale)]
        }
    };
    Ok(StoredPiece { rows, zero_point })
}

/// Refuses zero points outside the `bits`-bit range of compressed-tensors'
/// signed zero points (`offset - 2^(b-1) ..= offset + 2^(b-1) - 1` in
/// torchao's terms): torchao's integer zero point of a block holding a NaN
/// or an infinity is int32's minimum, which no compressed-tensors zero
/// point holds (and the cast to int8 would wrap silently).
fn check_zero_points(name: &str, zp: &Tensor, bits: u32, offset: i64) -> Result<()> {
    let io = || format!("checking the zero points of {name}");
    let min = zp
        .f_min()
        .and_then(|m| m.f_double_value(&[]))
        .context(CheckpointErrorKind::Io, io)?;
    let max = zp
        .f_max()
        .and_then(|m| m.f_double_value(&[]))
        .context(CheckpointErrorKind::Io, io)?;
    let half = (1i64 << (bits - 1)) as f64;
    let (lo, hi) = (offset as f64 - half, offset as f64 + half - 1.0);
    // NaN compares false: also refused.
    if !(min >= lo && max <= hi) {
        crate::checkpoint::bail!(
            Unquantizable,
            "tensor {name}: zero points {min}..={max} lie outside {lo}..={hi}, which \
             compressed-tensors' {bits}-bit zero points hold (a block with a NaN or an infinity \
             gets int32's minimum); exclude it (--exclude) or use a symmetric recipe"
        );
    }
    Ok(())
}

/// The stored tensors of weight `name` (of `shape`) that span its rows:
/// the zero point packed along dim 0 (from the unsigned codes
/// [`StoredPiece::zero_point`] of all its rows) and `weight_shape`.
///
/// # Errors
/// A name not ending in `.weight`; zero point codes out of range.
pub fn finish(
    name: &str,
    shape: &[i64],
    scheme: &CtScheme,
    zero_point: Option<Tensor>,
) -> Result<Vec<(String, Tensor)>> {
    let module = module_of(name)?;
    let mut out = Vec::new();
    if let (Some(zp), CtScheme::PackedAsymmetric { bits, .. }) = (zero_point, scheme) {
        out.push((
            format!("{module}.weight_zero_point"),
            pack_to_int32(&zp, *bits, 0)?,
        ));
    }
    if matches!(
        scheme,
        CtScheme::PackedAsymmetric { .. } | CtScheme::PackedSymmetric { .. }
    ) {
        out.push((format!("{module}.weight_shape"), Tensor::from_slice(shape)));
    }
    Ok(out)
}
