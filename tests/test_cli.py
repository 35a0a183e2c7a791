"""The ``posequeue`` command as a user runs it against a live fleet."""

from __future__ import annotations

import json
import os

import pytest
from conftest import SAMPLE, cli, posequeue

pytestmark = pytest.mark.integration


def test_submit_wait_status_results_queues(worker, tmp_path) -> None:
    """submit --wait --json ends with one JSON object; status, results and queues agree."""
    out = posequeue("submit", str(SAMPLE), "--batch-size", "4", "--wait", "--json")
    assert out.returncode == 0, out.stderr
    job = json.loads(out.stdout.strip().splitlines()[-1])
    assert job["status"] == "done" and job["frames_total"] == 90 and job["batches_total"] == 23
    assert set(job["results"]) == {"json", "csv", "manifest"}

    status = json.loads(cli("status", job["job_id"], "--json").stdout)
    assert status["status"] == "done" and status["frames_done"] == 90

    human = cli("status", job["job_id"]).stdout
    assert f"job {job['job_id']}: done, 90/90 frames" in human

    target = tmp_path / "poses.json"
    assert cli("results", job["job_id"], "-o", str(target)).returncode == 0
    assert len(json.loads(target.read_text())["frames"]) == 90

    queues = json.loads(cli("queues", "--json").stdout)
    assert {"ingest", "pose.blazepose.landmarks"} <= set(queues["queues"])
    assert all(job["job_id"] != j["job_id"] for j in queues["jobs"])  # finished jobs not listed


def test_submit_without_wait_returns_queued_at_once(worker) -> None:
    """submit returns at once with a job id and status queued; the job goes on without it."""
    out = cli("submit", str(SAMPLE), "--json")
    job = json.loads(out.stdout.strip().splitlines()[-1])
    assert job["status"] == "queued" and len(job["job_id"]) == 32


def test_unknown_job(redis_url) -> None:
    """status and results of an unknown job say so and exit non-zero."""
    for cmd in ("status", "results"):
        out = cli(cmd, "0" * 32)
        assert out.returncode == 2 and "no job" in out.stderr


@pytest.mark.compat
def test_worker_refuses_unknown_stage(redis_url) -> None:
    """A worker for a stage the model does not have names the stages it has."""
    out = cli("worker", "--stage", "segmenter")
    assert out.returncode == 2 and "no stage 'segmenter'" in out.stderr
    assert "detector, landmarks" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.compat
def test_worker_refuses_bad_cores(redis_url) -> None:
    """A malformed --cores value is refused with the accepted forms."""
    out = cli("worker", "--cores", "1-a")
    assert out.returncode == 2 and "0-1" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.compat
def test_worker_refuses_threads_with_prefork_concurrency(redis_url) -> None:
    """Task threads and several prefork processes are two different pools: asking for both is
    refused, naming each."""
    out = cli("worker", "--threads", "2", "--concurrency", "2")
    assert out.returncode == 2 and "--threads 1 --concurrency N" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.compat
def test_worker_pins_its_processes_to_cores(start_worker, isolated) -> None:
    """--cores pins the worker and the process it runs tasks in to those CPU cores."""
    import os

    worker = start_worker(
        "--cores",
        "0",
        POSEQUEUE_BROKER_URL=isolated["POSEQUEUE_BROKER_URL"],
        POSEQUEUE_STORE=isolated["POSEQUEUE_STORE"],
    )
    pids = [worker.proc.pid, *worker.children()]
    assert len(pids) >= 2
    assert all(os.sched_getaffinity(pid) == {0} for pid in pids)
    assert "blazepose-all-c0@" in worker.log.read_text()  # the worker's name shows its cores


@pytest.mark.compat
def test_second_worker_on_claimed_cores_is_refused(start_worker, isolated) -> None:
    """A second worker naming a core another worker on this host holds is refused at start-up,
    naming the holder."""
    env = {k: isolated[k] for k in ("POSEQUEUE_BROKER_URL", "POSEQUEUE_STORE")}
    start_worker("--stage", "landmarks", "--cores", "1", **env)
    # in a process of its own: the claim it makes before the refusal lasts as long as its process
    out = posequeue("worker", "--stage", "detector", "--cores", "0-1", env=isolated, timeout=60)
    assert out.returncode == 2
    assert "cpu core 1 is already claimed by worker blazepose-landmarks-c1" in out.stderr


@pytest.mark.compat
def test_worker_pool_by_runtime(start_worker, isolated, tmp_path) -> None:
    """A Neuron model's worker runs two task threads by default (its model calls leave the CPU
    free for the other thread's host work); a CPU model's worker runs the prefork pool, a
    single-thread process per core it may use."""
    # Given a one-stage Neuron model (its runtime cannot load here: the worker starts and logs it)
    spec = tmp_path / "poseneuron.toml"
    spec.write_text(
        'name = "poseneuron"\nruntime = "neuron"\nkeypoints = "coco"\n\n'
        '[[stages]]\nname = "pose"\npath = "model"\nshape = [-1, 256, 192, 3]\n'
    )
    env = {**isolated, "POSEQUEUE_MODEL_SPECS": str(spec), "POSEQUEUE_LOCK_DIR": str(tmp_path / "locks")}
    # When a worker is started for it and one for BlazePose's landmarks, neither naming --threads
    neuron = start_worker("--model", "poseneuron", "--cores", "0", **env)
    cpu = start_worker("--stage", "landmarks", **env)
    # Then the first runs two task threads under the supervisor, the second a prefork process per core
    assert "concurrency: 2 (thread)" in neuron.log.read_text()
    assert f"concurrency: {len(os.sched_getaffinity(0))} (prefork)" in cpu.log.read_text()
