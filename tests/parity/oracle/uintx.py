"""Cases of pack_uintx and unpack_uintx (torchao's bitpacking.pack/unpack)."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torchao.dtypes.uintx import bitpacking as bp

from .cases import Case
from .draw import Ctx, pick_shape


PACK_TWISTS = ["code_too_big", "dim_not_mult8", "not_uint8", "nbits_bad"]


def pack_shape(c: Ctx) -> tuple[list[int], int]:
    """A shape whose pack dim is a multiple of 8, and that dim (maybe negative)."""
    rank = c.P.pick("pack_rank", [1, 2, 3])
    shape = pick_shape(c, rank=rank)
    d = c.P.rng.randrange(rank)
    shape[d] = 8 * c.P.rng.choice([1, 1, 2, 3, 4])
    while math.prod(shape) > c.lim.big:
        shape = [max(1, s // 2) if k != d else s for k, s in enumerate(shape)]
    dim = d - rank if c.P.chance(0.3) else d
    return shape, dim


def build_pack(c: Ctx, twist: Optional[str]) -> Case:
    nbits = c.P.pick("nbits", range(1, 8))
    shape, dim = pack_shape(c)
    x = torch.randint(0, 2 ** nbits, shape, generator=c.gen, dtype=torch.uint8)
    if twist == "code_too_big":
        x.view(-1)[c.P.rng.randrange(x.numel())] = c.P.randint(2 ** nbits, 255)
    elif twist == "dim_not_mult8":
        shape[dim] += c.P.randint(1, 7)
        x = torch.randint(0, 2 ** nbits, shape, generator=c.gen, dtype=torch.uint8)
    elif twist == "not_uint8":
        x = x.to(c.P.rng.choice([torch.int8, torch.int32]))
    elif twist == "nbits_bad":
        nbits = c.P.rng.choice([0, 8])
    return Case(f"pack/u{nbits}/dim{dim}/{twist or 'ok'}", "pack_uintx", {"input": x}, {"nbits": nbits, "dim": dim})


def build_unpack(c: Ctx, twist: Optional[str]) -> Case:
    nbits = c.P.pick("nbits", range(1, 8))
    shape, dim = pack_shape(c)
    d = dim % len(shape)
    shards = {}
    # Shard shapes from torchao's own layout table: the packed dim holds numbits/8 of it.
    for k, nb in enumerate(bp.numbits[nbits]):
        sh = list(shape)
        sh[d] = shape[d] * nb // 8
        shards[f"shard{k}"] = torch.randint(0, 256, sh, generator=c.gen, dtype=torch.uint8)
    if twist == "nbits_bad":
        nbits = 8
    return Case(f"unpack/u{nbits}/dim{dim}/{twist or 'ok'}", "unpack_uintx", shards, {"nbits": nbits, "dim": dim})
