"""A bounded load test of the API (not part of `make test`: run it with POSEQUEUE_LOAD_TEST=1):
50 uploads at once of a short video against loopback, no 5xx, every job done. Its figures are
printed and written to api-load.json (docs/api.md quotes them)."""

from __future__ import annotations

import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from apiserver import TOKENS, api_env, running_api
from conftest import ROOT, Worker
from videos import make_video

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.environ.get("POSEQUEUE_LOAD_TEST") != "1", reason="load test: set POSEQUEUE_LOAD_TEST=1 (~2-4 min)"
    ),
]

UPLOADS = 50


def test_fifty_concurrent_uploads_all_finish(worker: Worker, tmp_path: Path) -> None:
    """50 concurrent uploads are all accepted (no 5xx) and every job reaches done."""
    video = make_video(tmp_path / "short.mp4", frames=30, width=320, height=240)
    data = video.read_bytes()
    headers = {"Authorization": f"Bearer {TOKENS[0]}"}
    with running_api(api_env(dict(os.environ)), tmp_path / "api.log") as client:
        base = str(client.base_url)

        def one(i: int) -> tuple[int, float, str]:
            started = time.perf_counter()
            with httpx.Client(base_url=base, headers=headers, timeout=120) as c:
                # without the motion analysis: this measures the API and the pose pipeline
                r = c.post(
                    "/v1/jobs",
                    files={"file": (f"clip{i}.mp4", data, "video/mp4")},
                    data={"analysis": "false"},
                )
            return r.status_code, time.perf_counter() - started, r.json().get("id", "")

        started = time.perf_counter()
        with ThreadPoolExecutor(UPLOADS) as pool:
            answers = list(pool.map(one, range(UPLOADS)))
        accepted_s = time.perf_counter() - started
        assert [a[0] for a in answers] == [202] * UPLOADS, answers
        pending = {a[2] for a in answers}
        deadline = time.monotonic() + 600
        statuses: dict[str, str] = {}
        while pending and time.monotonic() < deadline:
            for job_id in list(pending):
                r = client.get(f"/v1/jobs/{job_id}")
                assert r.status_code < 500, r.text
                statuses[job_id] = r.json()["status"]
                if statuses[job_id] in ("done", "failed"):
                    pending.discard(job_id)
            time.sleep(0.5)
        all_done_s = time.perf_counter() - started
    assert not pending, f"{len(pending)} jobs did not finish"
    assert set(statuses.values()) == {"done"}, statuses
    latencies = sorted(a[1] for a in answers)
    figures = {
        "uploads": UPLOADS,
        "video": {"frames": 30, "size": "320x240", "bytes": len(data)},
        "upload_latency_s": {
            "p50": round(statistics.median(latencies), 3),
            "p95": round(latencies[int(0.95 * (UPLOADS - 1))], 3),
            "max": round(latencies[-1], 3),
        },
        "all_accepted_s": round(accepted_s, 2),
        "all_done_s": round(all_done_s, 2),
        "frames_per_s_end_to_end": round(UPLOADS * 30 / all_done_s, 1),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(figures))
    (ROOT / "api-load.json").write_text(json.dumps(figures, indent=1) + "\n")
