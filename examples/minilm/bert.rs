//! The BERT encoder (transformers' `BertModel` without its pooler), written
//! once over a [`LinearSource`] so that the same definition runs dense or
//! with any quantized linear scheme.
//!
//! The op sequence is the one transformers 5 runs on CPU in eval mode with
//! its default `sdpa` attention (traced with `TorchDispatchMode`), so that
//! the dense model is bit-identical to it: `embedding` x3 added as
//! `(word + token_type) + position`, `native_layer_norm`, linears as
//! `at::linear` (view, `addmm`, view), `_scaled_dot_product_flash_attention_for_cpu`
//! on the transposed head views with an explicit scale and a float
//! `0 / -inf` mask of shape `[batch, 1, seq, seq]` (no mask when nothing is
//! padded), exact `gelu`, residual adds before each LayerNorm.

use anyhow::Result;
use tch::nn;
use tch::{Kind, Tensor};

use crate::config::BertConfig;
use tch_quant::{Linear, LinearSource};

struct Embeddings {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    norm: LayerNorm,
    pad_token_id: i64,
}

/// `nn.LayerNorm` over the last dimension (`native_layer_norm`).
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    width: i64,
    eps: f64,
}

struct SelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    norm: LayerNorm,
    heads: i64,
    head_dim: i64,
}

struct FeedForward {
    intermediate: Linear,
    output: Linear,
    norm: LayerNorm,
}

struct Layer {
    attention: SelfAttention,
    ffn: FeedForward,
}

pub struct Bert {
    embeddings: Embeddings,
    layers: Vec<Layer>,
}

/// The variable `name` under `p`: the one already in the store when there
/// is one (a quantized model is built over the store the dense one loaded),
/// else a new one for `VarStore::load` to fill.
fn var(p: &nn::Path, name: &str, dims: &[i64]) -> Tensor {
    p.get(name)
        .unwrap_or_else(|| p.var(name, dims, nn::Init::Const(0.0)))
}

impl LayerNorm {
    fn new(p: &nn::Path, cfg: &BertConfig) -> Self {
        let dims = [cfg.hidden_size];
        Self {
            weight: var(p, "weight", &dims),
            bias: var(p, "bias", &dims),
            width: cfg.hidden_size,
            eps: cfg.layer_norm_eps,
        }
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(xs.f_layer_norm(
            [self.width],
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
            true,
        )?)
    }
}

impl Embeddings {
    fn new(p: &nn::Path, cfg: &BertConfig) -> Self {
        let table = |name: &str, rows: i64| var(&(p / name), "weight", &[rows, cfg.hidden_size]);
        Self {
            word: table("word_embeddings", cfg.vocab_size),
            position: table("position_embeddings", cfg.max_position_embeddings),
            token_type: table("token_type_embeddings", cfg.type_vocab_size),
            norm: LayerNorm::new(&(p / "LayerNorm"), cfg),
            pad_token_id: cfg.pad_token_id,
        }
    }

    fn forward(&self, input_ids: &Tensor, token_type_ids: &Tensor) -> Result<Tensor> {
        let (_, seq) = input_ids.size2()?;
        let positions = Tensor::f_arange(seq, (Kind::Int64, input_ids.device()))?.f_unsqueeze(0)?;
        // padding_idx only matters to the gradient; transformers passes it.
        let lookup = |table: &Tensor, ids: &Tensor, padding_idx: i64| {
            Tensor::f_embedding(table, ids, padding_idx, false, false)
        };
        let summed = lookup(&self.word, input_ids, self.pad_token_id)?
            + lookup(&self.token_type, token_type_ids, -1)?;
        let summed = summed + lookup(&self.position, &positions, -1)?;
        self.norm.forward(&summed)
    }
}

impl SelfAttention {
    fn new(p: &nn::Path, cfg: &BertConfig, linears: &dyn LinearSource) -> Result<Self> {
        let h = cfg.hidden_size;
        let inner = p / "self";
        let output = p / "output";
        Ok(Self {
            query: linears.linear(&(&inner / "query"), h, h)?,
            key: linears.linear(&(&inner / "key"), h, h)?,
            value: linears.linear(&(&inner / "value"), h, h)?,
            output: linears.linear(&(&output / "dense"), h, h)?,
            norm: LayerNorm::new(&(&output / "LayerNorm"), cfg),
            heads: cfg.num_attention_heads,
            head_dim: cfg.head_dim(),
        })
    }

    fn forward(&self, xs: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (batch, seq, hidden) = xs.size3()?;
        let heads = |layer: &Linear| -> Result<Tensor> {
            Ok(layer
                .f_forward(xs)?
                .view([batch, seq, self.heads, self.head_dim])
                .transpose(1, 2))
        };
        let (q, k, v) = (heads(&self.query)?, heads(&self.key)?, heads(&self.value)?);
        // transformers passes `scale=head_dim**-0.5` explicitly.
        let scale = (self.head_dim as f64).powf(-0.5);
        let context =
            Tensor::f_scaled_dot_product_attention(&q, &k, &v, mask, 0.0, false, scale, false)?;
        let context = context.transpose(1, 2).reshape([batch, seq, hidden]);
        let projected = self.output.f_forward(&context)?;
        self.norm.forward(&(projected + xs))
    }
}

impl FeedForward {
    fn new(p: &nn::Path, cfg: &BertConfig, linears: &dyn LinearSource) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let output = p / "output";
        Ok(Self {
            intermediate: linears.linear(&(p / "intermediate" / "dense"), h, i)?,
            output: linears.linear(&(&output / "dense"), i, h)?,
            norm: LayerNorm::new(&(&output / "LayerNorm"), cfg),
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let inner = self.intermediate.f_forward(xs)?.f_gelu("none")?;
        let projected = self.output.f_forward(&inner)?;
        self.norm.forward(&(projected + xs))
    }
}

impl Bert {
    /// `p` is the checkpoint's root (`embeddings.*`, `encoder.layer.N.*`).
    pub fn new(p: &nn::Path, cfg: &BertConfig, linears: &dyn LinearSource) -> Result<Self> {
        let encoder = p / "encoder" / "layer";
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let layer = &encoder / i;
                Ok(Layer {
                    attention: SelfAttention::new(&(&layer / "attention"), cfg, linears)?,
                    ffn: FeedForward::new(&layer, cfg, linears)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            embeddings: Embeddings::new(&(p / "embeddings"), cfg),
            layers,
        })
    }

    /// The hidden states transformers returns with `output_hidden_states=True`:
    /// the embeddings' output, then each layer's; the last is
    /// `last_hidden_state`. Run it under `tch::no_grad` (the variables
    /// require grad, which would send attention to the math fallback).
    pub fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
    ) -> Result<Vec<Tensor>> {
        let mask = attention_bias(attention_mask)?;
        let mut hidden = vec![self.embeddings.forward(input_ids, token_type_ids)?];
        for layer in &self.layers {
            let xs = hidden.last().expect("starts with the embeddings");
            let attended = layer.attention.forward(xs, mask.as_ref())?;
            hidden.push(layer.ffn.forward(&attended)?);
        }
        Ok(hidden)
    }

    /// Every linear layer, in checkpoint order.
    pub fn linears(&self) -> impl Iterator<Item = &Linear> {
        self.layers.iter().flat_map(|l| {
            [
                &l.attention.query,
                &l.attention.key,
                &l.attention.value,
                &l.attention.output,
                &l.ffn.intermediate,
                &l.ffn.output,
            ]
        })
    }
}

/// transformers' sdpa mask for a padding mask `[batch, seq]` of 0/1: `None`
/// when no token is padded (it skips the mask then), else a float32
/// `[batch, 1, seq, seq]` that is 0 where the key is a token and -inf where
/// it is padding.
fn attention_bias(attention_mask: &Tensor) -> Result<Option<Tensor>> {
    let (batch, seq) = attention_mask.size2()?;
    let keep = attention_mask.f_to_kind(Kind::Bool)?;
    if keep.f_all()?.int64_value(&[]) != 0 {
        return Ok(None);
    }
    let keep = keep
        .view([batch, 1, 1, seq])
        .expand([batch, 1, seq, seq], false);
    let zeros = Tensor::zeros([batch, 1, seq, seq], (Kind::Float, attention_mask.device()));
    Ok(Some(
        zeros.f_masked_fill(&keep.logical_not(), f64::NEG_INFINITY)?,
    ))
}
