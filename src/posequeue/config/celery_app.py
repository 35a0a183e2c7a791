"""The Celery app every side shares. Tasks are sent by name, so a client imports no task code.

Reliability settings (why each is here):
- acks late + reject on worker lost: a batch whose worker dies is delivered again;
- prefetch multiplier 1: a worker holds one batch at a time, others go to idle workers;
- hard time limit below the Redis visibility timeout: Redis never hands a running task to a
  second worker;
- JSON only: no pickle on the wire (messages carry ids and keys, never pixels).
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from kombu import Queue

from posequeue.config import queues
from posequeue.config.settings import Settings, get_settings
from posequeue.logs import get_logger

log = get_logger(__name__)

INGEST_TASK = "posequeue.ingest"
INFER_TASK = "posequeue.infer"
FINALIZE_TASK = "posequeue.finalize"
ANALYZE_TASK = "posequeue.analyze"


def _redis_options(settings: Settings) -> dict[str, int]:
    """Redelivery of a dead host's batches: after the visibility timeout, found by a sweep.
    kombu sweeps every interval x throttle seconds (100 s by default); sweep every tenth of the
    timeout (1-10 s, throttle 1) so a lost batch returns within about 1.1 x the timeout."""
    return {
        "visibility_timeout": settings.visibility_timeout,
        "unacked_restore_interval": max(1, min(10, settings.visibility_timeout // 10)),
        "unacked_restore_throttle": 1,
    }


def make_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("posequeue", broker=settings.broker_url, backend=settings.backend_url)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.task_time_limit,
        task_soft_time_limit=max(0.8 * settings.task_time_limit, settings.task_time_limit - 30),
        broker_transport_options=_redis_options(settings),
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout},
        broker_connection_retry_on_startup=True,
        task_default_queue=queues.INGEST,
        task_queues=[Queue(name) for name in queues.all_queues()],
        task_routes={
            INGEST_TASK: {"queue": queues.INGEST},
            FINALIZE_TASK: {"queue": queues.INGEST},
            ANALYZE_TASK: {"queue": queues.ANALYSIS},
        },
        task_ignore_result=True,  # job summaries are stored explicitly under the job id
        result_expires=7 * 24 * 3600,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,  # Flower's task view
        task_send_sent_event=True,
        # Loading a model takes longer than the 4 s default the pool allows a child to start.
        worker_proc_alive_timeout=60,
        # A task running when the broker connection is lost runs to its end (its ack then fails
        # on the old channel; the visibility timeout returns the message, run again as a
        # duplicate): cancelling it would throw its work away and requeue nothing sooner.
        # worker/reconnect.py keeps the worker alive and puts back what it held but was not running.
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app


app = make_app()


# The failure policy's own counts, carried in a deferred message's kwargs (posequeue.policy):
# a store outage's first error and tries, runs stopped by the time limit in a row.
POLICY_KWARGS = ("store_failures", "store_since", "timeouts")


def without(kwargs: dict[str, Any] | None, *names: str) -> dict[str, Any]:
    """A message's kwargs without the policy's counts ``names`` (a deferral of another kind
    starts them again)."""
    return {k: v for k, v in (kwargs or {}).items() if k not in names}


def defer(task: Task, countdown: float, **changes: Any) -> None:
    """Run ``task`` again in ``countdown`` seconds (``changes``: new ``args`` or ``kwargs``)
    and end this run normally: the next run sees ``request.retries`` one higher, this one is
    reported as a success, and as no ``Retry`` is raised no traceback, frame or ExceptionInfo
    outlives it. A raised ``Retry`` sits in a reference cycle (its traceback holds the tracer's
    frame, which holds the ExceptionInfo, which holds the ``Retry``): ~0.37 MB each until a full
    garbage collection (docs/performance.md). Callers check their own retry limits first."""
    if "kwargs" not in changes:  # a deferral of another kind: the policy's counts start again
        changes["kwargs"] = without(task.request.kwargs, *POLICY_KWARGS)
    task.retry(countdown=countdown, throw=False, **changes)
    name = task.name.rsplit(".", 1)[-1]
    log.info(f"{name}.deferred", countdown=countdown, retries=task.request.retries + 1)
