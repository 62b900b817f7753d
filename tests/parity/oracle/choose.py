"""Cases of choose_qparams_affine, its choose -> quantize -> dequantize chain,
and choose_qparams_affine_with_min_max. Each builder draws one case; `twist`
names a deliberate defect (an error or refusal case), None draws a valid
configuration."""

from __future__ import annotations

import math
from typing import Optional

import torch

from .cases import Case
from .draw import DATA_KINDS, Ctx, make_data, pick_block, pick_range, pick_shape
from .dtypes import FLOAT8, INPUT_FLOATS, MAPPINGS, QUANT_DTYPES, SCALE_DTYPES_OK, ZP_DTYPES_OK, bounds, dname, tdt


CHOOSE_TWISTS = ["block_len", "block_zero", "block_neg", "block_nondiv", "block_too_big", "block_no_reduce",
                 "empty", "input_f64", "input_int", "range_reversed", "range_out", "range_nonint",
                 "range_nonfinite", "eps_neg", "eps_nonfinite", "eps_big", "scale_dtype_bad", "zp_dtype_bad",
                 "sym_no_preserve_zero", "sym_float_domain", "float8_non_symmetric", "f16_int32"]


def choose_args(c: Ctx, target: Optional[str] = None, mapping: Optional[str] = None) -> dict:
    """choose_qparams_affine args other than block_size, mostly valid combinations."""
    if target is None:
        target = c.P.pick("target", QUANT_DTYPES)
    if mapping is None:
        mapping = "SYMMETRIC" if target in FLOAT8 and c.P.chance(0.9) else c.P.pick("mapping", MAPPINGS)
    qmin, qmax, _ = pick_range(c, target)
    if mapping == "ASYMMETRIC":
        preserve_zero = c.P.pick("preserve_zero", [True, False])
        # FLOAT is the tinygemm layout (preserve_zero=False); weight it there.
        domain = c.P.pick("asym_domain_" + str(preserve_zero),
                          ["INT", "FLOAT", "NONE"] if preserve_zero else ["INT", "FLOAT", "FLOAT", "NONE"])
    else:
        preserve_zero = True
        domain = c.P.pick("sym_domain", ["INT", "INT", "NONE"])
    eps = None
    if c.P.pick("eps_given", [False, True]):
        eps = c.P.pick("eps", [1e-6, 1e-12, 2.0 ** -10, 1e-3, 0.0, 0.5, 2.0 ** -23])
    scale_dtype = c.P.pick("scale_dtype", [None, None, None] + SCALE_DTYPES_OK)
    zp_dtype = c.P.pick("zp_dtype", [None, None, None, None] + ZP_DTYPES_OK)
    return {"mapping_type": mapping, "target_dtype": target, "quant_min": qmin, "quant_max": qmax,
            "eps": eps, "scale_dtype": scale_dtype, "zero_point_dtype": zp_dtype,
            "preserve_zero": preserve_zero, "zero_point_domain": domain}


def apply_choose_twist(c: Ctx, twist: str, x, block: list[int], a: dict):
    """Mutates (input, block_size, args) of a choose-like case into a defect."""
    shape = list(x.shape)
    r = len(shape)
    if twist == "block_len":
        block = block + [1] if c.P.chance(0.5) or r == 0 else block[:-1]
    elif twist in ("block_zero", "block_neg") and r:
        block[c.P.rng.randrange(r)] = 0 if twist == "block_zero" else -1
    elif twist == "block_nondiv" and r:
        d = max(range(r), key=lambda k: shape[k])
        cands = [b for b in range(2, shape[d]) if shape[d] % b]
        block[d] = c.P.rng.choice(cands) if cands else shape[d] + 1
    elif twist == "block_too_big" and r:
        d = c.P.rng.randrange(r)
        block[d] = shape[d] * 2
    elif twist == "block_no_reduce":
        if math.prod(shape) <= 1:
            x = make_data(c, [2, 4], dname(x.dtype), "normal")
            shape = [2, 4]
        block = [1] * len(shape)
    elif twist == "empty":
        shape = [0] + shape[1:] if r else [0]
        x = torch.zeros(shape, dtype=x.dtype)
        block = [1] + block[1:] if c.P.chance(0.5) else list(shape)
        if len(block) != len(shape):
            block = list(shape)
    elif twist == "input_f64":
        x = x.to(torch.float64)
    elif twist == "input_int":
        x = x.nan_to_num(0.0, 0.0, 0.0).clamp(-100, 100).round().to(c.P.rng.choice([torch.int32, torch.uint8]))
    elif twist == "range_reversed":
        lo, hi = bounds(a["target_dtype"])
        if a["target_dtype"] in FLOAT8:
            a["quant_min"], a["quant_max"] = hi / 2, lo / 2
        else:
            a["quant_min"], a["quant_max"] = hi, lo
    elif twist == "range_out":
        lo, hi = bounds(a["target_dtype"])
        if c.P.chance(0.5):
            a["quant_min"] = lo - 1
        else:
            a["quant_max"] = hi + 1
    elif twist == "range_nonint":
        if a["target_dtype"] in FLOAT8:
            a["target_dtype"] = "uint4"
        lo, hi = bounds(a["target_dtype"])
        a["quant_min"], a["quant_max"] = lo + 0.5, hi
    elif twist == "range_nonfinite":
        k = c.P.rng.choice(["quant_min", "quant_max"])
        a[k] = c.P.rng.choice([math.nan, math.inf, -math.inf])
    elif twist == "eps_neg":
        a["eps"] = c.P.rng.choice([-1e-6, -1.0])
    elif twist == "eps_nonfinite":
        a["eps"] = c.P.rng.choice([math.nan, math.inf, -math.inf])
    elif twist == "eps_big":  # beyond float16's range (multi-element f16: libtorch raises)
        x = x.to(torch.float16)
        a["eps"] = c.P.rng.choice([1e5, 70000.0])
    elif twist == "scale_dtype_bad":
        a["scale_dtype"] = c.P.rng.choice(["int32", "uint8", "bool", "float8_e4m3fn"])
    elif twist == "zp_dtype_bad":
        a["zero_point_dtype"] = c.P.rng.choice(["bool", "float8_e5m2"])
    elif twist == "sym_no_preserve_zero":
        a["mapping_type"] = c.P.rng.choice(["SYMMETRIC", "SYMMETRIC_NO_CLIPPING_ERR"])
        a["preserve_zero"] = False
        if a["target_dtype"] in FLOAT8:
            a["mapping_type"] = "SYMMETRIC"
    elif twist == "sym_float_domain":
        a["mapping_type"] = c.P.rng.choice(["SYMMETRIC", "SYMMETRIC_NO_CLIPPING_ERR"])
        a["preserve_zero"] = True
        a["zero_point_domain"] = "FLOAT"
        if a["target_dtype"] in FLOAT8:
            a["mapping_type"] = "SYMMETRIC"
    elif twist == "float8_non_symmetric":
        a["target_dtype"] = c.P.rng.choice(FLOAT8)
        a["mapping_type"] = c.P.rng.choice(["ASYMMETRIC", "SYMMETRIC_NO_CLIPPING_ERR"])
        a["quant_min"] = a["quant_max"] = None
    elif twist == "f16_int32":
        # float16 with an int32-sized range: libtorch refuses the clamp/full_like
        # scalar for multi-element tensors, one-element ones silently get inf.
        if c.P.chance(0.5):
            x = make_data(c, [1] * max(1, r), "float16", "normal")
            block = [1] * max(1, r)
        else:
            x = x.to(torch.float16)
        a["target_dtype"] = "int32"
        a["quant_min"] = a["quant_max"] = None
        if c.P.chance(0.5):
            a["mapping_type"], a["zero_point_domain"], a["preserve_zero"] = "SYMMETRIC", "INT", True
    return x, block, a


def build_choose(c: Ctx, twist: Optional[str]) -> Case:
    in_dtype = c.P.pick("in_dtype", INPUT_FLOATS)
    a = choose_args(c)
    shape = pick_shape(c, ranks=(0, 1, 2, 2, 3, 4) if c.P.chance(0.05) else (1, 2, 3, 4))
    gran, block = pick_block(c, shape)
    kind = c.P.pick("data", DATA_KINDS)
    x = make_data(c, shape, in_dtype, kind, block)
    if twist:
        x, block, a = apply_choose_twist(c, twist, x, block, a)
    a["block_size"] = block
    tag = twist or f"{gran}/{kind}"
    return Case(f"choose/{a['mapping_type'].lower()}/{a['target_dtype']}/{dname(x.dtype)}/{tag}",
                "choose_qparams_affine", {"input": x}, a)


def build_chain(c: Ctx, twist: Optional[str]) -> Case:
    case = build_choose(c, twist)
    case.op = "chain"
    case.id = "chain/" + case.id.removeprefix("choose/")
    case.args["output_dtype"] = c.P.pick("out_dtype", INPUT_FLOATS)
    return case


WMM_TWISTS = ["block_zero", "block_neg", "shape_mismatch", "dtype_mismatch", "min_f64", "min_int",
              "range_reversed", "range_out", "eps_neg", "scale_dtype_bad", "zp_dtype_bad", "f16_int32",
              "sym_no_preserve_zero"]


def build_with_min_max(c: Ctx, twist: Optional[str]) -> Case:
    in_dtype = c.P.pick("in_dtype", INPUT_FLOATS)
    a = choose_args(c)
    # min/max as an observer holds them: qparams-shaped (0-d for per tensor).
    shape = pick_shape(c, ranks=(0, 1, 1, 2))
    kind = c.P.pick("wmm_data", ["ordered", "ordered", "independent", "equal", "special", "zero"])
    lo = make_data(c, shape, "float32", "normal")
    if kind == "ordered":
        hi = lo + make_data(c, shape, "float32", "positive")
    elif kind == "independent":  # max < min happens: torchao does not care
        hi = make_data(c, shape, "float32", "normal")
    elif kind == "equal":
        hi = lo.clone()
    elif kind == "zero":
        lo, hi = torch.zeros(shape), torch.zeros(shape)
    else:
        lo = make_data(c, shape, "float32", c.P.rng.choice(["nan", "inf", "huge", "tiny", "neg_zero"]))
        hi = lo.abs() if c.P.chance(0.5) else make_data(c, shape, "float32", "mixed_special")
    lo, hi = lo.to(tdt(in_dtype)), hi.to(tdt(in_dtype))
    # block_size only documents the blocks for torchao: any positive entries.
    block = [c.P.rng.choice([1, 2, 4, 8, 32, 64]) for _ in range(c.P.randint(1, 3))]
    if twist in ("block_zero", "block_neg"):
        block[c.P.rng.randrange(len(block))] = 0 if twist == "block_zero" else -1
    elif twist == "shape_mismatch":
        hi = make_data(c, shape + [2] if c.P.chance(0.5) else [3, 5], in_dtype, "normal")
    elif twist == "dtype_mismatch":
        hi = hi.to(torch.float32 if in_dtype != "float32" else torch.bfloat16)
    elif twist == "min_f64":
        lo, hi = lo.double(), hi.double()
    elif twist == "min_int":
        lo, hi = lo.nan_to_num(0, 0, 0).clamp(-50, 50).int(), hi.nan_to_num(0, 0, 0).clamp(-50, 50).int()
    elif twist is not None:
        _, _, a = apply_choose_twist(c, twist, lo, list(lo.shape), a)
        if twist == "f16_int32":
            n = 1 if c.P.chance(0.5) else 4
            lo, hi = make_data(c, [n], "float16", "negative"), make_data(c, [n], "float16", "positive")
    a["block_size"] = block
    return Case(f"wmm/{a['mapping_type'].lower()}/{a['target_dtype']}/{dname(lo.dtype)}/{twist or kind}",
                "choose_qparams_affine_with_min_max", {"min_val": lo, "max_val": hi}, a)
