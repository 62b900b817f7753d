"""Cases of choose_qparams_affine_floatx, quantize_affine_floatx and
dequantize_affine_floatx."""

from __future__ import annotations

from typing import Optional

import torch
from torchao.quantization import quant_primitives as qp

from .cases import Case
from .draw import DATA_KINDS, Ctx, float_input_twist, make_data, pick_shape, random_scale
from .dtypes import FLOATX_FORMATS, INPUT_FLOATS, dname


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
