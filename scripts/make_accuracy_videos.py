"""Make the accuracy test videos in tests/fixtures/accuracy/ (deterministic, committed).

People are public-domain photos from scikit-image (``astronaut``: Eileen Collins, NASA;
``camera``: the cameraman), composited on a gradient: large and centred, small and off-centre,
moving, tilted, in a portrait phone video stored landscape with a display rotation, at a
variable frame rate, and one where the person leaves the frame. Run by ``make accuracy``
(needs scikit-image and PyAV); the test suite only reads the results.

    python scripts/make_accuracy_videos.py [-o tests/fixtures/accuracy]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from videos import _set_mp4_rotation, vfr_times  # noqa: E402  (the tkhd patch and VFR timing)

FPS, FRAMES = 30, 60
Scene = Callable[[int], tuple[float, float, float, float]]  # frame -> (cx, cy, height, angle)


def person(name: str) -> Image.Image:
    if name == "camera":
        return Image.fromarray(np.stack([data.camera()] * 3, axis=-1))
    return Image.fromarray(data.astronaut())


def background(w: int, h: int) -> Image.Image:
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    top, bottom = np.array([150, 170, 195], np.float32), np.array([70, 80, 95], np.float32)
    return Image.fromarray(np.broadcast_to(top + (bottom - top) * t, (h, w, 3)).astype(np.uint8))


def render(photo: Image.Image, size: tuple[int, int], scene: Scene) -> Iterator[np.ndarray]:
    w, h = size
    bg = background(w, h)
    for i in range(FRAMES):
        cx, cy, height, angle = scene(i)
        side = max(8, round(height))
        pic = photo.resize((side, side), Image.Resampling.LANCZOS).convert("RGBA")
        if angle:
            pic = pic.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
        frame = bg.copy()
        frame.paste(pic, (round(cx - pic.width / 2), round(cy - pic.height / 2)), pic)
        yield np.asarray(frame)


def encode(
    path: Path, frames: Iterator[np.ndarray], size: tuple[int, int], times: list[float] | None = None
) -> None:
    w, h = size
    with av.open(str(path), "w", format="mp4", options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream(
            "libx264", rate=FPS, options={"crf": "20", "preset": "medium", "x264-params": "mbtree=0"}
        )
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if times:
            stream.codec_context.time_base = Fraction(1, 90000)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = round(times[i] * 90000) if times else i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def sway(cx: float, cy: float, height: float, dx: float = 0, dy: float = 0, tilt: float = 0) -> Scene:
    def at(i: int) -> tuple[float, float, float, float]:
        phase = 2 * math.pi * i / FRAMES
        return cx + dx * math.sin(phase), cy + dy * math.sin(phase), height, tilt * math.sin(phase)

    return at


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=Path("tests/fixtures/accuracy"))
    out = parser.parse_args(argv).out
    out.mkdir(parents=True, exist_ok=True)
    astronaut, camera = person("astronaut"), person("camera")
    land = (640, 360)
    videos = {
        "centred": (astronaut, land, sway(320, 190, 330, dx=30)),
        "small_offcentre": (astronaut, land, sway(500, 270, 130, dx=40, dy=15)),
        "moving": (camera, land, sway(320, 180, 300, dx=170)),
        "tilted": (astronaut, land, sway(320, 185, 280, tilt=35)),
        "leaves_frame": (astronaut, land, lambda i: (250 + 14 * i, 190, 300, 0)),
    }
    for name, (photo, size, scene) in videos.items():
        encode(out / f"{name}.mp4", render(photo, size, scene), size)
    # A portrait phone video: displayed 360x640, stored 640x360 with a 90-degree display rotation.
    upright = render(astronaut, (360, 640), sway(180, 330, 330, dx=25))
    encode(out / "portrait_phone.mp4", (np.rot90(f, k=1) for f in upright), (640, 360))
    _set_mp4_rotation(out / "portrait_phone.mp4", 90, 640, 360)
    # Variable frame rate: irregular presentation times.
    encode(
        out / "vfr.mp4", render(camera, land, sway(330, 185, 310, dx=60)), land, times=vfr_times(FRAMES, FPS)
    )
    for path in sorted(out.glob("*.mp4")):
        print(f"{path} {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
