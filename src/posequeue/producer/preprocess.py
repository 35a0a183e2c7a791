"""Decoded frames to the working picture that travels to the model stages: upright, RGB uint8,
scaled down (never up) so its long side is at most ``long_side``.

Scaling runs in FFmpeg's swscale on the coded frame before the rotation, so no full-size RGB
copy is made. Model-specific preprocessing (letterbox, crops, value range) happens in the
worker, where MediaPipe's graph does it too.
"""

from __future__ import annotations

import av
import numpy as np

from posequeue.producer.video import upright


def work_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """The working size of a ``width`` x ``height`` displayed picture (aspect kept)."""
    scale = min(1.0, long_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def display_size(frame: av.VideoFrame, rotation: int) -> tuple[int, int]:
    swapped = rotation in (90, 270)
    return (frame.height, frame.width) if swapped else (frame.width, frame.height)


def work_frame(frame: av.VideoFrame, rotation: int, long_side: int) -> np.ndarray:
    """The upright working picture, (height, width, 3) uint8."""
    disp_w, disp_h = display_size(frame, rotation)
    w, h = work_size(disp_w, disp_h, long_side)
    coded_w, coded_h = (h, w) if rotation in (90, 270) else (w, h)
    if (coded_w, coded_h) == (frame.width, frame.height):
        rgb = frame.to_ndarray(format="rgb24")
    else:
        rgb = frame.reformat(width=coded_w, height=coded_h, format="rgb24", interpolation="AREA").to_ndarray()
    return np.ascontiguousarray(upright(rgb, rotation))


def display_rgb(frame: av.VideoFrame, rotation: int) -> np.ndarray:
    """The full-size picture as a player shows it (for previews)."""
    return np.ascontiguousarray(upright(frame.to_ndarray(format="rgb24"), rotation))
