#!/usr/bin/env python3
"""The torchao 0.11.0 oracle for tch-quant's calibration observers.

Every expected value in the files this script writes is torchao's own: each
case builds the torchao class it names, feeds its batches in order through
`forward` (on CPU, or CUDA with --device cuda; one intra-op thread), and records the running `min_val` and
`max_val` after the last batch and the result of `calculate_qparams`. An
exception is recorded as `{"ok": false, "stage": ..., "error": ...}`.

    oracle.py fixtures --out tests/observers/fixtures [--checkpoint PATH]
    oracle.py random --seed S --count N --out DIR [--checkpoint PATH --minilm-count M] [--device cuda]

The format is tests/parity's (cases.json + tensors.safetensors, described
in tests/parity/README.md), with observer cases:

    {"id": "random/per_channel/7", "observer": "per_channel",
     "args": {"qscheme": "per_channel_affine", "dtype": "quint8", "ch_axis": 1, ...},
     "batches": ["t0", "t1"],
     "expected": {"ok": true, "min": "t2", "max": "t3", "scale": "t4", "zero_point": "t5"}}

Observer kinds and the torchao 0.11 classes: affine_min_max
(torchao.quantization.observer.AffineQuantizedMinMaxObserver),
affine_moving_average (torchao.quantization.pt2e._affine_quantization.
AffineQuantizedMovingAverageMinMaxObserver), min_max, moving_average,
per_channel, moving_average_per_channel (torchao.quantization.pt2e.observer's
MinMaxObserver, MovingAverageMinMaxObserver, PerChannelMinMaxObserver,
MovingAveragePerChannelMinMaxObserver). A case with "deliberate" is one
torchao accepts and the crate refuses on purpose. tests/observer_parity.rs
replays these files through the crate.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections import Counter

FIXTURE_SEED = 0
FIXTURE_BUDGET = 1_000_000


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    fx = sub.add_parser("fixtures", help="the committed grid (seed 0), MiniLM slices, refusals")
    fx.add_argument("--out", required=True)
    fx.add_argument("--checkpoint", help="all-MiniLM-L6-v2's model.safetensors")
    rd = sub.add_parser("random", help="seeded random cases, and MiniLM slices with --checkpoint")
    rd.add_argument("--seed", type=int, required=True)
    rd.add_argument("--count", type=int, required=True)
    rd.add_argument("--out", required=True)
    rd.add_argument("--checkpoint")
    rd.add_argument("--minilm-count", type=int, default=0)
    rd.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="where torchao observes (the batches are moved there)")
    args = ap.parse_args(argv)

    # Imported only now, so that --help and usage errors need no torch; the
    # package checks the torch and torchao versions before importing them.
    from observer_oracle import TORCH_VERSION, TORCHAO_VERSION
    from observer_oracle.draw import fixture_cases, minilm_cases, random_cases
    from observer_oracle.evaluate import evaluate
    from oracle.store import TensorStore, write

    import torch

    warnings.filterwarnings("ignore")
    # Reductions that meet +0.0 and -0.0 return whichever their split
    # reaches first: one thread, here and in the replay.
    torch.set_num_threads(1)
    t0 = time.time()
    device = getattr(args, "device", "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("oracle.py: --device cuda but torch sees no CUDA device")
    if args.mode == "fixtures":
        seed, cases = FIXTURE_SEED, fixture_cases(FIXTURE_SEED, args.checkpoint)
    else:
        seed, cases = args.seed, random_cases(args.seed, args.count)
        if args.checkpoint and args.minilm_count:
            cases += minilm_cases(args.checkpoint, args.seed, args.minilm_count)
    store = TensorStore()
    records, stats = [], Counter()
    for case in cases:
        expected, tensors = evaluate(case["observer"], case["args"], case["batches"], device)
        for k, v in tensors.items():
            expected[k] = None if v is None else store.add(v)
        if "deliberate" in case:
            expected["deliberate"] = case["deliberate"]
        status = "deliberate" if "deliberate" in case else ("ok" if expected["ok"] else "error")
        stats[(case["observer"], status)] += 1
        records.append({"id": case["id"], "observer": case["observer"], "args": case["args"],
                        "batches": [store.add(b) for b in case["batches"]], "expected": expected})
    header = {"torch": TORCH_VERSION, "torchao": TORCHAO_VERSION, "seed": seed, "mode": args.mode,
              "device": device, "threads": torch.get_num_threads()}
    size = write(args.out, records, store, header)
    for kind in sorted({k for k, _ in stats}):
        print(f"{kind:28s} ok {stats[(kind, 'ok')]:4d}  error {stats[(kind, 'error')]:3d}  "
              f"deliberate {stats[(kind, 'deliberate')]:3d}")
    print(f"{len(records)} cases, {size / 1e6:.3f} MB, {time.time() - t0:.2f} s")
    if args.mode == "fixtures" and size > FIXTURE_BUDGET:
        print(f"oracle.py: fixtures are {size} bytes, over the {FIXTURE_BUDGET} byte budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
