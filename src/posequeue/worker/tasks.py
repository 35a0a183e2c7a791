"""Inference tasks: fetch a batch (claim-check), run the stage's model, store the batch result
idempotently, record it in the job's fan-in set; the delivery that completes the set finalises."""

from __future__ import annotations

import os
import time

import numpy as np
import structlog
from celery import Task, signals

from posequeue.config.celery_app import FINALIZE_TASK, INFER_TASK, app
from posequeue.config.schemas import BatchMeta
from posequeue.config.settings import get_settings
from posequeue.jobs import fail_job, get_jobs
from posequeue.logs import get_logger
from posequeue.results import dumps, part_key
from posequeue.store import StoreError, open_store
from posequeue.worker import model as models
from posequeue.worker.model_files import MissingModel

log = get_logger(__name__)
PRELOAD_ENV = "POSEQUEUE_PRELOAD"  # "model:stage,..." the CLI sets for the stages a worker serves
STORE_RETRIES = 3


@app.task(name=INFER_TASK, bind=True, max_retries=STORE_RETRIES)
def infer(self: Task, job_id: str, index: int) -> None:
    jobs = get_jobs()
    status = jobs.status(job_id)
    if status is None or status.finished:  # stale work of a failed or finished job is not run
        jobs.drop_batch(job_id, index)
        log.info("infer.stale", status=status.value if status else "gone")
        return
    got = jobs.get_batch(job_id, index)
    if got is None:
        if not jobs.r.sismember(f"pq:job:{job_id}:done", index):
            fail_job(app, jobs, job_id, f"batch {index} expired in Redis before a worker ran it; "
                     "start more workers or raise POSEQUEUE_PAYLOAD_TTL")  # fmt: skip
        return
    meta = BatchMeta.from_dict(got[0])
    structlog.contextvars.bind_contextvars(model=meta.model, stage=meta.stage)
    try:
        model = models.load(meta.model, meta.stage)
        shape = (len(meta.frames), *model.stage.input_size, 3)
        started = time.perf_counter()
        people = model.predict(np.frombuffer(got[1], np.uint8).reshape(shape), meta.transforms)
        elapsed = time.perf_counter() - started
        frames = [{"index": i, "t": t, "people": p}
                  for i, t, p in zip(meta.frames, meta.times, people, strict=True)]  # fmt: skip
        open_store(get_settings().store).put_bytes(part_key(job_id, index), dumps({"frames": frames}))
    except StoreError as exc:
        if self.request.retries < STORE_RETRIES:
            raise self.retry(countdown=2.0) from None
        fail_job(app, jobs, job_id, f"cannot store batch results: {exc}")
        return
    except (MissingModel, ValueError) as exc:
        fail_job(app, jobs, job_id, str(exc))
        return
    if jobs.batch_done(job_id, index, len(frames)):
        app.send_task(FINALIZE_TASK, args=[job_id])
    jobs.drop_batch(job_id, index)
    log.info("infer.batch", frames=len(frames), model_s=round(elapsed, 4))


@signals.worker_process_init.connect
def _preload(**_: object) -> None:
    """Load the served stages' models in the pool child (never in the parent: not fork-safe),
    so the first batch does not pay for it and a broken model shows at start-up."""
    for item in filter(None, os.environ.get(PRELOAD_ENV, "").split(",")):
        model, stage = item.split(":")
        try:
            models.load(model, stage)
        except Exception:  # the task reports it on the job; a failing hook never kills the pool
            log.exception("worker.preload_failed", model=model, stage=stage)
