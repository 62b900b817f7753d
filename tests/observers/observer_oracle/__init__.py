"""The cases tests/observers/oracle.py evaluates with torchao 0.11's
observers, one module per concern:

- evaluate: one case through the torchao observer class it names
  (constructor, `forward` per batch, `calculate_qparams`);
- draw: the committed fixture grid, the seeded random draw, and slices of
  all-MiniLM-L6-v2's weights and activations.

Importing the package first imports tests/parity's `oracle` package, which
refuses any torch but 2.13.0 and any torchao but 0.11.0, so nothing here
ever runs on another version; its raw-bytes tensor store is reused too.
"""

from __future__ import annotations

import os
import sys

_TESTS = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# tests/observers/oracle.py (the command line) shares its name with the parity
# package, so the parity directory must come first on the path; the linear
# oracle's MiniLM forward is reused for real activations.
sys.path.insert(0, os.path.join(_TESTS, "parity"))
sys.path.insert(1, os.path.join(_TESTS, "linear"))
import oracle as parity_oracle  # noqa: E402

if not hasattr(parity_oracle, "__path__"):
    sys.exit(f"observer oracle: `import oracle` found {parity_oracle.__file__}, not the package")

TORCH_VERSION = parity_oracle.TORCH_VERSION
TORCHAO_VERSION = parity_oracle.TORCHAO_VERSION
