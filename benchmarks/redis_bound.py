"""Redis memory bounded by design: a 2-hour job against slow workers, sampled for a few minutes.

perf.py's section ``redis_bound_2h``. The video is 2 hours of 640x360 at 30 fps with a person
in every frame: a 2 s clip from ``tests/videos.make_person_video`` repeated by copying its
packets with shifted timestamps (no re-encoding: about 90 KB a copy, a few seconds to write).
A fresh embedded Redis and three processes: ``--stage ingest`` (the producer, unpinned) and
the two model stages both pinned to core 0 (``--stage detector --cores 0``, ``--stage
landmarks --cores 0``; separate claim folders let them share it), so the models run several
times slower than the producer and only the memory budget holds it back. While the job runs,
Redis ``used_memory`` (INFO memory) and the ingest worker's RSS (its Celery parent and pool
child) are sampled; then the job is cancelled (failed with a reason, so workers drop its stale
batches), and Redis memory is read again once its queues are empty.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from perf import DETECTOR_Q, LANDMARKS_Q, patched_env, submit, worker
from spine import fleet

CLIP_SECONDS = 2


def long_video(path: Path, seconds: int, width: int = 640, height: int = 360) -> Path:
    """A ``seconds``-long 30 fps person video, made by repeating a 2 s clip's packets."""
    import av
    import videos

    clip = videos.make_person_video(
        path.with_name(f"clip-{width}x{height}.mp4"), seconds=CLIP_SECONDS, width=width, height=height
    )
    with av.open(str(clip)) as src:
        template = src.streams.video[0]
        packets = [(bytes(p), p.pts, p.dts, p.is_keyframe, p.duration) for p in src.demux(template) if p.size]
        span = round(CLIP_SECONDS / template.time_base)
        with av.open(str(path), "w") as out:
            stream = out.add_stream_from_template(template)
            for k in range(seconds // CLIP_SECONDS):
                for data, pts, dts, key, duration in packets:
                    packet = av.Packet(data)
                    packet.pts, packet.dts, packet.duration = pts + k * span, dts + k * span, duration
                    packet.time_base, packet.is_keyframe, packet.stream = template.time_base, key, stream
                    out.mux(packet)
    return path


def rss_mb(pid: int) -> tuple[float, float]:
    """(RSS of the process, RSS of all its descendants) in MiB, from /proc: for a Celery worker,
    the main process and its pool children."""
    sizes, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        sizes.append((p, kib))
        todo.extend(int(c) for c in children)
    own = sum(kib for p, kib in sizes if p == pid)
    return round(own / 1024, 1), round((sum(kib for _, kib in sizes) - own) / 1024, 1)


def redis_bound(
    tmp: Path, video_seconds: int = 7200, sample_seconds: float = 180, every: float = 0.5
) -> dict[str, Any]:
    """Peak Redis used_memory and producer RSS while a long job is throttled by the budget."""
    import redis

    from posequeue.config.budget import Budget
    from posequeue.config.settings import get_settings
    from posequeue.jobs import Jobs
    from posequeue.monitor import queue_depth

    started = time.perf_counter()
    video = long_video(tmp / "two_hours.mp4", video_seconds)
    made_s = time.perf_counter() - started
    s = get_settings()
    with (
        patched_env(POSEQUEUE_LOCK_DIR=str(tmp / "locks")),
        fleet(tmp, "--stage", "detector", "--cores", "0") as env,
    ):
        slow = {**env, "POSEQUEUE_LOCK_DIR": str(tmp / "locks-landmarks")}
        with (
            worker(slow, tmp / "landmarks.log", "--stage", "landmarks", "--cores", "0"),
            worker(env, tmp / "ingest.log", "--stage", "ingest") as producer,
        ):
            client = redis.Redis.from_url(env["POSEQUEUE_BROKER_URL"])
            jobs = Jobs(client)
            base = int(client.info("memory")["used_memory"])
            job_id = submit(video, env, wait=False)["job_id"]
            t0 = time.monotonic()
            peak_mem, peak_rss, peak_main, peak_pool, timeline = base, 0.0, 0.0, 0.0, []
            while (elapsed := time.monotonic() - t0) < sample_seconds:
                used = int(client.info("memory")["used_memory"])
                main_rss, pool_rss = rss_mb(producer.pid)
                peak_mem, peak_rss = max(peak_mem, used), max(peak_rss, main_rss + pool_rss)
                peak_main, peak_pool = max(peak_main, main_rss), max(peak_pool, pool_rss)
                if not timeline or elapsed - timeline[-1]["t"] >= 30:
                    job = jobs.get(job_id)
                    timeline.append(
                        {
                            "t": round(elapsed),
                            "used_memory_mb": round(used / 2**20, 1),
                            "producer_main_rss_mb": main_rss,
                            "producer_pool_rss_mb": pool_rss,
                            "frames_done": job.frames_done,
                            "batches_enqueued": job.batches_enqueued,
                        }
                    )
                time.sleep(every)
            job = jobs.get(job_id)
            ran_s = time.monotonic() - t0
            jobs.fail(job_id, "cancelled by benchmarks/redis_bound.py")
            queues = (DETECTOR_Q, LANDMARKS_Q)
            deadline = time.monotonic() + 60
            while any(queue_depth(jobs, q) for q in queues) and time.monotonic() < deadline:
                time.sleep(0.5)
            after = int(client.info("memory")["used_memory"])
            server_peak = int(client.info("memory")["used_memory_peak"])
    frames_total = round(video_seconds * 30)
    return {
        "budget": {
            "max_redis_mb": s.max_redis_mb,
            "ledger_limit_mb": round(Budget.limit_for(s.max_redis_mb) / 2**20, 1),
        },
        "ledger_peak_mb": round(Budget(client, 0).peak() / 2**20, 1),
        "video": {
            "seconds": video_seconds,
            "size": "640x360",
            "fps": 30,
            "frames": frames_total,
            "made_in_s": round(made_s, 1),
            "file_mb": round(video.stat().st_size / 2**20, 1),
        },
        "layout": [
            "posequeue worker --stage ingest",
            "posequeue worker --stage detector --cores 0",
            "posequeue worker --stage landmarks --cores 0",
        ],
        "sampled_s": round(ran_s, 1),
        "sample_every_s": every,
        "job_when_cancelled": {
            "frames_done": job.frames_done,
            "batches_done": job.batches_done,
            "batches_enqueued": job.batches_enqueued,
            "share_of_video_done": round(job.frames_done / frames_total, 4),
            "frames_per_s": round(job.frames_done / ran_s, 1),
        },
        "redis_used_memory_mb": {
            "before": round(base / 2**20, 1),
            "peak_sampled": round(peak_mem / 2**20, 1),
            "peak_server_used_memory_peak": round(server_peak / 2**20, 1),
            "after_cancel_and_drain": round(after / 2**20, 1),
        },
        "producer_rss_mb": {
            "peak_main_plus_pool": round(peak_rss, 1),
            "peak_main": peak_main,
            "peak_pool_child": peak_pool,
        },
        "timeline": timeline,
    }


def concurrent_jobs(
    tmp: Path,
    jobs: int = 8,
    video_seconds: int = 10,
    width: int = 1280,
    height: int = 720,
    every: float = 0.05,
    timeout: float = 1800,
) -> dict[str, Any]:
    """``jobs`` person videos submitted at once to one ``posequeue worker`` (every stage) with
    default settings: peak Redis ``used_memory`` (sampled, and the server's own
    ``used_memory_peak``) and the budget ledger's peak, until every job ends."""
    import redis

    from posequeue.config.budget import Budget
    from posequeue.config.settings import get_settings

    video = long_video(tmp / f"person-{width}x{height}.mp4", video_seconds, width, height)
    s = get_settings()
    with fleet(tmp) as env:
        client = redis.Redis.from_url(env["POSEQUEUE_BROKER_URL"])
        base = int(client.info("memory")["used_memory"])
        t0 = time.monotonic()
        sampled = {"peak": base, "at": 0.0}
        stop = threading.Event()

        def sample() -> None:  # from before the first submit: the first job fills the budget at once
            own = redis.Redis.from_url(env["POSEQUEUE_BROKER_URL"])
            while not stop.is_set():
                used = int(own.info("memory")["used_memory"])
                if used > sampled["peak"]:
                    sampled.update(peak=used, at=time.monotonic() - t0)
                time.sleep(every)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            ids = [submit(video, env, wait=False)["job_id"] for _ in range(jobs)]
            while not all(client.hget(f"pq:job:{j}", "status") in (b"done", b"failed") for j in ids):
                if time.monotonic() - t0 > timeout:
                    raise TimeoutError(f"jobs not done after {timeout} s")
                time.sleep(0.5)
        finally:
            stop.set()
            sampler.join()
        elapsed = time.monotonic() - t0
        peak, peak_at = sampled["peak"], sampled["at"]
        server_peak = int(client.info("memory")["used_memory_peak"])
        summaries = [submit_status(j, env) for j in ids]
        ledger_peak = Budget(client, 0).peak()
    return {
        "jobs": jobs,
        "video": {"seconds": video_seconds, "size": f"{width}x{height}", "fps": 30},
        "layout": ["posequeue worker (every stage, default settings)"],
        "budget": {
            "max_redis_mb": s.max_redis_mb,
            "ledger_limit_mb": round(Budget.limit_for(s.max_redis_mb) / 2**20, 1),
            "ledger_peak_mb": round(ledger_peak / 2**20, 1),
        },
        "redis_used_memory_mb": {
            "before": round(base / 2**20, 1),
            "peak_sampled": round(peak / 2**20, 1),
            "peak_sampled_at_s": round(peak_at, 1),
            "peak_server_used_memory_peak": round(server_peak / 2**20, 1),
        },
        "elapsed_s": round(elapsed, 1),
        "frames_per_s": round(sum(x.get("frames_done", 0) for x in summaries) / elapsed, 1),
        "statuses": sorted(x["status"] for x in summaries),
        "frames_done": [x.get("frames_done") for x in summaries],
    }


def submit_status(job_id: str, env: dict[str, str]) -> dict[str, Any]:
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "posequeue.cli", "status", job_id, "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout))


if __name__ == "__main__":
    import argparse
    import json
    import tempfile

    parser = argparse.ArgumentParser(description="Redis memory: N concurrent jobs against one worker")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=10, help="each job's video")
    parser.add_argument("--size", default="1280x720")
    args = parser.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    with tempfile.TemporaryDirectory() as folder:
        print(json.dumps(concurrent_jobs(Path(folder), args.jobs, args.seconds, w, h), indent=2))
