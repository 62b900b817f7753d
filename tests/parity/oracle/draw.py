"""Drawing configurations: the value picker, shapes, block sizes, data kinds,
quant ranges, and the operands several op families share (scales, codes,
defective float inputs)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Optional

import torch

from .dtypes import FLOAT8, bounds, storage_name, tdt
from .refusals import refuse_block


class Picker:
    """Draws configuration values.

    random mode: independent uniform draws. fixtures mode (balanced): every
    (axis, value list) gets its own shuffled deck, so every value of every axis
    shows up equally often without taking the cartesian product.
    """

    def __init__(self, seed: int, balanced: bool):
        self.rng = random.Random(seed)
        self.balanced = balanced
        self.decks: dict[tuple[str, str], list[int]] = {}

    def pick(self, axis: str, values):
        values = list(values)
        if not self.balanced:
            return values[self.rng.randrange(len(values))]
        key = (axis, repr(values))
        deck = self.decks.get(key)
        if not deck:
            deck = list(range(len(values)))
            self.rng.shuffle(deck)
            self.decks[key] = deck
        return values[deck.pop()]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def randint(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)


@dataclass
class Limits:
    dims: list[int]
    small: int  # usual numel cap
    big: int  # occasional numel cap
    p_big: float


FIXTURE_LIMITS = Limits([1, 2, 3, 4, 6, 8, 12, 16, 32, 64], 64, 512, 0.15)
RANDOM_LIMITS = Limits([1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 32, 48, 64], 256, 2048, 0.4)


@dataclass
class Ctx:
    P: Picker
    gen: Any  # torch.Generator
    lim: Limits


def pick_shape(c: Ctx, rank: Optional[int] = None, ranks=(1, 2, 3, 4)) -> list[int]:
    if rank is None:
        rank = c.P.pick("rank", list(ranks))
    cap = c.lim.big if c.P.chance(c.lim.p_big) else c.lim.small
    for _ in range(500):
        shape = [c.P.rng.choice(c.lim.dims) for _ in range(rank)]
        if math.prod(shape) <= cap:
            return shape
    return [2] * rank


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


GRANULARITIES = ["per_tensor", "per_axis", "per_group", "per_token", "multi_dim"]


def block_for(c: Ctx, shape: list[int], gran: str) -> list[int]:
    r = len(shape)
    if gran == "per_tensor" or r == 0:
        return list(shape)
    if gran == "per_axis":  # one scale per index along `axis`
        b = list(shape)
        b[c.P.pick(f"axis{r}", range(r))] = 1
        return b
    if gran == "per_group":  # groups along one dim (mostly the last), others kept
        axis = r - 1 if c.P.chance(0.7) else c.P.rng.randrange(r)
        b = [1] * r
        ds = [d for d in divisors(shape[axis]) if d > 1] or [1]
        b[axis] = c.P.rng.choice(ds)
        return b
    if gran == "per_token":
        return [1] * (r - 1) + [shape[-1]]
    return [c.P.rng.choice(divisors(s)) for s in shape]  # multi_dim blocks


def pick_block(c: Ctx, shape: list[int]) -> tuple[str, list[int]]:
    """A valid block size that reduces something (retries a few times)."""
    gran = c.P.pick("gran", GRANULARITIES)
    for _ in range(6):
        b = block_for(c, shape, gran)
        if refuse_block(b, shape) is None:
            return gran, b
        gran = c.P.rng.choice(GRANULARITIES)
    return "per_tensor", list(shape)


DATA_KINDS = ["normal", "scaled", "zero_blocks", "positive", "negative", "tiny", "huge",
              "constant", "neg_zero", "nan", "inf", "mixed_special"]


def make_data(c: Ctx, shape: list[int], dtype: str, kind: str, block: Optional[list[int]] = None):
    """A float tensor of one of the data kinds; made in float32 then cast (so
    huge values become inf in float16, as they would for a user)."""
    n = math.prod(shape)
    g = c.gen
    x = torch.randn(n, generator=g)
    if kind == "scaled":
        x = x * 10.0 ** c.P.rng.uniform(-4, 4)
    elif kind == "zero_blocks":
        x = zero_some_blocks(c, x, shape, block)
    elif kind == "positive":
        x = x.abs() + 0.01
    elif kind == "negative":
        x = -x.abs() - 0.01
    elif kind == "tiny":  # below every default eps
        x = x * 1e-9
    elif kind == "huge":
        x = x * 1e30
    elif kind == "constant":
        x = torch.full((n,), c.P.rng.choice([0.0, 1.0, -2.5, 3.0, 1e-3, -0.0]))
    elif kind == "neg_zero":
        if c.P.chance(0.3):
            x = torch.full((n,), -0.0)
        else:
            x[torch.rand(n, generator=g) < 0.4] = -0.0
    elif kind in ("nan", "inf", "mixed_special") and n > 0:
        specials = {"nan": [math.nan], "inf": [math.inf, -math.inf],
                    "mixed_special": [math.nan, math.inf, -math.inf, -0.0]}[kind]
        for _ in range(c.P.randint(1, max(1, min(3, n)))):
            x[c.P.rng.randrange(n)] = c.P.rng.choice(specials)
    return x.reshape(shape).to(tdt(dtype))


def zero_some_blocks(c: Ctx, x, shape, block):
    """Sets a random subset of the blocks (or everything) to exactly 0."""
    if block is None or refuse_block(block, shape) is not None or c.P.chance(0.2):
        return torch.zeros_like(x)
    bid = torch.zeros(shape, dtype=torch.int64)
    nb = 1
    for d, (s, b) in enumerate(zip(shape, block)):
        view = [1] * len(shape)
        view[d] = s
        bid = bid * (s // b) + (torch.arange(s) // b).reshape(view)
        nb *= s // b
    chosen = torch.rand(nb, generator=c.gen) < 0.5
    return torch.where(chosen[bid.reshape(-1)], torch.zeros_like(x), x)


def pick_range(c: Ctx, q: str) -> tuple[Any, Any, str]:
    """quant_min/quant_max: default, custom inside the bounds, one side only,
    a single value. Ints for integer dtypes, floats for float8."""
    lo, hi = bounds(q)
    mode = c.P.pick("range_mode", ["default", "default", "both", "min_only", "max_only", "narrow_sym", "equal"])
    if q in FLOAT8:
        rnd = lambda a, b: round(c.P.rng.uniform(a, b), 2)  # noqa: E731
    else:
        rnd = lambda a, b: c.P.randint(int(a), int(b))  # noqa: E731
    if mode == "default":
        return None, None, mode
    if mode == "both":
        a = rnd(lo, hi)
        return a, rnd(a, hi), mode
    if mode == "min_only":
        return rnd(lo, hi), None, mode
    if mode == "max_only":
        return None, rnd(lo, hi), mode
    if mode == "narrow_sym" and lo < 0:
        return -hi, hi, mode  # e.g. [-127, 127]
    if mode == "narrow_sym":
        return lo + (1 if hi > 1 else 0), hi, mode
    v = rnd(lo, hi)
    return v, v, mode


def random_scale(c: Ctx, shape: list[int], dtype: str):
    """Positive scales spread over many magnitudes, occasionally 0."""
    s = torch.exp(torch.randn(shape, generator=c.gen) * 2.0) * 10.0 ** c.P.rng.uniform(-3, 1)
    if c.P.chance(0.05) and s.numel():
        s.view(-1)[0] = 0.0
    return s.to(tdt(dtype))


def random_codes(c: Ctx, q: str, shape: list[int], qmin, qmax):
    """Codes in the storage dtype of q; mostly in [qmin, qmax], sometimes the
    whole storage range (torchao does not check code values)."""
    if q in FLOAT8:
        return (torch.randn(shape, generator=c.gen) * 10.0 ** c.P.rng.uniform(-2, 2.5)).to(tdt(q))
    st = storage_name(q)
    if c.P.chance(0.1) and st in ("uint8", "int8"):
        lo, hi = bounds(st)
    else:
        lo, hi = int(qmin), int(qmax)
    return torch.randint(lo, hi + 1, shape, generator=c.gen, dtype=torch.int64).to(tdt(st))


def float_input_twist(c: Ctx, twist: Optional[str], x):
    if twist == "input_f64":
        return x.double()
    if twist == "input_int":
        return x.nan_to_num(0.0, 0.0, 0.0).clamp(-100, 100).round().int()
    if twist == "empty":
        return torch.zeros([0] + list(x.shape[1:]), dtype=x.dtype)
    return x
