"""Small helpers for integration tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Debian's chromium, headless and offline: no background connections (this network refuses them),
# no first-run, update or sync. POSEQUEUE_CHROMIUM names another executable.
CHROMIUM = shutil.which(os.environ.get("POSEQUEUE_CHROMIUM", "chromium")) or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    """A TCP port nobody listens on now (on the loopback address)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_job(jobs: Any, job_id: str, timeout: float = 120) -> dict[str, Any]:
    """Poll until the job ends (or the timeout passes); return its summary."""
    from posequeue.jobs import summary
    from posequeue.producer.submit import wait

    return summary(wait(job_id, jobs, poll=0.1, timeout=timeout))


def load_results(store_root: str, job: dict[str, Any]) -> dict[str, Any]:
    import json

    from posequeue.store import open_store

    return json.loads(open_store(store_root).get_bytes(f"jobs/{job['job_id']}/poses.json"))


@contextlib.contextmanager
def serving(
    cmd: list[str], env: dict[str, str], health_url: str, log: Path, timeout: float = 30
) -> Iterator[subprocess.Popen[bytes]]:
    """Run an HTTP server command until ``health_url`` answers 200; stop it on exit."""
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[-3:]} exited {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(health_url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:  # not listening yet (or not healthy yet)
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{health_url} not answering in {timeout} s:\n{log.read_text()}")
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
