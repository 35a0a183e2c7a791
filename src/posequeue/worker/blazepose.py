"""BlazePose's two stages as MediaPipe's Pose graph runs them (pose_landmark_cpu):

1. detector: the working frame letterboxed to 224x224 in [-1, 1]; SSD decoding and weighted
   NMS (``detector.py``); the best detection's region of interest (or, for several people, the
   best separate detections'), rotated so the body is upright; its 256x256 crop (edges
   replicated) goes to the next stage.
2. landmarks: the crop in [0, 1]; 39 landmarks of 5 values (x, y, z in crop pixels, visibility
   and presence logits), the first 33 are the pose; the pose flag (already a probability) must
   reach 0.5; x, y refined with the 64x64 heatmap (kernel 7); projected back through the region.

The warps sample like MediaPipe's OpenCV path (corners to corners, bilinear), which matters:
a half-pixel shift in the detector input moves its region by a few per cent.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from posequeue.errors import BatchError
from posequeue.worker import detector
from posequeue.worker.roi import Roi, crop, project

LANDMARKS = "Identity"  # (B, 195)
POSE_FLAG = "Identity_1"  # (B, 1)
HEATMAP = "Identity_3"  # (B, 64, 64, 39)
NUM_KEYPOINTS = 33
CROP_SIZE = 256
PRESENCE_THRESHOLD = 0.5
HEATMAP_KERNEL = 7
HEATMAP_MIN_CONFIDENCE = 0.5


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def letterbox(
    image: np.ndarray, size: int = detector.INPUT_SIZE, out: np.ndarray | None = None
) -> tuple[np.ndarray, tuple[float, ...]]:
    """The image fitted into a ``size`` square (black bars), written into ``out`` when given,
    and the padding as fractions (left, top, right, bottom) of the square."""
    import cv2

    h, w = image.shape[:2]
    side = max(w, h)
    k = size / side
    left, top = (side - w) / 2, (side - h) / 2
    matrix = np.array([[k, 0.0, left * k], [0.0, k, top * k]])
    boxed = cv2.warpAffine(
        image,
        matrix,
        (size, size),
        dst=out,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return boxed, letterbox_pads(w, h)


def letterbox_pads(width: int, height: int) -> tuple[float, ...]:
    """The padding ``letterbox`` adds to a ``width`` x ``height`` image, as fractions (left,
    top, right, bottom) of the square: it depends on the size only."""
    side = max(width, height)
    left, top = (side - width) / 2 / side, (side - height) / 2 / side
    return (left, top, left, top)


def letterboxed(images: np.ndarray) -> np.ndarray:
    """The detector's uint8 inputs: each image letterboxed straight into one batch."""
    size = detector.INPUT_SIZE
    boxed = np.empty((len(images), size, size, 3), np.uint8)
    for i, image in enumerate(images):
        letterbox(image, size, out=boxed[i])
    return boxed


def detector_batch(boxed: np.ndarray) -> np.ndarray:
    """Letterboxed uint8 inputs to the detector's batch in [-1, 1], converted in one pass (no
    float temporaries)."""
    batch = np.multiply(boxed, np.float32(2.0 / 255.0), dtype=np.float32)
    batch -= 1.0
    return batch


def detector_input(images: np.ndarray) -> tuple[np.ndarray, list[tuple[float, ...]]]:
    """The detector's batch in [-1, 1] and each image's padding."""
    h, w = images.shape[1:3]
    return detector_batch(letterboxed(images)), [letterbox_pads(w, h)] * len(images)


def landmark_input(crops: np.ndarray) -> np.ndarray:
    """The landmark model's batch: uint8 crops in [0, 1], converted in one pass."""
    return np.multiply(crops, np.float32(1.0 / 255.0), dtype=np.float32)


def regions(
    outputs: dict[str, np.ndarray], pads: list[tuple[float, ...]], size: tuple[int, int], keep: int = 1
) -> list[list[Roi]]:
    """Per image, the regions of its best ``keep`` separate detections, best first (empty
    where nobody was found)."""
    return [
        [
            detector.roi_of(found, pad, size)
            for found in detector.separate(detector.decode(boxes, scores), keep)
        ]
        for boxes, scores, pad in zip(outputs[detector.BOXES], outputs[detector.SCORES], pads, strict=True)
    ]


def crops(images: np.ndarray, rois: list[list[Roi]]) -> np.ndarray:
    """Upright square crops of every region, frame by frame in order, warped straight into one
    batch (a frame's count of crops is the length of its list of regions)."""
    chosen = [(image, roi) for image, regions in zip(images, rois, strict=True) for roi in regions]
    out = np.empty((len(chosen), CROP_SIZE, CROP_SIZE, 3), np.uint8)
    for i, (image, roi) in enumerate(chosen):
        crop(image, roi, CROP_SIZE, out=out[i])
    return out


def encode_rois(rois: list[list[Roi]]) -> bytes:
    """The regions' payload beside the stacked crops: JSON, one list per frame (its count)."""
    return json.dumps([[r.to_list() for r in regions] for regions in rois]).encode()


def decode_rois(data: bytes) -> list[list[Roi]]:
    frames = json.loads(data)
    # posequeue before --people wrote one region or null per frame: refuse it by name.
    if any(
        not isinstance(regions, list) or (regions and not isinstance(regions[0], list)) for regions in frames
    ):
        raise BatchError(
            "the batch's regions are in another layout (one per frame, from a detector worker of an "
            "older posequeue): run the same posequeue version on every worker (docs/operations.md, Upgrades)"
        )
    return [[Roi(*r) for r in regions] for regions in frames]


def refine(points: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """MediaPipe's RefineLandmarksFromHeatmapCalculator: x, y (normalised to the crop) become
    the confidence-weighted mean position in a 7x7 heatmap window, where it is confident.
    Vectorised over landmarks: each landmark's window is gathered from its own channel, and
    cells outside the heatmap get zero confidence, as the calculator's clamped loops skip them."""
    rows, cols = heatmap.shape[:2]
    n = len(points)
    half = HEATMAP_KERNEL // 2
    c = (points[:, 0] * cols).astype(np.int64)  # int() truncation, as the calculator does
    r = (points[:, 1] * rows).astype(np.int64)
    inside = (c >= 0) & (r >= 0) & (c < cols) & (r < rows)
    offsets = np.arange(-half, half + 1)
    win_r = np.clip(r, 0, rows - 1)[:, None] + offsets  # (n, 7) in heatmap rows
    win_c = np.clip(c, 0, cols - 1)[:, None] + offsets
    logits = heatmap[
        np.clip(win_r, 0, rows - 1)[:, :, None],
        np.clip(win_c, 0, cols - 1)[:, None, :],
        np.arange(n)[:, None, None],
    ].astype(np.float64)
    within = ((win_r >= 0) & (win_r < rows))[:, :, None] & ((win_c >= 0) & (win_c < cols))[:, None, :]
    windows = np.where(within, sigmoid(logits), 0.0)
    total = windows.sum(axis=(1, 2))
    confident = inside & (windows.max(axis=(1, 2)) >= HEATMAP_MIN_CONFIDENCE) & (total > 0)
    out = points.copy()
    safe = np.where(total > 0, total, 1.0)
    out[confident, 0] = ((windows.sum(axis=1) * win_c).sum(axis=1) / safe / cols)[confident]
    out[confident, 1] = ((windows.sum(axis=2) * win_r).sum(axis=1) / safe / rows)[confident]
    return out


def people(
    outputs: dict[str, np.ndarray], rois: list[list[Roi]], display: tuple[int, int]
) -> list[list[dict[str, Any]]]:
    """People per frame, keypoints as [x, y, z, visibility, presence] in displayed pixels.
    ``outputs`` hold one row per region, frame by frame in order; a region whose pose flag is
    below the threshold gives nobody."""
    frames: list[list[dict[str, Any]]] = []
    row = 0
    for regions in rois:
        found = []
        for roi in regions:
            person = _person(outputs, row, roi, display)
            row += 1
            if person is not None:
                found.append(person)
        frames.append(found)
    return frames


def pose_flag(outputs: dict[str, np.ndarray], row: int) -> float | None:
    """Row ``row``'s pose presence probability, None below the threshold (nobody there)."""
    flag = float(outputs[POSE_FLAG][row].reshape(-1)[0])
    return flag if flag >= PRESENCE_THRESHOLD else None


def landmarks(
    outputs: dict[str, np.ndarray], row: int, roi: Roi, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row ``row``'s first ``count`` landmarks: x, y, z in normalised image coordinates (refined
    by the heatmap, projected back through ``roi``), and the raw rows (logits in 3 and 4)."""
    raw = outputs[LANDMARKS][row].reshape(-1, 5)[:count].astype(np.float64)
    points = raw[:, :3] / CROP_SIZE
    points[:, :2] = refine(points[:, :2], outputs[HEATMAP][row])
    return project(points, roi), raw


def _person(
    outputs: dict[str, np.ndarray], row: int, roi: Roi, display: tuple[int, int]
) -> dict[str, Any] | None:
    flag = pose_flag(outputs, row)
    if flag is None:
        return None
    width, height = display
    image, raw = landmarks(outputs, row, roi, NUM_KEYPOINTS)
    kp = np.column_stack(
        [
            image[:, 0] * width,
            image[:, 1] * height,
            image[:, 2] * width,
            sigmoid(raw[:, 3]),
            sigmoid(raw[:, 4]),
        ]
    )
    kp[:, :3] = np.round(kp[:, :3], 2)
    kp[:, 3:] = np.round(kp[:, 3:], 4)
    return {"score": round(flag, 4), "keypoints": kp.tolist()}
