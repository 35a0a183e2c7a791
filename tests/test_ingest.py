"""The ingest task as a worker's pool process runs it: through Celery's tracer, against Redis."""

from __future__ import annotations

import gc
import uuid
from collections import Counter
from collections.abc import Iterator, MutableMapping
from types import FrameType, TracebackType
from typing import Any

import pytest

from posequeue.config.schemas import Cursor, JobStatus


@pytest.fixture
def throttled_job(jobs):
    """A running job that the memory budget holds back (another job holds all of it), so every
    ingest run defers itself; failed at the end so the deferred messages left on the ingest
    queue are dropped as stale."""
    job_id = jobs.create(
        job_id=jobs.new_id(), model="blazepose", video="/nonexistent.mp4", batch_size=8, source="test"
    )
    info = {"width": 640, "height": 360, "fps": 30.0}
    jobs.mark_running(job_id, info)
    other = jobs.new_id()
    assert jobs.budget.acquire(other, 0, jobs.budget.limit, 60).admitted
    yield job_id
    jobs.fail(job_id, "test over")
    jobs.budget.release_job(other)


@pytest.fixture
def ingest_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[MutableMapping[str, Any]]]:
    """The log lines of the ingest module, ``defer`` and the failure policy, captured (a
    module's cached logger may still write to a stream an earlier in-process CLI test was given
    and has since closed, or bypass the capture)."""
    import structlog

    from posequeue import policy
    from posequeue.config import celery_app
    from posequeue.producer import ingest

    with structlog.testing.capture_logs() as captured:
        for module in (ingest, celery_app, policy):
            monkeypatch.setattr(module, "log", structlog.get_logger(module.__name__))
        yield captured


def _run_in_tracer(job_id: str, retries: int, task_name: str = "ingest") -> str:
    """One delivery of the ingest (or finalise) task through the tracer a pool process uses;
    its state."""
    from celery.app.trace import build_tracer

    from posequeue.config.celery_app import app
    from posequeue.producer.finalize import finalize
    from posequeue.producer.ingest import ingest

    task, args = (ingest, [Cursor(job_id).to_dict()]) if task_name == "ingest" else (finalize, [job_id])
    tracer = build_tracer(task.name, task, app=app, hostname="test@host", store_errors=False)
    task_id = uuid.uuid4().hex
    request = {
        "id": task_id,
        "retries": retries,
        "hostname": "test@host",
        "is_eager": False,
        "delivery_info": {"exchange": "", "routing_key": "ingest", "priority": 0},
    }
    traced = tracer(task_id, args, {}, request)
    return str(traced.info.state) if traced.info else "SUCCESS"


@pytest.mark.integration
def test_backpressure_pins_no_frames(throttled_job, jobs, ingest_logs) -> None:
    """A deferred ingest run leaves no frame or traceback for the cyclic garbage collector: a
    raised Retry did (Celery's frames and the task's, with their locals, and billiard's copy of
    them: ~0.37 MB a run), and a producer throttled by the budget defers a few times a segment."""
    # Given a job that the budget holds back, and a process with no garbage pending
    assert jobs.status(throttled_job) is JobStatus.RUNNING
    _run_in_tracer(throttled_job, 0)  # warm-up: imports, connections, caches
    gc.collect()
    # When the task defers itself 20 times, as the worker's tracer runs it
    states = {_run_in_tracer(throttled_job, n) for n in range(1, 21)}
    # Then no frame waits for a collection, and each run deferred itself without failing
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        pinned = Counter(type(o).__name__ for o in gc.garbage if isinstance(o, (FrameType, TracebackType)))
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert not pinned, f"20 deferred runs left {dict(pinned)} in reference cycles"
    assert states == {"SUCCESS"}
    assert [e["event"] for e in ingest_logs].count("ingest.deferred") == 21


@pytest.mark.integration
def test_finalize_defers_while_another_holds_the_lock(throttled_job, jobs, ingest_logs) -> None:
    """A finalise that finds the job's lock held defers itself the same way (no ``Retry``
    raised): counted as a success, to run again in 10 s."""
    assert jobs.lock_finalize(throttled_job, 30)  # another finaliser is at work
    assert _run_in_tracer(throttled_job, 0, "finalize") == "SUCCESS"
    [event] = [e for e in ingest_logs if e["event"] == "finalize.deferred"]
    assert event["countdown"] == 10.0 and event["retries"] == 1
    assert jobs.status(throttled_job) is JobStatus.RUNNING


@pytest.mark.integration
def test_a_store_outage_mid_segment_is_not_a_crashed_start(jobs, bucket, ingest_logs) -> None:
    """A segment whose input its store cannot serve (an outage: here, an object not there yet)
    is deferred to be waited out, and that run is not counted as a start that killed its worker:
    more deferrals than MAX_SEGMENT_STARTS leave the job running, not failed as a crashing
    segment (the chaos campaign's S3 outage failed every trial that way)."""
    from posequeue.producer.ingest import MAX_SEGMENT_STARTS

    job_id = jobs.create(
        job_id=jobs.new_id(),
        model="blazepose",
        video=f"s3://{bucket}/later/clip.mp4",
        batch_size=8,
        source="t",
    )
    jobs.mark_running(job_id, {"width": 640, "height": 360, "fps": 30.0})
    try:
        for n in range(MAX_SEGMENT_STARTS + 2):
            assert _run_in_tracer(job_id, n) == "SUCCESS"
        assert jobs.status(job_id) is JobStatus.RUNNING, jobs.get(job_id).error
        errors = [e for e in ingest_logs if e["event"] == "ingest.store_error"]
        assert len(errors) >= MAX_SEGMENT_STARTS + 2 and "cannot open s3://" in errors[0]["error"]
    finally:
        jobs.fail(job_id, "test over")
