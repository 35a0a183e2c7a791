"""The default CPU worker layout: one single-thread model process per core."""

from __future__ import annotations

import json
import os
import time

import pytest
from conftest import SAMPLE, posequeue

pytestmark = pytest.mark.integration


def test_default_cpu_worker_runs_one_pinned_process_per_core(isolated, start_worker) -> None:
    """``posequeue worker`` with no flags on a CPU host starts a pool child per core, each pinned
    to a core of its own (its runtime then takes one thread), and serves a job end to end."""
    env = {k: isolated[k] for k in ("POSEQUEUE_BROKER_URL", "POSEQUEUE_STORE")}
    worker = start_worker(**env)
    cores = sorted(os.sched_getaffinity(0))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pinned = sorted(tuple(sorted(os.sched_getaffinity(pid))) for pid in worker.children())
        if pinned == [(c,) for c in cores]:
            break
        time.sleep(0.1)
    assert pinned == [(c,) for c in cores]
    out = posequeue("submit", str(SAMPLE), "--wait", "--json", env=isolated)
    assert json.loads(out.stdout.splitlines()[-1])["status"] == "done"


def test_asking_for_a_pool_keeps_one_process(isolated, start_worker) -> None:
    """``--concurrency 1`` (or ``--threads``) is the old layout: one process on every core."""
    env = {k: isolated[k] for k in ("POSEQUEUE_BROKER_URL", "POSEQUEUE_STORE")}
    worker = start_worker("--concurrency", "1", **env)
    deadline = time.monotonic() + 30
    while not worker.children() and time.monotonic() < deadline:
        time.sleep(0.1)
    (child,) = worker.children()
    assert os.sched_getaffinity(child) == os.sched_getaffinity(0)
