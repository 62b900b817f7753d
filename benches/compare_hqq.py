#!/usr/bin/env python3
"""Side by side: torchao 0.11 eager `choose_qparams_and_quantize_affine_hqq`
and tch-quant's, on the same input, in one run.

    .venv/bin/python benches/compare_hqq.py [--threads 2] [--reps 1]
                                            [--rows 4096] [--cols 4096]
                                            [--dtypes float32,bfloat16]

The script draws the input (torch.manual_seed(0), randn, cast to each
dtype), writes its raw bytes to a temporary directory, times torchao in this
process (device="cpu"; every other argument torchao's default: 4 bits,
group 64, axis 1, float16 qparams, the proximal solver with 20 iterations
and early stop) and the crate through `cargo build --release --example
bench_hqq` (a child process, HqqOptions::default()), and prints one table
row per dtype: the median of --reps calls on each side (one call takes
seconds on a 4096x4096 weight, so there is no warm-up call), their ratio,
the solver's iteration count on each side, and whether the codes, scale and
zero are the same bytes (a checksum, as benches/compare.py computes it).
Rounds alternate: torchao, then the crate, for each dtype.
"""

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchao
from torchao.quantization.quant_primitives import choose_qparams_and_quantize_affine_hqq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import checksum, cpu_name, fmt_ratio, fmt_time  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torchao_call(x):
    """torchao's result and the solver's iteration count (its verbose lines)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        codes, scale, zero, _ = choose_qparams_and_quantize_affine_hqq(x, device="cpu", verbose=True)
    iters = sum(1 for line in printed.getvalue().splitlines() if line.startswith("Iter "))
    return (codes, scale, zero), iters


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--dtypes", default="float32")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} CPUs; torch {torch.__version__}, torchao "
        f"{torchao.__version__}, {args.threads} threads on both sides",
        flush=True,
    )
    print("building the crate's bench binary (cargo build --release --example bench_hqq)", flush=True)
    subprocess.run(
        ["cargo", "build", "--release", "--quiet", "--all-features", "--example", "bench_hqq"],
        cwd=ROOT, check=True,
    )
    exe = ROOT / "target" / "release" / "examples" / "bench_hqq"
    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tch-quant-hqq-") as tmp:
        for dname in args.dtypes.split(","):
            torch.manual_seed(0)
            x = torch.randn(args.rows, args.cols).to(DTYPES[dname])
            path = Path(tmp) / f"x_{dname}.bin"
            x.contiguous().view(-1).view(torch.uint8).numpy().tofile(path)
            name = f"{args.rows}x{args.cols}/{dname}"
            samples = []
            for _ in range(args.reps):
                t = time.perf_counter()
                out, iters = torchao_call(x)
                samples.append(time.perf_counter() - t)
            samples.sort()
            eager = samples[len(samples) // 2]
            expected = checksum(out)
            del out
            config = Path(tmp) / "cases.json"
            config.write_text(json.dumps({"threads": args.threads, "reps": args.reps, "cases": [
                {"name": name, "input": str(path), "dtype": dname, "shape": [args.rows, args.cols]}]}))
            res = subprocess.run([str(exe), str(config)], cwd=ROOT, check=True, capture_output=True, text=True)
            crate = json.loads(res.stdout.splitlines()[-1])
            rows.append({"case": name, "eager": eager, "crate": crate["seconds"], "iters": iters,
                         "crate_iters": crate["iterations"], "cpu_per_wall": crate["cpu_per_wall"],
                         "same": crate["checksum"] == expected and crate["iterations"] == iters})
            path.unlink()
    load_after = os.getloadavg()
    header = (f"| {'case':<20} | {'op':<28} | {'torchao eager':>13} | {'crate':>11} | {'eager/crate':>11} "
              f"| {'iterations':>10} | {'cpu/wall':>8} | same |")
    print()
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for r in rows:
        print(f"| {r['case']:<20} | {'hqq (4 bits, group 64)':<28} | {fmt_time(r['eager']):>13} "
              f"| {fmt_time(r['crate']):>11} | {fmt_ratio(r['eager'], r['crate']):>11} "
              f"| {str(r['iters']) + '/' + str(r['crate_iters']):>10} | {r['cpu_per_wall']:>8.2f} "
              f"| {'yes' if r['same'] else 'NO':<4} |")
    print(f"load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
          f"median of {args.reps} call(s) per side")
    if not all(r["same"] for r in rows):
        print("the crate's HQQ differs from torchao's", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
