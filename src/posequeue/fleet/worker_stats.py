"""Per-worker throughput, reported by the workers themselves into Redis (Flower keeps task
history in its own memory only, so an exporter or an autoscaler cannot read it).

A Celery signal handler pair times every inference task in the pool process that runs it and,
when the task returns, adds the batch's frames and the task's wall time to a 10-second bucket of
that worker process. ``posequeue metrics`` reads the buckets of the last minute.

What it measures: the frames of batches whose ``posequeue.infer`` task returned (a retried task
is not counted until it succeeds). The frame count is read from the batch's claim-check meta when
the task starts, so a short last batch counts its real frames. Rare returns that did no model
work (the batch of an already failed job, a redelivery whose stage was already done) are counted
too. The busy time is the task's wall time, Redis and store round trips included.

Keys (all under ``pq:``):
    pq:workers                    sorted set of series ``node|model|stage|process`` by last report
    pq:wstats:{series}:{t0}       hash for the 10 s starting at t0: frames, batches, busy_s
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from celery import Task, signals

from posequeue.config.celery_app import INFER_TASK
from posequeue.logs import get_logger

log = get_logger(__name__)

REGISTRY = "pq:workers"
BUCKET_S = 10
WINDOW_S = 60  # rates are taken over the last minute (and the current, partial bucket)
RETENTION_S = 3600  # a series silent this long leaves the registry
_SEP = "|"

_running: dict[str, tuple[float, int, str, str]] = {}  # task id -> (start, frames, model, stage)


def series_name(node: str, model: str, stage: str, process: int) -> str:
    return _SEP.join((node, model, stage, str(process)))


def bucket_key(series: str, start: int) -> str:
    return f"pq:wstats:{series}:{start}"


def record(r: Any, series: str, frames: int, busy_s: float, now: float) -> None:
    """Add one finished batch to the series' current bucket, in one round trip."""
    key = bucket_key(series, int(now // BUCKET_S) * BUCKET_S)
    with r.pipeline(transaction=False) as pipe:
        pipe.hincrby(key, "frames", frames)
        pipe.hincrby(key, "batches", 1)
        pipe.hincrbyfloat(key, "busy_s", busy_s)
        pipe.expire(key, WINDOW_S + 2 * BUCKET_S)
        pipe.zadd(REGISTRY, {series: now})
        pipe.zremrangebyscore(REGISTRY, "-inf", now - RETENTION_S)
        pipe.execute()


@dataclass(frozen=True)
class WorkerRate:
    """One worker node's throughput on one model stage over the last window."""

    worker: str  # the Celery node name, e.g. blazepose-landmarks-c0-1@host
    model: str
    stage: str
    frames: int  # frames finished in the window
    frames_per_second: float  # frames / window: what it did, idle time included
    capacity: float  # frames per busy second, summed over its pool processes: what it can do


def read_rates(r: Any, now: float, window: int = WINDOW_S) -> list[WorkerRate]:
    """The rates of every series that reported within ``window`` seconds, per worker and stage.

    The window covers the last ``window // BUCKET_S`` whole buckets and the current partial one,
    so the rate divides by between ``window`` and ``window + BUCKET_S`` seconds.
    """
    live = [s.decode() for s in r.zrangebyscore(REGISTRY, now - window, "+inf")]
    current = int(now // BUCKET_S) * BUCKET_S
    starts = [current - k * BUCKET_S for k in range(window // BUCKET_S + 1)]
    elapsed = now - starts[-1]
    with r.pipeline(transaction=False) as pipe:
        for series in live:
            for start in starts:
                pipe.hmget(bucket_key(series, start), "frames", "busy_s")
        replies = pipe.execute()
    totals: dict[tuple[str, str, str], list[float]] = {}
    for i, series in enumerate(live):
        node, model, stage, _ = series.rsplit(_SEP, 3)
        rows = replies[i * len(starts):(i + 1) * len(starts)]
        frames = sum(int(f or 0) for f, _ in rows)
        busy = sum(float(b or 0) for _, b in rows)
        acc = totals.setdefault((node, model, stage), [0, 0.0])
        acc[0] += frames
        acc[1] += frames / busy if busy > 0 else 0.0
    return [WorkerRate(node, model, stage, int(f), f / elapsed, cap)
            for (node, model, stage), (f, cap) in sorted(totals.items())]  # fmt: skip


def _batch_frames(r: Any, job_id: str, index: int) -> tuple[int, str]:
    from posequeue.jobs import batch_key

    raw = r.hget(batch_key(job_id, index), "meta")
    if not raw:
        return 0, ""
    meta = json.loads(raw)
    return len(meta.get("frames", ())), str(meta.get("model", ""))


@signals.task_prerun.connect
def _infer_started(task_id: str, task: Task, args: tuple | None = None, **_: object) -> None:  # type: ignore[type-arg]
    if task.name != INFER_TASK or not args or len(args) < 3:
        return
    try:
        from posequeue.jobs import get_jobs

        frames, model = _batch_frames(get_jobs().r, str(args[0]), int(args[1]))
        if frames:
            _running[task_id] = (time.monotonic(), frames, model, str(args[2]))
    except Exception:  # a failing hook is logged and never breaks the job
        log.exception("worker_stats.start_failed")


@signals.task_postrun.connect
def _infer_finished(task_id: str, task: Task, state: str | None = None, **_: object) -> None:
    started = _running.pop(task_id, None)
    if started is None or state != "SUCCESS":
        return
    start, frames, model, stage = started
    try:
        from celery.utils.log import current_process_index

        from posequeue.jobs import get_jobs

        node = task.request.hostname or "unknown"
        series = series_name(node, model, stage, current_process_index() or 0)
        record(get_jobs().r, series, frames, time.monotonic() - start, time.time())
    except Exception:
        log.exception("worker_stats.record_failed")

