"""The torchao calls (one per op). Each returns {output name: tensor or None}."""

from __future__ import annotations

from typing import Callable

import torch
from torchao.dtypes.uintx import bitpacking as bp
from torchao.quantization import quant_primitives as qp

from .cases import Case, Result
from .dtypes import SUB_INT, tdt
from .refusals import crate_refuses, resolved_range


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
