"""BlazePose landmark stage: model input scaling and decoding of its outputs.

Decoding follows MediaPipe's pose_landmark_by_roi post-processing: 39 landmarks of 5 values
(x, y, z in input pixels, visibility and presence as logits), the first 33 are the pose; the
pose flag is already a probability, thresholded at 0.5.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from posequeue.config.schemas import Transform

LANDMARKS = "Identity"  # (B, 195)
POSE_FLAG = "Identity_1"  # (B, 1)
NUM_KEYPOINTS = 33
PRESENCE_THRESHOLD = 0.5


def to_input(pixels: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 in [0, 1], the range the landmark model was trained on."""
    return pixels.astype(np.float32) * (1.0 / 255.0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def decode(outputs: dict[str, np.ndarray], transforms: list[Transform]) -> list[list[dict[str, Any]]]:
    """People per frame, keypoints as [x, y, z, visibility, presence] in displayed pixels."""
    raw = outputs[LANDMARKS].reshape(len(transforms), -1, 5)[:, :NUM_KEYPOINTS]
    flags = outputs[POSE_FLAG].reshape(len(transforms))
    frames: list[list[dict[str, Any]]] = []
    for points, flag, tf in zip(raw, flags, transforms, strict=True):
        if flag < PRESENCE_THRESHOLD:
            frames.append([])
            continue
        x, y = tf.to_display(points[:, 0], points[:, 1])
        z = points[:, 2] / tf.scale_x  # z shares x's scale (MediaPipe normalises z by width)
        kp = np.stack([x, y, z, sigmoid(points[:, 3]), sigmoid(points[:, 4])], axis=1)
        kp = kp.astype(np.float64)  # round in float64: float32 values print as 192.24000549
        kp[:, :3] = np.round(kp[:, :3], 2)
        kp[:, 3:] = np.round(kp[:, 3:], 4)
        frames.append([{"score": round(float(flag), 4), "keypoints": kp.tolist()}])
    return frames
