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


@dataclass
class BatchMeta:
    """What a worker needs besides the pixels of one inference batch.

    Frames travel at a working resolution (``work``: width, height), upright; coordinates are
    normalised between stages and turned into pixels of the displayed frame (``display``) last.
    ``payload`` says how the pixels are encoded (``payload/codec.py``); a worker of an older
    version refuses the field, so a mixed fleet fails the job with a message, not bad keypoints.
    """

    job_id: str
    index: int
    frames: list[int]
    times: list[float]
    display: tuple[int, int]
    work: tuple[int, int]
    model: str
    payload: dict[str, Any] = field(default_factory=lambda: {"codec": "raw"})

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
