"""Accuracy against MediaPipe's own Pose solution (references in tests/fixtures/accuracy).

Per frame where both found a person: the mean distance between our keypoints and the
reference's, over the keypoints the reference sees (visibility >= 0.5), divided by the diagonal
of those keypoints' bounding box. Per video: the median of that over frames, and the share of
frames where both agree on whether anybody is there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "accuracy"
VISIBLE = 0.5


def videos() -> list[Path]:
    return sorted(FIXTURES.glob("*.mp4"))


def reference(video: Path, video_mode: bool = False) -> list[Any]:
    """MediaPipe's frames for ``video``: static image mode, or video mode (its own tracking,
    keypoints not smoothed) with ``video_mode``."""
    suffix = ".video-reference.json" if video_mode else ".reference.json"
    return json.loads(video.with_suffix(suffix).read_text())["frames"]


def frame_error(ours: list[list[float]], ref: list[list[float]]) -> tuple[float, float]:
    """(error over the reference's visible keypoints, error over all 33), diagonal-normalised."""
    a, b = np.asarray(ours)[:, :2], np.asarray(ref)[:, :2]
    seen = np.asarray(ref)[:, 3] >= VISIBLE
    if seen.sum() < 2:
        seen = np.ones(len(b), bool)
    diagonal = float(np.hypot(*(b[seen].max(0) - b[seen].min(0)))) or 1.0
    dist = np.hypot(*(a - b).T)
    return float(dist[seen].mean() / diagonal), float(dist.mean() / diagonal)


def compare(frames: list[dict[str, Any]], ref: list[Any]) -> dict[str, Any]:
    """Figures for one video: our result frames against the reference frames."""
    assert len(frames) == len(ref), f"{len(frames)} frames against {len(ref)} in the reference"
    visible, everything, agree = [], [], 0
    for frame, theirs in zip(frames, ref, strict=True):
        ours = frame["people"][0]["keypoints"] if frame["people"] else None
        agree += (ours is None) == (theirs is None)
        if ours is not None and theirs is not None:
            v, e = frame_error(ours, theirs)
            visible.append(v)
            everything.append(e)
    return {
        "frames": len(ref),
        "compared": len(visible),
        "median_error_visible": round(float(np.median(visible)), 4) if visible else None,
        "median_error_all": round(float(np.median(everything)), 4) if everything else None,
        "person_found_agreement": round(agree / len(ref), 3),
    }
