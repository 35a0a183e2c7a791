"""The analysis of one job's poses: per track, mask, reject, fill, filter, then angles, speeds and
a summary. Pure: a poses document in, an ``Analysis`` out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from posequeue.analysis import angles as ang
from posequeue.analysis.filters import SMOOTHERS, hampel, nyquist
from posequeue.analysis.gaps import fill_gaps
from posequeue.analysis.params import DEFAULT_CUTOFF, Params
from posequeue.analysis.scale import pixels_per_metre
from posequeue.analysis.summary import frame_counts, range_of_motion
from posequeue.analysis.tracks import FILLED, MISSING, REJECTED, Track, check_document, tracks_of
from posequeue.errors import AnalysisError


@dataclass
class TrackResult:
    track: Track
    smooth_xy: np.ndarray  # (n, k, 2) filled and filtered, NaN where not fillable
    flags: np.ndarray  # (n, k) uint8 per keypoint sample
    angles: dict[str, ang.AngleSeries]
    speed: np.ndarray  # (n, k) px/s of the filtered keypoints
    px_per_m: float | None
    cutoff: float | None  # Hz, the Butterworth cutoff used
    keypoints: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        t = self.track.t
        return {
            "track_id": self.track.track_id,
            "t_start": round(float(t[0]), 4),
            "t_end": round(float(t[-1]), 4),
            "px_per_m": None if self.px_per_m is None else round(self.px_per_m, 3),
            "frames": frame_counts(self.track.present, self.flags),
            "angles": {name: range_of_motion(t, s) for name, s in self.angles.items()},
            "peak_speed": self.peak_speeds(),
        }

    def peak_speeds(self) -> dict[str, dict[str, float | None]]:
        """Per keypoint, the 95th percentile of its speed (px/s and m/s): the peak without the odd spike."""
        out = {}
        for k, name in enumerate(self.keypoints):
            s = self.speed[:, k]
            s = s[~np.isnan(s)]
            px = float(np.percentile(s, 95)) if s.size else None
            out[name] = {
                "p95_px_s": None if px is None else round(px, 2),
                "p95_m_s": None if px is None or self.px_per_m is None else round(px / self.px_per_m, 3),
            }
        return out


@dataclass
class Analysis:
    head: dict[str, Any]  # the poses document without its frames (job, video, model)
    params: Params
    tracks: list[TrackResult]
    notes: list[str]

    @property
    def keypoints(self) -> list[str]:
        return list(self.head["model"]["keypoints"])

    def summary(self) -> dict[str, Any]:
        return {"tracks": [tr.summary() for tr in self.tracks]}


def analyze(poses: dict[str, Any], params: Params | None = None) -> Analysis:
    """Analyse a poses document (the output contract) with the given parameters."""
    check_document(poses)
    head = {k: v for k, v in poses.items() if k != "frames"}
    return analyze_frames(head, poses["frames"], params)


def analyze_frames(
    head: dict[str, Any], frames: Iterable[dict[str, Any]], params: Params | None = None
) -> Analysis:
    """Analyse a document's head (job, video, model) and its frames, read one at a time."""
    params = params or Params()
    keypoints = list(head["model"]["keypoints"])
    notes: list[str] = []
    results = [
        analyze_track(track, keypoints, params, notes)
        for track in tracks_of(frames, len(keypoints), params.min_visibility)
    ]
    if not results:
        notes.append("nobody was detected in any frame: there is nothing to analyse")
    return Analysis(head, params, results, notes)


def effective_cutoff(t: np.ndarray, params: Params, notes: list[str]) -> float:
    """The Butterworth cutoff for a track (see ``Params``)."""
    nyq = nyquist(t)
    if params.cutoff is not None:
        if params.cutoff >= nyq:
            raise AnalysisError(
                f"cutoff {params.cutoff} Hz is not below the Nyquist frequency {nyq:.3g} Hz of this video "
                f"({2 * nyq:.3g} fps): choose a cutoff under {nyq:.3g}"
            )
        return params.cutoff
    if 0.8 * nyq > DEFAULT_CUTOFF:
        return DEFAULT_CUTOFF
    lowered = round(0.8 * nyq, 2)
    note = (
        f"cutoff lowered from {DEFAULT_CUTOFF} to {lowered} Hz: the video's frame rate is {2 * nyq:.3g} fps"
    )
    if note not in notes:
        notes.append(note)
    return lowered


def analyze_track(track: Track, keypoints: list[str], params: Params, notes: list[str]) -> TrackResult:
    t, measured = track.t, track.xy
    flags = np.where(np.isnan(measured[:, :, 0]), MISSING, 0).astype(np.uint8)
    kept = measured
    if params.outliers:
        kept, rejected = hampel(measured, params.hampel_window, params.hampel_sigmas)
        flags[rejected] |= REJECTED
    filled, was_filled = fill_gaps(t, kept, params.max_gap)
    flags[was_filled] |= FILLED
    cutoff = None
    if params.filter == "butterworth" and t.size >= 3:
        cutoff = effective_cutoff(t, params, notes)
        smooth = SMOOTHERS["butterworth"](t, filled, cutoff=cutoff, order=params.order)
    elif params.filter == "one-euro":
        smooth = SMOOTHERS["one-euro"](
            t, filled, min_cutoff=params.one_euro_min_cutoff, beta=params.one_euro_beta
        )
    else:
        smooth = filled.copy()
    facing = ang.facing_left(smooth, keypoints, t) if params.flip_left_right else _unmirrored(t.size)
    raw = np.where((flags & REJECTED)[:, :, None].astype(bool), np.nan, measured)
    series = {
        a.name: ang.compute(a, t, raw, smooth, flags, keypoints, facing) for a in ang.available(keypoints)
    }
    velocity = ang.derivative(t, smooth)
    speed = np.hypot(velocity[:, :, 0], velocity[:, :, 1])
    scale = pixels_per_metre(smooth, keypoints, params.person_height, params.px_per_m)
    if params.person_height is not None and scale is None:
        note = f"track {track.track_id}: the person's height in pixels could not be estimated; no m/s"
        notes.append(note)
    return TrackResult(track, smooth, flags, series, speed, scale, cutoff, keypoints)


def _unmirrored(n: int) -> dict[str, np.ndarray]:
    never = np.zeros(n, dtype=bool)
    return {"left": never, "right": never, "both": never, "none": never}
