"""BlazePose person detector (``pose_detection.tflite``, 224x224) decoding, as MediaPipe's
pose_detection graph does: SSD anchors, box and keypoint decoding, sigmoid scores, weighted
non-maximum suppression, and the region of interest for the landmark model.

Constants from MediaPipe's pose_detection_cpu.pbtxt (SsdAnchorsCalculator,
TensorsToDetectionsCalculator, NonMaxSuppressionCalculator) and pose_detection_to_roi.pbtxt.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from posequeue.worker.roi import Roi, roi_from_points

INPUT_SIZE = 224
NUM_LAYERS = 5
# min_scale 0.1484375 and max_scale 0.75 do not matter: fixed_anchor_size makes every anchor 1x1.
STRIDES = (8, 16, 32, 32, 32)
SCORE_CLIP = 100.0
MIN_SCORE = 0.5  # MediaPipe Pose's min_detection_confidence default (the graph's own floor is 0.2)
NMS_IOU = 0.3
# Several people (``submit --people N``): detections are kept, best first, while their box
# overlaps every better kept one by at most this IoU (the NMS threshold, so what NMS separated
# stays separate: its weighted boxes can drift back into each other).
SEPARATE_IOU = NMS_IOU
NUM_KEYPOINTS = 4  # 0 mid-hip, 1 full-body size and rotation, 2 mid-shoulder, 3 upper-body
ROI_SCALE = 1.25
BOXES = "Identity"  # (B, 2254, 12)
SCORES = "Identity_1"  # (B, 2254, 1)


@lru_cache(maxsize=1)
def anchors() -> np.ndarray:
    """(2254, 2) anchor centres; fixed anchor size, so width and height are 1."""
    centres: list[tuple[float, float]] = []
    layer = 0
    while layer < NUM_LAYERS:
        per_cell = 0
        last = layer
        # Layers with the same stride share one feature map (2 anchors per layer per cell).
        while last < NUM_LAYERS and STRIDES[last] == STRIDES[layer]:
            per_cell += 2
            last += 1
        size = -(-INPUT_SIZE // STRIDES[layer])
        for y in range(size):
            for x in range(size):
                centres += [((x + 0.5) / size, (y + 0.5) / size)] * per_cell
        layer = last
    return np.array(centres, dtype=np.float32)


@dataclass(frozen=True)
class Detection:
    score: float
    box: np.ndarray  # xmin, ymin, xmax, ymax (normalised to the letterboxed input)
    keypoints: np.ndarray  # (4, 2) normalised to the letterboxed input


def decode(boxes: np.ndarray, scores: np.ndarray, min_score: float = MIN_SCORE) -> list[Detection]:
    """One image's raw outputs -> detections after weighted NMS, best first."""
    anchor = anchors()
    raw_scores = scores.reshape(-1)
    # Sigmoid only the anchors that can pass: those whose logit is near or above the threshold's
    # (a margin keeps the exact test below the one that decides; float64's sigmoid is 1.0 from
    # a logit of ~36.7 on, so a threshold of 1 starts there).
    near = np.flatnonzero(raw_scores >= min(_logit(min_score), 36.0) - 1e-3)
    logits = np.clip(raw_scores[near].astype(np.float64), -SCORE_CLIP, SCORE_CLIP)
    prob = 1.0 / (1.0 + np.exp(-logits))
    passed = prob >= min_score
    keep, prob = near[passed], prob[passed]
    if keep.size == 0:
        return []
    raw = boxes.reshape(-1, 12)[keep] / INPUT_SIZE
    centre = raw[:, 0:2] + anchor[keep]
    half = raw[:, 2:4] / 2
    box = np.concatenate([centre - half, centre + half], axis=1)
    kps = raw[:, 4:].reshape(-1, NUM_KEYPOINTS, 2) + anchor[keep][:, None, :]
    return _weighted_nms(prob, box, kps)


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p))) if 0 < p < 1 else (-np.inf if p <= 0 else np.inf)


def iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Intersection over union of one (xmin, ymin, xmax, ymax) box with each of ``others``."""
    lo = np.maximum(box[:2], others[:, :2])
    hi = np.minimum(box[2:], others[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(others[:, 2:] - others[:, :2], axis=1)
    return inter / np.maximum(area + areas - inter, 1e-9)


def _weighted_nms(scores: np.ndarray, boxes: np.ndarray, kps: np.ndarray) -> list[Detection]:
    order = np.argsort(-scores, kind="stable")
    out: list[Detection] = []
    while order.size:
        top = order[0]
        overlap = iou(boxes[top], boxes[order]) > NMS_IOU
        overlap[0] = True  # a degenerate box (no area) overlaps nothing, not even itself
        group = order[overlap]
        weights = scores[group][:, None]
        total = weights.sum()
        box = (boxes[group] * weights).sum(0) / total
        points = (kps[group] * weights[:, :, None]).sum(0) / total
        out.append(Detection(float(scores[top]), box, points))
        order = order[~overlap]
    return out


def apart(boxes: list[np.ndarray], most_iou: float, keep: int | None = None) -> list[int]:
    """Indices of up to ``keep`` of ``boxes`` (best first), each overlapping every better kept
    one by at most ``most_iou`` (intersection over union)."""
    kept: list[int] = []
    for i, box in enumerate(boxes):
        if len(kept) == keep:
            break
        if not kept or iou(box, np.stack([boxes[k] for k in kept])).max() <= most_iou:
            kept.append(i)
    return kept


def separate(found: list[Detection], keep: int) -> list[Detection]:
    """Up to ``keep`` detections, best first, each overlapping every better kept one by at most
    ``SEPARATE_IOU`` (boxes' intersection over union): MediaPipe's pose landmarker with
    ``num_poses``. ``keep=1`` is the best detection alone (MediaPipe Pose)."""
    return [found[i] for i in apart([d.box for d in found], SEPARATE_IOU, keep)]


def roi_of(detection: Detection, pad: tuple[float, ...], image_size: tuple[int, int]) -> Roi:
    """The landmark model's region for a detection. ``pad`` is the letterbox padding
    (left, top, right, bottom) as fractions of the model input."""
    left, top, right, bottom = pad
    sx, sy = 1 - left - right, 1 - top - bottom
    points = (detection.keypoints - [left, top]) / [sx, sy]  # letterbox removal
    return roi_from_points(tuple(points[0]), tuple(points[1]), image_size, scale=ROI_SCALE)
