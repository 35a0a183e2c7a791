"""A user's single-stage keypoint model (``kind = "keypoints"`` in a model spec): the whole
working frame resized to the model input, keypoints read from one output and mapped back to the
displayed frame. One person per frame: such models (e.g. 256x192 top-down models) see the frame
as one person's picture.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from posequeue.config.models import StageSpec


def model_input(frames: np.ndarray, stage: StageSpec) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The frames as the model takes them, and where the picture sits in the input: (left, top,
    width, height) in input pixels (the whole input when stretched)."""
    import cv2

    height, width = stage.input_size
    h, w = frames.shape[1:3]
    if stage.preprocess.resize == "letterbox":
        k = min(width / w, height / h)
        box = ((width - w * k) / 2, (height - h * k) / 2, w * k, h * k)
        # Corner-to-corner sampling, as the BlazePose stages warp (see blazepose.letterbox).
        matrix = np.array([[k, 0.0, box[0]], [0.0, k, box[1]]])
        resized = [cv2.warpAffine(f, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0) for f in frames]  # fmt: skip
    else:
        box = (0.0, 0.0, float(width), float(height))
        resized = [cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR) for f in frames]
    batch = np.stack(resized) if resized else np.empty((0, height, width, 3), np.uint8)
    if stage.preprocess.channels == "bgr":
        batch = batch[..., ::-1]
    if stage.dtype == "uint8":
        return np.ascontiguousarray(batch), box
    pre = stage.preprocess
    scale = np.float32(pre.scale) / np.asarray(pre.std, np.float32)
    shift = np.asarray(pre.mean, np.float32) / np.asarray(pre.std, np.float32)
    return batch.astype(np.float32) * scale - shift, box


def people(outputs: dict[str, np.ndarray], stage: StageSpec, box: tuple[float, float, float, float],
           display: tuple[int, int]) -> list[list[dict[str, Any]]]:  # fmt: skip
    """Per frame, the one person in displayed-frame pixels: keypoints [x, y, z, visibility,
    presence] as in BlazePose's output (z is 0; visibility and presence are the model's score,
    or 1 when it gives none)."""
    spec = stage.coords
    coords = np.asarray(outputs[spec.output], np.float64)
    coords = coords.reshape(len(coords), -1, coords.shape[-1] if coords.ndim == 3 else 2)
    xy = coords[..., :2][..., ::-1] if spec.order == "yx" else coords[..., :2]
    if spec.convention == "normalized":
        xy = xy * [stage.input_size[1], stage.input_size[0]]
    left, top, width, height = box
    xy = (xy - [left, top]) * [display[0] / width, display[1] / height]
    scores = coords[..., 2] if coords.shape[-1] > 2 else np.ones(coords.shape[:2])
    frames: list[list[dict[str, Any]]] = []
    for points, score in zip(xy, scores, strict=True):
        mean = float(score.mean())
        if mean < spec.min_score:
            frames.append([])
            continue
        keypoints = [[round(float(x), 2), round(float(y), 2), 0.0, round(float(s), 4), round(float(s), 4)]
                     for (x, y), s in zip(points, score, strict=True)]  # fmt: skip
        frames.append([{"score": round(mean, 4), "keypoints": keypoints}])
    return frames
