#!/usr/bin/env python3
"""The memory floor under issue 14's rows, on this machine: what libtorch's
simplest passes over the same bytes cost, against the yardstick of
benches/compare.py (one read of the input: the amax of its bytes viewed as
int32 or int16).

    .venv/bin/python benches/floor.py [--threads 2] [--reps 200]

For a 4096x4096 float32 and bfloat16 input it times, with medians of
--reps calls after two warm-up calls, in one process:
- `read`: the int-view amax of the input (the yardstick);
- `write codes`: `fill_` of an int8 tensor of the input's shape, allocated
  once (one write of the codes' bytes);
- `copy codes`: `copy_` of int8 codes into such a tensor (read + write of
  the codes' bytes);
- `cast`: `copy_` of the input's int view into such a tensor (libtorch's
  own elementwise conversion: one read of the input plus one write of the
  codes, the least a quantize can move).
Prints each as a ratio to `read`: `cast` is the floor of a quantize that
writes int8 codes, and `read + cast` that of a choose then quantize that
must read the input twice (per tensor).
"""

import argparse
import time

import torch


def median_seconds(f, reps):
    f()
    f()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=200)
    opts = ap.parse_args()
    torch.set_num_threads(opts.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {opts.threads} threads, medians of {opts.reps} calls")
    print("| input | read | write codes | copy codes | cast (read + write codes) |")
    print("|---|---|---|---|---|")
    for dtype, view in [(torch.float32, torch.int32), (torch.bfloat16, torch.int16)]:
        x = torch.randn(4096, 4096).to(dtype)
        xi = x.view(view)
        out = torch.empty(4096, 4096, dtype=torch.int8)
        codes = torch.randint(-128, 128, (4096, 4096), dtype=torch.int8)
        read = median_seconds(lambda: xi.amax(), opts.reps)
        rows = [
            median_seconds(lambda: out.fill_(3), opts.reps),
            median_seconds(lambda: out.copy_(codes), opts.reps),
            median_seconds(lambda: out.copy_(xi), opts.reps),
        ]
        cells = " | ".join(f"{r / read:.2f}x" for r in rows)
        name = str(dtype).removeprefix("torch.")
        print(f"| 4096x4096 {name} | {read * 1e3:.2f} ms (1.00x) | {cells} |")


if __name__ == "__main__":
    main()
