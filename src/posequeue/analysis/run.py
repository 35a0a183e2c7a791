"""One analysis of a finished job, store to store: read poses.json, analyse, write the files,
upload them beside poses.json under the job's prefix (a re-run with other parameters overwrites
them). No Celery here: the task (``analysis.task``) and tests call ``run_analysis``."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from posequeue.analysis.outputs import CONTENT_TYPES, write_outputs
from posequeue.analysis.params import Params
from posequeue.analysis.pipeline import analyze_frames
from posequeue.analysis.tracks import read_poses
from posequeue.results import job_prefix
from posequeue.store import Store


def overlay_source(head: dict[str, Any]) -> str | None:
    """Where PyAV can read the job's video from this host: the input as submitted (an s3://
    upload, a URL, or a local path that exists here); None when it cannot (a local file on
    another host), and the overlay is skipped with a note."""
    source = str(head.get("video", {}).get("source") or "")
    if not source:
        return None
    if source.startswith(("s3://", "http://", "https://", "file://")):
        return source
    return source if Path(source).exists() else None


def _upload_gone(store: Store, job_id: str, video: str) -> bool:
    """The video is the job's upload in the store (``inputs/{job}/``) and it is no longer there."""
    folder = f"inputs/{job_id}/"
    return video.startswith(store.uri(folder)) and not store.keys(folder)


def run_analysis(
    job_id: str, params: Params, store: Store, before_write: Callable[[], None] = lambda: None
) -> dict[str, str]:
    """Analyse job ``job_id``'s poses.json; returns {output name: URI}. ``before_write`` is
    called before each output goes into the store (``state.still_current``: a superseded run
    stops there).

    Raises:
        StoreError: poses.json cannot be read or an output cannot be written.
        AnalysisError: the parameters do not suit this video (e.g. a cutoff above Nyquist).
    """
    prefix = job_prefix(job_id)
    head, frames = read_poses(store.get_bytes(prefix + "poses.json"))
    analysis = analyze_frames(head, frames, params)
    video = overlay_source(head) if params.overlay else None
    if params.overlay and video is None:
        analysis.notes.append("no overlay: the job's video is not readable from the analysis worker's host")
    elif video is not None and _upload_gone(store, job_id, video):
        video = None
        analysis.notes.append(
            "no overlay: the uploaded video was deleted when the job and its first analysis ended "
            "(POSEQUEUE_KEEP_INPUTS=true keeps uploads)"
        )
    if not analysis.tracks:
        video = None
    with tempfile.TemporaryDirectory(prefix="posequeue-analysis-") as tmp:
        files = write_outputs(analysis, Path(tmp), video)
        uris = {}
        for name, path in files.items():
            before_write()
            content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
            uris[name] = store.put_file(prefix + name, path, content_type)
        return uris
