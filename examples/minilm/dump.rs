//! `--dump DIR`: what the Python reference (`scripts/minilm_reference.py`)
//! reads back. `inputs.safetensors` holds the token ids and mask; one
//! `<scheme>.safetensors` per scheme holds `hidden_states.<i>` (the
//! embeddings' output, then each layer's) and `embeddings` (pooled,
//! normalized); `unpadded.safetensors` holds the float model's inputs and
//! outputs for the first sentence alone (no padding, so no attention mask:
//! the other path through transformers' attention); `summary.json` lists the sentences, libtorch's thread count
//! (a float32 GEMM's bits depend on it, so the reference runs with the
//! same) and, per scheme, its torchao config, weight bytes, tokens per
//! second and quantization time.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use tch::Tensor;

use crate::tokenize::Batch;

fn input_tensors(batch: &Batch) -> Vec<(String, &Tensor)> {
    vec![
        ("input_ids".to_owned(), &batch.input_ids),
        ("token_type_ids".to_owned(), &batch.token_type_ids),
        ("attention_mask".to_owned(), &batch.attention_mask),
    ]
}

fn output_tensors<'a>(
    hidden_states: &'a [Tensor],
    embeddings: &'a Tensor,
) -> Vec<(String, &'a Tensor)> {
    let mut named: Vec<(String, &Tensor)> = hidden_states
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("hidden_states.{i}"), t))
        .collect();
    named.push(("embeddings".to_owned(), embeddings));
    named
}

fn write(path: &Path, named: &[(String, &Tensor)]) -> Result<()> {
    Tensor::write_safetensors(named, path).with_context(|| format!("writing {}", path.display()))
}

pub fn inputs(dir: &Path, batch: &Batch) -> Result<()> {
    write(&dir.join("inputs.safetensors"), &input_tensors(batch))
}

pub fn scheme(dir: &Path, name: &str, hidden_states: &[Tensor], embeddings: &Tensor) -> Result<()> {
    let path = dir.join(format!("{name}.safetensors"));
    write(&path, &output_tensors(hidden_states, embeddings))
}

pub fn unpadded(
    dir: &Path,
    batch: &Batch,
    hidden_states: &[Tensor],
    embeddings: &Tensor,
) -> Result<()> {
    let mut named = input_tensors(batch);
    named.extend(output_tensors(hidden_states, embeddings));
    write(&dir.join("unpadded.safetensors"), &named)
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
