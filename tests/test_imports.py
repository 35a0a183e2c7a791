"""Every module of the package imports: in the inf1 worker environment (``make compat``: Python
3.10, numpy 1.23) this catches a newer Python's or numpy's names at the top of modules that the
tests marked ``compat`` do not run."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.compat

# In a process of its own: importing the worker's modules connects Celery signal handlers and
# registers tasks, which this test process should not get as a side effect.
SCRIPT = """
import importlib, pkgutil, traceback, posequeue
failed = []
for m in sorted(m.name for m in pkgutil.walk_packages(posequeue.__path__, "posequeue.")):
    try:
        importlib.import_module(m)
    except Exception:
        failed.append(m)
        traceback.print_exc()
print("FAILED:", " ".join(failed) or "none")
"""


def test_every_module_imports() -> None:
    """Each module of posequeue imports without error in this Python and these libraries."""
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("FAILED: none"), out.stdout + out.stderr
