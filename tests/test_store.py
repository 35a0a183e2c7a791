"""Unit tests for posequeue.store: the local folder store, the S3 store (moto over HTTP) and
streaming videos from S3."""

from __future__ import annotations

import io
import threading
import uuid
from pathlib import Path

import boto3
import pytest
import videos

from posequeue.producer.video import DecodeStats, VideoError, probe, read_segment
from posequeue.store import (
    FileStore,
    S3Reader,
    S3Store,
    StoreError,
    open_store,
    open_video,
    split_s3,
    unquote_file_uri,
)

pytestmark = pytest.mark.compat

# ---------------------------------------------------------------------------------------------
# FileStore


@pytest.fixture
def file_store(tmp_path: Path) -> FileStore:
    store = open_store((tmp_path / "my store").as_uri())  # a space: the URI is percent-encoded
    assert isinstance(store, FileStore)
    store.check()
    return store


def test_file_store_roundtrip(file_store: FileStore, tmp_path: Path) -> None:
    """put_bytes/put_file write under the root's key layout and get_bytes reads them back."""
    uri = file_store.put_bytes("jobs/j1/poses.json", b'{"a":1}')
    assert uri == file_store.root + "/jobs/j1/poses.json"
    assert (tmp_path / "my store" / "jobs" / "j1" / "poses.json").read_bytes() == b'{"a":1}'
    assert file_store.get_bytes("jobs/j1/poses.json") == b'{"a":1}'
    src = tmp_path / "video.mp4"
    src.write_bytes(b"\x00" * 1000)
    assert file_store.put_file("inputs/j1/video.mp4", src).endswith("/inputs/j1/video.mp4")
    assert file_store.get_bytes("inputs/j1/video.mp4") == b"\x00" * 1000


def test_file_store_overwrite_is_idempotent(file_store: FileStore) -> None:
    """Writing a key again replaces it whole and leaves no temporary files behind."""
    file_store.put_bytes("jobs/j/parts/0000001.json", b"first, longer content")
    file_store.put_bytes("jobs/j/parts/0000001.json", b"second")
    assert file_store.get_bytes("jobs/j/parts/0000001.json") == b"second"
    assert list(file_store.path.rglob("*.tmp")) == []
    assert file_store.keys("jobs/j/") == ["jobs/j/parts/0000001.json"]


def test_file_store_list_and_delete(file_store: FileStore) -> None:
    """list returns sorted keys under a prefix; delete removes keys and ignores missing ones."""
    for key in ["jobs/a/parts/2.json", "jobs/a/parts/1.json", "jobs/a/poses.json", "jobs/b/poses.json"]:
        file_store.put_bytes(key, b"x")
    assert file_store.keys("jobs/a/") == ["jobs/a/parts/1.json", "jobs/a/parts/2.json", "jobs/a/poses.json"]
    assert file_store.keys("jobs/a/parts/") == ["jobs/a/parts/1.json", "jobs/a/parts/2.json"]
    assert file_store.keys("jobs/none/") == []
    assert len(file_store.keys("")) == 4
    file_store.delete(["jobs/a/parts/1.json", "jobs/a/never-written.json"])
    assert file_store.keys("jobs/a/") == ["jobs/a/parts/2.json", "jobs/a/poses.json"]


def test_file_store_list_skips_writes_in_progress(file_store: FileStore) -> None:
    """A temporary file of a write in progress is not listed as a key."""
    file_store.put_bytes("jobs/j/parts/1.json", b"x")
    (file_store.path / "jobs/j/parts/.2.json.0123abcd.tmp").write_bytes(b"half")
    assert file_store.keys("jobs/j/") == ["jobs/j/parts/1.json"]


def test_file_store_concurrent_writes_are_atomic(file_store: FileStore) -> None:
    """Two writers of one key (a redelivered batch) never leave or show a partial file."""
    payloads = [bytes([65 + n]) * 300_000 for n in range(2)]
    errors: list[BaseException] = []
    seen: set[bytes] = set()
    stop = threading.Event()
    file_store.put_bytes("k.json", payloads[0])

    def write(data: bytes) -> None:
        try:
            for _ in range(40):
                file_store.put_bytes("k.json", data)
        except BaseException as exc:  # noqa: B036 - report anything to the main thread
            errors.append(exc)

    def read() -> None:
        while not stop.is_set():
            seen.add(file_store.get_bytes("k.json"))

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    reader.join()
    assert errors == []
    assert seen <= set(payloads)
    assert file_store.get_bytes("k.json") in payloads
    assert file_store.keys("") == ["k.json"]


def test_file_store_missing_key(file_store: FileStore) -> None:
    """Reading a missing key is a StoreError naming its URI."""
    with pytest.raises(StoreError) as err:
        file_store.get_bytes("jobs/x/poses.json")
    assert file_store.uri("jobs/x/poses.json") in str(err.value)
    assert "No such file" in str(err.value)


def test_file_store_unwritable(tmp_path: Path) -> None:
    """A write that the file system refuses is a StoreError naming the URI, not an OSError."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the store wants a folder")
    store = FileStore(tmp_path.as_uri())
    with pytest.raises(StoreError, match="cannot write") as err:
        store.put_bytes("blocker/poses.json", b"{}")
    assert store.uri("blocker/poses.json") in str(err.value)


def test_file_store_check_fails_on_a_file(tmp_path: Path) -> None:
    """check() on a root that cannot be a folder is a StoreError naming the folder."""
    (tmp_path / "f").write_text("x")
    store = FileStore((tmp_path / "f" / "store").as_uri())
    with pytest.raises(StoreError, match="cannot create store folder"):
        store.check()


@pytest.mark.parametrize(
    "root", ["http://example.com/x", "/abs/path", "file://relative/path", "s3:/bucket", "", "ftp://host/x"]
)
def test_open_store_bad_scheme(root: str) -> None:
    """A store URI that is neither s3:// nor file:/// is a StoreError naming it."""
    with pytest.raises(StoreError, match="not a store URI"):
        open_store(root)


@pytest.mark.parametrize("uri", ["s3://", "s3:///key", "file:///x", "bucket/key"])
def test_split_s3_rejects(uri: str) -> None:
    """Only s3://bucket/key URIs split into bucket and key."""
    with pytest.raises(StoreError, match="not an s3://bucket/key URI"):
        split_s3(uri)


def test_split_s3_and_file_uris() -> None:
    """s3 URIs split into bucket and key; file URIs become local paths, quoted or not."""
    assert split_s3("s3://b/a/c.mp4") == ("b", "a/c.mp4")
    assert unquote_file_uri("file:///tmp/a%20b.mp4") == "/tmp/a b.mp4"
    assert unquote_file_uri("/tmp/x.mp4") == "/tmp/x.mp4"
    assert open_video("file:///tmp/a%20b.mp4") == "/tmp/a b.mp4"
    assert open_video("/tmp/x.mp4") == "/tmp/x.mp4"


# ---------------------------------------------------------------------------------------------
# S3Store against moto's S3 server over HTTP


@pytest.fixture
def s3_store(bucket: str) -> S3Store:
    store = open_store(f"s3://{bucket}/t-{uuid.uuid4().hex[:8]}/")
    assert isinstance(store, S3Store)
    store.check()
    return store


def test_s3_store_roundtrip(s3_store: S3Store, tmp_path: Path) -> None:
    """put_bytes/put_file/get_bytes through boto3 under the root's prefix."""
    uri = s3_store.put_bytes("jobs/j1/poses.json", b'{"a":1}')
    assert uri == f"s3://{s3_store.bucket}/{s3_store.prefix}jobs/j1/poses.json"
    assert s3_store.get_bytes("jobs/j1/poses.json") == b'{"a":1}'
    head = boto3.client("s3").head_object(Bucket=s3_store.bucket, Key=s3_store.prefix + "jobs/j1/poses.json")
    assert head["ContentType"] == "application/json"
    src = tmp_path / "v.mp4"
    src.write_bytes(b"\x01" * 5000)
    s3_store.put_file("inputs/j1/v.mp4", src, "video/mp4")
    assert s3_store.get_bytes("inputs/j1/v.mp4") == b"\x01" * 5000


def test_s3_store_list_and_delete(s3_store: S3Store) -> None:
    """list gives keys relative to the root's prefix; delete removes them."""
    for key in ["jobs/a/parts/2.json", "jobs/a/parts/1.json", "jobs/a/poses.json", "jobs/b/poses.json"]:
        s3_store.put_bytes(key, b"x")
    assert s3_store.keys("jobs/a/") == ["jobs/a/parts/1.json", "jobs/a/parts/2.json", "jobs/a/poses.json"]
    assert s3_store.keys("jobs/none/") == []
    s3_store.delete(["jobs/a/parts/1.json", "jobs/a/never-written.json"])
    assert s3_store.keys("jobs/a/") == ["jobs/a/parts/2.json", "jobs/a/poses.json"]
    s3_store.delete([])


def test_s3_store_bucket_root(bucket: str) -> None:
    """A root without a prefix (s3://bucket) stores keys at the top of the bucket."""
    store = open_store(f"s3://{bucket}")
    assert isinstance(store, S3Store) and store.prefix == ""
    key = f"top-{uuid.uuid4().hex[:8]}.json"
    assert store.put_bytes(key, b"1") == f"s3://{bucket}/{key}"
    assert key in store.keys("top-")


def test_s3_store_missing_key(s3_store: S3Store) -> None:
    """Reading a missing object is a StoreError naming its URI and the S3 error code."""
    with pytest.raises(StoreError) as err:
        s3_store.get_bytes("jobs/x/poses.json")
    assert s3_store.uri("jobs/x/poses.json") in str(err.value)
    assert "NoSuchKey" in str(err.value)


def test_s3_store_missing_bucket(s3_server: str) -> None:
    """check() on a missing bucket names the bucket and the settings to look at."""
    store = S3Store("s3://no-such-bucket-here/prefix")
    with pytest.raises(StoreError) as err:
        store.check()
    message = str(err.value)
    assert "s3://no-such-bucket-here" in message
    assert "AWS_ENDPOINT_URL" in message and "POSEQUEUE_STORE" in message
    with pytest.raises(StoreError, match="no-such-bucket-here"):
        store.put_bytes("k", b"x")


# ---------------------------------------------------------------------------------------------
# Videos read from S3


@pytest.fixture
def s3_video(bucket: str, tmp_path: Path) -> tuple[str, Path]:
    path = videos.make_video(tmp_path / "v.mp4", frames=45, gop=15, audio=True)
    key = f"inputs/{uuid.uuid4().hex[:8]}/v.mp4"
    boto3.client("s3").upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}", path


def test_s3_reader_ranges(s3_video: tuple[str, Path]) -> None:
    """S3Reader reads, seeks and tells like a local file, through ranged GETs."""
    uri, path = s3_video
    data = path.read_bytes()
    reader = S3Reader(uri)
    assert reader.size == len(data) and reader.seekable() and reader.readable()
    assert reader.read(100) == data[:100]
    assert reader.tell() == 100
    reader.seek(-50, io.SEEK_END)
    assert reader.read() == data[-50:]
    assert reader.read(10) == b""
    reader.seek(1000)
    reader.seek(24, io.SEEK_CUR)
    assert reader.read(7) == data[1024:1031]
    buffered = open_video(uri)
    assert not isinstance(buffered, str)
    assert buffered.read() == data


def test_probe_and_decode_from_s3(s3_video: tuple[str, Path]) -> None:
    """PyAV opens an mp4 in S3 through S3Reader: probe works and every frame decodes in order."""
    uri, path = s3_video
    info = probe(uri)
    assert (info.width, info.height, info.frame_count, info.codec) == (320, 240, 45, "h264")
    assert info == probe(str(path))
    stats = DecodeStats()
    frames, after = [], None
    while not stats.ended:  # segment by segment, as ingest reads it (seeks over HTTP)
        got = list(read_segment(uri, after, 0.5, stats))
        frames += [videos.read_frame_index(d.frame.to_ndarray(format="rgb24")) for d in got]
        after = got[-1].pts if got else after
    assert frames == list(range(45))
    assert stats.corrupt_packets == 0


def test_missing_s3_object(bucket: str) -> None:
    """A missing S3 video is a VideoError (or StoreError) with the URI in the message."""
    uri = f"s3://{bucket}/inputs/nothing/here.mp4"
    with pytest.raises((VideoError, StoreError)) as err:
        probe(uri)
    assert uri in str(err.value)
    with pytest.raises(StoreError, match="cannot open"):
        open_video(uri)


def test_not_a_video_in_s3(bucket: str, tmp_path: Path) -> None:
    """A text file in S3 is a VideoError naming the S3 URI."""
    path = videos.make_not_a_video(tmp_path / "fake.mp4")
    boto3.client("s3").upload_file(str(path), bucket, "inputs/fake.mp4")
    uri = f"s3://{bucket}/inputs/fake.mp4"
    with pytest.raises(VideoError, match="not a readable video") as err:
        probe(uri)
    assert uri in str(err.value)


def test_s3_refusals_last_and_a_time_limit_is_no_store_error() -> None:
    """A refused S3 call (an error code of refusal, or a HEAD's bare 403) is a lasting store
    error; a missing bucket is not; Celery's soft time limit raised inside a call stays itself."""
    from botocore.exceptions import ClientError
    from celery.exceptions import SoftTimeLimitExceeded

    from posequeue.store import aws_error

    def error(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")

    assert aws_error("cannot open s3://b/k", error("403", 403)).lasting  # head_object
    assert aws_error("cannot write s3://b/k", error("InvalidAccessKeyId", 403)).lasting
    missing = aws_error("cannot write s3://b/k", error("NoSuchBucket", 404))
    assert not missing.lasting and str(missing) == "cannot write s3://b/k: NoSuchBucket"
    with pytest.raises(SoftTimeLimitExceeded):
        aws_error("cannot read s3://b/k", SoftTimeLimitExceeded())
