#!/usr/bin/env python3
"""Hostile inputs for tch-quant's torchao 0.18 semantics (robustness review
of issue 12), recorded from torchao 0.18.0 itself.

    hostile.py --out DIR

Writes the records format of `oracle.py` (same Recorder, same torchao
calls): keepdim-shaped qparams fed back to the quantizes and dequantizes,
qparams of other shapes and dtypes, empty and 0-dim inputs, NaN / inf
inputs and qparams, zero, negative and infinite scales, int16/int32 codes
and huge zero points into float16 / bfloat16, full int32 quant ranges,
reversed and degenerate ranges, out-of-range codes, removed-option misuse
of the fake-quantizes, and qparams made the way torchao 0.11 makes them fed
to the 0.18 functions. Every expected value or refusal is torchao's.

A record may carry `"crate_refuses": "why"`: torchao 0.18 computes it but
the crate returns a typed error on purpose (documented in README's
semantics section); tests/semantics_robustness.rs then requires the error.
It runs only on `.venv-ao18/bin/python` (torch 2.13.0, torchao 0.18.0).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import oracle as o  # noqa: E402

FLOATS = o.FLOATS
EMPTY = ("the crate refuses empty tensors in every affine function (nothing to quantize); torchao returns "
         "empty qparams, codes or values")


def args(**kw):
    a = {"block_size": None, "dtype": "uint8", "mapping_type": "ASYMMETRIC", "quant_min": None,
         "quant_max": None, "eps": None, "scale_dtype": None, "zero_point_dtype": None, "keepdim": False}
    a.update(kw)
    return a


class Hostile:
    def __init__(self):
        self.rec = o.Recorder()

    def call(self, cid, fn, inputs, a, crate_refuses=None):
        """Records torchao 0.18's answer to `fn(inputs, a)`; returns its outputs or None."""
        x = inputs.get("input")
        s, z = inputs.get("scale"), inputs.get("zero_point")
        if fn.startswith("choose_qparams_affine_with_min_max"):
            run = lambda: dict(zip(("scale", "zero_point"), o.with_min_max(inputs["min_val"],  # noqa: E731
                                                                           inputs["max_val"], a)))
        elif fn.startswith("choose"):
            run = lambda: dict(zip(("scale", "zero_point"), o.choose(fn, x, a)))  # noqa: E731
        elif fn.startswith("quantize"):
            run = lambda: {"codes": o.quantize(fn, x, s, z, a)}  # noqa: E731
        elif fn.startswith("dequantize"):
            run = lambda: {"values": o.dequantize(fn, x, s, z, a)}  # noqa: E731
        else:
            a = o.with_explicit_range(fn, a)
            run = lambda: o.fake(fn, x, s, z, a)  # noqa: E731
        out = self.rec.call(cid, fn, inputs, a, run)
        if crate_refuses and out is not None:
            self.rec.records[-1]["crate_refuses"] = crate_refuses
        return out

    def chain(self, cid, x, a, out="float32", choose="choose_qparams_affine", choose_refused=None):
        """choose -> quantize -> dequantize -> fake-quantize with what torchao returned."""
        r = self.call(cid, choose, {"input": x}, a, choose_refused)
        if r is None:
            return None
        s, z = r["scale"], r["zero_point"]
        qa = {k: a[k] for k in ("block_size", "dtype", "quant_min", "quant_max")}
        fam = {"choose_qparams_affine_tinygemm": "_tinygemm"}.get(choose, "")
        c = self.call(cid, "quantize_affine" + fam, {"input": x, "scale": s, "zero_point": z}, qa)
        if c is not None:
            self.call(cid, "dequantize_affine" + fam, {"input": c["codes"], "scale": s, "zero_point": z},
                      dict(qa, output_dtype=out))
        dom = "FLOAT" if fam else "INT"
        for fn in ("fake_quantize_affine", "fake_quantize_affine_cachemask"):
            self.call(cid, fn, {"input": x, "scale": s, "zero_point": z}, dict(qa, zero_point_domain=dom))
        return r


def build(h):
    import torch

    g = torch.Generator().manual_seed(20261202)

    def randn(*shape, dtype="float32", mul=1.0):
        return (torch.randn(shape, generator=g, dtype=torch.float64) * mul).to(o.tdt(dtype))

    # 1. keepdim-shaped qparams fed back (torchao views them to the block grid).
    layouts = [([4, 32], [1, 16]), ([2, 3, 4, 8], [1, 3, 2, 8]), ([4, 32], [4, 1]), ([6, 8], [3, 4])]
    for dt in FLOATS:
        for shape, block in layouts:
            for mapping, q in (("SYMMETRIC", "int8"), ("ASYMMETRIC", "uint4"), ("SYMMETRIC_NO_CLIPPING_ERR", "int4")):
                x = randn(*shape, dtype=dt)
                h.chain(f"keepdim/{dt}/{shape}/{block}/{mapping}", x,
                        args(block_size=block, dtype=q, mapping_type=mapping, keepdim=True),
                        out=FLOATS[len(shape) % 3])

    # 2. qparams of other shapes: same numel in another shape (torchao's view
    #    takes it, the crate refuses), wrong numel, explicit reduction shapes.
    x = randn(4, 32)
    s, z = o.choose("choose_qparams_affine", x, args(block_size=[1, 16]))
    qa = {"block_size": [1, 16], "dtype": "uint8", "quant_min": None, "quant_max": None}
    codes = o.quantize("quantize_affine", x, s, z, qa)
    flat = "one value per block: the crate takes the block grid's shape up to size-1 dims, not any view"
    for name, ss, zz, why in (
        ("flat", s.reshape(8), z.reshape(8), flat),
        ("swapped", s.reshape(2, 4), z.reshape(2, 4), flat),
        ("transposed", s.t(), z.t(), None),
        ("reduction-shape", s.reshape(4, 2, 1), z.reshape(4, 2, 1), None),
        ("leading-ones", s.reshape(1, 4, 2), z.reshape(1, 1, 4, 2), None),
        ("too-few", s[:3], z[:3], None),
        ("per-row-for-groups", s[:, :1], z[:, :1], None),
        ("empty-zp", s, torch.empty(0, dtype=torch.int32), None),
    ):
        h.call(f"shape/{name}", "quantize_affine", {"input": x, "scale": ss, "zero_point": zz}, qa, why)
        h.call(f"shape/{name}", "dequantize_affine", {"input": codes, "scale": ss, "zero_point": zz},
               dict(qa, output_dtype="bfloat16"), why)
        h.call(f"shape/{name}", "quantize_affine_tinygemm", {"input": x, "scale": ss, "zero_point": zz.float()},
               qa, why)
        h.call(f"shape/{name}", "dequantize_affine_no_zero_point", {"input": codes, "scale": ss},
               dict(qa, output_dtype="float16"), why)

    # 3. scale dtypes (float64 / float16 / bfloat16 against every input and
    #    output float; an int32 scale torchao promotes, the crate refuses).
    for dt in FLOATS:
        x = randn(4, 32, dtype=dt, mul=3.0)
        s, z = o.choose("choose_qparams_affine", x, args(block_size=[1, 16]))
        tz = x.view(4, 2, 16).amin(-1) + s * 128.0
        for sd in ["float64", "float16", "bfloat16", "float32", "int32"]:
            why = "scale must be a float dtype" if sd == "int32" else None
            ss = (s * 1000).round().to(o.tdt(sd)) if sd == "int32" else s.to(o.tdt(sd))
            cid = f"scale-dtype/{dt}/{sd}"
            c = h.call(cid, "quantize_affine", {"input": x, "scale": ss, "zero_point": z}, qa, why)
            c = o.quantize("quantize_affine", x, s, z, qa) if c is None else c["codes"]
            for out in FLOATS:
                h.call(cid, "dequantize_affine", {"input": c, "scale": ss, "zero_point": z},
                       dict(qa, output_dtype=out), why)
                if out != dt:
                    continue
                h.call(cid, "dequantize_affine_tinygemm", {"input": c, "scale": ss, "zero_point": tz},
                       dict(qa, output_dtype=out), why)
                h.call(cid, "dequantize_affine_no_zero_point", {"input": c, "scale": ss},
                       dict(qa, output_dtype=out), why)
            h.call(cid, "quantize_affine_tinygemm", {"input": x, "scale": ss, "zero_point": tz}, qa, why)
            h.call(cid, "quantize_affine_no_zero_point", {"input": x, "scale": ss}, qa, why)
            h.call(cid, "fake_quantize_affine", {"input": x, "scale": ss, "zero_point": z},
                   dict(qa, zero_point_domain="INT"), why)

    # 4. zero-point dtypes, in every domain that takes one.
    x = randn(4, 32, mul=2.0)
    s, z = o.choose("choose_qparams_affine", x, args(block_size=[1, 16]))
    c = o.quantize("quantize_affine", x, s, z, qa)
    for zd in ["int64", "int16", "uint8", "int8", "float32", "float16", "bfloat16", "float64", "bool"]:
        why = "zero_point must be an integer or float dtype" if zd == "bool" else None
        zz = (z > 128) if zd == "bool" else z.to(o.tdt(zd))
        cid = f"zp-dtype/{zd}"
        h.call(cid, "quantize_affine", {"input": x, "scale": s, "zero_point": zz}, qa, why)
        for out in FLOATS:
            h.call(cid, "dequantize_affine", {"input": c, "scale": s, "zero_point": zz},
                   dict(qa, output_dtype=out), why)
        h.call(cid, "quantize_affine_tinygemm", {"input": x, "scale": s, "zero_point": zz}, qa, why)
        h.call(cid, "dequantize_affine_tinygemm", {"input": c, "scale": s, "zero_point": zz},
               dict(qa, output_dtype="bfloat16"), why)
        h.call(cid, "fake_quantize_affine_cachemask", {"input": x, "scale": s, "zero_point": zz},
               dict(qa, zero_point_domain="INT"), why)

    # 5. empty and 0-dim / one-element inputs.
    for dt in FLOATS:
        for shape, block in (([0, 32], [1, 16]), ([0, 32], [0, 32]), ([4, 0], [1, 0]), ([], []), ([1], [1]),
                             ([1, 1], [1, 1])):
            x = randn(*shape, dtype=dt) if shape else torch.tensor(1.5, dtype=o.tdt(dt))
            empty = EMPTY if x.numel() == 0 else None
            for mapping, q in (("SYMMETRIC", "int8"), ("ASYMMETRIC", "uint8")):
                for keepdim in (False, True):
                    h.chain(f"tiny/{dt}/{shape}/{block}/{mapping}/{keepdim}", x,
                            args(block_size=block, dtype=q, mapping_type=mapping, keepdim=keepdim),
                            choose_refused=empty)
            for ch in ("choose_qparams_affine_tinygemm", "choose_qparams_affine_dont_preserve_zero"):
                h.chain(f"tiny/{dt}/{shape}/{block}/{ch}", x, args(block_size=block, dtype="uint4"), choose=ch,
                        choose_refused=empty)

    # 6. NaN / inf inputs, in a block of their own and mixed with finite ones.
    for dt in FLOATS:
        x = randn(4, 32, dtype=dt)
        x[0, 3] = float("nan")
        x[1, 20] = float("inf")
        x[2, 5] = float("-inf")
        x[3, :16] = float("nan")
        for mapping, q in (("SYMMETRIC", "int8"), ("ASYMMETRIC", "uint8"), ("SYMMETRIC_NO_CLIPPING_ERR", "int4"),
                           ("SYMMETRIC", "float8_e4m3fn"), ("ASYMMETRIC", "float8_e5m2")):
            h.chain(f"nonfinite/{dt}/{mapping}/{q}", x, args(block_size=[1, 16], dtype=q, mapping_type=mapping),
                    out="bfloat16")
        for ch in ("choose_qparams_affine_tinygemm", "choose_qparams_affine_dont_preserve_zero"):
            h.chain(f"nonfinite/{dt}/{ch}", x, args(block_size=[1, 16], dtype="uint4"), choose=ch, out="float16")
        fx = x.clone()
        fx[1, 20] = 1.0
        fx[2, 5] = -2.0
        sx, _ = o.choose("choose_qparams_affine", fx.nan_to_num(0.0), args(block_size=[1, 16],
                                                                           mapping_type="SYMMETRIC",
                                                                           dtype="float8_e4m3fn"))
        h.call(f"nonfinite/{dt}/nozp-f8", "quantize_affine_no_zero_point", {"input": x, "scale": sx},
               {"block_size": [1, 16], "dtype": "float8_e4m3fn", "quant_min": None, "quant_max": None})

    # 7. NaN, inf, zero and negative scales and zero points.
    x = randn(2, 8, mul=2.0)
    s, z = o.choose("choose_qparams_affine", x, args(block_size=[1, 8]))
    qa8 = {"block_size": [1, 8], "dtype": "uint8", "quant_min": None, "quant_max": None}
    c = o.quantize("quantize_affine", x, s, z, qa8)
    for name, val in (("nan", float("nan")), ("inf", float("inf")), ("zero", 0.0), ("negzero", -0.0),
                      ("neg", -0.01), ("denormal", 1e-40), ("huge", 3e38)):
        ss = s.clone()
        ss[1] = val
        tz = torch.tensor([0.5, val])
        for out in FLOATS:
            cid = f"qparam/{name}/{out}"
            h.call(cid, "dequantize_affine", {"input": c, "scale": ss, "zero_point": z}, dict(qa8, output_dtype=out))
            h.call(cid, "dequantize_affine_tinygemm", {"input": c, "scale": ss, "zero_point": tz},
                   dict(qa8, output_dtype=out))
            h.call(cid, "dequantize_affine_no_zero_point", {"input": c, "scale": ss}, dict(qa8, output_dtype=out))
            h.call(cid + "/zp", "dequantize_affine_tinygemm", {"input": c, "scale": s, "zero_point": tz},
                   dict(qa8, output_dtype=out))
        for dt in FLOATS:
            xd = x.to(o.tdt(dt))
            cid = f"qparam/{name}/{dt}"
            h.call(cid, "quantize_affine", {"input": xd, "scale": ss, "zero_point": z}, qa8)
            h.call(cid, "quantize_affine_tinygemm", {"input": xd, "scale": ss, "zero_point": tz}, qa8)
            h.call(cid + "/zp", "quantize_affine_tinygemm", {"input": xd, "scale": s, "zero_point": tz}, qa8)
            h.call(cid, "quantize_affine_no_zero_point", {"input": xd, "scale": ss}, qa8)
            h.call(cid, "fake_quantize_affine_cachemask", {"input": xd, "scale": ss, "zero_point": z},
                   dict(qa8, zero_point_domain="INT"))
            h.call(cid, "fake_quantize_affine", {"input": xd, "scale": ss, "zero_point": tz},
                   dict(qa8, zero_point_domain="FLOAT"))
            h.call(cid, "fake_quantize_affine", {"input": xd, "scale": ss, "zero_point": None},
                   dict(qa8, zero_point_domain="NONE"))
            zf = z.float()
            zf[0] = val
            h.call(cid + "/fzp", "quantize_affine", {"input": xd, "scale": s, "zero_point": zf}, qa8)
            h.call(cid + "/fzp", "dequantize_affine", {"input": c, "scale": s, "zero_point": zf},
                   dict(qa8, output_dtype=dt))

    # 8. int16 / int32 codes and huge zero points into float16 / bfloat16
    #    (0.18 rounds codes, zero point and difference in the output dtype).
    for q in ("int16", "int32"):
        lo, hi = o.bounds(q)
        codes = torch.tensor([[hi, lo, 70000 % (hi + 1), 65504 % (hi + 1), 0, 257, -2049, 65520 % (hi + 1)]] * 2,
                             dtype=o.tdt(q))
        for zname, zp in (("zero", torch.zeros(2, 1, dtype=torch.int32)),
                          ("big", torch.tensor([[hi], [lo]], dtype=torch.int32)),
                          ("mid", torch.tensor([[70000 % (hi + 1)], [-3]], dtype=torch.int32)),
                          ("none", None)):
            for sname, sc in (("unit", torch.ones(2, 1)), ("zero", torch.tensor([[0.0], [1e-8]])),
                              ("bf16", torch.tensor([[2.0**-20], [3.0]], dtype=torch.bfloat16))):
                for out in FLOATS:
                    cid = f"wide/{q}/{zname}/{sname}/{out}"
                    qa_w = {"block_size": [1, 8], "dtype": q, "quant_min": None, "quant_max": None,
                            "output_dtype": out}
                    h.call(cid, "dequantize_affine", {"input": codes, "scale": sc, "zero_point": zp}, qa_w)
                    h.call(cid, "dequantize_affine_tinygemm", {"input": codes, "scale": sc,
                                                               "zero_point": None if zp is None else zp.float()},
                           qa_w)
                    h.call(cid, "dequantize_affine_no_zero_point", {"input": codes, "scale": sc}, qa_w)

    # 9. full and custom int32 / int16 quant ranges in the chooses and quantizes.
    for dt in FLOATS:
        x = randn(4, 32, dtype=dt, mul=100.0)
        for q in ("int32", "int16"):
            lo, hi = o.bounds(q)
            for mapping in ("SYMMETRIC", "ASYMMETRIC", "SYMMETRIC_NO_CLIPPING_ERR"):
                h.chain(f"range/{dt}/{q}/{mapping}", x, args(block_size=[1, 16], dtype=q, mapping_type=mapping))
                h.chain(f"range/{dt}/{q}/{mapping}/explicit", x,
                        args(block_size=[1, 16], dtype=q, mapping_type=mapping, quant_min=lo, quant_max=hi))
            h.chain(f"range/{dt}/{q}/tinygemm", x, args(block_size=[1, 16], dtype=q),
                    choose="choose_qparams_affine_tinygemm")
            h.chain(f"range/{dt}/{q}/dpz", x, args(block_size=[1, 16], dtype=q),
                    choose="choose_qparams_affine_dont_preserve_zero")

    # 10. reversed, degenerate and out-of-dtype ranges; out-of-range codes; eps.
    x = randn(2, 16, mul=2.0)
    rev = "quant_min > quant_max: the crate refuses a reversed range"
    for name, lo, hi, why in (("reversed", 10, 5, rev), ("equal", 7, 7, None), ("outside", -1, 255, None),
                              ("above", 0, 300, None)):
        a = args(block_size=[1, 16], quant_min=lo, quant_max=hi)
        for ch in ("choose_qparams_affine", "choose_qparams_affine_tinygemm",
                   "choose_qparams_affine_dont_preserve_zero"):
            h.call(f"bounds/{name}/{ch}", ch, {"input": x}, a, why)
        s, z = o.choose("choose_qparams_affine", x, args(block_size=[1, 16]))
        qb = {"block_size": [1, 16], "dtype": "uint8", "quant_min": lo, "quant_max": hi}
        h.call(f"bounds/{name}", "quantize_affine", {"input": x, "scale": s, "zero_point": z}, qb, why)
        h.call(f"bounds/{name}", "quantize_affine_no_zero_point", {"input": x, "scale": s}, qb, why)
        c = o.quantize("quantize_affine", x, s, z, qa)
        h.call(f"bounds/{name}", "dequantize_affine", {"input": c, "scale": s, "zero_point": z},
               dict(qb, output_dtype="float32"), why)
        h.call(f"bounds/{name}", "fake_quantize_affine_cachemask", {"input": x, "scale": s, "zero_point": z},
               dict(qb, zero_point_domain="INT"), why)
    s, z = o.choose("choose_qparams_affine", x, args(block_size=[1, 16], dtype="uint4"))
    wild = torch.tensor([[0, 15, 16, 200, 255] + [3] * 11] * 2, dtype=torch.uint8)
    q4 = {"block_size": [1, 16], "dtype": "uint4", "quant_min": None, "quant_max": None}
    for out in FLOATS:
        h.call(f"codes/out-of-range/{out}", "dequantize_affine", {"input": wild, "scale": s, "zero_point": z},
               dict(q4, output_dtype=out))
        h.call(f"codes/out-of-range/{out}", "dequantize_affine_tinygemm",
               {"input": wild, "scale": s, "zero_point": z.float()}, dict(q4, output_dtype=out))
    for eps in (0.0, 1.0, 1e-45, -1.0):
        why = "eps must be non-negative" if eps < 0 else None
        for ch in ("choose_qparams_affine", "choose_qparams_affine_tinygemm",
                   "choose_qparams_affine_dont_preserve_zero"):
            h.call(f"eps/{eps}/{ch}", ch, {"input": x.to(torch.bfloat16)}, args(block_size=[1, 16], eps=eps), why)
    h.call("eps/zero-input", "choose_qparams_affine", {"input": torch.zeros(2, 16)},
           args(block_size=[1, 16], eps=0.0, mapping_type="SYMMETRIC", dtype="int8"))

    # 11. misuse of the fake-quantizes' zero_point_domain and missing qparams.
    s, z = o.choose("choose_qparams_affine", x, args(block_size=[1, 16]))
    for fn in ("fake_quantize_affine", "fake_quantize_affine_cachemask"):
        for dom, zz in (("NONE", z), ("FLOAT", None), ("INT", None)):
            h.call(f"fake/{fn}/{dom}/{zz is None}", fn, {"input": x, "scale": s, "zero_point": zz},
                   dict(qa, block_size=[1, 16], zero_point_domain=dom))
    h.call("missing/quantize-int-no-zp", "quantize_affine", {"input": x, "scale": s, "zero_point": None},
           dict(qa, block_size=[1, 16]))
    h.call("missing/quantize-tinygemm-no-zp", "quantize_affine_tinygemm",
           {"input": x, "scale": s, "zero_point": None}, dict(qa, block_size=[1, 16]))

    # 12. dtypes torchao refuses or takes: float64 / int inputs, code dtype
    #     mismatches, float64 outputs, symmetric tinygemm.
    x64 = randn(2, 16, dtype="float64")
    h.call("dtype/choose-f64", "choose_qparams_affine", {"input": x64}, args(block_size=[1, 16]),
           "the crate's chooses take float32 / float16 / bfloat16 inputs")
    h.call("dtype/choose-int", "choose_qparams_affine", {"input": x64.to(torch.int32)}, args(block_size=[1, 16]))
    s, z = o.choose("choose_qparams_affine", x, args(block_size=[1, 16]))
    h.call("dtype/quantize-f64", "quantize_affine", {"input": x64, "scale": s, "zero_point": z},
           dict(qa, block_size=[1, 16]))
    c = o.quantize("quantize_affine", x, s, z, dict(qa, block_size=[1, 16]))
    h.call("dtype/codes-int8-as-uint8", "dequantize_affine", {"input": c.to(torch.int8), "scale": s, "zero_point": z},
           dict(qa, block_size=[1, 16], output_dtype="float32"))
    h.call("dtype/out-f64", "dequantize_affine", {"input": c, "scale": s, "zero_point": z},
           dict(qa, block_size=[1, 16], output_dtype="float64"))
    h.call("dtype/out-int", "dequantize_affine_tinygemm", {"input": c, "scale": s, "zero_point": z.float()},
           dict(qa, block_size=[1, 16], output_dtype="int32"))
    for mapping in ("SYMMETRIC", "SYMMETRIC_NO_CLIPPING_ERR"):
        for ch in ("choose_qparams_affine_tinygemm", "choose_qparams_affine_dont_preserve_zero"):
            h.call(f"dtype/{ch}/{mapping}", ch, {"input": x}, args(block_size=[1, 16], mapping_type=mapping))
    h.call("dtype/block-len", "choose_qparams_affine", {"input": x}, args(block_size=[16]))
    h.call("dtype/block-indivisible", "quantize_affine", {"input": x, "scale": s, "zero_point": z},
           dict(qa, block_size=[1, 5]))

    # 13. qparams made as torchao 0.11 makes them (symmetric: a float zero
    #     point in the input dtype and eps = finfo.eps), fed to the 0.18
    #     quantize / dequantize; tests/semantics_robustness.rs checks that
    #     the crate's 0.11 choose returns these same qparams.
    for dt in FLOATS:
        x = randn(4, 32, dtype=dt, mul=0.5)
        for mapping, q in (("SYMMETRIC", "int8"), ("ASYMMETRIC", "uint4"), ("SYMMETRIC", "int4")):
            zd = dt if mapping == "SYMMETRIC" else "int32"
            a = args(block_size=[1, 16], dtype=q, mapping_type=mapping, eps=torch.finfo(o.tdt(dt)).eps,
                     zero_point_dtype=zd)
            r = h.chain(f"mix/{dt}/{mapping}/{q}", x, a, out=dt)
            if r is not None:
                qa_m = {"block_size": [1, 16], "dtype": q, "quant_min": None, "quant_max": None}
                cm = o.quantize("quantize_affine", x, r["scale"], r["zero_point"], qa_m)
                for out in FLOATS:
                    h.call(f"mix/{dt}/{mapping}/{q}/{out}", "dequantize_affine",
                           {"input": cm, "scale": r["scale"], "zero_point": r["zero_point"]},
                           dict(qa_m, output_dtype=out))

    # 14. observed min/max: reversed, NaN, 0-dim, empty.
    mn, mx = torch.tensor([-1.0, 2.0, float("nan"), 0.0]), torch.tensor([1.0, -3.0, 1.0, 0.0])
    for mapping in ("SYMMETRIC", "ASYMMETRIC", "SYMMETRIC_NO_CLIPPING_ERR"):
        for zd in (None, "int32", "float32"):
            a = args(block_size=[1, 16], dtype="int8", mapping_type=mapping, zero_point_dtype=zd)
            h.call(f"minmax/{mapping}/{zd}", "choose_qparams_affine_with_min_max", {"min_val": mn, "max_val": mx}, a)
            h.call(f"minmax/{mapping}/{zd}/0dim", "choose_qparams_affine_with_min_max",
                   {"min_val": torch.tensor(-2.0), "max_val": torch.tensor(5.0)}, a)
            h.call(f"minmax/{mapping}/{zd}/empty", "choose_qparams_affine_with_min_max",
                   {"min_val": torch.empty(0), "max_val": torch.empty(0)}, a)
            h.call(f"minmax/{mapping}/{zd}/bf16", "choose_qparams_affine_with_min_max",
                   {"min_val": mn.bfloat16(), "max_val": mx.bfloat16()}, a)
            h.call(f"minmax/{mapping}/{zd}/mixed-dtype", "choose_qparams_affine_with_min_max",
                   {"min_val": mn, "max_val": mx.half()}, a)


    # 15. inputs large enough for the fused path to split over threads
    #     (2^17 elements a thread), with a NaN block and keepdim qparams.
    for dt, mapping, q in (("bfloat16", "ASYMMETRIC", "uint4"), ("float16", "SYMMETRIC", "int8")):
        x = randn(32, 8192, dtype=dt, mul=0.1)
        h.chain(f"large/{dt}/{mapping}", x, args(block_size=[1, 128], dtype=q, mapping_type=mapping, keepdim=True),
                out="float16")
        xn = x.clone()
        xn[5, 300] = float("nan")
        h.chain(f"large/{dt}/{mapping}/nan", xn, args(block_size=[1, 128], dtype=q, mapping_type=mapping),
                out="bfloat16")
    w = o.wide_codes(random.Random(3), "int16", [32, 8192])
    zw = o.wide_codes(random.Random(4), "int16", [32, 64]).to(torch.int32)
    sw = torch.rand(32, 64, generator=g) * 1e-3
    for out in ("float16", "bfloat16"):
        h.call(f"large/wide/{out}", "dequantize_affine", {"input": w, "scale": sw, "zero_point": zw},
               {"block_size": [1, 128], "dtype": "int16", "quant_min": None, "quant_max": None, "output_dtype": out})


    # 16. zero points outside the code range (not clamped by a choose) and
    #     fractional float zero points, for 8-bit and sub-byte codes: 0.18
    #     rounds them in the output dtype before subtracting.
    for q in ("uint8", "int8", "uint4", "int4"):
        lo, hi = o.bounds(q)
        cs = torch.arange(lo, hi + 1, dtype=torch.int64).repeat(64)[: 8 * 64].reshape(8, 64).to(o.tdt(o.storage(q)))
        for zname, zp in (("int", torch.tensor([257, -3000, 1000, 70000, 2**24 + 1, -(2**31), 2**31 - 1, 129],
                                                dtype=torch.int32)),
                          ("int16", torch.tensor([257, -3000, 1000, 4097, 2049, -2049, 32767, -32768],
                                                 dtype=torch.int16)),
                          ("frac", torch.tensor([0.3, -7.7, 255.5, 2048.5, 1e-3, -0.0, 65519.0, 1e5])),
                          ("f16", torch.tensor([0.3, -7.7, 255.5, 2048.5, 1e-3, -0.0, 65504.0, 3.0],
                                               dtype=torch.float16))):
            for sname, sc in (("small", torch.full((8,), 1e-3)), ("mixed", torch.tensor([1.0, 0.0, 1e-30, 3e30,
                                                                                          -2.0, 1e-8, 7.0, 0.5]))):
                for out in FLOATS:
                    a = {"block_size": [1, 64], "dtype": q, "quant_min": None, "quant_max": None,
                         "output_dtype": out}
                    cid = f"zp-range/{q}/{zname}/{sname}/{out}"
                    h.call(cid, "dequantize_affine", {"input": cs, "scale": sc, "zero_point": zp}, a)
                    h.call(cid, "dequantize_affine_tinygemm", {"input": cs, "scale": sc, "zero_point": zp}, a)


    # 17. scale / zero-point dtype overrides that lose the value: a float16
    #     scale_dtype under 2^-126 eps (scale underflows to 0), zero points
    #     cast to a dtype that does not hold them (int8 for uint8 codes,
    #     uint8 for int8 codes, float16 for int32).
    for dt in FLOATS:
        tiny = randn(4, 32, dtype="float32", mul=1e-12).to(o.tdt(dt))
        for q, mapping in (("int8", "SYMMETRIC"), ("uint8", "ASYMMETRIC")):
            h.chain(f"override/{dt}/{q}/f16-scale", tiny,
                    args(block_size=[1, 16], dtype=q, mapping_type=mapping, scale_dtype="float16"), out="float16")
        x = randn(4, 32, dtype=dt, mul=3.0) + 2.0
        for q, zd in (("uint8", "int8"), ("int8", "uint8"), ("int32", "float16"), ("uint4", "bfloat16"),
                      ("int16", "int8")):
            for mapping in ("ASYMMETRIC", "SYMMETRIC"):
                h.chain(f"override/{dt}/{q}/{zd}/{mapping}", x,
                        args(block_size=[1, 16], dtype=q, mapping_type=mapping, zero_point_dtype=zd), out=dt)
            h.chain(f"override/{dt}/{q}/{zd}/dpz", x, args(block_size=[1, 16], dtype=q, zero_point_dtype=zd),
                    choose="choose_qparams_affine_dont_preserve_zero")


    # 18. sub-byte unsigned codes in another storage dtype: torchao 0.18
    #     checks the codes' dtype only for the other dtypes.
    s4, z4 = o.choose("choose_qparams_affine", x, args(block_size=[1, 16], dtype="uint4"))
    c4 = o.quantize("quantize_affine", x, s4, z4, {"block_size": [1, 16], "dtype": "uint4", "quant_min": None,
                                                  "quant_max": None})
    why = "codes must be in the dtype's storage (uint8 for uint1..uint7)"
    for st in ("int32", "int8", "float32"):
        a = {"block_size": [1, 16], "dtype": "uint4", "quant_min": None, "quant_max": None, "output_dtype": "float32"}
        cs = c4.to(o.tdt(st))
        h.call(f"storage/uint4-as-{st}", "dequantize_affine", {"input": cs, "scale": s4, "zero_point": z4}, a, why)
        h.call(f"storage/uint4-as-{st}", "dequantize_affine_tinygemm",
               {"input": cs, "scale": s4, "zero_point": z4.float()}, a, why)
        h.call(f"storage/uint4-as-{st}", "dequantize_affine_no_zero_point", {"input": cs, "scale": s4}, a, why)


    # 19. custom ranges whose symmetric zero point `int((qmax + qmin + 1) / 2)`
    #     truncates toward zero, is negative, or leaves float16.
    for dt in FLOATS:
        x = randn(4, 32, dtype=dt)
        for q, lo, hi in (("int4", -8, 6), ("int8", -100, 5), ("int8", -128, -1), ("uint8", 3, 200),
                          ("int32", 0, 2**31 - 1)):
            for mapping in ("SYMMETRIC", "SYMMETRIC_NO_CLIPPING_ERR", "ASYMMETRIC"):
                h.chain(f"custom/{dt}/{q}/{lo}/{hi}/{mapping}", x,
                        args(block_size=[1, 16], dtype=q, mapping_type=mapping, quant_min=lo, quant_max=hi),
                        out=dt)
            a = args(block_size=[1, 16], dtype=q, mapping_type="SYMMETRIC", quant_min=lo, quant_max=hi)
            mn, mx = x.view(4, 2, 16).amin(-1), x.view(4, 2, 16).amax(-1)
            h.call(f"custom/{dt}/{q}/{lo}/{hi}/minmax", "choose_qparams_affine_with_min_max",
                   {"min_val": mn, "max_val": mx}, a)


    # 20. empty codes and inputs with empty qparams given directly (the
    #     chains above stop at the choose): torchao reads an empty zero
    #     point as None, so its Int-domain quantize raises, but the
    #     no-zero-point quantize and every dequantize compute.
    for dt in FLOATS:
        for shape, block, qshape in (([0, 32], [1, 16], [0, 2]), ([4, 0], [1, 16], [4, 0]),
                                     ([0, 2, 8], [1, 2, 8], [0])):
            x = randn(*shape, dtype=dt)
            se, ze = torch.ones(qshape), torch.zeros(qshape, dtype=torch.int32)
            codes = torch.zeros(shape, dtype=torch.uint8)
            qe = {"block_size": block, "dtype": "uint8", "quant_min": None, "quant_max": None}
            cid = f"empty/{dt}/{shape}"
            h.call(cid, "quantize_affine", {"input": x, "scale": se, "zero_point": ze}, qe, EMPTY)
            h.call(cid, "quantize_affine_tinygemm", {"input": x, "scale": se, "zero_point": ze.float()}, qe, EMPTY)
            h.call(cid, "quantize_affine_no_zero_point", {"input": x, "scale": se}, qe, EMPTY)
            h.call(cid, "fake_quantize_affine", {"input": x, "scale": se, "zero_point": None},
                   dict(qe, zero_point_domain="NONE"), EMPTY)
            for out in FLOATS:
                de = dict(qe, output_dtype=out)
                h.call(cid, "dequantize_affine", {"input": codes, "scale": se, "zero_point": ze}, de, EMPTY)
                h.call(cid + "/nozp", "dequantize_affine", {"input": codes, "scale": se, "zero_point": None}, de,
                       EMPTY)
                h.call(cid, "dequantize_affine_tinygemm", {"input": codes, "scale": se, "zero_point": ze.float()},
                       de, EMPTY)
                h.call(cid, "dequantize_affine_no_zero_point", {"input": codes, "scale": se}, de, EMPTY)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    o.check_versions()
    import torch

    torch.set_num_threads(1)
    random.seed(0)
    t0 = time.time()
    h = Hostile()
    build(h)
    header = {"torch": torch.__version__, "torchao": o.TORCHAO_VERSION, "mode": "hostile"}
    size = o.write(a.out, h.rec, header)
    print(f"hostile: {len(h.rec.records)} calls ({h.rec.ok} computed, {h.rec.refused} refused), "
          f"{size / 1e6:.3f} MB, {time.time() - t0:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
