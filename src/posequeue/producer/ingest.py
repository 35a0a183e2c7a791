"""Ingest tasks: one task per segment of a video (a few seconds from a keyframe).

Each task decodes its segment, preprocesses frames for the model's first stage, stores batches
once in Redis (claim-check) with a small message on the stage's queue, then hands the rest of the
video to the next segment's task. Each batch is admitted by the memory budget shared by every
job (``config/budget.py``) before it is stored; when it is refused the segment ends there and
the next segment's task starts a moment later, and a task whose job would not be admitted
defers itself with a countdown instead of blocking a worker.

Each hand-over claims the next segment and saves its cursor on the job in one script, before
the next task is sent; each task notes when it ran (``ingest_at``). A chain that stops (its
message lost with a host) is sent again from the saved cursor by the job watchdog
(``producer/watchdog.py``), which also watches the job once every frame is queued.

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

from posequeue.config.catalogue import get_model
from posequeue.config.celery_app import FINALIZE_TASK, INFER_TASK, INGEST_TASK, app, defer
from posequeue.config.queues import stage_queue
from posequeue.config.schemas import BatchMeta, Cursor, Job, JobStatus, detections_per_frame
from posequeue.config.settings import get_settings
from posequeue.errors import BatchError, JobError, StoreError
from posequeue.jobs import Jobs, get_jobs
from posequeue.logs import get_logger
from posequeue.payload.codec import encode
from posequeue.policy import JobTask, require_running
from posequeue.producer.preprocess import display_size, work_frame
from posequeue.producer.video import (
    DecodeStats,
    Limits,
    VideoError,
    damage_warnings,
    probe,
    read_segment,
    rotation_of,
)

log = get_logger(__name__)
MAX_SEGMENT_STARTS = 4  # a segment decoded this often without handing over kills its worker


@app.task(
    name=INGEST_TASK,
    bind=True,
    base=JobTask,
    store_reason="{exc}",
    internal_reason="internal error while ingesting: {exc!r}",
)
def ingest(self: Task, cursor: dict) -> None:
    """Decode, preprocess and enqueue one segment, then hand over to the next (failures: see
    ``posequeue.policy``; a chain that stops is resumed by the watchdog from the saved cursor)."""
    cur = Cursor(**cursor)
    jobs = get_jobs()
    status = jobs.status(cur.job_id)
    require_running(status)
    if cur.watching:  # a message of an earlier version: the watchdog watches jobs now
        return None
    jobs.beat(cur.job_id)  # the chain is alive (the watchdog's deadline for it)
    job = jobs.get(cur.job_id)
    if status is JobStatus.QUEUED or not job.video_info:  # the first segment (or a retried job's)
        limits = Limits.from_settings(get_settings())
        jobs.mark_running(cur.job_id, probe(job.video, limits).to_dict())
        job = jobs.get(cur.job_id)
    if job.cursor and cur.segment < Cursor(**job.cursor).segment:
        log.info("ingest.stale", reason=f"segment {cur.segment} was handed over already")
        return None
    # The memory budget (config/budget.py): wait while a batch of this job's last size would
    # not be admitted, rather than decode frames that could not be stored.
    if not jobs.budget.fits(cur.job_id, max(1, jobs.budget.last_batch_bytes(cur.job_id))).admitted:
        return _wait_for_budget(self)
    starts = jobs.count_segment_start(cur.job_id, cur.segment, get_settings().payload_ttl)
    if starts > MAX_SEGMENT_STARTS:
        raise JobError(_killer_reason(job, cur, starts - 1))
    try:
        outcome = _ingest_segment(jobs, job, cur)
    except StoreError:  # the input's store away: the policy waits it out; no crash to count
        jobs.uncount_segment_start(cur.job_id, cur.segment)
        raise
    if outcome is _Outcome.REFUSED:  # not even the segment's first batch was admitted
        jobs.uncount_segment_start(cur.job_id, cur.segment)  # a wait, not a crash
        return _wait_for_budget(self)
    return None  # the last segment: the watchdog watches the job until it ends


def _wait_for_budget(self: Task) -> None:
    """Defer the segment (0.25 s doubling to 4 s) instead of blocking a worker, which may be
    the one that would free the budget. A job whose batches do not move is failed by the
    watchdog's stall check."""
    return defer(self, _backoff(self.request.retries))


def _backoff(tries: int) -> float:
    return min(4.0, 0.25 * 2 ** min(tries, 4))


class _Outcome(enum.Enum):
    HANDED_OVER = "handed over"  # the next segment (or the rest of this one) has its task
    LAST = "last"  # every frame is queued
    REFUSED = "refused"  # the budget admitted nothing: the segment is to be run again


def _killer_reason(job: Job, cur: Cursor, starts: int) -> str:
    start = (cur.totals.get("last_ms", 0) / 1000.0) if cur.after_pts is not None else 0.0
    end = start + get_settings().segment_seconds
    return (
        f"segment {cur.segment} of {job.video} (about {start:.2f}-{end:.2f} s, frames from "
        f"{cur.first_frame}) was started {starts} times without finishing: decoding it kills the "
        "worker (out of memory? a decoder crash?); check the ingest worker's log and the input"
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
        jobs,
        cur,
        spec.name,
        spec.first_stage.name,
        job.batch_size,
        people,
        job.video_mode,
        replay=decided is not None,
    )
    stats = DecodeStats()
    started = time.perf_counter()
    long_side = _long_side(job)
    skip = cur.first_frame if cur.after_pts is None else 0  # a stream without timestamps
    limits = Limits.from_settings(settings)
    for item in read_segment(
        job.video, cur.after_pts, settings.segment_seconds, stats, skip=skip, limits=limits
    ):
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
    totals["corrupt_frames"] = totals.get("corrupt_frames", 0) + stats.corrupt_frames
    if stats.last_t is not None:
        totals["last_ms"] = round(stats.last_t * 1000)
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
    last_t = totals["last_ms"] / 1000.0 if "last_ms" in totals else None
    seen = DecodeStats(totals["corrupt_packets"], totals.get("corrupt_frames", 0))
    warnings = damage_warnings(job.video_info, next_frame, last_t, seen)
    for warning in warnings:
        log.warning("ingest.damaged", job_id=cur.job_id, warning=warning)
    if jobs.ingest_done(cur.job_id, next_frame, next_batch, totals["corrupt_packets"], warnings):
        app.send_task(FINALIZE_TASK, args=[cur.job_id])
    return _Outcome.LAST


def _hand_over(jobs: Jobs, nxt: Cursor, segment: int, countdown: float | None = None) -> None:
    """Send the next segment once: the hand-over is claimed and the next cursor saved on the job
    in one step, then sent. A redelivered segment that was handed over stops here; a worker that
    dies between the claim and the send leaves the saved cursor, which the watchdog sends."""
    if jobs.claim_handover(nxt.job_id, segment, nxt.to_dict()):
        app.send_task(INGEST_TASK, args=[nxt.to_dict()], countdown=countdown)


class _Batcher:
    """Groups working frames into inference batches and puts them on the first stage's queue,
    each admitted by the memory budget first. A batch holds frames of one size; a size change
    mid-stream starts a new batch."""

    def __init__(
        self,
        jobs: Jobs,
        cur: Cursor,
        model: str,
        stage: str,
        size: int,
        people: int,
        video_mode: bool,
        replay: bool,
    ) -> None:
        self.jobs, self.cur, self.model, self.size, self.replay = jobs, cur, model, size, replay
        self.people = people  # separate detections the detector keeps per frame
        self.video_mode = video_mode  # worker/video_mode.py
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
            self.video_mode,
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
