"""Unit tests for posequeue.worker.blazepose: detector input, heatmap refinement, landmark decoding,
and one smoke test of the two real BlazePose models."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from posequeue.errors import BatchError
from posequeue.worker import blazepose, detector
from posequeue.worker.blazepose import (
    CROP_SIZE,
    HEATMAP,
    LANDMARKS,
    NUM_KEYPOINTS,
    POSE_FLAG,
    crops,
    decode_rois,
    detector_input,
    encode_rois,
    letterbox,
    people,
    refine,
    regions,
    sigmoid,
)
from posequeue.worker.roi import Roi

RAW_LANDMARKS = 39  # the model outputs 39 landmarks; the first 33 are the pose
COLD = -30.0  # a heatmap logit far below the refinement threshold


def test_letterbox_landscape() -> None:
    """A 640x360 image sits centred in 224x224 between black bars; padding (0, 0.21875, 0, 0.21875)."""
    image = np.full((360, 640, 3), 200, np.uint8)
    out, pad = letterbox(image)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    assert pad == pytest.approx((0.0, 0.21875, 0.0, 0.21875))
    bar = round(0.21875 * 224)  # 49 rows
    assert not out[:bar].any() and not out[224 - bar :].any()
    assert (out[bar : 224 - bar] == 200).all()


def test_letterbox_portrait_and_square() -> None:
    """A portrait image gets bars left and right; a square one fills the input with no padding."""
    out, pad = letterbox(np.full((640, 360, 3), 90, np.uint8))
    assert pad == pytest.approx((0.21875, 0.0, 0.21875, 0.0))
    assert not out[:, :49].any() and not out[:, 175:].any() and (out[:, 49:175] == 90).all()
    out, pad = letterbox(np.full((300, 300, 3), 90, np.uint8))
    assert pad == pytest.approx((0.0, 0.0, 0.0, 0.0)) and (out == 90).all()


def test_letterbox_maps_corners_to_corners() -> None:
    """An image point (x, y) lands at (x + left) * 224 / side in the input (MediaPipe's sampling)."""
    ys, xs = np.mgrid[:360, :640]
    blob = 250 * np.exp(-((xs - 309) ** 2 + (ys - 109) ** 2) / (2 * 8.0**2))  # smooth: no aliasing
    image = np.repeat(np.round(blob).astype(np.uint8)[..., None], 3, axis=-1)
    out, _ = letterbox(image)
    weights = out[..., 0].astype(np.float64)
    ys, xs = np.mgrid[:224, :224]
    cx, cy = (xs * weights).sum() / weights.sum(), (ys * weights).sum() / weights.sum()
    k = 224 / 640
    # pixel centres at integer coordinates, corners to corners; the half-pixel (cv2.resize)
    # convention would put it (1 - k) / 2 = 0.325 px further up-left
    assert cx == pytest.approx(309 * k, abs=0.1)
    assert cy == pytest.approx((109 + 140) * k, abs=0.1)


def test_detector_input_range() -> None:
    """The detector batch is float32 in [-1, 1] (black bars at -1), one padding per image."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (2, 360, 640, 3), np.uint8)
    images[1] = 255
    batch, pads = detector_input(images)
    assert batch.shape == (2, 224, 224, 3) and batch.dtype == np.float32
    assert batch.min() >= -1.0 and batch.max() <= 1.0
    assert (batch[:, :49] == -1.0).all()  # padding
    assert batch[1, 100:120] == pytest.approx(1.0)
    assert pads == [pytest.approx((0.0, 0.21875, 0.0, 0.21875))] * 2


def cold_heatmap() -> np.ndarray:
    return np.full((64, 64, RAW_LANDMARKS), COLD, np.float32)


def test_refine_moves_to_weighted_peak() -> None:
    """A confident heatmap peak in the 7x7 window moves the point to the peak's weighted centre."""
    heatmap = cold_heatmap()
    heatmap[39, 20, 0] = 4.0
    heatmap[38:41, 20, 0] = heatmap[39, 19:22, 0] = 2.0
    heatmap[39, 20, 0] = 4.0
    heatmap[10, 50, 1] = 4.0
    heatmap[10, 51, 1] = 4.0  # two equal cells: centre between them
    points = np.array([[0.3, 0.6], [0.78, 0.17]])  # cells (19, 38) and (49, 10)
    out = refine(points, heatmap)
    assert out[0] == pytest.approx([20 / 64, 39 / 64], abs=1e-6)
    assert out[1] == pytest.approx([50.5 / 64, 10 / 64], abs=1e-6)
    assert np.array_equal(points, [[0.3, 0.6], [0.78, 0.17]])  # input untouched


def test_refine_is_the_mediapipe_weighted_mean() -> None:
    """With an arbitrary heatmap, refinement is the sigmoid-weighted mean of the window's cells."""
    rng = np.random.default_rng(5)
    heatmap = rng.normal(0, 2, (64, 64, RAW_LANDMARKS)).astype(np.float32)
    points = np.array([[0.41, 0.52]])
    c, r = int(0.41 * 64), int(0.52 * 64)
    window = sigmoid(heatmap[r - 3 : r + 4, c - 3 : c + 4, 0])
    assert window.max() >= 0.5
    rows, cols = np.mgrid[r - 3 : r + 4, c - 3 : c + 4]
    expected = [(cols * window).sum() / window.sum() / 64, (rows * window).sum() / window.sum() / 64]
    assert refine(points, heatmap)[0] == pytest.approx(expected, abs=1e-9)


def test_refine_leaves_unconfident_or_outside_points() -> None:
    """Points stay put when the window's max sigmoid is below 0.5 or the point is off the heatmap."""
    heatmap = np.full((64, 64, RAW_LANDMARKS), -0.1, np.float32)  # sigmoid just under 0.5
    heatmap[30, 31, 0] = -0.01
    heatmap[:, :, 1] = 5.0  # confident everywhere, but the point is outside
    heatmap[:, :, 2] = 5.0
    points = np.array([[0.5, 0.5], [1.2, 0.5], [0.5, -0.3]])
    assert refine(points, heatmap) == pytest.approx(points)


def landmark_outputs(
    points: np.ndarray, flags: list[float], heatmap: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Landmark model outputs as the runtime returns them: float32 (B, 195), (B, 1), (B, 64, 64, 39)."""
    batch = len(flags)
    full = np.zeros((batch, RAW_LANDMARKS, 5), np.float32)
    full[:, :NUM_KEYPOINTS] = points
    full[:, NUM_KEYPOINTS:] = 999.0  # the 6 auxiliary landmarks must be ignored
    heat = np.repeat((cold_heatmap() if heatmap is None else heatmap)[None], batch, axis=0)
    return {
        LANDMARKS: full.reshape(batch, RAW_LANDMARKS * 5),
        POSE_FLAG: np.asarray(flags, np.float32).reshape(batch, 1),
        HEATMAP: heat,
    }


def crop_points(xy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """33 landmarks at crop pixels ``xy`` with random z and visibility/presence logits."""
    pts = np.zeros((NUM_KEYPOINTS, 5), np.float32)
    pts[:, :2] = xy
    pts[:, 2] = rng.uniform(-50, 50, NUM_KEYPOINTS)
    pts[:, 3:] = rng.uniform(-8, 8, (NUM_KEYPOINTS, 2))
    return pts


def decimals(value: float) -> int:
    text = repr(value)
    return len(text.split(".")[1]) if "." in text and "e" not in text else 0


def test_people_empty_cases() -> None:
    """No ROI gives no people (and consumes no output row); a pose flag below 0.5 gives none."""
    assert people(landmark_outputs(np.zeros((0, NUM_KEYPOINTS, 5)), []), [[]], (640, 360)) == [[]]
    roi = Roi(0.5, 0.5, 1.0, 1.0, 0.0)
    pts = np.full((1, NUM_KEYPOINTS, 5), 128.0, np.float32)
    for flag in (0.0, 0.3, 0.4999):
        assert people(landmark_outputs(pts, [flag]), [[roi]], (640, 360)) == [[]]
    found = people(landmark_outputs(pts, [0.5]), [[roi]], (640, 360))
    assert len(found) == 1 and len(found[0]) == 1 and found[0][0]["score"] == 0.5


@pytest.mark.parametrize(("width", "height"), [(640, 360), (1920, 1080), (360, 640), (256, 256)])
def test_people_whole_image_roi(width: int, height: int) -> None:
    """With an unrotated ROI covering the image, crop position p maps to p * display size."""
    rng = np.random.default_rng(width)
    xy = rng.uniform(0, CROP_SIZE, (NUM_KEYPOINTS, 2))
    xy[0] = (128, 128)  # crop centre -> image centre
    pts = crop_points(xy, rng)
    roi = Roi(0.5, 0.5, 1.0, 1.0, 0.0)
    frames = people(landmark_outputs(pts[None], [0.97]), [[roi]], (width, height))
    assert len(frames) == 1 and len(frames[0]) == 1
    person = frames[0][0]
    assert person["score"] == 0.97 and type(person["score"]) is float
    kps = person["keypoints"]
    assert len(kps) == NUM_KEYPOINTS and all(len(k) == 5 for k in kps)
    assert kps[0][:2] == [width / 2, height / 2]
    for k, (x, y, z, vis, pres) in enumerate(kps):
        assert all(type(v) is float for v in (x, y, z, vis, pres))
        assert x == pytest.approx(float(pts[k, 0]) / CROP_SIZE * width, abs=0.006)
        assert y == pytest.approx(float(pts[k, 1]) / CROP_SIZE * height, abs=0.006)
        assert z == pytest.approx(float(pts[k, 2]) / CROP_SIZE * width, abs=0.006)
        assert 0 < vis < 1 and 0 < pres < 1
        assert vis == pytest.approx(sigmoid(pts[k, 3]), abs=6e-5)
        assert pres == pytest.approx(sigmoid(pts[k, 4]), abs=6e-5)
        assert decimals(x) <= 2 and decimals(y) <= 2 and decimals(z) <= 2
        assert decimals(vis) <= 4 and decimals(pres) <= 4


def test_people_no_float32_noise() -> None:
    """A float32 value like 192.24 comes out as 192.24, not 192.24000549316406."""
    pts = np.zeros((1, NUM_KEYPOINTS, 5), np.float32)
    pts[0, :, 0], pts[0, :, 1], pts[0, :, 2] = 192.24, 17.3, -3.1
    assert float(np.float32(192.24)) != 192.24  # the noise this guards against
    roi = Roi(0.5, 0.5, 1.0, 1.0, 0.0)
    kp = people(landmark_outputs(pts, [0.9]), [[roi]], (CROP_SIZE, CROP_SIZE))[0][0]["keypoints"][0]
    assert kp == [192.24, 17.3, -3.1, 0.5, 0.5]
    assert "192.24," in repr(kp)


def test_people_rotated_roi() -> None:
    """Landmarks go through the ROI's rotation: the crop's top centre is the ROI's right for +pi/2."""
    w, h = 640, 360
    side = 320  # pixels
    roi = Roi(0.5, 0.5, side / w, side / h, math.pi / 2)
    xy = np.full((NUM_KEYPOINTS, 2), 128.0)
    xy[1], xy[2] = (128, 0), (0, 128)  # top centre, left centre of the crop
    pts = crop_points(xy, np.random.default_rng(0))
    kps = people(landmark_outputs(pts[None], [0.9]), [[roi]], (w, h))[0][0]["keypoints"]
    assert kps[0][:2] == pytest.approx([320, 180], abs=0.01)
    assert kps[1][:2] == pytest.approx([320 + side / 2, 180], abs=0.01)  # right of the centre
    assert kps[2][:2] == pytest.approx([320, 180 - side / 2], abs=0.01)  # above the centre


def test_people_refines_with_heatmap() -> None:
    """A confident heatmap peak moves its landmark before projection."""
    heatmap = cold_heatmap()
    heatmap[16, 48, 0] = 5.0
    xy = np.full((NUM_KEYPOINTS, 2), 128.0)
    xy[0] = (46 * 4, 18 * 4)  # heatmap cell (46, 18), the peak is in its window
    pts = crop_points(xy, np.random.default_rng(0))
    roi = Roi(0.5, 0.5, 1.0, 1.0, 0.0)
    kps = people(landmark_outputs(pts[None], [0.9], heatmap), [[roi]], (CROP_SIZE, CROP_SIZE))[0][0]
    assert kps["keypoints"][0][:2] == pytest.approx([48 * 4, 16 * 4], abs=0.01)
    assert kps["keypoints"][1][:2] == [128.0, 128.0]


def test_people_batch_rows_follow_rois() -> None:
    """Output rows belong, in order, to the regions of each frame; each uses its own region, a
    frame keeps every region's person that passes the pose flag."""
    w, h = 640, 360
    rois = [
        [Roi(0.25, 0.5, 0.5, 1.0, 0.0)],
        [],
        [Roi(0.75, 0.5, 0.5, 1.0, 0.0)],
        [Roi(0.5, 0.5, 1.0, 1.0, 0.0), Roi(0.25, 0.5, 0.5, 1.0, 0.0)],
        [],
    ]
    rng = np.random.default_rng(2)
    pts = np.stack([crop_points(np.full((NUM_KEYPOINTS, 2), 128.0), rng) for _ in range(4)])
    frames = people(landmark_outputs(pts, [0.9, 0.2, 0.8, 0.7]), rois, (w, h))
    assert len(frames) == 5
    assert frames[1] == [] and frames[4] == []  # no region
    assert frames[2] == []  # its row (the second) has a low pose flag
    assert frames[0][0]["score"] == 0.9 and [p["score"] for p in frames[3]] == [0.8, 0.7]
    assert {tuple(k[:2]) for k in frames[0][0]["keypoints"]} == {(160.0, 180.0)}
    assert {tuple(k[:2]) for k in frames[3][0]["keypoints"]} == {(320.0, 180.0)}
    assert {tuple(k[:2]) for k in frames[3][1]["keypoints"]} == {(160.0, 180.0)}
    assert [k[3] for k in frames[3][0]["keypoints"]] == pytest.approx(sigmoid(pts[2, :, 3]), abs=6e-5)


def _detector_outputs(images: int, people: list[tuple[int, int, float]]) -> dict[str, np.ndarray]:
    """Raw detector outputs with one strong anchor per (image, anchor index, logit), a 50 px
    box and the keypoints of a standing person around the anchor."""
    boxes = np.zeros((images, 2254, 12), np.float32)
    scores = np.full((images, 2254, 1), -10.0, np.float32)
    for image, index, logit in people:
        anchor = detector.anchors()[index]
        kps = np.array([[0.0, 0.08], [0.0, -0.22], [0.0, -0.12], [0.0, -0.17]]) + anchor
        scores[image, index] = logit
        boxes[image, index, 2:4] = 50
        boxes[image, index, 4:] = ((kps - anchor) * 224).reshape(-1)
    return {detector.BOXES: boxes, detector.SCORES: scores}


def test_regions_and_crops() -> None:
    """regions picks each image's best detection (or none); crops stacks only the frames with one."""
    index = 2 * (14 * 28 + 14)  # anchor centre (0.5179, 0.5179)
    pads = [(0.0, 0.0, 0.0, 0.0)] * 2
    rois = regions(_detector_outputs(2, [(0, index, 3.0)]), pads, (300, 300))
    assert rois[1] == [] and len(rois[0]) == 1
    anchor = detector.anchors()[index]
    assert (rois[0][0].x, rois[0][0].y) == pytest.approx((anchor[0], anchor[1] + 0.08), abs=1e-6)
    assert rois[0][0].width == pytest.approx(2 * 0.3 * 1.25, abs=1e-6)
    images = np.zeros((2, 300, 300, 3), np.uint8)
    out = crops(images, rois)
    assert out.shape == (1, CROP_SIZE, CROP_SIZE, 3) and out.dtype == np.uint8
    empty = crops(images, [[], []])
    assert empty.shape == (0, CROP_SIZE, CROP_SIZE, 3) and empty.dtype == np.uint8


def test_regions_keep_up_to_n_separate_people_best_first() -> None:
    """With keep=N, regions gives up to N separate detections per image, best first, and crops
    stacks each of them in frame order; keep=1 is the best one alone."""
    left, right, far = 2 * (14 * 28 + 6), 2 * (14 * 28 + 22), 2 * (4 * 28 + 14)  # anchor indices
    outputs = _detector_outputs(2, [(0, left, 2.0), (0, right, 4.0), (0, far, 1.0), (1, left, 3.0)])
    pads = [(0.0, 0.0, 0.0, 0.0)] * 2
    two = regions(outputs, pads, (300, 300), keep=2)
    assert [len(r) for r in two] == [2, 1]
    assert two[0][0].x > 0.5 > two[0][1].x  # the right one scores higher, so it comes first
    assert regions(outputs, pads, (300, 300), keep=1)[0] == two[0][:1]
    assert [len(r) for r in regions(outputs, pads, (300, 300), keep=5)] == [3, 1]
    images = np.zeros((2, 300, 300, 3), np.uint8)
    images[0, :, 150:] = 255  # the right half white: its crop differs from the left one's
    out = crops(images, two)
    assert out.shape == (3, CROP_SIZE, CROP_SIZE, 3)
    assert out[0].mean() > out[1].mean()
    assert decode_rois(encode_rois(two)) == [[Roi(*r.to_list()) for r in f] for f in two]


def test_regions_of_an_older_worker_are_refused_by_name() -> None:
    """The one-region-or-null layout of a detector worker before --people is refused, saying to run
    one version everywhere, instead of failing somewhere in the landmark stage."""
    with pytest.raises(BatchError, match="same posequeue version"):
        decode_rois(b"[[0.5, 0.5, 0.2, 0.2, 0.0], null]")
    assert decode_rois(b"[[], [[0.5, 0.5, 0.2, 0.2, 0.0]]]") == [[], [Roi(0.5, 0.5, 0.2, 0.2, 0.0)]]


def test_sigmoid() -> None:
    """sigmoid maps logits into (0, 1) as float64."""
    s = sigmoid(np.array([-20.0, 0.0, 20.0], np.float32))
    assert s.dtype == np.float64
    assert s[1] == 0.5 and 0 < s[0] < 1e-8 and 1 - 1e-8 < s[2] <= 1


def test_real_models_find_the_astronauts_nose(model_dir: Path) -> None:
    """The real detector and landmark models put the astronaut's nose on her face, in display pixels."""
    import av

    from posequeue.worker.runtimes import make_runtime

    # The sample's first frame: the 512 px photo scaled to 264 px, its top-left at (20, 72).
    with av.open(str(Path(__file__).resolve().parents[1] / "samples" / "astronaut.mp4")) as src:
        frame = next(src.decode(video=0)).to_ndarray(format="rgb24")  # the working frame, 640x360
    display = (1280, 720)  # the displayed picture is twice the working size
    det = make_runtime("tflite", model_dir / "pose_detection.tflite", 2, (detector.BOXES, detector.SCORES))
    lm = make_runtime("tflite", model_dir / "pose_landmark_full.tflite", 2, (LANDMARKS, POSE_FLAG, HEATMAP))
    frames = frame[None]
    batch, pads = detector_input(frames)
    rois = regions(det.run(batch), pads, display)
    assert rois[0], "nobody detected"
    chosen = crops(frames, rois)
    outputs = lm.run(chosen.astype(np.float32) * (1.0 / 255.0))
    found = people(outputs, rois, display)
    assert len(found) == 1 and len(found[0]) == 1
    nose = found[0][0]["keypoints"][0]
    # The face in the 512 px photo spans about x 170-280, y 70-190; back to photo pixels:
    scale = 264 / 512
    x, y = (nose[0] / 2 - 20) / scale, (nose[1] / 2 - 72) / scale
    assert 170 <= x <= 280 and 70 <= y <= 190, f"nose at photo ({x:.0f}, {y:.0f})"
    assert nose[3] > 0.5 and nose[4] > 0.5  # visible and present
    assert blazepose.NUM_KEYPOINTS == len(found[0][0]["keypoints"]) == 33


def _refine_loop(points: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """The calculator's loops, written plainly: the reference for the vectorised version."""
    rows, cols, _ = heatmap.shape
    out = points.copy()
    for i in range(len(points)):
        c, r = int(points[i, 0] * cols), int(points[i, 1] * rows)  # truncation toward zero
        if not (0 <= c < cols and 0 <= r < rows):
            continue
        r0, r1, c0, c1 = max(0, r - 3), min(rows, r + 4), max(0, c - 3), min(cols, c + 4)
        conf = sigmoid(heatmap[r0:r1, c0:c1, i])
        if conf.max() < 0.5 or conf.sum() <= 0:
            continue
        grid_r, grid_c = np.mgrid[r0:r1, c0:c1]
        out[i] = (grid_c * conf).sum() / conf.sum() / cols, (grid_r * conf).sum() / conf.sum() / rows
    return out


def test_refine_matches_the_calculators_loops_everywhere() -> None:
    """The vectorised refinement equals the plain loops for points inside, at the edges and just
    outside the crop (-1/64 < x < 0 still truncates into column 0)."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        points = rng.uniform(-0.1, 1.1, (33, 2))
        points[:4] = [[-0.005, 0.5], [0.5, -0.01], [0.999, 0.999], [1.0, 0.2]]
        heatmap = rng.normal(0, 3, (64, 64, 39)).astype(np.float32)
        assert np.allclose(refine(points, heatmap), _refine_loop(points, heatmap), atol=1e-12)
