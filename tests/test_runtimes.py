"""Runtimes: batches fitted to a model's compiled batch size, and the TensorFlow and Neuron
runtimes on SavedModels of the production team's shape (TensorFlow parts run in the Python 3.10
compat environment, where tensorflow-cpu 2.10.1 is installed; see the Makefile)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from posequeue.worker.runtimes import NEURON_INSTALL, ModelLoadError, make_runtime, run_in_compiled_batches

pytestmark = pytest.mark.compat


def recording_model(compiled: int | None, calls: list[int]):
    """A model that accepts only ``compiled`` frames a call (any number when None) and returns
    each frame's first pixel, so results can be traced back to frames."""

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        calls.append(len(batch))
        if compiled is not None:
            assert len(batch) % compiled == 0
        return {"out": batch[:, 0, 0, 0].copy()}

    return run


@pytest.mark.parametrize("compiled", [1, 2, 4])
@pytest.mark.parametrize("dynamic", [True, False])
@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 9])
def test_batches_fit_the_compiled_size_and_padding_never_reaches_results(
    compiled: int, dynamic: bool, n: int
) -> None:
    """Split (static) or padded in one call (dynamic): every frame's result, in order, no more."""
    calls: list[int] = []
    batch = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1) + 10
    out = run_in_compiled_batches(recording_model(compiled, calls), batch, compiled, dynamic)
    assert out["out"].tolist() == (np.arange(n) + 10).tolist()
    shards = -(-n // compiled)
    assert calls == ([shards * compiled] if dynamic else [compiled] * shards)


def test_an_empty_batch_runs_as_is() -> None:
    calls: list[int] = []
    run_in_compiled_batches(recording_model(None, calls), np.zeros((0, 1, 1, 1)), 4, False)
    assert calls == [0]


def test_unknown_runtime_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown runtime 'onnx'; available: tflite, tensorflow, neuron"):
        make_runtime("onnx", Path("m"), 1)


# -- TensorFlow ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("tensorflow")
    import savedmodels

    root = tmp_path_factory.mktemp("savedmodels")
    return {
        "random": savedmodels.build(root / "random"),
        "brightest": savedmodels.build(root / "brightest", "brightest"),
        "fixed2": savedmodels.build(root / "fixed2", "brightest", batch=2),
    }


def frames_with_dots(points: list[tuple[int, int]]) -> np.ndarray:
    batch = np.zeros((len(points), 256, 192, 3), np.float32)
    for frame, (x, y) in zip(batch, points, strict=True):
        frame[y, x] = 1.0
    return batch


def test_tensorflow_runtime_runs_the_serving_signature(models: dict[str, Path]) -> None:
    """images in, coords out by name; the brightest-spot model finds each frame's dot."""
    runtime = make_runtime("tensorflow", models["brightest"], 2, ("coords",), "images")
    points = [(50, 100), (150, 10), (20, 200)]
    coords = runtime.run(frames_with_dots(points))["coords"]
    assert coords.shape == (3, 17, 2)
    assert np.abs(coords[:, 0] * [192, 256] - np.add(points, 0.5)).max() < 0.01
    random = make_runtime("tensorflow", models["random"], 2)
    noise = np.random.default_rng(1).random((5, 256, 192, 3), np.float32)
    assert random.run(noise)["coords"].shape == (5, 17, 2)


def test_a_fixed_batch_model_gets_exactly_its_batch_size(models: dict[str, Path]) -> None:
    """A model saved with batch 2 runs 1, 3 or 5 frames: split and padded, results per frame."""
    points = [(10, 10), (20, 30), (40, 50), (60, 70), (80, 90)]
    runtime = make_runtime("tensorflow", models["fixed2"], 2, (), "", compiled_batch=2, dynamic_batch=False)
    for n in (1, 3, 5):
        coords = runtime.run(frames_with_dots(points[:n]))["coords"]
        assert np.abs(coords[:, 0] * [192, 256] - np.add(points[:n], 0.5)).max() < 0.01


def test_wrong_input_or_output_names_are_refused_at_load(models: dict[str, Path]) -> None:
    """The spec's names are checked against the signature when the worker starts."""
    with pytest.raises(ModelLoadError, match="has no input 'image'; its inputs: images"):
        make_runtime("tensorflow", models["random"], 2, (), "image")
    with pytest.raises(ModelLoadError, match="has no output\\(s\\) heatmaps; its outputs: coords"):
        make_runtime("tensorflow", models["random"], 2, ("heatmaps",))
    with pytest.raises(ModelLoadError, match="cannot load the SavedModel"):
        make_runtime("tensorflow", models["random"] / "variables", 2)


def test_neuron_runtime_without_tensorflow_neuron_says_how_to_install(models: dict[str, Path]) -> None:
    """No tensorflow-neuron (every machine but an inf1 host): the error tells where to get it."""
    with pytest.raises(ModelLoadError) as err:
        make_runtime("neuron", models["random"], 2)
    assert str(err.value) == NEURON_INSTALL and "pip.repos.neuron.amazonaws.com" in NEURON_INSTALL


def test_neuron_runtime_plumbing_with_stand_in(
    models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plumbing only (no Inferentia here): with a stand-in ``tensorflow.neuron`` module the
    neuron runtime loads the SavedModel by its signature and fits batches to the compiled size."""
    import tensorflow as tf

    stand_in = types.ModuleType("tensorflow.neuron")
    monkeypatch.setitem(sys.modules, "tensorflow.neuron", stand_in)
    monkeypatch.setattr(tf, "neuron", stand_in, raising=False)
    runtime = make_runtime(
        "neuron", models["fixed2"], 2, ("coords",), "images", compiled_batch=2, dynamic_batch=False
    )
    points = [(5, 6), (7, 8), (9, 10)]
    coords = runtime.run(frames_with_dots(points))["coords"]
    assert np.abs(coords[:, 0] * [192, 256] - np.add(points, 0.5)).max() < 0.01


def test_an_empty_batch_gives_empty_outputs_of_the_right_shape(models: dict[str, Path]) -> None:
    """No frame to run (nobody found upstream): empty outputs, without calling TensorFlow (its
    oneDNN kernels fail on an empty batch)."""
    runtime = make_runtime("tensorflow", models["random"], 2)
    assert {k: v.shape for k, v in runtime.run(np.zeros((0, 256, 192, 3), np.float32)).items()} == {
        "coords": (0, 17, 2)
    }
