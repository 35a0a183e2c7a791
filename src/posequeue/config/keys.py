"""Every Redis key posequeue writes, built in one place (all under ``pq:``).

Job state (``posequeue.jobs``):
    pq:jobs                          sorted set of job ids by submission time (trimmed to the
                                     retention period by the watchdog)
    pq:callbacks                     sorted set: ids of jobs with a callback_url -> when the
                                     API's callback sender looks at them next (``api/callbacks.py``)
    pq:active                        sorted set of the jobs not yet ended (the watchdog's list)
    pq:analyses                      sorted set: done jobs whose motion analysis is queued or
                                     running -> when it was queued (the watchdog's list of them,
                                     ``analysis/state.py``)
    pq:watchdog                      lease: the ingest worker that sweeps this interval
    pq:job:{id}                      hash: the job record (``config.schemas.Job``)
    pq:job:{id}:done                 set of finished batch indices (the fan-in)
    pq:job:{id}:finalizing           lock held by the finalise task while it writes the results
    pq:job:{id}:seg:{k}              marker: segment k has handed over to segment k+1
    pq:job:{id}:seg:{k}:starts       counter: starts of segment k's decoding
    pq:job:{id}:recover              guard: the job's lost batches were looked for
                                     (``producer/recover.py``)
    pq:batch:{id}:{k}                hash: the pixels and meta of batch k (claim-check, with a TTL);
                                     on the payload server its key hashes to
                                     (``payload/shards.py``), the broker by default
    pq:batch:{id}:{k}:deliveries:{s} counter: starts of stage s of batch k
Payload budget (``config/budget.py``):
    pq:budget:held                   hash: batch key -> bytes reserved for it
    pq:budget:leases                 sorted set: batch key -> when its reservation lapses
    pq:budget:jobs                   hash: job id -> bytes its batches hold
    pq:budget:waiting                sorted set: job id -> when it was first refused (in turn)
    pq:budget:tried                  hash: job id -> when it was last refused (still waiting)
    pq:budget:last                   hash: job id -> bytes of its last admitted batch
    pq:budget:peak                   the most bytes the ledger has held at once
    pq:budget:since                  sorted set: batch key -> when it was reserved
    pq:job:{id}:seg:{k}:frames       frames segment k took, decided before its hand-over
Workers:
    pq:held:{host}:{pid}             set of the delivery tags a threaded worker process holds
                                     (``worker/threaded.py``)
    pq:workers                       sorted set of throughput series by last report
                                     (``worker/stats.py``)
    pq:wstats:{series}:{t0}          hash for the 10 s starting at t0: frames, batches, busy_s

Celery's and kombu's own keys (queues, ``unacked``, ``celery-task-meta-*``) are theirs.
A function whose argument says ``int | str`` also builds a pattern for KEYS/SCAN: pass ``"*"``.
"""

from __future__ import annotations

PREFIX = "pq"
JOBS = f"{PREFIX}:jobs"
CALLBACKS = f"{PREFIX}:callbacks"
ACTIVE = f"{PREFIX}:active"
ANALYSES = f"{PREFIX}:analyses"
WATCHDOG_LEASE = f"{PREFIX}:watchdog"
WORKERS = f"{PREFIX}:workers"
BUDGET_HELD = f"{PREFIX}:budget:held"
BUDGET_LEASES = f"{PREFIX}:budget:leases"
BUDGET_JOBS = f"{PREFIX}:budget:jobs"
BUDGET_WAITING = f"{PREFIX}:budget:waiting"
BUDGET_LAST = f"{PREFIX}:budget:last"
BUDGET_PEAK = f"{PREFIX}:budget:peak"
BUDGET_TRIED = f"{PREFIX}:budget:tried"
BUDGET_SINCE = f"{PREFIX}:budget:since"


def job_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


def done_key(job_id: str) -> str:
    return f"{job_key(job_id)}:done"


def finalize_lock_key(job_id: str) -> str:
    return f"{job_key(job_id)}:finalizing"


def handover_key(job_id: str, segment: int | str) -> str:
    return f"{job_key(job_id)}:seg:{segment}"


def segment_starts_key(job_id: str, segment: int | str) -> str:
    return f"{job_key(job_id)}:seg:{segment}:starts"


def segment_frames_key(job_id: str, segment: int) -> str:
    return f"{handover_key(job_id, segment)}:frames"


def recover_guard_key(job_id: str) -> str:
    return f"{job_key(job_id)}:recover"


def batch_key(job_id: str, index: int | str) -> str:
    return f"{PREFIX}:batch:{job_id}:{index}"


def deliveries_key(job_id: str, index: int | str, stage: str) -> str:
    return f"{batch_key(job_id, index)}:deliveries:{stage}"


def held_key(host: str, pid: int) -> str:
    return f"{PREFIX}:held:{host}:{pid}"


def worker_bucket_key(series: str, start: int) -> str:
    return f"{PREFIX}:wstats:{series}:{start}"
