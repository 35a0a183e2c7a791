"""Operational errors (Redis down, credentials refused, TLS that does not match the server) end a
client command with one line naming the URL, password masked, and what to check: no traceback."""

from __future__ import annotations

import os
import socket

import pytest
from conftest import SAMPLE, posequeue

from posequeue.unreachable import EXIT_UNAVAILABLE, masked


def test_masked_hides_passwords() -> None:
    """Passwords in the authority or the query never reach the message; the rest stays."""
    assert masked("redis://:s3cret@redis.internal:6380/2") == "redis://:***@redis.internal:6380/2"
    assert masked("rediss://app:s3cret@h/0?ssl_cert_reqs=none") == "rediss://app:***@h/0?ssl_cert_reqs=none"
    assert masked("redis://h:6379/0?password=s3cret") == "redis://h:6379/0?password=***"
    assert masked("redis://h:6379/0") == "redis://h:6379/0"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def broker():
    """Runs ``posequeue ARGS`` with POSEQUEUE_BROKER_URL set (a process of its own: the command
    configures logging to its stderr, which a test's captured stream would not outlive)."""

    def run(url: str, *argv: str) -> tuple[int, str]:
        out = posequeue(*argv, env={**os.environ, "POSEQUEUE_BROKER_URL": url}, timeout=60)
        return out.returncode, out.stderr

    return run


COMMANDS = [
    ["submit", str(SAMPLE)],
    ["submit", str(SAMPLE), "--wait", "--json"],
    ["status", "0123"],
    ["queues"],
    ["results", "0123"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a[:2]).replace(str(SAMPLE), "VIDEO"))
def test_redis_unreachable(argv: list[str], broker) -> None:
    """Redis not listening: exit 3, one line naming the masked URL and what to check."""
    url = f"redis://:hunter2@127.0.0.1:{_free_port()}/0"
    code, err = broker(url, *argv)
    assert code == EXIT_UNAVAILABLE
    assert err.count("\n") == 1 and "Traceback" not in err and "hunter2" not in err
    assert f"cannot reach Redis at redis://:***@127.0.0.1:{url.rsplit(':', 1)[1]}" in err
    assert "check POSEQUEUE_BROKER_URL" in err


def test_redis_password_refused(broker, redis_url) -> None:
    """A password the server refuses: exit 3, one line about the credentials, password masked."""
    host = redis_url.split("//", 1)[1]
    code, err = broker(f"redis://nobody:wrong@{host}", "status", "0123")
    assert code == EXIT_UNAVAILABLE
    assert err.count("\n") == 1 and "Traceback" not in err and ":wrong@" not in err
    assert "refused the credentials" in err and "nobody:***@" in err


@pytest.mark.parametrize("query", ["", "?ssl_cert_reqs=bogus"], ids=["tls-to-plain", "bad-option"])
def test_tls_misconfigured(query: str, broker, redis_url) -> None:
    """TLS against a server without it, or a TLS option with no meaning: one line about TLS."""
    code, err = broker("rediss://" + redis_url.split("//", 1)[1] + query, "queues")
    assert code == EXIT_UNAVAILABLE
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: TLS with Redis at rediss://") and "ssl_cert_reqs" in err
