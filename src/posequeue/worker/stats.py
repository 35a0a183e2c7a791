"""Per-worker throughput, reported by the workers themselves into Redis (Flower keeps task
history in its own memory only, so an exporter or an autoscaler cannot read it).

A Celery signal handler pair times every inference task in the pool process (or task thread)
that runs it and, when the task returns, adds the batch's frames and the task's wall time to a
10-second bucket of that process (or thread). ``posequeue metrics`` reads the buckets of the last minute.

What it measures: the frames of batches whose ``posequeue.infer`` task ran its stage's model and
returned (a retried task is not counted until it succeeds). The task's return value carries the
model, the batch's real frame count and the stages it ran with their seconds, so a short last
batch counts its real frames and returns that did no model work (a failed job's batch, a
redelivery whose stage was already done) are not counted. The busy time is the task's wall
time, Redis and store round trips included; a task that ran two stages (an all-stage worker
runs the next stage in the same task) shares it between them by their own seconds. A stage that
ran on fewer frames than the batch has (the detector in video mode) is credited with those
(``stage_frames`` in the return value).

Keys (``config.keys``): ``WORKERS``, the series ``node|model|stage|process`` by last report, and
``worker_bucket_key``, a hash per series and 10 s bucket: frames, batches, busy_s.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from typing import Any

from celery import Task, signals

from posequeue.config import keys
from posequeue.config.celery_app import INFER_TASK
from posequeue.logs import get_logger

log = get_logger(__name__)

REGISTRY = keys.WORKERS
BUCKET_S = 10
WINDOW_S = 60  # rates are taken over the last minute (and the current, partial bucket)
RETENTION_S = 3600  # a series silent this long leaves the registry
_SEP = "|"

_started: dict[str, float] = {}  # task id -> monotonic start time
_thread = threading.local()
_slots = itertools.count()


def series_name(node: str, model: str, stage: str, process: int | str) -> str:
    return _SEP.join((node, model, stage, str(process)))


def bucket_key(series: str, start: int) -> str:
    return keys.worker_bucket_key(series, start)


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
        rows = replies[i * len(starts) : (i + 1) * len(starts)]
        frames = sum(int(f or 0) for f, _ in rows)
        busy = sum(float(b or 0) for _, b in rows)
        acc = totals.setdefault((node, model, stage), [0, 0.0])
        acc[0] += frames
        acc[1] += frames / busy if busy > 0 else 0.0
    return [
        WorkerRate(node, model, stage, int(f), f / elapsed, cap)
        for (node, model, stage), (f, cap) in sorted(totals.items())
    ]


def _slot(process: int | None) -> str:
    """A prefork pool process's index, or a task thread's number (``t0``, ``t1``, ...): each is a
    series of its own, so a threaded worker's overlapping tasks do not add up their busy time."""
    if process is not None:
        return str(process)
    if not hasattr(_thread, "slot"):
        _thread.slot = f"t{next(_slots)}"
    return str(_thread.slot)


@signals.task_prerun.connect
def _infer_started(task_id: str, task: Task, **_: object) -> None:
    if task.name == INFER_TASK:
        _started[task_id] = time.monotonic()


@signals.task_postrun.connect
def _infer_finished(
    task_id: str,
    task: Task,
    args: tuple | None = None,
    retval: Any = None,
    state: str | None = None,
    **_: object,
) -> None:
    start = _started.pop(task_id, None)
    if start is None or state != "SUCCESS" or not isinstance(retval, dict) or not args:
        return
    try:
        from celery.utils.log import current_process_index

        from posequeue.jobs import get_jobs

        node, slot = task.request.hostname or "unknown", _slot(current_process_index())
        busy, now = time.monotonic() - start, time.time()
        stages = retval.get("stages") or {str(args[2]): 1.0}
        total = sum(stages.values()) or 1.0
        frames: dict[str, int] = {stage: retval["frames"] for stage in stages}
        frames.update(retval.get("stage_frames") or {})
        for stage, seconds in stages.items():  # the task's time shared by the stages' own times
            series = series_name(node, str(retval["model"]), stage, slot)
            record(get_jobs().r, series, int(frames[stage]), busy * seconds / total, now)
    except Exception:  # a failing hook is logged and never breaks the job
        log.exception("worker_stats.record_failed")
