"""Serving a stored file over HTTP with single byte ranges (RFC 9110), so a video player can
seek: ``Range: bytes=a-b``, ``bytes=a-`` and ``bytes=-n``. A header this does not serve (another
unit, several ranges, malformed) is ignored and the whole file sent, as the RFC allows; a range
past the end is a 416."""

from __future__ import annotations

import mimetypes

from starlette.responses import Response, StreamingResponse

from posequeue.api.errors import ApiError
from posequeue.store import iter_range, uri_size

TYPES = {".json": "application/json", ".csv": "text/csv; charset=utf-8", ".mp4": "video/mp4"}


def content_type(name: str) -> str:
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (start, end) a ``Range`` header asks for, or None for the whole file."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    first, dash, last = spec.strip().partition("-")
    if unit.strip().lower() != "bytes" or "," in spec or not dash:
        return None
    if not (first.isdigit() or first == "") or not (last.isdigit() or last == "") or first == last == "":
        return None
    if first == "":  # the last n bytes
        start, end = max(0, size - int(last)), size - 1
        if int(last) == 0:
            start = size  # unsatisfiable
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
        if last and int(last) < start:
            return None
    if start >= size:
        raise ApiError(
            416,
            "range_not_satisfiable",
            f"the range {header!r} starts past the end of the file ({size} bytes)",
            {"Content-Range": f"bytes */{size}"},
        )
    return start, end


def serve(uri: str, name: str, range_header: str | None, head: bool = False) -> Response:
    """The file at ``uri`` as ``name``: whole (200) or the asked range (206), streamed."""
    size = uri_size(uri)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Disposition": f'inline; filename="{name.rsplit("/", 1)[-1]}"',
        "X-Content-Type-Options": "nosniff",
        # results are data, not part of the page: an HTML report runs in an opaque origin
        "Content-Security-Policy": "sandbox allow-scripts",
        "Cache-Control": "private, max-age=300",
    }
    wanted = parse_range(range_header, size)
    start, end = wanted or (0, size - 1)
    status = 200
    if wanted is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(max(0, end - start + 1))
    media = content_type(name)
    if head or size == 0:
        return Response(status_code=status, headers=headers, media_type=media)
    return StreamingResponse(
        iter_range(uri, start, end), status_code=status, headers=headers, media_type=media
    )
