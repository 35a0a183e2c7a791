"""Unit tests for posequeue.producer.video: probe, frame streaming and segment continuity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import videos

from posequeue.producer.video import (
    DecodeStats,
    LimitError,
    Limits,
    VideoError,
    _open,
    _video_stream,
    damage_warnings,
    iter_frames,
    probe,
    read_segment,
)

CONTAINERS = [
    ("h264", ".mp4"),
    ("h264", ".mkv"),
    ("h264", ".avi"),
    ("hevc", ".mp4"),
    ("hevc", ".mkv"),
    ("vp9", ".webm"),
    ("vp9", ".mkv"),
    ("av1", ".webm"),
    ("av1", ".mp4"),
    ("mjpeg", ".avi"),
    ("mjpeg", ".mkv"),
]


def need(codec: str) -> None:
    if codec not in videos.available_codecs():
        pytest.skip(f"this PyAV/FFmpeg build cannot encode {codec}")


def full_pass(path: Path) -> tuple[list[tuple[int | None, int]], list[float], DecodeStats]:
    """(pts, drawn index) and times of every frame of one uninterrupted iter_frames pass."""
    stats = DecodeStats()
    with _open(str(path)) as container:
        stream = _video_stream(container, str(path))
        items = list(iter_frames(container, stream, stats))
    frames = [(d.pts, videos.read_frame_index(d.frame.to_ndarray(format="rgb24"))) for d in items]
    return frames, [d.t for d in items], stats


def segmented(path: Path, seconds: float) -> tuple[list[tuple[int | None, int]], DecodeStats, int]:
    """Read the video segment by segment the way the ingest task chains them."""
    stats = DecodeStats()
    frames: list[tuple[int | None, int]] = []
    after: int | None = None
    segments = 0
    while True:
        got = [
            (d.pts, videos.read_frame_index(d.frame.to_ndarray(format="rgb24")))
            for d in read_segment(str(path), after, seconds, stats)
        ]
        segments += 1
        frames += got
        if stats.ended:
            return frames, stats, segments
        assert got, f"segment {segments} after pts {after} yielded nothing but did not end"
        assert segments < 1000, "segments never end"
        after = got[-1][0]


@pytest.mark.parametrize(("codec", "suffix"), CONTAINERS)
def test_probe_codecs_and_containers(tmp_path: Path, codec: str, suffix: str) -> None:
    """probe reports size, rate, frame count and the codec family for every codec/container."""
    need(codec)
    path = videos.make_video(tmp_path / f"v{suffix}", codec=codec, width=320, height=240, fps=30, frames=30)
    info = probe(str(path))
    assert (info.width, info.height) == (320, 240)
    assert (info.coded_width, info.coded_height) == (320, 240)
    assert info.rotation == 0
    assert info.fps == pytest.approx(30.0)
    assert info.frame_count == 30
    assert info.duration == pytest.approx(1.0, abs=0.05)
    assert info.codec == codec
    assert info.to_dict()["codec"] == codec


def test_probe_accepts_file_uri(tmp_path: Path) -> None:
    """A file:// URI is probed like the plain path it names."""
    path = videos.make_video(tmp_path / "v.mp4", frames=10)
    assert probe(path.as_uri()).frame_count == 10


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_probe_rotation(tmp_path: Path, rotation: int) -> None:
    """Rotated mp4: displayed size swapped for 90/270, rotation normalised counter-clockwise."""
    path = videos.make_video(tmp_path / "r.mp4", rotation=rotation, width=320, height=240)
    info = probe(str(path))
    swapped = rotation in (90, 270)
    assert (info.width, info.height) == ((240, 320) if swapped else (320, 240))
    assert (info.coded_width, info.coded_height) == (320, 240)
    assert info.rotation == videos.EXPECTED_PYAV_ROTATION[rotation] % 360
    assert info.rotation in (0, 90, 180, 270)


@pytest.mark.parametrize(
    ("codec", "suffix"), [("h264", ".mp4"), ("h264", ".mkv"), ("vp9", ".webm"), ("mjpeg", ".avi")]
)
def test_audio_track_is_ignored(tmp_path: Path, codec: str, suffix: str) -> None:
    """A video with an audio track probes and decodes every video frame."""
    need(codec)
    path = videos.make_video(tmp_path / f"a{suffix}", codec=codec, frames=20, audio=True)
    info = probe(str(path))
    assert (info.width, info.height, info.codec) == (320, 240, codec)
    frames, _, stats = full_pass(path)
    assert [i for _, i in frames] == list(range(20))
    assert stats.corrupt_packets == 0


@pytest.mark.parametrize(("codec", "suffix"), [("h264", ".mp4"), ("h264", ".mkv"), ("vp9", ".webm")])
def test_vfr_times(tmp_path: Path, codec: str, suffix: str) -> None:
    """Variable frame rate: each frame's t is its real presentation time, not index / fps."""
    need(codec)
    path = videos.make_video(tmp_path / f"vfr{suffix}", codec=codec, frames=20, fps=30, vfr=True)
    frames, times, _ = full_pass(path)
    assert [i for _, i in frames] == list(range(20))
    assert times == pytest.approx(videos.vfr_times(20, 30), abs=1e-3)


def test_missing_file(tmp_path: Path) -> None:
    """A path that does not exist is a VideoError naming the file and saying so."""
    path = str(tmp_path / "nope.mp4")
    with pytest.raises(VideoError, match="no such file") as err:
        probe(path)
    assert path in str(err.value)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (videos.make_not_a_video, "not a readable video"),
        (videos.make_empty, "not a readable video"),
        (videos.make_truncated, "not a readable video"),
    ],
    ids=["not-a-video", "empty", "truncated"],
)
def test_unreadable_inputs(tmp_path: Path, make, words: str) -> None:
    """Text, empty and truncated files are a VideoError naming the file and the problem."""
    path = str(make(tmp_path / "bad.mp4"))
    with pytest.raises(VideoError, match=words) as err:
        probe(path)
    assert path in str(err.value)
    with pytest.raises(VideoError, match=words):
        list(read_segment(path, None, 1.0, DecodeStats()))


@pytest.mark.parametrize("suffix", [".m4a", ".wav"])
def test_audio_only(tmp_path: Path, suffix: str) -> None:
    """An audio-only file is a VideoError saying it has no video stream."""
    path = str(videos.make_audio_only(tmp_path / f"sound{suffix}"))
    with pytest.raises(VideoError, match="no video stream") as err:
        probe(path)
    assert path in str(err.value)
    assert "audio" in str(err.value)


def test_corrupt_middle_is_not_fatal(tmp_path: Path) -> None:
    """Corrupt packets mid-file are counted and skipped; the other frames still decode."""
    path = videos.make_corrupt_middle(tmp_path / "corrupt.mp4")
    assert probe(str(path)).frame_count == 90
    frames, times, stats = full_pass(path)
    assert stats.corrupt_packets > 0
    assert len(frames) >= 80
    assert times == sorted(times)
    seg_frames, seg_stats, _ = segmented(path, 0.5)
    assert seg_frames == frames
    assert seg_stats.corrupt_packets > 0


# Videos for the continuity test: (codec, suffix, make_video options).
CONTINUITY: dict[str, tuple[str, str, dict[str, Any]]] = {
    "h264-bframes-mp4": ("h264", ".mp4", {"frames": 90, "gop": 30, "options": {"bf": "3"}}),
    "h264-bframes-mkv": ("h264", ".mkv", {"frames": 90, "gop": 30, "options": {"bf": "3"}}),
    "h264-long-gop-mp4": ("h264", ".mp4", {"frames": 90, "gop": 90}),
    "h264-vfr-mp4": ("h264", ".mp4", {"frames": 60, "gop": 12, "vfr": True}),
    "h264-vfr-mkv": ("h264", ".mkv", {"frames": 60, "gop": 12, "vfr": True}),
    "h264-bframes-avi": ("h264", ".avi", {"frames": 60, "gop": 20, "options": {"bf": "2"}}),
    "h264-rotated-mp4": ("h264", ".mp4", {"frames": 60, "gop": 20, "rotation": 90}),
    "hevc-mp4": ("hevc", ".mp4", {"frames": 60, "gop": 20}),
    "mjpeg-avi": ("mjpeg", ".avi", {"frames": 60}),
    "vp9-webm": ("vp9", ".webm", {"frames": 60, "gop": 20}),
    "av1-webm": ("av1", ".webm", {"frames": 60, "gop": 20}),
}

# x265 writes open GOPs by default: after a seek to a CRA keyframe its leading pictures are
# undecodable, so a segment starting among them needs the fallback (correct, but slower).
OPEN_GOP = {"hevc-mp4"}


@pytest.fixture(scope="module")
def continuity_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("continuity")
    made = {}
    for name, (codec, suffix, options) in CONTINUITY.items():
        if codec in videos.available_codecs():
            made[name] = videos.make_video(folder / f"{name}{suffix}", codec=codec, **options)
    return made


@pytest.mark.parametrize("seconds", [0.2, 0.5, 1.0])
@pytest.mark.parametrize("name", list(CONTINUITY))
def test_read_segment_continuity(continuity_videos: dict[str, Path], name: str, seconds: float) -> None:
    """Chained segments yield exactly the frames of one full pass, each once and in order."""
    need(CONTINUITY[name][0])
    path = continuity_videos[name]
    expected = CONTINUITY[name][2]["frames"]
    reference, times, _ = full_pass(path)
    assert [i for _, i in reference] == list(range(expected))
    pts = [p for p, _ in reference if p is not None]
    assert len(pts) == len(reference)  # every frame has a pts
    assert pts == sorted(set(pts)), "full pass pts must increase strictly"
    assert times == sorted(times)
    got, stats, segments = segmented(path, seconds)
    assert got == reference
    assert segments >= 2
    if name not in OPEN_GOP:  # a fallback decodes from the start: quadratic on long videos
        assert stats.seek_fallbacks == 0


def test_read_segment_length(tmp_path: Path) -> None:
    """A segment holds the frames that start within ``seconds`` of its first frame."""
    path = videos.make_video(tmp_path / "v.mp4", frames=60, fps=30)
    stats = DecodeStats()
    first = list(read_segment(str(path), None, 0.5, stats))
    assert len(first) == 15
    assert not stats.ended
    rest = list(read_segment(str(path), first[-1].pts, 10.0, stats))
    assert len(rest) == 45
    assert stats.ended
    assert rest[0].t == pytest.approx(0.5, abs=1e-6)


def test_read_segment_max_frames(tmp_path: Path) -> None:
    """max_frames caps a segment however long its duration."""
    path = videos.make_video(tmp_path / "v.mp4", frames=30)
    stats = DecodeStats()
    assert len(list(read_segment(str(path), None, 100.0, stats, max_frames=7))) == 7
    assert not stats.ended


def test_read_segment_after_last_frame(tmp_path: Path) -> None:
    """Reading after the last frame yields nothing and reports the end of the stream."""
    path = videos.make_video(tmp_path / "v.mp4", frames=20)
    frames, _, _ = full_pass(path)
    stats = DecodeStats()
    assert list(read_segment(str(path), frames[-1][0], 1.0, stats)) == []
    assert stats.ended


def test_stream_cut_off_is_warned(tmp_path: Path) -> None:
    """A file whose stream ends before the container's duration decodes what is there and
    says how much is missing."""
    path = videos.make_cut_stream(tmp_path / "cut.mkv")
    info = probe(str(path))
    assert (info.duration, info.frame_count) == (3.0, 90)
    frames, stats, _ = segmented(path, 0.5)
    assert [i for _, i in frames] == list(range(len(frames))) and 30 < len(frames) < 60
    assert damage_warnings(info.to_dict(), len(frames), stats.last_t, stats) == [
        f"decoded {len(frames)} of ~90 frames: the stream ends at {len(frames) / 30:.2f} s of 3.00 s "
        "(the file is cut off or damaged)"
    ]


@pytest.mark.parametrize(("codec", "suffix"), [("h264", ".mp4"), ("h264", ".mkv"), ("vp9", ".webm")])
def test_whole_stream_has_no_warnings(tmp_path: Path, codec: str, suffix: str) -> None:
    """A whole video, variable frame rate included, gets no warning."""
    need(codec)
    for vfr in (False, True):
        path = videos.make_video(tmp_path / f"v{vfr}{suffix}", codec=codec, frames=45, vfr=vfr)
        info = probe(str(path))
        frames, stats, _ = segmented(path, 0.5)
        assert damage_warnings(info.to_dict(), len(frames), stats.last_t, stats) == []


def test_corrupt_packets_are_warned(tmp_path: Path) -> None:
    """Corrupt packets and damaged pictures are named in the warnings."""
    path = videos.make_corrupt_middle(tmp_path / "corrupt.mp4")
    info = probe(str(path))
    frames, stats, _ = segmented(path, 0.5)
    warnings = damage_warnings(info.to_dict(), len(frames), stats.last_t, stats)
    assert f"{stats.corrupt_packets} corrupt packets skipped (their frames are missing)" in warnings
    assert f"{stats.corrupt_frames} frames decoded with damage (concealed by the decoder)" in warnings


def test_limits_refuse_large_and_long_videos(tmp_path: Path) -> None:
    """A picture over the pixel limit or a video over the time limit is refused at probe, naming
    the figures and the setting; within the limits it probes as before."""
    path = str(videos.make_video(tmp_path / "v.mp4", frames=60, fps=30))
    with pytest.raises(
        LimitError, match=r"320x240 frames \(76,800 pixels\) exceed the limit of 76,799 pixels"
    ):
        probe(path, Limits(max_frame_pixels=320 * 240 - 1))
    with pytest.raises(
        LimitError, match=r"2 s of video exceed the limit of 1 s per job \(POSEQUEUE_MAX_VIDEO"
    ):
        probe(path, Limits(max_seconds=1.0))
    assert probe(path, Limits(max_frame_pixels=320 * 240, max_seconds=2.0)).frame_count == 60


def test_limits_hold_on_decoded_frames(tmp_path: Path) -> None:
    """The time limit holds on decoded frames too, for containers that state no duration."""
    path = str(videos.make_video(tmp_path / "v.mkv", frames=60, fps=30))
    with pytest.raises(LimitError, match="POSEQUEUE_MAX_VIDEO_SECONDS"):
        list(read_segment(path, None, 10.0, DecodeStats(), limits=Limits(max_seconds=1.0)))


def test_decoder_threads_shrink_with_the_picture() -> None:
    """Decoder threads fit the memory budget: fewer for large pictures, at least one, at most
    one per core; no budget lets FFmpeg choose."""
    import os

    budget = Limits(decoder_mb=512)
    cores = os.cpu_count() or 1
    assert budget.decoder_threads(640, 360) == cores
    assert budget.decoder_threads(8192, 8192) == min(cores, 2)
    assert Limits(decoder_mb=1).decoder_threads(3840, 2160) == 1
    assert Limits().decoder_threads(3840, 2160) == 0


def test_decoder_uses_the_bounded_threads(tmp_path: Path) -> None:
    """The stream is opened with the bounded thread count before any picture is decoded."""
    path = str(videos.make_video(tmp_path / "v.mp4", frames=3))
    limits = Limits(decoder_mb=1)  # 320x240: four threads' pictures in 1 MiB, or one per core
    with _open(path) as container:
        stream = _video_stream(container, path, limits)
        assert stream.codec_context.thread_count == limits.decoder_threads(320, 240)
