"""Unit tests for posequeue.worker.detector: SSD anchors, decoding, weighted NMS and the ROI."""

from __future__ import annotations

import math

import numpy as np
import pytest

from posequeue.worker import detector
from posequeue.worker.detector import Detection, anchors, decode, roi_of, separate

N = 2254
SIZE = detector.INPUT_SIZE  # 224


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def raw_outputs() -> tuple[np.ndarray, np.ndarray]:
    """Empty raw outputs as the model returns them for one image: (2254, 12) and (2254, 1)."""
    return np.zeros((N, 12), np.float32), np.full((N, 1), -10.0, np.float32)


def put(
    boxes: np.ndarray,
    scores: np.ndarray,
    index: int,
    logit: float,
    centre: tuple[float, float],
    size: tuple[float, float],
    keypoints: np.ndarray | None = None,
) -> None:
    """A candidate at anchor ``index``: offsets in 224-pixel units relative to the anchor centre."""
    scores[index] = logit
    boxes[index, 0:2] = centre
    boxes[index, 2:4] = size
    if keypoints is not None:
        boxes[index, 4:] = keypoints.reshape(-1)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def test_anchor_layout() -> None:
    """2254 anchors: 28x28 cells x 2, then 14x14 x 2, then 7x7 x 6 (three stride-32 layers), in (0, 1)."""
    a = anchors()
    assert a.shape == (N, 2) and a.dtype == np.float32
    assert ((a > 0) & (a < 1)).all()
    first = a[:1568]
    ys, xs = np.divmod(np.arange(28 * 28), 28)
    cells = np.stack([(xs + 0.5) / 28, (ys + 0.5) / 28], axis=1)
    assert first[0::2] == pytest.approx(cells) and first[1::2] == pytest.approx(cells)
    second = a[1568 : 1568 + 392]
    ys, xs = np.divmod(np.arange(14 * 14), 14)
    cells = np.stack([(xs + 0.5) / 14, (ys + 0.5) / 14], axis=1)
    assert second == pytest.approx(np.repeat(cells, 2, axis=0))
    last = a[1568 + 392 :]
    ys, xs = np.divmod(np.arange(7 * 7), 7)
    cells = np.stack([(xs + 0.5) / 7, (ys + 0.5) / 7], axis=1)
    assert last == pytest.approx(np.repeat(cells, 6, axis=0))


def test_decode_one_candidate() -> None:
    """One confident anchor gives one detection: box and keypoints are raw / 224 + anchor centre."""
    boxes, scores = raw_outputs()
    index = 2 * (10 * 28 + 17)  # grid cell x=17, y=10 of the 28x28 layer
    ax, ay = anchors()[index]
    assert (ax, ay) == pytest.approx((17.5 / 28, 10.5 / 28))
    kps = np.array([[5.0, 20.0], [3.0, -40.0], [-2.0, -30.0], [1.0, -50.0]])
    put(boxes, scores, index, 3.0, (10.0, -5.0), (60.0, 80.0), kps)
    found = decode(boxes, scores)
    assert len(found) == 1
    det = found[0]
    assert det.score == pytest.approx(sigmoid(3.0))
    cx, cy = ax + 10 / SIZE, ay - 5 / SIZE
    expected_box = [cx - 30 / SIZE, cy - 40 / SIZE, cx + 30 / SIZE, cy + 40 / SIZE]
    assert det.box == pytest.approx(expected_box, abs=1e-6)
    assert det.keypoints.shape == (4, 2)
    assert det.keypoints == pytest.approx(kps / SIZE + [ax, ay], abs=1e-6)


def test_decode_accepts_batch_shaped_rows() -> None:
    """decode takes one image's outputs with or without a leading batch axis of 1."""
    boxes, scores = raw_outputs()
    put(boxes, scores, 1600, 2.0, (0.0, 0.0), (30.0, 30.0))
    assert len(decode(boxes[None], scores[None])) == 1


@pytest.mark.parametrize(("logit", "kept"), [(-10.0, False), (-0.01, False), (0.0, True), (0.01, True)])
def test_score_threshold(logit: float, kept: bool) -> None:
    """Candidates whose sigmoid score is below 0.5 are dropped; 0.5 itself is kept (as MediaPipe)."""
    boxes, scores = raw_outputs()
    put(boxes, scores, 100, logit, (0.0, 0.0), (40.0, 40.0))
    assert len(decode(boxes, scores)) == (1 if kept else 0)


def test_nothing_found() -> None:
    """All-low scores decode to an empty list."""
    assert decode(*raw_outputs()) == []


def test_huge_logits_are_clipped() -> None:
    """Logits beyond +-100 are clipped before the sigmoid (no overflow, score 1)."""
    boxes, scores = raw_outputs()
    scores[:] = -1e30
    put(boxes, scores, 50, 1e30, (0.0, 0.0), (40.0, 40.0))
    with np.errstate(all="raise"):
        found = decode(boxes, scores)
    assert len(found) == 1 and found[0].score == pytest.approx(1.0)


def test_overlapping_candidates_merge_weighted() -> None:
    """Candidates overlapping the best one (IoU > 0.3) merge into a score-weighted average."""
    boxes, scores = raw_outputs()
    index = 2 * (14 * 28 + 14)  # two anchors share each cell: same centre
    kps_a = np.array([[0.0, 10.0], [0.0, -30.0], [0.0, -20.0], [0.0, -40.0]])
    kps_b = kps_a + 6.0
    put(boxes, scores, index, 2.0, (0.0, 0.0), (60.0, 60.0), kps_a)
    put(boxes, scores, index + 1, 1.0, (20.0, 0.0), (60.0, 60.0), kps_b)  # IoU = 40/80 = 0.5
    found = decode(boxes, scores)
    assert len(found) == 1
    wa, wb = sigmoid(2.0), sigmoid(1.0)
    ax, ay = anchors()[index]
    box_a = np.array([ax - 30 / SIZE, ay - 30 / SIZE, ax + 30 / SIZE, ay + 30 / SIZE])
    box_b = box_a + [20 / SIZE, 0, 20 / SIZE, 0]
    assert iou(box_a, box_b) == pytest.approx(0.5)
    assert found[0].score == pytest.approx(wa)  # the best candidate's score, not an average
    assert found[0].box == pytest.approx((wa * box_a + wb * box_b) / (wa + wb), abs=1e-6)
    expected_kps = (wa * (kps_a / SIZE) + wb * (kps_b / SIZE)) / (wa + wb) + [ax, ay]
    assert found[0].keypoints == pytest.approx(expected_kps, abs=1e-6)


def test_separate_candidates_stay_separate_best_first() -> None:
    """Candidates that overlap little (IoU <= 0.3) or not at all stay separate, ordered by score."""
    boxes, scores = raw_outputs()
    index = 2 * (14 * 28 + 14)
    put(boxes, scores, index, 1.0, (0.0, 0.0), (60.0, 60.0))
    put(boxes, scores, index + 1, 2.5, (40.0, 0.0), (60.0, 60.0))  # IoU = 20/100 = 0.2
    far = 2 * (2 * 28 + 3)
    put(boxes, scores, far, 4.0, (0.0, 0.0), (40.0, 40.0))
    found = decode(boxes, scores)
    assert [d.score for d in found] == pytest.approx([sigmoid(4.0), sigmoid(2.5), sigmoid(1.0)])
    fx, fy = anchors()[far]
    assert found[0].box == pytest.approx(
        [fx - 20 / SIZE, fy - 20 / SIZE, fx + 20 / SIZE, fy + 20 / SIZE], abs=1e-6
    )
    assert iou(found[1].box, found[2].box) == pytest.approx(0.2, abs=1e-6)


def test_roi_of_removes_letterbox_padding() -> None:
    """A detection in a letterboxed 640x360 frame maps to the right normalised image position."""
    pad = (0.0, 0.21875, 0.0, 0.21875)  # 640x360 in a 224 square: 49 px bars above and below
    hip, top = np.array([0.5, 0.6]), np.array([0.5, 0.3])  # normalised image positions
    to_box = lambda p: [p[0], 0.21875 + p[1] * 0.5625]  # noqa: E731
    keypoints = np.array([to_box(hip), to_box(top), to_box([0.5, 0.4]), to_box([0.5, 0.35])])
    det = Detection(0.9, np.zeros(4), keypoints)
    roi = roi_of(det, pad, (640, 360))
    assert (roi.x, roi.y) == pytest.approx((0.5, 0.6))
    side = 2 * 0.3 * 360 * 1.25  # pixels
    assert roi.width == pytest.approx(side / 640) and roi.height == pytest.approx(side / 360)
    assert roi.rotation == pytest.approx(0.0, abs=1e-9)


def test_decode_then_roi_in_portrait_frame() -> None:
    """End to end on raw outputs: keypoints placed in a letterboxed 360x640 frame give that ROI."""
    pad = (0.21875, 0.0, 0.21875, 0.0)
    hip, side_point = np.array([0.3, 0.5]), np.array([0.3 + 80 / 360, 0.5])  # head to the right
    to_box = lambda p: np.array([0.21875 + p[0] * 0.5625, p[1]])  # noqa: E731
    index = 1568 + 2 * (7 * 14 + 5)  # a 14x14-layer anchor
    anchor = anchors()[index]
    kps = np.stack([to_box(hip), to_box(side_point), to_box(hip), to_box(hip)])
    boxes, scores = raw_outputs()
    put(boxes, scores, index, 4.0, (0.0, 0.0), (50.0, 50.0), (kps - anchor) * SIZE)
    found = decode(boxes, scores)
    assert len(found) == 1
    roi = roi_of(found[0], pad, (360, 640))
    assert (roi.x, roi.y) == pytest.approx((0.3, 0.5), abs=1e-5)
    assert roi.width * 360 == pytest.approx(2 * 80 * 1.25, abs=1e-3)
    assert roi.height * 640 == pytest.approx(2 * 80 * 1.25, abs=1e-3)
    assert roi.rotation == pytest.approx(math.pi / 2, abs=1e-5)


def test_degenerate_box_ends_suppression() -> None:
    """A confident candidate whose box has no area (the model can output one) overlaps nothing,
    itself included: it is still a detection of its own, and suppression ends."""
    boxes, scores = raw_outputs()
    put(boxes, scores, 0, 4.0, (0.0, 0.0), (0.0, 0.0), np.zeros((4, 2)))
    put(boxes, scores, 100, 2.0, (1.0, 1.0), (50.0, 50.0), np.zeros((4, 2)))
    found = decode(boxes, scores)
    assert [round(d.score, 4) for d in found] == [round(sigmoid(4.0), 4), round(sigmoid(2.0), 4)]


def test_min_score_one_keeps_what_rounds_to_one() -> None:
    """At min_score 1.0 a candidate whose float64 sigmoid rounds to 1.0 still passes."""
    boxes, scores = raw_outputs()
    put(boxes, scores, 0, 40.0, (0.0, 0.0), (50.0, 50.0), np.zeros((4, 2)))
    assert len(decode(boxes, scores, min_score=1.0)) == 1


def _det(score: float, x0: float, width: float = 0.2) -> Detection:
    return Detection(score, np.array([x0, 0.1, x0 + width, 0.3]), np.zeros((4, 2)))


def test_separate_keeps_the_best_n_that_do_not_overlap() -> None:
    """Several people: detections are kept best first while their box overlaps every better kept
    one by an IoU of at most 0.3; keep=1 is the best alone."""
    best, overlapping, apart, far = _det(0.9, 0.1), _det(0.8, 0.15), _det(0.7, 0.26), _det(0.6, 0.6)
    # IoU(best, overlapping) = 0.15 / 0.25 = 0.6; IoU(best, apart) = 0.04 / 0.36 = 0.11
    found = [best, overlapping, apart, far]
    assert separate(found, 1) == [best]
    assert separate(found, 2) == [best, apart]
    assert separate(found, 5) == [best, apart, far]
    assert separate([], 3) == []
