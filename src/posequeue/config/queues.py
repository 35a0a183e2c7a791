"""Queue names. One queue per model stage, so each stage gets its own workers and core groups."""

from __future__ import annotations

import re

from posequeue.config.catalogue import ModelSpec, all_models

# Model and stage names go into queue, service, unit and process-tag names: lower-case letters,
# digits and _, with single hyphens between ('.' separates a queue name's parts).
NAME = re.compile(r"^[a-z][a-z0-9_]*(?:-[a-z0-9_]+)*$")
NAME_RULE = "lower-case letters, digits and _ (starting with a letter), with single hyphens between"

INGEST = "ingest"  # producers: probe, decode, preprocess, batch; and job finalisation
ANALYSIS = "analysis"  # a done job's motion analysis (any CPU host with the analysis extra)


def stage_queue(model: str, stage: str) -> str:
    return f"pose.{model}.{stage}"


def model_queues(spec: ModelSpec) -> list[str]:
    return [stage_queue(spec.name, stage.name) for stage in spec.stages]


def all_queues() -> list[str]:
    """Every queue the fleet uses: ingest, each known model's stages, then analysis."""
    return [INGEST] + [q for spec in all_models().values() for q in model_queues(spec)] + [ANALYSIS]
