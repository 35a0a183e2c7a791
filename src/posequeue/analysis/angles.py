"""Joint and segment angles with Sports2D's definitions, so results compare with Sports2D and
Pose2Sim (their ``angle_dict``: points, offset, scale), computed on image coordinates (y down).

- 2 points (a, b): segment angle, anticlockwise on screen from the horizontal to a - b.
- 3 points (a, b, c): joint angle at b, from c - b to a - b.
- 4 points (a, b, c, d): angle from d - c to b - a.
Then ``(angle + offset) * scale``. Pose2Sim/Sports2D names map to this model's keypoints below;
``Hip`` and ``Neck`` are the midpoints of the hips and of the shoulders, ``Head`` is the nose
(BlazePose has no head-top keypoint), ``BigToe`` is ``foot_index``.

Left/right mirroring (Sports2D's ``flip_left_right``, on by default): where a side's toes are to the
left of its heel, the person faces left and that side's vectors are mirrored (x negated), so a
knee flexion reads the same whichever way the person walks; central vectors follow the sum of both
sides; pelvis, trunk and shoulders are never mirrored.

Continuity: the filtered series is unwrapped over time (a step of more than half a turn between
samples is taken as the short way round), so an angle passing 180 degrees goes on to 181, not
-179, then shifted by whole turns so that its median is in (-180, 180] ((-90, 90] for pelvis and
shoulders, whose sign is ambiguous by half a turn); each raw sample is put on the filtered
series' branch, so the two never differ by a turn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posequeue.analysis.tracks import MISSING


@dataclass(frozen=True)
class AngleDef:
    name: str
    points: tuple[str, ...]
    offset: float
    scale: float

    @property
    def kind(self) -> str:
        return "segment" if len(self.points) == 2 else "joint"

    @property
    def period(self) -> float:
        return 180.0 if self.name in HALF_TURN else 360.0

    @property
    def side(self) -> str:
        """Which foot's direction mirrors it: "left", "right", "both" (central) or "none"."""
        if self.name in NEVER_MIRRORED:
            return "none"
        return self.name.split("_")[0] if self.name.startswith(("left", "right")) else "both"


def _pair(name: str, side_points: tuple[str, ...], offset: float, scale: float) -> list[AngleDef]:
    return [
        AngleDef(f"{side}_{name}", tuple(p.replace("?", side[0].upper()) for p in side_points), offset, scale)
        for side in ("right", "left")
    ]


HALF_TURN = {"pelvis", "shoulders"}
NEVER_MIRRORED = {"pelvis", "trunk", "shoulders"}
ANGLES: tuple[AngleDef, ...] = (
    # joint angles
    *_pair("ankle", ("?Knee", "?Ankle", "?BigToe", "?Heel"), 90, 1),
    *_pair("knee", ("?Ankle", "?Knee", "?Hip"), -180, 1),
    *_pair("hip", ("?Knee", "?Hip", "Hip", "Neck"), 0, -1),
    *_pair("shoulder", ("?Elbow", "?Shoulder", "Hip", "Neck"), 0, -1),
    *_pair("elbow", ("?Wrist", "?Elbow", "?Shoulder"), 180, -1),
    *_pair("wrist", ("?Elbow", "?Wrist", "?Index"), -180, 1),
    # segment angles
    *_pair("foot", ("?BigToe", "?Heel"), 0, -1),
    *_pair("shank", ("?Ankle", "?Knee"), 0, -1),
    *_pair("thigh", ("?Knee", "?Hip"), 0, -1),
    AngleDef("pelvis", ("LHip", "RHip"), 0, -1),
    AngleDef("trunk", ("Neck", "Hip"), 0, -1),
    AngleDef("shoulders", ("LShoulder", "RShoulder"), 0, -1),
    AngleDef("head", ("Head", "Neck"), 0, -1),
    *_pair("arm", ("?Elbow", "?Shoulder"), 0, -1),
    *_pair("forearm", ("?Wrist", "?Elbow"), 0, -1),
)
ANGLE_NAMES = tuple(a.name for a in ANGLES)
# shown on the overlay and first in the report
MAIN_ANGLES = ("right_knee", "left_knee", "right_hip", "left_hip", "right_elbow", "left_elbow", "trunk")

_SIDES = {"R": "right_", "L": "left_"}
_PARTS = {
    "Hip": "hip",
    "Knee": "knee",
    "Ankle": "ankle",
    "BigToe": "foot_index",
    "Heel": "heel",
    "Shoulder": "shoulder",
    "Elbow": "elbow",
    "Wrist": "wrist",
    "Index": "index",
}
VIRTUAL = {"Hip": ("left_hip", "right_hip"), "Neck": ("left_shoulder", "right_shoulder"), "Head": ("nose",)}


def keypoints_of(point: str) -> tuple[str, ...]:
    """The model keypoints a Sports2D point name stands for (a midpoint has two)."""
    if point in VIRTUAL:
        return VIRTUAL[point]
    return (_SIDES[point[0]] + _PARTS[point[1:]],)


def available(keypoints: list[str]) -> list[AngleDef]:
    """The angles this model's keypoints can give (COCO has no heels, toes or index fingers)."""
    have = set(keypoints)
    return [a for a in ANGLES if all(set(keypoints_of(p)) <= have for p in a.points)]


def facing_left(xy: np.ndarray, keypoints: list[str], t: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per frame, whether each side ("left", "right", "both") faces left: toes left of the heel.

    A facing that lasts under ``MIN_FACING_S`` (with ``t``) takes the facing before it, so a
    foot's slip does not mirror a few frames (which would flip their angles, the very thing this
    step is for); a longer one starts at its first frame (the whole video is known: no lag).
    Frames where the foot is not seen keep the facing before them. Unknown throughout (a foot
    never seen, or a model without feet) counts as facing right: unmirrored.
    """
    idx = {name: i for i, name in enumerate(keypoints)}
    n = xy.shape[0]
    times = np.arange(n, dtype=float) if t is None else t
    lean = {}
    for side in ("left", "right"):
        toe, heel = idx.get(f"{side}_foot_index"), idx.get(f"{side}_heel")
        lean[side] = (
            np.sign(np.nan_to_num(xy[:, toe, 0] - xy[:, heel, 0]))
            if toe is not None and heel is not None
            else np.zeros(n)
        )
    lean["both"] = np.sign(lean["left"] + lean["right"])
    out = {side: _steady(v, times, 0.0 if t is None else MIN_FACING_S) < 0 for side, v in lean.items()}
    out["none"] = np.zeros(n, dtype=bool)
    return out


MIN_FACING_S = 0.3


def _steady(sign: np.ndarray, t: np.ndarray, min_s: float) -> np.ndarray:
    """Signs (-1, 0 unknown, +1) with unknowns carried forward (then backward) and runs shorter
    than ``min_s`` seconds given the sign of the run before them (the first: of the run after)."""
    known = np.flatnonzero(sign)
    if known.size == 0:
        return sign
    filled = sign[known[np.clip(np.searchsorted(known, np.arange(sign.size), side="right") - 1, 0, None)]]
    edges = np.flatnonzero(np.diff(filled)) + 1
    starts, ends = np.r_[0, edges], np.r_[edges, sign.size]
    out = filled.copy()
    values = [float(filled[s]) for s in starts]
    long_ = [t[e - 1] - t[s] >= min_s for s, e in zip(starts, ends, strict=True)]
    current = next((v for v, ok in zip(values, long_, strict=True) if ok), values[0])
    for s, e, v, ok in zip(starts, ends, values, long_, strict=True):
        current = v if ok else current
        out[s:e] = current
    return out


def point(
    xy: np.ndarray, flags: np.ndarray, keypoints: list[str], name: str
) -> tuple[np.ndarray, np.ndarray]:
    """A Sports2D point's (frames, 2) coordinates and its flags (a midpoint ORs its two)."""
    idx = [keypoints.index(k) for k in keypoints_of(name)]
    return xy[:, idx, :].mean(axis=1), np.bitwise_or.reduce(flags[:, idx], axis=1)


def wrapped(adef: AngleDef, pts: list[np.ndarray], mirror: np.ndarray) -> np.ndarray:
    """One angle in degrees, wrapped to its canonical range, from its points' (frames, 2) arrays."""
    if len(pts) == 2:
        u, v = pts[0] - pts[1], None
    elif len(pts) == 3:
        u, v = pts[0] - pts[1], pts[2] - pts[1]
    else:
        u, v = pts[1] - pts[0], pts[3] - pts[2]
    sign = np.where(mirror, -1.0, 1.0)
    ang = np.arctan2(u[:, 1], sign * u[:, 0])
    if v is not None:
        ang = ang - np.arctan2(v[:, 1], sign * v[:, 0])
    deg = (np.degrees(ang) + adef.offset) * adef.scale
    half = adef.period / 2
    return half - np.mod(half - deg, adef.period)  # (-half, half]


def unwrap(deg: np.ndarray, period: float = 360.0) -> np.ndarray:
    """Continuous in time across missing samples (steps over half a period go the short way),
    then shifted by whole periods so that the median lies in the canonical range."""
    out = deg.copy()
    ok = ~np.isnan(deg)
    if ok.sum() > 1:
        out[ok] = np.unwrap(deg[ok], period=period)
        half = period / 2
        median = float(np.median(out[ok]))
        out[ok] -= period * np.floor((median + half) / period)
    return out


def onto(series: np.ndarray, reference: np.ndarray, period: float = 360.0) -> np.ndarray:
    """Each sample of a wrapped series put on the branch of the reference at the same time:
    the two never differ by a whole turn (samples without a reference are unwrapped alone)."""
    out = unwrap(series, period)
    both = ~(np.isnan(series) | np.isnan(reference))
    half = period / 2
    out[both] = reference[both] + (half - np.mod(half - (series[both] - reference[both]), period))
    return out


@dataclass
class AngleSeries:
    raw: np.ndarray  # degrees, unwrapped, from the measured keypoints (NaN where one is missing)
    filtered: np.ndarray  # degrees, unwrapped, from the filled and filtered keypoints
    velocity: np.ndarray  # degrees/s of the filtered angle
    flags: np.ndarray  # uint8, the OR of its keypoints' flags (tracks.MISSING, ...)


def compute(
    adef: AngleDef,
    t: np.ndarray,
    raw_xy: np.ndarray,
    smooth_xy: np.ndarray,
    flags: np.ndarray,
    keypoints: list[str],
    facing: dict[str, np.ndarray],
) -> AngleSeries:
    """Raw and filtered series of one angle for one track."""
    mirror = facing[adef.side]
    raw_pts, smooth_pts, point_flags = [], [], np.zeros(t.size, dtype=np.uint8)
    for name in adef.points:
        p, f = point(raw_xy, flags, keypoints, name)
        raw_pts.append(p)
        smooth_pts.append(point(smooth_xy, flags, keypoints, name)[0])
        point_flags |= f
    # the filtered series is smooth, so its unwrapping is the reliable one; raw samples follow it
    filtered = unwrap(wrapped(adef, smooth_pts, mirror), adef.period)
    raw = onto(wrapped(adef, raw_pts, mirror), filtered, adef.period)
    point_flags[np.isnan(raw)] |= MISSING
    return AngleSeries(raw, filtered, derivative(t, filtered), point_flags)


def derivative(t: np.ndarray, x: np.ndarray) -> np.ndarray:
    """d x / d t along the first axis (central differences on the real timestamps), NaN-aware."""
    if t.size < 2:
        return np.full_like(x, np.nan)
    return np.gradient(x, t, axis=0)
