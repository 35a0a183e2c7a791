"""A stand-in for tensorflow-neuron's ``tensorflow.neuron`` that records how it is called and
compiles nothing. It checks what posequeue passes to tensorflow-neuron, never what
tensorflow-neuron or Inferentia would do with it.

- ``trace(func, example_inputs, subgraph_builder_function=None)`` (the documented TF2 signature)
  freezes ``func``'s variables and inlines its calls, as tfn.trace does first, asks
  ``subgraph_builder_function`` about every node of that graph (recording the ones it keeps on
  the CPU) and returns a callable model running the frozen function on the CPU, with an
  ``on_neuron_ratio``. With ``--dynamic-batch-size`` in NEURON_CC_FLAGS the model takes any batch.
- ``saved_model.compile(model_dir, new_model_dir, batch_size=1, ...)`` (the documented TF1
  signature, unknown keywords refused) copies the SavedModel and returns {'OnNeuronRatio': ...}.

Every call goes to ``CALLS`` and, when TFN_STANDIN_LOG names a file, to that file as JSON lines
(for a ``posequeue compile`` subprocess, which gets this module through
tests/neuron_standin/sitecustomize.py on PYTHONPATH).
"""

from __future__ import annotations

import json
import os
import shutil
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

__version__ = "0.0.0+standin"
CALLS: list[dict[str, Any]] = []
RATIO = 0.75  # what saved_model.compile reports; no meaning
COMPILE_KEYWORDS = {
    "dynamic_batch_size",
    "no_fuse_ops",
    "force_fuse_ops",
    "minimum_segment_size",
    "compiler_args",
    "compiler_workdir",
    "compiler_timeout",
    "compiler_recovery",
}


def _record(call: dict[str, Any]) -> None:
    CALLS.append(call)
    log = os.environ.get("TFN_STANDIN_LOG")
    if log:
        with open(log, "a") as handle:
            handle.write(json.dumps(call) + "\n")


def trace(func: Any, example_inputs: Any, subgraph_builder_function: Any = None) -> Any:
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    flags = os.environ.get("NEURON_CC_FLAGS", "")
    dynamic = "--dynamic-batch-size" in flags.split()
    specs = [tf.TensorSpec((None if dynamic else t.shape[0], *t.shape[1:]), t.dtype) for t in inputs]
    concrete = tf.function(func, input_signature=specs).get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete, aggressive_inlining=True)
    nodes = list(frozen.graph.as_graph_def().node)
    builder = subgraph_builder_function
    on_cpu = [n.name for n in nodes if builder is not None and not builder(n)]
    _record(
        {
            "api": "trace",
            "example_shapes": [list(t.shape) for t in inputs],
            "example_dtypes": [t.dtype.name for t in inputs],
            "neuron_cc_flags": flags,
            "subgraph_builder_function": builder is not None,
            "cpu_ops": on_cpu,
        }
    )
    return _model_class()(frozen, concrete.structured_outputs, 1 - len(on_cpu) / len(nodes))


@lru_cache(maxsize=1)
def _model_class() -> type:
    import tensorflow as tf

    class StandInNeuronModel(tf.Module):
        """What tfn.trace returns, minus the NeuronOps: the frozen function, on the CPU."""

        def __init__(self, frozen: Any, structure: Any, ratio: float) -> None:
            super().__init__(name="aws_neuron_model")
            self.frozen = frozen
            self.structure = structure
            self.on_neuron_ratio = ratio

        def __call__(self, *tensors: Any) -> Any:
            return tf.nest.pack_sequence_as(self.structure, self.frozen(*tensors))

    return StandInNeuronModel


def _compile(
    model_dir: str,
    new_model_dir: str,
    batch_size: int = 1,
    model_shape_feed_dict: Any = None,
    model_feed_dict: Any = None,
    tags: Any = None,
    signature_def_key: Any = None,
    **kwargs: Any,
) -> dict[str, float]:
    unknown = set(kwargs) - COMPILE_KEYWORDS
    if unknown:
        raise TypeError(f"compile() got unexpected keyword arguments {sorted(unknown)}")
    if os.path.exists(new_model_dir):
        raise FileExistsError(f"{new_model_dir} exists")
    feed = {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in (model_feed_dict or {}).items()}
    _record(
        {
            "api": "saved_model.compile",
            "model_dir": model_dir,
            "new_model_dir": new_model_dir,
            "batch_size": batch_size,
            "model_feed_dict": feed if model_feed_dict is not None else None,
            **{k: list(v) if isinstance(v, (list, tuple)) else v for k, v in kwargs.items()},
        }
    )
    shutil.copytree(model_dir, new_model_dir)
    return {"OnNeuronRatio": RATIO}


saved_model = SimpleNamespace(compile=_compile)
