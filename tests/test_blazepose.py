"""Unit tests for posequeue.worker.blazepose: decoding the landmark model's outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from posequeue.config.schemas import Transform
from posequeue.producer.preprocess import letterbox_geometry
from posequeue.worker.blazepose import (
    LANDMARKS,
    NUM_KEYPOINTS,
    POSE_FLAG,
    decode,
    sigmoid,
    to_input,
)

RAW_LANDMARKS = 39  # the model outputs 39 landmarks; the first 33 are the pose


def outputs(points: np.ndarray, flags: list[float]) -> dict[str, np.ndarray]:
    """Model outputs as the runtime returns them: float32, (B, 195) and (B, 1)."""
    batch = len(flags)
    full = np.zeros((batch, RAW_LANDMARKS, 5), np.float32)
    full[:, :NUM_KEYPOINTS] = points
    full[:, NUM_KEYPOINTS:] = 999.0  # the 6 auxiliary landmarks must be dropped
    return {LANDMARKS: full.reshape(batch, RAW_LANDMARKS * 5),
            POSE_FLAG: np.asarray(flags, np.float32).reshape(batch, 1)}  # fmt: skip


def model_points(tf: Transform, display_xy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """33 landmarks in model-input pixels for known displayed positions, with random z/logits."""
    pts = np.zeros((NUM_KEYPOINTS, 5), np.float32)
    pts[:, 0] = display_xy[:, 0] * tf.scale_x + tf.pad_x
    pts[:, 1] = display_xy[:, 1] * tf.scale_y + tf.pad_y
    pts[:, 2] = rng.uniform(-50, 50, NUM_KEYPOINTS)
    pts[:, 3] = rng.uniform(-8, 8, NUM_KEYPOINTS)
    pts[:, 4] = rng.uniform(-8, 8, NUM_KEYPOINTS)
    return pts


def decimals(value: float) -> int:
    text = repr(value)
    return len(text.split(".")[1]) if "." in text and "e" not in text else 0


@pytest.mark.parametrize(("width", "height"), [(320, 240), (540, 960), (1920, 1080), (256, 256)])
def test_decode_maps_to_display(width: int, height: int) -> None:
    """33 keypoints of [x, y, z, vis, pres] in displayed pixels, as plain rounded floats."""
    rng = np.random.default_rng(width + height)
    _, _, tf = letterbox_geometry(width, height, (256, 256))
    display = np.stack([rng.uniform(0, width, NUM_KEYPOINTS),
                        rng.uniform(0, height, NUM_KEYPOINTS)], axis=1)  # fmt: skip
    pts = model_points(tf, display, rng)
    people = decode(outputs(pts[None], [0.97]), [tf])
    assert len(people) == 1 and len(people[0]) == 1
    person = people[0][0]
    assert person["score"] == pytest.approx(0.97) and type(person["score"]) is float
    kps = person["keypoints"]
    assert len(kps) == NUM_KEYPOINTS and all(len(k) == 5 for k in kps)
    for k, (x, y, z, vis, pres) in enumerate(kps):
        assert all(type(v) is float for v in (x, y, z, vis, pres))
        # model-pixel float32 precision, then rounding to 0.01 px
        assert x == pytest.approx(display[k, 0], abs=0.02)
        assert y == pytest.approx(display[k, 1], abs=0.02)
        assert z == pytest.approx(float(pts[k, 2]) / tf.scale_x, abs=0.02)
        assert 0 < vis < 1 and 0 < pres < 1
        assert vis == pytest.approx(1 / (1 + math.exp(-float(pts[k, 3]))), abs=1e-4)
        assert pres == pytest.approx(1 / (1 + math.exp(-float(pts[k, 4]))), abs=1e-4)
        assert decimals(x) <= 2 and decimals(y) <= 2 and decimals(z) <= 2
        assert decimals(vis) <= 4 and decimals(pres) <= 4


def test_decode_no_float32_noise() -> None:
    """A float32 value like 192.24 comes out as 192.24, not 192.24000549316406."""
    tf = Transform(1.0, 1.0, 0.0, 0.0)
    pts = np.zeros((NUM_KEYPOINTS, 5), np.float32)
    pts[:, 0], pts[:, 1], pts[:, 2] = 192.24, 17.3, -3.1
    assert float(np.float32(192.24)) != 192.24  # the noise this guards against
    kp = decode(outputs(pts[None], [0.9]), [tf])[0][0]["keypoints"][0]
    assert kp[:3] == [192.24, 17.3, -3.1]
    assert kp[3:] == [0.5, 0.5]
    assert "192.24," in repr(kp) and "0.5" in repr(kp)


@pytest.mark.parametrize(("flag", "found"), [(0.0, False), (0.2, False), (0.4999, False),
                                             (0.5, True), (0.51, True), (1.0, True)])  # fmt: skip
def test_pose_flag_threshold(flag: float, found: bool) -> None:
    """A frame whose pose flag is below 0.5 has no people; otherwise one person."""
    tf = Transform(0.8, 0.8, 0.0, 32.0)
    pts = np.full((NUM_KEYPOINTS, 5), 100.0, np.float32)
    people = decode(outputs(pts[None], [flag]), [tf])
    assert people == ([[people[0][0]]] if found else [[]])
    if found:
        assert people[0][0]["score"] == round(flag, 4)


def test_decode_batch_uses_each_frames_transform() -> None:
    """In a batch each frame is mapped with its own transform, and empty frames stay empty."""
    tfs = [letterbox_geometry(w, h, (256, 256))[2] for w, h in [(320, 240), (240, 320),
                                                                  (100, 100)]]  # fmt: skip
    display = np.full((NUM_KEYPOINTS, 2), 50.0)
    rng = np.random.default_rng(0)
    pts = np.stack([model_points(tf, display, rng) for tf in tfs])
    frames = decode(outputs(pts, [0.9, 0.1, 0.8]), tfs)
    assert len(frames) == 3
    assert frames[1] == []
    for f in (frames[0], frames[2]):
        assert [k[:2] for k in f[0]["keypoints"]] == [[50.0, 50.0]] * NUM_KEYPOINTS


def test_to_input_and_sigmoid() -> None:
    """Pixels scale to float32 [0, 1]; sigmoid maps logits into (0, 1)."""
    x = to_input(np.array([[0, 128, 255]], np.uint8))
    assert x.dtype == np.float32 and x[0].tolist() == pytest.approx([0.0, 128 / 255, 1.0])
    s = sigmoid(np.array([-20.0, 0.0, 20.0]))
    assert s[1] == 0.5 and 0 < s[0] < 1e-8 and 1 - 1e-8 < s[2] <= 1
