"""The HQQ cases: an input tensor and the options of one call.

Three sources: the committed fixture grid (every nbits x axis x optimize x
raw_output, cycled over shapes, group sizes incl. None, input and compute
dtypes; then solver variants, special values and the calls torchao
refuses), a seeded random draw over the same space, and slices of
all-MiniLM-L6-v2's linear weights (64 x 384 at most, so that every
reduction stays below libtorch's parallel grain and the test stays cheap).
"""

from __future__ import annotations

import itertools
import random
import zlib
from dataclasses import dataclass, field

import torch

FIXTURE_SEED = 0
INPUT_DTYPES = ["float32", "bfloat16", "float16"]
COMPUTE_DTYPES = ["float16", "bfloat16", "float32"]
GROUP_CANDIDATES = [None, 1, 2, 4, 8, 16, 24, 32, 48, 64, 128, 256, 384]
DISTRIBUTIONS = ["normal", "uniform", "outliers", "constant_rows", "tiny", "large"]


def default_solver() -> dict:
    return {"lp_norm": 0.7, "beta": 10.0, "kappa": 1.01, "iters": 20, "early_stop": True, "dtype": None}


def options(nbits=4, group_size=64, optimize=True, axis=1, compute_dtype="float16", raw_output=False,
            **solver) -> dict:
    s = default_solver()
    s.update(solver)
    return {"nbits": nbits, "group_size": group_size, "optimize": optimize, "axis": axis,
            "compute_dtype": compute_dtype, "raw_output": raw_output, "solver": s}


@dataclass
class Case:
    id: str
    category: str
    tensor: torch.Tensor
    options: dict
    # The argument the crate names when torchao refuses the call (None: torchao computes it).
    refuses: str | None = None
    meta: dict = field(default_factory=dict)


def valid_groups(shape, axis: int, raw_output: bool) -> list:
    """Group sizes torchao computes for this shape: dividing the element
    count, None only where the tensor has the dim `axis`, and with
    raw_output only those whose qparam count the reshape to [shape[0], -1]
    (axis 1) or [-1, shape[-1]] (axis 0) can hold."""
    numel = 1
    for d in shape:
        numel *= d
    out = []
    for g in GROUP_CANDIDATES:
        if g is None:
            if len(shape) <= axis:
                continue
            n = numel // shape[axis]
        else:
            if g > numel or numel % g:
                continue
            n = numel // g
        if raw_output and n % (shape[0] if axis == 1 else shape[-1]):
            continue
        out.append(g)
    return out


def data(gen: torch.Generator, shape, dist: str, dtype: str) -> torch.Tensor:
    x = torch.randn(shape, generator=gen)
    if dist == "uniform":
        x = torch.rand(shape, generator=gen) * 2 - 0.5
    elif dist == "outliers":
        mask = torch.rand(shape, generator=gen) < 0.02
        x = torch.where(mask, x * 40, x)
    elif dist == "constant_rows":
        flat = x.reshape(-1, shape[-1]).clone()
        flat[::3] = flat[::3, :1]
        x = flat.reshape(shape)
    elif dist == "tiny":
        x = x * 1e-5
    elif dist == "large":
        x = x * 300
    return x.to(getattr(torch, dtype)).contiguous()


class Inputs:
    """One tensor per (shape, distribution, dtype, salt), so that cases
    sharing an input store it once."""

    def __init__(self, seed: int):
        self.seed, self.made = seed, {}

    def get(self, shape, dist, dtype, salt=0):
        key = (tuple(shape), dist, dtype, salt)
        if key not in self.made:
            # crc32 of the key's repr, not hash(): str hashes change between processes.
            gen = torch.Generator().manual_seed(zlib.crc32(repr((self.seed,) + key).encode()))
            self.made[key] = data(gen, shape, dist, dtype)
        return self.made[key]


FIXTURE_SHAPES = [(8, 64), (16, 32), (4, 128), (32, 16), (64, 8), (1, 256), (12, 48), (3, 96), (256,),
                  (2, 8, 32)]


def tag(o: dict) -> str:
    s = o["solver"]
    solver = "" if s == default_solver() else "/solver(" + ",".join(f"{k}={v}" for k, v in s.items()) + ")"
    return (f"b{o['nbits']}/ax{o['axis']}/g{o['group_size']}/{'opt' if o['optimize'] else 'plain'}/"
            f"{'raw' if o['raw_output'] else 'affine'}/{o['compute_dtype']}{solver}")


def fixture_cases() -> list[Case]:
    inputs = Inputs(FIXTURE_SEED)
    cases = []
    combos = list(itertools.product(range(1, 9), (0, 1), (True, False), (False, True)))
    k = 0
    for rep in range(5):
        for nbits, axis, optimize, raw in combos:
            k += 1
            shape = FIXTURE_SHAPES[(k * 7 + rep) % len(FIXTURE_SHAPES)]
            groups = valid_groups(shape, axis, raw)
            g = groups[(k * 5 + rep * 3) % len(groups)]
            dtype = INPUT_DTYPES[(k + rep) % 3]
            compute = COMPUTE_DTYPES[(k // 3 + rep) % 3]
            dist = DISTRIBUTIONS[(k * 11 + rep) % len(DISTRIBUTIONS)]
            o = options(nbits, g, optimize, axis, compute, raw)
            t = inputs.get(shape, dist, dtype)
            cases.append(Case(f"grid/{tag(o)}/{dtype}/{list(shape)}/{dist}", "grid", t, o))
    variants = [dict(lp_norm=1.0), dict(lp_norm=0.5), dict(lp_norm=1.3), dict(beta=1.0), dict(beta=100.0),
                dict(kappa=1.0), dict(kappa=1.05), dict(iters=1), dict(iters=3),
                dict(iters=50), dict(early_stop=False), dict(early_stop=False, iters=7),
                dict(dtype="float16"), dict(dtype="bfloat16"), dict(dtype="float32"),
                dict(dtype="float16", lp_norm=1.0), dict(kappa=1.2, iters=40, early_stop=False)]
    for i, v in enumerate(variants):
        for nbits, axis in ((4, 1), (1 + (i % 8), i % 2), (3, 0)):
            shape = FIXTURE_SHAPES[i % 4]
            g = valid_groups(shape, axis, False)[i % 3 + 1]
            o = options(nbits, g, True, axis, COMPUTE_DTYPES[i % 3], i % 2 == 1, **v)
            if o["raw_output"] and g not in valid_groups(shape, axis, True):
                o["raw_output"] = False
            t = inputs.get(shape, DISTRIBUTIONS[i % len(DISTRIBUTIONS)], INPUT_DTYPES[i % 3])
            cases.append(Case(f"solver/{tag(o)}/{list(shape)}", "solver", t, o))
    specials = {
        "zeros": torch.zeros(8, 64),
        "ones": torch.ones(8, 64),
        "constant_groups": torch.arange(8.0).repeat_interleave(64).reshape(8, 64),
        "two_values": torch.tensor([-1.0, 1.0]).repeat(256).reshape(8, 64),
        "huge": torch.randn(8, 64, generator=torch.Generator().manual_seed(1)) * 6e4,
        "tiny_range": 1.0 + torch.randn(8, 64, generator=torch.Generator().manual_seed(2)) * 1e-6,
        "one_inf": torch.randn(8, 64, generator=torch.Generator().manual_seed(3)).index_fill(1, torch.tensor([5]), float("inf")),
        "one_nan": torch.randn(8, 64, generator=torch.Generator().manual_seed(4)).index_fill(1, torch.tensor([9]), float("nan")),
        "ramp": torch.linspace(-3, 5, 512).reshape(8, 64),
        "single_element": torch.tensor([[0.75]]),
    }
    for i, (name, t) in enumerate(specials.items()):
        for nbits, optimize, g in ((4, True, 64), (2 + i % 6, True, None), (8, False, 32)):
            shape = list(t.shape)
            gg = g if g is None or (t.numel() % g == 0) else 1
            o = options(nbits, gg, optimize, 1, COMPUTE_DTYPES[i % 3], False)
            cases.append(Case(f"special/{name}/{tag(o)}", "special", t.contiguous(), o))
    t = inputs.get((8, 64), "normal", "float32")
    refused = [("axis", options(axis=2)), ("axis", options(axis=-1)), ("group_size", options(group_size=7)),
               ("group_size", options(group_size=1024)), ("group_size", options(group_size=48, axis=0)),
               ("tensor", options(group_size=16, axis=0, raw_output=True)),
               ("tensor", options(group_size=None, axis=1, raw_output=False)),
               # torchao's solver deletes W_q, which no iteration assigned: UnboundLocalError.
               ("solver.iters", options(iters=0))]
    for i, (arg, o) in enumerate(refused):
        tt = inputs.get((512,), "normal", "float32") if i == 6 else t
        cases.append(Case(f"refused/{arg}/{tag(o)}/{list(tt.shape)}", "refused", tt, o, refuses=arg))
    return cases


def draw_options(rng: random.Random, shape) -> dict:
    axis = rng.choice((0, 1)) if len(shape) > 1 else 0
    raw = rng.random() < 0.3
    groups = valid_groups(shape, axis, raw)
    if not groups:
        raw, groups = False, valid_groups(shape, axis, False)
    solver = {}
    if rng.random() < 0.25:
        solver = dict(lp_norm=rng.choice([0.5, 0.7, 0.9, 1.0, 1.2]), beta=rng.choice([1.0, 10.0, 50.0]),
                      kappa=rng.choice([1.0, 1.01, 1.1]), iters=rng.choice([1, 5, 20, 40]),
                      early_stop=rng.random() < 0.7, dtype=rng.choice([None, "float16", "bfloat16", "float32"]))
    return options(rng.randint(1, 8), rng.choice(groups), rng.random() < 0.8, axis,
                   rng.choice(COMPUTE_DTYPES), raw, **solver)


def random_cases(seed: int, count: int) -> list[Case]:
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    cases = []
    for _ in range(count):
        if rng.random() < 0.1:
            shape = (rng.choice([16, 64, 96, 256, 512]),)
        else:
            shape = (rng.choice([1, 2, 3, 4, 8, 16, 32, 64]), rng.choice([8, 16, 32, 48, 64, 96, 128, 256, 384]))
        o = draw_options(rng, shape)
        dtype, dist = rng.choice(INPUT_DTYPES), rng.choice(DISTRIBUTIONS)
        cases.append(Case(f"random/{tag(o)}/{dtype}/{list(shape)}/{dist}", "random",
                          data(gen, shape, dist, dtype), o))
    return cases


def minilm_cases(checkpoint: str, seed: int, count: int) -> list[Case]:
    """Slices of the encoder's linear weights: up to 64 rows and 384 columns
    at a random offset, in a random input dtype."""
    from safetensors.torch import load_file

    sd = load_file(checkpoint)
    names = sorted(k for k, v in sd.items() if k.endswith(".weight") and v.dim() == 2 and "embeddings" not in k)
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        name = rng.choice(names)
        w = sd[name]
        rows = rng.choice([16, 32, 64])
        r0 = rng.randrange(0, w.shape[0] - rows + 1)
        c0 = rng.randrange(0, w.shape[1] - 384 + 1, 64)
        dtype = rng.choice(INPUT_DTYPES)
        t = w[r0:r0 + rows, c0:c0 + 384].to(getattr(torch, dtype)).contiguous()
        o = draw_options(rng, tuple(t.shape))
        cases.append(Case(f"minilm/{name}[{r0}:{r0 + rows},{c0}:{c0 + 384}]/{tag(o)}/{dtype}", "minilm", t, o))
    return cases
