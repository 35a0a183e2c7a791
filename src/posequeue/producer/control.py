"""Cancel and retry a job: what ``posequeue cancel`` and ``posequeue retry`` (and the HTTP API)
call. The names ``cancel(job_id)`` and ``retry(job_id)`` are stable.

- ``cancel``: the job ends ``cancelled`` at once (one script: only a queued or running job, and
  finalise can no longer start, since it runs only for a running job); its batches' pixels are
  deleted and its messages taken off the stage queues, so Redis lets go of it within seconds;
  a worker holding one of its batches drops it when it looks at the job (the failure policy skips
  work of a job that is not running), and the hand-over of a batch between stages never
  recreates a deleted batch. Parts already in the store are deleted.
- ``retry``: a failed or cancelled job runs again under the same id. When every batch's part is
  in the store, only finalise runs; otherwise the job starts again from the first segment (the
  parts are rewritten under the same keys). The input must still be readable.
"""

from __future__ import annotations

import contextlib
from typing import Any

from posequeue.config.catalogue import get_model
from posequeue.config.celery_app import FINALIZE_TASK, INGEST_TASK, app
from posequeue.config.queues import INGEST, model_queues
from posequeue.config.schemas import Cursor, JobStatus
from posequeue.config.settings import get_settings
from posequeue.errors import PosequeueError
from posequeue.jobs import Jobs, get_jobs, publish, summary
from posequeue.logs import get_logger
from posequeue.monitor import PRIORITY_SUFFIXES
from posequeue.producer.recover import message_job
from posequeue.results import job_prefix, part_key
from posequeue.store import StoreError, open_store

log = get_logger(__name__)


class ControlError(PosequeueError, ValueError):
    """A cancel or retry that does not apply to the job as it is (the message says why)."""


def cancel(job_id: str, jobs: Jobs | None = None, reason: str = "cancelled on request") -> dict[str, Any]:
    """End a queued or running job as ``cancelled``; its summary, with ``dropped``: messages
    taken off the queues and Redis keys deleted. Raises ``JobNotFound``, or ``ControlError``
    for a job that already ended."""
    jobs = jobs or get_jobs()
    job = jobs.get(job_id)  # JobNotFound names the id
    if not jobs.cancel(job_id, reason):
        raise ControlError(f"job {job_id} already ended ({jobs.get(job_id).status.value}): nothing to cancel")
    # The batches first: a stage that finishes one after this cannot hand it on (advance_batch
    # never recreates a hash), so no message for the job is sent after the queues are emptied.
    keys_gone = jobs.drop_batches(job_id)
    messages = drop_messages(jobs, job_id, [INGEST, *model_queues(get_model(job.model))])
    publish(app, jobs, job_id)
    _delete_parts(job_id)
    log.info("job.cancelled", job_id=job_id, messages=messages, keys=keys_gone)
    return {**summary(jobs.get(job_id)), "dropped": {"messages": messages, "keys": keys_gone}}


def retry(job_id: str, jobs: Jobs | None = None) -> dict[str, Any]:
    """Run a failed or cancelled job again under the same id; its summary, with ``resumed``:
    ``finalize`` when every part was in the store, else ``ingest`` (from the first segment).
    Raises ``JobNotFound``, or ``ControlError`` for a job that is not failed or cancelled."""
    jobs = jobs or get_jobs()
    job = jobs.get(job_id)
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise ControlError(
            f"job {job_id} is {job.status.value}: only a failed or cancelled job can be retried"
        )
    total = job.batches_total
    complete = total is not None and _parts_present(open_store(get_settings().store), job_id, total) == total
    if not complete:
        jobs.drop_batches(job_id)  # its segment markers too: the chain starts again
    status = jobs.reopen(job_id, total if complete else None)
    if status is not JobStatus.RUNNING:  # ended or retried meanwhile
        raise ControlError(f"job {job_id} is {status.value if status else 'gone'}: not retried")
    if complete:
        app.send_task(FINALIZE_TASK, args=[job_id])
    else:
        app.send_task(INGEST_TASK, args=[Cursor(job_id).to_dict()])
    log.info("job.retried", job_id=job_id, resumed="finalize" if complete else "ingest")
    return {**summary(jobs.get(job_id)), "resumed": "finalize" if complete else "ingest"}


def _parts_present(store: Any, job_id: str, total: int) -> int:
    try:
        names = set(store.keys(part_key(job_id, 0).rsplit("/", 1)[0] + "/"))
    except StoreError:
        return 0
    return sum(part_key(job_id, b) in names for b in range(total))


def drop_messages(jobs: Jobs, job_id: str, queues: list[str]) -> int:
    """Take the job's messages off ``queues`` (workers skip any they already hold)."""
    dropped = 0
    for queue in queues:
        for suffix in PRIORITY_SUFFIXES:
            for raw in jobs.r.lrange(queue + suffix, 0, -1):
                if message_job(raw) == job_id:
                    dropped += jobs.r.lrem(queue + suffix, 1, raw)
    return dropped


def _delete_parts(job_id: str) -> None:
    """Delete every part of an ended job found in the store now. Listed after the job ended:
    a stage that read the job as running wrote its part before that read, so before this list;
    one that read it cancelled deletes its own (``worker/tasks.py``)."""
    with contextlib.suppress(StoreError):  # an unreachable store keeps them (not covered)
        store = open_store(get_settings().store)
        store.delete(store.keys(job_prefix(job_id) + "parts/"))
