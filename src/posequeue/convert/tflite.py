"""A TFLite flatbuffer read into numpy: its tensors, its constants and its operators in order.

Constant-only operators are run here, once: DENSIFY (sparse weights made dense) and DEQUANTIZE
of float16 weights. They leave the operator list, so the graph rebuilt from it (``ops.py``) holds
float32 constants only, as a SavedModel for Inferentia should.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from posequeue.convert import ConvertError, UnsupportedOp
from posequeue.worker.runtimes import TENSORFLOW_INSTALL

# TensorType -> numpy dtype, for the types a float model's tensors use.
DTYPES: dict[str, type[np.generic]] = {
    "FLOAT32": np.float32,
    "FLOAT16": np.float16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "INT8": np.int8,
    "INT16": np.int16,
    "BOOL": np.bool_,
}
SPARSE_CSR = 1  # DimensionType


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]  # as stored; the batch dimension is 1 in these models
    dtype: str  # TensorType name, e.g. "FLOAT32"


@dataclass(frozen=True)
class Operator:
    opcode: str  # BuiltinOperator name ("CONV_2D"), or "CUSTOM:<name>"
    inputs: tuple[int, ...]  # tensor indices; -1 for an optional input left out
    outputs: tuple[int, ...]
    options: dict[str, Any]  # the builtin options' fields (padding, strideH, ...)


@dataclass
class Graph:
    """The first subgraph of a model file, constants folded."""

    model: str  # the file name, for messages
    tensors: list[Tensor]
    inputs: list[int]
    outputs: list[int]
    operators: list[Operator] = field(default_factory=list)
    constants: dict[int, np.ndarray] = field(default_factory=dict)
    folded: dict[str, int] = field(default_factory=dict)  # opcode -> operators run at read time

    def name(self, index: int) -> str:
        return self.tensors[index].name

    def opcodes(self) -> list[str]:
        return sorted({op.opcode for op in self.operators})


def schema() -> ModuleType:
    """The flatbuffer bindings generated from TFLite's schema.fbs, as TensorFlow ships them
    (or ai-edge-litert, which carries the same file)."""
    try:
        from tensorflow.lite.python import schema_py_generated
    except ImportError:
        try:
            from ai_edge_litert import schema_py_generated
        except ImportError as exc:
            raise ConvertError(
                f"reading a .tflite file needs TensorFlow's schema bindings: {TENSORFLOW_INSTALL}"
            ) from exc
    return schema_py_generated


def read(path: Path) -> Graph:
    """The model at ``path``: its first subgraph with DENSIFY and DEQUANTIZE folded away."""
    fb = schema()
    model = fb.ModelT.InitFromObj(fb.Model.GetRootAs(path.read_bytes(), 0))
    if not model.subgraphs:
        raise ConvertError(f"{path.name} holds no subgraph; is it a TFLite model?")
    if len(model.subgraphs) > 1:
        # Control flow (WHILE, IF) lives in further subgraphs; BlazePose has none.
        raise UnsupportedOp(
            f"{path.name} has {len(model.subgraphs)} subgraphs; only single-graph models convert"
        )
    sub = model.subgraphs[0]
    typenames = _names(fb.TensorType)
    tensors = [Tensor(_text(t.name), tuple(int(d) for d in t.shape), typenames[t.type]) for t in sub.tensors]
    graph = Graph(path.name, tensors, [int(i) for i in sub.inputs], [int(i) for i in sub.outputs])
    for i, t in enumerate(sub.tensors):
        _read_tensor(graph, i, t, model.buffers)
    opnames = _names(fb.BuiltinOperator)
    for op in sub.operators:
        operator = _operator(op, model.operatorCodes[op.opcodeIndex], opnames)
        if not _fold(graph, operator):
            graph.operators.append(operator)
    return graph


def _read_tensor(graph: Graph, index: int, tensor: Any, buffers: list[Any]) -> None:
    """Keep the tensor's data if it is a constant; refuse quantized activations."""
    data = buffers[tensor.buffer].data if tensor.buffer < len(buffers) else None
    if data is not None and len(data):
        graph.constants[index] = _constant(graph, index, tensor.sparsity, np.asarray(data, np.uint8))
        return
    scale = tensor.quantization.scale if tensor.quantization is not None else None
    if scale is not None and len(scale):
        raise UnsupportedOp(
            f"{graph.model}: tensor {graph.name(index)!r} is quantized; only float "
            "models convert (use the float16 or float32 model)"
        )


def _operator(op: Any, code: Any, opnames: dict[int, str]) -> Operator:
    # Codes past 127 live in builtinCode; older files only fill deprecatedBuiltinCode.
    number = max(code.builtinCode, code.deprecatedBuiltinCode)
    opcode = f"CUSTOM:{_text(code.customCode)}" if code.customCode else opnames.get(number, str(number))
    options = dict(vars(op.builtinOptions)) if op.builtinOptions is not None else {}
    return Operator(opcode, tuple(int(i) for i in op.inputs), tuple(int(i) for i in op.outputs), options)


def _names(enum: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_")}


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else value or ""


def _constant(graph: Graph, index: int, sparsity: Any, raw: np.ndarray) -> np.ndarray:
    tensor = graph.tensors[index]
    dtype = DTYPES.get(tensor.dtype)
    if dtype is None:
        raise UnsupportedOp(
            f"{graph.model}: constant {tensor.name!r} has type {tensor.dtype}, "
            "which the converter does not read"
        )
    values: np.ndarray = raw.view(dtype)
    if sparsity is not None:
        return densify(values, tensor.shape, sparsity, f"{graph.model}: {tensor.name!r}")
    return values.reshape(tensor.shape)


def densify(values: np.ndarray, shape: tuple[int, ...], sparsity: Any, what: str) -> np.ndarray:
    """A sparse constant made dense, as TFLite's DENSIFY does (its FormatConverter).

    ``values`` are the stored non-zeros in traversal order. Each level of ``dimMetadata`` walks one
    dimension (``traversalOrder``): a DENSE level visits every index, a SPARSE_CSR level only the
    stored ones (``arraySegments`` bound each parent's run in ``arrayIndices``).
    """
    if sparsity.blockMap is not None and len(sparsity.blockMap):
        raise UnsupportedOp(f"{what} is block-sparse; only unblocked sparse constants densify")
    order = [int(d) for d in sparsity.traversalOrder]
    positions = np.zeros(1, np.int64)  # where each visited path continues in the next level
    coords = np.zeros((1, 0), np.int64)  # the path's indices so far, one column per level
    for level, meta in enumerate(sparsity.dimMetadata):
        if meta.format == SPARSE_CSR:
            segments = np.asarray(meta.arraySegments.values, np.int64)
            indices = np.asarray(meta.arrayIndices.values, np.int64)
            counts = segments[positions + 1] - segments[positions]
            parent = np.repeat(np.arange(len(positions)), counts)
            positions = np.concatenate([np.arange(segments[p], segments[p + 1]) for p in positions])
            index = indices[positions]
        else:
            size = int(meta.denseSize)
            if size != shape[order[level]]:
                raise ConvertError(
                    f"{what}: dense level {level} has size {size}, its dimension {shape[order[level]]}"
                )
            parent = np.repeat(np.arange(len(positions)), size)
            index = np.tile(np.arange(size), len(positions))
            positions = positions[parent] * size + index
        coords = np.column_stack([coords[parent], index])
    if len(positions) and positions.max() >= len(values):
        raise ConvertError(f"{what}: its sparsity metadata points past its {len(values)} values")
    dense = np.zeros(shape, values.dtype)
    dense[tuple(coords[:, order.index(d)] for d in range(len(shape)))] = values[positions]
    return dense


def _fold(graph: Graph, op: Operator) -> bool:
    """Run a constant-only DENSIFY or float16 DEQUANTIZE now; False for any other operator."""
    if op.opcode not in ("DENSIFY", "DEQUANTIZE") or op.inputs[0] not in graph.constants:
        return False
    value = graph.constants[op.inputs[0]]
    if op.opcode == "DEQUANTIZE":
        if value.dtype != np.float16:
            raise UnsupportedOp(
                f"{graph.model}: DEQUANTIZE of {graph.name(op.inputs[0])!r} "
                f"({value.dtype}); only float16 weights dequantize here"
            )
        value = value.astype(np.float32)
    graph.constants[op.outputs[0]] = value
    graph.folded[op.opcode] = graph.folded.get(op.opcode, 0) + 1
    return True
