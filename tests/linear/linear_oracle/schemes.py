"""The schemes (torchao 0.11 configs) a case quantizes its layer with, the
tensors torchao stores for each, and the shapes on which torchao's
`quantize_` silently leaves the layer dense."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

NAMES = [
    "int8_weight_only",
    "int4_cpu",
    "int4_tensor_core_tiled",
    "float8_weight_only",
    "int8_dynamic_activation_int8_weight",
    "uintx_weight_only",
]
CPU_NAMES = [n for n in NAMES if n != "int4_tensor_core_tiled"]
INT4_GROUPS = [32, 64, 128, 256]
UINTX_GROUPS = [32, 64, 128]
UINTX_BITS = list(range(1, 9))
DEFAULT_INNER_K_TILES = 8


@dataclass(frozen=True)
class Scheme:
    name: str
    group_size: Optional[int] = None
    bits: Optional[int] = None
    inner_k_tiles: Optional[int] = None

    def json(self) -> dict:
        return {"name": self.name, "group_size": self.group_size, "bits": self.bits,
                "inner_k_tiles": self.inner_k_tiles}

    def tag(self) -> str:
        """The scheme's part of a case id: name, then its parameters."""
        parts = [self.name]
        if self.bits is not None:
            parts.append(f"u{self.bits}")
        if self.group_size is not None:
            parts.append(f"g{self.group_size}")
        if self.inner_k_tiles is not None:
            parts.append(f"t{self.inner_k_tiles}")
        return "/".join(parts)

    def config(self):
        """torchao's config, as common.md names it."""
        from torchao.dtypes import Int4CPULayout, TensorCoreTiledLayout
        from torchao.quantization import (
            Float8WeightOnlyConfig,
            Int4WeightOnlyConfig,
            Int8DynamicActivationInt8WeightConfig,
            Int8WeightOnlyConfig,
            UIntXWeightOnlyConfig,
        )

        if self.name == "int8_weight_only":
            return Int8WeightOnlyConfig()
        if self.name == "int4_cpu":
            return Int4WeightOnlyConfig(group_size=self.group_size, layout=Int4CPULayout())
        if self.name == "int4_tensor_core_tiled":
            return Int4WeightOnlyConfig(group_size=self.group_size,
                                        layout=TensorCoreTiledLayout(inner_k_tiles=self.inner_k_tiles))
        if self.name == "float8_weight_only":
            return Float8WeightOnlyConfig()
        if self.name == "int8_dynamic_activation_int8_weight":
            return Int8DynamicActivationInt8WeightConfig()
        if self.name == "uintx_weight_only":
            return UIntXWeightOnlyConfig(getattr(torch, f"uint{self.bits}"), group_size=self.group_size)
        raise ValueError(f"unknown scheme {self.name}")


def int8(): return Scheme("int8_weight_only")
def int4_cpu(g): return Scheme("int4_cpu", group_size=g)
def int4_tc(g, tiles=DEFAULT_INNER_K_TILES): return Scheme("int4_tensor_core_tiled", group_size=g, inner_k_tiles=tiles)
def float8(): return Scheme("float8_weight_only")
def int8_dynamic(): return Scheme("int8_dynamic_activation_int8_weight")
def uintx(bits, g): return Scheme("uintx_weight_only", group_size=g, bits=bits)


def dense_reason(scheme: Scheme, lin) -> Optional[str]:
    """Why `quantize_` left `lin.weight` a plain Parameter, or None when it
    replaced it with torchao's quantized tensor subclass."""
    from torchao.dtypes import AffineQuantizedTensor
    from torchao.quantization.linear_activation_quantized_tensor import LinearActivationQuantizedTensor

    w = lin.weight
    if isinstance(w, (AffineQuantizedTensor, LinearActivationQuantizedTensor)):
        return None
    k = lin.in_features
    if scheme.name.startswith("int4") and k % scheme.group_size != 0:
        return f"in_features {k} is not a multiple of group_size {scheme.group_size}"
    if scheme.name == "int8_dynamic_activation_int8_weight" and k <= 16:
        return f"in_features {k} <= 16"
    return f"the weight stayed a {type(w).__name__}"


def parts(scheme: Scheme, lin) -> dict:
    """torchao's stored tensors for the layer, for debugging a mismatch."""
    w = lin.weight
    if scheme.name == "uintx_weight_only":
        return {"dequantized_weight": w.dequantize()}
    if scheme.name == "int8_dynamic_activation_int8_weight":
        w = w.original_weight_tensor
    impl = w.tensor_impl
    if scheme.name.startswith("int4"):
        return {"packed_weight": impl.packed_weight, "scale_and_zero": impl.scale_and_zero}
    if scheme.name == "float8_weight_only":
        return {"float8_data": impl.float8_data, "scale": impl.scale}
    return {"int_data": impl.int_data, "scale": impl.scale}
