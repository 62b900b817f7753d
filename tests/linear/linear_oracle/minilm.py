"""all-MiniLM-L6-v2's linear layers with the activations they see on a few
sentences: the encoder (BERT: embeddings, LayerNorm, 6 layers of attention
and GELU MLP) run in plain float32 torch from the checkpoint, with a
WordPiece tokenizer over the package's vocab.txt (enough for lower-case
ASCII sentences; no tokenizer package needed). The activations only need
to be realistic: the expected outputs are torchao's on them."""

from __future__ import annotations

import json
import math
import os
import random
import re

import torch

from .data import DTYPES, SHORT
from .evaluate import LinearCase

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Quantized linear layers run the same kernels as torchao.",
    "A sentence embedding maps text to a vector.",
]
LINEARS = ["attention.self.query", "attention.self.key", "attention.self.value",
           "attention.output.dense", "intermediate.dense", "output.dense"]


def wordpiece(text: str, vocab: dict[str, int]) -> list[int]:
    """BERT's uncased basic split (whitespace, punctuation) and greedy
    longest-match WordPiece, with [CLS] and [SEP]."""
    ids = [vocab["[CLS]"]]
    for word in re.findall(r"\w+|[^\w\s]", text.lower()):
        start, pieces = 0, []
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in vocab:
                    pieces.append(vocab[piece])
                    break
                end -= 1
            if end == start:
                pieces = [vocab["[UNK]"]]
                break
            start = end
        ids += pieces
    return ids + [vocab["[SEP]"]]


def linear_inputs(checkpoint: str) -> tuple[dict[str, tuple], list[int]]:
    """{linear name: (weight, bias, input [B, T, K])} for every linear of
    the encoder and the pooler, and each sentence's token count."""
    from safetensors.torch import load_file

    model_dir = os.path.dirname(checkpoint)
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(model_dir, "vocab.txt")) as f:
        vocab = {line.rstrip("\n"): i for i, line in enumerate(f)}
    sd = load_file(checkpoint)
    toks = [wordpiece(s, vocab) for s in SENTENCES]
    lengths = [len(t) for t in toks]
    b, t = len(toks), max(lengths)
    ids = torch.zeros(b, t, dtype=torch.int64)
    mask = torch.zeros(b, t)
    for i, tk in enumerate(toks):
        ids[i, : len(tk)] = torch.tensor(tk)
        mask[i, : len(tk)] = 1
    eps, heads = cfg["layer_norm_eps"], cfg["num_attention_heads"]
    hidden = cfg["hidden_size"]
    dh = hidden // heads

    def ln(x, p):
        return torch.nn.functional.layer_norm(x, (hidden,), sd[p + ".weight"], sd[p + ".bias"], eps)

    seen = {}

    def lin(x, p):
        seen[p] = (sd[p + ".weight"], sd[p + ".bias"], x)
        return torch.nn.functional.linear(x, sd[p + ".weight"], sd[p + ".bias"])

    e = "embeddings."
    h = sd[e + "word_embeddings.weight"][ids] + sd[e + "position_embeddings.weight"][:t] \
        + sd[e + "token_type_embeddings.weight"][0]
    h = ln(h, e + "LayerNorm")
    additive = (1.0 - mask)[:, None, None, :] * torch.finfo(torch.float32).min
    with torch.no_grad():
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."

            def split(x):
                return x.view(b, t, heads, dh).transpose(1, 2)

            q = split(lin(h, p + "attention.self.query"))
            k = split(lin(h, p + "attention.self.key"))
            v = split(lin(h, p + "attention.self.value"))
            probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh) + additive, dim=-1)
            ctx = (probs @ v).transpose(1, 2).reshape(b, t, hidden)
            h1 = ln(lin(ctx, p + "attention.output.dense") + h, p + "attention.output.LayerNorm")
            inter = torch.nn.functional.gelu(lin(h1, p + "intermediate.dense"))
            h = ln(lin(inter, p + "output.dense") + h1, p + "output.LayerNorm")
        lin(h[:, 0], "pooler.dense")
    return seen, lengths


def minilm_cases(checkpoint: str, seed: int, count: int, device: str) -> list[LinearCase]:
    """`count` cases: a linear of the checkpoint, a scheme, a dtype, and the
    activation as the whole padded batch [B, T, K], one sentence [T, K] or
    one token [1, K]; weight, bias and activation cast to the dtype."""
    from .grid import draw_dtype, draw_scheme

    seen, lengths = linear_inputs(checkpoint)
    names = sorted(seen)
    rng = random.Random(seed)
    cast: dict[tuple, torch.Tensor] = {}

    def as_dtype(key, t, dtype):
        # One tensor object per (source, dtype): the store writes it once.
        if (key, dtype) not in cast:
            cast[(key, dtype)] = t.to(DTYPES[dtype]).contiguous()
        return cast[(key, dtype)]

    cases = []
    for _ in range(count):
        name = rng.choice(names)
        w, bvec, x = seen[name]
        scheme = draw_scheme(rng, device)
        dtype = draw_dtype(rng, scheme)
        form = rng.choice(["batch", "sentence", "token"]) if x.dim() == 3 else rng.choice(["batch", "token"])
        s = rng.randrange(len(lengths))
        if form == "batch":
            xs, xkey = x, (name, "batch")
        elif form == "sentence":
            xs, xkey = x[s, : lengths[s]], (name, "sentence", s)
        else:
            j = rng.randrange(lengths[s]) if x.dim() == 3 else s
            xs, xkey = (x[s, j] if x.dim() == 3 else x[s]).unsqueeze(0), (name, "token", s, j)
        cases.append(LinearCase(
            id=f"minilm/{name}/{scheme.tag()}/{SHORT[dtype]}/{form}",
            scheme=scheme,
            dtype=dtype,
            weight=as_dtype((name, "w"), w, dtype),
            bias=as_dtype((name, "b"), bvec, dtype),
            input=as_dtype(xkey, xs, dtype),
        ))
    return cases
