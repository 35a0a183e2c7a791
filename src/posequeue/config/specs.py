"""Model spec files (TOML): a user's own model, or the bundled one on another runtime.

A spec names the model, its runtime and its stages; paths are relative to the spec file. Every
host that submits to or serves a model reads the same spec files (POSEQUEUE_MODEL_SPECS).
docs/models.md describes the format; docs/examples/anymotion.toml is a worked example.
"""

from __future__ import annotations

import os
import sys
from dataclasses import fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from posequeue.config.models import (
    CATALOGUE,
    KEYPOINT_SETS,
    RUNTIMES,
    STAGE_KINDS,
    Coords,
    ModelSpec,
    Preprocess,
    StageSpec,
)
from posequeue.config.queues import INGEST, NAME, NAME_RULE
from posequeue.errors import SpecError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10, where tensorflow-neuron for inf1 runs
    import tomli as tomllib

MODEL_KEYS = {"name", "runtime", "keypoints", "edges", "stages"}
STAGE_KEYS = {
    "name",
    "kind",
    "path",
    "input",
    "shape",
    "dtype",
    "outputs",
    "compiled_batch",
    "dynamic_batch",
    "payload",
    "preprocess",
    "coords",
}


def load_spec(path: Path) -> ModelSpec:
    """Read and check one spec file."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise SpecError(f"model spec {path}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"model spec {path}: not valid TOML ({exc})") from None
    return _Reader(path).model(data)


def spec_files(setting: str) -> list[Path]:
    """The spec files a POSEQUEUE_MODEL_SPECS value names: files, or folders of ``*.toml``,
    separated by ``os.pathsep`` (':')."""
    files: list[Path] = []
    for item in filter(None, setting.split(os.pathsep)):
        path = Path(item).expanduser()
        if path.is_dir():
            files.extend(sorted(path.glob("*.toml")))
        elif path.is_file():
            files.append(path)
        else:
            raise SpecError(f"POSEQUEUE_MODEL_SPECS names {path}, which does not exist")
    return files


@lru_cache(maxsize=4)
def user_models(setting: str) -> dict[str, ModelSpec]:
    """The models of the spec files in ``setting`` by name (read once per process)."""
    models: dict[str, ModelSpec] = {}
    for path in spec_files(setting):
        spec = load_spec(path)
        if spec.name in CATALOGUE or spec.name in models:
            other = CATALOGUE[spec.name].source if spec.name in CATALOGUE else models[spec.name].source
            raise SpecError(f"model spec {path}: the name {spec.name!r} is taken ({other}); rename it")
        models[spec.name] = spec
    return models


def dump_spec(spec: ModelSpec) -> str:
    """The spec as TOML (paths as they are in the spec: relative to its file)."""
    keypoints = next((name for name, (kps, _) in KEYPOINT_SETS.items() if kps == spec.keypoints), None)
    lines = [
        f"name = {_toml(spec.name)}",
        f"runtime = {_toml(spec.runtime)}",
        f"keypoints = {_toml(keypoints or list(spec.keypoints))}",
    ]
    if keypoints is None or KEYPOINT_SETS[keypoints][1] != spec.edges:
        lines.append(f"edges = {_toml([list(e) for e in spec.edges])}")
    for stage in spec.stages:
        lines += [
            "",
            "[[stages]]",
            f"name = {_toml(stage.name)}",
            f"kind = {_toml(stage.kind)}",
            f"path = {_toml(stage.file)}",
            f"shape = {_toml([-1, *stage.input_size, 3])}",
        ]
        for key in ("input", "outputs", "dtype", "compiled_batch", "dynamic_batch", "payload"):
            value = getattr(stage, key)
            if value != getattr(_DEFAULT_STAGE, key) or key == "dynamic_batch" and spec.runtime == "neuron":
                lines.append(f"{key} = {_toml(list(value) if isinstance(value, tuple) else value)}")
        if stage.kind == "keypoints":
            for table, obj in (("preprocess", stage.preprocess), ("coords", stage.coords)):
                lines.append(f"[stages.{table}]")
                lines += [f"{f.name} = {_toml(_plain(getattr(obj, f.name)))}" for f in fields(obj)]
    return "\n".join(lines) + "\n"


_DEFAULT_STAGE = StageSpec("", "", (0, 0))


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


class _Reader:
    """Turns a spec file's data into a ModelSpec; every error names the file and the field."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, message: str) -> SpecError:
        return SpecError(f"model spec {self.path}: {where}: {message}")

    def model(self, data: dict[str, Any]) -> ModelSpec:
        self.unknown(data, MODEL_KEYS, "the file")
        name = self.name(self.required(data, "name", str, "the file"), "name")
        runtime = self.choice(data.get("runtime", "tflite"), RUNTIMES, "runtime")
        keypoints, edges = self.keypoints(data.get("keypoints"), data.get("edges"))
        raw = data.get("stages")
        if not isinstance(raw, list) or not raw:
            raise self.fail("stages", "at least one [[stages]] table is needed")
        stages = tuple(self.stage(s, i, runtime) for i, s in enumerate(raw))
        if len({s.name for s in stages}) != len(stages):
            raise self.fail("stages", "stage names must differ")
        return ModelSpec(
            name=name,
            runtime=runtime,
            stages=stages,
            keypoints=keypoints,
            edges=edges,
            folder=self.path.parent.resolve(),
            source=str(self.path),
        )

    def keypoints(self, value: Any, edges: Any) -> tuple[tuple[str, ...], tuple[tuple[int, int], ...]]:
        if isinstance(value, str):
            if value not in KEYPOINT_SETS:
                raise self.fail(
                    "keypoints",
                    f"unknown set {value!r}; known: {', '.join(KEYPOINT_SETS)}, or a list of names",
                )
            names, known_edges = KEYPOINT_SETS[value]
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            names, known_edges = tuple(value), ()
        else:
            raise self.fail("keypoints", 'give a known set ("coco", "blazepose") or a list of names')
        if edges is None:
            return names, known_edges
        try:
            pairs = tuple((int(a), int(b)) for a, b in edges)
        except (TypeError, ValueError):
            raise self.fail("edges", "a list of [from, to] keypoint index pairs") from None
        if any(not (0 <= i < len(names)) for pair in pairs for i in pair):
            raise self.fail("edges", f"indices must be in 0..{len(names) - 1}")
        return names, pairs

    def stage(self, data: Any, i: int, runtime: str) -> StageSpec:
        where = f"stages[{i}]"
        if not isinstance(data, dict):
            raise self.fail(where, "must be a table")
        self.unknown(data, STAGE_KEYS, where)
        name = self.name(self.required(data, "name", str, where), f"{where} name")
        where = f"stage {name!r}"
        kind = self.choice(data.get("kind", "keypoints"), STAGE_KINDS, f"{where} kind")
        path = self.required(data, "path", str, where)
        shape = data.get("shape")
        if not (
            isinstance(shape, list)
            and len(shape) == 4
            and shape[3] == 3
            and all(isinstance(d, int) and d > 0 for d in shape[1:3])
        ):
            raise self.fail(
                f"{where} shape",
                f"{shape!r} is not [batch, height, width, 3] (NHWC, batch "
                "-1 for any; height and width fixed)",
            )
        outputs = data.get("outputs", [])
        if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
            raise self.fail(f"{where} outputs", "a list of output names")
        batch = data.get("compiled_batch", 1)
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
            raise self.fail(f"{where} compiled_batch", f"{batch!r} is not a positive integer")
        # A neuron model takes its compiled batch only, unless compiled with dynamic batching
        # (tensorflow-neuron's default is off); a CPU runtime's model takes any batch.
        dynamic = data.get("dynamic_batch", runtime != "neuron")
        if not isinstance(dynamic, bool):
            raise self.fail(f"{where} dynamic_batch", f"{dynamic!r} is not true or false")
        return StageSpec(
            name=name,
            file=path,
            input_size=(shape[1], shape[2]),
            kind=kind,
            input=str(data.get("input", "")),
            outputs=tuple(outputs),
            dtype=self.choice(data.get("dtype", "float32"), ("float32", "uint8"), f"{where} dtype"),
            compiled_batch=batch,
            dynamic_batch=dynamic,
            payload=self.choice(data.get("payload", "frames"), ("frames", "crops"), f"{where} payload"),
            preprocess=self.table(data.get("preprocess", {}), Preprocess, f"{where} preprocess"),
            coords=self.table(data.get("coords", {}), Coords, f"{where} coords"),
        )

    def table(self, data: Any, cls: type, where: str) -> Any:
        if not isinstance(data, dict):
            raise self.fail(where, "must be a table")
        known = {f.name: f for f in fields(cls)}
        self.unknown(data, set(known), where)
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        for key in ("mean", "std"):
            if key in values and (len(values[key]) != 3 or (key == "std" and 0 in values[key])):
                raise self.fail(f"{where} {key}", "three numbers, one per channel (std not 0)")
        choices = {
            "resize": ("stretch", "letterbox"),
            "channels": ("rgb", "bgr"),
            "convention": ("normalized", "pixels"),
            "order": ("xy", "yx"),
        }
        for key, allowed in choices.items():
            if key in values:
                self.choice(values[key], allowed, f"{where} {key}")
        return cls(**values)

    def name(self, value: str, where: str) -> str:
        if not NAME.match(value) or value == INGEST:
            raise self.fail(
                where,
                f"{value!r} cannot name queues and workers: use {NAME_RULE}"
                + (" (ingest is the producers' queue)" if value == INGEST else ""),
            )
        return value

    def unknown(self, data: dict[str, Any], known: set[str], where: str) -> None:
        extra = sorted(set(data) - known)
        if extra:
            raise self.fail(where, f"unknown field(s) {', '.join(extra)}; known: {', '.join(sorted(known))}")

    def required(self, data: dict[str, Any], key: str, kind: type, where: str) -> Any:
        value = data.get(key)
        if not isinstance(value, kind) or not value:
            raise self.fail(where, f"{key!r} is required")
        return value

    def choice(self, value: Any, allowed: tuple[str, ...], where: str) -> str:
        if value not in allowed:
            raise self.fail(where, f"{value!r} is not one of {', '.join(allowed)}")
        return str(value)
