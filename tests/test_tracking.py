"""Track ids through a whole job (analysis/tracking.py): people keep their id across frames,
crossings and short disappearances; following the most present keeps the right person."""

from __future__ import annotations

import json

import numpy as np
import pytest

from posequeue.analysis.tracking import Tracker, TrackParams, most_present, track

RNG = np.random.default_rng(14)
# A standing figure's 33 keypoints around its centre, about 60 x 160 px (fixed random layout).
FIGURE = np.column_stack([RNG.uniform(-30, 30, 33), RNG.uniform(-80, 80, 33)])


def person(x: float, y: float, noise: float = 1.0, score: float = 0.9) -> dict:  # type: ignore[type-arg]
    points = FIGURE + (x, y) + RNG.normal(0, noise, FIGURE.shape)
    return {"score": score, "keypoints": [[px, py, 0.0, 0.9, 0.99] for px, py in points]}


def frames(people_per_frame: list[list[dict]]) -> list[dict]:  # type: ignore[type-arg]
    return [{"index": i, "t": i / 30, "people": p} for i, p in enumerate(people_per_frame)]


def test_two_people_crossing_paths_keep_their_ids() -> None:
    """Two people walking towards each other on the same line, passing 5 px apart in the middle
    and listed in alternating order, keep their ids (the nearer last position would swap them)."""
    steps = 60
    a = [100 + 5 * i + 2.5 for i in range(steps)]  # left to right, 5 px per frame
    b = [397.5 - 5 * i for i in range(steps)]  # right to left: at frame 29 they are 5 px apart
    seen = []
    for i, (xa, xb) in enumerate(zip(a, b, strict=True)):
        pair = [("a", person(xa, 200)), ("b", person(xb, 200))]
        seen.append(pair if i % 2 else pair[::-1])
    out = list(track(frames([[p for _, p in pair] for pair in seen])))
    by_name: dict[str, set[int]] = {"a": set(), "b": set()}
    for pair, frame in zip(seen, out, strict=True):
        for (name, _), found in zip(pair, frame["people"], strict=True):
            by_name[name].add(found["track_id"])
    assert by_name in ({"a": {0}, "b": {1}}, {"a": {1}, "b": {0}}), by_name


def test_a_person_hidden_while_crossing_keeps_the_id() -> None:
    """Two people crossing where the one behind is hidden for 8 frames: the one in front keeps
    their id, and the hidden one gets theirs back on the far side."""
    seen = []
    for i in range(60):
        pair = [("b", person(400 - 5 * i, 205))]
        if not 26 <= i < 34:  # a is behind b around the crossing (frame 30)
            pair.append(("a", person(100 + 5 * i, 200)))
        seen.append(pair)
    out = list(track(frames([[p for _, p in pair] for pair in seen])))
    by_name: dict[str, set[int]] = {"a": set(), "b": set()}
    for pair, frame in zip(seen, out, strict=True):
        for (name, _), found in zip(pair, frame["people"], strict=True):
            by_name[name].add(found["track_id"])
    assert by_name in ({"a": {0}, "b": {1}}, {"a": {1}, "b": {0}}), by_name


def test_short_disappearance_keeps_the_id_long_one_ends_the_track() -> None:
    """A person unseen for fewer than max_gap frames gets their id back; after more than max_gap
    frames they start a new track."""
    params = TrackParams(max_gap=10)
    walk = [person(100 + 3 * i, 200) for i in range(80)]
    present = [[p] for p in walk]
    for i in range(20, 29):  # 9 frames missing: within the gap
        present[i] = []
    for i in range(40, 52):  # 12 frames missing: beyond it
        present[i] = []
    ids = [f["people"][0]["track_id"] if f["people"] else None for f in track(frames(present), params)]
    assert set(ids[:40]) - {None} == {0}
    assert set(ids[52:]) == {1}


@pytest.mark.parametrize("walks_on", [True, False])
def test_a_person_hidden_for_20_frames_keeps_the_id_whether_they_walk_on_or_stop(walks_on) -> None:  # type: ignore[no-untyped-def]
    """A person walking at 5 px a frame, hidden for 20 frames, keeps their id whether they come
    back where walking on would take them or where they were hidden (the prediction is capped)."""
    seq = [[person(100 + 5 * i, 200)] for i in range(30)]
    seq += [[] for _ in range(20)]
    back = 100 + 5 * (50 if walks_on else 29)
    seq += [[person(back + 5 * i, 200)] for i in range(10)]
    ids = {p["track_id"] for f in track(frames(seq)) for p in f["people"]}
    assert ids == {0}


def test_a_jump_beyond_max_jump_starts_a_new_track() -> None:
    """A person whose keypoints land farther from the prediction than max_jump person sizes is
    somebody else: a new id."""
    seq = [[person(100, 200)], [person(102, 200)], [person(400, 200)]]
    ids = [f["people"][0]["track_id"] for f in track(frames(seq))]
    assert ids == [0, 0, 1]


def test_tracker_state_stays_bounded() -> None:
    """Tracks unseen for more than max_gap frames are forgotten: a long stream of passers-by
    leaves at most people x (max_gap + 1) live tracks."""
    tracker = Tracker(TrackParams(max_gap=5))
    for i in range(500):
        tracker.update(i, [person(50 * (i % 7), 100 * (i % 5))])  # somebody new every frame
        assert len(tracker.tracks) <= 6
    assert tracker.next_id > 100


def test_most_present_follows_the_person_seen_longest(tmp_path) -> None:
    """Following the most present keeps the person seen in most frames in every frame they are
    in (id 0), even where a passer-by scores better, and drops the passer-by."""
    seq = []
    for i in range(50):
        found = [person(100 + i, 200, score=0.8)] if i % 10 != 3 else []
        if 10 <= i < 30:  # a passer-by, better scored, first in the list
            found.insert(0, person(500 - 2 * i, 220, score=0.99))
        seq.append(found)
    out = list(most_present(track(frames(seq)), 1, tmp_path / "spool.jsonl"))
    assert [f["index"] for f in out] == list(range(50))
    for i, frame in enumerate(out):
        assert [p["track_id"] for p in frame["people"]] == ([] if i % 10 == 3 else [0])
        assert all(p["score"] == 0.8 for p in frame["people"])
    assert json.loads((tmp_path / "spool.jsonl").read_text().splitlines()[12])["index"] == 12


def test_most_present_keeps_n_and_renumbers_in_order_of_appearance(tmp_path) -> None:
    """With N=2 the two longest tracks are kept where a third overlaps both, numbered 0, 1 in
    order of appearance; the third is dropped."""
    seq = []
    for i in range(40):
        found = []
        if 10 <= i < 15:
            found.append(person(600, 100))  # short, while both others are there: dropped
        if i >= 3:
            found.append(person(100 + i, 200))  # appears first: id 0
        if i >= 8:
            found.append(person(350, 300 - i))
        seq.append(found)
    out = list(most_present(track(frames(seq)), 2, tmp_path / "spool.jsonl"))
    assert [[p["track_id"] for p in f["people"]] for f in out] == [[]] * 3 + [[0]] * 5 + [[0, 1]] * 32


def test_most_present_keeps_a_later_stretch_that_fits(tmp_path) -> None:
    """With one person, somebody back after more than max_gap frames (a new track) is kept in
    the frames the longest track leaves empty, under the next id; a passer-by while the longest
    track is there is not."""
    seq: list[list[dict]] = [[] for _ in range(120)]  # type: ignore[type-arg]
    for i in range(0, 60):
        seq[i].append(person(100 + i, 200, score=0.8))
    for i in range(100, 120):  # back, 40 frames later, where they left
        seq[i].append(person(160 + i - 100, 200, score=0.8))
    for i in range(20, 40):  # a passer-by, better scored, while the first stretch runs
        seq[i].insert(0, person(500, 220, score=0.99))
    out = list(most_present(track(frames(seq)), 1, tmp_path / "spool.jsonl"))
    ids = [[p["track_id"] for p in f["people"]] for f in out]
    assert ids == [[0]] * 60 + [[]] * 40 + [[1]] * 20
    assert all(p["score"] == 0.8 for f in out for p in f["people"])


@pytest.mark.parametrize("kw", [{"max_gap": -1}, {"max_jump": 0}])
def test_params_are_checked(kw) -> None:  # type: ignore[no-untyped-def]
    """Parameters out of range are refused with the parameter named."""
    with pytest.raises(ValueError, match=next(iter(kw))):
        TrackParams(**kw)
