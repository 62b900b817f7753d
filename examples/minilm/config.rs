//! The model's `config.json`: the fields a BERT encoder needs, and a refusal
//! of the variants this example does not implement.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct BertConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub intermediate_size: i64,
    pub max_position_embeddings: i64,
    pub type_vocab_size: i64,
    pub layer_norm_eps: f64,
    pub pad_token_id: i64,
}

impl BertConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let json: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let int = |key: &str| -> Result<i64> {
            json.get(key)
                .and_then(Value::as_i64)
                .with_context(|| format!("{}: no integer `{key}`", path.display()))
        };
        let text_field = |key: &str, default: &str| -> String {
            json.get(key)
                .and_then(Value::as_str)
                .unwrap_or(default)
                .to_owned()
        };
        // transformers' BertModel reads these two as strings; anything but
        // what is implemented here would change the op sequence.
        let act = text_field("hidden_act", "gelu");
        if act != "gelu" {
            bail!(
                "{}: hidden_act {act:?}: only exact \"gelu\" is implemented",
                path.display()
            );
        }
        let position = text_field("position_embedding_type", "absolute");
        if position != "absolute" {
            bail!(
                "{}: position_embedding_type {position:?}: only \"absolute\" is implemented",
                path.display()
            );
        }
        let config = Self {
            vocab_size: int("vocab_size")?,
            hidden_size: int("hidden_size")?,
            num_hidden_layers: int("num_hidden_layers")?,
            num_attention_heads: int("num_attention_heads")?,
            intermediate_size: int("intermediate_size")?,
            max_position_embeddings: int("max_position_embeddings")?,
            type_vocab_size: int("type_vocab_size")?,
            layer_norm_eps: json
                .get("layer_norm_eps")
                .and_then(Value::as_f64)
                .with_context(|| format!("{}: no number `layer_norm_eps`", path.display()))?,
            pad_token_id: json
                .get("pad_token_id")
                .and_then(Value::as_i64)
                .unwrap_or(0),
        };
        if config.num_attention_heads <= 0 || config.hidden_size % config.num_attention_heads != 0 {
            bail!(
                "{}: hidden_size {} is not a multiple of num_attention_heads {}",
                path.display(),
                config.hidden_size,
                config.num_attention_heads
            );
        }
        Ok(config)
    }

    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }
}
