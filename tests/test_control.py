"""`posequeue cancel` and `posequeue retry` against real workers: a cancelled job ends at once and
lets go of Redis, finalise never runs for it, and the worker goes on; a failed job is retried from
what exists."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import redis
from conftest import SAMPLE, posequeue

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from chaos import job_message, wait_until  # noqa: E402

from posequeue.config import keys  # noqa: E402
from posequeue.config.queues import INGEST  # noqa: E402
from posequeue.jobs import Jobs  # noqa: E402
from posequeue.results import job_prefix  # noqa: E402

pytestmark = pytest.mark.integration

LANDMARKS_Q = "pose.blazepose.landmarks"


def _worker_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("POSEQUEUE_")}


def _json(out) -> dict:
    assert out.returncode in (0, 1), out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def _batch_keys(r: redis.Redis, job_id: str) -> list[bytes]:
    return list(r.scan_iter(match=keys.batch_key(job_id, "*")))


def test_cancel_ends_the_job_and_frees_redis(isolated, start_worker, tmp_path) -> None:
    """A running job cancelled ends ``cancelled`` at once; its batches' pixels and queued
    messages leave Redis within seconds, finalise never runs for it, and the same workers then
    finish the next job."""
    env = {**isolated, "POSEQUEUE_WATCHDOG_INTERVAL": "1"}
    r = redis.Redis.from_url(env["POSEQUEUE_BROKER_URL"])
    start_worker("--stage", "ingest", **_worker_env(env))
    start_worker("--stage", "detector", **_worker_env(env))
    job_id = _json(posequeue("submit", str(SAMPLE), "--json", env=env))["job_id"]
    # Batches wait for the landmark stage, which nobody serves yet.
    assert wait_until(lambda: job_message(r, LANDMARKS_Q, job_id), 60)
    out = posequeue("cancel", job_id, "--json", env=env)
    assert out.returncode == 0, out.stderr
    cancelled = json.loads(out.stdout)
    assert cancelled["status"] == "cancelled" and cancelled["dropped"]["messages"] >= 1
    gone = wait_until(lambda: not _batch_keys(r, job_id) and not job_message(r, LANDMARKS_Q, job_id), 10)
    assert gone, (_batch_keys(r, job_id), job_message(r, LANDMARKS_Q, job_id))
    start_worker("--stage", "landmarks", **_worker_env(env))
    nxt = _json(posequeue("submit", str(SAMPLE), "--wait", "--json", env=env))
    assert nxt["status"] == "done"  # the workers go on
    job = _json(posequeue("status", job_id, "--json", env=env))
    assert job["status"] == "cancelled" and "cancelled" in job["error"]
    assert not _batch_keys(r, job_id) and not job_message(r, INGEST, job_id)
    store = Path(env["POSEQUEUE_STORE"].removeprefix("file://"))
    assert not (store / job_prefix(job_id) / "manifest.json").exists()  # finalise never ran
    again = posequeue("cancel", job_id, env=env)
    assert again.returncode == 2 and "already ended (cancelled)" in again.stderr


def test_finalize_waits_out_a_store_outage(isolated, start_worker) -> None:
    """A store that cannot take the results for a while (longer than three retries 2 s apart)
    delays finalise instead of failing the job: it ends done with every frame once."""
    env = {**isolated, "POSEQUEUE_WATCHDOG_INTERVAL": "1"}
    store = Path(env["POSEQUEUE_STORE"].removeprefix("file://"))
    job_id = _json(posequeue("submit", str(SAMPLE), "--json", env=env))["job_id"]
    blocker = store / job_prefix(job_id) / "poses.json" / "blocked"  # a folder where the file goes
    blocker.mkdir(parents=True)
    worker = start_worker(**_worker_env(env))
    assert wait_until(lambda: '"finalize.store_error"' in worker.log.read_text(), 60)
    failures = lambda: worker.log.read_text().count('"finalize.store_error"')  # noqa: E731
    assert wait_until(lambda: failures() >= 3, 60)  # three tries: the old policy's last
    shutil.rmtree(blocker.parent)  # the store is back
    job = _json(posequeue("status", job_id, "--json", env=env))
    job = wait_until(
        lambda: (j := _json(posequeue("status", job_id, "--json", env=env)))["status"] != "running" and j, 90
    )
    assert job["status"] == "done", job.get("error")
    frames = json.loads(posequeue("results", job_id, env=env).stdout)["frames"]
    assert [f["index"] for f in frames] == list(range(90))


def test_retry_finishes_a_failed_job_from_its_parts(isolated, start_worker) -> None:
    """A job failed because its results could not be written keeps its parts; `posequeue retry`
    runs only finalise and the job ends done with every frame once."""
    env = {**isolated, "POSEQUEUE_STORE_PATIENCE": "3"}
    store = Path(env["POSEQUEUE_STORE"].removeprefix("file://"))
    job_id = _json(posequeue("submit", str(SAMPLE), "--json", env=env))["job_id"]
    blocker = store / job_prefix(job_id) / "poses.json" / "blocked"
    blocker.mkdir(parents=True)
    start_worker(**_worker_env(env))
    failed = wait_until(
        lambda: (j := _json(posequeue("status", job_id, "--json", env=env)))["status"] == "failed" and j, 90
    )
    assert "cannot write results" in failed["error"] and "posequeue retry" in failed["error"]
    shutil.rmtree(blocker.parent)
    out = posequeue("retry", job_id, "--json", env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["resumed"] == "finalize"
    job = wait_until(
        lambda: (j := _json(posequeue("status", job_id, "--json", env=env)))["status"] != "running" and j, 90
    )
    assert job["status"] == "done", job.get("error")
    frames = json.loads(posequeue("results", job_id, env=env).stdout)["frames"]
    assert [f["index"] for f in frames] == list(range(90))


def test_retry_runs_a_cancelled_job_again(isolated, start_worker) -> None:
    """A cancelled job (no parts kept) runs again from the first segment and ends done with every
    frame exactly once; a job that is not failed or cancelled is refused."""
    env = dict(isolated)
    jobs = Jobs.from_url(env["POSEQUEUE_BROKER_URL"])
    job_id = _json(posequeue("submit", str(SAMPLE), "--json", env=env))["job_id"]
    assert posequeue("cancel", job_id, env=env).returncode == 0
    start_worker(**_worker_env(env))
    out = posequeue("retry", job_id, "--wait", "--json", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout.splitlines()[-1])["status"] == "done"
    frames = json.loads(posequeue("results", job_id, env=env).stdout)["frames"]
    assert [f["index"] for f in frames] == list(range(90))
    assert jobs.get(job_id).frames_done == 90
    refused = posequeue("retry", job_id, env=env)
    assert refused.returncode == 2 and "only a failed or cancelled job" in refused.stderr


def _running_job(jobs: Jobs) -> str:
    job_id = jobs.create(job_id=Jobs.new_id(), model="blazepose", video="v.mp4", batch_size=8, source="v.mp4")
    jobs.mark_running(job_id, {})
    return job_id


def test_part_written_after_a_cancel_does_not_stay(jobs) -> None:
    """A stage that read its job as running, then finished its batch after the job was
    cancelled, deletes the part it wrote (the cancel's clean-up had already run)."""
    from posequeue.config.schemas import BatchMeta
    from posequeue.config.settings import get_settings
    from posequeue.errors import JobNotRunning
    from posequeue.results import part_key
    from posequeue.store import open_store
    from posequeue.worker.tasks import _finish_batch

    job_id = _running_job(jobs)
    assert jobs.cancel(job_id, "cancelled by the test")
    meta = BatchMeta(job_id, 0, [0], [0.0], (64, 64), (64, 64), "blazepose")
    with pytest.raises(JobNotRunning):
        _finish_batch(jobs, meta, [[]])
    assert part_key(job_id, 0) not in open_store(get_settings().store).keys(job_prefix(job_id))


def test_cancel_deletes_parts_its_record_does_not_count(jobs) -> None:
    """The cancel deletes every part in the store, listed after the job ended, not only those
    of the batches its record counted when it looked (a stage's part can land in between)."""
    from posequeue.config.settings import get_settings
    from posequeue.producer.control import cancel
    from posequeue.results import part_key
    from posequeue.store import open_store

    job_id = _running_job(jobs)  # batches_enqueued 0, as read before a batch was counted
    store = open_store(get_settings().store)
    store.put_bytes(part_key(job_id, 3), b'{"frames": []}')
    cancel(job_id, jobs)
    assert store.keys(job_prefix(job_id)) == []
