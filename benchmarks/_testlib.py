"""Puts ``tests/`` on ``sys.path``, so the benchmarks build their corpus with the tests' own builders.

Import this module before ``builders``, ``lockfiles`` or ``pythonpkg``.
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"

if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
