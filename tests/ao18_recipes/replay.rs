//! Replays tests/ao18_recipes/oracle.py's records (torchao 0.18.0) through
//! the crate: `choose_scale_float8`, the float8 round trip with per-block
//! scales, and the 0.18 recipes through `AffineQuantizedTensor`, comparing
//! every output's dtype, shape and bytes.

use std::str::FromStr;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tch::Tensor;
use tch_quant::{
    choose_scale_float8, dequantize_affine_float8, quantize_affine_float8, AffineQuantizedTensor,
    Float8ScaleDtype, Float8ScaleOptions, Granularity, MappingType, QuantDtype, Recipe, Semantics,
};

use crate::store::{compare, Store};

pub use crate::store::kind_of;

/// `per-row`, `per-tensor`, `per-group:G`, `per-axis:A`.
fn granularity(text: &str) -> Result<Granularity> {
    let (kind, n) = text.split_once(':').unwrap_or((text, ""));
    Ok(match kind {
        "per-row" => Granularity::PerRow,
        "per-tensor" => Granularity::PerTensor,
        "per-group" => Granularity::PerGroup(n.parse()?),
        "per-axis" => Granularity::PerAxis(n.parse()?),
        other => bail!("unknown granularity {other}"),
    })
}

/// The crate's recipe for an oracle `recipe` record.
pub fn recipe_of(args: &Value) -> Result<Recipe> {
    let text = |k: &str| args[k].as_str().with_context(|| format!("args.{k}"));
    Ok(match text("config")? {
        "int8_weight_only" | "int8_dynamic_activation_int8_weight" => Recipe::Int8WeightOnlyV2 {
            granularity: granularity(text("granularity")?)?,
        },
        "float8_weight_only" => Recipe::Float8WeightOnlyV2 {
            granularity: granularity(text("granularity")?)?,
            float8_dtype: QuantDtype::from_str(text("weight_dtype")?)?,
        },
        "intx_weight_only" => Recipe::IntxWeightOnly {
            bits: args["bits"].as_u64().context("bits")? as u32,
            granularity: granularity(text("granularity")?)?,
            mapping: MappingType::from_str(text("mapping")?)?,
        },
        other => bail!("unknown config {other}"),
    })
}

/// Case counts of one store.
#[derive(Debug, Default)]
pub struct Tally {
    pub identical: usize,
    pub total: usize,
    pub failures: Vec<String>,
}

/// Replays every case of `store`.
pub fn replay(store: &Store) -> Result<Tally> {
    let mut tally = Tally::default();
    for case in &store.cases {
        tally.total += 1;
        let id = case["id"].as_str().unwrap_or("?").to_string();
        match replay_case(store, case) {
            Ok(None) => tally.identical += 1,
            Ok(Some(why)) => tally.failures.push(format!("{id} {}: {why}", case["args"])),
            Err(e) => tally.failures.push(format!("{id} {}: {e:#}", case["args"])),
        }
    }
    Ok(tally)
}

fn replay_case(store: &Store, case: &Value) -> Result<Option<String>> {
    let input = |role: &str| -> Result<&Tensor> {
        let key = case["inputs"][role].as_str().context("input key")?;
        store.tensors.get(key).context("input tensor")
    };
    let args = &case["args"];
    let expected = &case["expected"];
    let got: Result<Vec<(&str, Tensor)>> = (|| {
        Ok(match case["op"].as_str().context("op")? {
            "choose_scale_float8" => {
                let block: Vec<i64> = serde_json::from_value(args["block_size"].clone())?;
                let options = Float8ScaleOptions {
                    scale_dtype: match args["scale_dtype"].as_str() {
                        Some("float8_e8m0fnu") => Float8ScaleDtype::Float8E8M0Fnu,
                        _ => Float8ScaleDtype::Float32,
                    },
                    hp_value_lb: args["hp_value_lb"].as_f64(),
                    hp_value_ub: args["hp_value_ub"].as_f64(),
                };
                let f8 = QuantDtype::from_str(args["float8_dtype"].as_str().context("dtype")?)?;
                vec![(
                    "scale",
                    choose_scale_float8(input("input")?, &block, f8, &options)?,
                )]
            }
            "float8_round_trip" => {
                let f8 = QuantDtype::from_str(args["float8_dtype"].as_str().context("dtype")?)?;
                let out = kind_of(args["output_dtype"].as_str().context("output_dtype")?)?;
                let codes = quantize_affine_float8(input("input")?, input("scale")?, f8)?;
                let dequant = dequantize_affine_float8(&codes, input("scale")?, out)?;
                vec![("codes", codes), ("dequant", dequant)]
            }
            "recipe" => {
                let recipe = recipe_of(args)?;
                let q = AffineQuantizedTensor::quantize(input("weight")?, &recipe)?;
                if q.semantics() != Semantics::Torchao0_18 {
                    bail!("the tensor records semantics {}", q.semantics());
                }
                let mut parts = vec![
                    ("qdata", q.qdata()[0].shallow_clone()),
                    ("scale", q.scale().shallow_clone()),
                    ("dequant", q.dequantize()?),
                ];
                if let Some(zp) = q.zero_point() {
                    parts.push(("zero_point", zp.shallow_clone()));
                }
                parts
            }
            other => bail!("unknown op {other}"),
        })
    })();
    if expected["ok"] != true {
        return Ok(match got {
            Err(_) => None,
            Ok(_) => Some(format!(
                "torchao refused ({}), the crate did not",
                expected["error"]
            )),
        });
    }
    let got = got?;
    let want = expected["outputs"].as_object().context("outputs")?;
    if want.len() != got.len() {
        return Ok(Some(format!(
            "outputs {:?}, torchao gives {:?}",
            got.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        )));
    }
    for (role, t) in &got {
        let key = want
            .get(*role)
            .and_then(Value::as_str)
            .with_context(|| format!("torchao has no {role}"))?;
        if let Some(diff) = compare(&store.tensors[key], t)? {
            return Ok(Some(format!("{role}: {diff}")));
        }
    }
    Ok(None)
}
