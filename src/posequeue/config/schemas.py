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


@dataclass(frozen=True)
class Transform:
    """Maps model-input pixels back to displayed-frame pixels: x = (u - pad_x) / scale_x."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float

    def to_display(self, u: Any, v: Any) -> tuple[Any, Any]:
        return (u - self.pad_x) / self.scale_x, (v - self.pad_y) / self.scale_y


@dataclass
class BatchMeta:
    """What a worker needs besides the pixels of one inference batch."""

    job_id: str
    index: int
    frames: list[int]
    times: list[float]
    transforms: list[Transform]  # one per frame: size or rotation may change mid-stream
    model: str
    stage: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchMeta:
        data = dict(data)
        data["transforms"] = [Transform(**t) for t in data["transforms"]]
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
