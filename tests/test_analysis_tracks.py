"""Reading a job's poses into tracks: the streamed reading of poses.json as finalise writes it,
and people grouped by track_id."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from synthetic_poses import poses_document, standing

from posequeue.analysis.tracks import load_tracks, read_poses, tracks_of
from posequeue.results import CONTRACT, ResultWriter


def test_streamed_reading_gives_the_parsed_document(tmp_path: Path) -> None:
    """poses.json as ResultWriter writes it is read frame by frame into what json.loads gives;
    a document laid out otherwise (indented) is parsed whole, with the same result."""
    n = 12
    people = np.stack([standing(n), standing(n) + 50], axis=1)
    people[3, 1] = np.nan  # nobody second in frame 3
    doc = {"contract": CONTRACT, **poses_document(people, np.arange(n) / 25, tracks=[0, 5])}
    head = {k: v for k, v in doc.items() if k != "frames"}
    with ResultWriter(tmp_path, head, doc["model"]["keypoints"]) as out:
        for frame in doc["frames"]:
            out.write(frame)
    written = out.json_path.read_bytes()
    assert json.loads(written) == doc
    for data in (written, json.dumps(doc, indent=1).encode()):
        got_head, frames = read_poses(data)
        assert got_head == head and list(frames) == doc["frames"]
    tracks = tracks_of(read_poses(written)[1], 33)
    assert [t.track_id for t in tracks] == [0, 5] and tracks[1].frames_present == n - 1
    np.testing.assert_array_equal(tracks[0].xy[:, :, :], load_tracks(doc)[0].xy)
