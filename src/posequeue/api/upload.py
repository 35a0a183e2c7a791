"""A multipart upload, parsed as it arrives: the video part goes to a spool file chunk by chunk
(never the whole file in memory), the size limit is enforced while reading (a too-large upload
is refused without reading the rest), small form fields are kept as text.

The video is spooled to the API host's disk, not streamed straight to the store, because it must
be checked first: PyAV probes the content (not the name) and a refused upload never reaches the
store. The accepted file then goes to the store by the CLI's own submit code (boto3's multipart
upload on S3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from posequeue.api.errors import ApiError

FILE_FIELD = "file"
MAX_FIELD_BYTES = 64 * 1024  # an option's value; nothing legitimate comes near
MAX_FIELDS = 32
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(filename: str) -> str:
    """The upload's file name reduced to a harmless store key part (the name is only a label:
    the content decides whether it is a video)."""
    name = _UNSAFE.sub("_", filename.replace("\\", "/").rsplit("/", 1)[-1]).strip("._")
    return name[-100:] or "upload"


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "too_large",
        f"the upload is larger than this server's limit of {limit // (1 << 20)} MiB "
        "(POSEQUEUE_API_MAX_UPLOAD_MB)",
    )


@dataclass
class Upload:
    """What a multipart request carried: the spooled video (if any) and the text fields."""

    path: Path | None = None
    filename: str = ""
    size: int = 0
    fields: dict[str, str] = field(default_factory=dict)


class _Receiver:
    """python-multipart's callbacks: headers of each part, then its data, then its end."""

    def __init__(self, folder: Path, limit: int) -> None:
        self.folder, self.limit = folder, limit
        self.upload = Upload()
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._file: IO[bytes] | None = None
        self._text: bytearray | None = None

    def on_part_begin(self) -> None:
        self._headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" not in options:
            if len(self.upload.fields) >= MAX_FIELDS:
                raise ApiError(422, "invalid_request", f"more than {MAX_FIELDS} form fields")
            self._text = bytearray()
            return
        if self._name != FILE_FIELD:
            raise ApiError(
                422, "invalid_request", f"a file came in field {self._name!r}; send the video as 'file'"
            )
        if self.upload.path is not None:
            raise ApiError(422, "invalid_request", "one video per job: the form has two 'file' parts")
        self.upload.filename = safe_name(options[b"filename"].decode("utf-8", "replace"))
        self.upload.path = self.folder / self.upload.filename
        self._file = self.upload.path.open("wb")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self.upload.size += end - start
            if self.upload.size > self.limit:
                raise too_large(self.limit)
            self._file.write(data[start:end])
        elif self._text is not None:
            self._text += data[start:end]
            if len(self._text) > MAX_FIELD_BYTES:
                raise ApiError(422, "invalid_request", f"form field {self._name!r} is too long")

    def on_part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self._text is not None:
            self.upload.fields[self._name] = self._text.decode("utf-8", "replace")
            self._text = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


async def receive(request: Request, folder: Path, limit: int) -> Upload:
    """Parse a ``multipart/form-data`` request into ``folder``; ApiError on a malformed or
    too-large one. The caller owns ``folder`` and removes it."""
    _, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if not boundary:
        raise ApiError(422, "invalid_request", "a multipart/form-data body needs a boundary")
    receiver = _Receiver(folder, limit)
    callbacks = {name: getattr(receiver, name) for name in dir(receiver) if name.startswith("on_")}
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except ClientDisconnect:
        raise ApiError(400, "invalid_request", "the client went away before the upload ended") from None
    except (ValueError, KeyError) as exc:  # python-multipart's parse errors are ValueErrors
        raise ApiError(422, "invalid_request", f"malformed multipart body: {exc}") from None
    finally:
        receiver.close()
    return receiver.upload
