"""``posequeue metrics``: the Prometheus text, the backlog signal, workers' own throughput
reports, and CloudWatch publication (against moto's server), read from a real Redis."""

from __future__ import annotations

import math
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import SAMPLE, posequeue
from helpers import free_port, serving

from posequeue.config.catalogue import CATALOGUE
from posequeue.fleet.metrics import (
    CLOUDWATCH_BACKLOG_CAP,
    Snapshot,
    StageBacklog,
    backlog,
    cloudwatch_data,
    make_server,
    render,
    stage_backlogs,
)
from posequeue.worker.stats import WorkerRate, read_rates, record, series_name

DETECTOR = "pose.blazepose.detector"
LANDMARKS = "pose.blazepose.landmarks"


def samples(text: str) -> dict[str, float]:
    """Prometheus text -> {'name{labels}': value} (comments dropped)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


# -- unit: backlog and rendering --------------------------------------------------------------
def test_backlog_is_zero_without_frames_and_infinite_without_capacity() -> None:
    """Nothing queued is no backlog even with no worker; frames with no worker never drain."""
    assert backlog(0, 0) == 0
    assert backlog(80, 0) == math.inf
    assert backlog(80, 40) == 2.0


def test_a_later_stage_counts_frames_queued_for_earlier_stages() -> None:
    """A frame on the detector queue still needs the landmarks stage."""
    spec = CATALOGUE["blazepose"]
    depths = {DETECTOR: 3, LANDMARKS: 1}
    got = stage_backlogs(spec, depths, 8, {("blazepose", "detector"): 80.0, ("blazepose", "landmarks"): 40.0})
    assert [(b.stage, b.queued_frames, b.seconds) for b in got] == [
        ("detector", 24, 0.3),
        ("landmarks", 32, 0.8),
    ]
    assert Snapshot(queues=depths, stages=got).backlog_seconds == 0.8


def snapshot() -> Snapshot:
    return Snapshot(
        queues={"ingest": 0, DETECTOR: 4, LANDMARKS: 0},
        unacked=1,
        jobs={"queued": 1, "running": 2, "done": 3, "failed": 0},
        batches_in_flight=5,
        frames_done=120,
        batch_size=8.0,
        workers=[WorkerRate('w"1@h', "blazepose", "detector", 60, 1.5, 90.25)],
        stages=[
            StageBacklog("blazepose", "detector", 32, 0.0, math.inf),
            StageBacklog("blazepose", "landmarks", 32, 10.0, 3.2),
        ],
    )


def test_render_is_prometheus_text_with_every_gauge() -> None:
    """Each family has HELP and TYPE lines; labels are quoted and escaped; +Inf is spelled out."""
    text = render(snapshot())
    got = samples(text)
    assert got['posequeue_queue_depth{queue="pose.blazepose.detector"}'] == 4
    assert got["posequeue_unacked_messages"] == 1
    assert got["posequeue_batches_in_flight"] == 5
    assert got['posequeue_jobs{status="done"}'] == 3
    assert got["posequeue_frames_done_total"] == 120
    worker = 'model="blazepose",stage="detector",worker="w\\"1@h"'  # labels in name order
    assert got[f"posequeue_worker_frames_per_second{{{worker}}}"] == 1.5
    assert got['posequeue_stage_backlog_seconds{model="blazepose",stage="landmarks"}'] == 3.2
    assert 'posequeue_stage_backlog_seconds{model="blazepose",stage="detector"} +Inf' in text
    assert "posequeue_backlog_seconds +Inf" in text
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert all(f"# HELP {n} " in text for n in names)
    assert text.endswith("\n")


def test_cloudwatch_data_caps_an_infinite_backlog() -> None:
    """CloudWatch takes no infinity: no live worker with frames queued reads as a day."""
    data = cloudwatch_data(snapshot())
    fleet = [d for d in data if d["MetricName"] == "BacklogSeconds" and not d["Dimensions"]]
    assert fleet[0]["Value"] == CLOUDWATCH_BACKLOG_CAP
    depth = [d for d in data if d["MetricName"] == "QueueDepth"]
    assert {d["Dimensions"][0]["Value"]: d["Value"] for d in depth}[DETECTOR] == 4
    assert any(d["MetricName"] == "BatchesInFlight" and d["Value"] == 5 for d in data)


# -- integration: Redis, a metrics process, a worker, moto ----------------------------------
def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_server_answers_503_when_the_fleet_cannot_be_read() -> None:
    """A failed reading is a failed scrape (503 with the reason), not a dead exporter; /healthz
    reports Redis down; the next scrape that can read the fleet answers 200 again."""
    failing = [True]

    def read() -> Snapshot:
        if failing[0]:
            raise ConnectionError("Redis is down")
        return snapshot()

    server = make_server("127.0.0.1", 0, read, lambda: not failing[0])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        status, body = get(f"{base}/metrics")
        assert (status, "Redis is down" in body) == (503, True)
        assert get(f"{base}/healthz") == (503, "redis unreachable\n")
        failing[0] = False
        status, body = get(f"{base}/metrics")
        assert status == 200 and samples(body)["posequeue_unacked_messages"] == 1
        assert get(f"{base}/healthz") == (200, "ok\n")
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def metrics_server(isolated: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """``posequeue metrics`` on a free loopback port of the isolated fleet; stopped at the end."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "posequeue.cli", "metrics", "--port", str(port)]
    with serving(cmd, isolated, f"{base}/healthz", tmp_path / "metrics.log"):
        yield base


def queue_batches(broker_url: str, queue: str, count: int) -> None:
    """Put ``count`` inference messages on ``queue`` as a producer would, with no worker running."""
    from posequeue.config.celery_app import INFER_TASK, make_app
    from posequeue.config.settings import Settings

    app = make_app(Settings(broker_url=broker_url))
    for index in range(count):
        app.send_task(INFER_TASK, args=["job-x", index, queue.rsplit(".", 1)[1]], queue=queue)


@pytest.mark.integration
def test_metrics_endpoint_reports_queued_batches(isolated: dict[str, str], metrics_server: str) -> None:
    """Batches queued with no worker show as queue depth, and as an infinite backlog."""
    # Given five detector batches and two landmarks batches queued, and no worker
    queue_batches(isolated["POSEQUEUE_BROKER_URL"], DETECTOR, 5)
    queue_batches(isolated["POSEQUEUE_BROKER_URL"], LANDMARKS, 2)
    # When Prometheus scrapes the endpoint
    status, text = get(f"{metrics_server}/metrics")
    # Then the depth gauges equal what was queued and nothing can drain it
    assert status == 200
    got = samples(text)
    assert got[f'posequeue_queue_depth{{queue="{DETECTOR}"}}'] == 5
    assert got[f'posequeue_queue_depth{{queue="{LANDMARKS}"}}'] == 2
    assert got['posequeue_queue_depth{queue="ingest"}'] == 0
    assert got['posequeue_stage_queued_frames{model="blazepose",stage="landmarks"}'] == 7 * 8
    assert got["posequeue_backlog_seconds"] == math.inf
    assert get(f"{metrics_server}/nothing")[0] == 404


@pytest.mark.integration
def test_rates_sum_a_workers_processes_over_the_window(isolated: dict[str, str]) -> None:
    """Two pool processes of one node add up; a series silent for longer than the window is gone."""
    r = redis.Redis.from_url(isolated["POSEQUEUE_BROKER_URL"])
    now = 1_000_000.0
    # Given two processes of one node that each ran 80 frames in 1 s of work, and an old series
    record(r, series_name("n@h", "blazepose", "landmarks", 1), 80, 1.0, now - 5)
    record(r, series_name("n@h", "blazepose", "landmarks", 2), 80, 1.0, now - 15)
    record(r, series_name("old@h", "blazepose", "landmarks", 1), 8, 1.0, now - 600)
    # When the rates are read
    rates = read_rates(r, now)
    # Then one row: 160 frames over the 60-70 s window, and 160 frames per busy second
    assert [(w.worker, w.frames, w.capacity) for w in rates] == [("n@h", 160, 160.0)]
    assert 160 / 70 <= rates[0].frames_per_second <= 160 / 60


@pytest.mark.integration
@pytest.mark.parametrize("video_mode", [False, True], ids=["every-frame", "video-mode"])
def test_worker_reports_frames_per_second(isolated: dict[str, str], start_worker, video_mode: bool) -> None:
    """After a real worker processed the sample video, its frames/s and the capacity are > 0;
    each stage is credited with the frames it ran on (in video mode the detector ran on fewer)."""
    # Given a worker serving every queue of the isolated fleet
    start_worker(**isolated)
    # When it has processed the sample video
    mode = ["--video-mode"] if video_mode else []
    done = posequeue("submit", str(SAMPLE), *mode, "--wait", "--json", "--timeout", "180", env=isolated)
    assert done.returncode == 0, done.stderr
    # Then the metrics show its throughput on both stages, and no backlog
    out = posequeue("metrics", "--once", env=isolated)
    assert out.returncode == 0, out.stderr
    got = samples(out.stdout)
    for stage in ("detector", "landmarks"):
        fps = [
            v
            for k, v in got.items()
            if k.startswith("posequeue_worker_frames_per_second{") and f'stage="{stage}"' in k
        ]
        assert fps and fps[0] > 0, (
            f"no {stage} frames/s: does `posequeue worker` import posequeue.worker.stats?\n" + out.stdout
        )
        assert got[f'posequeue_stage_capacity_frames_per_second{{model="blazepose",stage="{stage}"}}'] > 0
    assert got['posequeue_jobs{status="done"}'] == 1
    assert got["posequeue_frames_done_total"] > 0
    rates = read_rates(redis.Redis.from_url(isolated["POSEQUEUE_BROKER_URL"]), time.time())
    frames = {stage: sum(r.frames for r in rates if r.stage == stage) for stage in ("detector", "landmarks")}
    if video_mode:
        assert 0 < frames["detector"] < frames["landmarks"], frames
    else:
        assert frames["detector"] == frames["landmarks"] > 0, frames
    assert got["posequeue_backlog_seconds"] == 0


@pytest.mark.integration
def test_once_publishes_to_cloudwatch(s3_server: str, isolated: dict[str, str]) -> None:
    """`--once --cloudwatch-namespace` puts BacklogSeconds, QueueDepth and BatchesInFlight."""
    import boto3

    # Given three detector batches queued and CloudWatch at moto's server (AWS_ENDPOINT_URL)
    queue_batches(isolated["POSEQUEUE_BROKER_URL"], DETECTOR, 3)
    env = {**isolated, "AWS_ENDPOINT_URL": s3_server}
    # When the exporter publishes once
    out = posequeue("metrics", "--once", "--cloudwatch-namespace", "posequeue-test", env=env)
    assert out.returncode == 0, out.stderr
    # Then CloudWatch lists the metrics with their dimensions and values
    cw = boto3.client("cloudwatch", endpoint_url=s3_server)
    listed = cw.list_metrics(Namespace="posequeue-test")["Metrics"]
    names = {m["MetricName"] for m in listed}
    assert {"BacklogSeconds", "QueueDepth", "BatchesInFlight"} <= names
    queues = {d["Value"] for m in listed if m["MetricName"] == "QueueDepth" for d in m["Dimensions"]}
    assert {DETECTOR, LANDMARKS, "ingest"} <= queues
    stats = cw.get_metric_statistics(
        Namespace="posequeue-test",
        MetricName="QueueDepth",
        Dimensions=[{"Name": "Queue", "Value": DETECTOR}],
        StartTime=time.time() - 600,
        EndTime=time.time() + 600,
        Period=60,
        Statistics=["Maximum"],
    )["Datapoints"]
    assert [p["Maximum"] for p in stats] == [3.0]
    backlog_points = cw.get_metric_statistics(
        Namespace="posequeue-test",
        MetricName="BacklogSeconds",
        Dimensions=[],
        StartTime=time.time() - 600,
        EndTime=time.time() + 600,
        Period=60,
        Statistics=["Maximum"],
    )["Datapoints"]
    assert [p["Maximum"] for p in backlog_points] == [CLOUDWATCH_BACKLOG_CAP]
