//! Which compressed-tensors scheme stores a recipe's quantized weights
//! exactly, and the `quantization_config` that says so (read from
//! compressed-tensors 0.20.0: `quantization/quant_args.py`,
//! `quant_scheme.py`, `quant_config.py`, `compressors/`).
//!
//! | recipe | format | weights args | stored |
//! |---|---|---|---|
//! | `uintx-weight-only` (uint*b*, group *g*) | `pack-quantized` | int *b*, asymmetric, `block` `[1, g]` (or `group` *g*) | `weight_packed`, `weight_scale`, `weight_zero_point`, `weight_shape` |
//! | `int8-weight-only` (per row or group *g*) | `int-quantized` | int 8, symmetric, `channel` (or `group` *g*) | `weight` int8, `weight_scale` |
//! | `float8-weight-only` | `float-quantized` | float 8, symmetric, `channel` | `weight` float8_e4m3fn, `weight_scale` |
//!
//! `int4-weight-only` (tinygemm) and custom recipes are refused: see
//! [`CtScheme::for_recipe`].

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::recipe::Recipe;

/// The compressed-tensors release whose format this writes.
pub const COMPRESSED_TENSORS_VERSION: &str = "0.20.0";

/// How an asymmetric (zero point) scheme is laid out.
///
/// compressed-tensors 0.20.0 writes asymmetric `group` weights with their
/// zero points packed along dim 0 (`PackedQuantizationCompressor.compress`,
/// the layout vLLM's WNA16 kernels read), but its loading path in
/// transformers (`compress_model` on the meta device) keeps the zero point
/// unpacked, so transformers refuses such a checkpoint with a size mismatch.
/// The `block` strategy with `[1, group]` blocks describes the same
/// quantization (one scale and zero point per row and group of columns,
/// the same dequantization) with the zero point stored unpacked as int8,
/// which both compressed-tensors and transformers load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AsymmetricLayout {
    /// `strategy: block`, `block_structure: [1, group]`, zero point int8
    /// `[rows, groups]`: loads in compressed-tensors and transformers.
    #[default]
    Block,
    /// `strategy: group`, zero point packed along dim 0 as compressed-tensors'
    /// own compressor writes it (int32 `[ceil(rows*bits/32), groups]`).
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

/// The compressed-tensors storage of one recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtScheme {
    /// `pack-quantized`, asymmetric: codes `q - 2^(bits-1)` packed into int32,
    /// zero points `zp - 2^(bits-1)`.
    PackedAsymmetric {
        /// Bits per code, 1 to 8.
        bits: u32,
        /// Columns per scale.
        group_size: i64,
        /// How the zero point is laid out.
        layout: AsymmetricLayout,
    },
    /// `int-quantized`, symmetric int8: codes as int8 `weight`.
    Int8 {
        /// `None`: one scale per row (`channel`).
        group_size: Option<i64>,
    },
    /// `float-quantized`, float8_e4m3fn per row.
    Float8,
}

impl CtScheme {
    /// The scheme that stores `recipe`'s quantization exactly.
    ///
    /// # Errors
    /// `int4-weight-only`: torchao's tinygemm recipe dequantizes as
    /// `(q - 8) * scale + zero_point` with a bfloat16 zero point in the
    /// float domain (`preserve_zero = false`); compressed-tensors' only
    /// dequantization is `(q - zero_point) * scale` with an integer zero
    /// point (`_dequantize` in `quantization/lifecycle/forward_helpers.py`),
    /// and `zero_point / scale` is not an integer in general, so no
    /// compressed-tensors scheme gives the same weights.
    /// `custom`: not mapped yet.
    pub fn for_recipe(recipe: &Recipe, layout: AsymmetricLayout) -> Result<CtScheme> {
        const OP: &str = "compressed_tensors::CtScheme::for_recipe";
        recipe.validate()?;
        match *recipe {
            Recipe::UIntXWeightOnly { use_hqq: true, .. } => Err(Error::invalid(
                OP,
                "recipe",
                recipe.to_string(),
                "has no compressed-tensors equivalent: HQQ's zero point is a float (torchao's \
                 float domain), and compressed-tensors stores only integer zero points",
            )),
            Recipe::UIntXWeightOnly {
                bits, group_size, ..
            } => Ok(CtScheme::PackedAsymmetric {
                bits,
                group_size,
                layout,
            }),
            Recipe::Int8WeightOnly { group_size } => Ok(CtScheme::Int8 { group_size }),
            Recipe::Float8WeightOnly => Ok(CtScheme::Float8),
            Recipe::Int4WeightOnly { group_size, .. } => Err(Error::invalid(
                OP,
                "recipe",
                format!("int4-weight-only (group size {group_size})"),
                "torchao's tinygemm int4 recipe dequantizes as (q - 8) * scale + zero_point with \
                 a float zero point; compressed-tensors only has (q - zero_point) * scale with an \
                 integer zero point, so no compressed-tensors scheme stores it exactly (use \
                 uintx-weight-only --bits 4, its integer zero point maps exactly)",
            )),
            Recipe::Custom(_) => Err(Error::invalid(
                OP,
                "recipe",
                "custom",
                "custom schemes are not mapped onto compressed-tensors; use \
                 uintx-weight-only, int8-weight-only or float8-weight-only",
            )),
        }
    }

    /// The `format` it is stored in.
    pub fn format(&self) -> &'static str {
        match self {
            CtScheme::PackedAsymmetric { .. } => "pack-quantized",
            CtScheme::Int8 { .. } => "int-quantized",
            CtScheme::Float8 => "float-quantized",
        }
    }

    /// `QuantizationArgs` of the weights, as JSON.
    pub fn weights_args(&self) -> Value {
        let mut args = match *self {
            CtScheme::PackedAsymmetric {
                bits,
                group_size,
                layout,
            } => {
                let mut a = json!({"num_bits": bits, "type": "int", "symmetric": false});
                match layout {
                    AsymmetricLayout::Block => {
                        a["strategy"] = json!("block");
                        a["block_structure"] = json!([1, group_size]);
                        a["group_size"] = Value::Null;
                    }
                    AsymmetricLayout::Group => {
                        a["strategy"] = json!("group");
                        a["group_size"] = json!(group_size);
                    }
                }
                a
            }
            CtScheme::Int8 { group_size } => {
                let mut a = json!({"num_bits": 8, "type": "int", "symmetric": true});
                match group_size {
                    None => {
                        a["strategy"] = json!("channel");
                        a["group_size"] = Value::Null;
                    }
                    Some(g) => {
                        a["strategy"] = json!("group");
                        a["group_size"] = json!(g);
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tinygemm_int4_and_custom_are_refused_by_name() {
        let e = CtScheme::for_recipe(
            &Recipe::Int4WeightOnly {
                group_size: 32,
                use_hqq: false,
            },
            AsymmetricLayout::Block,
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("int4-weight-only"), "{text}");
        assert!(text.contains("recipe"), "{text}");
        let custom = Recipe::Custom(Recipe::Int8WeightOnly { group_size: None }.arguments());
        assert!(CtScheme::for_recipe(&custom, AsymmetricLayout::Block).is_err());
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
        let s = CtScheme::for_recipe(&u4, AsymmetricLayout::Block).unwrap();
        assert_eq!(s.weights_args()["block_structure"], json!([1, 32]));
        let s = CtScheme::for_recipe(&Recipe::Float8WeightOnly, AsymmetricLayout::Block).unwrap();
        assert_eq!(s.format(), "float-quantized");
        let c = s.quantization_config(&["lm_head".into()]);
        assert_eq!(c["ignore"], json!(["lm_head"]));
    }
}
