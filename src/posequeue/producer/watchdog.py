"""The job watchdog: every queued or running job ends, done or failed with the true reason.

Every job in the active set (``config.keys.ACTIVE``: added at submit, removed in the same step
that ends the job) has a progress deadline. A sweep, ``sweep()``, looks at each one and decides,
in this one place, whether to leave it, repair it or fail it:

- **queued** (no ingest task has run): its first ingest message is re-sent if no queue or worker
  holds it after ``POSEQUEUE_INGEST_STALL`` seconds (lost in the pop-before-unacked window, or
  with a host); after ``POSEQUEUE_QUEUED_TIMEOUT`` seconds it fails, naming the ingest queue and
  the workers that consume it (none: start one).
- **running, ingest not finished**: no ingest task of the job ran for ``POSEQUEUE_INGEST_STALL``
  seconds (each run writes ``ingest_at``) and no queue or worker holds an ingest message of the
  job, in two snapshots a second apart: the chain was lost; the job's saved cursor (written with
  each hand-over) is sent again.
- **running, every batch done**: no finalise holds the lock and none is queued or held after
  ``FINALIZE_GRACE`` seconds: the finalise message was lost; it is sent again.
- **running, batches in flight**: batches whose message was lost are sent again
  (``producer/recover.py``); no batch finished for ``POSEQUEUE_PAYLOAD_TTL`` seconds while
  batches wait: failed, naming the stage, its queue and whether any worker consumes it.
- **a done job's motion analysis** (``config.keys.ANALYSES``, ``check_analysis``): queued with
  no message on the analysis queue or held by a worker after ``POSEQUEUE_INGEST_STALL``
  seconds, or running without a heartbeat for as long (its worker died: the task is
  acknowledged when it starts, so nothing else brings it back): sent again as its next message
  (``analysis_sends``), at most ``MAX_RESENDS`` times since it was last asked for
  (``analysis_resends``); then, or when no worker took it in ``POSEQUEUE_QUEUED_TIMEOUT``
  seconds, the analysis fails with the reason. The job stays done: its poses are written.

Who sweeps: every worker that serves the ingest queue runs a thread (started when the worker is
ready) that, every ``POSEQUEUE_WATCHDOG_INTERVAL`` seconds, tries to take a Redis lease (``SET
NX`` that expires before the next interval) and sweeps if it got it. No process is special: one
of the fleet's ingest workers sweeps each interval, and a dead sweeper's lease simply expires. A
client waiting on a job (``submit --wait``) runs the check for its own job, so a job ends even
where no ingest worker exists at all.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from typing import Any

import redis
from celery.signals import worker_ready, worker_shutdown

from posequeue.analysis import state
from posequeue.config import keys
from posequeue.config.catalogue import get_model
from posequeue.config.celery_app import ANALYZE_TASK, FINALIZE_TASK, INGEST_TASK, app
from posequeue.config.queues import ANALYSIS, INGEST, stage_queue
from posequeue.config.schemas import AnalysisStatus, Cursor, Job, JobStatus
from posequeue.config.settings import get_settings
from posequeue.errors import JobNotFound
from posequeue.jobs import Jobs, fail_job, get_jobs
from posequeue.logs import get_logger
from posequeue.monitor import queue_depth
from posequeue.producer.finalize import delete_input
from posequeue.producer.recover import CONFIRM_SECONDS, job_messages, resend_lost
from posequeue.results import job_prefix
from posequeue.store import StoreError, open_store

log = get_logger(__name__)
FINALIZE_GRACE = 10.0  # seconds after the last batch before a missing finalise counts as lost
MAX_RESENDS = 4  # ingest or finalise sent again this often without progress: fail the job


def sweep(jobs: Jobs, now: float | None = None) -> dict[str, str]:
    """Check every active job once; what was done, by job id. Also lets go of jobs past the
    retention period (``retire``)."""
    retire(jobs)
    actions = {}
    for job_id in jobs.active():
        try:
            job = jobs.get(job_id)
        except JobNotFound:
            jobs.forget(job_id)  # its record expired or vanished: nothing left to end
            continue
        if job.status.finished:
            jobs.forget(job_id)
            continue
        try:
            action = check(jobs, job, time.time() if now is None else now)
        except redis.RedisError:
            raise
        except Exception:  # one job's surprise must not stop the others' checks
            log.exception("watchdog.check_failed", job_id=job_id)
            continue
        if action:
            actions[job_id] = action
    for job_id in [j.decode() for j in jobs.r.zrange(keys.ANALYSES, 0, -1)]:
        try:
            job = jobs.get(job_id)
        except JobNotFound:
            state.unlist(jobs, job_id)
            continue
        if job.analysis is None or job.analysis.finished:
            state.unlist(jobs, job_id)  # unless asked for again since
            continue
        try:
            action = check_analysis(jobs, job, time.time() if now is None else now)
        except redis.RedisError:
            raise
        except Exception:
            log.exception("watchdog.check_failed", job_id=job_id, part="analysis")
            continue
        if action:
            actions[job_id] = f"analysis: {action}"
    return actions


def retire(jobs: Jobs) -> list[str]:
    """Jobs submitted before the retention period whose record has expired: what the store
    still holds of them (a failed job's parts and uploaded input, kept for ``posequeue retry``)
    is deleted and they leave the list of jobs; their ids."""
    gone = jobs.expired(time.time() - get_settings().retention_days * 86400)
    if not gone:
        return []
    try:
        store = open_store(get_settings().store)
        for job_id in gone:
            store.delete(store.keys(job_prefix(job_id) + "parts/") + store.keys(f"inputs/{job_id}/"))
    except StoreError as exc:  # the store is away: the next sweep tries again
        log.warning("watchdog.retire_later", reason=str(exc))
        return []
    jobs.unlist(gone)
    return gone


def check(jobs: Jobs, job: Job, now: float) -> str | None:
    """Repair or fail one job past a deadline; what was done, or None."""
    settings = get_settings()
    if job.status is JobStatus.QUEUED:
        waited = now - job.submitted_at
        if waited > settings.queued_timeout:
            return _fail(jobs, job, _queued_reason(waited))
        if waited > settings.ingest_stall and _lost(jobs, job.job_id, INGEST_TASK):
            return _resend_ingest(jobs, job, Cursor(job.job_id))
        return None
    if job.batches_total is None:  # the ingest chain is still at work
        quiet = now - (job.ingest_at or job.started_at or job.submitted_at)
        if quiet > settings.ingest_stall and _lost(jobs, job.job_id, INGEST_TASK):
            cursor = Cursor(**job.cursor) if job.cursor else Cursor(job.job_id)
            return _resend_ingest(jobs, job, cursor)
    elif job.batches_done >= job.batches_total:  # every batch is done: finalise's turn
        quiet = now - _last_progress(job)
        if (
            quiet > FINALIZE_GRACE
            and not jobs.finalizing(job.job_id)
            and _lost(jobs, job.job_id, FINALIZE_TASK)
        ):
            return _resend_finalize(jobs, job)
        return None
    sent = resend_lost(jobs, job)
    if sent:
        return f"re-sent batches {sent}"
    waited = now - _last_progress(job)
    if job.batches_enqueued > job.batches_done and waited > settings.payload_ttl:
        return _fail(jobs, job, _stalled_reason(jobs, job, waited))
    return None


def check_analysis(jobs: Jobs, job: Job, now: float) -> str | None:
    """Send a done job's lost motion analysis again, or fail it (the job stays done); what
    was done, or None."""
    settings = get_settings()
    sends, resends = job.analysis_sends or 1, job.analysis_resends
    was = "queued" if job.analysis is AnalysisStatus.QUEUED else "running"
    if job.analysis is AnalysisStatus.QUEUED:
        waited = now - (job.analysis_queued_at or now)
        if waited <= settings.ingest_stall:
            return None
        if not _lost(jobs, job.job_id, ANALYZE_TASK, ANALYSIS):
            # Past the timeout it fails only with nobody to take it: a queue that is served
            # but busy (analyses of long videos before it) is waited on.
            if waited > settings.queued_timeout and consumers(ANALYSIS) == []:
                return _fail_analysis(jobs, job, _analysis_queued_reason(jobs, job, waited))
            return None
        why = "the last message was lost before any worker started it"
    else:  # running: alive while its heartbeat is
        quiet = now - (job.analysis_beat_at or job.analysis_started_at or now)
        if quiet <= settings.ingest_stall:
            return None
        why = (
            "the last run's worker went silent (killed: out of memory? past its time limit? "
            "see the analysis worker's log)"
        )
    if resends >= MAX_RESENDS:
        return _fail_analysis(
            jobs,
            job,
            f"the motion analysis was sent {resends + 1} times without finishing, {why}; the "
            f"{ANALYSIS} queue is {_serving(ANALYSIS)}. The poses are done; `posequeue analyze "
            f"{job.job_id}` runs the analysis again",
        )
    # As its next message: a run that is only cut off from Redis, not dead, is superseded.
    sent = state.mark(
        jobs, job.job_id, AnalysisStatus.QUEUED, expect=sends, send_again=True, resends=resends + 1
    )
    if not sent:
        return None  # it moved on meanwhile (started, ended, or asked for again)
    state.send(job.job_id, job.analysis_params, sent)
    log.warning("watchdog.resent_analysis", job_id=job.job_id, was=was, sends=sent)
    return f"re-sent the analysis (lost while {was})"


def _fail_analysis(jobs: Jobs, job: Job, reason: str) -> str | None:
    """Fail the analysis (the job stays done) and let its uploaded input go, as its task would."""
    if not state.mark(jobs, job.job_id, AnalysisStatus.FAILED, expect=job.analysis_sends or 1, error=reason):
        return None
    log.warning("watchdog.analysis_failed", job_id=job.job_id, reason=reason)
    try:
        delete_input(open_store(get_settings().store), job)
    except Exception:  # retention removes it later
        log.exception("watchdog.input_kept", job_id=job.job_id)
    return f"failed: {reason}"


def _analysis_queued_reason(jobs: Jobs, job: Job, waited: float) -> str:
    return (
        f"no worker took the motion analysis in {waited:.0f} s (POSEQUEUE_QUEUED_TIMEOUT): the "
        f"{ANALYSIS} queue is {_serving(ANALYSIS)}, {queue_depth(jobs, ANALYSIS)} messages wait "
        f"on it; start one with `posequeue worker --stage analysis`, then `posequeue analyze "
        f"{job.job_id}`. The poses are done"
    )


def _last_progress(job: Job) -> float:
    """When a batch last finished, or a task last deferred on a store error (it waits on the
    store, with its own patience: not stalled), or the job started."""
    times = (job.progress_at, job.store_wait_at, job.started_at, job.submitted_at)
    return max(t for t in times if t is not None)


def _lost(jobs: Jobs, job_id: str, task: str, queue: str = INGEST) -> bool:
    """No message of ``task`` for the job on ``queue`` or held by a worker, in two snapshots
    ``CONFIRM_SECONDS`` apart (a message is in neither for the instant between a worker's pop
    and its unacked record)."""
    for attempt in range(2):
        found = job_messages(jobs, job_id, [queue], task)
        if found is None or found:  # unreadable messages: better wait than run twice
            return False
        if attempt == 0:
            time.sleep(CONFIRM_SECONDS)
    return True


def _resend_ingest(jobs: Jobs, job: Job, cursor: Cursor) -> str:
    if jobs.count(job.job_id, "resent_ingest") > MAX_RESENDS:
        return _fail(jobs, job, _chain_reason(job, cursor))
    app.send_task(INGEST_TASK, args=[cursor.to_dict()])
    log.warning("watchdog.resent_ingest", job_id=job.job_id, segment=cursor.segment)
    return f"re-sent ingest segment {cursor.segment}"


def _resend_finalize(jobs: Jobs, job: Job) -> str:
    if jobs.count(job.job_id, "resent_finalize") > MAX_RESENDS:
        return _fail(
            jobs,
            job,
            f"every batch is done but finalise was sent {MAX_RESENDS} times without finishing: is "
            f"a worker serving the {INGEST} queue, and can it write to the store? "
            "`posequeue retry JOB` finishes the job once it can",
        )
    app.send_task(FINALIZE_TASK, args=[job.job_id])
    log.warning("watchdog.resent_finalize", job_id=job.job_id)
    return "re-sent finalize"


def _fail(jobs: Jobs, job: Job, reason: str) -> str:
    fail_job(app, jobs, job.job_id, reason)
    log.warning("watchdog.failed", job_id=job.job_id, reason=reason)
    return f"failed: {reason}"


def consumers(queue: str, timeout: float = 1.0) -> list[str] | None:
    """Names of the workers that consume ``queue`` now (a broadcast; None if it cannot tell)."""
    try:
        replies = app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception:  # a broker hiccup: say nothing rather than something false
        return None
    return sorted(name for name, queues in replies.items() if any(q.get("name") == queue for q in queues))


def _serving(queue: str) -> str:
    names = consumers(queue)
    if names is None:
        return "could not ask the workers which consume it"
    if not names:
        return "no worker consumes it"
    return f"consumed by {', '.join(names)}"


def _queued_reason(waited: float) -> str:
    return (
        f"no ingest worker took this job in {waited:.0f} s (POSEQUEUE_QUEUED_TIMEOUT): the "
        f"{INGEST} queue is {_serving(INGEST)}, {queue_depth(get_jobs(), INGEST)} messages wait on "
        "it; start one with `posequeue worker --stage ingest` (or a plain `posequeue worker`), "
        "then submit again"
    )


def _chain_reason(job: Job, cursor: Cursor) -> str:
    return (
        f"the ingest of segment {cursor.segment} (frames from {cursor.first_frame}) was lost "
        f"{MAX_RESENDS} times: the {INGEST} queue is {_serving(INGEST)}"
    )


def _stalled_reason(jobs: Jobs, job: Job, waited: float) -> str:
    spec = get_model(job.model)
    waiting = [s.name for s in spec.stages if queue_depth(jobs, stage_queue(spec.name, s.name))]
    stage = waiting[0] if waiting else spec.first_stage.name
    queue = stage_queue(spec.name, stage)
    return (
        f"no batch of this job finished for {int(waited)} s while batches wait for the {stage} "
        f"stage in {queue}, which is {_serving(queue)}: start one with `posequeue worker --model "
        f"{spec.name} --stage {stage}` (or a plain `posequeue worker` for every stage)"
    )


# -- who sweeps ---------------------------------------------------------------------------------
def take_lease(jobs: Jobs, seconds: float) -> bool:
    """The fleet's sweep for this interval is ours (a lease that expires by itself)."""
    me = f"{socket.gethostname()}:{os.getpid()}"
    return bool(jobs.r.set(keys.WATCHDOG_LEASE, me, nx=True, px=max(100, int(seconds * 1000))))


class Sweeper(threading.Thread):
    """The thread an ingest-serving worker runs: a sweep per interval when it holds the lease."""

    def __init__(self, jobs: Jobs, interval: float) -> None:
        super().__init__(name="posequeue-watchdog", daemon=True)
        self.jobs, self.interval = jobs, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                if take_lease(self.jobs, self.interval * 0.9):
                    for job_id, action in sweep(self.jobs).items():
                        log.info("watchdog.action", job_id=job_id, action=action)
            except redis.RedisError as exc:  # Redis restarting: the next interval tries again
                log.warning("watchdog.redis_error", error=str(exc))
            except Exception:
                log.exception("watchdog.error")


_sweeper: list[Sweeper] = []


@worker_ready.connect
def _start(**_: Any) -> None:
    sweeper = Sweeper(get_jobs(), get_settings().watchdog_interval)
    sweeper.start()
    _sweeper.append(sweeper)


@worker_shutdown.connect
def _stop(**_: Any) -> None:
    for sweeper in _sweeper:
        sweeper.stopped.set()


def check_own(jobs: Jobs, job_id: str) -> None:
    """What a waiting client runs for its job each poll: the same check, so the job ends even
    where no ingest worker runs a sweep. Silent on errors: the client's wait goes on."""
    with contextlib.suppress(JobNotFound):
        job = jobs.get(job_id)
        if job.status is JobStatus.QUEUED and time.time() - job.submitted_at > get_settings().queued_timeout:
            check(jobs, job, time.time())
