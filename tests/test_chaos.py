"""The fault campaign's short version: a few fault classes, one trial each, through the same
harness as `make chaos`; no job may be stuck or end wrong."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

pytestmark = pytest.mark.integration

SHORT = ["kill-landmarks", "duplicate-detector"]


def test_short_campaign(tmp_path: Path, model_dir: Path) -> None:
    """A killed stage process and a duplicated message each end their job done with every frame
    exactly once, or failed with an accurate reason."""
    import chaos

    results = chaos.campaign(tmp_path, SHORT, trials=1, stuck_after=120)
    rows = chaos.table(results)
    assert [r["fault"] for r in rows] == SHORT
    assert sum(r["faults"] for r in rows) >= 1, chaos.markdown(rows)  # a fault may miss its job
    assert all(r["stuck"] == 0 and r["wrong"] == 0 for r in rows), chaos.markdown(rows)
