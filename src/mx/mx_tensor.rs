//! MX quantization (`to_mx`) and dequantization (`to_dtype`), and the
//! tensor type that carries both halves (torchao 0.18's `MXTensor`, naive
//! scale layout, emulated kernels).

use tch::{Kind, Tensor};

use super::checks::{
    check_block_size, check_device, check_input, check_kind, check_last_dim, check_output,
};
use super::elements::{f32_to_floatx_unpacked, floatx_unpacked_to_f32, pack_uint4, unpack_uint4};
use super::scale::{self, scale_blocks};
use super::{MxElemDtype, ScaleCalculationMode};
use crate::error::{Error, Result, TorchContext};

/// torchao 0.18's `to_mx(data_hp, elem_dtype, block_size, scaling_mode)`:
/// cuts the last dim of `data_hp` into blocks of `block_size`, gives each
/// block one power-of-two scale and casts `data / scale` to `elem_dtype`.
/// Returns `(scale, data)`.
///
/// Each block's `amax = max |x|` is taken in the input dtype and cast to
/// float32, as is the data; then the scale follows `scaling_mode` (see
/// [`ScaleCalculationMode`]). FLOOR, CEIL and EVEN divide the float32 data
/// by the float32 scale (at least `2^-126`), and clamp to `[-max_pos,
/// max_pos]` for float8 elements; RCEIL multiplies by the reciprocal scale
/// and clamps for every element dtype. The cast to float8 is libtorch's
/// (round to nearest even); to fp6 and fp4 it is torchao's bit-level
/// rounding to nearest even, saturating at `max_pos` (a NaN element, which
/// no clamp removes, gets the code of 1.5 with its sign, as in torchao;
/// its block's scale is NaN, so it dequantizes to NaN).
///
/// - `scale`: the e8m0 bytes as uint8 (`2^(e - 127)`, 255 for a block
///   whose amax is NaN), shape `(..., K / block_size)`;
/// - `data`: `Kind::Float8e4m3fn` / `Kind::Float8e5m2` of the input's
///   shape, fp6 codes as uint8 of the input's shape, or fp4 codes packed
///   two per uint8, shape `(..., K / 2)`.
///
/// `data_hp` must be float32 or bfloat16 (as torchao asserts; float16 is
/// [`Error::UnsupportedKind`]), strided, of rank at least 1, its last dim a
/// multiple of `block_size` (at least 1), and even for fp4 (the packing
/// pairs neighbours). A non-contiguous input gives torchao's result for
/// its contiguous copy (torchao asserts contiguity). An empty input gives
/// empty outputs; an input that requires grad is quantized from its
/// values, as in torchao.
///
/// # Examples
/// ```
/// use tch::{Device, Kind, Tensor};
/// use tch_quant::{to_mx, MxElemDtype, ScaleCalculationMode};
///
/// let x = Tensor::from_slice(&[1.0f32, -3.0, 0.5, 6.0]).view([1, 4]);
/// let (scale, data) = to_mx(&x, MxElemDtype::Float4E2m1fnX2, 4, ScaleCalculationMode::Floor)?;
/// // amax 6 = 1.5 * 2^2 and fp4's largest power of two is 2^2: scale 2^0.
/// assert_eq!(Vec::<u8>::try_from(scale.view([-1])).unwrap(), [127]);
/// // Codes 1.0 -> 0b0010, -3.0 -> 0b1101, 0.5 -> 0b0001, 6.0 -> 0b0111.
/// assert_eq!(Vec::<u8>::try_from(data.view([-1])).unwrap(), [0xd2, 0x71]);
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn to_mx(
    data_hp: &Tensor,
    elem_dtype: MxElemDtype,
    block_size: i64,
    scaling_mode: ScaleCalculationMode,
) -> Result<(Tensor, Tensor)> {
    quantize("to_mx", data_hp, elem_dtype, block_size, scaling_mode)
}

/// [`to_mx`], its refusals naming `op`, the entry point called.
fn quantize(
    op: &'static str,
    data_hp: &Tensor,
    elem_dtype: MxElemDtype,
    block_size: i64,
    scaling_mode: ScaleCalculationMode,
) -> Result<(Tensor, Tensor)> {
    check_input(op, "data_hp", data_hp)?;
    check_block_size(op, block_size)?;
    let orig_shape = data_hp.size();
    check_last_dim(op, "data_hp", &orig_shape, block_size)?;
    let last = orig_shape[orig_shape.len() - 1];
    if elem_dtype == MxElemDtype::Float4E2m1fnX2 && last % 2 != 0 {
        return Err(Error::ShapeMismatch {
            op,
            arg: "data_hp",
            got: orig_shape,
            reason: "its last dim must be even for fp4, which packs two elements a byte".into(),
        });
    }
    let compute = || -> std::result::Result<(Tensor, Tensor), tch::TchError> {
        let mut blocked = orig_shape[..orig_shape.len() - 1].to_vec();
        blocked.extend([last / block_size, block_size]);
        let data = data_hp.f_reshape(blocked.as_slice())?;
        let max_abs = data
            .f_abs()?
            .f_amax([-1i64].as_slice(), false)?
            .f_unsqueeze(-1)?;
        let data = data.f_to_kind(Kind::Float)?;
        let max_abs = max_abs.f_to_kind(Kind::Float)?;
        let scaled = scale_blocks(&data, &max_abs, elem_dtype, scaling_mode)?;

        let data_lp = match elem_dtype.sub_byte() {
            None => scaled
                .data_lp
                .f_to_kind(elem_dtype.storage_kind())?
                .f_reshape(orig_shape.as_slice())?,
            Some(format) if elem_dtype == MxElemDtype::Float4E2m1fnX2 => {
                let data = scaled.data_lp.f_reshape(orig_shape.as_slice())?;
                pack_uint4(&f32_to_floatx_unpacked(&data, format)?)?
            }
            Some(format) => {
                f32_to_floatx_unpacked(&scaled.data_lp, format)?.f_reshape(orig_shape.as_slice())?
            }
        };
        Ok((scaled.scale_e8m0.f_squeeze_dim(-1)?, data_lp))
    };
    compute().op(op)
}

/// torchao 0.18's `to_dtype(data_lp, scale_e8m0, elem_dtype, block_size,
/// target_dtype)`: MX elements and their e8m0 scales back to
/// `target_dtype`.
///
/// The elements become `target_dtype` (float8 by libtorch's cast; fp6 and
/// fp4 codes through their exact float32 value), the scales become
/// `2^(e - 127)` in float32 ([`get_fp_scale`], NaN for 255) and then
/// `target_dtype`, and the two are multiplied in `target_dtype`, one scale
/// per `block_size` consecutive elements in row-major order. A float16
/// target holds only scales from `2^-24` to `2^15`: others become 0 or
/// infinity before the multiply, as in torchao. fp6 bytes with their two
/// high bits set decode as torchao decodes them (its uint8 arithmetic
/// wraps).
///
/// `data_lp` has `elem_dtype`'s storage kind ([`MxElemDtype::storage_kind`];
/// fp4 packed two a byte along the last dim) and at least one dim;
/// `block_size` (at least 1) divides its element count (twice its bytes
/// for fp4); `scale_e8m0` is uint8 with exactly one byte per block, in any
/// shape (read in row-major order), on `data_lp`'s device. A non-contiguous
/// `data_lp` must be the transpose of a contiguous 2-D tensor, its scale
/// (at most 2-D) transposed with it: it is dequantized in that row-major
/// order and transposed back, as torchao does. `target_dtype` is float32,
/// bfloat16, float16 or float64.
///
/// # Examples
/// ```
/// use tch::{Kind, Tensor};
/// use tch_quant::mx::to_dtype;
/// use tch_quant::MxElemDtype;
///
/// // fp6 e2m3 codes of 1.5 and -0.125, scale 2^3 (e8m0 byte 130).
/// let codes = Tensor::from_slice(&[0b00_0_01_100u8, 0b00_1_00_001]).view([1, 2]);
/// let scale = Tensor::from_slice(&[130u8]).view([1, 1]);
/// let x = to_dtype(&codes, &scale, MxElemDtype::Fp6E2m3, 2, Kind::Float)?;
/// assert_eq!(Vec::<f32>::try_from(x.view([-1])).unwrap(), [12.0, -1.0]);
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn to_dtype(
    data_lp: &Tensor,
    scale_e8m0: &Tensor,
    elem_dtype: MxElemDtype,
    block_size: i64,
    target_dtype: Kind,
) -> Result<Tensor> {
    let names = Names {
        op: "to_dtype",
        data: "data_lp",
        scale: "scale_e8m0",
        target: "target_dtype",
    };
    dequantize(
        names,
        data_lp,
        scale_e8m0,
        elem_dtype,
        block_size,
        target_dtype,
    )
}

/// The names the refusals of MX dequantization give: the entry point and
/// its arguments ([`to_dtype`]'s, or [`MxTensor`]'s fields).
#[derive(Clone, Copy)]
struct Names {
    op: &'static str,
    data: &'static str,
    scale: &'static str,
    target: &'static str,
}

/// [`to_dtype`], its refusals naming what `names` says.
fn dequantize(
    names: Names,
    data_lp: &Tensor,
    scale_e8m0: &Tensor,
    elem_dtype: MxElemDtype,
    block_size: i64,
    target_dtype: Kind,
) -> Result<Tensor> {
    let Names {
        op,
        data: data_arg,
        scale: scale_arg,
        target: target_arg,
    } = names;
    let storage = elem_dtype.storage_kind();
    let expected = match elem_dtype {
        MxElemDtype::Float8E4m3fn => "float8_e4m3fn",
        MxElemDtype::Float8E5m2 => "float8_e5m2",
        _ => "uint8",
    };
    check_kind(op, data_arg, data_lp, &[storage], expected)?;
    check_kind(
        op,
        scale_arg,
        scale_e8m0,
        &[Kind::Uint8],
        "uint8 (the e8m0 bytes)",
    )?;
    check_output(op, target_arg, target_dtype)?;
    check_block_size(op, block_size)?;
    check_device(op, scale_arg, scale_e8m0, data_lp.device(), false)?;
    let size = data_lp.size();
    if size.is_empty() {
        return Err(Error::ShapeMismatch {
            op,
            arg: data_arg,
            got: size,
            reason: "expected at least one dim".into(),
        });
    }
    let is_transposed = !data_lp.is_contiguous();
    if is_transposed && (size.len() != 2 || !data_lp.tr().is_contiguous()) {
        return Err(Error::ShapeMismatch {
            op,
            arg: data_arg,
            got: size,
            reason: "must be contiguous, or the transpose of a contiguous 2-D tensor".into(),
        });
    }
    if is_transposed && scale_e8m0.dim() > 2 {
        return Err(Error::ShapeMismatch {
            op,
            arg: scale_arg,
            got: scale_e8m0.size(),
            reason: "beside a transposed 2-D data tensor, expected at most 2 dims (it is \
                     transposed with the data)"
                .into(),
        });
    }
    let per_byte = if elem_dtype == MxElemDtype::Float4E2m1fnX2 {
        2
    } else {
        1
    };
    // A contiguous tensor's numel fits in i64 (libtorch checks), but twice
    // it may not.
    let elements = i64::try_from(data_lp.numel())
        .ok()
        .and_then(|n| n.checked_mul(per_byte))
        .ok_or_else(|| Error::ShapeMismatch {
            op,
            arg: data_arg,
            got: size.clone(),
            reason: "has more elements than an i64 counts".into(),
        })?;
    if elements % block_size != 0 {
        return Err(Error::invalid(
            op,
            "block_size",
            block_size,
            format!("must divide the {elements} elements of `{data_arg}` {size:?}"),
        ));
    }
    if scale_e8m0.numel() as u64 != (elements / block_size) as u64 {
        return Err(Error::ShapeMismatch {
            op,
            arg: scale_arg,
            got: scale_e8m0.size(),
            reason: format!(
                "expected one scale per block of {block_size} of the {elements} elements, {}",
                elements / block_size
            ),
        });
    }

    let compute = || -> std::result::Result<Tensor, tch::TchError> {
        let (data_lp, scale_e8m0, mut orig_shape) = if is_transposed {
            (data_lp.f_tr()?, scale_e8m0.f_tr()?, vec![size[1], size[0]])
        } else {
            (
                data_lp.shallow_clone(),
                scale_e8m0.shallow_clone(),
                size.clone(),
            )
        };
        let data_hp = match elem_dtype.sub_byte() {
            None => data_lp.f_to_kind(target_dtype)?,
            Some(format) if elem_dtype == MxElemDtype::Float4E2m1fnX2 => {
                let f32 = floatx_unpacked_to_f32(&unpack_uint4(&data_lp)?, format)?;
                if let Some(last) = orig_shape.last_mut() {
                    *last *= 2;
                }
                f32.f_to_kind(target_dtype)?
            }
            Some(format) => floatx_unpacked_to_f32(&data_lp, format)?
                .f_to_kind(target_dtype)?
                .f_reshape(orig_shape.as_slice())?,
        };
        let data_hp = data_hp.f_reshape([-1, block_size].as_slice())?;
        let s_fp = scale::get_fp_scale(&scale_e8m0)?
            .f_reshape([-1i64, 1].as_slice())?
            .f_to_kind(target_dtype)?;
        let data_hp = data_hp.f_mul(&s_fp)?.f_reshape(orig_shape.as_slice())?;
        if is_transposed {
            data_hp.f_tr()
        } else {
            Ok(data_hp)
        }
    };
    compute().op(op)
}

/// torchao 0.18's `get_fp_scale`: e8m0 bytes (uint8) to their float32
/// value `2^(e - 127)`, NaN for 255. Byte 0 is `2^-127`, a float32
/// subnormal.
///
/// # Examples
/// ```
/// use tch::Tensor;
/// let s = tch_quant::mx::get_fp_scale(&Tensor::from_slice(&[127u8, 130, 0, 255]))?;
/// let v = Vec::<f32>::try_from(s).unwrap();
/// assert_eq!(&v[..3], &[1.0, 8.0, 2f32.powi(-127)]);
/// assert!(v[3].is_nan());
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn get_fp_scale(scale_e8m0: &Tensor) -> Result<Tensor> {
    const OP: &str = "get_fp_scale";
    check_kind(
        OP,
        "scale_e8m0",
        scale_e8m0,
        &[Kind::Uint8],
        "uint8 (the e8m0 bytes)",
    )?;
    scale::get_fp_scale(scale_e8m0).op(OP)
}

/// An MX-quantized tensor: torchao 0.18's `MXTensor` with its scales in the
/// naive layout (one e8m0 byte per block, shape `(..., K / block_size)`),
/// emulated (no swizzled scales, no fused kernels).
///
/// The fields are public, so a tensor can be built from stored parts;
/// [`MxTensor::dequantize`] checks them as [`to_dtype`] checks its
/// arguments, and its refusals name the field (`qdata`, `scale`,
/// `block_size`, `orig_dtype`).
#[derive(Debug)]
pub struct MxTensor {
    /// The elements, as [`to_mx`] returns them.
    pub qdata: Tensor,
    /// The e8m0 scale bytes, as uint8.
    pub scale: Tensor,
    /// The element dtype.
    pub elem_dtype: MxElemDtype,
    /// Elements per scale, along the last dim.
    pub block_size: i64,
    /// The dtype of the tensor quantized, [`MxTensor::dequantize`]'s
    /// default output.
    pub orig_dtype: Kind,
}

impl MxTensor {
    /// `MXTensor.to_mx(data_hp, elem_dtype, block_size, scaling_mode)`:
    /// [`to_mx`], kept with what dequantization needs.
    ///
    /// # Examples
    /// ```
    /// use tch::{Device, Kind, Tensor};
    /// use tch_quant::{MxElemDtype, MxTensor, ScaleCalculationMode, MX_BLOCK_SIZE_DEFAULT};
    ///
    /// let w = Tensor::randn([8, 64], (Kind::BFloat16, Device::Cpu));
    /// let q = MxTensor::to_mx(&w, MxElemDtype::Float8E4m3fn, MX_BLOCK_SIZE_DEFAULT,
    ///                         ScaleCalculationMode::Rceil)?;
    /// assert_eq!(q.scale.size(), [8, 2]);
    /// assert_eq!(q.dequantize(None)?.kind(), Kind::BFloat16);
    /// # Ok::<(), tch_quant::Error>(())
    /// ```
    pub fn to_mx(
        data_hp: &Tensor,
        elem_dtype: MxElemDtype,
        block_size: i64,
        scaling_mode: ScaleCalculationMode,
    ) -> Result<Self> {
        let (scale, qdata) = quantize(
            "MxTensor::to_mx",
            data_hp,
            elem_dtype,
            block_size,
            scaling_mode,
        )?;
        Ok(MxTensor {
            qdata,
            scale,
            elem_dtype,
            block_size,
            orig_dtype: data_hp.kind(),
        })
    }

    /// `MXTensor.dequantize(output_dtype)`: [`to_dtype`] into
    /// `output_dtype` (float32, bfloat16, float16 or float64), by default
    /// [`MxTensor::orig_dtype`].
    pub fn dequantize(&self, output_dtype: Option<Kind>) -> Result<Tensor> {
        let names = Names {
            op: "MxTensor::dequantize",
            data: "qdata",
            scale: "scale",
            target: if output_dtype.is_some() {
                "output_dtype"
            } else {
                "orig_dtype"
            },
        };
        dequantize(
            names,
            &self.qdata,
            &self.scale,
            self.elem_dtype,
            self.block_size,
            output_dtype.unwrap_or(self.orig_dtype),
        )
    }
}
