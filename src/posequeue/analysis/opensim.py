"""OpenSim's files: ``.trc`` (marker trajectories) and ``.mot`` (coordinates, here joint and
segment angles in degrees), one pair per track, from the filtered keypoints and angles.

Axes for OpenSim: X to the right of the image, Y up (image y flipped about the frame's height),
Z = 0 (2-D). Units: metres when the track has a scale (``--person-height`` or ``--px-per-m``),
else pixels ("px"), which OpenSim's scaling tools cannot use: give a scale for those.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from posequeue.analysis.pipeline import Analysis, TrackResult


def _rate(t: np.ndarray) -> float:
    dt = np.diff(t)
    dt = dt[dt > 0]
    return float(1 / np.median(dt)) if dt.size else 0.0


def _rows(first: list[list[str]]) -> list[str]:
    return ["\t".join(row) for row in zip(*first, strict=True)]


def _fmt(values: np.ndarray, digits: int) -> list[str]:
    return np.char.mod(f"%.{digits}f", values).tolist()  # NaN prints as "nan": OpenSim reads it as NaN


def write_trc(tr: TrackResult, keypoints: list[str], frame_height: float, path: Path) -> None:
    scale = tr.px_per_m or 1.0
    units = "m" if tr.px_per_m else "px"
    n, k = tr.smooth_xy.shape[:2]
    rate = _rate(tr.track.t)
    x = tr.smooth_xy[:, :, 0] / scale
    y = (frame_height - tr.smooth_xy[:, :, 1]) / scale
    digits = 5 if tr.px_per_m else 2
    head = [
        f"PathFileType\t4\t(X/Y/Z)\t{path.name}",
        "DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\tOrigDataStartFrame\tOrigNumFrames",
        f"{rate:.3f}\t{rate:.3f}\t{n}\t{k}\t{units}\t{rate:.3f}\t{int(tr.track.frames[0]) + 1}\t{n}",
        "Frame#\tTime\t" + "\t\t\t".join(keypoints) + "\t\t",
        "\t\t" + "\t".join(f"X{i}\tY{i}\tZ{i}" for i in range(1, k + 1)),
        "",
    ]
    cols = [[str(i) for i in range(1, n + 1)], _fmt(tr.track.t, 5)]
    zero = ["0"] * n
    for j in range(k):
        cols += [_fmt(x[:, j], digits), _fmt(y[:, j], digits), zero]
    path.write_text("\n".join(head + _rows(cols)) + "\n")


def write_mot(tr: TrackResult, path: Path) -> None:
    names = list(tr.angles)
    n = tr.track.t.size
    head = [
        path.stem,
        "version=1",
        f"nRows={n}",
        f"nColumns={len(names) + 1}",
        "inDegrees=yes",
        "endheader",
        "time\t" + "\t".join(names),
    ]
    cols = [_fmt(tr.track.t, 5)] + [_fmt(tr.angles[a].filtered, 4) for a in names]
    path.write_text("\n".join(head + _rows(cols)) + "\n")


def write_all(analysis: Analysis, folder: Path) -> dict[str, Path]:
    """markers.trc and angles.mot for the main track (the most present), and
    markers_track{ID}.trc / angles_track{ID}.mot for every other track."""
    height = float(analysis.head.get("video", {}).get("height") or 0)
    out = {}
    for i, tr in enumerate(analysis.tracks):
        suffix = "" if i == 0 else f"_track{tr.track.track_id}"
        trc, mot = folder / f"markers{suffix}.trc", folder / f"angles{suffix}.mot"
        write_trc(tr, analysis.keypoints, height, trc)
        write_mot(tr, mot)
        out[trc.name], out[mot.name] = trc, mot
    return out
