"""Ingest tasks: one task per segment of a video (a few seconds from a keyframe).

Each task decodes its segment, preprocesses frames for the model's first stage, stores batches
once in Redis (claim-check) with a small message on the stage's queue, then hands the rest of the
video to the next segment's task. Each batch is admitted by the memory budget shared by every
job (``config/budget.py``) before it is stored; when it is refused the segment ends there and
the next segment's task starts a moment later, and a task whose job would not be admitted
defers itself with a countdown instead of blocking a worker.

Deferring sends the task again and returns (``retry(throw=False)``) rather than raising Celery's
``Retry``: a raised ``Retry`` ends in a reference cycle (its traceback holds the tracer's frame,
which holds the ExceptionInfo, which holds the ``Retry``), so each one stays in memory until a
full garbage collection, about 0.37 MB each (billiard copies every frame's ``co_positions``).
Throttled by a full budget, a producer defers about three times a segment; its pool process grew
0.11 MB per batch (docs/performance.md).
"""

from __future__ import annotations

import enum
import json
import time

import numpy as np
from celery import Task

from posequeue.config.celery_app import FINALIZE_TASK, INFER_TASK, INGEST_TASK, app, defer
from posequeue.config.models import get_model
from posequeue.config.queues import stage_queue
from posequeue.config.schemas import BatchMeta, Cursor, Job, JobStatus, detections_per_frame
from posequeue.config.settings import get_settings
from posequeue.errors import BatchError
from posequeue.jobs import Jobs, get_jobs
from posequeue.logs import get_logger
from posequeue.monitor import queue_depth
from posequeue.payload.codec import encode
from posequeue.policy import JobTask, require_running
from posequeue.producer.preprocess import display_size, work_frame
from posequeue.producer.recover import resend_lost
from posequeue.producer.video import DecodeStats, VideoError, probe, read_segment, rotation_of

log = get_logger(__name__)
WATCH_SECONDS = 5.0  # how often a fully queued job checks that its batches are being taken


@app.task(
    name=INGEST_TASK,
    bind=True,
    base=JobTask,
    store_reason="{exc}",
    internal_reason="internal error while ingesting: {exc!r}",
)
def ingest(self: Task, cursor: dict) -> None:
    """Decode, preprocess and enqueue one segment, then hand over to the next (failures: see
    ``posequeue.policy``)."""
    cur = Cursor(**cursor)
    jobs = get_jobs()
    status = jobs.status(cur.job_id)
    require_running(status)
    if status is JobStatus.QUEUED:
        jobs.mark_running(cur.job_id, probe(jobs.get(cur.job_id).video).to_dict())
    job = jobs.get(cur.job_id)
    resend_lost(jobs, job)  # batches whose message a killed worker took with it
    if cur.watching:  # all frames are queued: watch that workers take them, until done
        _check_stalled(jobs, job)
        return defer(self, WATCH_SECONDS, args=[cur.to_dict()])
    # The memory budget (config/budget.py): wait while a batch of this job's last size would
    # not be admitted, rather than decode frames that could not be stored.
    if not jobs.budget.fits(cur.job_id, max(1, jobs.budget.last_batch_bytes(cur.job_id))).admitted:
        return _wait_for_budget(self, jobs, job)
    outcome = _ingest_segment(jobs, job, cur)
    if outcome is _Outcome.REFUSED:  # not even the segment's first batch was admitted
        return _wait_for_budget(self, jobs, job)
    if outcome is _Outcome.LAST:
        cur.watching = True
        return defer(self, WATCH_SECONDS, args=[cur.to_dict()])
    return None


def _wait_for_budget(self: Task, jobs: Jobs, job: Job) -> None:
    """Defer the segment (0.25 s doubling to 4 s) instead of blocking a worker, which may be
    the one that would free the budget. A job that waits its turn with nothing in flight is
    not stalled; one whose batches do not move is (``_check_stalled``)."""
    if jobs.inflight(job.job_id):
        _check_stalled(jobs, job)
    return defer(self, _backoff(self.request.retries))


def _backoff(tries: int) -> float:
    return min(4.0, 0.25 * 2 ** min(tries, 4))


class _Outcome(enum.Enum):
    HANDED_OVER = "handed over"  # the next segment (or the rest of this one) has its task
    LAST = "last"  # every frame is queued
    REFUSED = "refused"  # the budget admitted nothing: the segment is to be run again


def _check_stalled(jobs: Jobs, job: Job) -> None:
    """No batch of the job finished for a payload's lifetime while batches wait: nobody serves
    a stage's queue. Fail the job saying what to start, rather than wait for ever."""
    waited = time.time() - jobs.last_progress(job.job_id)
    if waited <= get_settings().payload_ttl:
        return
    spec = get_model(job.model)
    waiting = [s.name for s in spec.stages if queue_depth(jobs, stage_queue(spec.name, s.name))]
    stage = waiting[0] if waiting else spec.first_stage.name
    raise VideoError(
        f"no batch of this job finished for {int(waited)} s while batches wait in "
        f"{stage_queue(spec.name, stage)}: is any worker serving it? Start one with "
        f"`posequeue worker --model {spec.name} --stage {stage}` (or a plain "
        "`posequeue worker` for every stage)"
    )


def _long_side(job: Job) -> int:
    info = job.video_info
    return get_model(job.model).work_long_side(
        info.get("width", 1), info.get("height", 1), get_settings().work_long_side
    )


def _ingest_segment(jobs: Jobs, job: Job, cur: Cursor) -> _Outcome:
    """Decode and enqueue one segment, each batch admitted by the budget before it is stored.

    A refused batch ends the segment early: the frames stored so far are handed over and the
    next segment's task starts after the refused batch's first frame, a moment later. How many
    frames a segment took is recorded before its hand-over is sent, so a redelivered segment
    stores the same batches and ends in the same place, whatever the budget holds then.
    """
    settings = get_settings()
    spec = get_model(job.model)
    decided = jobs.segment_frames(cur.job_id, cur.segment)  # set: this is a replay
    people = detections_per_frame(job.people, job.follow)
    batcher = _Batcher(
        jobs, cur, spec.name, spec.first_stage.name, job.batch_size, people, replay=decided is not None
    )
    stats = DecodeStats()
    started = time.perf_counter()
    long_side = _long_side(job)
    skip = cur.first_frame if cur.after_pts is None else 0  # a stream without timestamps
    for item in read_segment(job.video, cur.after_pts, settings.segment_seconds, stats, skip=skip):
        if decided is not None and batcher.taken >= decided:
            break  # a replay ends where the first delivery did
        rotation = rotation_of(item.frame)
        pixels = work_frame(item.frame, rotation, long_side)
        if not batcher.add(pixels, item.t, item.pts, display_size(item.frame, rotation)):
            break
    if not batcher.refused:
        batcher.flush()
    if batcher.refused:  # the rest of the segment waits for the next task
        stats.ended = False
    if batcher.refused and batcher.batches == 0:
        return _Outcome.REFUSED
    totals = dict(cur.totals)
    totals["corrupt_packets"] = totals.get("corrupt_packets", 0) + stats.corrupt_packets
    log.info(
        "ingest.segment",
        job_id=cur.job_id,
        segment=cur.segment,
        frames=batcher.frames,
        batches=batcher.batches,
        cut_by_budget=batcher.refused,
        corrupt_packets=stats.corrupt_packets,
        corrupt_frames=stats.corrupt_frames,
        seek_fallbacks=stats.seek_fallbacks,
        seconds=round(time.perf_counter() - started, 3),
    )
    next_frame = cur.first_frame + batcher.frames
    next_batch = cur.first_batch + batcher.batches
    if not stats.ended:
        if jobs.decide_segment(cur.job_id, cur.segment, batcher.frames) != batcher.frames:
            # A second delivery running at the same time decided first; its hand-over stands.
            log.warning("ingest.segment_decided_elsewhere", job_id=cur.job_id, segment=cur.segment)
            return _Outcome.HANDED_OVER
        nxt = Cursor(cur.job_id, cur.segment + 1, next_frame, next_batch, batcher.last_pts, totals)
        _hand_over(jobs, nxt, cur.segment, countdown=_backoff(0) if batcher.refused else None)
        return _Outcome.HANDED_OVER
    if next_frame == 0:
        raise VideoError(
            f"{job.video}: no frame could be decoded ({totals['corrupt_packets']} corrupt packets)"
        )
    if jobs.ingest_done(cur.job_id, next_frame, next_batch, totals["corrupt_packets"]):
        app.send_task(FINALIZE_TASK, args=[cur.job_id])
    return _Outcome.LAST


def _hand_over(jobs: Jobs, nxt: Cursor, segment: int, countdown: float | None = None) -> None:
    """Send the next segment once (a redelivered segment that was handed over stops here)."""
    if jobs.handed_over(nxt.job_id, segment):
        return
    app.send_task(INGEST_TASK, args=[nxt.to_dict()], countdown=countdown)
    jobs.mark_handover(nxt.job_id, segment)


class _Batcher:
    """Groups working frames into inference batches and puts them on the first stage's queue,
    each admitted by the memory budget first. A batch holds frames of one size; a size change
    mid-stream starts a new batch."""

    def __init__(
        self, jobs: Jobs, cur: Cursor, model: str, stage: str, size: int, people: int, replay: bool
    ) -> None:
        self.jobs, self.cur, self.model, self.size, self.replay = jobs, cur, model, size, replay
        self.people = people  # separate detections the detector keeps per frame
        self.pixels: list[np.ndarray] = []
        self.times: list[float] = []
        self.pts: list[int | None] = []
        self.display: tuple[int, int] = (0, 0)
        self.frames = 0  # frames enqueued by this segment
        self.batches = 0
        self.last_pts = cur.after_pts  # of the last frame enqueued: where the next task starts
        self.refused = False
        self.queue = stage_queue(model, stage)
        self.stage = stage
        spec = get_model(model)
        # Bytes per detection that a later stage's payload may take (a crop each): reserved
        # up front, so a hand-over never needs more than its batch was admitted with.
        self.later_frame_bytes = max(
            (
                3 * s.input_size[0] * s.input_size[1]
                for s in spec.stages
                if s.payload != spec.stage(stage).payload
            ),
            default=0,
        )
        settings = get_settings()
        self.ttl, self.codec, self.quality = (
            settings.payload_ttl,
            settings.payload_codec,
            settings.payload_quality,
        )
        self.kind = spec.stage(stage).kind

    @property
    def taken(self) -> int:
        """Frames this segment has taken so far, stored or waiting in the open batch."""
        return self.frames + len(self.pixels)

    def add(self, pixels: np.ndarray, t: float, pts: int | None, display: tuple[int, int]) -> bool:
        """Add a frame; False when the budget refused a batch (the frames since the last stored
        batch, this one included, are dropped: the next task decodes them again)."""
        changed = self.pixels and (pixels.shape != self.pixels[0].shape or display != self.display)
        if changed and not self.flush():
            return False
        self.pixels.append(pixels)
        self.times.append(round(t, 6))
        self.pts.append(pts)
        self.display = display
        return len(self.pixels) < self.size or self.flush()

    def flush(self) -> bool:
        """Store the open batch if the budget admits it; False (and nothing stored) if not."""
        n = len(self.pixels)
        if n == 0:
            return True
        index = self.cur.first_batch + self.batches
        first = self.cur.first_frame + self.frames
        h, w = self.pixels[0].shape[:2]
        encoded = encode(np.stack(self.pixels), self.codec, self.kind, self.quality)
        meta = BatchMeta(
            self.cur.job_id,
            index,
            list(range(first, first + n)),
            self.times,
            self.display,
            (w, h),
            self.model,
            self.people,
            encoded.meta,
        ).to_dict()
        payload = {"frames": encoded.blob}
        stored = len(json.dumps(meta)) + sum(len(v) for v in payload.values())
        reserve = max(stored, n * self.people * self.later_frame_bytes)
        if reserve > self.jobs.budget.limit:  # would never be admitted, and would hold up the queue
            raise BatchError(
                f"one batch of this video takes {reserve / 2**20:.1f} MiB in Redis, more than the "
                f"memory budget admits ({self.jobs.budget.limit / 2**20:.1f} MiB, 3/4 of "
                "POSEQUEUE_MAX_REDIS_MB): raise POSEQUEUE_MAX_REDIS_MB or lower POSEQUEUE_BATCH_SIZE "
                "or POSEQUEUE_WORK_LONG_SIDE"
            )
        admission = self.jobs.budget.acquire(self.cur.job_id, index, reserve, self.ttl, force=self.replay)
        if not admission.admitted:
            self.refused = True
            self.pixels, self.times, self.pts = [], [], []
            return False
        self.jobs.put_batch(meta, payload, self.ttl)
        self.jobs.set_enqueued(self.cur.job_id, index + 1)
        app.send_task(INFER_TASK, args=[self.cur.job_id, index, self.stage], queue=self.queue)
        self.frames += n
        self.batches += 1
        self.last_pts = self.pts[-1]
        self.pixels, self.times, self.pts = [], [], []
        return True
