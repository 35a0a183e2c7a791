"""The API as an operator runs it, for the API's tests: a ``posequeue api`` process on a free
loopback port, reached over HTTP with httpx."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
from helpers import free_port, serving

TOKENS = ("tok-alpha-0123456789", "tok-beta-9876543210")
SECRET = "callback-secret-for-tests"


def api_env(env: dict[str, str], **extra: str) -> dict[str, str]:
    """``env`` plus the API's settings: two tokens, a callback secret, a 1 MiB upload limit."""
    return {
        **env,
        "POSEQUEUE_API_TOKENS": ",".join(TOKENS),
        "POSEQUEUE_CALLBACK_SECRET": SECRET,
        "POSEQUEUE_API_MAX_UPLOAD_MB": "1",
        **extra,
    }


@contextlib.contextmanager
def serving_api(
    env: dict[str, str], log: Path, health: str = "/healthz"
) -> Iterator[tuple[httpx.Client, subprocess.Popen[bytes]]]:
    """Serve ``posequeue api`` with ``env``; yield a client with the first token, and the process."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "posequeue.cli", "api", "--port", str(port), "--loglevel", "warning"]
    with (
        serving(cmd, env, base + health, log) as proc,
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKENS[0]}"}, timeout=30) as client,
    ):
        yield client, proc


@contextlib.contextmanager
def running_api(env: dict[str, str], log: Path, health: str = "/healthz") -> Iterator[httpx.Client]:
    """Serve ``posequeue api`` with ``env``; yield a client with the first token."""
    with serving_api(env, log, health) as (client, _):
        yield client
