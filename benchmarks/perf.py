"""Performance figures for issue 6, measured side by side in one run and printed as one JSON object.

- raw model loops (spine.raw_loops: each stage's interpreter alone, worker threads and one core);
- worker efficiency per stage: one worker draining a pre-filled queue, frames/s divided by the
  raw loop, and its duty cycle (time in the model / wall time) from the `infer.batch` log lines;
  per stage (workers split by stage) and for one worker serving both stages (`all_stages`);
- the same with the model off the host (offhost/sitecustomize.py: recorded calls replayed as
  sleeps that use no CPU), as on an accelerator: prefork against task threads;
- client batch-size sweep (1, 2, 4, 8, 16): submit to done with one all-stage worker;
- producer alone: decode + working frame frames/s in-process (640x360 and 1280x720), and the
  ingest stage as a worker runs it (decode + working frame + Redis writes) from the pre-fill;
- latency from submit to the first batch result (first landmark `infer.batch` line), idle worker;
- worker layouts for the long video: one all-stage worker, two all-stage workers (pinned to one
  core each, and unpinned), and one process per stage;
- MediaPipe's own Pose solution run sequentially on the long video's frames, in its own venv,
  against posequeue's stages in one process (mediapipe_pose.py);
- Redis memory and the producer's RSS during a 2-hour job against slow workers, a few minutes
  sampled, then the job cancelled (redis_bound.py).

Ray Data is compared in benchmarks/ray_data.py (it needs the bench venv).

Usage: python benchmarks/perf.py [--seconds 60] [--prefill-seconds 30] [--skip a,b]
       [--mediapipe-python .venv-mediapipe/bin/python] [--redis-sample-seconds 180]
       [--out perf-results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from mediapipe_pose import MP_PYTHON, mediapipe_sequential
from spine import ROOT, fleet, raw_loops, report  # also puts tests/ on sys.path

from posequeue.monitor import queue_depth

DETECTOR_Q, LANDMARKS_Q = "pose.blazepose.detector", "pose.blazepose.landmarks"
BATCH_SIZES = (1, 2, 4, 8, 16)


# -- helpers --------------------------------------------------------------------------------
@contextlib.contextmanager
def patched_env(**values: str) -> Iterator[None]:
    """Set environment variables for the processes fleet() starts (it copies os.environ)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def worker(env: dict[str, str], log_path: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """One more ``posequeue worker`` against the fleet's Redis, ready when yielded."""
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "posequeue.cli", "worker", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            while " ready." not in log_path.read_text():
                if proc.poll() is not None:
                    raise RuntimeError(f"worker {args} exited: {log_path.read_text()[-2000:]}")
                time.sleep(0.1)
            yield proc
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def submit(video: Path, env: dict[str, str], *extra: str, wait: bool = True) -> dict[str, Any]:
    """Submit through the CLI; the job summary (submitted_at/finished_at are the job record's,
    so CLI start-up and the client's 0.5 s polling are not in elapsed_s)."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "posequeue.cli",
            "submit",
            str(video),
            "--json",
            *(["--wait"] if wait else []),
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    job: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    if wait:
        assert job["status"] == "done", job
    return job


def batch_lines(*logs: Path) -> list[dict[str, Any]]:
    """The `infer.batch` lines of worker logs (JSON), with `t` as epoch seconds, by time."""
    lines = []
    for path in logs:
        for raw in path.read_text().splitlines():
            if '"infer.batch"' not in raw:
                continue
            with contextlib.suppress(ValueError):
                line = json.loads(raw[raw.index("{") :])
                line["t"] = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()
                lines.append(line)
    return sorted(lines, key=lambda x: x["t"])


def first_result_s(job: dict[str, Any], *logs: Path) -> float:
    """Seconds from the job's submission to the end of its first landmark batch."""
    ends = [
        x["t"]
        for x in batch_lines(*logs)
        if x.get("job_id") == job["job_id"] and x.get("stage") == "landmarks"
    ]
    return round(min(ends) - job["submitted_at"], 3)


def drain_figures(lines: list[dict[str, Any]]) -> dict[str, float]:
    """Steady-state frames/s and duty cycle of one worker over its batches: the wall time runs
    from the end of the first batch to the end of the last, so the frames and model time of the
    batches after the first are counted (worker start-up and the first batch are left out)."""
    wall = lines[-1]["t"] - lines[0]["t"]
    frames = sum(x["frames"] for x in lines[1:])
    model = sum(x["model_s"] for x in lines[1:])
    return {
        "batches": len(lines),
        "frames_timed": frames,
        "seconds": round(wall, 3),
        "frames_per_s": round(frames / wall, 1),
        "model_s": round(model, 3),
        "duty_cycle": round(model / wall, 3),
        "model_idle_ms_per_batch": round(1000 * (wall - model) / (len(lines) - 1), 2),
    }


def wait_for(predicate: Any, timeout: float = 600, poll: float = 0.05) -> float:
    """Poll until ``predicate()`` is true; the time.time() when it was first seen true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(predicate)
        time.sleep(poll)
    return time.time()


# -- 1. worker efficiency per stage ---------------------------------------------------------
# The worker pools compared: the prefork pool (one task at a time per process), and task threads
# sharing one model so host work overlaps the model. Run in turns within one run: on a shared VM
# only ratios taken side by side mean something.
POOLS: dict[str, tuple[str, ...]] = {"prefork": ("--threads", "1"), "threads_2": ("--threads", "2")}


def efficiency(tmp: Path, video: Path, rounds: int = 2) -> dict[str, Any]:
    """Each pool in turn, ``rounds`` times: pre-fill the detector queue with a whole job, let one
    worker drain it, then one landmark worker drain the landmark queue (workers split by stage,
    as on core groups); then pre-fill again and let one worker serving both stages drain it
    (``all_stages``: its raw loop is the two models one after the other). The raw loops are
    taken right before and after each pool's drains and averaged."""
    out: dict[str, Any] = {"pools": {k: " ".join(v) for k, v in POOLS.items()}, "runs": []}
    for n in range(rounds):
        for pool, args in POOLS.items():
            folder = tmp / f"{pool}-{n}"
            folder.mkdir()
            before = raw_loops()
            run = drain_both(folder, video, *args)
            run["all_stages"] = drain_all_stages(folder / "all", video, *args)
            after = raw_loops()
            for stage in STAGES:
                raw = [chained(r, stage) for r in (before, after)]
                fig = run[stage]
                fig["raw_loop_frames_per_s"] = round(statistics.mean(raw), 1)
                fig["raw_loop_before_after"] = raw
                fig["efficiency"] = round(fig["frames_per_s"] / fig["raw_loop_frames_per_s"], 3)
            out["runs"].append({"round": n, "pool": pool, **run})

    def median(pool: str, stage: str, key: str) -> float:
        return statistics.median(r[stage][key] for r in out["runs"] if r["pool"] == pool)

    keys = ("efficiency", "duty_cycle", "frames_per_s")
    out["median"] = {
        pool: {stage: {k: median(pool, stage, k) for k in keys} for stage in STAGES} for pool in POOLS
    }
    return out


STAGES = ("detector", "landmarks", "all_stages")


def chained(loops: dict[str, dict[str, float]], stage: str) -> float:
    """A stage's raw loop frames/s; for ``all_stages`` the two models one after the other."""
    if stage != "all_stages":
        return loops[stage]["frames_per_s_worker_threads"]
    return 1 / sum(1 / loops[s]["frames_per_s_worker_threads"] for s in ("detector", "landmarks"))


@contextlib.contextmanager
def prefilled(tmp: Path, video: Path) -> Iterator[tuple[dict[str, str], Any, str, int, float]]:
    """A fleet running only the ingest stage, its memory budget opened up, and ``video`` submitted
    until all its batches wait on the detector queue: (env, Jobs, job id, batch count, when
    ingest ended)."""
    import redis

    from posequeue.jobs import Jobs

    big = {
        "POSEQUEUE_MAX_REDIS_MB": "100000",
        "POSEQUEUE_LOCK_DIR": str(tmp / "locks"),
    }
    with patched_env(**big), fleet(tmp, "--stage", "ingest") as env:
        jobs = Jobs(redis.Redis.from_url(env["POSEQUEUE_BROKER_URL"]))
        job_id = submit(video, env, wait=False)["job_id"]
        ingest_end = wait_for(lambda: jobs.get(job_id).batches_total is not None)
        total = jobs.get(job_id).batches_total
        wait_for(lambda: queue_depth(jobs, DETECTOR_Q) == total)
        yield env, jobs, job_id, total, ingest_end


def drain_all_stages(tmp: Path, video: Path, *worker_args: str) -> dict[str, Any]:
    """Pre-fill the detector queue, then let one worker serving both stages drain it: it runs
    each batch's landmarks in the detector's task. Frames/s from its landmark batches' ends;
    duty cycle from both stages' model time."""
    tmp.mkdir()
    with (
        prefilled(tmp, video) as (env, jobs, job_id, _, _),
        worker(env, tmp / "all.log", "--stage", "all", *worker_args),
    ):
        wait_for(lambda: jobs.get(job_id).status == "done", poll=0.2)
    lines = batch_lines(tmp / "all.log")
    ends = [x for x in lines if x["stage"] == "landmarks"]
    fig = drain_figures(ends)
    model = sum(x["model_s"] for x in lines if x["t"] > ends[0]["t"])  # batches after the first
    fig["model_s"] = round(model, 3)
    fig["duty_cycle"] = round(model / fig["seconds"], 3)
    fig["model_idle_ms_per_batch"] = round(1000 * (fig["seconds"] - model) / (len(ends) - 1), 2)
    return fig


def drain_both(tmp: Path, video: Path, *worker_args: str) -> dict[str, Any]:
    """Pre-fill the detector queue with a whole job's batches, then let one worker drain it;
    then one landmark worker drains the landmark queue it filled."""
    with prefilled(tmp, video) as (env, jobs, job_id, total, ingest_end):
        frames_total = jobs.get(job_id).frames_total
        submitted = jobs.get(job_id).submitted_at
        peak_mb = round(int(jobs.r.info("memory")["used_memory"]) / 2**20, 1)
        out: dict[str, Any] = {
            "video": {
                "seconds": round(frames_total / 30),
                "size": "640x360",
                "frames": frames_total,
                "batches": total,
                "batch_size": jobs.get(job_id).batch_size,
            },
            "ingest_worker_alone": {
                "seconds": round(ingest_end - submitted, 3),
                "frames_per_s": round(frames_total / (ingest_end - submitted), 1),
                "redis_used_memory_mb_when_full": peak_mb,
            },
        }
        with worker(env, tmp / "detector.log", "--stage", "detector", *worker_args):
            wait_for(lambda: len(batch_lines(tmp / "detector.log")) >= total, poll=0.2)
        assert queue_depth(jobs, LANDMARKS_Q) == total, "every batch should reach the landmark queue"
        with worker(env, tmp / "landmarks.log", "--stage", "landmarks", *worker_args):
            wait_for(lambda: jobs.get(job_id).status == "done", poll=0.2)
        for stage, log in (("detector", "detector.log"), ("landmarks", "landmarks.log")):
            out[stage] = drain_figures(batch_lines(tmp / log))
    return out


# -- 1b. worker efficiency with the model off the host -------------------------------------
OFFHOST = ROOT / "benchmarks" / "offhost"


def offhost(tmp: Path, video: Path, rounds: int = 1) -> dict[str, Any]:
    """Worker efficiency as on an accelerator: the model's calls are recorded once with the real
    runtime (one all-stage worker draining a pre-filled job), then replayed by every pool as
    sleeps of the recorded length that use no CPU (offhost/sitecustomize.py), so host work and
    Redis are real and only the model is off the host. The raw loop is the job's frames over
    the recorded model time of both stages; it includes the first, slower calls that the drain
    figures leave out, so a short video overstates the efficiency (the default pre-fill, 30 s,
    puts it within 0.01 of the duty cycle)."""
    import numpy as np

    calls = tmp / "calls"
    path = os.pathsep.join(filter(None, [str(OFFHOST), os.environ.get("PYTHONPATH")]))
    with patched_env(PYTHONPATH=path, POSEQUEUE_BENCH_OFFHOST=f"record:{calls}"):
        recorded = drain_all_stages(tmp / "record", video)
    seconds, rows = {}, {}  # per model file: recorded seconds, and rows (frames, or crops)
    for folder in sorted(p for p in calls.iterdir() if p.is_dir()):
        seconds[folder.name] = rows[folder.name] = 0.0
        for file in folder.glob("*.npz"):
            with np.load(file) as data:
                seconds[folder.name] += float(data["__seconds__"])
                rows[folder.name] += len(data[next(k for k in data.files if k != "__seconds__")])
    frames = rows["pose_detection"]  # every frame goes through the detector; crops only where a person is
    per_frame = {name: s / frames for name, s in seconds.items()}
    raw = 1 / sum(per_frame.values())
    out: dict[str, Any] = {
        "model_ms_per_frame_recorded": {k: round(1000 * v, 3) for k, v in per_frame.items()},
        "raw_loop_frames_per_s": round(raw, 1),
        "record_pass_cpu_model": recorded,
        "runs": [],
    }
    with patched_env(PYTHONPATH=path, POSEQUEUE_BENCH_OFFHOST=f"replay:{calls}"):
        for n in range(rounds):
            for pool, args in POOLS.items():
                fig = drain_all_stages(tmp / f"{pool}-{n}", video, *args)
                fig["efficiency"] = round(fig["frames_per_s"] / raw, 3)
                out["runs"].append({"round": n, "pool": pool, **fig})
    keys = ("efficiency", "duty_cycle", "frames_per_s")
    out["median"] = {
        pool: {k: statistics.median(r[k] for r in out["runs"] if r["pool"] == pool) for k in keys}
        for pool in POOLS
    }
    return out


# -- 2, 4, 5. end to end: batch sizes, latency, layouts -------------------------------------
def sweep(tmp: Path, video: Path, sizes: tuple[int, ...] = BATCH_SIZES, **env_vars: str) -> dict[str, Any]:
    """One all-stage worker, one job per client batch size, submit to done."""
    out = {}
    with patched_env(**env_vars), fleet(tmp) as env:
        for size in sizes:
            job = submit(video, env, "--batch-size", str(size))
            lines = [x for x in batch_lines(tmp / "worker.log") if x.get("job_id") == job["job_id"]]
            model = sum(x["model_s"] for x in lines)
            out[str(size)] = {
                "frames": job["frames_total"],
                "seconds": job["elapsed_s"],
                "frames_per_s": round(job["frames_total"] / job["elapsed_s"], 1),
                "first_result_s": first_result_s(job, tmp / "worker.log"),
                "model_share_of_wall": round(model / job["elapsed_s"], 3),
            }
    return out


def latency(tmp: Path, video: Path, repeats: int = 3) -> dict[str, Any]:
    """Submit to the first landmark batch's end with an idle all-stage worker (batch 8)."""
    with fleet(tmp) as env:
        runs = []
        for _ in range(repeats):
            job = submit(video, env)
            runs.append(first_result_s(job, tmp / "worker.log"))
            time.sleep(1.0)  # idle again
    return {"video": video.name, "runs_s": runs, "median_s": statistics.median(runs)}


LAYOUTS: dict[str, list[tuple[str, ...]]] = {
    # The default on a CPU host: one single-thread pool process pinned to each core.
    "one_all_stage_worker": [()],
    # The default until issue 13: one process, its runtime on every core.
    "one_all_stage_worker_one_process": [("--concurrency", "1")],
    "two_all_stage_workers_pinned_one_core_each": [("--cores", "0"), ("--cores", "1")],
    "two_all_stage_workers_unpinned": [(), ()],
    "three_processes_ingest_detector_landmarks": [
        ("--stage", "ingest"),
        ("--stage", "detector"),
        ("--stage", "landmarks"),
    ],
}


def layouts(tmp: Path, video: Path, names: tuple[str, ...] = tuple(LAYOUTS)) -> dict[str, Any]:
    """Submit to done for each layout's processes, in folders named after them (whose stores
    keep the results until ``tmp`` goes)."""
    out = {}
    for name in names:
        workers = LAYOUTS[name]
        folder = tmp / name
        folder.mkdir()
        with (
            patched_env(POSEQUEUE_LOCK_DIR=str(folder / "locks")),
            fleet(folder, *workers[0]) as env,
            contextlib.ExitStack() as more,
        ):
            for n, args in enumerate(workers[1:], 1):
                more.enter_context(worker(env, folder / f"worker{n}.log", *args))
            job = submit(video, env)
            logs = sorted(folder.glob("worker*.log"))
            out[name] = {
                "processes": [" ".join(("posequeue worker", *a)) for a in workers],
                "frames": job["frames_total"],
                "seconds": job["elapsed_s"],
                "frames_per_s": round(job["frames_total"] / job["elapsed_s"], 1),
                "first_result_s": first_result_s(job, *logs),
            }
    return out


# -- 3. producer alone ----------------------------------------------------------------------
def producer(video: Path) -> dict[str, Any]:
    """Decode only, and decode + working frame (what the ingest task does before Redis),
    in this process on one video."""
    from posequeue.config.settings import get_settings
    from posequeue.producer.preprocess import work_frame
    from posequeue.producer.video import DecodeStats, read_segment, rotation_of

    long_side = get_settings().work_long_side
    out: dict[str, Any] = {}
    for label, convert in (("decode_only", False), ("decode_and_work_frame", True)):
        started, n = time.perf_counter(), 0
        for item in read_segment(str(video), None, 1e9, DecodeStats()):
            if convert:
                work_frame(item.frame, rotation_of(item.frame), long_side)
            n += 1
        out[f"{label}_frames_per_s"] = round(n / (time.perf_counter() - started), 1)
    out["frames"] = n
    return out


def breakdown(tmp: Path, video: Path, batch_size: int = 8, repeats: int = 30) -> dict[str, Any]:
    """Where a batch's time goes: each step of the two stages in this process (worker threads),
    with the Redis payload I/O against an embedded Redis; milliseconds per batch of 8 frames."""
    import redis

    from posequeue.config.settings import get_settings
    from posequeue.embedded import EmbeddedRedis
    from posequeue.malloc import reuse_freed_memory
    from posequeue.producer.preprocess import work_frame
    from posequeue.producer.video import DecodeStats, read_segment, rotation_of
    from posequeue.results import dumps
    from posequeue.worker import blazepose, stages

    reuse_freed_memory()  # as `posequeue worker` does
    long_side = get_settings().work_long_side
    frames_list = []
    for item in read_segment(str(video), None, 1e9, DecodeStats()):
        frames_list.append(work_frame(item.frame, rotation_of(item.frame), long_side))
        if len(frames_list) == batch_size:
            break
    import numpy as np

    frames = np.stack(frames_list)
    h, w = frames.shape[1:3]
    det, lm = stages.load("blazepose", "detector"), stages.load("blazepose", "landmarks")
    steps: dict[str, list[float]] = {}

    @contextlib.contextmanager
    def clock(name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        steps.setdefault(name, []).append(time.perf_counter() - started)

    with EmbeddedRedis(tmp / "redis") as server:
        r = redis.Redis.from_url(server.url)
        meta = json.dumps({"frames": list(range(batch_size)), "display": [w, h], "work": [w, h]})
        for _ in range(repeats + 1):
            with clock("ingest_redis_write_frames"):
                r.hset("b", mapping={"meta": meta, "frames": frames.tobytes()})
            with clock("detector_redis_read_frames"):
                raw = r.hgetall("b")
            got = np.frombuffer(raw[b"frames"], np.uint8).reshape(batch_size, h, w, 3)
            with clock("detector_letterbox_to_float"):
                batch, pads = blazepose.detector_input(got)
            with clock("detector_model"):
                out = det.runtime.run(batch)
            with clock("detector_decode_nms_roi"):
                rois = blazepose.regions(out, pads, (w, h))
            with clock("detector_crops"):
                crops = blazepose.crops(got, rois)
            with clock("detector_redis_write_crops"):
                r.hset(
                    "b",
                    mapping={
                        "crops": crops.tobytes(),
                        "rois": blazepose.encode_rois(rois),
                    },
                )
                r.hdel("b", "frames")
            with clock("landmarks_redis_read_crops"):
                raw = r.hgetall("b")
            c = np.frombuffer(raw[b"crops"], np.uint8).reshape(-1, 256, 256, 3)
            with clock("landmarks_to_float"):
                x = blazepose.landmark_input(c)
            with clock("landmarks_model"):
                out = lm.runtime.run(x)
            with clock("landmarks_refine_project"):
                people = blazepose.people(out, rois, (w, h))
            with clock("landmarks_result_json"):
                dumps({"frames": [{"index": i, "t": 0.0, "people": p} for i, p in enumerate(people)]})
    ms = {k: round(1000 * statistics.median(v[1:]), 2) for k, v in steps.items()}
    host = {k: v for k, v in ms.items() if not k.endswith("_model")}
    return {
        "batch_size": batch_size,
        "frame": f"{w}x{h}",
        "ms_per_batch_median": ms,
        "model_ms_per_batch": round(ms["detector_model"] + ms["landmarks_model"], 2),
        "host_ms_per_batch": round(sum(host.values()), 2),
        "host_ms_per_frame": round(sum(host.values()) / batch_size, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="long video (layouts, sweep)")
    parser.add_argument("--prefill-seconds", type=int, default=30, help="video for the drain test")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "perf-results.json"))
    parser.add_argument("--skip", default="", help="comma-separated sections to leave out")
    parser.add_argument(
        "--mediapipe-python",
        type=Path,
        default=MP_PYTHON,
        help="python of a venv with mediapipe==0.10.14 (make .venv-mediapipe/.installed)",
    )
    parser.add_argument("--redis-video-seconds", type=int, default=7200, help="the long job's video")
    parser.add_argument(
        "--redis-sample-seconds",
        type=float,
        default=180,
        help="how long the long job runs before it is cancelled",
    )
    parser.add_argument("--rounds", type=int, default=2, help="worker efficiency: turns per pool")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    if "mediapipe_sequential" not in skip and not args.mediapipe_python.exists():
        parser.error(
            f"--mediapipe-python {args.mediapipe_python} does not exist: build MediaPipe's venv "
            "with `make .venv-mediapipe/.installed`, or --skip mediapipe_sequential"
        )

    import videos
    from redis_bound import redis_bound  # it imports this module's helpers

    figures: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
            "runtime": "ai-edge-litert (tflite) on CPU",
        },
    }
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        long_video = videos.make_person_video(tmp / "long.mp4", seconds=args.seconds, width=640, height=360)
        prefill_video = videos.make_person_video(
            tmp / "prefill.mp4", seconds=args.prefill_seconds, width=640, height=360
        )
        hd_video = videos.make_person_video(tmp / "hd.mp4", seconds=10, width=1280, height=720)

        def section(name: str, fn: Any, *fn_args: Any, **fn_kwargs: Any) -> None:
            if name in skip:
                return
            started = time.perf_counter()
            figures[name] = fn(*fn_args, **fn_kwargs)
            timings[name] = round(time.perf_counter() - started, 1)
            print(f"# {name} done in {timings[name]} s", file=sys.stderr)

        def sub(name: str) -> Path:
            folder = tmp / name
            folder.mkdir()
            return folder

        section("raw_model_loops", raw_loops)
        section(
            "producer_in_process", lambda: {"640x360": producer(long_video), "1280x720": producer(hd_video)}
        )
        section("host_side_breakdown_in_process", breakdown, sub("breakdown"), long_video)
        section("worker_efficiency", efficiency, sub("efficiency"), prefill_video, args.rounds)
        section("worker_efficiency_model_off_host", offhost, sub("offhost"), prefill_video, args.rounds)
        section("latency_first_result", latency, sub("latency"), ROOT / "samples" / "astronaut.mp4")
        section(f"batch_size_sweep_{args.seconds}s_640x360", sweep, sub("sweep"), long_video)
        # Batches 1 and 2 again with a memory budget four times the default (more batches
        # queued ahead of the workers).
        section(
            f"batch_size_sweep_{args.seconds}s_640x360_budget_1024mb",
            sweep,
            sub("sweep1024"),
            long_video,
            (1, 2),
            POSEQUEUE_MAX_REDIS_MB="1024",
        )
        section(f"layouts_{args.seconds}s_640x360", layouts, sub("layouts"), long_video)
        section(
            "mediapipe_sequential", mediapipe_sequential, long_video, sub("mediapipe"), args.mediapipe_python
        )
        section(
            "redis_bound_2h",
            redis_bound,
            sub("redis_bound"),
            args.redis_video_seconds,
            args.redis_sample_seconds,
        )
    figures["section_seconds"] = timings
    report(figures, args.out)


if __name__ == "__main__":
    main()
