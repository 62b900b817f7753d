#!/usr/bin/env python3
"""`make bench-checkpoint`: `tch-quant quantize` on a sharded checkpoint
against the page-cache read of its bytes and against torchao 0.11 doing the
same work (scripts/torchao_quantize_checkpoint.py), with peak memory.

    .venv/bin/python scripts/bench_checkpoint.py CHECKPOINT_DIR --bin target/release/tch-quant \
        [--out DIR] [--scheme int4|int8]... [--torchao-check]

CHECKPOINT_DIR holds `model.safetensors.index.json` and its shards
(scripts/make_llama_checkpoint.py writes one). For each scheme
(`int4-weight-only --group-size 128`, `int8-weight-only`) the script runs
the CLI and the torchao script once each, as child processes, timing the
wall clock and taking each child's own peak RSS from `os.wait4` (not
RUSAGE_CHILDREN, which keeps the maximum over all children). Before them it
reads every shard once to warm the page cache and then times a second read
(8 MiB `readinto` calls): the yardstick for "as fast as the input can be
read". The baseline RSS is that of `tch-quant inspect` on a tiny file, a
process that has loaded libtorch and done nothing else. Both
implementations' outputs are compared tensor by tensor (same dtype, shape
and bytes; a file at a time, so memory stays bounded); with
`--torchao-check`, scripts/torchao_check.py also checks the CLI's outputs
against torchao itself (it loads whole checkpoints: memory about three times
the input).

Prints one table and the goals of issue 14: the CLI within 1.5x of the
page-cache read, peak RSS at most baseline + largest tensor + 512 MiB, and
at least 5x faster than the torchao script. The load average before and
after is printed with it (the machine may be shared). Exits 1 if the outputs
differ or a run fails; a missed goal is reported, not an error.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
from safetensors import safe_open
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMES = {
    "int4": ["--scheme", "int4-weight-only", "--group-size", "128"],
    "int8": ["--scheme", "int8-weight-only"],
}
MiB = 1 << 20


def run(cmd, log):
    """Runs cmd with stdout and stderr to log; returns (seconds, peak RSS bytes)."""
    with open(log, "w") as out:
        start = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"bench_checkpoint: {' '.join(cmd)} failed ({child.returncode}); see {log}:\n"
                 + open(log).read()[-2000:])
    return seconds, usage.ru_maxrss * 1024  # Linux reports KiB


def read_seconds(files):
    """A timed read of every file after a warming one."""
    buf = bytearray(8 * MiB)
    view = memoryview(buf)

    def read_all():
        total = 0
        for path in files:
            with open(path, "rb", buffering=0) as f:
                while n := f.readinto(view):
                    total += n
        return total

    read_all()
    start = time.perf_counter()
    total = read_all()
    return time.perf_counter() - start, total


def shard_files(index_path):
    with open(index_path) as f:
        index = json.load(f)
    folder = os.path.dirname(index_path)
    return [os.path.join(folder, f) for f in sorted(set(index["weight_map"].values()))]


def largest_tensor(files):
    best = (0, "")
    for path in files:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        for name, info in header.items():
            if name != "__metadata__":
                start, end = info["data_offsets"]
                best = max(best, (end - start, name))
    return best


def compare(ours, theirs):
    """Names of the tensors (plus 'missing'/'extra') in which two outputs differ."""
    def tensors(index_path):
        with open(index_path) as f:
            return json.load(f)["weight_map"]

    a, b = tensors(ours), tensors(theirs)
    problems = [f"only in the CLI's output: {n}" for n in sorted(set(a) - set(b))]
    problems += [f"only in torchao's output: {n}" for n in sorted(set(b) - set(a))]
    by_file = {}
    for name in set(a) & set(b):
        by_file.setdefault(a[name], []).append(name)
    for file, names in sorted(by_file.items()):
        with safe_open(os.path.join(os.path.dirname(ours), file), "pt") as fa:
            for name in sorted(names):
                with safe_open(os.path.join(os.path.dirname(theirs), b[name]), "pt") as fb:
                    x, y = fa.get_tensor(name), fb.get_tensor(name)
                if x.dtype != y.dtype or x.shape != y.shape or not torch.equal(
                        x.view(torch.uint8) if x.dim() else x, y.view(torch.uint8) if y.dim() else y):
                    problems.append(f"{name} differs")
    return problems, len(set(a) & set(b))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="directory with model.safetensors.index.json")
    p.add_argument("--bin", required=True, help="the tch-quant binary")
    p.add_argument("--out", help="where outputs go (default: CHECKPOINT/../bench-out)")
    p.add_argument("--scheme", action="append", choices=sorted(SCHEMES),
                   help="int4 and/or int8 (default both)")
    p.add_argument("--torchao-check", action="store_true",
                   help="also run scripts/torchao_check.py on the CLI's outputs")
    opts = p.parse_args()
    index = os.path.join(opts.checkpoint, "model.safetensors.index.json")
    files = shard_files(index)
    out_root = opts.out or os.path.join(os.path.dirname(os.path.abspath(opts.checkpoint)), "bench-out")
    os.makedirs(out_root, exist_ok=True)
    load_before = os.getloadavg()

    read_s, total = read_seconds(files)
    largest, largest_name = largest_tensor(files)
    with tempfile.TemporaryDirectory(dir=out_root) as tmp:
        tiny = os.path.join(tmp, "tiny.safetensors")
        save_file({"w": torch.zeros(8, 8)}, tiny)
        _, baseline = run([opts.bin, "inspect", tiny], os.path.join(tmp, "inspect.log"))

    rows, failed = [], False
    for key in opts.scheme or ["int4", "int8"]:
        flags = SCHEMES[key]
        results = {}
        for impl in ("crate", "torchao"):
            out_dir = os.path.join(out_root, f"{impl}-{key}")
            os.makedirs(out_dir, exist_ok=True)
            out_index = os.path.join(out_dir, "model.safetensors.index.json")
            if impl == "crate":
                cmd = [opts.bin, "quantize", index, "-o", out_index, *flags, "--force"]
            else:
                cmd = [sys.executable, os.path.join(HERE, "torchao_quantize_checkpoint.py"), index,
                       "-o", out_index, *flags, "--threads", "2"]
            seconds, rss = run(cmd, os.path.join(out_root, f"{impl}-{key}.log"))
            results[impl] = (seconds, rss, out_index)
        problems, compared = compare(results["crate"][2], results["torchao"][2])
        for problem in problems[:10]:
            print(f"  MISMATCH {key}: {problem}")
        failed |= bool(problems)
        print(f"{key}: {compared} output tensors compared with torchao's, "
              f"{compared - len(problems)} identical", file=sys.stderr)
        rows.append((key, results, not problems))
        if opts.torchao_check:
            check = subprocess.run([sys.executable, os.path.join(HERE, "torchao_check.py"), index,
                                    results["crate"][2]])
            failed |= check.returncode != 0

    bound = baseline + largest + 512 * MiB
    gb = total / 1e9
    print(f"\ninput: {len(files)} shards, {gb:.2f} GB; largest tensor {largest_name} "
          f"{largest / MiB:.0f} MiB; libtorch baseline RSS (tch-quant inspect) "
          f"{baseline / MiB:.0f} MiB; RSS bound {bound / MiB:.0f} MiB")
    print(f"page-cache read: {read_s:.2f} s ({gb / read_s:.2f} GB/s)\n")
    header = ("scheme", "impl", "wall", "GB/s", "peak RSS", "x read", "torchao/crate", "same")
    table = [header]
    for key, results, same in rows:
        crate_s = results["crate"][0]
        for impl, (seconds, rss, _) in results.items():
            table.append((key, impl, f"{seconds:.2f} s", f"{gb / seconds:.2f}",
                          f"{rss / MiB:.0f} MiB", f"{seconds / read_s:.1f}x",
                          f"{seconds / crate_s:.2f}x" if impl == "torchao" else "",
                          "yes" if same else "NO"))
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for i, r in enumerate(table):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print(f"\nload average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} "
          f"({os.cpu_count()} CPUs); torchao on 2 torch threads, the CLI on its default (1 libtorch "
          f"thread unless OMP_NUM_THREADS is set)")
    for key, results, _ in rows:
        crate_s, crate_rss, _ = results["crate"]
        goals = [
            ("within 1.5x of the page-cache read", crate_s <= 1.5 * read_s,
             f"{crate_s / read_s:.1f}x"),
            ("peak RSS <= baseline + largest tensor + 512 MiB", crate_rss <= bound,
             f"{crate_rss / MiB:.0f} of {bound / MiB:.0f} MiB"),
            (">= 5x faster than torchao", results["torchao"][0] >= 5 * crate_s,
             f"{results['torchao'][0] / crate_s:.2f}x"),
        ]
        for what, met, value in goals:
            print(f"goal {key}: {what}: {'met' if met else 'MISSED'} ({value})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
