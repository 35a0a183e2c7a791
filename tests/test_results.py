"""The output writers: JSON of the contract and long-format CSV, streamed, frames once in order."""

from __future__ import annotations

import csv
import json

import pytest

from posequeue.results import CSV_HEADER, ResultWriter, csv_rows

NAMES = ["nose", "left_eye"]
HEAD = {"job_id": "j", "video": {"width": 4, "height": 3}, "model": {"name": "m", "keypoints": NAMES}}


def frame(index: int, people: int = 1) -> dict:  # type: ignore[type-arg]
    kp = [[1.5, 2.5, -3.0, 0.9, 0.8], [4.0, 5.0, 6.0, 0.1, 0.2]]
    found = [{"track_id": 7 + p, "score": 0.9, "keypoints": kp} for p in range(people)]
    return {"index": index, "t": index / 30, "people": found}


def test_csv_rows_one_per_person_and_keypoint() -> None:
    """Each (person, keypoint) of a frame is one row with the person's place and track id; a
    frame with nobody gives none."""
    rows = list(csv_rows(frame(3, people=2), NAMES))
    assert rows[0] == (3, 0.1, 0, 7, "nose", 1.5, 2.5, -3.0, 0.9, 0.8)
    assert [r[2:5] for r in rows] == [(0, 7, "nose"), (0, 7, "left_eye"), (1, 8, "nose"), (1, 8, "left_eye")]
    assert list(csv_rows(frame(4, people=0), NAMES)) == []


def test_keypoint_names_must_match_the_model_output() -> None:
    """A model whose outputs do not match its keypoint names fails loudly instead of dropping rows."""
    with pytest.raises(ValueError):
        list(csv_rows(frame(0), ["nose"]))


def test_writer_streams_valid_json_and_csv(tmp_path) -> None:
    """Frames written in order give the contract's JSON and a CSV with a header row."""
    with ResultWriter(tmp_path, HEAD, NAMES) as out:
        for i in range(5):
            out.write(frame(i, people=i % 2))
    data = json.loads(out.json_path.read_text())
    assert data["contract"] == 2 and list(data)[0] == "contract"
    assert data["job_id"] == "j" and data["model"]["keypoints"] == NAMES
    assert [f["index"] for f in data["frames"]] == [0, 1, 2, 3, 4]
    assert data["frames"][0]["people"] == []
    rows = list(csv.reader(out.csv_path.open()))
    assert tuple(rows[0]) == CSV_HEADER and len(rows) == 1 + 2 * 2


def test_writer_with_no_frames(tmp_path) -> None:
    """A job with no frame still gives valid JSON."""
    with ResultWriter(tmp_path, HEAD, NAMES) as out:
        pass
    assert json.loads(out.json_path.read_text())["frames"] == []


@pytest.mark.parametrize("order", [[0, 2], [1], [0, 0], [0, 1, 1]])
def test_writer_refuses_gaps_repeats_and_disorder(tmp_path, order) -> None:
    """Every frame once, in order: a gap, a repeat or a wrong start is an error naming the frame."""
    with pytest.raises(ValueError, match="expected next"), ResultWriter(tmp_path, HEAD, NAMES) as out:
        for i in order:
            out.write(frame(i))
