"""Looking for lost batches: which batches a stage queue or a worker holds, read from the
messages Celery and kombu put in Redis (the end-to-end test is in test_reliability.py)."""

from __future__ import annotations

import json

import pytest

from posequeue.config.catalogue import get_model
from posequeue.config.celery_app import INFER_TASK, app
from posequeue.config.queues import stage_queue
from posequeue.producer.recover import _held


@pytest.fixture
def queue(jobs, anymotion):
    """A stage queue no worker serves (the spec is known to this process only); emptied before
    (another test's job may have left batches on it) and after."""
    name = stage_queue(anymotion, "pose")
    jobs.r.delete(name)
    yield name
    jobs.r.delete(name)


def test_held_reads_queued_and_unacked_messages(jobs, queue, anymotion, monkeypatch) -> None:
    """A batch is held when its message waits on the model's stage queue or sits in ``unacked``
    (taken by a worker); other jobs' messages and other queues' unacked entries do not count."""
    import structlog

    from posequeue.producer import recover

    # Its own logger: the module's cached one may write to a stream an in-process CLI test closed.
    monkeypatch.setattr(recover, "log", structlog.get_logger(recover.__name__))
    spec = get_model(anymotion)
    for job_id, index in (("job-a", 0), ("job-a", 2), ("job-b", 1)):
        app.send_task(INFER_TASK, args=[job_id, index, "pose"], queue=queue)
    taken = jobs.r.rpop(queue)  # as a worker's BRPOP takes the oldest, then records it:
    jobs.r.hset("unacked", "test-tag", json.dumps([json.loads(taken), "", queue]))
    jobs.r.hset("unacked", "other-tag", json.dumps([{"body": "not ours"}, "", "ingest"]))
    try:
        assert _held(jobs, spec, "job-a", [0, 1, 2, 3]) == {0, 2}
        jobs.r.hdel("unacked", "test-tag")  # the taken message lost
        assert _held(jobs, spec, "job-a", [0, 1, 2, 3]) == {2}
        jobs.r.lpush(queue, b"{not a message")  # a message it cannot read: nothing is re-sent
        with structlog.testing.capture_logs() as logs:
            assert _held(jobs, spec, "job-a", [0, 1, 2, 3]) == {0, 1, 2, 3}
        assert [e["event"] for e in logs] == ["recover.unreadable"]
    finally:
        jobs.r.hdel("unacked", "test-tag", "other-tag")
