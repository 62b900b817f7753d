#!/usr/bin/env python3
"""Writes a synthetic Llama-shaped bfloat16 checkpoint, sharded the Hugging
Face way, for benchmarking `tch-quant quantize` at scale (`make
bench-checkpoint`).

    .venv/bin/python scripts/make_llama_checkpoint.py OUT_DIR            # 34 layers, 4.4 GB
    .venv/bin/python scripts/make_llama_checkpoint.py OUT_DIR --layers 2 # 0.5 GB
    .venv/bin/python scripts/make_llama_checkpoint.py OUT_DIR --size 0.3 # layers for ~0.3 GB

OUT_DIR gets `model-0000i-of-0000N.safetensors` shards of at most
`--shard-size` GB each and `model.safetensors.index.json` (`metadata.total_size`
and `weight_map`). Tensor names and shapes are Llama's (hidden 2048,
intermediate 8192, vocab 32000, 16 heads of 128, grouped-query k/v with 4 heads
of 128): `model.embed_tokens.weight`, `model.layers.N.self_attn.{q,k,v,o}_proj.weight`,
`model.layers.N.mlp.{gate,up,down}_proj.weight`,
`model.layers.N.{input,post_attention}_layernorm.weight`, `model.norm.weight`,
`lm_head.weight`. Weights are normal with std 0.02 (norms are ones plus a little
noise), drawn from one generator per tensor seeded from `--seed` and the
tensor's name, so the same name always gets the same values whatever the
layer count. An existing complete checkpoint with the same arguments is kept
(a `.done` stamp records them); use `--force` to rewrite it.
"""

import argparse
import hashlib
import json
import os
import sys

import torch
from safetensors.torch import save_file

HIDDEN, INTERMEDIATE, VOCAB = 2048, 8192, 32000
HEADS, KV_HEADS, HEAD_DIM = 16, 4, 128
DEFAULT_LAYERS = 34
BYTES_PER = 2  # bfloat16


def layer_tensors(i):
    p = f"model.layers.{i}."
    return [
        (p + "input_layernorm.weight", (HIDDEN,)),
        (p + "self_attn.q_proj.weight", (HEADS * HEAD_DIM, HIDDEN)),
        (p + "self_attn.k_proj.weight", (KV_HEADS * HEAD_DIM, HIDDEN)),
        (p + "self_attn.v_proj.weight", (KV_HEADS * HEAD_DIM, HIDDEN)),
        (p + "self_attn.o_proj.weight", (HIDDEN, HEADS * HEAD_DIM)),
        (p + "post_attention_layernorm.weight", (HIDDEN,)),
        (p + "mlp.gate_proj.weight", (INTERMEDIATE, HIDDEN)),
        (p + "mlp.up_proj.weight", (INTERMEDIATE, HIDDEN)),
        (p + "mlp.down_proj.weight", (HIDDEN, INTERMEDIATE)),
    ]


def all_tensors(layers):
    names = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    for i in range(layers):
        names += layer_tensors(i)
    names += [("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (VOCAB, HIDDEN))]
    return names


def nbytes(shape):
    n = BYTES_PER
    for d in shape:
        n *= d
    return n


def layers_for(size_gb):
    fixed = sum(nbytes(s) for _, s in all_tensors(0))
    per_layer = sum(nbytes(s) for _, s in layer_tensors(0))
    return max(1, round((size_gb * 1e9 - fixed) / per_layer))


def make(name, shape, seed):
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    g = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
    t = torch.randn(shape, generator=g, dtype=torch.float32)
    if len(shape) == 1:
        t = 1.0 + 0.05 * t
    else:
        t = t.mul_(0.02)
    return t.to(torch.bfloat16)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out_dir")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--layers", type=int, help=f"decoder layers (default {DEFAULT_LAYERS})")
    g.add_argument("--size", type=float, help="target size in GB (1e9 bytes); picks --layers")
    p.add_argument("--shard-size", type=float, default=1.0, help="GB per shard at most (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="rewrite even if a matching one exists")
    opts = p.parse_args()
    layers = opts.layers or (layers_for(opts.size) if opts.size else DEFAULT_LAYERS)
    if layers < 1:
        p.error("--layers must be at least 1")
    torch.set_num_threads(2)

    stamp = os.path.join(opts.out_dir, ".done")
    wanted = json.dumps({"layers": layers, "shard_size": opts.shard_size, "seed": opts.seed})
    if not opts.force and os.path.exists(stamp) and open(stamp).read() == wanted:
        print(f"{opts.out_dir}: already holds this checkpoint ({wanted})")
        return
    os.makedirs(opts.out_dir, exist_ok=True)
    for f in os.listdir(opts.out_dir):
        if f.startswith("model") and (f.endswith(".safetensors") or f.endswith(".json")) \
                or f == ".done":
            os.remove(os.path.join(opts.out_dir, f))

    # Group tensors into shards in order, like save_pretrained.
    limit = int(opts.shard_size * 1e9)
    groups, current, size = [], [], 0
    for name, shape in all_tensors(layers):
        if current and size + nbytes(shape) > limit:
            groups.append(current)
            current, size = [], 0
        current.append((name, shape))
        size += nbytes(shape)
    groups.append(current)

    weight_map, total = {}, 0
    for i, group in enumerate(groups):
        file = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        tensors = {name: make(name, shape, opts.seed) for name, shape in group}
        save_file(tensors, os.path.join(opts.out_dir, file), metadata={"format": "pt"})
        for name in tensors:
            weight_map[name] = file
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        print(f"wrote {file}: {len(tensors)} tensors", file=sys.stderr)
        del tensors
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(opts.out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    with open(stamp, "w") as f:
        f.write(wanted)
    print(f"{opts.out_dir}: {layers} layers, {len(groups)} shards, {total / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
