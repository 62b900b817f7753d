"""The cases generate.py draws and evaluates with torchao, by function family.

Importing the package first checks that torch is 2.13.0 and torchao 0.11.0
and exits otherwise, so no module here ever runs on another version:

- dtypes: dtype names and their bounds;
- cases: a case and its expected result;
- refusals: what tch-quant refuses where torchao silently accepts
  (`crate_refuses`, the single list of those refusals);
- torchao_calls: the torchao call of each op, and `evaluate`;
- draw: the value picker, shapes, block sizes, data, shared operands;
- choose, quantize, float8, floatx, uintx: the case builders of each
  function family;
- ops: the op table, and the fixture and random draws;
- store: evaluating the cases and writing cases.json + tensors.safetensors.
"""

from __future__ import annotations

import sys

REQUIRED_TORCH = "2.13.0"
REQUIRED_TORCHAO = "0.11.0"


def load_oracle() -> tuple[str, str]:
    """Imports torch and torchao and refuses any version but the reference."""
    try:
        import torch
        import torchao
    except ImportError as e:
        sys.exit(f"generate.py: cannot import torch/torchao: {e}")
    if not torch.__version__.startswith(REQUIRED_TORCH) or torchao.__version__ != REQUIRED_TORCHAO:
        sys.exit(
            f"generate.py: the oracle is torch {REQUIRED_TORCH} + torchao {REQUIRED_TORCHAO}; "
            f"found torch {torch.__version__}, torchao {torchao.__version__}. Refusing to run."
        )
    # Recorded as the README shows it ("2.13.0"), without the local build tag (+cu130).
    return torch.__version__.split("+")[0], torchao.__version__


TORCH_VERSION, TORCHAO_VERSION = load_oracle()
