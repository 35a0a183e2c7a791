"""The submit client: check the input, record the job, put its first ingest message on the queue.

Returns at once with a job id; the client may go away and the job goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from posequeue.config.celery_app import INGEST_TASK, app
from posequeue.config.models import ModelSpec, get_model
from posequeue.config.schemas import Cursor, Follow, Job
from posequeue.config.settings import MAX_PEOPLE, Settings
from posequeue.errors import ModelError, StoreError, SubmitError, VideoError
from posequeue.jobs import Jobs
from posequeue.producer.video import probe
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
    analysis: bool = True,
    callback_url: str | None = None,
    upload_as: str | None = None,
) -> str:
    """Check and enqueue ``video`` (a local path or ``s3://`` URI); return the job id.

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
    if spec.max_people == 1:  # one person per frame, no candidates: nothing to choose from
        follow = Follow.BEST_SCORE.value
    job_id = Jobs.new_id()
    source = _resolve(video, job_id, settings, upload_as)
    jobs.create(
        job_id=job_id,
        model=spec.name,
        video=source,
        batch_size=size,
        source=upload_as or video,
        people=people,
        follow=follow,
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


def _probe(source: str) -> None:
    """Exists, is a video (by its content, not its name), has a decodable video stream."""
    try:
        probe(source)
    except VideoError as exc:
        raise SubmitError(str(exc), "not_a_video") from None
    except StoreError as exc:  # the s3:// object is missing or unreadable
        raise SubmitError(str(exc), "missing") from None


def _resolve(video: str, job_id: str, settings: Settings, upload_as: str | None) -> str:
    """Where producers will read the video. A local file is read in place when the store is a
    local folder (one host); with an S3 store it is uploaded so producers on any host can read it.
    A local file is probed before any upload: a refused file never reaches the store."""
    if video.startswith("s3://"):
        _probe(video)
        return video
    path = Path(video).expanduser()
    if not path.is_file():
        raise SubmitError(f"{video}: no such file", "missing")
    _probe(str(path))
    if upload_as is None and not settings.store.startswith("s3://"):
        return str(path.resolve())
    try:
        store = open_store(settings.store)
        store.check()
        return store.put_file(f"inputs/{job_id}/{upload_as or path.name}", path, "video/*")
    except StoreError as exc:
        raise SubmitError(str(exc), "store") from None


def wait(
    job_id: str,
    jobs: Jobs,
    on_progress: Callable[[Job], None] | None = None,
    poll: float = 0.5,
    timeout: float | None = None,
) -> Job:
    """Poll the job until it ends (or ``timeout`` seconds pass); return its record."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        job = jobs.get(job_id)
        if on_progress:
            on_progress(job)
        if job.status.finished:
            return job
        if deadline is not None and time.monotonic() > deadline:
            return job
        time.sleep(poll)
