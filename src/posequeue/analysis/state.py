"""The analysis's state, kept on the job's record (fields ``analysis_*`` of its hash), so
``posequeue status`` shows it and it expires with the job.

``analysis``: ``off`` (submitted with --no-analysis), ``queued``, ``running``, ``done`` or
``failed``; ``analysis_error``; ``analysis_results`` (JSON: output name -> URI);
``analysis_params`` (JSON); ``analysis_queued_at`` / ``_started_at`` / ``_finished_at``.
"""

from __future__ import annotations

import json
import time
from enum import Enum
from typing import Any

from posequeue.analysis.params import Params
from posequeue.config import queues
from posequeue.config.celery_app import ANALYZE_TASK, app
from posequeue.jobs import Jobs, job_key


class AnalysisStatus(str, Enum):
    OFF = "off"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (AnalysisStatus.OFF, AnalysisStatus.DONE, AnalysisStatus.FAILED)


def mark(jobs: Jobs, job_id: str, status: AnalysisStatus, **fields: Any) -> None:
    """Record the analysis's status (and its error, results, params, as given) on the job."""
    mapping: dict[str, Any] = {"analysis": status.value, f"analysis_{status.value}_at": time.time()}
    for name, value in fields.items():
        mapping[f"analysis_{name}"] = json.dumps(value) if isinstance(value, dict) else value
    if status is not AnalysisStatus.FAILED:
        jobs.r.hdel(job_key(job_id), "analysis_error")
    jobs.r.hset(job_key(job_id), mapping=mapping)


def read(job: dict[str, Any]) -> dict[str, Any]:
    """The analysis part of a job record (as ``Jobs.get`` returns it), decoded; {} if none."""
    if "analysis" not in job:
        return {}
    out: dict[str, Any] = {"status": job["analysis"]}
    for name in ("error", "results", "params"):
        value = job.get(f"analysis_{name}")
        if value is not None:
            out[name] = json.loads(value) if name != "error" and isinstance(value, str) else value
    for name in ("queued_at", "running_at", "done_at", "failed_at"):
        if f"analysis_{name}" in job:
            out[name] = float(job[f"analysis_{name}"])
    return out


def wait(jobs: Jobs, job_id: str, poll: float = 0.5, timeout: float | None = None) -> dict[str, Any]:
    """Poll until the job's analysis ends (or the timeout passes); return its state."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        state = read(jobs.get(job_id))
        if not state or AnalysisStatus(state["status"]).finished:
            return state
        if deadline is not None and time.monotonic() > deadline:
            return state
        time.sleep(poll)


def request(jobs: Jobs, job_id: str, params: Params) -> None:
    """Queue an analysis of a done job; sent by name, so the sender imports no analysis code
    (and needs no scipy)."""
    mark(jobs, job_id, AnalysisStatus.QUEUED, params=params.to_json())
    app.send_task(ANALYZE_TASK, args=[job_id, params.to_json()], queue=queues.ANALYSIS)
