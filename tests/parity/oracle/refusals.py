"""What tch-quant refuses (README.md, "Semantics against torchao 0.11": the
"differences from torchao 0.11" column). Applied to every case before its
torchao result is taken as the expectation: when torchao silently computes
something for such an input, the case becomes {"ok": false, "deliberate"}.

The rules, as the helpers below number them:
  1. block_size has one entry per dim, each >= 1 and dividing its dim, and
     reduces some dim of a multi-element tensor (pytorch/ao#3458);
  2. inputs are non-empty float32, float16 or bfloat16;
  3. quant_min/quant_max are finite, integers for integer dtypes, within
     the dtype's bounds, and quant_min <= quant_max;
  4. eps is finite and >= 0, scale_dtype a float dtype, zero_point_dtype an
     integer or float dtype;
  5. the scalars clamp/clamp_min/full_like take fit the dtype they run in
     (float16: libtorch raises for multi-element tensors, gives inf for one);
  6. min_val and max_val share one dtype and shape;
  7. scale/zero_point hold one value per block (pytorch/ao#4811), and the
     INT/FLOAT domains need a zero point while NONE takes none
     (pytorch/ao#3459).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torchao.quantization import quant_primitives as qp

from .cases import Case
from .dtypes import FLOAT8, INPUT_FLOATS, SCALE_DTYPES_OK, ZP_DTYPES_OK, bounds, dname, float_max, storage_name, tdt


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


def resolved_range(q: str, qmin, qmax):
    """Resolved range of a (valid) quantized dtype."""
    _, a, b = resolve_range(q, qmin, qmax)
    return a, b


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
