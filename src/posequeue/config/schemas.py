"""Job status and the small records that travel between producers, workers and clients.

Messages carry ids and keys, never pixels: frames live once in Redis under a key (claim-check).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"  # never stored: what a client reports for a job whose record vanished

    @property
    def finished(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.LOST)


class AnalysisStatus(str, enum.Enum):
    """A done job's motion analysis (``posequeue.analysis``): none yet is None on the record."""

    OFF = "off"  # submitted with --no-analysis
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (AnalysisStatus.OFF, AnalysisStatus.DONE, AnalysisStatus.FAILED)


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


@dataclass(frozen=True)
class Job:
    """A job's record as ``Jobs.get`` reads it from its Redis hash (``config.keys.job_key``).

    The fields' types are declared here once: ``from_hash`` converts each hash field by its
    type. Optional fields are None until the step that writes them (``started_at`` and
    ``video_info`` once ingest probes the video, ``frames_total``, ``batches_total`` and
    ``corrupt_packets`` once every frame is queued, ``finished_at`` and ``error`` or ``results``
    once it ends); ``video_info`` and ``results`` are empty until then.
    """

    job_id: str
    status: JobStatus
    model: str
    video: str  # where producers read it (a local path, or the store's copy)
    batch_size: int
    submitted_at: float
    source: str = ""  # as the client gave it
    frames_done: int = 0
    batches_enqueued: int = 0
    batches_done: int = 0  # not in the hash: the size of the job's fan-in set
    frames_total: int | None = None
    batches_total: int | None = None
    corrupt_packets: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    progress_at: float | None = None  # when a batch last finished
    ingest_at: float | None = None  # when an ingest task of the job last ran (the watchdog's clock)
    store_wait_at: float | None = None  # when a task of the job last deferred on a store error
    error: str | None = None
    warnings: list[str] = field(default_factory=list)  # a damaged input: what is missing
    video_info: dict[str, Any] = field(default_factory=dict)  # the probe's (VideoInfo.to_dict)
    results: dict[str, str] = field(default_factory=dict)  # output URIs by kind: json, csv, manifest
    cursor: dict[str, Any] = field(default_factory=dict)  # the next segment's, saved at each hand-over
    resent_ingest: int = 0  # times the watchdog sent the ingest chain again
    resent_finalize: int = 0  # times the watchdog sent finalise again
    # Records from before --people have neither: one person, the detector's best, as then.
    people: int = 1  # most people per frame (submit --people)
    follow: Follow = Follow.BEST_SCORE  # which people the job keeps (submit --follow)
    video_mode: bool = False  # follow people between frames (submit --video-mode)
    # the motion analysis (analysis/state.py writes these; absent until it is queued or turned off)
    analysis: AnalysisStatus | None = None
    analysis_error: str | None = None
    analysis_results: dict[str, str] = field(default_factory=dict)  # URIs by file name
    analysis_params: dict[str, Any] = field(default_factory=dict)
    analysis_queued_at: float | None = None
    analysis_started_at: float | None = None
    analysis_finished_at: float | None = None
    analysis_sends: int = 0  # its latest message's number: one more at each request and re-send
    analysis_resends: int = 0  # the watchdog's re-sends since it was last asked for (its cap)
    analysis_beat_at: float | None = None  # the running task's last heartbeat
    # set by the HTTP API (api/callbacks.py): where to POST when the job ends, and how that went
    callback_url: str | None = None
    callback_status: str | None = None  # retrying, delivered or failed
    callback_attempts: int = 0
    callback_error: str | None = None

    @classmethod
    def from_hash(cls, job_id: str, raw: Mapping[bytes, bytes], batches_done: int) -> Job:
        """The record from its hash's fields (fields of another version are left out)."""
        values: dict[str, Any] = {"job_id": job_id, "batches_done": batches_done}
        for key, value in raw.items():
            name = key.decode()
            if name in _JOB_FIELDS:
                values[name] = _JOB_FIELDS[name](value.decode())
        return cls(**values)

    @classmethod
    def lost(cls, job_id: str, reason: str) -> Job:
        """What a client knows of a job whose record vanished from Redis: its id, and why."""
        return cls(job_id, JobStatus.LOST, model="", video="", batch_size=0, submitted_at=0.0, error=reason)

    def analysis_summary(self) -> dict[str, Any]:
        """The analysis's part of the job summary: status, error, results, params, times."""
        if self.analysis is None:
            return {}
        out: dict[str, Any] = {"status": self.analysis.value}
        for name in ("error", "results", "params", "queued_at", "started_at", "finished_at"):
            value = getattr(self, f"analysis_{name}")
            if value is not None and value != {}:
                out[name] = value
        return out

    @property
    def frames_expected(self) -> int | None:
        """Frames the job will have: the count once every frame is queued, before that the
        probe's estimate (None before the probe)."""
        return self.frames_total if self.frames_total is not None else self.video_info.get("frame_count")


def _converter(kind: Any) -> Any:
    """How a hash field's text becomes a value of the declared type (``int | None`` -> int)."""
    if get_origin(kind) in (Union, UnionType):
        kind = next(k for k in get_args(kind) if k is not type(None))
    if kind is bool:  # written as 0 or 1 (Jobs.create)
        return lambda text: text.lower() in ("1", "true")
    return json.loads if get_origin(kind) in (dict, list) else kind


_JOB_FIELDS = {
    f.name: _converter(get_type_hints(Job)[f.name])
    for f in fields(Job)
    if f.name not in ("job_id", "batches_done")
}


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
    people: int = 1  # separate detections kept per frame (detections_per_frame)
    video_mode: bool = False  # follow people between frames (worker/video_mode.py), else detect on each
    payload: dict[str, Any] = field(default_factory=lambda: {"codec": "raw"})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.video_mode:  # left out, so a worker of a version before it reads the batch
            del data["video_mode"]
        return data

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
