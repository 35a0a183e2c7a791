"""Inference tasks: fetch a batch (claim-check), run one model stage (and the stages after it
that this process also serves), then either hand the batch to the next stage's queue or store
its results idempotently and record it in the job's fan-in set; the delivery that completes the
set finalises."""

from __future__ import annotations

import time

import structlog
from celery import Task, signals

from posequeue.config.catalogue import get_model
from posequeue.config.celery_app import FINALIZE_TASK, INFER_TASK, app
from posequeue.config.queues import stage_queue
from posequeue.config.schemas import BatchMeta, JobStatus
from posequeue.config.settings import get_settings
from posequeue.errors import BatchError, JobNotRunning
from posequeue.jobs import Jobs, get_jobs
from posequeue.logs import get_logger
from posequeue.policy import JobTask, require_running
from posequeue.results import dumps, part_key
from posequeue.store import open_store
from posequeue.worker import stages

log = get_logger(__name__)
MAX_DELIVERIES = 4  # a batch whose stage was started this often without finishing fails its job


@app.task(
    name=INFER_TASK,
    bind=True,
    base=JobTask,
    store_reason="cannot store batch results: {exc}",
    internal_reason="internal error in stage {stage} on batch {batch}: {exc!r}",
)
def infer(self: Task, job_id: str, index: int, stage: str) -> dict[str, object] | None:
    """Run one stage on one batch (and the next ones this process serves). Returns what it
    processed ({"model", "frames", "stages": {stage: seconds}, "stage_frames": {stage: frames}
    where a stage ran on fewer than the batch's}) for the worker's throughput
    statistics, None when it ran no model (results are not stored: the app ignores task
    results). Failures: see ``posequeue.policy``."""
    jobs = get_jobs()
    start = jobs.begin_batch(job_id, index, stage, get_settings().payload_ttl)
    status, fields = start.status, start.fields
    if status is None or status.finished:  # stale work of a failed or finished job is not run
        jobs.drop_batch(job_id, index)
        require_running(status)
    if fields is None:
        if not jobs.is_batch_done(job_id, index):
            raise BatchError(
                f"batch {index} expired in Redis before a worker ran it (or the payload "
                "server holding it restarted); start more workers or raise POSEQUEUE_PAYLOAD_TTL"
            )
        return None
    try:
        meta = BatchMeta.from_dict(fields["meta"])
        spec = get_model(meta.model)
        nxt = spec.next_stage(stage)
    except (KeyError, TypeError, ValueError) as exc:  # e.g. written by another posequeue version
        raise BatchError(
            f"batch {index} cannot be read by this worker ({exc!r}); are "
            "producers and workers running the same posequeue version?"
        ) from None
    structlog.contextvars.bind_contextvars(model=meta.model, stage=stage)
    # A process that serves the next stages too runs them in this task on the payload in memory:
    # no round trip of that payload through Redis and no second task (all-stage workers).
    later = served_after(meta.model, stage)
    if nxt is not None and nxt.payload in fields:  # a redelivery after this stage's work was kept
        _send(job_id, index, meta.model, nxt.name)
        return None
    # A deferred retry (a store error) ended its run normally: only the other starts count.
    if start.deliveries - self.request.retries > MAX_DELIVERIES:
        raise BatchError(
            f"batch {index} (frames {meta.frames[0]}-{meta.frames[-1]}) "
            f"was started {MAX_DELIVERIES} times in stage {stage}{_also(later)} without "
            "finishing: its worker process died each time (out of memory? see the worker "
            "logs)"
        )
    ran: dict[str, float] = {}  # seconds per stage run here, for the worker statistics
    ran_frames: dict[str, int] = {}  # frames per stage where fewer than the batch's
    if (landmarks := stages.video_mode_pair(meta, stage, later)) is not None:
        result, ran_frames[stage] = _run_video_mode(stage, landmarks, fields, meta, ran)
        stage, later = landmarks, later[1:]
    else:
        result = _run(stage, fields, meta, ran)
    for after in later:
        if result.people is not None:  # nobody found: the batch ends here
            break
        stage, fields = after, {**fields, **result.payload}
        result = _run(stage, fields, meta, ran)
    nxt = spec.next_stage(stage)
    if result.people is None and nxt is not None:  # the stages run here no longer need theirs
        # Never recreates a batch deleted meanwhile (its job cancelled, or finished by a
        # second delivery): then there is nothing to hand on.
        if jobs.advance_batch(job_id, index, result.payload, drop=[spec.stage(s).payload for s in ran]):
            _send(job_id, index, meta.model, nxt.name)
    else:
        _finish_batch(jobs, meta, result.people or [])
    return {"model": meta.model, "frames": len(meta.frames), "stages": ran, "stage_frames": ran_frames}


def _run(stage: str, fields: dict[str, object], meta: BatchMeta, ran: dict[str, float]) -> stages.StageResult:
    """One stage on one batch, logged with its model time and the stage's whole time (pre- and
    post-processing included: the difference is host work the model waited for)."""
    started = time.perf_counter()
    structlog.contextvars.bind_contextvars(stage=stage)
    result = stages.load(meta.model, stage).run(fields, meta)
    ran[stage] = time.perf_counter() - started
    log.info(
        "infer.batch",
        frames=len(meta.frames),
        model_s=round(result.model_seconds, 4),
        stage_s=round(ran[stage], 4),
    )
    return result


def _run_video_mode(
    stage: str, landmarks: str, fields: dict[str, object], meta: BatchMeta, ran: dict[str, float]
) -> tuple[stages.StageResult, int]:
    """Both BlazePose stages on one batch in video mode, logged like ``_run`` (as the last
    stage: the batch's results are made here); and the frames the detector ran on."""
    started = time.perf_counter()
    followed = stages.run_video_mode(stage, landmarks, fields, meta)
    elapsed = time.perf_counter() - started
    ran[stage] = followed.detector_seconds  # the rest (decoding the payload included) is the landmarks'
    ran[landmarks] = elapsed - followed.detector_seconds
    structlog.contextvars.bind_contextvars(stage=landmarks)
    log.info(
        "infer.batch",
        frames=len(meta.frames),
        video_mode=True,
        detections=followed.detections,
        detector_s=round(followed.detector_seconds, 4),
        model_s=round(followed.model_seconds, 4),
        stage_s=round(elapsed, 4),
    )
    return stages.StageResult(
        people=followed.people, model_seconds=followed.model_seconds
    ), followed.detections


def _send(job_id: str, index: int, model: str, stage: str) -> None:
    app.send_task(INFER_TASK, args=[job_id, index, stage], queue=stage_queue(model, stage))


def _finish_batch(jobs: Jobs, meta: BatchMeta, people: list) -> None:
    frames = [
        {"index": i, "t": t, "people": p} for i, t, p in zip(meta.frames, meta.times, people, strict=True)
    ]
    store, key = open_store(get_settings().store), part_key(meta.job_id, meta.index)
    store.put_bytes(key, dumps({"frames": frames}))
    # Cancelled while this stage ran (it read the job as running): the cancel deletes the parts
    # it lists after ending the job, so a part written before this read is listed there, and
    # one this read sees cancelled is deleted here. A failed job keeps its parts (for retry).
    if jobs.status(meta.job_id) is JobStatus.CANCELLED:
        store.delete([key])
        jobs.drop_batch(meta.job_id, meta.index)
        raise JobNotRunning("cancelled")
    if jobs.batch_done(meta.job_id, meta.index, len(frames)):
        app.send_task(FINALIZE_TASK, args=[meta.job_id])
    jobs.drop_batch(meta.job_id, meta.index)


@signals.worker_process_init.connect
def _preload_pool_child(**_: object) -> None:
    preload()


_served: frozenset[tuple[str, str]] = frozenset()


def serve(pairs: frozenset[tuple[str, str]]) -> None:
    """Set the (model, stage) pairs this worker serves (``worker/launch.py``, in the parent
    before the task processes fork: they inherit it)."""
    global _served
    _served = pairs


def served() -> frozenset[tuple[str, str]]:
    """The (model, stage) pairs this worker process serves."""
    return _served


def serves(model: str, stage: str) -> bool:
    return (model, stage) in served()


def served_after(model: str, stage: str) -> list[str]:
    """The stages after ``stage``, in order, that this process serves without a gap: a task
    for ``stage`` runs them too."""
    spec, later = get_model(model), []
    while (nxt := spec.next_stage(stage)) is not None and serves(model, nxt.name):
        later.append(stage := nxt.name)
    return later


def _also(later: list[str]) -> str:
    return f" (and {', '.join(later)}, run in the same task)" if later else ""


def preload() -> None:
    """Load the served stages' models in the process that runs the tasks: a prefork pool child,
    or a threaded worker (never in a parent that forks: not fork-safe), so the first batch does
    not pay for it and a broken model shows at start-up."""
    for model, stage in sorted(served()):
        try:
            stages.load(model, stage)
        except Exception:  # the task reports it on the job; a failing hook never kills the pool
            log.exception("worker.preload_failed", model=model, stage=stage)
