"""dtype names: torch's names without `torch.`, plus uint1..7/int1..7 (see
tests/parity/README.md), and the bounds of each quantized dtype."""

from __future__ import annotations

import math

import torch


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
