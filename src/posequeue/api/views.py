"""A job as the API shows it: the CLI's summary with its URL, progress, warnings and files.

Used by the endpoints and by the callback sender (the body of a callback is the same JSON)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from posequeue.api import ranges
from posequeue.api.auth import Tokens
from posequeue.config.schemas import Job, JobStatus
from posequeue.jobs import summary
from posequeue.results import result_files
from posequeue.store import Store

PREVIEW = "preview.png"


def job_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def brief(job: Job) -> dict[str, Any]:
    """A job as lists show it: the CLI's summary, its URL and progress."""
    out = summary(job)
    total = job.frames_expected or 0
    out.update(
        id=job.job_id,
        url=job_url(job.job_id),
        progress={
            "frames_done": job.frames_done,
            "frames_total": total or None,
            "fraction": _fraction(job, total),
        },
    )
    if job.callback_status is not None:
        out.update(
            callback_status=job.callback_status,
            callback_attempts=job.callback_attempts,
            callback_error=job.callback_error,
        )
    return out


def _fraction(job: Job, total: int) -> float:
    if job.status is JobStatus.DONE:
        return 1.0
    return round(min(job.frames_done / total, 0.999), 4) if total else 0.0


def input_uri(job: Job, store: Store) -> str | None:
    """The job's input video when the API may serve it: in S3, or uploaded to the store (a CLI
    job's local file elsewhere on a host is not served); None once an upload was deleted (when
    the job and its analysis ended, unless POSEQUEUE_KEEP_INPUTS)."""
    folder = f"inputs/{job.job_id}/"
    if job.video.startswith(store.uri(folder)):
        return job.video if store.keys(folder) else None
    return job.video if job.video.startswith(("s3://", store.root + "/")) else None


def input_name(uri: str) -> str:
    suffix = Path(uri.rsplit("/", 1)[-1]).suffix.lower()
    return "input" + (suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else "")


def files(job: Job, store: Store) -> dict[str, str]:
    """Name -> URI of every file the job offers: results, analysis outputs, the input video."""
    found = result_files(job, store) if job.status is JobStatus.DONE else {}
    uri = input_uri(job, store)
    if uri:
        found.setdefault(input_name(uri), uri)
    return found


def warnings(job: Job) -> list[str]:
    """What a person should know about a job that did not fail."""
    found = list(job.warnings)  # a damaged input: what is missing (corrupt packets included)
    if job.corrupt_packets and not found:
        found.append(f"{job.corrupt_packets} corrupt packets of the video were skipped")
    return found


def describe(job: Job, store: Store, tokens: Tokens) -> dict[str, Any]:
    """A job as ``GET /v1/jobs/{id}`` shows it (and callbacks send it)."""
    out = brief(job)
    out["warnings"] = warnings(job)
    offered = files(job, store)
    if job.status is JobStatus.DONE and PREVIEW not in offered and input_name(job.video) in offered:
        offered[PREVIEW] = ""  # drawn on first request (preview.py), then kept in the store
    base = job_url(job.job_id)
    out["files"] = [
        {
            "name": name,
            "url": f"{base}/results/{name}",
            "link": tokens.sign(f"{base}/results/{name}"),
            "type": ranges.content_type(name),
        }
        for name in sorted(offered)
    ]
    return out
