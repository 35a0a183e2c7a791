"""A converted graph saved as a TensorFlow SavedModel with one serving signature: its input keyed
by the TFLite input's name, its outputs by the TFLite output names, the batch dimension free.
The worker asks for outputs by those names, so the tflite and tensorflow runtimes interchange.

Weights are constants inside the function's graph (no variables): tensorflow-neuron's compiler
freezes a graph anyway, and a constant cannot drift from the file it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from posequeue.convert import ConvertError, import_tensorflow, ops
from posequeue.convert.tflite import Graph

SIGNATURE = "serving_default"


def serving_function(graph: Graph) -> Any:
    """``graph`` as a concrete tf.function on a float32 NHWC batch of any size (traced now, so an
    operator's error names the model)."""
    tf = import_tensorflow()
    ops.check(graph)
    source = graph.tensors[graph.inputs[0]]
    if source.dtype != "FLOAT32":
        raise ConvertError(
            f"{graph.model}: input {source.name!r} is {source.dtype}; only float32 inputs convert"
        )
    spec = tf.TensorSpec([None, *source.shape[1:]], tf.float32, name=source.name)
    return tf.function(lambda image: ops.run(graph, image), input_signature=[spec]).get_concrete_function()


def save(graph: Graph, folder: Path) -> None:
    """Write ``graph`` as a SavedModel in ``folder``."""
    tf = import_tensorflow()
    # The function only as a signature: also kept as a module attribute, its constants (the
    # weights) would be stored twice.
    tf.saved_model.save(tf.Module(), str(folder), signatures={SIGNATURE: serving_function(graph)})


def size(folder: Path) -> int:
    """Bytes on disk under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
