"""Job state in a real Redis: the fan-in says "complete" exactly when every batch is in, however
deliveries interleave, and never once the job is done."""

from __future__ import annotations

import threading

import pytest

from posequeue.config import keys
from posequeue.config.schemas import Follow, Job, JobStatus
from posequeue.jobs import Jobs

pytestmark = pytest.mark.compat


@pytest.fixture
def job(jobs: Jobs) -> str:
    job_id = jobs.new_id()
    jobs.create(job_id=job_id, model="blazepose", video="v.mp4", batch_size=8, source="v.mp4")
    jobs.mark_running(job_id, {"width": 4, "height": 3})
    return job_id


def test_last_batch_after_ingest_completes(jobs, job) -> None:
    """When ingest ends first, the delivery completing the set says so; a redelivery of the last
    batch says so again (its first finaliser may have died) until the job is done."""
    assert jobs.ingest_done(job, frames_total=20, batches_total=3, corrupt_packets=0) is False
    assert jobs.batch_done(job, 0, 8) is False
    assert jobs.batch_done(job, 1, 8) is False
    assert jobs.batch_done(job, 2, 4) is True
    assert jobs.batch_done(job, 2, 4) is True  # a second delivery of the last batch
    assert jobs.get(job).frames_done == 20  # counted once
    jobs.finish(job, {"json": "file:///x"}, 1.0)
    assert jobs.batch_done(job, 2, 4) is False


def test_ingest_ending_last_finalises(jobs, job) -> None:
    """When every batch is done before ingest records the totals, ingest's call finalises."""
    for index in range(3):
        assert jobs.batch_done(job, index, 5) is False
    assert jobs.ingest_done(job, frames_total=15, batches_total=3, corrupt_packets=2) is True
    assert jobs.get(job).corrupt_packets == 2


def test_concurrent_duplicate_deliveries(jobs, job) -> None:
    """Many threads delivering every batch twice, racing the end of ingest: nobody sees the job
    complete before every batch is in, and frames are counted once."""
    wins: list[bool] = []
    seen_at_win: list[int] = []  # batches in the done set when a delivery saw the job complete
    lock = threading.Lock()

    def record(won: bool) -> None:
        with lock:
            wins.append(won)
            if won:  # checked after the join: an assert in a thread cannot fail the test
                seen_at_win.append(jobs.r.scard(keys.done_key(job)))

    # 81 threads: redis-py 8's pool holds at most 100 connections and refuses the 101st
    # ("Too many connections") when every thread is in a call at once.
    threads = [
        threading.Thread(target=lambda i=i: record(jobs.batch_done(job, i % 40, 1))) for i in range(80)
    ]
    ender = threading.Thread(
        target=lambda: record(jobs.ingest_done(job, frames_total=40, batches_total=40, corrupt_packets=0))
    )
    for t in [*threads[:48], ender, *threads[48:]]:
        t.start()
    for t in [*threads, ender]:
        t.join()
    assert len(wins) == 81  # every thread ran to its end
    assert wins.count(True) == len(seen_at_win) >= 1
    assert set(seen_at_win) == {40}  # complete only once all 40 batches were in
    assert jobs.get(job).frames_done == 40
    assert jobs.batch_done(job, 7, 1) is True  # complete, not finalised yet


def test_fail_once_and_not_after_done(jobs, job) -> None:
    """A job fails once, keeps its first reason, and a finished job cannot be failed."""
    assert jobs.fail(job, "first reason") is True
    assert jobs.fail(job, "second reason") is False
    assert jobs.get(job).error == "first reason"
    other = jobs.new_id()
    jobs.create(job_id=other, model="blazepose", video="v", batch_size=8, source="v")
    jobs.finish(other, {"json": "file:///x"}, 1.0)
    assert jobs.fail(other, "late") is False and jobs.get(other).status is JobStatus.DONE


def test_inflight_counts_enqueued_minus_done(jobs, job) -> None:
    """Batches in flight are those enqueued and not yet done (the backpressure measure)."""
    jobs.set_enqueued(job, 5)
    jobs.batch_done(job, 0, 8)
    jobs.batch_done(job, 0, 8)
    assert jobs.inflight(job) == 4


def test_unknown_job(jobs) -> None:
    """An unknown job id raises JobNotFound naming it."""
    from posequeue.jobs import JobNotFound

    with pytest.raises(JobNotFound, match="nope"):
        jobs.get("nope")


def test_get_returns_a_typed_record_and_summary_keeps_its_fields_and_order(jobs) -> None:
    """Jobs.get converts every hash field to its declared type; the summary lists the fields a
    job has, in the order clients and the manifest have always seen, and leaves out the rest."""
    from posequeue.jobs import SUMMARY_FIELDS, summary

    job_id = jobs.new_id()
    jobs.create(job_id=job_id, model="blazepose", video="/v.mp4", batch_size=8, source="v.mp4")
    queued = jobs.get(job_id)
    assert isinstance(queued, Job) and queued.status is JobStatus.QUEUED
    assert (queued.batch_size, queued.frames_done, queued.video_info, queued.results) == (8, 0, {}, {})
    assert (queued.people, queued.follow, queued.video_mode) == (1, Follow.MOST_PRESENT, False)
    assert list(summary(queued)) == [
        "job_id",
        "status",
        "model",
        "video",
        "frames_done",
        "batches_done",
        "submitted_at",
        "people",
        "follow",
        "video_mode",
    ]
    jobs.mark_running(job_id, {"width": 4, "height": 3, "fps": 30.0, "frame_count": 9})
    assert jobs.get(job_id).frames_expected == 9  # the probe's count until ingest ends
    jobs.ingest_done(job_id, frames_total=8, batches_total=1, corrupt_packets=1)
    assert jobs.batch_done(job_id, 0, 8)
    jobs.finish(job_id, {"json": "file:///p.json"}, finished_at=queued.submitted_at + 2.5)
    done = jobs.get(job_id)
    assert done.status is JobStatus.DONE and done.frames_expected == 8
    assert isinstance(done.started_at, float) and done.results == {"json": "file:///p.json"}
    assert (done.frames_done, done.frames_total, done.batches_total, done.corrupt_packets) == (8, 8, 1, 1)
    out = summary(done)
    assert list(out) == [f for f in SUMMARY_FIELDS if f not in ("error", "warnings", "callback_url")] + [
        "elapsed_s"
    ]
    assert out["status"] == "done" and type(out["status"]) is str and out["elapsed_s"] == 2.5


def test_a_job_ends_done_with_its_analysis_already_queued(jobs, job) -> None:
    """The job's end and its analysis's queueing are one step: no reader sees it done without
    its analysis, and the watchdog's list of analyses has it (a finaliser that dies before
    sending the message leaves it to the watchdog)."""
    from posequeue.analysis.params import Params
    from posequeue.analysis.state import first_message

    assert jobs.finish(job, {"json": "file:///r.json"}, 1.0, first_message(Params())) is JobStatus.RUNNING
    done = jobs.get(job)
    assert done.status is JobStatus.DONE and done.analysis is not None and done.analysis.value == "queued"
    assert jobs.r.zscore(keys.ANALYSES, job) is not None


def test_a_batch_of_a_cancelled_job_is_not_stored(jobs, job) -> None:
    """A segment that stores a batch after its job was cancelled (the cancel already deleted the
    job's batches) is told so, and leaves no hash and no reservation behind."""
    from posequeue.errors import JobNotRunning

    assert jobs.budget.acquire(job, 0, 100, 60).admitted
    assert jobs.cancel(job, "test")
    with pytest.raises(JobNotRunning, match="cancelled"):
        jobs.put_batch({"job_id": job, "index": 0, "frames": [0]}, {"frames": b"\x01"}, ttl=60)
    assert not jobs.r.exists(keys.batch_key(job, 0))
    assert job not in jobs.budget.held()


def test_begin_batch_reads_status_and_batch_and_counts_the_delivery(jobs, job) -> None:
    """A stage's task starts with one round trip: the job's status, the batch's fields with the
    meta decoded, and this delivery counted; a gone batch reads as None and is still counted."""
    jobs.put_batch({"job_id": job, "index": 0, "frames": [0, 1]}, {"frames": b"\x01\x02"}, ttl=60)
    first = jobs.begin_batch(job, 0, "detector", ttl=60)
    assert first.status is not None and first.status.value == "running"
    assert first.fields == {"meta": {"job_id": job, "index": 0, "frames": [0, 1]}, "frames": b"\x01\x02"}
    assert first.deliveries == 1
    assert jobs.begin_batch(job, 0, "detector", ttl=60).deliveries == 2  # a redelivery
    assert jobs.begin_batch(job, 0, "landmarks", ttl=60).deliveries == 1  # counted per stage
    jobs.drop_batch(job, 0)
    gone = jobs.begin_batch(job, 0, "detector", ttl=60)
    assert gone.fields is None and gone.deliveries == 3
    assert jobs.begin_batch("nope", 0, "detector", ttl=60).status is None


def test_unfinished_batches(jobs, job) -> None:
    """The batches put on a queue and not yet finished, whatever order they finished in."""
    assert jobs.unfinished(job) == []
    jobs.set_enqueued(job, 5)
    jobs.batch_done(job, 3, 8)
    jobs.batch_done(job, 0, 8)
    assert jobs.unfinished(job) == [1, 2, 4]


def test_a_record_from_before_people_reads_as_one_person_best_score(jobs) -> None:
    """A job recorded before --people (no people, no follow fields) reads as one person, the
    detector's best in each frame, as it ran then."""
    from posequeue.config.keys import job_key

    job_id = jobs.new_id()
    jobs.create(job_id=job_id, model="blazepose", video="/v.mp4", batch_size=8, source="v.mp4", people=3)
    jobs.r.hdel(job_key(job_id), "people", "follow")
    old = jobs.get(job_id)
    assert (old.people, old.follow) == (1, Follow.BEST_SCORE)


def test_video_mode_reads_back_as_it_was_asked(jobs) -> None:
    """The record keeps the flag as 0 or 1 (a hash keeps text): both read back as booleans."""
    for asked in (True, False):
        job_id = jobs.new_id()
        jobs.create(
            job_id=job_id, model="blazepose", video="/v.mp4", batch_size=8, source="v.mp4", video_mode=asked
        )
        assert jobs.get(job_id).video_mode is asked
