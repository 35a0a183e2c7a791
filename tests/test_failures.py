"""Bad input gets a clear error within seconds and loses nothing: refused submissions for what
can be checked up front, failed jobs with a reason for what shows later, and the worker goes on
serving other jobs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from typing import Any

import pytest
import videos
from conftest import SAMPLE, cli, posequeue
from helpers import wait_job

from posequeue.config import keys
from posequeue.jobs import Jobs

pytestmark = pytest.mark.integration


def refused(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 2, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["status"] == "failed" and out["refused"] is True and out["job_id"] is None
    return out


@pytest.mark.parametrize(
    "make,words",
    [
        (lambda p: videos.make_not_a_video(p / "notes.mp4"), "not a readable video"),
        (lambda p: videos.make_empty(p / "empty.mp4"), "not a readable video"),
        (lambda p: videos.make_truncated(p / "cut.mp4"), "not a readable video"),
        (lambda p: videos.make_audio_only(p / "song.m4a"), "no video stream"),
        (lambda p: p / "does-not-exist.mp4", "no such file"),
    ],
)
def test_bad_video_refused(make, words, tmp_path, redis_url) -> None:
    """A file that is no usable video is refused at submission, naming the file and the fault."""
    path = make(tmp_path)
    started = time.monotonic()
    out = refused(cli("submit", str(path), "--json"))
    assert time.monotonic() - started < 15
    assert words in out["error"] and path.name in out["error"]


@pytest.mark.parametrize(
    "setting,words",
    [
        ({"POSEQUEUE_MAX_FRAME_PIXELS": str(640 * 360 - 1)}, "exceed the limit of 230,399 pixels per frame"),
        ({"POSEQUEUE_MAX_VIDEO_SECONDS": "1"}, "s of video exceed the limit of 1 s per job"),
    ],
    ids=["pixels", "duration"],
)
def test_video_over_limits_refused(setting, words, isolated) -> None:
    """A video larger or longer than the producers accept is refused at submission with the
    limit and its setting, and no job is recorded."""
    out = refused(posequeue("submit", str(SAMPLE), "--json", env={**isolated, **setting}))
    assert words in out["error"] and next(iter(setting)) in out["error"]
    assert Jobs.from_url(isolated["POSEQUEUE_BROKER_URL"]).recent() == []


def test_unknown_model_refused(redis_url) -> None:
    """An unknown model name is refused with the list of known models."""
    out = refused(cli("submit", str(SAMPLE), "--model", "openpose", "--json"))
    assert "unknown model 'openpose'" in out["error"] and "blazepose" in out["error"]


def test_bad_batch_size_refused(redis_url) -> None:
    """A batch size below one is refused with the rule it broke."""
    out = refused(cli("submit", str(SAMPLE), "--batch-size", "0", "--json"))
    assert "--batch-size" in out["error"]


@pytest.mark.parametrize("people", ["0", "9"])
def test_people_out_of_range_refused(people, redis_url) -> None:
    """A number of people per frame outside 1-8 is refused with the range."""
    out = refused(posequeue("submit", str(SAMPLE), "--people", people, "--json"))
    assert f"--people {people}" in out["error"] and "from 1 to 8" in out["error"]


def test_several_people_with_a_whole_frame_model_refused() -> None:
    """--people 2 with a model that has no person detector is refused, saying what to use."""
    from posequeue.config.catalogue import ModelSpec, StageSpec
    from posequeue.producer.submit import SubmitError, _check_people

    spec = ModelSpec("dots", "tensorflow", (StageSpec("pose", "m", (256, 192)),), ("nose",))
    _check_people(1, spec)
    with pytest.raises(SubmitError, match="--people 2: model dots finds 1 person per frame"):
        _check_people(2, spec)


def test_missing_s3_object_refused(bucket) -> None:
    """A missing S3 object is refused, naming its URI."""
    out = refused(cli("submit", f"s3://{bucket}/nope/missing.mp4", "--json"))
    assert f"s3://{bucket}/nope/missing.mp4" in out["error"]


def test_unreachable_store_refused(s3_server, jobs) -> None:
    """With an S3 store whose bucket does not exist, a local video is refused before any job."""
    before = jobs.recent(1000)
    env = {**os.environ, "POSEQUEUE_STORE": "s3://no-such-bucket-here/prefix"}
    out = refused(cli("submit", str(SAMPLE), "--json", env=env))
    assert jobs.recent(1000) == before  # no job recorded
    assert "no-such-bucket-here" in out["error"] and "not reachable" in out["error"]


def test_video_broken_after_submission_fails_job_and_worker_goes_on(isolated, start_worker, tmp_path) -> None:
    """A video that breaks between submission and ingest fails its job with a reason; the same
    worker then finishes the next job."""
    path = tmp_path / "clip.mp4"
    shutil.copy(SAMPLE, path)
    first = json.loads(posequeue("submit", str(path), "--json", env=isolated).stdout.splitlines()[-1])
    assert first["status"] == "queued"
    path.write_bytes(b"this is no longer a video")
    start_worker(**{k: isolated[k] for k in ("POSEQUEUE_BROKER_URL", "POSEQUEUE_STORE")})
    failed = json.loads(cli("status", first["job_id"], "--json", env=isolated).stdout)
    deadline = time.monotonic() + 30
    while failed["status"] not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.2)
        failed = json.loads(cli("status", first["job_id"], "--json", env=isolated).stdout)
    assert failed["status"] == "failed"
    assert "clip.mp4" in failed["error"] and "not a readable video" in failed["error"]
    ok = posequeue("submit", str(SAMPLE), "--wait", "--json", env=isolated)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.splitlines()[-1])["status"] == "done"


def test_unwritable_result_store_fails_job(isolated, start_worker, jobs) -> None:
    """Workers that cannot write to their S3 store fail the job with a reason a person can act
    on (once POSEQUEUE_STORE_PATIENCE has passed) instead of leaving it running: a batch's task
    (on this all-stage worker, detector and landmarks in one task) cannot store the part its
    landmark stage made, defers itself (``retry(throw=False)``, no ``Retry`` raised, 2 s first),
    then fails the job with the store's reason."""
    pytest.importorskip("moto")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        worker = start_worker(
            POSEQUEUE_BROKER_URL=isolated["POSEQUEUE_BROKER_URL"],
            POSEQUEUE_STORE="s3://bucket-that-is-missing/results",
            AWS_ENDPOINT_URL=f"http://{host}:{port}",
            AWS_ACCESS_KEY_ID="x",
            AWS_SECRET_ACCESS_KEY="x",
            AWS_DEFAULT_REGION="us-east-1",
            POSEQUEUE_STORE_PATIENCE="3",
        )
        out = posequeue("submit", str(SAMPLE), "--wait", "--json", "--timeout", "60", env=isolated)
        job = json.loads(out.stdout.splitlines()[-1])
        assert job["status"] == "failed"
        assert job["error"].startswith("cannot store batch results")
        assert "bucket-that-is-missing" in job["error"] and "NoSuchBucket" in job["error"]
        lines = [json.loads(x) for x in worker.log.read_text().splitlines() if x.startswith("{")]
        deferred: dict[int, list[int]] = {}
        for line in lines:
            if line.get("event") == "infer.deferred":
                assert line["stage"] == "landmarks" and line["countdown"] <= 2.0  # the last stage run
                deferred.setdefault(line["batch"], []).append(line["retries"])
        assert any(tries[:1] == [1] for tries in deferred.values())  # deferred before it failed
        assert "retry: Retry in" not in worker.log.read_text()  # Celery's line for a raised Retry
    finally:
        server.stop()


@pytest.mark.parametrize("budget_mb", ["4", "256"], ids=["budget-full", "all-frames-queued"])
def test_no_worker_for_the_model_fails_the_job(budget_mb, isolated, start_worker, tmp_path) -> None:
    """With producers but no worker on the model's queue, the job fails once no batch has
    finished for a payload's lifetime, naming the queue and the command to start: whether the
    producer waits on a full memory budget or has queued every frame."""
    env = {
        **isolated,
        "POSEQUEUE_VISIBILITY_TIMEOUT": "5",
        "POSEQUEUE_TASK_TIME_LIMIT": "2",
        "POSEQUEUE_PAYLOAD_TTL": "8",
        "POSEQUEUE_MAX_REDIS_MB": budget_mb,
    }
    start_worker("--stage", "ingest", **{k: v for k, v in env.items() if k.startswith("POSEQUEUE_")})
    video = videos.make_long(tmp_path / "long.mp4", seconds=4, width=160, height=120)
    out = posequeue("submit", str(video), "--wait", "--json", "--timeout", "60", env=env)
    job = json.loads(out.stdout.splitlines()[-1])
    assert job["status"] == "failed"
    assert "pose.blazepose.detector" in job["error"] and "--stage detector" in job["error"]


def test_batch_that_keeps_killing_its_worker_fails_the_job(isolated, start_worker, tmp_path) -> None:
    """A batch whose stage was started too often without finishing (its worker process died each
    time) fails the job with a reason instead of looping for ever; the worker goes on."""
    import redis

    env = {k: isolated[k] for k in ("POSEQUEUE_BROKER_URL", "POSEQUEUE_STORE")}
    ingest = start_worker("--stage", "ingest", **env)
    job_id = json.loads(posequeue("submit", str(SAMPLE), "--json", env=isolated).stdout)["job_id"]
    r = redis.Redis.from_url(env["POSEQUEUE_BROKER_URL"])
    deadline = time.monotonic() + 30
    while not r.exists(keys.batch_key(job_id, 0)) and time.monotonic() < deadline:
        time.sleep(0.05)
    r.set(keys.deliveries_key(job_id, 0, "detector"), 4)  # as if it had died four times
    ingest.stop()
    start_worker(**env)
    nxt = posequeue("submit", str(SAMPLE), "--wait", "--json", env=isolated)
    assert json.loads(nxt.stdout.splitlines()[-1])["status"] == "done"  # the worker goes on
    job = wait_job(Jobs.from_url(env["POSEQUEUE_BROKER_URL"]), job_id)  # not promised to end first
    assert job["status"] == "failed" and "started 4 times in stage detector" in job["error"]


def test_segment_that_keeps_killing_its_worker_fails_the_job(isolated, start_worker) -> None:
    """An ingest segment started too often without handing over (decoding it killed the worker
    each time) fails the job naming the segment and its time range; the worker goes on."""
    import redis

    env = {
        **{k: isolated[k] for k in ("POSEQUEUE_BROKER_URL", "POSEQUEUE_STORE")},
        "POSEQUEUE_SEGMENT_SECONDS": "1",
        "POSEQUEUE_MAX_REDIS_MB": "8",  # one batch of the sample at a time: the chain soon waits
    }
    ingest = start_worker("--stage", "ingest", **env)
    job_id = json.loads(posequeue("submit", str(SAMPLE), "--json", env={**isolated, **env}).stdout)["job_id"]
    jobs = Jobs.from_url(env["POSEQUEUE_BROKER_URL"])
    deadline = time.monotonic() + 30
    while jobs.get(job_id).cursor.get("segment") != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    redis.Redis.from_url(env["POSEQUEUE_BROKER_URL"]).set(keys.segment_starts_key(job_id, 2), 4)
    ingest.stop()
    start_worker(**env)
    nxt = posequeue("submit", str(SAMPLE), "--wait", "--json", env=isolated)
    assert json.loads(nxt.stdout.splitlines()[-1])["status"] == "done"  # the worker goes on
    job = wait_job(jobs, job_id)  # not promised to end before the second job
    assert job["status"] == "failed", job
    assert "segment 2 of" in job["error"] and re.search(r"\(about \d+\.\d\d-\d+\.\d\d s", job["error"])
    assert "started 4 times without finishing" in job["error"]


def test_finalize_that_keeps_killing_its_worker_fails_the_job(isolated, start_worker) -> None:
    """Finalise started too often without finishing fails the job saying so, not for ever."""
    env = {k: isolated[k] for k in ("POSEQUEUE_BROKER_URL", "POSEQUEUE_STORE")}
    job_id = json.loads(posequeue("submit", str(SAMPLE), "--json", env=isolated).stdout)["job_id"]
    jobs = Jobs.from_url(env["POSEQUEUE_BROKER_URL"])
    jobs.update(job_id, {"finalize_starts": 4})  # as if killed 4 times
    start_worker(**env)
    out = posequeue("submit", str(SAMPLE), "--wait", "--json", env=isolated)
    assert json.loads(out.stdout.splitlines()[-1])["status"] == "done"  # the worker goes on
    # Waited for by itself: two pool processes can finish the second job first (seen in CI).
    job = wait_job(jobs, job_id)
    assert job["status"] == "failed" and "finalise was started 4 times without finishing" in job["error"]


def test_damaged_input_ends_done_with_warnings(isolated, start_worker, tmp_path) -> None:
    """A file cut off mid-stream ends done with what it holds, and says what is missing in the
    status and the manifest."""
    from posequeue.store import read_uri

    video = videos.make_cut_stream(tmp_path / "cut.mkv")
    start_worker(**{k: isolated[k] for k in ("POSEQUEUE_BROKER_URL", "POSEQUEUE_STORE")})
    out = posequeue("submit", str(video), "--wait", "--json", env=isolated)
    job = json.loads(out.stdout.splitlines()[-1])
    assert job["status"] == "done", job.get("error")
    frames = job["frames_total"]
    expected = f"decoded {frames} of ~90 frames: the stream ends at {frames / 30:.2f} s of 3.00 s"
    assert [w.split(" (")[0] for w in job["warnings"]] == [expected]
    assert json.loads(read_uri(job["results"]["manifest"]))["warnings"] == job["warnings"]
    text = posequeue("status", job["job_id"], env=isolated).stdout
    assert f"warning: {expected}" in text
