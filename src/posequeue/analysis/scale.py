"""Pixels per metre from the person's height, for speeds in m/s and OpenSim files in metres.

The person's height in pixels is estimated from the segments between ankle and eyes (shank, thigh,
hip-to-shoulder midpoints, shoulder midpoint to eye midpoint, left and right averaged), each taken
at the 90th percentile of its per-frame length (a segment turned towards the camera looks
shorter, never longer), divided by the share of stature between ankle and eye height in standard
anthropometric tables (eye 0.936 H, ankle 0.039 H: Drillis & Contini, as tabulated in Winter,
Biomechanics and Motor Control of Human Movement). Good to a few percent for a person seen side or
front on, standing upright at some point of the video.
"""

from __future__ import annotations

import numpy as np

ANKLE_TO_EYE_SHARE = 0.936 - 0.039
SEGMENTS = (
    (("left_ankle",), ("left_knee",)),
    (("right_ankle",), ("right_knee",)),
    (("left_knee",), ("left_hip",)),
    (("right_knee",), ("right_hip",)),
)
CENTRAL = (
    (("left_hip", "right_hip"), ("left_shoulder", "right_shoulder")),
    (("left_shoulder", "right_shoulder"), ("left_eye", "right_eye")),
)


def _length(xy: np.ndarray, keypoints: list[str], a: tuple[str, ...], b: tuple[str, ...]) -> float:
    pa = xy[:, [keypoints.index(k) for k in a], :].mean(axis=1)
    pb = xy[:, [keypoints.index(k) for k in b], :].mean(axis=1)
    d = np.hypot(*(pa - pb).T)
    d = d[~np.isnan(d)]
    return float(np.percentile(d, 90)) if d.size else float("nan")


def height_pixels(xy: np.ndarray, keypoints: list[str]) -> float:
    """The person's estimated stature in pixels (NaN when the keypoints needed are missing)."""
    needed = {k for pair in SEGMENTS + CENTRAL for side in pair for k in side}
    if not needed <= set(keypoints):
        return float("nan")
    legs = [_length(xy, keypoints, a, b) for a, b in SEGMENTS]
    shank, thigh = np.nanmean(legs[:2]), np.nanmean(legs[2:])
    trunk, neck = (_length(xy, keypoints, a, b) for a, b in CENTRAL)
    return float((shank + thigh + trunk + neck) / ANKLE_TO_EYE_SHARE)


def pixels_per_metre(
    xy: np.ndarray, keypoints: list[str], person_height: float | None, px_per_m: float | None
) -> float | None:
    """The scale given (pixels per metre) or derived from the person's height; None without either."""
    if px_per_m is not None:
        return px_per_m
    if person_height is None:
        return None
    h = height_pixels(xy, keypoints)
    return h / person_height if np.isfinite(h) and h > 0 else None
