"""The ingest worker's memory while backpressure retries: a few minutes, one real ingest worker.

A real ``posequeue worker --stage ingest`` against Redis (db 13 of 127.0.0.1:6379 by default)
with a small memory budget (POSEQUEUE_MAX_REDIS_MB), and no model workers: this script stands
in for them, marking batches finished at a fixed rate and discarding their messages. The
producer is throttled by the budget, so most ingest task runs are backpressure deferrals
(``self.retry(countdown=...)``). The pool child's VmRSS is sampled once a second; the result
is its growth per batch enqueued.

    .venv/bin/python benchmarks/ingest_rss.py --seconds 120
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic video factory
sys.path.insert(0, str(ROOT / "benchmarks"))


def vm_rss_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")) / 1024


def pool_child(pid: int) -> int | None:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def run(
    tmp: Path,
    broker: str,
    seconds: float,
    budget_mb: int,
    rate: float,
    video_seconds: int,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Submit a long video to one ingest worker and consume its batches at ``rate`` per second."""
    import redis
    from redis_bound import long_video

    from posequeue.config.queues import stage_queue
    from posequeue.jobs import Jobs
    from posequeue.monitor import PRIORITY_SUFFIXES

    video = tmp / "long.mp4"
    if not video.exists():
        long_video(video, video_seconds)
    client = redis.Redis.from_url(broker)
    client.flushdb()
    jobs = Jobs(client)
    env = {
        **os.environ,
        "POSEQUEUE_BROKER_URL": broker,
        "POSEQUEUE_STORE": (tmp / "store").as_uri(),
        "POSEQUEUE_LOG_FORMAT": "json",
        "POSEQUEUE_MAX_REDIS_MB": str(budget_mb),
        **(extra_env or {}),
    }
    log_path = tmp / "ingest.log"
    queue = stage_queue("blazepose", "detector")
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "posequeue.cli", "worker", "--stage", "ingest"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        while " ready." not in log_path.read_text():
            if proc.poll() is not None:
                raise RuntimeError(log_path.read_text()[-2000:])
            time.sleep(0.1)
        child = pool_child(proc.pid)
        assert child, "no pool child"
        print(f"ingest worker {proc.pid}, pool child {child}", file=sys.stderr, flush=True)
        out = subprocess.run(
            [sys.executable, "-m", "posequeue.cli", "submit", str(video), "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        job_id = json.loads(out.stdout.splitlines()[-1])["job_id"]
        t0 = time.monotonic()
        done, samples, next_sample = 0, [], 0.0
        while (elapsed := time.monotonic() - t0) < seconds:
            enqueued = jobs.get(job_id).batches_enqueued
            if done < enqueued and elapsed * rate >= done:
                jobs.batch_done(job_id, done, 8)
                jobs.drop_batch(job_id, done)
                done += 1
            if elapsed >= next_sample:
                client.delete(*(queue + s for s in PRIORITY_SUFFIXES))  # the messages, not needed
                samples.append(
                    {
                        "t": round(elapsed, 1),
                        "batches": enqueued,
                        "pool_rss_mb": vm_rss_mb(child),
                        "main_rss_mb": vm_rss_mb(proc.pid),
                    }
                )
                next_sample += 1.0
            time.sleep(0.01)
        jobs.fail(job_id, "stopped by benchmarks/ingest_rss.py")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log_path.read_text()
    retries = text.count("retry: Retry in") + text.count('"ingest.deferred"')  # before/after the fix
    tasks = text.count("succeeded in") + text.count("retry: Retry in")
    half = [(s["batches"], s["pool_rss_mb"]) for s in samples[len(samples) // 3 :] if s["pool_rss_mb"]]
    return {
        "seconds": seconds,
        "budget_mb": budget_mb,
        "consume_rate": rate,
        "batches_enqueued": samples[-1]["batches"],
        "retries": retries,
        "task_runs": tasks,
        "pool_rss_mb": {
            "first": samples[0]["pool_rss_mb"],
            "last": samples[-1]["pool_rss_mb"],
            "max": max(s["pool_rss_mb"] or 0 for s in samples),
        },
        "main_rss_mb": {"first": samples[0]["main_rss_mb"], "last": samples[-1]["main_rss_mb"]},
        "pool_mb_per_batch_after_first_third": round(slope(half), 4),
        "timeline": samples[::10],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--budget-mb", type=int, default=64, help="POSEQUEUE_MAX_REDIS_MB")
    parser.add_argument("--rate", type=float, default=4.0, help="batches finished per second")
    parser.add_argument("--video-seconds", type=int, default=1200)
    parser.add_argument("--tmp", default=None, help="folder to keep the video in between runs")
    args = parser.parse_args()
    tmp = Path(args.tmp or tempfile.mkdtemp(prefix="ingest-rss-"))
    tmp.mkdir(parents=True, exist_ok=True)
    result = run(tmp, args.broker, args.seconds, args.budget_mb, args.rate, args.video_seconds)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
