"""Per track: range of motion of each angle and how much of the track was measured, filled or
missing, as plain JSON-ready dicts."""

from __future__ import annotations

from typing import Any

import numpy as np

from posequeue.analysis.angles import AngleSeries
from posequeue.analysis.tracks import FILLED, MISSING, REJECTED

STATS = ("min", "max", "range", "mean", "p5", "p95", "t_min", "t_max", "peak_velocity")


def _num(x: float) -> float | None:
    return round(float(x), 3) if np.isfinite(x) else None


def range_of_motion(t: np.ndarray, series: AngleSeries) -> dict[str, Any]:
    """Min, max, range, mean, 5th and 95th percentiles of the filtered angle (degrees), the times
    of its extremes (s), its peak angular speed (deg/s) and how many of its samples are flagged."""
    a = series.filtered
    ok = ~np.isnan(a)
    counts = {
        "samples": int(a.size),
        "valid": int(ok.sum()),
        "missing": int((series.flags & MISSING).astype(bool).sum()),
        "rejected": int((series.flags & REJECTED).astype(bool).sum()),
        "filled": int((series.flags & FILLED).astype(bool).sum()),
    }
    if not ok.any():
        return dict.fromkeys(STATS, None) | counts
    v = a[ok]
    i_min, i_max = int(np.flatnonzero(ok)[np.argmin(v)]), int(np.flatnonzero(ok)[np.argmax(v)])
    p5, p95 = np.percentile(v, [5, 95])
    return {
        "min": _num(v.min()),
        "max": _num(v.max()),
        "range": _num(v.max() - v.min()),
        "mean": _num(v.mean()),
        "p5": _num(p5),
        "p95": _num(p95),
        "t_min": _num(t[i_min]),
        "t_max": _num(t[i_max]),
        "peak_velocity": _num(np.nanmax(np.abs(series.velocity))) if ok.sum() > 1 else None,
        **counts,
    }


def frame_counts(present: np.ndarray, kp_flags: np.ndarray) -> dict[str, int]:
    """Frames of a track's span: with the person, without, and with any keypoint filled or rejected."""
    return {
        "frames": int(present.size),
        "present": int(present.sum()),
        "absent": int((~present).sum()),
        "with_filled": int((kp_flags & FILLED).any(axis=1).sum()),
        "with_rejected": int((kp_flags & REJECTED).any(axis=1).sum()),
        "keypoint_samples_missing": int(((kp_flags & MISSING) & ~(kp_flags & FILLED)).astype(bool).sum()),
        "keypoint_samples_filled": int((kp_flags & FILLED).astype(bool).sum()),
    }
