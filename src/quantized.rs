//! The quantized tensor: codes bundled with everything needed to read them
//! back (torchao's `AffineQuantizedTensor`), so that dequantizing takes no
//! arguments.

use tch::{Device, Kind, Tensor};

use crate::bitpacking::{pack_uintx, unpack_uintx};
use crate::chain::choose_qparams_and_quantize_affine;
use crate::dtype::{check_output_float, kind_name};
use crate::error::{Error, Result, TorchContext};
use crate::float8::{choose_scale_float8, dequantize_affine_float8, quantize_affine_float8};
use crate::formula::QParams;
use crate::mapping::{MappingType, ZeroPointDomain};
use crate::qparams::{choose_qparams_affine, QParamsOptions};
use crate::quantize::{
    check_float8_domain, check_out, check_qparam_shape, check_zero_point_domain, dequantize_affine,
    dequantize_affine_into, dequantize_packed, dequantize_packed_into, QuantizeOptions,
};
use crate::recipe::Recipe;
use crate::semantics::Semantics;
use crate::strided::{check_strided, check_strided_opt};
use crate::{Float8ScaleOptions, QuantDtype};

/// Sub-byte codes are packed along the last dim, as torchao's `UintxLayout`
/// does by default (`pack_dim=-1`).
pub const PACK_DIM: i64 = -1;

/// How the codes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageLayout {
    /// One code per element, in the target dtype's storage dtype.
    Plain,
    /// `pack_uintx(codes.to(uint8), bits, dim)` shards: torchao's
    /// `bitpacking.pack`.
    Packed {
        /// Bits per code, 1 to 7.
        bits: u32,
        /// The dim the codes are packed along.
        dim: i64,
    },
}

/// A float tensor quantized with affine quantization: the codes, one scale
/// (and zero point) per block, and every argument torchao's
/// `dequantize_affine` needs, so that [`dequantize`](Self::dequantize) takes
/// none.
///
/// # Examples
/// ```
/// use tch::{Device, Kind, Tensor};
/// use tch_quant::{AffineQuantizedTensor, Recipe, StorageLayout};
/// let w = Tensor::randn([64, 256], (Kind::BFloat16, Device::Cpu));
/// let q = AffineQuantizedTensor::quantize(&w, &Recipe::Int4WeightOnly { group_size: 32, use_hqq: false })?;
/// assert_eq!(q.layout(), StorageLayout::Packed { bits: 4, dim: -1 });
/// assert_eq!(q.scale().size(), vec![64, 8]);
/// assert!(q.nbytes() * 3 < q.original_nbytes());
/// let restored = q.dequantize()?;
/// assert_eq!((restored.size(), restored.kind()), (w.size(), Kind::BFloat16));
/// # Ok::<(), tch_quant::Error>(())
/// ```
#[derive(Debug)]
pub struct AffineQuantizedTensor {
    qdata: Vec<Tensor>,
    scale: Tensor,
    zero_point: Option<Tensor>,
    block_size: Vec<i64>,
    mapping_type: MappingType,
    target_dtype: QuantDtype,
    quant_min: f64,
    quant_max: f64,
    eps: f64,
    preserve_zero: bool,
    zero_point_domain: ZeroPointDomain,
    shape: Vec<i64>,
    dtype: Kind,
    layout: StorageLayout,
    semantics: Semantics,
}

/// The int4 recipe's qparams as torchao computes them when some are NaN:
/// on the weight zero-padded by `TensorCoreTiledLayout.pre_process` (the
/// last dim to a multiple of 1024, the one before to a multiple of 8), then
/// sliced back; `None` when no scale or zero point is NaN.
///
/// The padding changes no value, but the bits of a NaN depend on which of
/// libtorch's code paths computed and cast it (a vectorized bfloat16 cast
/// writes `0xffff`, the scalar remainder `0x7fc0`), and the padded shape
/// sends other elements down the vectorized paths. NaN qparams are rare (a
/// NaN or infinity in a group, a range that overflows), so the padded
/// computation runs only for them.
fn tinygemm_nan_qparams(
    input: &Tensor,
    block_size: &[i64],
    recipe: &Recipe,
    qp: &QParams,
) -> Result<Option<QParams>> {
    const OP: &str = "AffineQuantizedTensor::quantize";
    let has_nan = |t: &Tensor| -> Result<bool> {
        let any = t.f_isnan().and_then(|n| n.f_any()).op(OP)?;
        Ok(any.f_int64_value(&[]).op(OP)? != 0)
    };
    let zp_nan = match &qp.zero_point {
        Some(zp) => has_nan(zp)?,
        None => false,
    };
    let shape = input.size();
    if shape.len() < 2 || !(zp_nan || has_nan(&qp.scale)?) {
        return Ok(None);
    }
    let (rows, cols) = (shape[shape.len() - 2], shape[shape.len() - 1]);
    let round_up = |n: i64, to: i64| (n + to - 1) / to * to;
    let padding = [0, round_up(cols, 1024) - cols, 0, round_up(rows, 8) - rows];
    let padded = input.f_constant_pad_nd(padding.as_slice()).op(OP)?;
    let args = recipe.arguments();
    let options = QParamsOptions {
        force_reference: true,
        ..args.options
    };
    let full = choose_qparams_affine(&padded, args.mapping, block_size, args.dtype, &options)?;
    let groups = cols / block_size[block_size.len() - 1];
    let unpad = |t: Tensor| -> Result<Tensor> {
        t.f_narrow(-2, 0, rows)
            .and_then(|t| t.f_narrow(-1, 0, groups))
            .and_then(|t| t.f_contiguous())
            .op(OP)
    };
    Ok(Some(QParams {
        scale: unpad(full.scale)?,
        zero_point: full.zero_point.map(unpad).transpose()?,
    }))
}

/// A `use_hqq` recipe's quantization, as torchao 0.11's
/// `to_affine_quantized_intx(..., use_hqq=True)` runs it: the layout's
/// `pre_process` first (the int4 recipe's `TensorCoreTiledLayout` zero-pads
/// the last dim to a multiple of 1024 and the one before to a multiple of
/// 8, which changes the solver's error mean and so possibly when it stops),
/// then [`choose_qparams_and_quantize_affine_hqq`](crate::choose_qparams_and_quantize_affine_hqq)
/// with `nbits = log2(quant_max + 1)`, axis 1, the group size, and as
/// compute dtype the recipe's zero-point dtype (bfloat16 for int4) or else
/// the weight's; the codes cast to the target dtype. The padding is sliced
/// off again, and scale and zero point keep one column per group
/// (`[..., K / group]`; torchao's plain layout holds the same values as
/// `[numel / group, 1]`).
fn hqq_quantize(
    input: &Tensor,
    recipe: &Recipe,
    block_size: Vec<i64>,
) -> Result<AffineQuantizedTensor> {
    const OP: &str = "AffineQuantizedTensor::quantize";
    let args = recipe.arguments();
    let quant_max = recipe.quant_range().1;
    let group = *block_size.last().unwrap_or(&1);
    let shape = input.size();
    let (rows, cols) = (shape[shape.len() - 2], shape[shape.len() - 1]);
    let tiled = matches!(recipe, Recipe::Int4WeightOnly { .. });
    let padded = if tiled {
        let round_up = |n: i64, to: i64| (n + to - 1) / to * to;
        let padding = [0, round_up(cols, 1024) - cols, 0, round_up(rows, 8) - rows];
        input.f_constant_pad_nd(padding.as_slice()).op(OP)?
    } else {
        input.shallow_clone()
    };
    let options = crate::HqqOptions {
        nbits: (quant_max + 1.0).log2().round() as u32,
        group_size: Some(group),
        optimize: true,
        axis: 1,
        compute_dtype: args.options.zero_point_dtype.unwrap_or(input.kind()),
        device: Some(input.device()),
        raw_output: false,
        solver: Default::default(),
    };
    let hqq = crate::choose_qparams_and_quantize_affine_hqq(&padded, &options)?;
    let mut grouped = padded.size();
    if let Some(last) = grouped.last_mut() {
        *last /= group;
    }
    let unpad = |t: Tensor, last: i64| -> Result<Tensor> {
        if !tiled {
            return Ok(t);
        }
        t.f_narrow(-2, 0, rows)
            .and_then(|t| t.f_narrow(-1, 0, last))
            .and_then(|t| t.f_contiguous())
            .op(OP)
    };
    let codes = hqq.codes.f_to_kind(args.dtype.storage_kind()).op(OP)?;
    let codes = unpad(codes, cols)?;
    let scale = unpad(
        hqq.scale.f_reshape(grouped.as_slice()).op(OP)?,
        cols / group,
    )?;
    let zero = unpad(hqq.zero.f_reshape(grouped.as_slice()).op(OP)?, cols / group)?;
    let qp = QParams {
        scale,
        zero_point: Some(zero),
    };
    assemble(input, recipe, block_size, qp, codes)
}

/// A recipe's quantized tensor from its codes and qparams: every argument
/// the recipe passed, then packed where the recipe packs its codes.
fn assemble(
    input: &Tensor,
    recipe: &Recipe,
    block_size: Vec<i64>,
    qp: QParams,
    codes: Tensor,
) -> Result<AffineQuantizedTensor> {
    let args = recipe.arguments();
    let (quant_min, quant_max) = recipe.quant_range();
    let plain = AffineQuantizedTensor {
        qdata: vec![codes],
        scale: qp.scale,
        zero_point: qp.zero_point,
        block_size,
        mapping_type: args.mapping,
        target_dtype: args.dtype,
        quant_min,
        quant_max,
        eps: recipe.eps_for(input.kind()),
        preserve_zero: args.options.preserve_zero,
        zero_point_domain: args.options.zero_point_domain,
        shape: input.size(),
        dtype: input.kind(),
        layout: StorageLayout::Plain,
        semantics: recipe.semantics(),
    };
    match recipe.packing() {
        Some(bits) => plain.pack(bits),
        None => Ok(plain),
    }
}

/// The parts of an [`AffineQuantizedTensor`], for building one from stored
/// tensors (a checkpoint reader) with [`AffineQuantizedTensor::from_parts`].
#[derive(Debug)]
pub struct QuantizedParts {
    /// The codes: one tensor for [`StorageLayout::Plain`], the packed shards
    /// otherwise.
    pub qdata: Vec<Tensor>,
    /// One scale per block.
    pub scale: Tensor,
    /// One zero point per block; `None` for the none domain.
    pub zero_point: Option<Tensor>,
    /// The block size the qparams were chosen with.
    pub block_size: Vec<i64>,
    /// The mapping type.
    pub mapping_type: MappingType,
    /// torchao's `target_dtype`.
    pub target_dtype: QuantDtype,
    /// The smallest code.
    pub quant_min: f64,
    /// The largest code.
    pub quant_max: f64,
    /// The eps the scales were clamped to.
    pub eps: f64,
    /// Whether the range was widened to include zero.
    pub preserve_zero: bool,
    /// Where the zero point lives.
    pub zero_point_domain: ZeroPointDomain,
    /// The original tensor's shape.
    pub shape: Vec<i64>,
    /// The original tensor's dtype (float32, float16 or bfloat16).
    pub dtype: Kind,
    /// How `qdata` stores the codes.
    pub layout: StorageLayout,
}

impl AffineQuantizedTensor {
    /// Quantizes `input` with `recipe`, bit-identical to the recipe's torchao
    /// config ([`Recipe::semantics`] says which release) on the same weight:
    /// the recipe's block size for `input`, then the one-pass
    /// [`choose_qparams_and_quantize_affine`] (for
    /// [`Recipe::Float8WeightOnlyV2`],
    /// [`choose_scale_float8`](crate::choose_scale_float8) and
    /// [`quantize_affine_float8`](crate::quantize_affine_float8)), then
    /// packing where the recipe stores packed codes. The tensor records the
    /// recipe's semantics. Runs on `input`'s device.
    ///
    /// # Errors
    /// The recipe's own arguments ([`Recipe::validate`]); a tensor it does
    /// not apply to ([`Recipe::check`], as an [`Error::InvalidArgument`] for
    /// `input`); whatever the primitives refuse.
    pub fn quantize(input: &Tensor, recipe: &Recipe) -> Result<Self> {
        const OP: &str = "AffineQuantizedTensor::quantize";
        check_strided(OP, "input", input)?;
        recipe.validate()?;
        let shape = input.size();
        let block_size = recipe.check(&shape, input.kind()).map_err(|unfit| {
            Error::invalid(OP, "input", format!("{shape:?}"), unfit.to_string())
        })?;
        if recipe.use_hqq() {
            return hqq_quantize(input, recipe, block_size);
        }
        if let Recipe::Float8WeightOnlyV2 { float8_dtype, .. } = *recipe {
            // `Float8Tensor.from_hp`'s torch path.
            let scale = choose_scale_float8(
                input,
                &block_size,
                float8_dtype,
                &Float8ScaleOptions::default(),
            )?;
            let codes = quantize_affine_float8(input, &scale, float8_dtype)?;
            let qp = QParams {
                scale,
                zero_point: None,
            };
            return assemble(input, recipe, block_size, qp, codes);
        }
        let args = recipe.arguments();
        let (mut qp, codes) = choose_qparams_and_quantize_affine(
            input,
            args.mapping,
            &block_size,
            args.dtype,
            &args.options,
        )?;
        if recipe.per_group_qparams() {
            if let Some(padded) = tinygemm_nan_qparams(input, &block_size, recipe, &qp)? {
                qp = padded;
            }
            // [..., K / group] even when one group spans the row.
            let mut qshape = shape.clone();
            if let (Some(last), Some(group)) = (qshape.last_mut(), block_size.last()) {
                *last /= group;
            }
            qp.scale = qp.scale.f_reshape(qshape.as_slice()).op(OP)?;
            qp.zero_point = match qp.zero_point {
                Some(zp) => Some(zp.f_reshape(qshape.as_slice()).op(OP)?),
                None => None,
            };
        }
        assemble(input, recipe, block_size, qp, codes)
    }

    /// Builds a quantized tensor from stored parts, checking that they fit
    /// together: the codes' dtype and shape against the layout and the
    /// original shape, the original dtype, the zero point against the
    /// domain, the quant range against the target dtype, the block size
    /// against the shape, and one scale (and zero point) per block.
    ///
    /// # Examples
    /// ```
    /// use tch::{Kind, Tensor};
    /// use tch_quant::{AffineQuantizedTensor, MappingType, QuantDtype, QuantizedParts,
    ///                 StorageLayout, ZeroPointDomain};
    /// let q = AffineQuantizedTensor::from_parts(QuantizedParts {
    ///     qdata: vec![Tensor::from_slice(&[0u8, 8, 15]).view([1, 3])],
    ///     scale: Tensor::from_slice(&[0.5f32]),
    ///     zero_point: Some(Tensor::from_slice(&[8i32])),
    ///     block_size: vec![1, 3],
    ///     mapping_type: MappingType::Asymmetric,
    ///     target_dtype: QuantDtype::UInt4,
    ///     quant_min: 0.0,
    ///     quant_max: 15.0,
    ///     eps: f32::EPSILON as f64,
    ///     preserve_zero: true,
    ///     zero_point_domain: ZeroPointDomain::Int,
    ///     shape: vec![1, 3],
    ///     dtype: Kind::Float,
    ///     layout: StorageLayout::Plain,
    /// })?;
    /// let x = q.dequantize()?;
    /// assert_eq!(Vec::<f32>::try_from(x.view(-1)).unwrap(), vec![-4.0, 0.0, 3.5]);
    /// # Ok::<(), tch_quant::Error>(())
    /// ```
    pub fn from_parts(parts: QuantizedParts) -> Result<Self> {
        Self::from_parts_under(parts, Semantics::default())
    }

    /// [`from_parts`](Self::from_parts) for parts quantized under
    /// `semantics` (a checkpoint records it), which
    /// [`dequantize`](Self::dequantize) then follows.
    ///
    /// # Errors
    /// As [`from_parts`](Self::from_parts).
    pub fn from_parts_under(parts: QuantizedParts, semantics: Semantics) -> Result<Self> {
        const OP: &str = "AffineQuantizedTensor::from_parts";
        for codes in &parts.qdata {
            check_strided(OP, "qdata", codes)?;
        }
        check_strided(OP, "scale", &parts.scale)?;
        check_strided_opt(OP, "zero_point", parts.zero_point.as_ref())?;
        check_output_float(OP, parts.dtype).map_err(|_| {
            Error::invalid(
                OP,
                "dtype",
                kind_name(parts.dtype),
                "the original dtype must be float32, float16 or bfloat16",
            )
        })?;
        parts
            .target_dtype
            .resolve_range(OP, Some(parts.quant_min), Some(parts.quant_max))?;
        let layout = crate::block::BlockLayout::new(OP, &parts.block_size, &parts.shape)?;
        check_zero_point_domain(OP, parts.zero_point_domain, parts.zero_point.as_ref())?;
        check_float8_domain(OP, parts.target_dtype, parts.zero_point_domain)?;
        // One value per block, as dequantizing will need.
        check_qparam_shape(OP, "scale", &parts.scale, &layout)?;
        if let Some(zp) = &parts.zero_point {
            check_qparam_shape(OP, "zero_point", zp, &layout)?;
        }
        let q = AffineQuantizedTensor {
            qdata: parts.qdata,
            scale: parts.scale,
            zero_point: parts.zero_point,
            block_size: parts.block_size,
            mapping_type: parts.mapping_type,
            target_dtype: parts.target_dtype,
            quant_min: parts.quant_min,
            quant_max: parts.quant_max,
            eps: parts.eps,
            preserve_zero: parts.preserve_zero,
            zero_point_domain: parts.zero_point_domain,
            shape: parts.shape,
            dtype: parts.dtype,
            layout: parts.layout,
            semantics,
        };
        // The codes as they would be dequantized: right count, dtype, shape.
        let codes = q.codes()?;
        if codes.size() != q.shape {
            return Err(Error::ShapeMismatch {
                op: OP,
                arg: "qdata",
                got: codes.size(),
                reason: format!("the codes must have the original shape {:?}", q.shape),
            });
        }
        Ok(q)
    }

    /// The original float tensor's values, as torchao's `dequantize_affine`
    /// of the release the tensor was quantized under
    /// ([`semantics`](Self::semantics)) rebuilds them with this tensor's
    /// arguments, in the original dtype. Float8 codes under 0.18 are
    /// dequantized as `Float8Tensor.dequantize` does, with
    /// [`dequantize_affine_float8`](crate::dequantize_affine_float8) (codes
    /// widened to float32, times the per-block scale, cast).
    pub fn dequantize(&self) -> Result<Tensor> {
        self.dequantize_as(self.dtype)
    }

    /// [`dequantize`](Self::dequantize) into `output_dtype` (float32,
    /// float16 or bfloat16).
    ///
    /// Packed codes are unpacked and dequantized in one pass where
    /// `dequantize_affine`'s fused CPU path covers the call (codes packed
    /// along the last dim, contiguous CPU tensors), with the same bits as
    /// [`codes`](Self::codes) followed by `dequantize_affine`.
    pub fn dequantize_as(&self, output_dtype: Kind) -> Result<Tensor> {
        if let Some(x) = self.dequantize_float8_0_18(output_dtype)? {
            return Ok(x);
        }
        let options = self.quantize_options();
        if let StorageLayout::Packed { bits, dim } = self.layout {
            let last = dim == -1 || dim == self.shape.len() as i64 - 1;
            if last {
                let fused = dequantize_packed(
                    &self.qdata,
                    bits,
                    &self.shape,
                    &self.block_size,
                    &self.scale,
                    self.zero_point.as_ref(),
                    self.target_dtype,
                    &options,
                    output_dtype,
                )?;
                if let Some(x) = fused {
                    return Ok(x);
                }
            }
        }
        let codes = self.codes()?;
        dequantize_affine(
            &codes,
            &self.block_size,
            &self.scale,
            self.zero_point.as_ref(),
            self.target_dtype,
            &options,
            output_dtype,
        )
    }

    /// [`dequantize_as`](Self::dequantize_as) into `out`, a tensor of this
    /// tensor's [`shape`](Self::shape) that the caller allocated (and may
    /// reuse for every call), in `out`'s dtype (float32, float16 or
    /// bfloat16); see [`dequantize_affine_into`].
    ///
    /// # Errors
    /// An `out` that [`dequantize_affine_into`] refuses (dtype, shape,
    /// device, contiguity, grad, shared memory), named `out`.
    ///
    /// # Examples
    /// ```
    /// use tch::{Device, Kind, Tensor};
    /// use tch_quant::{AffineQuantizedTensor, Recipe};
    /// let w = Tensor::randn([64, 256], (Kind::BFloat16, Device::Cpu));
    /// let q = AffineQuantizedTensor::quantize(&w, &Recipe::Int4WeightOnly { group_size: 32, use_hqq: false })?;
    /// let mut out = Tensor::empty([64, 256], (Kind::BFloat16, Device::Cpu));
    /// q.dequantize_into(&mut out)?;
    /// assert!(out.equal(&q.dequantize()?));
    /// # Ok::<(), tch_quant::Error>(())
    /// ```
    pub fn dequantize_into(&self, out: &mut Tensor) -> Result<()> {
        const OP: &str = "AffineQuantizedTensor::dequantize_into";
        check_strided(OP, "out", out)?;
        let codes: Vec<&Tensor> = self.qdata.iter().collect();
        check_out(
            OP,
            out,
            &self.shape,
            self.device(),
            &codes,
            &self.scale,
            self.zero_point.as_ref(),
        )?;
        if let Some(x) = self.dequantize_float8_0_18(out.kind())? {
            return out.f_copy_(&x).op(OP);
        }
        let options = self.quantize_options();
        if let StorageLayout::Packed { bits, dim } = self.layout {
            let last = dim == -1 || dim == self.shape.len() as i64 - 1;
            if last {
                let done = dequantize_packed_into(
                    &self.qdata,
                    bits,
                    &self.shape,
                    &self.block_size,
                    &self.scale,
                    self.zero_point.as_ref(),
                    self.target_dtype,
                    &options,
                    out,
                )?;
                if done {
                    return Ok(());
                }
            }
        }
        let codes = self.codes()?;
        dequantize_affine_into(
            &codes,
            &self.block_size,
            &self.scale,
            self.zero_point.as_ref(),
            self.target_dtype,
            &options,
            out,
        )
    }

    /// The arguments `dequantize_affine` takes from this tensor.
    fn quantize_options(&self) -> QuantizeOptions {
        QuantizeOptions {
            quant_min: Some(self.quant_min),
            quant_max: Some(self.quant_max),
            zero_point_domain: self.zero_point_domain,
            semantics: self.semantics,
            ..QuantizeOptions::default()
        }
    }

    /// Float8 codes quantized under 0.18: `_dequantize_affine_float8`, as
    /// `Float8Tensor.dequantize` runs it; `None` for every other tensor.
    fn dequantize_float8_0_18(&self, output_dtype: Kind) -> Result<Option<Tensor>> {
        if self.semantics != Semantics::Torchao0_18 || !self.target_dtype.is_float8() {
            return Ok(None);
        }
        let codes = self.codes()?;
        dequantize_affine_float8(&codes, &self.scale, output_dtype).map(Some)
    }

    /// The codes one per element, in the target dtype's storage dtype
    /// (unpacked when stored packed; see [`pack`](Self::pack) for the one
    /// code packing does not keep).
    pub fn codes(&self) -> Result<Tensor> {
        const OP: &str = "AffineQuantizedTensor::codes";
        match self.layout {
            StorageLayout::Plain => {
                let [codes] = self.qdata.as_slice() else {
                    return Err(Error::invalid(
                        OP,
                        "qdata",
                        format!("{} tensors", self.qdata.len()),
                        "plain codes are one tensor",
                    ));
                };
                let storage = self.target_dtype.storage_kind();
                if codes.kind() != storage {
                    return Err(Error::UnsupportedKind {
                        op: OP,
                        arg: "qdata",
                        expected: kind_name(storage),
                        got: codes.kind(),
                    });
                }
                Ok(codes.shallow_clone())
            }
            StorageLayout::Packed { bits, dim } => {
                let bytes = unpack_uintx(&self.qdata, bits, dim)?;
                match self.target_dtype.storage_kind() {
                    Kind::Uint8 => Ok(bytes),
                    // The int4 recipe's codes are int32 in torchao; every
                    // unpacked byte converts exactly.
                    kind => bytes.f_to_kind(kind).op(OP),
                }
            }
        }
    }

    /// The same tensor with codes packed `bits` to a byte along the last dim
    /// (`pack_uintx`); a packed tensor is returned as it is.
    ///
    /// Packing stores `pack_uintx(codes.to(uint8))`, byte for byte torchao's
    /// `bitpacking.pack(codes.to(torch.uint8))`, so every code inside the
    /// quant range is kept exactly. The one code outside it is the int4
    /// recipe's code for NaN: in a group whose scale or zero point is not
    /// finite (a NaN or an infinity in the group, or a range that overflows)
    /// every code is NaN before torchao's cast to int32, which libtorch turns
    /// into -2^31 (`0x8000_0000`). The cast to uint8 keeps its low byte, so
    /// such a code is stored, and read back by [`codes`](Self::codes), as 0
    /// where torchao's unpacked int32 code is -2^31. Dequantizing gives the
    /// same values, NaN bits included, from either code: the group's scale
    /// and zero point make every code of it NaN (`(q - 8) * inf + inf`, or a
    /// NaN factor).
    ///
    /// # Errors
    /// Float8 codes; a quant range outside `[0, 2^bits - 1]`; a last dim
    /// that is not a multiple of 8; `bits` outside `1..=7`.
    pub fn pack(self, bits: u32) -> Result<Self> {
        const OP: &str = "AffineQuantizedTensor::pack";
        if let StorageLayout::Packed { .. } = self.layout {
            return Ok(self);
        }
        let max = 2f64.powi(bits.min(31) as i32) - 1.0;
        if self.target_dtype.is_float8() || self.quant_min < 0.0 || self.quant_max > max {
            return Err(Error::invalid(
                OP,
                "bits",
                bits,
                format!(
                    "{} codes in [{}, {}] do not fit {bits} unsigned bits",
                    self.target_dtype, self.quant_min, self.quant_max
                ),
            ));
        }
        let codes = self.codes()?;
        // Exact: every code lies in [0, 2^bits - 1] whatever its dtype.
        let bytes = codes.f_to_kind(Kind::Uint8).op(OP)?;
        let shards = pack_uintx(&bytes, bits, PACK_DIM)?;
        Ok(AffineQuantizedTensor {
            qdata: shards,
            layout: StorageLayout::Packed {
                bits,
                dim: PACK_DIM,
            },
            ..self
        })
    }

    /// The same tensor with one code per element ([`StorageLayout::Plain`]).
    pub fn unpack(self) -> Result<Self> {
        if self.layout == StorageLayout::Plain {
            return Ok(self);
        }
        let codes = self.codes()?;
        Ok(AffineQuantizedTensor {
            qdata: vec![codes],
            layout: StorageLayout::Plain,
            ..self
        })
    }

    /// The same quantized tensor sharing this one's tensors (as
    /// `Tensor::shallow_clone`).
    pub fn shallow_clone(&self) -> Self {
        AffineQuantizedTensor {
            qdata: self.qdata.iter().map(Tensor::shallow_clone).collect(),
            scale: self.scale.shallow_clone(),
            zero_point: self.zero_point.as_ref().map(Tensor::shallow_clone),
            block_size: self.block_size.clone(),
            shape: self.shape.clone(),
            ..*self
        }
    }

    /// The same tensor with codes, scale and zero point on `device`.
    pub fn to_device(&self, device: Device) -> Result<Self> {
        const OP: &str = "AffineQuantizedTensor::to_device";
        let move_ = |t: &Tensor| t.f_to_device(device).op(OP);
        Ok(AffineQuantizedTensor {
            qdata: self.qdata.iter().map(move_).collect::<Result<_>>()?,
            scale: move_(&self.scale)?,
            zero_point: self.zero_point.as_ref().map(move_).transpose()?,
            block_size: self.block_size.clone(),
            mapping_type: self.mapping_type,
            target_dtype: self.target_dtype,
            quant_min: self.quant_min,
            quant_max: self.quant_max,
            eps: self.eps,
            preserve_zero: self.preserve_zero,
            zero_point_domain: self.zero_point_domain,
            shape: self.shape.clone(),
            dtype: self.dtype,
            layout: self.layout,
            semantics: self.semantics,
        })
    }

    /// Bytes of the stored tensors: codes, scale and zero point.
    pub fn nbytes(&self) -> usize {
        let bytes = |t: &Tensor| t.numel() * t.kind().elt_size_in_bytes();
        self.qdata.iter().map(bytes).sum::<usize>()
            + bytes(&self.scale)
            + self.zero_point.as_ref().map_or(0, bytes)
    }

    /// Bytes of the original float tensor.
    pub fn original_nbytes(&self) -> usize {
        self.shape.iter().product::<i64>() as usize * self.dtype.elt_size_in_bytes()
    }

    /// The stored codes: one tensor when plain, the packed shards otherwise.
    pub fn qdata(&self) -> &[Tensor] {
        &self.qdata
    }

    /// One scale per block.
    pub fn scale(&self) -> &Tensor {
        &self.scale
    }

    /// One zero point per block; `None` in the none domain.
    pub fn zero_point(&self) -> Option<&Tensor> {
        self.zero_point.as_ref()
    }

    /// The block size the qparams were chosen with.
    pub fn block_size(&self) -> &[i64] {
        &self.block_size
    }

    /// The mapping type.
    pub fn mapping_type(&self) -> MappingType {
        self.mapping_type
    }

    /// torchao's `target_dtype`.
    pub fn target_dtype(&self) -> QuantDtype {
        self.target_dtype
    }

    /// `(quant_min, quant_max)`.
    pub fn quant_range(&self) -> (f64, f64) {
        (self.quant_min, self.quant_max)
    }

    /// The eps the scales were clamped to.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// Whether the range was widened to include zero.
    pub fn preserve_zero(&self) -> bool {
        self.preserve_zero
    }

    /// Where the zero point lives.
    pub fn zero_point_domain(&self) -> ZeroPointDomain {
        self.zero_point_domain
    }

    /// The original tensor's shape.
    pub fn shape(&self) -> &[i64] {
        &self.shape
    }

    /// The original tensor's dtype.
    pub fn dtype(&self) -> Kind {
        self.dtype
    }

    /// How the codes are stored.
    pub fn layout(&self) -> StorageLayout {
        self.layout
    }

    /// The torchao release the tensor was quantized under, which
    /// [`dequantize`](Self::dequantize) follows.
    pub fn semantics(&self) -> Semantics {
        self.semantics
    }

    /// The device the codes live on.
    pub fn device(&self) -> Device {
        self.scale.device()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(scale: Tensor, target_dtype: QuantDtype, domain: ZeroPointDomain) -> QuantizedParts {
        QuantizedParts {
            qdata: vec![Tensor::zeros(
                [2, 8],
                (target_dtype.storage_kind(), Device::Cpu),
            )],
            scale,
            zero_point: (domain != ZeroPointDomain::None)
                .then(|| Tensor::zeros([2, 2], (Kind::Int, Device::Cpu))),
            block_size: vec![1, 4],
            mapping_type: MappingType::Symmetric,
            target_dtype,
            quant_min: -8.0,
            quant_max: 7.0,
            eps: 1e-6,
            preserve_zero: true,
            zero_point_domain: domain,
            shape: vec![2, 8],
            dtype: Kind::Float,
            layout: StorageLayout::Plain,
        }
    }

    #[test]
    fn from_parts_refuses_what_dequantizing_would() {
        let ones = |shape: &[i64]| Tensor::ones(shape, (Kind::Float, Device::Cpu));
        let int = ZeroPointDomain::Int;
        assert!(
            AffineQuantizedTensor::from_parts(parts(ones(&[2, 2]), QuantDtype::Int4, int)).is_ok()
        );
        // One scale per row where the blocks need two.
        let err = AffineQuantizedTensor::from_parts(parts(ones(&[2]), QuantDtype::Int4, int));
        assert!(
            matches!(err, Err(Error::ShapeMismatch { arg: "scale", .. })),
            "{err:?}"
        );
        // float8 codes with a float zero point.
        let mut p = parts(
            ones(&[2, 2]),
            QuantDtype::Float8E4M3Fn,
            ZeroPointDomain::Float,
        );
        p.quant_min = -448.0;
        p.quant_max = 448.0;
        p.zero_point = Some(ones(&[2, 2]));
        let err = AffineQuantizedTensor::from_parts(p);
        assert!(
            matches!(
                err,
                Err(Error::InvalidArgument {
                    arg: "zero_point_domain",
                    ..
                })
            ),
            "{err:?}"
        );
    }
}
