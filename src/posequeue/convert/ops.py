"""TFLite operators rebuilt with TensorFlow ops, NHWC and float32, batch dimension left free.

Each translation takes the operator, its inputs (numpy arrays for constants, tensors otherwise)
and the graph, and returns its one output. Semantics follow TFLite's reference kernels:

* filters: CONV_2D stores [out, h, w, in] (TF: [h, w, in, out]); DEPTHWISE_CONV_2D stores
  [1, h, w, in * multiplier] (TF: [h, w, in, multiplier], the same channel order);
* SAME padding puts the odd pixel after, as TF does (TFLite's ComputePaddingHeightWidth:
  before = total // 2), so ``padding="SAME"`` matches for any stride;
* fused activations run after the bias;
* RESIZE_BILINEAR keeps its align_corners and half_pixel_centers flags (TF's ResizeBilinear op,
  which TFLite's kernel reproduces);
* shapes are read from the file with batch 1; RESHAPE keeps dimension 0 free (-1), so every
  operator must keep the batch on dimension 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from posequeue.convert import UnsupportedOp, import_tensorflow
from posequeue.convert.tflite import Graph, Operator

Value = Any  # a tf.Tensor, or a numpy array for a constant
Translation = Callable[[Operator, list[Value], Graph], Value]
PADDING = {0: "SAME", 1: "VALID"}  # Padding enum
ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}


def check(graph: Graph) -> None:
    """Raise UnsupportedOp naming every operator of ``graph`` that has no translation."""
    missing = [code for code in graph.opcodes() if code not in TRANSLATIONS]
    if missing:
        raise UnsupportedOp(
            f"{graph.model} uses {', '.join(missing)}, which the converter does not "
            f"translate (it knows {', '.join(sorted(TRANSLATIONS))}); add a "
            "translation to posequeue/convert/ops.py"
        )
    if len(graph.inputs) != 1:
        raise UnsupportedOp(f"{graph.model} has {len(graph.inputs)} inputs; the serving signature takes one")


def run(graph: Graph, image: Any) -> dict[str, Any]:
    """The graph's outputs, by tensor name, computed from ``image`` (call inside a tf.function)."""
    tf = import_tensorflow()
    values: dict[int, Value] = {graph.inputs[0]: image}
    for op in graph.operators:
        args = [
            None if i < 0 else graph.constants[i] if i in graph.constants else values[i] for i in op.inputs
        ]
        values[op.outputs[0]] = TRANSLATIONS[op.opcode](op, args, graph)
    # Named like the file's outputs, so graph dumps and Neuron reports read the same.
    return {graph.name(i): tf.identity(values[i], name=graph.name(i)) for i in graph.outputs}


def _activation(op: Operator, graph: Graph, x: Any) -> Any:
    tf = import_tensorflow()
    kind = ACTIVATIONS.get(op.options.get("fusedActivationFunction", 0), "?")
    if kind == "NONE":
        return x
    if kind == "RELU":
        return tf.nn.relu(x)
    if kind == "RELU6":
        return tf.nn.relu6(x)
    if kind == "RELU_N1_TO_1":
        return tf.clip_by_value(x, -1.0, 1.0)
    if kind == "TANH":
        return tf.tanh(x)
    raise UnsupportedOp(
        f"{graph.model}: {op.opcode} with fused activation {kind} (code "
        f"{op.options.get('fusedActivationFunction')}) has no translation"
    )


def _padding(op: Operator, graph: Graph) -> str:
    code = op.options.get("padding")
    if code not in PADDING:
        raise UnsupportedOp(f"{graph.model}: {op.opcode} with padding code {code!r}")
    return PADDING[code]


def _bias(args: list[Value]) -> Any:
    return args[2] if len(args) > 2 and args[2] is not None else None


def conv_2d(op: Operator, args: list[Value], graph: Graph) -> Any:
    tf = import_tensorflow()
    x, weights = args[0], args[1]
    o = op.options
    y = tf.nn.conv2d(
        x,
        np.ascontiguousarray(weights.transpose(1, 2, 3, 0)),
        strides=[1, o["strideH"], o["strideW"], 1],
        padding=_padding(op, graph),
        dilations=[1, o["dilationHFactor"], o["dilationWFactor"], 1],
    )
    bias = _bias(args)
    return _activation(op, graph, y if bias is None else tf.nn.bias_add(y, bias))


def depthwise_conv_2d(op: Operator, args: list[Value], graph: Graph) -> Any:
    tf = import_tensorflow()
    x, weights = args[0], args[1]
    o = op.options
    channels = graph.tensors[op.inputs[0]].shape[-1]
    _, h, w, out = weights.shape
    # The stored depthMultiplier may be stale (TFLite derives it from the shapes too).
    filters = np.ascontiguousarray(weights.reshape(h, w, channels, out // channels))
    y = tf.nn.depthwise_conv2d(
        x,
        filters,
        strides=[1, o["strideH"], o["strideW"], 1],
        padding=_padding(op, graph),
        dilations=[o["dilationHFactor"], o["dilationWFactor"]],
    )
    bias = _bias(args)
    return _activation(op, graph, y if bias is None else tf.nn.bias_add(y, bias))


def add(op: Operator, args: list[Value], graph: Graph) -> Any:
    tf = import_tensorflow()
    return _activation(op, graph, tf.add(args[0], args[1]))


def max_pool_2d(op: Operator, args: list[Value], graph: Graph) -> Any:
    tf = import_tensorflow()
    o = op.options
    y = tf.nn.max_pool2d(
        args[0],
        ksize=[o["filterHeight"], o["filterWidth"]],
        strides=[o["strideH"], o["strideW"]],
        padding=_padding(op, graph),
    )
    return _activation(op, graph, y)


def pad(op: Operator, args: list[Value], graph: Graph) -> Any:
    tf = import_tensorflow()
    paddings = np.asarray(args[1])
    if paddings[0].any():
        raise UnsupportedOp(f"{graph.model}: PAD of {graph.name(op.inputs[0])!r} pads the batch dimension")
    return tf.pad(args[0], paddings)


def reshape(op: Operator, args: list[Value], graph: Graph) -> Any:
    tf = import_tensorflow()
    before, after = graph.tensors[op.inputs[0]].shape, graph.tensors[op.outputs[0]].shape
    if not before or not after or before[0] != 1 or after[0] != 1:
        raise UnsupportedOp(
            f"{graph.model}: RESHAPE {before} -> {after} of "
            f"{graph.name(op.inputs[0])!r} moves the batch dimension; the batch "
            "cannot stay dynamic"
        )
    return tf.reshape(args[0], [-1, *after[1:]])


def resize_bilinear(op: Operator, args: list[Value], graph: Graph) -> Any:
    tf = import_tensorflow()
    o = op.options
    return tf.raw_ops.ResizeBilinear(
        images=args[0],
        size=np.asarray(args[1], np.int32),
        align_corners=bool(o.get("alignCorners", False)),
        half_pixel_centers=bool(o.get("halfPixelCenters", False)),
    )


def logistic(op: Operator, args: list[Value], graph: Graph) -> Any:
    return import_tensorflow().sigmoid(args[0])


def concatenation(op: Operator, args: list[Value], graph: Graph) -> Any:
    tf = import_tensorflow()
    rank = len(graph.tensors[op.outputs[0]].shape)
    axis = op.options["axis"] % rank
    if axis == 0:
        raise UnsupportedOp(f"{graph.model}: CONCATENATION along the batch dimension")
    return _activation(op, graph, tf.concat(args, axis=axis))


def depth_to_space(op: Operator, args: list[Value], graph: Graph) -> Any:
    # TFLite's kernel is TF's default (DCR) order.
    return import_tensorflow().nn.depth_to_space(args[0], op.options["blockSize"])


TRANSLATIONS: dict[str, Translation] = {
    "ADD": add,
    "CONCATENATION": concatenation,
    "CONV_2D": conv_2d,
    "DEPTHWISE_CONV_2D": depthwise_conv_2d,
    "DEPTH_TO_SPACE": depth_to_space,
    "LOGISTIC": logistic,
    "MAX_POOL_2D": max_pool_2d,
    "PAD": pad,
    "RESHAPE": reshape,
    "RESIZE_BILINEAR": resize_bilinear,
}
