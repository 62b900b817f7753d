//! What `choose_qparams_affine` computes, stated once for both of its
//! paths: the validated arguments of a choose ([`ChooseSpec`]), its result
//! ([`QParams`]), and the scalars torchao derives from the quant range.
//!
//! The reference path (`qparams.rs`, `quantize.rs`) and the fused path
//! (`fused/`) both read these; nothing here depends on either, so the fused
//! path stays a leaf that the rest of the crate calls.

use tch::{Kind, Tensor};

use crate::mapping::{MappingType, ZeroPointDomain};

/// Scale and zero point of affine quantization: `q = round(x / scale) + zp`.
#[derive(Debug)]
pub struct QParams {
    /// One scale per block, with the reduced dims removed.
    pub scale: Tensor,
    /// One zero point per block; `None` for [`ZeroPointDomain::None`].
    pub zero_point: Option<Tensor>,
}

/// A validated `choose_qparams_affine` computation: the options resolved
/// against the target and input dtypes (see `Plan::new` in `qparams.rs`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ChooseSpec {
    pub mapping_type: MappingType,
    pub quant_min: f64,
    pub quant_max: f64,
    pub eps: f64,
    pub scale_dtype: Kind,
    /// `None`: the zero point keeps the input dtype.
    pub zero_point_dtype: Option<Kind>,
    pub preserve_zero: bool,
    pub domain: ZeroPointDomain,
}

impl ChooseSpec {
    /// The dtype of the returned zero point, `None` in the None domain.
    pub fn zero_point_kind(&self, input: Kind) -> Option<Kind> {
        match self.domain {
            ZeroPointDomain::None => None,
            _ => Some(self.zero_point_dtype.unwrap_or(input)),
        }
    }
}

/// torchao's `mid_point = (quant_max + quant_min + 1) / 2`, a Python float
/// (true division of ints). The Float domain builds on it: the chosen zero
/// point is `min_val_neg + scale * mid_point`, `quantize_affine` computes
/// `round((x - (zero_point - scale * mid_point)) / scale)` and
/// `dequantize_affine` `(q - mid_point) * scale + zero_point`.
pub(crate) fn mid_point(quant_min: f64, quant_max: f64) -> f64 {
    (quant_max + quant_min + 1.0) / 2.0
}

/// torchao's symmetric zero point, `torch.full_like(scale,
/// int((quant_max + quant_min + 1) / 2))`: [`mid_point`] through Python's
/// `int`, so truncated toward zero and an int, which never yields -0.0.
pub(crate) fn symmetric_zero_point(quant_min: f64, quant_max: f64) -> i64 {
    mid_point(quant_min, quant_max).trunc() as i64
}
