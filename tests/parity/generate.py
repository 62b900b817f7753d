#!/usr/bin/env python3
"""The torchao 0.11.0 oracle for tch-quant's parity tests.

Every expected value in the files this script writes comes from torchao
itself, run on torch 2.13.0: this script only draws inputs, calls torchao and
records what it returned or raised. It never reimplements torchao's math.

    generate.py fixtures --out tests/parity/fixtures
    generate.py random --seed S --count N --out DIR [--device cpu|cuda]

The file format (cases.json + tensors.safetensors) and the op table are
described in tests/parity/README.md; the semantics, and the inputs on which
tch-quant deliberately refuses what torchao silently accepts, in the
"Semantics against torchao 0.11" section of the top-level README.md.
`crate_refuses` in oracle/refusals.py is the single list of those refusals.

This file is the command line; the cases, torchao's calls and the writing
live in the oracle/ package next to it, one module per function family
(oracle/__init__.py lists them).
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    fx = sub.add_parser("fixtures", help="the deterministic systematic grid (seed 0)")
    fx.add_argument("--out", required=True)
    rd = sub.add_parser("random", help="seeded random cases")
    rd.add_argument("--seed", type=int, required=True)
    rd.add_argument("--count", type=int, required=True)
    rd.add_argument("--out", required=True)
    rd.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    rd.add_argument("--ops", default=None,
                    help="comma-separated op names to draw from (default: all, weighted)")
    args = ap.parse_args(argv)

    # Imported only now, so that --help and usage errors need no torch. The
    # oracle package checks the torch and torchao versions on import, so it
    # comes before torch itself.
    from oracle import TORCH_VERSION as torch_v
    from oracle import TORCHAO_VERSION as ao_v
    from oracle.ops import FIXTURE_SEED, OPS, draw_fixture_cases, draw_random_cases
    from oracle.store import generate, print_summary, write

    import torch

    t0 = time.time()
    if args.mode == "fixtures":
        device, seed = "cpu", FIXTURE_SEED
        cases = draw_fixture_cases()
    else:
        device, seed = args.device, args.seed
        if device == "cuda" and not torch.cuda.is_available():
            sys.exit("generate.py: --device cuda but torch sees no CUDA device")
        ops = [o.strip() for o in args.ops.split(",") if o.strip()] if args.ops else None
        unknown = sorted(set(ops or []) - set(OPS))
        if unknown:
            sys.exit(f"generate.py: unknown ops {unknown}; known: {sorted(OPS)}")
        cases = draw_random_cases(seed, args.count, ops)
    records, store, stats = generate(cases, device)
    header = {"torch": torch_v, "torchao": ao_v, "seed": seed, "mode": args.mode, "device": device}
    size = write(args.out, records, store, header)
    print_summary(stats, size, time.time() - t0, len(records))
    if args.mode == "fixtures" and size > 10_000_000:
        print(f"generate.py: fixtures are {size} bytes, over the 10 MB budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
