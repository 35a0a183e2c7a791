"""Flower for the posequeue app: a real Flower process against the test Redis reads the model
queues' depth, and ``posequeue flower`` refuses to listen beyond localhost without a password."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from helpers import free_port, serving

from posequeue.fleet.cli import exposure_problem, is_loopback

pytestmark = pytest.mark.integration

AUTH = ("flower", "s3cret")
LANDMARKS = "pose.blazepose.landmarks"
FLOWER_DB = 12  # a database of its own: no worker of another test consumes these messages


def flower_cmd(*args: str) -> list[str]:
    # posequeue.fleet.cli runs the fleet commands on its own; `posequeue flower` is the same code.
    return [sys.executable, "-m", "posequeue.fleet.cli", "flower", *args]


def get(url: str, auth: tuple[str, str] | None = None) -> tuple[int, Any]:
    """GET ``url`` -> (status, parsed JSON body or None)."""
    request = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            return response.status, json.loads(body) if body.startswith(b"{") else None
    except urllib.error.HTTPError as exc:
        return exc.code, None


@pytest.fixture
def broker_url(redis_url: str) -> str:
    url = f"{redis_url.rpartition('/')[0]}/{FLOWER_DB}"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def flower(broker_url: str, tmp_path: Path) -> Iterator[str]:
    """A Flower process on a free loopback port with basic auth; stopped when the test ends."""
    if importlib.util.find_spec("flower") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Flower is not installed (pip install 'posequeue[flower]')")
        pytest.skip("Flower is not installed")
    port = free_port()
    env = {**os.environ, "POSEQUEUE_BROKER_URL": broker_url, "FLOWER_BASIC_AUTH": f"{AUTH[0]}:{AUTH[1]}"}
    env.pop("FLOWER_UNAUTHENTICATED_API", None)
    base = f"http://127.0.0.1:{port}"
    with serving(flower_cmd("--port", str(port)), env, f"{base}/healthcheck", tmp_path / "flower.log"):
        yield base
        redis.Redis.from_url(broker_url).flushdb()


def queue_lengths(base: str) -> dict[str, int]:
    status, body = get(f"{base}/api/queues/length", AUTH)
    assert status == 200
    return {q["name"]: q["messages"] for q in body["active_queues"]}


def test_flower_reports_model_queue_depth(flower: str, broker_url: str) -> None:
    """Batches queued with no worker running show as the landmarks queue's depth in Flower."""
    from posequeue.config.celery_app import INFER_TASK, make_app
    from posequeue.config.settings import Settings

    # Given Flower running and no worker on a private database
    assert queue_lengths(flower)[LANDMARKS] == 0
    # When five batches are queued on the model's landmarks queue
    app = make_app(Settings(broker_url=broker_url))
    for index in range(5):
        app.send_task(INFER_TASK, args=["job-x", index], queue=LANDMARKS)
    # Then Flower's API reports them, and only there
    lengths = queue_lengths(flower)
    assert lengths[LANDMARKS] == 5
    assert lengths["ingest"] == 0


def test_flower_api_needs_the_password(flower: str) -> None:
    """With FLOWER_BASIC_AUTH set the API answers 401 to a request without credentials."""
    assert get(f"{flower}/api/queues/length")[0] == 401
    assert get(f"{flower}/api/queues/length", ("flower", "wrong"))[0] == 401


@pytest.mark.parametrize(
    ("address", "env", "message"),
    [
        ("0.0.0.0", {}, "without authentication"),
        ("", {}, "every interface"),
        (
            "0.0.0.0",
            {"FLOWER_BASIC_AUTH": "a:b", "FLOWER_UNAUTHENTICATED_API": "true"},
            "FLOWER_UNAUTHENTICATED_API",
        ),
    ],
)
def test_flower_refuses_to_listen_beyond_localhost_without_auth(
    address: str, env: dict[str, str], message: str
) -> None:
    """Exit 2 with a clear `error:` line, before Flower starts."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    result = subprocess.run(
        flower_cmd("--address", address, "--port", str(free_port())),
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: refusing to serve Flower") and message in result.stderr


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),
        ("", False),
        ("10.1.2.3", False),
        ("::", False),
    ],
)
def test_is_loopback(address: str, loopback: bool) -> None:
    """Loopback addresses and names that resolve only to them count as local."""
    assert is_loopback(address) is loopback


def test_auth_allows_any_address() -> None:
    """With basic auth (and the API not opened) any address is allowed; loopback always is."""
    assert exposure_problem("0.0.0.0", {"FLOWER_BASIC_AUTH": "a:b"}) is None
    assert exposure_problem("127.0.0.1", {"FLOWER_UNAUTHENTICATED_API": "true"}) is None
