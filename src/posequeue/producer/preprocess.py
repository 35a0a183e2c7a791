"""Frames to model input: upright, letterboxed to the stage's input size, uint8 RGB.

Pixels travel as uint8 (a quarter of float32); the worker scales them to the model's range.
Scaling runs in FFmpeg's swscale on the coded frame, before the (cheap) rotation of the small
picture, so no full-size RGB copy of the frame is made.
"""

from __future__ import annotations

import av
import numpy as np

from posequeue.config.schemas import Transform
from posequeue.producer.video import upright


def letterbox_geometry(width: int, height: int, size: tuple[int, int]) -> tuple[int, int, Transform]:
    """Scaled size of a ``width`` x ``height`` displayed picture fitted into ``size`` (h, w),
    and the transform from model-input pixels back to displayed pixels."""
    out_h, out_w = size
    scale = min(out_w / width, out_h / height)
    new_w = max(1, min(out_w, round(width * scale)))
    new_h = max(1, min(out_h, round(height * scale)))
    pad_x, pad_y = (out_w - new_w) // 2, (out_h - new_h) // 2
    return new_w, new_h, Transform(new_w / width, new_h / height, pad_x, pad_y)


def letterbox(frame: av.VideoFrame, rotation: int, size: tuple[int, int]) -> tuple[np.ndarray, Transform]:
    """The model input for one frame (``size`` + (3,), uint8) and its inverse transform."""
    swapped = rotation in (90, 270)
    disp_w, disp_h = (frame.height, frame.width) if swapped else (frame.width, frame.height)
    new_w, new_h, transform = letterbox_geometry(disp_w, disp_h, size)
    coded_w, coded_h = (new_h, new_w) if swapped else (new_w, new_h)
    small = frame.reformat(width=coded_w, height=coded_h, format="rgb24",
                           interpolation="BILINEAR").to_ndarray()  # fmt: skip
    canvas = np.zeros((*size, 3), dtype=np.uint8)
    y0, x0 = int(transform.pad_y), int(transform.pad_x)
    canvas[y0:y0 + new_h, x0:x0 + new_w] = upright(small, rotation)
    return canvas, transform


def display_rgb(frame: av.VideoFrame, rotation: int) -> np.ndarray:
    """The full-size picture as a player shows it (for previews)."""
    return np.ascontiguousarray(upright(frame.to_ndarray(format="rgb24"), rotation))
