"""Weights, biases and inputs of the cases, drawn from a seeded generator
in float32 and cast to the case's dtype, with their special values."""

from __future__ import annotations

import math

import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
SHORT = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}

# Weight specials: all-zero rows (zero ranges: the scales fall back to eps),
# constant rows (min == max), and a few large entries (outliers that set the
# row's scale); input specials: an all-zero token (the dynamic per-token
# scale falls back to eps) and large activations.
WEIGHT_SPECIALS = ["zero_rows", "const_rows", "large"]
INPUT_SPECIALS = ["zero_token", "large_input"]
LARGE_WEIGHT = 1000.0
LARGE_INPUT = 100.0


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def weight(gen: torch.Generator, n: int, k: int, dtype: str, special: str | None = None) -> torch.Tensor:
    """[n, k], scaled like nn.Linear's default init (about 1/sqrt(k))."""
    w = torch.randn(n, k, generator=gen) / math.sqrt(k)
    if special == "zero_rows":
        w[0] = 0
        w[n // 2] = 0
    elif special == "const_rows":
        w[0] = 0.25
        w[n - 1] = -1.5
    elif special == "large":
        idx = torch.randint(0, n * k, (max(1, n // 4),), generator=gen)
        signs = torch.randint(0, 2, idx.shape, generator=gen) * 2 - 1
        w.view(-1)[idx] = LARGE_WEIGHT * signs.float()
    elif special is not None:
        raise ValueError(f"unknown weight special {special}")
    return w.to(DTYPES[dtype])


def bias(gen: torch.Generator, n: int, dtype: str) -> torch.Tensor:
    return (torch.rand(n, generator=gen) * 2 - 1).to(DTYPES[dtype])


def input_shape(m: int, k: int, rank: int) -> list[int]:
    """2-D [m, k], or 3-D with a batch of 2: [2, m, k]."""
    return [m, k] if rank == 2 else [2, m, k]


def activation(gen: torch.Generator, m: int, k: int, rank: int, dtype: str,
               special: str | None = None) -> torch.Tensor:
    x = torch.randn(*input_shape(m, k, rank), generator=gen)
    if special == "zero_token":
        x[..., 0, :] = 0
    elif special == "large_input":
        x = x * LARGE_INPUT
    elif special is not None:
        raise ValueError(f"unknown input special {special}")
    return x.to(DTYPES[dtype])
