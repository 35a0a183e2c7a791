"""End to end through real Redis queues and real worker processes: every kind of video a user
sends comes back as per-frame poses, every frame once, in order, as players show it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import videos
from conftest import SAMPLE
from helpers import load_results, wait_job

pytestmark = pytest.mark.integration


def submit(settings, jobs, path: Path, **kw) -> str:  # type: ignore[no-untyped-def]
    from posequeue.producer.submit import submit as do_submit

    return do_submit(str(path), settings=settings, jobs=jobs, **kw)


def check_contract(result: dict, frames: int, width: int, height: int) -> None:
    """The output contract of DESIGN.md: every frame once, in order, pixels of the display."""
    assert [f["index"] for f in result["frames"]] == list(range(frames))
    assert result["video"]["frame_count"] == frames
    assert (result["video"]["width"], result["video"]["height"]) == (width, height)
    assert len(result["model"]["keypoints"]) == 33
    times = [f["t"] for f in result["frames"]]
    assert times == sorted(times) and len(set(times)) == len(times)
    for frame in result["frames"]:
        for person in frame["people"]:
            assert len(person["keypoints"]) == 33
            for _x, _y, _z, vis, pres in person["keypoints"]:
                assert 0.0 <= vis <= 1.0 and 0.0 <= pres <= 1.0


def test_sample_video_end_to_end(worker, settings, jobs, store_root) -> None:
    """The sample video gives a done job whose JSON, CSV, manifest and result-backend summary
    agree, with a person found in most frames, near where the astronaut is drawn."""
    from posequeue.config.celery_app import app

    job_id = submit(settings, jobs, SAMPLE)
    job = wait_job(jobs, job_id)
    assert job["status"] == "done", job.get("error")
    result = load_results(store_root, job)
    check_contract(result, 90, 640, 360)
    found = [f for f in result["frames"] if f["people"]]
    assert len(found) >= 0.95 * 90
    # The astronaut's nose is in the upper half of the frame, inside the picture.
    nose = [f["people"][0]["keypoints"][0] for f in found]
    assert all(0 <= x <= 640 and 0 <= y <= 180 for x, y, *_ in nose)
    summary = app.AsyncResult(job_id).get(timeout=5)
    assert summary["status"] == "done" and summary["frames_done"] == 90
    assert set(summary["results"]) == {"json", "csv", "manifest"}
    from posequeue.store import open_store

    csv_rows = open_store(store_root).get_bytes(f"jobs/{job_id}/poses.csv").decode().splitlines()
    assert csv_rows[0] == "frame,t,person,track,keypoint,x,y,z,visibility,presence"
    assert len(csv_rows) - 1 == 33 * len(found)
    manifest = json.loads(open_store(store_root).get_bytes(f"jobs/{job_id}/manifest.json"))
    assert manifest["status"] == "done" and manifest["frames_total"] == 90


@pytest.mark.parametrize(
    "codec,suffix",
    [
        ("h264", ".mp4"),
        ("hevc", ".mp4"),
        ("vp9", ".webm"),
        ("av1", ".mkv"),
        ("mjpeg", ".avi"),
    ],
)
def test_codecs(codec, suffix, worker, settings, jobs, store_root, tmp_path) -> None:
    """Any codec PyAV decodes goes through, every frame once, in order."""
    if codec not in videos.available_codecs():
        pytest.skip(f"no {codec} encoder in this PyAV build")
    path = videos.make_video(tmp_path / f"clip{suffix}", codec=codec, frames=40, fps=25)
    job = wait_job(jobs, submit(settings, jobs, path))
    assert job["status"] == "done", job.get("error")
    check_contract(load_results(store_root, job), 40, 320, 240)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_phone_rotation(rotation, worker, settings, jobs, store_root, tmp_path) -> None:
    """A phone video's display rotation is applied: sizes and coordinates are of the picture
    as players show it (portrait for 90 and 270)."""
    path = videos.make_video(tmp_path / "phone.mp4", width=320, height=240, frames=20, rotation=rotation)
    job = wait_job(jobs, submit(settings, jobs, path))
    assert job["status"] == "done", job.get("error")
    result = load_results(store_root, job)
    w, h = (240, 320) if rotation in (90, 270) else (320, 240)
    check_contract(result, 20, w, h)
    assert result["video"]["rotation"] in (0, 90, 180, 270)


def test_variable_frame_rate(worker, settings, jobs, store_root, tmp_path) -> None:
    """Each frame's t is its presentation time, not index / fps."""
    path = videos.make_video(tmp_path / "vfr.mp4", frames=30, fps=30, vfr=True)
    job = wait_job(jobs, submit(settings, jobs, path))
    assert job["status"] == "done", job.get("error")
    result = load_results(store_root, job)
    check_contract(result, 30, 320, 240)
    expected = videos.vfr_times(30, 30)
    got = [f["t"] for f in result["frames"]]
    assert got == pytest.approx([t - expected[0] for t in expected], abs=1e-3)


def test_audio_track_ignored(worker, settings, jobs, store_root, tmp_path) -> None:
    """A video with an audio track is processed for its video stream alone."""
    path = videos.make_video(tmp_path / "talk.mp4", frames=25, audio=True)
    job = wait_job(jobs, submit(settings, jobs, path))
    assert job["status"] == "done", job.get("error")
    check_contract(load_results(store_root, job), 25, 320, 240)


def test_many_segments_and_odd_batch(worker, settings, jobs, store_root, tmp_path) -> None:
    """A video longer than several ingest segments, with a batch size that does not divide the
    frame count, still yields every frame once, in order."""
    path = videos.make_video(tmp_path / "long.mp4", frames=157, fps=30, gop=45)
    job = wait_job(jobs, submit(settings, jobs, path, batch_size=5))
    assert job["status"] == "done", job.get("error")
    check_contract(load_results(store_root, job), 157, 320, 240)
    assert job["batches_total"] == 32


def test_corrupt_packets_skipped_and_counted(worker, settings, jobs, store_root, tmp_path) -> None:
    """Corrupt packets in an otherwise readable video are skipped and counted, not fatal."""
    path = videos.make_corrupt_middle(tmp_path / "corrupt.mp4")
    job = wait_job(jobs, submit(settings, jobs, path))
    assert job["status"] == "done", job.get("error")
    assert job["corrupt_packets"] > 0
    result = load_results(store_root, job)
    assert [f["index"] for f in result["frames"]] == list(range(job["frames_total"]))
    assert 0 < job["frames_total"] < 90


def infer_lines(log: Path) -> list[dict]:  # type: ignore[type-arg]
    lines = [json.loads(raw) for raw in log.read_text().splitlines() if '"infer.batch"' in raw]
    return [x for x in lines if x.get("event") == "infer.batch"]


def run_sample(isolated: dict[str, str], start_worker, *layout: tuple[str, ...]) -> tuple[dict, list[dict]]:  # type: ignore[no-untyped-def,type-arg]
    """The sample video through workers started with each of ``layout``'s arguments; the
    results and the workers' infer.batch log lines."""
    from conftest import posequeue

    env = {k: isolated[k] for k in ("POSEQUEUE_BROKER_URL", "POSEQUEUE_STORE")}
    workers = [start_worker(*args, **env) for args in layout]
    done = posequeue("submit", str(SAMPLE), "--wait", "--json", "--timeout", "180", env=isolated)
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout.splitlines()[-1])["job_id"]
    results = json.loads(posequeue("results", job_id, env=isolated).stdout)
    for w in workers:
        w.stop()
    return results, [x for w in workers for x in infer_lines(w.log)]


def test_all_stage_worker_runs_both_stages_in_one_task(isolated, start_worker) -> None:  # type: ignore[no-untyped-def]
    """A worker serving both stages runs the landmarks in the detector's task (no crops through
    Redis, no second task); workers split by stage hand each batch over through the landmark
    queue. Both give the same poses."""
    # Given the sample video through one all-stage worker, then through one worker per stage
    fused, fused_lines = run_sample(isolated, start_worker, ())
    split, split_lines = run_sample(
        isolated, start_worker, ("--stage", "ingest"), ("--stage", "detector"), ("--stage", "landmarks")
    )
    # Then the all-stage worker ran each batch's two stages in one task ...
    tasks: dict[str, list[str]] = {}
    for line in fused_lines:
        tasks.setdefault(line["task_id"], []).append(line["stage"])
    assert sorted(tasks.values()) == [["detector", "landmarks"]] * len(tasks)
    # ... the split workers in two
    stages_per_task = {}
    for line in split_lines:
        stages_per_task.setdefault(line["task_id"], set()).add(line["stage"])
    assert all(len(s) == 1 for s in stages_per_task.values()) and len(stages_per_task) == len(fused_lines)
    # ... and the poses are the same, frame by frame
    assert fused["frames"] == split["frames"]
    assert sum(bool(f["people"]) for f in fused["frames"]) > 0
