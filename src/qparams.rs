//! Choosing quantization parameters: `choose_qparams_affine` and its
//! observer variant `choose_qparams_affine_with_min_max`.

use tch::{Kind, Tensor};

use crate::block::BlockLayout;
use crate::dtype::{check_scalar_fits, float_eps, is_input_float, kind_name, INPUT_FLOATS};
use crate::error::{Error, Result, TorchContext};
use crate::formula::{mid_point, symmetric_zero_point, ChooseSpec, QParams};
use crate::mapping::{MappingType, ZeroPointDomain};
use crate::scalar_ops;
use crate::semantics::Semantics;
use crate::strided::check_strided;
use crate::QuantDtype;

/// Optional arguments of [`choose_qparams_affine`], with torchao 0.11's
/// defaults.
///
/// # Examples
/// ```
/// use tch_quant::{QParamsOptions, ZeroPointDomain};
/// let tinygemm = QParamsOptions {
///     quant_min: Some(0.0),
///     quant_max: Some(15.0),
///     eps: Some(1e-6),
///     preserve_zero: false,
///     zero_point_domain: ZeroPointDomain::Float,
///     ..Default::default()
/// };
/// assert!(QParamsOptions::default().preserve_zero);
/// # let _ = tinygemm;
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QParamsOptions {
    /// Smallest code; defaults to the target dtype's lower bound.
    pub quant_min: Option<f64>,
    /// Largest code; defaults to the target dtype's upper bound.
    pub quant_max: Option<f64>,
    /// Smallest scale; defaults to `torch.finfo(input.dtype).eps`
    /// (float32 2^-23, float16 2^-10, bfloat16 2^-7).
    pub eps: Option<f64>,
    /// dtype of the returned scale; defaults to the input's dtype.
    pub scale_dtype: Option<Kind>,
    /// dtype of the returned zero point; defaults to int32 for the
    /// asymmetric Int domain and to the input's dtype otherwise.
    pub zero_point_dtype: Option<Kind>,
    /// Make float 0 exactly representable by widening the range to include
    /// it (`min = min(min, 0)`, `max = max(max, 0)`).
    pub preserve_zero: bool,
    /// Where the zero point lives.
    pub zero_point_domain: ZeroPointDomain,
    /// Always run the libtorch op sequence (the reference path), never the
    /// fused CPU kernel. Both give identical bits; this exists for
    /// verification and benchmarking.
    pub force_reference: bool,
    /// Which torchao release's bits to reproduce (0.11 by default).
    pub semantics: Semantics,
    /// Keep the reduced dims: return qparams with the input's rank, each dim
    /// `input_size / block_size` (torchao 0.18's `keepdim=True`).
    pub keepdim: bool,
}

impl Default for QParamsOptions {
    fn default() -> Self {
        QParamsOptions {
            quant_min: None,
            quant_max: None,
            eps: None,
            scale_dtype: None,
            zero_point_dtype: None,
            preserve_zero: true,
            zero_point_domain: ZeroPointDomain::Int,
            force_reference: false,
            semantics: Semantics::Torchao0_11,
            keepdim: false,
        }
    }
}

/// Chooses scale and zero point for each block of `input`, bit-identical to
/// torchao 0.11's `choose_qparams_affine`.
///
/// `block_size` has one entry per input dim (see [`Granularity`](crate::Granularity)
/// for the common ones). Per block, in the input's dtype:
///
/// 1. `min = amin(block)`, `max = amax(block)`; with `preserve_zero`,
///    `min_neg = min(min, 0)` and `max_pos = max(max, 0)`.
/// 2. [`MappingType::Symmetric`]:
///    `scale = max(-min_neg, max_pos) / ((quant_max - quant_min) / 2)`;
///    [`MappingType::SymmetricNoClippingErr`]: `scale = smin` where
///    `smin > smax` else `smax`, with `smin = min_neg / quant_min`,
///    `smax = max_pos / quant_max`. Then `scale = max(scale, eps)`. The zero
///    point is `trunc((quant_max + quant_min + 1) / 2)` in the scale's float
///    dtype (0 for int8), or `None` in the None domain.
/// 3. [`MappingType::Asymmetric`]:
///    `scale = max((max_pos - min_neg) / (quant_max - quant_min), eps)`;
///    Int domain: `zp = clamp(quant_min - round(min_neg / scale), quant_min, quant_max)`
///    (round half to even), int32 by default; Float domain:
///    `zp = min_neg + scale * (quant_max + quant_min + 1) / 2`.
/// 4. `scale` is cast to `scale_dtype`, `zp` to `zero_point_dtype`.
///
/// NaN in a block makes that block's min/max, and so its scale, NaN (and an
/// Int-domain zero point whatever libtorch's NaN-to-int cast gives, as in
/// torchao); an infinite element gives an infinite or NaN scale likewise.
///
/// # Errors
/// Input not float32/float16/bfloat16 or empty; a block size that is the
/// wrong length, has entries `< 1`, does not divide the input, or reduces no
/// dim of a multi-element tensor; quant range outside the dtype or reversed;
/// symmetric mappings with `preserve_zero = false` or the Float domain; a
/// non-symmetric mapping for float8; scalars libtorch cannot represent in
/// the input dtype (e.g. an int32 range on float16 with the Int domain).
///
/// # Examples
/// ```
/// use tch::{Kind, Tensor};
/// use tch_quant::{choose_qparams_affine, MappingType, QParamsOptions, QuantDtype};
/// let w = Tensor::from_slice(&[-1.0f32, 0.5, 2.0, 3.0]).view([2, 2]);
/// let qp = choose_qparams_affine(&w, MappingType::Asymmetric, &[1, 2], QuantDtype::UInt8,
///                                &QParamsOptions::default())?;
/// assert_eq!(qp.scale.size(), vec![2]);
/// assert_eq!(qp.zero_point.unwrap().kind(), Kind::Int);
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn choose_qparams_affine(
    input: &Tensor,
    mapping_type: MappingType,
    block_size: &[i64],
    target_dtype: QuantDtype,
    options: &QParamsOptions,
) -> Result<QParams> {
    const OP: &str = "choose_qparams_affine";
    check_strided(OP, "input", input)?;
    let kind = check_float_input(OP, "input", input)?;
    let layout = BlockLayout::new(OP, block_size, &input.size())?;
    let plan = Plan::new(OP, mapping_type, target_dtype, options, kind)?;
    if !options.force_reference {
        if let Some(qp) = crate::fused::choose_qparams(OP, input, &layout, &plan.spec)? {
            return Ok(qp);
        }
    }
    let (min_val, max_val) = block_min_max(input, &layout).op(OP)?;
    plan.qparams(min_val, max_val)
}

/// [`choose_qparams_affine`] from per-block minima and maxima that were
/// already observed (torchao's observer path).
///
/// `min_val` and `max_val` must have the same shape and float dtype; their
/// dtype supplies the default eps and scale dtype. `block_size` is checked for
/// positive entries and otherwise, as in torchao, only documents the blocks
/// the minima were taken over.
///
/// # Examples
/// ```
/// use tch::Tensor;
/// use tch_quant::{choose_qparams_affine_with_min_max, MappingType, QParamsOptions, QuantDtype};
/// let min = Tensor::from_slice(&[-1.0f32, -4.0]);
/// let max = Tensor::from_slice(&[2.0f32, 1.0]);
/// let qp = choose_qparams_affine_with_min_max(&min, &max, MappingType::Symmetric, &[1, 64],
///     QuantDtype::Int8, &QParamsOptions::default())?;
/// assert_eq!(qp.scale.double_value(&[1]), (4.0f32 / 127.5) as f64);
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn choose_qparams_affine_with_min_max(
    min_val: &Tensor,
    max_val: &Tensor,
    mapping_type: MappingType,
    block_size: &[i64],
    target_dtype: QuantDtype,
    options: &QParamsOptions,
) -> Result<QParams> {
    const OP: &str = "choose_qparams_affine_with_min_max";
    check_strided(OP, "min_val", min_val)?;
    check_strided(OP, "max_val", max_val)?;
    let kind = check_float_input(OP, "min_val", min_val)?;
    if max_val.kind() != kind {
        return Err(Error::UnsupportedKind {
            op: OP,
            arg: "max_val",
            expected: "the dtype of min_val",
            got: max_val.kind(),
        });
    }
    if max_val.size() != min_val.size() {
        return Err(Error::ShapeMismatch {
            op: OP,
            arg: "max_val",
            got: max_val.size(),
            reason: format!("expected the shape of min_val, {:?}", min_val.size()),
        });
    }
    if max_val.device() != min_val.device() {
        return Err(Error::invalid(
            OP,
            "max_val",
            format!("{:?}", max_val.device()),
            format!("must be on the device of min_val, {:?}", min_val.device()),
        ));
    }
    if let Some(&b) = block_size.iter().find(|&&b| b < 1) {
        return Err(Error::invalid(
            OP,
            "block_size",
            format!("{block_size:?}"),
            format!("entry {b} must be at least 1"),
        ));
    }
    let plan = Plan::new(OP, mapping_type, target_dtype, options, kind)?;
    plan.qparams(min_val.shallow_clone(), max_val.shallow_clone())
}

pub(crate) fn check_float_input(op: &'static str, arg: &'static str, t: &Tensor) -> Result<Kind> {
    let kind = t.kind();
    if !is_input_float(kind) {
        return Err(Error::UnsupportedKind {
            op,
            arg,
            expected: INPUT_FLOATS,
            got: kind,
        });
    }
    Ok(kind)
}

/// Refuses a tensor without elements: there is nothing to quantize.
pub(crate) fn check_not_empty(op: &'static str, arg: &'static str, t: &Tensor) -> Result<()> {
    if t.numel() == 0 {
        return Err(Error::ShapeMismatch {
            op,
            arg,
            got: t.size(),
            reason: "the tensor is empty; there is nothing to quantize".into(),
        });
    }
    Ok(())
}

/// Per-block `amin` and `amax` of `input`, shaped like the qparams.
pub(crate) fn block_min_max(
    input: &Tensor,
    layout: &BlockLayout,
) -> std::result::Result<(Tensor, Tensor), tch::TchError> {
    let blocks = input.f_reshape(&layout.shape_for_reduction)?;
    let dims = layout.reduction_dims.as_slice();
    Ok((blocks.f_amin(dims, false)?, blocks.f_amax(dims, false)?))
}

/// Everything about a qparams computation that is known before touching
/// data, validated once.
pub(crate) struct Plan {
    op: &'static str,
    /// What both paths compute.
    pub spec: ChooseSpec,
}

impl Plan {
    pub(crate) fn new(
        op: &'static str,
        mapping_type: MappingType,
        target_dtype: QuantDtype,
        options: &QParamsOptions,
        kind: Kind,
    ) -> Result<Self> {
        let (quant_min, quant_max) =
            target_dtype.resolve_range(op, options.quant_min, options.quant_max)?;
        if target_dtype.is_float8() && mapping_type != MappingType::Symmetric {
            return Err(Error::invalid(
                op,
                "mapping_type",
                mapping_type,
                format!("{target_dtype} supports only symmetric mapping"),
            ));
        }
        let symmetric = mapping_type != MappingType::Asymmetric;
        let domain = options.zero_point_domain;
        if symmetric && !options.preserve_zero {
            return Err(Error::invalid(
                op,
                "preserve_zero",
                false,
                format!("{mapping_type} mapping always preserves zero"),
            ));
        }
        if symmetric && domain == ZeroPointDomain::Float {
            return Err(Error::invalid(
                op,
                "zero_point_domain",
                domain,
                format!("{mapping_type} mapping supports the int or none domain"),
            ));
        }
        let eps = options.eps.unwrap_or_else(|| float_eps(kind));
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(Error::invalid(
                op,
                "eps",
                eps,
                "must be finite and non-negative",
            ));
        }
        check_scalar_fits(op, "eps", eps, kind)?;
        if symmetric && domain == ZeroPointDomain::Int {
            check_scalar_fits(
                op,
                "quant_min + quant_max",
                symmetric_zero_point(quant_min, quant_max) as f64,
                kind,
            )?;
        }
        if !symmetric && domain == ZeroPointDomain::Int {
            check_scalar_fits(op, "quant_min", quant_min, kind)?;
            check_scalar_fits(op, "quant_max", quant_max, kind)?;
        }
        let scale_dtype = options.scale_dtype.unwrap_or(kind);
        if !matches!(
            scale_dtype,
            Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double
        ) {
            return Err(Error::invalid(
                op,
                "scale_dtype",
                kind_name(scale_dtype),
                "must be a float dtype (float32, float16, bfloat16 or float64)",
            ));
        }
        if let Some(zp) = options.zero_point_dtype {
            if !matches!(
                zp,
                Kind::Uint8
                    | Kind::Int8
                    | Kind::Int16
                    | Kind::Int
                    | Kind::Int64
                    | Kind::Float
                    | Kind::Half
                    | Kind::BFloat16
                    | Kind::Double
            ) {
                return Err(Error::invalid(
                    op,
                    "zero_point_dtype",
                    kind_name(zp),
                    "must be an integer or float dtype",
                ));
            }
        }
        let zero_point_dtype = match (options.zero_point_dtype, mapping_type, domain) {
            (None, MappingType::Asymmetric, ZeroPointDomain::Int) => Some(Kind::Int),
            (zp, _, _) => zp,
        };
        let spec = ChooseSpec {
            mapping_type,
            quant_min,
            quant_max,
            eps,
            scale_dtype,
            zero_point_dtype,
            preserve_zero: options.preserve_zero,
            domain,
        };
        Ok(Plan { op, spec })
    }

    fn qparams(&self, min_val: Tensor, max_val: Tensor) -> Result<QParams> {
        let (scale, zero_point) = self.compute(min_val, max_val).op(self.op)?;
        let scale = scale.f_to_kind(self.spec.scale_dtype).op(self.op)?;
        let zero_point = match (zero_point, self.spec.zero_point_dtype) {
            (Some(zp), Some(kind)) => Some(zp.f_to_kind(kind).op(self.op)?),
            (zp, _) => zp,
        };
        Ok(QParams { scale, zero_point })
    }

    /// The torchao op sequence, in the same order and dtypes.
    fn compute(
        &self,
        min_val: Tensor,
        max_val: Tensor,
    ) -> std::result::Result<(Tensor, Option<Tensor>), tch::TchError> {
        let (qmin, qmax) = (self.spec.quant_min, self.spec.quant_max);
        let (min_neg, max_pos) = if self.spec.preserve_zero {
            (
                min_val.f_minimum(&min_val.f_zeros_like()?)?,
                max_val.f_maximum(&max_val.f_zeros_like()?)?,
            )
        } else {
            (min_val, max_val)
        };
        if self.spec.mapping_type == MappingType::Asymmetric {
            let range = max_pos.f_sub(&min_neg)?;
            let scale =
                scalar_ops::clamp_min(&scalar_ops::div(&range, qmax - qmin)?, self.spec.eps)?;
            let zero_point = match self.spec.domain {
                ZeroPointDomain::None => None,
                ZeroPointDomain::Int => {
                    let rounded = min_neg.f_div(&scale)?.f_round()?;
                    let shifted = scalar_ops::rsub(&rounded, qmin as i64)?;
                    Some(scalar_ops::clamp(&shifted, qmin as i64, qmax as i64)?)
                }
                ZeroPointDomain::Float => {
                    Some(min_neg.f_add(&scalar_ops::mul(&scale, mid_point(qmin, qmax))?)?)
                }
            };
            return Ok((scale, zero_point));
        }
        let scale = if self.spec.mapping_type == MappingType::Symmetric {
            let amax = min_neg.f_neg()?.f_maximum(&max_pos)?;
            scalar_ops::div(&amax, (qmax - qmin) / 2.0)?
        } else {
            let smin = scalar_ops::div(&min_neg, qmin)?;
            let smax = scalar_ops::div(&max_pos, qmax)?;
            smin.f_where_self(&smin.f_gt_tensor(&smax)?, &smax)?
        };
        let zero_point = match self.spec.domain {
            ZeroPointDomain::Int => Some(scalar_ops::full_like(
                &scale,
                symmetric_zero_point(qmin, qmax),
            )?),
            _ => None,
        };
        Ok((scalar_ops::clamp_min(&scale, self.spec.eps)?, zero_point))
    }
}
