"""Payload codec candidates side by side: bytes per working frame, encode and decode CPU ms per
frame (one thread), and the keypoints' accuracy against MediaPipe when the frames go through
the codec before both stages (in process, no queue).

Candidates: raw (today), zstd and lz4 of the raw pixels (lossless), JPEG at several qualities
(simplejpeg, OpenCV, Pillow; all libjpeg-turbo) with 4:2:0 or 4:4:4 chroma, WebP. Frames are
1280x720 working frames of `tests/videos.make_person_video` (the sample upscaled: smoother than
a camera's picture), and the same frames with Gaussian noise (sigma 3) added, a stand-in for a
camera's sensor noise, which costs JPEG bytes.

The candidates' accuracy runs every frame through the codec, the detector's input included;
``--shipped-only`` measures posequeue's own codecs as they ship (``jpeg``: the detector's input
exact, the frames for the crops as JPEG).

Usage: python benchmarks/payload_codecs.py [--frames 32] [--skip-accuracy] [--shipped-only] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

Codec = tuple[Callable[[np.ndarray], bytes], Callable[[bytes, tuple[int, ...]], np.ndarray]]


def candidates() -> dict[str, Codec]:
    """Name -> (encode, decode) for every codec whose library is installed."""
    out: dict[str, Codec] = {"raw": (lambda a: a.tobytes(), _raw_decode)}
    try:
        import zstandard

        for level in (1, 3):
            c, d = zstandard.ZstdCompressor(level=level), zstandard.ZstdDecompressor()
            out[f"zstd{level}"] = (
                lambda a, c=c: c.compress(a.tobytes()),
                lambda b, s, d=d: _raw_decode(d.decompress(b), s),
            )
    except ImportError:
        pass
    try:
        import lz4.frame

        out["lz4"] = (
            lambda a: lz4.frame.compress(a.tobytes()),
            lambda b, s: _raw_decode(lz4.frame.decompress(b), s),
        )
    except ImportError:
        pass
    try:
        import simplejpeg

        for q in (85, 90, 95):
            for sub in ("420", "444"):
                out[f"simplejpeg_q{q}_{sub}"] = (
                    lambda a, q=q, sub=sub: simplejpeg.encode_jpeg(a, q, "RGB", sub),
                    lambda b, s: simplejpeg.decode_jpeg(b, "RGB"),
                )
        out["simplejpeg_q90_420_fastdct"] = (
            lambda a: simplejpeg.encode_jpeg(a, 90, "RGB", "420", fastdct=True),
            lambda b, s: simplejpeg.decode_jpeg(b, "RGB", fastdct=True, fastupsample=True),
        )
    except ImportError:
        pass
    import cv2

    for q in (90, 95):
        params = [
            cv2.IMWRITE_JPEG_QUALITY,
            q,
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
        ]
        out[f"opencv_jpeg_q{q}_420"] = (
            lambda a, p=params: cv2.imencode(".jpg", a[..., ::-1], p)[1].tobytes(),
            lambda b, s: cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)[..., ::-1],
        )
    out["opencv_webp_q90"] = (
        lambda a: cv2.imencode(".webp", a[..., ::-1], [cv2.IMWRITE_WEBP_QUALITY, 90])[1].tobytes(),
        lambda b, s: cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)[..., ::-1],
    )
    try:
        import io

        from PIL import Image

        def pil_encode(a: np.ndarray) -> bytes:
            buf = io.BytesIO()
            Image.fromarray(a).save(buf, "JPEG", quality=95, subsampling=2)
            return buf.getvalue()

        out["pillow_jpeg_q95_420"] = (pil_encode, lambda b, s: np.asarray(Image.open(io.BytesIO(b))))
    except ImportError:
        pass
    return out


def _raw_decode(data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(data, np.uint8).reshape(shape)


def working_frames(video: Path, count: int) -> list[np.ndarray]:
    from posequeue.producer.preprocess import work_frame
    from posequeue.producer.video import DecodeStats, read_segment, rotation_of

    frames = []
    for item in read_segment(str(video), None, 1e9, DecodeStats()):
        frames.append(work_frame(item.frame, rotation_of(item.frame), 1280))
        if len(frames) == count:
            break
    return frames


def cost(codec: Codec, frames: list[np.ndarray]) -> dict[str, float]:
    """Bytes per frame and one thread's CPU ms per frame to encode and to decode."""
    encode, decode = codec
    encode(frames[0])  # warm up
    started = time.thread_time()
    blobs = [encode(f) for f in frames]
    encoded = time.thread_time() - started
    started = time.thread_time()
    back = [decode(b, f.shape) for b, f in zip(blobs, frames, strict=True)]
    decoded = time.thread_time() - started
    diff = [np.abs(a.astype(np.int16) - f).mean() for a, f in zip(back, frames, strict=True)]
    return {
        "bytes_per_frame": round(sum(map(len, blobs)) / len(blobs)),
        "ratio_to_raw": round(sum(map(len, blobs)) / sum(f.nbytes for f in frames), 4),
        "encode_ms_per_frame": round(1000 * encoded / len(frames), 2),
        "decode_ms_per_frame": round(1000 * decoded / len(frames), 2),
        "mean_abs_pixel_error": round(float(np.mean(diff)), 3),
    }


def accuracy(codec: Codec | str, quality: int = 98) -> dict[str, Any]:
    """Both stages in process on every accuracy video's working frames, compared with
    MediaPipe's keypoints (tests/accuracy.py): either every frame through a candidate ``codec``
    (the detector's input included), or, given a name (``raw``, ``jpeg``), a batch through
    posequeue's own payload codec as the producer writes it and the stages read it."""
    from accuracy import compare, frame_error, reference, videos

    from posequeue.config.schemas import BatchMeta
    from posequeue.payload.codec import encode as ship
    from posequeue.producer.preprocess import display_size, work_frame
    from posequeue.producer.video import DecodeStats, read_segment, rotation_of
    from posequeue.worker import stages

    detector, landmarks = stages.load("blazepose", "detector"), stages.load("blazepose", "landmarks")
    figures: dict[str, Any] = {}
    pooled: list[float] = []
    agree: list[bool] = []
    for video in videos():
        items = []
        for item in read_segment(str(video), None, 1e9, DecodeStats()):
            rotation = rotation_of(item.frame)
            items.append((work_frame(item.frame, rotation, 1280), display_size(item.frame, rotation)))
        frames: list[dict[str, Any]] = []
        for start in range(0, len(items), 8):
            chunk = items[start : start + 8]
            pixels = np.stack([p for p, _ in chunk])
            h, w = pixels.shape[1:3]
            meta = BatchMeta(
                "j", 0, list(range(len(chunk))), [0.0] * len(chunk), chunk[0][1], (w, h), "blazepose"
            )
            if isinstance(codec, str):
                encoded = ship(pixels, codec, "blazepose-detector", quality)
                blob, meta.payload = encoded.blob, encoded.meta
            else:
                blob = np.stack([codec[1](codec[0](p), p.shape) for p in pixels]).tobytes()
            result = detector.run({"frames": blob}, meta)
            if result.people is None:
                result = landmarks.run(result.payload, meta)
            frames += [{"people": p} for p in result.people or []]
        ref = reference(video)
        figures[video.stem] = compare(frames, ref)
        for frame, theirs in zip(frames, ref, strict=True):
            ours = frame["people"][0]["keypoints"] if frame["people"] else None
            agree.append((ours is None) == (theirs is None))
            if ours is not None and theirs is not None:
                pooled.append(frame_error(ours, theirs)[0])
    return {
        "pooled_median_error_visible": round(float(np.median(pooled)), 4),
        "pooled_person_found_agreement": round(float(np.mean(agree)), 3),
        "videos": figures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated codec names")
    parser.add_argument("--out", default="")
    parser.add_argument(
        "--shipped-only", action="store_true", help="only the accuracy of posequeue's own codecs (raw, jpeg)"
    )
    args = parser.parse_args()
    if args.shipped_only:
        print(json.dumps({name: accuracy(name) for name in ("raw", "jpeg")}, indent=2))
        return
    import videos

    codecs = candidates()
    if args.only:
        codecs = {k: v for k, v in codecs.items() if k in args.only.split(",")}
    with tempfile.TemporaryDirectory() as tmp:
        video = videos.make_person_video(
            Path(tmp) / "v.mp4", seconds=args.frames / 30, width=1280, height=720
        )
        frames = working_frames(video, args.frames)
    rng = np.random.default_rng(0)
    noisy = [np.clip(f + rng.normal(0, 3, f.shape), 0, 255).astype(np.uint8) for f in frames]
    results: dict[str, Any] = {}
    for name, codec in codecs.items():
        results[name] = {"1280x720": cost(codec, frames), "1280x720_noise_sigma3": cost(codec, noisy)}
        if not args.skip_accuracy:
            results[name]["accuracy"] = accuracy(codec)
        print(name, json.dumps(results[name]["1280x720"]), file=sys.stderr)
    text = json.dumps(results, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
