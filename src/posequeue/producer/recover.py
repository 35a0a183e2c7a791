"""Messages of a job on the queues or held by workers, and re-sending batches whose message was lost.

kombu's Redis transport pops a message (BRPOP) before it records it in the ``unacked`` hash; a
worker killed in between loses the message for good (acks late, reject on worker lost and the
visibility timeout cover every other moment), and a host lost with a message it held loses it
too. The batch's payload is still in Redis, so the job watchdog (``producer/watchdog.py``),
which looks at every running job every few seconds, re-sends the stage task of a batch that is
not done and that no queue and no worker holds (``job_messages`` finds the messages of a job,
for the watchdog's checks of the ingest chain and finalise too):

- at most once per interval per job: ``POSEQUEUE_VISIBILITY_TIMEOUT``, at most 60 s (a Redis
  key with that lifetime guards it);
- only batches stored longer ago than the interval (their payload's remaining TTL tells), so a
  job whose batches move costs a few Redis reads; the queues are read only when such a batch
  exists;
- a batch must be missing from two snapshots a second apart of its model's stage queues and
  the ``unacked`` hash (a live worker's message is in neither for the instant between its pop
  and its record); a batch merely waiting behind a long queue is on the queue;
- to the first stage whose payload the batch holds (``frames``: the detector; ``crops``: the
  landmark stage), as a redelivery would find it.

The lost message never started its task, so the re-sent one is the batch's first counted start
in that stage (``MAX_DELIVERIES``); a batch already done or past the stage when the re-sent
task runs is handled as any redelivery is.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from posequeue.config.catalogue import ModelSpec, get_model
from posequeue.config.celery_app import INFER_TASK, app
from posequeue.config.keys import batch_key, recover_guard_key
from posequeue.config.queues import model_queues, stage_queue
from posequeue.config.schemas import Job
from posequeue.config.settings import get_settings
from posequeue.jobs import Jobs
from posequeue.logs import get_logger
from posequeue.monitor import PRIORITY_SUFFIXES

log = get_logger(__name__)
MAX_INTERVAL = 60  # seconds: how often a job's lost batches are looked for, at most
CONFIRM_SECONDS = 1.0  # between the two snapshots that must both miss a batch


def interval() -> int:
    """Seconds between looks for a job's lost batches; also how old a batch must be."""
    return min(MAX_INTERVAL, get_settings().visibility_timeout)


def resend_lost(jobs: Jobs, job: Job) -> list[int]:
    """Re-send the lost batches of a running job (at most once per ``interval()``); their indices."""
    job_id, every = job.job_id, interval()
    if job.batches_enqueued <= job.batches_done:
        return []
    if not jobs.r.set(recover_guard_key(job_id), 1, nx=True, ex=every):
        return []
    spec = get_model(job.model)
    old = [i for i, (_, age) in _payloads(jobs, spec, job_id, jobs.unfinished(job_id)).items() if age > every]
    if not old:
        return []
    missing = set(old) - _held(jobs, spec, job_id, old)
    if missing:
        time.sleep(CONFIRM_SECONDS)
        missing -= _held(jobs, spec, job_id, old)
    sent = []
    for index, (stage, age) in _payloads(jobs, spec, job_id, sorted(missing)).items():
        if jobs.is_batch_done(job_id, index):
            continue
        app.send_task(INFER_TASK, args=[job_id, index, stage], queue=stage_queue(spec.name, stage))
        log.warning("ingest.resent", job_id=job_id, batch=index, stage=stage, age_s=age)
        sent.append(index)
    return sent


def _payloads(jobs: Jobs, spec: ModelSpec, job_id: str, indices: list[int]) -> dict[int, tuple[str, int]]:
    """Of ``indices``, the batches whose payload is in Redis: the first stage that can run on
    them and the seconds since they were stored."""
    found: dict[str, tuple[list[bytes], int]] = {}
    for client, keys in jobs.payloads.by_client(batch_key(job_id, i) for i in indices):
        with client.pipeline(transaction=False) as pipe:  # one round trip per payload server
            for key in keys:
                pipe.hkeys(key)
                pipe.ttl(key)
            replies = pipe.execute()
        found.update(zip(keys, zip(replies[::2], replies[1::2], strict=True), strict=True))
    ttl, out = get_settings().payload_ttl, {}
    for index in indices:
        names, left = found[batch_key(job_id, index)]
        fields = {k.decode() for k in names}
        stage = next((s.name for s in spec.stages if s.payload in fields), None)
        if stage is not None and left >= 0:
            out[index] = (stage, ttl - left)
    return out


def _held(jobs: Jobs, spec: ModelSpec, job_id: str, indices: list[int]) -> set[int]:
    """Of ``indices``, the batches whose message is on a stage queue of the model or held by a
    worker (``unacked``), in one snapshot. All of them when a message cannot be read (another
    version's format): better a job failed by the stall check than batches run twice."""
    found = job_messages(jobs, job_id, model_queues(spec), INFER_TASK)
    if found is None:
        return set(indices)
    return {int(args[1]) for args in found}


def job_messages(jobs: Jobs, job_id: str, queues: list[str], task: str) -> list[list[Any]] | None:
    """The arguments of every ``task`` message of the job that waits on one of ``queues`` or is
    held by a worker (``unacked``, which records the queue each came from), in one snapshot;
    None when a message cannot be read (another version's format)."""
    with jobs.r.pipeline(transaction=True) as pipe:
        for queue in queues:
            for suffix in PRIORITY_SUFFIXES:
                pipe.lrange(queue + suffix, 0, -1)
        pipe.hvals("unacked")
        *lists, unacked = pipe.execute()
    found = []
    try:
        messages = [m for items in lists for m in items]
        for raw in unacked:  # [message, exchange, routing key]: the queue it was taken from
            message, _, routing_key = json.loads(raw)
            if routing_key in queues:
                messages.append(message)
        for message in messages:
            name, args = task_of(message)
            if name == task and _job_of(args) == job_id:
                found.append(args)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        log.warning("recover.unreadable", job_id=job_id, reason=f"unreadable message: {exc!r}")
        return None
    return found


def task_of(message: bytes | dict[str, Any]) -> tuple[str, list[Any]]:
    """The task name and arguments of a message (Celery's protocol 2 on kombu's Redis
    transport: a JSON envelope, the body ``[args, kwargs, embed]``, base64)."""
    envelope = json.loads(message) if isinstance(message, bytes | str) else message
    body = envelope["body"]
    if envelope["properties"].get("body_encoding") == "base64":
        body = base64.b64decode(body)
    return str(envelope["headers"]["task"]), list(json.loads(body)[0])


def _job_of(args: list[Any]) -> str | None:
    """The job a task's arguments are for: a job id first, or a cursor holding one."""
    first = args[0] if args else None
    if isinstance(first, dict):
        return str(first.get("job_id"))
    return None if first is None else str(first)


def message_job(message: bytes | dict[str, Any]) -> str | None:
    """The job a message is for, None for a message that is no task of a job's."""
    try:
        return _job_of(task_of(message)[1])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
