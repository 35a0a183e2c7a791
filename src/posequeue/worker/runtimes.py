"""Model runtimes behind one small protocol, chosen by the model spec's ``runtime``.

``tflite`` (ai-edge-litert) is the CPU default; ``tensorflow`` runs a SavedModel's serving
signature (CPU or GPU); ``neuron`` runs a SavedModel compiled for Inferentia under
tensorflow-neuron. Runtimes are imported lazily, in the worker's pool child, never in the parent
that forks it, and after the worker's cores are pinned.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from posequeue.errors import ModelLoadError, UnknownRuntime

NEURON_INSTALL = (
    "tensorflow-neuron is not installed. It is not on PyPI: on an inf1 host (Python 3.8-3.10) run "
    "`pip install tensorflow-neuron==2.10.1.2.12.2.0 --extra-index-url=https://pip.repos.neuron."
    "amazonaws.com` (the Deep Learning AMI for Neuron has it), or pick the tensorflow or tflite "
    "runtime for a CPU host"
)
TENSORFLOW_INSTALL = (
    "TensorFlow is not installed: pip install tensorflow-cpu==2.10.1 on Python 3.10 (the version "
    "tensorflow-neuron builds on), or any TensorFlow 2.x"
)


class Runtime(Protocol):
    """Runs one model on a batch; returns its outputs by name, batch first."""

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...


def run_in_compiled_batches(
    run: Callable[[np.ndarray], dict[str, np.ndarray]], batch: np.ndarray, compiled: int, dynamic: bool
) -> dict[str, np.ndarray]:
    """Run ``batch`` on a model compiled for batches of ``compiled``: padded up to a multiple of
    it (dynamic batching: the runtime cuts it into shards and runs them in parallel) or cut into
    calls of exactly that size. Padding repeats the last frame and never reaches the results."""
    n = len(batch)
    if compiled <= 1 and dynamic or n == 0:
        return run(batch)
    padded = -n % compiled
    if padded:
        batch = np.concatenate([batch, np.repeat(batch[-1:], padded, axis=0)])
    if dynamic:
        return {k: v[:n] for k, v in run(batch).items()}
    parts = [run(batch[i : i + compiled]) for i in range(0, len(batch), compiled)]
    return {k: np.concatenate([p[k] for p in parts])[:n] for k in parts[0]}


class TFLiteRuntime:
    """ai-edge-litert's interpreter. Runs frame by frame: on the CPU batch 1 is as fast as
    larger batches (measured: ~210 frames/s at batch 1, ~180 at batch 8 on 2 cores)."""

    def __init__(self, path: Path, threads: int, outputs: tuple[str, ...] = ()) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        # Only the outputs a stage reads are copied out (the landmark model also returns a
        # 256x256 segmentation mask that nobody uses).
        self.outputs = {
            d["name"]: d["index"]
            for d in self.interpreter.get_output_details()
            if not outputs or d["name"] in outputs
        }

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if len(batch) == 0:
            return {name: np.empty((0,)) for name in self.outputs}
        results: dict[str, list[np.ndarray]] = {name: [] for name in self.outputs}
        for frame in batch:
            self.interpreter.set_tensor(self.input, frame[None])
            self.interpreter.invoke()
            for name, index in self.outputs.items():
                results[name].append(self.interpreter.get_tensor(index)[0].copy())
        return {name: np.stack(values) for name, values in results.items()}


class TensorFlowRuntime:
    """A SavedModel's serving signature (``serving_default``), one call per batch."""

    def __init__(
        self,
        path: Path,
        threads: int,
        outputs: tuple[str, ...] = (),
        input_name: str = "",
        compiled_batch: int = 1,
        dynamic_batch: bool = True,
    ) -> None:
        tf = import_tensorflow()
        try:  # the worker's cores; only possible before TensorFlow's first op in this process
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass
        self.tf = tf
        self.model = self.load(path)
        self.function = self.model.signatures.get("serving_default")
        if self.function is None:
            raise ModelLoadError(
                f"{path} has no serving_default signature; its signatures: "
                f"{', '.join(self.model.signatures) or 'none'}"
            )
        _, inputs = self.function.structured_input_signature
        names = list(inputs)
        if input_name and input_name not in names:
            raise ModelLoadError(f"{path} has no input {input_name!r}; its inputs: {', '.join(names)}")
        if not input_name and len(names) != 1:
            raise ModelLoadError(
                f"{path} has inputs {', '.join(names)}: name the one to feed with `input` in the model spec"
            )
        self.input_name = input_name or names[0]
        self.dtype = inputs[self.input_name].dtype
        known = list(self.function.structured_outputs)
        missing = [o for o in outputs if o not in known]
        if missing:
            raise ModelLoadError(
                f"{path} has no output(s) {', '.join(missing)}; its outputs: {', '.join(known)}"
            )
        self.outputs = tuple(outputs) or tuple(known)
        self.compiled, self.dynamic = compiled_batch, dynamic_batch
        # An empty batch is not run: TF 2.10's oneDNN kernels (on by default on x86) fail on it
        # ("input depth must be evenly divisible by filter depth").
        specs = self.function.structured_outputs
        self.empty = {
            name: np.zeros((0, *specs[name].shape[1:]), specs[name].dtype.as_numpy_dtype)
            for name in self.outputs
        }

    def load(self, path: Path) -> Any:
        try:
            return self.tf.saved_model.load(str(path))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load the SavedModel at {path}: {exc}") from None

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if len(batch) == 0:
            return {name: value.copy() for name, value in self.empty.items()}
        return run_in_compiled_batches(self._call, batch, self.compiled, self.dynamic)

    def _call(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        result = self.function(**{self.input_name: self.tf.constant(batch, dtype=self.dtype)})
        return {name: result[name].numpy() for name in self.outputs}


class NeuronRuntime(TensorFlowRuntime):
    """A SavedModel compiled for Inferentia (inf1) by tensorflow-neuron. Importing
    ``tensorflow.neuron`` registers the NeuronOp the graph holds; the Neuron runtime then places
    it on the NeuronCores NEURON_RT_VISIBLE_CORES names (set by ``posequeue worker --cores``).
    The same serving signature as any SavedModel, with batches fitted to the compiled size.
    TF2 loads TF1 SavedModels through their signatures too; tensorflow-neuron 1.15 itself (and
    its ``tf.contrib.predictor``) exists only for Python 3.7, below what posequeue runs on."""

    def load(self, path: Path) -> Any:
        try:
            import tensorflow.neuron  # noqa: F401  (registers NeuronOp)
        except ImportError:
            raise ModelLoadError(NEURON_INSTALL) from None
        return super().load(path)


def import_tensorflow() -> Any:
    try:
        import tensorflow as tf
    except ImportError:
        raise ModelLoadError(TENSORFLOW_INSTALL) from None
    return tf


def make_runtime(
    kind: str,
    path: Path,
    threads: int,
    outputs: tuple[str, ...] = (),
    input_name: str = "",
    compiled_batch: int = 1,
    dynamic_batch: bool = True,
) -> Runtime:
    """The runtime for a model spec's ``runtime`` field."""
    if kind == "tflite":
        return TFLiteRuntime(path, threads, outputs)
    if kind == "tensorflow":
        return TensorFlowRuntime(path, threads, outputs, input_name, compiled_batch, dynamic_batch)
    if kind == "neuron":
        return NeuronRuntime(path, threads, outputs, input_name, compiled_batch, dynamic_batch)
    raise UnknownRuntime(f"unknown runtime {kind!r}; available: tflite, tensorflow, neuron")
