"""One case through torchao 0.11's `choose_qparams_and_quantize_affine_hqq`.

The solver's parameters reach torchao the only way its API allows:
`optimize_weights=functools.partial(optimize_weights_proximal_legacy,
dtype=..., opt_params=...)` (with the defaults this is the function torchao
calls anyway). The iteration count is torchao's own: the call runs with
`verbose=True` and the solver prints one `Iter <i> | Error: ...` line per
iteration it enters (the one that stops early included); the lines are
captured and counted, and their numbering checked to be 1..n.
"""

from __future__ import annotations

import contextlib
import functools
import io

import torch
from torchao.quantization.quant_primitives import (
    choose_qparams_and_quantize_affine_hqq,
    optimize_weights_proximal_legacy,
)

from .cases import Case


def evaluate(case: Case, device: str) -> tuple[dict, dict]:
    """(expected record without tensor keys, {name: tensor}). A call
    torchao refuses gives {"ok": False, "error": "<type>: <message>"}."""
    o = case.options
    solver = functools.partial(
        optimize_weights_proximal_legacy,
        dtype=None if o["solver"]["dtype"] is None else getattr(torch, o["solver"]["dtype"]),
        opt_params={k: o["solver"][k] for k in ("lp_norm", "beta", "kappa", "iters", "early_stop")},
    )
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            codes, scale, zero, shape = choose_qparams_and_quantize_affine_hqq(
                case.tensor.to(device),
                nbits=o["nbits"],
                group_size=o["group_size"],
                optimize=o["optimize"],
                axis=o["axis"],
                compute_dtype=getattr(torch, o["compute_dtype"]),
                device=device,
                verbose=True,
                raw_output=o["raw_output"],
                optimize_weights=solver,
            )
    except (AssertionError, RuntimeError, ValueError, ZeroDivisionError, IndexError, NameError) as e:
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}, {}
    lines = [line for line in printed.getvalue().splitlines() if line.startswith("Iter ")]
    for i, line in enumerate(lines):
        assert line.startswith(f"Iter {i + 1} "), f"unexpected solver output {line!r}"
    return (
        {"ok": True, "shape": list(shape), "iterations": len(lines)},
        {"codes": codes, "scale": scale, "zero": zero},
    )
