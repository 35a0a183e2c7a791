"""The model catalogue: which models exist, their stages, input sizes and keypoints."""

from __future__ import annotations

from dataclasses import dataclass

BLAZEPOSE_KEYPOINTS = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_foot_index", "right_foot_index",
)  # fmt: skip

# Pairs of keypoint indices joined in a skeleton drawing (MediaPipe's POSE_CONNECTIONS).
BLAZEPOSE_EDGES = (
    (0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10), (11, 12),
    (11, 13), (13, 15), (15, 17), (15, 19), (15, 21), (17, 19), (12, 14), (14, 16), (16, 18),
    (16, 20), (16, 22), (18, 20), (11, 23), (12, 24), (23, 24), (23, 25), (24, 26), (25, 27),
    (26, 28), (27, 29), (28, 30), (29, 31), (30, 32), (27, 31), (28, 32),
)  # fmt: skip


@dataclass(frozen=True)
class StageSpec:
    """One model stage: its own queue, its own workers and core groups."""

    name: str
    file: str  # model file name inside the model's folder
    input_size: tuple[int, int]  # (height, width) of the model input
    compiled_batch: int = 1  # batches are split into / padded up to multiples of this
    payload: str = "frames"  # what the stage reads from the batch: "frames" or "crops"


@dataclass(frozen=True)
class ModelSpec:
    """A pose model as the fleet knows it."""

    name: str
    runtime: str
    stages: tuple[StageSpec, ...]
    keypoints: tuple[str, ...]
    edges: tuple[tuple[int, int], ...] = ()

    @property
    def first_stage(self) -> StageSpec:
        return self.stages[0]

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


class UnknownModelError(ValueError):
    """A model or stage name that the catalogue does not know."""


CATALOGUE: dict[str, ModelSpec] = {
    "blazepose": ModelSpec(
        name="blazepose",
        runtime="tflite",
        # MediaPipe's layout: a person detector finds the body's region, the landmark model runs
        # on that region's upright square crop. Each stage has its own queue and core groups.
        stages=(
            StageSpec("detector", "pose_detection.tflite", (224, 224)),
            StageSpec("landmarks", "pose_landmark_full.tflite", (256, 256), payload="crops"),
        ),
        keypoints=BLAZEPOSE_KEYPOINTS,
        edges=BLAZEPOSE_EDGES,
    ),
}


def get_model(name: str) -> ModelSpec:
    """Look a model up by name; the error lists the known ones."""
    try:
        return CATALOGUE[name]
    except KeyError:
        known = ", ".join(sorted(CATALOGUE))
        raise UnknownModelError(f"unknown model {name!r}; known models: {known}") from None
