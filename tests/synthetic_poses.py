"""Synthetic poses documents with known motion, for the analysis tests: a person standing side on,
facing right, whose right arm is a two-segment chain turning at known rates."""

from __future__ import annotations

from typing import Any

import numpy as np

from posequeue.config.catalogue import BLAZEPOSE_KEYPOINTS

KP = {name: i for i, name in enumerate(BLAZEPOSE_KEYPOINTS)}
# A standing person facing right (y down), pixels, scaled below into a 1280x720 frame (~540 px tall).
_STANDING = {
    "nose": (330, 90),
    "left_eye": (334, 84),
    "right_eye": (334, 84),
    "left_ear": (318, 88),
    "right_ear": (318, 88),
    "left_shoulder": (310, 140),
    "right_shoulder": (310, 140),
    "left_elbow": (310, 200),
    "right_elbow": (310, 200),
    "left_wrist": (310, 255),
    "right_wrist": (310, 255),
    "left_index": (310, 275),
    "right_index": (310, 275),
    "left_hip": (310, 260),
    "right_hip": (310, 260),
    "left_knee": (310, 340),
    "right_knee": (310, 340),
    "left_ankle": (310, 420),
    "right_ankle": (310, 420),
    "left_heel": (290, 432),
    "right_heel": (290, 432),
    "left_foot_index": (330, 432),
    "right_foot_index": (330, 432),
}
STANDING = {name: (1.5 * x + 100, 1.5 * y + 30) for name, (x, y) in _STANDING.items()}
WIDTH, HEIGHT = 1280, 720


def chain_motion(t: np.ndarray, w_arm: float, w_forearm: float) -> dict[str, np.ndarray]:
    """Right shoulder fixed; the arm turns at ``w_arm`` deg/s from hanging down, the forearm at
    ``w_forearm`` deg/s relative to the arm. Returns positions and Sports2D truth in degrees."""
    shoulder = np.array(STANDING["right_shoulder"], dtype=float)
    phi1 = np.radians(90 + w_arm * t)  # screen direction of the arm, y down
    phi2 = phi1 + np.radians(w_forearm * t)
    elbow = shoulder + 110 * np.stack([np.cos(phi1), np.sin(phi1)], axis=1)
    wrist = elbow + 90 * np.stack([np.cos(phi2), np.sin(phi2)], axis=1)
    return {
        "right_elbow": elbow,
        "right_wrist": wrist,
        "right_index": wrist + 20 * np.stack([np.cos(phi2), np.sin(phi2)], axis=1),
        # Sports2D: elbow flexion -(relative turn), arm and forearm anticlockwise on screen
        "truth_right_elbow": -w_forearm * t,
        "truth_right_arm": -(90 + w_arm * t),
        "truth_right_forearm": -(90 + (w_arm + w_forearm) * t),
    }


def poses_document(
    xy: np.ndarray, t: np.ndarray, visibility: np.ndarray | None = None, tracks: list[int] | None = None
) -> dict[str, Any]:
    """A poses.json document from (frames, people, 33, 2) positions (NaN: person absent)."""
    n, people = xy.shape[:2]
    vis = np.ones(xy.shape[:3]) if visibility is None else visibility
    frames = []
    for i in range(n):
        persons = []
        for p in range(people):
            if np.isnan(xy[i, p]).all():
                continue
            kps = [
                [float(x), float(y), 0.0, float(v), 1.0]
                for (x, y), v in zip(xy[i, p], vis[i, p], strict=True)
            ]
            person: dict[str, Any] = {"score": 0.9, "keypoints": kps}
            if tracks is not None:
                person["track_id"] = tracks[p]
            persons.append(person)
        frames.append({"index": i, "t": float(t[i]), "people": persons})
    return {
        "job_id": "synthetic",
        "video": {"width": WIDTH, "height": HEIGHT, "fps": 30.0, "frame_count": n, "rotation": 0},
        "model": {"name": "blazepose", "keypoints": list(BLAZEPOSE_KEYPOINTS)},
        "frames": frames,
    }


def standing(n: int) -> np.ndarray:
    """(n, 33, 2) of the standing person; keypoints not in STANDING sit at the nose."""
    base = np.array([STANDING.get(name, STANDING["nose"]) for name in BLAZEPOSE_KEYPOINTS], dtype=float)
    return np.repeat(base[None], n, axis=0)


def rotating_arm(
    seconds: float = 10.0,
    fps: float = 30.0,
    w_arm: float = 40.0,
    w_forearm: float = 90.0,
    seed: int = 0,
    noise_px: float = 1.5,
    gaps: bool = True,
    outliers: bool = True,
    jitter_t: bool = False,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A poses document of the rotating arm with noise, short and long gaps (low visibility) and
    outliers (40 px), and the truth (times and Sports2D angles). ``jitter_t``: variable frame rate."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fps)
    t = np.arange(n) / fps
    if jitter_t:
        t = np.cumsum(np.concatenate([[0.0], rng.uniform(0.6, 1.4, n - 1) / fps]))
    motion = chain_motion(t, w_arm, w_forearm)
    xy = standing(n)
    for name in ("right_elbow", "right_wrist", "right_index"):
        xy[:, KP[name]] = motion[name]
    xy += rng.normal(0, noise_px, xy.shape)
    vis = np.full(xy.shape[:2], 0.95)
    if gaps:
        for start in rng.choice(np.arange(20, n - 60), 8, replace=False):
            vis[start : start + rng.integers(2, 9), KP["right_wrist"]] = 0.2  # short: filled
        vis[n // 2 : n // 2 + 30, KP["right_elbow"]] = 0.1  # 1 s: left missing
    if outliers:
        hit = rng.random(n) < 0.02
        xy[hit, KP["right_wrist"]] += rng.choice([-1, 1], (hit.sum(), 2)) * 40  # px
    truth = {"t": t, **{k[6:]: v for k, v in motion.items() if k.startswith("truth_")}}
    return poses_document(xy[:, None], t, vis[:, None]), truth
