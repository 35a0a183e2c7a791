"""``posequeue demo``: the whole path on one machine with embedded defaults.

Starts an embedded Redis (unless ``POSEQUEUE_BROKER_URL`` is set), a worker process serving every
queue, submits the sample video, shows progress, writes a preview PNG and prints where the
results are, then waits for the motion analysis and prints where its report and overlay are.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from posequeue.errors import EXIT_FAILED, EXIT_REFUSED
from posequeue.store import unquote_file_uri


def run_demo(video: Path, out: Path) -> int:
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if not os.environ.get("POSEQUEUE_BROKER_URL"):
            from posequeue.embedded import EmbeddedRedis

            redis_server = stack.enter_context(EmbeddedRedis(out / "redis"))
            os.environ["POSEQUEUE_BROKER_URL"] = redis_server.url
            print(f"embedded Redis at {redis_server.url}", file=sys.stderr)
        os.environ.setdefault("POSEQUEUE_STORE", (out / "store").as_uri())
        from posequeue.config.settings import get_settings

        get_settings.cache_clear()
        settings = get_settings()
        print(f"store: {settings.store}", file=sys.stderr)
        from posequeue.worker.model_cache import blazepose_dir

        print(f"model files: {blazepose_dir(settings.cache_dir, settings.model_dir)}", file=sys.stderr)
        log_path = out / "worker.log"
        worker = stack.enter_context(_worker(log_path))
        print(f"worker pid {worker.pid}, log {log_path}", file=sys.stderr)
        _wait_ready(worker)
        return _submit_and_report(video, out, worker)
    return 0


@contextlib.contextmanager
def _worker(log_path: Path):
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "posequeue.cli", "worker"], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)  # warm shutdown: finish the batch in hand
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_ready(worker: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until the worker answers a ping (its model is loaded by then)."""
    from posequeue.config.celery_app import app

    deadline = time.monotonic() + timeout
    while not app.control.ping(timeout=0.5):
        if worker.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the worker did not start; see its log")
    print("worker ready", file=sys.stderr)


def _submit_and_report(video: Path, out: Path, worker: subprocess.Popen) -> int:
    from posequeue.config.catalogue import get_model
    from posequeue.config.schemas import Job, JobStatus
    from posequeue.config.settings import get_settings
    from posequeue.jobs import Jobs
    from posequeue.producer.submit import SubmitError, submit, wait
    from posequeue.store import open_store

    settings = get_settings()
    jobs = Jobs.from_url(settings.broker_url)
    try:
        job_id = submit(str(video), settings=settings, jobs=jobs)
    except SubmitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"submitted {video} as job {job_id}", file=sys.stderr)
    started = time.monotonic()
    last = [-1]

    def progress(job: Job) -> None:
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited (code {worker.returncode}); see its log")
        done = job.frames_done
        if done != last[0]:
            last[0] = done
            total = job.frames_expected
            print(f"  {job.status.value}: {done}/{'?' if total is None else total} frames", file=sys.stderr)

    job = wait(job_id, jobs, on_progress=progress, poll=0.5, timeout=600)
    elapsed = time.monotonic() - started
    if job.status is not JobStatus.DONE:
        reason = "did not finish in time" if job.error is None else job.error
        print(f"job {job.status.value}: {reason}", file=sys.stderr)
        return EXIT_FAILED
    frames = job.frames_total or 0
    print(
        f"done: {frames} frames in {elapsed:.2f} s ({frames / elapsed:.1f} frames/s end to end)",
        file=sys.stderr,
    )
    store = open_store(settings.store)
    result = json.loads(store.get_bytes(f"jobs/{job_id}/poses.json"))
    from posequeue.preview import render

    spec = get_model(result["model"]["name"])
    preview = render(str(video), result, spec.edges, out / "preview.png")
    print(f"preview: {preview}")
    print(f"csv: {unquote_file_uri(job.results['csv'])}")
    print(f"results: {unquote_file_uri(job.results['json'])}")
    return _report_analysis(jobs, job_id)


def _report_analysis(jobs: Any, job_id: str) -> int:
    """Wait for the job's motion analysis; print where its report and overlay are."""
    from posequeue.analysis.state import wait as wait_analysis

    print("analysing (angles, plots, overlay video, report) ...", file=sys.stderr)
    state = wait_analysis(jobs, job_id, timeout=600)
    if state.get("status") != "done":
        print(
            f"analysis {state.get('status')}: {state.get('error', 'did not finish in time')}", file=sys.stderr
        )
        return EXIT_FAILED
    for name in ("angles.csv", "analysis.json", "overlay.mp4", "report.html"):
        label = name.split(".")[0]
        print(f"{label}: {unquote_file_uri(state['results'][name])}")
    return 0
