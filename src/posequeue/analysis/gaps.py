"""Gap filling: runs of missing samples no longer than ``max_gap`` frames, with a measured sample
on each side, are interpolated in time (PCHIP: follows the samples' shape without overshoot);
longer gaps and gaps at the ends of a track stay missing, since inventing a second of motion
would be guesswork, not measurement."""

from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator


def runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and (exclusive) ends of the runs of True in a 1-D boolean array."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def fillable(missing: np.ndarray, max_gap: int) -> np.ndarray:
    """The missing samples that sit in interior runs of at most ``max_gap`` samples."""
    starts, ends = runs(missing)
    keep = (starts > 0) & (ends < missing.size) & (ends - starts <= max_gap)
    marks = np.zeros(missing.size + 1, dtype=np.int32)
    np.add.at(marks, starts[keep], 1)
    np.add.at(marks, ends[keep], -1)
    return np.cumsum(marks[:-1]) > 0


def fill_gaps(t: np.ndarray, xy: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Fill short gaps of each keypoint of a (frames, keypoints, 2) array.

    Returns:
        The filled copy and a (frames, keypoints) mask of the samples that were filled.
    """
    out = xy.copy()
    filled = np.zeros(xy.shape[:2], dtype=bool)
    if max_gap <= 0:
        return out, filled
    for k in range(xy.shape[1]):
        missing = np.isnan(xy[:, k, 0]) | np.isnan(xy[:, k, 1])
        if missing.sum() > missing.size - 2:
            continue
        todo = fillable(missing, max_gap)
        if not todo.any():
            continue
        ok = ~missing
        out[todo, k, :] = PchipInterpolator(t[ok], xy[ok, k, :], axis=0)(t[todo])
        filled[todo, k] = True
    return out, filled
