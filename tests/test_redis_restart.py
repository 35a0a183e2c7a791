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
    """A redis-server of this test's own (append-only file in tmp_path, synced on every write:
    a crash loses nothing a client was answered for), to crash at will. What losing the last
    second does (``everysec``) is the fault campaign's ``redis-crash-aof``, not a test here: its
    outcome depends on where the lost second falls (docs/reliability.md)."""
    server = RedisServer(tmp_path / "redis", fsync="always")
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


@pytest.mark.integration
def test_worker_rides_out_a_redis_crash_and_puts_back_what_it_held(own_redis, start_worker, tmp_path) -> None:
    """A worker holding a message not yet due (a countdown) when Redis is SIGKILLed stays up,
    reconnects, and puts the message back on its queue: it runs when due, not after the
    visibility timeout (before: it waited in ``unacked`` for 10 minutes, no worker running it;
    the job test below also saw the worker exit on kombu's AttributeError)."""
    from chaos import wait_until

    from posequeue.config.celery_app import FINALIZE_TASK, make_app
    from posequeue.config.queues import INGEST
    from posequeue.config.settings import Settings

    worker = start_worker(
        "--stage", "ingest", POSEQUEUE_BROKER_URL=own_redis.url, POSEQUEUE_STORE=(tmp_path / "store").as_uri()
    )
    own_redis.client().config_set("appendfsync", "always")  # what the worker holds is on disk
    app = make_app(Settings(broker_url=own_redis.url))
    task_id = app.send_task(FINALIZE_TASK, args=["no-such-job"], queue=INGEST, countdown=3).id
    assert wait_until(lambda: f"{task_id}] received" in worker.log.read_text(), 30)
    own_redis.crash()
    own_redis.start()
    ran = f"posequeue.finalize[{task_id}] succeeded"
    assert wait_until(lambda: ran in worker.log.read_text() or worker.proc.poll() is not None, 60)
    assert worker.proc.poll() is None, worker.log.read_text()[-3000:]


@pytest.mark.integration
def test_job_survives_a_redis_crash_on_its_append_only_file(own_redis, start_worker, tmp_path) -> None:
    """Redis SIGKILLed mid-job and restarted on the same append-only file: workers and the
    waiting client reconnect by themselves, and the job ends done with every frame exactly once."""
    import json
    import os

    from chaos import wait_until
    from conftest import SAMPLE, posequeue

    env = {
        **os.environ,
        "POSEQUEUE_BROKER_URL": own_redis.url,
        "POSEQUEUE_STORE": (tmp_path / "store").as_uri(),
        "POSEQUEUE_WATCHDOG_INTERVAL": "1",
        "POSEQUEUE_INGEST_STALL": "5",
        "POSEQUEUE_SEGMENT_SECONDS": "0.5",
        "POSEQUEUE_MAX_REDIS_MB": "8",
    }
    start_worker(**{k: v for k, v in env.items() if k.startswith("POSEQUEUE_")})
    jobs = Jobs.from_url(own_redis.url)
    job_id = json.loads(posequeue("submit", str(SAMPLE), "--json", env=env).stdout.splitlines()[-1])["job_id"]
    assert wait_until(lambda: jobs.get(job_id).frames_done > 0, 60)
    own_redis.crash()
    own_redis.start()
    job = wait(job_id, jobs, poll=0.2, timeout=180)
    assert job.status is JobStatus.DONE, job.error
    frames = json.loads(posequeue("results", job_id, env=env).stdout)["frames"]
    assert [f["index"] for f in frames] == list(range(90))
