"""Ingest tasks: one task per segment of a video (a few seconds from a keyframe).

Each task decodes its segment, preprocesses frames for the model's first stage, stores batches
once in Redis (claim-check) with a small message on the stage's queue, then hands the rest of the
video to the next segment's task. A job keeps a bounded window of batches in flight: when it is
full the task defers itself with a countdown instead of blocking a worker.

Each hand-over claims the next segment and saves its cursor on the job in one script, before
the next task is sent; each task notes when it ran (``ingest_at``). A chain that stops (its
message lost with a host) is sent again from the saved cursor by the job watchdog
(``producer/watchdog.py``), which also watches the job once every frame is queued.

Deferring sends the task again and returns (``retry(throw=False)``) rather than raising Celery's
``Retry``: a raised ``Retry`` ends in a reference cycle (its traceback holds the tracer's frame,
which holds the ExceptionInfo, which holds the ``Retry``), so each one stays in memory until a
full garbage collection, about 0.37 MB each (billiard copies every frame's ``co_positions``).
Throttled by the window, a producer defers about three times a segment; its pool process grew
0.11 MB per batch (docs/performance.md).
"""

from __future__ import annotations

import math
import time

import numpy as np
from celery import Task

from posequeue.config.celery_app import FINALIZE_TASK, INFER_TASK, INGEST_TASK, app, defer
from posequeue.config.models import get_model
from posequeue.config.queues import stage_queue
from posequeue.config.schemas import BatchMeta, Cursor, Job, JobStatus, detections_per_frame
from posequeue.config.settings import get_settings
from posequeue.errors import JobError
from posequeue.jobs import Jobs, get_jobs
from posequeue.logs import get_logger
from posequeue.policy import JobTask, require_running
from posequeue.producer.preprocess import display_size, work_frame, work_size
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
    inflight, segment = jobs.inflight(cur.job_id), _segment_batches(job)
    # The next segment must fit in the window; a window smaller than two segments still
    # lets one segment be decoded while the previous one is worked on (no bubbles).
    if inflight and inflight + segment > max(_window(job), 2 * segment):
        # Backpressure: bounded Redis memory whatever the video's length.
        return defer(self, min(4.0, 0.25 * 2 ** min(self.request.retries, 4)))
    starts = jobs.count_segment_start(cur.job_id, cur.segment, get_settings().payload_ttl)
    if starts > MAX_SEGMENT_STARTS:
        raise JobError(_killer_reason(job, cur, starts - 1))
    _ingest_segment(jobs, job, cur)
    return None


def _killer_reason(job: Job, cur: Cursor, starts: int) -> str:
    start = (cur.totals.get("last_ms", 0) / 1000.0) if cur.after_pts is not None else 0.0
    end = start + get_settings().segment_seconds
    return (
        f"segment {cur.segment} of {job.video} (about {start:.2f}-{end:.2f} s, frames from "
        f"{cur.first_frame}) was started {starts} times without finishing: decoding it kills the "
        "worker (out of memory? a decoder crash?); check the ingest worker's log and the input"
    )


def _segment_batches(job: Job) -> int:
    """Batches one segment adds (an estimate from the frame rate): the window counts them
    before decoding, so the bound holds with the segment included."""
    fps = job.video_info.get("fps") or 30.0
    return math.ceil(get_settings().segment_seconds * fps / job.batch_size)


def _window(job: Job) -> int:
    """Batches a job may keep in flight: the frame limit, or fewer when frames are large."""
    settings = get_settings()
    info = job.video_info
    w, h = work_size(info.get("width", 1), info.get("height", 1), _long_side(job))
    batch_bytes = w * h * 3 * job.batch_size
    by_bytes = settings.max_inflight_mb * 2**20 // max(1, batch_bytes)
    return max(1, min(settings.max_inflight_frames // job.batch_size, by_bytes))


def _long_side(job: Job) -> int:
    info = job.video_info
    return get_model(job.model).work_long_side(
        info.get("width", 1), info.get("height", 1), get_settings().work_long_side
    )


def _ingest_segment(jobs: Jobs, job: Job, cur: Cursor) -> bool:
    """Decode and enqueue one segment; True when it was the video's last."""
    settings = get_settings()
    spec = get_model(job.model)
    people = detections_per_frame(job.people, job.follow)
    batcher = _Batcher(jobs, cur, spec.name, spec.first_stage.name, job.batch_size, people)
    stats = DecodeStats()
    started = time.perf_counter()
    last_pts = cur.after_pts
    long_side = _long_side(job)
    limits = Limits.from_settings(settings)
    for item in read_segment(job.video, cur.after_pts, settings.segment_seconds, stats, limits=limits):
        rotation = rotation_of(item.frame)
        pixels = work_frame(item.frame, rotation, long_side)
        batcher.add(pixels, item.t, display_size(item.frame, rotation))
        last_pts = item.pts
    batcher.flush()
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
        corrupt_packets=stats.corrupt_packets,
        corrupt_frames=stats.corrupt_frames,
        seek_fallbacks=stats.seek_fallbacks,
        seconds=round(time.perf_counter() - started, 3),
    )
    next_frame = cur.first_frame + batcher.frames
    next_batch = cur.first_batch + batcher.batches
    if not stats.ended:
        _hand_over(
            jobs, Cursor(cur.job_id, cur.segment + 1, next_frame, next_batch, last_pts, totals), cur.segment
        )
        return False
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
    return True


def _hand_over(jobs: Jobs, nxt: Cursor, segment: int) -> None:
    """Send the next segment once: the hand-over is claimed and the next cursor saved on the job
    in one step, then sent. A redelivered segment that was handed over stops here; a worker that
    dies between the claim and the send leaves the saved cursor, which the watchdog sends."""
    if jobs.claim_handover(nxt.job_id, segment, nxt.to_dict()):
        app.send_task(INGEST_TASK, args=[nxt.to_dict()])


class _Batcher:
    """Groups working frames into inference batches and puts them on the first stage's queue.
    A batch holds frames of one size; a size change mid-stream starts a new batch."""

    def __init__(self, jobs: Jobs, cur: Cursor, model: str, stage: str, size: int, people: int) -> None:
        self.jobs, self.cur, self.model, self.size = jobs, cur, model, size
        self.people = people  # separate detections the detector keeps per frame
        self.pixels: list[np.ndarray] = []
        self.times: list[float] = []
        self.display: tuple[int, int] = (0, 0)
        self.frames = 0  # frames enqueued by this segment
        self.batches = 0
        self.queue = stage_queue(model, stage)
        self.stage = stage
        self.ttl = get_settings().payload_ttl

    def add(self, pixels: np.ndarray, t: float, display: tuple[int, int]) -> None:
        if self.pixels and (pixels.shape != self.pixels[0].shape or display != self.display):
            self.flush()
        self.pixels.append(pixels)
        self.times.append(round(t, 6))
        self.display = display
        if len(self.pixels) == self.size:
            self.flush()

    def flush(self) -> None:
        n = len(self.pixels)
        if n == 0:
            return
        index = self.cur.first_batch + self.batches
        first = self.cur.first_frame + self.frames
        h, w = self.pixels[0].shape[:2]
        meta = BatchMeta(
            self.cur.job_id,
            index,
            list(range(first, first + n)),
            self.times,
            self.display,
            (w, h),
            self.model,
            self.people,
        )
        self.jobs.put_batch(meta.to_dict(), {"frames": np.stack(self.pixels).tobytes()}, self.ttl)
        self.jobs.set_enqueued(self.cur.job_id, index + 1)
        app.send_task(INFER_TASK, args=[self.cur.job_id, index, self.stage], queue=self.queue)
        self.frames += n
        self.batches += 1
        self.pixels, self.times = [], []
