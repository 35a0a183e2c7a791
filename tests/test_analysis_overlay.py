"""overlay.mp4 decoded back: the input's frame count, displayed size and frame times, with each
track's skeleton drawn where its keypoints are."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from synthetic_poses import KP, poses_document, standing
from videos import make_video

from posequeue.analysis.overlay import colour, write_overlay
from posequeue.analysis.pipeline import analyze


def _decode(path: Path) -> tuple[list[np.ndarray], list[Fraction], int | None]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [(f.to_ndarray(format="rgb24"), f.pts * s.time_base, f.rotation) for f in c.decode(s)]
    return [f[0] for f in frames], [f[1] for f in frames], frames[0][2] if frames else None


def test_overlay_matches_the_input_and_draws_each_track(tmp_path: Path) -> None:
    """A rotated, variable-frame-rate input: the overlay is upright at the displayed size, has
    every frame at its input time, and shows each track's colour on its limbs."""
    n = 30
    video = make_video(tmp_path / "in.mp4", width=640, height=360, frames=n, rotation=90, vfr=True)
    with av.open(str(video)) as c:
        s = c.streams.video[0]
        times = [f.pts * s.time_base for f in c.decode(s)]
    shown_w, shown_h = 360, 640  # turned upright
    people = np.stack([standing(n), standing(n)], axis=1)
    people = (people - [400, 100]) * 0.5  # two people in the 360x640 picture, side by side
    people[:, 1, :, 0] += 140
    poses = poses_document(people, np.array([float(t) for t in times]), tracks=[0, 1])
    poses["video"].update(width=shown_w, height=shown_h)
    analysis = analyze(poses)
    out = tmp_path / "overlay.mp4"
    assert write_overlay(analysis, video, out) == n

    pictures, out_times, rotation = _decode(out)
    assert len(pictures) == n and not rotation
    assert pictures[0].shape == (shown_h, shown_w, 3)
    assert out_times == [t - times[0] for t in times]
    for i, tr in enumerate(analysis.tracks):
        xy = tr.smooth_xy[n // 2]
        mid = (xy[KP["right_knee"]] + xy[KP["right_ankle"]]) / 2  # on the shank line
        x, y = np.round(mid).astype(int)
        patch = pictures[n // 2][y - 1 : y + 2, x - 1 : x + 2].reshape(-1, 3).mean(axis=0)
        assert np.abs(patch - colour(i)).max() < 60, (tr.track.track_id, patch, colour(i))
    away = pictures[n // 2][10:20, 10:20].reshape(-1, 3).mean(axis=0)  # the corner: nothing drawn
    assert np.abs(away - np.array(colour(0))).max() > 60
