"""``posequeue compile``: SavedModels compiled for Inferentia (inf1) by tensorflow-neuron.

:func:`posequeue.neuron.checks.prepare` makes every check that needs no tensorflow-neuron (the
SavedModels, their signatures, the example input shapes, the ops kept on the CPU); :func:`run`
then compiles each stage into ``OUT/<stage>`` and writes ``OUT/<name>.toml`` (a model spec with
runtime ``neuron``) and ``OUT/compile-report.json``.

Two tensorflow-neuron APIs, chosen by the TensorFlow major version (the only one each release
has that takes these options):

- TensorFlow 2 (tensorflow-neuron 2.x, the last inf1 build being 2.10.1): ``tfn.trace(func,
  example_inputs, subgraph_builder_function=...)``; the traced model is saved here with an
  explicit ``serving_default`` signature, the original input and output names, because the
  runtime feeds and reads them by name. Dynamic batching is the tracer's
  ``--dynamic-batch-size`` flag in ``NEURON_CC_FLAGS``.
- TensorFlow 1.15 (tensorflow-neuron 1.15, Python 3.7): ``tfn.saved_model.compile(model_dir,
  new_model_dir, batch_size=, dynamic_batch_size=, no_fuse_ops=, model_feed_dict=)``, which keeps
  the SavedModel's own signatures.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from posequeue.config.specs import dump_spec
from posequeue.errors import NeuronMissing
from posequeue.neuron.checks import TRACE, CheckedCompile, StageJob, scope_matcher, traceable
from posequeue.neuron.savedmodel import SERVING, Signature, read_signature

REPORT = "compile-report.json"
LOW_RATIO = 0.3  # tensorflow-neuron warns at or below this share of ops on the NeuronCores


# -- compiling ------------------------------------------------------------------------------
def import_neuron() -> Any:
    """tensorflow-neuron's module, or NeuronMissing."""
    try:
        import tensorflow.neuron as tfn
    except ImportError:
        raise NeuronMissing from None
    return tfn


def run(checked: CheckedCompile, tf: Any, tfn: Any) -> dict[str, Any]:
    """Compile every stage of ``checked``; write the spec and the report; return the report.
    The work happens in a sibling folder renamed to OUT at the end, so a failed compile leaves
    no OUT behind (and can be run again)."""
    started = time.monotonic()
    work = checked.out.parent / f".{checked.out.name}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        stages = [_compile_stage(checked, job, tf, tfn, work / job.stage.name) for job in checked.jobs]
        spec_file = None
        if checked.spec is not None:
            spec_file = f"{checked.spec.name}.toml"
            (work / spec_file).write_text(dump_spec(checked.spec))
        report = _report(checked, tf, tfn, stages, spec_file, time.monotonic() - started)
        (work / REPORT).write_text(json.dumps(report, indent=2) + "\n")
        work.rename(checked.out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _compile_stage(checked: CheckedCompile, job: StageJob, tf: Any, tfn: Any, dest: Path) -> dict[str, Any]:
    started = time.monotonic()
    if checked.api == TRACE:
        ratio = _trace(checked, job, tf, tfn, dest)
    else:
        ratio = _saved_model_compile(checked, job, tfn, dest)
    _check_compiled(job, read_signature(dest, tf))
    return {
        "name": job.stage.name,
        "source": str(job.source),
        "output": job.stage.name,
        "inputs": {n: list(s) for n, s in job.shapes.items()},
        "outputs": job.signature.output_names,
        "no_fuse_ops": list(job.no_fuse_ops),
        "on_neuron_ratio": ratio,
        "seconds": round(time.monotonic() - started, 3),
    }


def _trace(checked: CheckedCompile, job: StageJob, tf: Any, tfn: Any, dest: Path) -> float | None:
    call = traceable(tf, job.signature)
    names = job.signature.input_names
    examples = tuple(tf.constant(example_batch(job.shapes[n], job.signature.input(n).dtype)) for n in names)
    matches = scope_matcher(checked.options.no_fuse)
    # A subgraph_builder_function replaces the tracer's own placement (it then fuses exactly
    # the ops it is told to): pass one only when some ops must stay on the CPU.
    builder = (lambda node: not matches(node.name)) if job.no_fuse_ops else None
    with _neuron_cc_flags("--dynamic-batch-size" if checked.options.dynamic_batch else ""):
        traced = tfn.trace(call, examples, subgraph_builder_function=builder)
    batch = None if checked.options.dynamic_batch else checked.options.batch_size
    specs = [
        tf.TensorSpec((batch, *job.shapes[n][1:]), tf.dtypes.as_dtype(job.signature.input(n).dtype), name=n)
        for n in names
    ]
    outputs = job.signature.output_names

    def serve(*tensors: Any) -> dict[str, Any]:  # the original names: the runtime reads them
        result = traced(*tensors)
        return {name: result[name] for name in outputs}

    signature = tf.function(serve, input_signature=specs).get_concrete_function()
    tf.saved_model.save(traced, str(dest), signatures={SERVING: signature})
    ratio = getattr(traced, "on_neuron_ratio", None)
    return None if ratio is None else float(ratio)


def _saved_model_compile(checked: CheckedCompile, job: StageJob, tfn: Any, dest: Path) -> float | None:
    kwargs: dict[str, Any] = {
        "batch_size": checked.options.batch_size,
        "dynamic_batch_size": checked.options.dynamic_batch,
    }
    if job.no_fuse_ops:
        kwargs["no_fuse_ops"] = list(job.no_fuse_ops)
    if job.fill:  # shapes the compiler cannot infer: it runs the model on these to find them
        kwargs["model_feed_dict"] = {
            t.name: example_batch(job.shapes[t.name], t.dtype) for t in job.signature.inputs
        }
    result = tfn.saved_model.compile(str(job.source), str(dest), **kwargs)
    ratio = (result or {}).get("OnNeuronRatio")
    return None if ratio is None else float(ratio)


def example_batch(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Example input: pictures in 0..1 (float) or 0..255 (uint8); fixed seed, so reproducible."""
    rng = np.random.default_rng(0)
    if dtype == "uint8":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if dtype.startswith("float"):
        return rng.random(shape).astype(dtype)
    return np.zeros(shape, dtype=dtype)


@contextmanager
def _neuron_cc_flags(extra: str) -> Iterator[None]:
    before = os.environ.get("NEURON_CC_FLAGS")
    if extra:
        os.environ["NEURON_CC_FLAGS"] = f"{before} {extra}".strip() if before else extra
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("NEURON_CC_FLAGS", None)
        else:
            os.environ["NEURON_CC_FLAGS"] = before


def _check_compiled(job: StageJob, compiled: Signature) -> None:
    for kind, old, new in (
        ("inputs", job.signature.input_names, compiled.input_names),
        ("outputs", job.signature.output_names, compiled.output_names),
    ):
        if sorted(old) != sorted(new):
            raise RuntimeError(
                f"stage {job.stage.name!r}: the compiled model's {SERVING} {kind} "
                f"are {', '.join(new)}, not {', '.join(old)}; the worker could not "
                "use it"
            )


def _report(
    checked: CheckedCompile,
    tf: Any,
    tfn: Any,
    stages: list[dict[str, Any]],
    spec_file: str | None,
    seconds: float,
) -> dict[str, Any]:
    from posequeue import __version__

    options = checked.options
    return {
        "source": str(checked.source),
        "output": str(checked.out),
        "spec": spec_file,
        "api": checked.api,
        "arguments": {
            "batch_size": options.batch_size,
            "dynamic_batch": options.dynamic_batch,
            "no_fuse": list(options.no_fuse),
            "input_shapes": {n: list(s) for n, s in options.input_shapes.items()},
            "name": options.name or None,
        },
        "versions": {
            "tensorflow": tf.__version__,
            "tensorflow-neuron": neuron_version(tfn),
            "python": platform.python_version(),
            "posequeue": __version__,
        },
        "stages": stages,
        "seconds": round(seconds, 3),
        "notes": list(checked.notes),
        "neuron_cc_flags": os.environ.get("NEURON_CC_FLAGS", ""),  # the user's own compiler flags
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def neuron_version(tfn: Any) -> str:
    from importlib import metadata

    try:
        return metadata.version("tensorflow-neuron")
    except metadata.PackageNotFoundError:
        return str(getattr(tfn, "__version__", "unknown"))


def low_ratio(report: dict[str, Any]) -> list[str]:
    """Stages with few ops on the NeuronCores, as warnings (the rest run on the host's CPU)."""
    return [
        f"stage {s['name']!r}: only {s['on_neuron_ratio']:.0%} of its ops run on the NeuronCores "
        "(NEURON_CC_FLAGS=--must-compile makes a failed subgraph an error instead of a CPU fallback)"
        for s in report["stages"]
        if s["on_neuron_ratio"] is not None and s["on_neuron_ratio"] <= LOW_RATIO
    ]
