"""A case (one op call with its inputs and args) and its expected result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Case:
    id: str
    op: str
    # Input tensors by the README's names (unpack's shards as shard0, shard1, ...);
    # None means absent (a zero_point of None).
    inputs: dict[str, Any]
    args: dict[str, Any]


@dataclass
class Result:
    expected: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
