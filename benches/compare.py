#!/usr/bin/env python3
"""Side by side: torchao 0.11 eager, torchao under torch.compile, and
tch-quant's reference and fused paths, on the same inputs, in one run.

    .venv/bin/python benches/compare.py [--threads 2] [--min-seconds 0.3]
                                        [--rounds 3] [--no-compile] [--layouts]
                                        [--evict-mib N]
                                        [--layouts-only]
                                        [--ops OP,..] [--json OUT]

The script draws the inputs (torch.manual_seed(0), randn), writes their raw
bytes to a temporary directory, times torchao in this process and the crate
through `cargo run --release --example bench_compare` (a child process), and
prints one table: time per call of each implementation, and ratios. Each
cell is the median over at least --min-seconds of calls, and the best such
median over --rounds interleaved rounds (every implementation once per round),
so that a burst of load from elsewhere on the machine does not decide a row.
Every crate output is checked against torchao's by a checksum of its bytes
(the `same` column). The load average before and after is printed with the
table.

Rows: 1x4096 and 4096x4096; float32 and bfloat16; per-tensor (int8
symmetric), per-channel (int8 symmetric), group 128 (uint4 asymmetric) and
group 32 (int8 asymmetric); for each, choose_qparams_affine alone, choose and
quantize through the one-pass API (`choose+quantize`) and through the two
calls users write (`choose,quantize`; torchao's time is its two calls),
quantize_affine with given qparams, dequantize_affine of the codes back
to the input's dtype (a fresh output per call), and dequantize_affine_into
(`dequantize_into`: into one output allocated once; torchao's time is its
dequantize_affine); and quantize_affine_into and
choose_qparams_and_quantize_affine_into (`quantize_into`,
`choose+quantize_into`: the codes into one output allocated once; torchao's
time is its quantize_affine, its choose and quantize). Their floor is
`convert`'s, whose output is fresh, so they may come in under 1. --ops
restricts the ops timed.

Every timed call of an input of 1 MiB or more (the 4096x4096 and layout
rows), torchao's and the crate's, yardsticks included, is preceded off the
clock by one read of a buffer twice the last-level cache (`--evict-mib`;
libtorch's amax, on the same threads), so that it starts from memory as
the first touch of a weight does: without it, a 32 MiB bfloat16 input is
partly read from a 32 MiB L3 between calls and its yardstick flatters the
read (0.33-0.45 ms against about 1 ms from memory on the AMD EPYC VMs).

The yardstick (`fused/yard`) is one bandwidth-bound read of the input: the
amax of its bytes viewed as int32 (float32) or int16 (bfloat16), `read`,
measured in the crate's process; libtorch's float `x.amax()` is shown beside
it (`amax`; for bfloat16 it is compute-bound). For dequantize the yardstick
is one read of the codes plus one write of the output into a tensor
allocated once (`zero_()`). Until 4 December 2026 a `fused/fresh` column
held the allocating dequantize against a read of the codes plus
`empty_like(x).zero_()` (a fresh output each time, which a large tensor
pays in page faults); `fused/floor` (below) replaced it.

`fused/floor` holds each fused time against the memory passes its algorithm
must make, each timed as one libtorch pass over the same bytes: `convert`
is the input (viewed as an integer of its width) converted to a fresh int8
tensor, one read of the input and one write of a codes-sized output, what a
quantize moves. The floor of `choose` is `read`; of `quantize` and the
one-pass `choose+quantize` with per-row, per-group or 2-D blocks, `convert`;
of a per-tensor `choose+quantize` (whose codes need the whole tensor's
extremes first) and of the two calls `choose,quantize`, `read` +
`convert`; of `dequantize` and `dequantize_into`, their yardstick (a
fresh output's page faults come on top: `empty_like(x).zero_()` without
huge pages measured slower than the fused allocating dequantize itself,
so it is no floor). A ratio near 1 says the remaining time is the
machine's memory traffic, not the kernels.
`cpu/wall` is the
CPU-seconds the crate's process used per wall second during the fused
calls (2.00 = both threads busy). `goal` checks the 4096x4096 rows against
issue 14's goals (GOALS below).
"""

import argparse
import json
import os
import platform
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

SHAPES = [(1, 4096), (4096, 4096)]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# name -> (block size for a (rows, cols) input, mapping, target dtype)
SCHEMES = {
    "per_tensor": (lambda r, c: [r, c], "SYMMETRIC", "int8"),
    "per_channel": (lambda r, c: [1, c], "SYMMETRIC", "int8"),
    "group128": (lambda r, c: [1, 128], "ASYMMETRIC", "uint4"),
    "group32": (lambda r, c: [1, 32], "ASYMMETRIC", "int8"),
}
TORCH_DTYPES = {"int8": torch.int8, "uint4": torch.uint4}
# Layouts off the 4096x4096 rows' beaten path (--layouts): name -> (shape,
# block size, mapping, target dtype) as functions of the element count n.
# Issue 14: none may be more than 2x slower per element than the best layout
# for the same dtype and op. Every layout input of a dtype has the same
# element count, LAYOUT_BYTES of input (twice the 32 MiB L3 cache of the
# machine the README's tables come from), so that no layout, the best
# included, is timed from cache; `rows/per_row` is the beaten path's layout at
# that size.
LAYOUT_BYTES = 64 << 20
LAYOUTS = {
    "rows/per_row": (lambda n: [n >> 12, 1 << 12], lambda n: [1, 1 << 12], "SYMMETRIC", "int8"),
    "tall/per_column": (lambda n: [n >> 1, 2], lambda n: [n >> 1, 1], "SYMMETRIC", "int8"),
    "tall8/per_column": (lambda n: [n >> 3, 8], lambda n: [n >> 3, 1], "SYMMETRIC", "int8"),
    "wide/per_column": (lambda n: [n >> 12, 1 << 12], lambda n: [n >> 12, 1], "SYMMETRIC", "int8"),
    "tiny/block2": (lambda n: [n >> 12, 1 << 12], lambda n: [1, 2], "ASYMMETRIC", "int8"),
    "4d/1x4x8x64": (lambda n: [n >> 18, 64, 64, 64], lambda n: [1, 4, 8, 64], "ASYMMETRIC", "int8"),
    "4d/2x1x16x16": (
        lambda n: [n >> 18, 64, 64, 64],
        lambda n: [2, 1, 16, 16],
        "ASYMMETRIC",
        "uint4",
    ),
}


def median_seconds(fn, min_seconds, before=None):
    """Median of at least 5 calls and at least min_seconds, after warm-up
    calls (at least two, for at least min_seconds / 2, as the crate's
    harness does: on a VM that hands freed memory back to its host, the
    first calls after a pause fault their outputs in on the host too);
    `before` (cache eviction) runs ahead of each, off the clock."""
    warm = time.perf_counter()
    calls = 0
    while calls < 2 or time.perf_counter() - warm < min_seconds / 2:
        if before is not None:
            before()
        fn()
        calls += 1
    samples = []
    start = time.perf_counter()
    while len(samples) < 5 or (
        time.perf_counter() - start < min_seconds and len(samples) < 100_000
    ):
        if before is not None:
            before()
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    samples.sort()
    return samples[len(samples) // 2]


def checksum(tensors):
    """The checksum of examples/bench_compare.rs: sum(byte[i] * w(i)) mod 2^64,
    w(i) = ((i * 0x9E3779B97F4A7C15) >> 32) | 1, combined as h * 31 + h_k."""
    h = 0
    mult = np.uint64(0x9E3779B97F4A7C15)
    for t in tensors:
        b = t.contiguous().view(-1).view(torch.uint8).numpy()
        hk = 0
        chunk = 1 << 20
        with np.errstate(over="ignore"):
            for s in range(0, b.size, chunk):
                i = np.arange(s, min(s + chunk, b.size), dtype=np.uint64)
                w = ((i * mult) >> np.uint64(32)) | np.uint64(1)
                hk = (hk + int((b[s : s + chunk].astype(np.uint64) * w).sum(dtype=np.uint64))) % (
                    1 << 64
                )
        h = (h * 31 + hk) % (1 << 64)
    return f"{h:016x}"


def torchao_fns(block, mapping, target):
    """torchao's side of each op, as functions of the input (quantize and
    dequantize close over qparams and codes chosen once)."""
    mt = MappingType[mapping]
    dt = TORCH_DTYPES[target]

    def choose(x):
        return choose_qparams_affine(x, mt, block, dt)

    def chain(x):
        scale, zp = choose_qparams_affine(x, mt, block, dt)
        return scale, zp, quantize_affine(x, block, scale, zp, dt)

    def fixed(x):
        scale, zp = choose(x)
        codes = quantize_affine(x, block, scale, zp, dt)

        def quantize(x):
            return quantize_affine(x, block, scale, zp, dt)

        def dequantize(x):
            return dequantize_affine(codes, block, scale, zp, dt, output_dtype=x.dtype)

        return quantize, dequantize

    return choose, chain, fixed


# op -> (goal against the yardstick for float32 rows, for bfloat16 rows,
# least speedup over torchao eager): issue 14's goals for 4096x4096 rows.
GOALS = {
    "choose": (1.1, 1.1, None),
    "choose+quantize": (1.3, 1.5, 20.0),
    "choose,quantize": (1.3, 1.5, 20.0),
    "choose+quantize_into": (1.3, 1.5, 20.0),
    "dequantize": (1.3, 1.3, 10.0),
    "dequantize_into": (1.3, 1.3, 10.0),
}
OPS = (
    "choose",
    "choose+quantize",
    "choose+quantize_into",
    "choose,quantize",
    "quantize",
    "quantize_into",
    "dequantize",
    "dequantize_into",
)


# The ops into an output allocated once, and the op whose outputs (and
# torchao's time) they stand against.
INTO_OPS = {
    "choose+quantize_into": "choose+quantize",
    "quantize_into": "quantize",
    "dequantize_into": "dequantize",
}


# Inputs at least this large are evicted from the caches before each timed
# call, here and in the crate's process (examples/bench_compare.rs).
EVICT_MIN_INPUT = 1 << 20


def l3_bytes():
    """The last-level cache's size from sysfs (None where it is not told)."""
    best = None
    for size in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = size.read_text().strip()
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        try:
            n = int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
        except (ValueError, IndexError):
            continue
        best = max(best or 0, n)
    return best


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def fmt_time(s):
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    return f"{s * 1e3:.2f} ms"


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x" if a / b < 100 else f"{a / b:.0f}x"


def goal_met(r):
    """'met' or 'MISS' against GOALS for the 4096x4096 rows, '-' otherwise
    (the 1x4096 rows read 8-16 KB: call overhead, not bandwidth)."""
    if not r["large"] or r["layout"] or r["op"] not in GOALS:
        return "-"
    f32_goal, bf16_goal, speedup = GOALS[r["op"]]
    bound = f32_goal if r["dtype"] == "float32" else bf16_goal
    ok = r["fused"] <= bound * r["yardstick"]
    if speedup is not None:
        ok = ok and r["eager"] >= speedup * r["fused"]
    return "met" if ok else "MISS"


def print_layouts(results):
    """Per element, each layout's fused time against the best layout of the
    same dtype and op (all of them the same size: LAYOUT_BYTES)."""
    best = {}
    for r in results:
        if r["layout"]:
            key = (r["dtype"], r["op"])
            best[key] = min(best.get(key, float("inf")), r["fused"] / r["numel"])
    print()
    header = (
        f"| {'layout':<26} | {'op':<20} | {'torchao eager':>13} | {'crate fused':>11} "
        f"| {'ns/elem':>7} | {'vs best':>7} | {'goal':>4} | same |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for r in results:
        if not r["layout"]:
            continue
        per = r["fused"] / r["numel"]
        vs = per / best[(r["dtype"], r["op"])]
        print(
            f"| {r['case']:<26} | {r['op']:<20} | {fmt_time(r['eager']):>13} "
            f"| {fmt_time(r['fused']):>11} | {per * 1e9:>7.3f} | {vs:>6.2f}x "
            f"| {'met' if vs <= 2.0 else 'MISS':>4} | {'yes' if r['same'] else 'NO':<4} |"
        )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-seconds", type=float, default=0.3)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; best median wins")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    ap.add_argument("--json", type=Path, help="also write every measurement here")
    ap.add_argument(
        "--layouts",
        action="store_true",
        help="also time LAYOUTS and print their time per element against the best layout",
    )
    ap.add_argument(
        "--layouts-only",
        action="store_true",
        help="time LAYOUTS only (implies --layouts; no 1x4096 or 4096x4096 rows)",
    )
    ap.add_argument(
        "--evict-mib",
        type=int,
        default=None,
        help="MiB read before each timed call of a 1 MiB-or-larger input, off the clock, so "
        "that it starts from memory (default: twice the last-level cache, 64 MiB if unknown; "
        "0: no eviction, inputs the cache holds are then read from it)",
    )
    ap.add_argument(
        "--ops",
        type=lambda v: v.split(","),
        default=list(OPS),
        help=f"comma-separated ops to time (default all: {','.join(OPS)})",
    )
    args = ap.parse_args()
    args.layouts = args.layouts or args.layouts_only
    unknown = [op for op in args.ops if op not in OPS]
    if unknown:
        ap.error(f"unknown ops {unknown}; the ops are {','.join(OPS)}")

    if args.evict_mib is None:
        l3 = l3_bytes()
        args.evict_mib = 2 * l3 // (1 << 20) if l3 else 64
    evict_bytes = args.evict_mib << 20
    torch.set_num_threads(args.threads)
    # Eviction on torch's own threads, as the crate's process does it.
    evict_buf = torch.ones(max(evict_bytes // 4, 1), dtype=torch.int32) if evict_bytes else None
    torch._dynamo.config.cache_size_limit = 256
    if hasattr(torch._dynamo.config, "recompile_limit"):
        torch._dynamo.config.recompile_limit = 256
    if hasattr(torch._dynamo.config, "accumulated_recompile_limit"):
        torch._dynamo.config.accumulated_recompile_limit = 4096

    print(
        f"machine: {cpu_name()}, {os.cpu_count()} CPUs; torch {torch.__version__} "
        f"({torch.backends.cpu.get_cpu_capability()}), torchao {torchao.__version__}, "
        f"{args.threads} threads everywhere",
        flush=True,
    )
    print("building the crate's bench binary (cargo build --release --example bench_compare)", flush=True)
    subprocess.run(
        ["cargo", "build", "--release", "--quiet", "--example", "bench_compare"],
        cwd=ROOT,
        check=True,
    )

    with tempfile.TemporaryDirectory(prefix="tch-quant-compare-") as tmp:
        tmp = Path(tmp)
        inputs, cases = {}, []
        if args.layouts:
            for dname, dt in DTYPES.items():
                n = LAYOUT_BYTES // torch.tensor([], dtype=dt).element_size()
                for lname, (shape_fn, block_fn, mapping, target) in LAYOUTS.items():
                    shape, block = shape_fn(n), block_fn(n)
                    torch.manual_seed(0)
                    x = torch.randn(shape).to(dt)
                    name = f"{lname}/{dname}"
                    path = tmp / f"x_{name.replace('/', '_')}.bin"
                    x.contiguous().view(-1).view(torch.uint8).numpy().tofile(path)
                    inputs[name] = x
                    cases.append(
                        {
                            "name": name,
                            "input": str(path),
                            "dtype": dname,
                            "shape": shape,
                            "block_size": block,
                            "mapping_type": mapping,
                            "target_dtype": target,
                            "layout": True,
                        }
                    )
        for rows, cols in [] if args.layouts_only else SHAPES:
            for dname, dt in DTYPES.items():
                torch.manual_seed(0)
                x = torch.randn(rows, cols).to(dt)
                path = tmp / f"x_{rows}x{cols}_{dname}.bin"
                x.contiguous().view(-1).view(torch.uint8).numpy().tofile(path)
                inputs[f"{rows}x{cols}/{dname}"] = x
                for scheme, (block_fn, mapping, target) in SCHEMES.items():
                    cases.append(
                        {
                            "name": f"{rows}x{cols}/{dname}/{scheme}",
                            "input": str(path),
                            "dtype": dname,
                            "shape": [rows, cols],
                            "block_size": block_fn(rows, cols),
                            "mapping_type": mapping,
                            "target_dtype": target,
                            "layout": False,
                        }
                    )
        for case in cases:
            case["input_key"] = case["name"] if case["layout"] else case["name"].rsplit("/", 1)[0]
        config = tmp / "cases.json"
        config.write_text(
            json.dumps(
                {
                    "threads": args.threads,
                    "min_seconds": args.min_seconds,
                    "ops": args.ops,
                    "evict_bytes": evict_bytes,
                    "cases": cases,
                }
            )
        )

        exe = ROOT / "target" / "release" / "examples" / "bench_compare"
        load_before = os.getloadavg()
        crate = {}  # (name, op, path) -> {"seconds": best median, "checksum": ...}
        torchao_times = {}  # (name, op, impl) -> best median
        compiled_fns, expected = {}, {}
        for rnd in range(args.rounds):
            print(f"round {rnd + 1}/{args.rounds}: the crate (child process)", flush=True)
            out = subprocess.run(
                [str(exe), str(config)], cwd=ROOT, check=True, capture_output=True, text=True
            )
            for line in out.stdout.splitlines():
                r = json.loads(line)
                key = (r["name"], r["op"], r["path"])
                if key not in crate or r["seconds"] < crate[key]["seconds"]:
                    crate[key] = r
            print(f"round {rnd + 1}/{args.rounds}: torchao", flush=True)
            for case in cases:
                x = inputs[case["input_key"]]
                name = case["name"]
                choose, chain, fixed = torchao_fns(
                    case["block_size"], case["mapping_type"], case["target_dtype"]
                )
                quantize, dequantize = fixed(x)
                if name not in expected:
                    expected[name] = {
                        "choose": checksum(choose(x)),
                        "choose+quantize": checksum(chain(x)),
                        "choose,quantize": checksum(chain(x)),
                        "quantize": checksum([quantize(x)]),
                        "dequantize": checksum([dequantize(x)]),
                    }
                    for into, op in INTO_OPS.items():
                        expected[name][into] = expected[name][op]
                timings = [
                    ("quantize", "eager", lambda: quantize(x)),
                    ("dequantize", "eager", lambda: dequantize(x)),
                ]
                wanted = set(args.ops)
                wanted |= {INTO_OPS[op] for op in args.ops if op in INTO_OPS}
                if "choose,quantize" in wanted:
                    wanted.add("choose+quantize")
                timings = [t for t in timings if t[0] in wanted]
                for op, fn in (("choose", choose), ("choose+quantize", chain)):
                    if op not in wanted:
                        continue
                    timings.append((op, "eager", lambda fn=fn: fn(x)))
                    if not args.no_compile and not case["layout"]:
                        if (name, op) not in compiled_fns:
                            compiled_fns[(name, op)] = torch.compile(fn, dynamic=False)
                        cfn = compiled_fns[(name, op)]
                        timings.append((op, "compiled", lambda cfn=cfn: cfn(x)))
                cold = evict_buf is not None and x.numel() * x.element_size() >= EVICT_MIN_INPUT
                before = (lambda: evict_buf.amax()) if cold else None
                for op, impl, f in timings:
                    t = median_seconds(f, args.min_seconds, before)
                    key = (name, op, impl)
                    torchao_times[key] = min(t, torchao_times.get(key, t))
        load_after = os.getloadavg()

        results = []
        for case in cases:
            name = case["name"]
            read = crate[(name, "read", "libtorch")]["seconds"]
            dq = any(op.startswith("dequantize") for op in args.ops)
            codes_read = crate[(name, "codes_read", "libtorch")]["seconds"] if dq else None
            dq_yardstick = (
                codes_read + crate[(name, "output_write", "libtorch")]["seconds"] if dq else None
            )
            dq_fresh = (
                codes_read + crate[(name, "output_fresh_write", "libtorch")]["seconds"]
                if dq
                else None
            )
            convert = crate[(name, "convert", "libtorch")]["seconds"]
            per_tensor = list(case["block_size"]) == list(case["shape"])
            floors = {
                "choose": read,
                "quantize": convert,
                "choose+quantize": read + convert if per_tensor else convert,
                "choose,quantize": read + convert,
                "quantize_into": convert,
                "choose+quantize_into": read + convert if per_tensor else convert,
                "dequantize": dq_yardstick,
                "dequantize_into": dq_yardstick,
            }
            for op in [op for op in OPS if op in args.ops]:
                ref = crate[(name, op, "reference")]
                fused = crate[(name, op, "fused")]
                eager_op = {"choose,quantize": "choose+quantize", **INTO_OPS}.get(op, op)
                results.append(
                    {
                        "case": name,
                        "dtype": case["dtype"],
                        "large": case["shape"][0] > 1,
                        "layout": case["layout"],
                        "numel": int(np.prod(case["shape"])),
                        "op": op,
                        "read": read,
                        "amax": crate[(name, "amax", "libtorch")]["seconds"],
                        "yardstick": dq_yardstick if op.startswith("dequantize") else read,
                        "convert": convert,
                        "floor": floors[op],
                        "fresh_floor": dq_fresh if op == "dequantize" else None,
                        "eager": torchao_times[(name, eager_op, "eager")],
                        "compiled": torchao_times.get((name, eager_op, "compiled")),
                        "reference": ref["seconds"],
                        "fused": fused["seconds"],
                        "cpu_per_wall": fused["cpu_per_wall"],
                        "same": ref["checksum"] == expected[name][op]
                        and fused["checksum"] == expected[name][op],
                    }
                )

    header = (
        f"| {'case':<30} | {'op':<20} | {'read':>9} | {'amax':>9} | {'convert':>9} | {'torchao eager':>13} "
        f"| {'torch.compile':>13} | {'crate ref':>10} | {'crate fused':>11} | {'fused/yard':>10} "
        f"| {'fused/floor':>11} | {'eager/fused':>11} | {'cpu/wall':>8} | {'goal':>4} | same |"
    )
    print()
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for r in results:
        r["goal"] = goal_met(r)
        if r["layout"]:
            continue
        print(
            f"| {r['case']:<30} | {r['op']:<20} | {fmt_time(r['read']):>9} | {fmt_time(r['amax']):>9} "
            f"| {fmt_time(r['convert']):>9} "
            f"| {fmt_time(r['eager']):>13} | {fmt_time(r['compiled']):>13} "
            f"| {fmt_time(r['reference']):>10} | {fmt_time(r['fused']):>11} "
            f"| {fmt_ratio(r['fused'], r['yardstick']):>10} "
            f"| {fmt_ratio(r['fused'], r['floor']):>11} | {fmt_ratio(r['eager'], r['fused']):>11} "
            f"| {r['cpu_per_wall']:>8.2f} | {r['goal']:>4} | {'yes' if r['same'] else 'NO':<4} |"
        )
    print(
        f"load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
        f"{args.rounds} rounds, best median of each; "
        + (
            f"caches evicted before each call of inputs of 1 MiB or more ({args.evict_mib} MiB read)"
            if evict_bytes
            else "no eviction (inputs the caches hold are read from them)"
        )
    )
    if args.layouts:
        print_layouts(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if not all(r["same"] for r in results):
        print("some crate outputs differ from torchao's", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
