"""posequeue.convert with TensorFlow: each translated operator against the TFLite interpreter on a
small model TensorFlow's own converter writes, and the BlazePose SavedModels against the bundled
TFLite files on real frames (the parity figures). Skipped where TensorFlow is not installed."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")

from posequeue.convert import UnsupportedOp, blazepose, parity, savedmodel, tflite  # noqa: E402
from posequeue.worker.runtimes import TensorFlowRuntime  # noqa: E402

pytestmark = pytest.mark.compat

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "astronaut.mp4"
SIZE = (1, 17, 18, 3)  # odd height, even width: SAME padding at stride 2 splits unevenly on one


def write_tflite(fn: Any, path: Path, float16: bool = True) -> Path:
    """``fn`` converted by TFLiteConverter (float16 weights, as MediaPipe's models store them)."""
    spec = tf.TensorSpec(SIZE, tf.float32, name="image")
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [tf.function(fn, input_signature=[spec]).get_concrete_function()]
    )
    if float16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    path.write_bytes(converter.convert())
    return path


def every_operator(x: Any) -> dict[str, Any]:
    """A graph using each translated operator, with each option value BlazePose does not use."""
    rng = np.random.default_rng(0)
    w = tf.constant(rng.normal(size=(3, 3, 3, 4)).astype(np.float32))
    dw = tf.constant(rng.normal(size=(3, 3, 3, 2)).astype(np.float32))
    a = tf.nn.relu6(tf.nn.conv2d(x, w, 2, "SAME") + 0.1)  # fused RELU6, SAME at stride 2
    b = tf.clip_by_value(tf.nn.conv2d(x, w, 1, "VALID"), -1.0, 1.0)  # fused RELU_N1_TO_1
    c = tf.nn.relu(tf.nn.depthwise_conv2d(x, dw, [1, 2, 2, 1], "SAME"))  # multiplier 2, RELU
    return {
        "relu6": a,
        "clip": b,
        "depthwise": c,
        "align_corners": tf.compat.v1.image.resize_bilinear(a, [20, 22], align_corners=True),
        "legacy": tf.compat.v1.image.resize_bilinear(a, [20, 22], half_pixel_centers=False),
        "half_pixel": tf.compat.v1.image.resize_bilinear(a, [20, 22], half_pixel_centers=True),
        "pool": tf.nn.max_pool2d(x, 2, 2, "SAME"),
        "add_relu": tf.nn.relu(
            a + tf.nn.conv2d(c, tf.constant(rng.normal(size=(1, 1, 6, 4)), tf.float32), 1, "SAME")
        ),
        "concat": tf.concat([a, c], axis=-1),
        "d2s": tf.nn.depth_to_space(tf.concat([a, a], axis=-1), 2),
        "pad": tf.pad(a, [[0, 0], [1, 2], [0, 1], [0, 0]]),
        "flat": tf.sigmoid(tf.reshape(b, [1, -1])),
    }


def interpreter_outputs(path: Path, batch: np.ndarray) -> dict[str, np.ndarray]:
    from posequeue.worker.runtimes import TFLiteRuntime

    return TFLiteRuntime(path, threads=1).run(batch)


def test_every_operator_matches_the_interpreter(tmp_path: Path) -> None:
    """Each translated operator and option (fused activations, SAME/VALID at strides 1 and 2 on
    odd and even sizes, both resize flags, float16 weights) gives the interpreter's outputs."""
    path = write_tflite(every_operator, tmp_path / "ops.tflite")
    graph = tflite.read(path)
    options = [
        (
            op.opcode,
            op.options.get("fusedActivationFunction"),
            op.options.get("padding"),
            op.options.get("alignCorners"),
            op.options.get("halfPixelCenters"),
        )
        for op in graph.operators
    ]
    # The model really holds what this test claims to cover (TF's converter fuses as expected).
    assert {o[1] for o in options if o[0] in ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD")} >= {0, 1, 2, 3}
    assert {(o[0], o[2]) for o in options} >= {("CONV_2D", 0), ("CONV_2D", 1), ("MAX_POOL_2D", 0)}
    assert {o[3:] for o in options if o[0] == "RESIZE_BILINEAR"} == {
        (True, False),
        (False, False),
        (False, True),
    }
    assert set(graph.opcodes()) == {
        "ADD",
        "CONCATENATION",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "DEPTH_TO_SPACE",
        "LOGISTIC",
        "MAX_POOL_2D",
        "PAD",
        "RESHAPE",
        "RESIZE_BILINEAR",
    }
    assert graph.folded.get("DEQUANTIZE", 0) >= 4  # float16 weights, widened at read time
    savedmodel.save(graph, tmp_path / "ops")
    batch = np.random.default_rng(1).uniform(-1, 1, (3, *SIZE[1:])).astype(np.float32)
    expected = interpreter_outputs(path, batch)
    got = TensorFlowRuntime(tmp_path / "ops", threads=2).run(batch)
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name].shape == value.shape, name
        diff = float(np.abs(got[name] - value).max())
        assert diff <= 1e-4, f"output {name}: max |difference| {diff}"


def test_unsupported_operator_is_named(tmp_path: Path) -> None:
    """A model using an operator without a translation (TANH here) is refused before any
    tracing, naming the operator, the model file and where translations live."""
    path = write_tflite(lambda x: {"out": tf.tanh(x * 2.0)}, tmp_path / "tanh.tflite", float16=False)
    with pytest.raises(UnsupportedOp, match=r"tanh\.tflite uses .*TANH.*posequeue/convert/ops\.py"):
        savedmodel.serving_function(tflite.read(path))


@pytest.fixture(scope="module")
def converted(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    out = tmp_path_factory.mktemp("convert")
    return out, blazepose.convert(model_dir, out)


def test_blazepose_parity_on_real_frames(model_dir: Path, converted: tuple[Path, list[Any]]) -> None:
    """On frames of the sample video, the SavedModels give the interpreter's outputs: landmark
    x, y within 0.01 px of the 256 px crop, the rest within bounds far tighter than any use."""
    out, stages = converted
    figures = parity.figures(model_dir, out, SAMPLE)
    figures["convert_seconds"] = {c.stage.name: round(c.seconds, 2) for c in stages}
    figures["savedmodel_bytes"] = {c.stage.name: c.bytes for c in stages}
    print(json.dumps(figures, indent=1))
    assert figures["crops"] >= 4, "the detector found too few people to measure the landmarks"
    lm, det = figures["landmarks"], figures["detector"]
    assert lm["xy_max_abs_px"] <= parity.XY_BOUND_PX and figures["ok"]
    assert lm["z_max_abs_px"] <= 0.05 and lm["heatmap_max_abs"] <= 1e-2
    assert lm["pose_flag_max_abs"] <= 1e-5 and lm["mask_max_abs"] <= 1e-2
    assert det["box_max_abs_px"] <= 0.05 and det["score_max_abs"] <= 1e-5


def test_blazepose_signatures(converted: tuple[Path, list[Any]], model_dir: Path) -> None:
    """Each SavedModel has one input keyed by the TFLite input name, with a free batch, and every
    TFLite output under its TFLite name; a batch of 3 gives 3 rows, an empty batch none."""
    out, stages = converted
    for c in stages:
        graph = tflite.read(model_dir / c.stage.file)
        signature = tf.saved_model.load(str(c.folder)).signatures[savedmodel.SIGNATURE]
        inputs = signature.structured_input_signature[1]
        assert list(inputs) == [c.input] == [graph.name(graph.inputs[0])] == ["input_1"]
        assert inputs[c.input].shape.as_list() == [None, *c.shape[1:]]
        assert set(signature.structured_outputs) == {graph.name(i) for i in graph.outputs}
        run = TensorFlowRuntime(c.folder, threads=2).run
        got = run(np.zeros((3, *c.shape[1:]), np.float32))
        assert all(len(value) == 3 for value in got.values())
        empty = run(np.zeros((0, *c.shape[1:]), np.float32))
        assert {name: value.shape[1:] for name, value in empty.items()} == {
            name: value.shape[1:] for name, value in got.items()
        }
        assert all(len(value) == 0 for value in empty.values())


def test_blazepose_spec_file(converted: tuple[Path, list[Any]]) -> None:
    """DIR/blazepose-tf.toml is valid TOML naming the tensorflow runtime, both SavedModel
    folders (relative to the file), their input keys, shapes and the outputs the stages read."""
    toml = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    out, _ = converted
    spec = toml.loads((out / blazepose.SPEC_FILE).read_text())
    assert {k: spec[k] for k in ("name", "runtime", "keypoints")} == {
        "name": "blazepose-tf",
        "runtime": "tensorflow",
        "keypoints": "blazepose",
    }
    assert spec["stages"] == [
        {
            "name": "detector",
            "kind": "blazepose-detector",
            "path": "detector",
            "input": "input_1",
            "shape": [-1, 224, 224, 3],
            "outputs": ["Identity", "Identity_1"],
        },
        {
            "name": "landmarks",
            "kind": "blazepose-landmarks",
            "path": "landmarks",
            "input": "input_1",
            "shape": [-1, 256, 256, 3],
            "outputs": ["Identity", "Identity_1", "Identity_3"],
            "payload": "crops",
        },
    ]
    for stage in spec["stages"]:
        assert (out / stage["path"] / "saved_model.pb").is_file()


@pytest.mark.integration
def test_blazepose_tf_serves_like_blazepose(
    converted: tuple[Path, list[Any]], isolated: dict[str, str], start_worker: Any
) -> None:
    """Served through its spec file by real workers on the tensorflow runtime, the converted
    pair finds the people the bundled TFLite pair finds, at the same keypoints (to within what a
    1e-4 px move of the region does to the uint8 crop)."""
    from conftest import posequeue
    from helpers import load_results

    out, _ = converted
    env = {**isolated, "POSEQUEUE_MODEL_SPECS": str(out / blazepose.SPEC_FILE)}
    fleet = {k: env[k] for k in ("POSEQUEUE_BROKER_URL", "POSEQUEUE_STORE", "POSEQUEUE_MODEL_SPECS")}
    frames = {}
    for model in ("blazepose", "blazepose-tf"):
        worker = start_worker("--model", model, **fleet)
        done = posequeue("submit", str(SAMPLE), "--model", model, "--wait", "--json", env=env, timeout=240)
        worker.stop()
        job = json.loads(done.stdout.splitlines()[-1]) if done.stdout else {"error": done.stderr}
        assert job.get("status") == "done", job
        frames[model] = load_results(env["POSEQUEUE_STORE"], job)["frames"]
    diffs = []
    for ref, got in zip(frames["blazepose"], frames["blazepose-tf"], strict=True):
        assert len(got["people"]) == len(ref["people"]), ref["index"]
        for a, b in zip(ref["people"], got["people"], strict=True):
            diffs.append(np.abs(np.array(a["keypoints"])[:, :2] - np.array(b["keypoints"])[:, :2]))
    d = np.concatenate(diffs).max(axis=1) if diffs else np.zeros(0)
    print(
        json.dumps(
            {
                "frames": len(frames["blazepose"]),
                "people": len(diffs),
                "xy_max_abs_px": float(d.max()),
                "xy_median_px": float(np.median(d)),
            }
        )
    )
    assert len(diffs) >= 60
    # The detectors' regions differ by ~1e-4 px, but cv2's warp samples on a 1/32 px grid and
    # rounds to uint8, so a few crop pixels change by up to ~7 levels and landmarks move up to
    # ~0.3 crop px (measured 0.45 display px at most; 0.01 px with the same crops).
    assert float(d.max()) <= 1.0 and float(np.median(d)) <= 0.02
