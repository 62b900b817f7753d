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
use crate::quantize::{quantize_affine, QuantizeOptions};
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
        match choose_and_quantize(OP, input, &layout, &plan.spec, target_dtype)? {
            Chained::Done(qp, codes) => return Ok((keep(qp)?, codes)),
            Chained::Chosen(qp) => {
                return quantize_with(input, block_size, keep(qp)?, target_dtype, options)
            }
            Chained::NotCovered => {}
        }
    }
    let qp = choose_qparams_affine(input, mapping_type, block_size, target_dtype, options)?;
    quantize_with(input, block_size, qp, target_dtype, options)
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
