#!/usr/bin/env python3
"""The torchao 0.11.0 oracle for tch-quant's GGUF and QQQ primitives.

Every expected tensor in the files this script writes is torchao's own,
from `torchao.quantization.quant_primitives` (`choose_qparams_gguf`,
`quantize_gguf`, `dequantize_gguf`, `choose_qparams_and_quantize_affine_qqq`,
`dequantize_affine_qqq`) and from `quantize_(nn.Linear,
GGUFWeightOnlyConfig(...))` (the prototype config's stored tensors). A call
torchao refuses is recorded as `{"ok": false, "error": ...}`; a call
torchao accepts and tch-quant refuses on purpose as `{"ok": false,
"deliberate": why}`.

    oracle.py fixtures --out tests/gguf_qqq/fixtures
    oracle.py random --seed S --count N --out DIR [--minilm PATH --minilm-count M]

`random` draws N cases per family (gguf, qqq) over the fixture grid's space
with larger shapes, plus M per family of slices of all-MiniLM-L6-v2's real
linear weights when --minilm names its model.safetensors. The format is
tests/parity's (cases.json + tensors.safetensors, tests/parity/README.md);
ops and their records:

    {"op": "gguf", "inputs": {"input": t, "codes": t?},
     "args": {"block_size": [1, 32], "target_dtype": "uint4", "output_dtype": "bfloat16" | null},
     "expected": {"ok": true, "outputs": {"super_block_scale_scale", "super_block_min_scale",
                  "quantized_block_scale", "quantized_block_min", "int_data", "dequant",
                  "dequant_codes"?}}}
    {"op": "gguf_weight_only", "inputs": {"weight": t}, "args": {"n_blocks_per_superblock": 8,
     "output_dtype": ... | null}, "expected": {... the five stored parts, "dequant"}}
    {"op": "qqq", "inputs": {"w": t}, "args": {"num_bits": 4, "group_size": 128, "output_dtype": ...},
     "expected": {... "q_w", "s_group", "s_channel", "w_ref", "dequant"}}

tests/gguf_qqq_parity.rs replays these files through the crate. The
script refuses to run on any torch but 2.13.0 and any torchao but 0.11.0.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import Counter

_PARITY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "parity")
# This script shares its name with tests/parity's package, whose import
# checks the torch and torchao versions, so that directory comes first.
sys.path.insert(0, _PARITY)

FIXTURE_SEED = 0
FIXTURE_BUDGET = 4_000_000
FLOATS = ["float32", "bfloat16", "float16"]
SPECIALS = ["normal", "zero_row", "positive", "outlier", "constant", "tiny", "large"]


def tdt(name):
    import torch

    return getattr(torch, name)


def make_data(rng: random.Random, shape, dtype: str, special: str):
    """A weight of `shape` in `dtype`, drawn from `rng`'s seed, with one
    kind of special value."""
    import torch

    g = torch.Generator().manual_seed(rng.randrange(2**31))
    x = torch.randn(shape, generator=g) * rng.choice([0.02, 0.1, 1.0, 3.0])
    n = shape[0]
    r = rng.randrange(n)
    if special == "zero_row":
        x[r] = 0.0
    elif special == "positive":
        x = x.abs() + rng.choice([0.0, 0.5])
    elif special == "outlier":
        x.view(-1)[rng.randrange(x.numel())] = rng.choice([-1.0, 1.0]) * rng.choice([50.0, 300.0])
    elif special == "constant":
        x[r] = rng.choice([-0.75, 0.25, 2.0])
    elif special == "tiny":
        x = x * 1e-6
    elif special == "large":
        x = x * 1e3
    return x.to(tdt(dtype))


def error_text(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]


def eval_gguf(case):
    import torch
    from torchao.quantization.quant_primitives import choose_qparams_gguf, dequantize_gguf, quantize_gguf

    x, args = case["inputs"]["input"], case["args"]
    if not x.is_floating_point() or x.dtype == torch.float64:
        return {"ok": False, "deliberate": "tch-quant takes float32, float16 or bfloat16 inputs only"}
    block = args["block_size"]
    target = tdt(args["target_dtype"])
    if target != torch.uint4:
        return {"ok": False, "deliberate": "tch-quant refuses a target_dtype other than uint4 everywhere"}
    out_dtype = None if args["output_dtype"] is None else tdt(args["output_dtype"])
    try:
        qp = choose_qparams_gguf(x, block, target)
        int_data = quantize_gguf(x, block, target, *qp)
        dequant = dequantize_gguf(int_data, block, target, *qp, output_dtype=out_dtype)
        outputs = dict(zip(["super_block_scale_scale", "super_block_min_scale", "quantized_block_scale",
                            "quantized_block_min"], qp))
        outputs.update(int_data=int_data, dequant=dequant)
        if "codes" in case["inputs"]:
            outputs["dequant_codes"] = dequantize_gguf(case["inputs"]["codes"], block, target, *qp,
                                                       output_dtype=out_dtype)
    except Exception as e:  # noqa: BLE001 - any refusal is recorded
        return {"ok": False, "error": error_text(e)}
    if x.numel() == 0:
        return {"ok": False, "deliberate": "tch-quant refuses empty inputs: there is nothing to quantize"}
    return {"ok": True, "outputs": outputs}


def eval_gguf_weight_only(case):
    import torch
    from torchao.prototype.quantization.gguf import GGUFQuantizedTensor, GGUFWeightOnlyConfig
    from torchao.quantization import quantize_

    w, args = case["inputs"]["weight"], case["args"]
    n = args["n_blocks_per_superblock"]
    if n <= 0 or 256 % n != 0:
        return {"ok": False, "deliberate": "tch-quant refuses n_blocks_per_superblock that does not divide 256"}
    try:
        lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False, dtype=w.dtype)
        with torch.no_grad():
            lin.weight.copy_(w)
        quantize_(lin, GGUFWeightOnlyConfig(n_blocks_per_superblock=n))
        q = lin.weight
        if not isinstance(q, GGUFQuantizedTensor):
            return {"ok": False, "error": "left dense: GGUFWeightOnlyConfig quantizes 2-D weights with K % 256 == 0"}
        out_dtype = None if args["output_dtype"] is None else tdt(args["output_dtype"])
        outputs = {k: getattr(q, k) for k in ["super_block_scale_scale", "super_block_min_scale",
                                              "quantized_block_scale", "quantized_block_min", "int_data"]}
        outputs["dequant"] = q.dequantize(out_dtype)
    except Exception as e:  # noqa: BLE001
        return {"ok": False, "error": error_text(e)}
    return {"ok": True, "outputs": outputs}


def eval_qqq(case):
    import torch
    from torchao.quantization.quant_primitives import (
        choose_qparams_and_quantize_affine_qqq,
        dequantize_affine_qqq,
    )

    w, args = case["inputs"]["w"], case["args"]
    if w.is_floating_point() and w.dtype == torch.float64:
        return {"ok": False, "deliberate": "tch-quant takes float32, float16 or bfloat16 weights only"}
    out_dtype = None if args["output_dtype"] is None else tdt(args["output_dtype"])
    try:
        q_w, s_group, s_channel, w_ref = choose_qparams_and_quantize_affine_qqq(
            w, args["num_bits"], args["group_size"])
        dequant = dequantize_affine_qqq(q_w, s_group, s_channel, args["num_bits"], args["group_size"],
                                        output_dtype=out_dtype)
    except Exception as e:  # noqa: BLE001
        return {"ok": False, "error": error_text(e)}
    return {"ok": True, "outputs": {"q_w": q_w, "s_group": s_group, "s_channel": s_channel,
                                    "w_ref": w_ref, "dequant": dequant}}


EVAL = {"gguf": eval_gguf, "gguf_weight_only": eval_gguf_weight_only, "qqq": eval_qqq}


def gguf_case(rng, x, block, special, family_tag, output_dtype=None, codes=None, target="uint4"):
    inputs = {"input": x}
    if codes:
        import torch

        g = torch.Generator().manual_seed(rng.randrange(2**31))
        inputs["codes"] = torch.randint(0, 16, tuple(x.shape), generator=g, dtype=torch.uint8)
    return {"op": "gguf", "id": f"gguf/{family_tag}/{special}/{list(x.shape)}/{block}/{str(x.dtype)[6:]}",
            "inputs": inputs,
            "args": {"block_size": block, "target_dtype": target, "output_dtype": output_dtype}}


def weight_only_case(x, n, special, tag, output_dtype=None):
    return {"op": "gguf_weight_only", "id": f"gguf_weight_only/{tag}/{special}/{list(x.shape)}/n{n}",
            "inputs": {"weight": x}, "args": {"n_blocks_per_superblock": n, "output_dtype": output_dtype}}


def qqq_case(w, group_size, special, tag, output_dtype=None, num_bits=4):
    return {"op": "qqq", "id": f"qqq/{tag}/{special}/{list(w.shape)}/g{group_size}/{str(w.dtype)[6:]}",
            "inputs": {"w": w}, "args": {"num_bits": num_bits, "group_size": group_size,
                                         "output_dtype": output_dtype}}


def maybe(rng, p, values):
    return rng.choice(values) if rng.random() < p else None


def fixture_cases():
    import torch

    rng = random.Random(FIXTURE_SEED)
    cases = []
    # GGUF: every block size dividing 256 that cuts rows into super-blocks,
    # every input dtype, every special value.
    shapes = [(1, 256), (2, 256), (1, 512), (3, 256)]
    for dtype in FLOATS:
        for b in [8, 16, 32, 64, 128]:
            for shape in shapes:
                for special in rng.sample(SPECIALS, 5):
                    x = make_data(rng, shape, dtype, special)
                    cases.append(gguf_case(rng, x, [1, b], special, "grid", maybe(rng, 0.4, FLOATS),
                                           codes=rng.random() < 0.2))
    # Blocks spanning two rows: choose accepts them, quantize refuses.
    for dtype in FLOATS:
        cases.append(gguf_case(rng, make_data(rng, (2, 256), dtype, "normal"), [2, 32], "normal", "tall"))
    # torchao's asserts and failing views.
    refusals = [((2, 256), [1, 1]), ((2, 256), [1, 256]), ((1, 512), [1, 256]), ((2, 384), [1, 32]),
                ((2, 256), [1, 48]), ((2, 256), [1]), ((256,), [32]), ((2, 2, 256), [1, 1, 32]),
                ((2, 128), [1, 32]), ((2, 64), [1, 64]), ((2, 256), [2, 256]), ((2, 256), [1, 0]),
                ((4, 256), [1, 512])]
    for dtype in FLOATS:
        for shape, block in refusals:
            cases.append(gguf_case(rng, make_data(rng, shape, dtype, "normal"), block, "normal", "refused"))
    cases.append(gguf_case(rng, torch.zeros(0, 256), [1, 32], "empty", "refused"))
    cases.append(gguf_case(rng, make_data(rng, (2, 256), "float32", "normal"), [1, 32], "normal", "refused",
                           target="uint8"))
    cases.append(gguf_case(rng, torch.randint(-8, 8, (2, 256), dtype=torch.int32), [1, 32], "int", "refused"))
    cases.append(gguf_case(rng, make_data(rng, (2, 256), "float64", "normal"), [1, 32], "normal", "refused"))
    # The config's weight transform.
    for dtype in FLOATS:
        for n in [2, 4, 8, 16]:
            for shape in [(2, 256), (3, 512)]:
                special = rng.choice(SPECIALS)
                cases.append(weight_only_case(make_data(rng, shape, dtype, special), n, special, "grid",
                                              maybe(rng, 0.4, FLOATS)))
        cases.append(weight_only_case(make_data(rng, (2, 384), dtype, "normal"), 8, "normal", "dense"))
        cases.append(weight_only_case(make_data(rng, (2, 256), dtype, "normal"), 3, "normal", "refused"))
    # QQQ: per channel (-1, K, and 128 with K <= 128) and group 128.
    qshapes = {-1: [(1, 64), (3, 32), (2, 128), (4, 16), (2, 256), (5, 48), (1, 256)],
               128: [(1, 256), (2, 256), (1, 384), (2, 128), (3, 64), (4, 512), (1, 128)]}
    for dtype in FLOATS:
        for gs, shapes_ in qshapes.items():
            for shape in shapes_:
                for special in SPECIALS:
                    w = make_data(rng, shape, dtype, special)
                    cases.append(qqq_case(w, gs, special, "grid", maybe(rng, 0.5, FLOATS)))
        for shape in [(2, 96), (1, 200)]:
            w = make_data(rng, shape, dtype, rng.choice(SPECIALS))
            cases.append(qqq_case(w, shape[1], "normal", "k"))
    qrefusals = [((2, 256), 64, 4), ((2, 256), 128, 8), ((2, 256), -1, 3), ((1, 200), 128, 4),
                 ((3, 200), 128, 4), ((256,), -1, 4), ((2, 2, 128), 128, 4), ((2, 256), 256 + 128, 4)]
    for dtype in FLOATS:
        for shape, gs, bits in qrefusals:
            cases.append(qqq_case(make_data(rng, shape, dtype, "normal"), gs, "normal", "refused", num_bits=bits))
    cases.append(qqq_case(torch.zeros(0, 256), 128, "empty", "refused"))
    cases.append(qqq_case(torch.randint(-8, 8, (2, 256), dtype=torch.int32), 128, "int", "refused"))
    cases.append(qqq_case(make_data(rng, (2, 256), "float64", "normal"), -1, "normal", "refused"))
    return cases


def random_cases(seed: int, count: int):
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        dtype, special = rng.choice(FLOATS), rng.choice(SPECIALS)
        n = rng.choice([1, 2, 3, 4, 5, 8, 16])
        if rng.random() < 0.15:
            x = make_data(rng, (n, 256 * rng.choice([1, 2, 4])), dtype, special)
            cases.append(weight_only_case(x, rng.choice([1, 2, 4, 8, 16, 32]), special, "random",
                                          maybe(rng, 0.4, FLOATS)))
        else:
            b = rng.choice([2, 4, 8, 16, 32, 64, 128])
            x = make_data(rng, (n, 256 * rng.choice([1, 2, 3, 4])), dtype, special)
            cases.append(gguf_case(rng, x, [1, b], special, "random", maybe(rng, 0.4, FLOATS),
                                   codes=rng.random() < 0.2))
    for _ in range(count):
        dtype, special = rng.choice(FLOATS), rng.choice(SPECIALS)
        n = rng.choice([1, 2, 3, 4, 7, 16])
        if rng.random() < 0.5:
            w = make_data(rng, (n, 128 * rng.choice([2, 3, 4, 8])), dtype, special)
            gs = 128
        else:
            k = rng.choice([16, 48, 64, 128, 200, 256, 512])
            w = make_data(rng, (n, k), dtype, special)
            gs = rng.choice([-1, k])
        cases.append(qqq_case(w, gs, special, "random", maybe(rng, 0.5, FLOATS)))
    return cases


def minilm_cases(checkpoint: str, seed: int, count: int):
    """Slices of all-MiniLM-L6-v2's encoder linears (float32 in the
    checkpoint, cast to the case's dtype)."""
    from safetensors.torch import load_file

    rng = random.Random(seed ^ 0x5EED)
    sd = load_file(checkpoint)
    names = sorted(k for k, v in sd.items() if k.startswith("encoder.") and k.endswith(".weight") and v.ndim == 2)
    cases = []

    def slice_of(k_multiple):
        name = rng.choice(names)
        w = sd[name]
        rows, cols = w.shape
        k = k_multiple * rng.randint(1, max(1, min(cols // k_multiple, 4)))
        n = rng.choice([1, 2, 4, 8, 16])
        r0, c0 = rng.randrange(rows - n + 1), rng.randrange(cols - k + 1)
        return name, w[r0:r0 + n, c0:c0 + k].to(tdt(rng.choice(FLOATS))).contiguous()

    for _ in range(count):
        name, x = slice_of(256)
        tag = "minilm:" + name
        if rng.random() < 0.2:
            cases.append(weight_only_case(x, rng.choice([2, 4, 8, 16]), "real", tag, maybe(rng, 0.4, FLOATS)))
        else:
            cases.append(gguf_case(rng, x, [1, rng.choice([8, 16, 32, 64, 128])], "real", tag,
                                   maybe(rng, 0.4, FLOATS)))
    for _ in range(count):
        if rng.random() < 0.5:
            name, w = slice_of(128)
            gs = 128
        else:
            name, w = slice_of(rng.choice([16, 64, 96, 128]))
            gs = rng.choice([-1, w.shape[1]])
        cases.append(qqq_case(w, gs, "real", "minilm:" + name, maybe(rng, 0.5, FLOATS)))
    return cases


def generate(cases):
    from oracle.store import TensorStore, json_value

    store, records, stats, seen = TensorStore(), [], Counter(), Counter()
    for case in cases:
        seen[case["id"]] += 1
        expected = EVAL[case["op"]](case)
        if expected["ok"]:
            expected["outputs"] = {k: store.add(v) for k, v in expected["outputs"].items()}
            status = "ok"
        else:
            status = "deliberate" if "deliberate" in expected else "error"
        stats[(case["op"], status)] += 1
        records.append({"id": f"{case['id']}/{seen[case['id']] - 1}", "op": case["op"],
                        "inputs": {k: store.add(v) for k, v in case["inputs"].items()},
                        "args": {k: json_value(v) for k, v in case["args"].items()}, "expected": expected})
    return records, store, stats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    fx = sub.add_parser("fixtures", help="the committed grid (CPU, seed 0)")
    fx.add_argument("--out", required=True)
    rd = sub.add_parser("random", help="seeded random cases, and MiniLM slices")
    rd.add_argument("--seed", type=int, required=True)
    rd.add_argument("--count", type=int, required=True, help="random cases per family")
    rd.add_argument("--out", required=True)
    rd.add_argument("--minilm", help="all-MiniLM-L6-v2's model.safetensors")
    rd.add_argument("--minilm-count", type=int, default=0, help="MiniLM slices per family")
    args = ap.parse_args(argv)

    import oracle  # checks torch 2.13.0 and torchao 0.11.0 before anything else imports them
    from oracle.store import print_summary, write

    import torch

    if not hasattr(oracle, "__path__"):
        sys.exit(f"gguf_qqq oracle: `import oracle` found {oracle.__file__}, not the package in {_PARITY}")
    torch.set_num_threads(1)
    t0 = time.time()
    if args.mode == "fixtures":
        seed, cases = FIXTURE_SEED, fixture_cases()
    else:
        seed, cases = args.seed, random_cases(args.seed, args.count)
        if args.minilm and args.minilm_count:
            cases += minilm_cases(args.minilm, args.seed, args.minilm_count)
    records, store, stats = generate(cases)
    header = {"torch": oracle.TORCH_VERSION, "torchao": oracle.TORCHAO_VERSION, "seed": seed,
              "mode": args.mode, "device": "cpu", "threads": 1}
    size = write(args.out, records, store, header)
    print_summary(stats, size, time.time() - t0, len(records))
    if args.mode == "fixtures" and size > FIXTURE_BUDGET:
        print(f"oracle.py: fixtures are {size} bytes, over the {FIXTURE_BUDGET} byte budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
