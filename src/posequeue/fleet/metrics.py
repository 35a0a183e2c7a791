"""``posequeue metrics``: what Flower lacks, as Prometheus gauges and CloudWatch metrics.

Everything is read from Redis at scrape time (no state in this process, so any number of
exporters may run): queue depths, the recent job records, and the per-worker throughput the
workers report themselves (``posequeue.worker.stats``). The autoscaling signal is the
backlog in seconds: frames waiting on a stage's queue divided by the frames per second the live
workers of that stage can do. See docs/metrics.md for each metric's meaning and limits.
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from posequeue.config import keys
from posequeue.config.catalogue import ModelSpec, all_models
from posequeue.config.queues import stage_queue
from posequeue.config.schemas import JobStatus
from posequeue.errors import EXIT_FAILED, EXIT_REFUSED

if TYPE_CHECKING:  # Redis, Celery, structlog and prometheus_client load when the command runs
    from wsgiref.simple_server import WSGIServer

    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from posequeue.jobs import Jobs
    from posequeue.worker.stats import WorkerRate

DEFAULT_PORT = 9808
DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_INTERVAL = 60.0
DEFAULT_RECENT_JOBS = 1000  # job records scanned per scrape, newest first
# CloudWatch accepts no infinity: a backlog with no live worker is published as a day.
CLOUDWATCH_BACKLOG_CAP = 86400.0


# -- what is measured -----------------------------------------------------------------------
@dataclass(frozen=True)
class StageBacklog:
    """The frames one stage still has to run and how long its live workers need for them."""

    model: str
    stage: str
    queued_frames: float  # frames on this stage's queue and every earlier stage's queue
    capacity: float  # frames per second its live workers can do
    seconds: float  # queued_frames / capacity (0 with nothing queued, +inf with no worker)


@dataclass
class Snapshot:
    """One reading of the fleet, rendered for Prometheus or sent to CloudWatch."""

    queues: dict[str, int]
    unacked: int = 0
    jobs: dict[str, int] = field(default_factory=dict)  # status -> jobs among the scanned ones
    batches_in_flight: int = 0
    frames_done: int = 0
    batch_size: float = 0.0  # frames per queued message (estimate)
    workers: list[WorkerRate] = field(default_factory=list)
    stages: list[StageBacklog] = field(default_factory=list)

    @property
    def backlog_seconds(self) -> float:
        """The slowest stage's backlog: the fleet's seconds of work waiting."""
        return max((s.seconds for s in self.stages), default=0.0)


def backlog(frames: float, capacity: float) -> float:
    """Seconds to run ``frames`` at ``capacity`` frames/s: 0 with no frames, +inf with no capacity."""
    if frames <= 0:
        return 0.0
    return frames / capacity if capacity > 0 else math.inf


def stage_backlogs(
    spec: ModelSpec, depths: Mapping[str, int], batch_size: float, capacity: Mapping[tuple[str, str], float]
) -> list[StageBacklog]:
    """Backlog of each stage of a model. A frame queued for stage 1 still needs stage 2, so the
    frames a stage has to run are those on its own queue and on every earlier stage's queue."""
    out, waiting = [], 0.0
    for stage in spec.stages:
        waiting += depths.get(stage_queue(spec.name, stage.name), 0) * batch_size
        cap = capacity.get((spec.name, stage.name), 0.0)
        out.append(StageBacklog(spec.name, stage.name, waiting, cap, backlog(waiting, cap)))
    return out


@dataclass
class JobScan:
    counts: dict[str, int]
    batches_in_flight: int
    frames_done: int
    batch_sizes: list[int]  # of unfinished jobs: their batches are the queued ones


def scan_jobs(jobs: Jobs, recent: int) -> JobScan:
    """Count the ``recent`` newest job records in two round trips (finished records expire a
    week after the job; older or expired jobs are not counted)."""
    ids = jobs.recent(recent)
    with jobs.r.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(keys.job_key(job_id), "status", "frames_done", "batches_enqueued", "batch_size")
            pipe.scard(keys.done_key(job_id))
        replies = pipe.execute()
    scan = JobScan({s.value: 0 for s in JobStatus}, 0, 0, [])
    for (status, frames, enqueued, size), done in zip(replies[::2], replies[1::2], strict=True):
        if status is None:  # expired record
            continue
        state = status.decode()
        scan.counts[state] = scan.counts.get(state, 0) + 1
        scan.frames_done += int(frames or 0)
        if state in (JobStatus.QUEUED.value, JobStatus.RUNNING.value):
            scan.batches_in_flight += max(0, int(enqueued or 0) - int(done))
            if size:
                scan.batch_sizes.append(int(size))
    return scan


def collect(
    jobs: Jobs, default_batch_size: int, recent: int = DEFAULT_RECENT_JOBS, now: float | None = None
) -> Snapshot:
    """Read the fleet's state from Redis."""
    from posequeue.config.queues import all_queues
    from posequeue.monitor import queue_depth
    from posequeue.worker.stats import read_rates

    now = time.time() if now is None else now
    depths = {name: queue_depth(jobs, name) for name in all_queues()}
    scan = scan_jobs(jobs, recent)
    workers = read_rates(jobs.r, now)
    batch_size = (sum(scan.batch_sizes) / len(scan.batch_sizes)) if scan.batch_sizes else default_batch_size
    capacity: dict[tuple[str, str], float] = {}
    for w in workers:
        capacity[(w.model, w.stage)] = capacity.get((w.model, w.stage), 0.0) + w.capacity
    stages = [b for spec in all_models().values() for b in stage_backlogs(spec, depths, batch_size, capacity)]
    return Snapshot(
        queues=depths,
        unacked=int(jobs.r.hlen("unacked")),
        jobs=scan.counts,
        batches_in_flight=scan.batches_in_flight,
        frames_done=scan.frames_done,
        batch_size=batch_size,
        workers=workers,
        stages=stages,
    )


# -- Prometheus (prometheus_client) ----------------------------------------------------------
# Label names of the per-worker and per-stage families. Every metric is a gauge: the exporter
# recomputes them all from Redis at each scrape and keeps no state.
_WORKER = ("worker", "model", "stage")
_STAGE = ("model", "stage")


def families(s: Snapshot) -> list[Metric]:
    """The snapshot as Prometheus metric families, every one a gauge."""
    from prometheus_client.core import GaugeMetricFamily

    from posequeue.worker.stats import WINDOW_S

    def gauge(name: str, help_text: str, labels: Iterable[str], samples: Iterable[Sample]) -> Metric:
        family = GaugeMetricFamily(name, help_text, labels=list(labels))
        for values, v in samples:
            family.add_metric(list(values), v)
        return family

    def single(name: str, help_text: str, value: float) -> Metric:
        return GaugeMetricFamily(name, help_text, value=value)

    def per_worker(attr: str) -> list[Sample]:
        return [((w.worker, w.model, w.stage), getattr(w, attr)) for w in s.workers]

    def per_stage(attr: str) -> list[Sample]:
        return [((b.model, b.stage), getattr(b, attr)) for b in s.stages]

    return [
        gauge(
            "posequeue_queue_depth",
            "Messages waiting on a queue (all priority levels).",
            ("queue",),
            [((q,), d) for q, d in s.queues.items()],
        ),
        single(
            "posequeue_unacked_messages", "Messages taken by workers and not yet acknowledged.", s.unacked
        ),
        single(
            "posequeue_batches_in_flight",
            "Batches enqueued and not finished, over unfinished jobs among the scanned ones.",
            s.batches_in_flight,
        ),
        gauge(
            "posequeue_jobs",
            "Jobs by status among the newest records scanned (--recent-jobs).",
            ("status",),
            [((k,), v) for k, v in s.jobs.items()],
        ),
        single(
            "posequeue_frames_done_total",
            "Frames finished, summed over the scanned jobs (drops when records expire: a gauge).",
            s.frames_done,
        ),
        gauge(
            "posequeue_worker_frames_per_second",
            f"Frames a worker finished per second over the last {WINDOW_S} s, idle time included.",
            _WORKER,
            per_worker("frames_per_second"),
        ),
        gauge(
            "posequeue_worker_capacity_frames_per_second",
            "Frames a worker finishes per busy second (summed over its pool processes).",
            _WORKER,
            per_worker("capacity"),
        ),
        gauge(
            "posequeue_stage_queued_frames",
            "Frames waiting for a stage: its queue and earlier stages' queues, times the batch size.",
            _STAGE,
            per_stage("queued_frames"),
        ),
        gauge(
            "posequeue_stage_capacity_frames_per_second",
            "Capacity of a stage's live workers.",
            _STAGE,
            per_stage("capacity"),
        ),
        gauge(
            "posequeue_stage_backlog_seconds",
            "Queued frames / capacity of a stage (+Inf with frames queued and no live worker).",
            _STAGE,
            per_stage("seconds"),
        ),
        single(
            "posequeue_backlog_seconds",
            "Seconds of work waiting: the slowest stage's backlog (the autoscaling signal).",
            s.backlog_seconds,
        ),
        single(
            "posequeue_queued_batch_frames",
            "Frames per queued message assumed (mean batch size of unfinished jobs).",
            s.batch_size,
        ),
    ]


Sample = tuple[Sequence[str], float]


class FleetCollector:
    """A prometheus_client collector that reads the fleet afresh at each collection."""

    def __init__(self, read: Callable[[], Snapshot]) -> None:
        self.read = read

    def collect(self) -> Iterable[Metric]:
        return families(self.read())

    def describe(self) -> Iterable[Metric]:
        return []  # registering must not read Redis; the names are not known before a reading


def registry(read: Callable[[], Snapshot]) -> CollectorRegistry:
    """A registry holding only the fleet's collector (not the client's process metrics: this
    process's own memory and CPU are not the fleet's)."""
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry(auto_describe=False)
    reg.register(FleetCollector(read))
    return reg


def render(s: Snapshot) -> str:
    """The snapshot in Prometheus' text exposition format; every metric is a gauge."""
    from prometheus_client import generate_latest

    return generate_latest(registry(lambda: s)).decode()


# -- CloudWatch -----------------------------------------------------------------------------
def cloudwatch_data(s: Snapshot, when: datetime | None = None) -> list[dict[str, Any]]:
    """``MetricData`` for ``put_metric_data``: BacklogSeconds (fleet, and per Model and Stage),
    QueueDepth per Queue, BatchesInFlight. Infinite backlogs become CLOUDWATCH_BACKLOG_CAP."""
    when = when or datetime.now(timezone.utc)

    def datum(name: str, value: float, unit: str, **dims: str) -> dict[str, Any]:
        return {
            "MetricName": name,
            "Timestamp": when,
            "Value": float(value),
            "Unit": unit,
            "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
        }

    def capped(v: float) -> float:
        return min(v, CLOUDWATCH_BACKLOG_CAP)

    data = [datum("BacklogSeconds", capped(s.backlog_seconds), "Seconds")]
    data += [
        datum("BacklogSeconds", capped(b.seconds), "Seconds", Model=b.model, Stage=b.stage) for b in s.stages
    ]
    data += [datum("QueueDepth", d, "Count", Queue=q) for q, d in s.queues.items()]
    data.append(datum("BatchesInFlight", s.batches_in_flight, "Count"))
    return data


def publish(client: Any, namespace: str, s: Snapshot) -> int:
    """Send the snapshot to CloudWatch (boto3 honours AWS_ENDPOINT_URL); returns the data count."""
    data = cloudwatch_data(s)
    for i in range(0, len(data), 500):  # well under put_metric_data's per-call limit
        client.put_metric_data(Namespace=namespace, MetricData=data[i : i + 500])
    return len(data)


# -- HTTP -----------------------------------------------------------------------------------
def make_server(
    address: str, port: int, read: Callable[[], Snapshot], healthy: Callable[[], bool]
) -> WSGIServer:
    """prometheus_client's threaded WSGI server: GET /metrics is its exposition app over a fresh
    reading (503 with the error when Redis cannot be read), GET /healthz says whether Redis
    answers (200 or 503), anything else is 404. prometheus_client's own ``start_http_server``
    serves the metrics on every path and has no health check, hence the small router."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client import make_wsgi_app
    from prometheus_client.exposition import ThreadingWSGIServer

    metrics_app = make_wsgi_app(registry(read))

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            try:
                return metrics_app(environ, start_response)
            except Exception as exc:  # Redis down: the scrape fails visibly, the server lives
                _log().warning("metrics.collect_failed", error=repr(exc))
                return _reply(
                    start_response, "503 Service Unavailable", f"cannot read the fleet's state: {exc!r}\n"
                )
        if path == "/healthz":
            ok = healthy()
            return _reply(
                start_response,
                "200 OK" if ok else "503 Service Unavailable",
                "ok\n" if ok else "redis unreachable\n",
            )
        return _reply(start_response, "404 Not Found", "not found: try /metrics or /healthz\n")

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
            pass

    return make_server(address, port, app, ThreadingWSGIServer, handler_class=Quiet)


def _reply(start_response: Callable[..., Any], status: str, body: str) -> list[bytes]:
    raw = body.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(raw)))])
    return [raw]


# -- command --------------------------------------------------------------------------------
def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Add ``metrics`` to a parser's subcommands (it sets ``run``)."""
    p = subparsers.add_parser(
        "metrics",
        help="serve Prometheus metrics (queue depth, jobs, frames/s, backlog) and "
        "publish the backlog to CloudWatch",
        description="Serve /metrics (Prometheus text format) and /healthz, read from the Redis "
        "in POSEQUEUE_BROKER_URL. With --cloudwatch-namespace, also publish BacklogSeconds, "
        "QueueDepth and BatchesInFlight every --interval seconds (boto3: AWS_* variables, "
        "AWS_ENDPOINT_URL). --once: publish (or print the metrics) once and exit.",
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    p.add_argument(
        "--address",
        default=DEFAULT_ADDRESS,
        help=f"default {DEFAULT_ADDRESS}; 0.0.0.0 for a scraper on another host (the metrics are read-only)",
    )
    p.add_argument("--cloudwatch-namespace", metavar="NS", help="publish to CloudWatch under NS")
    p.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL,
        help=f"seconds between CloudWatch publications (default {DEFAULT_INTERVAL:g})",
    )
    p.add_argument(
        "--recent-jobs",
        type=int,
        default=DEFAULT_RECENT_JOBS,
        help=f"job records scanned per reading, newest first (default {DEFAULT_RECENT_JOBS})",
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="publish to CloudWatch once (or, without "
        "--cloudwatch-namespace, print the metrics) and exit: for cron and tests",
    )
    p.set_defaults(run=cmd_metrics)


def cmd_metrics(args: argparse.Namespace) -> int:
    from posequeue.config.settings import get_settings

    if args.interval <= 0 or args.recent_jobs < 1:
        print(
            f"error: --interval must be > 0 (got {args.interval}) and --recent-jobs >= 1 "
            f"(got {args.recent_jobs})",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    from posequeue.jobs import Jobs

    settings = get_settings()
    jobs = Jobs.from_url(settings.broker_url)

    def read() -> Snapshot:
        return collect(jobs, settings.batch_size, args.recent_jobs)

    if args.once:
        try:
            if not args.cloudwatch_namespace:
                sys.stdout.write(render(read()))
                return 0
            count = publish(_cloudwatch(), args.cloudwatch_namespace, read())
        except Exception as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        print(f"published {count} data points to CloudWatch namespace {args.cloudwatch_namespace}")
        return 0
    server = make_server(args.address, args.port, read, lambda: _ping(jobs))
    if args.cloudwatch_namespace:
        threading.Thread(
            target=_publish_forever,
            name="cloudwatch",
            daemon=True,
            args=(args.cloudwatch_namespace, args.interval, read),
        ).start()
    print(f"serving http://{args.address}:{server.server_address[1]}/metrics", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _log() -> Any:
    from posequeue.logs import get_logger

    return get_logger(__name__)


def _cloudwatch() -> Any:
    import boto3

    return boto3.client("cloudwatch")


def _ping(jobs: Jobs) -> bool:
    try:
        return bool(jobs.r.ping())
    except Exception:
        return False


def _publish_forever(namespace: str, interval: float, read: Callable[[], Snapshot]) -> None:
    client = _cloudwatch()
    while True:
        started = time.monotonic()
        try:
            publish(client, namespace, read())
        except Exception as exc:  # CloudWatch or Redis unreachable: try again next time
            _log().warning("metrics.cloudwatch_failed", error=repr(exc))
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
