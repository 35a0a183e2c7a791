"""People tracked through a whole job: a ``track_id`` per person that stays with that person
across frames and batches.

Batches run in parallel on different workers, so ids are given after inference, while the job's
frames stream in order through finalising. The tracker is online: it sees each frame once and
keeps only the tracks still alive (at most the detections per frame x (max_gap + 1)), never
the video.

The rule, per frame (docs/architecture.md, "People and tracks"):

1. Each live track predicts where its person is now: its last keypoints moved by its velocity
   (the mean of its keypoints' displacement per frame, smoothed) times the frames since it was
   last seen, at most ``PREDICT_FRAMES`` of them (a person hidden for longer may have walked
   on or stopped: the prediction stays between the two).
2. The cost of giving a person to a track is the smaller of two distances, in person sizes (the
   diagonal of the box around the seen keypoints, the larger of the track's and the person's):
   the keypoints' (mean distance between the person's keypoints and the prediction, over the
   keypoints both see: visibility >= ``visible``, all of them when fewer than three are seen by
   both) and the box's (how far its centre moved from the prediction plus how much its diagonal
   changed). The box catches a pose the model fitted upside down or mirrored for a frame (a
   person leaving the picture), whose keypoints are far from the last ones while the person is
   where they were.
3. Pairs are matched greedily, cheapest first, each track and person once; a pair costing more
   than ``max_jump`` is never matched. (Greedy rather than Hungarian: a frame has a handful of
   people, and with predicted positions the cheapest pair is the right one in the cases that
   matter; no extra dependency.)
4. A person left unmatched starts a new track (ids count up from 0 in order of appearance);
   a track unseen for more than ``max_gap`` frames ends, and its id is never reused.

With ``--follow most-present`` the job keeps the tracks seen in the most frames, as many as fit
N per frame (:func:`most_present`): a second pass over the tracked frames, spooled to a local
file, with a few numbers per track and one byte per frame in memory.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

MIN_COMMON = 3  # keypoints both must see for the cost to use only the seen ones
VELOCITY_SMOOTHING = 0.5  # weight of the newest displacement in the track's velocity
PREDICT_FRAMES = 10  # frames a track's velocity is extrapolated over, at most


@dataclass(frozen=True)
class TrackParams:
    """How tracks are matched and ended (documented defaults; recorded in poses.json)."""

    max_gap: int = 30  # frames a track may go unseen and still take its person back
    max_jump: float = 0.5  # most cost (keypoints' or box's distance from the prediction), in person sizes
    visible: float = 0.5  # keypoints below this visibility are not compared

    def __post_init__(self) -> None:
        if self.max_gap < 0:
            raise ValueError(f"max_gap={self.max_gap}: frames a track may go unseen, 0 or more")
        if self.max_jump <= 0:
            raise ValueError(f"max_jump={self.max_jump}: a distance in person sizes, above 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Person:
    points: np.ndarray  # (K, 2) keypoints x, y
    seen: np.ndarray  # (K,) bool: which of them are visible
    centre: np.ndarray  # (2,) the centre of the box around the seen keypoints
    size: float  # that box's diagonal


def _person(person: dict[str, Any], visible: float) -> _Person:
    kp = np.asarray(person["keypoints"], dtype=np.float64)
    points = kp[:, :2]
    seen = kp[:, 3] >= visible if kp.shape[1] > 3 else np.ones(len(kp), bool)
    box = points[seen] if seen.sum() >= 2 else points
    lo, hi = box.min(0), box.max(0)
    return _Person(points, seen, (lo + hi) / 2, float(np.hypot(*(hi - lo))))


@dataclass
class _Track:
    id: int
    last_seen: _Person
    last: int  # frame index when last seen
    velocity: np.ndarray | None = None  # (2,) pixels per frame; None until seen twice


class Tracker:
    """Gives each person of each frame, fed in frame order, a track id (see the module's rule)."""

    def __init__(self, params: TrackParams | None = None) -> None:
        self.params = params or TrackParams()
        self.tracks: list[_Track] = []
        self.next_id = 0

    def update(self, index: int, people: list[dict[str, Any]]) -> list[int]:
        """The track ids of ``people`` (frame ``index``), in their order."""
        self.tracks = [t for t in self.tracks if index - t.last <= self.params.max_gap]
        found = [_person(p, self.params.visible) for p in people]
        ids: list[int | None] = [None] * len(found)
        for cost, t, p in sorted(self._pairs(index, found)):
            track = self.tracks[t]
            if cost > self.params.max_jump:
                break
            if ids[p] is not None or track.last == index:  # person or track already taken
                continue
            ids[p] = track.id
            self._follow(track, found[p], index)
        for p, person in enumerate(found):
            if ids[p] is None:
                ids[p] = self.next_id
                self.tracks.append(_Track(self.next_id, person, index))
                self.next_id += 1
        return [i for i in ids if i is not None]

    def _pairs(self, index: int, found: list[_Person]) -> Iterator[tuple[float, int, int]]:
        for t, track in enumerate(self.tracks):
            was = track.last_seen
            ahead = min(index - track.last, PREDICT_FRAMES)
            shift = 0.0 if track.velocity is None else track.velocity * ahead
            points, centre = was.points + shift, was.centre + shift
            for p, person in enumerate(found):
                both = was.seen & person.seen
                if both.sum() < MIN_COMMON:
                    both = np.ones(len(both), bool)
                keypoints = np.hypot(*(points[both] - person.points[both]).T).mean()
                box = np.hypot(*(centre - person.centre)) + abs(was.size - person.size)
                yield float(min(keypoints, box) / max(was.size, person.size, 1.0)), t, p

    @staticmethod
    def _follow(track: _Track, person: _Person, index: int) -> None:
        step = (person.points - track.last_seen.points).mean(axis=0) / max(1, index - track.last)
        if track.velocity is None:
            track.velocity = step
        else:
            track.velocity = VELOCITY_SMOOTHING * step + (1 - VELOCITY_SMOOTHING) * track.velocity
        track.last_seen, track.last = person, index


def track(frames: Iterable[dict[str, Any]], params: TrackParams | None = None) -> Iterator[dict[str, Any]]:
    """The frames, in order, each person given its ``track_id``."""
    tracker = Tracker(params)
    for frame in frames:
        ids = tracker.update(frame["index"], frame["people"])
        frame["people"] = [{"track_id": i, **p} for i, p in zip(ids, frame["people"], strict=True)]
        yield frame


def most_present(frames: Iterable[dict[str, Any]], people: int, spool: Path) -> Iterator[dict[str, Any]]:
    """The tracked frames again, keeping the tracks present in the most frames (ties: the
    earlier) as long as they fit: longest first, a track is kept when no frame of its span
    (first to last frame seen) already holds ``people`` kept tracks. So the N longest tracks
    that overlap in time are kept, and a track that only fills frames the longer ones leave
    empty (the same person back after more than the maximum gap, or somebody else) is kept too,
    under its own id. Kept tracks are renumbered 0, 1, ... in order of appearance.

    The frames are spooled to ``spool`` (JSON lines) while each track's frames are counted:
    the choice needs the whole video, the memory three numbers per track and a byte per frame."""
    presence: Counter[int] = Counter()
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    count = 0
    with spool.open("w") as out:
        for frame in frames:
            for person in frame["people"]:
                track_id = person["track_id"]
                presence[track_id] += 1
                first.setdefault(track_id, frame["index"])
                last[track_id] = frame["index"]
            count = frame["index"] + 1
            out.write(json.dumps(frame, separators=(",", ":")) + "\n")
    taken = np.zeros(count, np.uint8)  # kept tracks whose span covers each frame
    chosen = []
    for track_id in sorted(presence, key=lambda t: (-presence[t], t)):
        span = taken[first[track_id] : last[track_id] + 1]
        if span.max() < people:
            span += 1
            chosen.append(track_id)
    renumber = {old: new for new, old in enumerate(sorted(chosen))}
    with spool.open() as lines:
        for line in lines:
            frame = json.loads(line)
            frame["people"] = [p for p in frame["people"] if p["track_id"] in renumber]
            for person in frame["people"]:
                person["track_id"] = renumber[person["track_id"]]
            yield frame
