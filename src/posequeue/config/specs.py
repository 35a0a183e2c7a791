"""Model spec files (TOML): a user's own model, or the bundled one on another runtime.

A spec names the model, its runtime and its stages; paths are relative to the spec file. Every
host that submits to or serves a model reads the same spec files (POSEQUEUE_MODEL_SPECS).
docs/models.md describes the format; docs/examples/anymotion.toml is a worked example.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import tomli_w
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo

from posequeue.config.catalogue import (
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


# -- the file's schema (pydantic): every table refuses unknown fields ---------------------------
def _one_of(allowed: tuple[str, ...]) -> AfterValidator:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
        return value

    return AfterValidator(check)


def _queue_name(value: str) -> str:
    if not NAME.match(value) or value == INGEST:
        raise ValueError(
            f"{value!r} cannot name queues and workers: use {NAME_RULE}"
            + (" (ingest is the producers' queue)" if value == INGEST else "")
        )
    return value


QueueName = Annotated[StrictStr, AfterValidator(_queue_name), Field(description=f"a name ({NAME_RULE})")]
Channels = Annotated[
    tuple[StrictFloat, StrictFloat, StrictFloat], Field(description="three numbers, one per channel")
]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PreprocessTable(_Table):
    """``[stages.preprocess]``: see :class:`posequeue.config.catalogue.Preprocess`."""

    resize: Annotated[str, _one_of(("stretch", "letterbox"))] = Preprocess.resize
    scale: Annotated[StrictFloat, Field(description="a number")] = Preprocess.scale
    mean: Channels = Preprocess.mean
    std: Channels = Preprocess.std
    channels: Annotated[str, _one_of(("rgb", "bgr"))] = Preprocess.channels

    @field_validator("std")
    @classmethod
    def _no_zero(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if 0 in value:
            raise ValueError("three numbers, one per channel (std not 0)")
        return value


class CoordsTable(_Table):
    """``[stages.coords]``: see :class:`posequeue.config.catalogue.Coords`."""

    output: Annotated[StrictStr, Field(description="an output name")] = Coords.output
    convention: Annotated[str, _one_of(("normalized", "pixels"))] = Coords.convention
    order: Annotated[str, _one_of(("xy", "yx"))] = Coords.order
    min_score: Annotated[StrictFloat, Field(description="a number")] = Coords.min_score


class StageTable(_Table):
    """One ``[[stages]]`` table."""

    name: QueueName
    kind: Annotated[str, _one_of(STAGE_KINDS)] = "keypoints"
    path: Annotated[StrictStr, Field(min_length=1, description="a model file or folder")]
    input: Annotated[StrictStr, Field(description="an input name")] = ""
    shape: Any = Field(description="[batch, height, width, 3]")
    outputs: Annotated[list[StrictStr], Field(description="a list of output names")] = []
    dtype: Annotated[str, _one_of(("float32", "uint8"))] = "float32"
    compiled_batch: Annotated[StrictInt, Field(ge=1, description="a positive integer")] = 1
    # A neuron model takes its compiled batch only, unless compiled with dynamic batching
    # (tensorflow-neuron's default is off); a CPU runtime's model takes any batch. None: the
    # runtime's default.
    dynamic_batch: Annotated[StrictBool | None, Field(description="true or false")] = None
    payload: Annotated[str, _one_of(("frames", "crops"))] = "frames"
    preprocess: Annotated[PreprocessTable, Field(description="a [stages.preprocess] table")] = (
        PreprocessTable()
    )
    coords: Annotated[CoordsTable, Field(description="a [stages.coords] table")] = CoordsTable()

    @field_validator("shape")
    @classmethod
    def _nhwc(cls, shape: Any) -> list[int]:
        if not (
            isinstance(shape, list)
            and len(shape) == 4
            and shape[3] == 3
            and all(isinstance(d, int) and d > 0 for d in shape[1:3])
        ):
            raise ValueError(
                f"{shape!r} is not [batch, height, width, 3] (NHWC, batch -1 for any; height and width fixed)"
            )
        return shape

    def to_stage(self, runtime: str) -> StageSpec:
        return StageSpec(
            name=self.name,
            file=self.path,
            input_size=(self.shape[1], self.shape[2]),
            kind=self.kind,
            input=self.input,
            outputs=tuple(self.outputs),
            dtype=self.dtype,
            compiled_batch=self.compiled_batch,
            dynamic_batch=runtime != "neuron" if self.dynamic_batch is None else self.dynamic_batch,
            payload=self.payload,
            preprocess=Preprocess(**self.preprocess.model_dump()),
            coords=Coords(**self.coords.model_dump()),
        )

    @classmethod
    def of(cls, stage: StageSpec) -> StageTable:
        return cls(
            name=stage.name,
            kind=stage.kind,
            path=stage.file,
            input=stage.input,
            shape=[-1, *stage.input_size, 3],
            outputs=list(stage.outputs),
            dtype=stage.dtype,
            compiled_batch=stage.compiled_batch,
            dynamic_batch=stage.dynamic_batch,
            payload=stage.payload,
            preprocess=PreprocessTable(**asdict(stage.preprocess)),
            coords=CoordsTable(**asdict(stage.coords)),
        )


class SpecFile(_Table):
    """A model spec file."""

    name: QueueName
    runtime: Annotated[str, _one_of(RUNTIMES)] = "tflite"
    keypoints: Any = Field(description='a known set ("coco", "blazepose") or a list of names')
    edges: Annotated[
        list[tuple[StrictInt, StrictInt]] | None,
        Field(description="a list of [from, to] keypoint index pairs"),
    ] = None
    stages: Annotated[list[StageTable], Field(min_length=1, description="one or more [[stages]] tables")]

    @field_validator("keypoints")
    @classmethod
    def _keypoints(cls, value: Any) -> str | list[str]:
        if isinstance(value, str):
            if value not in KEYPOINT_SETS:
                raise ValueError(
                    f"unknown set {value!r}; known: {', '.join(KEYPOINT_SETS)}, or a list of names"
                )
            return value
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return value
        raise ValueError('give a known set ("coco", "blazepose") or a list of names')

    @field_validator("edges")
    @classmethod
    def _edges(
        cls, edges: list[tuple[int, int]] | None, info: ValidationInfo
    ) -> list[tuple[int, int]] | None:
        keypoints = info.data.get("keypoints")
        count = len(KEYPOINT_SETS[keypoints][0] if isinstance(keypoints, str) else keypoints or ())
        if edges and count and any(not (0 <= i < count) for pair in edges for i in pair):
            raise ValueError(f"indices must be in 0..{count - 1}")
        return edges

    @field_validator("stages")
    @classmethod
    def _distinct(cls, stages: list[StageTable]) -> list[StageTable]:
        if len({s.name for s in stages}) != len(stages):
            raise ValueError("stage names must differ")
        return stages

    def to_spec(self, path: Path) -> ModelSpec:
        if isinstance(self.keypoints, str):
            names, edges = KEYPOINT_SETS[self.keypoints]
        else:
            names, edges = tuple(self.keypoints), ()
        return ModelSpec(
            name=self.name,
            runtime=self.runtime,
            stages=tuple(s.to_stage(self.runtime) for s in self.stages),
            keypoints=names,
            edges=edges if self.edges is None else tuple(self.edges),
            folder=path.parent.resolve(),
            source=str(path),
        )

    @classmethod
    def of(cls, spec: ModelSpec) -> SpecFile:
        known = next((name for name, (kps, _) in KEYPOINT_SETS.items() if kps == spec.keypoints), None)
        edges = None if known and KEYPOINT_SETS[known][1] == spec.edges else [list(e) for e in spec.edges]
        return cls(
            name=spec.name,
            runtime=spec.runtime,
            keypoints=known or list(spec.keypoints),
            edges=edges,
            stages=[StageTable.of(s) for s in spec.stages],
        )


def load_spec(path: Path) -> ModelSpec:
    """Read and check one spec file."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise SpecError(f"model spec {path}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"model spec {path}: not valid TOML ({exc})") from None
    try:
        return SpecFile.model_validate(data).to_spec(path)
    except ValidationError as exc:
        problems = _problems(exc, data)
        raise SpecError(f"model spec {path}: " + "\n  ".join(problems)) from None


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
    return tomli_w.dumps(SpecFile.of(spec).model_dump(exclude_defaults=True))


# -- errors: pydantic's, said the way the rest of posequeue says them --------------------------
_TABLES: dict[str | None, type[BaseModel]] = {
    None: SpecFile,
    "stages": StageTable,
    "preprocess": PreprocessTable,
    "coords": CoordsTable,
}


def _problems(exc: ValidationError, data: dict[str, Any]) -> list[str]:
    """One line per problem: where it is (the file, a stage by name, a field) and the fix."""
    unknown: dict[tuple[Any, ...], list[str]] = {}
    lines: list[str] = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        if error["type"] == "extra_forbidden":
            unknown.setdefault(loc[:-1], []).append(str(loc[-1]))
            continue
        field, at = _field(loc)  # an item's error (mean[1], edges[0]) is said of its whole field
        if error["type"] == "value_error":
            message = str(error.get("ctx", {}).get("error"))
        elif error["type"] == "missing" and at == loc:
            at, message = loc[:-1], f"{loc[-1]!r} is required"
        elif field is not None and field.description:
            message = f"{_value(data, at)!r} is not {field.description}"
        else:
            message = error["msg"]
        line = f"{_where(at, data)}: {message}"
        if line not in lines:
            lines.append(line)
    for parent, names in unknown.items():
        known = ", ".join(sorted(_table(parent).model_fields))
        lines.append(f"{_where(parent, data)}: unknown field(s) {', '.join(sorted(names))}; known: {known}")
    return lines


def _value(data: Any, loc: tuple[Any, ...]) -> Any:
    """The value the file gives at ``loc``."""
    for part in loc:
        data = data[part]
    return data


def _field(loc: tuple[Any, ...]) -> tuple[FieldInfo | None, tuple[Any, ...]]:
    """The field an error's ``loc`` is in, and that field's own loc: ('stages', 0, 'preprocess',
    'mean', 1) is in [stages.preprocess]'s ``mean``; parts past a field (item indices, a union's
    member) are dropped."""
    table: type[BaseModel] = SpecFile
    field, end, i = None, 0, 0
    while i < len(loc) and isinstance(loc[i], str) and loc[i] in table.model_fields:
        field, end = table.model_fields[loc[i]], i + 1
        inner = _TABLES.get(loc[i])
        step = 2 if loc[i] == "stages" else 1  # [[stages]] is a list of tables
        if inner is None or i + step >= len(loc) or (step == 2 and not isinstance(loc[i + 1], int)):
            break
        table, i = inner, i + step
    return field, loc[:end]


def _table(loc: tuple[Any, ...]) -> type[BaseModel]:
    """The table class at ``loc`` (e.g. ('stages', 0, 'coords'))."""
    names = [part for part in loc if isinstance(part, str)]
    return _TABLES[names[-1] if names else None]


def _where(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    """``('stages', 0, 'coords', 'order')`` as "stage 'pose' coords order" ("the file" for
    the top level); a stage without a usable name is "stages[0]"."""
    if not loc:
        return "the file"
    parts: list[str] = []
    rest = list(loc)
    if rest[0] == "stages" and len(rest) > 1 and isinstance(rest[1], int):
        raw = data.get("stages")
        stage = raw[rest[1]] if isinstance(raw, list) and rest[1] < len(raw) else None
        name = stage.get("name") if isinstance(stage, dict) else None
        parts.append(
            f"stage {name!r}" if isinstance(name, str) and NAME.match(name) else f"stages[{rest[1]}]"
        )
        rest = rest[2:]
    parts += [str(p) for p in rest]
    return " ".join(parts)
