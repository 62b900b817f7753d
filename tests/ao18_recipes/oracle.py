#!/usr/bin/env python3
"""The torchao 0.18.0 oracle for tch-quant's 0.18 float8 primitives and
0.18 recipes (issue 12).

Every expected tensor is torchao 0.18's own: `_choose_scale_float8`,
`_quantize_affine_float8` and `_dequantize_affine_float8` from
`torchao.quantization.quant_primitives`, and the stored parts (`qdata`,
`scale`, `zero_point`) and `dequantize()` of the tensor subclass that
`quantize_(nn.Linear, Config())` puts in place of the weight, for the
version-2 configs that run on CPU: `Int8WeightOnlyConfig` (`Int8Tensor`),
`Float8WeightOnlyConfig` (`Float8Tensor`), `IntxWeightOnlyConfig`
(`IntxUnpackedToInt8Tensor`) and `Int8DynamicActivationInt8WeightConfig`
(whose weight is an `Int8Tensor` too). A call torchao refuses is recorded as
`{"ok": false, "error": ...}`.

    oracle.py fixtures --out tests/ao18_recipes/fixtures     (make ao18-recipe-fixtures)
    oracle.py live --seed S --count N --out DIR

The format is tests/parity's (cases.json + tensors.safetensors, raw bytes as
flat U8 arrays; tests/parity/README.md). Records:

    {"op": "choose_scale_float8", "inputs": {"input": t},
     "args": {"block_size": [...], "float8_dtype": "float8_e4m3fn", "scale_dtype": "float32" |
              "float8_e8m0fnu", "hp_value_lb": x | null, "hp_value_ub": x | null},
     "expected": {"ok": true, "outputs": {"scale": t}}}
    {"op": "float8_round_trip", "inputs": {"input": t, "scale": t},
     "args": {"float8_dtype": ..., "output_dtype": ...},
     "expected": {"ok": true, "outputs": {"codes": t, "dequant": t}}}
    {"op": "recipe", "inputs": {"weight": t},
     "args": {"config": "int8_weight_only" | "float8_weight_only" | "intx_weight_only" |
              "int8_dynamic_activation_int8_weight", "granularity": "per-row" | "per-tensor" |
              "per-group:G" | "per-axis:0", "weight_dtype": ..., "bits": b, "mapping": ...},
     "expected": {"ok": true, "outputs": {"qdata": t, "scale": t, "zero_point": t?, "dequant": t}}}

tests/recipe_parity_0_18.rs replays them. The script refuses to run on any
torch but 2.13.0 and any torchao but 0.18.0.
"""

import argparse
import json
import os
import random
import sys
import warnings

import torch
import torchao

TORCH_VERSION, TORCHAO_VERSION = "2.13.0", "0.18.0"
if not torch.__version__.startswith(TORCH_VERSION) or torchao.__version__ != TORCHAO_VERSION:
    sys.exit(f"oracle.py needs torch {TORCH_VERSION} and torchao {TORCHAO_VERSION}, "
             f"found {torch.__version__} and {torchao.__version__} (.venv-ao18, `make venv-ao18`)")
warnings.filterwarnings("ignore")

from safetensors.torch import save_file  # noqa: E402
from torchao.quantization import (  # noqa: E402
    Float8WeightOnlyConfig, Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig,
    IntxWeightOnlyConfig, MappingType, PerAxis, PerGroup, PerRow, PerTensor, quantize_)
from torchao.quantization.quant_primitives import (  # noqa: E402
    _choose_scale_float8, _dequantize_affine_float8, _quantize_affine_float8)

FLOATS = ["float32", "bfloat16", "float16"]
FLOAT8 = ["float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"]
SPECIALS = ["normal", "zero_row", "outlier", "tiny", "large", "nan", "inf"]


def tdt(name):
    return getattr(torch, name)


def make_data(rng, shape, dtype, special):
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    x = torch.randn(shape, generator=g) * rng.choice([0.02, 0.1, 1.0, 3.0])
    flat = x.view(-1)
    if special == "zero_row":
        x[rng.randrange(shape[0])] = 0.0
    elif special == "outlier":
        flat[rng.randrange(x.numel())] = rng.choice([-1.0, 1.0]) * rng.choice([50.0, 3000.0])
    elif special == "tiny":
        x = x * 1e-6
    elif special == "large":
        x = x * 1e4
    elif special == "nan":
        flat[rng.randrange(x.numel())] = float("nan")
    elif special == "inf":
        flat[rng.randrange(x.numel())] = rng.choice([float("inf"), float("-inf")])
    return x.to(tdt(dtype))


def granularity(text):
    kind, _, n = text.partition(":")
    return {"per-row": lambda: PerRow(), "per-tensor": lambda: PerTensor(),
            "per-group": lambda: PerGroup(int(n)), "per-axis": lambda: PerAxis(int(n))}[kind]()


def error_text(e):
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]


def eval_case(case):
    op, inp, args = case["op"], case["inputs"], case["args"]
    try:
        if op == "choose_scale_float8":
            scale_dtype = tdt(args["scale_dtype"])
            s = _choose_scale_float8(inp["input"], args["block_size"], tdt(args["float8_dtype"]),
                                     scale_dtype, args["hp_value_lb"], args["hp_value_ub"])
            return {"ok": True, "outputs": {"scale": s}}
        if op == "float8_round_trip":
            f8 = tdt(args["float8_dtype"])
            codes = _quantize_affine_float8(inp["input"], inp["scale"], f8)
            dq = _dequantize_affine_float8(codes, inp["scale"], tdt(args["output_dtype"]))
            return {"ok": True, "outputs": {"codes": codes, "dequant": dq}}
        w = inp["weight"]
        config = args["config"]
        if config == "int8_weight_only":
            cfg = Int8WeightOnlyConfig(granularity=granularity(args["granularity"]),
                                       set_inductor_config=False)
        elif config == "int8_dynamic_activation_int8_weight":
            cfg = Int8DynamicActivationInt8WeightConfig(set_inductor_config=False)
        elif config == "float8_weight_only":
            cfg = Float8WeightOnlyConfig(weight_dtype=tdt(args["weight_dtype"]),
                                         granularity=granularity(args["granularity"]),
                                         set_inductor_config=False)
        elif config == "intx_weight_only":
            cfg = IntxWeightOnlyConfig(weight_dtype=getattr(torch, f"int{args['bits']}"),
                                       granularity=granularity(args["granularity"]),
                                       mapping_type=MappingType[args["mapping"].upper()])
        else:
            raise ValueError(config)
        linear = torch.nn.Linear(w.shape[1], w.shape[0], bias=False, dtype=w.dtype)
        linear.weight = torch.nn.Parameter(w.clone(), requires_grad=False)
        quantize_(linear, cfg)
        q = linear.weight
        outputs = {"qdata": q.qdata, "scale": q.scale, "dequant": q.dequantize()}
        if getattr(q, "zero_point", None) is not None:
            outputs["zero_point"] = q.zero_point
        return {"ok": True, "outputs": outputs}
    except Exception as e:  # noqa: BLE001 - a refusal is recorded
        return {"ok": False, "error": error_text(e)}


def draw(rng, i, big):
    """Case i: one of the five ops over shapes, dtypes and special values."""
    rows = rng.choice([1, 2, 4, 8, 16] + ([64, 96] if big else []))
    cols = rng.choice([16, 32, 64, 128] + ([256, 384] if big else []))
    dtype = rng.choice(FLOATS)
    special = rng.choice(SPECIALS)
    w = make_data(rng, (rows, cols), dtype, special)
    kind = i % 6
    if kind in (0, 1):
        f8 = rng.choice(FLOAT8)
        block = rng.choice([[1, cols], [rows, cols], [1, 16], [rows, 16], [1 if rows == 1 else 2, 32]])
        block = [min(block[0], rows), min(block[1], cols)]
        lb = rng.choice([None, None, 1e-4, 0.5])
        ub = rng.choice([None, None, 100.0, 2.0])
        op = "choose_scale_float8"
        if kind == 1:
            # the scale is torchao's own, then quantized and dequantized with it
            scale = _choose_scale_float8(w, block, tdt(f8))
            return {"op": "float8_round_trip", "inputs": {"input": w, "scale": scale},
                    "args": {"float8_dtype": f8, "output_dtype": rng.choice(FLOATS)}}
        if rng.random() < 0.1:
            # torchao asserts that a block divides its dim (24 divides none
            # of the widths drawn); the crate must refuse it too
            block = [1, 24]
        return {"op": op, "inputs": {"input": w},
                "args": {"block_size": block, "float8_dtype": f8,
                         "scale_dtype": rng.choice(["float32", "float8_e8m0fnu"]),
                         "hp_value_lb": lb, "hp_value_ub": ub}}
    group = rng.choice([g for g in (16, 32, 64) if cols % g == 0])
    if kind == 2:
        args = {"config": "int8_weight_only",
                "granularity": rng.choice(["per-row", "per-tensor", f"per-group:{group}"])}
    elif kind == 3:
        args = {"config": "float8_weight_only", "weight_dtype": rng.choice(["float8_e4m3fn", "float8_e5m2"]),
                "granularity": rng.choice(["per-row", "per-tensor", f"per-group:{group}"])}
    elif kind == 4 and rng.random() < 0.05:
        # torchao's IntxWeightOnlyConfig takes PerAxis(0) only
        args = {"config": "intx_weight_only", "bits": 4, "granularity": "per-axis:1",
                "mapping": "symmetric"}
    elif kind == 4:
        args = {"config": "intx_weight_only", "bits": rng.randrange(1, 9),
                "granularity": rng.choice(["per-axis:0", f"per-group:{group}"]),
                "mapping": rng.choice(["symmetric", "asymmetric", "symmetric_no_clipping_err"])}
    else:
        args = {"config": "int8_dynamic_activation_int8_weight", "granularity": "per-row"}
    return {"op": "recipe", "inputs": {"weight": w}, "args": args}


def write(cases, out, header):
    os.makedirs(out, exist_ok=True)
    tensors, meta = {}, {}

    def put(key, t):
        t = t.detach().contiguous().cpu()
        meta[key] = {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}
        tensors[key] = t.reshape(-1).view(torch.uint8) if t.numel() else torch.zeros(0, dtype=torch.uint8)

    records = []
    for i, case in enumerate(cases):
        expected = eval_case(case)
        rec = {"id": f"{header['mode']}:{i}", "op": case["op"], "args": case["args"],
               "inputs": {}, "expected": {"ok": expected["ok"]}}
        for role, t in case["inputs"].items():
            put(f"c{i}.in.{role}", t)
            rec["inputs"][role] = f"c{i}.in.{role}"
        if expected["ok"]:
            rec["expected"]["outputs"] = {}
            for role, t in expected["outputs"].items():
                put(f"c{i}.out.{role}", t)
                rec["expected"]["outputs"][role] = f"c{i}.out.{role}"
        else:
            rec["expected"]["error"] = expected["error"]
        records.append(rec)
    save_file(tensors, os.path.join(out, "tensors.safetensors"))
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump({**header, "torch": torch.__version__, "torchao": torchao.__version__,
                   "tensors": meta, "cases": records}, f, indent=0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["fixtures", "live"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--count", type=int, default=240)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(1)
    rng = random.Random(a.seed)
    cases = [draw(rng, i, a.mode == "live") for i in range(a.count)]
    write(cases, a.out, {"mode": a.mode, "seed": a.seed})
    ok = sum(1 for c in json.load(open(os.path.join(a.out, "cases.json")))["cases"] if c["expected"]["ok"])
    print(f"ao18_recipes oracle: {a.count} cases ({ok} computed) in {a.out}")


if __name__ == "__main__":
    main()
