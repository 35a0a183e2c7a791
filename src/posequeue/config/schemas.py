"""Job status and the small records that travel between producers, workers and clients.

Messages carry ids and keys, never pixels: frames live once in Redis under a key (claim-check).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.FAILED)


class Follow(str, enum.Enum):
    """Which people a job keeps when more are seen than ``--people`` allows (docs/architecture.md,
    "People and tracks")."""

    MOST_PRESENT = "most-present"  # the tracks present in the most frames, N at a time at most
    BEST_SCORE = "best-score"  # the N best detections of each frame; every track they form


def detections_per_frame(people: int, follow: Follow) -> int:
    """How many separate detections the detector keeps per frame for a job of ``people`` people:
    one spare candidate when the job follows the most present, so that a person outscored in
    some frames by a passer-by is still seen there (at the cost of one more landmark crop in
    the frames that have a candidate more)."""
    return people + 1 if follow is Follow.MOST_PRESENT else people


@dataclass
class BatchMeta:
    """What a worker needs besides the pixels of one inference batch.

    Frames travel at a working resolution (``work``: width, height), upright; coordinates are
    normalised between stages and turned into pixels of the displayed frame (``display``) last.
    """

    job_id: str
    index: int
    frames: list[int]
    times: list[float]
    display: tuple[int, int]
    work: tuple[int, int]
    model: str
    people: int = 1  # separate detections kept per frame (detections_per_frame)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchMeta:
        data = dict(data)
        data["display"], data["work"] = tuple(data["display"]), tuple(data["work"])
        return cls(**data)


@dataclass
class Cursor:
    """Where the next ingest segment starts; passed from one segment task to the next."""

    job_id: str
    segment: int = 0
    first_frame: int = 0
    first_batch: int = 0
    after_pts: int | None = None  # pts of the last frame already taken (None: from the start)
    totals: dict[str, int] = field(default_factory=dict)  # running counts, e.g. corrupt packets
    watching: bool = False  # every frame is queued; the task only checks that workers take them

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
