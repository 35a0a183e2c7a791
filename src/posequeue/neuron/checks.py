"""What ``posequeue compile`` checks before calling tensorflow-neuron, as a :class:`CheckedCompile`.

:func:`prepare` reads the source (a SavedModel, or a model spec's stages), each SavedModel's
serving signature, works out the example input shapes (batch first: the compiled batch size) and
the ops the ``--no-fuse`` patterns keep on the CPU, and the spec the compiled model will get. It
needs TensorFlow, not tensorflow-neuron, and refuses with a CompileError naming the thing and
the fix.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from posequeue.config.catalogue import KEYPOINT_SETS, ModelSpec, StageSpec
from posequeue.config.specs import load_spec
from posequeue.errors import CompileError
from posequeue.neuron.savedmodel import SERVING, Signature, is_savedmodel, read_signature

DEFAULT_NO_FUSE = ("coords",)  # the production team's heatmap-to-coordinates scope: kept on the CPU
TRACE, SAVED_MODEL_COMPILE = "tfn.trace", "tfn.saved_model.compile"
CONVERT_FIRST = (
    "its runtime is tflite; tensorflow-neuron compiles SavedModels: convert it first "
    "(`posequeue convert blazepose DIR` writes SavedModels and a spec with runtime "
    '"tensorflow"), then compile that spec'
)


@dataclass(frozen=True)
class Options:
    """The arguments of ``posequeue compile`` (see its --help)."""

    batch_size: int
    dynamic_batch: bool = False
    no_fuse: tuple[str, ...] = DEFAULT_NO_FUSE
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    name: str = ""  # the compiled model's name ("": the source's name + "-neuron")
    keypoints: str = "coco"  # for a bare SavedModel, which has no spec to take them from


@dataclass(frozen=True)
class StageJob:
    """One SavedModel to compile: its stage, signature, example input shapes (batch first, the
    compiled batch size) and the operations the patterns keep on the CPU."""

    stage: StageSpec
    source: Path
    signature: Signature
    input: str  # the input the worker feeds
    shapes: dict[str, tuple[int, ...]]
    fill: bool  # some input had unknown non-batch dimensions (filled from shapes)
    no_fuse_ops: tuple[str, ...]
    ops: tuple[str, ...]  # every op the compiler will see


@dataclass(frozen=True)
class CheckedCompile:
    """Everything checked: what to compile, how, and the spec to write for the result."""

    source: Path
    out: Path
    options: Options
    api: str
    jobs: tuple[StageJob, ...]
    spec: ModelSpec | None  # the compiled model's spec (stage files relative to OUT)
    notes: tuple[str, ...] = ()


def tensorflow_or_refuse() -> Any:
    """TensorFlow, or CompileError with how to install it."""
    from posequeue.worker.runtimes import ModelLoadError, import_tensorflow

    try:
        return import_tensorflow()
    except ModelLoadError as exc:
        raise CompileError(
            f"{exc}; compiling needs it too (tensorflow-neuron pins its own version)"
        ) from None


# -- checks ---------------------------------------------------------------------------------
def prepare(source: Path, out: Path, options: Options, tf: Any, api: str | None = None) -> CheckedCompile:
    """Check everything short of compiling: raises CompileError naming what is wrong."""
    if out.exists():
        raise CompileError(
            f"{out} exists; tensorflow-neuron writes a new folder: remove it or give another -o"
        )
    if options.batch_size < 1:
        raise CompileError(f"--batch-size {options.batch_size}: give a positive number of frames")
    matches = scope_matcher(options.no_fuse)
    api = api or (SAVED_MODEL_COMPILE if tf.__version__.startswith("1.") else TRACE)
    model, stages = _source_model(source)
    signatures = [read_signature(path, tf) for _, path in stages]
    _check_input_names(signatures, options)
    jobs = tuple(
        _job(tf, api, model, stage, signature, options, matches)
        for (stage, _), signature in zip(stages, signatures, strict=True)
    )
    _check_patterns(jobs, options)
    spec, notes = _compiled_spec(model, jobs, options, source)
    return CheckedCompile(source, out, options, api, jobs, spec, notes)


def scope_matcher(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    """True for an op name one of whose ``/``-separated scopes matches one of ``patterns``
    entirely (a regular expression each): ``coords`` matches ``coords/Shape`` and
    ``StatefulPartitionedCall/coords/Sum``, not ``coords_head/Conv2D``."""
    regexes = []
    for pattern in patterns:
        try:
            regexes.append(re.compile(rf"(?:^|/)(?:{pattern})(?:/|$)"))
        except re.error as exc:
            raise CompileError(f"--no-fuse {pattern!r} is not a regular expression ({exc})") from None
    return lambda name: any(r.search(name) for r in regexes)


def _source_model(source: Path) -> tuple[ModelSpec | None, list[tuple[StageSpec, Path]]]:
    if source.is_dir():
        if not is_savedmodel(source):
            raise CompileError(
                f"{source} is a folder without saved_model.pb: give a SavedModel folder or a model spec file"
            )
        stage = StageSpec("pose", str(source), (0, 0))  # input size comes from the model
        return None, [(stage, source)]
    if not source.is_file():
        raise CompileError(f"{source} does not exist; give a SavedModel folder or a model spec file")
    spec = load_spec(source)
    if spec.runtime == "tflite":
        raise CompileError(f"model spec {source}: {CONVERT_FIRST}")
    if spec.runtime == "neuron":
        raise CompileError(
            f"model spec {source}: its runtime is already neuron; compile the spec of "
            'the uncompiled model (runtime "tensorflow")'
        )
    stages = []
    for stage in spec.stages:
        if "://" in stage.file:
            raise CompileError(
                f"model spec {source}: stage {stage.name!r} is at {stage.file}; copy it "
                "to a local folder and point the spec's path there"
            )
        path = (spec.folder or source.parent) / stage.file
        if not is_savedmodel(path):
            raise CompileError(
                f"model spec {source}: stage {stage.name!r}: {path} is not a SavedModel "
                "folder (no saved_model.pb)"
            )
        stages.append((stage, path))
    return spec, stages


def _job(
    tf: Any,
    api: str,
    model: ModelSpec | None,
    stage: StageSpec,
    signature: Signature,
    options: Options,
    matches: Callable[[str], bool],
) -> StageJob:
    path = signature.path
    names = signature.input_names
    if stage.input and stage.input not in names:
        raise CompileError(
            f"stage {stage.name!r}: {path} has no input {stage.input!r}; its inputs: {', '.join(names)}"
        )
    if not stage.input and model is not None and len(names) != 1:
        raise CompileError(
            f"stage {stage.name!r}: {path} has inputs {', '.join(names)}; name the one "
            "the worker feeds with `input` in the spec"
        )
    fed = stage.input or names[0]
    spec_size = stage.input_size if model is not None else None
    shapes, fill = {}, False
    for tensor in signature.inputs:
        known = tensor.shape
        fill = fill or known is None or None in known[1:]
        shapes[tensor.name] = example_shape(
            stage.name, tensor.name, known, options, spec_size if tensor.name == fed else None
        )
    ops = tuple(_op_names(tf, api, signature, shapes))
    return StageJob(stage, path, signature, fed, shapes, fill, tuple(op for op in ops if matches(op)), ops)


def example_shape(
    stage: str,
    name: str,
    known: tuple[int | None, ...] | None,
    options: Options,
    spec_size: tuple[int, int] | None = None,
) -> tuple[int, ...]:
    """The shape of input ``name``'s example batch: the model's own, the compiled batch size first,
    unknown dimensions from --input-shape, else from the spec's ``shape`` (an NHWC input)."""
    batch = options.batch_size
    where = f"stage {stage!r} input {name!r}"
    if known and known[0] is not None and known[0] != batch:
        raise CompileError(
            f"{where} has a fixed batch of {known[0]}: compile with --batch-size "
            f"{known[0]}, or re-export the model with batch dimension -1"
        )
    given = options.input_shapes.get(name)
    if given is not None:
        return _given_shape(name, where, known, given, batch)
    if known is not None and spec_size is not None and len(known) == 4 and known[3] in (3, None):
        known = _spec_sized(where, known, spec_size)
    if known is None or None in known[1:]:
        example = f"{name}={batch},256,192,3" if known is None or len(known) == 4 else f"{name}={batch},..."
        raise CompileError(
            f"{where} has shape {_show(known)}: give its dimensions with --input-shape "
            f"(e.g. --input-shape {example}, the batch first)"
        )
    return (batch, *(int(d) for d in known[1:] if d is not None))


def _given_shape(
    name: str, where: str, known: tuple[int | None, ...] | None, given: tuple[int, ...], batch: int
) -> tuple[int, ...]:
    """--input-shape's shape, checked against the model's known dimensions."""
    if given[0] not in (-1, batch):
        raise CompileError(
            f"--input-shape {name}: the first dimension is the batch: -1 or the "
            f"--batch-size {batch}, not {given[0]}"
        )
    if known is not None and len(known) != len(given):
        raise CompileError(
            f"--input-shape {name}: {len(given)} dimensions, but {where} has {len(known)}: {_show(known)}"
        )
    for i, (k, g) in enumerate(zip(known or given, given, strict=True)):
        if i and k is not None and k != g:
            raise CompileError(f"--input-shape {name}: dimension {i} is {g}, but {where} has {_show(known)}")
    return (batch, *given[1:])


def _spec_sized(where: str, known: tuple[int | None, ...], size: tuple[int, int]) -> tuple[int | None, ...]:
    """An NHWC input's height and width from the spec's ``shape``, which must agree with the model."""
    for i, dim in ((1, size[0]), (2, size[1])):
        if known[i] is not None and known[i] != dim:
            raise CompileError(
                f"{where} is {_show(known)} but the spec's shape says {size[0]}x{size[1]}: "
                "correct the spec's shape"
            )
    return (known[0], size[0], size[1], 3)


def _show(shape: tuple[int | None, ...] | None) -> str:
    if shape is None:
        return "unknown (not even the number of dimensions)"
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _check_input_names(signatures: list[Signature], options: Options) -> None:
    inputs = {t.name for signature in signatures for t in signature.inputs}
    unknown = sorted(set(options.input_shapes) - inputs)
    if unknown:
        raise CompileError(
            f"--input-shape names {', '.join(unknown)}, which no model input is; the "
            f"inputs: {', '.join(sorted(inputs))}"
        )


def _check_patterns(jobs: tuple[StageJob, ...], options: Options) -> None:
    if options.no_fuse != DEFAULT_NO_FUSE:  # a pattern of the user's that matches nothing is a typo
        for pattern in options.no_fuse:
            matches = scope_matcher((pattern,))
            if not any(matches(op) for job in jobs for op in job.no_fuse_ops):
                raise CompileError(
                    f"--no-fuse {pattern!r} matches no operation; scopes of the model: "
                    f"{', '.join(_scopes(jobs))}"
                )


def _scopes(jobs: tuple[StageJob, ...]) -> list[str]:
    """The outermost name scopes of the ops, past the call ops tfn.trace inlines."""
    calls = {"StatefulPartitionedCall", "PartitionedCall"}
    names = set()
    for job in jobs:
        for op in job.ops:
            scopes = [s for s in op.split("/")[:-1] if s not in calls]
            names.update(scopes[:1])
    return sorted(names)[:20] or ["(none found)"]


def _op_names(tf: Any, api: str, signature: Signature, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """The op names the compiler will see: tfn.saved_model.compile works on the SavedModel's own
    (TensorFlow 1) graph; tfn.trace on the function it traces, with variables frozen and
    function calls inlined, as it does itself."""
    if api == SAVED_MODEL_COMPILE:
        return list(signature.graph_ops)
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    call = traceable(tf, signature)
    specs = [tf.TensorSpec(shapes[t.name], tf.dtypes.as_dtype(t.dtype)) for t in signature.inputs]
    concrete = tf.function(call, input_signature=specs).get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete, aggressive_inlining=True)
    return [node.name for node in frozen.graph.as_graph_def().node]


def traceable(tf: Any, signature: Signature) -> Callable[..., Any]:
    """The serving signature as a function of positional tensors (in the order of
    ``signature.input_names``), the form tfn.trace calls with a tuple of example inputs."""
    loaded = tf.saved_model.load(str(signature.path))
    names = signature.input_names

    def call(*tensors: Any) -> Any:  # holds `loaded`: its variables live as long as the function
        return loaded.signatures[SERVING](**{name: tensors[i] for i, name in enumerate(names)})

    return call


def _compiled_spec(
    model: ModelSpec | None, jobs: tuple[StageJob, ...], options: Options, source: Path
) -> tuple[ModelSpec | None, tuple[str, ...]]:
    stages = []
    for job in jobs:
        shape = job.shapes[job.input]
        if len(shape) != 4 or shape[3] != 3:
            return None, (
                f"no model spec written: input {job.input!r} is {shape}, not a batch of "
                "RGB pictures (N, height, width, 3), which is what the worker feeds",
            )
        stages.append(
            replace(
                job.stage,
                file=job.stage.name,
                input_size=(shape[1], shape[2]),
                input=job.input,
                compiled_batch=options.batch_size,
                dynamic_batch=options.dynamic_batch,
            )
        )
    if model is not None:
        return replace(
            model,
            name=options.name or f"{model.name}-neuron",
            runtime="neuron",
            stages=tuple(stages),
            folder=None,
        ), ()
    if options.keypoints not in KEYPOINT_SETS:
        raise CompileError(f"--keypoints {options.keypoints!r}: one of {', '.join(KEYPOINT_SETS)}")
    keypoints, edges = KEYPOINT_SETS[options.keypoints]
    spec = ModelSpec(
        name=options.name or f"{source.resolve().name}-neuron",
        runtime="neuron",
        stages=tuple(stages),
        keypoints=keypoints,
        edges=edges,
    )
    note = (
        f"the spec has the default preprocessing (pixels / 255, RGB, stretched) and {options.keypoints} "
        "keypoints from output 'coords' (x, y in 0..1): edit it if the model differs"
    )
    return spec, (note,)
