"""The keypoints stage's pre- and post-processing: from a working frame to the model input, and
from the model's coordinates back to pixels of the displayed frame."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from posequeue.config.catalogue import Coords, Preprocess, StageSpec
from posequeue.worker.keypoints import model_input, people

pytestmark = pytest.mark.compat

STAGE = StageSpec("pose", "m", (256, 192))


def dot_frame(w: int, h: int, x: int, y: int) -> np.ndarray:
    frame = np.zeros((h, w, 3), np.uint8)
    frame[y, x] = 255
    return frame


def brightest(batch: np.ndarray) -> tuple[float, float]:
    y, x = np.unravel_index(np.argmax(batch[0].mean(axis=-1)), batch.shape[1:3])
    return float(x), float(y)


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
@pytest.mark.parametrize(("w", "h"), [(640, 360), (360, 640), (192, 256), (100, 100)])
def test_a_point_goes_to_the_input_and_back_to_the_same_display_pixel(resize: str, w: int, h: int) -> None:
    """Whatever the frame's shape, a keypoint the model puts on a dot maps back onto the dot."""
    stage = replace(STAGE, preprocess=Preprocess(resize=resize))
    x, y = int(w * 0.3), int(h * 0.7)
    batch, box = model_input(dot_frame(w, h, x, y)[None], stage)
    assert batch.shape == (1, 256, 192, 3) and batch.dtype == np.float32
    bx, by = brightest(batch)
    coords = np.array([[[(bx + 0.5) / 192, (by + 0.5) / 256]]])  # normalised, pixel centre
    (person,) = people({"coords": coords}, stage, box, (w, h))[0]
    px, py = person["keypoints"][0][:2]
    step = max(w / box[2], h / box[3])  # one input pixel in display pixels
    assert abs(px - (x + 0.5)) <= step and abs(py - (y + 0.5)) <= step


def test_letterbox_keeps_the_aspect_with_centred_bars() -> None:
    """A wide frame fills the input's width; bars above and below are black."""
    frame = np.full((360, 640, 3), 255, np.uint8)
    batch, box = model_input(frame[None], replace(STAGE, preprocess=Preprocess(resize="letterbox")))
    left, top, width, height = box
    assert (left, top, width, height) == (0, 74, 192, 108)
    assert batch[0, :74].max() == 0 and batch[0, 182:].max() == 0 and batch[0, 74:182].min() == 1.0


def test_scale_mean_std_channels_and_uint8() -> None:
    """(pixel * scale - mean) / std per channel, channels reversed for bgr; uint8 is untouched."""
    frame = np.zeros((4, 4, 3), np.uint8)
    frame[..., 0], frame[..., 2] = 255, 51
    pre = Preprocess(scale=1 / 255, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.5), channels="bgr")
    batch, _ = model_input(frame[None], replace(STAGE, input_size=(4, 4), preprocess=pre))
    assert batch[0, 0, 0] == pytest.approx([(0.2 - 0.5) / 0.5, -2.0, 1.0])
    raw, _ = model_input(frame[None], replace(STAGE, input_size=(4, 4), dtype="uint8"))
    assert raw.dtype == np.uint8 and raw[0, 0, 0].tolist() == [255, 0, 51]


def test_pixels_yx_scores_and_min_score() -> None:
    """Coordinates in input pixels, y before x, with a score column; low scores mean nobody."""
    stage = replace(STAGE, coords=Coords(convention="pixels", order="yx", min_score=0.5))
    coords = np.array([[[128.0, 96.0, 0.9], [0.0, 0.0, 0.7]], [[10.0, 10.0, 0.1], [5.0, 5.0, 0.2]]])
    found, nobody = people({"coords": coords}, stage, (0.0, 0.0, 192.0, 256.0), (384, 512))
    assert nobody == []
    assert found[0]["keypoints"] == [[192.0, 256.0, 0.0, 0.9, 0.9], [0.0, 0.0, 0.0, 0.7, 0.7]]
    assert found[0]["score"] == pytest.approx(0.8)


def test_flat_coordinates_and_no_scores() -> None:
    """(batch, K*2) outputs are read as K points; without scores visibility is 1."""
    coords = np.array([[0.5, 0.5, 1.0, 1.0]])
    (person,) = people({"coords": coords}, STAGE, (0.0, 0.0, 192.0, 256.0), (192, 256))[0]
    assert person["keypoints"] == [[96.0, 128.0, 0.0, 1.0, 1.0], [192.0, 256.0, 0.0, 1.0, 1.0]]


def test_frames_travel_no_larger_than_the_model_input_uses() -> None:
    """A whole-frame model gets frames just big enough for its input (bytes through Redis);
    BlazePose, which crops people out of the frame, keeps the configured long side."""
    from posequeue.config.catalogue import CATALOGUE, ModelSpec

    def spec(resize: str) -> ModelSpec:
        return ModelSpec("m", "tensorflow", (replace(STAGE, preprocess=Preprocess(resize=resize)),), ("a",))

    # 1920x1080 into 192 wide x 256 high: stretch needs 256 rows (455 columns), letterbox 192 columns.
    assert spec("stretch").work_long_side(1920, 1080, 1280) == 456
    assert spec("letterbox").work_long_side(1920, 1080, 1280) == 192
    assert spec("letterbox").work_long_side(1080, 1920, 1280) == 256
    assert spec("stretch").work_long_side(320, 240, 1280) == 342  # upscaling is the model's job
    assert spec("stretch").work_long_side(4000, 3000, 100) == 100  # never above the setting
    assert CATALOGUE["blazepose"].work_long_side(1920, 1080, 1280) == 1280


def test_a_keypoint_count_unlike_the_spec_is_an_error_naming_both() -> None:
    """17 points from a model whose spec names 33: an error the job reports, not wrong names."""
    with pytest.raises(ValueError, match="holds 17 keypoints of 2 values, but the model spec names 33"):
        people({"coords": np.zeros((1, 17, 2))}, STAGE, (0.0, 0.0, 192.0, 256.0), (192, 256), 33)
