//! Reading the cases `benches/compare.py` and `benches/compare_cuda.py`
//! write: the input's dtype name, int lists and the raw input bytes.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

/// The dtype a case names.
pub fn kind(name: &str) -> Result<Kind> {
    Ok(match name {
        "float32" => Kind::Float,
        "bfloat16" => Kind::BFloat16,
        "float16" => Kind::Half,
        other => bail!("unsupported input dtype {other}"),
    })
}

/// A JSON list of ints.
pub fn ints(v: &Value) -> Result<Vec<i64>> {
    v.as_array()
        .context("expected a list")?
        .iter()
        .map(|x| x.as_i64().context("expected an int"))
        .collect()
}

/// The case's input, from its file of raw little-endian bytes, on `device`.
pub fn load(case: &Value, device: Device) -> Result<Tensor> {
    let path = case["input"].as_str().context("input")?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    let shape = ints(&case["shape"])?;
    Ok(Tensor::from_slice(&bytes)
        .f_view_dtype(kind(case["dtype"].as_str().context("dtype")?)?)?
        .f_reshape(&shape)?
        .f_to_device(device)?)
}
