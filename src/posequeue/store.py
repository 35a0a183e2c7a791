"""Where videos come from and results go: S3 (boto3) or a local folder with the same key layout.

Layout under the store's root:
    inputs/{job_id}/{file name}        uploaded local videos (when producers may be on other hosts)
    jobs/{job_id}/parts/{batch}.json   per-batch results, written idempotently by workers
    jobs/{job_id}/poses.json           the output contract
    jobs/{job_id}/poses.csv            long format: frame,t,person,track,keypoint,x,y,z,visibility,presence
    jobs/{job_id}/manifest.json        job summary: status, counts, timings, result URIs
"""

from __future__ import annotations

import contextlib
import errno
import io
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import unquote, urlparse

from celery.exceptions import SoftTimeLimitExceeded

from posequeue.errors import StoreError


class Store(Protocol):
    root: str

    def uri(self, key: str) -> str: ...
    def put_bytes(self, key: str, data: bytes, content_type: str = ...) -> str: ...
    def put_file(self, key: str, path: Path, content_type: str = ...) -> str: ...
    def get_bytes(self, key: str) -> bytes: ...
    def keys(self, prefix: str) -> list[str]: ...
    def delete(self, keys: list[str]) -> None: ...
    def check(self) -> None: ...


def split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StoreError(f"{uri!r} is not an s3://bucket/key URI")
    return parsed.netloc, parsed.path.lstrip("/")


_CLIENT_LOCK = threading.Lock()


def s3_client() -> Any:
    import boto3  # boto3 reads AWS_* variables, AWS_ENDPOINT_URL included

    # boto3.client() builds on the shared default session, which is not thread-safe: the API
    # serves requests from a thread pool. A client, once made, is.
    with _CLIENT_LOCK:
        return boto3.client("s3")


class FileStore:
    """A local folder (``file:///abs/path``): the embedded default, same key layout as S3."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")
        self.path = Path(unquote(urlparse(root).path))

    def uri(self, key: str) -> str:
        return f"{self.root}/{key}"

    def _file(self, key: str) -> Path:
        return self.path / key

    def _write(self, key: str, write: Callable[[Path], object]) -> str:
        target = self._file(key)
        # A temporary name of its own per write: two deliveries of one batch may write the same
        # key at once, and a shared name would let one rename the other's half-written file.
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            write(tmp)
            tmp.replace(target)  # atomic: readers never see half a file
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            lasting = exc.errno in REFUSED_ERRNOS
            raise StoreError(f"cannot write {self.uri(key)}: {exc.strerror or exc}", lasting) from None
        return self.uri(key)

    def put_bytes(self, key: str, data: bytes, content_type: str = "") -> str:
        return self._write(key, lambda tmp: tmp.write_bytes(data))

    def put_file(self, key: str, path: Path, content_type: str = "") -> str:
        return self._write(key, lambda tmp: shutil.copyfile(path, tmp))

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._file(key).read_bytes()
        except OSError as exc:
            lasting = exc.errno in REFUSED_ERRNOS
            raise StoreError(f"cannot read {self.uri(key)}: {exc.strerror}", lasting) from None

    def keys(self, prefix: str) -> list[str]:
        base = self._file(prefix)
        if not base.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.path))
            for p in base.rglob("*")
            if p.is_file() and not _is_temporary(p.name)
        )

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self._file(key).unlink(missing_ok=True)

    def check(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create store folder {self.path}: {exc.strerror}") from None


def _is_temporary(name: str) -> bool:
    """A FileStore write in progress (``.{name}.{hex}.tmp``), not a key."""
    return name.startswith(".") and name.endswith(".tmp")


class S3Store:
    """``s3://bucket/prefix`` through boto3."""

    def __init__(self, root: str, client: Any = None) -> None:
        self.root = root.rstrip("/")
        self.bucket, self.prefix = split_s3(self.root + "/")
        self.client = client or s3_client()

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def _guard(self, action: str, key: str, exc: Exception) -> StoreError:
        return aws_error(f"cannot {action} {self.uri(key)}", exc)

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/json") -> str:
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self.prefix + key, Body=data, ContentType=content_type
            )
        except Exception as exc:  # botocore raises many kinds; all mean the same to the job
            raise self._guard("write", key, exc) from None
        return self.uri(key)

    def put_file(self, key: str, path: Path, content_type: str = "application/octet-stream") -> str:
        try:
            self.client.upload_file(
                str(path), self.bucket, self.prefix + key, ExtraArgs={"ContentType": content_type}
            )
        except Exception as exc:
            raise self._guard("upload", key, exc) from None
        return self.uri(key)

    def get_bytes(self, key: str) -> bytes:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"]
            return body.read()
        except Exception as exc:
            raise self._guard("read", key, exc) from None

    def keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix
            )
            for page in pages:
                keys += [o["Key"][len(self.prefix) :] for o in page.get("Contents", [])]
        except Exception as exc:
            raise self._guard("list", prefix, exc) from None
        return sorted(keys)

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            chunk = [{"Key": self.prefix + k} for k in keys[start : start + 1000]]
            try:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk})
            except Exception as exc:
                raise self._guard("delete under", keys[start], exc) from None

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            raise StoreError(
                f"store bucket s3://{self.bucket} is not reachable: {describe_aws_error(exc)}; "
                "check POSEQUEUE_STORE, AWS credentials and AWS_ENDPOINT_URL"
            ) from None


# Refusals that waiting does not end: the job fails at once, naming them (a store that is away,
# slow or not yet created is waited out instead: POSEQUEUE_STORE_PATIENCE).
REFUSED_AWS_CODES = frozenset(
    {"AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "InvalidToken", "SignatureDoesNotMatch"}
)
REFUSED_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def _refused(exc: Exception) -> bool:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    # A HEAD (head_object, head_bucket) has no body: its refusal reads as code "403".
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return response.get("Error", {}).get("Code") in REFUSED_AWS_CODES or status == 403


def aws_error(what: str, exc: Exception) -> StoreError:
    """The ``StoreError`` for a failed S3 call (``what``: "cannot read s3://..."), ``lasting`` for
    a refusal. Celery's soft time limit, raised inside the call, is raised again as itself: it is
    the task's time running out, not the store's fault."""
    if isinstance(exc, SoftTimeLimitExceeded):
        raise exc
    return StoreError(f"{what}: {describe_aws_error(exc)}", lasting=_refused(exc))


def describe_aws_error(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        err = response["Error"]
        return f"{err.get('Code', '?')} {err.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"


def open_store(root: str) -> Store:
    """The store for a ``POSEQUEUE_STORE`` URI."""
    if root.startswith("s3://"):
        return S3Store(root)
    if root.startswith("file:///"):
        return FileStore(root)
    raise StoreError(f"{root!r} is not a store URI; use s3://bucket/prefix or file:///abs/path")


class S3Reader(io.RawIOBase):
    """A seekable, read-only file over an S3 object using ranged GETs, so the decoder streams a
    video from S3 without downloading all of it (each ingest segment reads only its part)."""

    def __init__(self, uri: str, client: Any = None) -> None:
        self.uri = uri
        self.bucket, self.key = split_s3(uri)
        self.client = client or s3_client()
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key)
        except Exception as exc:
            raise aws_error(f"cannot open {uri}", exc) from None
        self.size = int(head["ContentLength"])
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer: Any) -> int:
        if self.pos >= self.size:
            return 0
        end = min(self.pos + len(buffer), self.size) - 1
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={self.pos}-{end}")
            data = obj["Body"].read()
        except Exception as exc:
            raise aws_error(f"cannot read {self.uri}", exc) from None
        n = len(data)
        buffer[:n] = data
        self.pos += n
        return n


def open_video(source: str) -> IO[bytes] | str:
    """A local path as it is, or a buffered seekable reader for ``s3://`` (1 MiB reads)."""
    if source.startswith("s3://"):
        return io.BufferedReader(S3Reader(source), buffer_size=1 << 20)
    if source.startswith("file://"):
        return unquote(urlparse(source).path)
    return source


def unquote_file_uri(uri: str) -> str:
    """A ``file://`` URI as a local path; other URIs unchanged."""
    return unquote(urlparse(uri).path) if uri.startswith("file://") else uri


def read_uri(uri: str) -> bytes:
    """The bytes at a result URI as recorded on a job (s3:// or file://), wherever the store
    root of this process points."""
    if uri.startswith("s3://"):
        bucket, key = split_s3(uri)
        return S3Store(f"s3://{bucket}").get_bytes(key)
    try:
        return Path(unquote_file_uri(uri)).read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read {uri}: {exc.strerror}") from None


def uri_size(uri: str) -> int:
    """The size in bytes of the object at a URI (s3:// or file://); StoreError if it is not there."""
    if uri.startswith("s3://"):
        bucket, key = split_s3(uri)
        try:
            return int(s3_client().head_object(Bucket=bucket, Key=key)["ContentLength"])
        except Exception as exc:
            raise aws_error(f"cannot open {uri}", exc) from None
    try:
        return Path(unquote_file_uri(uri)).stat().st_size
    except OSError as exc:
        raise StoreError(f"cannot open {uri}: {exc.strerror}") from None


def iter_range(uri: str, start: int, end: int, chunk: int = 1 << 16) -> Iterator[bytes]:
    """Bytes ``start`` to ``end`` (inclusive) of the object at a URI, streamed in chunks: one
    ranged GET on S3, a seek on a file; never the whole object in memory."""
    if uri.startswith("s3://"):
        bucket, key = split_s3(uri)
        try:
            body = s3_client().get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")["Body"]
        except Exception as exc:
            raise aws_error(f"cannot read {uri}", exc) from None
        with contextlib.closing(body):
            yield from body.iter_chunks(chunk)
        return
    try:
        fh = Path(unquote_file_uri(uri)).open("rb")  # noqa: SIM115  (closed by the with below)
    except OSError as exc:
        raise StoreError(f"cannot read {uri}: {exc.strerror}") from None
    with fh:
        fh.seek(start)
        left = end - start + 1
        while left > 0:
            data = fh.read(min(chunk, left))
            if not data:
                return
            left -= len(data)
            yield data
