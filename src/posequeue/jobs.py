"""Job state in Redis: one hash per job, a set of finished batches, guards for exactly-once steps.

The keys are built in ``config/keys.py`` (listed there); the record's fields and their types are
``config.schemas.Job``.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import redis

from posequeue.config.keys import (
    JOBS,
    batch_key,
    deliveries_key,
    done_key,
    finalize_lock_key,
    handover_key,
    job_key,
)
from posequeue.config.schemas import Job, JobStatus
from posequeue.errors import JobNotFound, PosequeueError

FINISHED_TTL = 7 * 24 * 3600  # job records outlive the job by a week

# Records a finished batch (ARGV[1], with ARGV[2] frames, at time ARGV[3]) and says whether the
# job is complete and not yet finalised. Atomic: of the last batch and the end of ingest, the
# second to arrive sees the set complete. Every later delivery that sees it complete says so
# too (a worker may have died between this script and sending the finalise task); the
# finalise task is idempotent and takes a lock, so a rare second one changes nothing.
_COMPLETE = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
if ARGV[1] ~= '' then
  if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then
    redis.call('HINCRBY', KEYS[1], 'frames_done', ARGV[2])
    redis.call('HSET', KEYS[1], 'progress_at', ARGV[3])
  end
end
local total = redis.call('HGET', KEYS[1], 'batches_total')
if not total then return 0 end
if redis.call('SCARD', KEYS[2]) < tonumber(total) then return 0 end
return 1
"""


@dataclass(frozen=True)
class BatchStart:
    """A batch as its stage's task finds it (``Jobs.begin_batch``)."""

    status: JobStatus | None  # None: the job record is gone
    fields: dict[str, Any] | None  # None: the batch expired or was dropped
    deliveries: int  # times this stage of this batch has been started, this one included


def _batch_fields(raw: dict[bytes, bytes]) -> dict[str, Any] | None:
    if not raw or b"meta" not in raw:
        return None
    fields: dict[str, Any] = {k.decode(): v for k, v in raw.items()}
    fields["meta"] = json.loads(fields["meta"])
    return fields


class Jobs:
    """The job records of one Redis database."""

    def __init__(self, client: redis.Redis) -> None:
        self.r: Any = client  # redis-py's stubs type replies as bytes | str; ours are bytes
        self._complete = client.register_script(_COMPLETE)

    @classmethod
    def from_url(cls, url: str) -> Jobs:
        return cls(redis.Redis.from_url(url))

    # -- lifecycle -------------------------------------------------------------------------
    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def create(self, *, job_id: str, model: str, video: str, batch_size: int, source: str) -> str:
        now = time.time()
        fields = {
            "status": JobStatus.QUEUED.value,
            "model": model,
            "video": video,
            "source": source,
            "batch_size": batch_size,
            "submitted_at": now,
            "frames_done": 0,
            "batches_enqueued": 0,
        }
        with self.r.pipeline() as pipe:
            pipe.hset(job_key(job_id), mapping=fields)
            pipe.zadd(JOBS, {job_id: now})
            pipe.execute()
        return job_id

    def get(self, job_id: str) -> Job:
        with self.r.pipeline(transaction=False) as pipe:
            pipe.hgetall(job_key(job_id))
            pipe.scard(done_key(job_id))
            raw, done = pipe.execute()
        if not raw:
            raise JobNotFound(f"no job {job_id!r} (never submitted, or its record expired)")
        return Job.from_hash(job_id, raw, int(done))

    def status(self, job_id: str) -> JobStatus | None:
        value = self.r.hget(job_key(job_id), "status")
        return JobStatus(value.decode()) if value else None

    def mark_running(self, job_id: str, video_info: dict[str, Any]) -> None:
        self.r.hset(
            job_key(job_id),
            mapping={
                "status": JobStatus.RUNNING.value,
                "started_at": time.time(),
                "video_info": json.dumps(video_info),
            },
        )

    def fail(self, job_id: str, reason: str) -> bool:
        """Mark the job failed with a reason a person can act on; False if it already ended."""
        key = job_key(job_id)
        status = self.status(job_id)
        if status is None or status.finished:
            return False
        with self.r.pipeline() as pipe:
            pipe.hset(
                key,
                mapping={
                    "status": JobStatus.FAILED.value,
                    "error": reason,
                    "finished_at": time.time(),
                },
            )
            self._expire(pipe, job_id)
            pipe.execute()
        return True

    def finish(self, job_id: str, results: dict[str, str], finished_at: float) -> None:
        with self.r.pipeline() as pipe:
            pipe.hset(
                job_key(job_id),
                mapping={
                    "status": JobStatus.DONE.value,
                    "results": json.dumps(results),
                    "finished_at": finished_at,
                },
            )
            self._expire(pipe, job_id)
            pipe.execute()

    def _expire(self, pipe: Any, job_id: str) -> None:
        key = job_key(job_id)
        pipe.expire(key, FINISHED_TTL)
        pipe.delete(done_key(job_id), finalize_lock_key(job_id))

    # -- batches and fan-in ---------------------------------------------------------------
    def put_batch(self, meta: dict[str, Any], payload: dict[str, bytes], ttl: int) -> None:
        """Store a batch once (claim-check): its meta and payloads, with a TTL, in one round trip."""
        key = batch_key(meta["job_id"], meta["index"])
        with self.r.pipeline() as pipe:
            pipe.hset(key, mapping={"meta": json.dumps(meta), **payload})
            pipe.expire(key, ttl)
            pipe.execute()

    def begin_batch(self, job_id: str, index: int, stage: str, ttl: int) -> BatchStart:
        """What a stage's task needs before it runs, in one round trip: the job's status, the
        batch's fields (``meta`` decoded, payloads as bytes), and this delivery counted (a batch
        that kills its worker process comes back again and again)."""
        deliveries = deliveries_key(job_id, index, stage)
        with self.r.pipeline(transaction=False) as pipe:
            pipe.hget(job_key(job_id), "status")
            pipe.hgetall(batch_key(job_id, index))
            pipe.incr(deliveries)
            pipe.expire(deliveries, ttl)
            status, raw, count, _ = pipe.execute()
        return BatchStart(JobStatus(status.decode()) if status else None, _batch_fields(raw), int(count))

    def advance_batch(self, job_id: str, index: int, payload: dict[str, bytes], drop: list[str]) -> None:
        """Store what a stage made for the next one and drop what no later stage reads."""
        key = batch_key(job_id, index)
        with self.r.pipeline() as pipe:
            pipe.hset(key, mapping=payload)
            if drop:
                pipe.hdel(key, *drop)
            pipe.execute()

    def is_batch_done(self, job_id: str, index: int) -> bool:
        return bool(self.r.sismember(done_key(job_id), index))

    def drop_batch(self, job_id: str, index: int) -> None:
        self.r.delete(batch_key(job_id, index))

    def inflight(self, job_id: str) -> int:
        """Batches put on a queue and not yet finished."""
        key = job_key(job_id)
        with self.r.pipeline() as pipe:
            pipe.hget(key, "batches_enqueued")
            pipe.scard(done_key(job_id))
            enqueued, done = pipe.execute()
        return int(enqueued or 0) - int(done)

    def unfinished(self, job_id: str) -> list[int]:
        """Indices of the batches put on a queue and not yet finished."""
        key = job_key(job_id)
        with self.r.pipeline() as pipe:
            pipe.hget(key, "batches_enqueued")
            pipe.smembers(done_key(job_id))
            enqueued, done = pipe.execute()
        finished = {int(i) for i in done}
        return [i for i in range(int(enqueued or 0)) if i not in finished]

    def set_enqueued(self, job_id: str, count: int) -> None:
        self.r.hset(job_key(job_id), "batches_enqueued", count)

    def batch_done(self, job_id: str, index: int, frames: int) -> bool:
        """Record batch ``index`` finished; True when the job is complete and not finalised."""
        key = job_key(job_id)
        return bool(self._complete(keys=[key, done_key(job_id)], args=[index, frames, time.time()]))

    def ingest_done(self, job_id: str, frames_total: int, batches_total: int, corrupt_packets: int) -> bool:
        """Record the totals once all frames are queued; True if the job is already complete."""
        key = job_key(job_id)
        self.r.hset(
            key,
            mapping={
                "frames_total": frames_total,
                "batches_total": batches_total,
                "batches_enqueued": batches_total,
                "corrupt_packets": corrupt_packets,
            },
        )
        return bool(self._complete(keys=[key, done_key(job_id)], args=["", 0, time.time()]))

    def lock_finalize(self, job_id: str, seconds: int) -> bool:
        """One finaliser at a time; the lock expires if its holder dies."""
        return bool(self.r.set(finalize_lock_key(job_id), 1, nx=True, ex=seconds))

    def unlock_finalize(self, job_id: str) -> None:
        self.r.delete(finalize_lock_key(job_id))

    def last_progress(self, job_id: str) -> float:
        """When a batch of the job last finished (or the job started)."""
        raw = self.r.hmget(job_key(job_id), "progress_at", "started_at", "submitted_at")
        return max(float(v) for v in raw if v is not None)

    def mark_handover(self, job_id: str, segment: int) -> None:
        """Segment k has enqueued segment k+1 (set after sending: a crash between the two
        repeats a segment, which is harmless, rather than losing the rest of the video)."""
        self.r.set(handover_key(job_id, segment), 1, ex=FINISHED_TTL)

    def handed_over(self, job_id: str, segment: int) -> bool:
        return bool(self.r.exists(handover_key(job_id, segment)))

    def recent(self, limit: int = 20) -> list[str]:
        return [j.decode() for j in self.r.zrevrange(JOBS, 0, limit - 1)]


class JobFailedError(PosequeueError, RuntimeError):
    """Stored in the result backend for a failed job; its message is the job's error. Defined
    here, not in ``posequeue.errors``: the backend records the class's module, and clients
    rebuild the error from it."""


# The fields of a summary, in order; a field the job does not have yet (None or empty) is left out.
SUMMARY_FIELDS = (
    "job_id",
    "status",
    "model",
    "video",
    "frames_done",
    "frames_total",
    "batches_done",
    "batches_total",
    "corrupt_packets",
    "submitted_at",
    "started_at",
    "finished_at",
    "error",
    "results",
    "video_info",
)


def summary(job: Job) -> dict[str, Any]:
    """The job summary a client sees (CLI ``--json``, result backend, manifest)."""
    out: dict[str, Any] = {}
    for name in SUMMARY_FIELDS:
        value = getattr(job, name)
        if value is None or value == {}:
            continue
        out[name] = value.value if isinstance(value, JobStatus) else value
    if job.finished_at is not None:
        out["elapsed_s"] = round(job.finished_at - job.submitted_at, 3)
    return out


def publish(app: Any, jobs: Jobs, job_id: str) -> None:
    """Put the job's summary in the Celery result backend under the job id."""
    job = jobs.get(job_id)
    if job.status is JobStatus.FAILED:
        app.backend.mark_as_failure(job_id, JobFailedError("failed" if job.error is None else job.error))
    else:
        app.backend.mark_as_done(job_id, summary(job))


def fail_job(app: Any, jobs: Jobs, job_id: str, reason: str) -> bool:
    """Fail a job once, with a reason a person can act on, and publish it."""
    if not jobs.fail(job_id, reason):
        return False
    publish(app, jobs, job_id)
    return True


@lru_cache(maxsize=1)
def get_jobs() -> Jobs:
    """This process's job records (redis-py pools reconnect by themselves after a fork)."""
    from posequeue.config.settings import get_settings

    return Jobs.from_url(get_settings().broker_url)
