"""A worker's role is decided in one place (worker/launch.py): what `posequeue worker` runs, what
`posequeue plan` lays out and what `posequeue up` starts agree by construction."""

from __future__ import annotations

import os

import pytest

from posequeue.errors import CoreSpecError, UnknownModelError, WorkerConfigError
from posequeue.worker.launch import worker_role

pytestmark = pytest.mark.compat


def test_an_all_stage_worker_serves_ingest_and_every_stage_queue() -> None:
    """With no stage a worker serves the producers' queue, each model stage's and the analysis
    queue, prefork, unpinned, with a single-thread process per core of this host (a CPU
    model's default)."""
    role = worker_role("blazepose")
    cores = len(os.sched_getaffinity(0))
    assert role.queues == ("ingest", "pose.blazepose.detector", "pose.blazepose.landmarks", "analysis")
    assert role.stages == ("detector", "landmarks") and role.serves_ingest
    assert (role.name, role.pool, role.cores, role.env) == ("blazepose-all", "prefork", (), {})
    assert role.per_core and role.concurrency == cores
    assert role.command() == ["posequeue", "worker", "--model", "blazepose", "--stage", "all"]
    assert role.celery_argv("INFO") == [
        *("worker", "-Q", "ingest,pose.blazepose.detector,pose.blazepose.landmarks,analysis"),
        *("-n", "blazepose-all@%h", "-l", "INFO", "-P", "prefork", "-c", str(cores)),
        *("--without-mingle", "--without-gossip"),
    ]


def test_a_pinned_cpu_worker_runs_a_process_per_core_of_its_group_unless_told() -> None:
    """A CPU worker on a core group runs one process per core of the group; a pool asked for
    (--concurrency or --threads) and a producer keep one process."""
    assert worker_role("blazepose", "landmarks", "2-4").concurrency == 3
    assert not worker_role("blazepose", "landmarks", "2-4", concurrency=1).per_core
    assert not worker_role("blazepose", "landmarks", "2-4", threads=2).per_core
    assert (worker_role("blazepose", "ingest").per_core, worker_role("blazepose", "ingest").concurrency) == (
        False,
        1,
    )


def test_an_analysis_worker_serves_the_analysis_queue_only() -> None:
    """--stage analysis: the analysis queue, no model stage (so no model files, no runtime)."""
    role = worker_role("blazepose", "analysis")
    assert (role.queues, role.stages, role.serves_ingest) == (("analysis",), (), False)
    assert role.name == "blazepose-analysis"


def test_a_stage_worker_on_cores_is_named_after_them() -> None:
    """A pinned stage worker serves its stage's queue only; its name and command carry the cores."""
    role = worker_role("blazepose", "landmarks", "2-3", concurrency=2)
    assert role.queues == ("pose.blazepose.landmarks",) and not role.serves_ingest
    assert role.served == frozenset({("blazepose", "landmarks")})
    assert (role.name, role.cores, role.cores_spec) == ("blazepose-landmarks-c2-3", (2, 3), "2-3")
    assert role.command()[-2:] == ["--cores", "2-3"]
    assert role.celery_argv()[-6:-2] == ["-P", "prefork", "-c", "2"]
    assert worker_role("blazepose", "landmarks", [2, 3]) == worker_role("blazepose", "landmarks", "2-3")


def test_a_producer_serves_ingest_and_loads_no_model() -> None:
    """A producer role runs no model stage."""
    role = worker_role("blazepose", "ingest")
    assert (role.queues, role.stages, role.served, role.name) == (
        ("ingest",),
        (),
        frozenset(),
        "blazepose-ingest",
    )


def test_a_neuron_model_gets_task_threads_and_its_runtime_environment(anymotion: str) -> None:
    """A Neuron model's worker defaults to two task threads and confines the runtime to its cores
    through the environment (generation 1 and 2)."""
    role = worker_role(anymotion, "pose", "0-1")
    assert (role.threads, role.pool, role.neuron) == (2, "threads", True)
    assert role.env == {"NEURON_RT_VISIBLE_CORES": "0-1", "NEURON_PROCESS_TAG": "anymotion-pose-c0-1"}
    old = worker_role(anymotion, "pose", "0-1", neuron_runtime=1)
    assert old.env == {"NEURONCORE_GROUP_SIZES": "2", "NEURON_PROCESS_TAG": "anymotion-pose-c0-1"}
    assert worker_role(anymotion, "pose", "0", concurrency=2).threads == 1


@pytest.mark.parametrize(
    "kwargs,error,words",
    [
        ({"model": "nope"}, UnknownModelError, "nope"),
        ({"model": "blazepose", "stage": "pose"}, UnknownModelError, "detector"),
        (
            {"model": "blazepose", "threads": 2, "concurrency": 2},
            WorkerConfigError,
            "--threads 1 --concurrency N",
        ),
        ({"model": "blazepose", "threads": 0}, WorkerConfigError, "--threads 0"),
        ({"model": "blazepose", "cores": "1-0"}, CoreSpecError, "is not a core list"),
    ],
    ids=["unknown-model", "unknown-stage", "threads-and-processes", "no-threads", "bad-cores"],
)
def test_a_role_that_cannot_run_is_refused_with_the_fix(kwargs, error, words) -> None:
    """Each refusal names the value and what to give instead."""
    with pytest.raises(error, match=words):
        worker_role(**kwargs)


def test_a_neuron_model_without_cores_is_refused(anymotion: str) -> None:
    """The Neuron runtime would reserve every core of the host: the role asks for --cores."""
    with pytest.raises(WorkerConfigError, match="give --cores"):
        worker_role(anymotion, "pose")


def test_plan_and_up_use_the_role() -> None:
    """A planned worker's name, queue, cores, environment and command are its role's, and `up`
    starts that command."""
    from posequeue.fleet.plan import plan
    from posequeue.fleet.up import worker_programs

    p = plan("inf1.xlarge", {"detector": 2, "landmarks": 2, "ingest": 0})
    for w in p.workers:
        role = worker_role(w.model, w.stage, w.cores)
        assert (w.name, w.queue, w.cores_spec, w.command()) == (
            role.name,
            role.queues[0],
            role.cores_spec,
            role.command(),
        )
        if w.cores:
            assert w.env == role.neuron_env()
    written = p.to_dict()
    for w in written["workers"]:
        w["devices"] = []  # this host has no /dev/neuron*
    programs = worker_programs(written)
    assert [list(prog.argv[3:]) for prog in programs] == [w.command()[1:] for w in p.workers]
