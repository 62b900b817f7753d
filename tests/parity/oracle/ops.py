"""The op table: each op's builder and defects, how many cases the fixtures
draw of it, and its weight in random mode; and the two ways of drawing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .cases import Case
from .choose import CHOOSE_TWISTS, WMM_TWISTS, build_chain, build_choose, build_with_min_max
from .draw import FIXTURE_LIMITS, RANDOM_LIMITS, Ctx, Picker
from .float8 import F8_TWISTS, build_choose_float8, build_dequantize_float8, build_quantize_float8
from .floatx import (
    FX_CHOOSE_TWISTS,
    FX_DEQUANT_TWISTS,
    FX_QUANT_TWISTS,
    build_choose_floatx,
    build_dequantize_floatx,
    build_quantize_floatx,
)
from .quantize import (
    DEQUANT_TWISTS,
    QUANT_TWISTS,
    build_cachemask,
    build_dequantize,
    build_fake,
    build_quantize,
)
from .uintx import PACK_TWISTS, build_pack, build_unpack


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
