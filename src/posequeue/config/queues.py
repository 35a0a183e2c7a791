"""Queue names. One queue per model stage, so each stage gets its own workers and core groups."""

from __future__ import annotations

from posequeue.config.models import ModelSpec, all_models

INGEST = "ingest"  # producers: probe, decode, preprocess, batch; and job finalisation


def stage_queue(model: str, stage: str) -> str:
    return f"pose.{model}.{stage}"


def model_queues(spec: ModelSpec) -> list[str]:
    return [stage_queue(spec.name, stage.name) for stage in spec.stages]


def all_queues() -> list[str]:
    """Every queue the fleet uses: ingest, then each known model's stages."""
    return [INGEST] + [q for spec in all_models().values() for q in model_queues(spec)]
