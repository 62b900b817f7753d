#!/usr/bin/env python3
"""The work of `tch-quant quantize` done with torchao 0.11 in Python, as the
yardstick of `make bench-checkpoint`.

    .venv/bin/python scripts/torchao_quantize_checkpoint.py INPUT -o OUTPUT \
        --scheme int4-weight-only [--group-size 128]
    .venv/bin/python scripts/torchao_quantize_checkpoint.py INPUT -o OUTPUT \
        --scheme int8-weight-only [--group-size N]

INPUT is a `.safetensors` file or a sharded `*.index.json`; OUTPUT is
likewise a file or an index (shards written beside it, one per input shard,
named as tch-quant names them). Each shard is loaded whole with
`safetensors.torch.load_file`; every tensor the CLI's default rule chooses (a
float32/float16/bfloat16 tensor named `...weight` of rank >= 2 that is not an
embedding, whose group divides its last dim, a multiple of 8 where codes are
packed) goes through torchao's `choose_qparams_affine` + `quantize_affine` with
the recipe's arguments (`recipe()` and `torchao_reference()` of
scripts/torchao_check.py, the same ones that check the CLI), and is stored as
the CLI stores it: `W.qdata` (int4 codes packed with torchao's
`bitpacking.pack(codes.to(uint8), 4, dim=-1)`, int8 codes as they are),
`W.scale`, `W.zero_point`. Everything else is copied. torch uses 2 threads
(`--threads`), as the benchmark's crate run does.

The files carry no tch_quant metadata: they are for timing, and for
comparing tensor by tensor with the CLI's output (scripts/bench_checkpoint.py
does).
"""

import argparse
import json
import os
import re
import sys

import torch
from safetensors.torch import load_file, save_file
from torchao.dtypes.uintx.bitpacking import pack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torchao_check import recipe, torchao_reference  # noqa: E402

FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def is_embedding(name):
    """The CLI's rule (src/model.rs): `embed` anywhere, or a wte./wpe. component."""
    lower = name.lower()
    return "embed" in lower or re.search(r"(^|\.)(wte|wpe)\.", lower) is not None


def chosen(name, t, scheme):
    """Whether the CLI's default rule quantizes t with this scheme."""
    if not name.endswith("weight") or t.dtype not in FLOATS or t.dim() < 2 or is_embedding(name):
        return False
    group = scheme.get("group_size") or t.shape[-1]
    packed = scheme["name"] == "int4-weight-only"
    return t.shape[-1] % group == 0 and (not packed or t.shape[-1] % 8 == 0)


def quantize(name, w, scheme):
    """The tensors the CLI stores for w, by name."""
    args = recipe(scheme, w)
    q, scale, zero_point = torchao_reference(w, args, scheme["name"])
    out = {}
    if scheme["name"] == "int4-weight-only":
        (out[f"{name}.qdata"],) = pack(q.to(torch.uint8), 4, dim=-1)
    else:
        out[f"{name}.qdata"] = q
    out[f"{name}.scale"] = scale
    out[f"{name}.zero_point"] = zero_point
    return out


def shards_of(path):
    if not path.endswith(".json"):
        return [path], None
    with open(path) as f:
        index = json.load(f)
    folder = os.path.dirname(path)
    return [os.path.join(folder, f) for f in sorted(set(index["weight_map"].values()))], index


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--scheme", required=True, choices=["int4-weight-only", "int8-weight-only"])
    p.add_argument("--group-size", type=int)
    p.add_argument("--threads", type=int, default=2)
    opts = p.parse_args()
    torch.set_num_threads(opts.threads)
    if opts.scheme == "int4-weight-only":
        scheme = {"name": opts.scheme, "group_size": opts.group_size or 128}
    else:
        scheme = {"name": opts.scheme, **({"group_size": opts.group_size} if opts.group_size else {})}

    inputs, index = shards_of(opts.input)
    sharded = index is not None
    if sharded != opts.output.endswith(".json"):
        p.error("give an index as output for an index as input, a file for a file")
    out_dir = os.path.dirname(opts.output) or "."
    weight_map, total, quantized = {}, 0, 0
    with torch.inference_mode():
        for i, shard in enumerate(inputs):
            out = {}
            for name, t in load_file(shard).items():
                if chosen(name, t, scheme):
                    out.update(quantize(name, t, scheme))
                    quantized += 1
                else:
                    out[name] = t
            file = (f"model-{i + 1:05d}-of-{len(inputs):05d}.safetensors" if sharded
                    else os.path.basename(opts.output))
            save_file(out, os.path.join(out_dir, file), metadata={"format": "pt"})
            weight_map.update({n: file for n in out})
            total += sum(t.numel() * t.element_size() for t in out.values())
            del out
    if sharded:
        with open(opts.output, "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))},
                      f, indent=2)
    print(f"torchao {scheme}: {quantized} tensors quantized, {total / 1e6:.1f} MB written")


if __name__ == "__main__":
    main()
