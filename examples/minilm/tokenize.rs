//! Sentences to token ids with the checkpoint's own `tokenizer.json`
//! (BERT WordPiece, lower-cased), padded to the longest sentence as
//! transformers pads with `padding=True`.

use std::path::Path;

use anyhow::{anyhow, Result};
use tch::{Kind, Tensor};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// sentence-transformers' `max_seq_length` for all-MiniLM-L6-v2
/// (`sentence_bert_config.json`); the file's own truncation (128) is what
/// its Hub export left there, not what the model is served with.
pub const MAX_SEQ_LEN: usize = 256;

/// A padded batch: `[batch, seq]` int64 tensors, as transformers' tokenizer
/// returns them with `return_tensors="pt"`.
pub struct Batch {
    pub input_ids: Tensor,
    pub token_type_ids: Tensor,
    pub attention_mask: Tensor,
    /// Tokens that are not padding, summed over the batch.
    pub real_tokens: i64,
}

pub fn load(path: &Path) -> Result<Tokenizer> {
    let mut tokenizer = Tokenizer::from_file(path)
        .map_err(|e| anyhow!("reading the tokenizer {}: {e}", path.display()))?;
    tokenizer.with_padding(Some(PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        ..Default::default()
    }));
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: MAX_SEQ_LEN,
            ..Default::default()
        }))
        .map_err(|e| anyhow!("setting truncation: {e}"))?;
    Ok(tokenizer)
}

pub fn encode(tokenizer: &Tokenizer, sentences: &[&str]) -> Result<Batch> {
    let encodings = tokenizer
        .encode_batch(sentences.to_vec(), true)
        .map_err(|e| anyhow!("tokenizing: {e}"))?;
    let batch = encodings.len() as i64;
    let column = |field: fn(&tokenizers::Encoding) -> &[u32]| -> Tensor {
        let flat: Vec<i64> = encodings
            .iter()
            .flat_map(|e| field(e).iter().map(|&v| i64::from(v)))
            .collect();
        Tensor::from_slice(&flat).view([batch, -1])
    };
    let attention_mask = column(tokenizers::Encoding::get_attention_mask);
    let real_tokens = attention_mask.sum(Kind::Int64).int64_value(&[]);
    Ok(Batch {
        input_ids: column(tokenizers::Encoding::get_ids),
        token_type_ids: column(tokenizers::Encoding::get_type_ids),
        attention_mask,
        real_tokens,
    })
}
