"""A user's own model through a spec file, end to end: real Redis, real ``posequeue worker``
processes running the TensorFlow runtime on a SavedModel of the production team's shape
(input ``images`` (-1, 256, 192, 3) -> ``coords``). The model puts every keypoint on the
brightest spot, so the video's white dot says where each keypoint must land on the display.
Runs where TensorFlow is installed (the Python 3.10 compat environment of ``make test``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import savedmodels
import videos
from conftest import SAMPLE, posequeue
from helpers import load_results

pytestmark = [pytest.mark.integration, pytest.mark.compat]
pytest.importorskip("tensorflow")

FLEET = ("POSEQUEUE_BROKER_URL", "POSEQUEUE_STORE", "POSEQUEUE_MODEL_SPECS")


@pytest.fixture(scope="module")
def brightest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return savedmodels.build(tmp_path_factory.mktemp("models") / "brightest", "brightest")


def fleet_env(isolated: dict[str, str], specs: Path) -> dict[str, str]:
    return {**isolated, "POSEQUEUE_MODEL_SPECS": str(specs)}


def submit(video: Path, env: dict[str, str], model: str, *extra: str) -> dict[str, Any]:
    done = posequeue("submit", str(video), "--model", model, "--wait", "--json", *extra, env=env, timeout=180)
    return json.loads(done.stdout.splitlines()[-1]) if done.stdout else {"error": done.stderr}


def displayed_dots(path: Path) -> list[tuple[float, float]]:
    """The dot's centre in each frame as players show it (rotation applied)."""
    with av.open(str(path)) as container:
        return [
            videos.dot_centre(np.rot90(f.to_ndarray(format="rgb24"), k=f.rotation // 90))
            for f in container.decode(video=0)
        ]


@pytest.mark.parametrize(
    ("resize", "rotation", "size"), [("letterbox", 90, (320, 240)), ("stretch", 0, (640, 360))]
)
def test_keypoints_land_on_the_dot_in_display_pixels(
    brightest: Path,
    isolated: dict[str, str],
    start_worker,
    tmp_path: Path,
    resize: str,
    rotation: int,
    size: tuple[int, int],
) -> None:
    """Resize (letterbox or stretch), rotation and batching undone: each frame's keypoints sit
    on the dot, within one model-input pixel; the output follows the contract."""
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "dots.toml").write_text(
        savedmodels.spec_text("dots", str(brightest), extra=f'[stages.preprocess]\nresize = "{resize}"')
    )
    env = fleet_env(isolated, specs)
    start_worker("--model", "dots", **{k: env[k] for k in FLEET})
    video = videos.make_dot_video(
        tmp_path / "dots.mp4", frames=21, width=size[0], height=size[1], rotation=rotation
    )
    job = submit(video, env, "dots", "--batch-size", "4")
    assert job["status"] == "done", job
    result = load_results(env["POSEQUEUE_STORE"], job)
    width, height = (size[1], size[0]) if rotation in (90, 270) else size
    assert (result["video"]["width"], result["video"]["height"]) == (width, height)
    assert result["model"]["name"] == "dots" and len(result["model"]["keypoints"]) == 17
    assert [f["index"] for f in result["frames"]] == list(range(21))
    step = max(width / 192, height / 256)  # one model-input pixel, in display pixels
    for frame, (x, y) in zip(result["frames"], displayed_dots(video), strict=True):
        (person,) = frame["people"]
        points = np.array([k[:2] for k in person["keypoints"]])
        assert points.shape == (17, 2)
        assert np.abs(points - [x, y]).max() <= step, (frame["index"], points[0], (x, y))


def test_a_broken_user_model_fails_its_job_and_the_fleet_goes_on(
    brightest: Path, isolated: dict[str, str], start_worker, tmp_path: Path
) -> None:
    """A spec whose SavedModel is missing: its job fails saying which path is missing, and the
    workers go on with the next job."""
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "dots.toml").write_text(savedmodels.spec_text("dots", str(brightest)))
    (specs / "broken.toml").write_text(savedmodels.spec_text("broken", "no/such/model"))
    env = fleet_env(isolated, specs)
    start_worker("--model", "dots", **{k: env[k] for k in FLEET})
    start_worker("--model", "broken", "--stage", "pose", **{k: env[k] for k in FLEET})
    video = videos.make_dot_video(tmp_path / "dots.mp4", frames=8)
    failed = submit(video, env, "broken")
    assert failed["status"] == "failed"
    assert "no/such/model" in failed["error"] and "does not exist" in failed["error"], failed
    assert submit(video, env, "dots")["status"] == "done"


def test_an_unknown_user_model_is_refused_at_submit(isolated: dict[str, str], tmp_path: Path) -> None:
    """Without the spec on the producer host, the model name is refused, saying where specs go."""
    done = posequeue("submit", str(SAMPLE), "--model", "dots", "--json", env=isolated)
    assert done.returncode == 2
    said = done.stdout + done.stderr
    assert "unknown model 'dots'" in said and "POSEQUEUE_MODEL_SPECS" in said
