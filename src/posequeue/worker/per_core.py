"""One single-thread model process per core: the default layout of a CPU worker.

``posequeue worker`` on a CPU runtime, given neither ``--threads`` nor ``--concurrency``, runs
Celery's prefork pool with one child per core it may use (``worker/launch.py`` decides), and
each child pins itself to its own core before its models load (so the runtime takes one
thread). Measured on 2 cores
(docs/performance.md): two single-thread processes beat one process whose runtime spreads each
call over both cores, since an XNNPACK call on two threads waits for the slower one and the
host work (decode, Redis, letterbox, crops) of one child fills the time the other's model leaves.
Ingest tasks run in the same children: a segment takes its core for a fraction of a second.

The pool index (billiard's, stable across a child's replacement) picks the core, so a child
that dies comes back on the core it had.
"""

from __future__ import annotations

import os

from celery import signals

from posequeue.logs import bind_process
from posequeue.worker.pinning import format_cores, parse_cores, pin_cpu

CORES_ENV = "POSEQUEUE_CHILD_CORES"  # the cores the pool's children take, one each, by index


def assign(cores: list[int]) -> None:
    """Tell the pool children which cores to take (read by each child as it starts)."""
    os.environ[CORES_ENV] = format_cores(cores)


@signals.worker_process_init.connect
def _pin_child(**_: object) -> None:
    """Connected before ``worker.tasks`` is imported, so it runs before the models preload."""
    spec = os.environ.get(CORES_ENV)
    if not spec:
        return
    from billiard.process import current_process

    cores = parse_cores(spec)
    core = cores[getattr(current_process(), "index", 0) % len(cores)]
    pin_cpu([core])
    bind_process(cores=str(core))
