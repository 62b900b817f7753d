//! The packed weights libtorch's quantized matmul kernels read, built from
//! the crate's quantized tensors with torchao 0.11's op sequences:
//!
//! - [`Int4CpuWeight`], from `Int4CPUAQTTensorImpl.from_plain`
//!   (`torchao/dtypes/uintx/int4_cpu_layout.py`):
//!   `_convert_weight_to_int4pack_for_cpu(codes, 1)` and
//!   `pack_tinygemm_scales_and_zeros(scale, zero_point)`, read by
//!   `_weight_int4pack_mm_for_cpu`;
//! - [`TensorCoreTiledWeight`], from `TensorCoreTiledAQTTensorImpl.from_plain`
//!   (`tensor_core_tiled_layout.py`) on the weight padded by the layout's
//!   `pre_process`: `_convert_weight_to_int4pack(codes[:, ::2] << 4 |
//!   codes[:, 1::2], inner_k_tiles)`, read by `_weight_int4pack_mm` (CUDA);
//! - [`Int8Weight`], `PlainAQTTensorImpl` of a symmetric int8 per-row weight
//!   (`plain_layout.py`): the codes `[N, K]` and one scale per row `[N]`.
//!
//! `pack_tinygemm_scales_and_zeros` stacks scale and zero point `[N, G]`
//! into `[N, G, 2]` and transposes to `[G, N, 2]`, contiguous: element
//! `[g, n, 0]` is row `n`'s scale for group `g`, `[g, n, 1]` its zero point.

use tch::{Kind, Tensor};

use crate::error::{Error, Result, TorchContext};
use crate::mapping::{MappingType, ZeroPointDomain};
use crate::quantized::AffineQuantizedTensor;
use crate::scalar_ops;
use crate::QuantDtype;

use super::scheme::LinearScheme;

/// `[N, G]` scale and zero point as tinygemm's `[G, N, 2]` table.
fn scales_and_zeros(op: &'static str, scale: &Tensor, zero_point: &Tensor) -> Result<Tensor> {
    let pair = [
        scale.f_unsqueeze(-1).op(op)?,
        zero_point.f_unsqueeze(-1).op(op)?,
    ];
    Tensor::f_cat(&pair, 2)
        .and_then(|t| t.f_transpose(0, 1))
        .and_then(|t| t.f_contiguous())
        .op(op)
}

/// Checks that `q` holds what torchao's tinygemm int4 layouts store: a 2-D
/// weight, asymmetric int32 codes in `0..=15`, one group of `[1, g]` per
/// scale, a float-domain zero point of the scale's dtype. Returns the group
/// size and `q`'s scale and zero point as `[N, K / g]`.
fn tinygemm_parts(op: &'static str, q: &AffineQuantizedTensor) -> Result<(i64, Tensor, Tensor)> {
    let refuse = |why: String| Error::invalid(op, "q", format!("{:?}", q.shape()), why);
    let &[rows, _] = q.shape() else {
        return Err(refuse("a linear weight is 2-D".into()));
    };
    let group = match q.block_size() {
        &[1, g] => g,
        b => return Err(refuse(format!("block size {b:?} is not [1, group_size]"))),
    };
    if q.mapping_type() != MappingType::Asymmetric
        || q.target_dtype() != QuantDtype::Int32
        || q.quant_range() != (0.0, 15.0)
        || q.zero_point_domain() != ZeroPointDomain::Float
    {
        return Err(refuse(format!(
            "tinygemm int4 takes asymmetric int32 codes in 0..=15 with a float-domain zero \
             point, got {} {} in {:?}, {} domain",
            q.mapping_type(),
            q.target_dtype(),
            q.quant_range(),
            q.zero_point_domain()
        )));
    }
    let Some(zero_point) = q.zero_point() else {
        return Err(refuse("it has no zero point".into()));
    };
    if zero_point.kind() != q.scale().kind() {
        return Err(refuse(format!(
            "scale ({:?}) and zero point ({:?}) are packed together and need one dtype",
            q.scale().kind(),
            zero_point.kind()
        )));
    }
    let flat = |t: &Tensor| t.f_reshape([rows, -1]).op(op);
    Ok((group, flat(q.scale())?, flat(zero_point)?))
}

/// An int4 weight in `Int4CPULayout`, as `_weight_int4pack_mm_for_cpu`
/// reads it.
///
/// # Examples
/// ```
/// use tch::{Device, Kind, Tensor};
/// use tch_quant::Int4CpuWeight;
/// let w = Tensor::randn([64, 256], (Kind::BFloat16, Device::Cpu));
/// let packed = Int4CpuWeight::quantize(&w, 32)?;
/// assert_eq!(packed.scale_and_zero().size(), vec![8, 64, 2]);
/// let y = packed.matmul(&Tensor::randn([3, 256], (Kind::BFloat16, Device::Cpu)))?;
/// assert_eq!(y.size(), vec![3, 64]);
/// # Ok::<(), tch_quant::Error>(())
/// ```
#[derive(Debug)]
pub struct Int4CpuWeight {
    packed: Tensor,
    scale_and_zero: Tensor,
    group_size: i64,
    out_features: i64,
    in_features: i64,
}

impl Int4CpuWeight {
    /// Quantizes `weight` (`[N, K]`, float32, float16 or bfloat16, on the
    /// CPU) as `Int4WeightOnlyConfig(group_size, layout=Int4CPULayout())`
    /// does, and packs it.
    pub fn quantize(weight: &Tensor, group_size: i64) -> Result<Self> {
        const OP: &str = "Int4CpuWeight::quantize";
        let scheme = LinearScheme::Int4Cpu { group_size };
        scheme.validate()?;
        scheme.refuse_unfit(OP, weight)?;
        let q = AffineQuantizedTensor::quantize(weight, &scheme.weight_recipe(weight.kind()))?;
        Self::from_quantized(&q)
    }

    /// Packs an already quantized weight: int32 codes in `0..=15` per group
    /// of `[1, g]`, with a float-domain zero point of the scale's dtype.
    pub fn from_quantized(q: &AffineQuantizedTensor) -> Result<Self> {
        const OP: &str = "Int4CpuWeight::from_quantized";
        let (group_size, scale, zero_point) = tinygemm_parts(OP, q)?;
        let codes = q.codes()?;
        let packed = codes
            .f_internal_convert_weight_to_int4pack_for_cpu(1)
            .op(OP)?;
        Ok(Int4CpuWeight {
            packed,
            scale_and_zero: scales_and_zeros(OP, &scale, &zero_point)?,
            group_size,
            out_features: q.shape()[0],
            in_features: q.shape()[1],
        })
    }

    /// `_weight_int4pack_mm_for_cpu(x.contiguous(), ..)` of a 2-D `x` with
    /// `K` columns, of the scale's dtype: `[M, N]`.
    pub fn matmul(&self, x: &Tensor) -> Result<Tensor> {
        const OP: &str = "Int4CpuWeight::matmul";
        check_operand(OP, x, self.in_features, self.scale_and_zero.kind())?;
        x.f_contiguous()
            .and_then(|x| {
                x.f_internal_weight_int4pack_mm_for_cpu(
                    &self.packed,
                    self.group_size,
                    &self.scale_and_zero,
                )
            })
            .op(OP)
    }

    /// The same packing, sharing this one's tensors.
    pub fn shallow_clone(&self) -> Self {
        Int4CpuWeight {
            packed: self.packed.shallow_clone(),
            scale_and_zero: self.scale_and_zero.shallow_clone(),
            ..*self
        }
    }

    /// The packed codes (`uint8`).
    pub fn packed_weight(&self) -> &Tensor {
        &self.packed
    }

    /// Scale and zero point, `[K / g, N, 2]`.
    pub fn scale_and_zero(&self) -> &Tensor {
        &self.scale_and_zero
    }

    /// The group size.
    pub fn group_size(&self) -> i64 {
        self.group_size
    }

    /// `N`.
    pub fn out_features(&self) -> i64 {
        self.out_features
    }

    /// `K`.
    pub fn in_features(&self) -> i64 {
        self.in_features
    }

    /// Bytes stored.
    pub fn nbytes(&self) -> usize {
        nbytes(&self.packed) + nbytes(&self.scale_and_zero)
    }
}

/// An int4 weight in `TensorCoreTiledLayout`, as `_weight_int4pack_mm`
/// (CUDA) reads it: quantized on the weight zero-padded to `K` a multiple of
/// 1024 and `N` a multiple of 8, as the layout's `pre_process` pads it.
#[derive(Debug)]
pub struct TensorCoreTiledWeight {
    packed: Tensor,
    scale_and_zero: Tensor,
    group_size: i64,
    inner_k_tiles: i64,
    out_features: i64,
    in_features: i64,
}

/// `n` rounded up to a multiple of `to` (torchao's `find_multiple`).
fn round_up(n: i64, to: i64) -> i64 {
    (n + to - 1) / to * to
}

impl TensorCoreTiledWeight {
    /// Quantizes `weight` (`[N, K]`, bfloat16, on CUDA) as
    /// `Int4WeightOnlyConfig(group_size)` with
    /// `TensorCoreTiledLayout(inner_k_tiles)` does, and packs it.
    pub fn quantize(weight: &Tensor, group_size: i64, inner_k_tiles: i64) -> Result<Self> {
        const OP: &str = "TensorCoreTiledWeight::quantize";
        let scheme = LinearScheme::Int4TensorCoreTiled {
            group_size,
            inner_k_tiles,
        };
        scheme.validate()?;
        scheme.refuse_unfit(OP, weight)?;
        let shape = weight.size();
        let (n, k) = (shape[0], shape[1]);
        let padded = weight
            .f_constant_pad_nd([0, round_up(k, 1024) - k, 0, round_up(n, 8) - n])
            .op(OP)?;
        let q = AffineQuantizedTensor::quantize(&padded, &scheme.weight_recipe(weight.kind()))?;
        let (_, scale, zero_point) = tinygemm_parts(OP, &q)?;
        let codes = q.codes()?;
        let kp = codes.size()[1];
        let even = codes.f_slice(1, 0, kp, 2).op(OP)?;
        let odd = codes.f_slice(1, 1, kp, 2).op(OP)?;
        let high = scalar_ops::shift_left(&even, 4).op(OP)?;
        let packed = high
            .f_bitwise_or_tensor(&odd)
            .and_then(|t| t.f_to_kind(Kind::Uint8))
            .and_then(|t| t.f_contiguous())
            .and_then(|t| t.f_internal_convert_weight_to_int4pack(inner_k_tiles))
            .op(OP)?;
        Ok(TensorCoreTiledWeight {
            packed,
            scale_and_zero: scales_and_zeros(OP, &scale, &zero_point)?,
            group_size,
            inner_k_tiles,
            out_features: n,
            in_features: k,
        })
    }

    /// torchao's `_linear_bf16_act_uint4_weight_impl` on a 2-D `x` with `K`
    /// columns: `x` cast to bfloat16 and zero-padded to the padded `K`,
    /// `_weight_int4pack_mm`, the padded columns cut off: `[M, N]` bfloat16.
    pub fn matmul(&self, x: &Tensor) -> Result<Tensor> {
        const OP: &str = "TensorCoreTiledWeight::matmul";
        check_operand(OP, x, self.in_features, x.kind())?;
        let k = self.in_features;
        let x = x
            .f_to_kind(Kind::BFloat16)
            .and_then(|x| x.f_constant_pad_nd([0, round_up(k, 1024) - k]))
            .op(OP)?;
        let y = if x.numel() == 0 {
            x
        } else {
            x.f_contiguous()
                .and_then(|x| {
                    x.f_internal_weight_int4pack_mm(
                        &self.packed,
                        self.group_size,
                        &self.scale_and_zero,
                    )
                })
                .op(OP)?
        };
        let n = self.out_features.min(y.size()[1]);
        y.f_narrow(1, 0, n).op(OP)
    }

    /// The same packing, sharing this one's tensors.
    pub fn shallow_clone(&self) -> Self {
        TensorCoreTiledWeight {
            packed: self.packed.shallow_clone(),
            scale_and_zero: self.scale_and_zero.shallow_clone(),
            ..*self
        }
    }

    /// The packed codes, as `_convert_weight_to_int4pack` lays them out.
    pub fn packed_weight(&self) -> &Tensor {
        &self.packed
    }

    /// Scale and zero point of the padded weight, `[K' / g, N', 2]`.
    pub fn scale_and_zero(&self) -> &Tensor {
        &self.scale_and_zero
    }

    /// The inner k tiles packed with.
    pub fn inner_k_tiles(&self) -> i64 {
        self.inner_k_tiles
    }

    /// Bytes stored.
    pub fn nbytes(&self) -> usize {
        nbytes(&self.packed) + nbytes(&self.scale_and_zero)
    }
}

/// A symmetric int8 weight with one scale per output row, as torchao's
/// `PlainLayout` stores it for `Int8WeightOnlyConfig()` and
/// `Int8DynamicActivationInt8WeightConfig()`.
#[derive(Debug)]
pub struct Int8Weight {
    codes: Tensor,
    scale: Tensor,
}

impl Int8Weight {
    /// Takes an already quantized weight: 2-D int8 codes, one block per row.
    pub fn from_quantized(q: &AffineQuantizedTensor) -> Result<Self> {
        const OP: &str = "Int8Weight::from_quantized";
        let shape = q.shape();
        let per_row = matches!((shape, q.block_size()), (&[_, k], &[1, b]) if k == b);
        if !per_row || q.target_dtype() != QuantDtype::Int8 {
            return Err(Error::invalid(
                OP,
                "q",
                format!("{shape:?}"),
                format!(
                    "an int8 linear weight is 2-D int8 with one scale per row, got {} codes \
                     with block size {:?}",
                    q.target_dtype(),
                    q.block_size()
                ),
            ));
        }
        Ok(Int8Weight {
            codes: q.codes()?,
            scale: q.scale().f_reshape([-1]).op(OP)?,
        })
    }

    /// The same weight, sharing this one's tensors.
    pub fn shallow_clone(&self) -> Self {
        Int8Weight {
            codes: self.codes.shallow_clone(),
            scale: self.scale.shallow_clone(),
        }
    }

    /// The codes, `[N, K]` int8.
    pub fn codes(&self) -> &Tensor {
        &self.codes
    }

    /// One scale per row, `[N]`, in the weight's dtype.
    pub fn scale(&self) -> &Tensor {
        &self.scale
    }

    /// Bytes stored.
    pub fn nbytes(&self) -> usize {
        nbytes(&self.codes) + nbytes(&self.scale)
    }
}

/// Bytes of one tensor.
pub(crate) fn nbytes(t: &Tensor) -> usize {
    t.numel() * t.kind().elt_size_in_bytes()
}

/// Checks a 2-D matmul operand: `k` columns, dtype `kind`.
fn check_operand(op: &'static str, x: &Tensor, k: i64, kind: Kind) -> Result<()> {
    crate::strided::check_strided(op, "x", x)?;
    let shape = x.size();
    if shape.len() != 2 || shape[1] != k {
        return Err(Error::ShapeMismatch {
            op,
            arg: "x",
            got: shape,
            reason: format!("expected [M, {k}]"),
        });
    }
    if x.kind() != kind {
        return Err(Error::UnsupportedKind {
            op,
            arg: "x",
            expected: crate::dtype::kind_name(kind),
            got: x.kind(),
        });
    }
    Ok(())
}
