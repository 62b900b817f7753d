//! torchao's weight-only recipes as typed values: the exact arguments each
//! config passes to `choose_qparams_affine` / `quantize_affine`, and the
//! checks that tell, from a tensor's shape and dtype alone, whether a recipe
//! applies to it.
//!
//! The 0.11 presets are the default; the `...V2` variants and
//! [`Recipe::IntxWeightOnly`] are torchao 0.18's version-2 configs (see
//! [`Recipe::semantics`] and [`Recipe::with_semantics`]).
//!
//! The presets transcribe `torchao/quantization/quant_api.py` at v0.11.0
//! (`_int8_weight_only_quantize_tensor`, `_int4_weight_only_quantize_tensor`,
//! `_uintx_weight_only_transform`, `_float8_weight_only_quant_tensor` ->
//! `AffineQuantizedTensor.from_hp_to_floatx`). Their layouts change no value
//! of the unpadded region: `TensorCoreTiledLayout.pre_process` pads with whole
//! zero groups and rows, `UintxLayout` only packs, `PlainLayout` and
//! `Float8Layout` do nothing.

use std::fmt;

use tch::Kind;

use crate::block::{check_block_size, BlockRefusal};
use crate::dtype::{is_input_float, kind_name};
use crate::error::{Error, Result};
use crate::granularity::Granularity;
use crate::mapping::{MappingType, ZeroPointDomain};
use crate::qparams::{Plan, QParamsOptions};
use crate::semantics::Semantics;
use crate::QuantDtype;

/// Group sizes torchao's tinygemm int4 kernel supports.
pub const INT4_GROUP_SIZES: [i64; 4] = [32, 64, 128, 256];

/// `torch.finfo(torch.float32).eps`, which torchao's int8, uintx and float8
/// recipes pass whatever the weight's dtype.
const F32_EPS: f64 = f32::EPSILON as f64;

/// A quantization recipe: one torchao 0.11 config with its arguments, or a
/// custom combination.
///
/// | recipe | torchao config | mapping | block | target, range | eps | zero point |
/// | --- | --- | --- | --- | --- | --- | --- |
/// | [`Int8WeightOnly`](Recipe::Int8WeightOnly) | `Int8WeightOnlyConfig(group_size)` | symmetric | `(1, …, 1, group or K)` | int8, -128..127 | f32 eps | int64, int domain |
/// | [`Int4WeightOnly`](Recipe::Int4WeightOnly) | `Int4WeightOnlyConfig(group_size)` (tinygemm) | asymmetric, `preserve_zero=False` | `(1, …, 1, group)` | int32, 0..15, packed as uint4 | 1e-6 | bfloat16, float domain |
/// | [`UIntXWeightOnly`](Recipe::UIntXWeightOnly) | `UIntXWeightOnlyConfig(uint{bits}, group_size)` | asymmetric | `(1, …, 1, group)` | uint*bits*, full range, packed below 8 bits | f32 eps | int32, int domain |
/// | [`Float8WeightOnly`](Recipe::Float8WeightOnly) | `Float8WeightOnlyConfig()` | symmetric | `(1, …, 1, K)` | float8_e4m3fn, -448..448 | f32 eps | none |
///
/// torchao 0.18's version-2 configs that run on CPU (torch 2.13), each
/// storing exactly what its tensor subclass stores:
///
/// | recipe | torchao 0.18 config | stores | eps | zero point |
/// | --- | --- | --- | --- | --- |
/// | [`Int8WeightOnlyV2`](Recipe::Int8WeightOnlyV2) | `Int8WeightOnlyConfig(granularity)` (`Int8Tensor`) | int8 codes, float32 scale `[N, 1]` per row (`[1, 1]` per tensor, `[N, K / g]` per group) | f32 eps | int8 zeros, same shape |
/// | [`Float8WeightOnlyV2`](Recipe::Float8WeightOnlyV2) | `Float8WeightOnlyConfig(weight_dtype, granularity)` (`Float8Tensor`) | float8 codes, float32 scale `amax / fmax` per row, tensor or group | none | none |
/// | [`IntxWeightOnly`](Recipe::IntxWeightOnly) | `IntxWeightOnlyConfig(int{bits}, granularity, mapping_type)` (`IntxUnpackedToInt8Tensor`) | int8 codes in the int*bits* range, scale in the weight's dtype `[N, K / g]` | `finfo(dtype).smallest_normal` | int8, same shape |
///
/// `Int8DynamicActivationInt8WeightConfig()` stores the same `Int8Tensor`
/// weight as `Int8WeightOnlyConfig()` (its activations are quantized at run
/// time), so [`Int8WeightOnlyV2`](Recipe::Int8WeightOnlyV2) per row gives
/// its weight too. torchao 0.18's `Int4WeightOnlyConfig` (every packing
/// format), `Float8DynamicActivationFloat8WeightConfig` and
/// `Float8DynamicActivationInt4WeightConfig` do not run on CPU, and 0.18 has
/// no `UIntXWeightOnlyConfig`: [`with_semantics`](Recipe::with_semantics)
/// refuses them, saying why.
///
/// # Examples
/// ```
/// use tch::Kind;
/// use tch_quant::{QuantDtype, Recipe};
/// let int4 = Recipe::Int4WeightOnly { group_size: 32, use_hqq: false };
/// int4.validate()?;
/// assert_eq!(int4.target_dtype(), QuantDtype::Int32);
/// assert_eq!(int4.quant_range(), (0.0, 15.0));
/// assert_eq!(int4.packing(), Some(4));
/// // Checked against a tensor's shape and dtype, without touching data.
/// assert_eq!(int4.check(&[384, 1536], Kind::BFloat16).unwrap(), vec![1, 32]);
/// assert!(int4.check(&[384, 48], Kind::BFloat16).is_err());
/// # Ok::<(), tch_quant::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Recipe {
    /// `Int8WeightOnlyConfig(group_size)`: symmetric int8 per row (or per
    /// group of `group_size` along the last dim), eps = f32 eps, int64 zero
    /// point.
    Int8WeightOnly {
        /// `None`: one scale per row.
        group_size: Option<i64>,
    },
    /// `Int4WeightOnlyConfig(group_size)` with its default
    /// `TensorCoreTiledLayout`: asymmetric, target int32 in `0..=15`, eps
    /// 1e-6, bfloat16 zero point in the float domain, `preserve_zero =
    /// False`. Codes are stored packed as uint4; scale and zero point keep
    /// one column per group (`[..., K / group_size]`) even when a group spans
    /// the row, as the layout computes them on its padded weight. Where a
    /// scale or zero point is NaN they are computed on that padded weight
    /// too, since a NaN's bits depend on the shape libtorch computes it in;
    /// the int32 code of NaN (-2^31) is stored packed as 0 (see
    /// [`AffineQuantizedTensor::pack`](crate::AffineQuantizedTensor::pack)).
    Int4WeightOnly {
        /// 32, 64, 128 or 256 (the tinygemm kernel's).
        group_size: i64,
        /// `use_hqq=True`: the codes, scale and zero point come from
        /// [`choose_qparams_and_quantize_affine_hqq`](crate::choose_qparams_and_quantize_affine_hqq)
        /// (4 bits, axis 1, compute dtype bfloat16, on the weight zero-padded
        /// as the layout pads it) instead of min/max; stored the same way.
        use_hqq: bool,
    },
    /// `UIntXWeightOnlyConfig(dtype=torch.uint{bits}, group_size)` without
    /// HQQ: asymmetric over the dtype's full range, eps = f32 eps, int32 zero
    /// point, int domain; codes packed along the last dim below 8 bits
    /// (torchao's `UintxLayout` cannot pack uint8, which is stored plain).
    UIntXWeightOnly {
        /// 1 to 8.
        bits: u32,
        /// Elements per group along the last dim (torchao's default is 64).
        group_size: i64,
        /// `use_hqq=True`: [`choose_qparams_and_quantize_affine_hqq`](crate::choose_qparams_and_quantize_affine_hqq)
        /// with `bits`, axis 1 and the weight's dtype as compute dtype; as
        /// torchao then does, the codes are stored plain in uint8 (its
        /// `PlainLayout`) with a float-domain zero point in the weight's
        /// dtype, target uint8 over `0..=2^bits - 1`.
        use_hqq: bool,
    },
    /// `Float8WeightOnlyConfig()`: symmetric float8_e4m3fn per row, quant
    /// range `-448..=448`, eps = f32 eps, scale in the weight's dtype, no
    /// zero point.
    Float8WeightOnly,
    /// torchao 0.18's `Int8WeightOnlyConfig(granularity=...)` (version 2,
    /// `Int8Tensor.from_hp`): symmetric int8 over `-128..=127`, eps = f32
    /// eps, float32 scale and int8 zero point with the weight's rank
    /// (`keepdim=True`), then 0.18's `quantize_affine`.
    Int8WeightOnlyV2 {
        /// [`PerRow`](Granularity::PerRow) (torchao's default),
        /// [`PerTensor`](Granularity::PerTensor) or
        /// [`PerGroup`](Granularity::PerGroup).
        granularity: Granularity,
    },
    /// torchao 0.18's `Float8WeightOnlyConfig(weight_dtype, granularity)`
    /// (version 2, `Float8Tensor.from_hp` on its torch path):
    /// [`choose_scale_float8`](crate::choose_scale_float8) (`amax / fmax`
    /// per block, no eps) and
    /// [`quantize_affine_float8`](crate::quantize_affine_float8); no zero
    /// point.
    Float8WeightOnlyV2 {
        /// [`PerRow`](Granularity::PerRow) (torchao's default),
        /// [`PerTensor`](Granularity::PerTensor) or
        /// [`PerGroup`](Granularity::PerGroup).
        granularity: Granularity,
        /// `weight_dtype`: a float8 kind (torchao's default
        /// `float8_e4m3fn`).
        float8_dtype: QuantDtype,
    },
    /// torchao 0.18's `IntxWeightOnlyConfig(weight_dtype=torch.int{bits},
    /// granularity, mapping_type)` (version 2, `IntxUnpackedToInt8Tensor`
    /// with the affine algorithm): `choose_qparams_affine` with target int8
    /// over the int*bits* range, eps defaulting to
    /// `finfo(dtype).smallest_normal`, scale in the weight's dtype, int8 zero
    /// point, `keepdim=True`; codes stored unpacked in int8. 2-d weights only
    /// (torchao's 4-d conv blocks are not covered).
    IntxWeightOnly {
        /// 1 to 8.
        bits: u32,
        /// [`PerAxis(0)`](Granularity::PerAxis) (one scale per row,
        /// torchao's default) or [`PerGroup`](Granularity::PerGroup).
        granularity: Granularity,
        /// Symmetric (torchao's default), asymmetric or symmetric without
        /// clipping error.
        mapping: MappingType,
    },
    /// Any mapping, dtype, granularity and options.
    Custom(CustomRecipe),
}

/// The arguments of a custom recipe: what `choose_qparams_affine` takes,
/// with the block size given as a [`Granularity`].
///
/// # Examples
/// ```
/// use tch_quant::{CustomRecipe, Granularity, MappingType, QParamsOptions, QuantDtype, Recipe};
/// let r = Recipe::Custom(CustomRecipe {
///     mapping: MappingType::Symmetric,
///     dtype: QuantDtype::Int4,
///     granularity: Granularity::PerGroup(32),
///     options: QParamsOptions::default(),
/// });
/// assert_eq!(r.quant_range(), (-8.0, 7.0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CustomRecipe {
    /// How floats map onto codes.
    pub mapping: MappingType,
    /// The code dtype (`target_dtype`).
    pub dtype: QuantDtype,
    /// Which elements share a scale.
    pub granularity: Granularity,
    /// Every other argument of `choose_qparams_affine`.
    pub options: QParamsOptions,
}

/// Why a recipe does not apply to a tensor, decided from its shape and
/// dtype alone.
#[derive(Debug, Clone, PartialEq)]
pub enum Unfit {
    /// Only float32, float16 and bfloat16 tensors are quantized; holds
    /// torch's name of the dtype given.
    Dtype(String),
    /// The tensor has no elements.
    Empty(Vec<i64>),
    /// The granularity gives no block size for this shape (an axis out of
    /// range, a 0-d tensor).
    NoBlockSize(String),
    /// The block size does not divide the shape.
    NotDivided {
        /// The tensor's shape.
        shape: Vec<i64>,
        /// The recipe's block size for it.
        block_size: Vec<i64>,
    },
    /// The block size reduces no dim: every element would be its own block.
    NoReduction {
        /// The recipe's block size for the tensor.
        block_size: Vec<i64>,
    },
    /// Reducing the blocks would need a view of `dims` dims, more than the 64
    /// libtorch's reductions take (so a tensor of rank above 64 never fits).
    TooManyDims {
        /// The rank of the reduction view: the tensor's rank plus one for
        /// each dim the block size splits.
        dims: usize,
    },
    /// Packed codes need a last dim whose size is a multiple of 8.
    NotPackable {
        /// The size of the last dim (`None` for a 0-d tensor).
        last_dim: Option<i64>,
        /// Bits per packed code.
        bits: u32,
    },
    /// An HQQ recipe groups the weight along its rows (torchao's axis 1),
    /// which needs at least 2 dims; holds the tensor's number of dims.
    /// (torchao's `to_affine_quantized_intx` picks axis 0 for a 1-d weight
    /// and groups strided elements that do not form its blocks.)
    HqqRank(usize),
    /// A quantized linear layer's scheme does not take this weight (see
    /// [`LinearScheme::check`](crate::LinearScheme::check)): its rank,
    /// device or dtype, or a size torchao leaves dense.
    Linear(String),
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unfit::Dtype(name) => write!(
                f,
                "has dtype {name}; only float32, float16 and bfloat16 tensors can be quantized"
            ),
            Unfit::Empty(shape) => write!(f, "is empty (shape {shape:?})"),
            Unfit::NoBlockSize(why) => write!(f, "has no block size: {why}"),
            Unfit::NotDivided { shape, block_size } => write!(
                f,
                "its shape {shape:?} is not divided by the block size {block_size:?}"
            ),
            Unfit::NoReduction { block_size } => write!(
                f,
                "the block size {block_size:?} would give every element its own scale \
                 (torchao collapses that into one, pytorch/ao#3458)"
            ),
            Unfit::TooManyDims { dims } => write!(
                f,
                "its blocks would be reduced over a view of {dims} dims; libtorch's reductions \
                 take at most 64"
            ),
            Unfit::NotPackable {
                last_dim: None,
                bits,
            } => write!(f, "is 0-d, and packing {bits}-bit codes needs a last dim"),
            Unfit::NotPackable {
                last_dim: Some(last),
                bits,
            } => write!(
                f,
                "its last dim ({last}) is not a multiple of 8, which packing {bits}-bit codes \
                 needs"
            ),
            Unfit::HqqRank(dims) => write!(
                f,
                "has {dims} dim(s), and HQQ groups a weight along its rows, which needs at \
                 least 2"
            ),
            Unfit::Linear(why) => f.write_str(why),
        }
    }
}

impl Recipe {
    /// The recipe's name as the `tch-quant` command spells it
    /// (`int4-weight-only`, ..., `custom`).
    pub fn name(&self) -> &'static str {
        match self {
            Recipe::Int8WeightOnly { .. } => "int8-weight-only",
            Recipe::Int4WeightOnly { .. } => "int4-weight-only",
            Recipe::UIntXWeightOnly { .. } => "uintx-weight-only",
            Recipe::Float8WeightOnly => "float8-weight-only",
            Recipe::Int8WeightOnlyV2 { .. } => "int8-weight-only-v2",
            Recipe::Float8WeightOnlyV2 { .. } => "float8-weight-only-v2",
            Recipe::IntxWeightOnly { .. } => "intx-weight-only",
            Recipe::Custom(_) => "custom",
        }
    }

    /// The mapping, code dtype, granularity and options the recipe passes to
    /// torchao's primitives.
    ///
    /// # Examples
    /// ```
    /// use tch_quant::{Granularity, MappingType, Recipe};
    /// let c = Recipe::Int8WeightOnly { group_size: None }.arguments();
    /// assert_eq!(c.mapping, MappingType::Symmetric);
    /// assert_eq!(c.granularity, Granularity::PerRow);
    /// assert_eq!(c.options.eps, Some(f32::EPSILON as f64));
    /// ```
    pub fn arguments(&self) -> CustomRecipe {
        match *self {
            Recipe::Int8WeightOnly { group_size } => CustomRecipe {
                mapping: MappingType::Symmetric,
                dtype: QuantDtype::Int8,
                granularity: group_size.map_or(Granularity::PerRow, Granularity::PerGroup),
                options: QParamsOptions {
                    eps: Some(F32_EPS),
                    zero_point_dtype: Some(Kind::Int64),
                    ..Default::default()
                },
            },
            Recipe::Int4WeightOnly { group_size, .. } => CustomRecipe {
                mapping: MappingType::Asymmetric,
                dtype: QuantDtype::Int32,
                granularity: Granularity::PerGroup(group_size),
                options: QParamsOptions {
                    quant_min: Some(0.0),
                    quant_max: Some(15.0),
                    eps: Some(1e-6),
                    zero_point_dtype: Some(Kind::BFloat16),
                    preserve_zero: false,
                    zero_point_domain: ZeroPointDomain::Float,
                    ..Default::default()
                },
            },
            Recipe::UIntXWeightOnly {
                bits,
                group_size,
                use_hqq: true,
            } => CustomRecipe {
                // `_uintx_weight_only_transform` with `use_hqq`: uint8 codes
                // over the uint{bits} range, no eps, float-domain zero point.
                mapping: MappingType::Asymmetric,
                dtype: QuantDtype::UInt8,
                granularity: Granularity::PerGroup(group_size),
                options: QParamsOptions {
                    quant_min: Some(0.0),
                    quant_max: Some(((1u64 << bits.min(8)) - 1) as f64),
                    preserve_zero: false,
                    zero_point_domain: ZeroPointDomain::Float,
                    ..Default::default()
                },
            },
            Recipe::UIntXWeightOnly {
                bits, group_size, ..
            } => CustomRecipe {
                mapping: MappingType::Asymmetric,
                dtype: uint_of_bits(bits).unwrap_or(QuantDtype::UInt8),
                granularity: Granularity::PerGroup(group_size),
                options: QParamsOptions {
                    eps: Some(F32_EPS),
                    zero_point_dtype: Some(Kind::Int),
                    ..Default::default()
                },
            },
            Recipe::Float8WeightOnly => CustomRecipe {
                mapping: MappingType::Symmetric,
                dtype: QuantDtype::Float8E4M3Fn,
                granularity: Granularity::PerRow,
                options: QParamsOptions {
                    quant_min: Some(-448.0),
                    quant_max: Some(448.0),
                    eps: Some(F32_EPS),
                    zero_point_domain: ZeroPointDomain::None,
                    ..Default::default()
                },
            },
            Recipe::Int8WeightOnlyV2 { granularity } => CustomRecipe {
                mapping: MappingType::Symmetric,
                dtype: QuantDtype::Int8,
                granularity,
                options: QParamsOptions {
                    eps: Some(F32_EPS),
                    scale_dtype: Some(Kind::Float),
                    zero_point_dtype: Some(Kind::Int8),
                    keepdim: true,
                    semantics: Semantics::Torchao0_18,
                    ..Default::default()
                },
            },
            Recipe::Float8WeightOnlyV2 {
                granularity,
                float8_dtype,
            } => {
                let (lo, hi) = float8_dtype.bounds();
                CustomRecipe {
                    mapping: MappingType::Symmetric,
                    dtype: float8_dtype,
                    granularity,
                    options: QParamsOptions {
                        quant_min: Some(lo),
                        quant_max: Some(hi),
                        scale_dtype: Some(Kind::Float),
                        zero_point_domain: ZeroPointDomain::None,
                        keepdim: true,
                        semantics: Semantics::Torchao0_18,
                        ..Default::default()
                    },
                }
            }
            Recipe::IntxWeightOnly {
                bits,
                granularity,
                mapping,
            } => {
                let half = 2f64.powi(bits.clamp(1, 8) as i32 - 1);
                CustomRecipe {
                    mapping,
                    dtype: QuantDtype::Int8,
                    granularity,
                    options: QParamsOptions {
                        quant_min: Some(-half),
                        quant_max: Some(half - 1.0),
                        zero_point_dtype: Some(Kind::Int8),
                        keepdim: true,
                        semantics: Semantics::Torchao0_18,
                        ..Default::default()
                    },
                }
            }
            Recipe::Custom(c) => c,
        }
    }

    /// The torchao release the recipe reproduces: 0.18 for the `...V2`
    /// variants and [`IntxWeightOnly`](Recipe::IntxWeightOnly), a custom
    /// recipe's `options.semantics`, 0.11 for the others.
    ///
    /// # Examples
    /// ```
    /// use tch_quant::{Recipe, Semantics};
    /// assert_eq!(Recipe::Float8WeightOnly.semantics(), Semantics::Torchao0_11);
    /// let v2 = Recipe::Float8WeightOnly.with_semantics(Semantics::Torchao0_18)?;
    /// assert_eq!(v2.semantics(), Semantics::Torchao0_18);
    /// # Ok::<(), tch_quant::Error>(())
    /// ```
    pub fn semantics(&self) -> Semantics {
        match self {
            Recipe::Int8WeightOnlyV2 { .. }
            | Recipe::Float8WeightOnlyV2 { .. }
            | Recipe::IntxWeightOnly { .. } => Semantics::Torchao0_18,
            Recipe::Custom(c) => c.options.semantics,
            _ => Semantics::Torchao0_11,
        }
    }

    /// The same config as `semantics`' torchao release defines it: under
    /// 0.18, `Int8WeightOnly { group_size }` becomes
    /// [`Int8WeightOnlyV2`](Recipe::Int8WeightOnlyV2) per row (per group for
    /// a group size), `Float8WeightOnly` becomes
    /// [`Float8WeightOnlyV2`](Recipe::Float8WeightOnlyV2) per row in
    /// float8_e4m3fn, a custom recipe gets `options.semantics`; under 0.11
    /// the reverse. A recipe already of that release is returned as it is.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `semantics`, naming the config and
    /// why: under 0.18, `Int4WeightOnly` (torchao 0.18's
    /// `Int4WeightOnlyConfig` has no CPU path: its plain and preshuffled
    /// formats need the `mslk` kernels, `plain_int32` is not implemented for
    /// CPU, `tile_packed_to_4d` needs CUDA) and `UIntXWeightOnly` (0.18 has
    /// no `UIntXWeightOnlyConfig`); under 0.11, a 0.18 recipe 0.11 has no
    /// config for (per-tensor int8, a float8 dtype or granularity other
    /// than e4m3fn per row, `IntxWeightOnly`).
    ///
    /// # Examples
    /// ```
    /// use tch_quant::{Granularity, Recipe, Semantics};
    /// let r = Recipe::Int8WeightOnly { group_size: None };
    /// assert_eq!(r.with_semantics(Semantics::Torchao0_18)?,
    ///            Recipe::Int8WeightOnlyV2 { granularity: Granularity::PerRow });
    /// let int4 = Recipe::Int4WeightOnly { group_size: 32, use_hqq: false };
    /// assert!(int4.with_semantics(Semantics::Torchao0_18).is_err());
    /// # Ok::<(), tch_quant::Error>(())
    /// ```
    pub fn with_semantics(&self, semantics: Semantics) -> Result<Recipe> {
        const OP: &str = "Recipe::with_semantics";
        if let Recipe::Custom(mut c) = *self {
            c.options.semantics = semantics;
            return Ok(Recipe::Custom(c));
        }
        if self.semantics() == semantics {
            return Ok(*self);
        }
        let refuse = |why: String| Err(Error::invalid(OP, "semantics", semantics, why));
        match (*self, semantics) {
            (Recipe::Int8WeightOnly { group_size }, Semantics::Torchao0_18) => {
                Ok(Recipe::Int8WeightOnlyV2 {
                    granularity: group_size.map_or(Granularity::PerRow, Granularity::PerGroup),
                })
            }
            (Recipe::Float8WeightOnly, Semantics::Torchao0_18) => Ok(Recipe::Float8WeightOnlyV2 {
                granularity: Granularity::PerRow,
                float8_dtype: QuantDtype::Float8E4M3Fn,
            }),
            (Recipe::Int4WeightOnly { .. }, Semantics::Torchao0_18) => refuse(
                "torchao 0.18's Int4WeightOnlyConfig does not run on CPU: its plain and \
                 preshuffled packing formats need the mslk kernels (\"Requires mslk >= 1.0.0\"), \
                 plain_int32 is not implemented for CPU and tile_packed_to_4d needs CUDA"
                    .into(),
            ),
            (Recipe::UIntXWeightOnly { .. }, Semantics::Torchao0_18) => refuse(
                "torchao 0.18 has no UIntXWeightOnlyConfig; IntxWeightOnlyConfig \
                 (Recipe::IntxWeightOnly) is its signed successor"
                    .into(),
            ),
            (Recipe::Int8WeightOnlyV2 { granularity }, Semantics::Torchao0_11) => match granularity
            {
                Granularity::PerRow => Ok(Recipe::Int8WeightOnly { group_size: None }),
                Granularity::PerGroup(g) => Ok(Recipe::Int8WeightOnly {
                    group_size: Some(g),
                }),
                other => refuse(format!(
                    "torchao 0.11's Int8WeightOnlyConfig has no {other:?} granularity"
                )),
            },
            (
                Recipe::Float8WeightOnlyV2 {
                    granularity: Granularity::PerRow,
                    float8_dtype: QuantDtype::Float8E4M3Fn,
                },
                Semantics::Torchao0_11,
            ) => Ok(Recipe::Float8WeightOnly),
            (other, _) => refuse(format!(
                "{other} has no torchao {} counterpart",
                semantics.torchao_version()
            )),
        }
    }

    /// Whether the recipe is torchao's `use_hqq=True` variant: the codes,
    /// scale and zero point come from half-quadratic optimisation
    /// ([`choose_qparams_and_quantize_affine_hqq`](crate::choose_qparams_and_quantize_affine_hqq))
    /// instead of `choose_qparams_affine`'s min/max.
    pub fn use_hqq(&self) -> bool {
        matches!(
            self,
            Recipe::Int4WeightOnly { use_hqq: true, .. }
                | Recipe::UIntXWeightOnly { use_hqq: true, .. }
        )
    }

    /// The same recipe without HQQ: the plain min/max one that
    /// [`use_hqq`](Self::use_hqq) improves on (itself when it has no HQQ).
    pub fn without_hqq(&self) -> Recipe {
        match *self {
            Recipe::Int4WeightOnly { group_size, .. } => Recipe::Int4WeightOnly {
                group_size,
                use_hqq: false,
            },
            Recipe::UIntXWeightOnly {
                bits, group_size, ..
            } => Recipe::UIntXWeightOnly {
                bits,
                group_size,
                use_hqq: false,
            },
            other => other,
        }
    }

    /// The mapping type.
    pub fn mapping_type(&self) -> MappingType {
        self.arguments().mapping
    }

    /// torchao's `target_dtype` (int32 for the int4 recipe, whose codes are
    /// nevertheless stored packed).
    pub fn target_dtype(&self) -> QuantDtype {
        self.arguments().dtype
    }

    /// The granularity.
    pub fn granularity(&self) -> Granularity {
        self.arguments().granularity
    }

    /// The options passed to `choose_qparams_affine`.
    pub fn qparams_options(&self) -> QParamsOptions {
        self.arguments().options
    }

    /// The quant range used: the options' overrides or the dtype's bounds.
    pub fn quant_range(&self) -> (f64, f64) {
        let c = self.arguments();
        let (lo, hi) = c.dtype.bounds();
        (
            c.options.quant_min.unwrap_or(lo),
            c.options.quant_max.unwrap_or(hi),
        )
    }

    /// The eps used for a weight of dtype `kind`: the recipe's, or the
    /// default of the recipe's release (`torch.finfo(kind).eps` in 0.11,
    /// `torch.finfo(kind).smallest_normal` in 0.18); 0 for
    /// [`Float8WeightOnlyV2`](Recipe::Float8WeightOnlyV2), which applies
    /// none.
    pub fn eps_for(&self, kind: Kind) -> f64 {
        if let Recipe::Float8WeightOnlyV2 { .. } = self {
            return 0.0;
        }
        self.qparams_options()
            .eps
            .unwrap_or_else(|| self.semantics().default_eps(kind))
    }

    /// Bits per code when the codes are stored packed along the last dim
    /// (`pack_uintx`): the int4 recipe's 4, `uint1..=uint7` codes' own width;
    /// `None` for codes stored as they are.
    pub fn packing(&self) -> Option<u32> {
        match self {
            Recipe::Int4WeightOnly { .. } => Some(4),
            _ => {
                let dtype = self.target_dtype();
                dtype.is_sub_byte_unsigned().then(|| dtype.bits())
            }
        }
    }

    /// Whether scale and zero point keep one column per group along the last
    /// dim, even when a group spans the whole row (the int4 recipe's
    /// `TensorCoreTiledLayout`).
    pub(crate) fn per_group_qparams(&self) -> bool {
        matches!(self, Recipe::Int4WeightOnly { .. })
    }

    /// Checks the recipe's own arguments, before any tensor is seen: group
    /// sizes and bit widths the config accepts, and for a custom recipe the
    /// combination of mapping, dtype and options (as `choose_qparams_affine`
    /// would check it for a float32 weight).
    ///
    /// # Examples
    /// ```
    /// use tch_quant::Recipe;
    /// assert!(Recipe::Int4WeightOnly { group_size: 48, use_hqq: false }.validate().is_err());
    /// assert!(Recipe::UIntXWeightOnly { bits: 9, group_size: 64, use_hqq: false }.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        const OP: &str = "Recipe::validate";
        let positive = |group: i64| {
            if group < 1 {
                return Err(Error::invalid(
                    OP,
                    "group_size",
                    group,
                    "must be at least 1",
                ));
            }
            Ok(())
        };
        match *self {
            Recipe::Int8WeightOnly { group_size } => group_size.map_or(Ok(()), positive)?,
            Recipe::Int4WeightOnly { group_size, .. } => {
                if !INT4_GROUP_SIZES.contains(&group_size) {
                    return Err(Error::invalid(
                        OP,
                        "group_size",
                        group_size,
                        "must be 32, 64, 128 or 256 for int4-weight-only (the tinygemm kernel's)",
                    ));
                }
            }
            Recipe::UIntXWeightOnly {
                bits, group_size, ..
            } => {
                if uint_of_bits(bits).is_none() {
                    return Err(Error::invalid(OP, "bits", bits, "must be 1 to 8"));
                }
                positive(group_size)?;
            }
            Recipe::Float8WeightOnly => {}
            Recipe::Int8WeightOnlyV2 { granularity } => {
                v2_granularity(OP, "Int8WeightOnlyConfig", granularity)?;
            }
            Recipe::Float8WeightOnlyV2 {
                granularity,
                float8_dtype,
            } => {
                v2_granularity(OP, "Float8WeightOnlyConfig", granularity)?;
                if !float8_dtype.is_float8() {
                    return Err(Error::invalid(
                        OP,
                        "float8_dtype",
                        float8_dtype,
                        "must be float8_e4m3fn, float8_e5m2, float8_e4m3fnuz or float8_e5m2fnuz",
                    ));
                }
            }
            Recipe::IntxWeightOnly {
                bits, granularity, ..
            } => {
                if !(1..=8).contains(&bits) {
                    return Err(Error::invalid(OP, "bits", bits, "must be 1 to 8"));
                }
                match granularity {
                    Granularity::PerAxis(0) => {}
                    Granularity::PerGroup(g) => positive(g)?,
                    other => {
                        return Err(Error::invalid(
                            OP,
                            "granularity",
                            format!("{other:?}"),
                            "IntxWeightOnlyConfig takes PerAxis(0) or PerGroup",
                        ))
                    }
                }
            }
            Recipe::Custom(c) => {
                if let Granularity::PerGroup(group) = c.granularity {
                    positive(group)?;
                }
                Plan::new(OP, c.mapping, c.dtype, &c.options, Kind::Float)?;
            }
        }
        Ok(())
    }

    /// The block size for a tensor of `shape` and dtype `kind`, or why the
    /// recipe does not apply to it; decided without touching any data, with
    /// the same rules the primitives apply (block sizes that divide, that
    /// reduce a dim, float input, a last dim packing can split).
    ///
    /// Options that do not fit the dtype (an eps beyond float16, say) are
    /// still refused by the quantization itself.
    ///
    /// # Examples
    /// ```
    /// use tch::Kind;
    /// use tch_quant::{Recipe, Unfit};
    /// let r = Recipe::UIntXWeightOnly { bits: 3, group_size: 64, use_hqq: false };
    /// assert_eq!(r.check(&[8, 128], Kind::Float), Ok(vec![1, 64]));
    /// assert!(matches!(r.check(&[8, 128], Kind::Int), Err(Unfit::Dtype(_))));
    /// assert!(matches!(r.check(&[8, 96], Kind::Float), Err(Unfit::NotDivided { .. })));
    /// ```
    pub fn check(&self, shape: &[i64], kind: Kind) -> std::result::Result<Vec<i64>, Unfit> {
        if !is_input_float(kind) {
            return Err(Unfit::Dtype(kind_name(kind).to_string()));
        }
        self.check_shape(shape)
    }

    /// [`check`](Self::check) for a tensor already known to be float.
    pub(crate) fn check_shape(&self, shape: &[i64]) -> std::result::Result<Vec<i64>, Unfit> {
        if shape.contains(&0) {
            return Err(Unfit::Empty(shape.to_vec()));
        }
        if matches!(self, Recipe::IntxWeightOnly { .. }) && shape.len() != 2 {
            return Err(Unfit::NoBlockSize(format!(
                "intx-weight-only takes 2-d weights; this one has {} dim(s)",
                shape.len()
            )));
        }
        let block_size = self
            .granularity()
            .block_size(shape)
            .map_err(|e| Unfit::NoBlockSize(e.to_string()))?;
        match check_block_size(&block_size, shape) {
            Ok(()) => {}
            Err(BlockRefusal::NoReduction) => return Err(Unfit::NoReduction { block_size }),
            Err(BlockRefusal::TooManyDims { dims }) => return Err(Unfit::TooManyDims { dims }),
            Err(_) => {
                return Err(Unfit::NotDivided {
                    shape: shape.to_vec(),
                    block_size,
                })
            }
        }
        if self.use_hqq() && shape.len() < 2 {
            return Err(Unfit::HqqRank(shape.len()));
        }
        if let Some(bits) = self.packing() {
            match shape.last() {
                Some(last) if last % 8 == 0 => {}
                last => {
                    return Err(Unfit::NotPackable {
                        last_dim: last.copied(),
                        bits,
                    })
                }
            }
        }
        Ok(block_size)
    }
}

impl fmt::Display for Recipe {
    /// The name and its arguments, e.g. `int4-weight-only (group_size=32)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        match *self {
            Recipe::Int8WeightOnly {
                group_size: Some(g),
            }
            | Recipe::Int4WeightOnly {
                group_size: g,
                use_hqq: false,
            } => write!(f, " (group_size={g})"),
            Recipe::Int4WeightOnly {
                group_size: g,
                use_hqq: true,
            } => write!(f, " (group_size={g}, use_hqq=True)"),
            Recipe::UIntXWeightOnly {
                bits,
                group_size,
                use_hqq,
            } => {
                write!(f, " (bits={bits}, group_size={group_size}")?;
                f.write_str(if use_hqq { ", use_hqq=True)" } else { ")" })
            }
            Recipe::Int8WeightOnlyV2 { granularity } => {
                write!(f, " (granularity={granularity:?})")
            }
            Recipe::Float8WeightOnlyV2 {
                granularity,
                float8_dtype,
            } => write!(
                f,
                " (weight_dtype={float8_dtype}, granularity={granularity:?})"
            ),
            Recipe::IntxWeightOnly {
                bits,
                granularity,
                mapping,
            } => write!(
                f,
                " (bits={bits}, granularity={granularity:?}, mapping={mapping})"
            ),
            Recipe::Custom(c) => write!(
                f,
                " (mapping={}, dtype={}, granularity={:?})",
                c.mapping, c.dtype, c.granularity
            ),
            _ => Ok(()),
        }
    }
}

/// The granularities torchao 0.18's `Int8WeightOnlyConfig` and
/// `Float8WeightOnlyConfig` accept: per tensor, per row, per group.
fn v2_granularity(op: &'static str, config: &str, granularity: Granularity) -> Result<()> {
    match granularity {
        Granularity::PerTensor | Granularity::PerRow => Ok(()),
        Granularity::PerGroup(g) if g >= 1 => Ok(()),
        Granularity::PerGroup(g) => Err(Error::invalid(op, "group_size", g, "must be at least 1")),
        other => Err(Error::invalid(
            op,
            "granularity",
            format!("{other:?}"),
            format!("{config} (version 2) takes PerTensor, PerRow or PerGroup"),
        )),
    }
}

/// `uint{bits}` for 1 to 8 bits.
fn uint_of_bits(bits: u32) -> Option<QuantDtype> {
    Some(match bits {
        1 => QuantDtype::UInt1,
        2 => QuantDtype::UInt2,
        3 => QuantDtype::UInt3,
        4 => QuantDtype::UInt4,
        5 => QuantDtype::UInt5,
        6 => QuantDtype::UInt6,
        7 => QuantDtype::UInt7,
        8 => QuantDtype::UInt8,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_match_torchao_arguments() {
        let int4 = Recipe::Int4WeightOnly {
            group_size: 32,
            use_hqq: false,
        };
        assert_eq!(int4.quant_range(), (0.0, 15.0));
        assert_eq!(int4.qparams_options().eps, Some(1e-6));
        assert!(!int4.qparams_options().preserve_zero);
        assert_eq!(int4.packing(), Some(4));
        assert!(Recipe::Int4WeightOnly {
            group_size: 48,
            use_hqq: false
        }
        .validate()
        .is_err());
        assert_eq!(Recipe::Float8WeightOnly.quant_range(), (-448.0, 448.0));
        assert_eq!(F32_EPS, 2f64.powi(-23));
        let uint = |bits| Recipe::UIntXWeightOnly {
            bits,
            group_size: 64,
            use_hqq: false,
        };
        assert_eq!(uint(8).packing(), None);
        assert_eq!(uint(3).packing(), Some(3));
        assert_eq!(uint(3).quant_range(), (0.0, 7.0));
        assert!(uint(9).validate().is_err());
        assert!(uint(0).validate().is_err());
    }

    #[test]
    fn semantics_map_presets_and_refuse_what_0_18_lacks() {
        let s18 = Semantics::Torchao0_18;
        let v2 = Recipe::Int8WeightOnly {
            group_size: Some(32),
        }
        .with_semantics(s18)
        .unwrap();
        assert_eq!(
            v2,
            Recipe::Int8WeightOnlyV2 {
                granularity: Granularity::PerGroup(32)
            }
        );
        assert_eq!(v2.semantics(), s18);
        assert_eq!(
            v2.with_semantics(Semantics::Torchao0_11).unwrap(),
            Recipe::Int8WeightOnly {
                group_size: Some(32)
            }
        );
        assert!(v2.qparams_options().keepdim);
        for old in [
            Recipe::Int4WeightOnly {
                group_size: 32,
                use_hqq: false,
            },
            Recipe::UIntXWeightOnly {
                bits: 4,
                group_size: 32,
                use_hqq: false,
            },
        ] {
            let err = old.with_semantics(s18).unwrap_err();
            assert!(
                matches!(err, Error::InvalidArgument { arg: "semantics", ref value, .. } if value == "0.18"),
                "{err}"
            );
        }
        let per_tensor = Recipe::Int8WeightOnlyV2 {
            granularity: Granularity::PerTensor,
        };
        assert!(per_tensor.with_semantics(Semantics::Torchao0_11).is_err());
        let intx = Recipe::IntxWeightOnly {
            bits: 4,
            granularity: Granularity::PerGroup(32),
            mapping: MappingType::Asymmetric,
        };
        assert_eq!(intx.quant_range(), (-8.0, 7.0));
        assert_eq!(intx.eps_for(Kind::Half), 2f64.powi(-14));
        assert!(matches!(
            intx.check(&[2, 4, 64], Kind::Float),
            Err(Unfit::NoBlockSize(_))
        ));
        let bad = [
            Recipe::IntxWeightOnly {
                bits: 9,
                granularity: Granularity::PerAxis(0),
                mapping: MappingType::Symmetric,
            },
            Recipe::IntxWeightOnly {
                bits: 4,
                granularity: Granularity::PerAxis(1),
                mapping: MappingType::Symmetric,
            },
            Recipe::Float8WeightOnlyV2 {
                granularity: Granularity::PerRow,
                float8_dtype: QuantDtype::Int8,
            },
            Recipe::Int8WeightOnlyV2 {
                granularity: Granularity::PerAxis(0),
            },
        ];
        for r in bad {
            assert!(r.validate().is_err(), "{r}");
        }
        assert_eq!(
            Recipe::Float8WeightOnlyV2 {
                granularity: Granularity::PerRow,
                float8_dtype: QuantDtype::Float8E5M2
            }
            .eps_for(Kind::Float),
            0.0
        );
    }

    #[test]
    fn checks_follow_the_block_rules() {
        let int8 = Recipe::Int8WeightOnly { group_size: None };
        assert_eq!(int8.check(&[8, 64], Kind::Float), Ok(vec![1, 64]));
        assert_eq!(
            int8.check(&[8, 0], Kind::Float),
            Err(Unfit::Empty(vec![8, 0]))
        );
        assert!(matches!(
            int8.check(&[], Kind::Float),
            Err(Unfit::NoBlockSize(_))
        ));
        let per_tensor = Recipe::Custom(CustomRecipe {
            mapping: MappingType::Asymmetric,
            dtype: QuantDtype::UInt8,
            granularity: Granularity::PerAxis(0),
            options: QParamsOptions::default(),
        });
        assert_eq!(
            per_tensor.check(&[8, 1], Kind::Float),
            Err(Unfit::NoReduction {
                block_size: vec![1, 1]
            })
        );
        let packed = Recipe::Custom(CustomRecipe {
            dtype: QuantDtype::UInt4,
            granularity: Granularity::PerTensor,
            ..match per_tensor {
                Recipe::Custom(c) => c,
                _ => unreachable!(),
            }
        });
        assert_eq!(
            packed.check(&[], Kind::Float),
            Err(Unfit::NotPackable {
                last_dim: None,
                bits: 4
            })
        );
        assert_eq!(
            packed.check(&[4, 12], Kind::Float),
            Err(Unfit::NotPackable {
                last_dim: Some(12),
                bits: 4
            })
        );
    }
}
