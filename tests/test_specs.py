"""Model spec files: what they describe, and the errors a person gets for a wrong one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posequeue.config.catalogue import CATALOGUE, COCO_KEYPOINTS, Coords, Preprocess
from posequeue.config.specs import SpecError, dump_spec, load_spec, spec_files, user_models

pytestmark = pytest.mark.compat

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "anymotion.toml"

BASIC = """
name = "anymotion"
runtime = "neuron"
keypoints = "coco"

[[stages]]
name = "pose"
path = "compiled"
input = "images"
shape = [-1, 256, 192, 3]
outputs = ["coords"]
compiled_batch = 2
dynamic_batch = false
[stages.preprocess]
resize = "letterbox"
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]
channels = "bgr"
[stages.coords]
convention = "pixels"
order = "yx"
min_score = 0.3
"""


def write(tmp_path: Path, text: str, name: str = "model.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_spec_describes_a_single_stage_model(tmp_path: Path) -> None:
    """Every field reaches the model spec; paths are relative to the spec file."""
    spec = load_spec(write(tmp_path, BASIC))
    stage = spec.first_stage
    assert (spec.name, spec.runtime, spec.folder) == ("anymotion", "neuron", tmp_path)
    assert spec.keypoints == COCO_KEYPOINTS
    assert (stage.name, stage.kind, stage.file, stage.input, stage.input_size) == (
        "pose",
        "keypoints",
        "compiled",
        "images",
        (256, 192),
    )
    assert (stage.outputs, stage.compiled_batch, stage.dynamic_batch) == (("coords",), 2, False)
    imagenet = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    assert stage.preprocess == Preprocess("letterbox", 1 / 255, *imagenet, "bgr")
    assert stage.coords == Coords("coords", "pixels", "yx", 0.3)
    assert spec.edges  # the COCO skeleton comes with the set


def test_dump_and_load_give_the_same_spec(tmp_path: Path) -> None:
    """A written spec (convert and compile write them) reads back unchanged."""
    original = load_spec(write(tmp_path, BASIC))
    again = load_spec(write(tmp_path, dump_spec(original), "again.toml"))
    assert again == load_spec(write(tmp_path, dump_spec(again), "again.toml"))
    assert (again.stages, again.keypoints, again.edges, again.runtime) == (
        original.stages,
        original.keypoints,
        original.edges,
        original.runtime,
    )
    bundled = load_spec(write(tmp_path, dump_spec(CATALOGUE["blazepose"]), "bp.toml"))
    assert bundled.stages == CATALOGUE["blazepose"].stages


def test_the_worked_example_in_the_docs_loads() -> None:
    """docs/examples/anymotion.toml, the production team's model, is a valid spec."""
    spec = load_spec(EXAMPLE)
    assert spec.runtime == "neuron" and spec.first_stage.input == "images"
    assert spec.first_stage.input_size == (256, 192) and spec.first_stage.coords.output == "coords"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('runtime = "neuron"', 'runtime = "onnx"'), "'onnx' is not one of tflite, tensorflow, neuron"),
        (("shape = [-1, 256, 192, 3]", "shape = [-1, 256, 192]"), "stage 'pose' shape"),
        (("shape = [-1, 256, 192, 3]", "shape = [-1, -1, -1, 3]"), "height and width fixed"),
        (('keypoints = "coco"', 'keypoints = "mpii"'), "unknown set 'mpii'"),
        (("compiled_batch = 2", "compiled_batch = 0"), "compiled_batch: 0 is not a positive integer"),
        (("compiled_batch = 2", "compiled_batch = true"), "compiled_batch: True is not a positive integer"),
        (("dynamic_batch = false", 'dynamic_batch = "false"'), "dynamic_batch: 'false' is not true or false"),
        (('channels = "bgr"', 'channels = "rgba"'), "channels: 'rgba' is not one of rgb, bgr"),
        (('order = "yx"', 'ordr = "yx"'), "unknown field(s) ordr"),
        (('outputs = ["coords"]', 'output = ["coords"]'), "unknown field(s) output"),
        (("std = [0.229, 0.224, 0.225]", "std = [0.229, 0, 0.225]"), "std not 0"),
        (('path = "compiled"\n', ""), "'path' is required"),
        (('name = "anymotion"\n', ""), "'name' is required"),
        (("[[stages]]", "[[stage]]"), "unknown field(s) stage"),
        (('name = "anymotion"', "name = anymotion"), "not valid TOML"),
        (('name = "anymotion"', 'name = "Pose.V2"'), "'Pose.V2' cannot name queues and workers"),
        (('name = "pose"', 'name = "ingest"'), "ingest is the producers' queue"),
    ],
)
def test_a_wrong_spec_is_refused_naming_the_file_and_field(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    """Each mistake gets an error naming the file and what to change."""
    path = write(tmp_path, BASIC.replace(*change, 1))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_every_mistake_of_a_spec_is_named_at_once(tmp_path: Path) -> None:
    """A spec with several mistakes names each (file, field, allowed values), not only the first."""
    text = BASIC.replace('runtime = "neuron"', 'runtime = "onnx"').replace('order = "yx"', 'order = "zx"')
    text = text.replace("min_score = 0.3", 'min_score = "high"\ncolour = "red"')
    with pytest.raises(SpecError) as err:
        load_spec(write(tmp_path, text))
    head = f"model spec {tmp_path / 'model.toml'}: "
    assert str(err.value).startswith(head)
    assert [line.strip() for line in str(err.value).removeprefix(head).splitlines()] == [
        "runtime: 'onnx' is not one of tflite, tensorflow, neuron",
        "stage 'pose' coords order: 'zx' is not one of xy, yx",
        "stage 'pose' coords min_score: 'high' is not a number",
        "stage 'pose' coords: unknown field(s) colour; known: convention, min_score, order, output",
    ]


def test_dynamic_batching_is_off_by_default_only_for_neuron(tmp_path: Path) -> None:
    """A neuron model takes only its compiled batch unless compiled with dynamic batching
    (tensorflow-neuron's default); a CPU runtime's model takes any batch."""
    text = BASIC.replace("dynamic_batch = false\n", "")
    assert load_spec(write(tmp_path, text)).first_stage.dynamic_batch is False
    cpu = load_spec(write(tmp_path, text.replace('runtime = "neuron"', 'runtime = "tensorflow"')))
    assert cpu.first_stage.dynamic_batch is True


def test_a_list_of_keypoint_names_with_edges(tmp_path: Path) -> None:
    """Keypoints may be named one by one; edges must point at them."""
    text = BASIC.replace('keypoints = "coco"', 'keypoints = ["head", "hand"]\nedges = [[0, 1]]')
    assert load_spec(write(tmp_path, text)).edges == ((0, 1),)
    with pytest.raises(SpecError, match="indices must be in 0..1"):
        load_spec(write(tmp_path, text.replace("[[0, 1]]", "[[0, 2]]")))


def test_spec_folders_and_name_clashes(tmp_path: Path) -> None:
    """POSEQUEUE_MODEL_SPECS takes files and folders; two models of one name are refused."""
    folder = tmp_path / "specs"
    folder.mkdir()
    write(folder, BASIC, "a.toml")
    write(folder, BASIC.replace('"anymotion"', '"other"'), "b.toml")
    assert spec_files(str(folder)) == [folder / "a.toml", folder / "b.toml"]
    assert sorted(user_models(str(folder))) == ["anymotion", "other"]
    clash = write(tmp_path, BASIC, "clash.toml")
    with pytest.raises(SpecError, match="the name 'anymotion' is taken"):
        user_models(f"{folder}:{clash}")
    with pytest.raises(SpecError, match="the name 'blazepose' is taken"):
        user_models(str(write(tmp_path, BASIC.replace('"anymotion"', '"blazepose"'), "bp.toml")))
    with pytest.raises(SpecError, match="does not exist"):
        spec_files(str(tmp_path / "nowhere.toml"))


def test_models_command_lists_and_checks_spec_files(tmp_path: Path) -> None:
    """`posequeue models` shows built-in and spec-file models with their queues; a broken spec
    file is refused (exit 2) naming the file and the field."""
    import os

    from conftest import cli

    write(tmp_path, BASIC)
    env = {**os.environ, "POSEQUEUE_MODEL_SPECS": str(tmp_path)}
    listed = {m["name"]: m for m in json.loads(cli("models", "--json", env=env).stdout)}
    assert listed["blazepose"]["source"] == "built in"
    assert listed["anymotion"]["runtime"] == "neuron"
    assert listed["anymotion"]["source"] == str(tmp_path / "model.toml")
    assert listed["anymotion"]["stages"][0]["queue"] == "pose.anymotion.pose"
    write(tmp_path, BASIC.replace('resize = "letterbox"', 'resize = "crop"'))
    broken = cli("models", env=env)
    assert broken.returncode == 2 and "model.toml: stage 'pose' preprocess resize: 'crop'" in broken.stderr
