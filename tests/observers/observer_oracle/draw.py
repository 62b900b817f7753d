"""The observer cases: arguments, batches, and the deliberate refusals.

A case is a dict `{"id", "observer", "args", "batches", "deliberate"?}`;
`batches` are CPU tensors fed in order. `deliberate` names a case torchao
accepts and tch-quant refuses on purpose (the reason is the crate's)."""

from __future__ import annotations

import math
import random

import torch

from .evaluate import AFFINE, KINDS

INPUT_DTYPES = ["float32", "bfloat16", "float16"]
TARGETS_INT = ["int8", "uint8", "uint4", "int16", "uint2", "uint7"]
TARGETS_SUB_INT = ["int4", "int3"]
FLOAT8 = ["float8_e4m3fn", "float8_e5m2"]
QSCHEMES_TENSOR = ["per_tensor_affine", "per_tensor_symmetric"]
QSCHEMES_CHANNEL = ["per_channel_affine", "per_channel_symmetric", "per_channel_affine_float_qparams"]
UNIFORM_DTYPES = ["quint8", "qint8", "uint8", "int8", "int16", "int32", "qint32", "uint16"]
BOUNDS = {"quint8": (0, 255), "uint8": (0, 255), "qint8": (-128, 127), "int8": (-128, 127),
          "int16": (-(2 ** 15), 2 ** 15 - 1), "uint16": (0, 2 ** 16 - 1),
          "int32": (-(2 ** 31), 2 ** 31 - 1), "qint32": (-(2 ** 31), 2 ** 31 - 1)}
TARGET_BOUNDS = {"int8": (-128, 127), "uint8": (0, 255), "uint4": (0, 15), "int16": (-(2 ** 15), 2 ** 15 - 1),
                 "uint2": (0, 3), "uint7": (0, 127), "int4": (-8, 7), "int3": (-4, 3)}


def values(rng: random.Random, gen: torch.Generator, shape, dtype: str) -> torch.Tensor:
    """A batch with the occasional zeros, signed zeros, constant or
    one-signed data, at scales from 1e-3 to 1e2."""
    scale = 10 ** rng.uniform(-3, 2)
    shift = rng.choice([0.0, 0.0, scale * rng.uniform(-3, 3)])
    x = torch.randn(shape, generator=gen) * scale + shift
    r = rng.random()
    if r < 0.08:
        x = torch.full(shape, rng.choice([0.0, -0.0, scale]))
    elif r < 0.16:
        x = x.abs() if rng.random() < 0.5 else -x.abs()
    elif r < 0.24 and x.numel() > 1:
        mask = torch.rand(shape, generator=gen) < 0.3
        x = torch.where(mask, torch.where(torch.rand(shape, generator=gen) < 0.5, 0.0, -0.0), x)
    return x.to(getattr(torch, dtype))


def shape_for(rng: random.Random, rank: int, last_multiple: int = 1, budget: int = 256) -> list[int]:
    while True:
        dims = [rng.choice([1, 2, 3, 4, 5, 8, 16]) for _ in range(rank)]
        if rank:
            dims[-1] = last_multiple * rng.choice([1, 2, 3, 4, 8])
        if math.prod(dims) <= budget:
            return dims


def affine_args(rng: random.Random, kind: str) -> dict:
    pt2e = kind == "affine_moving_average"
    mapping = rng.choice(["symmetric", "symmetric_no_clipping_err", "asymmetric", "asymmetric"])
    if rng.random() < 0.1:
        target = rng.choice(FLOAT8)
        mapping = "symmetric"
    elif not pt2e and rng.random() < 0.15:
        target = rng.choice(TARGETS_SUB_INT)
    else:
        target = rng.choice(TARGETS_INT)
    qmin = qmax = None
    if target in TARGET_BOUNDS and rng.random() < 0.25:
        lo, hi = TARGET_BOUNDS[target]
        qmin = rng.randint(lo, (lo + hi) // 2)
        qmax = rng.randint(max(qmin + 1, (lo + hi) // 2), hi)
    if mapping == "asymmetric":
        preserve_zero = rng.random() < 0.75
        if pt2e:
            domain = rng.choice(["int", "none"] if preserve_zero else ["float", "none"])
        else:
            domain = rng.choice(["int", "int", "float", "none"])
    else:
        preserve_zero = True
        domain = "int" if pt2e or rng.random() < 0.8 else "none"
    return {
        "mapping_type": mapping, "target_dtype": target, "quant_min": qmin, "quant_max": qmax,
        "eps": rng.choice([None, None, None, 1e-6, 1e-3]),
        "scale_dtype": rng.choice([None, None, None, "float32", "bfloat16", "float64"]),
        "zero_point_dtype": rng.choice([None, None, None, "int32", "float32", "int64"]),
        "preserve_zero": preserve_zero, "zero_point_domain": domain,
        "averaging_constant": rng.choice([0.01, 0.1, 0.5, 1.0, 0.3333]) if pt2e else None,
    }


def reduces(shape: list[int], gran: str) -> bool:
    """Whether the granularity's block reduces a dim of `shape` (or the
    tensor has one element): a block of ones is refused by the crate and
    collapsed into one scale by torchao (pytorch/ao#3458)."""
    if math.prod(shape) == 1 or gran in ("per_tensor",):
        return True
    if gran.startswith("per_axis"):
        axis = int(gran.split(":")[1]) % len(shape)
        return any(d > 1 for i, d in enumerate(shape) if i != axis)
    if gran.startswith("per_group"):
        return int(gran.split(":")[1]) > 1
    return shape[-1] > 1


def affine_granularity(rng: random.Random, kind: str, rank: int) -> tuple[str, int]:
    """(granularity, group size or 1) for an input of `rank` dims."""
    options = ["per_tensor", "per_axis", "per_row"]
    if kind == "affine_moving_average":
        options += ["per_token"] + (["per_group"] if rank == 2 else [])
    g = rng.choice(options)
    if g == "per_axis":
        return f"per_axis:{rng.randrange(-rank, rank)}", 1
    if g == "per_group":
        size = rng.choice([2, 4, 8])
        return f"per_group:{size}", size
    return g, 1


def uniform_args(rng: random.Random, kind: str) -> dict:
    per_channel = "per_channel" in kind
    qscheme = rng.choice(QSCHEMES_CHANNEL if per_channel else QSCHEMES_TENSOR)
    dtype = rng.choice(UNIFORM_DTYPES)
    reduce_range = rng.random() < 0.15 and not ("symmetric" in qscheme and dtype in ("quint8", "uint8"))
    qmin = qmax = None
    if rng.random() < 0.25:
        lo, hi = BOUNDS[dtype]
        qmin = rng.randint(max(lo, -300), 0)
        qmax = rng.randint(max(1, qmin + 1), min(hi, 300))
    return {
        "qscheme": qscheme, "dtype": dtype, "reduce_range": reduce_range,
        "quant_min": qmin, "quant_max": qmax,
        "eps": rng.choice([torch.finfo(torch.float32).eps] * 3 + [1e-5, 1e-2]),
        "averaging_constant": rng.choice([0.01, 0.1, 0.5, 1.0, 0.3333]) if "moving" in kind else None,
        "ch_axis": None,
    }


def random_case(rng: random.Random, gen: torch.Generator, kind: str, nbatches: int, cid: str) -> dict:
    if kind in AFFINE:
        args = affine_args(rng, kind)
        rank = rng.choice([1, 2, 2, 3])
        gran, group = affine_granularity(rng, kind, rank)
        args["granularity"] = gran
        shape = shape_for(rng, rank, group)
        while not reduces(shape, gran):
            shape = shape_for(rng, rank, group)
        dtype = rng.choice(INPUT_DTYPES)
        shapes = [shape] * nbatches
    else:
        args = uniform_args(rng, kind)
        rank = rng.choice([2, 2, 3, 4]) if "per_channel" in kind else rng.choice([0, 1, 2, 3])
        shape = shape_for(rng, rank)
        if "per_channel" in kind:
            args["ch_axis"] = rng.randrange(-rank, rank)
        dtype = rng.choice(INPUT_DTYPES + ["float64"])
        shapes = []
        for _ in range(nbatches):
            s = list(shape)
            # The channel count must stay; torch.ao lets the rest vary.
            if rng.random() < 0.3:
                keep = (args["ch_axis"] % rank) if args["ch_axis"] is not None else None
                s = [d if i == keep else rng.choice([1, 2, 3, 4]) for i, d in enumerate(s)]
            shapes.append(s)
    return {"id": cid, "observer": kind, "args": args,
            "batches": [values(rng, gen, s, dtype) for s in shapes]}


def random_cases(seed: int, count: int) -> list[dict]:
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    cases = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        n = rng.randint(1, 16)
        cases.append(random_case(rng, gen, kind, n, f"random/{kind}/{i}"))
    return cases


def minilm_cases(checkpoint: str, seed: int, count: int) -> list[dict]:
    """Slices of all-MiniLM-L6-v2's linear weights and of the activations
    each linear sees: every batch of a case is a `[R, C]` window of one
    weight or activation matrix, at a random row, in a random input dtype."""
    from linear_oracle.minilm import linear_inputs

    layers, _ = linear_inputs(checkpoint)
    names = sorted(layers)
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    cases = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        name = rng.choice(names)
        weight, _bias, x = layers[name]
        source = rng.choice(["weight", "activation"])
        pool = weight if source == "weight" else x.reshape(-1, x.shape[-1])
        # The pooler sees one row per sentence only.
        rows = min(rng.choice([1, 2, 4, 8]), pool.shape[0])
        cols = rng.choice([8, 16, 32, 64])
        c0 = rng.randrange(0, pool.shape[1] - cols + 1)
        dtype = rng.choice(INPUT_DTYPES)
        n = rng.randint(1, 16)
        batches = []
        for _ in range(n):
            r0 = rng.randrange(0, pool.shape[0] - rows + 1)
            batches.append(pool[r0:r0 + rows, c0:c0 + cols].contiguous().to(getattr(torch, dtype)))
        if kind in AFFINE:
            args = affine_args(rng, kind)
            gran, group = affine_granularity(rng, kind, 2)
            if gran.startswith("per_group"):
                gran = f"per_group:{rng.choice([8, 16])}"
            if rows == 1 and gran in ("per_axis:1", "per_axis:-1"):
                gran = "per_axis:0"
            args["granularity"] = gran
        else:
            args = uniform_args(rng, kind)
            if "per_channel" in kind:
                args["ch_axis"] = rng.choice([0, 1, -1])
        cases.append({"id": f"minilm/{kind}/{name}/{source}/{i}", "observer": kind, "args": args,
                      "batches": batches})
    del gen
    return cases


def refusal_cases() -> list[dict]:
    """Cases torchao refuses (the crate must refuse them too) and the
    crate's deliberate refusals of what torchao accepts."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(4, 8, generator=gen)
    base_affine = {"mapping_type": "asymmetric", "target_dtype": "uint8", "granularity": "per_axis:0",
                   "quant_min": None, "quant_max": None, "eps": None, "scale_dtype": None,
                   "zero_point_dtype": None, "preserve_zero": True, "zero_point_domain": "int",
                   "averaging_constant": None}
    base_ma = dict(base_affine, averaging_constant=0.01)
    base_uniform = {"qscheme": "per_tensor_affine", "dtype": "quint8", "reduce_range": False,
                    "quant_min": None, "quant_max": None, "eps": torch.finfo(torch.float32).eps,
                    "averaging_constant": None, "ch_axis": None}
    base_pc = dict(base_uniform, qscheme="per_channel_affine", ch_axis=0)

    def case(name, kind, args, batches, deliberate=None):
        c = {"id": f"refusal/{name}", "observer": kind, "args": args, "batches": batches}
        if deliberate:
            c["deliberate"] = deliberate
        return c

    return [
        case("affine/per_group", "affine_min_max", dict(base_affine, granularity="per_group:4"), [x]),
        case("affine/per_token", "affine_min_max", dict(base_affine, granularity="per_token"), [x]),
        case("affine/shape_change", "affine_min_max", base_affine, [x, torch.randn(8, 8, generator=gen)]),
        case("affine/quant_max_out_of_range", "affine_min_max", dict(base_affine, quant_max=256), [x]),
        case("affine/symmetric_no_preserve_zero", "affine_min_max",
             dict(base_affine, mapping_type="symmetric", preserve_zero=False), [x]),
        case("affine/float8_asymmetric", "affine_min_max", dict(base_affine, target_dtype="float8_e4m3fn"), [x]),
        case("affine/no_batch", "affine_min_max", base_affine, []),
        case("affine/int32_range_on_float16", "affine_min_max", dict(base_affine, target_dtype="int32"),
             [x.half()]),
        case("affine/dtype_change", "affine_min_max", base_affine, [x, x.bfloat16()],
             "the running minima keep the first batch's dtype; torchao silently casts"),
        case("pt2e_affine/symmetric_none_domain", "affine_moving_average",
             dict(base_ma, mapping_type="symmetric", zero_point_domain="none"), [x]),
        case("pt2e_affine/int_domain_without_preserve_zero", "affine_moving_average",
             dict(base_ma, preserve_zero=False), [x]),
        case("pt2e_affine/per_group_3d", "affine_moving_average", dict(base_ma, granularity="per_group:4"),
             [torch.randn(2, 4, 8, generator=gen)]),
        case("pt2e_affine/int4_target", "affine_moving_average", dict(base_ma, target_dtype="int4"), [x]),
        case("pt2e_affine/averaging_constant_above_1", "affine_moving_average",
             dict(base_ma, averaging_constant=1.5), [x, x * 2], "averaging_constant must lie in (0, 1]"),
        case("min_max/per_channel_qscheme", "min_max", dict(base_uniform, qscheme="per_channel_affine"), [x]),
        case("min_max/range_without_zero", "min_max", dict(base_uniform, quant_min=1, quant_max=200), [x]),
        case("min_max/symmetric_reduce_range_quint8", "min_max",
             dict(base_uniform, qscheme="per_tensor_symmetric", reduce_range=True), [x]),
        case("min_max/nan", "min_max", base_uniform, [torch.tensor([1.0, float("nan")])]),
        case("min_max/no_batch", "min_max", base_uniform, [],
             "calculate_qparams before any batch; torch.ao returns scale 1, zero point 0"),
        case("min_max/lone_quant_min", "min_max", dict(base_uniform, quant_min=-5), [x],
             "torch.ao ignores a lone quant bound"),
        case("min_max/range_outside_dtype", "min_max",
             dict(base_uniform, dtype="qint8", quant_min=0, quant_max=255), [x],
             "a custom range must lie inside the dtype's bounds"),
        case("moving_average/averaging_constant_0", "moving_average",
             dict(base_uniform, averaging_constant=0.0), [x, x * 2], "averaging_constant must lie in (0, 1]"),
        case("moving_average/per_channel_qscheme", "moving_average",
             dict(base_uniform, qscheme="per_channel_symmetric", averaging_constant=0.1), [x]),
        case("per_channel/per_tensor_qscheme", "per_channel", dict(base_pc, qscheme="per_tensor_affine"), [x]),
        case("per_channel/1d_input", "per_channel", base_pc, [torch.randn(8, generator=gen)]),
        case("per_channel/ch_axis_out_of_range", "per_channel", dict(base_pc, ch_axis=2), [x]),
        case("per_channel/channel_count_change", "per_channel", base_pc, [x, torch.randn(5, 8, generator=gen)]),
        case("per_channel/one_channel_broadcast", "per_channel", base_pc, [x[:1], x],
             "another channel count than the first batch's; torch.ao broadcasts a single channel"),
        case("moving_average_per_channel/channel_count_change", "moving_average_per_channel",
             dict(base_pc, averaging_constant=0.5), [x, torch.randn(5, 8, generator=gen)]),
    ]


def fixture_cases(seed: int, checkpoint) -> list[dict]:
    """The committed grid: every observer kind with each of its
    granularities or schemes, input dtypes and batch counts 1, 2, 5 and 16,
    drawn from `seed`; slices of MiniLM when its checkpoint is given; the
    refusals."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    cases = []
    for kind in KINDS:
        for rep in range(40):
            n = [1, 2, 5, 16][rep % 4]
            cases.append(random_case(rng, gen, kind, n, f"grid/{kind}/{rep}"))
    if checkpoint:
        cases += minilm_cases(checkpoint, seed, 36)
    return cases + refusal_cases()
