//! Applying quantization parameters: `quantize_affine`, `dequantize_affine`
//! and the fake-quantize pair used in quantization-aware training.

use tch::{Device, Kind, Tensor};

use crate::block::BlockLayout;
use crate::dtype::{
    check_output_float, check_scalar_fits, is_input_float, kind_name, INPUT_FLOATS,
};
use crate::error::{Error, Result, TorchContext};
use crate::formula::mid_point;
use crate::mapping::ZeroPointDomain;
use crate::qparams::{check_float_input, QParamsOptions};
use crate::scalar_ops::{self, Num};
use crate::semantics::Semantics;
use crate::strided::{check_strided, check_strided_opt};
use crate::QuantDtype;

/// Optional arguments of [`quantize_affine`], [`dequantize_affine`] and the
/// fake-quantize functions, with torchao 0.11's defaults.
///
/// # Examples
/// ```
/// use tch_quant::{QuantizeOptions, ZeroPointDomain};
/// let tinygemm = QuantizeOptions {
///     quant_min: Some(0.0),
///     quant_max: Some(15.0),
///     zero_point_domain: ZeroPointDomain::Float,
///     ..Default::default()
/// };
/// assert_eq!(QuantizeOptions::default().zero_point_domain, ZeroPointDomain::Int);
/// # let _ = tinygemm;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct QuantizeOptions {
    /// Smallest code; defaults to the dtype's lower bound.
    pub quant_min: Option<f64>,
    /// Largest code; defaults to the dtype's upper bound.
    pub quant_max: Option<f64>,
    /// Where the zero point lives; it must match how it was chosen.
    pub zero_point_domain: ZeroPointDomain,
    /// Always run the libtorch op sequence (the reference path), never the
    /// fused CPU kernel. Both give identical bits.
    pub force_reference: bool,
    /// Which torchao release's bits to reproduce (0.11 by default); it must
    /// be the one the qparams were chosen under.
    pub semantics: Semantics,
}

/// The options that quantize with the qparams chosen under `options`: the
/// same quant range, zero-point domain and `force_reference`, so that
/// [`quantize_affine`] resolves the range as
/// [`choose_qparams_affine`](crate::choose_qparams_affine) did and reads the
/// zero point in the domain it was chosen in.
///
/// # Examples
/// ```
/// use tch_quant::{QParamsOptions, QuantizeOptions, ZeroPointDomain};
/// let choose = QParamsOptions {
///     quant_min: Some(0.0),
///     quant_max: Some(15.0),
///     zero_point_domain: ZeroPointDomain::Float,
///     preserve_zero: false,
///     ..Default::default()
/// };
/// let quantize = QuantizeOptions::from(&choose);
/// assert_eq!((quantize.quant_min, quantize.quant_max), (Some(0.0), Some(15.0)));
/// assert_eq!(quantize.zero_point_domain, ZeroPointDomain::Float);
/// ```
impl From<&QParamsOptions> for QuantizeOptions {
    fn from(options: &QParamsOptions) -> Self {
        QuantizeOptions {
            quant_min: options.quant_min,
            quant_max: options.quant_max,
            zero_point_domain: options.zero_point_domain,
            force_reference: options.force_reference,
            semantics: options.semantics,
        }
    }
}

/// Quantizes `input` with per-block `scale` and `zero_point`, bit-identical
/// to torchao's `quantize_affine` of the release `options.semantics` names
/// (0.11 by default).
///
/// Per element, in the dtype libtorch promotes `input` and `scale` to:
/// - Int domain: `q = clamp(round(x * (1.0 / scale)) + zp, quant_min, quant_max)`
///   (the reciprocal is taken first, as Python's `1.0 / scale` does);
/// - Float domain: `q = clamp(round((x - (zp - scale * mid)) / scale), quant_min, quant_max)`
///   with `mid = (quant_max + quant_min + 1) / 2`;
/// - None domain: `q = clamp(round(x * (1.0 / scale)), ...)`, and for float8
///   targets `clamp(x * reciprocal(scale), ...)` without rounding.
///
/// Under [`Semantics::Torchao0_18`] only the Int domain is taken (0.18
/// removed `zero_point_domain`; [`quantize_affine_tinygemm`] and
/// [`quantize_affine_no_zero_point`] are its other domains), with the same
/// formula, also for float8 targets (rounded, then clamped to the float8
/// range and cast).
///
/// Rounding is half to even. The codes are cast to `output_dtype`'s storage:
/// `uint1..=uint7` in uint8 (as torchao), `int1..=int7` in int8 (torchao 0.11
/// fails on its `.to(torch.intN)`).
///
/// `scale` and `zero_point` have one element per block, shaped as
/// [`choose_qparams_affine`](crate::choose_qparams_affine) returns them
/// (extra size-1 dims are accepted).
///
/// # Errors
/// Input not float32/float16/bfloat16 or empty; invalid `block_size` (as in
/// `choose_qparams_affine`); `scale`/`zero_point` shapes that do not match the
/// blocks or live on another device; the Int or Float domain without a zero
/// point, or a zero point with the None domain; an invalid quant range;
/// under 0.18 a domain other than Int ([`Error::InvalidArgument`] naming
/// `zero_point_domain`).
///
/// # Examples
/// ```
/// use tch::{Kind, Tensor};
/// use tch_quant::{choose_qparams_affine, quantize_affine, MappingType, QParamsOptions,
///                 QuantDtype, QuantizeOptions};
/// let x = Tensor::from_slice(&[-1.0f32, 0.0, 0.5, 1.0]).view([1, 4]);
/// let qp = choose_qparams_affine(&x, MappingType::Symmetric, &[1, 4], QuantDtype::Int8,
///                                &QParamsOptions::default())?;
/// let q = quantize_affine(&x, &[1, 4], &qp.scale, qp.zero_point.as_ref(), QuantDtype::Int8,
///                         &QuantizeOptions::default())?;
/// assert_eq!(q.kind(), Kind::Int8);
/// assert_eq!(Vec::<i8>::try_from(q.view(-1)).unwrap(), vec![-127, 0, 64, 127]);
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn quantize_affine(
    input: &Tensor,
    block_size: &[i64],
    scale: &Tensor,
    zero_point: Option<&Tensor>,
    output_dtype: QuantDtype,
    options: &QuantizeOptions,
) -> Result<Tensor> {
    const OP: &str = Op::Quantize.name();
    check_tensors(OP, input, scale, zero_point)?;
    check_int_domain_0_18(OP, options, "quantize_affine")?;
    quantize_with(
        Op::Quantize,
        input,
        block_size,
        scale,
        zero_point,
        output_dtype,
        options,
    )
}

/// [`quantize_affine`]'s body for `options` whose domain selects the
/// formula (the 0.18 entry points fix it).
fn quantize_with(
    call: Op,
    input: &Tensor,
    block_size: &[i64],
    scale: &Tensor,
    zero_point: Option<&Tensor>,
    output_dtype: QuantDtype,
    options: &QuantizeOptions,
) -> Result<Tensor> {
    let op = call.name();
    let prep = Prepared::new(
        call,
        input,
        block_size,
        scale,
        zero_point,
        output_dtype,
        options,
    )?;
    if !options.force_reference {
        if let Some(q) = crate::fused::quantize(op, input, &prep.layout, &prep.fused_args())? {
            return Ok(q);
        }
    }
    let q = prep.quantize_no_cast(input)?;
    q.f_to_kind(output_dtype.storage_kind()).op(op)
}

/// [`quantize_affine`], with the codes written into `out` instead of a new
/// tensor: an output reused from call to call (a server quantizing
/// activations, a checkpoint tool's buffer) skips the cost of fresh memory,
/// which the operating system zeroes page by page before the codes are
/// written (on a 2-vCPU VM, a 4096x4096 bfloat16 quantize in groups of 32
/// took 0.19 ns per element into fresh memory and 0.10 into reused memory).
///
/// The codes are the bits [`quantize_affine`] returns. On the fused CPU
/// path they are written straight into `out`; elsewhere (CUDA,
/// `force_reference`, float8 codes, calls the fused path leaves to
/// libtorch) they are computed as [`quantize_affine`] computes them and
/// copied into `out`.
///
/// # Errors
/// Everything [`quantize_affine`] refuses, and an `out` that is not a
/// strided tensor ([`Error::UnsupportedLayout`]), whose dtype is not
/// `output_dtype`'s storage ([`Error::UnsupportedKind`]), whose shape is not
/// the input's ([`Error::ShapeMismatch`]), or ([`Error::InvalidArgument`])
/// that is on another device than the input, not contiguous, requires
/// grad, or shares memory with the input, the scale or the zero point.
///
/// # Examples
/// ```
/// use tch::{Device, Kind, Tensor};
/// use tch_quant::{quantize_affine_into, QuantDtype, QuantizeOptions};
/// let x = Tensor::from_slice(&[-1.0f32, 0.0, 0.5, 1.0]).view([1, 4]);
/// let scale = Tensor::from_slice(&[1.0f32 / 127.0]);
/// let zp = Tensor::from_slice(&[0i32]);
/// let mut codes = Tensor::empty([1, 4], (Kind::Int8, Device::Cpu));
/// quantize_affine_into(&x, &[1, 4], &scale, Some(&zp), QuantDtype::Int8,
///                      &QuantizeOptions::default(), &mut codes)?;
/// assert_eq!(Vec::<i8>::try_from(codes.view(-1)).unwrap(), vec![-127, 0, 64, 127]);
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn quantize_affine_into(
    input: &Tensor,
    block_size: &[i64],
    scale: &Tensor,
    zero_point: Option<&Tensor>,
    output_dtype: QuantDtype,
    options: &QuantizeOptions,
    out: &mut Tensor,
) -> Result<()> {
    const OP: &str = Op::QuantizeInto.name();
    check_tensors(OP, input, scale, zero_point)?;
    check_strided(OP, "out", out)?;
    check_int_domain_0_18(OP, options, "quantize_affine")?;
    let prep = Prepared::new(
        Op::QuantizeInto,
        input,
        block_size,
        scale,
        zero_point,
        output_dtype,
        options,
    )?;
    check_codes_out(OP, out, input, output_dtype, &[scale], zero_point)?;
    if !options.force_reference {
        let args = prep.fused_args();
        if crate::fused::quantize_into(OP, input, &prep.layout, &args, out)? {
            return Ok(());
        }
    }
    let q = prep.quantize_no_cast(input)?;
    let q = q.f_to_kind(output_dtype.storage_kind()).op(OP)?;
    out.f_copy_(&q).op(OP)?;
    Ok(())
}

/// Maps codes back to floats, bit-identical to torchao's
/// `dequantize_affine` of the release `options.semantics` names (0.11 by
/// default).
///
/// - Int domain: `x = (q.to(int32) - zp.to(int32)).to(output_dtype) * scale`
///   under 0.11; under 0.18 `x = (q.to(output_dtype) - zp.to(output_dtype)) * scale`,
///   the subtraction rounded in `output_dtype` (so codes or zero points that
///   `output_dtype` does not hold exactly, as int16 codes in bfloat16, give
///   other bits), the zero point optional (`x = q.to(output_dtype) * scale`
///   without);
/// - Float domain: `x = (q - mid).to(output_dtype) * scale + zp`, computed in
///   place in `output_dtype` as torchao does;
/// - None domain: `x = q.to(output_dtype) * scale`.
///
/// Under 0.18 only the Int domain is taken ([`dequantize_affine_tinygemm`]
/// and [`dequantize_affine_no_zero_point`] are 0.18's Float and None
/// domains, with 0.11's formulas).
///
/// The product is finally cast to `output_dtype` (float32, float16 or
/// bfloat16). Codes outside `[quant_min, quant_max]` are not rejected, as in
/// torchao.
///
/// For contiguous CPU codes (uint8, int8, int16 or int32 storage) with
/// float32, float16 or bfloat16 scales and integer or 16/32-bit float zero
/// points, a fused multi-threaded kernel computes this in one pass over the
/// codes, with every op rounded as libtorch rounds it, so the bits are the
/// same; calls where a value could come out NaN (a scale that is not
/// finite, for one), float64 qparams and float8 codes run libtorch's op
/// sequence, as does every call with `force_reference`.
///
/// # Errors
/// Codes whose dtype is not `input_dtype`'s storage dtype (uint8 for
/// `uint1..=7`, int8 for `int1..=7`); everything [`quantize_affine`] refuses
/// about blocks, qparams and quant range; an `output_dtype` that is not a
/// float of the three above; under 0.18 a domain other than Int.
///
/// # Examples
/// ```
/// use tch::{Kind, Tensor};
/// use tch_quant::{dequantize_affine, QuantDtype, QuantizeOptions};
/// let q = Tensor::from_slice(&[0u8, 8, 15]).view([1, 3]);
/// let scale = Tensor::from_slice(&[0.5f32]);
/// let zp = Tensor::from_slice(&[8i32]);
/// let x = dequantize_affine(&q, &[1, 3], &scale, Some(&zp), QuantDtype::UInt4,
///                           &QuantizeOptions::default(), Kind::Float)?;
/// assert_eq!(Vec::<f32>::try_from(x.view(-1)).unwrap(), vec![-4.0, 0.0, 3.5]);
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn dequantize_affine(
    input: &Tensor,
    block_size: &[i64],
    scale: &Tensor,
    zero_point: Option<&Tensor>,
    input_dtype: QuantDtype,
    options: &QuantizeOptions,
    output_dtype: Kind,
) -> Result<Tensor> {
    const OP: &str = Op::Dequantize.name();
    check_int_domain_0_18(OP, options, "dequantize_affine")?;
    dequantize_with(
        Op::Dequantize,
        input,
        block_size,
        scale,
        zero_point,
        input_dtype,
        options,
        output_dtype,
    )
}

/// [`dequantize_affine`]'s body for `options` whose domain selects the
/// formula.
#[allow(clippy::too_many_arguments)]
fn dequantize_with(
    call: Op,
    input: &Tensor,
    block_size: &[i64],
    scale: &Tensor,
    zero_point: Option<&Tensor>,
    input_dtype: QuantDtype,
    options: &QuantizeOptions,
    output_dtype: Kind,
) -> Result<Tensor> {
    let op = call.name();
    check_codes(op, input, scale, zero_point, input_dtype)?;
    check_output_float(op, output_dtype)?;
    check_float8_domain(op, input_dtype, options.zero_point_domain)?;
    let prep = Prepared::new(
        call,
        input,
        block_size,
        scale,
        zero_point,
        input_dtype,
        options,
    )?;
    if !options.force_reference {
        let codes = crate::fused::CodesArg::Plain(input);
        if let Some(x) = prep.fused_dequantize(codes, output_dtype)? {
            return Ok(x);
        }
    }
    prep.dequantize(input, output_dtype)
}

/// [`dequantize_affine`] into `out`, a tensor the caller allocated (once,
/// say, and reused for every call, as an inference server does), in
/// `out`'s dtype: the same values, bit for bit, without allocating.
///
/// On the fused CPU path (see [`dequantize_affine`]) the values are written
/// straight into `out`; elsewhere (CUDA, `force_reference`, calls the
/// fused path leaves to libtorch) they are computed as [`dequantize_affine`]
/// computes them and copied into `out`. A fresh output costs a write of
/// every page before the values are written (the operating system hands out
/// zeroed pages), which a reused one does not.
///
/// # Errors
/// Everything [`dequantize_affine`] refuses, with `out`'s dtype as the
/// output dtype, and an `out` that is not a strided tensor
/// ([`Error::UnsupportedLayout`]), whose dtype is not float32, float16 or
/// bfloat16 ([`Error::UnsupportedKind`]), whose shape is not the codes'
/// ([`Error::ShapeMismatch`]), or ([`Error::InvalidArgument`]) that is on
/// another device than the codes, not contiguous, requires grad, or shares
/// memory with the codes, the scale or the zero point.
///
/// # Examples
/// ```
/// use tch::{Device, Kind, Tensor};
/// use tch_quant::{dequantize_affine_into, QuantDtype, QuantizeOptions};
/// let q = Tensor::from_slice(&[0u8, 8, 15]).view([1, 3]);
/// let scale = Tensor::from_slice(&[0.5f32]);
/// let zp = Tensor::from_slice(&[8i32]);
/// let mut out = Tensor::empty([1, 3], (Kind::Float, Device::Cpu));
/// dequantize_affine_into(&q, &[1, 3], &scale, Some(&zp), QuantDtype::UInt4,
///                        &QuantizeOptions::default(), &mut out)?;
/// assert_eq!(Vec::<f32>::try_from(out.view(-1)).unwrap(), vec![-4.0, 0.0, 3.5]);
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn dequantize_affine_into(
    input: &Tensor,
    block_size: &[i64],
    scale: &Tensor,
    zero_point: Option<&Tensor>,
    input_dtype: QuantDtype,
    options: &QuantizeOptions,
    out: &mut Tensor,
) -> Result<()> {
    const OP: &str = Op::DequantizeInto.name();
    check_strided(OP, "out", out)?;
    check_int_domain_0_18(OP, options, "dequantize_affine")?;
    check_codes(OP, input, scale, zero_point, input_dtype)?;
    check_float8_domain(OP, input_dtype, options.zero_point_domain)?;
    let prep = Prepared::new(
        Op::DequantizeInto,
        input,
        block_size,
        scale,
        zero_point,
        input_dtype,
        options,
    )?;
    check_out(
        OP,
        out,
        &input.size(),
        input.device(),
        &[input],
        scale,
        zero_point,
    )?;
    if !options.force_reference {
        let codes = crate::fused::CodesArg::Plain(input);
        if prep.fused_dequantize_into(codes, out)? {
            return Ok(());
        }
    }
    let x = prep.dequantize(input, out.kind())?;
    out.f_copy_(&x).op(OP)?;
    Ok(())
}

/// Refuses, under torchao 0.18, a domain other than Int for `function`
/// (`quantize_affine` or `dequantize_affine`), which 0.18 reduced to the Int
/// domain, naming the 0.18 functions of the other domains.
fn check_int_domain_0_18(
    op: &'static str,
    options: &QuantizeOptions,
    function: &'static str,
) -> Result<()> {
    let domain = options.zero_point_domain;
    if options.semantics != Semantics::Torchao0_18 || domain == ZeroPointDomain::Int {
        return Ok(());
    }
    let instead = match domain {
        ZeroPointDomain::Float => "tinygemm",
        _ => "no_zero_point",
    };
    Err(Error::invalid(
        op,
        "zero_point_domain",
        domain,
        format!(
            "torchao 0.18's {function} takes only the int domain (it removed \
             zero_point_domain); use {function}_{instead}"
        ),
    ))
}

/// The options of a 0.18 entry point whose domain is fixed.
fn fixed_domain(options: &QuantizeOptions, domain: ZeroPointDomain) -> QuantizeOptions {
    QuantizeOptions {
        zero_point_domain: domain,
        semantics: Semantics::Torchao0_18,
        ..*options
    }
}

/// torchao 0.18's `_quantize_affine_tinygemm`: quantize with a Float-domain
/// zero point (as [`choose_qparams_affine_tinygemm`](crate::choose_qparams_affine_tinygemm)
/// chooses it), the tinygemm int4 layout.
///
/// Per element: `q = clamp(round((x - (zp - scale * mid)) / scale), quant_min, quant_max)`
/// with `mid = (quant_max + quant_min + 1) / 2` (round half to even), cast
/// to `output_dtype`'s storage. The same op sequence as 0.11's
/// [`quantize_affine`] in the Float domain.
///
/// The function exists only in torchao 0.18: `options.zero_point_domain`
/// and `options.semantics` are ignored.
///
/// # Errors
/// A missing zero point (torchao fails on it too), and what
/// [`quantize_affine`] refuses.
///
/// # Examples
/// ```
/// use tch::Tensor;
/// use tch_quant::{quantize_affine_tinygemm, QuantDtype, QuantizeOptions};
/// let x = Tensor::from_slice(&[1.0f32, 2.0, 4.0]).view([1, 3]);
/// let scale = Tensor::from_slice(&[0.2f32]);
/// let zp = Tensor::from_slice(&[2.6f32]); // min + scale * 8
/// let q = quantize_affine_tinygemm(&x, &[1, 3], &scale, Some(&zp), QuantDtype::UInt4,
///                                  &QuantizeOptions::default())?;
/// assert_eq!(Vec::<u8>::try_from(q.view(-1)).unwrap(), vec![0, 5, 15]);
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn quantize_affine_tinygemm(
    input: &Tensor,
    block_size: &[i64],
    scale: &Tensor,
    zero_point: Option<&Tensor>,
    output_dtype: QuantDtype,
    options: &QuantizeOptions,
) -> Result<Tensor> {
    check_tensors(Op::QuantizeTinygemm.name(), input, scale, zero_point)?;
    quantize_with(
        Op::QuantizeTinygemm,
        input,
        block_size,
        scale,
        zero_point,
        output_dtype,
        &fixed_domain(options, ZeroPointDomain::Float),
    )
}

/// torchao 0.18's `_quantize_affine_no_zero_point`: quantize with a scale
/// alone.
///
/// Per element: `q = clamp(round(x * (1.0 / scale)), quant_min, quant_max)`
/// (round half to even, also for float8 targets, unlike 0.11's None
/// domain, which skipped the rounding for them), cast to `output_dtype`'s
/// storage. torchao's `zero_point` argument, which it ignores, is left out.
///
/// The function exists only in torchao 0.18: `options.zero_point_domain`
/// and `options.semantics` are ignored.
///
/// # Errors
/// What [`quantize_affine`] refuses.
///
/// # Examples
/// ```
/// use tch::Tensor;
/// use tch_quant::{quantize_affine_no_zero_point, QuantDtype, QuantizeOptions};
/// let x = Tensor::from_slice(&[-1.0f32, 0.26, 1.0]).view([1, 3]);
/// let scale = Tensor::from_slice(&[0.5f32]);
/// let q = quantize_affine_no_zero_point(&x, &[1, 3], &scale, QuantDtype::Int8,
///                                       &QuantizeOptions::default())?;
/// assert_eq!(Vec::<i8>::try_from(q.view(-1)).unwrap(), vec![-2, 1, 2]);
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn quantize_affine_no_zero_point(
    input: &Tensor,
    block_size: &[i64],
    scale: &Tensor,
    output_dtype: QuantDtype,
    options: &QuantizeOptions,
) -> Result<Tensor> {
    check_tensors(Op::QuantizeNoZeroPoint.name(), input, scale, None)?;
    quantize_with(
        Op::QuantizeNoZeroPoint,
        input,
        block_size,
        scale,
        None,
        output_dtype,
        &fixed_domain(options, ZeroPointDomain::None),
    )
}

/// torchao 0.18's `_dequantize_affine_tinygemm`: values from codes with a
/// Float-domain zero point.
///
/// `x = (q - mid)` (an integer tensor minus a Python float: float32),
/// `.to(output_dtype)`, then in place in `output_dtype` `*= scale` and
/// `+= zp` (when given), and a final cast to `output_dtype`; `mid =
/// (quant_max + quant_min + 1) / 2`. The same op sequence as 0.11's
/// [`dequantize_affine`] in the Float domain, on the same fused path.
///
/// The function exists only in torchao 0.18: `options.zero_point_domain`
/// and `options.semantics` are ignored.
///
/// # Errors
/// What [`dequantize_affine`] refuses, and float8 codes.
///
/// # Examples
/// ```
/// use tch::{Kind, Tensor};
/// use tch_quant::{dequantize_affine_tinygemm, QuantDtype, QuantizeOptions};
/// let q = Tensor::from_slice(&[0u8, 8, 15]).view([1, 3]);
/// let scale = Tensor::from_slice(&[0.5f32]);
/// let zp = Tensor::from_slice(&[1.0f32]);
/// let x = dequantize_affine_tinygemm(&q, &[1, 3], &scale, Some(&zp), QuantDtype::UInt4,
///                                    &QuantizeOptions::default(), Kind::Float)?;
/// assert_eq!(Vec::<f32>::try_from(x.view(-1)).unwrap(), vec![-3.0, 1.0, 4.5]);
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn dequantize_affine_tinygemm(
    input: &Tensor,
    block_size: &[i64],
    scale: &Tensor,
    zero_point: Option<&Tensor>,
    input_dtype: QuantDtype,
    options: &QuantizeOptions,
    output_dtype: Kind,
) -> Result<Tensor> {
    dequantize_with(
        Op::DequantizeTinygemm,
        input,
        block_size,
        scale,
        zero_point,
        input_dtype,
        &fixed_domain(options, ZeroPointDomain::Float),
        output_dtype,
    )
}

/// torchao 0.18's `_dequantize_affine_no_zero_point`: values from codes
/// with a scale alone, `x = q.to(output_dtype) * scale`, cast to
/// `output_dtype` (0.11's None domain, on the same fused path).
/// torchao's `zero_point` argument, which must be `None`, is left out.
///
/// The function exists only in torchao 0.18: `options.zero_point_domain`
/// and `options.semantics` are ignored.
///
/// # Errors
/// What [`dequantize_affine`] refuses.
///
/// # Examples
/// ```
/// use tch::{Kind, Tensor};
/// use tch_quant::{dequantize_affine_no_zero_point, QuantDtype, QuantizeOptions};
/// let q = Tensor::from_slice(&[-2i8, 1, 2]).view([1, 3]);
/// let scale = Tensor::from_slice(&[0.5f32]);
/// let x = dequantize_affine_no_zero_point(&q, &[1, 3], &scale, QuantDtype::Int8,
///                                         &QuantizeOptions::default(), Kind::Float)?;
/// assert_eq!(Vec::<f32>::try_from(x.view(-1)).unwrap(), vec![-1.0, 0.5, 1.0]);
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn dequantize_affine_no_zero_point(
    input: &Tensor,
    block_size: &[i64],
    scale: &Tensor,
    input_dtype: QuantDtype,
    options: &QuantizeOptions,
    output_dtype: Kind,
) -> Result<Tensor> {
    dequantize_with(
        Op::DequantizeNoZeroPoint,
        input,
        block_size,
        scale,
        None,
        input_dtype,
        &fixed_domain(options, ZeroPointDomain::None),
        output_dtype,
    )
}

/// Refuses codes and qparams that are not strided, and codes whose dtype is
/// not `dtype`'s storage dtype.
fn check_codes(
    op: &'static str,
    input: &Tensor,
    scale: &Tensor,
    zero_point: Option<&Tensor>,
    dtype: QuantDtype,
) -> Result<()> {
    check_tensors(op, input, scale, zero_point)?;
    if input.kind() != dtype.storage_kind() {
        return Err(Error::UnsupportedKind {
            op,
            arg: "input",
            expected: storage_name(dtype),
            got: input.kind(),
        });
    }
    Ok(())
}

/// Refuses an output tensor that [`dequantize_affine_into`] cannot write
/// the values of codes of `shape` on `device` into (see its errors); `out`
/// is strided (checked by the caller).
pub(crate) fn check_out(
    op: &'static str,
    out: &Tensor,
    shape: &[i64],
    device: Device,
    codes: &[&Tensor],
    scale: &Tensor,
    zero_point: Option<&Tensor>,
) -> Result<()> {
    if !is_input_float(out.kind()) {
        return Err(Error::UnsupportedKind {
            op,
            arg: "out",
            expected: INPUT_FLOATS,
            got: out.kind(),
        });
    }
    if out.size() != shape {
        return Err(Error::ShapeMismatch {
            op,
            arg: "out",
            got: out.size(),
            reason: format!("expected the codes' shape {shape:?}"),
        });
    }
    let reads = codes.iter().map(|&t| ("the codes", t));
    check_writable(
        op,
        out,
        device,
        "the codes'",
        reads,
        Some(scale),
        zero_point,
    )
}

/// Checks the `out` of the quantize entry points (`quantize_affine_into`,
/// `choose_qparams_and_quantize_affine_into`): `output_dtype`'s storage
/// dtype and `input`'s shape, and writable (see [`check_out`]) without
/// touching `input` or the qparams in `params` (the scale, when chosen
/// before the call) and `zero_point`.
pub(crate) fn check_codes_out(
    op: &'static str,
    out: &Tensor,
    input: &Tensor,
    output_dtype: QuantDtype,
    params: &[&Tensor],
    zero_point: Option<&Tensor>,
) -> Result<()> {
    if out.kind() != output_dtype.storage_kind() {
        return Err(Error::UnsupportedKind {
            op,
            arg: "out",
            expected: storage_name(output_dtype),
            got: out.kind(),
        });
    }
    let shape = input.size();
    if out.size() != shape {
        return Err(Error::ShapeMismatch {
            op,
            arg: "out",
            got: out.size(),
            reason: format!("expected the input's shape {shape:?}"),
        });
    }
    let reads = std::iter::once(("the input", input))
        .chain(params.iter().map(|&t| ("`scale`", t)))
        .chain(zero_point.map(|z| ("`zero_point`", z)));
    check_writable(op, out, input.device(), "the input's", reads, None, None)
}

/// The checks every `out` argument passes: on `device` (the device of
/// `whose`, for the message), contiguous, not requiring grad, and sharing
/// no byte with any of `reads` (named), `scale` or `zero_point`.
fn check_writable<'a>(
    op: &'static str,
    out: &Tensor,
    device: Device,
    whose: &str,
    reads: impl Iterator<Item = (&'static str, &'a Tensor)>,
    scale: Option<&'a Tensor>,
    zero_point: Option<&'a Tensor>,
) -> Result<()> {
    if out.device() != device {
        return Err(Error::invalid(
            op,
            "out",
            format!("{:?}", out.device()),
            format!("must be on {whose} device, {device:?}"),
        ));
    }
    if !out.is_contiguous() {
        return Err(Error::invalid(
            op,
            "out",
            format!("a tensor of strides {:?}", out.stride()),
            "must be contiguous",
        ));
    }
    if out.requires_grad() {
        return Err(Error::invalid(
            op,
            "out",
            "a tensor that requires grad",
            "cannot be written in place",
        ));
    }
    let span = crate::fused::byte_span(out);
    let named = reads
        .chain(scale.map(|s| ("`scale`", s)))
        .chain(zero_point.map(|z| ("`zero_point`", z)));
    for (name, t) in named {
        let other = crate::fused::byte_span(t);
        if t.device() == out.device() && span.start < other.end && other.start < span.end {
            return Err(Error::invalid(
                op,
                "out",
                format!("a tensor at {:#x}..{:#x}", span.start, span.end),
                format!("shares memory with {name}"),
            ));
        }
    }
    Ok(())
}

/// The arguments of a packed dequantize the fused path may cover, or
/// `None` where the caller unpacks and dequantizes (which reports any
/// error).
#[allow(clippy::too_many_arguments)]
fn packed_call(
    call: Op,
    shards: &[Tensor],
    bits: u32,
    shape: &[i64],
    block_size: &[i64],
    scale: &Tensor,
    zero_point: Option<&Tensor>,
    input_dtype: QuantDtype,
    options: &QuantizeOptions,
    output_dtype: Kind,
) -> Option<(Prepared, Vec<(u32, u32)>)> {
    let op = call.name();
    let (Some(planes), Some(first)) = (crate::bitpacking::plane_layout(bits), shards.first())
    else {
        return None;
    };
    let valid = !options.force_reference
        && !input_dtype.is_float8()
        && check_tensors(op, first, scale, zero_point).is_ok()
        && check_output_float(op, output_dtype).is_ok();
    if !valid {
        return None;
    }
    let prep = Prepared::for_shape(
        call,
        shape,
        first.device(),
        block_size,
        scale,
        zero_point,
        input_dtype,
        options,
    )
    .ok()?;
    Some((prep, planes))
}

/// [`dequantize_affine`] of sub-byte codes packed along the last dim
/// (`pack_uintx(codes, bits, -1)` shards, codes of `shape`) in one pass on
/// the fused path, bit-identical to unpacking them first; `Ok(None)` where
/// that path does not cover the call or the arguments are not valid, and
/// the caller unpacks and dequantizes (which reports any error).
#[allow(clippy::too_many_arguments)]
pub(crate) fn dequantize_packed(
    shards: &[Tensor],
    bits: u32,
    shape: &[i64],
    block_size: &[i64],
    scale: &Tensor,
    zero_point: Option<&Tensor>,
    input_dtype: QuantDtype,
    options: &QuantizeOptions,
    output_dtype: Kind,
) -> Result<Option<Tensor>> {
    let Some((prep, planes)) = packed_call(
        Op::Dequantize,
        shards,
        bits,
        shape,
        block_size,
        scale,
        zero_point,
        input_dtype,
        options,
        output_dtype,
    ) else {
        return Ok(None);
    };
    let codes = crate::fused::CodesArg::Packed {
        shards,
        planes: &planes,
    };
    prep.fused_dequantize(codes, output_dtype)
}

/// [`dequantize_packed`] into `out`, which the caller has checked with
/// [`check_out`]; `Ok(false)` where the caller unpacks and dequantizes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dequantize_packed_into(
    shards: &[Tensor],
    bits: u32,
    shape: &[i64],
    block_size: &[i64],
    scale: &Tensor,
    zero_point: Option<&Tensor>,
    input_dtype: QuantDtype,
    options: &QuantizeOptions,
    out: &mut Tensor,
) -> Result<bool> {
    let Some((prep, planes)) = packed_call(
        Op::DequantizeInto,
        shards,
        bits,
        shape,
        block_size,
        scale,
        zero_point,
        input_dtype,
        options,
        out.kind(),
    ) else {
        return Ok(false);
    };
    let codes = crate::fused::CodesArg::Packed {
        shards,
        planes: &planes,
    };
    prep.fused_dequantize_into(codes, out)
}

/// Quantizes and dequantizes back to `input`'s dtype without the cast to a
/// code dtype, as torchao's `fake_quantize_affine` of the release
/// `options.semantics` names (the forward pass of quantization-aware
/// training). Under 0.18 every domain is still taken: Int quantizes as
/// [`quantize_affine`] and dequantizes with 0.18's subtraction in the input
/// dtype, Float is the tinygemm pair, None is the no-zero-point pair (which
/// rounds float8 codes too).
///
/// Equal to [`dequantize_affine`] of the unrounded-to-storage codes of
/// [`quantize_affine`], in `input`'s dtype.
///
/// # Examples
/// ```
/// use tch::Tensor;
/// use tch_quant::{fake_quantize_affine, QuantDtype, QuantizeOptions};
/// let x = Tensor::from_slice(&[0.26f32, -0.74]).view([1, 2]);
/// let scale = Tensor::from_slice(&[0.5f32]);
/// let zp = Tensor::from_slice(&[0i32]);
/// let fq = fake_quantize_affine(&x, &[1, 2], &scale, Some(&zp), QuantDtype::Int8,
///                               &QuantizeOptions::default())?;
/// assert_eq!(Vec::<f32>::try_from(fq.view(-1)).unwrap(), vec![0.5, -0.5]);
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn fake_quantize_affine(
    input: &Tensor,
    block_size: &[i64],
    scale: &Tensor,
    zero_point: Option<&Tensor>,
    quant_dtype: QuantDtype,
    options: &QuantizeOptions,
) -> Result<Tensor> {
    let (_, _, dq) = fake_quantize(
        Op::FakeQuantize,
        input,
        block_size,
        (scale, zero_point),
        quant_dtype,
        options,
    )?;
    Ok(dq)
}

/// [`fake_quantize_affine`] that also returns the mask of intermediate codes
/// inside `[quant_min, quant_max]` (torchao's `fake_quantize_affine_cachemask`;
/// after clamping, only NaN codes fall outside).
///
/// # Examples
/// ```
/// use tch::{Kind, Tensor};
/// use tch_quant::{fake_quantize_affine_cachemask, QuantDtype, QuantizeOptions};
/// let x = Tensor::from_slice(&[0.26f32, f32::NAN]).view([1, 2]);
/// let scale = Tensor::from_slice(&[0.5f32]);
/// let zp = Tensor::from_slice(&[0i32]);
/// let (_, mask) = fake_quantize_affine_cachemask(&x, &[1, 2], &scale, Some(&zp),
///     QuantDtype::Int8, &QuantizeOptions::default())?;
/// assert_eq!(mask.kind(), Kind::Bool);
/// assert_eq!(Vec::<bool>::try_from(mask.view(-1)).unwrap(), vec![true, false]);
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn fake_quantize_affine_cachemask(
    input: &Tensor,
    block_size: &[i64],
    scale: &Tensor,
    zero_point: Option<&Tensor>,
    quant_dtype: QuantDtype,
    options: &QuantizeOptions,
) -> Result<(Tensor, Tensor)> {
    let (prep, q, dq) = fake_quantize(
        Op::FakeQuantizeCachemask,
        input,
        block_size,
        (scale, zero_point),
        quant_dtype,
        options,
    )?;
    let mask = scalar_ops::ge(&q, prep.scalar(prep.quant_min))
        .and_then(|lo| lo.f_logical_and(&scalar_ops::le(&q, prep.scalar(prep.quant_max))?))
        .op(Op::FakeQuantizeCachemask.name())?;
    Ok((dq, mask))
}

/// The codes of `input` before the cast to a code dtype, and their
/// dequantization in `input`'s dtype (with the validated arguments).
fn fake_quantize(
    call: Op,
    input: &Tensor,
    block_size: &[i64],
    (scale, zero_point): (&Tensor, Option<&Tensor>),
    quant_dtype: QuantDtype,
    options: &QuantizeOptions,
) -> Result<(Prepared, Tensor, Tensor)> {
    check_tensors(call.name(), input, scale, zero_point)?;
    let prep = Prepared::new(
        call,
        input,
        block_size,
        scale,
        zero_point,
        quant_dtype,
        options,
    )?;
    let q = prep.quantize_no_cast(input)?;
    let dq = prep.dequantize(&q, input.kind())?;
    Ok((prep, q, dq))
}

/// The door of this file's functions: strided tensors only (see
/// `strided.rs`).
fn check_tensors(
    op: &'static str,
    input: &Tensor,
    scale: &Tensor,
    zero_point: Option<&Tensor>,
) -> Result<()> {
    check_strided(op, "input", input)?;
    check_strided(op, "scale", scale)?;
    check_strided_opt(op, "zero_point", zero_point)
}

/// A zero point exactly where the domain has one (none for
/// [`ZeroPointDomain::None`]; torchao's Int and Float paths misbehave
/// without one, pytorch/ao#3459), of a real dtype: libtorch has no clamp or
/// rounding for complex or bool zero points.
pub(crate) fn check_zero_point_domain(
    op: &'static str,
    domain: ZeroPointDomain,
    zero_point: Option<&Tensor>,
) -> Result<()> {
    match (domain, zero_point) {
        (ZeroPointDomain::None, Some(_)) => Err(Error::invalid(
            op,
            "zero_point",
            "Some(tensor)",
            "must be None with the none zero-point domain",
        )),
        (ZeroPointDomain::Int | ZeroPointDomain::Float, None) => Err(Error::invalid(
            op,
            "zero_point",
            "None",
            format!("the {domain} zero-point domain needs a zero point (pytorch/ao#3459)"),
        )),
        (_, Some(zp)) if !is_real(zp.kind()) => Err(Error::UnsupportedKind {
            op,
            arg: "zero_point",
            expected: "an integer or float dtype",
            got: zp.kind(),
        }),
        _ => Ok(()),
    }
}

/// The integer and float kinds a zero point can have.
fn is_real(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Uint8
            | Kind::Int8
            | Kind::Int16
            | Kind::Int
            | Kind::Int64
            | Kind::Half
            | Kind::BFloat16
            | Kind::Float
            | Kind::Double
    )
}

fn storage_name(dtype: QuantDtype) -> &'static str {
    kind_name(dtype.storage_kind())
}

/// The public functions of this file, as [`Prepared`] tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Quantize,
    QuantizeInto,
    QuantizeTinygemm,
    QuantizeNoZeroPoint,
    Dequantize,
    DequantizeTinygemm,
    DequantizeNoZeroPoint,
    DequantizeInto,
    FakeQuantize,
    FakeQuantizeCachemask,
}

impl Op {
    /// The function's name, for errors.
    const fn name(self) -> &'static str {
        match self {
            Op::Quantize => "quantize_affine",
            Op::QuantizeInto => "quantize_affine_into",
            Op::QuantizeTinygemm => "quantize_affine_tinygemm",
            Op::QuantizeNoZeroPoint => "quantize_affine_no_zero_point",
            Op::Dequantize => "dequantize_affine",
            Op::DequantizeTinygemm => "dequantize_affine_tinygemm",
            Op::DequantizeNoZeroPoint => "dequantize_affine_no_zero_point",
            Op::DequantizeInto => "dequantize_affine_into",
            Op::FakeQuantize => "fake_quantize_affine",
            Op::FakeQuantizeCachemask => "fake_quantize_affine_cachemask",
        }
    }

    /// Whether `input` holds floats to quantize (rather than codes, whose
    /// dtype `dequantize_affine` checks against the code dtype itself).
    fn takes_floats(self) -> bool {
        !matches!(
            self,
            Op::Dequantize
                | Op::DequantizeTinygemm
                | Op::DequantizeNoZeroPoint
                | Op::DequantizeInto
        )
    }
}

/// Validated arguments, with scale and zero point viewed so that they
/// broadcast over the blocks of the input.
struct Prepared {
    op: &'static str,
    layout: BlockLayout,
    original_shape: Vec<i64>,
    scale: Tensor,
    zero_point: Option<Tensor>,
    quant_min: f64,
    quant_max: f64,
    dtype: QuantDtype,
    domain: ZeroPointDomain,
    /// Which release's op sequence to run.
    semantics: Semantics,
}

impl Prepared {
    fn new(
        call: Op,
        input: &Tensor,
        block_size: &[i64],
        scale: &Tensor,
        zero_point: Option<&Tensor>,
        dtype: QuantDtype,
        options: &QuantizeOptions,
    ) -> Result<Self> {
        if call.takes_floats() {
            check_float_input(call.name(), "input", input)?;
        }
        Self::for_shape(
            call,
            &input.size(),
            input.device(),
            block_size,
            scale,
            zero_point,
            dtype,
            options,
        )
    }

    /// [`Prepared::new`] for an input of `shape` on `device`, whose dtype
    /// the caller has checked.
    #[allow(clippy::too_many_arguments)]
    fn for_shape(
        call: Op,
        shape: &[i64],
        device: Device,
        block_size: &[i64],
        scale: &Tensor,
        zero_point: Option<&Tensor>,
        dtype: QuantDtype,
        options: &QuantizeOptions,
    ) -> Result<Self> {
        let op = call.name();
        let original_shape = shape.to_vec();
        let layout = BlockLayout::new(op, block_size, &original_shape)?;
        let (quant_min, quant_max) =
            dtype.resolve_range(op, options.quant_min, options.quant_max)?;
        let domain = options.zero_point_domain;
        // torchao 0.18's dequantize_affine and _dequantize_affine_tinygemm
        // take an optional zero point (its quantizes do not: `+ None` and
        // `None - scale * mid` raise).
        let zero_point_optional = call == Op::DequantizeTinygemm
            || (options.semantics == Semantics::Torchao0_18
                && domain == ZeroPointDomain::Int
                && !call.takes_floats());
        if options.semantics == Semantics::Torchao0_18
            && domain == ZeroPointDomain::Int
            && call.takes_floats()
            && zero_point.is_none()
        {
            // 0.18's Int-domain quantize adds the zero point (`+ None`
            // raises); its quantize without one is another function.
            return Err(Error::invalid(
                op,
                "zero_point",
                "None",
                "torchao 0.18's int-domain quantize needs a zero point; without one use \
                 quantize_affine_no_zero_point (or the none domain of the fake-quantizes)",
            ));
        }
        if !(zero_point_optional && zero_point.is_none()) {
            check_zero_point_domain(op, domain, zero_point)?;
        }
        if !is_input_float(scale.kind()) && scale.kind() != Kind::Double {
            return Err(Error::UnsupportedKind {
                op,
                arg: "scale",
                expected: "a float dtype",
                got: scale.kind(),
            });
        }
        let scale = view_qparam(op, "scale", scale, device, &layout)?;
        let zero_point = match zero_point {
            Some(zp) => Some(view_qparam(op, "zero_point", zp, device, &layout)?),
            None => None,
        };
        Ok(Prepared {
            op,
            layout,
            original_shape,
            scale,
            zero_point,
            quant_min,
            quant_max,
            dtype,
            domain,
            semantics: options.semantics,
        })
    }

    /// Python passes quant ranges as ints for integer dtypes and as floats
    /// for float8; the scalar's type decides how libtorch converts it.
    fn scalar(&self, v: f64) -> Num {
        if self.dtype.is_float8() {
            Num::Float(v)
        } else {
            Num::Int(v as i64)
        }
    }

    fn clamp(&self, t: Tensor) -> Result<Tensor> {
        check_scalar_fits(self.op, "quant_min", self.quant_min, t.kind())?;
        check_scalar_fits(self.op, "quant_max", self.quant_max, t.kind())?;
        scalar_ops::clamp(&t, self.scalar(self.quant_min), self.scalar(self.quant_max)).op(self.op)
    }

    /// The arguments of the fused quantize of these qparams.
    fn fused_args(&self) -> crate::fused::QuantizeArgs<'_> {
        crate::fused::QuantizeArgs {
            scale: &self.scale,
            zero_point: self.zero_point.as_ref(),
            quant_min: self.quant_min,
            quant_max: self.quant_max,
            dtype: self.dtype,
            domain: self.domain,
        }
    }

    /// torchao's `_quantize_affine_no_dtype_cast`: codes in the promoted
    /// float dtype, input shape.
    fn quantize_no_cast(&self, input: &Tensor) -> Result<Tensor> {
        let x = input
            .f_reshape(&self.layout.shape_for_reduction)
            .op(self.op)?;
        let scale = &self.scale;
        let unclamped = match (self.domain, &self.zero_point) {
            (ZeroPointDomain::Float, Some(zp)) => {
                let min_val = scalar_ops::mul(scale, mid_point(self.quant_min, self.quant_max))
                    .and_then(|s| zp.f_sub(&s))
                    .op(self.op)?;
                x.f_sub(&min_val)
                    .and_then(|d| d.f_div(scale))
                    .and_then(|q| q.f_round())
            }
            (ZeroPointDomain::None, _)
                if self.dtype.is_float8() && self.semantics == Semantics::Torchao0_11 =>
            {
                scale.f_reciprocal().and_then(|r| x.f_mul(&r))
            }
            (_, zp) => {
                let rounded = scale
                    .f_reciprocal()
                    .and_then(|r| scalar_ops::mul(&r, 1.0))
                    .and_then(|r| x.f_mul(&r))
                    .and_then(|q| q.f_round());
                match zp {
                    Some(zp) => rounded.and_then(|q| q.f_add(zp)),
                    None => rounded,
                }
            }
        }
        .op(self.op)?;
        self.clamp(unclamped)?
            .f_reshape(&self.original_shape)
            .op(self.op)
    }

    /// The fused path's dequantize of `codes` into `output_dtype`, where it
    /// covers the call.
    fn fused_dequantize(
        &self,
        codes: crate::fused::CodesArg,
        output_dtype: Kind,
    ) -> Result<Option<Tensor>> {
        let args = crate::fused::DequantizeArgs {
            scale: &self.scale,
            zero_point: self.zero_point.as_ref(),
            quant_min: self.quant_min,
            quant_max: self.quant_max,
            domain: self.domain,
            semantics: self.semantics,
            output: output_dtype,
        };
        crate::fused::dequantize(self.op, codes, &self.original_shape, &self.layout, &args)
    }

    /// [`fused_dequantize`](Self::fused_dequantize) into `out` (checked by
    /// [`check_out`]); `false` where the fused path does not cover it.
    fn fused_dequantize_into(
        &self,
        codes: crate::fused::CodesArg,
        out: &mut Tensor,
    ) -> Result<bool> {
        let args = crate::fused::DequantizeArgs {
            scale: &self.scale,
            zero_point: self.zero_point.as_ref(),
            quant_min: self.quant_min,
            quant_max: self.quant_max,
            domain: self.domain,
            semantics: self.semantics,
            output: out.kind(),
        };
        let (shape, layout) = (&self.original_shape, &self.layout);
        crate::fused::dequantize_into(self.op, codes, shape, layout, &args, out)
    }

    /// torchao's `_dequantize_affine_no_dtype_check`.
    fn dequantize(&self, codes: &Tensor, output_dtype: Kind) -> Result<Tensor> {
        let q = codes
            .f_reshape(&self.layout.shape_for_reduction)
            .op(self.op)?;
        let scale = &self.scale;
        let out = match (self.domain, &self.zero_point) {
            (ZeroPointDomain::Float, zp) => (|| {
                let mut d = scalar_ops::sub(&q, mid_point(self.quant_min, self.quant_max))?
                    .f_to_kind(output_dtype)?;
                let _ = d.f_mul_(scale)?;
                if let Some(zp) = zp {
                    let _ = d.f_add_(zp)?;
                }
                Ok(d)
            })(),
            (ZeroPointDomain::None, _) => q.f_to_kind(output_dtype).and_then(|d| d.f_mul(scale)),
            (ZeroPointDomain::Int, zp) if self.semantics == Semantics::Torchao0_18 => (|| {
                let mut d = q.f_to_kind(output_dtype)?;
                if let Some(zp) = zp {
                    d = d.f_sub(&zp.f_to_kind(output_dtype)?)?;
                }
                d.f_mul(scale)
            })(
            ),
            (ZeroPointDomain::Int, zp) => (|| {
                let mut d = q.f_to_kind(Kind::Int)?;
                if let Some(zp) = zp {
                    d = d.f_sub(&zp.f_to_kind(Kind::Int)?)?;
                }
                d.f_to_kind(output_dtype)?.f_mul(scale)
            })(),
        }
        .op(self.op)?;
        out.f_reshape(&self.original_shape)
            .and_then(|o| o.f_to_kind(output_dtype))
            .op(self.op)
    }
}

/// Checks that a scale or zero point has one element per block (its shape,
/// size-1 dims aside, equal to the qparams shape) and views it so that it
/// broadcasts over the input's blocks.
/// Checks that a scale or zero point has one element per block: its shape,
/// size-1 dims aside, equal to the qparams shape.
pub(crate) fn check_qparam_shape(
    op: &'static str,
    arg: &'static str,
    t: &Tensor,
    layout: &BlockLayout,
) -> Result<()> {
    let squeeze = |s: &[i64]| s.iter().copied().filter(|&d| d != 1).collect::<Vec<_>>();
    let size = t.size();
    if squeeze(&size) != squeeze(&layout.qparams_shape) {
        return Err(Error::ShapeMismatch {
            op,
            arg,
            got: size,
            reason: format!(
                "expected one value per block, shape {:?} for block layout {:?} (pytorch/ao#4811)",
                layout.qparams_shape, layout.shape_for_reduction
            ),
        });
    }
    Ok(())
}

/// Refuses the Float domain for float8 codes: libtorch has no subtraction
/// for them (torchao fails too).
pub(crate) fn check_float8_domain(
    op: &'static str,
    dtype: QuantDtype,
    domain: ZeroPointDomain,
) -> Result<()> {
    if dtype.is_float8() && domain == ZeroPointDomain::Float {
        return Err(Error::invalid(
            op,
            "zero_point_domain",
            ZeroPointDomain::Float,
            format!("{dtype} codes support the int or none domain"),
        ));
    }
    Ok(())
}

fn view_qparam(
    op: &'static str,
    arg: &'static str,
    t: &Tensor,
    device: Device,
    layout: &BlockLayout,
) -> Result<Tensor> {
    check_qparam_shape(op, arg, t, layout)?;
    if t.device() != device {
        return Err(Error::invalid(
            op,
            arg,
            format!("{:?}", t.device()),
            format!("must be on the input's device, {device:?}"),
        ));
    }
    t.f_reshape(&layout.shape_after_reduction).op(op)
}

#[cfg(test)]
mod tests {
    use tch::{Kind, Tensor};

    use super::*;

    /// Packed codes under 0.18 (what `AffineQuantizedTensor::dequantize`
    /// takes) give the bits of unpacked codes on the reference path.
    #[test]
    fn packed_dequantize_follows_the_semantics() {
        for (bits, dtype) in [(4, QuantDtype::UInt4), (3, QuantDtype::UInt3)] {
            let codes = Tensor::randint(1 << bits, [4, 32], (Kind::Uint8, Device::Cpu));
            let shards = crate::bitpacking::pack_uintx(&codes, bits, -1).unwrap();
            let scale = Tensor::rand([4, 2], (Kind::Float, Device::Cpu)) * 3.0;
            let zero_points = [
                Tensor::randint(1 << bits, [4, 2], (Kind::Int, Device::Cpu)),
                Tensor::rand([4, 2], (Kind::BFloat16, Device::Cpu)) * 9.0,
            ];
            for zp in &zero_points {
                for output in [Kind::Float, Kind::BFloat16, Kind::Half] {
                    for (semantics, domain) in [
                        (Semantics::Torchao0_18, ZeroPointDomain::Int),
                        (Semantics::Torchao0_11, ZeroPointDomain::Int),
                        (Semantics::Torchao0_18, ZeroPointDomain::Float),
                    ] {
                        let options = QuantizeOptions {
                            zero_point_domain: domain,
                            semantics,
                            ..Default::default()
                        };
                        let args = (&[1, 16][..], &scale, Some(zp), dtype, &options);
                        let fused = dequantize_packed(
                            &shards,
                            bits,
                            &[4, 32],
                            args.0,
                            args.1,
                            args.2,
                            args.3,
                            args.4,
                            output,
                        )
                        .unwrap()
                        .expect("the fused path covers packed codes");
                        let reference = QuantizeOptions {
                            force_reference: true,
                            ..options
                        };
                        let want = Prepared::new(
                            Op::Dequantize,
                            &codes,
                            args.0,
                            &scale,
                            Some(zp),
                            dtype,
                            &reference,
                        )
                        .unwrap()
                        .dequantize(&codes, output)
                        .unwrap();
                        assert!(
                            fused.equal(&want),
                            "{semantics} {domain} {dtype} {:?} -> {output:?}",
                            zp.kind()
                        );
                    }
                }
            }
        }
    }
}
