"""One case through torchao: `quantize_(nn.Linear, config)` and its forward.

Every expected value comes from torchao itself; nothing here reimplements
its math."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .data import DTYPES
from .schemes import Scheme, dense_reason, parts


@dataclass
class LinearCase:
    id: str
    scheme: Scheme
    dtype: str
    weight: torch.Tensor  # [N, K] in dtype, on the CPU
    bias: Optional[torch.Tensor]  # [N] in dtype
    input: torch.Tensor  # [.., K] in dtype


def error_text(e: BaseException) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}"[:300]


def evaluate(case: LinearCase, device: str) -> tuple[dict, dict]:
    """(expected, tensors): expected is {"ok": true} or {"ok": false,
    "error": ...}; tensors holds "output" and the parts when ok."""
    from torchao.quantization import quantize_

    n, k = case.weight.shape
    dtype = DTYPES[case.dtype]
    lin = torch.nn.Linear(k, n, bias=case.bias is not None, dtype=dtype, device=device)
    with torch.no_grad():
        lin.weight.copy_(case.weight.to(device))
        if case.bias is not None:
            lin.bias.copy_(case.bias.to(device))
    try:
        quantize_(lin, case.scheme.config())
    except Exception as e:  # torchao's refusal is the expected result
        return {"ok": False, "error": error_text(e)}, {}
    why = dense_reason(case.scheme, lin)
    if why is not None:
        return {"ok": False, "error": f"torchao leaves the layer dense: {why}"}, {}
    try:
        with torch.no_grad():
            out = lin(case.input.to(device))
            stored = parts(case.scheme, lin)
    except Exception as e:
        return {"ok": False, "error": error_text(e)}, {}
    return {"ok": True}, {"output": out, "parts": stored}
