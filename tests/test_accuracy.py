"""Accuracy of the default model end to end (through queues and workers) against MediaPipe's
own Pose solution on the same decoded frames: a person small, off-centre, moving, tilted, in a
portrait phone video with display rotation, at variable frame rate, leaving the frame."""

from __future__ import annotations

import pytest
from accuracy import compare, reference, videos
from helpers import load_results, wait_job

pytestmark = [pytest.mark.integration, pytest.mark.compat]
MAX_ERROR = 0.02  # median over frames of the mean keypoint distance / keypoint diagonal
MIN_AGREEMENT = 0.9  # share of frames where both agree whether a person is there


@pytest.mark.parametrize("video", videos(), ids=lambda p: p.stem)
def test_matches_mediapipe(video, worker, settings, jobs, store_root) -> None:
    """Keypoints within 2% of the person's size of MediaPipe's, person found in the same frames."""
    from posequeue.producer.submit import submit

    job = wait_job(jobs, submit(str(video), settings=settings, jobs=jobs))
    assert job["status"] == "done", job.get("error")
    figures = compare(load_results(store_root, job)["frames"], reference(video))
    assert figures["person_found_agreement"] >= MIN_AGREEMENT, figures
    assert figures["compared"] > 0 and figures["median_error_visible"] <= MAX_ERROR, figures
