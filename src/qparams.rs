//! Choosing quantization parameters: `choose_qparams_affine` and its
//! observer variant `choose_qparams_affine_with_min_max`.

use tch::{Kind, Tensor};

use crate::block::BlockLayout;
use crate::dtype::{check_scalar_fits, is_input_float, kind_name, INPUT_FLOATS};
use crate::error::{Error, Result, TorchContext};
use crate::formula::{mid_point, symmetric_zero_point, ChooseSpec, QParams};
use crate::mapping::{MappingType, ZeroPointDomain};
use crate::scalar_ops;
use crate::semantics::Semantics;
use crate::strided::check_strided;
use crate::QuantDtype;

/// Optional arguments of [`choose_qparams_affine`] and the other chooses,
/// with torchao 0.11's defaults (see [`Semantics`] for 0.18's).
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
    /// Smallest scale; defaults to [`Semantics::default_eps`] of the input
    /// dtype: `torch.finfo(input.dtype).eps` under 0.11 (float32 2^-23,
    /// float16 2^-10, bfloat16 2^-7), `smallest_normal` under 0.18.
    pub eps: Option<f64>,
    /// dtype of the returned scale; defaults to the input's dtype.
    pub scale_dtype: Option<Kind>,
    /// dtype of the returned zero point. Defaults to int32 for the
    /// asymmetric Int domain and to the input's dtype otherwise, except for
    /// 0.18's [`choose_qparams_affine`], whose default is int32 for every
    /// mapping (torchao 0.18's `zero_point_dtype=torch.int32`).
    pub zero_point_dtype: Option<Kind>,
    /// Make float 0 exactly representable by widening the range to include
    /// it (`min = min(min, 0)`, `max = max(max, 0)`). torchao 0.18 removed
    /// the option (its chooses always preserve zero): under 0.18 it must be
    /// `true`, and [`choose_qparams_affine_dont_preserve_zero`] or
    /// [`choose_qparams_affine_tinygemm`] do without.
    pub preserve_zero: bool,
    /// Where the zero point lives. torchao 0.18 removed the option (its
    /// chooses return an Int-domain zero point): under 0.18 it must be
    /// [`ZeroPointDomain::Int`], and [`choose_qparams_affine_tinygemm`]
    /// gives the Float domain.
    pub zero_point_domain: ZeroPointDomain,
    /// Always run the libtorch op sequence (the reference path), never the
    /// fused CPU kernel. Both give identical bits; this exists for
    /// verification and benchmarking.
    pub force_reference: bool,
    /// Which torchao release's bits to reproduce (0.11 by default).
    pub semantics: Semantics,
    /// Keep the reduced dims: return qparams with the input's rank, each dim
    /// `input_size / block_size` (torchao 0.18's `keepdim=True`; only
    /// [`choose_qparams_affine`] under 0.18 takes it, the values are the
    /// same).
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
/// torchao's `choose_qparams_affine` of the release `options.semantics`
/// names (0.11 by default).
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
/// # Semantics
/// - [`Semantics::Torchao0_11`]: as above, `eps` defaults to
///   `torch.finfo(input.dtype).eps`; `keepdim` must be `false` (0.11 has
///   none); float8 targets take only the symmetric mapping.
/// - [`Semantics::Torchao0_18`]: always `preserve_zero` and the Int domain
///   (0.18 removed both options, so `preserve_zero = false` and the other
///   domains are refused: [`choose_qparams_affine_dont_preserve_zero`] and
///   [`choose_qparams_affine_tinygemm`] are 0.18's functions for them);
///   `eps` defaults to `torch.finfo(input.dtype).smallest_normal`; the zero
///   point is cast to `zero_point_dtype`, int32 by default for every
///   mapping (the symmetric one included); every mapping for float8 targets;
///   with `keepdim`, scale and zero point are reshaped to
///   `[input_size[i] / block_size[i]]` (the input's rank; same values).
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
/// non-symmetric mapping for float8 (0.11); scalars libtorch cannot
/// represent in the input dtype (e.g. an int32 range on float16 with the
/// Int domain); under 0.18, `preserve_zero = false` or a domain other than
/// Int, under 0.11 `keepdim = true` ([`Error::InvalidArgument`] naming the
/// option).
///
/// # Examples
/// ```
/// use tch::{Kind, Tensor};
/// use tch_quant::{choose_qparams_affine, MappingType, QParamsOptions, QuantDtype, Semantics};
/// let w = Tensor::from_slice(&[-1.0f32, 0.5, 2.0, 3.0]).view([2, 2]);
/// let qp = choose_qparams_affine(&w, MappingType::Asymmetric, &[1, 2], QuantDtype::UInt8,
///                                &QParamsOptions::default())?;
/// assert_eq!(qp.scale.size(), vec![2]);
/// assert_eq!(qp.zero_point.unwrap().kind(), Kind::Int);
/// // torchao 0.18: an int32 symmetric zero point, and keepdim.
/// let new = QParamsOptions { semantics: Semantics::Torchao0_18, keepdim: true,
///                            ..Default::default() };
/// let qp = choose_qparams_affine(&w, MappingType::Symmetric, &[1, 2], QuantDtype::Int8, &new)?;
/// assert_eq!(qp.scale.size(), vec![2, 1]);
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
    choose(
        "choose_qparams_affine",
        Entry::Affine,
        input,
        mapping_type,
        block_size,
        target_dtype,
        options,
    )
}

/// torchao 0.18's `_choose_qparams_affine_tinygemm`: the asymmetric choose
/// of the tinygemm int4 layout, which does not preserve zero and puts the
/// zero point in the float domain.
///
/// Per block, in the input's dtype: `min = amin(block)`, `max = amax(block)`,
/// `scale = max((max - min) / (quant_max - quant_min), eps)`,
/// `zp = min + scale * mid` with `mid = (quant_max + quant_min + 1) / 2`;
/// `scale` cast to `scale_dtype`, `zp` to `zero_point_dtype` (default: the
/// input's dtype). `eps` defaults to `torch.finfo(input.dtype).smallest_normal`.
///
/// The function exists only in torchao 0.18 and follows it whatever
/// `options.semantics` says; `preserve_zero` and `zero_point_domain` are
/// fixed by it and ignored (the same op sequence as 0.11's
/// [`choose_qparams_affine`] with `preserve_zero = false` and the Float
/// domain, but for the eps default).
///
/// # Errors
/// A mapping other than [`MappingType::Asymmetric`], `keepdim = true`, and
/// what [`choose_qparams_affine`] refuses.
///
/// # Examples
/// ```
/// use tch::{Kind, Tensor};
/// use tch_quant::{choose_qparams_affine_tinygemm, MappingType, QParamsOptions, QuantDtype};
/// let w = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([1, 4]);
/// let qp = choose_qparams_affine_tinygemm(&w, MappingType::Asymmetric, &[1, 4],
///     QuantDtype::UInt4, &QParamsOptions::default())?;
/// assert_eq!(qp.scale.double_value(&[0]), (3.0f32 / 15.0) as f64);
/// assert_eq!(qp.zero_point.unwrap().kind(), Kind::Float);
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn choose_qparams_affine_tinygemm(
    input: &Tensor,
    mapping_type: MappingType,
    block_size: &[i64],
    target_dtype: QuantDtype,
    options: &QParamsOptions,
) -> Result<QParams> {
    choose(
        "choose_qparams_affine_tinygemm",
        Entry::Tinygemm,
        input,
        mapping_type,
        block_size,
        target_dtype,
        options,
    )
}

/// torchao 0.18's `_choose_qparams_affine_dont_preserve_zero`: the
/// asymmetric choose with an Int-domain zero point that does not widen the
/// range to hold zero.
///
/// Per block, in the input's dtype: `min = amin(block)`, `max = amax(block)`,
/// `scale = max((max - min) / (quant_max - quant_min), eps)`,
/// `zp = clamp(quant_min - round(min / scale), quant_min, quant_max)`
/// (round half to even); `scale` cast to `scale_dtype`, `zp` to
/// `zero_point_dtype` (default int32). `eps` defaults to
/// `torch.finfo(input.dtype).smallest_normal`.
///
/// The function exists only in torchao 0.18 and follows it whatever
/// `options.semantics` says; `preserve_zero` and `zero_point_domain` are
/// fixed by it and ignored.
///
/// # Errors
/// A mapping other than [`MappingType::Asymmetric`], `keepdim = true`, and
/// what [`choose_qparams_affine`] refuses.
///
/// # Examples
/// ```
/// use tch::{Kind, Tensor};
/// use tch_quant::{choose_qparams_affine_dont_preserve_zero, MappingType, QParamsOptions,
///                 QuantDtype};
/// let w = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([1, 4]);
/// let qp = choose_qparams_affine_dont_preserve_zero(&w, MappingType::Asymmetric, &[1, 4],
///     QuantDtype::UInt8, &QParamsOptions::default())?;
/// // The range is [1, 4], not [0, 4].
/// assert_eq!(qp.scale.double_value(&[0]), (3.0f32 / 255.0) as f64);
/// assert_eq!(qp.zero_point.unwrap().kind(), Kind::Int);
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn choose_qparams_affine_dont_preserve_zero(
    input: &Tensor,
    mapping_type: MappingType,
    block_size: &[i64],
    target_dtype: QuantDtype,
    options: &QParamsOptions,
) -> Result<QParams> {
    choose(
        "choose_qparams_affine_dont_preserve_zero",
        Entry::DontPreserveZero,
        input,
        mapping_type,
        block_size,
        target_dtype,
        options,
    )
}

/// The chooses that reduce an input: validation, the fused path where it
/// covers the call, else the op sequence; then `keepdim`.
fn choose(
    op: &'static str,
    entry: Entry,
    input: &Tensor,
    mapping_type: MappingType,
    block_size: &[i64],
    target_dtype: QuantDtype,
    options: &QParamsOptions,
) -> Result<QParams> {
    check_strided(op, "input", input)?;
    let kind = check_float_input(op, "input", input)?;
    let layout = BlockLayout::new(op, block_size, &input.size())?;
    let plan = Plan::for_entry(op, entry, mapping_type, target_dtype, options, kind)?;
    if !options.force_reference {
        if let Some(qp) = crate::fused::choose_qparams(op, input, &layout, &plan.spec)? {
            return plan.keep_dims(qp, &input.size(), block_size);
        }
    }
    let (min_val, max_val) = block_min_max(input, &layout).op(op)?;
    let qp = plan.qparams(min_val, max_val)?;
    plan.keep_dims(qp, &input.size(), block_size)
}

/// [`choose_qparams_affine`] from per-block minima and maxima that were
/// already observed (torchao's observer path).
///
/// `min_val` and `max_val` must have the same shape and float dtype; their
/// dtype supplies the default eps and scale dtype. `block_size` is checked for
/// positive entries and otherwise, as in torchao, only documents the blocks
/// the minima were taken over.
///
/// Under [`Semantics::Torchao0_18`] the eps default is
/// `torch.finfo(min_val.dtype).smallest_normal`, `preserve_zero` must be
/// `true` and the domain Int (0.18 removed both options); unlike 0.18's
/// [`choose_qparams_affine`], the zero point's dtype defaults to int32 only
/// for the asymmetric mapping (0.18's `zero_point_dtype=None` here): the
/// symmetric zero point stays in `min_val`'s dtype. `keepdim` must be
/// `false` (neither release takes it here).
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
    let plan = Plan::for_entry(
        OP,
        Entry::WithMinMax,
        mapping_type,
        target_dtype,
        options,
        kind,
    )?;
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

/// The torchao function a [`Plan`] computes: under 0.18 they differ in
/// their defaults and in the options they take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// `choose_qparams_affine`.
    Affine,
    /// `choose_qparams_affine_with_min_max`.
    WithMinMax,
    /// 0.18's `_choose_qparams_affine_tinygemm`.
    Tinygemm,
    /// 0.18's `_choose_qparams_affine_dont_preserve_zero`.
    DontPreserveZero,
}

/// Everything about a qparams computation that is known before touching
/// data, validated once.
pub(crate) struct Plan {
    op: &'static str,
    /// Reshape the qparams to the input's rank (0.18's `keepdim=True`).
    keepdim: bool,
    /// What both paths compute.
    pub spec: ChooseSpec,
}

impl Plan {
    /// The plan of [`choose_qparams_affine`] under `options`.
    pub(crate) fn new(
        op: &'static str,
        mapping_type: MappingType,
        target_dtype: QuantDtype,
        options: &QParamsOptions,
        kind: Kind,
    ) -> Result<Self> {
        Self::for_entry(op, Entry::Affine, mapping_type, target_dtype, options, kind)
    }

    /// The plan of `entry` under `options`, for an input (or min/max) of
    /// float dtype `kind`.
    pub(crate) fn for_entry(
        op: &'static str,
        entry: Entry,
        mapping_type: MappingType,
        target_dtype: QuantDtype,
        options: &QParamsOptions,
        kind: Kind,
    ) -> Result<Self> {
        let (quant_min, quant_max) =
            target_dtype.resolve_range(op, options.quant_min, options.quant_max)?;
        let semantics = match entry {
            Entry::Tinygemm | Entry::DontPreserveZero => Semantics::Torchao0_18,
            Entry::Affine | Entry::WithMinMax => options.semantics,
        };
        if options.keepdim && !(entry == Entry::Affine && semantics == Semantics::Torchao0_18) {
            let why = match entry {
                Entry::Affine => "torchao 0.11 has no keepdim; choose with semantics 0.18",
                _ => "only choose_qparams_affine under semantics 0.18 takes keepdim",
            };
            return Err(Error::invalid(op, "keepdim", true, why));
        }
        let (preserve_zero, domain) = match entry {
            Entry::Tinygemm => {
                check_asymmetric(op, mapping_type)?;
                (false, ZeroPointDomain::Float)
            }
            Entry::DontPreserveZero => {
                check_asymmetric(op, mapping_type)?;
                (false, ZeroPointDomain::Int)
            }
            Entry::Affine | Entry::WithMinMax => {
                if semantics == Semantics::Torchao0_18 {
                    check_removed_options(op, options)?;
                }
                (options.preserve_zero, options.zero_point_domain)
            }
        };
        if semantics == Semantics::Torchao0_11
            && target_dtype.is_float8()
            && mapping_type != MappingType::Symmetric
        {
            return Err(Error::invalid(
                op,
                "mapping_type",
                mapping_type,
                format!("{target_dtype} supports only symmetric mapping under torchao 0.11"),
            ));
        }
        let symmetric = mapping_type != MappingType::Asymmetric;
        if symmetric && !preserve_zero {
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
        let eps = options.eps.unwrap_or_else(|| semantics.default_eps(kind));
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
        // torchao 0.18's choose_qparams_affine defaults zero_point_dtype to
        // int32 in its signature; everywhere else only the asymmetric Int
        // domain casts to int32 by default.
        let int_default = match (entry, semantics) {
            (Entry::Affine, Semantics::Torchao0_18) => domain == ZeroPointDomain::Int,
            _ => mapping_type == MappingType::Asymmetric && domain == ZeroPointDomain::Int,
        };
        let zero_point_dtype = match options.zero_point_dtype {
            None if int_default => Some(Kind::Int),
            zp => zp,
        };
        let spec = ChooseSpec {
            mapping_type,
            quant_min,
            quant_max,
            eps,
            scale_dtype,
            zero_point_dtype,
            preserve_zero,
            domain,
        };
        Ok(Plan {
            op,
            keepdim: options.keepdim,
            spec,
        })
    }

    /// `qp` reshaped to `[input_size[i] / block_size[i]]` with `keepdim`
    /// (torchao 0.18 reshapes its `keepdim=True` reduction so), else as is.
    pub(crate) fn keep_dims(
        &self,
        qp: QParams,
        input_size: &[i64],
        block_size: &[i64],
    ) -> Result<QParams> {
        if !self.keepdim {
            return Ok(qp);
        }
        let shape: Vec<i64> = input_size
            .iter()
            .zip(block_size)
            .map(|(&n, &b)| n / b)
            .collect();
        let reshape = |t: Tensor| t.f_reshape(&shape).op(self.op);
        Ok(QParams {
            scale: reshape(qp.scale)?,
            zero_point: qp.zero_point.map(reshape).transpose()?,
        })
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

/// Refuses a mapping other than the asymmetric one, the only one torchao
/// 0.18's tinygemm and don't-preserve-zero chooses take.
fn check_asymmetric(op: &'static str, mapping_type: MappingType) -> Result<()> {
    if mapping_type != MappingType::Asymmetric {
        return Err(Error::invalid(
            op,
            "mapping_type",
            mapping_type,
            "supports only the asymmetric mapping (as torchao 0.18)",
        ));
    }
    Ok(())
}

/// Refuses the options torchao 0.18 removed from its chooses, naming the
/// 0.18 function that does what they asked for.
fn check_removed_options(op: &'static str, options: &QParamsOptions) -> Result<()> {
    if !options.preserve_zero {
        return Err(Error::invalid(
            op,
            "preserve_zero",
            false,
            "torchao 0.18 removed preserve_zero (it always preserves zero); use \
             choose_qparams_affine_dont_preserve_zero (Int zero point) or \
             choose_qparams_affine_tinygemm (Float zero point)",
        ));
    }
    match options.zero_point_domain {
        ZeroPointDomain::Int => Ok(()),
        ZeroPointDomain::Float => Err(Error::invalid(
            op,
            "zero_point_domain",
            ZeroPointDomain::Float,
            "torchao 0.18 removed zero_point_domain (its zero point is an int); use \
             choose_qparams_affine_tinygemm for the float domain",
        )),
        ZeroPointDomain::None => Err(Error::invalid(
            op,
            "zero_point_domain",
            ZeroPointDomain::None,
            "torchao 0.18 removed zero_point_domain (it always returns a zero point); \
             drop the zero point and use quantize_affine_no_zero_point",
        )),
    }
}
