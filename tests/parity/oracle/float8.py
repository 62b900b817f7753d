"""Cases of choose_qparams_affine_float8, quantize_affine_float8 and
dequantize_affine_float8."""

from __future__ import annotations

from typing import Optional

from torchao.quantization import quant_primitives as qp

from .cases import Case
from .draw import DATA_KINDS, Ctx, float_input_twist, make_data, pick_shape, random_codes, random_scale
from .dtypes import FLOAT8, INPUT_FLOATS, dname, tdt


F8_TWISTS = ["input_f64", "input_int", "empty"]


def build_choose_float8(c: Ctx, twist: Optional[str]) -> Case:
    f8 = c.P.pick("f8", FLOAT8)
    in_dtype = c.P.pick("in_dtype", INPUT_FLOATS)
    kind = c.P.pick("data", DATA_KINDS)
    x = make_data(c, pick_shape(c, ranks=(0, 1, 2, 3)), in_dtype, kind)
    x = float_input_twist(c, twist, x)
    return Case(f"f8choose/{f8}/{dname(x.dtype)}/{twist or kind}", "choose_qparams_affine_float8",
                {"input": x}, {"float8_dtype": f8})


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
