#!/usr/bin/env python3
"""Side by side: torchao 0.11's quantized nn.Linear, tch-quant's
QuantizedLinear, and the dense linear in torch and in tch, on the same
weight, bias and inputs, in one run.

    .venv/bin/python benches/compare_linear.py [--threads 2] [--min-seconds 0.2]
                                               [--rounds 3] [--m 1,32] [--k 4096]
                                               [--n 4096] [--dtype bfloat16]
                                               [--schemes NAME,..] [--no-bias]
                                               [--json OUT]

The script draws one layer (torch.manual_seed(0), nn.Linear(K, N) in the
activation dtype, so with its bias unless --no-bias) and one input per M
(randn), writes their raw bytes to a temporary directory, times torchao in
this process and the crate through `cargo run --release --example
bench_linear` (a child process), and prints one table. The schemes, and the
torchao config each reproduces, come from the crate
(`bench_linear --list`: `LinearScheme::name` and
`LinearScheme::torchao_config`), so that both sides quantize with the same
recipe. Each side quantizes the weight once per round (the `quantize`
columns); a forward is then `layer(x)` in torchao (`quantize_(linear,
config)`, under torch.no_grad) and `QuantizedLinear::f_forward` in the
crate, and the dense rows are `F.linear` and `Tensor::linear` on the
unquantized weight. Each cell is the median over at least --min-seconds of
calls, and the best such median over --rounds interleaved rounds (both
sides once per round), as in benches/compare.py. Every crate output is
checked against torchao's by a checksum of its bytes (`same`). `cpu/wall`
is the CPU-seconds per wall second each side's process used while a cell
was measured, torchao's first (2.00 = both threads busy throughout; less
means that something else on the machine had a CPU, and the cell is
suspect).

The yardstick (`read`) is one read of what the layer stores for its weight:
the amax, viewed as int32, of a buffer of `QuantizedLinear::weight_nbytes`
bytes (codes, scales, zero points, packing), and for the dense row the
amax of the bfloat16 weight viewed as int16; the footer adds libtorch's
float `amax` of the dense weight (compute-bound for bfloat16). At 4096x4096
a weight of 16 MiB or less (int8, int4, uint4) fits in the 32 MiB L3 cache
of the machine the README's table comes from when one layer is called in a
loop; the yardstick is timed the same way, so `crate/read` compares like
with like, but in a model whose layers take turns the weights come from
memory.

The `int8 via _weight_int8pack_mm` row is a candidate, not a scheme:
libtorch's `_weight_int8pack_mm` on the int8 weight-only codes and scale
(torch's op in this process on torchao's codes, tch's
`f_internal_weight_int8pack_mm` in the crate's on the crate's), then
`+= bias`. Its `same` column counts the output elements bit-identical to
torchao's Int8WeightOnlyConfig layer (a dense mm of the codes cast to the
activation dtype, times the scale).

`--int8pack-identity` runs only the identity experiment behind that row:
over seeded shapes (M in 1, 7, 32; K from 32 to 4096; N 64, 256 and 512 or
4096) and bfloat16, float16 and float32, torchao's int8 weight-only product
`mm(x, codes.t().to(dtype)) * scale` against `_weight_int8pack_mm(x, codes,
scale)` and against `_weight_int8pack_mm(x, codes, 1) * scale`, printing
per dtype and K the identical elements and whole outputs.
"""

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchao
import torchao.dtypes
import torchao.quantization
from torchao.quantization import quantize_

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import checksum, cpu_name, fmt_ratio, fmt_time, median_seconds  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXE = ROOT / "target" / "release" / "examples" / "bench_linear"
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
INT8PACK = "int8pack"
DENSE = "dense"


def torchao_config(expr):
    """The torchao config object a crate scheme names (a Python expression
    over torchao.quantization's and torchao.dtypes' names)."""
    names = {"torch": torch}
    names.update(vars(torchao.dtypes))
    names.update(vars(torchao.quantization))
    return eval(expr, names)  # noqa: S307 (the crate's own strings)


def crate_schemes():
    out = subprocess.run([str(EXE), "--list"], cwd=ROOT, check=True, capture_output=True, text=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


def tensor_file(tensor, path, dtype_name):
    """The case entry of a tensor whose raw bytes this writes to `path`."""
    tensor.detach().contiguous().view(-1).view(torch.uint8).numpy().tofile(path)
    return {"input": str(path), "dtype": dtype_name, "shape": list(tensor.shape)}


def same_elements(a, b):
    """How many elements of a and b have the same bits."""
    width = {1: torch.uint8, 2: torch.int16, 4: torch.int32}[a.element_size()]
    return int((a.view(width) == b.view(width)).sum()), a.numel()


def torchao_round(layer, schemes, inputs, min_seconds, times, expected):
    """One round of the torchao side: quantize each scheme's layer once (timed),
    then time every forward; record the best medians in `times` (with the
    CPU-seconds this process used per wall second over that measurement) and
    the first outputs' checksums in `expected`."""

    def keep(key, fn):
        cpu, wall = time.process_time(), time.perf_counter()
        seconds = median_seconds(fn, min_seconds)
        cpu_per_wall = (time.process_time() - cpu) / (time.perf_counter() - wall)
        if key not in times or seconds < times[key][0]:
            times[key] = (seconds, cpu_per_wall)

    weight, bias = layer.weight, layer.bias
    for m, x in inputs.items():
        if (DENSE, m) not in expected:
            expected[(DENSE, m)] = checksum([torch.nn.functional.linear(x, weight, bias)])
        keep((DENSE, m, "forward"), lambda: torch.nn.functional.linear(x, weight, bias))
    for s in schemes:
        name = s["name"]
        q = copy.deepcopy(layer)
        t = time.perf_counter()
        quantize_(q, torchao_config(s["torchao_config"]))
        t = time.perf_counter() - t
        if (name, None, "quantize") not in times or t < times[(name, None, "quantize")][0]:
            times[(name, None, "quantize")] = (t, None)
        for m, x in inputs.items():
            if (name, m) not in expected:
                expected[(name, m)] = checksum([q(x)])
            keep((name, m, "forward"), lambda: q(x))
        if name == "int8-weight-only":
            impl = q.weight.tensor_impl
            codes, scale = impl.int_data, impl.scale

            def int8pack(x):
                y = torch._weight_int8pack_mm(x, codes, scale)
                if bias is not None:
                    y += bias
                return y

            for m, x in inputs.items():
                if (INT8PACK, m) not in expected:
                    y = int8pack(x)
                    expected[(INT8PACK, m)] = checksum([y])
                    expected[(INT8PACK, m, "identical")] = same_elements(y, q(x))
                keep((INT8PACK, m, "forward"), lambda: int8pack(x))


def int8pack_identity():
    """The counts of the `--int8pack-identity` experiment (see the module docs)."""
    from torchao.quantization.quant_primitives import MappingType, choose_qparams_affine, quantize_affine

    print("dtype    K     | _weight_int8pack_mm(x, q, s): elements, outputs | (x, q, 1) * s: elements, outputs")
    seed = 0
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        width = torch.int32 if dtype == torch.float32 else torch.int16
        for k in (32, 64, 128, 256, 512, 1024, 2048, 4096):
            counts = [0, 0, 0, 0, 0, 0]  # same elements a, b; elements; same outputs a, b; outputs
            for m in (1, 7, 32):
                for n in (64, 256, 4096 if k >= 1024 else 512):
                    seed += 1
                    torch.manual_seed(seed)
                    w, x = torch.randn(n, k).to(dtype), torch.randn(m, k).to(dtype)
                    # Int8WeightOnlyConfig's weight: symmetric int8 per row.
                    block = [1, k]
                    scale, zp = choose_qparams_affine(
                        w, MappingType.SYMMETRIC, block, torch.int8,
                        eps=torch.finfo(torch.float32).eps, zero_point_dtype=torch.int64,
                    )
                    codes = quantize_affine(w, block, scale, zp, torch.int8)
                    ref = torch.mm(x, codes.t().to(dtype)) * scale
                    a = torch._weight_int8pack_mm(x, codes, scale)
                    b = torch._weight_int8pack_mm(x, codes, torch.ones_like(scale)) * scale
                    for i, out in enumerate((a, b)):
                        same = int((out.view(width) == ref.view(width)).sum())
                        counts[i] += same
                        counts[3 + i] += int(same == ref.numel())
                    counts[2] += ref.numel()
                    counts[5] += 1
            print(
                f"{str(dtype).split('.')[1]:<8} {k:<5} | {counts[0]}/{counts[2]}, {counts[3]}/{counts[5]} "
                f"| {counts[1]}/{counts[2]}, {counts[4]}/{counts[5]}",
                flush=True,
            )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-seconds", type=float, default=0.2)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; best median wins")
    ap.add_argument("--m", type=lambda v: [int(m) for m in v.split(",")], default=[1, 32])
    ap.add_argument("--k", type=int, default=4096, help="in_features")
    ap.add_argument("--n", type=int, default=4096, help="out_features")
    ap.add_argument("--dtype", choices=list(DTYPES), default="bfloat16")
    ap.add_argument("--schemes", type=lambda v: v.split(","), help="comma-separated scheme names (default all)")
    ap.add_argument("--no-bias", action="store_true")
    ap.add_argument("--json", type=Path, help="also write every measurement here")
    ap.add_argument(
        "--int8pack-identity",
        action="store_true",
        help="only count where _weight_int8pack_mm matches torchao's int8 weight-only product",
    )
    args = ap.parse_args()
    if args.int8pack_identity:
        torch.set_num_threads(args.threads)
        int8pack_identity()
        return

    torch.set_num_threads(args.threads)
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} CPUs; torch {torch.__version__} "
        f"({torch.backends.cpu.get_cpu_capability()}), torchao {torchao.__version__}, "
        f"{args.threads} threads everywhere",
        flush=True,
    )
    print("building the crate's bench binary (cargo build --release --example bench_linear)", flush=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "bench_linear"], cwd=ROOT, check=True)
    schemes = crate_schemes()
    if args.schemes:
        known = {s["name"] for s in schemes}
        unknown = [s for s in args.schemes if s not in known]
        if unknown:
            ap.error(f"unknown schemes {unknown}; the crate's are {','.join(sorted(known))}")
        schemes = [s for s in schemes if s["name"] in args.schemes]

    dtype = DTYPES[args.dtype]
    torch.manual_seed(0)
    layer = torch.nn.Linear(args.k, args.n, bias=not args.no_bias, dtype=dtype)
    inputs = {m: torch.randn(m, args.k).to(dtype) for m in args.m}

    with tempfile.TemporaryDirectory(prefix="tch-quant-linear-") as tmp, torch.no_grad():
        tmp = Path(tmp)
        config = tmp / "cases.json"
        config.write_text(
            json.dumps(
                {
                    "threads": args.threads,
                    "min_seconds": args.min_seconds,
                    "weight": tensor_file(layer.weight, tmp / "weight.bin", args.dtype),
                    "bias": None if layer.bias is None else tensor_file(layer.bias, tmp / "bias.bin", args.dtype),
                    "inputs": [
                        {"m": m, **tensor_file(x, tmp / f"x_{m}.bin", args.dtype)} for m, x in inputs.items()
                    ],
                    "schemes": [s["name"] for s in schemes],
                }
            )
        )

        load_before = os.getloadavg()
        crate = {}  # (scheme, m, op) -> the best measurement
        times, expected = {}, {}
        for rnd in range(args.rounds):
            print(f"round {rnd + 1}/{args.rounds}: the crate (child process)", flush=True)
            out = subprocess.run([str(EXE), str(config)], cwd=ROOT, check=True, capture_output=True, text=True)
            for line in out.stdout.splitlines():
                r = json.loads(line)
                key = (r["scheme"], r["m"], r["op"])
                if key not in crate or r["seconds"] < crate[key]["seconds"]:
                    crate[key] = r
            print(f"round {rnd + 1}/{args.rounds}: torchao", flush=True)
            torchao_round(layer, schemes, inputs, args.min_seconds, times, expected)
        load_after = os.getloadavg()

    results = []
    for name in [DENSE] + [s["name"] for s in schemes] + [INT8PACK]:
        if (name, args.m[0], "forward") not in crate or (name, args.m[0], "forward") not in times:
            continue
        for m in args.m:
            c = crate[(name, m, "forward")]
            identical = expected.get((name, m, "identical"))
            results.append(
                {
                    "layer": name,
                    "m": m,
                    "weight_nbytes": c["weight_nbytes"],
                    "read": crate[(name, None, "read")]["seconds"],
                    "torchao": times[(name, m, "forward")][0],
                    "torchao_cpu_per_wall": times[(name, m, "forward")][1],
                    "crate": c["seconds"],
                    "dense_tch": crate[(DENSE, m, "forward")]["seconds"],
                    "cpu_per_wall": c["cpu_per_wall"],
                    "same": c["checksum"] == expected[(name, m)],
                    "identical_elements": identical,
                    "quantize_torchao": times.get((name, None, "quantize"), (None,))[0],
                    "quantize_crate": crate.get((name, None, "quantize"), {}).get("seconds"),
                }
            )

    def label(r):
        if r["layer"] == DENSE:
            return f"dense {args.dtype}"
        if r["layer"] == INT8PACK:
            return "int8 via _weight_int8pack_mm"
        return r["layer"]

    def same(r):
        if r["identical_elements"] is None:
            return "yes" if r["same"] else "NO"
        # The candidate: the crate's output matches torch's same op (`same`),
        # and this many elements match torchao's Int8WeightOnlyConfig layer.
        k, n = r["identical_elements"]
        return f"{'yes' if k == n else 'NO'} {k}/{n}" + ("" if r["same"] else " (crate != torch's op)")

    header = (
        f"| {'layer':<28} | {'M':>2} | {'weight':>9} | {'read':>9} | {'torchao':>9} | {'crate':>9} "
        f"| {'torchao/crate':>13} | {'dense tch':>9} | {'crate/dense':>11} | {'crate/read':>10} "
        f"| {'cpu/wall':>9} | {'same':<4} |"
    )
    print()
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for r in results:
        print(
            f"| {label(r):<28} | {r['m']:>2} | {r['weight_nbytes'] / 2**20:>5.2f} MiB | {fmt_time(r['read']):>9} "
            f"| {fmt_time(r['torchao']):>9} | {fmt_time(r['crate']):>9} "
            f"| {fmt_ratio(r['torchao'], r['crate']):>13} | {fmt_time(r['dense_tch']):>9} "
            f"| {fmt_ratio(r['crate'], r['dense_tch']):>11} | {fmt_ratio(r['crate'], r['read']):>10} "
            f"| {r['torchao_cpu_per_wall']:>4.2f} {r['cpu_per_wall']:>4.2f} | {same(r):<4} |"
        )
    print()
    print(f"| {'scheme':<28} | {'quantize: torchao':>17} | {'crate':>9} | {'torchao/crate':>13} |")
    print(f"|{'-' * 30}|{'-' * 19}|{'-' * 11}|{'-' * 15}|")
    for r in results:
        if r["m"] == args.m[0] and r["quantize_crate"] is not None and r["quantize_torchao"] is not None:
            print(
                f"| {label(r):<28} | {fmt_time(r['quantize_torchao']):>17} | {fmt_time(r['quantize_crate']):>9} "
                f"| {fmt_ratio(r['quantize_torchao'], r['quantize_crate']):>13} |"
            )
    print(
        f"\n{args.n}x{args.k} {args.dtype} weight{'' if args.no_bias else ' and bias'}; "
        f"dense weight: read {fmt_time(crate[(DENSE, None, 'read')]['seconds'])}, "
        f"float amax {fmt_time(crate[(DENSE, None, 'amax')]['seconds'])}; "
        f"load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
        f"{args.rounds} rounds, best median of each"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if not all(r["same"] for r in results):
        print("some crate outputs differ from torchao's", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
