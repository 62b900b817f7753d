//! Replay of the float8, floatx and bit-packing ops.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tch::Device;

use crate::replay::{kind_from_name, qdtype, CrateAnswer, Oracle};

pub fn run(oracle: &Oracle, case: &Value, op: &str, dev: Device) -> Result<CrateAnswer> {
    let a = &case["args"];
    let input = |name: &str| -> Result<tch::Tensor> {
        oracle
            .arg_tensor(case, name, dev)?
            .with_context(|| format!("input {name} missing"))
    };
    let bits = |name: &str| -> Result<u32> {
        Ok(a[name].as_u64().with_context(|| format!("arg {name}"))? as u32)
    };
    let one = |r: std::result::Result<tch::Tensor, tch_quant::Error>, name: &str| {
        r.map(|t| vec![(name.to_string(), Some(t))])
    };
    let format = || -> Result<std::result::Result<tch_quant::FloatxDtype, tch_quant::Error>> {
        Ok(tch_quant::FloatxDtype::new(bits("ebits")?, bits("mbits")?))
    };
    let out_kind = || kind_from_name(a["output_dtype"].as_str().unwrap_or("float32"));
    Ok(match op {
        "choose_qparams_affine_float8" => one(
            tch_quant::choose_qparams_affine_float8(&input("input")?, qdtype(&a["float8_dtype"])?),
            "scale",
        ),
        "quantize_affine_float8" => one(
            tch_quant::quantize_affine_float8(
                &input("input")?,
                &input("scale")?,
                qdtype(&a["float8_dtype"])?,
            ),
            "output",
        ),
        "dequantize_affine_float8" => one(
            tch_quant::dequantize_affine_float8(&input("input")?, &input("scale")?, out_kind()?),
            "output",
        ),
        "choose_qparams_affine_floatx" => one(
            match format()? {
                Ok(f) => tch_quant::choose_qparams_affine_floatx(&input("input")?, f),
                Err(e) => Err(e),
            },
            "scale",
        ),
        "quantize_affine_floatx" => one(
            match format()? {
                Ok(f) => tch_quant::quantize_affine_floatx(&input("input")?, &input("scale")?, f),
                Err(e) => Err(e),
            },
            "output",
        ),
        "dequantize_affine_floatx" => one(
            match format()? {
                Ok(f) => tch_quant::dequantize_affine_floatx(
                    &input("input")?,
                    &input("scale")?,
                    f,
                    out_kind()?,
                ),
                Err(e) => Err(e),
            },
            "output",
        ),
        "pack_uintx" => tch_quant::pack_uintx(
            &input("input")?,
            bits("nbits")?,
            a["dim"].as_i64().context("dim")?,
        )
        .map(|shards| {
            shards
                .into_iter()
                .enumerate()
                .map(|(i, s)| (format!("shard{i}"), Some(s)))
                .collect()
        }),
        "unpack_uintx" => {
            let mut shards = Vec::new();
            while let Some(s) = oracle.arg_tensor(case, &format!("shard{}", shards.len()), dev)? {
                shards.push(s);
            }
            one(
                tch_quant::unpack_uintx(&shards, bits("nbits")?, a["dim"].as_i64().context("dim")?),
                "output",
            )
        }
        other => bail!("unknown op {other}"),
    })
}
