"""The cases tests/linear/oracle.py evaluates with torchao's quantized
nn.Linear, one module per concern:

- schemes: the schemes (torchao's configs), the tensors torchao stores
  for each (`parts`), and why torchao left a layer dense;
- data: weights and inputs, with their special values;
- grid: the committed fixture grid and the seeded random draw;
- minilm: all-MiniLM-L6-v2's linear weights and the activations each
  linear sees on a few sentences, computed in plain torch;
- evaluate: one case through `quantize_` and the layer's forward;
- store: the tensors (deduplicated by content), cases.json and the summary.

Importing the package first imports tests/parity's `oracle` package, which
refuses any torch but 2.13.0 and any torchao but 0.11.0, so nothing here
ever runs on another version; its raw-bytes tensor store is reused too.
"""

from __future__ import annotations

import os
import sys

_PARITY = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "parity")
# tests/linear/oracle.py (the command line) shares its name with the parity
# package, so the parity directory must come first on the path.
sys.path.insert(0, _PARITY)
import oracle as parity_oracle  # noqa: E402

if not hasattr(parity_oracle, "__path__"):
    sys.exit(f"linear oracle: `import oracle` found {parity_oracle.__file__}, not the package in {_PARITY}")

TORCH_VERSION = parity_oracle.TORCH_VERSION
TORCHAO_VERSION = parity_oracle.TORCHAO_VERSION
