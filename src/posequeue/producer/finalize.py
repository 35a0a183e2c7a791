"""Finalising a job: assemble the batch parts in frame order, give each person a track id
(analysis/tracking.py), write JSON, CSV and manifest to the store, record their URIs on the job
and in the result backend.

Idempotent and locked: a second finalise (after a crash between the fan-in and sending this
task) waits for the lock, then finds the job done. Parts are fetched in parallel (one GET each on
S3) and the outputs are streamed to temporary files, so memory stays flat whatever the length
(the tracker keeps its live tracks only; following the most present people spools the tracked
frames to a local file and reads them back).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from celery import Task

from posequeue.analysis.params import Params
from posequeue.analysis.state import first_message, send
from posequeue.analysis.tracking import TrackParams, most_present, track
from posequeue.config.catalogue import get_model
from posequeue.config.celery_app import FINALIZE_TASK, app, defer
from posequeue.config.schemas import AnalysisStatus, Follow, Job, JobStatus
from posequeue.config.settings import get_settings
from posequeue.errors import JobError, JobNotRunning
from posequeue.jobs import get_jobs, publish, summary
from posequeue.logs import get_logger
from posequeue.policy import JobTask
from posequeue.results import ResultWriter, dumps, job_prefix, part_key
from posequeue.store import Store, StoreError, open_store

log = get_logger(__name__)
FETCH_THREADS = 16
MAX_STARTS = 4  # finalise started this often without finishing kills its worker


@app.task(
    name=FINALIZE_TASK,
    bind=True,
    base=JobTask,
    store_reason="cannot write results: {exc} (the parts are kept: `posequeue retry JOB` finishes the job)",
    internal_reason="internal error while assembling results: {exc!r}",
)
def finalize(self: Task, job_id: str) -> None:
    """Write the job's results and mark it done, once (failures: see ``posequeue.policy``)."""
    jobs = get_jobs()
    job = jobs.get(job_id)
    if job.status is not JobStatus.RUNNING:  # done by another finaliser, failed or cancelled
        raise JobNotRunning(job.status.value)
    if not jobs.lock_finalize(job_id, get_settings().task_time_limit):
        return defer(self, 10.0)  # another finaliser is at work, or died holding the lock
    starts = jobs.count(job_id, "finalize_starts")
    if starts > MAX_STARTS:  # each start before this one died without finishing or failing
        raise JobError(
            f"finalise was started {starts - 1} times without finishing: it kills its worker "
            f"(out of memory assembling {job.frames_total} frames?); check the ingest worker's "
            "log, then `posequeue retry JOB`"
        )
    store = open_store(get_settings().store)
    try:
        with tempfile.TemporaryDirectory(prefix="posequeue-final-") as tmp:
            uris = _write_outputs(store, job, Path(tmp))
        finished_at = time.time()
        manifest = summary(replace(job, status=JobStatus.DONE, results=uris, finished_at=finished_at))
        store.put_bytes(job_prefix(job_id) + "manifest.json", dumps(manifest))
    except StoreError:
        jobs.unlock_finalize(job_id)  # the retry takes the lock again
        jobs.update(job_id, {"finalize_starts": starts - 1})  # a store error is no crash
        raise
    analysis = None if job.analysis is AnalysisStatus.OFF else first_message(Params())
    before = jobs.finish(job_id, uris, finished_at, analysis)
    if before is not JobStatus.RUNNING:  # cancelled or failed while the outputs were written
        if before in (JobStatus.CANCELLED, JobStatus.FAILED):  # they must not outlive it
            _delete_outputs(store, job_id)
        raise JobNotRunning("gone" if before is None else before.value)
    publish(app, jobs, job_id)
    if analysis is not None:
        _send_analysis(job_id, analysis)
    store.delete([part_key(job_id, b) for b in range(job.batches_total or 0)])
    if job.analysis is AnalysisStatus.OFF:  # else the analysis draws its overlay on it, then deletes it
        delete_input(store, job)
    log.info("job.done", frames=job.frames_total, **uris)
    return None


def _delete_outputs(store: Store, job_id: str) -> None:
    """Delete the outputs of a finalise that lost the race with a cancel (or a failure): the
    job's status is decided in one script, after the outputs are written, so whoever ends the
    job second cleans up after itself."""
    prefix = job_prefix(job_id)
    try:
        store.delete([prefix + name for name in ("poses.json", "poses.csv", "manifest.json")])
    except StoreError as exc:  # retention does not reach them: say so
        log.warning("finalize.outputs_kept", job_id=job_id, reason=str(exc))


def delete_input(store: Store, job: Job) -> None:
    """Delete the job's uploaded copy of its input (``inputs/{job}/...``, written by submit when
    the store is S3, or by the HTTP API) unless POSEQUEUE_KEEP_INPUTS; a video the user named in
    place stays. Called when the job is done, or after its analysis when it has one."""
    if get_settings().keep_inputs or job.video == job.source:
        return
    prefix = store.uri(f"inputs/{job.job_id}/")
    if job.video.startswith(prefix):
        try:
            store.delete([job.video[len(store.uri("")) :]])
        except StoreError as exc:
            log.warning("finalize.input_kept", job_id=job.job_id, reason=str(exc))


def _send_analysis(job_id: str, analysis: dict[str, Any]) -> None:
    """Send the done job's motion analysis (docs/analysis.md), queued on the record with the
    job's end. A failure here is logged and leaves the job done: the watchdog sends a queued
    analysis that no worker holds, and `posequeue analyze` can start one later."""
    try:
        send(job_id, json.loads(analysis["analysis_params"]), analysis["analysis_sends"])
    except Exception:
        log.exception("analysis.not_sent", job_id=job_id)


def _frames(store: Store, job_id: str, batches: int) -> Iterator[dict[str, Any]]:
    """Every frame in order, parts fetched ahead in parallel (bounded by the pool's window)."""
    with ThreadPoolExecutor(FETCH_THREADS) as pool:
        window = FETCH_THREADS * 4
        futures = [pool.submit(store.get_bytes, part_key(job_id, b)) for b in range(min(window, batches))]
        for b in range(batches):
            data = futures[b].result()
            futures[b] = None  # type: ignore[call-overload]  # release the part once read
            if b + window < batches:
                futures.append(pool.submit(store.get_bytes, part_key(job_id, b + window)))
            yield from json.loads(data)["frames"]


def _write_outputs(store: Store, job: Job, tmp: Path) -> dict[str, str]:
    job_id = job.job_id
    spec = get_model(job.model)
    info = job.video_info
    video = {k: info[k] for k in ("width", "height", "fps", "rotation", "codec", "duration")}
    video.update(frame_count=job.frames_total, source=job.video)
    params = TrackParams()
    head = {
        "job_id": job_id,
        "video": video,
        "model": {"name": spec.name, "keypoints": list(spec.keypoints), "video_mode": job.video_mode},
        "people": {"max": job.people, "follow": job.follow.value, "tracking": params.to_dict()},
    }
    frames = track(_frames(store, job_id, job.batches_total or 0), params)
    if job.follow is Follow.MOST_PRESENT:
        frames = most_present(frames, job.people, tmp / "tracked.jsonl")
    with ResultWriter(tmp, head, list(spec.keypoints)) as out:
        for frame in frames:
            out.write(frame)
    if out.count != job.frames_total:
        raise ValueError(f"assembled {out.count} frames, expected {job.frames_total}")
    prefix = job_prefix(job_id)
    return {
        "json": store.put_file(prefix + "poses.json", out.json_path, "application/json"),
        "csv": store.put_file(prefix + "poses.csv", out.csv_path, "text/csv"),
        "manifest": store.uri(prefix + "manifest.json"),
    }
