//! The oracles' fixture format (`tests/parity/README.md`): `cases.json`
//! names each tensor's dtype and shape, and `tensors.safetensors` holds its
//! raw little-endian bytes as a flat `U8` array, so every dtype (float8
//! `fnuz` kinds and sub-byte storage included) travels the same way. Every
//! family's replay (`tests/*/replay.rs`) loads its fixtures and live cases
//! through [`Store::load`].

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;
use tch::{Kind, Tensor};

/// One oracle output directory, loaded.
pub struct Store {
    /// Every tensor, by its key in `cases.json`.
    pub tensors: HashMap<String, Tensor>,
    /// The cases, as the oracle wrote them.
    pub cases: Vec<Value>,
    /// The versions that made them.
    pub torch: String,
    pub torchao: String,
    /// The whole manifest, for a family's own header fields (`threads`);
    /// not every test binary that includes this file reads it.
    #[allow(dead_code)]
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
