"""Threaded workers: task threads in one process share its loaded models, so one thread's Redis
I/O, pre- and post-processing run while another thread's batch is in the model (the model calls
themselves are serialised in ``worker/stages.py``).

Celery's thread pool keeps neither of prefork's two guards, so this module puts them back:

- a killed process (SIGKILL, OOM killer) loses no batch for long: the worker runs under a small
  supervisor that forks it, and when it dies puts the messages it held (reserved or running,
  unacknowledged) back on their queues at once and forks a new one — what prefork's
  reject-on-worker-lost does for a pool child. Without it they would wait for the visibility
  timeout (10 min by default);
- the hard time limit: a thread cannot be killed, so a watchdog ends the process when a task
  overruns it, and the supervisor requeues its batches (a batch that keeps doing so fails its job
  after ``MAX_DELIVERIES``).

Key: ``config.keys.held_key`` (the delivery tags one worker process holds).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from celery import Celery, signals

from posequeue.config import keys
from posequeue.errors import EXIT_FAILED, EXIT_RESTART
from posequeue.logs import get_logger

log = get_logger(__name__)

_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def held_key(pid: int) -> str:
    """The key of the delivery tags process ``pid`` of this host holds."""
    return keys.held_key(socket.gethostname(), pid)


# -- in the worker process ------------------------------------------------------------------
class Tracker:
    """Records the delivery tags this process holds in Redis and watches the tasks' run times."""

    def __init__(self, client: Any, time_limit: float, ttl: int) -> None:
        self.r, self.time_limit, self.ttl = client, time_limit, ttl
        self.key = held_key(os.getpid())
        self.tags: dict[str, str] = {}  # task id -> delivery tag
        self.running: dict[str, float] = {}  # task id -> monotonic start

    def connect(self) -> None:
        self._hold_on_delivery()
        signals.task_received.connect(self._received, weak=False)
        signals.task_prerun.connect(self._started, weak=False)
        signals.task_postrun.connect(self._finished, weak=False)
        threading.Thread(target=self._watch, name="posequeue-watchdog", daemon=True).start()

    def _hold_on_delivery(self) -> None:
        """Record a tag right where kombu records the message as unacknowledged, before Celery
        parses it: a process killed in between (a few ms, found by the kill tests) would
        otherwise leave that message to the visibility timeout."""
        from kombu.transport import redis as kombu_redis

        append, tracker = kombu_redis.QoS.append, self

        def append_and_hold(qos: Any, message: Any, delivery_tag: str) -> None:
            append(qos, message, delivery_tag)
            tracker.hold(delivery_tag)

        kombu_redis.QoS.append = append_and_hold  # type: ignore[method-assign]

    def hold(self, tag: str) -> None:
        with self.r.pipeline(transaction=False) as pipe:
            pipe.sadd(self.key, tag)
            pipe.expire(self.key, self.ttl)
            pipe.execute()

    def _received(self, request: Any, **_: object) -> None:
        self.tags[request.id] = request.message.delivery_tag  # to let it go when the task ends

    def _started(self, task_id: str, **_: object) -> None:
        self.running[task_id] = time.monotonic()

    def _finished(self, task_id: str, **_: object) -> None:
        # The ack follows this signal: a death in between leaves that one message to the
        # visibility timeout, as a death of a whole prefork worker does.
        self.running.pop(task_id, None)
        tag = self.tags.pop(task_id, None)
        if tag is not None:
            self.r.srem(self.key, tag)

    def _watch(self) -> None:
        while True:
            time.sleep(1.0)
            now = time.monotonic()
            late = [t for t, start in list(self.running.items()) if now - start > self.time_limit]
            if late:
                log.error("worker.time_limit", tasks=late, limit_s=self.time_limit)
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(EXIT_RESTART)


# -- in the supervisor ----------------------------------------------------------------------
def requeue(app: Celery, key: str) -> int:
    """Put the unacknowledged messages whose tags ``key`` lists back at the head of their queues
    (kombu's own reject-with-requeue); how many there were."""
    with app.connection_for_write() as conn:
        qos = conn.default_channel.qos
        client = conn.default_channel.client
        tags = [t.decode() for t in client.smembers(key)]
        held = [
            t for t, raw in zip(tags, client.hmget(qos.unacked_key, tags) if tags else [], strict=True) if raw
        ]
        for tag in held:
            qos.restore_by_tag(tag, leftmost=True)
        client.delete(key)
    return len(held)


def supervise(app: Celery, run: Callable[[], None], restart_delay: float = 1.0) -> int:
    """Fork a process that calls ``run`` (the worker); when it dies, requeue what it held and
    fork another. Stop signals go to the process; returns its exit code once it stops."""
    state = {"child": 0, "stopping": False}

    def forward(signum: int, _: object) -> None:
        state["stopping"] = True
        if state["child"]:
            os.kill(state["child"], signum)

    while True:
        child = os.fork()
        if child == 0:  # the worker: default signal handling, never returns
            for sig in _FORWARDED:
                signal.signal(sig, signal.SIG_DFL)
            _stop_with_parent()
            os._exit(_run_child(run))
        state["child"] = child
        for sig in _FORWARDED:
            signal.signal(sig, forward)
        _, status = os.waitpid(child, 0)
        try:
            requeued = requeue(app, held_key(child))
        except Exception:  # Redis unreachable: they come back after the visibility timeout
            log.exception("worker.requeue_failed", pid=child)
            requeued = -1
        code = os.waitstatus_to_exitcode(status)  # -N: killed by signal N
        if state["stopping"] or (code >= 0 and code != EXIT_RESTART):
            return code if code >= 0 else 128 - code
        how = f"signal {signal.Signals(-code).name}" if code < 0 else "time limit"
        log.error("worker.lost", pid=child, how=how, requeued=requeued)
        time.sleep(restart_delay)


def _stop_with_parent() -> None:
    """A supervisor killed outright takes its worker along (SIGTERM: a warm shutdown), rather
    than leaving it running unsupervised on claimed cores. Linux only; elsewhere a no-op."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (AttributeError, OSError):
        pass


def _run_child(run: Callable[[], None]) -> int:
    try:
        run()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_FAILED
    except BaseException:
        log.exception("worker.crashed")
        return EXIT_FAILED
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return 0
