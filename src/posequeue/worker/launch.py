"""What a worker is, decided in one place: its role (model, stages, queues, pool, cores,
environment, name), built by ``worker_role`` and used by ``posequeue worker`` (``run``),
``posequeue plan`` (each planned worker) and ``posequeue up`` (each supervised command).

Importing this module imports no runtime: the planner and the supervisor use it on hosts
without one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from posequeue.config import queues
from posequeue.config.catalogue import get_model
from posequeue.errors import WorkerConfigError
from posequeue.worker.pinning import format_cores, neuron_env, parse_cores, usable_cores

ALL = "all"  # the stage of a worker that serves ingest and every model stage (one host)
INGEST = queues.INGEST  # the stage of a producer: decode and batch videos, finalise jobs
ANALYSIS = queues.ANALYSIS  # the stage of a done job's motion analysis (any CPU host)


@dataclass(frozen=True)
class WorkerRole:
    """One worker process: the model and stages it serves, its queues, its pool, the cores it
    owns and the name it goes by (``{model}-{stage}``, ``-c{cores}`` when pinned)."""

    model: str
    stage: str  # "all", "ingest", "analysis", or a stage of the model
    stages: tuple[str, ...]  # the model stages whose tasks it runs (none for a producer)
    queues: tuple[str, ...]
    cores: tuple[int, ...] = ()  # the core group it claims; () for an unpinned worker
    threads: int = 1  # task threads sharing one process's models (1: prefork processes)
    concurrency: int = 1  # prefork pool processes (with threads == 1)
    neuron: bool = False  # its stages run on the Neuron runtime, confined by its environment
    neuron_runtime: int = 2  # the Neuron runtime generation (2: libnrt, 1: neuron-rtd)
    per_core: bool = False  # each pool process pins itself to one of its cores (worker/per_core.py)

    @property
    def cores_spec(self) -> str:
        """``"0-1"`` for a group, ``"3"`` for one core, ``""`` for an unpinned worker."""
        return format_cores(list(self.cores)) if self.cores else ""

    @property
    def name(self) -> str:
        base = f"{self.model}-{self.stage}"
        return f"{base}-c{self.cores_spec}" if self.cores else base

    @property
    def pool(self) -> str:
        return "prefork" if self.threads == 1 else "threads"

    @property
    def serves_ingest(self) -> bool:
        return INGEST in self.queues

    @property
    def served(self) -> frozenset[tuple[str, str]]:
        """The (model, stage) pairs whose models its task process loads."""
        return frozenset((self.model, s) for s in self.stages)

    def neuron_env(self) -> dict[str, str]:
        """The environment that confines the Neuron runtime to the role's cores (for any role
        on a Neuron host: ``posequeue plan`` gives it to every pinned worker there)."""
        return neuron_env(list(self.cores), self.neuron_runtime, self.name)

    @property
    def env(self) -> dict[str, str]:
        """Environment the worker process needs: the Neuron runtime's, for a pinned Neuron
        model. It must be environment: the runtime library reads it when it loads."""
        return self.neuron_env() if self.neuron and self.cores else {}

    def command(self) -> list[str]:
        """The ``posequeue worker`` command line that takes this role."""
        args = ["posequeue", "worker", "--model", self.model, "--stage", self.stage]
        return args + (["--cores", self.cores_spec] if self.cores else [])

    def celery_argv(self, loglevel: str = "INFO") -> list[str]:
        """``celery worker`` arguments: its queues, node name, pool and pool size. Without
        mingle (a second at every start asking the other workers for revoked task ids and
        clocks: posequeue revokes nothing, a cancel goes through the job record) and without
        gossip (worker-to-worker events nothing here reads; Flower reads task events, which
        stay on). Gossip also failed to restart after a broker loss in Celery 5.7."""
        size = self.concurrency if self.threads == 1 else self.threads
        return [
            "worker",
            *("-Q", ",".join(self.queues), "-n", f"{self.name}@%h", "-l", loglevel),
            *("-P", self.pool, "-c", str(size)),
            *("--without-mingle", "--without-gossip"),
        ]


def worker_role(
    model: str,
    stage: str = ALL,
    cores: str | Sequence[int] | None = None,
    *,
    threads: int | None = None,
    concurrency: int | None = None,
    neuron_runtime: int = 2,
) -> WorkerRole:
    """The role of a worker serving ``stage`` of ``model`` on ``cores`` (a ``--cores`` text or
    indices).

    ``threads`` None picks the default: 2 for a Neuron model served by one process (its calls
    leave the CPU free for host work), else 1 (Celery's prefork pool). With ``threads`` and
    ``concurrency`` both None, a CPU model's worker runs one single-thread prefork process
    pinned to each of its cores (all this host's when unpinned): the fastest layout measured on
    CPU (docs/performance.md); else ``concurrency`` defaults to 1.

    Raises:
        UnknownModelError: an unknown model, or a stage it does not have (the message names
            its stages).
        WorkerConfigError: threads with several processes, or a Neuron model without cores.
        CoreSpecError: ``cores`` is not a core list.
    """
    spec = get_model(model)
    if stage == ALL:
        stages = tuple(s.name for s in spec.stages)
        serve = [INGEST, *queues.model_queues(spec), ANALYSIS]
    elif stage in (INGEST, ANALYSIS):
        serve, stages = [stage], ()
    else:
        spec.stage(stage)  # names the stages if this one does not exist
        serve, stages = [queues.stage_queue(spec.name, stage)], (stage,)
    neuron = spec.runtime == "neuron" and bool(stages)
    per_core = bool(stages) and not neuron and threads is None and concurrency is None
    concurrency = concurrency or 1
    if threads is None:  # an accelerator's model leaves the CPU free: overlap host work with it
        threads = 2 if neuron and concurrency == 1 else 1
    if threads < 1 or (threads > 1 and concurrency != 1):
        raise WorkerConfigError(
            f"--threads {threads} with --concurrency {concurrency}: give --threads N "
            "(N >= 1 task threads in one process sharing its models) or --threads 1 "
            "--concurrency N (N prefork processes, a model each)"
        )
    if neuron and not cores:
        raise WorkerConfigError(
            f"{spec.name} runs on the Neuron runtime, which reserves every NeuronCore "
            "of the host unless told otherwise: give --cores (e.g. --cores 0-1; `posequeue "
            "plan` lays a host out)"
        )
    group = tuple(parse_cores(cores) if isinstance(cores, str) else cores or ())
    if per_core:
        concurrency = len(group or usable_cores())
    return WorkerRole(
        spec.name, stage, stages, tuple(serve), group, threads, concurrency, neuron, neuron_runtime, per_core
    )


def run(role: WorkerRole, loglevel: str = "INFO") -> int:
    """Be the worker ``role`` describes, in this process, until it is stopped: claim and pin its
    cores, fetch its model files, register the tasks its queues need, then run Celery's worker
    (prefork, or task threads under a supervisor: ``worker/threaded.py``)."""
    from posequeue.config.settings import get_settings
    from posequeue.logs import bind_process
    from posequeue.worker.pinning import claim_cores, pin_cpu

    settings = get_settings()
    if role.cores:
        claim_cores(list(role.cores), "neuron" if role.neuron else "cpu", role.name, settings.lock_dir)
        # The Neuron runtime reads its environment when it loads, in the process that runs the
        # tasks: os.environ is what reaches it there. CPU affinity is left to the OS.
        os.environ.update(role.env)
        if not role.neuron:
            pin_cpu(list(role.cores))  # before the pool forks: children inherit the affinity
        bind_process(cores=role.cores_spec)
    if role.stages:
        from posequeue.worker.model_cache import blazepose_dir

        blazepose_dir(settings.cache_dir, settings.model_dir)  # fetch in the parent; load in the child
    if role.serves_ingest:  # producers need PyAV; model-stage hosts do not
        import posequeue.producer.finalize  # noqa: F401  (registers tasks)
        import posequeue.producer.ingest  # noqa: F401
        import posequeue.producer.watchdog  # noqa: F401  (its sweeper starts when the worker is ready)
    if role.per_core:  # before worker.tasks: a pool child pins itself before its models preload
        from posequeue.worker import per_core

        per_core.assign(list(role.cores) or usable_cores())
    if ANALYSIS in role.queues:
        import posequeue.analysis.task  # noqa: F401  (scipy, matplotlib and PyAV load when it runs)
    if role.stages:
        import posequeue.worker.stats  # noqa: F401  (per-worker frames/s for `posequeue metrics`)
        from posequeue.worker import tasks

        # The task processes are forked from this one (prefork's pool, or the threaded worker's
        # supervisor) and inherit what it serves.
        tasks.serve(role.served)
    from posequeue.config.celery_app import app
    from posequeue.worker import reconnect

    reconnect.install(app)  # a broker restart: reconnect, put back what the lost connection held
    if role.threads == 1:
        app.worker_main(role.celery_argv(loglevel))
        return 0
    from posequeue.worker import threaded

    def forked() -> None:  # in the forked worker process: the models load here, never in the parent
        from posequeue.jobs import get_jobs

        threaded.Tracker(get_jobs().r, settings.task_time_limit, settings.visibility_timeout).connect()
        if role.stages:
            from posequeue.worker.tasks import preload

            preload()
        app.worker_main(role.celery_argv(loglevel))

    return threaded.supervise(app, forked)
