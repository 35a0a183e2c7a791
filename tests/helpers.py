"""Small helpers for integration tests."""

from __future__ import annotations

from typing import Any


def wait_job(jobs: Any, job_id: str, timeout: float = 120) -> dict[str, Any]:
    """Poll until the job ends (or the timeout passes); return its summary."""
    from posequeue.producer.submit import wait

    return wait(job_id, jobs, poll=0.1, timeout=timeout)


def load_results(store_root: str, job: dict[str, Any]) -> dict[str, Any]:
    import json

    from posequeue.store import open_store

    return json.loads(open_store(store_root).get_bytes(f"jobs/{job['job_id']}/poses.json"))
