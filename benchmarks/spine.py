"""Spine figures, measured side by side on this machine, printed as one JSON object.

- raw model loop: the landmark runtime on preprocessed frames, same threads as a worker;
- end to end (submit to done) for the sample video and a 1-minute 640x360 video, one worker;
- Redis peak memory during the long job (a fresh embedded Redis, so its peak is the job's).

Usage: python benchmarks/spine.py [--seconds 60] [--out bench-results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic video factory


def raw_loop(frames: int = 400) -> float:
    """Frames/s of the landmark model alone on uint8 frames scaled as the worker does."""
    from posequeue.config.settings import get_settings
    from posequeue.worker import blazepose
    from posequeue.worker.model_files import blazepose_dir
    from posequeue.worker.pinning import cpu_threads
    from posequeue.worker.runtimes import make_runtime

    s = get_settings()
    runtime = make_runtime("tflite", blazepose_dir(s.cache_dir, s.model_dir) /
                           "pose_landmark_full.tflite", cpu_threads())  # fmt: skip
    batch = np.random.default_rng(0).integers(0, 255, (8, 256, 256, 3), dtype=np.uint8)
    runtime.run(blazepose.to_input(batch))  # warm up
    started = time.perf_counter()
    for _ in range(frames // 8):
        runtime.run(blazepose.to_input(batch))
    return frames / (time.perf_counter() - started)


def end_to_end(video: Path, env: dict[str, str]) -> dict[str, float]:
    """Submit and wait through the CLI; frames/s from submission to done."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "posequeue.cli", "submit", str(video), "--wait",
                          "--json"], env=env, capture_output=True, text=True, check=True)  # fmt: skip
    elapsed = time.perf_counter() - started
    job = json.loads(out.stdout.splitlines()[-1])
    assert job["status"] == "done", job
    return {"frames": job["frames_total"], "seconds": round(elapsed, 2),
            "frames_per_s": round(job["frames_total"] / elapsed, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="length of the long video")
    parser.add_argument("--out", default=str(ROOT / "bench-results.json"))
    args = parser.parse_args()

    import redis
    import videos

    from posequeue.embedded import EmbeddedRedis

    figures: dict[str, object] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine()},  # fmt: skip
        "raw_model_loop_frames_per_s": round(raw_loop(), 1),
    }
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as server:
        long_video = videos.make_long(Path(tmp) / "long.mp4", seconds=args.seconds)
        env = {**os.environ, "POSEQUEUE_BROKER_URL": server.url,
               "POSEQUEUE_STORE": (Path(tmp) / "store").as_uri(), "POSEQUEUE_LOG_FORMAT": "json"}
        log = open(Path(tmp) / "worker.log", "w")  # noqa: SIM115
        worker = subprocess.Popen([sys.executable, "-m", "posequeue.cli", "worker"], env=env,
                                  stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            while " ready." not in (Path(tmp) / "worker.log").read_text():
                time.sleep(0.1)
            figures["sample_end_to_end"] = end_to_end(ROOT / "samples" / "astronaut.mp4", env)
            client = redis.Redis.from_url(server.url)
            client.config_resetstat()
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
            figures["redis_used_memory_mb"] = {"before": round(base / 2**20, 1),
                                               "peak_during_long_job": round(peak[0] / 2**20, 1)}
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    text = json.dumps(figures, indent=2)
    Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
