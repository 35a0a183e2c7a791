"""Typed settings from environment variables (prefix ``POSEQUEUE_``).

Precedence: a command-line option, then the environment, then these defaults. S3 itself is
configured the boto3 way (``AWS_*`` variables, ``AWS_ENDPOINT_URL`` for S3-compatible servers).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MAX_PEOPLE = 8  # each person is one more landmark crop per frame


def default_store() -> str:
    return (Path.cwd() / "out" / "store").resolve().as_uri()


class Settings(BaseSettings):
    """Everything a producer, a worker and a client must agree on."""

    model_config = SettingsConfigDict(env_prefix="POSEQUEUE_", extra="ignore")

    broker_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL for queues and state")
    result_backend: str | None = Field(None, description="Celery result backend (default: broker)")
    store: str = Field(default_factory=default_store, description="s3://bucket/prefix or file:///abs")
    default_model: str = "blazepose"
    model_specs: str = Field("", description="model spec files (TOML) or folders of them, ':'-separated")
    batch_size: int = Field(8, ge=1, le=256, description="frames per inference batch")
    people: int = Field(1, ge=1, le=MAX_PEOPLE, description="most people per frame (submit --people)")
    follow: str = Field(
        "most-present", pattern="^(most-present|best-score)$", description="which people (submit --follow)"
    )
    video_mode: bool = Field(
        False, description="follow people between frames, detect only where lost (submit --video-mode)"
    )
    segment_seconds: float = Field(2.0, gt=0, description="video seconds per ingest task")
    max_redis_mb: int = Field(
        256, ge=1, description="Redis memory (MiB) for the frames of every job together (config/budget.py)"
    )
    work_long_side: int = Field(1280, ge=64, description="frames travel scaled to this long side")
    # Per job, refused at submit and checked again on every decoded frame (0: no limit).
    max_frame_pixels: int = Field(3840 * 2160, ge=0, description="largest picture a job may have")
    max_video_seconds: float = Field(4 * 3600, ge=0, description="longest video a job may have")
    decoder_mb: int = Field(512, ge=0, description="decoder threads are fewer for large pictures")
    payload_ttl: int = Field(3600, ge=5, description="seconds a batch payload lives in Redis")
    payload_codec: str = Field(
        "jpeg", pattern="^(raw|jpeg)$", description="how frames travel: jpeg (BlazePose) or raw"
    )
    payload_quality: int = Field(98, ge=50, le=100, description="JPEG quality of the jpeg codec")
    payload_urls: str = Field(
        "", description="Redis URLs for batch payloads, ','-separated, spread by key (default: broker)"
    )
    # A host that dies holds its unacked batches until this runs out; batches take seconds, so
    # minutes is enough. Every task's hard time limit stays below it (else duplicate delivery).
    visibility_timeout: int = Field(600, ge=5)
    task_time_limit: int = Field(300, ge=2)
    store_patience: int = Field(
        900, ge=0, description="seconds a task waits out a store outage (exponential backoff)"
    )
    # The job watchdog (producer/watchdog.py): every queued or running job ends.
    watchdog_interval: float = Field(5.0, gt=0, description="seconds between the fleet's sweeps of jobs")
    ingest_stall: int = Field(
        60, ge=1, description="seconds without an ingest task before its chain is checked"
    )
    queued_timeout: int = Field(3600, ge=1, description="seconds a job may wait for an ingest worker")
    retention_days: float = Field(7.0, gt=0, description="days an ended job's record is kept")
    keep_inputs: bool = Field(False, description="keep uploaded inputs after their job is done")
    model_dir: Path | None = Field(None, description="folder holding model files provided by hand")
    cache_dir: Path = Field(Path.home() / ".cache" / "posequeue")
    lock_dir: Path | None = Field(
        None, description="per-core claim files (default: $XDG_RUNTIME_DIR/posequeue or /tmp/posequeue-UID)"
    )
    log_format: str = Field("console", pattern="^(console|json)$")
    # The HTTP API (`posequeue api`, docs/api.md)
    api_tokens: str = Field("", description="bearer tokens the API accepts, comma-separated")
    api_token_file: Path | None = Field(None, description="file of API tokens, one a line")
    api_max_upload_mb: int = Field(2048, ge=1, description="largest video the API accepts")
    callback_secret: str = Field("", description="HMAC-SHA256 key signing the API's callbacks")

    @field_validator("store")
    @classmethod
    def _store_scheme(cls, value: str) -> str:
        if not value.startswith(("s3://", "file:///")):
            raise ValueError(
                f"POSEQUEUE_STORE={value!r} is not a store URI; use s3://bucket/prefix or "
                "file:///absolute/path"
            )
        return value.rstrip("/")

    @field_validator("task_time_limit")
    @classmethod
    def _below_visibility(cls, value: int, info) -> int:
        visibility = info.data.get("visibility_timeout", 600)
        if value >= visibility:
            raise ValueError(
                f"POSEQUEUE_TASK_TIME_LIMIT={value} must be below POSEQUEUE_VISIBILITY_TIMEOUT="
                f"{visibility}, or Redis redelivers running tasks to a second worker"
            )
        return value

    @model_validator(mode="after")
    def _payload_outlives_redelivery(self) -> Settings:
        if self.payload_ttl <= self.visibility_timeout + self.task_time_limit:
            raise ValueError(
                f"POSEQUEUE_PAYLOAD_TTL={self.payload_ttl} must exceed POSEQUEUE_VISIBILITY_TIMEOUT "
                f"+ POSEQUEUE_TASK_TIME_LIMIT ({self.visibility_timeout + self.task_time_limit}): "
                "a batch redelivered after a worker dies must still find its frames"
            )
        return self

    @property
    def backend_url(self) -> str:
        return self.result_backend or self.broker_url

    @property
    def payload_servers(self) -> list[str]:
        """Where batch payloads live: the payload URLs, or the broker."""
        return [u.strip() for u in self.payload_urls.split(",") if u.strip()] or [self.broker_url]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
