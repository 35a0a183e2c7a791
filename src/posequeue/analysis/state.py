"""The analysis's state, kept on the job's record (fields ``analysis_*`` of its hash), so
``posequeue status`` shows it and it expires with the job.

``analysis``: ``off`` (submitted with --no-analysis), ``queued``, ``running``, ``done`` or
``failed``; ``analysis_error``; ``analysis_results`` (JSON: output name -> URI);
``analysis_params`` (JSON); ``analysis_queued_at`` / ``_started_at`` / ``_finished_at``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from posequeue.analysis.params import Params
from posequeue.config import queues
from posequeue.config.celery_app import ANALYZE_TASK, app
from posequeue.config.keys import job_key
from posequeue.config.schemas import AnalysisStatus
from posequeue.jobs import Jobs

__all__ = ["AnalysisStatus", "mark", "request", "wait"]
_STAMPS = {
    AnalysisStatus.QUEUED: "analysis_queued_at",
    AnalysisStatus.RUNNING: "analysis_started_at",
    AnalysisStatus.DONE: "analysis_finished_at",
    AnalysisStatus.FAILED: "analysis_finished_at",
    AnalysisStatus.OFF: "analysis_finished_at",
}


def mark(jobs: Jobs, job_id: str, status: AnalysisStatus, **fields: Any) -> None:
    """Record the analysis's status (and its error, results, params, as given) on the job; a
    new analysis clears the previous one's error, results and times."""
    mapping: dict[str, Any] = {"analysis": status.value, _STAMPS[status]: time.time()}
    for name, value in fields.items():
        mapping[f"analysis_{name}"] = json.dumps(value) if isinstance(value, dict) else value
    stale = ["analysis_error"] if status is not AnalysisStatus.FAILED else []
    if status is AnalysisStatus.QUEUED:
        stale += ["analysis_results", "analysis_started_at", "analysis_finished_at"]
    with jobs.r.pipeline() as pipe:
        if stale:
            pipe.hdel(job_key(job_id), *stale)
        pipe.hset(job_key(job_id), mapping=mapping)
        pipe.execute()


def request(jobs: Jobs, job_id: str, params: Params) -> None:
    """Queue an analysis of a done job; sent by name, so the sender imports no analysis code
    (and needs no scipy)."""
    mark(jobs, job_id, AnalysisStatus.QUEUED, params=params.to_json())
    app.send_task(ANALYZE_TASK, args=[job_id, params.to_json()], queue=queues.ANALYSIS)


def wait(jobs: Jobs, job_id: str, poll: float = 0.5, timeout: float | None = None) -> dict[str, Any]:
    """Poll until the job's analysis ends (or the timeout passes); return its summary
    (``Job.analysis_summary``: {} when the job has none)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        job = jobs.get(job_id)
        if job.analysis is None or job.analysis.finished:
            return job.analysis_summary()
        if deadline is not None and time.monotonic() > deadline:
            return job.analysis_summary()
        time.sleep(poll)
