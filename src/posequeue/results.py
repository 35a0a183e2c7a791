"""The output contract: per-batch parts assembled into the job's JSON, CSV and manifest."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

CSV_HEADER = ("frame", "t", "person", "keypoint", "x", "y", "z", "visibility", "presence")


def part_key(job_id: str, batch: int) -> str:
    return f"jobs/{job_id}/parts/{batch:07d}.json"


def job_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/"


def check_frames(frames: list[dict[str, Any]], expected: int) -> None:
    """Every frame once, in order: indices 0..expected-1 exactly."""
    indices = [f["index"] for f in frames]
    if indices != list(range(expected)):
        missing = sorted(set(range(expected)) - set(indices))[:10]
        repeated = sorted(i for i, n in Counter(indices).items() if n > 1)[:10]
        unexpected = sorted(set(indices) - set(range(expected)))[:10]
        wrong = next(n for n, i in enumerate(indices + [None]) if n >= expected or i != n)
        raise ValueError(f"assembled {len(indices)} frames, expected {expected}; "
                         f"missing e.g. {missing}, repeated e.g. {repeated}, unexpected e.g. "
                         f"{unexpected}; first wrong at position {wrong}")  # fmt: skip


def contract(job_id: str, video: dict[str, Any], model: dict[str, Any],
             frames: list[dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    return {"job_id": job_id, "video": video, "model": model, "frames": frames}


def to_csv(frames: Iterable[dict[str, Any]], keypoints: list[str]) -> str:
    """Long format, one row per (frame, person, keypoint)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for frame in frames:
        for p, person in enumerate(frame["people"]):
            for name, (x, y, z, vis, pres) in zip(keypoints, person["keypoints"], strict=True):
                writer.writerow((frame["index"], frame["t"], p, name, x, y, z, vis, pres))
    return out.getvalue()


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()
