"""The output contract, written incrementally: per-batch parts assembled in frame order into
the job's JSON (see docs/architecture.md) and its long-format CSV."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

# The output contract's version, at the top of poses.json; 2 added several people per frame and
# a track_id per person (and poses.csv's track column). docs/architecture.md, "Output contract".
CONTRACT = 2
CSV_HEADER = ("frame", "t", "person", "track", "keypoint", "x", "y", "z", "visibility", "presence")


def part_key(job_id: str, batch: int) -> str:
    return f"jobs/{job_id}/parts/{batch:07d}.json"


def job_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/"


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def csv_rows(frame: dict[str, Any], keypoints: list[str]) -> Iterator[tuple[Any, ...]]:
    """One row per (person, keypoint) of a frame; a frame with nobody gives no rows. ``person``
    is the person's place in the frame, ``track`` their track id through the video."""
    for p, person in enumerate(frame["people"]):
        for name, values in zip(keypoints, person["keypoints"], strict=True):
            yield (frame["index"], frame["t"], p, person["track_id"], name, *values)


class ResultWriter:
    """Streams frames into ``poses.json`` and ``poses.csv`` in a folder, checking that they come
    once each, in order; memory stays flat whatever the video's length."""

    def __init__(self, folder: Path, head: dict[str, Any], keypoints: list[str]) -> None:
        self.json_path, self.csv_path = folder / "poses.json", folder / "poses.csv"
        self.head, self.keypoints = head, keypoints
        self.count = 0

    def __enter__(self) -> ResultWriter:
        self._json = self.json_path.open("w")
        self._csv = self.csv_path.open("w", newline="")
        head = {"contract": CONTRACT, **self.head}
        self._json.write(json.dumps(head, separators=(",", ":"))[:-1] + ',"frames":[')
        self._rows = csv.writer(self._csv, lineterminator="\n")
        self._rows.writerow(CSV_HEADER)
        return self

    def write(self, frame: dict[str, Any]) -> None:
        if frame["index"] != self.count:
            raise ValueError(f"frame {self.count} expected next, got frame {frame['index']}")
        self._json.write(("," if self.count else "") + json.dumps(frame, separators=(",", ":")))
        self._rows.writerows(csv_rows(frame, self.keypoints))
        self.count += 1

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._json.write("]}")
        self._json.close()
        self._csv.close()
