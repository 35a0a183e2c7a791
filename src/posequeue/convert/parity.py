"""How far the converted SavedModels are from the TFLite interpreter, on real frames.

Frames of a video (the sample: an astronaut) go through both runtimes: the detector on its
letterboxed 224x224 input, the landmark model on the 256x256 crops of the people the
interpreter's detector found (the same crops for both). The interpreter runs frame by frame as
the worker does; the SavedModel takes the whole batch at once, which also proves the free batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from posequeue.convert import ConvertError
from posequeue.convert.blazepose import STAGES
from posequeue.worker import blazepose, detector

XY_BOUND_PX = 1e-2  # landmark x, y: pixels of the 256x256 crop
FRAMES = 6
MASK = "Identity_2"  # (B, 256, 256, 1) segmentation logits: no stage reads them
WORLD = "Identity_4"  # (B, 117) world landmarks: no stage reads them


def frames(video: Path, count: int = FRAMES) -> np.ndarray:
    """``count`` frames spread evenly over ``video``, RGB uint8."""
    import av

    if not video.is_file():
        raise ConvertError(f"no video at {video}; give --video a file with a person in it")
    with av.open(str(video)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not decoded:
        raise ConvertError(f"{video} has no video frames to measure parity on")
    picks = np.linspace(0, len(decoded) - 1, min(count, len(decoded))).round().astype(int)
    return np.stack([decoded[i] for i in picks])


def _require() -> None:
    """The interpreter, MediaPipe's warps (cv2) and PyAV, or a ConvertError saying how to add them."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
        import av  # noqa: F401
        import cv2  # noqa: F401
    except ImportError as exc:
        raise ConvertError(
            f"the parity check needs {exc.name}: pip install 'posequeue[tflite,producer]'"
        ) from exc


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) if a.size else 0.0


def figures(model_dir: Path, out: Path, video: Path, count: int = FRAMES) -> dict[str, Any]:
    """Parity figures (max absolute differences) of the SavedModels in ``out`` against the
    TFLite files in ``model_dir``; ``ok`` says whether landmark x, y are within XY_BOUND_PX."""
    from posequeue.worker.runtimes import TensorFlowRuntime, TFLiteRuntime

    _require()
    det_stage, lm_stage = STAGES
    images = frames(video, count)
    height, width = images.shape[1:3]
    det_input, pads = blazepose.detector_input(images)
    det_ref = TFLiteRuntime(model_dir / det_stage.file, threads=2).run(det_input)
    det_tf = TensorFlowRuntime(out / det_stage.name, threads=2).run(det_input)
    rois = blazepose.regions(det_ref, pads, (width, height))
    crops = blazepose.landmark_input(blazepose.crops(images, rois))
    if not len(crops):
        raise ConvertError(f"nobody was found in {video}; parity needs frames with a person")
    lm_ref = TFLiteRuntime(model_dir / lm_stage.file, threads=2).run(crops)
    lm_tf = TensorFlowRuntime(out / lm_stage.name, threads=2).run(crops)
    pose = slice(0, blazepose.NUM_KEYPOINTS)

    def landmarks(outputs: dict[str, np.ndarray]) -> np.ndarray:
        return outputs[blazepose.LANDMARKS].reshape(len(crops), -1, 5)

    xy = _max_abs(landmarks(lm_ref)[:, pose, :2], landmarks(lm_tf)[:, pose, :2])
    with np.errstate(over="ignore"):  # mask logits reach -1500: exp overflows, the sigmoid is 0
        mask = _max_abs(blazepose.sigmoid(lm_ref[MASK]), blazepose.sigmoid(lm_tf[MASK]))
    return {
        "video": str(video),
        "frames": len(images),
        "crops": len(crops),
        "detector": {
            "box_max_abs_px": _max_abs(det_ref[detector.BOXES], det_tf[detector.BOXES]),
            "score_max_abs": _max_abs(
                blazepose.sigmoid(det_ref[detector.SCORES]), blazepose.sigmoid(det_tf[detector.SCORES])
            ),
            "score_logit_max_abs": _max_abs(det_ref[detector.SCORES], det_tf[detector.SCORES]),
        },
        "landmarks": {
            "xy_max_abs_px": xy,
            "z_max_abs_px": _max_abs(landmarks(lm_ref)[:, pose, 2], landmarks(lm_tf)[:, pose, 2]),
            "all_values_max_abs": _max_abs(lm_ref[blazepose.LANDMARKS], lm_tf[blazepose.LANDMARKS]),
            "pose_flag_max_abs": _max_abs(lm_ref[blazepose.POSE_FLAG], lm_tf[blazepose.POSE_FLAG]),
            "heatmap_max_abs": _max_abs(lm_ref[blazepose.HEATMAP], lm_tf[blazepose.HEATMAP]),
            "mask_max_abs": mask,  # probabilities: a logit of -1500 or -1499 means the same
            "world_max_abs": _max_abs(lm_ref[WORLD], lm_tf[WORLD]),
        },
        "xy_bound_px": XY_BOUND_PX,
        "ok": xy <= XY_BOUND_PX,
    }
