"""The failure policy of the tasks that work for one job (ingest, infer, finalize), written once.

A task declared with ``base=JobTask`` runs its body under these rules (as Celery's
``Task.on_failure`` or dramatiq's Retries middleware would, but ending each run normally: see
``defer`` in config/celery_app.py for why no ``Retry`` is raised):

- Work of a job that is no longer running is skipped. The body says so by raising
  ``JobNotRunning`` (``require_running``, after any clean-up of its own), or ``Jobs.get`` finds
  no record (``JobNotFound``); the policy logs ``{task}.stale`` with the reason and returns None.
- A ``StoreError`` is retried through ``defer`` after ``STORE_RETRY_SECONDS``, up to
  ``POSEQUEUE_STORE_RETRIES`` times per message, then fails the job with ``store_reason``. The
  count travels in the message's kwargs (``store_failures``), not in ``request.retries``,
  which also counts a task's other deferrals (a full window, a held lock); the policy takes it
  out of the kwargs before the body runs.
- A ``JobError`` (an unreadable video, a model fault, a batch that cannot run) fails the job
  with its message.
- Anything else fails the job with ``internal_reason`` and is logged with its traceback.

``store_reason`` and ``internal_reason`` are ``str.format`` templates over the task's log
context (``job_id``, ``batch``, ``stage``: the stage that was running, as bound by the task) and
``exc``. A task sets them as options: ``@app.task(base=JobTask, internal_reason=...)``.
"""

from __future__ import annotations

from typing import Any

import structlog
from celery import Task

from posequeue.config.celery_app import app, defer
from posequeue.config.schemas import JobStatus
from posequeue.config.settings import get_settings
from posequeue.errors import JobError, JobNotFound, JobNotRunning, StoreError
from posequeue.jobs import fail_job, get_jobs
from posequeue.logs import get_logger

log = get_logger(__name__)
STORE_FAILURES = "store_failures"  # the message kwarg counting this message's store errors
STORE_RETRY_SECONDS = 2.0


def require_running(status: JobStatus | None) -> None:
    """Raise ``JobNotRunning`` unless the job is queued or running (None: its record is gone)."""
    if status is None or status.finished:
        raise JobNotRunning("gone" if status is None else status.value)


def job_id_of(args: tuple[Any, ...] | list[Any]) -> str:
    """The job a task works for: its first argument, a job id or a cursor holding one."""
    first = args[0]
    return first if isinstance(first, str) else str(first["job_id"])


class _Context(dict[str, Any]):
    """A template's fields: what is not in the log context reads as "?"."""

    def __missing__(self, key: str) -> str:
        return "?"


class JobTask(Task):  # type: ignore[misc]  # celery's Task is untyped
    """Base class of the tasks that work for one job: runs the body under the module's policy."""

    # Celery checks a retry's arguments against the body's signature, which does not declare
    # the policy's own kwarg (store_failures).
    typing = False
    max_retries = None  # the policy counts store errors itself; other deferrals are unbounded
    store_reason = "{exc}"
    internal_reason = "internal error in {task}: {exc!r}"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Called by Celery's tracer with the request already pushed: run the body directly.
        store_failures = int(kwargs.pop(STORE_FAILURES, 0))
        name = self.name.rsplit(".", 1)[-1]
        try:
            return self.run(*args, **kwargs)
        except (JobNotRunning, JobNotFound) as exc:
            log.info(f"{name}.stale", reason=str(exc) if isinstance(exc, JobNotRunning) else "job is gone")
        except StoreError as exc:  # the store's hiccups are retried before they fail the job
            if store_failures < get_settings().store_retries:
                changes = {**(self.request.kwargs or {}), STORE_FAILURES: store_failures + 1}
                defer(self, STORE_RETRY_SECONDS, kwargs=changes)
            else:
                self._fail(args, self.store_reason, exc)
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
