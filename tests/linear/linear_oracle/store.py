"""Evaluating the cases and writing them in tests/parity's format
(cases.json + tensors.safetensors, every tensor as flat U8 raw bytes),
with tensors of equal dtype, shape and bytes stored once: the fixture grid
shares its weights and inputs between schemes."""

from __future__ import annotations

import hashlib
from collections import Counter

import torch
from oracle.store import TensorStore

from .evaluate import LinearCase, evaluate


class SharedStore(TensorStore):
    def __init__(self):
        super().__init__()
        self.by_content: dict[tuple, str] = {}

    def add(self, t) -> str:
        t = t.detach().to("cpu").contiguous()
        raw = t.reshape(-1).view(torch.uint8)
        digest = (str(t.dtype), tuple(t.shape), hashlib.sha256(raw.numpy().tobytes()).hexdigest())
        key = self.by_content.get(digest)
        if key is None:
            key = super().add(t)
            self.by_content[digest] = key
        return key


def generate(cases: list[LinearCase], device: str) -> tuple[list[dict], SharedStore, Counter]:
    store = SharedStore()
    records, stats = [], Counter()
    seen: Counter = Counter()
    for case in cases:
        seen[case.id] += 1
        cid = case.id if seen[case.id] == 1 else f"{case.id}/{seen[case.id] - 1}"
        expected, tensors = evaluate(case, device)
        inputs = {"weight": store.add(case.weight), "input": store.add(case.input)}
        if case.bias is not None:
            inputs["bias"] = store.add(case.bias)
        if expected["ok"]:
            expected["output"] = store.add(tensors["output"])
            expected["parts"] = {k: store.add(v) for k, v in tensors["parts"].items()}
        stats[(case.scheme.name, "ok" if expected["ok"] else "refused")] += 1
        records.append({"id": cid, "scheme": case.scheme.json(), "device": device, "dtype": case.dtype,
                        "inputs": inputs, "expected": expected})
    return records, store, stats


def print_summary(stats: Counter, size: int, elapsed: float, n: int):
    print(f"{'scheme':40s} {'ok':>6s} {'refused':>8s}")
    for name in sorted({s for s, _ in stats}):
        print(f"{name:40s} {stats[(name, 'ok')]:6d} {stats[(name, 'refused')]:8d}")
    ok = sum(v for (_, st), v in stats.items() if st == "ok")
    print(f"{'total ' + str(n):40s} {ok:6d} {n - ok:8d}")
    print(f"size {size / 1e6:.3f} MB, {elapsed:.2f} s")
