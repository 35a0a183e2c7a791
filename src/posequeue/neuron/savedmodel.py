"""What ``posequeue compile`` needs to know about a SavedModel before compiling it: the serving
signature's inputs and outputs (names, types, shapes) and the names of the graph's operations.

Read from ``saved_model.pb`` itself rather than by loading the model, so it works the same under
TensorFlow 1.15 and 2.x and loads no variables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posequeue.errors import SavedModelError

SERVING = "serving_default"  # the signature posequeue's runtimes call (worker/runtimes.py)


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a signature: its name there, its type and its shape
    (None for a dimension not fixed; ``shape`` None when even the rank is unknown)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...] | None


@dataclass(frozen=True)
class Signature:
    """A SavedModel's ``serving_default`` signature, and the operations of its main graph
    (a TensorFlow 1 graph's own ops; TensorFlow 2 keeps its ops in functions instead)."""

    path: Path
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    graph_ops: tuple[str, ...]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def input(self, name: str) -> TensorInfo:
        return next(t for t in self.inputs if t.name == name)


def is_savedmodel(path: Path) -> bool:
    return (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file()


def read_signature(path: Path, tf: Any) -> Signature:
    """The serving signature of the SavedModel at ``path`` (its ``serve`` MetaGraph)."""
    meta = _serving_meta_graph(path, tf)
    signature = meta.signature_def.get(SERVING)
    if signature is None:
        known = ", ".join(k for k in meta.signature_def if not k.startswith("__")) or "none"
        raise SavedModelError(
            f"{path} has no {SERVING} signature (its signatures: {known}); posequeue "
            f"feeds a model by that signature: re-export it with "
            f"signatures={{'{SERVING}': ...}}"
        )

    def tensors(infos: Any) -> tuple[TensorInfo, ...]:
        return tuple(_tensor(tf, name, infos[name]) for name in sorted(infos))

    return Signature(
        path=path,
        inputs=tensors(signature.inputs),
        outputs=tensors(signature.outputs),
        graph_ops=tuple(node.name for node in meta.graph_def.node),
    )


def _serving_meta_graph(path: Path, tf: Any) -> Any:
    from google.protobuf import text_format
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    binary, text = path / "saved_model.pb", path / "saved_model.pbtxt"
    try:
        if binary.is_file():
            proto.ParseFromString(binary.read_bytes())
        elif text.is_file():
            text_format.Parse(text.read_text(), proto)
        else:
            raise SavedModelError(f"{path} is not a SavedModel folder (no saved_model.pb in it)")
    except OSError as exc:
        raise SavedModelError(f"cannot read the SavedModel at {path}: {exc.strerror}") from None
    except (DecodeError, text_format.ParseError) as exc:
        raise SavedModelError(f"{path}: its saved_model file is not a SavedModel ({exc})") from None
    for meta in proto.meta_graphs:
        if "serve" in meta.meta_info_def.tags:
            return meta
    tags = [list(m.meta_info_def.tags) for m in proto.meta_graphs]
    raise SavedModelError(
        f"{path} has no MetaGraph tagged 'serve' (its tag sets: {tags}); export it for serving"
    )


def _tensor(tf: Any, name: str, info: Any) -> TensorInfo:
    dims = info.tensor_shape
    shape = None if dims.unknown_rank else tuple(d.size if d.size >= 0 else None for d in dims.dim)
    return TensorInfo(name=name, dtype=tf.dtypes.as_dtype(info.dtype).name, shape=shape)
