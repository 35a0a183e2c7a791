"""The HTTP API against real Redis, a real ``posequeue worker`` and a real ``posequeue api``
process: uploads run to done, results come back whole and in byte ranges, callbacks arrive
signed and are retried, and every bad input or token is refused with a 4xx naming it."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from apiserver import SECRET, TOKENS, api_env, running_api, serving_api
from conftest import SAMPLE, Worker, posequeue
from helpers import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(worker: Worker, s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """The API on the shared worker's Redis and store, with tokens and a callback secret."""
    log = tmp_path_factory.mktemp("api") / "api.log"
    with running_api(api_env(dict(os.environ)), log) as client:
        yield client


def upload(client: httpx.Client, path: Path = SAMPLE, **fields: str) -> httpx.Response:
    with path.open("rb") as fh:
        return client.post("/v1/jobs", files={"file": (path.name, fh, "video/mp4")}, data=fields)


def wait_done(client: httpx.Client, job_id: str, timeout: float = 180) -> dict[str, Any]:
    """Poll until the job has ended and its analysis (if any) too."""
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        analysing = job.get("analysis", {}).get("status") in ("queued", "running")
        if (job["status"] in ("done", "failed") and not analysing) or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


@pytest.fixture(scope="module")
def submitted(api: httpx.Client) -> httpx.Response:
    """The answer to the sample video's upload."""
    return upload(api, batch_size="8")


@pytest.fixture(scope="module")
def done_job(api: httpx.Client, submitted: httpx.Response) -> dict[str, Any]:
    """The sample video uploaded once and run to done."""
    assert submitted.status_code == 202, submitted.text
    return wait_done(api, submitted.json()["id"])


def refusal(response: httpx.Response, status: int, code: str) -> str:
    """Check a refusal's status and JSON shape; return its message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code, body
    assert body["message"]
    return str(body["message"])


# -- the happy path ----------------------------------------------------------------------------
def test_an_upload_answers_202_and_runs_to_done(api: httpx.Client, done_job: dict[str, Any]) -> None:
    """An uploaded video becomes a job that the worker runs to done, all frames counted."""
    assert done_job["status"] == "done", done_job
    assert done_job["progress"] == {"frames_done": 90, "frames_total": 90, "fraction": 1.0}
    assert done_job["url"] == f"/v1/jobs/{done_job['id']}"
    names = {f["name"] for f in done_job["files"]}
    assert {"poses.json", "poses.csv", "manifest.json", "input.mp4", "preview.png"} <= names
    assert done_job["analysis"]["status"] == "done", done_job["analysis"]
    assert {"overlay.mp4", "analysis.json", "report.html", "angles.csv"} <= names  # the analysis's


def test_options_reach_the_job_as_the_cli_passes_them(api: httpx.Client) -> None:
    """people, follow and video_mode given as form fields are recorded on the job as `submit
    --people 2 --follow best-score --video-mode` records them (the job's summary shows them)."""
    job_id = upload(api, people="2", follow="best-score", batch_size="4", video_mode="true").json()["id"]
    job = wait_done(api, job_id)
    assert (job["people"], job["follow"], job["video_mode"], job["status"]) == (2, "best-score", True, "done")


def test_the_202_names_the_job_and_its_url(submitted: httpx.Response) -> None:
    """A submission answers at once with the job's id, status and URL (also in Location)."""
    body = submitted.json()
    assert submitted.status_code == 202
    assert body["status"] == "queued" and body["url"] == f"/v1/jobs/{body['id']}"
    assert submitted.headers["location"] == body["url"]


def test_results_are_the_files_the_workers_wrote(
    api: httpx.Client, done_job: dict[str, Any], store_root: str
) -> None:
    """poses.json and poses.csv come back byte for byte as the store holds them."""
    from posequeue.store import read_uri

    for kind, name in (("json", "poses.json"), ("csv", "poses.csv")):
        response = api.get(f"/v1/jobs/{done_job['id']}/results/{name}")
        assert response.status_code == 200
        assert response.content == read_uri(done_job["results"][kind])
    poses = api.get(f"/v1/jobs/{done_job['id']}/results/poses.json").json()
    assert len(poses["frames"]) == 90
    assert (
        api.get(f"/v1/jobs/{done_job['id']}/results/poses.csv").headers["content-type"].startswith("text/csv")
    )


def test_the_video_is_served_in_byte_ranges(api: httpx.Client, done_job: dict[str, Any]) -> None:
    """A player can seek: single ranges answer 206 with Content-Range, past the end 416."""
    url = f"/v1/jobs/{done_job['id']}/results/input.mp4"
    data = SAMPLE.read_bytes()
    whole = api.get(url)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["accept-ranges"] == "bytes" and whole.headers["content-type"] == "video/mp4"
    part = api.get(url, headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.content == data[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(data)}"
    tail = api.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    rest = api.get(url, headers={"Range": f"bytes={len(data) - 5}-"})
    assert rest.content == data[-5:]
    refusal(api.get(url, headers={"Range": f"bytes={len(data)}-"}), 416, "range_not_satisfiable")
    head = api.head(url)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(data))


def test_the_preview_draws_the_poses(api: httpx.Client, done_job: dict[str, Any]) -> None:
    """preview.png is drawn on first request by preview.py and is a PNG."""
    response = api.get(f"/v1/jobs/{done_job['id']}/results/preview.png")
    assert response.status_code == 200
    assert response.content.startswith(b"\x89PNG")


def test_signed_links_work_without_a_token_for_that_file_only(
    api: httpx.Client, done_job: dict[str, Any]
) -> None:
    """A job's file links open without a header (for <video> and downloads); a link altered
    to another file or a forged signature is refused."""
    link = next(f["link"] for f in done_job["files"] if f["name"] == "poses.csv")
    bare = httpx.Client(base_url=str(api.base_url))
    assert bare.get(link).status_code == 200
    other = link.replace("poses.csv", "poses.json")
    refusal(bare.get(other), 401, "missing_token")
    refusal(bare.get(link[:-4] + "0000"), 401, "missing_token")


def test_jobs_are_listed_newest_first_a_page_at_a_time(api: httpx.Client, done_job: dict[str, Any]) -> None:
    """GET /v1/jobs pages through the jobs newest first, with status and progress."""
    newer = upload(api).json()["id"]
    page = api.get("/v1/jobs", params={"limit": 1}).json()
    assert [j["id"] for j in page["jobs"]] == [newer]
    assert page["next"] == "/v1/jobs?limit=1&offset=1" and page["total"] >= 2
    ids = [j["id"] for j in api.get("/v1/jobs", params={"limit": 100}).json()["jobs"]]
    assert ids.index(newer) < ids.index(done_job["id"])
    times = [j["submitted_at"] for j in api.get("/v1/jobs", params={"limit": 100}).json()["jobs"]]
    assert times == sorted(times, reverse=True)
    listed = next(
        j for j in api.get("/v1/jobs", params={"limit": 100}).json()["jobs"] if j["id"] == done_job["id"]
    )
    assert listed["status"] == "done" and listed["progress"]["fraction"] == 1.0
    wait_done(api, newer)


def test_an_s3_uri_that_is_not_there_is_refused(api: httpx.Client, bucket: str) -> None:
    """JSON naming a missing S3 object is a 422 naming the URI; no job is made."""
    message = refusal(api.post("/v1/jobs", json={"video": f"s3://{bucket}/nothing-here.mp4"}), 422, "missing")
    assert "nothing-here.mp4" in message


# -- callbacks -----------------------------------------------------------------------------------
class Receiver(http.server.BaseHTTPRequestHandler):
    """Answers 500 to the first POST and 200 after, recording each."""

    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers), body))
        self.send_response(500 if len(self.received) == 1 else 200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_callback_is_signed_retried_and_recorded(api: httpx.Client) -> None:
    """When the job ends its callback_url gets a POST signed with HMAC-SHA256 of the body; a
    receiver that fails first is tried again, and the job records the delivery."""
    server = http.server.HTTPServer(("127.0.0.1", free_port()), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        job_id = upload(api, callback_url=url).json()["id"]
        deadline = time.monotonic() + 120
        while len(Receiver.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        server.shutdown()
    assert len(Receiver.received) == 2
    for attempt, (headers, body) in enumerate(Receiver.received, start=1):
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Posequeue-Signature"], expected)
        assert headers["X-Posequeue-Attempt"] == str(attempt)
        event = json.loads(body)
        assert event["event"] == "job.done" and event["job"]["id"] == job_id
        assert event["job"]["status"] == "done"
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["callback_status"] == "delivered" and job["callback_attempts"] == 2
    assert job["callback_url"] == url


# -- refusals ----------------------------------------------------------------------------------
def test_a_file_that_is_not_a_video_is_refused_by_its_content(api: httpx.Client, tmp_path: Path) -> None:
    """A file named .mp4 that is not a video is a 415 naming the file, not the spool path."""
    fake = tmp_path / "clip.mp4"
    fake.write_bytes(b"this is not a video\n" * 100)
    message = refusal(upload(api, fake), 415, "not_a_video")
    assert message.startswith("clip.mp4") and "posequeue-upload" not in message


def test_an_upload_over_the_limit_is_refused(api: httpx.Client, tmp_path: Path) -> None:
    """An upload above POSEQUEUE_API_MAX_UPLOAD_MB is a 413, whether announced or streamed."""
    big = tmp_path / "big.mp4"
    big.write_bytes(SAMPLE.read_bytes() * 30)  # ~2.3 MiB against a 1 MiB limit
    assert "1 MiB" in refusal(upload(api, big), 413, "too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is met while reading
        boundary = b"--xyz\r\n"
        yield boundary + b'Content-Disposition: form-data; name="file"; filename="big.mp4"\r\n\r\n'
        for _ in range(40):
            yield b"\0" * 65536
        yield b"\r\n--xyz--\r\n"

    streamed = api.post(
        "/v1/jobs", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=xyz"}
    )
    refusal(streamed, 413, "too_large")


@pytest.mark.parametrize(
    ("fields", "status", "code", "named"),
    [
        ({"model": "nosuchmodel"}, 422, "unknown_model", "nosuchmodel"),
        ({"batch_size": "0"}, 422, "invalid_request", "batch_size"),
        ({"batch_size": "many"}, 422, "invalid_request", "batch_size"),
        ({"people": "2", "colour": "red"}, 422, "invalid_request", "colour"),
        ({"people": "0"}, 422, "people", "--people 0"),
        ({"follow": "loudest"}, 422, "invalid_request", "follow"),
        ({"callback_url": "ftp://example.com/x"}, 422, "invalid_request", "callback_url"),
    ],
)
def test_bad_options_are_refused_naming_the_option(
    api: httpx.Client, fields: dict[str, str], status: int, code: str, named: str
) -> None:
    """An option the CLI would refuse (or does not know) is a 4xx naming it."""
    assert named in refusal(upload(api, SAMPLE, **fields), status, code)


def test_malformed_submissions_are_refused(api: httpx.Client) -> None:
    """No file, a wrong content type, bad JSON, a local path and a broken multipart body are
    each a 4xx JSON naming the problem."""
    form = api.post("/v1/jobs", data={"model": "blazepose"}, files={"other": ("x.txt", b"x")})
    refusal(form, 422, "invalid_request")
    no_file = api.post(
        "/v1/jobs",
        content=b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nblazepose\r\n--b--\r\n',
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert "'file'" in refusal(no_file, 422, "invalid_request")
    refusal(
        api.post("/v1/jobs", content=b"video bytes", headers={"Content-Type": "video/mp4"}),
        415,
        "unsupported_content_type",
    )
    refusal(
        api.post("/v1/jobs", content=b"{not json", headers={"Content-Type": "application/json"}),
        422,
        "invalid_request",
    )
    local = api.post("/v1/jobs", json={"video": str(SAMPLE)})
    assert "s3://" in refusal(local, 422, "invalid_request")
    refusal(api.post("/v1/jobs", json=["s3://b/k"]), 422, "invalid_request")
    broken = api.post(
        "/v1/jobs", content=b"garbage", headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert broken.status_code == 422 and broken.json()["error"] == "invalid_request"
    refusal(
        api.post("/v1/jobs", content=b"x", headers={"Content-Type": "multipart/form-data"}),
        422,
        "invalid_request",
    )


def test_job_ids_are_checked_before_any_lookup(api: httpx.Client, done_job: dict[str, Any]) -> None:
    """A malformed id is a 400, an unknown one a 404, an unknown result name a 404 naming
    the files the job has."""
    refusal(api.get("/v1/jobs/x'%20OR%201=1"), 400, "bad_job_id")
    refusal(api.get("/v1/jobs/" + "A" * 32), 400, "bad_job_id")
    refusal(api.get("/v1/jobs/" + "x" * 500), 400, "bad_job_id")
    refusal(api.get("/v1/jobs/NOTANID/results/poses.json"), 400, "bad_job_id")
    refusal(api.get("/v1/jobs/" + "0" * 32), 404, "no_such_job")
    message = refusal(api.get(f"/v1/jobs/{done_job['id']}/results/nothing.bin"), 404, "no_such_result")
    assert "poses.json" in message
    escape = api.get(f"/v1/jobs/{done_job['id']}/results/..%2F..%2Finputs%2Fx.mp4")
    refusal(escape, 404, "no_such_result")
    refusal(api.get("/v1/jobs", params={"limit": 0}), 422, "invalid_request")
    refusal(api.get("/v1/nothing"), 404, "not_found")


# -- tokens and binding ------------------------------------------------------------------------
def test_every_endpoint_but_healthz_needs_a_token(api: httpx.Client, done_job: dict[str, Any]) -> None:
    """No token or a wrong one is a 401 on each /v1 endpoint; /healthz and the page need none;
    every configured token works."""
    bare = httpx.Client(base_url=str(api.base_url))
    wrong = httpx.Client(base_url=str(api.base_url), headers={"Authorization": "Bearer nope"})
    basic = httpx.Client(base_url=str(api.base_url), headers={"Authorization": "Basic dXNlcjpwYXNz"})
    paths = [
        "/v1/jobs",
        f"/v1/jobs/{done_job['id']}",
        f"/v1/jobs/{done_job['id']}/results/poses.json",
        "/v1/models",
    ]
    for path in paths:
        refusal(bare.get(path), 401, "missing_token")
        refusal(wrong.get(path), 401, "bad_token")
        refusal(basic.get(path), 401, "bad_token")
        assert bare.get(path).headers["www-authenticate"] == "Bearer"
    refusal(bare.post("/v1/jobs", json={"video": "s3://b/k.mp4"}), 401, "missing_token")
    second = httpx.Client(base_url=str(api.base_url), headers={"Authorization": f"Bearer {TOKENS[1]}"})
    assert second.get("/v1/jobs").status_code == 200
    health = bare.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok", "redis": "ok", "store": "ok"}
    assert bare.get("/").status_code == 200 and "posequeue" in bare.get("/").text
    docs = bare.get("/docs")
    assert docs.status_code == 200 and "cdn." not in docs.text  # Swagger UI from this server
    assert bare.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    assert "/v1/jobs/{job_id}/results/{name}" in bare.get("/openapi.json").json()["paths"]


def test_a_public_address_without_tokens_is_refused() -> None:
    """`posequeue api --host 0.0.0.0` with no token configured exits 2 with the fix."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSEQUEUE_API_")}
    done = posequeue("api", "--host", "0.0.0.0", env=env, timeout=60)
    assert done.returncode == 2
    assert "POSEQUEUE_API_TOKENS" in done.stderr and "127.0.0.1" in done.stderr


def test_an_unreadable_token_file_is_refused(tmp_path: Path) -> None:
    """A token file that cannot be read stops `posequeue api` with its name."""
    env = {**os.environ, "POSEQUEUE_API_TOKEN_FILE": str(tmp_path / "missing")}
    done = posequeue("api", env=env, timeout=60)
    assert done.returncode == 2 and "POSEQUEUE_API_TOKEN_FILE" in done.stderr


def test_a_token_file_is_read(tmp_path: Path) -> None:
    """Tokens from the file (comments and blank lines skipped) are accepted, kept as digests."""
    from posequeue.api.auth import Tokens
    from posequeue.config.settings import Settings

    path = tmp_path / "tokens"
    path.write_text("# ops\nfile-token-1\n\n  file-token-2  \n")
    tokens = Tokens.from_settings(Settings(api_token_file=path, api_tokens="env-token"))
    assert all(tokens.valid(t) for t in ("file-token-1", "file-token-2", "env-token"))
    assert not tokens.valid("# ops") and not tokens.valid("")
    assert b"file-token-1" not in b"".join(tokens.digests)


def test_healthz_says_what_is_unreachable(tmp_path: Path) -> None:
    """With Redis down /healthz answers 503 naming Redis; the API still serves its page."""
    env = api_env(dict(os.environ), POSEQUEUE_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    with running_api(env, tmp_path / "api.log", health="/") as client:
        health = client.get("/healthz")
        assert health.status_code == 503
        body = health.json()
        assert (
            body["status"] == "unhealthy"
            and body["redis"].startswith("unreachable")
            and body["store"] == "ok"
        )
        refusal(client.get("/v1/jobs"), 503, "redis_unreachable")


# -- the S3 store --------------------------------------------------------------------------------
def test_an_s3_fleet_serves_uploads_s3_submissions_and_ranges(
    bucket: str, isolated: dict[str, str], start_worker: Any, tmp_path: Path
) -> None:
    """With an S3 store, an upload lands under inputs/ in the bucket, an s3:// submission runs
    in place, and results and the video come back from S3, in ranges too."""
    import boto3

    env = api_env({**isolated, "POSEQUEUE_STORE": f"s3://{bucket}/apifleet"})
    start_worker(  # uploads kept, so the input is still served after the job (test_retention: deleted)
        POSEQUEUE_BROKER_URL=env["POSEQUEUE_BROKER_URL"],
        POSEQUEUE_STORE=env["POSEQUEUE_STORE"],
        POSEQUEUE_KEEP_INPUTS="1",
    )
    boto3.client("s3").upload_file(str(SAMPLE), bucket, "clips/astronaut.mp4")
    with running_api(env, tmp_path / "api.log") as client:
        uploaded = upload(client).json()["id"]
        by_uri = client.post(
            "/v1/jobs", json={"video": f"s3://{bucket}/clips/astronaut.mp4", "batch_size": 4}
        )
        assert by_uri.status_code == 202, by_uri.text
        first = wait_done(client, uploaded)
        second = wait_done(client, by_uri.json()["id"])
        assert first["status"] == second["status"] == "done", (first, second)
        assert first["video"] == f"s3://{bucket}/apifleet/inputs/{uploaded}/astronaut.mp4"
        data = SAMPLE.read_bytes()
        for job in (first, second):
            part = client.get(f"/v1/jobs/{job['id']}/results/input.mp4", headers={"Range": "bytes=1000-2999"})
            assert part.status_code == 206 and part.content == data[1000:3000]
            poses = client.get(f"/v1/jobs/{job['id']}/results/poses.json")
            assert len(poses.json()["frames"]) == 90
        assert client.get("/healthz").json()["store"] == "ok"


def test_an_upload_is_never_held_in_memory(worker: Worker, tmp_path: Path) -> None:
    """A 200 MiB upload streams through the API process: its resident memory grows by far less
    than the upload (the bytes go to a spool file), and the refusal names the content."""
    big = tmp_path / "big.mp4"
    with big.open("wb") as fh:
        for _ in range(200):
            fh.write(os.urandom(1 << 20))
    env = api_env(dict(os.environ), POSEQUEUE_API_MAX_UPLOAD_MB="300")
    with serving_api(env, tmp_path / "api.log") as (client, proc):
        status = Path(f"/proc/{proc.pid}/status")
        before = _rss_mib(status)
        peak = [before]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak.append(_rss_mib(status))
                stop.wait(0.02)

        threading.Thread(target=sample, daemon=True).start()
        try:
            response = upload(client, big)
        finally:
            stop.set()
    refusal(response, 415, "not_a_video")
    assert max(peak) - before < 50, f"RSS grew from {before} to {max(peak)} MiB during a 200 MiB upload"


def _rss_mib(status: Path) -> float:
    for line in status.read_text().splitlines():
        if line.startswith("VmHWM:"):  # the peak resident set: catches what sampling misses
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


# -- cancel and retry (producer/control.py, as `posequeue cancel` and `retry`) --------------------
def test_a_job_is_cancelled_and_retried_through_the_api(
    isolated: dict[str, str], start_worker: Any, tmp_path: Path
) -> None:
    """DELETE cancels a queued job (a second DELETE is a 409), retry of a job that has not ended
    is a 409, POST .../retry runs a cancelled job again, and it reaches done once a worker
    serves it; both need a token."""
    env = api_env(isolated)
    with running_api(env, tmp_path / "api.log") as client:
        job_id = upload(client).json()["id"]  # no worker yet: it stays queued
        bare = httpx.Client(base_url=str(client.base_url))
        refusal(bare.delete(f"/v1/jobs/{job_id}"), 401, "missing_token")
        refusal(bare.post(f"/v1/jobs/{job_id}/retry"), 401, "missing_token")
        refusal(client.post(f"/v1/jobs/{job_id}/retry"), 409, "not_retryable")
        cancelled = client.delete(f"/v1/jobs/{job_id}")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
        assert "cancelled" in refusal(client.delete(f"/v1/jobs/{job_id}"), 409, "job_ended")
        refusal(client.delete("/v1/jobs/" + "0" * 32), 404, "no_such_job")
        refusal(client.post("/v1/jobs/nope/retry"), 400, "bad_job_id")
        start_worker(POSEQUEUE_BROKER_URL=env["POSEQUEUE_BROKER_URL"], POSEQUEUE_STORE=env["POSEQUEUE_STORE"])
        retried = client.post(f"/v1/jobs/{job_id}/retry")
        assert retried.status_code == 202, retried.text
        assert retried.json()["status"] == "running"
        assert wait_done(client, job_id)["status"] == "done"
