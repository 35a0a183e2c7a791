"""The one failure policy of the job tasks (posequeue.policy), seen from real workers on a real
Redis: store errors are retried, work of a job no longer running is skipped, and anything
unexpected fails the job with its reason and a logged traceback."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import SAMPLE, posequeue
from helpers import wait_job

from posequeue.config import keys
from posequeue.jobs import Jobs
from posequeue.worker.tasks import MAX_DELIVERIES

pytestmark = pytest.mark.integration


def until(condition: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def events(log: Path, name: str) -> list[dict[str, Any]]:
    lines = (json.loads(x) for x in log.read_text().splitlines() if x.startswith("{"))
    return [x for x in lines if x.get("event") == name]


def submit(env: dict[str, str]) -> str:
    out = posequeue("submit", str(SAMPLE), "--json", env=env)
    assert out.returncode == 0, out.stderr
    return str(json.loads(out.stdout.splitlines()[-1])["job_id"])


def run_once(task: Any, queue: str, *args: Any, **kwargs: Any) -> None:
    """One delivery of ``task`` in this process, as a worker's tracer calls it (the request
    pushed, not called directly); a deferral is sent to ``queue``, which no worker reads."""
    info = {"exchange": "", "routing_key": queue}
    task.push_request(
        id=uuid.uuid4().hex, args=list(args), kwargs=kwargs, delivery_info=info, called_directly=False
    )
    try:
        task(*args, **kwargs)
    finally:
        task.pop_request()


def test_a_store_error_is_retried_and_the_job_then_finishes(isolated, start_worker, s3_server) -> None:
    """A store that fails for a while (its bucket appears only after a batch was deferred more
    often than a crashing batch may start, and longer than the three retries that stages once
    gave a store error) costs retries, not the job: the task defers itself, backing off up to
    POSEQUEUE_STORE_PATIENCE as finalise does, and a later try succeeds."""
    import boto3

    bucket = f"pq-policy-{uuid.uuid4().hex[:8]}"
    env = {"POSEQUEUE_BROKER_URL": isolated["POSEQUEUE_BROKER_URL"]}
    # A short visibility timeout keeps the backoff short (under half of it): 2 s, then 4 s.
    short = {"POSEQUEUE_VISIBILITY_TIMEOUT": "8", "POSEQUEUE_TASK_TIME_LIMIT": "6"}
    worker = start_worker(**env, **short, POSEQUEUE_STORE=f"s3://{bucket}/results")
    job_id = submit(isolated)  # the client reads the video in place (its store is a folder)
    # More retries of one batch than MAX_DELIVERIES: deferrals are not crashed starts.
    until(
        lambda: any(e["retries"] > MAX_DELIVERIES for e in events(worker.log, "infer.deferred")),
        timeout=90,
        what="a batch deferred more often than MAX_DELIVERIES",
    )
    boto3.client("s3").create_bucket(Bucket=bucket)
    job = wait_job(Jobs.from_url(env["POSEQUEUE_BROKER_URL"]), job_id, timeout=120)
    assert job["status"] == "done", job.get("error")
    assert job["frames_done"] == 90 and job["results"]["json"].startswith(f"s3://{bucket}/")
    assert "retry: Retry in" not in worker.log.read_text()  # deferred, no Retry raised


def test_work_of_a_job_no_longer_running_is_skipped(isolated, start_worker) -> None:
    """Messages of a job that failed meanwhile are not worked on: its queued batches are dropped
    and its ingest chain ends, each with a ``.stale`` log line; the job keeps its reason."""
    env = {k: isolated[k] for k in ("POSEQUEUE_BROKER_URL", "POSEQUEUE_STORE")}
    r = redis.Redis.from_url(env["POSEQUEUE_BROKER_URL"])
    jobs = Jobs.from_url(env["POSEQUEUE_BROKER_URL"])
    # A memory budget of one batch: the chain soon waits, its next message pending.
    slow = {"POSEQUEUE_MAX_REDIS_MB": "8"}
    ingest = start_worker("--stage", "ingest", **env, **slow)
    job_id = submit(isolated)
    until(lambda: r.exists(keys.batch_key(job_id, 0)), what="the first batch")
    ingest.stop()  # its next message (next segment, or a deferral) goes back to the queue
    assert jobs.fail(job_id, "stopped by the test")
    enqueued = jobs.get(job_id).batches_enqueued
    worker = start_worker(**env)
    until(lambda: events(worker.log, "ingest.stale"), what="the ingest chain to end")
    # Failing the job already drops its batches (the memory budget's release), so wait for every
    # queued batch's task to have been skipped, not for the batches to be gone.
    until(lambda: len(events(worker.log, "infer.stale")) >= enqueued, what="every batch task skipped")
    assert not any(r.exists(keys.batch_key(job_id, i)) for i in range(enqueued))
    stale = events(worker.log, "infer.stale")
    assert stale and all(e["reason"] == "job is failed" and e["job_id"] == job_id for e in stale)
    assert not events(worker.log, "infer.batch")  # no model ran for the failed job
    job = jobs.get(job_id)
    assert job.error == "stopped by the test" and job.frames_done == 0


def test_an_unexpected_error_fails_the_job_with_its_reason_and_traceback(isolated, start_worker) -> None:
    """A batch whose pixels were cut short (an error no check foresees: numpy cannot reshape
    them) fails its job naming the stage, the batch and the exception, its traceback is in the
    worker's log, and the worker goes on with the next job."""
    env = {k: isolated[k] for k in ("POSEQUEUE_BROKER_URL", "POSEQUEUE_STORE")}
    r = redis.Redis.from_url(env["POSEQUEUE_BROKER_URL"])
    jobs = Jobs.from_url(env["POSEQUEUE_BROKER_URL"])
    start_worker("--stage", "ingest", **env)
    job_id = submit(isolated)
    until(lambda: r.exists(keys.batch_key(job_id, 0)), what="the first batch")
    r.hset(keys.batch_key(job_id, 0), "frames", b"\x00" * 5)
    worker = start_worker("--stage", "detector", **env)
    job = wait_job(jobs, job_id, timeout=60)
    assert job["status"] == "failed"
    assert job["error"].startswith("internal error in stage detector on batch 0: ValueError(")
    [error] = [e for e in events(worker.log, "infer.error") if e["job_id"] == job_id]
    assert "Traceback" in error["exception"] and "reshape" in error["exception"]
    start_worker("--stage", "landmarks", **env)
    nxt = posequeue("submit", str(SAMPLE), "--wait", "--json", env=isolated)
    assert json.loads(nxt.stdout.splitlines()[-1])["status"] == "done"  # the workers go on


def test_a_run_stopped_by_the_time_limit_is_tried_again_then_fails_the_job(jobs) -> None:
    """A run that Celery's soft time limit stops (a host overloaded for a while) is deferred and
    tried again, MAX_TIMEOUTS times; the next one fails the job saying which settings to change,
    not as an internal error."""
    from celery.exceptions import SoftTimeLimitExceeded

    from posequeue.config.celery_app import app
    from posequeue.policy import MAX_TIMEOUTS, TIMEOUTS, JobTask

    @app.task(base=JobTask, bind=True, name="tests.policy.slow")
    def slow(self: JobTask, job_id: str) -> None:
        raise SoftTimeLimitExceeded()

    queue = f"tests.policy.{uuid.uuid4().hex[:8]}"  # where the deferred runs go: no worker reads it
    job_id = jobs.create(job_id=Jobs.new_id(), model="blazepose", video="v.mp4", batch_size=8, source="v.mp4")
    jobs.mark_running(job_id, {})
    try:
        for n in range(MAX_TIMEOUTS + 1):
            run_once(slow, queue, job_id, **({TIMEOUTS: n} if n else {}))
            status = jobs.get(job_id).status.value
            assert status == ("running" if n < MAX_TIMEOUTS else "failed"), n
            assert jobs.r.llen(queue) == min(n + 1, MAX_TIMEOUTS)  # deferred: sent again
        error = jobs.get(job_id).error or ""
        assert "ran past its time limit" in error and "POSEQUEUE_TASK_TIME_LIMIT" in error
        assert f"{MAX_TIMEOUTS + 1} times" in error
    finally:
        jobs.r.delete(queue)


def test_a_store_refusing_credentials_fails_the_job_at_once(jobs) -> None:
    """A store error that waiting does not end (S3's AccessDenied, a read-only folder) fails the
    job on its first run with the store's reason; an outage is deferred and waited out."""
    from botocore.exceptions import ClientError

    from posequeue.config.celery_app import app
    from posequeue.policy import JobTask
    from posequeue.store import S3Store

    store = S3Store("s3://b/results", client=object())
    denied = store._guard("write", "jobs/x", ClientError({"Error": {"Code": "AccessDenied"}}, "PutObject"))
    away = store._guard("write", "jobs/x", ClientError({"Error": {"Code": "NoSuchBucket"}}, "PutObject"))
    assert denied.lasting and not away.lasting

    @app.task(base=JobTask, bind=True, name="tests.policy.store")
    def write(self: JobTask, job_id: str, lasting: bool) -> None:
        raise denied if lasting else away

    queue = f"tests.policy.{uuid.uuid4().hex[:8]}"  # where the deferred run goes: no worker reads it
    try:
        for lasting, status in ((False, "running"), (True, "failed")):
            job_id = jobs.create(job_id=Jobs.new_id(), model="blazepose", video="v", batch_size=8, source="v")
            jobs.mark_running(job_id, {})
            run_once(write, queue, job_id, lasting)
            job = jobs.get(job_id)
            assert job.status.value == status, job.error
        assert job.error == "cannot write s3://b/results/jobs/x: AccessDenied"
        assert jobs.r.llen(queue) == 1  # only the outage was deferred
    finally:
        jobs.r.delete(queue)


def test_a_deferral_of_another_kind_starts_the_policys_counts_again(jobs) -> None:
    """A task deferred for another reason (a full budget, a held lock) sends its message again
    without the policy's counts: a store outage met later gets the whole patience, not what was
    left of an earlier one's."""
    import base64

    from posequeue.config.celery_app import POLICY_KWARGS, app, defer
    from posequeue.policy import STORE_FAILURES, STORE_SINCE, JobTask

    @app.task(base=JobTask, bind=True, name="tests.policy.waits")
    def waits(self: JobTask, job_id: str, **_: Any) -> None:
        defer(self, 1.0)

    queue = f"tests.policy.{uuid.uuid4().hex[:8]}"
    job_id = jobs.create(job_id=Jobs.new_id(), model="blazepose", video="v", batch_size=8, source="v")
    jobs.mark_running(job_id, {})
    try:
        run_once(waits, queue, job_id, **{STORE_FAILURES: 3, STORE_SINCE: time.time() - 800, "other": 1})
        [raw] = jobs.r.lrange(queue, 0, -1)
        _, sent, _ = json.loads(base64.b64decode(json.loads(raw)["body"]))
        assert sent == {"other": 1} and not set(POLICY_KWARGS) & set(sent)
    finally:
        jobs.r.delete(queue)
        jobs.fail(job_id, "test over")
