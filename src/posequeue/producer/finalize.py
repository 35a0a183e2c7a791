"""Finalising a job: assemble the batch parts in frame order, write JSON, CSV and manifest to the
store, record their URIs on the job and in the result backend. Runs once per job (SET NX guard)."""

from __future__ import annotations

import json
import time

from posequeue.config.celery_app import FINALIZE_TASK, app
from posequeue.config.models import get_model
from posequeue.config.settings import get_settings
from posequeue.jobs import fail_job, get_jobs, publish, summary
from posequeue.logs import get_logger
from posequeue.results import check_frames, contract, dumps, job_prefix, part_key, to_csv
from posequeue.store import StoreError, open_store

log = get_logger(__name__)


@app.task(name=FINALIZE_TASK, bind=True, max_retries=3)
def finalize(self, job_id: str) -> None:  # type: ignore[no-untyped-def]
    jobs = get_jobs()
    job = jobs.get(job_id)
    if job["status"] in ("done", "failed"):
        return
    store = open_store(get_settings().store)
    try:
        parts = [part_key(job_id, b) for b in range(job["batches_total"])]
        frames = [f for key in parts for f in json.loads(store.get_bytes(key))["frames"]]
        check_frames(frames, job["frames_total"])
        spec = get_model(job["model"])
        info = job["video_info"]
        video = {k: info[k] for k in ("width", "height", "fps", "rotation", "codec", "duration")}
        video["frame_count"] = len(frames)
        video["source"] = job["video"]
        model = {"name": spec.name, "keypoints": list(spec.keypoints)}
        prefix = job_prefix(job_id)
        uris = {
            "json": store.put_bytes(prefix + "poses.json", dumps(contract(job_id, video, model, frames))),
            "csv": store.put_bytes(prefix + "poses.csv", to_csv(frames, list(spec.keypoints)).encode(),
                                   "text/csv"),
        }  # fmt: skip
        uris["manifest"] = store.uri(prefix + "manifest.json")
        finished_at = time.time()
        manifest = summary(dict(job, status="done", results=uris, finished_at=finished_at))
        store.put_bytes(prefix + "manifest.json", dumps(manifest))
        jobs.finish(job_id, uris, finished_at)
        publish(app, jobs, job_id)
        store.delete(parts)
        log.info("job.done", job_id=job_id, frames=len(frames), **uris)
    except StoreError as exc:
        if self.request.retries < self.max_retries:
            raise self.retry(countdown=2.0) from None
        fail_job(app, jobs, job_id, f"cannot write results: {exc}")
    except ValueError as exc:
        fail_job(app, jobs, job_id, f"internal error while assembling results: {exc}")
