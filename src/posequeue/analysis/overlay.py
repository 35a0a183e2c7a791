"""``overlay.mp4``: the input video as players show it (upright, same size, same frame times),
each track's filtered skeleton drawn in its own colour with its ID, and the main joint angles
written beside their joints. H.264 (libx264 through PyAV, yuv420p, so any browser plays it).

Frames are numbered as the ingest numbers them (``producer.video.iter_frames``), so frame i of
the overlay is frame i of poses.json. Timing: each output frame keeps its input presentation
time (same time base), so variable frame rate survives. yuv420p needs even sizes: an odd width
or height is padded by one black pixel (right or bottom).
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from posequeue.analysis.pipeline import Analysis, TrackResult
from posequeue.config.catalogue import KEYPOINT_SETS
from posequeue.producer.preprocess import display_rgb
from posequeue.producer.video import DecodeStats, iter_frames, rotation_of
from posequeue.store import open_video

# Distinct, colour-blind-friendly (Okabe-Ito) colours, one per track in turn.
COLOURS = (
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
    (255, 255, 255),
)
LABELLED = ("right_knee", "left_knee", "right_hip", "left_hip", "right_elbow", "left_elbow")  # at their joint
ENCODER_OPTIONS = {"preset": "veryfast", "crf": "23"}


def colour(i: int) -> tuple[int, int, int]:
    return COLOURS[i % len(COLOURS)]


class Painter:
    """Draws the tracks' skeletons of one frame; sizes scale with the frame."""

    def __init__(self, analysis: Analysis, width: int, height: int) -> None:
        name = analysis.head.get("model", {}).get("name", "blazepose")
        keypoints = analysis.keypoints
        edges = KEYPOINT_SETS.get(name, KEYPOINT_SETS["blazepose"])[1]
        self.edges = [(a, b) for a, b in edges if a < len(keypoints) and b < len(keypoints)]
        self.keypoints = keypoints
        self.tracks = list(enumerate(analysis.tracks))
        self.line = max(3, round(min(width, height) / 150))
        self.font = ImageFont.load_default(size=max(12, round(min(width, height) / 32)))
        self.small = ImageFont.load_default(size=max(10, round(min(width, height) / 45)))

    def draw(self, img: Image.Image, index: int) -> None:
        pen = ImageDraw.Draw(img)
        for i, tr in self.tracks:
            j = index - int(tr.track.frames[0])
            if 0 <= j < tr.track.frames.size and tr.track.present[j]:
                self._person(pen, tr, j, colour(i))

    def _person(self, pen: ImageDraw.ImageDraw, tr: TrackResult, j: int, rgb: tuple[int, int, int]) -> None:
        xy = tr.smooth_xy[j]
        ok = ~np.isnan(xy[:, 0])
        for a, b in self.edges:
            if ok[a] and ok[b]:
                pen.line([tuple(xy[a]), tuple(xy[b])], fill=rgb, width=self.line)
        r = self.line + 1
        for x, y in xy[ok]:
            pen.ellipse([x - r, y - r, x + r, y + r], fill=rgb, outline=(0, 0, 0))
        if not ok.any():
            return
        top = xy[ok][np.argmin(xy[ok, 1])]
        pen.text(
            (top[0], top[1] - 3 * r),
            f"ID {tr.track.track_id}",
            fill=rgb,
            font=self.font,
            anchor="md",
            stroke_width=2,
            stroke_fill=(0, 0, 0),
        )
        for joint in LABELLED:
            series = tr.angles.get(joint)
            k = self.keypoints.index(joint) if joint in self.keypoints else -1
            if series is None or k < 0 or not ok[k] or np.isnan(series.filtered[j]):
                continue
            pen.text(
                (xy[k, 0] + 2 * r, xy[k, 1]),
                f"{series.filtered[j]:.0f}°",
                fill=(255, 255, 255),
                font=self.small,
                anchor="lm",
                stroke_width=2,
                stroke_fill=rgb,
            )


def write_overlay(analysis: Analysis, video: str | Path, out: Path) -> int:
    """Decode ``video``, draw every frame, encode to ``out``; returns the number of frames."""
    count = 0
    with av.open(open_video(str(video)), mode="r") as src, av.open(str(out), mode="w") as dst:
        stream = src.streams.video[0]
        stream.thread_type = "AUTO"
        enc = None
        painter = None
        for item in iter_frames(src, stream, DecodeStats()):
            rgb = display_rgb(item.frame, rotation_of(item.frame))
            if enc is None:
                h, w = rgb.shape[:2]
                painter = Painter(analysis, w, h)
                enc = dst.add_stream("libx264", rate=stream.average_rate or stream.guessed_rate or 30)
                enc.width, enc.height = w + w % 2, h + h % 2
                enc.pix_fmt = "yuv420p"
                enc.time_base = enc.codec_context.time_base = stream.time_base
                enc.codec_context.options = dict(ENCODER_OPTIONS)
            assert painter is not None
            img = Image.fromarray(rgb)
            painter.draw(img, count)
            if img.size != (enc.width, enc.height):
                padded = Image.new("RGB", (enc.width, enc.height))
                padded.paste(img)
                img = padded
            frame = av.VideoFrame.from_image(img)
            frame.pts = _pts(item.pts, stream, count)
            frame.time_base = stream.time_base
            dst.mux(enc.encode(frame))
            count += 1
        if enc is not None:
            dst.mux(enc.encode(None))
    return count


def _pts(pts: int | None, stream: av.VideoStream, index: int) -> int:
    """The input's presentation time relative to the stream's start (numbered when it has none)."""
    if pts is not None:
        return pts - (stream.start_time or 0)
    rate = float(stream.average_rate or 30)
    return round(index / rate / float(stream.time_base or 1))
