"""``posequeue analyze`` and the analysis formats of ``posequeue results``.

``add_commands(subparsers)`` adds ``analyze``; ``add_param_options(parser)`` the analysis
parameters (shared by ``analyze`` and anything else that starts one); ``fetch`` writes an
analysis output of a job to a file, a folder or stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from posequeue.analysis.params import FILTERS, Params
from posequeue.config.schemas import Job

# --format NAME -> the files it fetches (a trailing / fetches a folder's files)
FORMATS: dict[str, tuple[str, ...]] = {
    "angles": ("angles.csv",),
    "speeds": ("speeds.csv",),
    "analysis": ("analysis.json",),
    "trc": ("markers.trc",),
    "mot": ("angles.mot",),
    "overlay": ("overlay.mp4",),
    "report": ("report.html", "overlay.mp4"),
    "plots": ("plots/",),
    "opensim": ("markers.trc", "angles.mot"),
    "analysis-all": ("",),
}


def add_param_options(p: argparse.ArgumentParser) -> None:
    d = Params()
    g = p.add_argument_group("analysis (docs/analysis.md)")
    g.add_argument("--filter", choices=FILTERS, default=d.filter, help="smoothing (default %(default)s)")
    g.add_argument("--cutoff", type=float, help="Butterworth cutoff in Hz (default 6, lowered under 15 fps)")
    g.add_argument("--order", type=int, default=d.order, help="Butterworth order, even (default %(default)s)")
    g.add_argument(
        "--max-gap", type=int, default=d.max_gap, help="longest gap filled, frames (default %(default)s)"
    )
    g.add_argument(
        "--min-visibility",
        type=float,
        default=d.min_visibility,
        help="keypoints under it are missing (default %(default)s)",
    )
    g.add_argument("--no-outliers", dest="outliers", action="store_false", help="no Hampel outlier rejection")
    g.add_argument(
        "--hampel-window", type=int, default=d.hampel_window, help="samples either side (default %(default)s)"
    )
    g.add_argument(
        "--hampel-sigmas", type=float, default=d.hampel_sigmas, help="threshold (default %(default)s)"
    )
    g.add_argument(
        "--one-euro-min-cutoff", type=float, default=d.one_euro_min_cutoff, help="Hz (default %(default)s)"
    )
    g.add_argument(
        "--one-euro-beta", type=float, default=d.one_euro_beta, help="per px/s (default %(default)s)"
    )
    g.add_argument(
        "--no-flip",
        dest="flip_left_right",
        action="store_false",
        help="do not mirror people facing left (Sports2D's flip_left_right)",
    )
    g.add_argument(
        "--person-height", type=float, help="the person's height in metres: speeds in m/s, OpenSim in m"
    )
    g.add_argument("--px-per-m", type=float, help="the scale in pixels per metre, instead of --person-height")
    g.add_argument("--no-overlay", dest="overlay", action="store_false", help="skip overlay.mp4")


def params_from_args(args: argparse.Namespace) -> Params:
    """The analysis parameters of parsed options (AnalysisError names a bad one)."""
    from dataclasses import fields

    return Params(**{f.name: getattr(args, f.name) for f in fields(Params) if hasattr(args, f.name)})


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "analyze",
        help="run a done job's motion analysis again, with other parameters",
        description="Queue the analysis of a done job on the analysis queue (the models do not "
        "run again: the stored poses are read). Outputs replace the previous ones.",
    )
    p.add_argument("job", metavar="JOB")
    add_param_options(p)
    p.add_argument("--wait", action="store_true", help="wait for the analysis to end")
    p.add_argument("--timeout", type=float, help="with --wait: give up after this many seconds")
    p.add_argument("--json", action="store_true", help="print the analysis state as one JSON object")
    p.set_defaults(run=cmd_analyze)


def cmd_analyze(args: argparse.Namespace) -> int:
    from posequeue.analysis import state
    from posequeue.cli import _jobs
    from posequeue.config.schemas import JobStatus
    from posequeue.errors import EXIT_FAILED, EXIT_REFUSED, AnalysisError, JobNotFound

    try:
        params = params_from_args(args)
        jobs = _jobs()
        job = jobs.get(args.job)
    except (AnalysisError, JobNotFound) as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return EXIT_REFUSED
    if job.status is not JobStatus.DONE:
        print(
            f"error: job {args.job} is {job.status.value}: only a done job can be analysed", file=sys.stderr
        )
        return EXIT_REFUSED
    state.request(jobs, args.job, params)
    if not args.json:
        print(f"analysis of job {args.job} queued", file=sys.stderr)
    if args.wait:
        result = state.wait(jobs, args.job, timeout=args.timeout)
    else:
        result = jobs.get(args.job).analysis_summary()
    print_state(args.job, result, args.json)
    return EXIT_FAILED if result.get("status") == "failed" else 0


def print_state(job_id: str, result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"job_id": job_id, "analysis": result}))
        return
    print(f"analysis of job {job_id}: {result.get('status', 'none')}")
    if result.get("error"):
        print(f"error: {result['error']}")
    for name in ("report.html", "overlay.mp4", "analysis.json", "angles.csv"):
        if name in (result.get("results") or {}):
            print(f"{name}: {result['results'][name]}")


def _matches(name: str, pattern: str) -> bool:
    """A file name against a FORMATS pattern: exact, a folder ("plots/"), or "" (everything)."""
    return name == pattern or not pattern or (pattern.endswith("/") and name.startswith(pattern))


def fetch(job: Job, fmt: str, output: str | None) -> int:
    """Write an analysis output of a job: one file to ``output`` (or stdout), several into the
    folder ``output`` (default: ``./{job id}``). Returns the exit code."""
    from posequeue.errors import EXIT_FAILED, StoreError
    from posequeue.store import read_uri

    result = job.analysis_summary()
    uris: dict[str, str] = result.get("results") or {}
    if not uris:
        why = f"its analysis is {result['status']}" if result else "it has no analysis"
        error = f": {result['error']}" if result.get("error") else ""
        print(f"error: job {job.job_id} has no analysis outputs yet ({why}{error})", file=sys.stderr)
        return EXIT_FAILED
    names = [n for n in uris if any(_matches(n, pattern) for pattern in FORMATS[fmt])]
    if not names:
        print(f"error: job {job.job_id}'s analysis has no {fmt} output", file=sys.stderr)
        return EXIT_FAILED
    try:
        if len(FORMATS[fmt]) == 1 and not FORMATS[fmt][0].endswith("/") and FORMATS[fmt][0]:
            data = read_uri(uris[names[0]])
            if output:
                Path(output).write_bytes(data)
                print(output)
            else:
                sys.stdout.buffer.write(data)
            return 0
        folder = Path(output or job.job_id)
        for name in names:
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(read_uri(uris[name]))
        print(folder / names[0] if fmt == "report" else folder)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0
