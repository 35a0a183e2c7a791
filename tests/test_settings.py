"""Unit tests for posequeue.config.settings: typed settings from POSEQUEUE_* variables."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from posequeue.config.settings import Settings


@pytest.mark.parametrize("store", ["s3://bucket/prefix", "s3://bucket", "file:///tmp/store"])
def test_store_accepted(monkeypatch: pytest.MonkeyPatch, store: str) -> None:
    """s3:// and file:/// stores are accepted (a trailing slash is dropped)."""
    monkeypatch.setenv("POSEQUEUE_STORE", store + "/")
    assert Settings().store == store


@pytest.mark.parametrize(
    "store", ["/tmp/store", "file://relative", "http://host/x", "bucket/x", "S3:/bucket", ""]
)
def test_store_rejected(monkeypatch: pytest.MonkeyPatch, store: str) -> None:
    """A store that is not s3:// or file:/// is rejected with a message naming POSEQUEUE_STORE."""
    monkeypatch.setenv("POSEQUEUE_STORE", store)
    with pytest.raises(ValidationError) as err:
        Settings()
    assert "POSEQUEUE_STORE" in str(err.value)
    assert "s3://" in str(err.value) and "file:///" in str(err.value)


@pytest.mark.parametrize(("limit", "visibility"), [(600, 600), (700, 600), (300, 300), (900, None)])
def test_time_limit_below_visibility(
    monkeypatch: pytest.MonkeyPatch, limit: int, visibility: int | None
) -> None:
    """task_time_limit >= visibility_timeout is rejected naming both variables."""
    monkeypatch.setenv("POSEQUEUE_TASK_TIME_LIMIT", str(limit))
    if visibility is None:  # the default visibility timeout, 600 s
        monkeypatch.delenv("POSEQUEUE_VISIBILITY_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("POSEQUEUE_VISIBILITY_TIMEOUT", str(visibility))
    with pytest.raises(ValidationError) as err:
        Settings()
    message = str(err.value)
    assert "POSEQUEUE_TASK_TIME_LIMIT" in message and "POSEQUEUE_VISIBILITY_TIMEOUT" in message


def test_defaults_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """POSEQUEUE_* variables set the typed fields; the backend defaults to the broker."""
    monkeypatch.setenv("POSEQUEUE_TASK_TIME_LIMIT", "100")
    monkeypatch.setenv("POSEQUEUE_VISIBILITY_TIMEOUT", "120")
    monkeypatch.setenv("POSEQUEUE_BATCH_SIZE", "16")
    monkeypatch.setenv("POSEQUEUE_SEGMENT_SECONDS", "0.5")
    monkeypatch.setenv("POSEQUEUE_BROKER_URL", "redis://example:6379/3")
    monkeypatch.delenv("POSEQUEUE_RESULT_BACKEND", raising=False)
    s = Settings()
    assert (s.task_time_limit, s.visibility_timeout, s.batch_size) == (100, 120, 16)
    assert s.segment_seconds == 0.5
    assert s.backend_url == "redis://example:6379/3"
    monkeypatch.setenv("POSEQUEUE_RESULT_BACKEND", "redis://example:6379/4")
    assert Settings().backend_url == "redis://example:6379/4"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("POSEQUEUE_BATCH_SIZE", "0"),
        ("POSEQUEUE_SEGMENT_SECONDS", "0"),
        ("POSEQUEUE_LOG_FORMAT", "xml"),
        ("POSEQUEUE_PAYLOAD_TTL", "5"),
    ],
)
def test_out_of_range(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    """Out-of-range values are rejected at start-up, not discovered mid-job."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize(("name", "value"), [("PEOPLE", "0"), ("PEOPLE", "9"), ("FOLLOW", "everyone")])
def test_people_settings_checked(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    """POSEQUEUE_PEOPLE outside 1-8 and an unknown POSEQUEUE_FOLLOW are rejected, naming the field."""
    monkeypatch.setenv(f"POSEQUEUE_{name}", value)
    with pytest.raises(ValidationError, match=name.lower()):
        Settings()
