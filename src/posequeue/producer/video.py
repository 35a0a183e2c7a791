"""Video input as players show it: probe, and stream frames with their presentation times.

PyAV decodes (any codec FFmpeg has); frames are streamed packet by packet, never loaded whole.
A packet that fails to decode is skipped and counted, not fatal.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

from posequeue.errors import VideoError
from posequeue.store import StoreError, open_video

SEEK_TRIES = 4  # seeks further back before decoding from the start


@dataclass
class VideoInfo:
    """What the probe learns; ``width``/``height`` are of the displayed (rotated) picture."""

    width: int
    height: int
    coded_width: int
    coded_height: int
    rotation: int  # degrees counter-clockwise to turn the coded picture upright
    fps: float
    duration: float | None
    frame_count: int  # an estimate from the container; the ingest counts the real number
    codec: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Decoded:
    """One decoded frame: its presentation time and the frame itself."""

    pts: int | None
    t: float
    frame: av.VideoFrame


@dataclass
class DecodeStats:
    corrupt_packets: int = 0
    corrupt_frames: int = 0
    seek_fallbacks: int = 0
    ended: bool = False  # the last read reached the end of the stream


def _open(source: str) -> av.container.InputContainer:
    try:
        return av.open(open_video(source), mode="r")
    except StoreError:
        raise  # S3 unreachable or the object missing: the caller decides (retry, or refuse)
    except FileNotFoundError:
        raise VideoError(f"{source}: no such file") from None
    except av.error.FFmpegError as exc:
        raise VideoError(f"{source}: not a readable video ({_reason(exc)})") from None
    except OSError as exc:
        raise VideoError(f"{source}: cannot be read ({exc})") from None


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def _video_stream(container: av.container.InputContainer, source: str) -> av.VideoStream:
    if not container.streams.video:
        kinds: list[str] = sorted({str(s.type) for s in container.streams}) or ["no streams"]
        raise VideoError(f"{source}: has no video stream (found: {', '.join(kinds)})")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame and slice threads; decoding is the producer's main cost
    return stream


def rotation_of(frame: av.VideoFrame) -> int:
    """The display rotation in degrees counter-clockwise, one of 0, 90, 180, 270."""
    angle = getattr(frame, "rotation", 0) or 0
    return int(round(angle / 90.0)) % 4 * 90


def upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Turn a decoded (coded-orientation) picture the way players show it."""
    return np.rot90(rgb, k=rotation // 90) if rotation else rgb


def probe(source: str) -> VideoInfo:
    """Check that ``source`` is a video with a decodable video stream; raise VideoError if not."""
    with _open(source) as container:
        stream = _video_stream(container, source)
        first = next(iter_frames(container, stream, DecodeStats(), limit_packets=500), None)
        if first is None:
            raise VideoError(f"{source}: the video stream has no decodable frame")
        rotation = rotation_of(first.frame)
        coded_w, coded_h = first.frame.width, first.frame.height
        rate = stream.average_rate or stream.guessed_rate or 0
        if stream.duration and stream.time_base:
            duration: float | None = float(stream.duration * stream.time_base)
        else:
            duration = container.duration / av.time_base if container.duration else None
        fps = float(rate)
        count = stream.frames or (round(duration * fps) if duration and fps else 0)
        swapped = rotation in (90, 270)
        return VideoInfo(
            width=coded_h if swapped else coded_w,
            height=coded_w if swapped else coded_h,
            coded_width=coded_w,
            coded_height=coded_h,
            rotation=rotation,
            fps=round(fps, 3),
            duration=round(duration, 3) if duration else None,
            frame_count=int(count),
            codec=stream.codec_context.codec.canonical_name,  # 'av1', not 'libdav1d'
        )


def iter_frames(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    stats: DecodeStats,
    limit_packets: int | None = None,
) -> Iterator[Decoded]:
    """Decode packet by packet so one bad packet costs one packet, not the rest of the video."""
    base = stream.start_time or 0
    tb = stream.time_base or Fraction(1, 1)
    index = 0
    fps = float(stream.average_rate or stream.guessed_rate or 30)
    # AVI stores no presentation times: with B-frames the frames come out in display order but
    # carry decode-order guesses (e.g. 1, 2, 4, 3, ...). There one frame is one tick, so number
    # frames from the last keyframe's packet dts: monotonic, and the same after any seek.
    renumber = container.format.name == "avi"
    key_dts: dict[int, int] = {}
    next_pts: int | None = None
    for n, packet in enumerate(container.demux(stream)):
        if limit_packets is not None and n >= limit_packets:
            return
        if renumber and packet.is_keyframe and packet.pts is not None and packet.dts is not None:
            key_dts[packet.pts] = packet.dts
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            stats.corrupt_packets += 1
            continue
        for frame in frames:
            if getattr(frame, "is_corrupt", False):
                stats.corrupt_frames += 1
            pts = frame.pts
            if renumber and pts is not None:
                if frame.key_frame or next_pts is None:
                    next_pts = key_dts.pop(pts, pts)
                pts, next_pts = next_pts, next_pts + 1
            # streams without timestamps: assume a constant rate
            t = index / fps if pts is None else float((pts - base) * tb)
            index += 1
            yield Decoded(pts, max(t, 0.0), frame)


def read_segment(
    source: str,
    after_pts: int | None,
    seconds: float,
    stats: DecodeStats,
    max_frames: int = 100_000,
    skip: int = 0,
) -> Iterator[Decoded]:
    """Yield the frames after ``after_pts`` that start within ``seconds`` of the first one.

    Seeks to the keyframe at or before ``after_pts``; if the container cannot seek exactly (the
    first frame decoded lies beyond ``after_pts``) it decodes from the start instead, so no
    frame is ever lost or repeated. Streams without timestamps are read in one segment unless
    the reader stops early (the memory budget): the next one then starts from the beginning
    (``after_pts`` None) and ``skip`` the frames already taken.
    """
    with _open(source) as container:
        stream = _video_stream(container, source)
        frames = _frames_after(container, stream, after_pts, stats)
        if after_pts is None and skip:
            frames = itertools.islice(frames, skip, None)
        start_t: float | None = None
        for n, item in enumerate(frames):
            if start_t is None:
                start_t = item.t
            elif item.pts is not None and (item.t - start_t >= seconds or n >= max_frames):
                return
            yield item
        stats.ended = True


def _frames_after(
    container: av.container.InputContainer, stream: av.VideoStream, after_pts: int | None, stats: DecodeStats
) -> Iterator[Decoded]:
    if after_pts is None:
        yield from iter_frames(container, stream, stats)
        return
    target, step = after_pts, 1
    for _ in range(SEEK_TRIES):
        try:
            container.seek(target, stream=stream, backward=True, any_frame=False)
        except av.error.FFmpegError:
            break
        it = iter_frames(container, stream, stats)
        first = next(it, None)
        if first is None:
            return
        if first.pts is None or first.pts <= after_pts:
            yield from (f for f in _chain(first, it) if f.pts is not None and f.pts > after_pts)
            return
        # Overshot (e.g. open GOPs, whose leading frames need the keyframe before): step back.
        step = max(step * 2, first.pts - after_pts + 1)
        target = max(0, after_pts - step)
    # Seeking does not work for this container: decode from the start.
    stats.seek_fallbacks += 1
    container.seek(0, stream=stream, backward=True, any_frame=False)
    yield from (f for f in iter_frames(container, stream, stats) if f.pts is not None and f.pts > after_pts)


def _chain(first: Decoded, rest: Iterator[Decoded]) -> Iterator[Decoded]:
    yield first
    yield from rest
