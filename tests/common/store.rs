//! The oracles' fixture format (`tests/parity/README.md`): `cases.json`
//! names each tensor's dtype and shape, and `tensors.safetensors` holds its
//! raw little-endian bytes as a flat `U8` array, so every dtype (float8
//! `fnuz` kinds and sub-byte storage included) travels the same way. Every
//! family's replay (`tests/*/replay.rs`) loads its fixtures and live cases
//! through [`Store::load`].

// Every test binary of a family includes this file; not all use each item.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

/// One oracle output directory, loaded.
pub struct Store {
    /// Every tensor, by its key in `cases.json`.
    pub tensors: HashMap<String, Tensor>,
    /// The cases, as the oracle wrote them.
    pub cases: Vec<Value>,
    /// The versions that made them.
    pub torch: String,
    pub torchao: String,
    /// The whole manifest, for a family's own header fields (`threads`).
    pub manifest: Value,
}

impl Store {
    /// Loads `dir`, reading each tensor's dtype name with `kind_of`.
    pub fn load(dir: &Path, kind_of: impl Fn(&str) -> Result<Kind>) -> Result<Store> {
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(dir.join("cases.json")).context("reading cases.json")?,
        )?;
        let raw = std::fs::read(dir.join("tensors.safetensors")).context("reading tensors")?;
        let st = safetensors::SafeTensors::deserialize(&raw)?;
        let mut tensors = HashMap::new();
        for (key, meta) in manifest["tensors"].as_object().context("tensors")? {
            let kind = kind_of(meta["dtype"].as_str().context("dtype")?)?;
            let shape: Vec<i64> = serde_json::from_value(meta["shape"].clone())?;
            let t = Tensor::from_slice(st.tensor(key)?.data())
                .f_view_dtype(kind)?
                .f_reshape(&shape)?;
            tensors.insert(key.clone(), t);
        }
        let text = |k: &str| manifest[k].as_str().unwrap_or("?").to_string();
        Ok(Store {
            tensors,
            cases: manifest["cases"].as_array().context("cases")?.clone(),
            torch: text("torch"),
            torchao: text("torchao"),
            manifest,
        })
    }
}

/// `None` when `got` has the dtype, shape and bytes of `want`, otherwise
/// the first difference: the element's index and both values.
pub fn compare(want: &Tensor, got: &Tensor) -> Result<Option<String>> {
    let got = got.f_to_device(Device::Cpu)?;
    if got.kind() != want.kind() {
        return Ok(Some(format!(
            "dtype {:?}, expected {:?}",
            got.kind(),
            want.kind()
        )));
    }
    if got.size() != want.size() {
        return Ok(Some(format!(
            "shape {:?}, expected {:?}",
            got.size(),
            want.size()
        )));
    }
    let (w, g) = (raw_bytes(want)?, raw_bytes(&got)?);
    if w == g {
        return Ok(None);
    }
    let width = w.len() / want.numel().max(1);
    let byte = w.iter().zip(&g).position(|(a, b)| a != b).unwrap_or(0);
    let i = (byte / width.max(1)) as i64;
    let value = |t: &Tensor| -> Result<String> {
        let e = t.f_reshape([-1])?.f_get(i)?;
        Ok(if is_float(t.kind()) {
            format!("{}", e.f_to_kind(Kind::Double)?.f_double_value(&[])?)
        } else {
            format!("{}", e.f_to_kind(Kind::Int64)?.f_int64_value(&[])?)
        })
    };
    let count = w
        .chunks(width.max(1))
        .zip(g.chunks(width.max(1)))
        .filter(|(a, b)| a != b)
        .count();
    Ok(Some(format!(
        "element {i} (flat; {count} of {} differ): {} != expected {}",
        want.numel(),
        value(&got)?,
        value(want)?
    )))
}

/// A dtype name as the oracles write it (`str(dtype)` without `torch.`):
/// every storage dtype the fixtures hold, else what the crate's
/// [`tch_quant::parse_kind`] reads.
pub fn kind_of(name: &str) -> Result<Kind> {
    Ok(match name {
        "float32" => Kind::Float,
        "float16" => Kind::Half,
        "bfloat16" => Kind::BFloat16,
        "float64" => Kind::Double,
        "uint8" => Kind::Uint8,
        "int8" => Kind::Int8,
        "int16" => Kind::Int16,
        "int32" => Kind::Int,
        "int64" => Kind::Int64,
        "bool" => Kind::Bool,
        "float8_e4m3fn" => Kind::Float8e4m3fn,
        "float8_e5m2" => Kind::Float8e5m2,
        "float8_e4m3fnuz" => Kind::Float8e4m3fnuz,
        "float8_e5m2fnuz" => Kind::Float8e5m2fnuz,
        other => tch_quant::parse_kind(other).with_context(|| format!("unknown dtype {other}"))?,
    })
}

fn is_float(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double | Kind::Float8e4m3fn
    )
}

pub fn raw_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let flat = t.f_contiguous()?.f_reshape([-1])?;
    Ok(Vec::<u8>::try_from(flat.f_view_dtype(Kind::Uint8)?)?)
}
