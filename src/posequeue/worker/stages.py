"""Model stages, loaded once per worker process: each turns a batch's payload into either the
payload of the next stage or the frames' people."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from posequeue.config.catalogue import ModelSpec, StageSpec, get_model
from posequeue.config.schemas import BatchMeta
from posequeue.config.settings import get_settings
from posequeue.errors import ModelOutputError
from posequeue.logs import get_logger
from posequeue.payload.codec import Payload
from posequeue.worker import blazepose, detector, keypoints, video_mode
from posequeue.worker.model_cache import stage_path
from posequeue.worker.pinning import cpu_threads
from posequeue.worker.runtimes import Runtime, make_runtime

log = get_logger(__name__)

# One model call at a time per process, whatever the stage: a worker's task threads share its
# runtimes (the tflite interpreter is not thread-safe), and its cores (or NeuronCore group) run
# one model at a time anyway. The runtimes release the GIL, so the other thread's Redis I/O,
# pre- and post-processing run meanwhile.
_RUN_LOCK = threading.Lock()
_LOAD_LOCK = threading.Lock()


@dataclass
class StageResult:
    """Either a payload for the next stage, or (last stage, or nobody found) people per frame."""

    payload: dict[str, bytes] = field(default_factory=dict)
    people: list[list[dict[str, Any]]] | None = None
    model_seconds: float = 0.0


class Stage:
    """One stage of one model with its runtime."""

    outputs: tuple[str, ...] = ()

    def __init__(self, spec: ModelSpec, stage: StageSpec) -> None:
        settings = get_settings()
        self.spec, self.stage = spec, stage
        path = stage_path(spec, stage, settings.cache_dir, settings.model_dir)
        self.runtime: Runtime = make_runtime(
            spec.runtime,
            path,
            cpu_threads(),
            self.outputs or stage.outputs,
            stage.input,
            stage.compiled_batch,
            stage.dynamic_batch,
        )

    def run(self, fields: dict[str, Any], meta: BatchMeta) -> StageResult:
        raise NotImplementedError

    def infer(self, batch: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
        """The runtime's outputs and its seconds (time spent waiting for the lock not counted)."""
        with _RUN_LOCK:
            started = time.perf_counter()
            outputs = self.runtime.run(batch)
            return outputs, time.perf_counter() - started


def _payload(fields: dict[str, Any], meta: BatchMeta) -> Payload:
    return Payload(fields["frames"], meta.payload, len(meta.frames), meta.work)


class DetectorStage(Stage):
    outputs = (detector.BOXES, detector.SCORES)

    def run(self, fields: dict[str, Any], meta: BatchMeta) -> StageResult:
        pixels = _payload(fields, meta)
        boxed = pixels.detector_input()
        if boxed is None:  # frames only: letterbox them here
            boxed = blazepose.letterboxed(pixels.frames())
        outputs, elapsed = self.infer(blazepose.detector_batch(boxed))
        pads = [blazepose.letterbox_pads(*meta.work)] * len(boxed)
        rois = blazepose.regions(outputs, pads, meta.display, keep=meta.people)
        if not any(rois):  # nobody in any frame: the batch ends here (and its JPEGs stay undecoded)
            return StageResult(people=[[] for _ in rois], model_seconds=elapsed)
        # Every region's crop stacked in frame order; the regions, one list per frame, say
        # which frame each crop belongs to.
        crops = blazepose.crops(pixels.frames(), rois)
        payload = {"crops": crops.tobytes(), "rois": blazepose.encode_rois(rois)}
        return StageResult(payload=payload, model_seconds=elapsed)


class LandmarkStage(Stage):
    outputs = (blazepose.LANDMARKS, blazepose.POSE_FLAG, blazepose.HEATMAP)

    def run(self, fields: dict[str, Any], meta: BatchMeta) -> StageResult:
        rois = blazepose.decode_rois(fields["rois"])
        size = blazepose.CROP_SIZE
        crops = np.frombuffer(fields["crops"], np.uint8).reshape(-1, size, size, 3)
        outputs, elapsed = self.infer(blazepose.landmark_input(crops))
        return StageResult(people=blazepose.people(outputs, rois, meta.display), model_seconds=elapsed)


class KeypointStage(Stage):
    """A user's model: frames in, one person's keypoints per frame out."""

    def __init__(self, spec: ModelSpec, stage: StageSpec) -> None:
        outputs = stage.outputs or (stage.coords.output,)
        if stage.coords.output not in outputs:
            raise ModelOutputError(
                f"model {spec.name!r} stage {stage.name!r}: coords output "
                f"{stage.coords.output!r} is not among its outputs {outputs}"
            )
        self.outputs = (stage.coords.output,)
        super().__init__(spec, stage)

    def run(self, fields: dict[str, Any], meta: BatchMeta) -> StageResult:
        batch, box = keypoints.model_input(_payload(fields, meta).frames(), self.stage)
        outputs, elapsed = self.infer(batch)
        people = keypoints.people(outputs, self.stage, box, meta.display, len(self.spec.keypoints))
        return StageResult(people=people, model_seconds=elapsed)


def video_mode_pair(meta: BatchMeta, stage: str, later: list[str]) -> str | None:
    """The landmark stage that runs with detector stage ``stage`` in video mode, or None where
    the batch is detected on every frame: the job did not ask for video mode, or the landmark
    stage is not in this process (a split layout: its worker sees crops only, not the frames
    to follow people in)."""
    if not meta.video_mode:
        return None
    spec = get_model(meta.model)
    if later and spec.no_video_mode is None and spec.first_stage.name == stage:
        return later[0]
    log.warning(
        "infer.no_video_mode", reason=spec.no_video_mode or "the landmark stage runs in another worker"
    )
    return None


def run_video_mode(
    stage: str, landmarks: str, fields: dict[str, Any], meta: BatchMeta
) -> video_mode.Followed:
    """Both BlazePose stages on one batch in video mode (``worker/video_mode.py``)."""
    det, lm = load(meta.model, stage), load(meta.model, landmarks)
    pixels = _payload(fields, meta)
    return video_mode.run(det, lm, pixels.frames(), pixels.detector_input(), meta)


# Stage code by the spec's ``kind``.
STAGES: dict[str, type[Stage]] = {
    "blazepose-detector": DetectorStage,
    "blazepose-landmarks": LandmarkStage,
    "keypoints": KeypointStage,
}


def load(model: str, stage: str) -> Stage:
    """The process's stage: created on first use, then reused for every batch and thread."""
    with _LOAD_LOCK:  # two task threads asking at once still load it once
        return _load(model, stage)


@lru_cache(maxsize=4)
def _load(model: str, stage: str) -> Stage:
    spec = get_model(model)
    step = spec.stage(stage)
    return STAGES[step.kind](spec, step)
