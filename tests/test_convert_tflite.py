"""posequeue.convert.tflite: the flatbuffer reader, its sparse densifying and its refusals. Needs
only ai-edge-litert (its schema bindings and interpreter), not TensorFlow."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

from posequeue.convert import UnsupportedOp, ops, tflite  # noqa: E402
from posequeue.convert.tflite import Graph, Operator, Tensor, densify  # noqa: E402

pytestmark = pytest.mark.compat

DENSE, CSR = 0, 1


def level(
    kind: int, size: int = 0, segments: list[int] | None = None, indices: list[int] | None = None
) -> SimpleNamespace:
    """One DimensionMetadataT, as the schema bindings unpack it."""
    return SimpleNamespace(
        format=kind,
        denseSize=size,
        arraySegments=SimpleNamespace(values=segments),
        arrayIndices=SimpleNamespace(values=indices),
    )


def test_densify_row_major_csr() -> None:
    """Rows dense, columns compressed: each row's run of stored columns lands in place."""
    levels = [level(DENSE, 2), level(CSR, 0, [0, 2, 3], [0, 2, 1])]
    sparsity = SimpleNamespace(traversalOrder=[0, 1], blockMap=None, dimMetadata=levels)
    out = densify(np.array([1, 2, 3], np.float16), (2, 3), sparsity, "m")
    assert out.dtype == np.float16
    assert out.tolist() == [[1, 0, 2], [0, 3, 0]]


def test_densify_follows_the_traversal_order() -> None:
    """With traversal order (1, 0) the stored values walk columns first; same dense matrix."""
    levels = [level(DENSE, 3), level(CSR, 0, [0, 1, 2, 3], [0, 1, 0])]
    sparsity = SimpleNamespace(traversalOrder=[1, 0], blockMap=None, dimMetadata=levels)
    out = densify(np.array([1, 3, 2], np.float32), (2, 3), sparsity, "m")
    assert out.tolist() == [[1, 0, 2], [0, 3, 0]]


def test_densify_refuses_block_sparsity() -> None:
    """Block-sparse constants are refused by name rather than densified wrongly."""
    sparsity = SimpleNamespace(traversalOrder=[0, 1, 2], blockMap=[1], dimMetadata=[])
    with pytest.raises(UnsupportedOp, match="m.tflite: 'w' is block-sparse"):
        densify(np.zeros(4, np.float32), (2, 2), sparsity, "m.tflite: 'w'")


def test_detector_weights_densify_as_tflite_does(model_dir: Path) -> None:
    """Every DENSIFY output of pose_detection.tflite equals what TFLite's own kernels compute."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    path = model_dir / "pose_detection.tflite"
    fb = tflite.schema()
    model = fb.ModelT.InitFromObj(fb.Model.GetRootAs(path.read_bytes(), 0))
    densify_code = fb.BuiltinOperator.DENSIFY
    outputs = [
        int(op.outputs[0])
        for op in model.subgraphs[0].operators
        if max(
            model.operatorCodes[op.opcodeIndex].builtinCode,
            model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode,
        )
        == densify_code
    ]
    # The reference kernels, tensors kept: XNNPACK would take the weights over and free them.
    interpreter = Interpreter(
        model_path=str(path),
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    image = np.zeros((1, 224, 224, 3), np.float32)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
    interpreter.invoke()
    graph = tflite.read(path)
    assert len(outputs) == graph.folded["DENSIFY"] == 38
    for index in outputs:
        expected = interpreter.get_tensor(index)
        assert expected.any(), graph.name(index)
        assert np.array_equal(graph.constants[index], expected), graph.name(index)


def test_blazepose_files_read(model_dir: Path) -> None:
    """Both models read to the operators the converter translates, their weights float32, and
    the input and output names the worker and the spec use."""
    expected = {
        "pose_detection.tflite": (
            [
                "ADD",
                "CONCATENATION",
                "CONV_2D",
                "DEPTHWISE_CONV_2D",
                "DEPTH_TO_SPACE",
                "PAD",
                "RESHAPE",
                "RESIZE_BILINEAR",
            ],
            {"DENSIFY": 38, "DEQUANTIZE": 144},
            ["Identity", "Identity_1"],
        ),
        "pose_landmark_full.tflite": (
            [
                "ADD",
                "CONV_2D",
                "DEPTHWISE_CONV_2D",
                "LOGISTIC",
                "MAX_POOL_2D",
                "PAD",
                "RESHAPE",
                "RESIZE_BILINEAR",
            ],
            {"DEQUANTIZE": 192},
            ["Identity", "Identity_1", "Identity_2", "Identity_3", "Identity_4"],
        ),
    }
    for name, (opcodes, folded, outputs) in expected.items():
        graph = tflite.read(model_dir / name)
        assert graph.opcodes() == opcodes and graph.folded == folded
        ops.check(graph)
        assert [graph.name(i) for i in graph.inputs] == ["input_1"]
        assert [graph.name(i) for i in graph.outputs] == outputs
        used = {i for op in graph.operators for i in op.inputs if i in graph.constants}
        assert {graph.constants[i].dtype for i in used} <= {np.dtype(np.float32), np.dtype(np.int32)}


def test_unknown_operators_are_named_with_the_model() -> None:
    """check() names every operator without a translation and the model that uses it."""
    tensors = [Tensor("x", (1, 4), "FLOAT32"), Tensor("y", (1, 4), "FLOAT32")]
    graph = Graph(
        "odd.tflite",
        tensors,
        [0],
        [1],
        operators=[
            Operator("SQUARE", (0,), (1,), {}),
            Operator("CUSTOM:Landmarks2TransformMatrix", (1,), (1,), {}),
            Operator("ADD", (0, 0), (1,), {}),
        ],
    )
    with pytest.raises(
        UnsupportedOp,
        match=r"odd\.tflite uses CUSTOM:Landmarks2TransformMatrix, "
        r"SQUARE, which the converter does not translate",
    ):
        ops.check(graph)
