"""People of a job as tracks: per track, arrays over the frames from its first to its last
appearance, NaN where the person is absent or a keypoint is not trusted.

A person's ``track_id`` comes from the output contract when the tracking step wrote one; without
it (single-person jobs before tracking existed) the person's place in the frame's list is its track.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from posequeue.errors import AnalysisError

# Per-sample flags (bits), per keypoint and frame; an angle's flags are its keypoints' OR.
MISSING = 1  # absent, or visibility under the threshold: no measurement
REJECTED = 2  # measured, but rejected as an outlier (Hampel)
FILLED = 4  # value interpolated into a gap of at most max_gap frames
FLAG_LETTERS = ((MISSING, "m"), (REJECTED, "o"), (FILLED, "f"))


@dataclass
class Track:
    """One person through the job. ``frames`` and ``t`` have one entry per frame of the span;
    ``xy`` is (frames, keypoints, 2) in displayed-frame pixels, NaN where not measured."""

    track_id: int
    frames: np.ndarray  # int64 (n,)
    t: np.ndarray  # float64 (n,) seconds
    xy: np.ndarray  # float64 (n, k, 2)
    visibility: np.ndarray  # float64 (n, k), NaN where absent
    present: np.ndarray  # bool (n,): the person is in the frame at all

    @property
    def frames_present(self) -> int:
        return int(self.present.sum())


def load_tracks(poses: dict[str, Any], min_visibility: float = 0.5) -> list[Track]:
    """Tracks of a poses document (the output contract), longest-present first.

    Raises:
        AnalysisError: the document is not a poses document (names what is missing).
    """
    check_document(poses)
    return tracks_of(poses["frames"], len(poses["model"]["keypoints"]), min_visibility)


def check_document(poses: dict[str, Any]) -> None:
    """Raises AnalysisError naming what a poses document lacks."""
    for key in ("frames", "model"):
        if key not in poses:
            raise AnalysisError(f"poses document has no {key!r}: pass the job's poses.json")


def tracks_of(frames: Iterable[dict[str, Any]], k: int, min_visibility: float = 0.5) -> list[Track]:
    """Tracks of a stream of frames (in order) of ``k`` keypoints; each person's keypoints become
    an array as it comes, so the parsed frames need not all be held at once."""
    times: list[float] = []
    seen: dict[int, list[tuple[int, np.ndarray]]] = {}
    for i, frame in enumerate(frames):
        times.append(frame["t"])
        for p, person in enumerate(frame["people"]):
            kps = np.asarray(person["keypoints"], dtype=float)
            seen.setdefault(int(person.get("track_id", p)), []).append((i, kps))
    t = np.asarray(times, dtype=float)
    tracks = [_track(tid, rows, t, k, min_visibility) for tid, rows in seen.items()]
    return sorted(tracks, key=lambda tr: (-tr.frames_present, tr.track_id))


def _track(
    track_id: int, rows: list[tuple[int, np.ndarray]], times: np.ndarray, k: int, min_vis: float
) -> Track:
    first, last = rows[0][0], rows[-1][0]
    n = last - first + 1
    data = np.full((n, k, 5), np.nan)
    present = np.zeros(n, dtype=bool)
    idx = np.array([i for i, _ in rows]) - first
    values = np.stack([kps for _, kps in rows])
    data[idx, :, : values.shape[2]] = values[:, :, :5]
    present[idx] = True
    xy = data[:, :, :2].copy()
    visibility = data[:, :, 3] if values.shape[2] > 3 else np.where(present[:, None], 1.0, np.nan)
    xy[~(visibility >= min_vis)] = np.nan  # NaN visibility (absent) compares False: missing too
    return Track(track_id, np.arange(first, last + 1), times[first : last + 1], xy, visibility, present)


FRAMES_AT = ',"frames":['


def read_poses(data: bytes) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    """A poses.json's head (everything but the frames) and its frames one by one.

    finalise writes the frames last, after ``,"frames":[`` (``results.ResultWriter``), so they
    are decoded one at a time instead of all at once (a 1-hour job's parsed frames take about
    1 GB); any other layout of valid JSON is parsed whole.
    """
    text = data.decode()
    at = text.find(FRAMES_AT)
    if at < 0:
        doc = json.loads(text)
        return {k: v for k, v in doc.items() if k != "frames"}, iter(doc.get("frames", []))
    return json.loads(text[:at] + "}"), _frames_from(text, at + len(FRAMES_AT))


def _frames_from(text: str, pos: int) -> Iterator[dict[str, Any]]:
    decoder = json.JSONDecoder()
    while text[pos] != "]":
        frame, pos = decoder.raw_decode(text, pos)
        yield frame
        if text[pos] == ",":
            pos += 1


def flag_text(flags: np.ndarray) -> np.ndarray:
    """Flag bits as short strings ("m", "of", ...), one per sample."""
    out = np.full(flags.shape, "", dtype=object)
    for bit, letter in FLAG_LETTERS:
        out = np.where(flags & bit, out + letter, out)
    return out
