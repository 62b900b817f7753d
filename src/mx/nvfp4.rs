//! NVFP4 (torchao 0.18's `nvfp4_tensor.py`): fp4 e2m1 elements in blocks
//! of 16, each block scaled by a float8 e4m3fn scale, optionally under one
//! float32 per-tensor (or per-expert) scale; quantization, the per-tensor
//! scale from an amax, and dequantization.

use tch::{Kind, Tensor};

use super::checks::{check_device, check_input, check_kind, check_last_dim, check_output};
use super::elements::{
    f32_to_floatx_unpacked, floatx_unpacked_to_f32, pack_uint4, unpack_uint4, F4_E2M1,
};
use super::{F4_E2M1_MAX, F8E4M3_MAX, NVFP4_BLOCK_SIZE};
use crate::error::{Error, Result, TorchContext};
use crate::scalar_ops;

/// `torch.finfo(torch.float8_e4m3fn).tiny`, `2^-6`: the smallest block
/// scale.
const E4M3_EPS: f64 = 0.015625;

/// torchao 0.18's `per_tensor_amax_to_scale(amax)`: `amax / (448 * 6)` in
/// float32, the per-tensor scale under which a block whose amax is the
/// tensor's gets the largest e4m3 block scale, 448.
///
/// `amax` is a float tensor of any shape (float32, bfloat16, float16,
/// float64), cast to float32 first; the result has its shape.
///
/// # Examples
/// ```
/// use tch::Tensor;
/// let s = tch_quant::per_tensor_amax_to_scale(&Tensor::from(2688.0f32))?;
/// assert_eq!(s.double_value(&[]), 1.0);
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn per_tensor_amax_to_scale(amax: &Tensor) -> Result<Tensor> {
    const OP: &str = "per_tensor_amax_to_scale";
    check_kind(
        OP,
        "amax",
        amax,
        &[Kind::Float, Kind::BFloat16, Kind::Half, Kind::Double],
        "float32, bfloat16, float16 or float64",
    )?;
    let compute = || scalar_ops::div(&amax.f_to_kind(Kind::Float)?, F8E4M3_MAX * F4_E2M1_MAX);
    compute().op(OP)
}

/// Validates `per_tensor_scale` against the input of `size` on `device`:
/// float32, 0-d, or `(E, 1, 1)` beside a 3-D input of E experts.
fn check_per_tensor_scale(
    op: &'static str,
    scale: &Tensor,
    size: &[i64],
    device: tch::Device,
) -> Result<()> {
    check_kind(op, "per_tensor_scale", scale, &[Kind::Float], "float32")?;
    check_device(op, "per_tensor_scale", scale, device, true)?;
    let shape = scale.size();
    let per_expert = size.len() == 3 && shape == [size[0], 1, 1];
    if shape.is_empty() || per_expert {
        return Ok(());
    }
    Err(Error::ShapeMismatch {
        op,
        arg: "per_tensor_scale",
        got: shape,
        reason: format!(
            "expected a 0-d scale, or (E, 1, 1) per expert of a 3-D (E, M, K) input; the \
             input is {size:?}"
        ),
    })
}

/// torchao 0.18's `nvfp4_quantize(data_hp, block_size=16,
/// per_tensor_scale=None)`: returns `(block_scales, data_lp)`.
///
/// The input is taken as float32 and viewed as `(rows, blocks, 16)` with
/// `rows` its first dim. Each block's scale is `amax / 6`. Without a
/// per-tensor scale `s` it is clamped to `[2^-6, 448]` and cast to e4m3
/// (`b`), and the data is multiplied by `1 / b`. With `s` (0-d, or `(E,
/// 1, 1)` per expert), the block scale is divided by `s` before the clamp
/// and cast, and the data is multiplied by `(1 / s) / b`. The products are
/// clamped to `[-6, 6]` and cast to fp4 e2m1 (round to nearest even), two
/// codes a byte, the even-indexed element in the low nibble.
///
/// - `block_scales`: `Kind::Float8e4m3fn`, shape `(rows, numel / rows / 16)`;
/// - `data_lp`: uint8, the input's shape with the last dim halved.
///
/// `data_hp` is float32 or bfloat16, of rank at least 2 with a nonempty
/// first dim (torchao's `reshape(rows, -1, 16)` needs them), its last dim
/// a multiple of 16; `block_size` must be 16; `per_tensor_scale` is
/// float32 on the input's device (or a 0-d CPU tensor), of any value (0,
/// NaN and infinity are used as torchao uses them). A non-contiguous input
/// gives torchao's result for its contiguous copy; an empty one (a zero
/// dim after the first) gives empty outputs.
///
/// # Examples
/// ```
/// use tch::{Device, Kind, Tensor};
/// use tch_quant::{nvfp4_quantize, per_tensor_amax_to_scale, NVFP4_BLOCK_SIZE};
///
/// let x = Tensor::randn([4, 64], (Kind::Float, Device::Cpu));
/// let (scales, packed) = nvfp4_quantize(&x, NVFP4_BLOCK_SIZE, None)?;
/// assert_eq!((scales.size(), packed.size()), (vec![4, 4], vec![4, 32]));
/// let s = per_tensor_amax_to_scale(&x.abs().amax([0i64, 1].as_slice(), false))?;
/// let (scales, _) = nvfp4_quantize(&x, NVFP4_BLOCK_SIZE, Some(&s))?;
/// assert_eq!(scales.kind(), Kind::Float8e4m3fn);
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn nvfp4_quantize(
    data_hp: &Tensor,
    block_size: i64,
    per_tensor_scale: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    quantize("nvfp4_quantize", data_hp, block_size, per_tensor_scale)
}

/// [`nvfp4_quantize`], its refusals naming `op`, the entry point called.
fn quantize(
    op: &'static str,
    data_hp: &Tensor,
    block_size: i64,
    per_tensor_scale: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    check_input(op, "data_hp", data_hp)?;
    if block_size != NVFP4_BLOCK_SIZE {
        return Err(Error::invalid(
            op,
            "block_size",
            block_size,
            "NVFP4 requires block_size 16",
        ));
    }
    let orig_shape = data_hp.size();
    check_last_dim(op, "data_hp", &orig_shape, block_size)?;
    if orig_shape.len() < 2 || orig_shape[0] == 0 {
        return Err(Error::ShapeMismatch {
            op,
            arg: "data_hp",
            got: orig_shape,
            reason: "expected at least 2 dims and a nonempty first dim (torchao views it as \
                     (rows, -1, 16))"
                .into(),
        });
    }
    if let Some(s) = per_tensor_scale {
        check_per_tensor_scale(op, s, &orig_shape, data_hp.device())?;
    }
    let compute = || -> std::result::Result<(Tensor, Tensor), tch::TchError> {
        let data = data_hp
            .f_to_kind(Kind::Float)?
            .f_reshape([orig_shape[0], -1, block_size].as_slice())?;
        let max_abs = data.f_abs()?.f_amax([-1i64].as_slice(), false)?;
        let block_scale = scalar_ops::div(&max_abs, F4_E2M1_MAX)?;
        let (out_scales, data_scaled) = match per_tensor_scale {
            None => {
                let fp8 = scalar_ops::clamp(&block_scale, E4M3_EPS, F8E4M3_MAX)?
                    .f_to_kind(Kind::Float8e4m3fn)?;
                let fp32 = fp8.f_to_kind(Kind::Float)?;
                let reciprocal = scalar_ops::mul(&fp32.f_reciprocal()?, 1.0)?;
                (fp8, data.f_mul(&reciprocal.f_unsqueeze(-1)?)?)
            }
            Some(s) => {
                let block_scale = block_scale.f_to_kind(Kind::Float)?;
                let s = if s.dim() == 3 {
                    s.f_squeeze_dim(-1)?
                } else {
                    s.shallow_clone()
                };
                let scaled = block_scale.f_div(&s)?;
                let fp8 = scalar_ops::clamp(&scaled, E4M3_EPS, F8E4M3_MAX)?
                    .f_to_kind(Kind::Float8e4m3fn)?;
                let fp32 = fp8.f_to_kind(Kind::Float)?;
                let reciprocal = scalar_ops::mul(&s.f_reciprocal()?, 1.0)?.f_div(&fp32)?;
                (fp8, data.f_mul(&reciprocal.f_unsqueeze(-1)?)?)
            }
        };
        let data_scaled = scalar_ops::clamp(&data_scaled, -F4_E2M1_MAX, F4_E2M1_MAX)?
            .f_view(orig_shape.as_slice())?;
        let data_lp = pack_uint4(&f32_to_floatx_unpacked(&data_scaled, F4_E2M1)?)?;
        Ok((out_scales, data_lp))
    };
    compute().op(op)
}

/// An NVFP4-quantized tensor: torchao 0.18's `NVFP4Tensor` with its block
/// scales in the plain layout (not swizzled), quantized by the reference
/// ops (not the Triton kernel).
///
/// The fields are public, so a tensor can be built from stored parts;
/// [`Nvfp4Tensor::get_hp_scales`] and [`Nvfp4Tensor::dequantize`] check
/// them and name the field they refuse. The high-precision shape is read
/// from `qdata`'s strides, as torchao's constructor reads it
/// (`tensor_size_fp4x2_to_hp`): when `qdata.stride(-2) > qdata.stride(-1)`
/// the last dim is the packed one, otherwise the dim before it; the codes
/// are transposed when `qdata.stride(-2) < qdata.stride(-1)`. With equal
/// strides (an empty `(M, 0)` qdata's) the dim before the last is doubled,
/// so such a tensor dequantizes to `(2M, 0)`, as in torchao.
#[derive(Debug)]
pub struct Nvfp4Tensor {
    /// fp4 codes, two per uint8 along the last dim: `(..., M, K / 2)`, or
    /// the transpose of the last two dims of such a tensor.
    pub qdata: Tensor,
    /// The e4m3fn block scales, exactly `(..., M, K / 16)` (transposed
    /// with `qdata`; any empty shape beside an empty `qdata`).
    pub scale: Tensor,
    /// The float32 per-tensor scale (0-d) or per-expert scales (`(E, 1,
    /// 1)`), if any.
    pub per_tensor_scale: Option<Tensor>,
    /// Elements per block scale: 16.
    pub block_size: i64,
    /// The dtype of the tensor quantized, [`Nvfp4Tensor::dequantize`]'s
    /// default output.
    pub orig_dtype: Kind,
}

/// The unpacked shape and orientation of NVFP4 codes.
struct Layout {
    leading: Vec<i64>,
    m: i64,
    k: i64,
    is_transposed: bool,
}

impl Nvfp4Tensor {
    /// `NVFP4Tensor.to_nvfp4(data_hp, block_size, per_tensor_scale)`:
    /// [`nvfp4_quantize`] of a 2-D `(M, K)` or 3-D `(E, M, K)` input, the
    /// scales viewed as `(..., M, K / 16)`.
    ///
    /// # Examples
    /// ```
    /// use tch::{Device, Kind, Tensor};
    /// use tch_quant::{Nvfp4Tensor, NVFP4_BLOCK_SIZE};
    ///
    /// let w = Tensor::randn([2, 8, 32], (Kind::BFloat16, Device::Cpu));
    /// let q = Nvfp4Tensor::to_nvfp4(&w, NVFP4_BLOCK_SIZE, None)?;
    /// assert_eq!(q.scale.size(), [2, 8, 2]);
    /// assert_eq!(q.dequantize(Some(Kind::Float))?.size(), [2, 8, 32]);
    /// # Ok::<(), tch_quant::Error>(())
    /// ```
    pub fn to_nvfp4(
        data_hp: &Tensor,
        block_size: i64,
        per_tensor_scale: Option<&Tensor>,
    ) -> Result<Self> {
        const OP: &str = "Nvfp4Tensor::to_nvfp4";
        check_input(OP, "data_hp", data_hp)?;
        let size = data_hp.size();
        if !(2..=3).contains(&size.len()) {
            return Err(Error::ShapeMismatch {
                op: OP,
                arg: "data_hp",
                got: size,
                reason: "expected a 2-D (M, K) or 3-D (E, M, K) tensor".into(),
            });
        }
        let (scales, qdata) = quantize(OP, data_hp, block_size, per_tensor_scale)?;
        let mut scale_shape = size.clone();
        let last = scale_shape.len() - 1;
        scale_shape[last] /= block_size;
        let scale = scales.f_view(scale_shape.as_slice()).op(OP)?;
        Ok(Nvfp4Tensor {
            qdata,
            scale,
            per_tensor_scale: per_tensor_scale.map(Tensor::shallow_clone),
            block_size,
            orig_dtype: data_hp.kind(),
        })
    }

    /// The shape torchao gives the tensor (`tensor_size_fp4x2_to_hp`) and
    /// its orientation, after checking the parts.
    fn layout(&self, op: &'static str) -> Result<Layout> {
        check_kind(
            op,
            "qdata",
            &self.qdata,
            &[Kind::Uint8],
            "uint8 (packed fp4)",
        )?;
        check_kind(
            op,
            "scale",
            &self.scale,
            &[Kind::Float8e4m3fn],
            "float8_e4m3fn",
        )?;
        check_device(op, "scale", &self.scale, self.qdata.device(), false)?;
        let packed = self.qdata.size();
        if !(2..=3).contains(&packed.len()) {
            return Err(Error::ShapeMismatch {
                op,
                arg: "qdata",
                got: packed,
                reason: "expected 2 or 3 dims".into(),
            });
        }
        if self.block_size != NVFP4_BLOCK_SIZE {
            return Err(Error::invalid(
                op,
                "block_size",
                self.block_size,
                "NVFP4 requires block_size 16",
            ));
        }
        // torchao's two stride tests: its constructor's for the packed dim
        // (`tensor_size_fp4x2_to_hp`: the last only when stride(-2) is the
        // larger, so equal strides double the one before), its
        // `dequantize`'s for the orientation.
        let stride = self.qdata.stride();
        let r = packed.len();
        let is_transposed = stride[r - 2] < stride[r - 1];
        let mut shape = packed.clone();
        let packed_dim = if stride[r - 2] > stride[r - 1] {
            r - 1
        } else {
            r - 2
        };
        shape[packed_dim] =
            shape[packed_dim]
                .checked_mul(2)
                .ok_or_else(|| Error::ShapeMismatch {
                    op,
                    arg: "qdata",
                    got: packed.clone(),
                    reason: "twice its packed dim overflows i64".into(),
                })?;
        let (m, k) = if is_transposed {
            (shape[r - 1], shape[r - 2])
        } else {
            (shape[r - 2], shape[r - 1])
        };
        if k % self.block_size != 0 {
            return Err(Error::ShapeMismatch {
                op,
                arg: "qdata",
                got: packed,
                reason: format!(
                    "its unpacked shape {shape:?} has K = {k}, not a multiple of 16 (K is the \
                     last dim, or the one before when the strides say it is transposed)"
                ),
            });
        }
        let leading = shape[..r - 2].to_vec();
        let mut want = leading.clone();
        want.extend([m, k / self.block_size]);
        let mut oriented = self.scale.size();
        let n = oriented.len();
        if is_transposed && n >= 2 {
            oriented.swap(n - 2, n - 1);
        }
        // torchao views the scale, so an empty one fits any empty shape
        // (its own `(M, 0)` tensors unpack to `(2M, 0)`).
        let both_empty = self.scale.numel() == 0 && want.contains(&0);
        if oriented != want && !both_empty {
            let also = if is_transposed {
                ", transposed with qdata"
            } else {
                ""
            };
            return Err(Error::ShapeMismatch {
                op,
                arg: "scale",
                got: self.scale.size(),
                reason: format!(
                    "expected one scale per block of 16 of qdata's {shape:?} elements, shape \
                     {want:?}{also}"
                ),
            });
        }
        if let Some(s) = &self.per_tensor_scale {
            let mut size = leading.clone();
            size.extend([m, k]);
            check_per_tensor_scale(op, s, &size, self.qdata.device())?;
        }
        Ok(Layout {
            leading,
            m,
            k,
            is_transposed,
        })
    }

    fn hp_scales(&self, layout: &Layout) -> std::result::Result<Tensor, tch::TchError> {
        let scale = if layout.is_transposed {
            self.scale.f_transpose(-2, -1)?
        } else {
            self.scale.shallow_clone()
        };
        let scale = scale.f_to_kind(Kind::Float)?;
        match &self.per_tensor_scale {
            None => Ok(scale),
            Some(s) => s.f_mul(&scale),
        }
    }

    /// `NVFP4Tensor.get_hp_scales()`: the block scales in float32, times
    /// the per-tensor scale when there is one, in `scale`'s orientation.
    ///
    /// The parts are checked first: `qdata` uint8 of 2 or 3 dims whose
    /// unpacked K is a multiple of 16, `scale` float8_e4m3fn of the shape
    /// above on `qdata`'s device, `block_size` 16, `per_tensor_scale`
    /// float32, 0-d or `(E, 1, 1)` beside a 3-D `qdata`.
    pub fn get_hp_scales(&self) -> Result<Tensor> {
        const OP: &str = "Nvfp4Tensor::get_hp_scales";
        let layout = self.layout(OP)?;
        self.hp_scales(&layout).op(OP)
    }

    /// `NVFP4Tensor.dequantize(output_dtype)`: each fp4 code's float32
    /// value times its block's float32 scale ([`Nvfp4Tensor::get_hp_scales`]),
    /// in float32, then cast to `output_dtype` (float32, bfloat16, float16
    /// or float64; by default [`Nvfp4Tensor::orig_dtype`]).
    ///
    /// The parts are checked first, as [`Nvfp4Tensor::get_hp_scales`]
    /// does.
    pub fn dequantize(&self, output_dtype: Option<Kind>) -> Result<Tensor> {
        const OP: &str = "Nvfp4Tensor::dequantize";
        let arg = if output_dtype.is_some() {
            "output_dtype"
        } else {
            "orig_dtype"
        };
        let output_dtype = output_dtype.unwrap_or(self.orig_dtype);
        check_output(OP, arg, output_dtype)?;
        let layout = self.layout(OP)?;
        let compute = || -> std::result::Result<Tensor, tch::TchError> {
            let data = if layout.is_transposed {
                self.qdata.f_transpose(-2, -1)?
            } else {
                self.qdata.shallow_clone()
            };
            let unpacked = unpack_uint4(&data.f_contiguous()?)?;
            let data_f32 = floatx_unpacked_to_f32(&unpacked, F4_E2M1)?;
            let (m, k, bs) = (layout.m, layout.k, self.block_size);
            let shape = |tail: &[i64]| {
                let mut s = layout.leading.clone();
                s.extend_from_slice(tail);
                s
            };
            let data_f32 = data_f32.f_view(shape(&[m, k / bs, bs]).as_slice())?;
            let scales = self
                .hp_scales(&layout)?
                .f_view(shape(&[m, k / bs, 1]).as_slice())?;
            let result = data_f32
                .f_mul(&scales.f_to_kind(Kind::Float)?)?
                .f_view(shape(&[m, k]).as_slice())?
                .f_to_kind(output_dtype)?;
            if layout.is_transposed {
                result.f_transpose(-2, -1)
            } else {
                Ok(result)
            }
        };
        compute().op(OP)
    }
}
