"""The bundled model files: verified by SHA-256, fetched with pip, and a clear error offline."""

from __future__ import annotations

import shutil

import pytest

from posequeue.worker.model_cache import FILES, MissingModel, blazepose_dir, sha256

pytestmark = pytest.mark.compat


def test_cached_files_match_their_digests(model_dir) -> None:
    """The fetched files are the ones whose SHA-256 the project pins, with the licence beside."""
    for name, (_, digest) in FILES.items():
        assert sha256(model_dir / name) == digest
    assert "Apache License" in (model_dir / "LICENSE").read_text()


def test_model_dir_by_hand(model_dir, tmp_path) -> None:
    """POSEQUEUE_MODEL_DIR with the right files is used as it is."""
    for name in FILES:
        shutil.copy(model_dir / name, tmp_path / name)
    assert blazepose_dir(tmp_path / "cache", tmp_path) == tmp_path


def test_model_dir_with_wrong_files(tmp_path) -> None:
    """A hand-made folder with wrong files is refused, saying how to provide the right ones."""
    for name in FILES:
        (tmp_path / name).write_bytes(b"not a model")
    with pytest.raises(MissingModel, match="pip download --no-deps mediapipe==0.10.14"):
        blazepose_dir(tmp_path / "cache", tmp_path)


def test_offline_fetch_says_how_to_provide_files(tmp_path, monkeypatch) -> None:
    """With no package index reachable, the error names the wheel, the files and the folder."""
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_NO_INDEX", "0")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    with pytest.raises(MissingModel) as err:
        blazepose_dir(tmp_path / "cache")
    message = str(err.value)
    assert "mediapipe==0.10.14" in message and "POSEQUEUE_MODEL_DIR" in message
    assert "pose_landmark_full.tflite" in message and str(tmp_path / "cache") in message
