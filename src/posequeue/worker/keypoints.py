"""A user's single-stage keypoint model (``kind = "keypoints"`` in a model spec): the whole
working frame resized to the model input, keypoints read from one output and mapped back to the
displayed frame. One person per frame: such models (e.g. 256x192 top-down models) see the frame
as one person's picture.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from posequeue.config.catalogue import StageSpec
from posequeue.errors import ModelOutputError


def model_input(frames: np.ndarray, stage: StageSpec) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The frames as the model takes them, and where the picture sits in the input: (left, top,
    width, height) in input pixels (the whole input when stretched)."""
    import cv2

    height, width = stage.input_size
    h, w = frames.shape[1:3]
    if stage.preprocess.resize == "letterbox":
        k = min(width / w, height / h)
        size = (max(1, round(w * k)), max(1, round(h * k)))
        left, top = (width - size[0]) // 2, (height - size[1]) // 2
    else:
        k, size, left, top = min(width / w, height / h), (width, height), 0, 0
    # Area averaging when shrinking: a thin limb must not vanish between samples.
    method = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    batch = np.zeros((len(frames), height, width, 3), np.uint8)
    for out, frame in zip(batch, frames, strict=True):
        out[top : top + size[1], left : left + size[0]] = cv2.resize(frame, size, interpolation=method)
    box = (float(left), float(top), float(size[0]), float(size[1]))
    if stage.preprocess.channels == "bgr":
        batch = batch[..., ::-1]
    if stage.dtype == "uint8":
        return np.ascontiguousarray(batch), box
    pre = stage.preprocess
    scale = np.float32(pre.scale) / np.asarray(pre.std, np.float32)
    shift = np.asarray(pre.mean, np.float32) / np.asarray(pre.std, np.float32)
    return batch.astype(np.float32) * scale - shift, box


def people(
    outputs: dict[str, np.ndarray],
    stage: StageSpec,
    box: tuple[float, float, float, float],
    display: tuple[int, int],
    keypoints: int | None = None,
) -> list[list[dict[str, Any]]]:
    """Per frame, the one person in displayed-frame pixels: keypoints [x, y, z, visibility,
    presence] as in BlazePose's output (z is 0; visibility and presence are the model's score,
    or 1 when it gives none). ``keypoints``: how many the spec names (checked)."""
    spec = stage.coords
    coords = np.asarray(outputs[spec.output], np.float64)
    coords = coords.reshape(len(coords), -1, coords.shape[-1] if coords.ndim == 3 else 2)
    if keypoints is not None and coords.shape[1] != keypoints:
        raise ModelOutputError(
            f"output {spec.output!r} holds {coords.shape[1]} keypoints of "
            f"{coords.shape[2]} values, but the model spec names {keypoints}: fix "
            "`keypoints` (or [stages.coords]) in the spec"
        )
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
        rows = [
            [round(float(x), 2), round(float(y), 2), 0.0, round(float(s), 4), round(float(s), 4)]
            for (x, y), s in zip(points, score, strict=True)
        ]
        frames.append([{"score": round(mean, 4), "keypoints": rows}])
    return frames
