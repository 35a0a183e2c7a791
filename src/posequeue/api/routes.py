"""The /v1 endpoints: submit a job, list jobs, show one, fetch its result files.

Each calls the code the ``posequeue`` command calls (``producer.submit.submit``, ``Jobs.get`` and
``summary``, ``results.result_files``), never around it.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.responses import Response

from posequeue.api import ranges, upload
from posequeue.api.callbacks import rearm
from posequeue.api.errors import ApiError
from posequeue.api.views import PREVIEW, brief, describe, files, input_uri, job_url
from posequeue.config.schemas import Follow, Job, JobStatus
from posequeue.config.settings import Settings
from posequeue.jobs import JobNotFound, Jobs
from posequeue.producer.submit import SubmitError, submit
from posequeue.results import job_prefix
from posequeue.store import Store, StoreError

JOB_ID = re.compile(r"^[0-9a-f]{32}$")  # Jobs.new_id(): uuid4().hex
JSON_BODY_LIMIT = 64 * 1024
FORM_OVERHEAD = 1 << 20  # multipart boundaries and option fields around the video
# SubmitError.reason -> HTTP status: the client's input, or (store) the server's store
SUBMIT_STATUS = {"not_a_video": 415, "too_large": 413, "store": 503}


# Declared for the OpenAPI description (the "Authorize" button of /docs); Tokens.check decides.
bearer = HTTPBearer(auto_error=False, description="one of POSEQUEUE_API_TOKENS")


def require_token(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> None:
    request.app.state.tokens.check(request)


router = APIRouter(prefix="/v1")
authed = APIRouter(prefix="/v1", dependencies=[Depends(require_token)])


class JobOptions(BaseModel):
    """Options of a job, as ``posequeue submit`` takes them."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model: str | None = Field(None, description="model name (default: POSEQUEUE_DEFAULT_MODEL)")
    batch_size: int | None = Field(None, ge=1, le=256, description="frames per inference batch")
    people: int | None = Field(None, description="most people per frame, each with a track_id (default 1)")
    follow: Follow | None = Field(None, description="which people: most-present (default) or best-score")
    video_mode: bool | None = Field(
        None, description="follow people from frame to frame, the detector only where lost (default false)"
    )
    analysis: bool = Field(True, description="run the motion analysis when the job is done (--no-analysis)")
    callback_url: str | None = Field(None, description="POSTed to, signed, when the job ends")

    @field_validator("callback_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not re.match(r"^https?://[^/\s?#]+", value):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value


class JsonJob(JobOptions):
    """A job for a video already in S3."""

    video: str = Field(description="s3://bucket/key of the video")

    @field_validator("video")
    @classmethod
    def _s3(cls, value: str) -> str:
        if not value.startswith("s3://"):
            raise ValueError(
                f"{value!r} is not an s3:// URI; upload a local file as multipart/form-data ('file')"
            )
        return value


def _validated(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()]
        raise ApiError(422, "invalid_request", "; ".join(problems)) from None


def check_job_id(job_id: str) -> str:
    if not JOB_ID.match(job_id):
        raise ApiError(400, "bad_job_id", f"{job_id[:80]!r} is not a job id (32 hex digits)")
    return job_id


def _job(request: Request, job_id: str) -> Job:
    try:
        job: Job = request.app.state.jobs.get(check_job_id(job_id))
    except JobNotFound as exc:
        raise ApiError(404, "no_such_job", exc.args[0]) from None
    return job


# -- endpoints ------------------------------------------------------------------------------
SUBMIT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "the video"},
                        **JobOptions.model_json_schema()["properties"],
                    },
                }
            },
            "application/json": {"schema": JsonJob.model_json_schema()},
        },
    }
}


@authed.post(
    "/jobs",
    status_code=202,
    openapi_extra=SUBMIT_BODY,
    summary="Submit a video: a multipart upload ('file' and options) or JSON with an s3:// URI",
)
async def create_job(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        job_id = await _create_from_upload(request, settings)
    elif kind == "application/json":
        body = await _json_body(request)
        spec: JsonJob = _validated(JsonJob, body)
        job_id = await run_in_threadpool(_submit, request, spec.video, spec, None, None)
    else:
        raise ApiError(
            415,
            "unsupported_content_type",
            f"Content-Type {kind or 'none'!r}: send multipart/form-data with the video in 'file', "
            "or application/json with an s3:// URI in 'video'",
        )
    url = job_url(job_id)
    return JSONResponse({"id": job_id, "status": "queued", "url": url}, 202, headers={"Location": url})


async def _create_from_upload(request: Request, settings: Settings) -> str:
    limit = settings.api_max_upload_mb << 20
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit + FORM_OVERHEAD:
        raise upload.too_large(limit)  # refused before a byte of it is read
    folder = Path(tempfile.mkdtemp(prefix="posequeue-upload-"))
    try:
        received = await upload.receive(request, folder, limit)
        if received.path is None:
            raise ApiError(422, "invalid_request", "no video: send it as the form's 'file' part")
        options: JobOptions = _validated(JobOptions, received.fields)
        return await run_in_threadpool(
            _submit, request, str(received.path), options, received.filename, folder
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def _json_body(request: Request) -> Any:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > JSON_BODY_LIMIT:
            raise ApiError(413, "too_large", f"a JSON job is at most {JSON_BODY_LIMIT} bytes")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ApiError(422, "invalid_request", f"the body is not JSON: {exc}") from None


def _submit(
    request: Request, video: str, options: JobOptions, upload_as: str | None, folder: Path | None
) -> str:
    state = request.app.state
    if options.callback_url and not state.settings.callback_secret:
        raise ApiError(
            400,
            "callbacks_disabled",
            "this server signs no callbacks: it needs POSEQUEUE_CALLBACK_SECRET set to accept a callback_url",
        )
    try:
        return submit(
            video,
            settings=state.settings,
            jobs=state.jobs,
            model=options.model,
            batch_size=options.batch_size,
            people=options.people,
            follow=None if options.follow is None else options.follow.value,
            video_mode=options.video_mode,
            analysis=options.analysis,
            callback_url=options.callback_url,
            upload_as=upload_as,
        )
    except SubmitError as exc:
        message = str(exc).replace(f"{folder}/", "") if folder else str(exc)  # no spool paths
        code = {"store": "store_unavailable"}.get(exc.reason, exc.reason)
        raise ApiError(SUBMIT_STATUS.get(exc.reason, 422), code, message) from None


@authed.get("/jobs", summary="Jobs, newest first, a page at a time")
def list_jobs(
    request: Request,
    limit: int = Query(20, ge=1, le=100),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    jobs: Jobs = request.app.state.jobs
    found = []
    for job_id in jobs.recent(limit, offset):
        try:
            found.append(brief(jobs.get(job_id)))
        except JobNotFound:  # its record expired; the id stays in the index
            continue
    total = jobs.count_jobs()
    following = offset + limit
    return {
        "jobs": found,
        "total": total,
        "limit": limit,
        "offset": offset,
        "next": f"/v1/jobs?limit={limit}&offset={following}" if following < total else None,
    }


@authed.get("/jobs/{job_id}", summary="A job: status, progress, warnings, error, its files")
def get_job(request: Request, job_id: str) -> dict[str, Any]:
    state = request.app.state
    return describe(_job(request, job_id), state.store, state.tokens)


@contextlib.contextmanager
def _refusals(conflict: str) -> Iterator[None]:
    """A control command's refusals as the API answers them: 404 for a job it does not know,
    409 ``conflict`` for one in the wrong state."""
    from posequeue.producer.control import ControlError

    try:
        yield
    except JobNotFound as exc:
        raise ApiError(404, "no_such_job", exc.args[0]) from None
    except ControlError as exc:
        raise ApiError(409, conflict, str(exc)) from None


@authed.delete("/jobs/{job_id}", summary="Cancel a queued or running job (`posequeue cancel`)")
def cancel_job(request: Request, job_id: str) -> dict[str, Any]:
    from posequeue.producer.control import cancel

    state = request.app.state
    with _refusals("job_ended"):
        cancel(check_job_id(job_id), state.jobs)
    return describe(_job(request, job_id), state.store, state.tokens)


@authed.post(
    "/jobs/{job_id}/retry",
    status_code=202,
    summary="Run a failed or cancelled job again under its id (`posequeue retry`)",
)
def retry_job(request: Request, job_id: str) -> dict[str, Any]:
    from posequeue.producer.control import retry

    state = request.app.state
    with _refusals("not_retryable"):
        retry(check_job_id(job_id), state.jobs)
    job = _job(request, job_id)
    if job.callback_url:  # the job will end again: call back again
        rearm(state.jobs, job_id)
    return describe(job, state.store, state.tokens)


@router.head("/jobs/{job_id}/results/{name:path}", include_in_schema=False)
@router.get(
    "/jobs/{job_id}/results/{name:path}",
    summary="One of a job's files, with byte ranges (a token, or a signed link from the job)",
)
def get_result(
    request: Request,
    job_id: str,
    name: str,
    expires: str | None = None,
    sig: str | None = None,
) -> Response:
    state = request.app.state
    if not state.tokens.link_valid(request.url.path, expires, sig):
        state.tokens.check(request)
    job = _job(request, job_id)
    offered = files(job, state.store)
    try:
        if name == PREVIEW and name not in offered and job.status is JobStatus.DONE:
            offered[name] = _draw_preview(job, state.store)
    except (StoreError, ValueError) as exc:  # the video or poses unreadable now
        raise ApiError(503, "store_unavailable", f"cannot draw the preview: {exc}") from None
    if name not in offered:
        names = ", ".join(sorted(offered)) or "none yet"
        raise ApiError(
            404,
            "no_such_result",
            f"job {job_id} ({job.status.value}) has no file {name[:100]!r}; it has: {names}",
        )
    try:
        return ranges.serve(offered[name], name, request.headers.get("range"), request.method == "HEAD")
    except StoreError as exc:
        raise ApiError(503, "store_unavailable", str(exc)) from None


def _draw_preview(job: Job, store: Store) -> str:
    """The poses drawn on a few frames (preview.py, as `make demo` shows), kept in the store."""
    from posequeue.config.catalogue import get_model
    from posequeue.preview import render
    from posequeue.results import result_uri
    from posequeue.store import read_uri

    video = input_uri(job, store)
    if video is None:
        raise ApiError(404, "no_such_result", f"job {job.job_id}'s video is not in the store")
    poses = json.loads(read_uri(result_uri(job, "json")))
    with tempfile.TemporaryDirectory(prefix="posequeue-preview-") as tmp:
        path = render(video, poses, get_model(job.model).edges, Path(tmp) / PREVIEW)
        return store.put_file(job_prefix(job.job_id) + PREVIEW, path, "image/png")


@authed.get("/models", summary="Models this server can submit to: keypoint names and skeleton edges")
def list_models(request: Request) -> dict[str, Any]:
    from posequeue.config.catalogue import all_models

    models = [
        {
            "name": m.name,
            "runtime": m.runtime,
            "keypoints": list(m.keypoints),
            "edges": [list(e) for e in m.edges],
        }
        for m in sorted(all_models().values(), key=lambda m: m.name)
    ]
    return {"default": request.app.state.settings.default_model, "models": models}
