"""docs/images/analysis_angles.png: the joint and segment angle conventions, drawn on a posed
stick figure (facing right, image coordinates) with the values posequeue computes for it.

Usage: python scripts/make_analysis_figure.py [--out docs/images/analysis_angles.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Arc

from posequeue.analysis.angles import ANGLES, facing_left, point, wrapped
from posequeue.config.catalogue import BLAZEPOSE_KEYPOINTS

ROOT = Path(__file__).resolve().parents[1]
# A runner's stride, facing right, pixels (y down).
POSE = {
    "nose": (262, 92),
    "left_eye": (258, 86),
    "right_eye": (258, 86),
    "left_shoulder": (240, 140),
    "right_shoulder": (240, 140),
    "left_elbow": (205, 190),
    "right_elbow": (275, 185),
    "left_wrist": (235, 235),
    "right_wrist": (320, 150),
    "left_index": (245, 250),
    "right_index": (338, 138),
    "left_hip": (225, 265),
    "right_hip": (225, 265),
    "left_knee": (185, 335),
    "right_knee": (290, 320),
    "left_ankle": (120, 370),
    "right_ankle": (265, 405),
    "left_heel": (105, 360),
    "right_heel": (245, 410),
    "left_foot_index": (125, 392),
    "right_foot_index": (300, 418),
}
JOINT_SHOWN = ("right_knee", "right_hip", "right_ankle", "right_shoulder", "right_elbow", "right_wrist")
SEGMENT_SHOWN = ("left_shank", "left_thigh", "trunk", "right_arm", "left_forearm", "right_foot")


def _xy() -> np.ndarray:
    return np.array([[POSE.get(k, POSE["nose"]) for k in BLAZEPOSE_KEYPOINTS]], dtype=float)


def _values(xy: np.ndarray) -> dict[str, float]:
    kps = list(BLAZEPOSE_KEYPOINTS)
    flags = np.zeros(xy.shape[:2], dtype=np.uint8)
    facing = facing_left(xy, kps)
    return {
        a.name: float(wrapped(a, [point(xy, flags, kps, p)[0] for p in a.points], facing[a.side])[0])
        for a in ANGLES
    }


def _skeleton(ax, xy: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    from posequeue.config.catalogue import BLAZEPOSE_EDGES

    for a, b in BLAZEPOSE_EDGES:
        if BLAZEPOSE_KEYPOINTS[a] in POSE and BLAZEPOSE_KEYPOINTS[b] in POSE:
            colour = "#d55e00" if BLAZEPOSE_KEYPOINTS[a].startswith("right") else "#0072b2"
            ax.plot(*xy[0, [a, b]].T, color=colour, lw=3, solid_capstyle="round")
    ax.set_xlim(60, 400)
    ax.set_ylim(445, 70)
    ax.set_aspect("equal")
    ax.axis("off")


def _at(name: str) -> np.ndarray:
    return np.array(POSE[name], dtype=float)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs/images/analysis_angles.png")
    args = parser.parse_args()
    xy = _xy()
    values = _values(xy)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 6.2), dpi=110)
    _skeleton(left, xy)
    left.set_title("Joint angles (right side, orange), facing right", fontsize=11)
    for name in JOINT_SHOWN:
        joint = _at(name)
        left.plot(*joint, "o", color="k", ms=4)
        left.annotate(
            f"{name.replace('_', ' ')} {values[name]:.0f}°",
            joint,
            xytext=(12, -4),
            textcoords="offset points",
            fontsize=9,
            color="#222",
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "#bbb"},
        )
    left.text(
        70,
        430,
        "flexion and dorsiflexion positive; 0 when the segments are aligned\n"
        "(ankle: 0 with the foot at right angles to the shank)",
        fontsize=8,
        color="#444",
    )
    _skeleton(right, xy)
    right.set_title("Segment angles: anticlockwise from the horizontal", fontsize=11)
    for name in SEGMENT_SHOWN:
        adef = next(a for a in ANGLES if a.name == name)
        from posequeue.analysis.angles import keypoints_of

        a, b = (np.mean([_at(k) for k in keypoints_of(p)], axis=0) for p in adef.points)
        mid = (a + b) / 2
        right.plot([mid[0], mid[0] + 35], [mid[1], mid[1]], "--", color="#888", lw=1)
        ang = values[name]
        right.add_patch(
            Arc(tuple(mid), 40, 40, theta1=min(0, -ang), theta2=max(0, -ang), color="#009e73", lw=1.5)
        )
        right.annotate(
            f"{name.replace('_', ' ')} {ang:.0f}°",
            mid,
            xytext=(22, 8),
            textcoords="offset points",
            fontsize=9,
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "#bbb"},
        )
    right.text(
        70,
        430,
        "vector from the second point to the first of each definition\n"
        "(shank: knee to ankle; trunk: hips to shoulders)",
        fontsize=8,
        color="#444",
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
