"""Unit tests for posequeue.worker.roi: MediaPipe's rotated square regions, crops and projection."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from posequeue.worker.roi import Roi, crop, crop_matrix, project, roi_from_points

pytestmark = pytest.mark.compat

W, H = 640, 360  # a non-square image, so pixel and normalised units differ
OUT = 256


def mediapipe_rotation(x0: float, y0: float, x1: float, y1: float) -> float:
    """MediaPipe's formula (pixels, y down), normalised to [-pi, pi)."""
    angle = math.pi / 2 - math.atan2(-(y1 - y0), x1 - x0)
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def test_roi_centre_and_size_in_pixels() -> None:
    """The ROI is centred on the centre point and square in pixels, side 2 x distance x 1.25."""
    roi = roi_from_points((0.5, 0.6), (0.5, 0.3), (W, H))
    distance = 0.3 * H  # 108 px straight up
    side = 2 * distance * 1.25
    assert (roi.x, roi.y) == pytest.approx((0.5, 0.6))
    assert roi.width * W == pytest.approx(side) and roi.height * H == pytest.approx(side)
    assert roi.width != pytest.approx(roi.height)  # square in pixels, not in normalised units
    assert roi.rotation == pytest.approx(0.0, abs=1e-12)


def test_roi_scale_parameter() -> None:
    """The ``scale`` argument multiplies the side (MediaPipe's RectTransformation scale)."""
    plain = roi_from_points((0.4, 0.5), (0.45, 0.5), (W, H), scale=1.0)
    assert plain.width * W == pytest.approx(2 * 0.05 * W)
    assert plain.height * H == pytest.approx(2 * 0.05 * W)


# (dx, dy) in pixels from the centre to the scale point, and the expected rotation
DIRECTIONS = [
    ((0, -50), 0.0),  # straight above: upright
    ((50, 0), math.pi / 2),  # to the right: turned a quarter clockwise
    ((-50, 0), -math.pi / 2),  # to the left
    ((0, 50), -math.pi),  # straight below: upside down, normalised to -pi
    ((40, -40), math.pi / 4),  # up-right at 45 degrees in pixels
    ((-40, -40), -math.pi / 4),
    ((30, 60), math.pi / 2 + math.atan2(60, 30)),  # down-right
]


@pytest.mark.parametrize(("offset", "expected"), DIRECTIONS)
def test_roi_rotation_sign(offset: tuple[float, float], expected: float) -> None:
    """Rotation follows MediaPipe: 0 with the scale point above, +pi/2 when it is to the right."""
    cx, cy = 300.0, 200.0
    sx, sy = cx + offset[0], cy + offset[1]
    roi = roi_from_points((cx / W, cy / H), (sx / W, sy / H), (W, H))
    assert roi.rotation == pytest.approx(expected, abs=1e-9)
    assert roi.rotation == pytest.approx(mediapipe_rotation(cx, cy, sx, sy), abs=1e-9)
    assert -math.pi <= roi.rotation < math.pi


def test_roi_rotation_matches_formula_randomly() -> None:
    """For random points the rotation is pi/2 - atan2(-(y1-y0), x1-x0) in pixels, in [-pi, pi)."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        c, s = rng.uniform(0, 1, 2), rng.uniform(0, 1, 2)
        roi = roi_from_points(tuple(c), tuple(s), (W, H))
        expected = mediapipe_rotation(c[0] * W, c[1] * H, s[0] * W, s[1] * H)
        assert roi.rotation == pytest.approx(expected, abs=1e-9)
        assert -math.pi <= roi.rotation < math.pi


@pytest.mark.parametrize("rotation", [-2.5, -0.7, 0.0, 0.3, 1.2, 3.0])
def test_crop_matrix_matches_mediapipe_opencv(rotation: float) -> None:
    """crop_matrix is the corners-to-corners map of MediaPipe's OpenCV path (boxPoints, clockwise)."""
    roi = Roi(0.4, 0.55, 0.3, 0.3 * W / H, rotation)
    rect = ((roi.x * W, roi.y * H), (roi.width * W, roi.height * H), math.degrees(rotation))
    src = cv2.boxPoints(rect).astype(np.float32)
    dst = np.array([[0, OUT], [0, 0], [OUT, 0], [OUT, OUT]], np.float32)
    expected = cv2.getPerspectiveTransform(src, dst)
    assert expected[2] == pytest.approx([0, 0, 1], abs=1e-6)  # affine
    assert crop_matrix(roi, (W, H), OUT) == pytest.approx(expected[:2] / expected[2, 2], abs=1e-3)


def test_scale_point_is_straight_above_in_the_crop() -> None:
    """Whatever the direction, the crop turns the body upright: the scale point ends up above the centre."""
    for angle in np.linspace(-math.pi, math.pi, 13)[:-1]:
        image = np.zeros((H, W, 3), np.uint8)
        cx, cy, r = 320, 180, 60
        sx, sy = round(cx + r * math.sin(angle)), round(cy - r * math.cos(angle))
        cv2.circle(image, (sx, sy), 4, (255, 255, 255), -1)
        roi = roi_from_points((cx / W, cy / H), (sx / W, sy / H), (W, H))
        u, v = dot_in(crop(image, roi, OUT))
        # distance r is 1 / (2 * 1.25) = 0.4 of the side above the centre
        assert u == pytest.approx(OUT / 2, abs=2)
        assert v == pytest.approx(OUT / 2 - 0.4 * OUT, abs=2)


def dot_in(picture: np.ndarray) -> tuple[float, float]:
    """Intensity-weighted centre of the bright pixels (pixel-index coordinates, like OpenCV)."""
    gray = picture.astype(np.float64).mean(axis=-1)
    weights = np.where(gray > 20, gray, 0.0)
    assert weights.sum() > 0, "dot not found in the crop"
    ys, xs = np.mgrid[: gray.shape[0], : gray.shape[1]]
    return float((xs * weights).sum() / weights.sum()), float((ys * weights).sum() / weights.sum())


def dot_image(px: int, py: int, sigma: float = 2.0) -> np.ndarray:
    """A black W x H image with a small bright Gaussian dot centred on pixel (px, py)."""
    ys, xs = np.mgrid[:H, :W]
    blob = 255 * np.exp(-((xs - px) ** 2 + (ys - py) ** 2) / (2 * sigma**2))
    blob[blob < 3] = 0
    return np.repeat(np.round(blob).astype(np.uint8)[..., None], 3, axis=-1)


# (centre x, centre y in pixels, side in pixels, rotation, dot's position in the crop as fractions)
ROUND_TRIPS = [
    (320, 180, 256, 0.0, (0.3, 0.7)),
    (320, 180, 100, 0.5, (0.8, 0.2)),  # small ROI: the crop upsamples
    (300, 200, 400, -1.1, (0.35, 0.6)),  # large ROI: the crop downsamples
    (330, 170, 300, math.pi / 2, (0.25, 0.25)),
    (310, 190, 220, -math.pi + 0.05, (0.6, 0.4)),
    (30, 330, 300, 0.8, (0.6, 0.4)),  # ROI hangs over the bottom-left corner
    (620, 20, 250, -2.2, (0.6, 0.35)),  # and over the top-right
    (320, 180, 700, 2.9, (0.5, 0.45)),  # bigger than the image
]


@pytest.mark.parametrize(("cx", "cy", "side", "rotation", "at"), ROUND_TRIPS)
def test_crop_then_project_round_trip(
    cx: float, cy: float, side: float, rotation: float, at: tuple[float, float]
) -> None:
    """A dot found in the crop projects back onto the image pixel where it was drawn (~1.5 px)."""
    roi = Roi(cx / W, cy / H, side / W, side / H, rotation)
    where = project(np.array([[at[0], at[1], 0.0]]), roi)[0]
    px, py = round(where[0] * W), round(where[1] * H)
    assert 8 <= px < W - 8 and 8 <= py < H - 8, "test setup: the dot must be inside the image"
    picture = crop(dot_image(px, py), roi, OUT)
    assert picture.shape == (OUT, OUT, 3) and picture.dtype == np.uint8
    u, v = dot_in(picture)
    back = project(np.array([[u / OUT, v / OUT, 0.0]]), roi)[0]
    assert back[0] * W == pytest.approx(px, abs=1.5)
    assert back[1] * H == pytest.approx(py, abs=1.5)


def test_project_centre_and_z() -> None:
    """The crop centre projects to the ROI centre, and z is scaled by the ROI's width."""
    roi = Roi(0.3, 0.7, 0.2, 0.4, 1.0)
    out = project(np.array([[0.5, 0.5, 0.25]], np.float32), roi)
    assert out.dtype == np.float64
    assert out[0] == pytest.approx([0.3, 0.7, 0.25 * 0.2])


def test_crop_replicates_edges() -> None:
    """Outside the image the crop repeats the nearest edge pixel (BORDER_REPLICATE), no black."""
    rng = np.random.default_rng(3)
    image = rng.integers(1, 256, (64, 64, 3), np.uint8)
    # A 128 px ROI centred on pixel (32, 32) maps crop pixel u to image pixel u - 32 exactly.
    roi = Roi(0.5, 0.5, 2.0, 2.0, 0.0)
    picture = crop(image, roi, 128)
    expected = cv2.copyMakeBorder(image, 32, 32, 32, 32, cv2.BORDER_REPLICATE)
    assert np.array_equal(picture, expected)


def test_rotated_crop_outside_image_is_not_black() -> None:
    """A rotated ROI much larger than the image still has no black (constant) border."""
    image = np.zeros((90, 160, 3), np.uint8)
    image[:, :80] = (200, 30, 30)
    image[:, 80:] = (30, 30, 200)
    roi = Roi(0.5, 0.5, 3.0, 3.0 * 160 / 90, 0.6)
    picture = crop(image, roi, OUT)
    assert picture.max(axis=-1).min() >= 30  # every pixel is red, blue or a blend, never black
