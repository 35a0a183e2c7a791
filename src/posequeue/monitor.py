"""Queue depth and jobs in flight, read straight from Redis (what Flower's broker tab shows, plus
the per-job view it lacks)."""

from __future__ import annotations

from typing import Any

from posequeue.config import queues
from posequeue.errors import JobNotFound
from posequeue.jobs import Jobs, summary

# Celery's Redis transport keeps priority levels in sibling lists: name, name\x06\x163, ...
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def queue_depth(jobs: Jobs, name: str) -> int:
    with jobs.r.pipeline() as pipe:
        for suffix in PRIORITY_SUFFIXES:
            pipe.llen(name + suffix)
        return sum(pipe.execute())


def queue_report(jobs: Jobs, recent: int = 20) -> dict[str, Any]:
    """Depth per queue, messages taken but not yet acknowledged, the memory budget, and recent
    unfinished jobs (with the bytes each holds in the budget)."""
    active = []
    held = jobs.budget.held()
    for job_id in jobs.recent(recent):
        try:
            job = jobs.get(job_id)
        except JobNotFound:  # expired since it was listed
            continue
        if not job.status.finished:
            budget_mb = round(held.get(job_id, 0) / 2**20, 1)
            active.append({**summary(job), "inflight": jobs.inflight(job_id), "budget_mb": budget_mb})
    return {
        "queues": {name: queue_depth(jobs, name) for name in queues.all_queues()},
        "unacked": int(jobs.r.hlen("unacked")),
        "budget": jobs.budget.report(),
        "jobs": active,
    }
