"""Evaluating cases with torchao and writing them: cases.json +
tensors.safetensors, the format tests/parity/README.md describes."""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from typing import Any

import torch

from .cases import Case
from .dtypes import dname
from .torchao_calls import evaluate


def json_value(v):
    """JSON has no NaN/inf: non-finite float args are written as the strings
    "nan", "inf", "-inf"."""
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, list):
        return [json_value(e) for e in v]
    return v


class TensorStore:
    """Every tensor as flat uint8 raw bytes, with its dtype and shape on the side."""

    def __init__(self):
        self.tensors: dict[str, Any] = {}
        self.meta: dict[str, dict] = {}

    def add(self, t) -> str:
        key = f"t{len(self.tensors)}"
        t = t.detach().to("cpu").contiguous()
        self.meta[key] = {"dtype": dname(t.dtype), "shape": list(t.shape)}
        self.tensors[key] = t.reshape(-1).view(torch.uint8).clone()
        return key


def generate(cases: list[Case], device: str) -> tuple[list[dict], TensorStore, Counter]:
    store = TensorStore()
    records, stats = [], Counter()
    seen: Counter = Counter()
    for case in cases:
        seen[case.id] += 1
        cid = f"{case.id}/{seen[case.id] - 1}"
        res = evaluate(case, device)
        inputs = {k: store.add(v) for k, v in case.inputs.items() if v is not None}
        expected = dict(res.expected)
        if expected["ok"]:
            expected["outputs"] = {k: (None if v is None else store.add(v)) for k, v in res.outputs.items()}
            status = "ok"
        else:
            status = "deliberate" if "deliberate" in expected else "error"
        stats[(case.op, status)] += 1
        records.append({"id": cid, "op": case.op, "inputs": inputs,
                        "args": {k: json_value(v) for k, v in case.args.items()}, "expected": expected})
    return records, store, stats


def write(out_dir: str, records, store: TensorStore, header: dict) -> int:
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    doc = dict(header, tensors=store.meta, cases=records)
    jpath, spath = os.path.join(out_dir, "cases.json"), os.path.join(out_dir, "tensors.safetensors")
    with open(jpath, "w") as f:
        json.dump(doc, f, sort_keys=True, allow_nan=False, separators=(",", ":"))
        f.write("\n")
    save_file(store.tensors, spath)
    return os.path.getsize(jpath) + os.path.getsize(spath)


def print_summary(stats: Counter, size: int, elapsed: float, n: int):
    ops = sorted({op for op, _ in stats})
    print(f"{'op':40s} {'ok':>6s} {'error':>6s} {'delib':>6s}")
    for op in ops:
        print(f"{op:40s} {stats[(op, 'ok')]:6d} {stats[(op, 'error')]:6d} {stats[(op, 'deliberate')]:6d}")
    tot = {s: sum(v for (o, st), v in stats.items() if st == s) for s in ("ok", "error", "deliberate")}
    print(f"{'total ' + str(n):40s} {tot['ok']:6d} {tot['error']:6d} {tot['deliberate']:6d}")
    print(f"size {size / 1e6:.3f} MB, {elapsed:.2f} s")
