"""The committed fixture grid and the seeded random draw, over the same
space: every scheme, the three float dtypes, M in 1/7/32, 2-D and 3-D
inputs, with and without bias, K and N multiples of the group sizes, the
special values of data.py, and the shapes torchao refuses or leaves dense."""

from __future__ import annotations

import random
from typing import Optional

from . import schemes as S
from .data import DTYPES, INPUT_SPECIALS, SHORT, WEIGHT_SPECIALS, activation, bias, generator, weight
from .evaluate import LinearCase

FIXTURE_SEED = 0
MS = [1, 7, 32]
RANKS = [2, 3]
COMBOS = [(m, r, b) for m in MS for r in RANKS for b in (True, False)]


class Pool:
    """Weights, biases and inputs drawn once per key, so that cases of
    different schemes share them (and the store writes them once)."""

    def __init__(self, seed: int):
        self.gen = generator(seed)
        self.cache: dict[tuple, object] = {}

    def _get(self, key, make):
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def weight(self, n, k, dtype, special=None):
        return self._get(("w", n, k, dtype, special), lambda: weight(self.gen, n, k, dtype, special))

    def bias(self, n, dtype):
        return self._get(("b", n, dtype), lambda: bias(self.gen, n, dtype))

    def input(self, m, k, rank, dtype, special=None):
        return self._get(("x", m, k, rank, dtype, special),
                         lambda: activation(self.gen, m, k, rank, dtype, special))


def case_id(scheme, dtype, m, k, n, has_bias, rank, special=None) -> str:
    parts = [scheme.tag(), SHORT[dtype], f"M{m}", f"K{k}", f"N{n}", "bias" if has_bias else "nobias", f"{rank}d"]
    if special:
        parts.append(special)
    return "/".join(parts)


def make(pool: Pool, scheme, dtype, m, k, n, has_bias, rank, special: Optional[str] = None) -> LinearCase:
    wspec = special if special in WEIGHT_SPECIALS else None
    xspec = special if special in INPUT_SPECIALS else None
    return LinearCase(
        id=case_id(scheme, dtype, m, k, n, has_bias, rank, special),
        scheme=scheme,
        dtype=dtype,
        weight=pool.weight(n, k, dtype, wspec),
        bias=pool.bias(n, dtype) if has_bias else None,
        input=pool.input(m, k, rank, dtype, xspec),
    )


# (scheme, K, N) of the grid's full M x rank x bias product, per dtype.
FULL = [
    (S.int8(), 64, 24),
    (S.int4_cpu(32), 64, 16),
    (S.int4_cpu(64), 128, 16),
    (S.int4_cpu(128), 128, 16),
    (S.float8(), 64, 8),
    (S.int8_dynamic(), 64, 16),
]
UINTX_N, UINTX_COMBOS = 16, 3
# Group 256 needs K >= 256, whose inputs at M = 32 are the grid's largest:
# the full product in bfloat16 (int4's usual dtype), 4 combos of M 1 and 7
# in the others (the random draw covers the rest).
INT4_256 = (S.int4_cpu(256), 256, 16)
SMALL_COMBOS = [c for c in COMBOS if c[0] < 32]
SPECIAL_SCHEMES = [S.int8(), S.int4_cpu(32), S.float8(), S.int8_dynamic(), S.uintx(4, 32), S.uintx(1, 64)]
# Edge shapes torchao quantizes: one output, K equal to the group, the
# smallest in_features int8-dynamic quantizes, int4's smallest N.
EDGES = [
    (S.int8(), 7, 32, 1), (S.float8(), 7, 32, 1), (S.uintx(5, 32), 7, 32, 1),
    (S.int4_cpu(32), 7, 32, 16), (S.uintx(7, 128), 1, 128, 3),
    (S.int8_dynamic(), 7, 17, 8), (S.int8_dynamic(), 1, 32, 1),
]
# Shapes torchao refuses (its exception) or leaves dense (torchao's logger
# only): the crate refuses all of them with a typed error.
REFUSED = [
    (S.int4_cpu(64), 96, 16),   # K % group: left dense
    (S.int4_cpu(32), 48, 16),   # K % group: left dense
    (S.int4_cpu(128), 64, 16),  # K < group: left dense
    (S.int4_cpu(32), 64, 24),   # N % 16: _convert_weight_to_int4pack_for_cpu refuses
    (S.int4_cpu(16), 64, 16),   # group 16: _weight_int4pack_mm_for_cpu refuses
    (S.int4_cpu(512), 512, 16),  # group 512: likewise
    (S.int8_dynamic(), 16, 8),  # in_features <= 16: left dense
    (S.int8_dynamic(), 8, 8),
    (S.uintx(8, 32), 64, 16),   # uint8 is not a UintxLayout dtype
    (S.uintx(3, 64), 96, 16),   # K % group: torchao asserts
    (S.uintx(2, 32), 48, 8),
]


def fixture_cases() -> list[LinearCase]:
    pool = Pool(FIXTURE_SEED)
    deck = random.Random(FIXTURE_SEED)
    cases = []
    for dtype in DTYPES:
        for scheme, k, n in FULL:
            cases += [make(pool, scheme, dtype, m, k, n, b, r) for m, r, b in COMBOS]
        scheme, k, n = INT4_256
        combos = COMBOS if dtype == "bfloat16" else deck.sample(SMALL_COMBOS, 4)
        cases += [make(pool, scheme, dtype, m, k, n, b, r) for m, r, b in combos]
        for bits in S.UINTX_BITS[:-1]:
            for g in S.UINTX_GROUPS:
                combos = deck.sample(COMBOS, UINTX_COMBOS)
                k = max(64, g)
                cases += [make(pool, S.uintx(bits, g), dtype, m, k, UINTX_N, b, r) for m, r, b in combos]
        for i, scheme in enumerate(SPECIAL_SCHEMES):
            for j, special in enumerate(WEIGHT_SPECIALS + INPUT_SPECIALS):
                cases.append(make(pool, scheme, dtype, 7, 64, 16, True, RANKS[(i + j) % 2], special))
        for i, (scheme, m, k, n) in enumerate(EDGES):
            cases.append(make(pool, scheme, dtype, m, k, n, i % 2 == 0, RANKS[i % 2]))
        for i, (scheme, k, n) in enumerate(REFUSED):
            if k > 256 and dtype != "bfloat16":
                continue
            cases.append(make(pool, scheme, dtype, 1, k, n, True, RANKS[i % 2]))
    return cases


def draw_scheme(rng: random.Random, device: str):
    """A scheme with its parameters; rarely one torchao refuses (uint8,
    int4 groups the kernels do not take)."""
    names = S.CPU_NAMES + (["int4_tensor_core_tiled"] if device == "cuda" else [])
    name = rng.choice(names)
    if name == "int4_cpu":
        return S.int4_cpu(rng.choice(S.INT4_GROUPS) if rng.random() > 0.03 else rng.choice([16, 512]))
    if name == "int4_tensor_core_tiled":
        return S.int4_tc(rng.choice(S.INT4_GROUPS), rng.choice([2, 4, 8]))
    if name == "uintx_weight_only":
        bits = rng.choice(S.UINTX_BITS[:-1]) if rng.random() > 0.04 else 8
        return S.uintx(bits, rng.choice(S.UINTX_GROUPS))
    return S.Scheme(name)


def draw_dtype(rng: random.Random, scheme) -> str:
    """Any float dtype, but bfloat16 for the CUDA tinygemm layout: torchao's
    tinygemm dispatch takes bfloat16 only (other dtypes miss it), and the
    crate refuses the others there."""
    if scheme.name == "int4_tensor_core_tiled":
        return "bfloat16"
    return rng.choice(list(DTYPES))


def draw_kn(rng: random.Random, scheme) -> tuple[int, int]:
    """K and N fitting the scheme; one draw in twelve does not fit
    (K not a multiple of the group, N not a multiple of 16 for int4,
    in_features <= 16 for int8-dynamic)."""
    misfit = rng.random() < 1 / 12
    g = scheme.group_size
    if g is not None:
        k = g * rng.choice([1, 1, 2, 2, 3, 4]) if g <= 256 else g
        if misfit:
            k += g // 2
    else:
        k = rng.choice([17, 24, 32, 48, 64, 96, 128, 200, 256, 384, 512])
        if misfit and scheme.name == "int8_dynamic_activation_int8_weight":
            k = rng.choice([1, 4, 8, 16])
    if scheme.name.startswith("int4"):
        n = 16 * rng.choice([1, 1, 2, 3, 4, 6, 8])
        if misfit and rng.random() < 0.5:
            n += 8
    else:
        n = rng.choice([1, 3, 8, 16, 24, 32, 48, 64, 100, 128, 256])
    return k, n


def draw_random_cases(seed: int, count: int, device: str) -> list[LinearCase]:
    rng = random.Random(seed)
    pool = Pool(seed)
    specials = WEIGHT_SPECIALS + INPUT_SPECIALS
    cases = []
    for _ in range(count):
        scheme = draw_scheme(rng, device)
        k, n = draw_kn(rng, scheme)
        special = rng.choice(specials) if rng.random() < 0.2 else None
        # Weights and inputs are drawn fresh per case (the pool's keys are
        # unique here), from one generator seeded by the seed.
        pool.cache.clear()
        cases.append(make(pool, scheme, draw_dtype(rng, scheme), rng.choice(MS), k, n,
                          rng.random() < 0.5, rng.choice(RANKS), special))
    return cases
