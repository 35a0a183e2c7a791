"""Video input as players show it: probe, and stream frames with their presentation times.

PyAV decodes (any codec FFmpeg has); frames are streamed packet by packet, never loaded whole.
A packet that fails to decode is skipped and counted, not fatal.
"""

from __future__ import annotations

import itertools
import os
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
    last_t: float | None = None  # presentation time of the last frame read


@dataclass(frozen=True)
class Limits:
    """What one job may ask of a producer (``POSEQUEUE_MAX_FRAME_PIXELS``, ``..._MAX_VIDEO_SECONDS``,
    ``..._DECODER_MB``); 0 means no limit."""

    max_frame_pixels: int = 0
    max_seconds: float = 0.0
    decoder_mb: int = 0

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        return cls(settings.max_frame_pixels, settings.max_video_seconds, settings.decoder_mb)

    def check_frame(self, source: str, width: int, height: int) -> None:
        """Refuse a picture larger than the limit, naming it and the setting."""
        if self.max_frame_pixels and width * height > self.max_frame_pixels:
            raise LimitError(
                f"{source}: {width}x{height} frames ({width * height:,} pixels) exceed the limit of "
                f"{self.max_frame_pixels:,} pixels per frame (POSEQUEUE_MAX_FRAME_PIXELS); scale the "
                "video down first, or raise the limit where producers have the memory"
            )

    def check_time(self, source: str, seconds: float) -> None:
        """Refuse a video longer than the limit, naming it and the setting."""
        if self.max_seconds and seconds > self.max_seconds:
            raise LimitError(
                f"{source}: {seconds:.0f} s of video exceed the limit of {self.max_seconds:.0f} s per "
                "job (POSEQUEUE_MAX_VIDEO_SECONDS); cut it into parts, or raise the limit"
            )

    def check(self, source: str, info: VideoInfo) -> None:
        self.check_frame(source, info.coded_width, info.coded_height)
        if info.duration:
            self.check_time(source, info.duration)

    def decoder_threads(self, width: int, height: int) -> int:
        """Decoder threads within ``decoder_mb``: FFmpeg's frame threads each hold pictures of
        their own (about two 4:2:0 pictures per thread), so a large picture gets fewer threads
        rather than a larger process; 0 lets FFmpeg choose (one per core)."""
        if not self.decoder_mb or width <= 0 or height <= 0:
            return 0
        per_thread = 2 * width * height * 3 // 2
        return max(1, min(os.cpu_count() or 1, self.decoder_mb * 2**20 // per_thread))


class LimitError(VideoError):
    """The video is larger or longer than a producer accepts (a setting names the limit)."""


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


def _video_stream(
    container: av.container.InputContainer, source: str, limits: Limits | None = None
) -> av.VideoStream:
    if not container.streams.video:
        kinds: list[str] = sorted({str(s.type) for s in container.streams}) or ["no streams"]
        raise VideoError(f"{source}: has no video stream (found: {', '.join(kinds)})")
    stream = container.streams.video[0]
    limits = limits or Limits()
    width, height = stream.codec_context.width, stream.codec_context.height
    limits.check_frame(source, width, height)  # before the decoder allocates a picture
    threads = limits.decoder_threads(width, height)
    if threads:
        stream.codec_context.thread_count = threads
    stream.thread_type = "AUTO"  # frame and slice threads; decoding is the producer's main cost
    return stream


def rotation_of(frame: av.VideoFrame) -> int:
    """The display rotation in degrees counter-clockwise, one of 0, 90, 180, 270."""
    angle = getattr(frame, "rotation", 0) or 0
    return int(round(angle / 90.0)) % 4 * 90


def upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Turn a decoded (coded-orientation) picture the way players show it."""
    return np.rot90(rgb, k=rotation // 90) if rotation else rgb


def probe(source: str, limits: Limits | None = None) -> VideoInfo:
    """Check that ``source`` is a video with a decodable video stream within ``limits``; raise
    VideoError (LimitError for a limit) if not."""
    with _open(source) as container:
        stream = _video_stream(container, source, limits)
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
        info = VideoInfo(
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
    (limits or Limits()).check(source, info)
    return info


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
    limits: Limits | None = None,
    skip: int = 0,
) -> Iterator[Decoded]:
    """Yield the frames after ``after_pts`` that start within ``seconds`` of the first one.

    Seeks to the keyframe at or before ``after_pts``; if the container cannot seek exactly (the
    first frame decoded lies beyond ``after_pts``) it decodes from the start instead, so no
    frame is ever lost or repeated. Streams without timestamps are read in one segment unless
    the reader stops early (the memory budget): the next one then starts from the beginning
    (``after_pts`` None) and ``skip`` the frames already taken. ``limits`` are checked on every
    frame as decoded (a header may understate them).
    """
    limits = limits or Limits()
    with _open(source) as container:
        stream = _video_stream(container, source, limits)
        frames = _frames_after(container, stream, after_pts, stats)
        if after_pts is None and skip:
            frames = itertools.islice(frames, skip, None)
        start_t: float | None = None
        for n, item in enumerate(frames):
            if start_t is None:
                start_t = item.t
            elif item.pts is not None and (item.t - start_t >= seconds or n >= max_frames):
                return
            limits.check_frame(source, item.frame.width, item.frame.height)
            limits.check_time(source, item.t)
            stats.last_t = item.t
            yield item
        stats.ended = True


def damage_warnings(info: dict[str, Any], frames: int, last_t: float | None, stats: DecodeStats) -> list[str]:
    """What a person should know about a video that decoded with damage: a stream that ends
    before the container's duration (a file cut off), corrupt packets skipped, pictures
    decoded damaged. ``info``: the probe's ``VideoInfo`` as a dict; ``frames``: frames decoded."""
    warnings = []
    duration, fps = info.get("duration"), info.get("fps") or 0.0
    if duration and last_t is not None:
        period = 1.0 / fps if fps else 0.0
        end = last_t + period
        # Containers round their duration; two frames (or 2%) short is a cut, not rounding.
        if duration - end > max(2 * period, 0.02 * duration):
            expected = f"~{info['frame_count']}" if info.get("frame_count") else "the"
            warnings.append(
                f"decoded {frames} of {expected} frames: the stream ends at {end:.2f} s of "
                f"{duration:.2f} s (the file is cut off or damaged)"
            )
    if stats.corrupt_packets:
        warnings.append(f"{stats.corrupt_packets} corrupt packets skipped (their frames are missing)")
    if stats.corrupt_frames:
        warnings.append(f"{stats.corrupt_frames} frames decoded with damage (concealed by the decoder)")
    return warnings


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
