"""One observer case through torchao 0.11: build the class the case names,
feed its batches in order through `forward`, read the running `min_val` and
`max_val`, call `calculate_qparams`. An exception at any stage is recorded
with the stage (`new`, `observe` with the batch index, `qparams`)."""

from __future__ import annotations

import torch
from torchao.quantization import granularity as qgran
from torchao.quantization import observer as qobs
from torchao.quantization import quant_primitives as qp
from torchao.quantization.pt2e import _affine_quantization as pt2e_affine
from torchao.quantization.pt2e import observer as pt2e_obs

# Observer kinds, as tests/observer_parity.rs names them.
AFFINE = ["affine_min_max", "affine_moving_average"]
UNIFORM = ["min_max", "moving_average", "per_channel", "moving_average_per_channel"]
KINDS = AFFINE + UNIFORM


def granularity(spec: str, pt2e: bool):
    """`per_tensor`, `per_axis:N`, `per_group:N`, `per_row`, `per_token` as
    the granularity classes of the module whose get_block_size reads them
    (the pt2e module defines its own)."""
    mod = pt2e_obs if pt2e else qgran
    name, _, value = spec.partition(":")
    if name == "per_tensor":
        return mod.PerTensor()
    if name == "per_axis":
        return mod.PerAxis(int(value))
    if name == "per_group":
        return mod.PerGroup(int(value))
    if name == "per_row":
        return mod.PerRow()
    if name == "per_token":
        return mod.PerToken()
    raise ValueError(spec)


def optional_dtype(name):
    return None if name is None else getattr(torch, name)


def build(kind: str, a: dict, device: str):
    if kind in AFFINE:
        pt2e = kind == "affine_moving_average"
        enums = pt2e_obs if pt2e else qp
        common = dict(
            mapping_type=getattr(enums.MappingType, a["mapping_type"].upper()),
            target_dtype=getattr(torch, a["target_dtype"]),
            granularity=granularity(a["granularity"], pt2e),
            quant_min=a["quant_min"],
            quant_max=a["quant_max"],
            eps=a["eps"],
            scale_dtype=optional_dtype(a["scale_dtype"]),
            zero_point_dtype=optional_dtype(a["zero_point_dtype"]),
            preserve_zero=a["preserve_zero"],
            zero_point_domain=getattr(enums.ZeroPointDomain, a["zero_point_domain"].upper()),
        )
        if pt2e:
            return pt2e_affine.AffineQuantizedMovingAverageMinMaxObserver(
                averaging_constant=a["averaging_constant"], **common)
        return qobs.AffineQuantizedMinMaxObserver(**common)
    common = dict(
        dtype=getattr(torch, a["dtype"]),
        qscheme=getattr(torch, a["qscheme"]),
        reduce_range=a["reduce_range"],
        quant_min=a["quant_min"],
        quant_max=a["quant_max"],
        eps=a["eps"],
    )
    if kind == "min_max":
        obs = pt2e_obs.MinMaxObserver(**common)
    elif kind == "moving_average":
        obs = pt2e_obs.MovingAverageMinMaxObserver(averaging_constant=a["averaging_constant"], **common)
    elif kind == "per_channel":
        obs = pt2e_obs.PerChannelMinMaxObserver(ch_axis=a["ch_axis"], **common)
    else:
        obs = pt2e_obs.MovingAveragePerChannelMinMaxObserver(
            averaging_constant=a["averaging_constant"], ch_axis=a["ch_axis"], **common)
    # torch.ao keeps its statistics in module buffers: on the batches' device.
    return obs.to(device)


def failure(stage: str, e: Exception, batch=None) -> dict:
    msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
    out = {"ok": False, "stage": stage, "error": msg[:300]}
    if batch is not None:
        out["batch"] = batch
    return out


@torch.no_grad()
def evaluate(kind: str, args: dict, batches: list, device: str) -> tuple[dict, dict]:
    """(expected, tensors): `expected` is `{"ok": true}` or a failure; the
    tensors are the running min/max and the qparams."""
    try:
        obs = build(kind, args, device)
    except Exception as e:  # noqa: BLE001 - any refusal is the oracle's answer
        return failure("new", e), {}
    for i, b in enumerate(batches):
        try:
            obs(b.to(device))
        except Exception as e:  # noqa: BLE001
            return failure("observe", e, i), {}
    if not hasattr(obs, "min_val") or obs.min_val.numel() == 0 or (
            obs.min_val.dim() == 0 and obs.min_val.item() == float("inf")
            and obs.max_val.item() == float("-inf")):
        out = {"min": None, "max": None}
    else:
        out = {"min": obs.min_val.clone(), "max": obs.max_val.clone()}
    try:
        scale, zero_point = obs.calculate_qparams()
    except Exception as e:  # noqa: BLE001
        exp = failure("qparams", e)
        return exp, out
    out.update(scale=scale, zero_point=zero_point)
    return {"ok": True}, out
