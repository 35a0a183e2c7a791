"""The ``posequeue`` command: run workers, submit videos, follow jobs, fetch results."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from posequeue import __version__

if TYPE_CHECKING:
    from posequeue.config.schemas import Job
    from posequeue.jobs import Jobs
from posequeue.errors import EXIT_FAILED, EXIT_REFUSED


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from pydantic import ValidationError

    from posequeue.config.settings import get_settings
    from posequeue.errors import CoreSpecError, ModelError, WorkerConfigError
    from posequeue.logs import configure

    try:
        configure(get_settings().log_format)
        return int(args.run(args) or 0)
    except (ModelError, CoreSpecError, WorkerConfigError) as exc:  # refused, with the reason
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except ValidationError as exc:  # a POSEQUEUE_* variable out of range
        print(f"error: invalid settings: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except Exception as exc:  # Redis down, a password refused, TLS that does not match: one line
        from posequeue.unreachable import EXIT_UNAVAILABLE, is_redis_outage, redis_problem

        if not is_redis_outage(exc):
            raise
        print(f"error: {redis_problem(exc, get_settings().broker_url)}", file=sys.stderr)
        return EXIT_UNAVAILABLE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="posequeue",
        description="Distributed pose estimation for videos: producers cut videos into frame "
        "batches on Redis queues, Celery workers run the pose model, results go to the result "
        "backend and the store. Settings come from POSEQUEUE_* environment variables "
        "(POSEQUEUE_BROKER_URL, POSEQUEUE_STORE, ...; see the README's settings table).",
    )
    parser.add_argument("--version", action="version", version=f"posequeue {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("worker", help="start a Celery worker for a model's queues")
    p.add_argument("--model", help="model to serve (default: POSEQUEUE_DEFAULT_MODEL, blazepose)")
    p.add_argument(
        "--stage",
        default="all",
        help="'all' (ingest, every model stage and analysis: one host does everything), "
        "'ingest' (producer: decode and batch videos), 'analysis' (a done job's motion "
        "analysis), or a model stage such as 'landmarks' (default: all)",
    )
    p.add_argument(
        "--cores",
        help="core group this worker claims, e.g. 0-1 or 2,3: CPU cores "
        "for CPU runtimes (the process is pinned to them), NeuronCores for a neuron "
        "model; a core claimed by another worker on this host is refused",
    )
    p.add_argument(
        "--neuron-runtime",
        type=int,
        choices=(1, 2),
        default=2,
        help="Neuron runtime generation for a neuron model: 2 (libnrt, "
        "NEURON_RT_VISIBLE_CORES; default) or 1 (neuron-rtd, NEURONCORE_GROUP_SIZES)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="task threads sharing the process's models, so Redis I/O, pre- and "
        "post-processing overlap the model, under a supervisor that requeues a killed "
        "process's batches (default: 2 for a Neuron model, whose calls leave the CPU "
        "free; 1, Celery's prefork pool, for CPU runtimes, where host work and the "
        "model share the cores; see docs/performance.md)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        help="pool processes with --threads 1 (default: for a CPU runtime given neither "
        "--threads nor --concurrency, one single-thread process pinned to each core it may "
        "use, the layout measured fastest; else 1)",
    )
    p.add_argument("--loglevel", default="INFO")
    p.set_defaults(run=cmd_worker)

    p = sub.add_parser("submit", help="submit a video (local path or s3:// URI)")
    p.add_argument("video")
    p.add_argument("--model", help="model name (default: blazepose)")
    p.add_argument("--batch-size", type=int, help="frames per inference batch (default 8)")
    p.add_argument(
        "--people",
        type=int,
        help="most people per frame, each with a track_id kept through the video (default 1; "
        "POSEQUEUE_PEOPLE)",
    )
    p.add_argument(
        "--follow",
        choices=["most-present", "best-score"],
        help="which people: most-present keeps the people seen in the most frames, N at a time "
        "at most, whoever scores best in a frame; best-score the N best of each frame (default "
        "most-present; POSEQUEUE_FOLLOW)",
    )
    p.add_argument(
        "--video-mode",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="MediaPipe's video mode: a frame's landmarks place the person in the next frame and "
        "the detector runs only where nobody is followed (about a third less model work on a CPU; "
        "keypoints differ from the default, which detects on every frame as MediaPipe's static "
        "image mode does: docs/architecture.md, Video mode; POSEQUEUE_VIDEO_MODE)",
    )
    p.add_argument("--wait", action="store_true", help="wait for the job to end, with progress")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--timeout", type=float, help="with --wait: give up waiting after N seconds")
    p.add_argument(
        "--no-analysis",
        dest="analysis",
        action="store_false",
        help="poses only: no motion analysis when the job is done (docs/analysis.md)",
    )
    p.set_defaults(run=cmd_submit)

    p = sub.add_parser("status", help="a job's status, progress, timings and error")
    p.add_argument("job")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_status)

    from posequeue.analysis.cli import FORMATS as ANALYSIS_FORMATS

    p = sub.add_parser("results", help="write a finished job's results to a file or stdout")
    p.add_argument("job")
    p.add_argument(
        "--format",
        choices=["json", "csv", *ANALYSIS_FORMATS],
        default="json",
        help="poses: json, csv; the analysis's files (docs/analysis.md): angles (angles.csv), "
        "speeds, analysis (analysis.json), trc, mot, overlay, report (report.html and "
        "overlay.mp4 into the folder -o), plots, opensim, analysis-all (default: json)",
    )
    p.add_argument("-o", "--output", help="file to write (default: stdout), or a folder for several files")
    p.set_defaults(run=cmd_results)

    p = sub.add_parser("cancel", help="end a queued or running job now (status cancelled)")
    p.add_argument("job")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_cancel)

    p = sub.add_parser(
        "retry",
        help="run a failed or cancelled job again: finalise only when every part is in the "
        "store, else from the first segment",
    )
    p.add_argument("job")
    p.add_argument("--wait", action="store_true", help="wait for the job to end, with progress")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_retry)

    p = sub.add_parser("queues", help="depth of each queue and batches in flight")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_queues)

    p = sub.add_parser(
        "models",
        help="the models this host knows: built in, and those of the "
        "spec files in POSEQUEUE_MODEL_SPECS (checked)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_models)

    p = sub.add_parser("fetch-model", help="fetch and verify the bundled model files")
    p.set_defaults(run=cmd_fetch_model)

    p = sub.add_parser("demo", help="run the sample video end to end on embedded defaults")
    p.add_argument("--video", default=str(Path("samples") / "astronaut.mp4"))
    p.add_argument("--out", default="out", help="folder for the store, preview and logs")
    p.set_defaults(run=cmd_demo)

    from posequeue.analysis.cli import add_commands as add_analyze
    from posequeue.api.cli import add_command as add_api  # FastAPI loads when it runs
    from posequeue.convert.cli import add_command as add_convert  # TensorFlow loads when it runs
    from posequeue.fleet.cli import add_commands  # plan, flower
    from posequeue.neuron.cli import add_command as add_compile

    add_commands(sub)
    add_api(sub)
    add_analyze(sub)
    add_compile(sub)
    add_convert(sub)
    return parser


# -- worker ---------------------------------------------------------------------------------
def cmd_worker(args: argparse.Namespace) -> int:
    from posequeue.config.settings import get_settings
    from posequeue.malloc import reuse_freed_memory
    from posequeue.worker.launch import run, worker_role

    if not reuse_freed_memory():  # before the pool forks: its processes inherit the settings
        print(
            "warning: could not set malloc's thresholds (not glibc?): each batch's buffers are "
            "mapped afresh, ~1 ms per 5 MB",
            file=sys.stderr,
        )
    role = worker_role(
        args.model or get_settings().default_model,
        args.stage,
        args.cores,
        threads=args.threads,
        concurrency=args.concurrency,
        neuron_runtime=args.neuron_runtime,
    )
    return run(role, args.loglevel)


def _ensure_model_files(settings: Any) -> Path:
    from posequeue.worker.model_cache import blazepose_dir

    return blazepose_dir(settings.cache_dir, settings.model_dir)


def cmd_fetch_model(args: argparse.Namespace) -> int:
    from posequeue.config.settings import get_settings
    from posequeue.worker.model_cache import MissingModel

    try:
        print(_ensure_model_files(get_settings()))
    except MissingModel as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0


# -- client ---------------------------------------------------------------------------------
def _jobs() -> Jobs:
    from posequeue.config.settings import get_settings
    from posequeue.jobs import Jobs

    return Jobs.from_url(get_settings().broker_url)


def cmd_submit(args: argparse.Namespace) -> int:
    from posequeue.config.schemas import JobStatus
    from posequeue.config.settings import get_settings
    from posequeue.producer.submit import SubmitError, submit, wait

    jobs = _jobs()
    try:
        job_id = submit(
            args.video,
            settings=get_settings(),
            jobs=jobs,
            model=args.model,
            batch_size=args.batch_size,
            people=args.people,
            follow=args.follow,
            video_mode=args.video_mode,
            analysis=args.analysis,
        )
    except SubmitError as exc:
        if args.json:
            print(json.dumps({"job_id": None, "status": "failed", "refused": True, "error": str(exc)}))
        else:
            print(f"error: submission refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    if not args.json:
        print(f"job {job_id} queued", file=sys.stderr)
    job = jobs.get(job_id)
    if args.wait:
        job = wait(
            job_id, jobs, on_progress=_progress_bar() if sys.stderr.isatty() else None, timeout=args.timeout
        )
    _print_job(job, args.json)
    return EXIT_FAILED if job.status in (JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.LOST) else 0


def _progress_bar() -> Any:
    def show(job: Job) -> None:
        total = job.frames_expected or 0
        done = job.frames_done
        width = 30
        filled = int(width * done / total) if total else 0
        line = f"\r{job.status.value:8} [{'#' * filled}{'.' * (width - filled)}] {done}/{total or '?'} frames"
        sys.stderr.write(line)
        if job.status.finished:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def _print_job(job: Job, as_json: bool) -> None:
    """A job's summary (``jobs.summary``) as JSON, or lines for a person."""
    from posequeue.jobs import summary

    if as_json:
        print(json.dumps(summary(job)))
        return
    total = "?" if job.frames_total is None else job.frames_total
    print(f"job {job.job_id}: {job.status.value}, {job.frames_done}/{total} frames")
    for name, start, end in (
        ("queued", job.submitted_at, job.started_at),
        ("ran", job.started_at, job.finished_at),
    ):
        if start is not None:
            print(f"{name}: {(time.time() if end is None else end) - start:.2f} s")
    if job.corrupt_packets:
        print(f"corrupt packets skipped: {job.corrupt_packets}")
    for warning in job.warnings:
        print(f"warning: {warning}")
    if job.error:
        print(f"error: {job.error}")
    for kind, uri in job.results.items():
        print(f"{kind}: {uri}")
    if job.analysis is not None:
        error = f": {job.analysis_error}" if job.analysis_error else ""
        print(f"analysis: {job.analysis.value}{error}")
        for name in ("report.html", "overlay.mp4"):
            if name in job.analysis_results:
                print(f"{name}: {job.analysis_results[name]}")


def cmd_status(args: argparse.Namespace) -> int:
    from posequeue.jobs import JobNotFound

    try:
        job = _jobs().get(args.job)
    except JobNotFound as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return EXIT_REFUSED
    _print_job(job, args.json)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from posequeue.errors import JobNotFound
    from posequeue.producer.control import ControlError, cancel

    try:
        out = cancel(args.job, _jobs())
    except (JobNotFound, ControlError) as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return EXIT_REFUSED
    if args.json:
        print(json.dumps(out))
    else:
        dropped = out["dropped"]
        print(
            f"job {args.job}: cancelled ({dropped['messages']} queued messages and "
            f"{dropped['keys']} Redis keys dropped)"
        )
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    from posequeue.errors import JobNotFound
    from posequeue.producer.control import ControlError, retry
    from posequeue.producer.submit import wait

    jobs = _jobs()
    try:
        out = retry(args.job, jobs)
    except (JobNotFound, ControlError) as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return EXIT_REFUSED
    if not args.wait:
        print(json.dumps(out) if args.json else f"job {args.job}: running again from {out['resumed']}")
        return 0
    job = wait(args.job, jobs, on_progress=_progress_bar() if sys.stderr.isatty() else None)
    _print_job(job, args.json)
    return 0 if job.status.value == "done" else EXIT_FAILED


def cmd_results(args: argparse.Namespace) -> int:
    from posequeue.config.schemas import JobStatus
    from posequeue.jobs import JobNotFound
    from posequeue.results import ResultNotReady, result_uri
    from posequeue.store import StoreError, read_uri

    try:
        job = _jobs().get(args.job)
    except JobNotFound as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return EXIT_REFUSED
    if job.status is not JobStatus.DONE:
        print(
            f"error: job {args.job} is {job.status.value}" + (f": {job.error}" if job.error else ""),
            file=sys.stderr,
        )
        return EXIT_FAILED
    if args.format not in ("json", "csv"):
        from posequeue.analysis.cli import fetch

        return fetch(job, args.format, args.output)
    try:
        data = read_uri(result_uri(job, args.format))  # where the fleet wrote it
    except (ResultNotReady, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.output:
        Path(args.output).write_bytes(data)
        print(args.output)
    else:
        sys.stdout.buffer.write(data)
    return 0


def cmd_queues(args: argparse.Namespace) -> int:
    from posequeue.monitor import queue_report

    report = queue_report(_jobs())
    if args.json:
        print(json.dumps(report))
        return 0
    for name, depth in report["queues"].items():
        print(f"{name:32} {depth:8d} queued")
    print(f"{'unacked (running or reserved)':32} {report['unacked']:8d}")
    budget = report["budget"]
    print(
        f"memory budget: {budget['held_mb']} of {budget['limit_mb']} MiB held by {budget['jobs_holding']} "
        f"jobs, {len(budget['jobs_waiting'])} waiting (peak {budget['peak_mb']} MiB)"
    )
    for job in report["jobs"]:
        print(
            f"job {job['job_id']}: {job['status']}, {job['inflight']} batches in flight "
            f"({job['budget_mb']} MiB), {job['frames_done']}/{job.get('frames_total', '?')} frames"
        )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from posequeue.config.catalogue import all_models
    from posequeue.config.queues import stage_queue

    models: list[dict[str, Any]] = [
        {
            "name": m.name,
            "runtime": m.runtime,
            "keypoints": len(m.keypoints),
            "source": m.source,
            "stages": [
                {
                    "name": s.name,
                    "kind": s.kind,
                    "path": s.file,
                    "input": [*s.input_size, 3],
                    "compiled_batch": s.compiled_batch,
                    "queue": stage_queue(m.name, s.name),
                }
                for s in m.stages
            ],
        }
        for m in all_models().values()
    ]
    if args.json:
        print(json.dumps(models))
        return 0
    for m in models:
        print(f"{m['name']}: {m['runtime']}, {m['keypoints']} keypoints ({m['source']})")
        for s in m["stages"]:
            print(
                f"  {s['name']:12} {s['kind']:20} input {'x'.join(map(str, s['input']))}, "
                f"compiled batch {s['compiled_batch']}: {s['path']}"
            )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from posequeue.demo import run_demo

    return run_demo(Path(args.video), Path(args.out))


if __name__ == "__main__":
    sys.exit(main())
