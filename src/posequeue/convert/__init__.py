"""``posequeue convert``: TFLite models rebuilt as TensorFlow SavedModels (for tensorflow-neuron).

``tflite.py`` reads a flatbuffer into numpy, ``ops.py`` rebuilds its operators with TensorFlow,
``savedmodel.py`` saves them behind one serving signature, ``blazepose.py`` converts the bundled
BlazePose pair and writes their model spec, ``parity.py`` measures them against the TFLite
interpreter. TensorFlow is imported only when a conversion runs.
"""

from __future__ import annotations

from types import ModuleType

INSTALL_TENSORFLOW = ("pip install tensorflow-cpu==2.10.1 on Python 3.10 (the version "
                      "tensorflow-neuron builds on), or any TensorFlow 2.x")  # fmt: skip


class ConvertError(RuntimeError):
    """A model that cannot be converted here; the message names the model and what to do."""


class UnsupportedOp(ConvertError):
    """An operator (or an operator's option) the converter has no TensorFlow translation for."""


def import_tensorflow() -> ModuleType:
    """TensorFlow, or a ConvertError that says how to install it."""
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise ConvertError(f"converting needs TensorFlow, which is not installed here: "
                           f"{INSTALL_TENSORFLOW}") from exc  # fmt: skip
    return tf
