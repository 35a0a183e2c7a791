"""Deterministic synthetic test videos, written with PyAV (needs only ``av``, ``numpy``, stdlib).

Every picture made by :func:`draw_frame` carries:

* a horizontal grey gradient background;
* a red ``cell x cell``*2 marker in the stored top-left corner (for orientation checks);
* a white square that moves left to right with the frame index (``pattern="moving"``);
* the frame index as ``INDEX_BITS`` black/white cells along the bottom edge (LSB first),
  which :func:`read_frame_index` reads back, so decode order and dropped frames can be checked.

Rotation (``make_video(..., rotation=R)`` for .mp4/.mov), verified with PyAV 18.1 / FFmpeg 8:
``R`` is the clockwise display rotation a phone stores in the ``tkhd`` matrix (QuickTime maps
``x' = a*x + c*y + tx``, ``y' = b*x + d*y + ty``, y pointing down). PyAV's ``frame.rotation``
is ``av_display_rotation_get`` (counterclockwise degrees), i.e. ``EXPECTED_PYAV_ROTATION[R]``:
R=0 -> 0, R=90 -> -90, R=180 -> -180, R=270 -> 90. The decoded array is the *stored* picture;
the upright displayed picture (what ffmpeg autorotate / players show; for -90 ffmpeg applies
``transpose=clock``) is ``numpy.rot90(array, k=frame.rotation // 90)`` -- k=-1 (clockwise)
for R=90, k=-2 for R=180, k=1 (counterclockwise) for R=270. Equivalently ``k = -R // 90``.
Stored frames keep their encoded size (e.g. 320x240 even when displayed portrait).

Other notes: .webm only takes vp9/av1 (PyAV raises ValueError otherwise), .avi no hevc.
VFR times are exact to the mp4 time base (1/15360 s here) but rounded to 1 ms in mkv/webm.
Audio (``audio=True``): AAC in mp4/mov/mkv, Opus in webm, MP3 in avi; mono 48 kHz 440 Hz.
"""

from __future__ import annotations

import functools
import os
import random
import struct
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

CODECS = ("h264", "hevc", "vp9", "av1", "mjpeg")
INDEX_BITS = 12
EXPECTED_PYAV_ROTATION = {0: 0, 90: -90, 180: -180, 270: 90}

_ENCODERS = {
    "h264": ("libx264", "libopenh264", "h264"),
    "hevc": ("libx265", "hevc"),
    "vp9": ("libvpx-vp9", "vp9"),
    "av1": ("libsvtav1", "libaom-av1", "librav1e", "av1"),
    "mjpeg": ("mjpeg",),
}
_FAST_OPTIONS = {
    # mbtree=0: with mb-tree, libx264 output here varied run to run (non-reproducible files)
    "libx264": {"preset": "veryfast", "x264-params": "mbtree=0"},
    "libx265": {"preset": "ultrafast", "x265-params": "log-level=none"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"},
    "libsvtav1": {"preset": "12"},
    "libaom-av1": {"cpu-used": "8", "usage": "realtime"},
}
_AUDIO_ENCODERS = {
    ".webm": ("libopus", "opus"),
    ".avi": ("libmp3lame", "mp3", "pcm_s16le"),
    ".wav": ("pcm_s16le",),
}
_DEFAULT_AUDIO = ("aac", "libfdk_aac", "libopus", "libmp3lame")
_FORMATS = {
    ".mp4": "mp4",
    ".mov": "mov",
    ".m4a": "mp4",
    ".mkv": "matroska",
    ".webm": "webm",
    ".avi": "avi",
    ".wav": "wav",
}
_SAMPLE_RATE = 48000
_BITEXACT = {"fflags": "+bitexact"}  # no random UIDs / timestamps: byte-identical files


def _can_encode(name: str) -> bool:
    """True if this FFmpeg build has an encoder called ``name``."""
    try:
        return av.Codec(name, "w").is_encoder
    except Exception:
        return False


def _encoder(codec: str) -> str:
    """The first available encoder name for a codec family, or raise ValueError."""
    for name in _ENCODERS.get(codec, (codec,)):
        if name in av.codecs_available and _can_encode(name):
            return name
    raise ValueError(f"no encoder for {codec!r} in this PyAV/FFmpeg build")


@functools.cache
def available_codecs() -> tuple[str, ...]:
    """Which of CODECS this PyAV build can actually encode (trial-encodes 2 tiny frames)."""
    ok = []
    with tempfile.TemporaryDirectory() as tmp:
        for codec in CODECS:
            try:
                make_video(Path(tmp, f"{codec}.mkv"), codec=codec, width=64, height=64, frames=2)
            except Exception:
                continue
            ok.append(codec)
    return tuple(ok)


def vfr_times(frames: int, fps: int) -> list[float]:
    """Presentation times (s) used for vfr=True: gaps alternate 1x and 3x the 1/fps interval."""
    ticks = [0]
    for i in range(1, frames):
        ticks.append(ticks[-1] + (1 if i % 2 else 3))
    return [t / fps for t in ticks]


def _cell(width: int, height: int) -> int:
    """Size in pixels of one index bit / half the orientation marker."""
    return max(4, min(width // (INDEX_BITS + 2), height // 10, 24)) // 2 * 2


def draw_frame(i: int, width: int, height: int, pattern: str = "moving") -> np.ndarray:
    """RGB uint8 picture (height, width, 3) for frame ``i``; see the module docstring."""
    c = _cell(width, height)
    ramp = np.linspace(40, 200, width, dtype=np.float32)
    img = np.empty((height, width, 3), np.uint8)
    img[:] = ramp.astype(np.uint8)[None, :, None]
    if pattern == "noise":
        rng = np.random.default_rng(i)
        img[: height - 2 * c] = rng.integers(0, 256, (height - 2 * c, width, 3), np.uint8)
    elif pattern == "moving":
        side = max(2 * c, height // 4) // 2 * 2
        span = max(1, width - side)
        x = (i * 8) % span
        y = (height - side) // 2
        img[y : y + side, x : x + side] = 255
    elif pattern != "static":
        raise ValueError(f"unknown pattern {pattern!r}")
    img[: 2 * c, : 2 * c] = (230, 20, 20)  # orientation marker, stored top-left
    img[height - c :, :] = 0
    for b in range(INDEX_BITS):
        if (i >> b) & 1:
            img[height - c :, (b + 1) * c : (b + 2) * c] = 255
    return img


def read_frame_index(rgb: np.ndarray) -> int:
    """The frame index drawn by draw_frame, read from a decoded stored-orientation RGB array."""
    height, width = rgb.shape[:2]
    c = _cell(width, height)
    row = rgb[height - c // 2, :, :].mean(axis=-1)
    return sum(1 << b for b in range(INDEX_BITS) if row[(b + 1) * c + c // 2] > 128)


def _pix_fmt(encoder: str) -> str:
    """yuv420p when the encoder takes it, else its first supported format."""
    fmts = [f.name for f in (av.Codec(encoder, "w").video_formats or ())]
    return "yuv420p" if not fmts or "yuv420p" in fmts else fmts[0]


def _add_video(container, encoder, width, height, fps, gop=None, options=None):
    """Add and configure a video stream; returns it."""
    if encoder == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints banners to stdout otherwise
    opts = dict(_FAST_OPTIONS.get(encoder, {}))
    opts.update(options or {})
    stream = container.add_stream(encoder, rate=fps, options=opts)
    stream.width, stream.height = width, height
    stream.pix_fmt = _pix_fmt(encoder)
    stream.codec_context.time_base = Fraction(1, fps)
    if gop:
        stream.codec_context.gop_size = gop
    if encoder == "mjpeg":
        stream.codec_context.color_range = 2  # JPEG/full range, required by FFmpeg >= 7
    return stream


def _add_audio(container, suffix):
    """Add a mono 48 kHz audio stream with an encoder suited to the container."""
    for name in _AUDIO_ENCODERS.get(suffix, _DEFAULT_AUDIO):
        if _can_encode(name):
            stream = container.add_stream(name, rate=_SAMPLE_RATE)
            stream.layout = "mono"
            return stream
    raise ValueError(f"no audio encoder for {suffix}")


def _tone(start: int, stop: int) -> av.AudioFrame:
    """A 440 Hz sine tone for samples [start, stop) as a mono fltp frame with pts=start."""
    t = np.arange(start, stop, dtype=np.float64) / _SAMPLE_RATE
    data = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
    frame = av.AudioFrame.from_ndarray(data, format="fltp", layout="mono")
    frame.sample_rate, frame.pts, frame.time_base = _SAMPLE_RATE, start, Fraction(1, _SAMPLE_RATE)
    return frame


def _flush(container, stream):
    """Drain an encoder into the container."""
    container.mux(stream.encode(None))


def make_video(
    path,
    *,
    codec="h264",
    width=320,
    height=240,
    fps=30,
    frames=30,
    rotation=0,
    vfr=False,
    audio=False,
    pattern="moving",
    gop=None,
    options=None,
) -> Path:
    """Encode ``frames`` draw_frame pictures; container from the suffix (.mp4 .mov .mkv .webm .avi).

    rotation R (mp4/mov only) makes PyAV report ``frame.rotation == EXPECTED_PYAV_ROTATION[R]``
    (0->0, 90->-90, 180->-180, 270->90); ``np.rot90(rgb, k=frame.rotation // 90)`` is upright.
    vfr=True gives the presentation times ``vfr_times(frames, fps)`` (not allowed for .avi).
    """
    if rotation not in EXPECTED_PYAV_ROTATION:
        raise ValueError("rotation must be 0, 90, 180 or 270")
    if width % 2 or height % 2:
        raise ValueError("width and height must be even (yuv420p)")
    path = Path(path)
    suffix = path.suffix.lower()
    if rotation and suffix not in (".mp4", ".mov"):
        raise ValueError("rotation is only supported for .mp4/.mov")
    if vfr and suffix == ".avi":
        raise ValueError("AVI cannot store variable frame rate")
    fmt = _FORMATS.get(suffix)
    if fmt is None:
        raise ValueError(f"unsupported suffix {suffix!r}")
    encoder = _encoder(codec)
    ticks = [round(t * fps) for t in vfr_times(frames, fps)] if vfr else list(range(frames))
    with av.open(str(path), "w", format=fmt, options=_BITEXACT) as container:
        vstream = _add_video(container, encoder, width, height, fps, gop, options)
        astream = _add_audio(container, suffix) if audio else None
        done = 0
        for i, tick in enumerate(ticks):
            frame = av.VideoFrame.from_ndarray(draw_frame(i, width, height, pattern), "rgb24")
            frame = frame.reformat(format=vstream.pix_fmt)
            frame.pts, frame.time_base = tick, Fraction(1, fps)
            container.mux(vstream.encode(frame))
            if astream is not None:
                nxt = ticks[i + 1] if i + 1 < len(ticks) else tick + 1
                end = nxt * _SAMPLE_RATE // fps
                container.mux(astream.encode(_tone(done, end)))
                done = end
        _flush(container, vstream)
        if astream is not None:
            _flush(container, astream)
    if rotation:
        _set_mp4_rotation(path, rotation, width, height)
    return path


def _boxes(buf: bytearray, start: int, end: int):
    """Yield (type, payload_start, box_end) for the ISO-BMFF boxes in buf[start:end]."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", buf[pos : pos + 8])
        head = 8
        if size == 1:
            size, head = struct.unpack(">Q", buf[pos + 8 : pos + 16])[0], 16
        elif size == 0:
            size = end - pos
        if size < head:
            raise ValueError("corrupt box")
        yield kind.decode("latin-1"), pos + head, pos + size
        pos += size


def _child(buf, start, end, kind):
    """(payload_start, end) of the first child box of ``kind``, or None."""
    return next(((s, e) for k, s, e in _boxes(buf, start, end) if k == kind), None)


def _set_mp4_rotation(path: Path, rotation: int, width: int, height: int) -> None:
    """Patch the video track's tkhd matrix in place so players rotate it ``rotation``° clockwise."""
    one, w = 0x10000, 0x40000000
    a, b, c, d, tx, ty = {
        90: (0, one, -one, 0, height * one, 0),
        180: (-one, 0, 0, -one, width * one, height * one),
        270: (0, -one, one, 0, 0, width * one),
    }[rotation]
    buf = bytearray(path.read_bytes())
    moov = _child(buf, 0, len(buf), "moov")
    for kind, s, e in _boxes(buf, *moov):
        mdia = _child(buf, s, e, "mdia") if kind == "trak" else None
        hdlr = mdia and _child(buf, mdia[0], mdia[1], "hdlr")
        if not hdlr or buf[hdlr[0] + 8 : hdlr[0] + 12] != b"vide":
            continue
        tkhd = _child(buf, s, e, "tkhd")
        off = tkhd[0] + (52 if buf[tkhd[0]] == 1 else 40)
        struct.pack_into(">9i", buf, off, a, b, 0, c, d, 0, tx, ty, w)
        path.write_bytes(bytes(buf))
        return
    raise ValueError("no video track found")


def make_audio_only(path, seconds: float = 1.0) -> Path:
    """An audio-only file (.m4a/.mp4 -> AAC, .wav -> PCM, .webm -> Opus) with a sine tone."""
    path = Path(path)
    suffix = path.suffix.lower()
    with av.open(str(path), "w", format=_FORMATS[suffix], options=_BITEXACT) as container:
        stream = _add_audio(container, suffix)
        total = int(seconds * _SAMPLE_RATE)
        for start in range(0, total, 4800):
            container.mux(stream.encode(_tone(start, min(total, start + 4800))))
        _flush(container, stream)
    return path


def make_not_a_video(path) -> Path:
    """A plain text file (give it a .mp4 suffix); av.open raises av.error.InvalidDataError."""
    path = Path(path)
    path.write_text("this is not a video, just some text pretending to be one\n" * 20)
    return path


def make_empty(path) -> Path:
    """A zero-byte file (give it a .mp4 suffix); av.open raises av.error.InvalidDataError."""
    path = Path(path)
    path.write_bytes(b"")
    return path


def make_truncated(path, keep: float = 0.3) -> Path:
    """A 60-frame h264 .mp4 cut to its first 30% of bytes: moov is at the end, so it is lost.

    PyAV 18.1: ``av.open`` raises ``av.error.InvalidDataError`` (errno 1094995529,
    "Invalid data found when processing input"); FFmpeg logs "moov atom not found".
    """
    path = Path(path)
    make_video(path, codec="h264", frames=60)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def make_cut_stream(path, keep: float = 0.6) -> Path:
    """A 90-frame 30 fps h264 .mkv cut to its first 60% of bytes: Matroska writes its duration
    (3.0 s) in the header, so the file opens and probes whole, and the stream simply ends early.
    PyAV 18.1 decodes 48 frames, the last at 1.567 s."""
    path = Path(path)
    make_video(path, codec="h264", frames=90, fps=30)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def make_corrupt_middle(path, seed: int = 1234) -> Path:
    """A 90-frame 160x120 h264 .mp4 (gop 10, no B-frames) with 8 KB of noise over mid-file packets.

    The moov index (at the end) is intact, so ``av.open`` works and ``demux`` yields all 90
    packets (plus PyAV's final empty flush packet); only payload bytes in the middle 8 KB of
    ``mdat`` are garbage. Measured with PyAV 18.1 / FFmpeg 8.1 (output is deterministic),
    iterating ``container.demux(video_stream)`` with ``packet.decode()`` per packet inside
    ``try/except av.error.FFmpegError``: packets 43, 44, 45 raise ``av.error.InvalidDataError``
    ("Invalid data found when processing input: 'avcodec_send_packet()'"; FFmpeg logs
    "Invalid NAL unit size"), 87 of 90 frames decode, frame 42 decodes damaged (concealed,
    ``frame.is_corrupt`` is True) and frames 43-45 are missing; the rest are intact.
    """
    path = Path(path)
    make_video(
        path,
        codec="h264",
        width=160,
        height=120,
        frames=90,
        gop=10,
        pattern="noise",
        options={"bf": "0", "threads": "1", "crf": "30"},
    )
    buf = bytearray(path.read_bytes())
    start, end = _child(buf, 0, len(buf), "mdat")
    mid, size = (start + end) // 2, 8192
    rng = random.Random(seed)
    buf[mid - size // 2 : mid + size // 2] = bytes(rng.randrange(256) for _ in range(size))
    path.write_bytes(bytes(buf))
    return path


def make_long(path, seconds: float, width: int = 640, height: int = 360, fps: int = 30) -> Path:
    """A longer, cheap-to-encode h264 video (ultrafast preset, low-detail moving pattern)."""
    opts = {"preset": "ultrafast"} if _encoder("h264") == "libx264" else {}
    return make_video(
        path,
        codec="h264",
        width=width,
        height=height,
        fps=fps,
        frames=int(round(seconds * fps)),
        options=opts,
    )


SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "astronaut.mp4"


def make_person_video(path, seconds: float, width: int = 320, height: int = 180, fps: int = 30) -> Path:
    """A video with a person in every frame: the sample (a photo of an astronaut moving across
    the frame) looped and scaled, encoded fast. Synthetic patterns have nobody for the detector
    to find, so the landmark stage would never run on them."""
    path = Path(path)
    with av.open(str(SAMPLE)) as src:
        looped = [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]
    opts = {"preset": "ultrafast"} if _encoder("h264") == "libx264" else {}
    with av.open(str(path), "w") as out:
        stream = _add_video(out, _encoder("h264"), width, height, fps, options=opts)
        for i in range(int(round(seconds * fps))):
            frame = av.VideoFrame.from_ndarray(looped[i % len(looped)], format="rgb24")
            frame = frame.reformat(width=width, height=height, format=stream.pix_fmt)
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        _flush(out, stream)
    return path


def dot_picture(i: int, width: int, height: int, radius: int = 6) -> np.ndarray:
    """Black, with one white disk that travels a diagonal: for models that find the brightest
    spot (tests/savedmodels.py), so each keypoint's true place is known."""
    cx = radius + (width - 2 * radius) * ((i * 7) % 31) / 30
    cy = radius + (height - 2 * radius) * ((i * 11) % 29) / 28
    yy, xx = np.mgrid[:height, :width]
    img = np.zeros((height, width, 3), np.uint8)
    img[(xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= radius**2] = 255
    return img


def make_dot_video(path, frames: int = 24, width: int = 320, height: int = 240, rotation: int = 0) -> Path:
    """``frames`` dot_picture frames as h264 .mp4, shown rotated by ``rotation`` (see make_video)."""
    path = Path(path)
    with av.open(str(path), "w", format="mp4", options=_BITEXACT) as out:
        stream = _add_video(
            out,
            _encoder("h264"),
            width,
            height,
            30,
            options={"qp": "0"} if _encoder("h264") == "libx264" else None,
        )
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(dot_picture(i, width, height), "rgb24")
            frame = frame.reformat(format=stream.pix_fmt)
            frame.pts, frame.time_base = i, Fraction(1, 30)
            out.mux(stream.encode(frame))
        _flush(out, stream)
    if rotation:
        _set_mp4_rotation(path, rotation, width, height)
    return path


def dot_centre(picture: np.ndarray) -> tuple[float, float]:
    """The white disk's centre in a picture, pixel-edge coordinates (a pixel's centre is +0.5)."""
    ys, xs = np.nonzero(picture.mean(axis=-1) > 127)
    return float(xs.mean() + 0.5), float(ys.mean() + 0.5)


# The sample's first frame holds the astronaut photo scaled to 264 px, its top-left at (20, 72).
PHOTO = (slice(72, 336), slice(20, 284))


def make_two_people_video(path, frames: int = 60, right_until: int | None = None, fps: int = 30) -> Path:
    """Two people side by side, 640x360: the sample's astronaut photo drifting right from the
    left edge, and its mirror image drifting left from the right edge (they never overlap).
    The right one is there until frame ``right_until`` (default: every frame); BlazePose's
    detector scores it above the left one (0.92-0.96 against 0.69-0.82)."""
    path = Path(path)
    with av.open(str(SAMPLE)) as src:
        photo = next(src.decode(video=0)).to_ndarray(format="rgb24")[PHOTO]
    mirrored = photo[:, ::-1]
    background = np.broadcast_to(np.linspace(90, 170, 640, dtype=np.uint8)[None, :, None], (360, 640, 3))
    side = photo.shape[1]
    opts = {"preset": "ultrafast"} if _encoder("h264") == "libx264" else {}
    with av.open(str(path), "w") as out:
        stream = _add_video(out, _encoder("h264"), 640, 360, fps, options=opts)
        for i in range(frames):
            picture = background.copy()
            left = 10 + i * 20 // frames
            picture[48:312, left : left + side] = photo
            if right_until is None or i < right_until:
                right = 630 - side - i * 20 // frames
                picture[48:312, right : right + side] = mirrored
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format=stream.pix_fmt)
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        _flush(out, stream)
    return path
