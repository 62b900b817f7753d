"""The cases tests/hqq/oracle.py evaluates with torchao 0.11's
`choose_qparams_and_quantize_affine_hqq`, one module per concern:

- cases: a case (input tensor and options), the committed fixture grid,
  the seeded random draw and the all-MiniLM-L6-v2 weight slices;
- evaluate: one case through torchao, with the number of solver
  iterations it ran.

Importing the package first imports tests/parity's `oracle` package, which
refuses any torch but 2.13.0 and any torchao but 0.11.0, so nothing here
ever runs on another version; its raw-bytes tensor store and writer are
reused too.
"""

from __future__ import annotations

import os
import sys

_PARITY = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "parity")
# tests/hqq/oracle.py (the command line) shares its name with the parity
# package, so the parity directory must come first on the path.
sys.path.insert(0, _PARITY)
import oracle as parity_oracle  # noqa: E402

if not hasattr(parity_oracle, "__path__"):
    sys.exit(f"hqq oracle: `import oracle` found {parity_oracle.__file__}, not the package in {_PARITY}")

TORCH_VERSION = parity_oracle.TORCH_VERSION
TORCHAO_VERSION = parity_oracle.TORCHAO_VERSION
