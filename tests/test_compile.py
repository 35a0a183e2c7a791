"""``posequeue compile`` (posequeue.neuron): argument plumbing into tensorflow-neuron.

No test here compiles anything for Inferentia: tensorflow-neuron exists only for inf1 hosts (and
not on PyPI), so its calls go to tests/tfn_standin.py, which records them and compiles nothing.
What is checked: the checks before the compile call, what posequeue passes to tfn.trace and
tfn.saved_model.compile, and what it does with their results (the saved signature, the spec,
the report). TensorFlow is needed: these tests run in the Python 3.10 environment with
tensorflow-cpu 2.10.1 (the inf1 release's TensorFlow) and are skipped elsewhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import savedmodels  # noqa: E402
import tfn_standin  # noqa: E402

from posequeue.cli import main  # noqa: E402
from posequeue.config.specs import load_spec  # noqa: E402
from posequeue.neuron.checks import SAVED_MODEL_COMPILE, CompileError, Options, prepare, scope_matcher  # noqa: E402
from posequeue.neuron.cli import parse_input_shape  # noqa: E402
from posequeue.neuron.compile import run  # noqa: E402
from posequeue.worker.runtimes import NEURON_INSTALL, make_runtime  # noqa: E402

pytestmark = pytest.mark.compat

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def tfn(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The stand-in as ``tensorflow.neuron`` for this test, its call log emptied."""
    tfn_standin.CALLS.clear()
    monkeypatch.setitem(sys.modules, "tensorflow.neuron", tfn_standin)
    return tfn_standin


@pytest.fixture
def no_tfn(monkeypatch: pytest.MonkeyPatch) -> None:
    """No tensorflow-neuron importable, as on any host but an inf1 one."""
    monkeypatch.setitem(sys.modules, "tensorflow.neuron", None)


@pytest.fixture(scope="module")
def pose_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The production team's shape of model: images (-1, 256, 192, 3) -> coords, scope coords."""
    return savedmodels.build(tmp_path_factory.mktemp("models") / "pose")


@pytest.fixture(scope="module")
def open_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same with height and width left open: (-1, ?, ?, 3)."""
    return savedmodels.build(tmp_path_factory.mktemp("models") / "open", shape=(None, None))


def compile_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["compile", *args])
    out, err = capsys.readouterr()
    return code, out, err


def frames(n: int, shape: tuple[int, int] = savedmodels.SHAPE) -> np.ndarray:
    return np.random.default_rng(3).random((n, *shape, 3)).astype(np.float32)


def in_coords_scope(name: str) -> bool:
    return "coords" in name.split("/")[:-1] or name.endswith("/coords") or name.startswith("coords/")


# -- pure parts -----------------------------------------------------------------------------
def test_scope_matcher_matches_whole_scopes() -> None:
    """A pattern matches a whole scope anywhere in an op name, never part of one."""
    matches = scope_matcher(("coords",))
    assert matches("coords/Shape") and matches("StatefulPartitionedCall/coords/Sum/reduction")
    assert not matches("coords_head/Conv2D") and not matches("mycoords/Sum")
    assert scope_matcher(("Conv2D.*",))("a/Conv2D_1") and not scope_matcher(("Conv2D",))("a/Conv2D_1")


def test_bad_pattern_and_input_shape_refused() -> None:
    """A pattern that is no regular expression and a malformed --input-shape name the mistake."""
    with pytest.raises(CompileError, match=r"--no-fuse '\(' is not a regular expression"):
        scope_matcher(("(",))
    assert parse_input_shape("images=-1,128,96,3") == ("images", (-1, 128, 96, 3))
    for bad in ("images", "images=a,b", "=1,2", "images=1,0,3", "images=-2,4"):
        with pytest.raises(CompileError, match="NAME=D0,D1"):
            parse_input_shape(bad)


# -- a SavedModel ---------------------------------------------------------------------------
def test_savedmodel_trace_plumbing_with_stand_in(
    tfn: Any, pose_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A SavedModel: tfn.trace gets batch-4 example inputs and a subgraph_builder_function that
    keeps exactly the ops of name scope coords on the CPU; OUT holds the compiled SavedModel, a
    neuron spec and a report naming them."""
    out = tmp_path / "out"
    code, stdout, err = compile_cli(capsys, str(pose_model), "-o", str(out), "--batch-size", "4")
    assert code == 0, err
    (call,) = tfn.CALLS
    assert call["api"] == "trace" and call["example_shapes"] == [[4, 256, 192, 3]]
    assert call["example_dtypes"] == ["float32"] and "--dynamic-batch-size" not in call["neuron_cc_flags"]
    cpu = call["cpu_ops"]  # what the builder function said about the traced graph's real nodes
    assert cpu and all(in_coords_scope(op) for op in cpu)
    assert any(op.endswith("coords/Sum") for op in cpu) and not any("Conv2D" in op for op in cpu)

    report = json.loads((out / "compile-report.json").read_text())
    (stage,) = report["stages"]
    assert report["api"] == "tfn.trace" and report["spec"] == "pose-neuron.toml"
    assert report["arguments"] == {
        "batch_size": 4,
        "dynamic_batch": False,
        "no_fuse": ["coords"],
        "input_shapes": {},
        "name": None,
    }
    assert report["versions"]["tensorflow"] == "2.10.1"
    assert report["versions"]["tensorflow-neuron"] == tfn_standin.__version__
    assert stage["no_fuse_ops"] == cpu and 0 < stage["on_neuron_ratio"] < 1  # the stand-in's share
    assert stage["inputs"] == {"images": [4, 256, 192, 3]} and stage["outputs"] == ["coords"]
    assert report["seconds"] >= stage["seconds"] > 0
    assert json.loads(stdout)["spec"] == "pose-neuron.toml"

    spec = load_spec(out / "pose-neuron.toml")
    assert spec.runtime == "neuron" and spec.name == "pose-neuron" and len(spec.keypoints) == 17
    (pose,) = spec.stages
    assert (pose.file, pose.input, pose.input_size) == ("pose", "images", (256, 192))
    assert (pose.compiled_batch, pose.dynamic_batch) == (4, False)
    assert not list(tmp_path.glob(".out.partial-*"))  # the work folder became OUT


@pytest.mark.parametrize("dynamic", [False, True], ids=["fixed", "dynamic"])
def test_compiled_model_runs_on_neuron_runtime_with_stand_in(
    tfn: Any, pose_model: Path, tmp_path: Path, dynamic: bool
) -> None:
    """The stand-in's compiled model, loaded from the written spec by the neuron runtime, keeps
    serving_default with input images and output coords and gives the original's coords (5
    frames: cut into batches of 4, or padded to 8 with dynamic batching)."""
    out = tmp_path / "out"
    options = Options(batch_size=4, dynamic_batch=dynamic)
    run(prepare(pose_model, out, options, tf), tf, tfn)
    assert ("--dynamic-batch-size" in tfn.CALLS[0]["neuron_cc_flags"]) is dynamic
    spec = load_spec(out / "pose-neuron.toml")
    stage = spec.stages[0]
    assert stage.dynamic_batch is dynamic
    signature = tf.saved_model.load(str(out / "pose")).signatures["serving_default"]
    (spec_in,) = signature.structured_input_signature[1].values()
    assert spec_in.name == "images" and spec_in.shape[0] == (None if dynamic else 4)
    assert list(signature.structured_outputs) == ["coords"]

    assert spec.folder is not None
    compiled = make_runtime(
        "neuron",
        spec.folder / stage.file,
        1,
        stage.outputs,
        stage.input,
        stage.compiled_batch,
        stage.dynamic_batch,
    )
    original = make_runtime("tensorflow", pose_model, 1)
    batch = frames(5)
    got, want = compiled.run(batch)["coords"], original.run(batch)["coords"]
    assert got.shape == (5, 17, 2)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_custom_no_fuse_patterns_plumbing_with_stand_in(
    tfn: Any, pose_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--no-fuse patterns replace the default: the convolutions go to the CPU, coords does not;
    a pattern matching no op is refused, naming the model's scopes."""
    code, _, err = compile_cli(
        capsys,
        str(pose_model),
        "-o",
        str(tmp_path / "a"),
        "--batch-size",
        "1",
        "--no-fuse",
        "Conv2D.*",
        "Relu",
    )
    assert code == 0, err
    cpu = tfn.CALLS[0]["cpu_ops"]
    ends = {op.rsplit("/", 1)[-1] for op in cpu}  # the ops, and those in their scopes (weight reads)
    assert {"Conv2D", "Conv2D_1", "Relu"} <= ends and not any(in_coords_scope(op) for op in cpu)
    assert all(scope_matcher(("Conv2D.*", "Relu"))(op) for op in cpu)
    report = json.loads((tmp_path / "a" / "compile-report.json").read_text())
    assert report["arguments"]["no_fuse"] == ["Conv2D.*", "Relu"]
    assert report["stages"][0]["no_fuse_ops"] == cpu

    code, _, err = compile_cli(
        capsys, str(pose_model), "-o", str(tmp_path / "b"), "--batch-size", "1", "--no-fuse", "coord"
    )
    assert code == 2 and "--no-fuse 'coord' matches no operation" in err and "coords" in err
    assert not (tmp_path / "b").exists() and len(tfn.CALLS) == 1


def test_input_shape_fills_example_inputs_plumbing_with_stand_in(
    tfn: Any, open_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model with unknown height and width: --input-shape gives tfn.trace its example shape
    (the batch -1 becoming the compiled batch size), and the spec that size."""
    out = tmp_path / "out"
    code, _, err = compile_cli(
        capsys, str(open_model), "-o", str(out), "--batch-size", "2", "--input-shape", "images=-1,128,96,3"
    )
    assert code == 0, err
    assert tfn.CALLS[0]["example_shapes"] == [[2, 128, 96, 3]]
    assert load_spec(out / "open-neuron.toml").stages[0].input_size == (128, 96)


def test_missing_input_shape_refused_naming_the_input(
    tfn: Any, open_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unknown dimensions and no --input-shape: refused (exit 2) naming the input and the option;
    a wrong --input-shape is refused too; nothing compiled, no OUT."""
    out = tmp_path / "out"
    code, _, err = compile_cli(capsys, str(open_model), "-o", str(out), "--batch-size", "2")
    assert code == 2
    assert "input 'images' has shape (?, ?, ?, 3)" in err and "--input-shape images=2,256,192,3" in err
    code, _, err = compile_cli(
        capsys, str(open_model), "-o", str(out), "--batch-size", "2", "--input-shape", "image=-1,128,96,3"
    )
    assert code == 2 and "--input-shape names image, which no model input is" in err
    code, _, err = compile_cli(
        capsys, str(open_model), "-o", str(out), "--batch-size", "2", "--input-shape", "images=-1,128,96,4"
    )
    assert code == 2 and "dimension 3 is 4" in err
    assert not tfn.CALLS and not out.exists()


def plain_model(path: Path, signature: str = "serving_default") -> Path:
    """A model without a coords scope: coords straight from the picture's first pixels."""
    module = tf.Module()
    spec = tf.TensorSpec((None, 8, 8, 3), tf.float32, name="images")
    module.serve = tf.function(lambda images: {"coords": images[:, :4, 0, :2]}, input_signature=[spec])
    tf.saved_model.save(module, str(path), signatures={signature: module.serve})
    return path


def test_default_no_fuse_matching_nothing_leaves_placement_to_tfn(tfn: Any, tmp_path: Path) -> None:
    """A model without a coords scope: no subgraph_builder_function, so tfn.trace places the ops
    itself (a builder function would replace its placement), and the report lists no op."""
    checked = prepare(plain_model(tmp_path / "plain"), tmp_path / "out", Options(batch_size=2), tf)
    report = run(checked, tf, tfn)
    (call,) = tfn.CALLS
    assert call["subgraph_builder_function"] is False and call["example_shapes"] == [[2, 8, 8, 3]]
    assert report["stages"][0]["no_fuse_ops"] == []


def test_not_a_servable_savedmodel_refused(
    tfn: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder without saved_model.pb, and a SavedModel without serving_default (the signature
    the worker calls), are refused, naming the folder and what it has."""
    (tmp_path / "empty").mkdir()
    out = str(tmp_path / "o")
    code, _, err = compile_cli(capsys, str(tmp_path / "empty"), "-o", out, "--batch-size", "1")
    assert code == 2 and "is a folder without saved_model.pb" in err
    model = plain_model(tmp_path / "predict", signature="predict")
    code, _, err = compile_cli(capsys, str(model), "-o", out, "--batch-size", "1")
    assert code == 2 and "has no serving_default signature (its signatures: predict)" in err
    assert not tfn.CALLS


def test_fixed_batch_of_another_size_refused(
    tfn: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model exported with batch 1 cannot be compiled for batch 4: refused, saying both fixes."""
    model = savedmodels.build(tmp_path / "b1", batch=1)
    code, _, err = compile_cli(capsys, str(model), "-o", str(tmp_path / "out"), "--batch-size", "4")
    assert code == 2 and "fixed batch of 1: compile with --batch-size 1" in err and not tfn.CALLS


def test_existing_output_refused(
    tfn: Any, pose_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """tensorflow-neuron writes a new folder: an existing OUT is refused and left alone."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep").write_text("x")
    code, _, err = compile_cli(capsys, str(pose_model), "-o", str(out), "--batch-size", "1")
    assert code == 2 and f"{out} exists" in err and not tfn.CALLS
    assert [p.name for p in out.iterdir()] == ["keep"]


# -- the TensorFlow 1 API -------------------------------------------------------------------
def test_saved_model_compile_plumbing_with_stand_in(tfn: Any, tmp_path: Path) -> None:
    """tfn.saved_model.compile (TensorFlow 1.15's API; here forced, under 2.10) on a TensorFlow 1
    SavedModel with open height and width: batch_size, dynamic_batch_size, no_fuse_ops (the coords
    ops of its graph) and model_feed_dict (from --input-shape); its copy then runs on the neuron
    runtime with the original's coords."""
    model = savedmodels.build_v1(tmp_path / "v1", shape=(None, None))
    out = tmp_path / "out"
    options = Options(batch_size=4, dynamic_batch=True, input_shapes={"images": (-1, 64, 48, 3)})
    checked = prepare(model, out, options, tf, api=SAVED_MODEL_COMPILE)
    report = run(checked, tf, tfn)
    (call,) = tfn.CALLS
    assert call["api"] == "saved_model.compile" and call["model_dir"] == str(model)
    assert Path(call["new_model_dir"]).name == "pose" and not Path(call["new_model_dir"]).exists()
    assert call["batch_size"] == 4 and call["dynamic_batch_size"] is True
    assert call["model_feed_dict"] == {"images": {"shape": [4, 64, 48, 3], "dtype": "float32"}}
    assert call["no_fuse_ops"] and all(op.startswith("coords/") for op in call["no_fuse_ops"])
    assert "coords/Sum" in call["no_fuse_ops"]
    assert report["api"] == "tfn.saved_model.compile" and report["stages"][0]["on_neuron_ratio"] == tfn.RATIO

    stage = load_spec(out / "v1-neuron.toml").stages[0]
    compiled = make_runtime(
        "neuron", out / stage.file, 1, (), stage.input, stage.compiled_batch, stage.dynamic_batch
    )
    batch = frames(3, (64, 48))
    want = make_runtime("tensorflow", model, 1).run(batch)["coords"]
    np.testing.assert_allclose(compiled.run(batch)["coords"], want, atol=1e-6)


def test_saved_model_compile_without_open_dimensions_gets_no_feed(tfn: Any, tmp_path: Path) -> None:
    """model_feed_dict only when some input has unknown dimensions (the production team's call
    without it); no_fuse_ops left out when no op matches."""
    model = savedmodels.build_v1(tmp_path / "v1")
    with pytest.raises(CompileError, match="matches no operation"):
        prepare(
            model,
            tmp_path / "out",
            Options(batch_size=1, no_fuse=("nothing_here",)),
            tf,
            api=SAVED_MODEL_COMPILE,
        )
    run(prepare(model, tmp_path / "out", Options(batch_size=1), tf, api=SAVED_MODEL_COMPILE), tf, tfn)
    (call,) = tfn.CALLS
    assert call["model_feed_dict"] is None and call["batch_size"] == 1 and call["no_fuse_ops"]


def test_compiler_failure_leaves_no_output(
    tfn: Any,
    monkeypatch: pytest.MonkeyPatch,
    pose_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """tensorflow-neuron raising: exit 1 naming the model, no OUT and no work folder left, so the
    same command can run again."""

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("neuron-cc exited with 70")

    monkeypatch.setattr(tfn, "trace", fail)
    out = tmp_path / "out"
    code, _, err = compile_cli(capsys, str(pose_model), "-o", str(out), "--batch-size", "1")
    assert code == 1 and f"compiling {pose_model} failed (RuntimeError: neuron-cc exited with 70)" in err
    assert list(tmp_path.iterdir()) == []


def test_compiled_model_with_other_names_fails(
    tfn: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A compiled model whose serving_default lost the original output names fails the compile:
    the worker reads its outputs by name."""
    model = savedmodels.build_v1(tmp_path / "v1")

    def rename_outputs(model_dir: str, new_model_dir: str, **kwargs: Any) -> dict[str, float]:
        monkeypatch.setattr(savedmodels, "OUTPUT", "heatmaps")
        savedmodels.build(Path(new_model_dir))
        return {"OnNeuronRatio": 1.0}

    monkeypatch.setattr(tfn.saved_model, "compile", rename_outputs)
    checked = prepare(model, tmp_path / "out", Options(batch_size=1), tf, api=SAVED_MODEL_COMPILE)
    with pytest.raises(RuntimeError, match="serving_default outputs are heatmaps, not coords"):
        run(checked, tf, tfn)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1"]


# -- a model spec ---------------------------------------------------------------------------
SPEC = """name = "twostage"
runtime = "tensorflow"
keypoints = "coco"

[[stages]]
name = "coarse"
kind = "keypoints"
path = "models/coarse"
input = "images"
shape = [-1, 256, 192, 3]
outputs = ["coords"]
[stages.preprocess]
resize = "letterbox"
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]
[stages.coords]
min_score = 0.2

[[stages]]
name = "fine"
kind = "keypoints"
path = "models/fine"
shape = [-1, 128, 96, 3]
payload = "crops"
"""


def test_spec_plumbing_with_stand_in(tfn: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A two-stage spec: each stage compiled to OUT/<stage> (the second's open height and width
    from the spec's shape), and a spec with runtime neuron, the same stages, preprocessing and
    keypoints, paths relative to it."""
    savedmodels.build(tmp_path / "models" / "coarse")
    savedmodels.build(tmp_path / "models" / "fine", shape=(None, None))
    (tmp_path / "twostage.toml").write_text(SPEC)
    out = tmp_path / "compiled"
    code, _, err = compile_cli(
        capsys,
        str(tmp_path / "twostage.toml"),
        "-o",
        str(out),
        "--batch-size",
        "8",
        "--dynamic-batch",
        "--name",
        "twostage-inf1",
    )
    assert code == 0, err
    assert [c["example_shapes"] for c in tfn.CALLS] == [[[8, 256, 192, 3]], [[8, 128, 96, 3]]]
    assert all("--dynamic-batch-size" in c["neuron_cc_flags"] for c in tfn.CALLS)
    assert os.environ.get("NEURON_CC_FLAGS") is None  # set for the trace only

    original, compiled = load_spec(tmp_path / "twostage.toml"), load_spec(out / "twostage-inf1.toml")
    assert compiled.runtime == "neuron" and compiled.keypoints == original.keypoints
    for before, after in zip(original.stages, compiled.stages, strict=True):
        assert after.file == before.name and (out / after.file / "saved_model.pb").is_file()
        assert (after.compiled_batch, after.dynamic_batch, after.input) == (8, True, "images")
        assert (after.kind, after.payload, after.preprocess, after.coords, after.input_size) == (
            before.kind,
            before.payload,
            before.preprocess,
            before.coords,
            before.input_size,
        )
    report = json.loads((out / "compile-report.json").read_text())
    assert [s["name"] for s in report["stages"]] == ["coarse", "fine"]


def test_spec_shape_disagreeing_with_the_model_refused(tfn: Any, pose_model: Path, tmp_path: Path) -> None:
    """A spec whose shape is not the model's fixed size: refused before compiling (the worker would
    feed pictures of the wrong size)."""
    spec = tmp_path / "wrong.toml"
    spec.write_text(savedmodels.spec_text("wrong", str(pose_model)).replace("256, 192", "128, 96"))
    with pytest.raises(CompileError, match=r"is \(\?, 256, 192, 3\) but the spec's shape says 128x96"):
        prepare(spec, tmp_path / "out", Options(batch_size=1), tf)
    assert not tfn.CALLS


def test_tflite_spec_refused_saying_convert_first(
    tfn: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A spec on the tflite runtime: refused, pointing at `posequeue convert blazepose`."""
    (tmp_path / "m.tflite").write_bytes(b"")
    (tmp_path / "lite.toml").write_text(
        'name = "lite"\nruntime = "tflite"\nkeypoints = "coco"\n\n'
        '[[stages]]\nname = "pose"\npath = "m.tflite"\n'
        "shape = [-1, 256, 192, 3]\n"
    )
    code, _, err = compile_cli(
        capsys, str(tmp_path / "lite.toml"), "-o", str(tmp_path / "o"), "--batch-size", "1"
    )
    assert code == 2 and "its runtime is tflite" in err and "posequeue convert blazepose" in err


# -- without tensorflow-neuron, without TensorFlow ------------------------------------------
def test_without_tensorflow_neuron_stops_after_the_checks(
    no_tfn: None, pose_model: Path, open_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No tensorflow-neuron: the model is read and checked (its stages printed), then exit 2 with how
    to install it, and no OUT; a mistake in the arguments is still reported as that mistake."""
    out = tmp_path / "out"
    code, stdout, err = compile_cli(capsys, str(pose_model), "-o", str(out), "--batch-size", "4")
    assert code == 2 and not stdout and not out.exists()
    assert "pose: " in err and "input images as (4, 256, 192, 3)" in err and "ops kept on the CPU" in err
    assert f"error: checked, but not compiled: {NEURON_INSTALL}" in err
    code, _, err = compile_cli(capsys, str(open_model), "-o", str(out), "--batch-size", "4")
    assert code == 2 and "--input-shape" in err and NEURON_INSTALL not in err


def test_without_tensorflow_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, pose_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No TensorFlow at all: exit 2 with the command that installs it."""
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    code, _, err = compile_cli(capsys, str(pose_model), "-o", str(tmp_path / "out"), "--batch-size", "1")
    assert code == 2 and "TensorFlow is not installed" in err and "pip install tensorflow-cpu" in err


def test_command_line_plumbing_with_stand_in(pose_model: Path, tmp_path: Path) -> None:
    """The installed `posequeue compile` command, the stand-in imported as tensorflow.neuron through
    PYTHONPATH: exit 0, the call logged, the JSON summary on stdout."""
    log = tmp_path / "calls.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": f"{TESTS / 'neuron_standin'}{os.pathsep}{TESTS}",
        "TFN_STANDIN_LOG": str(log),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    argv = [
        sys.executable,
        "-m",
        "posequeue.cli",
        "compile",
        str(pose_model),
        "-o",
        str(tmp_path / "out"),
        "--batch-size",
        "2",
        "--dynamic-batch",
    ]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    (call,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert call["example_shapes"] == [[2, 256, 192, 3]] and "--dynamic-batch-size" in call["neuron_cc_flags"]
    assert json.loads(proc.stdout.splitlines()[-1])["spec"] == "pose-neuron.toml"
