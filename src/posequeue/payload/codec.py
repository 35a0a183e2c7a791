"""How a batch's pixels travel through Redis: the producer encodes, the stage decodes.

Two codecs (``POSEQUEUE_PAYLOAD_CODEC``), recorded in the batch's meta (``BatchMeta.payload``)
so that every reader decodes what was written, and a worker that does not know a codec says so:

- ``raw``: the working frames as one uint8 array (2.76 MB per 1280x720 frame).
- ``jpeg`` (default, BlazePose): the detector's letterboxed 224x224 input exactly as the worker
  would make it (lossless: the detector's region moves by per cents when any of its input pixels
  changes by one level, measured in docs/performance.md), cut to the rows and columns that are
  not black bars, followed by each working frame as a JPEG at ``POSEQUEUE_PAYLOAD_QUALITY``
  (4:2:0; the landmark crops are cut from these, and the landmark model shrugs off what the
  detector does not). About 0.2-0.5 MB per 1280x720 frame instead of 2.76.

A model whose first stage is not BlazePose's detector (a user's ``keypoints`` model) always
travels ``raw``: its frames are already shrunk to the model's input, and lossy pixels would
move its keypoints.

Layout of ``jpeg``'s blob: the detector rows ``box`` (top, bottom, left, right of the kept
region of the 224x224 inputs, the same for the whole batch: frames of a batch share a size),
then the JPEGs back to back, their ``lengths`` in the meta.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

RAW = "raw"
JPEG = "jpeg"
CODECS = (RAW, JPEG)
LOSSY_KIND = "blazepose-detector"  # the only first stage whose frames may travel as JPEG


class PayloadError(ValueError):
    """A batch's payload this process cannot read (another posequeue version wrote it)."""


@dataclass(frozen=True)
class Encoded:
    blob: bytes
    meta: dict[str, Any]  # goes into BatchMeta.payload


def encode(frames: np.ndarray, codec: str, first_stage_kind: str, quality: int) -> Encoded:
    """A batch of working frames (n, h, w, 3) uint8 as one blob and its layout."""
    if codec == RAW or first_stage_kind != LOSSY_KIND:
        return Encoded(np.ascontiguousarray(frames).tobytes(), {"codec": RAW})
    if codec != JPEG:
        raise PayloadError(f"POSEQUEUE_PAYLOAD_CODEC={codec!r} is not a codec; use one of {CODECS}")
    import simplejpeg

    from posequeue.worker.blazepose import letterboxed

    boxed = letterboxed(frames)
    top, bottom = _span(np.asarray(boxed.any(axis=(0, 2, 3))))
    left, right = _span(np.asarray(boxed.any(axis=(0, 1, 3))))
    kept = np.ascontiguousarray(boxed[:, top:bottom, left:right])
    jpegs = [simplejpeg.encode_jpeg(np.ascontiguousarray(f), quality, "RGB", "420") for f in frames]
    meta = {
        "codec": JPEG,
        "quality": quality,
        "box": [top, bottom, left, right],
        "lengths": [len(j) for j in jpegs],
    }
    return Encoded(b"".join([kept.tobytes(), *jpegs]), meta)


def _span(nonzero: np.ndarray) -> tuple[int, int]:
    """First and one past the last True; (0, 1) when all are False (an all-black batch)."""
    hits = np.flatnonzero(nonzero)
    return (int(hits[0]), int(hits[-1]) + 1) if len(hits) else (0, 1)


class Payload:
    """One batch's pixels as a stage reads them: decoded on first use, once."""

    def __init__(self, blob: bytes, meta: dict[str, Any], count: int, work: tuple[int, int]) -> None:
        self.blob, self.count, (self.width, self.height) = blob, count, work
        self.codec = meta.get("codec", RAW)
        if self.codec not in CODECS:
            raise PayloadError(
                f"payload codec {self.codec!r} is unknown to this worker (it knows {CODECS}); "
                "are producers and workers running the same posequeue version?"
            )
        self.meta = meta
        self._frames: np.ndarray | None = None

    def frames(self) -> np.ndarray:
        """The working frames, (n, h, w, 3) uint8."""
        if self._frames is None:
            self._frames = self._decode()
        return self._frames

    def detector_input(self) -> np.ndarray | None:
        """The detector's letterboxed uint8 inputs as the producer made them, or None when the
        payload carries frames only (the stage letterboxes them)."""
        if self.codec != JPEG:
            return None
        from posequeue.worker.detector import INPUT_SIZE

        top, bottom, left, right = self.meta["box"]
        shape = (self.count, bottom - top, right - left, 3)
        kept = np.frombuffer(self.blob, np.uint8, count=int(np.prod(shape))).reshape(shape)
        boxed = np.zeros((self.count, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
        boxed[:, top:bottom, left:right] = kept
        return boxed

    def _decode(self) -> np.ndarray:
        shape = (self.count, self.height, self.width, 3)
        if self.codec == RAW:
            return np.frombuffer(self.blob, np.uint8).reshape(shape)
        import simplejpeg

        top, bottom, left, right = self.meta["box"]
        offset = self.count * (bottom - top) * (right - left) * 3
        out = np.empty(shape, np.uint8)
        view = memoryview(self.blob)
        for i, length in enumerate(self.meta["lengths"]):
            simplejpeg.decode_jpeg(view[offset : offset + length], "RGB", buffer=out[i])
            offset += length
        return out
