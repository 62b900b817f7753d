//! The quantized linear layers' schemes: one torchao 0.11 config each, the
//! weight recipe it quantizes with, and the checks that tell from a weight's
//! shape, dtype and device whether the config applies to it.
//!
//! The weight arguments transcribe `torchao/quantization/quant_api.py` at
//! v0.11.0: `_int8_weight_only_quantize_tensor`,
//! `_int4_weight_only_quantize_tensor` (whose zero point takes the weight's
//! dtype with `Int4CPULayout` and bfloat16 otherwise),
//! `_float8_weight_only_quant_tensor`, `_uintx_weight_only_transform` and
//! `_int8_dynamic_activation_int8_weight_quantize_tensor` (symmetric int8
//! per row, no zero point; activations through
//! `_int8_symm_per_token_reduced_range_quant`).

use std::fmt;
use std::str::FromStr;

use tch::{Device, Kind};

use crate::dtype::kind_name;
use crate::error::{Error, Result};
use crate::granularity::Granularity;
use crate::mapping::{MappingType, ZeroPointDomain};
use crate::qparams::QParamsOptions;
use crate::recipe::{CustomRecipe, Recipe, Unfit, INT4_GROUP_SIZES};
use crate::QuantDtype;

/// `torch.finfo(torch.float32).eps`, the eps of torchao's int8 recipes.
const F32_EPS: f64 = f32::EPSILON as f64;

/// The inner k tiles torchao's `TensorCoreTiledLayout` packs with by default.
pub const DEFAULT_INNER_K_TILES: i64 = 8;

/// How a [`QuantizedLinear`](crate::QuantizedLinear) stores its weight and
/// computes: one torchao 0.11 config, on the layout that runs it.
///
/// | scheme | torchao 0.11 | device | weight stored as | forward |
/// | --- | --- | --- | --- | --- |
/// | [`Int8WeightOnly`](Self::Int8WeightOnly) | `Int8WeightOnlyConfig()` | any | int8 `[N, K]`, one scale per row | `mm(x, w.t().to(x.dtype)) * scale` |
/// | [`Int4Cpu`](Self::Int4Cpu) | `Int4WeightOnlyConfig(g, layout=Int4CPULayout())` | CPU | `_convert_weight_to_int4pack_for_cpu`, scale-and-zero | `_weight_int4pack_mm_for_cpu` |
/// | [`Int4TensorCoreTiled`](Self::Int4TensorCoreTiled) | `Int4WeightOnlyConfig(g)` | CUDA | `_convert_weight_to_int4pack` (padded), scale-and-zero | `_weight_int4pack_mm` |
/// | [`Float8WeightOnly`](Self::Float8WeightOnly) | `Float8WeightOnlyConfig()` | any | float8_e4m3fn, one scale per row | `linear(x, dequantized w)` |
/// | [`Int8DynamicActivationInt8Weight`](Self::Int8DynamicActivationInt8Weight) | `Int8DynamicActivationInt8WeightConfig()` | any | int8 `[N, K]`, one scale per row | `x` quantized per token, `_int_mm`, rescaled |
/// | [`UIntXWeightOnly`](Self::UIntXWeightOnly) | `UIntXWeightOnlyConfig(uint{bits}, g)` | any | packed `uint{bits}` codes, scale and zero point per group | `linear(x, dequantized w)` |
///
/// # Examples
/// ```
/// use tch_quant::LinearScheme;
/// let s: LinearScheme = "int4-cpu-g32".parse()?;
/// assert_eq!(s, LinearScheme::Int4Cpu { group_size: 32 });
/// assert_eq!(s.torchao_config(), "Int4WeightOnlyConfig(group_size=32, layout=Int4CPULayout())");
/// assert_eq!(s.name(), "int4-cpu-g32");
/// # Ok::<(), tch_quant::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinearScheme {
    /// `Int8WeightOnlyConfig()`: symmetric int8 per output row.
    Int8WeightOnly,
    /// `Int4WeightOnlyConfig(group_size, layout=Int4CPULayout())`: tinygemm
    /// int4 on CPU (`_weight_int4pack_mm_for_cpu`).
    Int4Cpu {
        /// 32, 64, 128 or 256.
        group_size: i64,
    },
    /// `Int4WeightOnlyConfig(group_size)` with its default
    /// `TensorCoreTiledLayout(inner_k_tiles)`: tinygemm int4 on CUDA
    /// (`_weight_int4pack_mm`), bfloat16 weights only.
    Int4TensorCoreTiled {
        /// 32, 64, 128 or 256.
        group_size: i64,
        /// 2, 4 or 8 ([`DEFAULT_INNER_K_TILES`] is torchao's default).
        inner_k_tiles: i64,
    },
    /// `Float8WeightOnlyConfig()`: float8_e4m3fn per output row.
    Float8WeightOnly,
    /// `Int8DynamicActivationInt8WeightConfig()`: int8 weights per row and
    /// int8 activations per token, quantized at every call.
    Int8DynamicActivationInt8Weight,
    /// `UIntXWeightOnlyConfig(dtype=torch.uint{bits}, group_size)`:
    /// asymmetric `uint{bits}` per group, packed below 8 bits.
    UIntXWeightOnly {
        /// 1 to 7.
        bits: u32,
        /// Elements per group along the input features.
        group_size: i64,
    },
}

impl LinearScheme {
    /// Every scheme's spelling for [`FromStr`], with its arguments:
    /// `int8-weight-only`, `int4-cpu-g32`, `int4-tensor-core-tiled-g128`
    /// (`-k4` for inner k tiles other than 8), `float8-weight-only`,
    /// `int8-dynamic`, `uint4-g64`.
    pub fn name(&self) -> String {
        match *self {
            LinearScheme::Int8WeightOnly => "int8-weight-only".into(),
            LinearScheme::Int4Cpu { group_size } => format!("int4-cpu-g{group_size}"),
            LinearScheme::Int4TensorCoreTiled {
                group_size,
                inner_k_tiles,
            } => {
                if inner_k_tiles == DEFAULT_INNER_K_TILES {
                    format!("int4-tensor-core-tiled-g{group_size}")
                } else {
                    format!("int4-tensor-core-tiled-g{group_size}-k{inner_k_tiles}")
                }
            }
            LinearScheme::Float8WeightOnly => "float8-weight-only".into(),
            LinearScheme::Int8DynamicActivationInt8Weight => "int8-dynamic".into(),
            LinearScheme::UIntXWeightOnly { bits, group_size } => {
                format!("uint{bits}-g{group_size}")
            }
        }
    }

    /// The torchao 0.11 config this scheme reproduces, as a Python
    /// expression (`from torchao.quantization import *`,
    /// `from torchao.dtypes import Int4CPULayout, TensorCoreTiledLayout`).
    pub fn torchao_config(&self) -> String {
        match *self {
            LinearScheme::Int8WeightOnly => "Int8WeightOnlyConfig()".into(),
            LinearScheme::Int4Cpu { group_size } => {
                format!("Int4WeightOnlyConfig(group_size={group_size}, layout=Int4CPULayout())")
            }
            LinearScheme::Int4TensorCoreTiled {
                group_size,
                inner_k_tiles,
            } => format!(
                "Int4WeightOnlyConfig(group_size={group_size}, \
                 layout=TensorCoreTiledLayout(inner_k_tiles={inner_k_tiles}))"
            ),
            LinearScheme::Float8WeightOnly => "Float8WeightOnlyConfig()".into(),
            LinearScheme::Int8DynamicActivationInt8Weight => {
                "Int8DynamicActivationInt8WeightConfig()".into()
            }
            LinearScheme::UIntXWeightOnly { bits, group_size } => {
                format!("UIntXWeightOnlyConfig(dtype=torch.uint{bits}, group_size={group_size})")
            }
        }
    }

    /// Checks the scheme's own arguments: group sizes the kernels take, bit
    /// widths, inner k tiles.
    ///
    /// # Examples
    /// ```
    /// use tch_quant::LinearScheme;
    /// assert!(LinearScheme::Int4Cpu { group_size: 48 }.validate().is_err());
    /// assert!(LinearScheme::UIntXWeightOnly { bits: 4, group_size: 64 }.validate().is_ok());
    /// ```
    pub fn validate(&self) -> Result<()> {
        const OP: &str = "LinearScheme::validate";
        match *self {
            LinearScheme::Int4Cpu { group_size }
            | LinearScheme::Int4TensorCoreTiled { group_size, .. }
                if !INT4_GROUP_SIZES.contains(&group_size) =>
            {
                Err(Error::invalid(
                    OP,
                    "group_size",
                    group_size,
                    "must be 32, 64, 128 or 256 (the tinygemm int4 kernels')",
                ))
            }
            LinearScheme::Int4TensorCoreTiled { inner_k_tiles, .. }
                if ![2, 4, 8].contains(&inner_k_tiles) =>
            {
                Err(Error::invalid(
                    OP,
                    "inner_k_tiles",
                    inner_k_tiles,
                    "must be 2, 4 or 8 (`_convert_weight_to_int4pack`'s)",
                ))
            }
            // torchao's `UintxLayout` packs uint1 to uint7; uint8 fails an
            // assertion in `UIntXWeightOnlyConfig`.
            LinearScheme::UIntXWeightOnly { bits, .. } if !(1..=7).contains(&bits) => {
                Err(Error::invalid(
                    OP,
                    "bits",
                    bits,
                    "must be 1 to 7 (torchao's UintxLayout packs \
                 uint1 to uint7)",
                ))
            }
            LinearScheme::UIntXWeightOnly { bits, group_size } => Recipe::UIntXWeightOnly {
                bits,
                group_size,
                use_hqq: false,
            }
            .validate(),
            _ => Ok(()),
        }
    }

    /// The recipe the weight is quantized with, for a weight of dtype
    /// `kind` (the `Int4CPULayout` zero point takes the weight's dtype).
    pub(crate) fn weight_recipe(&self, kind: Kind) -> Recipe {
        match *self {
            LinearScheme::Int8WeightOnly => Recipe::Int8WeightOnly { group_size: None },
            LinearScheme::Int4Cpu { group_size } => Recipe::Custom(CustomRecipe {
                options: QParamsOptions {
                    zero_point_dtype: Some(kind),
                    ..Recipe::Int4WeightOnly {
                        group_size,
                        use_hqq: false,
                    }
                    .qparams_options()
                },
                ..Recipe::Int4WeightOnly {
                    group_size,
                    use_hqq: false,
                }
                .arguments()
            }),
            // Quantized on the padded weight, where codes stay plain int32
            // until the kernel's own packing.
            LinearScheme::Int4TensorCoreTiled { group_size, .. } => Recipe::Custom(
                Recipe::Int4WeightOnly {
                    group_size,
                    use_hqq: false,
                }
                .arguments(),
            ),
            LinearScheme::Float8WeightOnly => Recipe::Float8WeightOnly,
            LinearScheme::Int8DynamicActivationInt8Weight => Recipe::Custom(CustomRecipe {
                mapping: MappingType::Symmetric,
                dtype: QuantDtype::Int8,
                granularity: Granularity::PerRow,
                options: QParamsOptions {
                    eps: Some(F32_EPS),
                    zero_point_dtype: Some(Kind::Int64),
                    zero_point_domain: ZeroPointDomain::None,
                    ..Default::default()
                },
            }),
            LinearScheme::UIntXWeightOnly { bits, group_size } => Recipe::UIntXWeightOnly {
                bits,
                group_size,
                use_hqq: false,
            },
        }
    }

    /// Why the scheme does not apply to a linear weight of `shape`, dtype
    /// `kind` on `device`, or `None` when it does. torchao's `quantize_`
    /// leaves such a layer dense without a word; the crate says why.
    pub fn check(&self, shape: &[i64], kind: Kind, device: Device) -> Option<Unfit> {
        let linear = |why: String| Some(Unfit::Linear(why));
        let &[out_features, in_features] = shape else {
            return linear(format!(
                "a linear weight is [out_features, in_features], got rank {}",
                shape.len()
            ));
        };
        if let Err(unfit) = self.weight_recipe(kind).check(shape, kind) {
            return Some(unfit);
        }
        match *self {
            LinearScheme::Int4Cpu { .. } if device != Device::Cpu => linear(format!(
                "Int4CPULayout runs on the CPU only, the weight is on {device:?}"
            )),
            LinearScheme::Int4TensorCoreTiled { .. } if !device.is_cuda() => linear(format!(
                "TensorCoreTiledLayout runs on CUDA only, the weight is on {device:?}"
            )),
            LinearScheme::Int4TensorCoreTiled { .. } if kind != Kind::BFloat16 => linear(format!(
                "TensorCoreTiledLayout takes bfloat16 weights (its scale and zero point are \
                 packed together in bfloat16), got {}",
                kind_name(kind)
            )),
            LinearScheme::Int8DynamicActivationInt8Weight if in_features <= 16 => linear(format!(
                "int8 dynamic quantization needs in_features > 16 (torchao leaves smaller \
                 layers dense), got {in_features}"
            )),
            _ if out_features < 1 => linear("out_features is 0".into()),
            _ => None,
        }
    }
}

impl LinearScheme {
    /// [`check`](Self::check) of `weight` as the error `op` returns: an
    /// [`Error::InvalidArgument`] for `weight` that names the scheme and
    /// why it does not apply.
    pub(crate) fn refuse_unfit(&self, op: &'static str, weight: &tch::Tensor) -> Result<()> {
        let shape = weight.size();
        match self.check(&shape, weight.kind(), weight.device()) {
            Some(unfit) => Err(Error::invalid(
                op,
                "weight",
                format!("{shape:?}"),
                format!("{self} does not apply: {unfit}"),
            )),
            None => Ok(()),
        }
    }
}

impl fmt::Display for LinearScheme {
    /// The name, e.g. `int4-cpu-g32`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for LinearScheme {
    type Err = Error;

    /// Parses [`name`](LinearScheme::name)'s spellings and validates them.
    fn from_str(s: &str) -> Result<Self> {
        let refuse = || {
            Error::invalid(
                "LinearScheme::from_str",
                "s",
                format!("{s:?}"),
                "expected int8-weight-only, int4-cpu-g<G>, int4-tensor-core-tiled-g<G>[-k<T>], \
                 float8-weight-only, int8-dynamic or uint<B>-g<G>",
            )
        };
        let number = |t: &str| t.parse::<i64>().map_err(|_| refuse());
        let scheme = match s {
            "int8-weight-only" => LinearScheme::Int8WeightOnly,
            "float8-weight-only" => LinearScheme::Float8WeightOnly,
            "int8-dynamic" => LinearScheme::Int8DynamicActivationInt8Weight,
            _ => {
                if let Some(g) = s.strip_prefix("int4-cpu-g") {
                    LinearScheme::Int4Cpu {
                        group_size: number(g)?,
                    }
                } else if let Some(rest) = s.strip_prefix("int4-tensor-core-tiled-g") {
                    let (g, k) = match rest.split_once("-k") {
                        Some((g, k)) => (number(g)?, number(k)?),
                        None => (number(rest)?, DEFAULT_INNER_K_TILES),
                    };
                    LinearScheme::Int4TensorCoreTiled {
                        group_size: g,
                        inner_k_tiles: k,
                    }
                } else if let Some((bits, g)) =
                    s.strip_prefix("uint").and_then(|r| r.split_once("-g"))
                {
                    LinearScheme::UIntXWeightOnly {
                        bits: bits.parse().map_err(|_| refuse())?,
                        group_size: number(g)?,
                    }
                } else {
                    return Err(refuse());
                }
            }
        };
        scheme.validate()?;
        Ok(scheme)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in [
            LinearScheme::Int8WeightOnly,
            LinearScheme::Int4Cpu { group_size: 128 },
            LinearScheme::Int4TensorCoreTiled {
                group_size: 32,
                inner_k_tiles: 8,
            },
            LinearScheme::Int4TensorCoreTiled {
                group_size: 64,
                inner_k_tiles: 2,
            },
            LinearScheme::Float8WeightOnly,
            LinearScheme::Int8DynamicActivationInt8Weight,
            LinearScheme::UIntXWeightOnly {
                bits: 3,
                group_size: 32,
            },
        ] {
            assert_eq!(s.name().parse::<LinearScheme>().unwrap(), s);
        }
        for bad in [
            "int4-cpu-g48",
            "uint8-g32",
            "uint9-g32",
            "int4",
            "int4-tensor-core-tiled-g32-k3",
        ] {
            assert!(bad.parse::<LinearScheme>().is_err(), "{bad}");
        }
    }

    #[test]
    fn checks_follow_torchao_skips() {
        let cpu = Device::Cpu;
        let dynamic = LinearScheme::Int8DynamicActivationInt8Weight;
        assert!(dynamic.check(&[32, 16], Kind::Float, cpu).is_some());
        assert!(dynamic.check(&[32, 17], Kind::Float, cpu).is_none());
        let int4 = LinearScheme::Int4Cpu { group_size: 32 };
        assert!(int4.check(&[8, 48], Kind::BFloat16, cpu).is_some());
        assert!(int4.check(&[8, 64], Kind::BFloat16, cpu).is_none());
        assert!(int4.check(&[2, 8, 64], Kind::BFloat16, cpu).is_some());
        let tiled = LinearScheme::Int4TensorCoreTiled {
            group_size: 32,
            inner_k_tiles: 8,
        };
        assert!(tiled.check(&[8, 64], Kind::BFloat16, cpu).is_some());
    }
}
