#!/usr/bin/env python3
"""The torchao 0.18.0 oracle for tch-quant's MX and NVFP4 formats.

Every expected tensor this script writes is torchao's own, from
`torchao.prototype.mx_formats`: `mx_tensor.to_mx`, `MXTensor.to_mx(...)
.dequantize(...)`, `mx_tensor.to_dtype`, `nvfp4_tensor.nvfp4_quantize`,
`NVFP4Tensor.to_nvfp4(...)` with its `dequantize` and `get_hp_scales`
(also after `.t()`), and `per_tensor_amax_to_scale`. A call torchao
refuses is recorded as `{"ok": false, "error": ...}`.

    oracle.py fixtures --out tests/mx/fixtures
    oracle.py live --seed S --count N --out DIR [--device cuda] [--minilm PATH --minilm-count M]

`live` draws N seeded random cases over the fixture grid's space with other
shapes and values, plus M slices of all-MiniLM-L6-v2's real linear weights
when --minilm names its model.safetensors; with --device cuda the same
cases (drawn on the CPU) are evaluated on the GPU. The format is tests/parity's
(cases.json + tensors.safetensors, tests/parity/README.md). e8m0 scales are
written as their uint8 bytes (tch has no float8_e8m0fnu); packed fp4 and fp6
codes are uint8 as torchao returns them. Records:

    {"op": "mx", "inputs": {"data_hp": t},
     "args": {"elem_dtype": "fp6_e2m3", "block_size": 32, "scaling_mode": "floor",
              "out_dtypes": ["float32", ...], "transposed": bool},
     "expected": {"ok": true, "outputs": {"scale", "data", "dequant_<dtype>"...,
                  "dequant_t_<dtype>"... (to_dtype of data.t(), scale.t())}}}
    {"op": "mx_codes", "inputs": {"data_lp": t, "scale": t (uint8)},
     "args": {"elem_dtype", "block_size", "out_dtypes"}, "expected": {"outputs": {"dequant_<dtype>"...}}}
    {"op": "nvfp4", "inputs": {"data_hp": t, "per_tensor_scale": t?},
     "args": {"block_size": 16, "out_dtypes": [...], "tensor": bool, "transposed": bool},
     "expected": {"outputs": {"scale", "data", and with "tensor": "hp_scales", "dequant_<dtype>"...,
                  with "transposed": "dequant_t_<dtype>"...}}}
    {"op": "amax_to_scale", "inputs": {"amax": t}, "expected": {"outputs": {"scale"}}}

tests/mx_parity.rs replays these files through the crate. The script refuses
to run on any torch but 2.13.0 and any torchao but 0.18.0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
import warnings
from collections import Counter

REQUIRED_TORCH = "2.13.0"
REQUIRED_TORCHAO = "0.18.0"
FIXTURE_SEED = 0
FIXTURE_BUDGET = 2_000_000

ELEMS = ["float8_e4m3fn", "float8_e5m2", "fp6_e2m3", "fp6_e3m2", "float4_e2m1fn_x2"]
MODES = ["floor", "rceil", "ceil", "even"]
INPUTS = ["float32", "bfloat16"]
OUTPUTS = ["float32", "bfloat16", "float16"]
SPECIALS = ["normal", "zero_block", "neg_zero", "subnormal", "huge", "tiny", "nan", "inf", "ties",
            "pow2", "outlier", "mixed_blocks"]
MAX_POS = {"float8_e4m3fn": 448.0, "float8_e5m2": 57344.0, "fp6_e2m3": 7.5, "fp6_e3m2": 28.0,
           "float4_e2m1fn_x2": 6.0}


def load_versions() -> tuple[str, str]:
    try:
        import logging

        import torch

        # torchao 0.18 registers its enums with a pytree API torch 2.13 deprecates; its warning
        # on every import is noise in the test output.
        logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
        import torchao
    except ImportError as e:
        sys.exit(f"mx oracle: cannot import torch/torchao: {e}")
    if not torch.__version__.startswith(REQUIRED_TORCH) or torchao.__version__ != REQUIRED_TORCHAO:
        sys.exit(f"mx oracle: needs torch {REQUIRED_TORCH} + torchao {REQUIRED_TORCHAO}; found torch "
                 f"{torch.__version__}, torchao {torchao.__version__}. Refusing to run.")
    return torch.__version__.split("+")[0], torchao.__version__


def tdt(name):
    import torch

    return getattr(torch, name)


def elem_of(name):
    return name if name.startswith("fp6") else tdt(name)


def mode_of(name):
    from torchao.prototype.mx_formats.config import ScaleCalculationMode

    return ScaleCalculationMode(name)


def error_text(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]


def make_data(rng: random.Random, shape, dtype: str, special: str, elem: str = "float8_e4m3fn"):
    """A tensor of `shape` in `dtype` drawn from `rng`, with one kind of
    special value placed in it."""
    import torch

    g = torch.Generator().manual_seed(rng.randrange(2**31))
    x = torch.randn(shape, generator=g) * rng.choice([0.02, 0.3, 1.0, 10.0])
    flat = x.view(-1)
    n = flat.numel()
    if n == 0:
        return x.to(tdt(dtype))
    pick = lambda: rng.randrange(n)  # noqa: E731
    if special == "zero_block":
        k = shape[-1]
        r = rng.randrange(max(1, n // k))
        flat[r * k:(r + 1) * k] = 0.0
    elif special == "neg_zero":
        for _ in range(max(1, n // 4)):
            flat[pick()] = -0.0
        flat[: min(n, 8)] = -0.0
    elif special == "subnormal":
        x = x * rng.choice([1e-39, 1e-41, 1e-44])
    elif special == "huge":
        # near float32's and e8m0's top (2^127), and past bfloat16's range
        x = x / x.abs().max().clamp(min=1e-30) * rng.choice([3.0e38, 1.7e38, 2.0**127, 1e37])
    elif special == "tiny":
        x = x * rng.choice([1e-36, 1e-38, 2.0**-126])
    elif special == "nan":
        flat[pick()] = float("nan")
    elif special == "inf":
        flat[pick()] = rng.choice([float("inf"), float("-inf")])
    elif special == "ties":
        # half-way points between neighbouring codes of the element grid at scale 1
        step = {"float4_e2m1fn_x2": 0.25, "fp6_e2m3": 0.0625, "fp6_e3m2": 0.03125}.get(elem, 2.0**-10)
        ints = torch.randint(-40, 41, shape, generator=g).to(torch.float32)
        x = ints * step + step / 2 * torch.randint(0, 2, shape, generator=g)
        flat = x.view(-1)
        flat[pick()] = MAX_POS[elem] * rng.choice([1.0, 0.75, 1.5])
    elif special == "pow2":
        e = torch.randint(-10, 10, shape, generator=g).to(torch.float32)
        # exact powers of two, and 1.5 * 2^k (the top mantissa bit alone: CEIL and EVEN round it)
        x = torch.sign(torch.randn(shape, generator=g)) * torch.exp2(e) * rng.choice([1.0, 1.5, 1.75])
    elif special == "outlier":
        flat[pick()] = rng.choice([-1.0, 1.0]) * rng.choice([MAX_POS[elem], 1e4, 6e4, 1e6])
    elif special == "mixed_blocks":
        k = shape[-1]
        rows = max(1, n // k)
        scales = torch.exp2(torch.randint(-30, 30, (rows, 1), generator=g).to(torch.float32))
        x = (x.reshape(rows, k) * scales).reshape(shape)
    return x.to(tdt(dtype))


def mx_eval(case):
    import torch
    from torchao.prototype.mx_formats.mx_tensor import MXTensor, to_dtype, to_mx

    x, a = case["inputs"]["data_hp"], case["args"]
    elem, bs, mode = elem_of(a["elem_dtype"]), a["block_size"], mode_of(a["scaling_mode"])
    try:
        scale, data = to_mx(x, elem, bs, mode)
        q = MXTensor.to_mx(x, elem, bs, mode)
        assert torch.equal(q.scale.view(torch.uint8), scale.view(torch.uint8))
        outputs = {"scale": scale.view(torch.uint8), "data": data}
        for out in a["out_dtypes"]:
            outputs[f"dequant_{out}"] = q.dequantize(tdt(out))
            if a["transposed"]:
                outputs[f"dequant_t_{out}"] = to_dtype(data.t(), scale.t(), elem, bs, tdt(out))
    except Exception as e:  # noqa: BLE001 - any refusal is recorded
        return {"ok": False, "error": error_text(e)}
    return {"ok": True, "outputs": outputs}


def mx_codes_eval(case):
    import torch
    from torchao.prototype.mx_formats.mx_tensor import to_dtype

    d, s, a = case["inputs"]["data_lp"], case["inputs"]["scale"], case["args"]
    elem = elem_of(a["elem_dtype"])
    try:
        outputs = {f"dequant_{out}": to_dtype(d, s.view(torch.float8_e8m0fnu), elem, a["block_size"], tdt(out))
                   for out in a["out_dtypes"]}
    except Exception as e:  # noqa: BLE001
        return {"ok": False, "error": error_text(e)}
    return {"ok": True, "outputs": outputs}


def nvfp4_eval(case):
    from torchao.prototype.mx_formats.nvfp4_tensor import NVFP4Tensor, nvfp4_quantize

    x, a = case["inputs"]["data_hp"], case["args"]
    pts = case["inputs"].get("per_tensor_scale")
    try:
        scale, data = nvfp4_quantize(x, a["block_size"], pts)
        outputs = {"scale": scale, "data": data}
        if a["tensor"]:
            q = NVFP4Tensor.to_nvfp4(x, a["block_size"], pts)
            outputs["hp_scales"] = q.get_hp_scales()
            for out in a["out_dtypes"]:
                outputs[f"dequant_{out}"] = q.dequantize(tdt(out))
                if a["transposed"]:
                    outputs[f"dequant_t_{out}"] = q.t().dequantize(tdt(out))
    except Exception as e:  # noqa: BLE001
        return {"ok": False, "error": error_text(e)}
    return {"ok": True, "outputs": outputs}


def amax_eval(case):
    from torchao.prototype.mx_formats.nvfp4_tensor import per_tensor_amax_to_scale

    return {"ok": True, "outputs": {"scale": per_tensor_amax_to_scale(case["inputs"]["amax"])}}


EVAL = {"mx": mx_eval, "mx_codes": mx_codes_eval, "nvfp4": nvfp4_eval, "amax_to_scale": amax_eval}


def mx_case(x, elem, bs, mode, special, tag, out_dtypes, transposed=False):
    return {"op": "mx", "id": f"mx/{tag}/{elem}/{mode}/{special}/{list(x.shape)}/b{bs}/{str(x.dtype)[6:]}",
            "inputs": {"data_hp": x},
            "args": {"elem_dtype": elem, "block_size": bs, "scaling_mode": mode, "out_dtypes": out_dtypes,
                     "transposed": transposed and x.dim() == 2}}


def codes_case(rng, elem, shape, bs, tag):
    import torch

    g = torch.Generator().manual_seed(rng.randrange(2**31))
    n = 1
    for d in shape:
        n *= d
    if elem == "fp6_e2m3" or elem == "fp6_e3m2":
        # valid codes, and every byte (bits above the code decode as torchao wraps them)
        hi = rng.choice([64, 256])
        data = torch.randint(0, hi, shape, generator=g, dtype=torch.uint8)
        elements = n
    elif elem == "float4_e2m1fn_x2":
        data = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
        elements = 2 * n
    else:
        data = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8).view(tdt(elem))
        elements = n
    scale = torch.randint(0, 256, (elements // bs,), generator=g, dtype=torch.uint8)
    scale[: min(4, scale.numel())] = torch.tensor([0, 254, 255, 127][: min(4, scale.numel())], dtype=torch.uint8)
    return {"op": "mx_codes", "id": f"mx_codes/{tag}/{elem}/{list(shape)}/b{bs}",
            "inputs": {"data_lp": data, "scale": scale},
            "args": {"elem_dtype": elem, "block_size": bs, "out_dtypes": OUTPUTS}}


def nvfp4_case(rng, x, special, tag, pts_kind, out_dtypes, tensor=True, transposed=False, block_size=16):
    import torch

    inputs = {"data_hp": x}
    if pts_kind == "scalar":
        amax = x.float().abs().nan_to_num(posinf=0.0).amax() if x.numel() else torch.tensor(1.0)
        inputs["per_tensor_scale"] = (amax / 2688.0 * rng.choice([1.0, 0.5, 2.0])).to(torch.float32).clamp(min=1e-30)
    elif pts_kind == "expert":
        e = x.shape[0]
        g = torch.Generator().manual_seed(rng.randrange(2**31))
        inputs["per_tensor_scale"] = torch.rand(e, 1, 1, generator=g) * rng.choice([1e-3, 1e-2, 1.0]) + 1e-4
    return {"op": "nvfp4", "id": f"nvfp4/{tag}/{special}/{pts_kind}/{list(x.shape)}/{str(x.dtype)[6:]}",
            "inputs": inputs,
            "args": {"block_size": block_size, "out_dtypes": out_dtypes, "tensor": tensor and x.dim() in (2, 3),
                     "transposed": transposed and x.dim() == 2}}


def some_outputs(rng):
    k = rng.choice([1, 1, 2, 3])
    return rng.sample(OUTPUTS, k)


def fixture_cases():
    import torch

    rng = random.Random(FIXTURE_SEED)
    cases = []
    shapes = [((2, 64), 32), ((3, 2, 32), 32), ((1, 32), 16), ((2, 3, 2, 16), 8), ((4, 8), 4)]
    for mode in MODES:
        for elem in ELEMS:
            for dtype in INPUTS:
                for special in rng.sample(SPECIALS, 6):
                    shape, bs = rng.choice(shapes)
                    x = make_data(rng, shape, dtype, special, elem)
                    cases.append(mx_case(x, elem, bs, mode, special, "grid", some_outputs(rng),
                                         transposed=rng.random() < 0.3))
    # Every special once per element dtype and mode on one shape, every output.
    for elem in ELEMS:
        for special in SPECIALS:
            mode = rng.choice(MODES)
            x = make_data(rng, (2, 32), rng.choice(INPUTS), special, elem)
            cases.append(mx_case(x, elem, 32, mode, special, "special", OUTPUTS, transposed=True))
    # Edge shapes torchao accepts: empty, 1-D, odd block sizes.
    for elem in ELEMS:
        for shape, bs in [((0, 32), 32), ((3, 0), 32), ((32,), 32), ((2, 6), 3), ((1, 4), 1)]:
            x = make_data(rng, shape, "float32", "normal", elem)
            cases.append(mx_case(x, elem, bs, rng.choice(MODES), "normal", "edge", ["float32"]))
    # torchao's refusals.
    for shape, dtype, bs, elem in [((2, 64), "float16", 32, "float8_e4m3fn"), ((2, 48), "float32", 32, "fp6_e2m3"),
                                   ((2, 64), "float32", 0, "float8_e5m2"), ((2, 5), "float32", 5, "float4_e2m1fn_x2"),
                                   ((2, 64), "float64", 32, "fp6_e3m2"), ((), "float32", 1, "float8_e4m3fn")]:
        x = make_data(rng, shape, "float32", "normal").to(tdt(dtype))
        cases.append(mx_case(x, elem, bs, "floor", "normal", "refused", ["float32"]))
    # Decoding arbitrary codes and scale bytes (0, 254, 255 included).
    for elem in ELEMS:
        for shape, bs in [((2, 32), 32), ((4, 16), 8)]:
            cases.append(codes_case(rng, elem, shape, bs, "grid"))
    # NVFP4: no per-tensor scale, a 0-d one, per-expert ones.
    for dtype in INPUTS:
        for special in SPECIALS:
            shape = rng.choice([(2, 32), (4, 16), (3, 64)])
            x = make_data(rng, shape, dtype, special, "float4_e2m1fn_x2")
            cases.append(nvfp4_case(rng, x, special, "grid", rng.choice(["none", "scalar"]), some_outputs(rng),
                                    transposed=rng.random() < 0.4))
        for pts in ["none", "scalar", "expert"]:
            x = make_data(rng, (2, 3, 32), dtype, rng.choice(SPECIALS), "float4_e2m1fn_x2")
            cases.append(nvfp4_case(rng, x, "3d", "grid", pts, OUTPUTS, transposed=True))
        x = make_data(rng, (2, 2, 2, 16), dtype, "normal", "float4_e2m1fn_x2")
        cases.append(nvfp4_case(rng, x, "4d", "grid", "scalar", [], tensor=False))
        x = make_data(rng, (3, 0), dtype, "normal", "float4_e2m1fn_x2")
        cases.append(nvfp4_case(rng, x, "empty", "edge", "none", ["float32"], tensor=False))
    for shape, dtype, bs in [((2, 32), "float16", 16), ((2, 32), "float32", 32), ((2, 24), "float32", 16),
                             ((32,), "float32", 16), ((0, 32), "float32", 16)]:
        x = make_data(rng, shape, "float32", "normal").to(tdt(dtype))
        cases.append(nvfp4_case(rng, x, "normal", "refused", "none", [], tensor=False, block_size=bs))
    for dtype in ["float32", "bfloat16", "float16"]:
        for v in [0.0, 1.0, 2688.0, 3.0e38, float("inf"), float("nan"), 1e-40]:
            cases.append({"op": "amax_to_scale", "id": f"amax_to_scale/{dtype}/{v}",
                          "inputs": {"amax": torch.tensor(v).to(tdt(dtype))}, "args": {}})
    return cases


def live_cases(seed: int, count: int):
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        dtype, special = rng.choice(INPUTS), rng.choice(SPECIALS)
        r = rng.random()
        if r < 0.7:
            elem, mode = rng.choice(ELEMS), rng.choice(MODES)
            bs = rng.choice([32, 32, 16, 8, 4, 2])
            lead = rng.choice([[1], [2], [5], [2, 3], [3, 1, 2]])
            shape = tuple(lead + [bs * rng.choice([1, 2, 3, 4])])
            x = make_data(rng, shape, dtype, special, elem)
            cases.append(mx_case(x, elem, bs, mode, special, "random", some_outputs(rng),
                                 transposed=rng.random() < 0.3))
        elif r < 0.8:
            elem = rng.choice(ELEMS)
            bs = rng.choice([32, 16, 8])
            cases.append(codes_case(rng, elem, (rng.choice([1, 2, 3]), bs * rng.choice([1, 2])), bs, "random"))
        else:
            shape = rng.choice([(rng.choice([1, 2, 5, 8]), 16 * rng.choice([1, 2, 4])),
                                (rng.choice([1, 2]), rng.choice([1, 3]), 16 * rng.choice([1, 2]))])
            pts = rng.choice(["none", "scalar"] + (["expert"] if len(shape) == 3 else []))
            x = make_data(rng, shape, dtype, special, "float4_e2m1fn_x2")
            cases.append(nvfp4_case(rng, x, special, "random", pts, some_outputs(rng),
                                    transposed=rng.random() < 0.3))
    return cases


def minilm_cases(checkpoint: str, seed: int, count: int):
    """Slices of all-MiniLM-L6-v2's encoder linears (float32 in the
    checkpoint, cast to the case's dtype)."""
    from safetensors.torch import load_file

    rng = random.Random(seed ^ 0x5EED)
    sd = load_file(checkpoint)
    names = sorted(k for k, v in sd.items() if k.startswith("encoder.") and k.endswith(".weight") and v.ndim == 2)
    cases = []
    for _ in range(count):
        name = rng.choice(names)
        w = sd[name]
        rows, cols = w.shape
        n, k = rng.choice([1, 2, 4, 8]), 32 * rng.randint(1, 4)
        r0, c0 = rng.randrange(rows - n + 1), rng.randrange(cols - k + 1)
        x = w[r0:r0 + n, c0:c0 + k].to(tdt(rng.choice(INPUTS))).contiguous()
        tag = "minilm:" + name
        if rng.random() < 0.75:
            cases.append(mx_case(x, rng.choice(ELEMS), 32, rng.choice(MODES), "real", tag, some_outputs(rng),
                                 transposed=rng.random() < 0.3))
        else:
            cases.append(nvfp4_case(rng, x, "real", tag, rng.choice(["none", "scalar"]), some_outputs(rng),
                                    transposed=rng.random() < 0.3))
    return cases


def json_value(v):
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, list):
        return [json_value(e) for e in v]
    return v


class TensorStore:
    """Every tensor as flat uint8 raw bytes, with its dtype and shape on the side."""

    def __init__(self):
        self.tensors, self.meta = {}, {}

    def add(self, t) -> str:
        import torch

        key = f"t{len(self.tensors)}"
        t = t.detach().to("cpu").contiguous()
        self.meta[key] = {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}
        self.tensors[key] = t.reshape(-1).view(torch.uint8).clone()
        return key


def generate(cases, device="cpu"):
    store, records, stats, seen = TensorStore(), [], Counter(), Counter()
    for case in cases:
        seen[case["id"]] += 1
        on_device = dict(case, inputs={k: v.to(device) for k, v in case["inputs"].items()})
        expected = EVAL[case["op"]](on_device)
        if expected["ok"]:
            expected["outputs"] = {k: store.add(v) for k, v in expected["outputs"].items()}
        stats[(case["op"], "ok" if expected["ok"] else "error")] += 1
        records.append({"id": f"{case['id']}/{seen[case['id']] - 1}", "op": case["op"],
                        "inputs": {k: store.add(v) for k, v in case["inputs"].items()},
                        "args": {k: json_value(v) for k, v in case["args"].items()}, "expected": expected})
    return records, store, stats


def write(out_dir, records, store, header) -> int:
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    doc = dict(header, tensors=store.meta, cases=records)
    jpath, spath = os.path.join(out_dir, "cases.json"), os.path.join(out_dir, "tensors.safetensors")
    with open(jpath, "w") as f:
        json.dump(doc, f, sort_keys=True, allow_nan=False, separators=(",", ":"))
        f.write("\n")
    save_file(store.tensors, spath)
    return os.path.getsize(jpath) + os.path.getsize(spath)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    fx = sub.add_parser("fixtures", help="the committed grid (CPU, seed 0)")
    fx.add_argument("--out", required=True)
    lv = sub.add_parser("live", help="seeded random cases, and MiniLM slices")
    lv.add_argument("--seed", type=int, required=True)
    lv.add_argument("--count", type=int, required=True)
    lv.add_argument("--out", required=True)
    lv.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    lv.add_argument("--minilm", help="all-MiniLM-L6-v2's model.safetensors")
    lv.add_argument("--minilm-count", type=int, default=0)
    args = ap.parse_args(argv)

    torch_version, torchao_version = load_versions()
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(1)
    t0 = time.time()
    if args.mode == "fixtures":
        seed, cases = FIXTURE_SEED, fixture_cases()
    else:
        seed, cases = args.seed, live_cases(args.seed, args.count)
        if args.minilm and args.minilm_count:
            cases += minilm_cases(args.minilm, args.seed, args.minilm_count)
    device = getattr(args, "device", "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("mx oracle: --device cuda but torch.cuda.is_available() is False")
    records, store, stats = generate(cases, device)
    header = {"torch": torch_version, "torchao": torchao_version, "seed": seed, "mode": args.mode,
              "device": device, "threads": 1}
    size = write(args.out, records, store, header)
    for op in sorted({op for op, _ in stats}):
        print(f"{op:16s} ok {stats[(op, 'ok')]:5d} refused {stats[(op, 'error')]:4d}", file=sys.stderr)
    print(f"{len(records)} cases, {size / 1e6:.3f} MB, {time.time() - t0:.2f} s", file=sys.stderr)
    if args.mode == "fixtures" and size > FIXTURE_BUDGET:
        print(f"mx oracle: fixtures are {size} bytes, over the {FIXTURE_BUDGET} byte budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
