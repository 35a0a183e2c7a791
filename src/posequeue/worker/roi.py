"""Regions of interest: the rotated, square crop the landmark model expects, and the way back.

A ``Roi`` is in normalised image coordinates (x and y in [0, 1] of the image's width and
height), like MediaPipe's NormalizedRect: centre, width, height, rotation in radians
(clockwise on screen, as MediaPipe measures it with y pointing down).
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass

import numpy as np


@dataclass(frozen=True)
class Roi:
    x: float
    y: float
    width: float
    height: float
    rotation: float

    def to_list(self) -> list[float]:
        return [round(v, 7) for v in astuple(self)]


def normalize_radians(angle: float) -> float:
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def roi_from_points(
    center: tuple[float, float],
    scale_point: tuple[float, float],
    image_size: tuple[int, int],
    target_angle: float = math.pi / 2,
    scale: float = 1.25,
) -> Roi:
    """MediaPipe's AlignmentPointsRectsCalculator then RectTransformationCalculator(square_long).

    ``center`` is the body centre and ``scale_point`` the point that encodes size and rotation
    (normalised); the box is square with side 2 x their distance (in pixels), turned so the
    vector centre -> scale_point points up, then scaled by ``scale`` on its long side.
    """
    w, h = image_size
    x0, y0 = center[0] * w, center[1] * h
    x1, y1 = scale_point[0] * w, scale_point[1] * h
    size = 2 * math.hypot(x1 - x0, y1 - y0)
    rotation = normalize_radians(target_angle - math.atan2(-(y1 - y0), x1 - x0))
    side = size * scale  # square_long: both sides take the long one (here equal), in pixels
    return Roi(x0 / w, y0 / h, side / w, side / h, rotation)


def crop_matrix(roi: Roi, image_size: tuple[int, int], out_size: int) -> np.ndarray:
    """The 2x3 affine matrix mapping image pixels to the ``out_size`` square crop of ``roi``."""
    w, h = image_size
    cx, cy = roi.x * w, roi.y * h
    rw, rh = roi.width * w, roi.height * h
    cos, sin = math.cos(roi.rotation), math.sin(roi.rotation)
    # Crop pixel (u, v) samples the image at centre + R(rotation) @ ((u, v) / out - 0.5) * size.
    to_image = np.array(
        [
            [cos * rw / out_size, -sin * rh / out_size, 0.0],
            [sin * rw / out_size, cos * rh / out_size, 0.0],
        ]
    )
    to_image[:, 2] = [cx, cy] - to_image[:, :2] @ [out_size / 2, out_size / 2]
    return np.linalg.inv(np.vstack([to_image, [0.0, 0.0, 1.0]]))[:2]


def crop(image: np.ndarray, roi: Roi, out_size: int, out: np.ndarray | None = None) -> np.ndarray:
    """The ROI's square crop, upright, ``out_size`` pixels, edges replicated (as MediaPipe),
    written into ``out`` when given."""
    import cv2  # worker-side only

    h, w = image.shape[:2]
    matrix = crop_matrix(roi, (w, h), out_size)
    return cv2.warpAffine(
        image, matrix, (out_size, out_size), dst=out, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def project(points: np.ndarray, roi: Roi) -> np.ndarray:
    """Landmarks normalised to the crop ([0, 1]) -> normalised image coordinates
    (MediaPipe's LandmarkProjectionCalculator); z is scaled by the ROI's width."""
    x, y = points[:, 0] - 0.5, points[:, 1] - 0.5
    cos, sin = math.cos(roi.rotation), math.sin(roi.rotation)
    out = points.astype(np.float64).copy()
    out[:, 0] = (cos * x - sin * y) * roi.width + roi.x
    out[:, 1] = (sin * x + cos * y) * roi.height + roi.y
    out[:, 2] = points[:, 2] * roi.width
    return out
