"""Make the demo clip samples/astronaut.mp4 from scikit-image's astronaut photo.

The photo (``skimage.data.astronaut()``, Eileen Collins, NASA) is in the public domain.
It is scaled so the person is ~70% of the frame height and slides smoothly left and right
across a plain gradient background: 640x360, H.264, 30 fps, 3 s (90 frames), deterministic.

    python scripts/make_sample_video.py [-o samples/astronaut.mp4]
"""

from __future__ import annotations

import argparse
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image
from skimage import data

WIDTH, HEIGHT, FPS, SECONDS = 640, 360, 30, 3
PHOTO_HEIGHT = 264  # the person fills nearly the whole photo height -> ~70% of 360 px


def background() -> np.ndarray:
    """A plain vertical blue-grey gradient, (HEIGHT, WIDTH, 3) float32."""
    top, bottom = np.array([170, 190, 210], np.float32), np.array([80, 90, 105], np.float32)
    t = np.linspace(0.0, 1.0, HEIGHT, dtype=np.float32)[:, None, None]
    return np.broadcast_to(top + (bottom - top) * t, (HEIGHT, WIDTH, 3)).copy()


def photo() -> np.ndarray:
    """The astronaut photo resized to PHOTO_HEIGHT pixels tall, uint8 RGB."""
    img = Image.fromarray(data.astronaut())
    return np.asarray(img.resize((PHOTO_HEIGHT, PHOTO_HEIGHT), Image.Resampling.LANCZOS))


def frames():
    """Yield the 90 RGB frames: the photo's x follows a smooth sine, one full cycle in 3 s."""
    bg, pic = background(), photo()
    size = pic.shape[0]
    y = HEIGHT - size - 24
    margin = 20
    centre, amplitude = (WIDTH - size) / 2, (WIDTH - size) / 2 - margin
    for i in range(FPS * SECONDS):
        x = round(centre - amplitude * math.cos(2 * math.pi * i / (FPS * SECONDS)))
        frame = bg.copy()
        frame[y + 8 : y + size + 8, x + 8 : x + size + 8] *= 0.7  # soft drop shadow
        frame[y : y + size, x : x + size] = pic
        yield frame.astype(np.uint8)


def main(argv: list[str] | None = None) -> Path:
    """Command-line entry point; writes the clip and returns its path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("samples/astronaut.mp4"))
    out = parser.parse_args(argv).output
    out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(out), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        opts = {"preset": "slow", "crf": "18", "x264-params": "mbtree=0"}  # reproducible output
        stream = container.add_stream("libx264", rate=FPS, options=opts)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.time_base = Fraction(1, FPS)
        for i, rgb in enumerate(frames()):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")
    return out


if __name__ == "__main__":
    main()
