"""The analysis end to end through real Redis queues and real worker processes: a job on the
sample video is followed by its analysis on the analysis queue, every output lands beside
poses.json, ``posequeue results`` fetches them, and ``posequeue analyze`` runs it again with
other parameters without running the models."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest
from conftest import SAMPLE, posequeue
from test_analysis_outputs import parse_mot, parse_trc

pytestmark = pytest.mark.integration

EVERY_OUTPUT = {
    "angles.csv",
    "speeds.csv",
    "analysis.json",
    "markers.trc",
    "angles.mot",
    "overlay.mp4",
    "report.html",
}


def _fleet(isolated: dict[str, str]) -> dict[str, str]:
    return {k: isolated[k] for k in ("POSEQUEUE_BROKER_URL", "POSEQUEUE_STORE")}


def _submitted(env: dict[str, str], *extra: str) -> str:
    done = posequeue("submit", str(SAMPLE), "--wait", "--json", *extra, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])["job_id"]


def _analysis(job_id: str, env: dict[str, str]) -> dict:  # type: ignore[type-arg]
    from posequeue.analysis.state import wait
    from posequeue.jobs import Jobs

    jobs = Jobs.from_url(env["POSEQUEUE_BROKER_URL"])
    return wait(jobs, job_id, poll=0.2, timeout=240)


def test_every_job_is_analysed_and_results_fetch_the_outputs(start_worker, isolated, tmp_path: Path) -> None:
    """A worker with no --stage serves the analysis queue: the sample video's job ends with every
    analysis output in the store, and `results --format report` fetches the report and overlay."""
    start_worker(**_fleet(isolated))
    job_id = _submitted(isolated)
    state = _analysis(job_id, isolated)
    assert state["status"] == "done", state.get("error")
    assert set(state["results"]) >= EVERY_OUTPUT
    assert any(name.startswith("plots/") for name in state["results"])
    store_root = Path(isolated["POSEQUEUE_STORE"].removeprefix("file://"))
    prefix = store_root / "jobs" / job_id
    assert {p.name for p in prefix.iterdir()} >= EVERY_OUTPUT

    doc = json.loads((prefix / "analysis.json").read_text())
    assert doc["tracks"] and doc["tracks"][0]["frames"]["present"] >= 85
    assert parse_trc(prefix / "markers.trc")["head"]["NumFrames"] == str(doc["tracks"][0]["frames"]["frames"])
    assert "right_knee" in parse_mot(prefix / "angles.mot")["columns"]
    with av.open(str(prefix / "overlay.mp4")) as c:
        s = c.streams.video[0]
        assert (s.width, s.height) == (640, 360) and sum(1 for _ in c.decode(s)) == 90

    out = tmp_path / "fetched"
    done = posequeue("results", job_id, "--format", "report", "-o", str(out), env=isolated)
    assert done.returncode == 0, done.stderr
    assert {p.name for p in out.iterdir()} == {"report.html", "overlay.mp4"}
    one = posequeue("results", job_id, "--format", "angles", env=isolated)
    assert one.stdout.startswith("frame,t,track,angle,raw,filtered,velocity,flags\n")

    again = posequeue("analyze", job_id, "--cutoff", "3", "--no-overlay", "--wait", "--json", env=isolated)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["analysis"]["status"] == "done"
    assert json.loads((prefix / "analysis.json").read_text())["parameters"]["cutoff"] == 3.0


def test_no_analysis_and_bad_parameters(start_worker, isolated) -> None:
    """submit --no-analysis leaves the analysis off; analyze refuses a cutoff over Nyquist with a
    reason naming the limit, and the worker goes on."""
    start_worker(**_fleet(isolated))
    job_id = _submitted(isolated, "--no-analysis")
    assert _analysis(job_id, isolated)["status"] == "off"
    bad = posequeue("analyze", job_id, "--cutoff", "20", "--wait", "--json", env=isolated)
    assert bad.returncode == 1
    error = json.loads(bad.stdout)["analysis"]["error"]
    assert "Nyquist frequency 15 Hz" in error
    good = posequeue("analyze", job_id, "--no-overlay", "--wait", "--json", env=isolated)
    assert json.loads(good.stdout)["analysis"]["status"] == "done"
