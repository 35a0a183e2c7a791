"""The analysis as files a spreadsheet or a script reads: ``angles.csv`` (long: one row per track,
angle and frame), ``speeds.csv`` (wide: one row per track and frame, one column per keypoint) and
``analysis.json`` (summary, parameters, definitions, versions)."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from posequeue.analysis.angles import ANGLES
from posequeue.analysis.pipeline import Analysis
from posequeue.analysis.tracks import FLAG_LETTERS, flag_text

ANGLES_HEADER = "frame,t,track,angle,raw,filtered,velocity,flags"
FLAG_MEANINGS = {
    "m": "missing: a keypoint of the angle was absent or under the visibility threshold",
    "o": "outlier: a keypoint sample was rejected by the Hampel filter",
    "f": "filled: a keypoint sample was interpolated into a short gap",
}
assert {letter for _, letter in FLAG_LETTERS} == set(FLAG_MEANINGS)


def _fmt(values: np.ndarray, digits: int) -> list[str]:
    """Fixed-point strings, empty where NaN (numpy formats a whole column at C speed)."""
    out = np.char.mod(f"%.{digits}f", values)
    return np.where(np.isnan(values), "", out).tolist()


def write_angles_csv(analysis: Analysis, path: Path) -> None:
    with path.open("w") as fh:
        fh.write(ANGLES_HEADER + "\n")
        for tr in analysis.tracks:
            frames = tr.track.frames.astype(str).tolist()
            t = _fmt(tr.track.t, 4)
            track = str(tr.track.track_id)
            for name, s in tr.angles.items():
                cols = zip(
                    frames,
                    t,
                    _fmt(s.raw, 3),
                    _fmt(s.filtered, 3),
                    _fmt(s.velocity, 2),
                    flag_text(s.flags),
                    strict=True,
                )
                fh.writelines(f"{f},{tt},{track},{name},{r},{fl},{v},{g}\n" for f, tt, r, fl, v, g in cols)


def write_speeds_csv(analysis: Analysis, path: Path) -> None:
    """Speeds of the filtered keypoints, px/s, and m/s when a track has a scale."""
    names = analysis.keypoints
    metric = any(tr.px_per_m for tr in analysis.tracks)
    header = ["frame", "t", "track", *(f"{k}_px_s" for k in names)]
    header += [f"{k}_m_s" for k in names] if metric else []
    with path.open("w") as fh:
        fh.write(",".join(header) + "\n")
        for tr in analysis.tracks:
            metres = tr.speed / tr.px_per_m if tr.px_per_m else np.full_like(tr.speed, np.nan)
            cols = [
                tr.track.frames.astype(str).tolist(),
                _fmt(tr.track.t, 4),
                [str(tr.track.track_id)] * tr.speed.shape[0],
            ]
            cols += [_fmt(tr.speed[:, k], 2) for k in range(len(names))]
            cols += [_fmt(metres[:, k], 3) for k in range(len(names))] if metric else []
            fh.writelines(",".join(row) + "\n" for row in zip(*cols, strict=True))


def versions() -> dict[str, str]:
    out = {}
    for dist in ("posequeue", "numpy", "scipy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "unknown"
    return out


def analysis_document(analysis: Analysis, outputs: list[str]) -> dict[str, Any]:
    """What ``analysis.json`` holds."""
    head = analysis.head
    return {
        "job_id": head.get("job_id"),
        "video": head.get("video"),
        "model": head.get("model", {}).get("name"),
        "parameters": analysis.params.to_json(),
        "cutoff_used": {str(tr.track.track_id): tr.cutoff for tr in analysis.tracks},
        "notes": analysis.notes,
        "versions": versions(),
        "definitions": {
            a.name: {"points": list(a.points), "offset": a.offset, "scale": a.scale, "kind": a.kind}
            for a in ANGLES
        },
        "flags": FLAG_MEANINGS,
        "outputs": outputs,
        **analysis.summary(),
    }


def write_analysis_json(analysis: Analysis, outputs: list[str], path: Path) -> None:
    path.write_text(json.dumps(analysis_document(analysis, outputs), indent=1))
