//! `--dump DIR`: what the Python reference (`scripts/minilm_reference.py`)
//! reads back. `inputs.safetensors` holds the token ids and mask; one
//! `<scheme>.safetensors` per scheme holds `hidden_states.<i>` (the
//! embeddings' output, then each layer's) and `embeddings` (pooled,
//! normalized); `summary.json` lists the sentences, libtorch's thread count
//! (a float32 GEMM's bits depend on it, so the reference runs with the
//! same) and, per scheme, its torchao config, weight bytes, tokens per
//! second and quantization time.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use tch::Tensor;

use crate::tokenize::Batch;

pub fn inputs(dir: &Path, batch: &Batch) -> Result<()> {
    let path = dir.join("inputs.safetensors");
    Tensor::write_safetensors(
        &[
            ("input_ids", &batch.input_ids),
            ("token_type_ids", &batch.token_type_ids),
            ("attention_mask", &batch.attention_mask),
        ],
        &path,
    )
    .with_context(|| format!("writing {}", path.display()))
}

pub fn scheme(dir: &Path, name: &str, hidden_states: &[Tensor], embeddings: &Tensor) -> Result<()> {
    let path = dir.join(format!("{name}.safetensors"));
    let mut named: Vec<(String, &Tensor)> = hidden_states
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("hidden_states.{i}"), t))
        .collect();
    named.push(("embeddings".to_owned(), embeddings));
    Tensor::write_safetensors(&named, &path).with_context(|| format!("writing {}", path.display()))
}

pub fn summary(dir: &Path, sentences: &[&str], schemes: Vec<Value>) -> Result<()> {
    let path = dir.join("summary.json");
    let text = serde_json::to_string_pretty(&json!({
        "sentences": sentences,
        "threads": tch::get_num_threads(),
        "schemes": schemes,
    }))?;
    std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))
}
