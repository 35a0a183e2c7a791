"""MediaPipe's own Pose solution run sequentially on the same decoded frames, for reference.

Two halves in two venvs (mediapipe 0.10.14 pins protobuf 4):

- in MediaPipe's venv (``.venv-mediapipe``, ``make bench`` builds it as ``make accuracy`` does),
  this file run with ``--child VIDEO OUT.npy``: every frame decoded with PyAV and turned upright
  as ``scripts/accuracy_reference.py`` does, then ``Pose(static_image_mode=True,
  model_complexity=1)`` (the full landmark model, detector on every frame: posequeue's per-frame
  work) called frame by frame. Prints its figures as JSON and saves the keypoints;
- in posequeue's venv, :func:`mediapipe_sequential` (perf.py's section ``mediapipe_sequential``)
  runs that child, then posequeue's two model stages in this one process on the same frames
  (batches of 8, no queue: the same sequential shape), and compares the keypoints with
  ``tests/accuracy.compare``.

Decoding is timed apart from the model in both. ``cpu_s_per_wall_s`` (process CPU time over
wall time while the model runs) shows how many cores each side kept busy: MediaPipe chooses its
own threads, posequeue's runtime takes one per core the process may use.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MP_PYTHON = ROOT / ".venv-mediapipe" / "bin" / "python"
MODE = {"static_image_mode": True, "model_complexity": 1}


def child(video: Path, out: Path) -> dict[str, Any]:
    """In MediaPipe's venv: decode, then MediaPipe Pose frame by frame; keypoints to ``out``."""
    import av
    import mediapipe as mp

    sys.path.insert(0, str(ROOT / "scripts"))
    from accuracy_reference import upright

    started = time.perf_counter()
    with av.open(str(video)) as src:
        frames = [
            upright(f.to_ndarray(format="rgb24"), getattr(f, "rotation", 0)) for f in src.decode(video=0)
        ]
    decode_s = time.perf_counter() - started
    keypoints = np.full((len(frames), 33, 5), np.nan)
    with mp.solutions.pose.Pose(**MODE) as pose:
        started = time.perf_counter()
        pose.process(frames[0])  # the graph starts on the first call
        first_s = time.perf_counter() - started
        started, cpu = time.perf_counter(), time.process_time()
        for i, rgb in enumerate(frames):
            found = pose.process(rgb).pose_landmarks
            if found is not None:
                h, w = rgb.shape[:2]
                keypoints[i] = [[p.x * w, p.y * h, p.z * w, p.visibility, p.presence] for p in found.landmark]
        model_s, cpu = time.perf_counter() - started, time.process_time() - cpu
    np.save(out, keypoints)
    return {
        "mediapipe": mp.__version__,
        **MODE,
        "frames": len(frames),
        "decode_frames_per_s": round(len(frames) / decode_s, 1),
        "first_call_s": round(first_s, 3),
        "frames_per_s": round(len(frames) / model_s, 1),
        "cpu_s_per_wall_s": round(cpu / model_s, 2),
    }


def posequeue_in_process(video: Path, batch_size: int = 8) -> tuple[dict[str, Any], np.ndarray]:
    """posequeue's two stages in this process on the working frames, batch by batch."""
    from posequeue.config.schemas import BatchMeta
    from posequeue.config.settings import get_settings
    from posequeue.producer.preprocess import display_size, work_frame
    from posequeue.producer.video import DecodeStats, read_segment, rotation_of
    from posequeue.worker import stages
    from posequeue.worker.pinning import cpu_threads

    started = time.perf_counter()
    frames, times, display = [], [], (0, 0)
    for item in read_segment(str(video), None, 1e9, DecodeStats()):
        rotation = rotation_of(item.frame)
        frames.append(work_frame(item.frame, rotation, get_settings().work_long_side))
        times.append(item.t)
        display = display_size(item.frame, rotation)
    decode_s = time.perf_counter() - started
    detector, landmarks = stages.load("blazepose", "detector"), stages.load("blazepose", "landmarks")
    keypoints = np.full((len(frames), 33, 5), np.nan)
    h, w = frames[0].shape[:2]
    started, cpu = time.perf_counter(), time.process_time()
    for first in range(0, len(frames), batch_size):
        batch = np.stack(frames[first : first + batch_size])
        index = list(range(first, first + len(batch)))
        meta = BatchMeta("bench", 0, index, times[first : first + len(batch)], display, (w, h), "blazepose")
        found = detector.run({"frames": batch}, meta)
        people = found.people if found.people is not None else landmarks.run(found.payload, meta).people
        for i, p in zip(index, people or [], strict=True):
            if p:
                keypoints[i] = p[0]["keypoints"]
    model_s, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "frames": len(frames),
        "batch_size": batch_size,
        "runtime_threads": cpu_threads(),
        "decode_and_work_frame_frames_per_s": round(len(frames) / decode_s, 1),
        "frames_per_s": round(len(frames) / model_s, 1),
        "cpu_s_per_wall_s": round(cpu / model_s, 2),
    }, keypoints


def as_frames(keypoints: np.ndarray) -> list[Any]:
    """Keypoints (NaN where nobody) as ``tests/accuracy`` frames and reference entries."""
    return [None if np.isnan(k[0, 0]) else k.tolist() for k in keypoints]


def mediapipe_sequential(video: Path, tmp: Path, python: Path = MP_PYTHON) -> dict[str, Any]:
    """MediaPipe's Pose and posequeue's stages, each sequential in one process, same frames."""
    from accuracy import compare  # tests/ is on sys.path (spine)

    out = tmp / "mediapipe.npy"
    run = subprocess.run(
        [str(python), __file__, "--child", str(video), str(out)], capture_output=True, text=True
    )
    if run.returncode:
        raise RuntimeError(f"MediaPipe's run failed in {python}:\n{run.stderr[-3000:]}")
    theirs = json.loads(run.stdout.splitlines()[-1])
    ours, keypoints = posequeue_in_process(video)
    frames = [{"people": [] if k is None else [{"keypoints": k}]} for k in as_frames(keypoints)]
    return {
        "mediapipe_pose": theirs,
        "posequeue_stages_in_process": ours,
        "posequeue_over_mediapipe": round(ours["frames_per_s"] / theirs["frames_per_s"], 3),
        "posequeue_vs_mediapipe_keypoints": compare(frames, as_frames(np.load(out))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--child",
        nargs=2,
        metavar=("VIDEO", "OUT"),
        required=True,
        help="run MediaPipe on VIDEO (in its venv), keypoints to OUT (.npy)",
    )
    args = parser.parse_args()
    print(json.dumps(child(Path(args.child[0]), Path(args.child[1]))))


if __name__ == "__main__":
    main()
