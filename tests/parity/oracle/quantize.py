"""Cases of quantize_affine, fake_quantize_affine(_cachemask) and
dequantize_affine. Each builder draws one case; `twist` names a deliberate
defect (an error or refusal case), None draws a valid configuration."""

from __future__ import annotations

import math
from typing import Optional

import torch

from .cases import Case
from .choose import apply_choose_twist, choose_args
from .draw import DATA_KINDS, Ctx, make_data, pick_block, pick_range, pick_shape, random_codes, random_scale
from .dtypes import INPUT_FLOATS, QUANT_DTYPES, SUB_UINT, dname, storage_name, tdt
from .refusals import crate_refuses, qparams_shape, reduction_params, resolve_range, resolved_range
from .torchao_calls import torchao_choose


QUANT_TWISTS = ["block_len", "block_zero", "block_no_reduce", "block_nondiv", "empty", "input_f64", "input_int",
                "range_reversed", "range_out", "range_nonint", "scale_flat", "scale_numel", "scale_permuted",
                "zp_missing", "zp_with_none_domain", "f16_int32", "range_none"]


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
