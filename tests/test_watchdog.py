"""The job watchdog: a lost ingest or finalise message is sent again and the job ends done with
every frame exactly once; a job no ingest worker takes fails with the reason, and a waiting client
always gets an answer."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import redis
from conftest import SAMPLE, posequeue

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from chaos import job_message, lose_messages, wait_until  # noqa: E402

from posequeue.config.celery_app import FINALIZE_TASK, INGEST_TASK  # noqa: E402
from posequeue.config.queues import INGEST  # noqa: E402
from posequeue.jobs import Jobs  # noqa: E402

pytestmark = pytest.mark.integration

FAST = {
    "POSEQUEUE_WATCHDOG_INTERVAL": "1",
    "POSEQUEUE_INGEST_STALL": "3",
    "POSEQUEUE_SEGMENT_SECONDS": "1",
}


def _env(isolated: dict[str, str], **extra: str) -> dict[str, str]:
    return {**isolated, **FAST, **extra}


def _worker_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("POSEQUEUE_")}


def _submit(env: dict[str, str], *extra: str) -> dict:
    out = posequeue("submit", str(SAMPLE), "--json", *extra, env=env)
    return json.loads(out.stdout.splitlines()[-1])


def _end(job_id: str, env: dict[str, str], timeout: float = 120) -> dict:
    def ended() -> dict | None:
        job = json.loads(posequeue("status", job_id, "--json", env=env).stdout)
        return job if job["status"] not in ("queued", "running") else None

    job = wait_until(ended, timeout, 0.3)
    assert job is not None, f"job {job_id} did not end in {timeout} s"
    return job


def _frames(job_id: str, env: dict[str, str]) -> list[int]:
    return [f["index"] for f in json.loads(posequeue("results", job_id, env=env).stdout)["frames"]]


def _lose(r: redis.Redis, job_id: str, task: str) -> int:
    return lose_messages(r, INGEST, job_id, task)


def _enqueued(r: redis.Redis, job_id: str) -> int:
    return Jobs(r).get(job_id).batches_enqueued


def _status(job_id: str, env: dict[str, str]) -> dict:
    return json.loads(posequeue("status", job_id, "--json", env=env).stdout)


def test_lost_first_ingest_message_is_sent_again(isolated, start_worker) -> None:
    """A job whose first ingest message was lost before any worker took it is not left queued:
    the message is sent again and the job ends done with every frame once."""
    env = _env(isolated)
    r = redis.Redis.from_url(env["POSEQUEUE_BROKER_URL"])
    job_id = _submit(env)["job_id"]
    assert _lose(r, job_id, INGEST_TASK) == 1
    producer = start_worker(**_worker_env(env))  # every queue
    job = _end(job_id, env)
    assert job["status"] == "done", job.get("error")
    assert _frames(job_id, env) == list(range(90))
    assert '"watchdog.resent_ingest"' in producer.log.read_text()


def test_ingest_chain_lost_with_its_host_is_resumed(isolated, start_worker) -> None:
    """An ingest worker killed with the chain's next message (lost with it) does not leave the
    job running for good: another ingest worker sends the saved cursor again, and the job ends
    done with every frame exactly once."""
    env = _env(isolated, POSEQUEUE_MAX_REDIS_MB="8")  # one batch at a time: the chain soon waits
    r = redis.Redis.from_url(env["POSEQUEUE_BROKER_URL"])
    first = start_worker("--stage", "ingest", **_worker_env(env))
    job_id = _submit(env)["job_id"]
    assert wait_until(
        lambda: _status(job_id, env).get("frames_done", 0) == 0 and _enqueued(r, job_id) >= 1, 60
    )
    os.killpg(first.proc.pid, signal.SIGKILL)
    first.proc.wait()
    _lose(r, job_id, INGEST_TASK)
    producer = start_worker("--stage", "ingest", **_worker_env(env))
    start_worker("--stage", "detector", **_worker_env(env))
    start_worker("--stage", "landmarks", **_worker_env(env))
    job = _end(job_id, env)
    assert job["status"] == "done", job.get("error")
    assert _frames(job_id, env) == list(range(90))
    assert '"watchdog.resent_ingest"' in producer.log.read_text()


def test_lost_finalize_message_is_sent_again(isolated, start_worker) -> None:
    """A finalise message lost after every batch finished is sent again: the job ends done with
    every frame once, not failed with a stall that names an empty queue."""
    env = _env(isolated)
    r = redis.Redis.from_url(env["POSEQUEUE_BROKER_URL"])
    first = start_worker("--stage", "ingest", **_worker_env(env))
    start_worker("--stage", "detector", **_worker_env(env))
    job_id = _submit(env)["job_id"]
    assert wait_until(lambda: _status(job_id, env).get("batches_total"), 60)  # every frame queued
    os.killpg(first.proc.pid, signal.SIGKILL)  # no ingest worker: finalise waits on the queue
    first.proc.wait()
    _lose(r, job_id, INGEST_TASK)
    start_worker("--stage", "landmarks", **_worker_env(env))
    assert wait_until(lambda: job_message(r, INGEST, job_id, FINALIZE_TASK), 60)
    assert _lose(r, job_id, FINALIZE_TASK) >= 1
    producer = start_worker("--stage", "ingest", **_worker_env(env))
    job = _end(job_id, env)
    assert job["status"] == "done", job.get("error")
    assert _frames(job_id, env) == list(range(90))
    assert '"watchdog.resent_finalize"' in producer.log.read_text()


def test_queued_job_without_ingest_worker_fails(isolated, start_worker) -> None:
    """With no worker on the ingest queue, ``submit --wait`` (no --timeout) returns: the job
    fails after POSEQUEUE_QUEUED_TIMEOUT, saying no worker consumes the ingest queue."""
    env = _env(isolated, POSEQUEUE_QUEUED_TIMEOUT="3")
    start_worker("--stage", "detector", **_worker_env(env))
    started = time.monotonic()
    job = _submit(env, "--wait")
    assert time.monotonic() - started < 60
    assert job["status"] == "failed"
    assert "no ingest worker took this job in" in job["error"] and "no worker consumes it" in job["error"]
