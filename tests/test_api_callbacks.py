"""The callback sender against the test Redis and a real local HTTP receiver: a failed job's
event, a receiver that never answers (tried ATTEMPTS times, then recorded as failed), a job
still running (looked at again, not sent), and two API processes sharing one entry."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import free_port

from posequeue.api.callbacks import ATTEMPTS, Sender
from posequeue.config.keys import CALLBACKS
from posequeue.jobs import Jobs

pytestmark = pytest.mark.integration
SECRET = "s"


class Recorder(http.server.BaseHTTPRequestHandler):
    bodies: list[bytes] = []
    signatures: list[str] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.bodies.append(body)
        self.signatures.append(self.headers["X-Posequeue-Signature"])
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Recorder.bodies, Recorder.signatures = [], []
    server = http.server.HTTPServer(("127.0.0.1", free_port()), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


@pytest.fixture
def sender(jobs: Jobs) -> Iterator[Sender]:
    s = Sender(jobs, SECRET, lambda job: {"id": job.job_id, "status": job.status.value, "error": job.error})
    yield s
    s.stop()


def new_job(jobs: Jobs, url: str) -> str:
    job_id = Jobs.new_id()
    jobs.create(
        job_id=job_id, model="blazepose", video="v.mp4", batch_size=8, source="v.mp4", callback_url=url
    )
    return job_id


def until(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_a_failed_job_calls_back_with_its_error(jobs: Jobs, sender: Sender, receiver: str) -> None:
    """A job that fails sends job.failed with its error, signed over the exact body."""
    job_id = new_job(jobs, receiver)
    jobs.fail(job_id, "the video stopped decoding at 0:12")
    assert sender.run_once(time.time()) >= 1
    until(lambda: jobs.get(job_id).callback_status == "delivered")
    body = Recorder.bodies[-1]
    event = json.loads(body)
    assert event["event"] == "job.failed" and event["job"]["error"] == "the video stopped decoding at 0:12"
    assert Recorder.signatures[-1] == "sha256=" + hmac.new(b"s", body, hashlib.sha256).hexdigest()
    assert jobs.r.zscore(CALLBACKS, job_id) is None


def test_a_running_job_is_looked_at_again_not_sent(jobs: Jobs, sender: Sender, receiver: str) -> None:
    """Until the job ends nothing is posted; its entry comes due again a second later."""
    job_id = new_job(jobs, receiver)
    now = time.time()
    sender.run_once(now)
    until(lambda: (jobs.r.zscore(CALLBACKS, job_id) or 0) < now + 30)  # rescheduled, lease dropped
    assert not Recorder.bodies
    assert now < jobs.r.zscore(CALLBACKS, job_id) <= time.time() + 1.0
    jobs.fail(job_id, "cancelled")
    jobs.r.zrem(CALLBACKS, job_id)  # leave no entry behind for other tests' senders


def test_a_receiver_that_never_answers_is_given_up_on(jobs: Jobs, sender: Sender) -> None:
    """A closed port is tried ATTEMPTS times with growing waits, then the job says why it failed."""
    job_id = new_job(jobs, f"http://127.0.0.1:{free_port()}/gone")
    jobs.fail(job_id, "x")
    for attempt in range(1, ATTEMPTS + 1):
        due = jobs.r.zscore(CALLBACKS, job_id)
        sender.run_once(due)  # as if the backoff had passed
        until(lambda a=attempt: jobs.get(job_id).callback_attempts == a)
        if attempt < ATTEMPTS:
            until(lambda: jobs.get(job_id).callback_status == "retrying")
            wait = jobs.r.zscore(CALLBACKS, job_id) - time.time()
            assert 2 ** (attempt - 1) - 1 < wait <= 2 ** (attempt - 1)
    job = jobs.get(job_id)
    assert job.callback_status == "failed" and "ConnectError" in str(job.callback_error)
    assert jobs.r.zscore(CALLBACKS, job_id) is None


def test_two_api_processes_send_an_attempt_once(jobs: Jobs, sender: Sender, receiver: str) -> None:
    """Two senders looking at the same due entry at once: one claims it, one POST goes out."""
    other = Sender(jobs, SECRET, lambda job: {"id": job.job_id})
    try:
        job_id = new_job(jobs, receiver)
        jobs.fail(job_id, "x")
        now = time.time()
        claims = [sender.run_once(now), other.run_once(now)]
        until(lambda: jobs.get(job_id).callback_status == "delivered")
        assert sorted(claims) == [0, 1]
        assert len(Recorder.bodies) == 1
    finally:
        other.stop()


def test_a_retried_job_calls_back_again(jobs: Jobs, sender: Sender, receiver: str) -> None:
    """After a delivered callback, rearm (what the API's retry does) queues it afresh: the job's
    next end is posted too, counted from the first attempt."""
    from posequeue.api.callbacks import rearm

    job_id = new_job(jobs, receiver)
    jobs.fail(job_id, "first end")
    sender.run_once(time.time())
    until(lambda: jobs.get(job_id).callback_status == "delivered")
    rearm(jobs, job_id)
    assert jobs.get(job_id).callback_status is None and jobs.get(job_id).callback_attempts == 0
    sender.run_once(time.time())
    until(lambda: jobs.get(job_id).callback_status == "delivered")
    assert len(Recorder.bodies) == 2 and jobs.get(job_id).callback_attempts == 1
