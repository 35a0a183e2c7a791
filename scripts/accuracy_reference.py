"""MediaPipe's own Pose solution on the accuracy videos: the reference the suite compares to.

Runs in its own venv (mediapipe 0.10.14 pins protobuf 4, which TensorFlow cannot share):
``make accuracy`` creates it and runs this. For each tests/fixtures/accuracy/NAME.mp4 it
decodes every frame with PyAV, turns it upright by the display rotation (as posequeue does),
runs ``mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1)`` and writes
NAME.reference.json: per frame, null (nobody) or 33 x [x, y, z, visibility, presence] in
displayed pixels (z in the same scale as x). Then the same in video mode
(``static_image_mode=False, smooth_landmarks=False``: the reference of ``submit
--video-mode``, which does not smooth the keypoints it returns) into NAME.video-reference.json.

    python scripts/accuracy_reference.py [FOLDER]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import av
import mediapipe as mp
import numpy as np


def upright(rgb: np.ndarray, rotation: float) -> np.ndarray:
    k = int(round((rotation or 0) / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(rgb, k=k)) if k else rgb


def reference(path: Path, static: bool = True) -> list[list[list[float]] | None]:
    frames: list[list[list[float]] | None] = []
    pose_solution = mp.solutions.pose.Pose(
        static_image_mode=static, model_complexity=1, smooth_landmarks=False
    )
    with pose_solution as pose, av.open(str(path)) as src:
        for frame in src.decode(video=0):
            rgb = upright(frame.to_ndarray(format="rgb24"), getattr(frame, "rotation", 0))
            h, w = rgb.shape[:2]
            found = pose.process(rgb).pose_landmarks
            frames.append(
                None
                if found is None
                else [
                    [
                        round(p.x * w, 3),
                        round(p.y * h, 3),
                        round(p.z * w, 3),
                        round(p.visibility, 5),
                        round(p.presence, 5),
                    ]
                    for p in found.landmark
                ]
            )
    return frames


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/accuracy")
    for video in sorted(folder.glob("*.mp4")):
        for static, suffix in ((True, ".reference.json"), (False, ".video-reference.json")):
            frames = reference(video, static)
            out = video.with_suffix(suffix)
            meta = {
                "video": video.name,
                "mediapipe": mp.__version__,
                "model_complexity": 1,
                "static_image_mode": static,
                "smooth_landmarks": False,
                "frames": frames,
            }
            out.write_text(json.dumps(meta, separators=(",", ":")))
            print(f"{out}: {sum(f is not None for f in frames)}/{len(frames)} frames with a person")


if __name__ == "__main__":
    main()
