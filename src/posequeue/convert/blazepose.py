"""The bundled BlazePose pair as SavedModels, and the model spec that runs them on the
``tensorflow`` runtime: ``DIR/detector``, ``DIR/landmarks``, ``DIR/blazepose-tf.toml``."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from posequeue.convert import ConvertError, import_tensorflow, savedmodel, tflite
from posequeue.worker import blazepose, detector

SPEC_NAME = "blazepose-tf"
SPEC_FILE = f"{SPEC_NAME}.toml"


@dataclass(frozen=True)
class Stage:
    """One BlazePose stage: its file, the stage code that runs it and the outputs that code reads."""

    name: str
    file: str
    kind: str
    outputs: tuple[str, ...]
    payload: str = "frames"


STAGES = (
    Stage("detector", "pose_detection.tflite", "blazepose-detector", (detector.BOXES, detector.SCORES)),
    Stage(
        "landmarks",
        "pose_landmark_full.tflite",
        "blazepose-landmarks",
        (blazepose.LANDMARKS, blazepose.POSE_FLAG, blazepose.HEATMAP),
        payload="crops",
    ),
)


@dataclass(frozen=True)
class Converted:
    """A stage's SavedModel and what it took."""

    stage: Stage
    folder: Path
    input: str  # the serving signature's input key (the TFLite input's name)
    shape: tuple[int, ...]  # -1 for the free batch dimension
    seconds: float
    bytes: int


def convert(model_dir: Path, out: Path) -> list[Converted]:
    """Convert both stages from ``model_dir`` into ``out``; then write the spec next to them."""
    import_tensorflow()  # fail before any work, and keep its import out of the timings
    if out.exists() and not out.is_dir():
        raise ConvertError(f"{out} is a file; -o takes a folder (created if missing)")
    out.mkdir(parents=True, exist_ok=True)
    done = [_convert(stage, model_dir / stage.file, out / stage.name) for stage in STAGES]
    (out / SPEC_FILE).write_text(spec_text(done))
    return done


def _convert(stage: Stage, source: Path, folder: Path) -> Converted:
    start = time.perf_counter()
    graph = tflite.read(source)
    names = {graph.name(i) for i in graph.outputs}
    missing = [name for name in stage.outputs if name not in names]
    if missing:
        raise ConvertError(
            f"{source.name} has no output {', '.join(missing)} (its outputs: "
            f"{', '.join(sorted(names))}); the {stage.kind} stage reads them"
        )
    if folder.exists() and any(folder.iterdir()) and not (folder / "saved_model.pb").is_file():
        raise ConvertError(
            f"{folder} exists and is not a SavedModel; remove it or convert into another folder (-o)"
        )
    scratch = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(scratch, ignore_errors=True)
    savedmodel.save(graph, scratch)
    shutil.rmtree(folder, ignore_errors=True)  # a SavedModel from an earlier run
    scratch.rename(folder)
    source_tensor = graph.tensors[graph.inputs[0]]
    return Converted(
        stage,
        folder,
        source_tensor.name,
        (-1, *source_tensor.shape[1:]),
        time.perf_counter() - start,
        savedmodel.size(folder),
    )


def spec_text(converted: list[Converted]) -> str:
    """The model spec for the converted stages (the format config/specs.py reads); stage paths
    are the SavedModel folders, relative to the spec file."""
    import tomli_w

    stages: list[dict[str, object]] = []
    for c in converted:
        stage: dict[str, object] = {
            "name": c.stage.name,
            "kind": c.stage.kind,
            "path": c.folder.name,
            "input": c.input,
            "shape": list(c.shape),
            "outputs": list(c.stage.outputs),
        }
        if c.stage.payload != "frames":
            stage["payload"] = c.stage.payload
        stages.append(stage)
    head = f"# posequeue submit --model {SPEC_NAME}; paths are SavedModel folders relative to this file\n"
    spec = {"name": SPEC_NAME, "runtime": "tensorflow", "keypoints": "blazepose", "stages": stages}
    return head + tomli_w.dumps(spec)
