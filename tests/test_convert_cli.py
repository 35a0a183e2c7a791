"""``posequeue convert``: the command starts without TensorFlow and says how to install it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from posequeue.cli import build_parser, main
from posequeue.convert import ConvertError, import_tensorflow

pytestmark = pytest.mark.compat


@pytest.fixture
def no_tensorflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` raises ImportError


def test_parser_has_convert_without_tensorflow(no_tensorflow: None) -> None:
    """The command line parses ``convert blazepose -o DIR --check`` without importing TensorFlow."""
    args = build_parser().parse_args(["convert", "blazepose", "-o", "out/tf", "--check"])
    assert args.model == "blazepose" and args.output == Path("out/tf") and args.check
    with pytest.raises(SystemExit):
        build_parser().parse_args(["convert", "movenet", "-o", "x"])  # only the bundled model


def test_missing_tensorflow_says_how_to_install(no_tensorflow: None) -> None:
    """Without TensorFlow, the error names the package and version to install."""
    with pytest.raises(ConvertError, match=r"pip install tensorflow-cpu==2\.10\.1 on Python 3\.10"):
        import_tensorflow()


def test_convert_without_tensorflow_is_refused(
    no_tensorflow: None, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``posequeue convert`` exits 2 with the install hint and writes nothing."""
    assert main(["convert", "blazepose", "-o", str(tmp_path / "tf")]) == 2
    assert "pip install tensorflow-cpu==2.10.1" in capsys.readouterr().err
    assert not (tmp_path / "tf").exists()
