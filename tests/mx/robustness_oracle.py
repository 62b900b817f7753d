"""torchao 0.18.0's answers to the edge cases of tests/mx_robustness.rs.

Reads a JSON list of cases on stdin (inputs as dtype, shape and hex bytes,
built by the Rust test) and writes, per case, torchao's outputs (dtype,
shape, hex bytes; e8m0 scales as their uint8 bytes) or the exception it
raised. One process answers every case.
"""
import json
import sys
import warnings

warnings.filterwarnings("ignore")
import logging  # noqa: E402

logging.disable(logging.WARNING)

import torch  # noqa: E402
import torchao  # noqa: E402

if not torch.__version__.startswith("2.13.0") or torchao.__version__ != "0.18.0":
    # Exit status 3 tells the Rust side this is not the pinned oracle.
    print(f"torch {torch.__version__}, torchao {torchao.__version__}: expected 2.13.0 and "
          "0.18.0", file=sys.stderr)
    sys.exit(3)

from torchao.prototype.mx_formats.config import ScaleCalculationMode  # noqa: E402
from torchao.prototype.mx_formats.mx_tensor import MXTensor, to_dtype, to_mx  # noqa: E402
from torchao.prototype.mx_formats.nvfp4_tensor import (  # noqa: E402
    NVFP4Tensor,
    nvfp4_quantize,
    per_tensor_amax_to_scale,
)


def dtype(name):
    return name if name.startswith("fp6_") else getattr(torch, name)


def tensor(spec):
    if spec is None:
        return None
    raw = bytearray.fromhex(spec["hex"])
    t = torch.frombuffer(raw, dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
    t = t.view(dtype(spec["dtype"])).reshape(spec["shape"]).clone()
    if spec.get("t"):
        t = t.t()
    if "narrow" in spec:
        t = t.narrow(*spec["narrow"])
    if spec.get("rg"):
        t.requires_grad_(True)
    return t


def out(t):
    t = t.detach()
    if t.dtype == torch.float8_e8m0fnu:
        t = t.view(torch.uint8)
    flat = t.contiguous().reshape(-1).view(torch.uint8)
    return {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
            "hex": bytes(flat.tolist()).hex()}


def run(c):
    x = tensor(c.get("x"))
    op = c["op"]
    if op == "to_mx":
        s, d = to_mx(x, dtype(c["elem"]), c["block_size"], ScaleCalculationMode(c["mode"]))
        return [s, d]
    if op == "to_dtype":
        s = tensor(c["scale"]).view(torch.float8_e8m0fnu)
        return [to_dtype(x, s, dtype(c["elem"]), c["block_size"], dtype(c["target"]))]
    if op == "mx_dequantize":
        t = MXTensor.to_mx(x, dtype(c["elem"]), c["block_size"], ScaleCalculationMode(c["mode"]))
        return [t.dequantize(dtype(c["target"]))]
    if op == "nvfp4_quantize":
        return list(nvfp4_quantize(x, 16, tensor(c.get("pts"))))
    if op == "nvfp4_dequantize":
        t = NVFP4Tensor.to_nvfp4(x, 16, tensor(c.get("pts")))
        return [t.dequantize(dtype(c["target"])), t.get_hp_scales()]
    if op == "per_tensor_amax_to_scale":
        return [per_tensor_amax_to_scale(x)]
    raise ValueError(op)


answers = []
for case in json.load(sys.stdin):
    try:
        answers.append({"outputs": [out(t) for t in run(case)]})
    except Exception as e:  # torchao's refusal, reported to the Rust side
        answers.append({"error": f"{type(e).__name__}: {e}"})
json.dump(answers, sys.stdout)
