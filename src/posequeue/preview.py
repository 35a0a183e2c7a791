"""A small PNG with the skeleton drawn on a few frames of a finished job, for a quick look."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image, ImageDraw

from posequeue.producer.preprocess import display_rgb
from posequeue.producer.video import DecodeStats, iter_frames, rotation_of
from posequeue.store import open_video

TILE_WIDTH = 320


def render(
    video: str,
    result: dict[str, Any],
    edges: tuple[tuple[int, int], ...],
    out: Path,
    count: int = 4,
    min_visibility: float = 0.5,
) -> Path:
    """Draw the people of ``count`` evenly spaced frames and tile them side by side."""
    frames = result["frames"]
    wanted = {
        frames[int(i)]["index"]: frames[int(i)]
        for i in np.linspace(0, len(frames) - 1, min(count, len(frames)))
    }
    tiles: list[Image.Image] = []
    with av.open(open_video(video), mode="r") as container:
        for n, item in enumerate(iter_frames(container, container.streams.video[0], DecodeStats())):
            if n in wanted:
                img = Image.fromarray(display_rgb(item.frame, rotation_of(item.frame)))
                _draw(img, wanted[n]["people"], edges, min_visibility)
                scale = TILE_WIDTH / img.width
                tiles.append(img.resize((TILE_WIDTH, max(1, round(img.height * scale)))))
            if len(tiles) == len(wanted):
                break
    sheet = Image.new("RGB", (TILE_WIDTH * len(tiles), max(t.height for t in tiles)))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, (i * TILE_WIDTH, 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def _draw(
    img: Image.Image, people: list[dict[str, Any]], edges: tuple[tuple[int, int], ...], min_visibility: float
) -> None:
    draw = ImageDraw.Draw(img)
    r = max(2, img.width // 200)
    for person in people:
        kp = person["keypoints"]
        for a, b in edges:
            if kp[a][3] >= min_visibility and kp[b][3] >= min_visibility:
                draw.line([tuple(kp[a][:2]), tuple(kp[b][:2])], fill=(0, 255, 0), width=r)
        for x, y, _, vis, _ in kp:
            if vis >= min_visibility:
                draw.ellipse([x - r, y - r, x + r, y + r], fill=(255, 0, 0))
