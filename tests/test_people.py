"""Several people per frame end to end (real Redis, real worker processes): each person found
gets a track id that stays with them through the video, across batches run in parallel."""

from __future__ import annotations

import csv
import io

import pytest
import videos
from helpers import load_results, wait_job

pytestmark = pytest.mark.integration
MIDDLE = 320  # the two people of make_two_people_video stay on their own half of the frame


def run(settings, jobs, store_root, path, **kw) -> tuple[dict, dict]:  # type: ignore[no-untyped-def, type-arg]
    from posequeue.producer.submit import submit

    job = wait_job(jobs, submit(str(path), settings=settings, jobs=jobs, batch_size=8, **kw))
    assert job["status"] == "done", job.get("error")
    return job, load_results(store_root, job)


def sides(result: dict) -> list[dict[int, str]]:  # type: ignore[type-arg]
    """Per frame, each person's track id and the half of the frame their nose is in."""
    return [
        {p["track_id"]: "left" if p["keypoints"][0][0] < MIDDLE else "right" for p in f["people"]}
        for f in result["frames"]
    ]


def test_two_people_get_two_stable_track_ids(worker, settings, jobs, store_root, tmp_path) -> None:
    """--people 2 on a video of two people gives both, each with one track id through all 8
    batches (kept across the 3 frames where the detector misses the left one), in the JSON and
    the CSV."""
    from posequeue.store import open_store

    path = videos.make_two_people_video(tmp_path / "two.mp4", frames=60)
    job, result = run(settings, jobs, store_root, path, people=2)
    assert result["contract"] == 2
    assert result["people"]["max"] == 2 and result["people"]["follow"] == "most-present"
    per_frame = sides(result)
    assert sum(len(f) == 2 for f in per_frame) >= 55, per_frame
    side_of = per_frame[0]
    assert set(side_of) == {0, 1} and set(side_of.values()) == {"left", "right"}
    for i, found in enumerate(per_frame):  # every id on its own side, no third id
        assert found and found.items() <= side_of.items(), (i, found, side_of)
    rows = list(
        csv.DictReader(
            io.StringIO(open_store(store_root).get_bytes(f"jobs/{job['job_id']}/poses.csv").decode())
        )
    )
    assert len(rows) == 33 * sum(len(f) for f in per_frame)
    assert {(int(r["frame"]), int(r["track"])) for r in rows} == {
        (i, t) for i, f in enumerate(per_frame) for t in f
    }


def test_one_person_follows_the_most_present(worker, settings, jobs, store_root, tmp_path) -> None:
    """With one person, the job follows the person present in every frame, even where another,
    present half the time, scores better; --follow best-score takes the best of each frame."""
    path = videos.make_two_people_video(tmp_path / "two.mp4", frames=48, right_until=24)
    _, followed = run(settings, jobs, store_root, path)
    assert sides(followed) == [{0: "left"}] * 48
    _, best = run(settings, jobs, store_root, path, follow="best-score")
    assert sides(best) == [{0: "right"}] * 24 + [{1: "left"}] * 24


def test_people_through_workers_split_by_stage(isolated, start_worker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Submitted from the command line with --people 2 to one worker per stage (both people's
    crops through Redis between the stages), the two people come back with stable ids."""
    import json

    from conftest import posequeue

    env = {k: isolated[k] for k in ("POSEQUEUE_BROKER_URL", "POSEQUEUE_STORE")}
    for stage in ("ingest", "detector", "landmarks"):
        start_worker("--stage", stage, **env)
    path = videos.make_two_people_video(tmp_path / "two.mp4", frames=24)
    done = posequeue(
        "submit", str(path), "--people", "2", "--wait", "--json", "--timeout", "180", env=isolated
    )
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout.splitlines()[-1])
    assert job["people"] == 2 and job["follow"] == "most-present"
    result = json.loads(posequeue("results", job["job_id"], env=isolated).stdout)
    per_frame = sides(result)
    assert sum(len(f) == 2 for f in per_frame) >= 22, per_frame
    assert all(f and f.items() <= per_frame[0].items() for f in per_frame), per_frame
