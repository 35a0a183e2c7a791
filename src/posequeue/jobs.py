"""Job state in Redis: one hash per job, a set of finished batches, guards for exactly-once steps.

The keys are built in ``config/keys.py`` (listed there); the record's fields and their types are
``config.schemas.Job``.
"""

from __future__ import annotations

import enum
import json
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import redis

from posequeue.config.budget import STORE_GRACE_SECONDS, Budget
from posequeue.config.keys import (
    ACTIVE,
    ANALYSES,
    CALLBACKS,
    JOBS,
    batch_key,
    deliveries_key,
    done_key,
    finalize_lock_key,
    handover_key,
    job_key,
    segment_frames_key,
    segment_starts_key,
)
from posequeue.config.schemas import Job, JobStatus
from posequeue.errors import JobNotFound, JobNotRunning, PosequeueError
from posequeue.payload.shards import PayloadServers, reaching

FINISHED_TTL = 7 * 24 * 3600  # the default of POSEQUEUE_RETENTION_DAYS, in seconds


def retention() -> int:
    """Seconds an ended job's record is kept (POSEQUEUE_RETENTION_DAYS)."""
    from posequeue.config.settings import get_settings

    return max(1, int(get_settings().retention_days * 86400))


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


# Writes fields (ARGV: name, value, ...) into the job record only if it exists: a task that
# outlived its job's record must not recreate it half-written.
_UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# Ends a queued or running job (ARGV: status, finished_at, ttl, job id, then field, value, ...):
# the record keeps the retention TTL, the job leaves the active set, its fan-in set and lock go.
# Returns the status the job had (nothing if its record is gone); only a queued or running
# job changes, so two ends never both win.
_END = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return nil end
if status ~= 'queued' and status ~= 'running' then return status end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finished_at', ARGV[2], unpack(ARGV, 5))
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[4])
redis.call('DEL', KEYS[3], KEYS[4])
if KEYS[5] then redis.call('ZADD', KEYS[5], ARGV[2], ARGV[4]) end
return status
"""

# Claims segment ARGV[1]'s hand-over (marker KEYS[2], lifetime ARGV[3]) and saves the next
# cursor (ARGV[2]) on the job in one step; 0 if claimed before or the job is gone.
_HANDOVER = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if not redis.call('SET', KEYS[2], 1, 'NX', 'EX', ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], 'cursor', ARGV[2])
return 1
"""

# Runs a failed or cancelled job again (KEYS: record, fan-in set, active set; ARGV: now, job
# id, then the batch count when every part exists, else ''): running again with its deadlines
# from now, its error and counters gone, its record kept until it ends. With every part there
# the fan-in set is complete (finalise runs next); else it starts from the first segment.
_REOPEN = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'failed' and status ~= 'cancelled' then return status or false end
redis.call('PERSIST', KEYS[1])
redis.call('HDEL', KEYS[1], 'error', 'finished_at', 'finalize_starts', 'resent_ingest', 'resent_finalize')
redis.call('DEL', KEYS[2])
if ARGV[3] ~= '' then
  for i = 0, tonumber(ARGV[3]) - 1 do redis.call('SADD', KEYS[2], i) end
  redis.call('HSET', KEYS[1], 'frames_done', redis.call('HGET', KEYS[1], 'frames_total'))
else
  redis.call('HDEL', KEYS[1], 'frames_total', 'batches_total', 'cursor', 'warnings', 'corrupt_packets')
  redis.call('HSET', KEYS[1], 'frames_done', 0, 'batches_enqueued', 0)
end
redis.call('HSET', KEYS[1], 'status', 'running', 'ingest_at', ARGV[1], 'progress_at', ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[2])
return 'running'
"""

# A stage's start of a batch (KEYS: record, batch, delivery counter; ARGV: the counter's
# lifetime): the job's status, and for a job still going the delivery counted and the batch's
# fields. A job that ended (or vanished) gets no counter: its keys are not recreated.
_BEGIN = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'running' and status ~= 'queued' then return {status or false, 0} end
local count = redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], ARGV[1])
local out = {status, count}
for _, v in ipairs(redis.call('HGETALL', KEYS[2])) do out[#out + 1] = v end
return out
"""

# Store a batch only for a job still going (a cancel's drop_batches ran before this would
# otherwise leave the hash behind); its status, or false when the record is gone.
_PUT = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'running' and status ~= 'queued' then return status or false end
redis.call('HSET', KEYS[2], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[2], ARGV[1])
return status
"""

_COUNT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
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

    def __init__(
        self, client: redis.Redis, max_redis_mb: int | None = None, payload_urls: list[str] | None = None
    ) -> None:
        self.r: Any = client  # redis-py's stubs type replies as bytes | str; ours are bytes
        self._complete = client.register_script(_COMPLETE)
        self._update = client.register_script(_UPDATE)
        self._end = client.register_script(_END)
        self._handover = client.register_script(_HANDOVER)
        self._count = client.register_script(_COUNT)
        self._reopen = client.register_script(_REOPEN)
        self._begin = client.register_script(_BEGIN)
        self._put = client.register_script(_PUT)
        if max_redis_mb is None:
            from posequeue.config.settings import get_settings

            max_redis_mb = get_settings().max_redis_mb
        # Batch hashes (meta and pixels) live here; delivery counters, job state and the budget's
        # ledger on the broker.
        self.payloads = (
            PayloadServers.from_urls(payload_urls, client)
            if payload_urls
            else PayloadServers([client], client)
        )
        # The ledger heals from the batch hashes only where its scripts can see them: on the
        # broker. With payload servers a reservation lapses with its lease (the payload's TTL).
        grace = STORE_GRACE_SECONDS if self.payloads.on_broker else None
        self.budget = Budget(client, Budget.limit_for(max_redis_mb), store_grace=grace)

    @classmethod
    def from_url(cls, url: str, payload_urls: list[str] | None = None) -> Jobs:
        return cls(redis.Redis.from_url(url), payload_urls=payload_urls)

    # -- lifecycle -------------------------------------------------------------------------
    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def create(
        self,
        *,
        job_id: str,
        model: str,
        video: str,
        batch_size: int,
        source: str,
        people: int = 1,
        follow: str = "most-present",
        video_mode: bool = False,
        callback_url: str | None = None,
    ) -> str:
        now = time.time()
        fields: dict[str, Any] = {
            "status": JobStatus.QUEUED.value,
            "model": model,
            "video": video,
            "source": source,
            "batch_size": batch_size,
            "people": people,
            "follow": follow,
            "video_mode": int(video_mode),
            "submitted_at": now,
            "frames_done": 0,
            "batches_enqueued": 0,
        }
        if callback_url:
            fields["callback_url"] = callback_url
        with self.r.pipeline() as pipe:
            pipe.hset(job_key(job_id), mapping=fields)
            pipe.zadd(JOBS, {job_id: now})
            pipe.zadd(ACTIVE, {job_id: now})
            if callback_url:  # in the same transaction: no job ends without its callback queued
                pipe.zadd(CALLBACKS, {job_id: now})
            pipe.execute()
        return job_id

    def update(self, job_id: str, fields: dict[str, Any]) -> bool:
        """Write ``fields`` into the job's record if it still exists; False if it is gone."""
        args = [str(x) for kv in fields.items() for x in kv]
        return bool(self._update(keys=[job_key(job_id)], args=args))

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
        now = time.time()
        fields = {"status": JobStatus.RUNNING.value, "started_at": now, "video_info": json.dumps(video_info)}
        self.update(job_id, {**fields, "ingest_at": now})

    def beat(self, job_id: str) -> None:
        """An ingest task of the job ran now (the watchdog's sign that the chain is alive)."""
        self.update(job_id, {"ingest_at": time.time()})

    def end(
        self, job_id: str, status: JobStatus, listed: str | None = None, **fields: Any
    ) -> JobStatus | None:
        """End a queued or running job as ``status`` with ``fields`` (one script), adding it to
        the sorted set ``listed`` if given; the status it had before, or None if its record is
        gone. Only a queued or running job changes."""
        args: list[Any] = [status.value, time.time(), retention(), job_id]
        args += [str(x) for kv in fields.items() for x in kv]
        keys = [job_key(job_id), ACTIVE, done_key(job_id), finalize_lock_key(job_id)]
        before = self._end(keys=keys + ([listed] if listed else []), args=args)
        return JobStatus(before.decode()) if before else None

    def fail(self, job_id: str, reason: str) -> bool:
        """Mark the job failed with a reason a person can act on; False if it already ended."""
        before = self.end(job_id, JobStatus.FAILED, error=reason)
        self.budget.release_job(job_id)  # its pixels leave Redis now, not when workers meet them
        return before is not None and not before.finished

    def cancel(self, job_id: str, reason: str) -> bool:
        """End a queued or running job as cancelled; False if it already ended (or is gone)."""
        before = self.end(job_id, JobStatus.CANCELLED, error=reason)
        self.budget.release_job(job_id)
        return before is not None and not before.finished

    def finish(
        self, job_id: str, results: dict[str, str], finished_at: float, analysis: dict[str, Any] | None = None
    ) -> JobStatus | None:
        """End the job done; the status it had (done only if it was running), None if gone.
        ``analysis``: the fields of its motion analysis, queued in the same step (and put on the
        watchdog's list), so that nobody sees the job done without it."""
        fields = {"results": json.dumps(results), "finished_at": finished_at, **(analysis or {})}
        before = self.end(job_id, JobStatus.DONE, ANALYSES if analysis else None, **fields)
        self.budget.release_job(job_id)  # nothing should be left; a stray redelivery's batch goes
        return before

    def reopen(self, job_id: str, complete_batches: int | None) -> JobStatus | None:
        """Run a failed or cancelled job again: finalise only when ``complete_batches`` (every
        part is in the store), else from the first segment (its batches and markers must be
        dropped first). The status it has now: running if reopened."""
        keys = [job_key(job_id), done_key(job_id), ACTIVE]
        args: list[str | float] = [time.time(), job_id, "" if complete_batches is None else complete_batches]
        status = self._reopen(keys=keys, args=args)
        return JobStatus(status.decode()) if status else None

    # -- the watchdog's view ------------------------------------------------------------------
    def active(self) -> list[str]:
        """Ids of the jobs not yet ended (queued or running), oldest first."""
        return [j.decode() for j in self.r.zrange(ACTIVE, 0, -1)]

    def expired(self, before: float, limit: int = 500) -> list[str]:
        """Jobs on the list submitted before ``before`` (epoch seconds) whose record is gone."""
        ids = [j.decode() for j in self.r.zrangebyscore(JOBS, "-inf", before, start=0, num=limit)]
        with self.r.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.exists(job_key(job_id))
            alive = pipe.execute()
        return [job_id for job_id, there in zip(ids, alive, strict=True) if not there]

    def unlist(self, job_ids: list[str]) -> None:
        """Take jobs off the list of jobs (``pq:jobs``)."""
        if job_ids:
            self.r.zrem(JOBS, *job_ids)

    def forget(self, job_id: str) -> None:
        """Take a job whose record ended or vanished out of the active set."""
        self.r.zrem(ACTIVE, job_id)

    def count(self, job_id: str, name: str) -> int:
        """Add one to the record's counter ``name`` (e.g. ``resent_ingest``); its value, 0 if the
        record is gone (never recreated)."""
        return int(self._count(keys=[job_key(job_id)], args=[name]))

    def finalizing(self, job_id: str) -> bool:
        """A finaliser holds the job's lock now."""
        return bool(self.r.exists(finalize_lock_key(job_id)))

    def uncount_segment_start(self, job_id: str, segment: int) -> None:
        """Take back a counted start that ended in a wait (the memory budget), not a crash."""
        self.r.decr(segment_starts_key(job_id, segment))

    def count_segment_start(self, job_id: str, segment: int, ttl: int) -> int:
        """Count a start of segment ``segment``'s decoding; how many so far (a segment that
        kills its worker comes back again and again)."""
        key = segment_starts_key(job_id, segment)
        with self.r.pipeline() as pipe:
            pipe.incr(key)
            pipe.expire(key, ttl)
            count, _ = pipe.execute()
        return int(count)

    # -- batches and fan-in ---------------------------------------------------------------
    def put_batch(self, meta: dict[str, Any], payload: dict[str, bytes], ttl: int) -> None:
        """Store a batch once (claim-check): its meta and payloads, with a TTL, in one round
        trip, only while its job is queued or running. Raises ``JobNotRunning`` otherwise (its
        reservation released): a cancel that deleted the job's batches meanwhile keeps them
        deleted. On a payload server the status is read again after the write, and the batch
        deleted if the job ended meanwhile."""
        job_id, index = meta["job_id"], meta["index"]
        key = batch_key(job_id, index)
        fields = {"meta": json.dumps(meta).encode(), **payload}
        holder = self.payloads.client(key)
        if holder is self.r:
            flat = [v for pair in fields.items() for v in pair]
            status = self._put(keys=[job_key(job_id), key], args=[ttl, *flat])
        else:
            with reaching(), holder.pipeline() as pipe:
                pipe.hset(key, mapping=fields)
                pipe.expire(key, ttl)
                pipe.execute()
            status = self.r.hget(job_key(job_id), "status")
        if status not in (b"running", b"queued"):
            self.drop_batch(job_id, index)  # the hash (a payload server's) and its reservation
            raise JobNotRunning(status.decode() if status else "gone")

    def begin_batch(self, job_id: str, index: int, stage: str, ttl: int) -> BatchStart:
        """What a stage's task needs before it runs, in one round trip: the job's status, the
        batch's fields (``meta`` decoded, payloads as bytes), and this delivery counted (a batch
        that kills its worker process comes back again and again)."""
        keys = [job_key(job_id), batch_key(job_id, index), deliveries_key(job_id, index, stage)]
        # The script runs on the broker: its errors are the broker's (Redis away: the policy
        # waits for redelivery), never "payload unreachable" (a store error that fails the job).
        status, count, *pairs = self._begin(keys=keys, args=[ttl])
        raw = dict(zip(pairs[::2], pairs[1::2], strict=True))
        holder = self.payloads.client(keys[1])
        if holder is not self.r and status in (b"running", b"queued"):  # on a payload server
            with reaching():
                raw = holder.hgetall(keys[1])
        return BatchStart(JobStatus(status.decode()) if status else None, _batch_fields(raw), int(count))

    def advance_batch(self, job_id: str, index: int, payload: dict[str, bytes], drop: list[str]) -> bool:
        """Store what a stage made for the next one and drop what no later stage reads; the
        batch's reservation in the budget becomes what its hash then holds. A hash already
        gone (the batch finished, or its job ended or was cancelled) is not recreated: False. On
        a payload server the hash is rewritten there and its reservation stays what the batch was
        admitted with (it covers the crops: see ``producer/ingest.py``)."""
        if self.payloads.on_broker:
            return self.budget.advance(job_id, index, payload, drop)
        key = batch_key(job_id, index)
        holder = self.payloads.client(key)
        with reaching():
            if not holder.exists(key):
                return False
            with holder.pipeline() as pipe:
                pipe.hset(key, mapping=payload)
                if drop:
                    pipe.hdel(key, *drop)
                pipe.execute()
        return True

    def is_batch_done(self, job_id: str, index: int) -> bool:
        return bool(self.r.sismember(done_key(job_id), index))

    def drop_batch(self, job_id: str, index: int) -> None:
        """Delete the batch's hash and release its bytes in the budget (atomically when the hash
        is on the broker; on a payload server, the hash first, then the reservation)."""
        if not self.payloads.on_broker:
            key = batch_key(job_id, index)
            with reaching():
                self.payloads.client(key).delete(key)
        self.budget.drop(job_id, index)

    def drop_batches(self, job_id: str) -> int:
        """Delete every batch of the job (pixels, delivery counters) and its segment markers:
        a cancelled job lets go of Redis at once; how many keys went."""
        gone = 0
        servers = [c for c in self.payloads.clients if c is not self.r]  # pixels on payload servers
        wanted = [(self.r, batch_key(job_id, "*")), (self.r, handover_key(job_id, "*"))]
        wanted += [(client, batch_key(job_id, "*")) for client in servers]
        with reaching():
            for client, pattern in wanted:
                for chunk in _chunks(client.scan_iter(match=pattern, count=500), 500):
                    gone += int(client.delete(*chunk))
        return gone

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
        self.update(job_id, {"batches_enqueued": count})

    def batch_done(self, job_id: str, index: int, frames: int) -> bool:
        """Record batch ``index`` finished; True when the job is complete and not finalised."""
        key = job_key(job_id)
        return bool(self._complete(keys=[key, done_key(job_id)], args=[index, frames, time.time()]))

    def ingest_done(
        self,
        job_id: str,
        frames_total: int,
        batches_total: int,
        corrupt_packets: int,
        warnings: list[str] | None = None,
    ) -> bool:
        """Record the totals once all frames are queued; True if the job is already complete."""
        fields: dict[str, Any] = {
            "frames_total": frames_total,
            "batches_total": batches_total,
            "batches_enqueued": batches_total,
            "corrupt_packets": corrupt_packets,
        }
        if warnings:
            fields["warnings"] = json.dumps(warnings)
        if not self.update(job_id, fields):
            return False
        key = job_key(job_id)
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

    def claim_handover(self, job_id: str, segment: int, cursor: dict[str, Any]) -> bool:
        """Claim segment k's hand-over to k+1 and save k+1's cursor on the job, in one step;
        False if claimed before (a redelivered segment) or the job is gone. Claimed before the
        send: a worker that dies in between leaves the saved cursor for the watchdog to send."""
        keys = [job_key(job_id), handover_key(job_id, segment)]
        return bool(self._handover(keys=keys, args=[segment, json.dumps(cursor), FINISHED_TTL]))

    def handed_over(self, job_id: str, segment: int) -> bool:
        return bool(self.r.exists(handover_key(job_id, segment)))

    def decide_segment(self, job_id: str, segment: int, frames: int) -> int:
        """Record that segment k took ``frames`` frames (before its hand-over is sent); the
        count recorded first wins and is returned. A segment's end depends on the budget at
        the time, so a redelivered segment must end where the first one did."""
        key = segment_frames_key(job_id, segment)
        with self.r.pipeline() as pipe:
            pipe.set(key, frames, nx=True, ex=FINISHED_TTL)
            pipe.get(key)
            _, recorded = pipe.execute()
        return int(recorded)

    def segment_frames(self, job_id: str, segment: int) -> int | None:
        """The frames segment k took, if its end was decided (see ``decide_segment``)."""
        value = self.r.get(segment_frames_key(job_id, segment))
        return None if value is None else int(value)

    def recent(self, limit: int = 20, offset: int = 0) -> list[str]:
        """Job ids, newest first."""
        return [j.decode() for j in self.r.zrevrange(JOBS, offset, offset + limit - 1)]

    def count_jobs(self) -> int:
        """Jobs in the index (submitted and not yet trimmed)."""
        return int(self.r.zcard(JOBS))


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
    "warnings",
    "results",
    "video_info",
    "people",  # added with output contract 2, after the fields clients had already
    "follow",
    "video_mode",
    "callback_url",  # a job submitted through the HTTP API with one
)


def summary(job: Job) -> dict[str, Any]:
    """The job summary a client sees (CLI ``--json``, result backend, manifest)."""
    out: dict[str, Any] = {}
    for name in SUMMARY_FIELDS:
        value = getattr(job, name)
        if value is None or (isinstance(value, dict | list) and not value):
            continue
        out[name] = value.value if isinstance(value, enum.Enum) else value
    if job.finished_at is not None:
        out["elapsed_s"] = round(job.finished_at - job.submitted_at, 3)
    if job.analysis is not None:
        out["analysis"] = job.analysis_summary()
    return out


def publish(app: Any, jobs: Jobs, job_id: str) -> None:
    """Put the job's summary in the Celery result backend under the job id."""
    job = jobs.get(job_id)
    if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        reason = job.status.value if job.error is None else job.error
        app.backend.mark_as_failure(job_id, JobFailedError(reason))
    else:
        app.backend.mark_as_done(job_id, summary(job))


def fail_job(app: Any, jobs: Jobs, job_id: str, reason: str) -> bool:
    """Fail a job once, with a reason a person can act on, and publish it."""
    if not jobs.fail(job_id, reason):
        return False
    publish(app, jobs, job_id)
    return True


def _chunks(items: Any, size: int) -> Any:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@lru_cache(maxsize=1)
def get_jobs() -> Jobs:
    """This process's job records (redis-py pools reconnect by themselves after a fork)."""
    from posequeue.config.settings import get_settings

    settings = get_settings()
    return Jobs.from_url(settings.broker_url, settings.payload_servers)
