"""MediaPipe's video mode within a batch (``submit --video-mode``): the landmarks of one frame
place the person in the next frame, and the detector runs only where nobody is followed.

As MediaPipe's Pose solution does with ``static_image_mode=False``: the next region comes from
the two auxiliary landmarks (33: body centre, 34: size and rotation), refined by the heatmap,
projected like the pose and smoothed by a one-euro filter (``AuxFilter``), then squared and
scaled 1.25 like a detection's region; a person whose pose flag falls below 0.5 is lost. The
scale is measured, not read: the pose_landmarks_to_roi graph file found upstream says 1.5, but
on the first followed frame of each accuracy video mediapipe 0.10.14's keypoints are 0.003-0.025
(median error, of the person's size) from ours with 1.25 and 0.037-0.105 with 1.5.

For up to ``meta.people`` people: the detector runs on a batch's first frame, and again whenever
fewer people are followed than its last run found and the landmark model confirmed (a lost
person is looked for at once; one person alone, or a detection the landmark model rejects, is
not looked for again). Whoever is still followed then stays, with their region and smoothing,
and the detections fill the places left, ranked after them (so ``people`` is not best-detection
first here). A region that comes to overlap a better-ranked one is dropped (two regions drifting
onto one person). Someone entering the picture while everybody is followed is found at
the next batch (``--batch-size`` frames later at most).

Batches are independent (any worker may take the next one), so each starts with a detection and
a fresh filter. The landmark calls go one frame at a time (a frame's region needs the frame
before): that costs nothing on a single-thread CPU runtime (14.2 ms a frame at batch 1 and at
batch 8, measured) but forgoes a NeuronCore's batching, and a model compiled for batches of
more than one frame would pad every call to a whole batch: such models, and models without
BlazePose's two stages, are refused video mode (``ModelSpec.no_video_mode``). Keypoints differ
from the default's (every frame detected, as MediaPipe's static image mode), as MediaPipe's own
video mode's do: figures in docs/architecture.md (Video mode).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from posequeue.config.schemas import BatchMeta
from posequeue.worker import blazepose, detector
from posequeue.worker.roi import Roi, roi_from_points

AUX_CENTRE, AUX_SCALE = 33, 34  # the auxiliary landmarks that place the next region
LANDMARK_ROI_SCALE = 1.25
SAME_PERSON_IOU = 0.5  # two followed regions overlapping more than this follow one person


class AuxFilter:
    """MediaPipe's smoothing of the two auxiliary landmarks of one person before they place
    the next region (pose_landmark_filtering: a one-euro filter on pixels, every axis apart,
    speeds scaled by the points' size; min cutoff 0.01, beta 1, derivative cutoff 1): heavy
    when the person stays, lighter as they move, so the region holds still on a still person."""

    MIN_CUTOFF, BETA, DERIVATE_CUTOFF = 0.01, 1.0, 1.0

    def __init__(self) -> None:
        self.t: float | None = None
        self.raw: np.ndarray | None = None  # the last input
        self.value: np.ndarray | None = None  # the last output
        self.speed: np.ndarray | None = None  # the smoothed speed

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, rate: float) -> np.ndarray:
        tau = 1.0 / (2 * np.pi * np.asarray(cutoff))
        return 1.0 / (1.0 + tau * rate)

    def __call__(self, t: float, points: np.ndarray) -> np.ndarray:
        """``points`` (2, 3) in pixels at time ``t`` (s), smoothed."""
        spread = points[:, :2].max(axis=0) - points[:, :2].min(axis=0)
        size = float(spread.sum() / 2)
        if size < 1e-6 or (self.t is not None and t <= self.t):  # as MediaPipe: passed through
            return points
        if self.t is None or self.raw is None or self.value is None or self.speed is None:
            self.t, self.raw, self.value, self.speed = t, points, points, np.zeros_like(points)
            return points
        rate = 1.0 / (t - self.t)
        speed = (points - self.raw) / size * rate
        self.speed = self.speed + self._alpha(self.DERIVATE_CUTOFF, rate) * (speed - self.speed)
        alpha = self._alpha(self.MIN_CUTOFF + self.BETA * np.abs(self.speed), rate)
        self.value = self.value + alpha * (points - self.value)
        self.t, self.raw = t, points
        return self.value


def next_region(
    outputs: dict[str, np.ndarray], row: int, roi: Roi, display: tuple[int, int], smooth: AuxFilter, t: float
) -> Roi | None:
    """The next frame's region from row ``row`` of a landmark call whose crop was ``roi`` at
    time ``t``; None when the pose flag says nobody is there."""
    if blazepose.pose_flag(outputs, row) is None:
        return None
    width, height = display
    image, _ = blazepose.landmarks(outputs, row, roi, AUX_SCALE + 1)
    pixels = image[[AUX_CENTRE, AUX_SCALE]] * [width, height, width]
    centre, scale = smooth(t, pixels)[:, :2] / [width, height]
    return roi_from_points(tuple(centre), tuple(scale), display, scale=LANDMARK_ROI_SCALE)


def _box(roi: Roi) -> np.ndarray:
    half_w, half_h = roi.width / 2, roi.height / 2
    return np.array([roi.x - half_w, roi.y - half_h, roi.x + half_w, roi.y + half_h])


def distinct(people: list[tuple[Roi, AuxFilter]], keep: int | None = None) -> list[tuple[Roi, AuxFilter]]:
    """Up to ``keep`` of the followed people in rank order, less any whose region overlaps a
    better one's by more than ``SAME_PERSON_IOU``."""
    return [people[i] for i in detector.apart([_box(roi) for roi, _ in people], SAME_PERSON_IOU, keep)]


class Followed:
    """One batch run in video mode: its people per frame and each model's seconds."""

    def __init__(self) -> None:
        self.people: list[list[dict[str, Any]]] = []
        self.detector_seconds = 0.0  # the detector's steps, its input and regions included
        self.model_seconds = 0.0  # in the two models' calls
        self.detections = 0  # frames the detector ran on


def run(det: Any, lm: Any, frames: np.ndarray, boxed: np.ndarray | None, meta: BatchMeta) -> Followed:
    """Both BlazePose stages (``stages.DetectorStage``, ``stages.LandmarkStage``) on one batch's
    ``frames``, in video mode; ``boxed``: the detector's inputs when the payload carries them."""
    out = Followed()
    pad = blazepose.letterbox_pads(*meta.work)
    followed: list[tuple[Roi, AuxFilter]] = []  # each person's region and smoothing
    found = 0  # people the last detection found that the landmark model confirmed
    for i, frame in enumerate(frames):
        detected = not followed or len(followed) < found
        if detected:
            started = time.perf_counter()
            image = boxed[i : i + 1] if boxed is not None else blazepose.letterboxed(frame[None])
            outputs, seconds = det.infer(blazepose.detector_batch(image))
            out.model_seconds += seconds
            regions = blazepose.regions(outputs, [pad], meta.display, keep=meta.people)[0]
            # Who is still followed stays (region and smoothing); the detections fill the places
            # left, unless they overlap someone followed.
            fresh = [(roi, AuxFilter()) for roi in regions]
            followed = distinct(followed + fresh, meta.people)
            out.detections += 1
            out.detector_seconds += time.perf_counter() - started
        if not followed:
            out.people.append([])
            continue
        rois = [roi for roi, _ in followed]
        outputs, seconds = lm.infer(blazepose.landmark_input(blazepose.crops(frame[None], [rois])))
        out.model_seconds += seconds
        out.people.append(blazepose.people(outputs, [rois], meta.display)[0])
        after = [
            (next_region(outputs, row, roi, meta.display, smooth, meta.times[i]), smooth)
            for row, (roi, smooth) in enumerate(followed)
        ]
        followed = distinct([(roi, smooth) for roi, smooth in after if roi is not None])
        if detected:  # a detection the landmark model rejects is not looked for again and again
            found = len(followed)
    return out
