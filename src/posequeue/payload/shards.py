"""Which Redis holds a batch's payload.

By default the broker does (one Redis for everything). ``POSEQUEUE_PAYLOAD_URLS`` names one or
more Redis servers for payloads instead: each batch's hash (its meta and pixels) lives on the
server its key hashes to, so payload bandwidth grows with servers while the broker carries
only messages and job state. Every producer and worker must be given the same list, in the
same order (the key's hash picks by position).

A payload server that restarts loses the batches it held, as a Redis restart always did: the
stage that then reads such a batch finds it gone and the job fails saying so (``infer``). While
a payload server cannot be reached, ``Jobs`` raises ``PayloadUnreachable``, a store error, which
the task failure policy retries (``policy.py``) before it fails the job. Delivery counters and
job state stay on the broker.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

import redis

from posequeue.errors import PayloadUnreachable


@contextlib.contextmanager
def reaching() -> Iterator[None]:
    """Payload I/O: a server that cannot be reached raises ``PayloadUnreachable``."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise unreachable(exc) from exc


def unreachable(exc: Exception) -> PayloadUnreachable:
    """The error for a payload server that cannot be reached, saying what to check."""
    return PayloadUnreachable(
        f"a payload Redis could not be reached ({exc}); check the servers in "
        "POSEQUEUE_PAYLOAD_URLS (or the broker, when it is unset) and submit the video again"
    )


class PayloadServers:
    """The Redis clients that hold payloads, and which one holds a key."""

    def __init__(self, clients: list[Any], broker: Any) -> None:
        if not clients:
            raise ValueError("PayloadServers needs at least one Redis client")
        self.clients, self.broker = clients, broker

    @classmethod
    def from_urls(cls, urls: list[str], broker: Any) -> PayloadServers:
        """Clients for ``urls``; a URL equal to the broker's reuses the broker's client."""
        own = broker.connection_pool.connection_kwargs
        clients = []
        for url in urls:
            client = redis.Redis.from_url(url)
            same = {
                k: client.connection_pool.connection_kwargs.get(k) for k in ("host", "port", "db", "path")
            }
            clients.append(broker if same == {k: own.get(k) for k in same} else client)
        return cls(clients, broker)

    @property
    def on_broker(self) -> bool:
        """Payloads live on the broker (the default): a batch's reads go in one round trip."""
        return self.clients == [self.broker]

    def client(self, key: str) -> Any:
        """The server that holds ``key``: by the key's CRC-32, so every process agrees."""
        if len(self.clients) == 1:
            return self.clients[0]
        return self.clients[zlib.crc32(key.encode()) % len(self.clients)]

    def by_client(self, keys: Iterable[str]) -> list[tuple[Any, list[str]]]:
        """``keys`` grouped by the server that holds them, for one pipeline per server."""
        groups: dict[int, tuple[Any, list[str]]] = {}
        for key in keys:
            client = self.client(key)
            groups.setdefault(id(client), (client, []))[1].append(key)
        return list(groups.values())

    def describe(self) -> list[str]:
        """Where payloads live, for logs and ``posequeue plan`` (no passwords)."""
        out = []
        for client in self.clients:
            kw = client.connection_pool.connection_kwargs
            where = kw.get("path") or f"{kw.get('host')}:{kw.get('port')}"
            out.append(f"{where}/{kw.get('db', 0)}" + (" (broker)" if client is self.broker else ""))
        return out
