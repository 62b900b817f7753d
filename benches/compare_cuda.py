#!/usr/bin/env python3
"""Side by side on CUDA: torchao 0.11 eager on the GPU against tch-quant on the
GPU, on the same inputs, in one run (`make gpu-check` runs it).

    .venv/bin/python benches/compare_cuda.py [--min-seconds 0.3] [--rounds 3] [--json OUT]

Needs a CUDA device, the Rust toolchain and the project's .venv with a CUDA
build of torch 2.13.0 (the pinned wheel is one, +cu130) and torchao 0.11.0.
NOTE: the GPU machine this project is lent has torch 2.11 and no Rust
toolchain in its image, so this cannot run there as provisioned; it is
written for a CUDA machine set up like the development one (`make venv`).

The script draws the inputs (torch.manual_seed(0), randn), writes their raw
bytes to a temporary directory, times torchao in this process and the crate
through `cargo run --release --example bench_compare_cuda` (a child process),
and prints one table. Every clock read on either side follows a device
synchronization (`torch.cuda.synchronize()`, `tch::Cuda::synchronize`), so a
time is that of the kernels, not of their launch. Each cell is the median
over at least --min-seconds of calls, and the best such median over
--rounds interleaved rounds. The crate's outputs are compared with
torchao's on the GPU byte for byte (`same`); CUDA parity itself is the
parity tests' job.

Rows: 1x4096 and 4096x4096; float32 and bfloat16; per-tensor and
per-channel (int8 symmetric), group 128 (uint4 asymmetric), group 32 (int8
asymmetric); choose_qparams_affine, quantize_affine, dequantize_affine, and
choose followed by quantize.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchao
from torchao.quantization.quant_primitives import (
    MappingType,
    choose_qparams_affine,
    dequantize_affine,
    quantize_affine,
)

ROOT = Path(__file__).resolve().parent.parent
# The CPU side-by-side's rows (benches/compare.py, beside this script).
from compare import DTYPES, SCHEMES, SHAPES, TORCH_DTYPES, fmt_time  # noqa: E402
OPS = ("choose", "quantize", "dequantize", "choose+quantize")


def median_seconds(fn, min_seconds):
    fn()
    fn()
    samples = []
    start = time.perf_counter()
    while len(samples) < 5 or (time.perf_counter() - start < min_seconds and len(samples) < 100_000):
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        samples.append(time.perf_counter() - t)
    samples.sort()
    return samples[len(samples) // 2]


def torchao_ops(x, block, mapping, target):
    mt, dt = MappingType[mapping], TORCH_DTYPES[target]
    scale, zp = choose_qparams_affine(x, mt, block, dt)
    q = quantize_affine(x, block, scale, zp, dt)

    def chain():
        s, z = choose_qparams_affine(x, mt, block, dt)
        return s, z, quantize_affine(x, block, s, z, dt)

    fns = {
        "choose": lambda: choose_qparams_affine(x, mt, block, dt),
        "quantize": lambda: quantize_affine(x, block, scale, zp, dt),
        "dequantize": lambda: dequantize_affine(q, block, scale, zp, dt, output_dtype=x.dtype),
        "choose+quantize": chain,
    }
    outputs = {op: fn() for op, fn in fns.items()}
    return fns, {op: out if isinstance(out, tuple) else (out,) for op, out in outputs.items()}


def same_bytes(theirs, files):
    if len(theirs) != len(files) or not all(f.exists() for f in files):
        return False
    for t, f in zip(theirs, files):
        ours = np.fromfile(f, dtype=np.uint8)
        ref = t.contiguous().cpu().view(-1).view(torch.uint8).numpy()
        if not np.array_equal(ours, ref):
            return False
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--min-seconds", type=float, default=0.3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write every measurement here")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("compare_cuda: torch.cuda.is_available() is False: this needs a CUDA device")
    device = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}, "
          f"torchao {torchao.__version__}", flush=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "bench_compare_cuda"],
                   cwd=ROOT, check=True)
    exe = ROOT / "target" / "release" / "examples" / "bench_compare_cuda"

    with tempfile.TemporaryDirectory(prefix="tch-quant-compare-cuda-") as tmp:
        tmp = Path(tmp)
        cases, inputs = [], []
        for rows, cols in SHAPES:
            for dname, dt in DTYPES.items():
                torch.manual_seed(0)
                x = torch.randn(rows, cols).to(dt)
                path = tmp / f"x_{rows}x{cols}_{dname}.bin"
                x.contiguous().view(-1).view(torch.uint8).numpy().tofile(path)
                for scheme, (block_fn, mapping, target) in SCHEMES.items():
                    cases.append({"name": f"{rows}x{cols}/{dname}/{scheme}", "input": str(path),
                                  "dtype": dname, "shape": [rows, cols],
                                  "block_size": block_fn(rows, cols), "mapping_type": mapping,
                                  "target_dtype": target})
                    inputs.append(x.to(device))
        config = tmp / "cases.json"
        config.write_text(json.dumps({"min_seconds": args.min_seconds, "out_dir": str(tmp),
                                      "cases": cases}))
        crate, theirs, same = {}, {}, {}
        for rnd in range(args.rounds):
            print(f"round {rnd + 1}/{args.rounds}: the crate (child process)", flush=True)
            out = subprocess.run([str(exe), str(config)], cwd=ROOT, check=True,
                                 capture_output=True, text=True)
            for line in out.stdout.splitlines():
                r = json.loads(line)
                key = (r["name"], r["op"])
                crate[key] = min(r["seconds"], crate.get(key, r["seconds"]))
            print(f"round {rnd + 1}/{args.rounds}: torchao", flush=True)
            for i, (case, x) in enumerate(zip(cases, inputs)):
                fns, outputs = torchao_ops(x, case["block_size"], case["mapping_type"],
                                           case["target_dtype"])
                for op in OPS:
                    key = (case["name"], op)
                    if key not in same:
                        files = [tmp / f"{i}.{op}.{k}.bin" for k in range(len(outputs[op]))]
                        same[key] = same_bytes(outputs[op], files)
                    t = median_seconds(fns[op], args.min_seconds)
                    theirs[key] = min(t, theirs.get(key, t))

    header = ("case", "op", "torchao cuda", "crate cuda", "torchao/crate", "same")
    rows = [header]
    for case in cases:
        for op in OPS:
            key = (case["name"], op)
            rows.append((case["name"], op, fmt_time(theirs[key]), fmt_time(crate[key]),
                         f"{theirs[key] / crate[key]:.2f}x", "yes" if same[key] else "NO"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    print()
    for i, r in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    if args.json:
        args.json.write_text(json.dumps([{"case": c, "op": o, "torchao": theirs[c, o],
                                          "crate": crate[c, o], "same": same[c, o]}
                                         for c, o in theirs], indent=1))
    if not all(same.values()):
        sys.exit("compare_cuda: some crate outputs differ from torchao's")


if __name__ == "__main__":
    main()
