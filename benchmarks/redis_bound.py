"""Redis memory bounded by design: a 2-hour job against slow workers, sampled for a few minutes.

perf.py's section ``redis_bound_2h``. The video is 2 hours of 640x360 at 30 fps with a person
in every frame: a 2 s clip from ``tests/videos.make_person_video`` repeated by copying its
packets with shifted timestamps (no re-encoding: about 90 KB a copy, a few seconds to write).
A fresh embedded Redis and three processes: ``--stage ingest`` (the producer, unpinned) and
the two model stages both pinned to core 0 (``--stage detector --cores 0``, ``--stage
landmarks --cores 0``; separate claim folders let them share it), so the models run several
times slower than the producer and only the in-flight window holds it back. While the job runs,
Redis ``used_memory`` (INFO memory) and the ingest worker's RSS (its Celery parent and pool
child) are sampled; then the job is cancelled (failed with a reason, so workers drop its stale
batches), and Redis memory is read again once its queues are empty.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from perf import DETECTOR_Q, LANDMARKS_Q, patched_env, submit, worker
from spine import fleet

CLIP_SECONDS = 2


def long_video(path: Path, seconds: int) -> Path:
    """A ``seconds``-long 640x360 30 fps person video, made by repeating a 2 s clip's packets."""
    import av
    import videos

    clip = videos.make_person_video(path.with_name("clip.mp4"), seconds=CLIP_SECONDS, width=640, height=360)
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
    """Peak Redis used_memory and producer RSS while a long job is throttled by the window."""
    import redis

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
    batch_bytes = 640 * 360 * 3 * job.batch_size
    window = max(1, min(s.max_inflight_frames // job.batch_size, s.max_inflight_mb * 2**20 // batch_bytes))
    return {
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
        "window": {
            "max_inflight_frames": s.max_inflight_frames,
            "max_inflight_mb": s.max_inflight_mb,
            "batches": window,
            "frame_mb": round(batch_bytes / job.batch_size / 2**20, 3),
        },
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
