#!/usr/bin/env python3
"""The torchao 0.11.0 oracle for tch-quant's parity tests.

Every expected value in the files this script writes comes from torchao
itself, run on torch 2.13.0: this script only draws inputs, calls torchao and
records what it returned or raised. It never reimplements torchao's math.

    generate.py fixtures --out tests/parity/fixtures
    generate.py random --seed S --count N --out DIR [--device cpu|cuda]

The file format (cases.json + tensors.safetensors) and the op table are
described in tests/parity/README.md; the semantics, and the inputs on which
tch-quant deliberately refuses what torchao silently accepts, in the
"Semantics against torchao 0.11" section of the top-level README.md.
`crate_refuses` below is the single list of those refusals.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

REQUIRED_TORCH = "2.13.0"
REQUIRED_TORCHAO = "0.11.0"

# Filled in by load_oracle() once the versions are checked.
torch: Any = None
qp: Any = None  # torchao.quantization.quant_primitives
bp: Any = None  # torchao.dtypes.uintx.bitpacking


def load_oracle() -> tuple[str, str]:
    """Imports torch and torchao and refuses any version but the reference."""
    global torch, qp, bp
    try:
        import torch as _torch
        import torchao
    except ImportError as e:
        sys.exit(f"generate.py: cannot import torch/torchao: {e}")
    if not _torch.__version__.startswith(REQUIRED_TORCH) or torchao.__version__ != REQUIRED_TORCHAO:
        sys.exit(
            f"generate.py: the oracle is torch {REQUIRED_TORCH} + torchao {REQUIRED_TORCHAO}; "
            f"found torch {_torch.__version__}, torchao {torchao.__version__}. Refusing to run."
        )
    from torchao.dtypes.uintx import bitpacking
    from torchao.quantization import quant_primitives

    torch, qp, bp = _torch, quant_primitives, bitpacking
    # Recorded as the README shows it ("2.13.0"), without the local build tag (+cu130).
    return _torch.__version__.split("+")[0], torchao.__version__


# ---------------------------------------------------------------------------
# dtype names (README: torch's names without `torch.`, plus uint1..7/int1..7)
# ---------------------------------------------------------------------------

FLOAT8 = ["float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"]
SUB_UINT = [f"uint{b}" for b in range(1, 8)]
SUB_INT = [f"int{b}" for b in range(1, 8)]
QUANT_DTYPES = ["int8", "uint8", "int16", "int32"] + SUB_UINT + SUB_INT + FLOAT8
INPUT_FLOATS = ["float32", "float16", "bfloat16"]
SCALE_DTYPES_OK = INPUT_FLOATS + ["float64"]
ZP_DTYPES_OK = ["uint8", "int8", "int16", "int32", "int64"] + SCALE_DTYPES_OK
MAPPINGS = ["SYMMETRIC", "SYMMETRIC_NO_CLIPPING_ERR", "ASYMMETRIC"]
DOMAINS = ["INT", "FLOAT", "NONE"]
# (ebits, mbits) of the sub-byte float formats exercised (fp4 e2m1, fp6 e3m2/e2m3, ...).
FLOATX_FORMATS = [(2, 1), (2, 2), (2, 3), (3, 1), (3, 2), (3, 3), (4, 2), (4, 3), (5, 2)]


def tdt(name: str):
    """torch dtype of a dtype name (torch.uint4, torch.int3, torch.float8_* exist)."""
    return getattr(torch, name)


def dname(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def storage_name(q: str) -> str:
    """The libtorch dtype holding codes of quantized dtype `q`."""
    if q in SUB_UINT:
        return "uint8"
    if q in SUB_INT:
        return "int8"
    return q


def bounds(q: str) -> tuple[float, float]:
    """The dtype's own code range (torchao's _DTYPE_TO_QVALUE_BOUNDS / finfo)."""
    if q in FLOAT8:
        fi = torch.finfo(tdt(q))
        return float(fi.min), float(fi.max)
    if q.startswith("uint"):
        return 0, 2 ** int(q[4:]) - 1
    b = int(q[3:])
    return -(2 ** (b - 1)), 2 ** (b - 1) - 1


def float_max(name: str) -> float:
    """Largest finite value of a float dtype: libtorch refuses scalars beyond it."""
    if name == "float64":
        return math.inf
    return float(torch.finfo(tdt(name)).max)


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    op: str
    # Input tensors by the README's names (unpack's shards as shard0, shard1, ...);
    # None means absent (a zero_point of None).
    inputs: dict[str, Any]
    args: dict[str, Any]


@dataclass
class Result:
    expected: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# What tch-quant refuses (README.md, "Semantics against torchao 0.11": the
# "differences from torchao 0.11" column). Applied to every case before its
# torchao result is taken as the expectation: when torchao silently computes
# something for such an input, the case becomes {"ok": false, "deliberate"}.
#
# The rules, as the helpers below number them:
#   1. block_size has one entry per dim, each >= 1 and dividing its dim, and
#      reduces some dim of a multi-element tensor (pytorch/ao#3458);
#   2. inputs are non-empty float32, float16 or bfloat16;
#   3. quant_min/quant_max are finite, integers for integer dtypes, within
#      the dtype's bounds, and quant_min <= quant_max;
#   4. eps is finite and >= 0, scale_dtype a float dtype, zero_point_dtype an
#      integer or float dtype;
#   5. the scalars clamp/clamp_min/full_like take fit the dtype they run in
#      (float16: libtorch raises for multi-element tensors, gives inf for one);
#   6. min_val and max_val share one dtype and shape;
#   7. scale/zero_point hold one value per block (pytorch/ao#4811), and the
#      INT/FLOAT domains need a zero point while NONE takes none
#      (pytorch/ao#3459).
# ---------------------------------------------------------------------------


def reduction_params(block: list[int], shape: list[int]):
    """torchao's own reshape for a block size (used to shape inputs, not outputs)."""
    return qp._get_reduction_params(list(block), list(shape))


def qparams_shape(block: list[int], shape: list[int]) -> list[int]:
    """Shape of the scale choose_qparams_affine returns for a valid block size."""
    sfr, dims = reduction_params(block, shape)
    return [s for i, s in enumerate(sfr) if i not in dims]


def refuse_block(block: list[int], shape: list[int], what: str = "input") -> Optional[str]:
    """Rule 1 (+ rule 2's empty input): the crate's BlockLayout::new."""
    if len(block) != len(shape):
        return f"block_size {block} has {len(block)} entries for a rank-{len(shape)} {what}"
    numel = math.prod(shape)
    if numel == 0:
        return f"{what} of shape {shape} is empty"
    for i, (b, s) in enumerate(zip(block, shape)):
        if b <= 0:
            return f"block_size entry {i} is {b}; entries must be >= 1"
        if b > s or s % b != 0:
            return f"block_size entry {i} ({b}) does not divide dim {i} of size {s}"
    if numel > 1 and not any(b > 1 for b in block):
        return f"block_size {block} reduces no dim of a {what} of shape {shape} (pytorch/ao#3458)"
    return None


def refuse_float_input(t, what: str = "input") -> Optional[str]:
    """Rule 2: float inputs must be float32/float16/bfloat16."""
    if dname(t.dtype) not in INPUT_FLOATS:
        return f"{what} dtype {dname(t.dtype)} is not float32, float16 or bfloat16"
    return None


def resolve_range(q: str, qmin, qmax) -> tuple[Optional[str], Any, Any]:
    """Rule 3. Returns (refusal, resolved qmin, resolved qmax)."""
    lo, hi = bounds(q)
    rmin = lo if qmin is None else qmin
    rmax = hi if qmax is None else qmax
    for name, v in (("quant_min", qmin), ("quant_max", qmax)):
        if v is None:
            continue
        if not math.isfinite(v):
            return f"{name} = {v} is not finite", rmin, rmax
        if q not in FLOAT8 and float(v) != int(v):
            return f"{name} = {v} is not an integer for {q}", rmin, rmax
        if v < lo or v > hi:
            return f"{name} = {v} is outside the bounds of {q} [{lo}, {hi}]", rmin, rmax
    if rmin > rmax:
        return f"quant_min {rmin} > quant_max {rmax}", rmin, rmax
    return None, rmin, rmax


def refuse_qparams_plan(a: dict, kind: str) -> Optional[str]:
    """Rules 3, 4, 5 of choose_qparams_affine(_with_min_max): the crate's Plan::new.

    `kind` is the dtype the computation runs in (input or min_val dtype).
    """
    why, qmin, qmax = resolve_range(a["target_dtype"], a["quant_min"], a["quant_max"])
    if why:
        return why
    eps = a["eps"]
    if eps is not None and (not math.isfinite(eps) or eps < 0):
        return f"eps = {eps} must be finite and >= 0"
    if a["scale_dtype"] is not None and a["scale_dtype"] not in SCALE_DTYPES_OK:
        return f"scale_dtype {a['scale_dtype']} is not a float dtype"
    if a["zero_point_dtype"] is not None and a["zero_point_dtype"] not in ZP_DTYPES_OK:
        return f"zero_point_dtype {a['zero_point_dtype']} is not an integer or float dtype"
    # Rule 5: scalars that clamp/clamp_min/full_like must convert into `kind`.
    # libtorch raises for multi-element f16 tensors but gives inf for one element.
    fmax = float_max(kind)
    eps_eff = eps if eps is not None else float(torch.finfo(tdt(kind)).eps)
    if abs(eps_eff) > fmax:
        return f"eps = {eps_eff} does not fit {kind}"
    symmetric = a["mapping_type"] != "ASYMMETRIC"
    if a["zero_point_domain"] == "INT":
        if symmetric and abs(int((qmax + qmin + 1) / 2)) > fmax:
            return f"symmetric zero point {int((qmax + qmin + 1) / 2)} does not fit {kind}"
        if not symmetric and max(abs(qmin), abs(qmax)) > fmax:
            return f"quant range [{qmin}, {qmax}] does not fit {kind}"
    return None


def refuse_qparam_tensor(t, name: str, block: list[int], shape: list[int]) -> Optional[str]:
    """Rule 7: scale/zero_point must have one value per block, in the qparams
    shape up to size-1 dims (torchao just .view()s them). A missing zero
    point is refuse_zero_point_presence's business."""
    if t is None:
        return None
    want = qparams_shape(block, shape)
    if t.numel() != math.prod(want):
        return f"{name} has {t.numel()} elements for {math.prod(want)} blocks"
    if [s for s in t.shape if s != 1] != [s for s in want if s != 1]:
        return f"{name} shape {list(t.shape)} does not match the qparams shape {want}"
    return None


def refuse_zero_point_presence(zp, domain: str) -> Optional[str]:
    """Rule 7: INT/FLOAT domains need a zero point, NONE takes none."""
    if domain in ("INT", "FLOAT") and zp is None:
        return f"zero_point_domain {domain} needs a zero_point"
    if domain == "NONE" and zp is not None:
        return "zero_point given with zero_point_domain NONE"
    return None


def quantize_clamp_dtype(input_dtype, scale_dtype, zp_dtype, domain: str):
    """The dtype torchao's quantize clamps in (rule 5): promotion of
    input * (1.0 / scale) [+ zero_point], or (input - (zp - scale*mid)) / scale."""
    pt = torch.promote_types
    if domain == "INT" and zp_dtype is not None:
        return pt(pt(input_dtype, scale_dtype), zp_dtype)
    if domain == "FLOAT" and zp_dtype is not None:
        return pt(pt(input_dtype, pt(zp_dtype, scale_dtype)), scale_dtype)
    return pt(input_dtype, scale_dtype)


def refuse_clamp_range(clamp_dtype, qmin, qmax) -> Optional[str]:
    name = dname(clamp_dtype)
    if name in INPUT_FLOATS + ["float64"] and max(abs(qmin), abs(qmax)) > float_max(name):
        return f"quant range [{qmin}, {qmax}] does not fit the clamp dtype {name}"
    return None


def refuse_quantize_like(inp, scale, zp, a: dict, qkey: str) -> Optional[str]:
    """quantize_affine / fake_quantize_affine(_cachemask) (rules 1, 2, 3, 5, 7)."""
    shape = list(inp.shape)
    why = (
        refuse_float_input(inp)
        or refuse_block(a["block_size"], shape)
        or resolve_range(a[qkey], a["quant_min"], a["quant_max"])[0]
        or refuse_zero_point_presence(zp, a["zero_point_domain"])
        or refuse_qparam_tensor(scale, "scale", a["block_size"], shape)
        or refuse_qparam_tensor(zp, "zero_point", a["block_size"], shape)
    )
    if why:
        return why
    _, qmin, qmax = resolve_range(a[qkey], a["quant_min"], a["quant_max"])
    cd = quantize_clamp_dtype(inp.dtype, scale.dtype, None if zp is None else zp.dtype, a["zero_point_domain"])
    return refuse_clamp_range(cd, qmin, qmax)


def crate_refuses(case: Case) -> Optional[str]:
    """Why tch-quant returns an error for this case, or None (README.md,
    "Semantics against torchao 0.11")."""
    a, i, op = case.args, case.inputs, case.op
    if op == "choose_qparams_affine":
        x = i["input"]
        return (
            refuse_float_input(x)
            or refuse_block(a["block_size"], list(x.shape))
            or refuse_qparams_plan(a, dname(x.dtype))
        )
    if op == "choose_qparams_affine_with_min_max":
        lo, hi = i["min_val"], i["max_val"]
        why = refuse_float_input(lo, "min_val")
        if why:
            return why
        if lo.dtype != hi.dtype:  # rule 6
            return f"max_val dtype {dname(hi.dtype)} differs from min_val dtype {dname(lo.dtype)}"
        if list(lo.shape) != list(hi.shape):
            return f"max_val shape {list(hi.shape)} differs from min_val shape {list(lo.shape)}"
        if any(b <= 0 for b in a["block_size"]):  # only this part of rule 1 applies
            return f"block_size {a['block_size']} has an entry <= 0"
        return refuse_qparams_plan(a, dname(lo.dtype))
    if op == "quantize_affine":
        return refuse_quantize_like(i["input"], i["scale"], i.get("zero_point"), a, "output_dtype")
    if op in ("fake_quantize_affine", "fake_quantize_affine_cachemask"):
        return refuse_quantize_like(i["input"], i["scale"], i.get("zero_point"), a, "quant_dtype")
    if op == "dequantize_affine":
        codes, scale, zp = i["input"], i["scale"], i.get("zero_point")
        shape = list(codes.shape)
        if dname(codes.dtype) != storage_name(a["input_dtype"]):
            return f"codes dtype {dname(codes.dtype)} is not {storage_name(a['input_dtype'])}, the storage of {a['input_dtype']}"
        return (
            refuse_block(a["block_size"], shape, "codes")
            or resolve_range(a["input_dtype"], a["quant_min"], a["quant_max"])[0]
            or refuse_zero_point_presence(zp, a["zero_point_domain"])
            or refuse_qparam_tensor(scale, "scale", a["block_size"], shape)
            or refuse_qparam_tensor(zp, "zero_point", a["block_size"], shape)
        )
    if op == "chain":
        x = i["input"]
        why = (
            refuse_float_input(x)
            or refuse_block(a["block_size"], list(x.shape))
            or refuse_qparams_plan(a, dname(x.dtype))
        )
        if why:
            return why
        # The quantize step clamps in the promotion of input, scale and zero point,
        # whose dtypes follow from the choose args.
        scale_dt = tdt(a["scale_dtype"] or dname(x.dtype))
        if a["zero_point_domain"] == "NONE":
            zp_dt = None
        elif a["zero_point_dtype"] is not None:
            zp_dt = tdt(a["zero_point_dtype"])
        elif a["mapping_type"] == "ASYMMETRIC" and a["zero_point_domain"] == "INT":
            zp_dt = torch.int32
        else:
            zp_dt = x.dtype
        _, qmin, qmax = resolve_range(a["target_dtype"], a["quant_min"], a["quant_max"])
        return refuse_clamp_range(quantize_clamp_dtype(x.dtype, scale_dt, zp_dt, a["zero_point_domain"]), qmin, qmax)
    if op in ("choose_qparams_affine_float8", "quantize_affine_float8",
              "choose_qparams_affine_floatx", "quantize_affine_floatx"):
        x = i["input"]
        if x.numel() == 0:
            return f"input of shape {list(x.shape)} is empty"
        return refuse_float_input(x)
    if op == "pack_uintx":
        x = i["input"]
        if x.dtype == torch.uint8 and x.numel() and int(x.max()) > 2 ** a["nbits"] - 1:
            return f"code {int(x.max())} does not fit {a['nbits']} bits (torchao masks it silently)"
        return None
    return None


# ---------------------------------------------------------------------------
# The torchao calls (one per op). Each returns {output name: tensor or None}.
# ---------------------------------------------------------------------------

MT = lambda name: qp.MappingType[name]  # noqa: E731
ZD = lambda name: qp.ZeroPointDomain[name]  # noqa: E731


def opt_dtype(name):
    return None if name is None else tdt(name)


def torchao_choose(x, a):
    return qp.choose_qparams_affine(
        x, MT(a["mapping_type"]), tuple(a["block_size"]), tdt(a["target_dtype"]),
        a["quant_min"], a["quant_max"], a["eps"], opt_dtype(a["scale_dtype"]),
        opt_dtype(a["zero_point_dtype"]), a["preserve_zero"], ZD(a["zero_point_domain"]),
    )


def torchao_quantize(x, block, scale, zp, q, qmin, qmax, domain):
    if q in SUB_INT:
        # torchao 0.11's quantize_affine ends in `.to(torch.intN)`, which libtorch
        # cannot do. Run its own sequence (public wrapper check, range check, the
        # uncast op) and store the codes in int8, as the crate does.
        if domain == "NONE" and zp is not None:
            raise ValueError("zero_point should be None when zero_point_domain is NONE")
        lo, hi = qp._get_and_check_qmin_qmax(tdt(q), qmin, qmax)
        return qp._quantize_affine_no_dtype_cast(x, list(block), scale, zp, lo, hi, tdt(q), domain).to(torch.int8)
    return qp.quantize_affine(x, tuple(block), scale, zp, tdt(q), qmin, qmax, ZD(domain))


def torchao_dequantize(codes, block, scale, zp, q, qmin, qmax, domain, out):
    if q in SUB_INT:
        # torchao asserts codes.dtype == torch.intN, which int8-stored codes never
        # are; do what _dequantize_affine does minus that assertion.
        if domain == "NONE" and zp is not None:
            raise ValueError("zero_point should be None when zero_point_domain is NONE")
        assert tdt(out) in [torch.float32, torch.float16, torch.bfloat16], f"Unsupported output dtype: {tdt(out)}"
        lo, hi = qp._get_and_check_qmin_qmax(tdt(q), qmin, qmax)
        return qp._dequantize_affine_no_dtype_check(codes, list(block), scale, zp, lo, hi, domain, tdt(out))
    return qp.dequantize_affine(codes, tuple(block), scale, zp, tdt(q), qmin, qmax, ZD(domain), output_dtype=tdt(out))


def run_choose(i, a):
    s, z = torchao_choose(i["input"], a)
    return {"scale": s, "zero_point": z}


def run_with_min_max(i, a):
    s, z = qp.choose_qparams_affine_with_min_max(
        i["min_val"], i["max_val"], MT(a["mapping_type"]), tuple(a["block_size"]),
        tdt(a["target_dtype"]), a["quant_min"], a["quant_max"], a["eps"],
        opt_dtype(a["scale_dtype"]), opt_dtype(a["zero_point_dtype"]), a["preserve_zero"],
        ZD(a["zero_point_domain"]),
    )
    return {"scale": s, "zero_point": z}


def run_quantize(i, a):
    return {"output": torchao_quantize(i["input"], a["block_size"], i["scale"], i.get("zero_point"),
                                       a["output_dtype"], a["quant_min"], a["quant_max"], a["zero_point_domain"])}


def run_dequantize(i, a):
    return {"output": torchao_dequantize(i["input"], a["block_size"], i["scale"], i.get("zero_point"),
                                         a["input_dtype"], a["quant_min"], a["quant_max"],
                                         a["zero_point_domain"], a["output_dtype"])}


def run_fake(i, a):
    # The public function works for int1..int7 too: it never casts to the dtype.
    return {"output": qp.fake_quantize_affine(
        i["input"], tuple(a["block_size"]), i["scale"], i.get("zero_point"), tdt(a["quant_dtype"]),
        a["quant_min"], a["quant_max"], ZD(a["zero_point_domain"]))}


def run_fake_cachemask(i, a):
    # torchao 0.11 compares the codes with the quant_min/quant_max *arguments*,
    # so None raises TypeError; the crate uses the dtype's bounds there, which
    # is what torchao computes when they are passed explicitly.
    lo, hi = resolved_range(a["quant_dtype"], a["quant_min"], a["quant_max"])
    out, mask = qp.fake_quantize_affine_cachemask(
        i["input"], tuple(a["block_size"]), i["scale"], i.get("zero_point"), tdt(a["quant_dtype"]),
        lo, hi, ZD(a["zero_point_domain"]))
    return {"output": out, "mask": mask}


def run_chain(i, a):
    x = i["input"]
    s, z = torchao_choose(x, a)
    codes = torchao_quantize(x, a["block_size"], s, z, a["target_dtype"], a["quant_min"], a["quant_max"],
                             a["zero_point_domain"])
    out = torchao_dequantize(codes, a["block_size"], s, z, a["target_dtype"], a["quant_min"], a["quant_max"],
                             a["zero_point_domain"], a["output_dtype"])
    return {"scale": s, "zero_point": z, "codes": codes, "output": out}


def run_choose_float8(i, a):
    return {"scale": qp.choose_qparams_affine_float8(i["input"], float8_dtype=tdt(a["float8_dtype"]))}


def run_quantize_float8(i, a):
    return {"output": qp.quantize_affine_float8(i["input"], i["scale"], float8_dtype=tdt(a["float8_dtype"]))}


def run_dequantize_float8(i, a):
    return {"output": qp.dequantize_affine_float8(i["input"], i["scale"], output_dtype=tdt(a["output_dtype"]))}


def run_choose_floatx(i, a):
    return {"scale": qp.choose_qparams_affine_floatx(i["input"], a["ebits"], a["mbits"])}


def run_quantize_floatx(i, a):
    return {"output": qp.quantize_affine_floatx(i["input"], i["scale"], a["ebits"], a["mbits"])}


def run_dequantize_floatx(i, a):
    return {"output": qp.dequantize_affine_floatx(i["input"], i["scale"], a["ebits"], a["mbits"],
                                                  output_dtype=tdt(a["output_dtype"]))}


def run_pack(i, a):
    shards = bp.pack(i["input"], a["nbits"], a["dim"])
    return {f"shard{k}": s for k, s in enumerate(shards)}


def run_unpack(i, a):
    shards = [i[f"shard{k}"] for k in range(len(i))]
    return {"output": bp.unpack(shards, a["nbits"], a["dim"])}


RUNNERS: dict[str, Callable] = {
    "choose_qparams_affine": run_choose,
    "choose_qparams_affine_with_min_max": run_with_min_max,
    "quantize_affine": run_quantize,
    "dequantize_affine": run_dequantize,
    "fake_quantize_affine": run_fake,
    "fake_quantize_affine_cachemask": run_fake_cachemask,
    "chain": run_chain,
    "choose_qparams_affine_float8": run_choose_float8,
    "quantize_affine_float8": run_quantize_float8,
    "dequantize_affine_float8": run_dequantize_float8,
    "choose_qparams_affine_floatx": run_choose_floatx,
    "quantize_affine_floatx": run_quantize_floatx,
    "dequantize_affine_floatx": run_dequantize_floatx,
    "pack_uintx": run_pack,
    "unpack_uintx": run_unpack,
}


def evaluate(case: Case, device: str) -> Result:
    """Runs torchao on the case. torchao is called even for refused inputs, only
    to tell a torchao error (plain error case) from a silent result (deliberate)."""
    refusal = crate_refuses(case)
    inputs = {k: v.to(device, copy=True) for k, v in case.inputs.items() if v is not None}
    try:
        with torch.no_grad():
            outputs = RUNNERS[case.op](inputs, case.args)
    except Exception as e:  # noqa: BLE001 - any torchao failure is an expected error
        return Result({"ok": False, "error": f"{type(e).__name__}: {str(e)[:200]}"})
    if refusal is not None:
        return Result({"ok": False, "error": f"tch-quant refuses: {refusal}", "deliberate": refusal})
    return Result({"ok": True}, outputs)


# ---------------------------------------------------------------------------
# Drawing configurations
# ---------------------------------------------------------------------------


class Picker:
    """Draws configuration values.

    random mode: independent uniform draws. fixtures mode (balanced): every
    (axis, value list) gets its own shuffled deck, so every value of every axis
    shows up equally often without taking the cartesian product.
    """

    def __init__(self, seed: int, balanced: bool):
        self.rng = random.Random(seed)
        self.balanced = balanced
        self.decks: dict[tuple[str, str], list[int]] = {}

    def pick(self, axis: str, values):
        values = list(values)
        if not self.balanced:
            return values[self.rng.randrange(len(values))]
        key = (axis, repr(values))
        deck = self.decks.get(key)
        if not deck:
            deck = list(range(len(values)))
            self.rng.shuffle(deck)
            self.decks[key] = deck
        return values[deck.pop()]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def randint(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)


@dataclass
class Limits:
    dims: list[int]
    small: int  # usual numel cap
    big: int  # occasional numel cap
    p_big: float


FIXTURE_LIMITS = Limits([1, 2, 3, 4, 6, 8, 12, 16, 32, 64], 64, 512, 0.15)
RANDOM_LIMITS = Limits([1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 32, 48, 64], 256, 2048, 0.4)


@dataclass
class Ctx:
    P: Picker
    gen: Any  # torch.Generator
    lim: Limits


def pick_shape(c: Ctx, rank: Optional[int] = None, ranks=(1, 2, 3, 4)) -> list[int]:
    if rank is None:
        rank = c.P.pick("rank", list(ranks))
    cap = c.lim.big if c.P.chance(c.lim.p_big) else c.lim.small
    for _ in range(500):
        shape = [c.P.rng.choice(c.lim.dims) for _ in range(rank)]
        if math.prod(shape) <= cap:
            return shape
    return [2] * rank


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


GRANULARITIES = ["per_tensor", "per_axis", "per_group", "per_token", "multi_dim"]


def block_for(c: Ctx, shape: list[int], gran: str) -> list[int]:
    r = len(shape)
    if gran == "per_tensor" or r == 0:
        return list(shape)
    if gran == "per_axis":  # one scale per index along `axis`
        b = list(shape)
        b[c.P.pick(f"axis{r}", range(r))] = 1
        return b
    if gran == "per_group":  # groups along one dim (mostly the last), others kept
        axis = r - 1 if c.P.chance(0.7) else c.P.rng.randrange(r)
        b = [1] * r
        ds = [d for d in divisors(shape[axis]) if d > 1] or [1]
        b[axis] = c.P.rng.choice(ds)
        return b
    if gran == "per_token":
        return [1] * (r - 1) + [shape[-1]]
    return [c.P.rng.choice(divisors(s)) for s in shape]  # multi_dim blocks


def pick_block(c: Ctx, shape: list[int]) -> tuple[str, list[int]]:
    """A valid block size that reduces something (retries a few times)."""
    gran = c.P.pick("gran", GRANULARITIES)
    for _ in range(6):
        b = block_for(c, shape, gran)
        if refuse_block(b, shape) is None:
            return gran, b
        gran = c.P.rng.choice(GRANULARITIES)
    return "per_tensor", list(shape)


DATA_KINDS = ["normal", "scaled", "zero_blocks", "positive", "negative", "tiny", "huge",
              "constant", "neg_zero", "nan", "inf", "mixed_special"]


def make_data(c: Ctx, shape: list[int], dtype: str, kind: str, block: Optional[list[int]] = None):
    """A float tensor of one of the data kinds; made in float32 then cast (so
    huge values become inf in float16, as they would for a user)."""
    n = math.prod(shape)
    g = c.gen
    x = torch.randn(n, generator=g)
    if kind == "scaled":
        x = x * 10.0 ** c.P.rng.uniform(-4, 4)
    elif kind == "zero_blocks":
        x = zero_some_blocks(c, x, shape, block)
    elif kind == "positive":
        x = x.abs() + 0.01
    elif kind == "negative":
        x = -x.abs() - 0.01
    elif kind == "tiny":  # below every default eps
        x = x * 1e-9
    elif kind == "huge":
        x = x * 1e30
    elif kind == "constant":
        x = torch.full((n,), c.P.rng.choice([0.0, 1.0, -2.5, 3.0, 1e-3, -0.0]))
    elif kind == "neg_zero":
        if c.P.chance(0.3):
            x = torch.full((n,), -0.0)
        else:
            x[torch.rand(n, generator=g) < 0.4] = -0.0
    elif kind in ("nan", "inf", "mixed_special") and n > 0:
        specials = {"nan": [math.nan], "inf": [math.inf, -math.inf],
                    "mixed_special": [math.nan, math.inf, -math.inf, -0.0]}[kind]
        for _ in range(c.P.randint(1, max(1, min(3, n)))):
            x[c.P.rng.randrange(n)] = c.P.rng.choice(specials)
    return x.reshape(shape).to(tdt(dtype))


def zero_some_blocks(c: Ctx, x, shape, block):
    """Sets a random subset of the blocks (or everything) to exactly 0."""
    if block is None or refuse_block(block, shape) is not None or c.P.chance(0.2):
        return torch.zeros_like(x)
    bid = torch.zeros(shape, dtype=torch.int64)
    nb = 1
    for d, (s, b) in enumerate(zip(shape, block)):
        view = [1] * len(shape)
        view[d] = s
        bid = bid * (s // b) + (torch.arange(s) // b).reshape(view)
        nb *= s // b
    chosen = torch.rand(nb, generator=c.gen) < 0.5
    return torch.where(chosen[bid.reshape(-1)], torch.zeros_like(x), x)


def pick_range(c: Ctx, q: str) -> tuple[Any, Any, str]:
    """quant_min/quant_max: default, custom inside the bounds, one side only,
    a single value. Ints for integer dtypes, floats for float8."""
    lo, hi = bounds(q)
    mode = c.P.pick("range_mode", ["default", "default", "both", "min_only", "max_only", "narrow_sym", "equal"])
    if q in FLOAT8:
        rnd = lambda a, b: round(c.P.rng.uniform(a, b), 2)  # noqa: E731
    else:
        rnd = lambda a, b: c.P.randint(int(a), int(b))  # noqa: E731
    if mode == "default":
        return None, None, mode
    if mode == "both":
        a = rnd(lo, hi)
        return a, rnd(a, hi), mode
    if mode == "min_only":
        return rnd(lo, hi), None, mode
    if mode == "max_only":
        return None, rnd(lo, hi), mode
    if mode == "narrow_sym" and lo < 0:
        return -hi, hi, mode  # e.g. [-127, 127]
    if mode == "narrow_sym":
        return lo + (1 if hi > 1 else 0), hi, mode
    v = rnd(lo, hi)
    return v, v, mode


def resolved_range(q: str, qmin, qmax):
    """Resolved range of a (valid) quantized dtype."""
    _, a, b = resolve_range(q, qmin, qmax)
    return a, b


# ---------------------------------------------------------------------------
# Op builders. Each draws one case; `twist` names a deliberate defect (an
# error or refusal case), None draws a valid configuration.
# ---------------------------------------------------------------------------

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


QUANT_TWISTS = ["block_len", "block_zero", "block_no_reduce", "block_nondiv", "empty", "input_f64", "input_int",
                "range_reversed", "range_out", "range_nonint", "scale_flat", "scale_numel", "scale_permuted",
                "zp_missing", "zp_with_none_domain", "f16_int32", "range_none"]


def random_scale(c: Ctx, shape: list[int], dtype: str):
    """Positive scales spread over many magnitudes, occasionally 0."""
    s = torch.exp(torch.randn(shape, generator=c.gen) * 2.0) * 10.0 ** c.P.rng.uniform(-3, 1)
    if c.P.chance(0.05) and s.numel():
        s.view(-1)[0] = 0.0
    return s.to(tdt(dtype))


def random_zero_point(c: Ctx, shape: list[int], domain: str, qmin, qmax, float_dtype: str):
    if domain == "NONE":
        return None
    if domain == "FLOAT":
        return (torch.randn(shape, generator=c.gen) * 2).to(tdt(c.P.pick("fzp_dtype", [float_dtype, "float32"])))
    lo, hi = int(math.ceil(qmin)), int(math.floor(qmax))
    if lo > hi:  # a float8 range with no integer inside
        lo = hi = int(round(qmin))
    z = torch.randint(lo, hi + 1, shape, generator=c.gen, dtype=torch.int64)
    return z.to(tdt(c.P.pick("izp_dtype", ["int32", "int32", "int32", "int64", "float32", float_dtype])))


def quant_operands(c: Ctx, qkey: str):
    """Input, block, scale, zero_point and args shared by quantize and fake quantize.

    Scales come from torchao's choose_qparams_affine on the same input (the
    real use), from random draws, or are powers of two with inputs at exact
    rounding ties (x / scale = k + 0.5) to pin round-half-to-even.
    """
    in_dtype = c.P.pick("in_dtype", INPUT_FLOATS)
    q = c.P.pick("qdtype", QUANT_DTYPES)
    source = c.P.pick("qsource", ["choose", "choose", "random", "ties"])
    shape = pick_shape(c, ranks=(0, 1, 2, 3, 4) if c.P.chance(0.05) else (1, 2, 3, 4))
    gran, block = pick_block(c, shape)
    kind = c.P.pick("data", DATA_KINDS) if source != "ties" else "ties"
    x = make_data(c, shape, in_dtype, "normal" if kind == "ties" else kind, block)
    qshape = qparams_shape(block, shape)
    a = None
    scale = zp = None
    if source == "choose":
        a = choose_args(c, target=q)
        a["block_size"] = block
        try:
            scale, zp = torchao_choose(x, a)
        except Exception:  # noqa: BLE001 - an invalid draw: fall back to random qparams
            scale = None
        domain = a["zero_point_domain"]
        qmin, qmax = a["quant_min"], a["quant_max"]
        if scale is not None and crate_refuses(Case("", "choose_qparams_affine", {"input": x}, a)):
            scale = None
    if scale is None:
        domain = c.P.pick("q_domain", ["INT", "INT", "FLOAT", "NONE"])
        qmin, qmax, _ = pick_range(c, q)
        if resolve_range(q, qmin, qmax)[0]:
            qmin = qmax = None
        rmin, rmax = resolved_range(q, qmin, qmax)
        sdt = c.P.pick("scale_dtype_q", [in_dtype, in_dtype, "float32", "float64"])
        if source == "ties":
            # Power-of-two scales make x * (1 / scale) exact, so x sits on .5.
            scale = (2.0 ** torch.randint(-4, 5, qshape, generator=c.gen).float()).to(tdt(sdt))
            sfr, dims = reduction_params(block, shape)
            after = [1 if d in dims else s for d, s in enumerate(sfr)]
            k = torch.randint(-40, 40, sfr, generator=c.gen).float() + 0.5
            x = (k * scale.float().reshape(after)).reshape(shape).to(tdt(in_dtype))
            if domain == "FLOAT":
                zp = (scale.float() * torch.randint(-3, 4, qshape, generator=c.gen).float()).to(scale.dtype)
            else:
                zp = random_zero_point(c, qshape, domain, rmin, rmax, in_dtype)
        else:
            scale = random_scale(c, qshape, sdt)
            zp = random_zero_point(c, qshape, domain, rmin, rmax, in_dtype)
    if c.P.chance(0.1):
        # Qparams in torchao's broadcast shape (reduced dims kept as 1): the same
        # blocks, so accepted; only the size-1 dims differ from choose's output.
        scale, zp = keepdim_qparam(scale, block, shape), keepdim_qparam(zp, block, shape)
        source += "_keepdim"
    args = {"block_size": block, qkey: q, "quant_min": qmin, "quant_max": qmax, "zero_point_domain": domain}
    return x, scale, zp, args, f"{gran}/{kind}/{source}"


def keepdim_qparam(t, block: list[int], shape: list[int]):
    if t is None:
        return None
    sfr, dims = reduction_params(block, shape)
    return t.reshape([1 if d in dims else s for d, s in enumerate(sfr)])


def apply_quant_twist(c: Ctx, twist: str, x, scale, zp, a: dict, qkey: str):
    block, shape = a["block_size"], list(x.shape)
    r = len(shape)

    def silent_qparam(t, new_block, new_shape):
        # A qparam that torchao's .view() accepts for the defective block size.
        sfr, dims = reduction_params(new_block, new_shape)
        n = math.prod(1 if d in dims else s for d, s in enumerate(sfr))
        return None if t is None else t.reshape(-1)[:1].repeat(n).reshape([n] if n > 1 else [])

    if twist == "block_len":
        a["block_size"] = block + [1]
    elif twist == "block_zero" and r:
        nb = list(block)
        nb[c.P.rng.randrange(r)] = 0
        a["block_size"] = nb
        scale, zp = silent_qparam(scale, nb, shape), silent_qparam(zp, nb, shape)
    elif twist == "block_no_reduce":
        if math.prod(shape) <= 1 or r == 0:
            x, shape = make_data(c, [2, 4], dname(x.dtype), "normal"), [2, 4]
        a["block_size"] = [1] * len(shape)
        scale = scale.reshape(-1)[:1].reshape([])
        zp = None if zp is None else zp.reshape(-1)[:1].reshape([])
    elif twist == "block_nondiv" and r:
        d = max(range(r), key=lambda k: shape[k])
        cands = [b for b in range(2, shape[d]) if shape[d] % b]
        nb = list(block)
        nb[d] = c.P.rng.choice(cands) if cands else shape[d] + 1
        a["block_size"] = nb
    elif twist == "empty":
        x = torch.zeros([0] + shape[1:] if r else [0], dtype=x.dtype)
        a["block_size"] = [1] + block[1:] if r else [1]
        scale = scale.reshape(-1)[:0]
        zp = None if zp is None else zp.reshape(-1)[:0]
    elif twist == "input_f64":
        x = x.double()
    elif twist == "input_int":
        x = x.nan_to_num(0.0, 0.0, 0.0).clamp(-100, 100).round().int()
    elif twist in ("range_reversed", "range_out", "range_nonint"):
        a2 = {"target_dtype": a[qkey], "quant_min": a["quant_min"], "quant_max": a["quant_max"]}
        _, _, a2 = apply_choose_twist(c, twist, x, block, a2)
        a[qkey], a["quant_min"], a["quant_max"] = a2["target_dtype"], a2["quant_min"], a2["quant_max"]
    elif twist == "scale_flat":
        # qparams of shape [a, b] given flat [a*b]: torchao's .view() accepts it.
        if len([s for s in scale.shape if s != 1]) < 2:
            x = make_data(c, [4, 6, 8], dname(x.dtype), "normal")
            a["block_size"] = [1, 3, 8]
            scale = random_scale(c, [4, 2], dname(scale.dtype))
            zp = None if zp is None else random_zero_point(c, [4, 2], a["zero_point_domain"], 0, 1, "float32")
        scale = scale.reshape(-1)
        zp = None if zp is None else zp.reshape(-1)
    elif twist == "scale_numel":
        scale = torch.cat([scale.reshape(-1), scale.reshape(-1)[:1]])
    elif twist == "scale_permuted":
        # [a, b] given as [b, a] (same numel): silently misassigned by torchao.
        x = make_data(c, [4, 6], dname(x.dtype), "normal")
        a["block_size"] = [1, 3]
        scale = random_scale(c, [2, 4], dname(scale.dtype))
        zp = None if zp is None else random_zero_point(c, [2, 4], a["zero_point_domain"], 0, 1, "float32")
        if a["quant_min"] is not None and a["quant_min"] > 1:
            a["quant_min"] = None
    elif twist == "zp_missing":
        a["zero_point_domain"] = c.P.pick("zp_missing_domain", ["INT", "FLOAT"])
        zp = None
    elif twist == "zp_with_none_domain":
        if zp is None:
            zp = torch.zeros(scale.shape, dtype=torch.int32)
        a["zero_point_domain"] = "NONE"
    elif twist == "f16_int32":
        x = x.half()
        scale = scale.half()
        a[qkey], a["quant_min"], a["quant_max"] = "int32", None, None
        if zp is not None and zp.dtype.is_floating_point:
            zp = zp.half()
    elif twist == "range_none":  # cachemask: defaults are the dtype's bounds
        a["quant_min"] = a["quant_max"] = None
    return x, scale, zp, a


def build_quantize_like(c: Ctx, twist: Optional[str], op: str, qkey: str, short: str) -> Case:
    x, scale, zp, a, tag = quant_operands(c, qkey)
    if op == "fake_quantize_affine_cachemask" and twist != "range_none":
        # torchao's cachemask compares q >= quant_min with the *argument*, so a
        # None range raises; give the dtype's range explicitly unless testing that.
        lo, hi = resolved_range(a[qkey], a["quant_min"], a["quant_max"])
        a["quant_min"], a["quant_max"] = lo, hi
    if twist:
        x, scale, zp, a = apply_quant_twist(c, twist, x, scale, zp, a, qkey)
    return Case(f"{short}/{a[qkey]}/{a['zero_point_domain'].lower()}/{dname(x.dtype)}/{twist or tag}",
                op, {"input": x, "scale": scale, "zero_point": zp}, a)


def build_quantize(c, twist):
    return build_quantize_like(c, twist, "quantize_affine", "output_dtype", "quant")


def build_fake(c, twist):
    return build_quantize_like(c, twist, "fake_quantize_affine", "quant_dtype", "fake")


def build_cachemask(c, twist):
    return build_quantize_like(c, twist, "fake_quantize_affine_cachemask", "quant_dtype", "cachemask")


DEQUANT_TWISTS = ["codes_dtype", "zp_missing", "zp_with_none_domain", "scale_flat", "scale_numel", "block_len",
                  "block_zero", "block_no_reduce", "block_nondiv", "empty", "range_reversed", "range_out",
                  "range_nonint", "out_dtype_bad"]


def random_codes(c: Ctx, q: str, shape: list[int], qmin, qmax):
    """Codes in the storage dtype of q; mostly in [qmin, qmax], sometimes the
    whole storage range (torchao does not check code values)."""
    if q in FLOAT8:
        return (torch.randn(shape, generator=c.gen) * 10.0 ** c.P.rng.uniform(-2, 2.5)).to(tdt(q))
    st = storage_name(q)
    if c.P.chance(0.1) and st in ("uint8", "int8"):
        lo, hi = bounds(st)
    else:
        lo, hi = int(qmin), int(qmax)
    return torch.randint(lo, hi + 1, shape, generator=c.gen, dtype=torch.int64).to(tdt(st))


def build_dequantize(c: Ctx, twist: Optional[str]) -> Case:
    q = c.P.pick("qdtype", QUANT_DTYPES)
    out = c.P.pick("out_dtype", INPUT_FLOATS)
    shape = pick_shape(c, ranks=(0, 1, 2, 3, 4) if c.P.chance(0.05) else (1, 2, 3, 4))
    gran, block = pick_block(c, shape)
    qmin, qmax, _ = pick_range(c, q)
    if resolve_range(q, qmin, qmax)[0]:
        qmin = qmax = None
    rmin, rmax = resolved_range(q, qmin, qmax)
    domain = c.P.pick("q_domain", ["INT", "INT", "FLOAT", "NONE"])
    qshape = qparams_shape(block, shape)
    codes = random_codes(c, q, shape, rmin, rmax)
    sdt = c.P.pick("scale_dtype_q", [out, out, "float32", "float64", "float16", "bfloat16"])
    scale = random_scale(c, qshape, sdt)
    zp = random_zero_point(c, qshape, domain, rmin, rmax, out)
    a = {"block_size": block, "input_dtype": q, "quant_min": qmin, "quant_max": qmax,
         "zero_point_domain": domain, "output_dtype": out}
    if twist == "codes_dtype":
        # e.g. int32 codes for uint4 (torchao skips its dtype check for uint1..7).
        wrong = c.P.rng.choice(["int32", "int16"] if q in SUB_UINT else ["int32", "uint8", "int16"])
        if wrong == dname(codes.dtype):
            wrong = "int64"
        codes = codes.to(tdt(wrong))
    elif twist == "out_dtype_bad":
        a["output_dtype"] = c.P.rng.choice(["float64", "int32"])
    elif twist is not None:
        a["quant_dtype_tmp"] = a.pop("input_dtype")
        codes, scale, zp, a = apply_quant_twist(c, twist, codes, scale, zp, a, "quant_dtype_tmp")
        a["input_dtype"] = a.pop("quant_dtype_tmp")
        q = a["input_dtype"]
        if codes.dtype != tdt(storage_name(q)):
            # Some twists swap in float data or another dtype: codes again.
            codes = random_codes(c, q, list(codes.shape), *resolved_range(q, None, None))
    return Case(f"dequant/{a['input_dtype']}/{a['zero_point_domain'].lower()}/{a['output_dtype']}/{twist or gran}",
                "dequantize_affine", {"input": codes, "scale": scale, "zero_point": zp}, a)


F8_TWISTS = ["input_f64", "input_int", "empty"]


def build_choose_float8(c: Ctx, twist: Optional[str]) -> Case:
    f8 = c.P.pick("f8", FLOAT8)
    in_dtype = c.P.pick("in_dtype", INPUT_FLOATS)
    kind = c.P.pick("data", DATA_KINDS)
    x = make_data(c, pick_shape(c, ranks=(0, 1, 2, 3)), in_dtype, kind)
    x = float_input_twist(c, twist, x)
    return Case(f"f8choose/{f8}/{dname(x.dtype)}/{twist or kind}", "choose_qparams_affine_float8",
                {"input": x}, {"float8_dtype": f8})


def float_input_twist(c: Ctx, twist: Optional[str], x):
    if twist == "input_f64":
        return x.double()
    if twist == "input_int":
        return x.nan_to_num(0.0, 0.0, 0.0).clamp(-100, 100).round().int()
    if twist == "empty":
        return torch.zeros([0] + list(x.shape[1:]), dtype=x.dtype)
    return x


def build_quantize_float8(c: Ctx, twist: Optional[str]) -> Case:
    f8 = c.P.pick("f8", FLOAT8)
    in_dtype = c.P.pick("in_dtype", INPUT_FLOATS)
    kind = c.P.pick("data", DATA_KINDS)
    x = make_data(c, pick_shape(c, ranks=(0, 1, 2, 3)), in_dtype, kind)
    if c.P.chance(0.7):  # tensorwise scale from torchao itself (float32, 0-d)
        scale = qp.choose_qparams_affine_float8(x, float8_dtype=tdt(f8))
    else:
        scale = random_scale(c, [], "float32")
    x = float_input_twist(c, twist, x)
    return Case(f"f8quant/{f8}/{dname(x.dtype)}/{twist or kind}", "quantize_affine_float8",
                {"input": x, "scale": scale}, {"float8_dtype": f8})


def build_dequantize_float8(c: Ctx, twist: Optional[str]) -> Case:
    f8 = c.P.pick("f8", FLOAT8)
    out = c.P.pick("out_dtype", INPUT_FLOATS)
    codes = random_codes(c, f8, pick_shape(c, ranks=(0, 1, 2, 3)), None, None)
    scale = random_scale(c, [], "float32")
    return Case(f"f8dequant/{f8}/{out}", "dequantize_affine_float8", {"input": codes, "scale": scale},
                {"output_dtype": out})


FX_CHOOSE_TWISTS = ["input_1d", "input_f64", "input_int", "empty"]
FX_QUANT_TWISTS = ["bad_bits", "input_f64"]
FX_DEQUANT_TWISTS = ["bad_bits", "codes_dtype"]


def floatx_input(c: Ctx):
    in_dtype = c.P.pick("in_dtype", INPUT_FLOATS)
    kind = c.P.pick("data", DATA_KINDS)
    return make_data(c, pick_shape(c, rank=2), in_dtype, kind), kind


def build_choose_floatx(c: Ctx, twist: Optional[str]) -> Case:
    e, m = c.P.pick("fx", FLOATX_FORMATS)
    x, kind = floatx_input(c)
    if twist == "input_1d":
        x = x.reshape(-1)
    else:
        x = float_input_twist(c, twist, x)
    return Case(f"fxchoose/e{e}m{m}/{dname(x.dtype)}/{twist or kind}", "choose_qparams_affine_floatx",
                {"input": x}, {"ebits": e, "mbits": m})


def build_quantize_floatx(c: Ctx, twist: Optional[str]) -> Case:
    e, m = c.P.pick("fx", FLOATX_FORMATS)
    x, kind = floatx_input(c)
    if c.P.chance(0.7):
        scale = qp.choose_qparams_affine_floatx(x, e, m)
    else:
        scale = random_scale(c, [x.shape[0]], c.P.pick("fx_scale", INPUT_FLOATS))
    if twist == "bad_bits":
        e, m = c.P.rng.choice([(4, 4), (5, 3), (3, 5)])
    x = float_input_twist(c, twist, x)
    return Case(f"fxquant/e{e}m{m}/{dname(x.dtype)}/{twist or kind}", "quantize_affine_floatx",
                {"input": x, "scale": scale}, {"ebits": e, "mbits": m})


def build_dequantize_floatx(c: Ctx, twist: Optional[str]) -> Case:
    e, m = c.P.pick("fx", FLOATX_FORMATS)
    out = c.P.pick("out_dtype", INPUT_FLOATS)
    shape = pick_shape(c, rank=2)
    codes = torch.randint(0, 2 ** (1 + e + m), shape, generator=c.gen, dtype=torch.uint8)
    scale = random_scale(c, [shape[0]], c.P.pick("fx_scale", INPUT_FLOATS))
    if twist == "bad_bits":
        e, m = c.P.rng.choice([(4, 4), (5, 3), (3, 5)])
    elif twist == "codes_dtype":
        codes = codes.to(torch.int32)
    return Case(f"fxdequant/e{e}m{m}/{out}/{twist or 'ok'}", "dequantize_affine_floatx",
                {"input": codes, "scale": scale}, {"ebits": e, "mbits": m, "output_dtype": out})


PACK_TWISTS = ["code_too_big", "dim_not_mult8", "not_uint8", "nbits_bad"]


def pack_shape(c: Ctx) -> tuple[list[int], int]:
    """A shape whose pack dim is a multiple of 8, and that dim (maybe negative)."""
    rank = c.P.pick("pack_rank", [1, 2, 3])
    shape = pick_shape(c, rank=rank)
    d = c.P.rng.randrange(rank)
    shape[d] = 8 * c.P.rng.choice([1, 1, 2, 3, 4])
    while math.prod(shape) > c.lim.big:
        shape = [max(1, s // 2) if k != d else s for k, s in enumerate(shape)]
    dim = d - rank if c.P.chance(0.3) else d
    return shape, dim


def build_pack(c: Ctx, twist: Optional[str]) -> Case:
    nbits = c.P.pick("nbits", range(1, 8))
    shape, dim = pack_shape(c)
    x = torch.randint(0, 2 ** nbits, shape, generator=c.gen, dtype=torch.uint8)
    if twist == "code_too_big":
        x.view(-1)[c.P.rng.randrange(x.numel())] = c.P.randint(2 ** nbits, 255)
    elif twist == "dim_not_mult8":
        shape[dim] += c.P.randint(1, 7)
        x = torch.randint(0, 2 ** nbits, shape, generator=c.gen, dtype=torch.uint8)
    elif twist == "not_uint8":
        x = x.to(c.P.rng.choice([torch.int8, torch.int32]))
    elif twist == "nbits_bad":
        nbits = c.P.rng.choice([0, 8])
    return Case(f"pack/u{nbits}/dim{dim}/{twist or 'ok'}", "pack_uintx", {"input": x}, {"nbits": nbits, "dim": dim})


def build_unpack(c: Ctx, twist: Optional[str]) -> Case:
    nbits = c.P.pick("nbits", range(1, 8))
    shape, dim = pack_shape(c)
    d = dim % len(shape)
    shards = {}
    # Shard shapes from torchao's own layout table: the packed dim holds numbits/8 of it.
    for k, nb in enumerate(bp.numbits[nbits]):
        sh = list(shape)
        sh[d] = shape[d] * nb // 8
        shards[f"shard{k}"] = torch.randint(0, 256, sh, generator=c.gen, dtype=torch.uint8)
    if twist == "nbits_bad":
        nbits = 8
    return Case(f"unpack/u{nbits}/dim{dim}/{twist or 'ok'}", "unpack_uintx", shards, {"nbits": nbits, "dim": dim})


@dataclass
class OpSpec:
    build: Callable[[Ctx, Optional[str]], Case]
    twists: list[str]
    grid: int  # valid cases in fixtures mode
    per_twist: int  # cases per twist in fixtures mode
    weight: float  # share in random mode


OPS: dict[str, OpSpec] = {
    "choose_qparams_affine": OpSpec(build_choose, CHOOSE_TWISTS, 680, 4, 40),
    "choose_qparams_affine_with_min_max": OpSpec(build_with_min_max, WMM_TWISTS, 60, 2, 5),
    "quantize_affine": OpSpec(build_quantize, QUANT_TWISTS[:-1], 130, 2, 9),
    "dequantize_affine": OpSpec(build_dequantize, DEQUANT_TWISTS, 120, 2, 8),
    "fake_quantize_affine": OpSpec(build_fake, QUANT_TWISTS[:-1], 70, 1, 5),
    "fake_quantize_affine_cachemask": OpSpec(build_cachemask, QUANT_TWISTS, 60, 1, 4),
    "chain": OpSpec(build_chain, CHOOSE_TWISTS, 130, 1, 11),
    "choose_qparams_affine_float8": OpSpec(build_choose_float8, F8_TWISTS, 30, 2, 2),
    "quantize_affine_float8": OpSpec(build_quantize_float8, F8_TWISTS, 30, 2, 2),
    "dequantize_affine_float8": OpSpec(build_dequantize_float8, [], 30, 0, 2),
    "choose_qparams_affine_floatx": OpSpec(build_choose_floatx, FX_CHOOSE_TWISTS, 30, 2, 2),
    "quantize_affine_floatx": OpSpec(build_quantize_floatx, FX_QUANT_TWISTS, 30, 2, 2),
    "dequantize_affine_floatx": OpSpec(build_dequantize_floatx, FX_DEQUANT_TWISTS, 30, 2, 2),
    "pack_uintx": OpSpec(build_pack, PACK_TWISTS, 49, 3, 3),
    "unpack_uintx": OpSpec(build_unpack, ["nbits_bad"], 49, 2, 3),
}

FIXTURE_SEED = 0
TWIST_RATE = 0.08  # random mode: share of cases drawn with a defect


def draw_fixture_cases() -> list[Case]:
    """The systematic grid: for each op, `grid` balanced valid draws plus
    `per_twist` draws of every defect."""
    cases = []
    for k, (op, spec) in enumerate(OPS.items()):
        # Seed 0, offset per op so that adding cases to one op leaves the others alone.
        c = Ctx(Picker(FIXTURE_SEED + k, balanced=True), torch.Generator().manual_seed(FIXTURE_SEED + k),
                FIXTURE_LIMITS)
        cases += [spec.build(c, None) for _ in range(spec.grid)]
        cases += [spec.build(c, t) for t in spec.twists for _ in range(spec.per_twist)]
    return cases


def draw_random_cases(seed: int, count: int, ops: Optional[list[str]] = None) -> list[Case]:
    c = Ctx(Picker(seed, balanced=False), torch.Generator().manual_seed(seed), RANDOM_LIMITS)
    names = ops or list(OPS)
    weights = [OPS[n].weight for n in names]
    cases = []
    for _ in range(count):
        spec = OPS[c.P.rng.choices(names, weights)[0]]
        twist = c.P.rng.choice(spec.twists) if spec.twists and c.P.chance(TWIST_RATE) else None
        cases.append(spec.build(c, twist))
    return cases


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def json_value(v):
    """JSON has no NaN/inf: non-finite float args are written as the strings
    "nan", "inf", "-inf"."""
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, list):
        return [json_value(e) for e in v]
    return v


class TensorStore:
    """Every tensor as flat uint8 raw bytes, with its dtype and shape on the side."""

    def __init__(self):
        self.tensors: dict[str, Any] = {}
        self.meta: dict[str, dict] = {}

    def add(self, t) -> str:
        key = f"t{len(self.tensors)}"
        t = t.detach().to("cpu").contiguous()
        self.meta[key] = {"dtype": dname(t.dtype), "shape": list(t.shape)}
        self.tensors[key] = t.reshape(-1).view(torch.uint8).clone()
        return key


def generate(cases: list[Case], device: str) -> tuple[list[dict], TensorStore, Counter]:
    store = TensorStore()
    records, stats = [], Counter()
    seen: Counter = Counter()
    for case in cases:
        seen[case.id] += 1
        cid = f"{case.id}/{seen[case.id] - 1}"
        res = evaluate(case, device)
        inputs = {k: store.add(v) for k, v in case.inputs.items() if v is not None}
        expected = dict(res.expected)
        if expected["ok"]:
            expected["outputs"] = {k: (None if v is None else store.add(v)) for k, v in res.outputs.items()}
            status = "ok"
        else:
            status = "deliberate" if "deliberate" in expected else "error"
        stats[(case.op, status)] += 1
        records.append({"id": cid, "op": case.op, "inputs": inputs,
                        "args": {k: json_value(v) for k, v in case.args.items()}, "expected": expected})
    return records, store, stats


def write(out_dir: str, records, store: TensorStore, header: dict) -> int:
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    doc = dict(header, tensors=store.meta, cases=records)
    jpath, spath = os.path.join(out_dir, "cases.json"), os.path.join(out_dir, "tensors.safetensors")
    with open(jpath, "w") as f:
        json.dump(doc, f, sort_keys=True, allow_nan=False, separators=(",", ":"))
        f.write("\n")
    save_file(store.tensors, spath)
    return os.path.getsize(jpath) + os.path.getsize(spath)


def print_summary(stats: Counter, size: int, elapsed: float, n: int):
    ops = sorted({op for op, _ in stats})
    print(f"{'op':40s} {'ok':>6s} {'error':>6s} {'delib':>6s}")
    for op in ops:
        print(f"{op:40s} {stats[(op, 'ok')]:6d} {stats[(op, 'error')]:6d} {stats[(op, 'deliberate')]:6d}")
    tot = {s: sum(v for (o, st), v in stats.items() if st == s) for s in ("ok", "error", "deliberate")}
    print(f"{'total ' + str(n):40s} {tot['ok']:6d} {tot['error']:6d} {tot['deliberate']:6d}")
    print(f"size {size / 1e6:.3f} MB, {elapsed:.2f} s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    fx = sub.add_parser("fixtures", help="the deterministic systematic grid (seed 0)")
    fx.add_argument("--out", required=True)
    rd = sub.add_parser("random", help="seeded random cases")
    rd.add_argument("--seed", type=int, required=True)
    rd.add_argument("--count", type=int, required=True)
    rd.add_argument("--out", required=True)
    rd.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    rd.add_argument("--ops", default=None,
                    help="comma-separated op names to draw from (default: all, weighted)")
    args = ap.parse_args(argv)

    torch_v, ao_v = load_oracle()
    t0 = time.time()
    if args.mode == "fixtures":
        device, seed = "cpu", FIXTURE_SEED
        cases = draw_fixture_cases()
    else:
        device, seed = args.device, args.seed
        if device == "cuda" and not torch.cuda.is_available():
            sys.exit("generate.py: --device cuda but torch sees no CUDA device")
        ops = [o.strip() for o in args.ops.split(",") if o.strip()] if args.ops else None
        unknown = sorted(set(ops or []) - set(OPS))
        if unknown:
            sys.exit(f"generate.py: unknown ops {unknown}; known: {sorted(OPS)}")
        cases = draw_random_cases(seed, args.count, ops)
    records, store, stats = generate(cases, device)
    header = {"torch": torch_v, "torchao": ao_v, "seed": seed, "mode": args.mode, "device": device}
    size = write(args.out, records, store, header)
    print_summary(stats, size, time.time() - t0, len(records))
    if args.mode == "fixtures" and size > 10_000_000:
        print(f"generate.py: fixtures are {size} bytes, over the 10 MB budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
