"""The analysis task, on its own queue (``analysis``): one finished job's poses to the analysis
outputs. Sent by finalise when a job is done (unless submitted with ``--no-analysis``) and by
``posequeue analyze``.

Unlike inference batches, it is acknowledged when it starts (``acks_late=False``) and has its own
time limit (``ANALYSIS_TIME_LIMIT``): the overlay of a long video takes longer than Redis's
visibility timeout, after which a late-acknowledged task would be handed to a second worker. So
a worker killed mid-analysis takes the message with it: the running task writes a heartbeat,
and the job watchdog (``producer/watchdog.py``) sends a silent analysis again, a bounded number
of times, then fails it with the reason (``analysis/state.py``). Only the latest message of an
analysis starts it (``state.start``): a stale copy does nothing. A run superseded while it goes
on (re-sent by the watchdog when its beats could not reach Redis, or asked for again) neither
beats, nor writes more outputs (it checks before each), nor marks its end, nor deletes the
input: the newer run does.
"""

from __future__ import annotations

from typing import Any

from posequeue.analysis.params import Params
from posequeue.analysis.state import Superseded, beating, mark, start, still_current
from posequeue.config.celery_app import ANALYZE_TASK, app
from posequeue.config.schemas import AnalysisStatus, Job, JobStatus
from posequeue.config.settings import get_settings
from posequeue.errors import AnalysisError, JobNotFound, StoreError
from posequeue.jobs import get_jobs
from posequeue.logs import get_logger
from posequeue.store import open_store

log = get_logger(__name__)
ANALYSIS_TIME_LIMIT = 6 * 3600  # a 1-hour 1080p overlay takes about an hour on one core


@app.task(
    name=ANALYZE_TASK,
    acks_late=False,
    time_limit=ANALYSIS_TIME_LIMIT,
    soft_time_limit=ANALYSIS_TIME_LIMIT - 60,
)
def analyze_task(job_id: str, params: dict[str, Any], sends: int | None = None) -> None:
    """``sends``: which message of the analysis this is (``state.send``)."""
    jobs = get_jobs()
    try:
        job = jobs.get(job_id)
    except JobNotFound:
        log.warning("analysis.no_job", job_id=job_id)
        return
    if job.status is not JobStatus.DONE:
        reason = f"job {job_id} is {job.status.value}, not done"
        mark(jobs, job_id, AnalysisStatus.FAILED, expect=sends, error=reason)
        return
    if not start(jobs, job_id, sends):  # sent again meanwhile, or ended: not this copy's to run
        log.info("analysis.stale", job_id=job_id, sends=sends)
        return
    try:
        from posequeue.analysis.run import run_analysis

        with beating(jobs, job_id, sends):
            store, checked = open_store(get_settings().store), lambda: still_current(jobs, job_id, sends)
            uris = run_analysis(job_id, Params.from_json(params), store, before_write=checked)
    except Superseded:  # the newer run writes the outputs and ends the analysis
        log.info("analysis.superseded", job_id=job_id, sends=sends)
        return
    except ImportError as exc:
        reason = f"this worker lacks the analysis extra ({exc}): pip install 'posequeue[analysis]'"
        ended = mark(jobs, job_id, AnalysisStatus.FAILED, expect=sends, error=reason)
    except (AnalysisError, StoreError) as exc:
        ended = mark(jobs, job_id, AnalysisStatus.FAILED, expect=sends, error=str(exc))
    except Exception as exc:  # the worker and other jobs go on; the reason is on the job
        log.exception("analysis.error", job_id=job_id)
        reason = f"internal error in the analysis: {exc!r}"
        ended = mark(jobs, job_id, AnalysisStatus.FAILED, expect=sends, error=reason)
    else:
        ended = mark(jobs, job_id, AnalysisStatus.DONE, expect=sends, results=uris)
        log.info("analysis.done" if ended else "analysis.superseded", job_id=job_id, files=len(uris))
    if ended:  # a superseded run leaves the input to the newer one (a gone record, to retention)
        _delete_input(job)


def _delete_input(job: Job) -> None:
    """The job and its analysis have ended: its uploaded input goes (unless kept by settings)."""
    from posequeue.producer.finalize import delete_input

    try:
        delete_input(open_store(get_settings().store), job)
    except Exception:  # a failing clean-up never fails the analysis; retention removes it later
        log.exception("analysis.input_kept", job_id=job.job_id)
