"""Video mode (``submit --video-mode``, posequeue.worker.video_mode): the auxiliary landmarks'
filter, the next region, overlapping regions, when the detector runs, and the two real models
following the person of a real video. Against MediaPipe's own video mode: tests/test_accuracy.py."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from posequeue.config.schemas import BatchMeta
from posequeue.worker import blazepose, video_mode
from posequeue.worker.roi import Roi
from posequeue.worker.video_mode import AuxFilter, distinct, next_region

pytestmark = pytest.mark.compat

ACCURACY = Path(__file__).resolve().parent / "fixtures" / "accuracy"


def test_filter_passes_the_first_points_and_holds_a_still_person() -> None:
    smooth = AuxFilter()
    points = np.array([[300.0, 200.0, 5.0], [310.0, 60.0, 1.0]])
    assert np.array_equal(smooth(0.0, points), points)
    for k in range(1, 10):
        assert np.allclose(smooth(k / 30, points), points)


def test_filter_follows_a_move_by_the_one_euro_formula() -> None:
    """One step of 10 px in x at 30 frames/s, the points 140 px apart (size 75): the speed, in
    sizes per second, through the derivative filter (cutoff 1 Hz), sets the cutoff of the value
    filter (0.01 + 1 x speed); the output moves by that filter's alpha of the step."""
    smooth = AuxFilter()
    points = np.array([[300.0, 200.0, 0.0], [310.0, 60.0, 0.0]])
    smooth(0.0, points)
    moved = smooth(1 / 30, points + [10.0, 0.0, 0.0])

    def alpha(cutoff: float) -> float:
        return 1 / (1 + 30 / (2 * math.pi * cutoff))

    speed = alpha(1.0) * (10 / 75 * 30)
    expected = 300 + alpha(0.01 + speed) * 10
    assert moved[0, 0] == pytest.approx(expected)
    assert 300 < moved[0, 0] < 302  # heavy smoothing: a region lags a sudden move (13% of it here)
    assert np.array_equal(moved[:, 1], points[:, 1])  # y did not move


def test_filter_passes_a_repeated_time_through() -> None:
    smooth = AuxFilter()
    points = np.array([[300.0, 200.0, 0.0], [310.0, 60.0, 0.0]])
    smooth(1.0, points)
    later = points + 50
    assert np.array_equal(smooth(1.0, later), later)


def landmark_outputs(aux: list[tuple[float, float]], *flags: float) -> dict[str, np.ndarray]:
    """A landmark call's outputs, a row per flag, with the auxiliary landmarks 33 and 34 at
    ``aux`` (crop pixels) and a cold heatmap (no refinement)."""
    n = len(flags)
    full = np.zeros((n, 39, 5), np.float32)
    full[:, 33:35, :2] = aux
    return {
        blazepose.LANDMARKS: full.reshape(n, 195),
        blazepose.POSE_FLAG: np.array(flags, np.float32).reshape(n, 1),
        blazepose.HEATMAP: np.full((n, 64, 64, 39), -30.0, np.float32),
    }


def test_next_region_from_the_auxiliary_landmarks() -> None:
    """An upright crop of the whole 400x400 image: centre (128, 160) and scale point (128, 32)
    in crop pixels are 250 and 50 image pixels down; the region is centred on the first, 1.25 x
    twice their distance wide, upright."""
    roi = Roi(0.5, 0.5, 1.0, 1.0, 0.0)
    got = next_region(landmark_outputs([(128, 160), (128, 32)], 0.9), 0, roi, (400, 400), AuxFilter(), 0.0)
    assert got is not None
    side = 1.25 * 2 * (160 - 32) / 256
    assert (got.x, got.y) == pytest.approx((0.5, 160 / 256))
    assert (got.width, got.height) == pytest.approx((side, side))
    assert got.rotation == pytest.approx(0.0)


def test_next_region_turns_with_the_body_and_is_none_when_lost() -> None:
    roi = Roi(0.5, 0.5, 1.0, 1.0, 0.0)
    lying = next_region(landmark_outputs([(128, 128), (228, 128)], 0.9), 0, roi, (400, 400), AuxFilter(), 0.0)
    assert lying is not None and lying.rotation == pytest.approx(math.pi / 2)  # head to the right
    assert (
        next_region(landmark_outputs([(128, 128), (128, 28)], 0.4), 0, roi, (400, 400), AuxFilter(), 0.0)
        is None
    )


def test_distinct_drops_a_region_that_drifted_onto_a_better_one() -> None:
    a, b = Roi(0.3, 0.5, 0.4, 0.6, 0.0), Roi(0.31, 0.5, 0.4, 0.6, 0.0)
    c = Roi(0.75, 0.5, 0.3, 0.6, 0.0)
    kept = distinct([(a, AuxFilter()), (b, AuxFilter()), (c, AuxFilter())])
    assert [roi for roi, _ in kept] == [a, c]


LEFT, RIGHT = 2 * (14 * 28 + 7), 2 * (14 * 28 + 21)  # detector anchors at x 0.27 and 0.77, y 0.52


class Stage:
    """A stage standing in for the real ones where only the calls matter: the detector finds
    a standing person at each anchor of ``found[frame]``; the landmark model confirms a person
    where the crop's centre is red."""

    def __init__(self, kind: str, found: dict[int, list[int]] | None = None) -> None:
        self.kind, self.found, self.calls = kind, found or {}, 0

    def infer(self, batch: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
        self.calls += 1
        return (self._detector if self.kind == "detector" else self._landmarks)(batch), 0.001

    def _detector(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        from posequeue.worker import detector

        frame = int(round((batch[0, 0, 0, 1] + 1) * 127.5))  # the frame's number, in green
        boxes = np.zeros((1, 2254, 12), np.float32)
        scores = np.full((1, 2254, 1), -10.0, np.float32)
        for index in self.found.get(frame, []):
            scores[0, index] = 3.0
            boxes[0, index, 2:4] = 50
            boxes[0, index, 4:] = (
                np.array([[0.0, 0.08], [0.0, -0.22], [0.0, -0.12], [0.0, -0.17]]) * 224
            ).reshape(-1)
        return {detector.BOXES: boxes, detector.SCORES: scores}

    def _landmarks(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return landmark_outputs(
            [(128, 140), (128, 40)], *(0.9 if crop[128, 128, 0] > 0 else 0.1 for crop in batch)
        )


def frames_with(present: list[bool], left_only: bool = False) -> np.ndarray:
    """Frames whose green channel numbers them and whose red is 255 where a person is (only
    in the left half with ``left_only``)."""
    frames = np.zeros((len(present), 224, 224, 3), np.uint8)
    for i, here in enumerate(present):
        frames[i, :, :, 1] = i
        frames[i, :, : 112 if left_only else 224, 0] = 255 if here else 0
    return frames


def meta(n: int, people: int = 1) -> BatchMeta:
    return BatchMeta(
        "j", 0, list(range(n)), [i / 30 for i in range(n)], (224, 224), (224, 224), "blazepose", people
    )


def test_detector_runs_once_while_the_person_stays() -> None:
    det, lm = Stage("detector", found={i: [LEFT] for i in range(8)}), Stage("landmarks")
    out = video_mode.run(det, lm, frames_with([True] * 8), None, meta(8))
    assert det.calls == out.detections == 1 and lm.calls == 8
    assert all(len(people) == 1 for people in out.people)


def test_detector_runs_again_where_the_person_is_lost() -> None:
    """Lost on frame 3 (the landmark model finds nobody): frame 4 is detected again; frames
    where the detector finds nobody are detected on, one by one, until someone is there."""
    present = [True, True, True, False, True, True, True, True]
    det, lm = Stage("detector", found={i: [LEFT] for i in (0, 5, 6, 7)}), Stage("landmarks")
    out = video_mode.run(det, lm, frames_with(present), None, meta(8))
    # 0 detected and followed to 3 (lost there), 4 nobody detected, 5 detected and followed on.
    assert det.calls == out.detections == 3
    assert [len(p) for p in out.people] == [1, 1, 1, 0, 0, 1, 1, 1]


def test_a_rejected_detection_is_not_looked_for_on_every_frame() -> None:
    """Up to two people; the detector finds two on every frame but the landmark model confirms
    only the left one: it is followed and the detector is not run again for the other. Nobody
    confirmed at all: detected on each frame, as MediaPipe does while it follows nobody."""
    both = {i: [LEFT, RIGHT] for i in range(8)}
    det, lm = Stage("detector", found=both), Stage("landmarks")
    out = video_mode.run(det, lm, frames_with([True] * 8, left_only=True), None, meta(8, people=2))
    assert det.calls == 1 and [len(p) for p in out.people] == [1] * 8
    det, lm = Stage("detector", found=both), Stage("landmarks")
    out = video_mode.run(det, lm, frames_with([False] * 4), None, meta(4, people=2))
    assert det.calls == 4 and out.people == [[], [], [], []]


def test_a_lost_second_person_is_looked_for_at_once_and_the_other_kept() -> None:
    """Two people followed; the right one leaves on frame 2: the next frame is detected again.
    The detector misses the left one there, who stays followed all the same (region and
    smoothing kept); then followed alone, without more detections."""
    found = {0: [LEFT, RIGHT]}
    frames = frames_with([True] * 6)
    frames[2:, :, 112:, 0] = 0  # the right person gone from frame 2
    det, lm = Stage("detector", found=found), Stage("landmarks")
    out = video_mode.run(det, lm, frames, None, meta(6, people=2))
    assert det.calls == 2 and [len(p) for p in out.people] == [2, 2, 1, 1, 1, 1]


def test_models_that_cannot_follow_people_are_refused_video_mode(settings, jobs, anymotion) -> None:
    """A user's one-stage keypoints model, and BlazePose compiled for batches of 2: submit
    --video-mode refuses them with the reason (the CLI exits 2, the API answers 422)."""
    import dataclasses

    from posequeue.config.catalogue import get_model
    from posequeue.errors import SubmitError
    from posequeue.producer.submit import submit

    with pytest.raises(SubmitError, match="no person detector followed by a landmark stage") as refused:
        submit(str(ACCURACY / "moving.mp4"), settings=settings, jobs=jobs, model=anymotion, video_mode=True)
    assert refused.value.reason == "video_mode"
    blazepose_spec = get_model("blazepose")
    batched = dataclasses.replace(
        blazepose_spec, stages=tuple(dataclasses.replace(s, compiled_batch=2) for s in blazepose_spec.stages)
    )
    assert blazepose_spec.no_video_mode is None
    assert "compiled for batches of more than one frame" in (batched.no_video_mode or "")


def test_video_mode_runs_only_where_both_stages_are_in_the_process() -> None:
    from posequeue.worker.stages import video_mode_pair

    asked = meta(8)
    asked.video_mode = True
    assert video_mode_pair(asked, "detector", ["landmarks"]) == "landmarks"
    assert video_mode_pair(asked, "detector", []) is None  # a split layout: detected on every frame
    assert video_mode_pair(meta(8), "detector", ["landmarks"]) is None  # not asked


def decoded(video: Path, count: int) -> tuple[np.ndarray, tuple[int, int]]:
    from posequeue.producer.preprocess import display_size, work_frame
    from posequeue.producer.video import DecodeStats, read_segment, rotation_of

    frames: list[np.ndarray] = []
    for item in read_segment(str(video), None, 1e9, DecodeStats()):
        rotation = rotation_of(item.frame)
        frames.append(work_frame(item.frame, rotation, 1280))
        display = display_size(item.frame, rotation)
        if len(frames) == count:
            break
    return np.stack(frames), display


@pytest.mark.parametrize("name", ["moving", "tilted"])
def test_real_models_follow_the_person_with_one_detection(model_dir: Path, name: str) -> None:
    """A batch of 8 frames of a real video: detected once, the person followed on every frame,
    each keypoint near where detecting on every frame puts it (within 10% of the body)."""
    from posequeue.worker import stages

    frames, display = decoded(ACCURACY / f"{name}.mp4", 8)
    batch = BatchMeta(
        "j", 0, list(range(8)), [i / 30 for i in range(8)], display, frames.shape[2:0:-1], "blazepose", 1
    )
    det, lm = stages.load("blazepose", "detector"), stages.load("blazepose", "landmarks")
    out = video_mode.run(det, lm, frames, None, batch)
    assert out.detections == 1 and all(len(p) == 1 for p in out.people)
    every: list[Any] = lm.run(det.run({"frames": frames.tobytes()}, batch).payload, batch).people or []
    for followed, detected in zip(out.people, every, strict=True):
        a, b = np.asarray(followed[0]["keypoints"])[:, :2], np.asarray(detected[0]["keypoints"])[:, :2]
        body = float(np.hypot(*(b.max(0) - b.min(0))))
        assert np.median(np.hypot(*(a - b).T)) / body < 0.1
