"""A worker rides out its broker going away and coming back (a Redis restart), keeping the
messages it held.

On a lost broker connection Celery's consumer (5.7) ``collect()``s the connection, which detaches
kombu's Redis transport from it (``transport.client = None``), then closes it. Closing a channel
that holds unacknowledged messages (a task running, prefetched, or waiting for its countdown)
restores them to their queues, and reaching Redis for that rebuilds the channel's connection
pool from ``transport.client``: ``AttributeError: 'NoneType' object has no attribute
'hostname'``. Celery calls that unrecoverable and the worker exits, with nothing to restart it
where no supervisor runs it. Two patches, installed by ``install`` in every worker process:

- a detached transport is a Redis ``ConnectionError``, one kombu and Celery ignore while closing
  (and log on an acknowledgement sent later on that channel): the worker reconnects;
- the messages the closing channel could not restore (the broker was down) are remembered, and
  once the worker has connected again (a consumer bootstep that runs on every connection) those
  it is not running are put back at the head of their queues. Without this they would stay in
  the broker's ``unacked`` hash until the visibility timeout (10 min by default): no worker runs
  them (Celery drops the reserved and countdown requests of a lost connection), and the job
  watchdog counts them as held by a worker, so a job whose ingest chain waited on one stalls.

- a task running across the loss finishes, but its acknowledgement fails on the old channel
  ("Couldn't ack"): its message too is remembered and put back, as soon as the broker answers
  (a thread tries every second), and runs again on a batch or segment already done, which the
  tasks treat as any duplicate delivery. Without this it came back only after the visibility
  timeout, and its job waited that long.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Any

from celery import Celery, bootsteps
from celery.worker import state
from redis.exceptions import ConnectionError as RedisConnectionError

from posequeue.logs import get_logger

log = get_logger(__name__)

_orphans: set[str] = set()  # delivery tags a closed channel could not restore
_unacked: set[str] = set()  # delivery tags of finished tasks whose acknowledgement was lost
_lock = threading.Lock()
_installed = False


def orphans() -> set[str]:
    """The delivery tags waiting to be put back (a copy)."""
    with _lock:
        return _orphans | _unacked


def install(app: Celery) -> None:
    """Patch kombu's Redis channel and add the consumer step to ``app`` (once per process)."""
    global _installed, _app
    if _installed:
        return
    _installed, _app = True, app
    _patch_kombu()
    app.steps["consumer"].add(RestoreOrphans)


def _patch_kombu() -> None:
    from kombu.transport import redis as kombu_redis

    channel: Any = kombu_redis.Channel
    connparams = channel._connparams

    def _connparams(self: Any, asynchronous: bool = False) -> Any:
        if self.connection.client is None:  # the transport was detached from its connection
            raise RedisConnectionError("the broker connection was closed after it was lost")
        return connparams(self, asynchronous=asynchronous)

    channel._connparams = _connparams

    qos: Any = kombu_redis.QoS
    restore_unacked = qos.restore_unacked

    def restore_or_remember(self: Any, client: Any = None) -> Any:
        tags = list(self._delivered)
        try:
            return restore_unacked(self, client)
        except self.channel.connection_errors:
            with _lock:
                _orphans.update(tags)
            self._delivered.clear()
            raise

    qos.restore_unacked = restore_or_remember

    from kombu.message import Message

    ack_log_error = Message.ack_log_error

    @functools.wraps(ack_log_error)  # keeps its name: Celery's prefork pool looks for it
    def ack_or_remember(self: Any, logger: Any, errors: Any, multiple: bool = False) -> None:
        try:
            self.ack(multiple=multiple)
        except errors as exc:
            if isinstance(exc, BrokenPipeError):
                raise
            log.warning("worker.ack_lost", delivery_tag=self.delivery_tag, reason=repr(exc))
            with _lock:
                _unacked.add(self.delivery_tag)
            _restore_soon()

    Message.ack_log_error = ack_or_remember  # type: ignore[method-assign]


_app: Celery | None = None
_retrying = threading.Event()  # set while a thread is putting back lost acknowledgements


def _restore_soon() -> None:
    """Put back the remembered messages from a thread, once a second until the broker answers
    (a failed acknowledgement comes after the consumer reconnected, or before it does)."""
    if _app is None or _retrying.is_set():
        return
    _retrying.set()

    def retry() -> None:
        while True:
            while orphans():
                try:
                    n = restore_orphans(_app)
                except Exception:
                    time.sleep(1.0)
                    continue
                if n:
                    log.warning("worker.restored_after_broker_loss", messages=n)
            _retrying.clear()
            # A tag added between the last look and the clear found the flag still set.
            if not orphans() or _retrying.is_set():
                return
            _retrying.set()

    threading.Thread(target=retry, name="posequeue-restore", daemon=True).start()


def restore_orphans(app: Celery) -> int:
    """Put the remembered messages this worker is not running back at the head of their queues
    (kombu's own restore: from the ``unacked`` hash, where the broker kept them); how many. A
    running task's message is given up: its task acknowledges it, or the visibility timeout
    returns it."""
    running = {r.message.delivery_tag for r in tuple(state.active_requests) if r.message is not None}
    with _lock:  # a finished task's lost acknowledgement goes back even if not yet off the list
        tags = sorted((_orphans - running) | _unacked)
        _orphans.clear()
        _unacked.clear()
    if not tags:
        return 0
    restored = 0
    try:
        with app.connection_for_write() as conn:
            qos = conn.default_channel.qos
            for tag in tags:
                qos.restore_by_tag(tag, leftmost=True)
                restored += 1
    except Exception:
        with _lock:  # the broker went away again: the next connection tries the rest
            _unacked.update(tags[restored:])
        raise
    return restored


class RestoreOrphans(bootsteps.StartStopStep):
    """After each (re)connection: the messages the lost connection held go back to their queues."""

    requires = ("celery.worker.consumer.connection:Connection",)

    def start(self, c: Any) -> None:
        try:
            n = restore_orphans(c.app)
        except Exception as exc:
            log.warning("worker.restore_failed", reason=repr(exc), waiting=len(orphans()))
            _restore_soon()  # the thread tries again every second
            return
        if n:
            log.warning("worker.restored_after_broker_loss", messages=n)
