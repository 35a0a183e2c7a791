"""Unit tests for posequeue.producer.preprocess: the upright, downscaled working picture."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import videos

from posequeue.producer.preprocess import display_rgb, display_size, work_frame, work_size
from posequeue.producer.video import rotation_of

# (displayed width, displayed height, long side cap)
SIZES = [
    (1920, 1080, 640),  # landscape, downscaled
    (1080, 1920, 640),  # portrait, downscaled
    (640, 360, 640),  # exactly the cap
    (320, 240, 640),  # smaller than the cap: never upscaled
    (100, 100, 640),
    (1000, 1000, 256),  # square
    (1281, 719, 640),  # odd sizes round
    (3000, 7, 640),  # extreme aspect
]


@pytest.mark.parametrize(("width", "height", "cap"), SIZES)
def test_work_size(width: int, height: int, cap: int) -> None:
    """The working size never upscales, keeps the aspect (to rounding) and its long side is <= cap."""
    w, h = work_size(width, height, cap)
    assert isinstance(w, int) and isinstance(h, int)
    assert 1 <= w <= width and 1 <= h <= height
    assert max(w, h) <= cap
    if max(width, height) <= cap:
        assert (w, h) == (width, height)
    else:
        assert max(w, h) == cap
    # each side within half a pixel of the exact scale (or clamped to 1 pixel)
    scale = min(1.0, cap / max(width, height))
    assert abs(w - width * scale) <= 0.5 or w == 1
    assert abs(h - height * scale) <= 0.5 or h == 1


def test_work_size_thin_picture_keeps_one_pixel() -> None:
    """A very thin picture still gets at least one pixel on its short side."""
    assert work_size(5000, 2, 640) == (640, 1)
    assert work_size(2, 5000, 640) == (1, 640)


def frame_of(width: int, height: int, index: int = 5) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(videos.draw_frame(index, width, height), format="rgb24")


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_display_size_swaps_for_quarter_turns(rotation: int) -> None:
    """display_size is the coded size, with width and height swapped for 90 and 270 degrees."""
    frame = frame_of(320, 240)
    expected = (240, 320) if rotation in (90, 270) else (320, 240)
    assert display_size(frame, rotation) == expected
    assert display_rgb(frame, rotation).shape[:2] == expected[::-1]


def red_mask(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return (r > 150) & (g < 90) & (b < 90)


def centre_of(mask: np.ndarray) -> tuple[float, float]:
    """Centre of a mask's pixels, in continuous pixel coordinates (pixel i covers [i, i+1))."""
    ys, xs = np.nonzero(mask)
    assert xs.size, "marker not found"
    return float(xs.mean() + 0.5), float(ys.mean() + 0.5)


def corner_of(mask: np.ndarray) -> str:
    x, y = centre_of(mask)
    h, w = mask.shape
    return f"{'top' if y < h / 2 else 'bottom'}-{'left' if x < w / 2 else 'right'}"


def check_work_picture(frame: av.VideoFrame, rotation: int, cap: int) -> np.ndarray:
    """Shared checks: shape, dtype, contents like display_rgb scaled, marker at the same place."""
    shown = display_rgb(frame, rotation)
    disp_h, disp_w = shown.shape[:2]
    assert display_size(frame, rotation) == (disp_w, disp_h)
    w, h = work_size(disp_w, disp_h, cap)
    pixels = work_frame(frame, rotation, cap)
    assert pixels.shape == (h, w, 3) and pixels.dtype == np.uint8
    assert pixels.flags.c_contiguous
    # The whole picture: like the displayed one resized (not a crop, not turned the other way).
    resized = cv2.resize(shown, (w, h), interpolation=cv2.INTER_AREA)
    diff = np.abs(pixels.astype(int) - resized.astype(int))
    assert np.median(diff) <= 6
    # The red marker lands where the displayed picture has it (scaled), within about a pixel.
    sx, sy = centre_of(red_mask(shown))
    x, y = centre_of(red_mask(pixels))
    assert x * disp_w / w == pytest.approx(sx, abs=1.5 * disp_w / w)
    assert y * disp_h / h == pytest.approx(sy, abs=1.5 * disp_h / h)
    assert corner_of(red_mask(pixels)) == corner_of(red_mask(shown))
    return pixels


# Where the stored top-left marker appears once the picture is turned ``rotation`` degrees
# counter-clockwise (the producer's convention, np.rot90's direction).
CCW_CORNER = {0: "top-left", 90: "bottom-left", 180: "bottom-right", 270: "top-right"}

# (coded width, coded height, rotation counter-clockwise, long side cap)
FRAMES = [
    (320, 240, 0, 160),  # landscape
    (240, 320, 0, 160),  # portrait
    (1280, 720, 0, 640),
    (720, 1280, 0, 640),
    (640, 360, 90, 320),  # rotated: displayed portrait
    (640, 360, 180, 320),
    (640, 360, 270, 320),
    (360, 640, 90, 320),  # portrait coded, displayed landscape
    (320, 240, 90, 640),  # rotated, not scaled
]


@pytest.mark.parametrize(("width", "height", "rotation", "cap"), FRAMES)
def test_work_frame_synthetic(width: int, height: int, rotation: int, cap: int) -> None:
    """work_frame returns the upright picture at the working size, matching display_rgb scaled."""
    frame = frame_of(width, height)
    pixels = check_work_picture(frame, rotation, cap)
    assert corner_of(red_mask(pixels)) == CCW_CORNER[rotation]


def test_work_frame_unscaled_equals_display() -> None:
    """When the picture already fits the cap, the working picture is exactly the displayed one."""
    frame = frame_of(320, 240)
    for rotation in (0, 90, 180, 270):
        assert np.array_equal(work_frame(frame, rotation, 640), display_rgb(frame, rotation))


# Where the stored top-left marker appears on screen for a file rotated R degrees clockwise.
CLOCKWISE_CORNER = {0: "top-left", 90: "top-right", 180: "bottom-right", 270: "bottom-left"}


@pytest.mark.parametrize("clockwise", [0, 90, 180, 270])
@pytest.mark.parametrize("cap", [160, 640])
def test_work_frame_rotated_video(tmp_path: Path, clockwise: int, cap: int) -> None:
    """A phone-rotated mp4's working picture is upright like a player shows it, marker included."""
    path = videos.make_video(tmp_path / "r.mp4", rotation=clockwise, width=320, height=240, frames=2)
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        rotation = rotation_of(frame)
        assert rotation == videos.EXPECTED_PYAV_ROTATION[clockwise] % 360
        portrait = clockwise in (90, 270)
        assert display_size(frame, rotation) == ((240, 320) if portrait else (320, 240))
        pixels = check_work_picture(frame, rotation, cap)
    assert corner_of(red_mask(pixels)) == CLOCKWISE_CORNER[clockwise]
    expected = work_size(*((240, 320) if portrait else (320, 240)), cap)
    assert pixels.shape[1::-1] == expected


def test_display_rgb_is_contiguous() -> None:
    """display_rgb returns a C-contiguous upright array (encoders and PIL need one)."""
    shown = display_rgb(frame_of(320, 240), 90)
    assert shown.flags.c_contiguous and shown.shape == (320, 240, 3)
