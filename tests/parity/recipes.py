#!/usr/bin/env python3
"""Writes the recipe fixtures: torchao 0.11's weight-only recipes on seeded
weights, as torchao computes them, for tests/recipe_parity.rs to replay
against the library's `Recipe` / `AffineQuantizedTensor` in-process.

For every weight and every recipe variant that applies to it, the fixture
holds torchao's codes, scale and zero point (the recipe's own
`choose_qparams_affine` + `quantize_affine` arguments, transcribed from
`quant_api.py` v0.11.0 in scripts/torchao_check.py, the int4 layout's
padding included), torchao's `bitpacking.pack` shards where the recipe packs,
and torchao's `dequantize_affine` of those codes.

    python tests/parity/recipes.py --out tests/parity/fixtures/recipes.safetensors

Refuses to run on anything but torch 2.13.0 and torchao 0.11.0.
"""

import argparse
import json
import os
import sys

import torch
import torchao
from safetensors.torch import save_file
from torchao.dtypes.uintx.bitpacking import pack

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import torchao_check  # noqa: E402  (the recipes' arguments and torchao's reference path)

SEED = 20261201

# Recipe variants, as `tch_quant.scheme` records them.
SCHEMES = (
    [{"name": "int8-weight-only"}, {"name": "int8-weight-only", "group_size": 32}]
    + [{"name": "int4-weight-only", "group_size": g} for g in (32, 64, 128, 256)]
    + [{"name": "uintx-weight-only", "bits": b, "group_size": 64} for b in range(1, 9)]
    + [{"name": "uintx-weight-only", "bits": 4, "group_size": 32}]
    + [{"name": "float8-weight-only"}]
    # use_hqq=True: the weights here are below libtorch's grain size (32768
    # elements, padding included), so HQQ's error mean is not split by thread
    # count and the bits hold at any count (torch_threads records the one used)
    + [{"name": "int4-weight-only", "group_size": g, "use_hqq": True} for g in (32, 64, 128, 256)]
    + [{"name": "uintx-weight-only", "bits": b, "group_size": 64, "use_hqq": True}
       for b in range(1, 9)]
)


def weights():
    """Seeded weights with the rows real weights have: a spread, an outlier,
    a zero row, a constant row, one sign only, tiny and large magnitudes."""
    g = torch.Generator().manual_seed(SEED)
    out = {}
    for name, dtype, (rows, cols) in [("w_f32", torch.float32, (16, 512)),
                                      ("w_bf16", torch.bfloat16, (16, 256)),
                                      ("w_f16", torch.float16, (8, 256))]:
        w = torch.randn(rows, cols, generator=g) * 0.05
        w[1, 3] = 1.5
        w[2] = 0.0
        w[3] = 0.25
        w[4] = w[4].abs() + 0.01
        w[5] *= 1e-4
        w[6] *= 300.0
        out[name] = w.to(dtype)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    opts = parser.parse_args()
    if not torch.__version__.startswith("2.13.0") or torchao.__version__ != "0.11.0":
        sys.exit(f"needs torch 2.13.0 and torchao 0.11.0, found {torch.__version__} and "
                 f"{torchao.__version__}")
    tensors, cases = {}, []
    for wname, w in weights().items():
        tensors[f"weight/{wname}"] = w
        for scheme in SCHEMES:
            if w.shape[-1] % scheme.get("group_size", 1) != 0:
                continue
            args = torchao_check.recipe(scheme, w)
            hqq = scheme.get("use_hqq", False)
            if hqq:
                scheme = {**scheme, "torch_threads": torch.get_num_threads()}
            q, scale, zero_point = torchao_check.torchao_reference(w, args, scheme["name"],
                                                                   use_hqq=hqq)
            case = f"{wname}/{len(cases)}"
            tensors[f"{case}/codes"] = q
            tensors[f"{case}/scale"] = scale
            if zero_point is not None:
                tensors[f"{case}/zero_point"] = zero_point
            tensors[f"{case}/dequantized"] = torchao_check.dequantize(
                q, scale, zero_point, args, w.dtype)
            bits = {"int4-weight-only": 4}.get(scheme["name"], scheme.get("bits"))
            shards = 0
            # uintx with HQQ stores its codes plain (PlainLayout)
            packed = not (hqq and scheme["name"] == "uintx-weight-only")
            if bits is not None and bits < 8 and packed:
                for i, shard in enumerate(pack(q.to(torch.uint8), bits, dim=-1)):
                    tensors[f"{case}/shard.{i}"] = shard
                    shards += 1
            cases.append({"case": case, "weight": f"weight/{wname}", "scheme": scheme,
                          "shards": shards})
    metadata = {"torch": torch.__version__, "torchao": torchao.__version__,
                "cases": json.dumps(cases)}
    save_file({k: v.contiguous() for k, v in tensors.items()}, opts.out, metadata=metadata)
    print(f"wrote {len(cases)} recipe cases to {opts.out}")


if __name__ == "__main__":
    main()
