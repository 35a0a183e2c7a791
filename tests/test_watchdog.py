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

from posequeue.config import keys  # noqa: E402
from posequeue.config.celery_app import FINALIZE_TASK, INGEST_TASK  # noqa: E402
from posequeue.config.queues import INGEST  # noqa: E402
from posequeue.config.schemas import Job  # noqa: E402
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


# -- a done job's motion analysis ---------------------------------------------------------------
def _done_job(jobs: Jobs) -> str:
    job_id = jobs.create(job_id=Jobs.new_id(), model="blazepose", video="v.mp4", batch_size=8, source="v.mp4")
    jobs.finish(job_id, {"json": "file:///nowhere/poses.json"}, time.time())
    return job_id


def test_silent_analysis_fails_with_reason_and_job_stays_done(jobs) -> None:
    """An analysis whose worker went silent on its last allowed delivery is failed with a reason
    (the job stays done, and leaves the watchdog's list); status and the API summary show it."""
    from conftest import cli

    from posequeue.analysis.state import mark
    from posequeue.config import keys
    from posequeue.config.schemas import AnalysisStatus
    from posequeue.jobs import summary
    from posequeue.producer.watchdog import MAX_RESENDS, sweep

    job_id = _done_job(jobs)
    mark(jobs, job_id, AnalysisStatus.QUEUED, params={}, sends=MAX_RESENDS + 3, resends=MAX_RESENDS)
    mark(jobs, job_id, AnalysisStatus.RUNNING)
    assert jobs.r.zscore(keys.ANALYSES, job_id) is not None
    actions = sweep(jobs, now=time.time() + 3600)  # long after its last heartbeat
    assert actions[job_id].startswith("analysis: failed")
    job = jobs.get(job_id)
    assert job.status.value == "done" and job.analysis is AnalysisStatus.FAILED
    assert f"sent {MAX_RESENDS + 1} times without finishing" in (job.analysis_error or "")
    assert f"`posequeue analyze {job_id}`" in (job.analysis_error or "")
    assert summary(job)["analysis"]["status"] == "failed"
    assert jobs.r.zscore(keys.ANALYSES, job_id) is None
    out = cli("status", job_id).stdout
    assert f"job {job_id}: done" in out and "analysis: failed: the motion analysis was sent" in out


def test_stale_analysis_message_starts_nothing(jobs) -> None:
    """A copy of an analysis message that the watchdog has since sent again does not run: only
    the latest may start (two would write the same outputs at once)."""
    from posequeue.analysis.state import mark
    from posequeue.analysis.task import analyze_task
    from posequeue.config.schemas import AnalysisStatus

    job_id = _done_job(jobs)
    mark(jobs, job_id, AnalysisStatus.QUEUED, params={}, sends=2)
    analyze_task(job_id, {}, 1)
    assert jobs.get(job_id).analysis is AnalysisStatus.QUEUED


def test_running_analysis_beats(jobs) -> None:
    """A running analysis writes a heartbeat, the watchdog's sign that its worker lives."""
    from posequeue.analysis.state import beating, mark, start
    from posequeue.config.schemas import AnalysisStatus

    job_id = _done_job(jobs)
    mark(jobs, job_id, AnalysisStatus.QUEUED, params={}, sends=1)
    assert start(jobs, job_id, 1)
    jobs.r.hdel(keys.job_key(job_id), "analysis_beat_at")
    with beating(jobs, job_id, 1, interval=0.05):
        assert wait_until(lambda: jobs.get(job_id).analysis_beat_at, 5)


def test_lost_analysis_message_is_sent_again(isolated, start_worker) -> None:
    """A done job's analysis whose message was lost (queued, no message anywhere) is sent again
    by an ingest worker's sweep, as its next delivery."""
    from posequeue.analysis.state import mark
    from posequeue.config.celery_app import ANALYZE_TASK
    from posequeue.config.queues import ANALYSIS
    from posequeue.config.schemas import AnalysisStatus

    env = _env(isolated)
    theirs = Jobs(redis.Redis.from_url(env["POSEQUEUE_BROKER_URL"]))
    job_id = _done_job(theirs)
    mark(theirs, job_id, AnalysisStatus.QUEUED, params={}, sends=1)  # and no message: lost
    start_worker("--stage", "ingest", **_worker_env(env))
    assert wait_until(lambda: job_message(theirs.r, ANALYSIS, job_id, ANALYZE_TASK), 30)
    job = theirs.get(job_id)
    assert (job.status.value, job.analysis, job.analysis_sends, job.analysis_resends) == (
        "done",
        AnalysisStatus.QUEUED,
        2,
        1,
    )


def test_job_waiting_on_the_store_is_not_judged_stalled(jobs) -> None:
    """A running job whose stage tasks defer on store errors (recorded as ``store_wait_at``) is
    left to the store patience of its tasks, not failed as stalled for a missing worker."""
    from posequeue.producer.watchdog import check

    now = time.time()
    job_id = jobs.create(job_id=Jobs.new_id(), model="blazepose", video="v.mp4", batch_size=8, source="v.mp4")
    jobs.mark_running(job_id, {})
    jobs.update(job_id, {"batches_enqueued": 3, "progress_at": now - 7200, "store_wait_at": now - 5})
    jobs.r.set(keys.recover_guard_key(job_id), 1, ex=60)  # no look for lost batches now
    assert check(jobs, jobs.get(job_id), now) is None
    assert jobs.get(job_id).status.value == "running"
    jobs.fail(job_id, "end of test")


# -- races of an analysis asked for again, re-sent, or ending (driven step by step) -------------
@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, dict, int]]:
    """The analysis messages sent, recorded instead of sent."""
    from posequeue.analysis import state

    messages: list[tuple[str, dict, int]] = []
    monkeypatch.setattr(state, "send", lambda job_id, params, sends: messages.append((job_id, params, sends)))
    return messages


def test_new_analysis_request_makes_the_queued_message_stale(jobs, sent) -> None:
    """`analyze` with new parameters while the last analysis is still queued: only the new
    message may start (the old one would run the old parameters and make the new one stale)."""
    from posequeue.analysis.params import Params
    from posequeue.analysis.state import request
    from posequeue.analysis.task import analyze_task
    from posequeue.config.schemas import AnalysisStatus

    job_id = _done_job(jobs)
    request(jobs, job_id, Params(cutoff=4.0))
    request(jobs, job_id, Params(cutoff=3.0))
    (_, old, first), (_, new, second) = sent
    assert second > first
    analyze_task(job_id, old, first)  # the old message arrives first: stale
    job = jobs.get(job_id)
    assert (job.analysis, job.analysis_sends, job.analysis_params) == (AnalysisStatus.QUEUED, second, new)


def test_new_analysis_request_does_not_use_up_the_watchdogs_resends(jobs, sent) -> None:
    """Sends asked for with `analyze` are not the watchdog's re-sends: after many requests, a
    silent run is still sent again (its re-sends count from the last request)."""
    from posequeue.analysis.params import Params
    from posequeue.analysis.state import request, start
    from posequeue.producer.watchdog import MAX_RESENDS, check_analysis

    job_id = _done_job(jobs)
    for _ in range(MAX_RESENDS + 2):
        request(jobs, job_id, Params())
    assert start(jobs, job_id, sent[-1][2])
    action = check_analysis(jobs, jobs.get(job_id), time.time() + 3600)  # long after its last beat
    assert action == "re-sent the analysis (lost while running)"
    job = jobs.get(job_id)
    assert (job.analysis_sends, job.analysis_resends) == (MAX_RESENDS + 3, 1)
    assert sent[-1][2] == MAX_RESENDS + 3


def test_superseded_analysis_run_ends_without_marking_or_deleting(jobs, sent, monkeypatch) -> None:
    """A run whose worker could not beat (Redis away) is re-sent by the watchdog while it goes
    on: when it ends it marks nothing and keeps the input, which the new run reads."""
    import posequeue.analysis.run
    import posequeue.analysis.task
    from posequeue.analysis.params import Params
    from posequeue.analysis.state import request
    from posequeue.analysis.task import analyze_task
    from posequeue.config.schemas import AnalysisStatus
    from posequeue.producer.watchdog import check_analysis

    job_id = _done_job(jobs)
    request(jobs, job_id, Params())
    deleted: list[str] = []

    def run_analysis(*_: object, **__: object) -> dict[str, str]:  # meanwhile its beats went missing
        assert check_analysis(jobs, jobs.get(job_id), time.time() + 3600) is not None
        return {"analysis.json": "file:///nowhere/analysis.json"}

    monkeypatch.setattr(posequeue.analysis.run, "run_analysis", run_analysis)
    monkeypatch.setattr(posequeue.analysis.task, "_delete_input", lambda job: deleted.append(job.job_id))
    analyze_task(job_id, sent[0][1], sent[0][2])
    job = jobs.get(job_id)
    assert (job.analysis, job.analysis_sends, job.analysis_results) == (AnalysisStatus.QUEUED, 2, {})
    assert deleted == []


def test_superseded_analysis_run_does_not_beat(jobs) -> None:
    """A run's heartbeat is written only while it is the analysis's latest message: a superseded
    run's beat would hide a silent new run from the watchdog."""
    from posequeue.analysis.state import beating, mark, start
    from posequeue.config.schemas import AnalysisStatus

    job_id = _done_job(jobs)
    mark(jobs, job_id, AnalysisStatus.QUEUED, params={}, sends=1)
    assert start(jobs, job_id, 1)
    mark(jobs, job_id, AnalysisStatus.RUNNING, sends=2)  # re-sent since, and the new run started
    jobs.r.hdel(keys.job_key(job_id), "analysis_beat_at")
    with beating(jobs, job_id, 1, interval=0.05):
        time.sleep(0.3)
    assert jobs.get(job_id).analysis_beat_at is None


def test_sweep_keeps_an_analysis_asked_for_again_while_it_looked(jobs, sent, monkeypatch) -> None:
    """The sweep reads an ended analysis and a new `analyze` is queued before it takes it off
    its list: the new one stays listed (else its lost message would never be sent again)."""
    from posequeue.analysis.params import Params
    from posequeue.analysis.state import mark, request
    from posequeue.config.schemas import AnalysisStatus
    from posequeue.producer.watchdog import sweep

    job_id = _done_job(jobs)
    request(jobs, job_id, Params())
    get = jobs.get

    def get_then_request(wanted: str) -> Job:
        if wanted != job_id:
            return get(wanted)
        mark(jobs, job_id, AnalysisStatus.DONE, expect=1, results={})  # it ends as the sweep looks
        job = get(wanted)
        request(jobs, job_id, Params(cutoff=3.0))  # and is asked for again
        return job

    monkeypatch.setattr(jobs, "get", get_then_request)
    sweep(jobs)
    monkeypatch.undo()
    assert jobs.get(job_id).analysis is AnalysisStatus.QUEUED
    assert jobs.r.zscore(keys.ANALYSES, job_id) is not None


def test_superseded_analysis_run_stops_writing_outputs(jobs, sent, monkeypatch) -> None:
    """A run asked for again while it writes its outputs writes no more of them over the newer
    run's, and ends quietly: nothing marked, the input kept."""
    import numpy as np
    from synthetic_poses import poses_document, standing

    import posequeue.analysis.run
    import posequeue.analysis.task
    from posequeue.analysis.params import Params
    from posequeue.analysis.state import request
    from posequeue.analysis.task import analyze_task
    from posequeue.config.schemas import AnalysisStatus
    from posequeue.store import Store

    job_id = _done_job(jobs)
    request(jobs, job_id, Params())
    written: list[str] = []
    deleted: list[str] = []

    def put_file(self: Store, key: str, path: object, content_type: str = "") -> str:
        written.append(key)
        if len(written) == 1:  # asked for again after the first output
            request(jobs, job_id, Params(cutoff=4.0))
        return f"file:///{key}"

    real = posequeue.analysis.run.run_analysis

    def run_analysis(job: str, params: Params, store: Store, before_write) -> dict[str, str]:
        still = standing(60)[:, None]  # one person standing for 2 s
        poses = json.dumps(poses_document(still, np.arange(60) / 30)).encode()
        monkeypatch.setattr(type(store), "put_file", put_file)
        monkeypatch.setattr(store, "get_bytes", lambda key: poses)
        return real(job, Params(overlay=False), store, before_write)

    monkeypatch.setattr(posequeue.analysis.run, "run_analysis", run_analysis)
    monkeypatch.setattr(posequeue.analysis.task, "_delete_input", lambda job: deleted.append(job.job_id))
    analyze_task(job_id, sent[0][1], sent[0][2])
    job = jobs.get(job_id)
    assert len(written) == 1 and deleted == []
    assert (job.analysis, job.analysis_sends) == (AnalysisStatus.QUEUED, 2)
