"""No key without a TTL or an owner: after jobs that end done, failed and cancelled, every key in
Redis either expires or belongs to a job still running; uploaded inputs leave the store with
their job, and what a failed job leaves is deleted when its record expires."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import cast

import pytest
import redis
from conftest import SAMPLE, posequeue

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from chaos import wait_until  # noqa: E402

from posequeue.config import keys  # noqa: E402
from posequeue.config.budget import BUDGET_JOBS, BUDGET_LAST  # noqa: E402
from posequeue.jobs import Jobs  # noqa: E402
from posequeue.store import open_store  # noqa: E402

pytestmark = pytest.mark.integration

# Keys that live without a TTL by design, and why: kombu's own bookkeeping (its routing table,
# one set per queue, and their deadlines), the lists of jobs and of worker series, trimmed by
# the watchdog and by worker/stats.py, and the memory budget's ledger, whose fields go with their
# batch or job (checked below).
PERMANENT = ("_kombu.", keys.JOBS, keys.WORKERS, f"{keys.PREFIX}:budget:")


def _ended(env: dict[str, str], job_id: str) -> dict:
    def status() -> dict | None:
        job = json.loads(posequeue("status", job_id, "--json", env=env).stdout)
        return job if job["status"] not in ("queued", "running") else None

    job = wait_until(status, 120, 0.3)
    assert job is not None
    return job


def _submit(env: dict[str, str], video: Path) -> str:
    out = posequeue("submit", str(video), "--json", env=env)
    assert out.returncode == 0, out.stderr
    return str(json.loads(out.stdout.splitlines()[-1])["job_id"])


def test_every_key_expires_or_belongs_to_a_running_job(isolated, start_worker, tmp_path) -> None:
    """Jobs ended done, failed and cancelled, and one still running: every Redis key has a TTL,
    is one of the few permanent ones, or belongs to the running job."""
    env = {**isolated, "POSEQUEUE_WATCHDOG_INTERVAL": "1"}
    r = redis.Redis.from_url(env["POSEQUEUE_BROKER_URL"])
    done = _submit(env, SAMPLE)
    broken = tmp_path / "broken.mp4"
    shutil.copy(SAMPLE, broken)
    failed = _submit(env, broken)
    broken.write_bytes(b"no longer a video")  # before any worker reads it
    cancelled = _submit(env, SAMPLE)
    assert posequeue("cancel", cancelled, env=env).returncode == 0
    start_worker(**{k: v for k, v in env.items() if k.startswith("POSEQUEUE_")})
    assert _ended(env, done)["status"] == "done"
    assert _ended(env, failed)["status"] == "failed"
    # One job left running: its keys are owned (no stage serves its model's last stage).
    running = _submit(env, SAMPLE)
    assert wait_until(lambda: Jobs(r).get(running).batches_enqueued > 0, 60)
    orphans = []
    for key in r.scan_iter(count=1000):
        name = key.decode()
        if r.ttl(key) >= 0 or name.startswith(PERMANENT) or running in name:
            continue
        if name in (keys.ACTIVE, "unacked", "unacked_index") or name.startswith(("ingest", "pose.")):
            continue  # owned by the running job's messages: emptied lists and hashes vanish
        if name == keys.ANALYSES:
            continue  # owned by the done job's analysis while it runs: emptied, it vanishes
        orphans.append(name)
    assert orphans == []
    for ended in (done, failed, cancelled):
        assert Jobs(r).get(ended).status.finished and r.ttl(keys.job_key(ended)) > 0
        assert not r.exists(*(keys.batch_key(ended, i) for i in range(12)))  # no pixels left
        assert not r.hexists(BUDGET_JOBS, ended) and not r.hexists(BUDGET_LAST, ended)
    assert [j.decode() for j in cast("list[bytes]", r.zrange(keys.ACTIVE, 0, -1))] == [running]


def test_uploaded_input_goes_with_its_job(isolated, start_worker, bucket) -> None:
    """A local video uploaded to an S3 store is deleted when its job and its analysis have ended
    (after the overlay was drawn on it), and kept when POSEQUEUE_KEEP_INPUTS says so."""
    store = f"s3://{bucket}/retention"
    env = {**isolated, "POSEQUEUE_STORE": store}
    first = start_worker(**{k: v for k, v in env.items() if k.startswith("POSEQUEUE_")})
    gone = _submit(env, SAMPLE)
    assert open_store(store).keys(f"inputs/{gone}/")  # uploaded at submit
    assert _ended(env, gone)["status"] == "done"
    # The motion analysis draws its overlay on the upload, then deletes it.
    assert wait_until(lambda: open_store(store).keys(f"inputs/{gone}/") == [], 120)
    assert any(k.endswith("/overlay.mp4") for k in open_store(store).keys(f"jobs/{gone}/"))
    first.stop()
    kept_env = {**env, "POSEQUEUE_KEEP_INPUTS": "1"}
    start_worker(**{k: v for k, v in kept_env.items() if k.startswith("POSEQUEUE_")})
    kept = _submit(kept_env, SAMPLE)
    assert _ended(env, kept)["status"] == "done"
    assert open_store(store).keys(f"inputs/{kept}/")


def test_failed_job_leftovers_go_when_its_record_expires(isolated, start_worker, tmp_path) -> None:
    """A failed job keeps its parts for `posequeue retry`; once its record expires (the
    retention period) the watchdog deletes them and takes the job off the list of jobs."""
    env = {
        **isolated,
        "POSEQUEUE_WATCHDOG_INTERVAL": "1",
        "POSEQUEUE_STORE_PATIENCE": "1",
        "POSEQUEUE_RETENTION_DAYS": str(4 / 86400),  # 4 s
    }
    r = redis.Redis.from_url(env["POSEQUEUE_BROKER_URL"])
    store = Path(env["POSEQUEUE_STORE"].removeprefix("file://"))
    job_id = _submit(env, SAMPLE)
    (store / "jobs" / job_id / "poses.json" / "blocked").mkdir(parents=True)  # finalise cannot write
    start_worker(**{k: v for k, v in env.items() if k.startswith("POSEQUEUE_")})
    assert _ended(env, job_id)["status"] == "failed"
    assert open_store(env["POSEQUEUE_STORE"]).keys(f"jobs/{job_id}/parts/")  # kept for a retry
    assert wait_until(lambda: not r.exists(keys.job_key(job_id)), 30)
    assert wait_until(lambda: r.zscore(keys.JOBS, job_id) is None, 30)
    assert open_store(env["POSEQUEUE_STORE"]).keys(f"jobs/{job_id}/parts/") == []
