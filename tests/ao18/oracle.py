#!/usr/bin/env python3
"""The torchao 0.18.0 oracle for tch-quant's 0.18 semantics (issue 12).

Every expected value in the files this script writes is torchao 0.18.0's
own, run on torch 2.13.0: the script draws inputs, calls torchao's
primitives and records what they returned or raised. It never
reimplements their math. It runs only on `.venv-ao18/bin/python` (made by
`make venv-ao18`) and refuses any other torch or torchao version.

    oracle.py fixtures --out tests/ao18/fixtures
    oracle.py live --seed S --count N --out DIR

`fixtures` writes the committed grid (every function below x float32 /
float16 / bfloat16 x mappings x code dtypes x granularities, small-scale
blocks where the 0.18 eps default matters); `live` draws N seeded random
scenarios in this one process (tests/parity_0_18.rs runs it).

Each scenario chooses qparams with one of torchao 0.18's chooses and feeds
them to the matching quantize, dequantize and fake-quantize calls, so a
scenario gives several records, one per call:

    {"id": "affine/int4/bfloat16/ASYMMETRIC/group/0", "fn": "quantize_affine",
     "inputs": {"input": "t0", "scale": "t1", "zero_point": "t2"},
     "args": {"block_size": [1, 16], "dtype": "int4", "quant_min": null, ...},
     "expected": {"ok": true, "outputs": {"codes": "t3"}}}

A call torchao refuses is recorded as {"ok": false, "error": "..."}; the
crate must refuse it too. The format of cases.json + tensors.safetensors
(raw little-endian bytes as flat U8 arrays, dtype and shape in cases.json)
is tests/parity's (tests/parity/README.md). int1..int7 codes: torchao 0.18's
public quantize ends in `.to(torch.intN)`, which libtorch cannot do, and its
dequantize asserts `codes.dtype == torch.intN`; for them the script calls
the same private functions the public ones call, minus that cast and
assertion, and stores the codes in int8 as the crate does.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time

TORCH_VERSION = "2.13.0"
TORCHAO_VERSION = "0.18.0"
FIXTURE_BUDGET = 3_000_000
FIXTURE_SEED = 0

FLOATS = ["float32", "float16", "bfloat16"]
SUB_UINT = [f"uint{b}" for b in range(1, 8)]
SUB_INT = [f"int{b}" for b in range(1, 8)]
QDTYPES = SUB_UINT + ["uint8"] + SUB_INT + ["int8", "int16", "int32"]
FLOAT8 = ["float8_e4m3fn", "float8_e5m2"]
MAPPINGS = ["SYMMETRIC", "SYMMETRIC_NO_CLIPPING_ERR", "ASYMMETRIC"]
GRANULARITIES = ["tensor", "channel", "group", "column", "block4d"]


def check_versions():
    import torch
    import torchao

    if torch.__version__.split("+")[0] != TORCH_VERSION or torchao.__version__ != TORCHAO_VERSION:
        sys.exit(f"oracle.py: needs torch {TORCH_VERSION} and torchao {TORCHAO_VERSION}, found torch "
                 f"{torch.__version__} and torchao {torchao.__version__} (run it with .venv-ao18/bin/python)")


class Store:
    """Every tensor as flat uint8 raw bytes, with its dtype and shape on the side."""

    def __init__(self):
        self.tensors, self.meta = {}, {}

    def add(self, t):
        import torch

        if t is None:
            return None
        key = f"t{len(self.tensors)}"
        t = t.detach().to("cpu").contiguous()
        self.meta[key] = {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}
        self.tensors[key] = t.reshape(-1).view(torch.uint8).clone()
        return key


def tdt(name):
    import torch

    return None if name is None else getattr(torch, name)


def bounds(q):
    import torch

    if q in FLOAT8:
        fi = torch.finfo(tdt(q))
        return float(fi.min), float(fi.max)
    if q.startswith("uint"):
        return 0, 2 ** int(q[4:]) - 1
    b = int(q[3:])
    return -(2 ** (b - 1)), 2 ** (b - 1) - 1


def storage(q):
    return "uint8" if q in SUB_UINT else "int8" if q in SUB_INT else q


# --- torchao 0.18 calls -------------------------------------------------------


def qp():
    from torchao.quantization import quant_primitives

    return quant_primitives


def choose(fn, x, a):
    m = qp()
    mt = m.MappingType[a["mapping_type"]]
    common = (x, mt, tuple(a["block_size"]), tdt(a["dtype"]), a["quant_min"], a["quant_max"], a["eps"],
              tdt(a["scale_dtype"]))
    if fn == "choose_qparams_affine":
        zp_dtype = tdt(a["zero_point_dtype"]) if a["zero_point_dtype"] else m.torch.int32
        return m.choose_qparams_affine(*common, zp_dtype, a["keepdim"])
    if fn == "choose_qparams_affine_tinygemm":
        return m._choose_qparams_affine_tinygemm(*common, tdt(a["zero_point_dtype"]))
    if fn == "choose_qparams_affine_dont_preserve_zero":
        return m._choose_qparams_affine_dont_preserve_zero(*common, tdt(a["zero_point_dtype"]))
    raise ValueError(fn)


QUANTIZE = {
    "quantize_affine": ("_quantize_affine", "_quantize_affine_no_dtype_cast"),
    "quantize_affine_tinygemm": ("_quantize_affine_tinygemm", "_quantize_affine_tinygemm_no_dtype_cast"),
    "quantize_affine_no_zero_point": ("_quantize_affine_no_zero_point",
                                      "_quantize_affine_no_zero_point_no_dtype_cast"),
}
DEQUANTIZE = {
    "dequantize_affine": ("dequantize_affine", "_dequantize_affine_no_dtype_check"),
    "dequantize_affine_tinygemm": ("_dequantize_affine_tinygemm", "_dequantize_affine_tinygemm_no_dtype_check"),
    "dequantize_affine_no_zero_point": ("_dequantize_affine_no_zero_point",
                                        "_dequantize_affine_no_zero_point_no_dtype_check"),
}


def quantize(fn, x, scale, zp, a):
    import torch

    m = qp()
    public, uncast = QUANTIZE[fn]
    q, block = a["dtype"], list(a["block_size"])
    if q in SUB_INT:
        lo, hi = m._get_and_check_qmin_qmax(tdt(q), a["quant_min"], a["quant_max"])
        return getattr(m, uncast)(x, block, scale, zp, lo, hi).to(torch.int8)
    return getattr(m, public)(x, block, scale, zp, tdt(q), a["quant_min"], a["quant_max"])


def dequantize(fn, codes, scale, zp, a):
    import torch

    m = qp()
    public, unchecked = DEQUANTIZE[fn]
    q, block, out = a["dtype"], list(a["block_size"]), tdt(a["output_dtype"])
    if q in SUB_INT:
        assert out in [torch.float32, torch.float16, torch.bfloat16], f"Unsupported output dtype: {out}"
        lo, hi = m._get_and_check_qmin_qmax(tdt(q), a["quant_min"], a["quant_max"])
        return getattr(m, unchecked)(codes, block, scale, zp, lo, hi, out)
    return getattr(m, public)(codes, tuple(block), scale, zp, tdt(q), a["quant_min"], a["quant_max"],
                              output_dtype=out)


def with_explicit_range(fn, a):
    """torchao 0.18's fake_quantize_affine_cachemask builds its mask from the
    quant_min/quant_max it was given (`q >= None` raises without them), so
    its calls pass the dtype's range explicitly."""
    if fn != "fake_quantize_affine_cachemask":
        return a
    lo, hi = bounds(a["dtype"])
    return dict(a, quant_min=lo if a["quant_min"] is None else a["quant_min"],
                quant_max=hi if a["quant_max"] is None else a["quant_max"])


def fake(fn, x, scale, zp, a):
    m = qp()
    f = m._fake_quantize_affine if fn == "fake_quantize_affine" else m._fake_quantize_affine_cachemask
    r = f(x, tuple(a["block_size"]), scale, zp, tdt(a["dtype"]), a["quant_min"], a["quant_max"],
          m.ZeroPointDomain[a["zero_point_domain"]])
    return {"values": r} if fn == "fake_quantize_affine" else {"values": r[0], "mask": r[1]}


def with_min_max(mn, mx, a):
    m = qp()
    return m.choose_qparams_affine_with_min_max(
        mn, mx, m.MappingType[a["mapping_type"]], tuple(a["block_size"]), tdt(a["dtype"]), a["quant_min"],
        a["quant_max"], a["eps"], tdt(a["scale_dtype"]), tdt(a["zero_point_dtype"]))


# --- scenarios ----------------------------------------------------------------


def block_for(gran, shape):
    r, c = shape[0], shape[-1]
    if gran == "block4d":
        return [1, shape[1], 2, shape[3]]
    return {"tensor": [r, c], "channel": [1, c], "group": [1, 16], "column": [r, 1]}[gran]


def draw_input(rng, dtype, gran, scale_kind):
    """An input of `dtype` for granularity `gran`; `scale_kind` picks the
    magnitudes: normal, tiny (blocks whose range is below the 0.11 eps),
    positive, or mixed blocks (zero, constant, tiny, normal rows)."""
    import torch

    shape = [2, 3, 4, 8] if gran == "block4d" else [4, 32]
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    tiny = {"float32": 1e-30, "bfloat16": 1e-30, "float16": 2e-4}[dtype]
    if scale_kind == "tiny":
        x = x * tiny
    elif scale_kind == "positive":
        x = x.abs() + 0.5
    elif scale_kind == "mixed":
        flat = x.view(shape[0], -1)
        flat[0] = 0.0
        if shape[0] > 1:
            flat[1] = 0.75
        if shape[0] > 2:
            flat[2] *= tiny
        if shape[0] > 3:
            flat[3] *= 100.0
    else:
        x = x * rng.choice([1.0, 0.02, 30.0])
    return x.to(tdt(dtype))


def base_args(rng, q, block, mapping, keepdim=False):
    lo, hi = bounds(q)
    a = {"block_size": block, "dtype": q, "mapping_type": mapping, "quant_min": None, "quant_max": None,
         "eps": None, "scale_dtype": None, "zero_point_dtype": None, "keepdim": keepdim}
    if q not in FLOAT8 and hi - lo >= 3 and rng.random() < 0.15:
        a["quant_min"], a["quant_max"] = lo + 1, hi - 1
    if rng.random() < 0.08:
        a["eps"] = 1e-6
    return a


class Recorder:
    def __init__(self):
        self.store, self.records, self.ok, self.refused = Store(), [], 0, 0

    def call(self, cid, fn, inputs, args, run):
        keys = {k: self.store.add(v) for k, v in inputs.items()}
        try:
            outputs = run()
        except Exception as e:  # noqa: BLE001 - the refusal is the record
            self.refused += 1
            self.records.append({"id": cid, "fn": fn, "inputs": keys, "args": args,
                                 "expected": {"ok": False, "error": f"{type(e).__name__}: {e}"[:300]}})
            return None
        self.ok += 1
        self.records.append({"id": cid, "fn": fn, "inputs": keys, "args": args,
                             "expected": {"ok": True,
                                          "outputs": {k: self.store.add(v) for k, v in outputs.items()}}})
        return outputs


def wide_codes(rng, q, shape):
    """Codes drawn over the dtype's whole range (int16/int32 codes that
    bfloat16 and float16 do not hold exactly)."""
    import torch

    lo, hi = bounds(q)
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    u = torch.rand(shape, generator=g, dtype=torch.float64)
    return (lo + (u * (hi - lo)).floor()).clamp(lo, hi).to(tdt(storage(q)))


def scenario(rec, rng, cid, family, q, dtype, mapping, gran, scale_kind):
    import torch

    x = draw_input(rng, dtype, gran, scale_kind)
    block = block_for(gran, list(x.shape))
    out = rng.choice(FLOATS)
    if family == "affine":
        keepdim = rng.random() < 0.3
        a = base_args(rng, q, block, mapping, keepdim)
        if rng.random() < 0.15:
            a["zero_point_dtype"] = rng.choice(["float32", "int64", "int16"])
        if rng.random() < 0.1:
            a["scale_dtype"] = rng.choice(["float32", "bfloat16"])
        r = rec.call(cid, "choose_qparams_affine", {"input": x}, a, lambda: dict(zip(("scale", "zero_point"),
                                                                                   choose("choose_qparams_affine",
                                                                                          x, a))))
        if r is None:
            return
        scale, zp = r["scale"], r["zero_point"]
        qa = {k: a[k] for k in ("block_size", "dtype", "quant_min", "quant_max")}
        codes = rec.call(cid, "quantize_affine", {"input": x, "scale": scale, "zero_point": zp}, qa,
                         lambda: {"codes": quantize("quantize_affine", x, scale, zp, qa)})
        da = dict(qa, output_dtype=out)
        if codes is not None:
            c = codes["codes"]
            rec.call(cid, "dequantize_affine", {"input": c, "scale": scale, "zero_point": zp}, da,
                     lambda: {"values": dequantize("dequantize_affine", c, scale, zp, da)})
            if rng.random() < 0.3:
                rec.call(cid + "/nozp", "dequantize_affine", {"input": c, "scale": scale, "zero_point": None}, da,
                         lambda: {"values": dequantize("dequantize_affine", c, scale, None, da)})
        if q not in FLOAT8 and (q in ("int16", "int32", "uint8", "int8") or rng.random() < 0.3):
            # Codes and zero points over the dtype's whole range, into a
            # 16-bit float: where 0.18's subtraction in the output dtype
            # rounds other than 0.11's int32 one.
            w = wide_codes(rng, q, list(x.shape))
            zw = None if zp is None else wide_codes(rng, q, list(zp.shape)).to(torch.int32)
            wa = dict(qa, output_dtype=rng.choice(["bfloat16", "float16"]))
            rec.call(cid + "/wide", "dequantize_affine", {"input": w, "scale": scale, "zero_point": zw}, wa,
                     lambda: {"values": dequantize("dequantize_affine", w, scale, zw, wa)})
        fn = rng.choice(["fake_quantize_affine", "fake_quantize_affine_cachemask"])
        fa = with_explicit_range(fn, dict(qa, zero_point_domain="INT"))
        rec.call(cid, fn, {"input": x, "scale": scale, "zero_point": zp}, fa, lambda: fake(fn, x, scale, zp, fa))
    elif family in ("tinygemm", "dont_preserve_zero"):
        fn = f"choose_qparams_affine_{family}"
        a = base_args(rng, q, block, "ASYMMETRIC")
        if rng.random() < 0.15:
            a["zero_point_dtype"] = "float32" if family == "tinygemm" else "int64"
        r = rec.call(cid, fn, {"input": x}, a, lambda: dict(zip(("scale", "zero_point"), choose(fn, x, a))))
        if r is None:
            return
        scale, zp = r["scale"], r["zero_point"]
        qa = {k: a[k] for k in ("block_size", "dtype", "quant_min", "quant_max")}
        qfn = "quantize_affine_tinygemm" if family == "tinygemm" else "quantize_affine"
        dfn = "dequantize_affine_tinygemm" if family == "tinygemm" else "dequantize_affine"
        codes = rec.call(cid, qfn, {"input": x, "scale": scale, "zero_point": zp}, qa,
                         lambda: {"codes": quantize(qfn, x, scale, zp, qa)})
        da = dict(qa, output_dtype=out)
        if codes is not None:
            c = codes["codes"]
            rec.call(cid, dfn, {"input": c, "scale": scale, "zero_point": zp}, da,
                     lambda: {"values": dequantize(dfn, c, scale, zp, da)})
            if family == "tinygemm" and rng.random() < 0.2:
                rec.call(cid + "/nozp", dfn, {"input": c, "scale": scale, "zero_point": None}, da,
                         lambda: {"values": dequantize(dfn, c, scale, None, da)})
        if family == "tinygemm":
            fa = dict(qa, zero_point_domain="FLOAT")
            rec.call(cid, "fake_quantize_affine", {"input": x, "scale": scale, "zero_point": zp}, fa,
                     lambda: fake("fake_quantize_affine", x, scale, zp, fa))
    elif family == "no_zero_point":
        a = base_args(rng, q, block, "SYMMETRIC")
        scale, _ = choose("choose_qparams_affine", x, a)
        qa = {k: a[k] for k in ("block_size", "dtype", "quant_min", "quant_max")}
        codes = rec.call(cid, "quantize_affine_no_zero_point", {"input": x, "scale": scale}, qa,
                         lambda: {"codes": quantize("quantize_affine_no_zero_point", x, scale, None, qa)})
        da = dict(qa, output_dtype=out)
        if codes is not None:
            c = codes["codes"]
            rec.call(cid, "dequantize_affine_no_zero_point", {"input": c, "scale": scale}, da,
                     lambda: {"values": dequantize("dequantize_affine_no_zero_point", c, scale, None, da)})
        fn = rng.choice(["fake_quantize_affine", "fake_quantize_affine_cachemask"])
        fa = with_explicit_range(fn, dict(qa, zero_point_domain="NONE"))
        rec.call(cid, fn, {"input": x, "scale": scale}, fa, lambda: fake(fn, x, scale, None, fa))
    elif family == "with_min_max":
        a = base_args(rng, q, block, mapping)
        if rng.random() < 0.15:
            a["zero_point_dtype"] = rng.choice(["int32", "float32"])
        m = qp()
        shape_r, dims = m._get_reduction_params(block, x.size())
        mn = torch.amin(x.view(shape_r), dim=dims)
        mx = torch.amax(x.view(shape_r), dim=dims)
        rec.call(cid, "choose_qparams_affine_with_min_max", {"min_val": mn, "max_val": mx}, a,
                 lambda: dict(zip(("scale", "zero_point"), with_min_max(mn, mx, a))))
    else:
        raise ValueError(family)


def fixture_scenarios():
    """The committed grid: every code dtype x input float x mapping, the
    granularity and magnitudes cycling; the 0.18-only functions over every
    code dtype and input float; float8 targets."""
    out, i = [], 0
    kinds = ["normal", "tiny", "mixed", "normal", "positive"]
    for q in QDTYPES:
        for dtype in FLOATS:
            for mapping in MAPPINGS:
                out.append(("affine", q, dtype, mapping, GRANULARITIES[i % 5], kinds[(i // 5) % 5]))
                i += 1
            for family in ("tinygemm", "dont_preserve_zero", "no_zero_point", "with_min_max"):
                out.append((family, q, dtype, MAPPINGS[i % 3], GRANULARITIES[i % 5], kinds[i % 5]))
                i += 1
    for q in FLOAT8:
        for dtype in FLOATS:
            for mapping in MAPPINGS:
                out.append(("affine", q, dtype, mapping, GRANULARITIES[i % 5], "normal"))
                i += 1
            out.append(("no_zero_point", q, dtype, "SYMMETRIC", GRANULARITIES[i % 5], "normal"))
            i += 1
    for dtype in FLOATS:
        for gran in GRANULARITIES:
            out.append(("affine", "int8", dtype, "ASYMMETRIC", gran, "tiny"))
            out.append(("affine", "uint4", dtype, "SYMMETRIC", gran, "mixed"))
    return out


def random_scenarios(rng, n):
    families = ["affine"] * 5 + ["tinygemm", "dont_preserve_zero", "no_zero_point", "with_min_max"]
    out = []
    for _ in range(n):
        fam = rng.choice(families)
        q = rng.choice(QDTYPES + (FLOAT8 if fam in ("affine", "no_zero_point") else []))
        out.append((fam, q, rng.choice(FLOATS), rng.choice(MAPPINGS), rng.choice(GRANULARITIES),
                    rng.choice(["normal", "normal", "tiny", "mixed", "positive"])))
    return out


def write(out_dir, rec, header):
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    doc = dict(header, tensors=rec.store.meta, cases=rec.records)
    jpath, spath = os.path.join(out_dir, "cases.json"), os.path.join(out_dir, "tensors.safetensors")
    with open(jpath, "w") as f:
        json.dump(doc, f, sort_keys=True, allow_nan=False, separators=(",", ":"))
        f.write("\n")
    save_file(rec.store.tensors, spath)
    return os.path.getsize(jpath) + os.path.getsize(spath)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    fx = sub.add_parser("fixtures", help="the committed grid (seed 0)")
    fx.add_argument("--out", required=True)
    lv = sub.add_parser("live", help="seeded random scenarios, in this one process")
    lv.add_argument("--seed", type=int, required=True)
    lv.add_argument("--count", type=int, required=True)
    lv.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    check_versions()
    import torch

    torch.set_num_threads(1)
    t0 = time.time()
    seed = FIXTURE_SEED if args.mode == "fixtures" else args.seed
    rng = random.Random(seed)
    scenarios = fixture_scenarios() if args.mode == "fixtures" else random_scenarios(rng, args.count)
    rec = Recorder()
    for n, (family, q, dtype, mapping, gran, kind) in enumerate(scenarios):
        cid = f"{family}/{q}/{dtype}/{mapping}/{gran}/{kind}/{n}"
        scenario(rec, rng, cid, family, q, dtype, mapping, gran, kind)
    header = {"torch": torch.__version__, "torchao": TORCHAO_VERSION, "seed": seed, "mode": args.mode}
    size = write(args.out, rec, header)
    print(f"{len(scenarios)} scenarios, {len(rec.records)} calls ({rec.ok} computed, {rec.refused} refused), "
          f"{size / 1e6:.3f} MB, {time.time() - t0:.2f} s")
    if args.mode == "fixtures" and size > FIXTURE_BUDGET:
        print(f"oracle.py: fixtures are {size} bytes, over the {FIXTURE_BUDGET} byte budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
