//! Which compressed-tensors scheme stores a recipe's quantized weights
//! exactly, and the `quantization_config` that says so (read from
//! compressed-tensors 0.20.0: `quantization/quant_args.py`,
//! `quant_scheme.py`, `quant_config.py`, `lifecycle/forward.py`,
//! `lifecycle/initialize.py`, `compressors/`).
//!
//! compressed-tensors dequantizes every integer scheme as
//! `(q' - zp') * scale` in the scale's dtype, `q'` and `zp'` signed
//! `num_bits`-bit integers (`-2^(b-1)..2^(b-1)`, `calculate_range`), `zp'`
//! absent when `symmetric`. torchao dequantizes its Int-domain codes as
//! `(q - zp) * scale`. So a recipe maps exactly when its codes are `b`-bit
//! integers over the whole range of `b` bits and its zero point is an
//! integer: compressed-tensors then stores `q' = q - o` and `zp' = zp - o`
//! with `o = 2^(b-1)` for unsigned codes and `0` for signed ones, and
//! `q' - zp' = q - zp`. Where the zero point is the same for every block
//! (torchao's symmetric mappings: `int((qmin + qmax + 1) / 2)`, `o` itself
//! over the whole range; or no zero point with signed codes), it is
//! `symmetric: true` and no zero point is stored.
//!
//! | recipe | format | weights args | stored |
//! |---|---|---|---|
//! | `uintx-weight-only` (uint*b*, group *g*); custom asymmetric `uint`*b*/`int`*b* per group | `pack-quantized` | int *b*, asymmetric, `block` `[1, g]` (or `group` *g*) | `weight_packed`, `weight_scale`, `weight_zero_point`, `weight_shape` |
//! | custom symmetric `int`*b*/`uint`*b*, *b* < 8, per group / channel / tensor | `pack-quantized` | int *b*, symmetric, `group` *g* / `channel` / `tensor` | `weight_packed`, `weight_scale`, `weight_shape` |
//! | `int8-weight-only` (per row or group *g*); custom symmetric `int8`/`uint8` | `int-quantized` | int 8, symmetric, `channel` (or `group` *g*, `tensor`) | `weight` int8, `weight_scale` |
//! | `float8-weight-only` | `float-quantized` | float 8, symmetric, `channel` | `weight` float8_e4m3fn, `weight_scale` |
//!
//! Refused, by [`CtScheme::for_recipe`]: `int4-weight-only` (tinygemm) and
//! every recipe with a float zero point; narrowed quant ranges; scale
//! dtypes other than the weight's; codes of more than 8 bits; custom
//! float8; one scale per column; an asymmetric recipe per channel in the
//! block layout.

use serde_json::{json, Value};
use tch::Kind;

use crate::error::{Error, Result};
use crate::granularity::Granularity;
use crate::mapping::{MappingType, ZeroPointDomain};
use crate::recipe::{CustomRecipe, Recipe};

/// The compressed-tensors release whose format this writes.
pub const COMPRESSED_TENSORS_VERSION: &str = "0.20.0";

/// How an asymmetric (zero point) scheme is laid out.
///
/// compressed-tensors 0.20.0 writes asymmetric `group` and `channel`
/// weights with their zero points packed along dim 0
/// (`PackedQuantizationCompressor.compress`, the layout vLLM's WNA16
/// kernels read), but its loading path in transformers (`compress_model`
/// on the meta device) keeps the zero point unpacked, so transformers
/// refuses such a checkpoint with a size mismatch. The `block` strategy
/// with `[1, group]` blocks describes the same quantization (one scale and
/// zero point per row and group of columns, the same dequantization) with
/// the zero point stored unpacked as int8, which both compressed-tensors
/// and transformers load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AsymmetricLayout {
    /// `strategy: block`, `block_structure: [1, group]`, zero point int8
    /// `[rows, groups]`: loads in compressed-tensors and transformers.
    #[default]
    Block,
    /// `strategy: group` (or `channel`), zero point packed along dim 0 as
    /// compressed-tensors' own compressor writes it (int32
    /// `[ceil(rows*bits/32), groups]`).
    Group,
}

impl AsymmetricLayout {
    /// `block` or `group`.
    pub fn name(self) -> &'static str {
        match self {
            AsymmetricLayout::Block => "block",
            AsymmetricLayout::Group => "group",
        }
    }
}

/// Which weights of a 2-D weight share a scale: compressed-tensors'
/// `strategy`, and the shape of the stored scale (`initialize.py`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtStrategy {
    /// `tensor`: one scale, stored as `[1]`.
    Tensor,
    /// `channel`: one per row (output channel), `[rows, 1]`.
    Channel,
    /// `group`: one per row and group of this many columns, `[rows, cols / g]`.
    Group(i64),
}

impl CtStrategy {
    /// compressed-tensors' name: `tensor`, `channel` or `group`.
    pub fn name(self) -> &'static str {
        match self {
            CtStrategy::Tensor => "tensor",
            CtStrategy::Channel => "channel",
            CtStrategy::Group(_) => "group",
        }
    }

    /// Whether the scales (and zero points) of each row depend on that row
    /// alone, so that rows can be quantized and stored in pieces.
    pub fn is_per_row(self) -> bool {
        !matches!(self, CtStrategy::Tensor)
    }
}

/// The compressed-tensors storage of one recipe.
///
/// `offset` is what compressed-tensors' signed codes differ from torchao's
/// by: `q' = q - offset` (and `zp' = zp - offset`), `2^(bits-1)` for
/// unsigned codes, `0` for signed ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtScheme {
    /// `pack-quantized`, asymmetric: codes packed into int32, a zero point
    /// per scale.
    PackedAsymmetric {
        /// Bits per code, 1 to 8.
        bits: u32,
        /// Which weights share a scale and zero point.
        strategy: CtStrategy,
        /// How the zero point is laid out.
        layout: AsymmetricLayout,
        /// `q - q'`.
        offset: i64,
    },
    /// `pack-quantized`, symmetric (W*b*A16): codes packed into int32, no
    /// zero point.
    PackedSymmetric {
        /// Bits per code, 1 to 7.
        bits: u32,
        /// Which weights share a scale.
        strategy: CtStrategy,
        /// `q - q'`.
        offset: i64,
    },
    /// `int-quantized`, symmetric int8: codes as int8 `weight`.
    Int8 {
        /// Which weights share a scale.
        strategy: CtStrategy,
        /// `q - q'`: 128 for uint8 codes.
        offset: i64,
    },
    /// `float-quantized`, float8_e4m3fn per row.
    Float8,
}

impl CtScheme {
    /// The scheme that stores `recipe`'s quantization exactly.
    ///
    /// # Errors
    /// `int4-weight-only` and any recipe with a float zero point
    /// (`zero_point_domain` float): torchao's tinygemm recipe dequantizes as
    /// `(q - 8) * scale + zero_point` with a bfloat16 zero point in the
    /// float domain (`preserve_zero = false`); compressed-tensors' only
    /// dequantization is `(q - zero_point) * scale` with an integer zero
    /// point (`_dequantize` in `quantization/lifecycle/forward_helpers.py`),
    /// and `zero_point / scale` is not an integer in general, so no
    /// compressed-tensors scheme gives the same weights.
    ///
    /// A custom recipe, when it is not storable as it is (each reason is
    /// in the message): float8 codes (use `float8-weight-only`); codes of
    /// more than 8 bits; a quant range narrower than its dtype's (the
    /// config states only `num_bits`, so compressed-tensors would assume
    /// the whole range); a scale dtype given (compressed-tensors keeps the
    /// scale in the weight's dtype); one scale per column (`per-axis` other
    /// than 0); unsigned codes without a zero point (`q * scale` with
    /// `q >= 0` is no signed code); a zero point dtype that cannot hold
    /// the zero points; an asymmetric recipe per channel in the
    /// [`AsymmetricLayout::Block`] layout (its block would be the row's
    /// width, which differs from weight to weight).
    pub fn for_recipe(recipe: &Recipe, layout: AsymmetricLayout) -> Result<CtScheme> {
        recipe.validate()?;
        match *recipe {
            Recipe::UIntXWeightOnly { use_hqq: true, .. } => Err(refusal(
                recipe.to_string(),
                "has no compressed-tensors equivalent: HQQ's zero point is a float (torchao's \
                 float domain), and compressed-tensors stores only integer zero points",
            )),
            Recipe::UIntXWeightOnly {
                bits, group_size, ..
            } => Ok(CtScheme::PackedAsymmetric {
                bits,
                strategy: CtStrategy::Group(group_size),
                layout,
                offset: 1 << (bits - 1),
            }),
            Recipe::Int8WeightOnly { group_size } => Ok(CtScheme::Int8 {
                strategy: group_size.map_or(CtStrategy::Channel, CtStrategy::Group),
                offset: 0,
            }),
            Recipe::Float8WeightOnly => Ok(CtScheme::Float8),
            Recipe::Int4WeightOnly { group_size, .. } => Err(refusal(
                format!("int4-weight-only (group size {group_size})"),
                "torchao's tinygemm int4 recipe dequantizes as (q - 8) * scale + zero_point with \
                 a float zero point; compressed-tensors only has (q - zero_point) * scale with an \
                 integer zero point, so no compressed-tensors scheme stores it exactly (use \
                 uintx-weight-only --bits 4, or a custom symmetric int4 recipe: both map exactly)",
            )),
            Recipe::Int8WeightOnlyV2 { .. }
            | Recipe::Float8WeightOnlyV2 { .. }
            | Recipe::IntxWeightOnly { .. } => Err(refusal(
                recipe.to_string(),
                "is a torchao 0.18 recipe; the compressed-tensors export maps torchao 0.11's \
                 recipes (quantize with --semantics 0.11)",
            )),
            Recipe::Custom(c) => Self::for_custom(recipe, &c, layout),
        }
    }

    fn for_custom(recipe: &Recipe, c: &CustomRecipe, layout: AsymmetricLayout) -> Result<CtScheme> {
        let refuse = |why: String| Err(refusal(recipe.to_string(), why));
        let dtype = c.dtype;
        if dtype.is_float8() {
            return refuse(format!(
                "custom {} recipes are not mapped: compressed-tensors' float-quantized is \
                 float8_e4m3fn with a scale per channel, which --scheme float8-weight-only \
                 exports",
                dtype.name()
            ));
        }
        let bits = dtype.bits();
        if bits > 8 {
            return refuse(format!(
                "{} codes have {bits} bits; the compressed-tensors formats exported hold at most \
                 8 (pack-quantized 1 to 8, int-quantized int8)",
                dtype.name()
            ));
        }
        let (lo, hi) = recipe.quant_range();
        if (lo, hi) != dtype.bounds() {
            let (dlo, dhi) = dtype.bounds();
            return refuse(format!(
                "quant range {lo}..={hi} is narrower than {}'s {dlo}..={dhi}; a \
                 compressed-tensors config states only num_bits = {bits}, so its quantization \
                 would use the whole {bits}-bit range",
                dtype.name()
            ));
        }
        if let Some(kind) = c.options.scale_dtype {
            return refuse(format!(
                "scale dtype {kind:?} is given; compressed-tensors allocates weight_scale in the \
                 weight's dtype (lifecycle/initialize.py) and dequantizes in the scale's, so \
                 leave the scale in the weight's dtype"
            ));
        }
        let strategy = match c.granularity {
            Granularity::PerTensor => CtStrategy::Tensor,
            Granularity::PerRow | Granularity::PerToken | Granularity::PerAxis(0 | -2) => {
                CtStrategy::Channel
            }
            Granularity::PerGroup(g) => CtStrategy::Group(g),
            Granularity::PerAxis(axis) => {
                return refuse(format!(
                    "one scale per index of axis {axis}: of a 2-D weight, compressed-tensors \
                     has scales per row (channel, per-axis:0) but none per column"
                ))
            }
        };
        let unsigned = lo == 0.0;
        let offset = if unsigned { 1i64 << (bits - 1) } else { 0 };
        let no_signed_codes = || {
            refuse(format!(
                "unsigned {} codes without a zero point dequantize as q * scale with q >= 0; \
                 compressed-tensors' codes are signed (use a signed dtype, or a zero point)",
                dtype.name()
            ))
        };
        let zp_kind = c.options.zero_point_dtype;
        let symmetric = match (c.mapping, c.options.zero_point_domain) {
            (_, ZeroPointDomain::Float) => {
                return refuse(
                    "a float zero point (zero_point_domain float) dequantizes as (q - mid) * \
                     scale + zero_point; compressed-tensors only has (q - zero_point) * scale \
                     with an integer zero point"
                        .into(),
                )
            }
            (_, ZeroPointDomain::None) if unsigned => return no_signed_codes(),
            (_, ZeroPointDomain::None) => true,
            // torchao's zero point is int((qmin + qmax + 1) / 2) for every
            // block: the offset itself over the whole range.
            (MappingType::Symmetric | MappingType::SymmetricNoClippingErr, _) => {
                if !zp_kind.is_none_or(|k| holds(k, offset, offset)) {
                    return refuse(format!(
                        "zero point dtype {zp_kind:?} cannot hold the zero point {offset}"
                    ));
                }
                true
            }
            (MappingType::Asymmetric, _) => {
                if !zp_kind.is_none_or(|k| holds(k, lo as i64, hi as i64)) {
                    return refuse(format!(
                        "zero point dtype {zp_kind:?} cannot hold every zero point {lo}..={hi}"
                    ));
                }
                false
            }
        };
        Ok(match (symmetric, bits) {
            (true, 8) => CtScheme::Int8 { strategy, offset },
            (true, _) => CtScheme::PackedSymmetric {
                bits,
                strategy,
                offset,
            },
            (false, _) => {
                if strategy == CtStrategy::Channel && layout == AsymmetricLayout::Block {
                    return refuse(
                        "an asymmetric recipe per channel has no block layout (its block would \
                         be each weight's row); compressed-tensors' channel strategy packs the \
                         zero point along dim 0, which transformers 5.24 cannot load: pass \
                         --ct-asymmetric group for that layout, or use per-group"
                            .into(),
                    );
                }
                CtScheme::PackedAsymmetric {
                    bits,
                    strategy,
                    layout,
                    offset,
                }
            }
        })
    }

    /// The `format` it is stored in.
    pub fn format(&self) -> &'static str {
        match self {
            CtScheme::PackedAsymmetric { .. } | CtScheme::PackedSymmetric { .. } => {
                "pack-quantized"
            }
            CtScheme::Int8 { .. } => "int-quantized",
            CtScheme::Float8 => "float-quantized",
        }
    }

    /// Which weights share a scale.
    pub fn strategy(&self) -> CtStrategy {
        match *self {
            CtScheme::PackedAsymmetric { strategy, .. }
            | CtScheme::PackedSymmetric { strategy, .. }
            | CtScheme::Int8 { strategy, .. } => strategy,
            CtScheme::Float8 => CtStrategy::Channel,
        }
    }

    /// `QuantizationArgs` of the weights, as JSON.
    pub fn weights_args(&self) -> Value {
        let int = |bits: u32, symmetric: bool| json!({"num_bits": bits, "type": "int", "symmetric": symmetric});
        let mut args = match *self {
            CtScheme::PackedAsymmetric {
                bits,
                strategy,
                layout,
                ..
            } => {
                let mut a = int(bits, false);
                match (strategy, layout) {
                    (CtStrategy::Group(g), AsymmetricLayout::Block) => {
                        a["strategy"] = json!("block");
                        a["block_structure"] = json!([1, g]);
                        a["group_size"] = Value::Null;
                    }
                    _ => set_strategy(&mut a, strategy),
                }
                a
            }
            CtScheme::PackedSymmetric { bits, strategy, .. } => {
                let mut a = int(bits, true);
                set_strategy(&mut a, strategy);
                a
            }
            CtScheme::Int8 { strategy, .. } => {
                let mut a = int(8, true);
                set_strategy(&mut a, strategy);
                a
            }
            CtScheme::Float8 => json!({"num_bits": 8, "type": "float", "symmetric": true,
                                        "strategy": "channel", "group_size": null}),
        };
        args["dynamic"] = json!(false);
        args["observer"] = json!("minmax");
        args["actorder"] = Value::Null;
        args
    }

    /// The `quantization_config` of a model whose `Linear` layers are
    /// quantized with this scheme, but for the modules in `ignore`.
    pub fn quantization_config(&self, ignore: &[String]) -> Value {
        json!({
            "quant_method": "compressed-tensors",
            "format": self.format(),
            "quantization_status": "compressed",
            "version": COMPRESSED_TENSORS_VERSION,
            "config_groups": {
                "group_0": {
                    "targets": ["Linear"],
                    "weights": self.weights_args(),
                    "input_activations": null,
                    "output_activations": null,
                    "format": self.format(),
                }
            },
            "ignore": ignore,
            "kv_cache_scheme": null,
            "sparsity_config": {},
            "transform_config": {},
            "global_compression_ratio": null,
        })
    }
}

/// `strategy` and `group_size` of `args`.
fn set_strategy(args: &mut Value, strategy: CtStrategy) {
    args["strategy"] = json!(strategy.name());
    args["group_size"] = match strategy {
        CtStrategy::Group(g) => json!(g),
        _ => Value::Null,
    };
}

/// The error of a recipe no compressed-tensors scheme stores exactly.
fn refusal(recipe: String, why: impl Into<String>) -> Error {
    Error::invalid(
        "compressed_tensors::CtScheme::for_recipe",
        "recipe",
        recipe,
        why.into(),
    )
}

/// Whether a zero point of dtype `kind` holds every integer in `lo..=hi`
/// exactly (torchao casts its zero points to that dtype).
fn holds(kind: Kind, lo: i64, hi: i64) -> bool {
    let (min, max): (i64, i64) = match kind {
        Kind::Uint8 => (0, 255),
        Kind::Int8 => (-128, 127),
        Kind::Int16 => (i16::MIN.into(), i16::MAX.into()),
        Kind::Int | Kind::Int64 => (i32::MIN.into(), i32::MAX.into()),
        Kind::BFloat16 => (-256, 256),
        Kind::Half => (-2048, 2048),
        Kind::Float | Kind::Double => (-(1 << 24), 1 << 24),
        _ => return false,
    };
    min <= lo && hi <= max
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{QParamsOptions, QuantDtype};

    fn custom(
        mapping: MappingType,
        dtype: QuantDtype,
        granularity: Granularity,
        options: QParamsOptions,
    ) -> Recipe {
        Recipe::Custom(CustomRecipe {
            mapping,
            dtype,
            granularity,
            options,
        })
    }

    fn scheme(r: &Recipe) -> Result<CtScheme> {
        CtScheme::for_recipe(r, AsymmetricLayout::Block)
    }

    #[test]
    fn tinygemm_int4_is_refused_by_name() {
        let e = scheme(&Recipe::Int4WeightOnly {
            group_size: 32,
            use_hqq: false,
        })
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("int4-weight-only"), "{text}");
        assert!(text.contains("recipe"), "{text}");
    }

    #[test]
    fn recipes_map_onto_their_formats() {
        let u4 = Recipe::UIntXWeightOnly {
            bits: 4,
            group_size: 32,
            use_hqq: false,
        };
        let s = CtScheme::for_recipe(&u4, AsymmetricLayout::Group).unwrap();
        assert_eq!(s.format(), "pack-quantized");
        assert_eq!(s.weights_args()["group_size"], 32);
        let s = scheme(&u4).unwrap();
        assert_eq!(s.weights_args()["block_structure"], json!([1, 32]));
        let s = scheme(&Recipe::Float8WeightOnly).unwrap();
        assert_eq!(s.format(), "float-quantized");
        let c = s.quantization_config(&["lm_head".into()]);
        assert_eq!(c["ignore"], json!(["lm_head"]));
    }

    #[test]
    fn custom_integer_recipes_map_with_their_offsets() {
        let o = QParamsOptions::default();
        let sym = MappingType::Symmetric;
        let s = scheme(&custom(
            sym,
            QuantDtype::Int4,
            Granularity::PerGroup(128),
            o,
        ))
        .unwrap();
        assert_eq!(
            s,
            CtScheme::PackedSymmetric {
                bits: 4,
                strategy: CtStrategy::Group(128),
                offset: 0
            }
        );
        let a = s.weights_args();
        assert_eq!(
            (a["symmetric"].clone(), a["group_size"].clone()),
            (json!(true), json!(128))
        );
        let s = scheme(&custom(sym, QuantDtype::UInt4, Granularity::PerAxis(0), o)).unwrap();
        assert_eq!(
            s,
            CtScheme::PackedSymmetric {
                bits: 4,
                strategy: CtStrategy::Channel,
                offset: 8
            }
        );
        let s = scheme(&custom(sym, QuantDtype::Int8, Granularity::PerRow, o)).unwrap();
        assert_eq!(s.format(), "int-quantized");
        let s = scheme(&custom(
            MappingType::Asymmetric,
            QuantDtype::Int3,
            Granularity::PerGroup(32),
            o,
        ))
        .unwrap();
        assert!(matches!(
            s,
            CtScheme::PackedAsymmetric {
                bits: 3,
                offset: 0,
                ..
            }
        ));
        let none = QParamsOptions {
            zero_point_domain: ZeroPointDomain::None,
            ..o
        };
        let s = scheme(&custom(sym, QuantDtype::Int2, Granularity::PerTensor, none)).unwrap();
        assert_eq!(s.strategy(), CtStrategy::Tensor);
    }

    #[test]
    fn custom_recipes_without_an_exact_scheme_are_refused_with_the_reason() {
        let o = QParamsOptions::default();
        let sym = MappingType::Symmetric;
        let g = Granularity::PerGroup(32);
        let cases = [
            (
                custom(sym, QuantDtype::Float8E4M3Fn, Granularity::PerRow, o),
                "float8",
            ),
            (custom(sym, QuantDtype::Int16, g, o), "16 bits"),
            (
                custom(
                    sym,
                    QuantDtype::Int4,
                    g,
                    QParamsOptions {
                        quant_min: Some(-7.0),
                        ..o
                    },
                ),
                "narrower",
            ),
            (
                custom(
                    sym,
                    QuantDtype::Int4,
                    g,
                    QParamsOptions {
                        scale_dtype: Some(Kind::Float),
                        ..o
                    },
                ),
                "scale dtype",
            ),
            (
                custom(sym, QuantDtype::Int4, Granularity::PerAxis(1), o),
                "column",
            ),
            (
                custom(
                    sym,
                    QuantDtype::UInt4,
                    g,
                    QParamsOptions {
                        zero_point_domain: ZeroPointDomain::None,
                        ..o
                    },
                ),
                "unsigned",
            ),
            (
                custom(
                    MappingType::Asymmetric,
                    QuantDtype::UInt8,
                    g,
                    QParamsOptions {
                        zero_point_dtype: Some(Kind::Int8),
                        ..o
                    },
                ),
                "cannot hold",
            ),
            (
                custom(
                    MappingType::Asymmetric,
                    QuantDtype::UInt4,
                    Granularity::PerRow,
                    o,
                ),
                "--ct-asymmetric group",
            ),
            (
                custom(
                    MappingType::Asymmetric,
                    QuantDtype::UInt4,
                    g,
                    QParamsOptions {
                        preserve_zero: false,
                        zero_point_domain: ZeroPointDomain::Float,
                        ..o
                    },
                ),
                "float zero point",
            ),
        ];
        for (recipe, why) in cases {
            let text = scheme(&recipe).unwrap_err().to_string();
            assert!(text.contains("custom ("), "{text}");
            assert!(text.contains(why), "{why}: {text}");
        }
        let channel = custom(
            MappingType::Asymmetric,
            QuantDtype::UInt4,
            Granularity::PerRow,
            o,
        );
        assert!(CtScheme::for_recipe(&channel, AsymmetricLayout::Group).is_ok());
    }
}
