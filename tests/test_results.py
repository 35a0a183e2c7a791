"""Unit tests for posequeue.results: CSV long format, frame checks and keys."""

from __future__ import annotations

import csv
import io
import json

import pytest

from posequeue.results import (
    CSV_HEADER,
    check_frames,
    contract,
    dumps,
    job_prefix,
    part_key,
    to_csv,
)

NAMES = ["nose", "left_eye", "right_eye"]


def person(base: float, score: float = 0.9) -> dict:
    keypoints = [[base + k, base + k + 0.5, -1.25, 0.9876, 0.5] for k in range(3)]
    return {"score": score, "keypoints": keypoints}


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_csv_header_only() -> None:
    """No frames gives just the header line."""
    text = to_csv([], NAMES)
    assert text == ",".join(CSV_HEADER) + "\n"
    assert CSV_HEADER == ("frame", "t", "person", "keypoint", "x", "y", "z", "visibility",
                          "presence")  # fmt: skip


@pytest.mark.parametrize(
    ("people", "expected_rows"),
    [([], 0), ([person(10)], 3), ([person(10), person(100)], 6)],
    ids=["nobody", "one", "two"],
)
def test_csv_rows(people: list[dict], expected_rows: int) -> None:
    """One row per (frame, person, keypoint); a frame with no people gives no rows."""
    frames = [{"index": 0, "t": 0.0, "people": people},
              {"index": 1, "t": 0.0333, "people": []}]  # fmt: skip
    table = rows(to_csv(frames, NAMES))
    assert table[0] == list(CSV_HEADER)
    body = table[1:]
    assert len(body) == expected_rows
    for n, row in enumerate(body):
        p, k = divmod(n, 3)
        x, y, z, vis, pres = people[p]["keypoints"][k]
        assert row == ["0", "0.0", str(p), NAMES[k], str(x), str(y), str(z), str(vis), str(pres)]


def test_csv_frames_in_order() -> None:
    """Rows follow the frames' order and carry each frame's index and time."""
    frames = [{"index": i, "t": round(i / 30, 4), "people": [person(i)]} for i in range(4)]
    body = rows(to_csv(frames, NAMES))[1:]
    assert [(r[0], r[1]) for r in body[::3]] == [(str(i), str(round(i / 30, 4))) for i in range(4)]
    assert [r[3] for r in body] == NAMES * 4


@pytest.mark.parametrize("n", [0, 1, 5])
def test_check_frames_accepts(n: int) -> None:
    """Frames 0..n-1, each once and in order, pass."""
    check_frames([{"index": i} for i in range(n)], n)


@pytest.mark.parametrize(
    ("indices", "expected", "words"),
    [
        ([0, 1, 3], 4, "missing e.g. [2]"),  # gap
        ([0, 1, 2], 4, "missing e.g. [3]"),  # tail lost
        ([1, 2, 3], 4, "missing e.g. [0]"),  # head lost
        ([0, 1, 1, 2], 3, "repeated e.g. [1]"),  # duplicate
        ([0, 2, 1], 3, "first wrong at position 1"),  # out of order
        ([0, 1, 2, 3], 3, "unexpected e.g. [3]"),  # too many
        ([], 2, "assembled 0 frames, expected 2"),
    ],
    ids=["gap", "tail", "head", "duplicate", "order", "extra", "empty"],
)
def test_check_frames_rejects(indices: list[int], expected: int, words: str) -> None:
    """Gaps, duplicates, extras and out-of-order frames are a ValueError saying what is wrong."""
    with pytest.raises(ValueError) as err:
        check_frames([{"index": i} for i in indices], expected)
    message = str(err.value)
    assert words in message
    assert f"assembled {len(indices)} frames, expected {expected}" in message


def test_keys_and_contract() -> None:
    """Part keys sort in batch order under the job's prefix; the contract has the four fields."""
    keys = [part_key("j", b) for b in (10, 2, 100)]
    assert sorted(keys) == [part_key("j", 2), part_key("j", 10), part_key("j", 100)]
    assert all(k.startswith(job_prefix("j")) and k.endswith(".json") for k in keys)
    doc = contract("j", {"width": 1}, {"name": "m"}, [])
    assert list(doc) == ["job_id", "video", "model", "frames"]
    assert json.loads(dumps(doc)) == doc
    assert b" " not in dumps(doc)
