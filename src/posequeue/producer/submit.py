"""The submit client: check the input, record the job, put its first ingest message on the queue.

Returns at once with a job id; the client may go away and the job goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import redis

from posequeue.config.catalogue import ModelSpec, get_model
from posequeue.config.celery_app import INGEST_TASK, app
from posequeue.config.schemas import Cursor, Follow, Job, JobStatus
from posequeue.config.settings import MAX_PEOPLE, Settings
from posequeue.errors import JobNotFound, ModelError, StoreError, SubmitError, VideoError
from posequeue.jobs import Jobs
from posequeue.producer.video import LimitError, Limits, probe
from posequeue.store import open_store


def submit(
    video: str,
    *,
    settings: Settings,
    jobs: Jobs,
    model: str | None = None,
    batch_size: int | None = None,
    people: int | None = None,
    follow: str | None = None,
    video_mode: bool | None = None,
    analysis: bool = True,
    callback_url: str | None = None,
    upload_as: str | None = None,
) -> str:
    """Check and enqueue ``video`` (a local path or ``s3://`` URI); return the job id.

    ``video_mode``: follow people from frame to frame, the detector only where nobody is
    followed (``worker/video_mode.py``); else the detector runs on every frame.
    ``analysis``: run the motion analysis when the job is done (docs/analysis.md).
    ``upload_as``: the local file is handed over (an upload the HTTP API spooled): it goes into
    the store under this name whatever the store, as the caller removes its copy.
    ``callback_url`` is recorded on the job for the API's callback sender (api/callbacks.py)."""
    try:
        spec = get_model(model or settings.default_model)
    except ModelError as exc:  # an unknown model, a bad spec
        raise SubmitError(str(exc), "unknown_model") from None
    size = settings.batch_size if batch_size is None else batch_size
    compiled = spec.first_stage.compiled_batch
    if size < 1 or size % compiled:
        raise SubmitError(
            f"--batch-size {size} must be a positive multiple of the compiled batch size "
            f"{compiled} of {spec.name}",
            "batch_size",
        )
    people = settings.people if people is None else people
    follow = _follow(settings.follow if follow is None else follow)
    _check_people(people, spec)
    video_mode = settings.video_mode if video_mode is None else video_mode
    if video_mode and spec.no_video_mode:
        raise SubmitError(f"--video-mode: {spec.no_video_mode}; submit without it", "video_mode")
    if spec.max_people == 1:  # one person per frame, no candidates: nothing to choose from
        follow = Follow.BEST_SCORE.value
    job_id = Jobs.new_id()
    source = _resolve(video, job_id, settings, upload_as, Limits.from_settings(settings))
    jobs.create(
        job_id=job_id,
        model=spec.name,
        video=source,
        batch_size=size,
        source=upload_as or video,
        people=people,
        follow=follow,
        video_mode=video_mode,
        callback_url=callback_url,
    )
    if not analysis:
        from posequeue.analysis.state import AnalysisStatus, mark

        mark(jobs, job_id, AnalysisStatus.OFF)
    app.send_task(INGEST_TASK, args=[Cursor(job_id).to_dict()])
    return job_id


def _check_people(people: int, spec: ModelSpec) -> None:
    if not 1 <= people <= MAX_PEOPLE:
        raise SubmitError(
            f"--people {people}: give a number of people per frame from 1 to {MAX_PEOPLE}", "people"
        )
    if spec.max_people is not None and people > spec.max_people:
        raise SubmitError(
            f"--people {people}: model {spec.name} finds {spec.max_people} person per frame (it has no "
            "person detector); use --people 1 (and POSEQUEUE_PEOPLE=1 where it is set), or a model "
            "with one such as blazepose",
            "people",
        )


def _follow(value: str) -> str:
    choices = [f.value for f in Follow]
    if value not in choices:
        raise SubmitError(f"--follow {value!r}: choose one of {', '.join(choices)}", "follow")
    return value


def _probe(source: str, limits: Limits) -> None:
    """Exists, is a video (by its content, not its name), has a decodable video stream, and is
    within the producers' limits (pixels per frame, duration)."""
    try:
        probe(source, limits)
    except LimitError as exc:
        raise SubmitError(str(exc), "too_large") from None
    except VideoError as exc:
        raise SubmitError(str(exc), "not_a_video") from None
    except StoreError as exc:  # the s3:// object is missing or unreadable
        raise SubmitError(str(exc), "missing") from None


def _resolve(video: str, job_id: str, settings: Settings, upload_as: str | None, limits: Limits) -> str:
    """Where producers will read the video. A local file is read in place when the store is a
    local folder (one host); with an S3 store it is uploaded so producers on any host can read it.
    A local file is probed before any upload: a refused file never reaches the store."""
    if video.startswith("s3://"):
        _probe(video, limits)
        return video
    path = Path(video).expanduser()
    if not path.is_file():
        raise SubmitError(f"{video}: no such file", "missing")
    _probe(str(path), limits)
    if upload_as is None and not settings.store.startswith("s3://"):
        return str(path.resolve())
    try:
        store = open_store(settings.store)
        store.check()
        return store.put_file(f"inputs/{job_id}/{upload_as or path.name}", path, "video/*")
    except StoreError as exc:
        raise SubmitError(str(exc), "store") from None


REDIS_PATIENCE = 120.0  # seconds a waiting client rides out Redis being down (a restart)


def wait(
    job_id: str,
    jobs: Jobs,
    on_progress: Callable[[Job], None] | None = None,
    poll: float = 0.5,
    timeout: float | None = None,
    redis_patience: float = REDIS_PATIENCE,
) -> Job:
    """Poll the job until it ends (or ``timeout`` seconds pass); return its record.

    Redis going away for up to ``redis_patience`` seconds (a restart) is waited out; a job whose
    record is gone (Redis restarted without persistence) ends the wait as ``lost``, saying what
    to do. A job no ingest worker takes is failed by this client itself once
    POSEQUEUE_QUEUED_TIMEOUT has passed (the watchdog's check), so the wait always ends."""
    from posequeue.producer.watchdog import check

    deadline = None if timeout is None else time.monotonic() + timeout
    down_since: float | None = None
    while True:
        try:
            job = jobs.get(job_id)
            down_since = None
            if job.status is JobStatus.QUEUED and time.time() - job.submitted_at > queued_timeout():
                check(jobs, job, time.time())
                job = jobs.get(job_id)
        except JobNotFound:
            return Job.lost(job_id, LOST_REASON)
        except (redis.ConnectionError, redis.TimeoutError):
            down_since = down_since or time.monotonic()
            if time.monotonic() - down_since > redis_patience:
                raise
            time.sleep(min(2.0, poll * 2))
            continue
        if on_progress:
            on_progress(job)
        if job.status.finished:
            return job
        if deadline is not None and time.monotonic() > deadline:
            return job
        time.sleep(poll)


LOST_REASON = (
    "the job's record is gone from Redis (restarted without persistence, or the record expired): "
    "its results, if any, are lost; submit the video again, and run Redis with --appendonly yes "
    "(docs/operations.md#redis)"
)


def queued_timeout() -> int:
    from posequeue.config.settings import get_settings

    return get_settings().queued_timeout
