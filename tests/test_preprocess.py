"""Unit tests for posequeue.producer.preprocess: letterboxing and its inverse transform."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import videos

from posequeue.producer.preprocess import display_rgb, letterbox, letterbox_geometry
from posequeue.producer.video import DecodeStats, read_segment

SIZE = (256, 256)

# (displayed width, displayed height, model input size (h, w))
GEOMETRIES = [
    (320, 240, SIZE),  # landscape
    (240, 320, SIZE),  # portrait
    (256, 256, SIZE),  # square, same size
    (100, 100, SIZE),  # square, upscaled
    (1920, 1080, SIZE),
    (1080, 1920, SIZE),
    (300, 100, SIZE),  # odd padding
    (8, 1000, SIZE),  # extreme portrait
    (640, 480, (256, 192)),  # non-square model input
]


@pytest.mark.parametrize(("width", "height", "size"), GEOMETRIES)
def test_letterbox_geometry(width: int, height: int, size: tuple[int, int]) -> None:
    """The picture keeps its aspect, fits the input, is centred, and maps back to (0,0)-(W,H)."""
    new_w, new_h, tf = letterbox_geometry(width, height, size)
    out_h, out_w = size
    assert 1 <= new_w <= out_w and 1 <= new_h <= out_h
    assert new_w == out_w or new_h == out_h  # touches two opposite sides
    assert new_w / new_h == pytest.approx(width / height, rel=0.05, abs=1 / min(new_w, new_h))
    assert tf.pad_x == (out_w - new_w) // 2 and tf.pad_y == (out_h - new_h) // 2
    assert abs((out_w - new_w - tf.pad_x) - tf.pad_x) <= 1
    assert abs((out_h - new_h - tf.pad_y) - tf.pad_y) <= 1
    x0, y0 = tf.to_display(tf.pad_x, tf.pad_y)
    x1, y1 = tf.to_display(tf.pad_x + new_w, tf.pad_y + new_h)
    assert (x0, y0) == pytest.approx((0, 0), abs=1e-9)
    assert (x1, y1) == pytest.approx((width, height), abs=1e-9)
    xc, yc = tf.to_display(tf.pad_x + new_w / 2, tf.pad_y + new_h / 2)
    assert (xc, yc) == pytest.approx((width / 2, height / 2), abs=1e-9)


def test_to_display_on_arrays() -> None:
    """to_display maps numpy arrays of model pixels element-wise."""
    _, _, tf = letterbox_geometry(320, 240, SIZE)
    xs, ys = tf.to_display(np.array([0.0, 128.0, 256.0]), np.array([32.0, 128.0, 224.0]))
    assert xs == pytest.approx([0, 160, 320])
    assert ys == pytest.approx([0, 120, 240])


def frame_of(width: int, height: int, index: int = 5) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(videos.draw_frame(index, width, height), format="rgb24")


# (coded width, coded height, rotation counter-clockwise)
FRAMES = [
    (320, 240, 0),  # landscape
    (240, 320, 0),  # portrait
    (256, 256, 0),  # square
    (128, 128, 0),  # square, upscaled
    (320, 240, 90),  # rotated: displayed portrait
    (320, 240, 270),
    (320, 240, 180),
    (240, 320, 90),  # portrait coded, displayed landscape
]


@pytest.mark.parametrize(("width", "height", "rotation"), FRAMES)
def test_letterbox_frame(width: int, height: int, rotation: int) -> None:
    """The model input is 256x256x3 uint8, black padding around the centred, upright picture."""
    frame = frame_of(width, height)
    pixels, tf = letterbox(frame, rotation, SIZE)
    assert pixels.shape == (256, 256, 3) and pixels.dtype == np.uint8
    disp_w, disp_h = (height, width) if rotation in (90, 270) else (width, height)
    new_w, new_h, expected_tf = letterbox_geometry(disp_w, disp_h, SIZE)
    assert tf == expected_tf
    x0, y0 = int(tf.pad_x), int(tf.pad_y)
    content = pixels[y0:y0 + new_h, x0:x0 + new_w]
    mask = np.ones(pixels.shape[:2], bool)
    mask[y0:y0 + new_h, x0:x0 + new_w] = False
    assert not pixels[mask].any(), "padding must be black"
    # The content is the displayed picture scaled: compare with a plain resize of display_rgb.
    upright = display_rgb(frame, rotation)
    assert upright.shape[:2] == (disp_h, disp_w)
    ys = (np.arange(new_h) + 0.5) * disp_h / new_h
    xs = (np.arange(new_w) + 0.5) * disp_w / new_w
    nearest = upright[ys.astype(int)[:, None], xs.astype(int)[None, :]]
    diff = np.abs(content.astype(int) - nearest.astype(int))
    assert np.median(diff) <= 8
    # The content area is covered up to its edges (no black seam inside it).
    assert content[0].any() and content[-1].any() and content[:, 0].any() and content[:, -1].any()


# Where the stored top-left marker ends up on screen for each clockwise rotation R of the file.
MARKER_CORNER = {0: "top-left", 90: "top-right", 180: "bottom-right", 270: "bottom-left"}


def red_mask(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return (r > 150) & (g < 90) & (b < 90)


def corner_of(mask: np.ndarray) -> str:
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    vertical = "top" if ys.mean() < h / 2 else "bottom"
    horizontal = "left" if xs.mean() < w / 2 else "right"
    return f"{vertical}-{horizontal}"


@pytest.mark.parametrize("clockwise", [0, 90, 180, 270])
def test_rotated_video_marker(tmp_path: Path, clockwise: int) -> None:
    """In a rotated file the marker appears where players show it, in display and model input."""
    path = videos.make_video(tmp_path / "r.mp4", rotation=clockwise, width=320, height=240,
                             frames=3)  # fmt: skip
    decoded = next(iter(read_segment(str(path), None, 1.0, DecodeStats())))
    rotation = videos.EXPECTED_PYAV_ROTATION[clockwise] % 360
    shown = display_rgb(decoded.frame, rotation)
    portrait = clockwise in (90, 270)
    assert shown.shape == ((320, 240, 3) if portrait else (240, 320, 3))
    assert corner_of(red_mask(shown)) == MARKER_CORNER[clockwise]

    pixels, tf = letterbox(decoded.frame, rotation, SIZE)
    mask = red_mask(pixels)
    assert corner_of(mask) == MARKER_CORNER[clockwise]
    # The marker's centre in model pixels maps back onto the marker's centre on screen.
    ys, xs = np.nonzero(mask)
    x, y = tf.to_display(xs.mean() + 0.5, ys.mean() + 0.5)
    sy, sx = np.nonzero(red_mask(shown))
    assert x == pytest.approx(sx.mean() + 0.5, abs=3)
    assert y == pytest.approx(sy.mean() + 0.5, abs=3)


def test_display_rgb_is_contiguous() -> None:
    """display_rgb returns a C-contiguous array (encoders and PIL need one)."""
    shown = display_rgb(frame_of(320, 240), 90)
    assert shown.flags.c_contiguous and shown.shape == (320, 240, 3)
