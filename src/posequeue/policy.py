"""The failure policy of the tasks that work for one job (ingest, infer, finalize), written once.

A task declared with ``base=JobTask`` runs its body under these rules (as Celery's
``Task.on_failure`` or dramatiq's Retries middleware would, but ending each run normally: see
``defer`` in config/celery_app.py for why no ``Retry`` is raised):

- Work of a job that is no longer running is skipped. The body says so by raising
  ``JobNotRunning`` (``require_running``, after any clean-up of its own), or ``Jobs.get`` finds
  no record (``JobNotFound``); the policy logs ``{task}.stale`` with the reason and returns None.
- A ``StoreError`` marked ``lasting`` (credentials or permissions refused) fails the job at
  once with ``store_reason``: waiting would not end it.
- Any other ``StoreError`` (the store, or a payload Redis, unreachable) is waited out, the same way
  for every task: the task defers itself (``defer``), backing off exponentially (2 s doubling
  to ``backoff_max()``), until ``POSEQUEUE_STORE_PATIENCE`` seconds have passed since the
  message's first store error (``store_since`` in its kwargs), then fails the job with
  ``store_reason``. The count and the start travel in the message's kwargs
  (``store_failures``, ``store_since``), not in ``request.retries``, which also counts a
  task's other deferrals (a full memory budget, a held lock); the policy takes them out of the
  kwargs before the body runs. Each deferral writes ``store_wait_at`` on the job: the
  watchdog counts a job whose tasks wait on the store as alive, not stalled (its deadline
  for batches in flight runs from the last store error too). A deferred message is held by a
  worker until its countdown, so the watchdog never takes it for lost, and the countdown stays
  under half the visibility timeout, so Redis never hands it to a second worker meanwhile.
- Redis itself unreachable (a restart): the error is logged and raised, the job is not failed
  (nothing could be recorded): the message comes back by redelivery or the watchdog.
- A ``JobError`` (an unreadable video, a model fault, a batch that cannot run) fails the job
  with its message.
- A run stopped by Celery's soft time limit (a host overloaded for a while) is tried again
  through ``defer``, ``MAX_TIMEOUTS`` times per message (counted in its kwargs, ``timeouts``);
  the next fails the job with ``time_limit_reason``, which says which settings to change.
- Anything else fails the job with ``internal_reason`` and is logged with its traceback.

``store_reason`` and ``internal_reason`` are ``str.format`` templates over the task's log
context (``job_id``, ``batch``, ``stage``: the stage that was running, as bound by the task) and
``exc``. A task sets them as options: ``@app.task(base=JobTask, internal_reason=...)``.
"""

from __future__ import annotations

import time
from typing import Any

import redis
import structlog
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from posequeue.config.celery_app import POLICY_KWARGS, app, defer, without
from posequeue.config.schemas import JobStatus
from posequeue.config.settings import get_settings
from posequeue.errors import JobError, JobNotFound, JobNotRunning, StoreError
from posequeue.jobs import fail_job, get_jobs
from posequeue.logs import get_logger

log = get_logger(__name__)
# The policy's counts in a message's kwargs: its store errors, when the first happened, and its
# runs stopped by the time limit in a row. A deferral of another kind drops them (``defer``).
STORE_FAILURES, STORE_SINCE, TIMEOUTS = POLICY_KWARGS
STORE_RETRY_SECONDS = 2.0
MAX_TIMEOUTS = 2  # runs stopped by the time limit that are tried again; the next fails the job
STORE_BACKOFF_MAX = 60.0  # seconds: the longest wait between two tries after a store error


def require_running(status: JobStatus | None) -> None:
    """Raise ``JobNotRunning`` unless the job is queued or running (None: its record is gone)."""
    if status is None or status.finished:
        raise JobNotRunning("gone" if status is None else status.value)


def job_id_of(args: tuple[Any, ...] | list[Any]) -> str:
    """The job a task works for: its first argument, a job id or a cursor holding one."""
    first = args[0]
    return first if isinstance(first, str) else str(first["job_id"])


def backoff_max() -> float:
    """The longest wait between two tries: ``STORE_BACKOFF_MAX``, and under half the visibility
    timeout (a deferred message is held by its worker until then; held longer, Redis would hand
    it to a second worker too)."""
    return max(STORE_RETRY_SECONDS, min(STORE_BACKOFF_MAX, get_settings().visibility_timeout / 2))


def store_delay(failures: int, since: float) -> float | None:
    """Seconds until a message's next try after its ``failures``-th store error, the first at
    ``since``; None to give up: 2 s doubling to ``backoff_max()``, until POSEQUEUE_STORE_PATIENCE
    seconds have passed since the first."""
    left = get_settings().store_patience - (time.time() - since)
    if left <= 0:
        return None
    return min(backoff_max(), STORE_RETRY_SECONDS * 2**failures, max(left, STORE_RETRY_SECONDS))


class _Context(dict[str, Any]):
    """A template's fields: what is not in the log context reads as "?"."""

    def __missing__(self, key: str) -> str:
        return "?"


class JobTask(Task):
    """Base class of the tasks that work for one job: runs the body under the module's policy."""

    # Celery checks a retry's arguments against the body's signature, which does not declare
    # the policy's own kwarg (store_failures).
    typing = False
    max_retries = None  # the policy counts store errors itself; other deferrals are unbounded
    store_reason = "{exc}"
    internal_reason = "internal error in {task}: {exc!r}"
    time_limit_reason = (
        "{task} ran past its time limit (POSEQUEUE_TASK_TIME_LIMIT, less a margin) %d times in a "
        "row: the host is overloaded, or the work too large for the limit; raise "
        "POSEQUEUE_TASK_TIME_LIMIT (and POSEQUEUE_VISIBILITY_TIMEOUT above it) or lower "
        "POSEQUEUE_BATCH_SIZE, then `posequeue retry JOB`"
    )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Called by Celery's tracer with the request already pushed: run the body directly.
        store_failures = int(kwargs.pop(STORE_FAILURES, 0))
        timeouts = int(kwargs.pop(TIMEOUTS, 0))
        store_since = float(kwargs.pop(STORE_SINCE, 0.0))
        name = self.name.rsplit(".", 1)[-1]
        try:
            return self.run(*args, **kwargs)
        except (JobNotRunning, JobNotFound) as exc:
            log.info(f"{name}.stale", reason=str(exc) if isinstance(exc, JobNotRunning) else "job is gone")
        except StoreError as exc:  # a store outage is waited out before it fails the job
            delay = None if exc.lasting else store_delay(store_failures, store_since or time.time())
            if delay is not None:
                get_jobs().update(job_id_of(args), {"store_wait_at": time.time()})
                changes = {
                    **without(self.request.kwargs, TIMEOUTS),
                    STORE_FAILURES: store_failures + 1,
                    STORE_SINCE: store_since or time.time(),
                }
                log.warning(
                    f"{name}.store_error", error=str(exc), retry_in=delay, failures=store_failures + 1
                )
                defer(self, delay, kwargs=changes)
            else:
                self._fail(args, self.store_reason, exc)
        except SoftTimeLimitExceeded as exc:  # a host busy for a while: tried again, twice
            if timeouts < MAX_TIMEOUTS:
                log.warning(f"{name}.time_limit", timeouts=timeouts + 1, retry_in=STORE_RETRY_SECONDS)
                kept = without(self.request.kwargs, STORE_FAILURES, STORE_SINCE)
                changes = {**kept, TIMEOUTS: timeouts + 1}
                defer(self, STORE_RETRY_SECONDS, kwargs=changes)
            else:
                self._fail(args, self.time_limit_reason % (timeouts + 1), exc)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # Redis itself is away (a restart): nothing can be recorded, and the job is not at
            # fault. The message goes back by redelivery, or the watchdog sends it again.
            log.warning(f"{name}.redis_unreachable", error=str(exc))
            raise
        except JobError as exc:  # the job cannot go on; the message says why
            log.warning(f"{name}.failed", reason=str(exc))
            self._fail(args, "{exc}", exc)
        except Exception as exc:  # a bug must fail its job, not leave it running for ever
            log.exception(f"{name}.error")
            self._fail(args, self.internal_reason, exc)
        return None

    def _fail(self, args: tuple[Any, ...], template: str, exc: BaseException) -> None:
        context = _Context(structlog.contextvars.get_contextvars())
        context.setdefault("task", self.name.rsplit(".", 1)[-1])
        context["exc"] = exc
        fail_job(app, get_jobs(), job_id_of(args), template.format_map(context))
