"""``posequeue convert``: TFLite models rebuilt as TensorFlow SavedModels (for tensorflow-neuron).

``tflite.py`` reads a flatbuffer into numpy, ``ops.py`` rebuilds its operators with TensorFlow,
``savedmodel.py`` saves them behind one serving signature, ``blazepose.py`` converts the bundled
BlazePose pair and writes their model spec, ``parity.py`` measures them against the TFLite
interpreter. TensorFlow is imported only when a conversion runs.
"""

from __future__ import annotations

from types import ModuleType

from posequeue.errors import ConvertError


class UnsupportedOp(ConvertError):
    """An operator (or an operator's option) the converter has no TensorFlow translation for."""


def import_tensorflow() -> ModuleType:
    """TensorFlow, or a ConvertError that says how to install it (the runtimes' own import)."""
    from posequeue.worker.runtimes import ModelLoadError
    from posequeue.worker.runtimes import import_tensorflow as load

    try:
        return load()
    except ModelLoadError as exc:
        raise ConvertError(f"converting needs TensorFlow: {exc}") from None
