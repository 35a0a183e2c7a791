"""The payload codecs: what the producer writes is what the stages read."""

from __future__ import annotations

import numpy as np
import pytest

from posequeue.config.schemas import BatchMeta
from posequeue.payload.codec import Payload, PayloadError, encode
from posequeue.worker.blazepose import letterboxed


def smooth_frames(n: int, width: int = 640, height: int = 360) -> np.ndarray:
    """Frames like a camera's: smooth gradients and a bright moving block (JPEG's kind of
    picture, unlike random noise)."""
    y, x = np.mgrid[0:height, 0:width]
    frames = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        frames[i, ..., 0] = (x * 255 // width + 10 * i) % 256
        frames[i, ..., 1] = y * 255 // height
        frames[i, ..., 2] = 128
        frames[i, 100:200, 50 + 20 * i : 150 + 20 * i] = (240, 220, 200)
    return frames


def test_raw_round_trip_is_exact() -> None:
    """The raw codec gives back the very frames, and the stage letterboxes them itself."""
    frames = smooth_frames(3)
    encoded = encode(frames, "raw", "blazepose-detector", 98)
    payload = Payload(encoded.blob, encoded.meta, 3, (640, 360))
    assert encoded.meta == {"codec": "raw"} and len(encoded.blob) == frames.nbytes
    assert np.array_equal(payload.frames(), frames)
    assert payload.detector_input() is None


def test_jpeg_keeps_the_detector_input_exact_and_frames_close() -> None:
    """The jpeg codec carries the detector's letterboxed input bit for bit (bars cut off) and
    frames within a level or two, in under a quarter of the raw bytes."""
    frames = smooth_frames(4)
    encoded = encode(frames, "jpeg", "blazepose-detector", 98)
    payload = Payload(encoded.blob, encoded.meta, 4, (640, 360))
    detector_input = payload.detector_input()
    assert detector_input is not None and np.array_equal(detector_input, letterboxed(frames))
    assert np.abs(payload.frames().astype(np.int16) - frames).mean() < 2.0
    assert len(encoded.blob) < frames.nbytes / 4
    assert encoded.meta["box"][0] > 0  # the bars of a 16:9 frame do not travel


def test_portrait_frames_cut_the_side_bars() -> None:
    """A portrait batch keeps the detector input's middle columns and rebuilds the bars as black."""
    frames = smooth_frames(2, width=180, height=320)
    encoded = encode(frames, "jpeg", "blazepose-detector", 95)
    top, bottom, left, right = encoded.meta["box"]
    assert (top, bottom) == (0, 224) and left > 0 and right < 224
    detector_input = Payload(encoded.blob, encoded.meta, 2, (180, 320)).detector_input()
    assert detector_input is not None and np.array_equal(detector_input, letterboxed(frames))


def test_user_models_travel_raw() -> None:
    """Frames for a user's keypoints model stay raw whatever the setting: lossy pixels would move
    its keypoints, and its frames are already shrunk to the model's input."""
    frames = smooth_frames(2, 192, 256)
    assert encode(frames, "jpeg", "keypoints", 98).meta == {"codec": "raw"}


def test_unknown_codec_names_the_fix() -> None:
    """A batch written with a codec this worker does not know fails with a message that points
    at mixed versions, not with garbage pixels."""
    with pytest.raises(PayloadError, match="same posequeue version"):
        Payload(b"", {"codec": "av1"}, 1, (4, 4))


def test_meta_from_an_older_producer_reads_as_raw() -> None:
    """Batches written before codecs existed (no ``payload`` in their meta) decode as raw."""
    meta = BatchMeta.from_dict(
        {
            "job_id": "j",
            "index": 0,
            "frames": [0],
            "times": [0.0],
            "display": [4, 4],
            "work": [4, 4],
            "model": "m",
        }
    )
    assert meta.payload == {"codec": "raw"}
