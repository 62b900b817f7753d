//! Choose then quantize in one call: `choose_qparams_and_quantize_affine`,
//! on the fused path where it covers the call (in one pass over the input
//! where the blocks allow it), else `choose_qparams_affine` followed by
//! `quantize_affine`.

use tch::Tensor;

use crate::block::BlockLayout;
use crate::error::Result;
use crate::formula::QParams;
use crate::fused::{choose_and_quantize, Chained};
use crate::mapping::MappingType;
use crate::qparams::{check_float_input, choose_qparams_affine, Plan, QParamsOptions};
use crate::quantize::{check_codes_out, quantize_affine, quantize_affine_into, QuantizeOptions};
use crate::strided::check_strided;
use crate::QuantDtype;

/// Chooses the qparams of every block and quantizes `input` with them:
/// exactly [`choose_qparams_affine`] followed by [`quantize_affine`] with the
/// same block size, quant range, zero-point domain, semantics (see
/// [`Semantics`](crate::Semantics): 0.11 or 0.18's choose, and `keepdim`
/// under 0.18) and `target_dtype` as the code dtype, bit for bit, but in one
/// pass over the input where the blocks allow it.
///
/// On contiguous CPU float32/float16/bfloat16 inputs whose outermost
/// non-unit dim is a dim of blocks (per row, per group along the last dim,
/// 2-D blocks), each tile of the input is reduced to its qparams and
/// quantized while it is in cache, so the input is read once. Other layouts
/// (per tensor, per column) take one fused pass for each step, and inputs
/// the fused path does not cover run the two functions; `force_reference`
/// runs both on the libtorch op sequence.
///
/// Returns the qparams as [`choose_qparams_affine`] does and the codes as
/// [`quantize_affine`] does (shape of `input`, dtype `target_dtype`'s
/// storage).
///
/// # Errors
/// Those of [`choose_qparams_affine`] and [`quantize_affine`].
///
/// # Examples
/// ```
/// use tch::{Kind, Tensor};
/// use tch_quant::{choose_qparams_and_quantize_affine, MappingType, QParamsOptions, QuantDtype};
/// let w = Tensor::from_slice(&[-1.0f32, 0.0, 0.5, 1.0]).view([1, 4]);
/// let (qp, codes) = choose_qparams_and_quantize_affine(&w, MappingType::Symmetric, &[1, 4],
///     QuantDtype::Int8, &QParamsOptions::default())?;
/// assert_eq!(qp.scale.size(), vec![1]);
/// assert_eq!(Vec::<i8>::try_from(codes.view(-1)).unwrap(), vec![-127, 0, 64, 127]);
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn choose_qparams_and_quantize_affine(
    input: &Tensor,
    mapping_type: MappingType,
    block_size: &[i64],
    target_dtype: QuantDtype,
    options: &QParamsOptions,
) -> Result<(QParams, Tensor)> {
    const OP: &str = "choose_qparams_and_quantize_affine";
    check_strided(OP, "input", input)?;
    // Validated on both paths, so that a refusal names this function
    // whichever path would have run.
    let kind = check_float_input(OP, "input", input)?;
    let layout = BlockLayout::new(OP, block_size, &input.size())?;
    let plan = Plan::new(OP, mapping_type, target_dtype, options, kind)?;
    if !options.force_reference {
        let keep = |qp| plan.keep_dims(qp, &input.size(), block_size);
        match choose_and_quantize(OP, input, &layout, &plan.spec, target_dtype, None)? {
            Chained::Done(qp, Some(codes)) => return Ok((keep(qp)?, codes)),
            Chained::Done(qp, None) => {
                // Not returned without an output to write into.
                return quantize_with(input, block_size, keep(qp)?, target_dtype, options);
            }
            Chained::Chosen(qp) => {
                return quantize_with(input, block_size, keep(qp)?, target_dtype, options)
            }
            Chained::NotCovered => {}
        }
    }
    let qp = choose_qparams_affine(input, mapping_type, block_size, target_dtype, options)?;
    quantize_with(input, block_size, qp, target_dtype, options)
}

/// [`choose_qparams_and_quantize_affine`], with the codes written into
/// `out` instead of a new tensor (the qparams are returned as new tensors):
/// an output reused from call to call skips the cost of fresh memory (see
/// [`quantize_affine_into`](crate::quantize_affine_into)). The same bits,
/// on the same paths: in one pass over the input where the blocks allow it,
/// the codes written straight into `out`; where the fused path does not
/// cover the call, [`choose_qparams_affine`] then
/// [`quantize_affine_into`](crate::quantize_affine_into).
///
/// # Errors
/// Those of [`choose_qparams_and_quantize_affine`], and an `out` that is not
/// a strided tensor ([`Error::UnsupportedLayout`](crate::Error::UnsupportedLayout)),
/// whose dtype is not `target_dtype`'s storage
/// ([`Error::UnsupportedKind`](crate::Error::UnsupportedKind)), whose shape
/// is not the input's ([`Error::ShapeMismatch`](crate::Error::ShapeMismatch)),
/// or ([`Error::InvalidArgument`](crate::Error::InvalidArgument)) that is on
/// another device than the input, not contiguous, requires grad, or shares
/// memory with the input.
///
/// # Examples
/// ```
/// use tch::{Device, Kind, Tensor};
/// use tch_quant::{choose_qparams_and_quantize_affine_into, MappingType, QParamsOptions,
///                 QuantDtype};
/// let w = Tensor::from_slice(&[-1.0f32, 0.0, 0.5, 1.0]).view([1, 4]);
/// let mut codes = Tensor::empty([1, 4], (Kind::Int8, Device::Cpu));
/// let qp = choose_qparams_and_quantize_affine_into(&w, MappingType::Symmetric, &[1, 4],
///     QuantDtype::Int8, &QParamsOptions::default(), &mut codes)?;
/// assert_eq!(qp.scale.size(), vec![1]);
/// assert_eq!(Vec::<i8>::try_from(codes.view(-1)).unwrap(), vec![-127, 0, 64, 127]);
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn choose_qparams_and_quantize_affine_into(
    input: &Tensor,
    mapping_type: MappingType,
    block_size: &[i64],
    target_dtype: QuantDtype,
    options: &QParamsOptions,
    out: &mut Tensor,
) -> Result<QParams> {
    const OP: &str = "choose_qparams_and_quantize_affine_into";
    check_strided(OP, "input", input)?;
    check_strided(OP, "out", out)?;
    let kind = check_float_input(OP, "input", input)?;
    let layout = BlockLayout::new(OP, block_size, &input.size())?;
    let plan = Plan::new(OP, mapping_type, target_dtype, options, kind)?;
    check_codes_out(OP, out, input, target_dtype, &[], None)?;
    let quantize_into = |qp: QParams, out: &mut Tensor| -> Result<QParams> {
        quantize_affine_into(
            input,
            block_size,
            &qp.scale,
            qp.zero_point.as_ref(),
            target_dtype,
            &QuantizeOptions::from(options),
            out,
        )?;
        Ok(qp)
    };
    if !options.force_reference {
        let keep = |qp| plan.keep_dims(qp, &input.size(), block_size);
        match choose_and_quantize(OP, input, &layout, &plan.spec, target_dtype, Some(out))? {
            Chained::Done(qp, _) => return keep(qp),
            Chained::Chosen(qp) => return quantize_into(keep(qp)?, out),
            Chained::NotCovered => {}
        }
    }
    let qp = choose_qparams_affine(input, mapping_type, block_size, target_dtype, options)?;
    quantize_into(qp, out)
}

/// `quantize_affine` with the qparams just chosen and the same options.
fn quantize_with(
    input: &Tensor,
    block_size: &[i64],
    qp: QParams,
    target_dtype: QuantDtype,
    options: &QParamsOptions,
) -> Result<(QParams, Tensor)> {
    let codes = quantize_affine(
        input,
        block_size,
        &qp.scale,
        qp.zero_point.as_ref(),
        target_dtype,
        &QuantizeOptions::from(options),
    )?;
    Ok((qp, codes))
}
