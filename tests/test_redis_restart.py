"""Redis restarts: a waiting client rides out Redis going away and coming back on its append-only
file; a job whose record vanished (Redis without persistence) is reported lost, never a
``KeyError``."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from chaos import RedisServer  # noqa: E402

from posequeue.config.schemas import JobStatus  # noqa: E402
from posequeue.jobs import Jobs, job_key  # noqa: E402
from posequeue.producer.submit import wait  # noqa: E402


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own (append-only file in tmp_path), to crash at will."""
    server = RedisServer(tmp_path / "redis")
    yield server
    server.close()


def _job(jobs: Jobs) -> str:
    return jobs.create(job_id=Jobs.new_id(), model="blazepose", video="v.mp4", batch_size=8, source="v.mp4")


def test_wait_rides_out_a_redis_crash(own_redis: RedisServer) -> None:
    """A client waiting on a job keeps waiting through a Redis SIGKILL and restart on the same
    append-only file, then sees the job end."""
    jobs = Jobs.from_url(own_redis.url)
    job_id = _job(jobs)
    own_redis.client().config_set("appendfsync", "always")  # the record is on disk before the crash
    got: dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: got.update(job=wait(job_id, jobs, poll=0.05, redis_patience=60)))
    waiter.start()
    own_redis.crash()
    own_redis.start()
    jobs.finish(job_id, {"json": "file:///r.json"}, 1.0)
    waiter.join(timeout=60)
    assert got["job"].status is JobStatus.DONE and got["job"].job_id == job_id


def test_vanished_job_is_reported_lost(own_redis: RedisServer) -> None:
    """A job whose record is gone (Redis restarted without persistence) ends the wait as lost,
    saying what to do; no KeyError."""
    jobs = Jobs.from_url(own_redis.url)
    job_id = _job(jobs)
    jobs.r.delete(job_key(job_id))
    job = wait(job_id, jobs, poll=0.05, timeout=5)
    assert job.status is JobStatus.LOST and job.error is not None
    assert "submit the video again" in job.error and "appendonly" in job.error
