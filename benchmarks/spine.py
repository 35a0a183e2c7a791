"""Pipeline figures, measured side by side on this machine, printed as one JSON object.

- raw model loops: each stage's runtime alone, with a worker's threads and with one core;
- Redis bytes moved per frame by the two-stage layout;
- end to end (submit to done) for the sample video and a 1-minute 640x360 video, one worker;
- Redis peak memory during the long job (a fresh embedded Redis);
- accuracy against MediaPipe's own Pose solution on tests/fixtures/accuracy.

Usage: python benchmarks/spine.py [--seconds 60] [--out bench-results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic video factory


def raw_loops(frames: int = 240) -> dict[str, dict[str, float]]:
    """Frames/s of each stage's model alone (inputs prepared as the worker does), with the
    threads a worker uses (all cores here) and with one thread (the per-core figure)."""
    from posequeue.config.settings import get_settings
    from posequeue.worker import blazepose, detector
    from posequeue.worker.model_cache import blazepose_dir
    from posequeue.worker.pinning import cpu_threads
    from posequeue.worker.runtimes import make_runtime

    s = get_settings()
    folder = blazepose_dir(s.cache_dir, s.model_dir)
    rng = np.random.default_rng(0)
    inputs = {
        "detector": blazepose.detector_input(rng.integers(0, 255, (8, 360, 640, 3), dtype=np.uint8))[0],
        "landmarks": rng.random((8, 256, 256, 3), dtype=np.float32),
    }
    files = {"detector": "pose_detection.tflite", "landmarks": "pose_landmark_full.tflite"}
    outputs = {
        "detector": (detector.BOXES, detector.SCORES),
        "landmarks": (blazepose.LANDMARKS, blazepose.POSE_FLAG, blazepose.HEATMAP),
    }
    figures: dict[str, dict[str, float]] = {}
    for stage, batch in inputs.items():
        figures[stage] = {}
        for label, threads in (("worker_threads", cpu_threads()), ("one_core", 1)):
            runtime = make_runtime("tflite", folder / files[stage], threads, outputs[stage])
            runtime.run(batch)  # warm up
            started = time.perf_counter()
            for _ in range(frames // len(batch)):
                runtime.run(batch)
            figures[stage][f"frames_per_s_{label}"] = round(frames / (time.perf_counter() - started), 1)
    return figures


def bytes_per_frame(width: int, height: int) -> dict[str, int]:
    """Redis bytes written and read per frame by the two-stage layout, against sending the
    working frame to both stages (frames plus regions)."""
    frame, crop = width * height * 3, 256 * 256 * 3
    return {
        "frame": frame,
        "crop": crop,
        "crops_written_plus_read": 2 * frame + 2 * crop,
        "frames_and_regions_written_plus_read": 3 * frame,
    }


def submit_wait(video: Path, env: dict[str, str]) -> tuple[dict[str, Any], float]:
    """Submit and wait through the CLI; the job summary and seconds from submission to done."""
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "posequeue.cli", "submit", str(video), "--wait", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.perf_counter() - started
    job = json.loads(out.stdout.splitlines()[-1])
    assert job["status"] == "done", job
    return job, elapsed


def end_to_end(video: Path, env: dict[str, str]) -> dict[str, float]:
    """Frames/s from submission to done."""
    job, elapsed = submit_wait(video, env)
    return {
        "frames": job["frames_total"],
        "seconds": round(elapsed, 2),
        "frames_per_s": round(job["frames_total"] / elapsed, 1),
    }


@contextlib.contextmanager
def fleet(tmp: Path, *worker_args: str) -> Iterator[dict[str, str]]:
    """A fresh embedded Redis, a local store and one ``posequeue worker``; yields the env."""
    from posequeue.embedded import EmbeddedRedis

    with EmbeddedRedis(tmp / "redis") as server, (tmp / "worker.log").open("w") as log:
        env = {
            **os.environ,
            "POSEQUEUE_BROKER_URL": server.url,
            "POSEQUEUE_STORE": (tmp / "store").as_uri(),
            "POSEQUEUE_LOG_FORMAT": "json",
        }
        worker = subprocess.Popen(
            [sys.executable, "-m", "posequeue.cli", "worker", *worker_args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            while " ready." not in (tmp / "worker.log").read_text():
                time.sleep(0.1)
            yield env
        finally:
            worker.terminate()
            worker.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="length of the long video")
    parser.add_argument("--out", default=str(ROOT / "bench-results.json"))
    args = parser.parse_args()

    import redis
    import videos
    from accuracy import compare, reference
    from accuracy import videos as accuracy_videos

    from posequeue.store import read_uri

    figures: dict[str, object] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
        "raw_model_loops": raw_loops(),
        "redis_bytes_per_640x360_frame": bytes_per_frame(640, 360),
    }
    with tempfile.TemporaryDirectory() as tmp, fleet(Path(tmp)) as env:
        long_video = videos.make_person_video(
            Path(tmp) / "long.mp4", seconds=args.seconds, width=640, height=360
        )
        figures["sample_end_to_end"] = end_to_end(ROOT / "samples" / "astronaut.mp4", env)
        client = redis.Redis.from_url(env["POSEQUEUE_BROKER_URL"])
        base = int(client.info("memory")["used_memory"])
        peak = [base]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], int(client.info("memory")["used_memory"]))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        figures[f"long_{args.seconds}s_640x360_end_to_end"] = end_to_end(long_video, env)
        done.set()
        sampler.join()
        figures["redis_used_memory_mb"] = {
            "before": round(base / 2**20, 1),
            "peak_during_long_job": round(peak[0] / 2**20, 1),
        }
        accuracy = {}
        for video in accuracy_videos():
            job, _ = submit_wait(video, env)
            result = json.loads(read_uri(job["results"]["json"]))
            accuracy[video.stem] = compare(result["frames"], reference(video))
        figures["accuracy_vs_mediapipe"] = accuracy
    report(figures, args.out)


def report(figures: dict[str, Any], out: str) -> None:
    """Print the figures as one JSON object and write it to ``out``."""
    text = json.dumps(figures, indent=2)
    Path(out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
