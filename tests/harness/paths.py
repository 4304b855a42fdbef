"""Where things live in this checkout, one home each.

The noxfile, the harness, the tests and the bench import these; `.github/sessions.py`
finds the checkout by itself, since it must put it on sys.path before importing this.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Shared by every session: sdists, wheels, 2.7 wheelhouses, user stacks' envs, locks.
CACHE = ROOT / ".cache"
DATA = ROOT / "tests" / "data"  # the committed history, the example stacks
# MATRIX_RESULTS and MATRIX_REPORT move the results and the report elsewhere (relative
# to ROOT, or absolute): the workflow rehearsal and the bench keep a second set apart.
RESULTS = ROOT / os.environ.get("MATRIX_RESULTS", "results")
REPORT = ROOT / os.environ.get("MATRIX_REPORT", "report")
