"""The model catalogue: which models exist, their stages, input sizes and keypoints."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from posequeue.errors import UnknownModelError

BLAZEPOSE_KEYPOINTS = (
    "nose",
    "left_eye_inner",
    "left_eye",
    "left_eye_outer",
    "right_eye_inner",
    "right_eye",
    "right_eye_outer",
    "left_ear",
    "right_ear",
    "mouth_left",
    "mouth_right",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_pinky",
    "right_pinky",
    "left_index",
    "right_index",
    "left_thumb",
    "right_thumb",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "left_heel",
    "right_heel",
    "left_foot_index",
    "right_foot_index",
)

# Pairs of keypoint indices joined in a skeleton drawing (MediaPipe's POSE_CONNECTIONS).
BLAZEPOSE_EDGES = (
    (0, 1),
    (1, 2),
    (2, 3),
    (3, 7),
    (0, 4),
    (4, 5),
    (5, 6),
    (6, 8),
    (9, 10),
    (11, 12),
    (11, 13),
    (13, 15),
    (15, 17),
    (15, 19),
    (15, 21),
    (17, 19),
    (12, 14),
    (14, 16),
    (16, 18),
    (16, 20),
    (16, 22),
    (18, 20),
    (11, 23),
    (12, 24),
    (23, 24),
    (23, 25),
    (24, 26),
    (25, 27),
    (26, 28),
    (27, 29),
    (28, 30),
    (29, 31),
    (30, 32),
    (27, 31),
    (28, 32),
)


# COCO's 17 keypoints, the layout of most top-down pose models (input 256x192 is its usual size).
COCO_KEYPOINTS = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
COCO_EDGES = (
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 4),
    (5, 6),
    (5, 7),
    (7, 9),
    (6, 8),
    (8, 10),
    (5, 11),
    (6, 12),
    (11, 12),
    (11, 13),
    (13, 15),
    (12, 14),
    (14, 16),
)
KEYPOINT_SETS = {"blazepose": (BLAZEPOSE_KEYPOINTS, BLAZEPOSE_EDGES), "coco": (COCO_KEYPOINTS, COCO_EDGES)}

RUNTIMES = ("tflite", "tensorflow", "neuron")
STAGE_KINDS = ("blazepose-detector", "blazepose-landmarks", "keypoints")


@dataclass(frozen=True)
class Preprocess:
    """How a ``keypoints`` stage turns an RGB uint8 frame into its input:
    resize, then ``(pixel * scale - mean) / std`` per channel, in ``channels`` order."""

    resize: str = "stretch"  # "stretch" (aspect not kept) or "letterbox" (black bars, centred)
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    channels: str = "rgb"  # or "bgr"


@dataclass(frozen=True)
class Coords:
    """Where a ``keypoints`` stage's output keeps the keypoints: (batch, keypoints, 2 or 3)
    with x, y (or y, x) and an optional score, in 0..1 of the input or in its pixels."""

    output: str = "coords"
    convention: str = "normalized"  # "normalized" (0..1 of the input) or "pixels" (of the input)
    order: str = "xy"  # or "yx"
    min_score: float = 0.0  # a frame whose mean keypoint score is below this has nobody in it


@dataclass(frozen=True)
class StageSpec:
    """One model stage: its own queue, its own workers and core groups."""

    name: str
    file: str  # model file or SavedModel folder, relative to the model's folder (or an s3:// URI)
    input_size: tuple[int, int]  # (height, width) of the model input
    kind: str = "keypoints"  # which stage code runs it (STAGE_KINDS)
    input: str = ""  # the input's name in the model's signature ("": its only input)
    outputs: tuple[str, ...] = ()  # outputs to read ("": the stage code's own)
    dtype: str = "float32"  # the input's type: float32, or uint8 (no scaling then)
    # Batches are split into (or, with dynamic batching, padded up to a multiple of) this size:
    # a model compiled for Inferentia runs only the batch size it was compiled for.
    compiled_batch: int = 1
    dynamic_batch: bool = True
    payload: str = "frames"  # what the stage reads from the batch: "frames" or "crops"
    preprocess: Preprocess = Preprocess()
    coords: Coords = Coords()


@dataclass(frozen=True)
class ModelSpec:
    """A pose model as the fleet knows it."""

    name: str
    runtime: str
    stages: tuple[StageSpec, ...]
    keypoints: tuple[str, ...]
    edges: tuple[tuple[int, int], ...] = ()
    folder: Path | None = None  # where its files are; None: the bundled BlazePose files
    source: str = "built in"  # the spec file it came from, for messages

    @property
    def first_stage(self) -> StageSpec:
        return self.stages[0]

    def work_long_side(self, width: int, height: int, limit: int) -> int:
        """The long side a ``width`` x ``height`` displayed video's frames travel at: at most
        ``limit``, and for a model that takes the whole frame no more than its input uses (a
        1080p frame for a 256x192 input would carry ~8x the bytes through Redis for nothing).
        BlazePose crops people out of the frame, so its frames keep their detail."""
        stage = self.first_stage
        if stage.kind != "keypoints":
            return limit
        (in_h, in_w), fit = stage.input_size, max if stage.preprocess.resize == "stretch" else min
        return max(16, min(limit, math.ceil(max(width, height) * fit(in_w / width, in_h / height))))

    @property
    def max_people(self) -> int | None:
        """People per frame the model can find: any number (None) with a person detector,
        one for a model that takes the whole frame."""
        return None if self.first_stage.kind == "blazepose-detector" else 1

    @property
    def no_video_mode(self) -> str | None:
        """Why the model cannot run in video mode (``worker/video_mode.py``), None when it can:
        BlazePose's detector then landmark stages, each run one frame at a time, which a model
        compiled for larger batches would pad to its batch on every call."""
        kinds = tuple(s.kind for s in self.stages[:2])
        if kinds != ("blazepose-detector", "blazepose-landmarks"):
            return (
                f"model {self.name} has no person detector followed by a landmark stage to follow people with"
            )
        if any(s.compiled_batch > 1 for s in self.stages[:2]):
            return (
                f"model {self.name} is compiled for batches of more than one frame, and video mode runs "
                "one frame at a time (each call would be padded to a whole batch)"
            )
        return None

    def next_stage(self, name: str) -> StageSpec | None:
        names = [s.name for s in self.stages]
        i = names.index(self.stage(name).name)
        return self.stages[i + 1] if i + 1 < len(self.stages) else None

    def stage(self, name: str) -> StageSpec:
        for stage in self.stages:
            if stage.name == name:
                return stage
        known = ", ".join(s.name for s in self.stages)
        raise UnknownModelError(f"model {self.name!r} has no stage {name!r}; its stages: {known}")


CATALOGUE: dict[str, ModelSpec] = {
    "blazepose": ModelSpec(
        name="blazepose",
        runtime="tflite",
        # MediaPipe's layout: a person detector finds the body's region, the landmark model runs
        # on that region's upright square crop. Each stage has its own queue and core groups.
        stages=(
            StageSpec("detector", "pose_detection.tflite", (224, 224), kind="blazepose-detector"),
            StageSpec(
                "landmarks",
                "pose_landmark_full.tflite",
                (256, 256),
                kind="blazepose-landmarks",
                payload="crops",
            ),
        ),
        keypoints=BLAZEPOSE_KEYPOINTS,
        edges=BLAZEPOSE_EDGES,
    ),
}


def all_models() -> dict[str, ModelSpec]:
    """The built-in models and those of the spec files in POSEQUEUE_MODEL_SPECS."""
    from posequeue.config.settings import get_settings
    from posequeue.config.specs import user_models

    return {**CATALOGUE, **user_models(get_settings().model_specs)}


def get_model(name: str) -> ModelSpec:
    """Look a model up by name; the error lists the known ones."""
    if name in CATALOGUE:  # no spec files read for the built-in models
        return CATALOGUE[name]
    models = all_models()
    try:
        return models[name]
    except KeyError:
        known = ", ".join(sorted(models))
        raise UnknownModelError(
            f"unknown model {name!r}; known models: {known} (a model of your "
            "own needs a spec file in POSEQUEUE_MODEL_SPECS)"
        ) from None
