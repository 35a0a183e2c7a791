"""Accuracy of the default model end to end (through queues and workers) against MediaPipe's
own Pose solution on the same decoded frames: a person small, off-centre, moving, tilted, in a
portrait phone video with display rotation, at variable frame rate, leaving the frame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from accuracy import compare, frame_error, reference, videos
from helpers import load_results, wait_job

pytestmark = [pytest.mark.integration, pytest.mark.compat]
MAX_ERROR = 0.02  # median over frames of the mean keypoint distance / keypoint diagonal
MIN_AGREEMENT = 0.9  # share of frames where both agree whether a person is there
# Over the frames of all the videos together (issue 13's bar for a payload codec: frames as JPEG
# gave 0.0065 and 0.986 where raw frames give 0.0059 and 0.986).
MAX_POOLED_ERROR = 0.01
MIN_POOLED_AGREEMENT = 0.95
# submit --video-mode against MediaPipe's own video mode, pooled (measured 0.036 and 0.974: each
# batch starts with a detection where MediaPipe follows the person through the whole video,
# and small differences in a region grow along the frames it places; MediaPipe's two modes
# differ by 0.043 on these videos).
MAX_VIDEO_MODE_ERROR = 0.045
MIN_VIDEO_MODE_AGREEMENT = 0.95


def run_all(settings, jobs, store_root, **options: Any) -> dict[Path, dict[str, Any]]:
    """Every accuracy video through the shared worker, all submitted at once (they queue
    together as users' jobs do); each video's job summary and result frames."""
    from posequeue.producer.submit import submit

    ids = {video: submit(str(video), settings=settings, jobs=jobs, **options) for video in videos()}
    out = {}
    for video, job_id in ids.items():
        job = wait_job(jobs, job_id, timeout=240)
        out[video] = {
            "job": job,
            "frames": load_results(store_root, job)["frames"] if job["status"] == "done" else [],
        }
    return out


def pooled(runs: dict[Path, dict[str, Any]], video_mode: bool = False) -> tuple[float, float]:
    """The median keypoint error and the person-found agreement over every frame of every video."""
    errors, agree = [], []
    for video, got in runs.items():
        assert got["job"]["status"] == "done", got["job"].get("error")
        for frame, theirs in zip(got["frames"], reference(video, video_mode), strict=True):
            mine = frame["people"][0]["keypoints"] if frame["people"] else None
            agree.append((mine is None) == (theirs is None))
            if mine is not None and theirs is not None:
                errors.append(frame_error(mine, theirs)[0])
    return sorted(errors)[len(errors) // 2], sum(agree) / len(agree)


@pytest.fixture(scope="module")
def ours(worker, settings, jobs, store_root) -> dict[Path, dict[str, Any]]:
    """The default jobs, run once for the per-video and the pooled checks."""
    return run_all(settings, jobs, store_root)


@pytest.mark.parametrize("video", videos(), ids=lambda p: p.stem)
def test_matches_mediapipe(video, ours) -> None:
    """Keypoints within 2% of the person's size of MediaPipe's, person found in the same frames."""
    job = ours[video]["job"]
    assert job["status"] == "done", job.get("error")
    figures = compare(ours[video]["frames"], reference(video))
    assert figures["person_found_agreement"] >= MIN_AGREEMENT, figures
    assert figures["compared"] > 0 and figures["median_error_visible"] <= MAX_ERROR, figures


def test_all_videos_together_within_one_percent(ours) -> None:
    """Over every frame of the accuracy videos, as the default payload codec carries them: the
    median keypoint error within 1% of the person's size, a person found in the same frames
    at least 95% of the time."""
    error, agreement = pooled(ours)
    assert error <= MAX_POOLED_ERROR and agreement >= MIN_POOLED_AGREEMENT, (error, agreement)


def test_video_mode_matches_mediapipes_video_mode(ours, worker, settings, jobs, store_root) -> None:
    """``submit --video-mode`` (the shared worker serves both stages: it follows people) against
    MediaPipe's own video mode, over every frame of the accuracy videos; nearer to it than the
    default jobs are (measured 0.041 and 0.943), which a job that never followed anybody
    would not be."""
    error, agreement = pooled(run_all(settings, jobs, store_root, video_mode=True), video_mode=True)
    assert error <= MAX_VIDEO_MODE_ERROR and agreement >= MIN_VIDEO_MODE_AGREEMENT, (error, agreement)
    default_error, default_agreement = pooled(ours, video_mode=True)
    assert error < default_error and agreement > default_agreement, (error, default_error)
