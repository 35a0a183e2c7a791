"""The package's error tree: one base, narrow kin, the old import paths kept."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from posequeue import errors

RAISED_IN = {
    "JobNotFound": "posequeue.jobs",
    "VideoError": "posequeue.producer.video",
    "SubmitError": "posequeue.producer.submit",
    "StoreError": "posequeue.store",
    "UnknownModelError": "posequeue.config.catalogue",
    "SpecError": "posequeue.config.specs",
    "MissingModel": "posequeue.worker.model_cache",
    "ModelLoadError": "posequeue.worker.runtimes",
    "CoreSpecError": "posequeue.worker.pinning",
    "UnknownInstanceError": "posequeue.fleet.instances",
    "PlanError": "posequeue.fleet.plan",
    "UpError": "posequeue.fleet.up",
    "CompileError": "posequeue.neuron.checks",
    "SavedModelError": "posequeue.neuron.savedmodel",
    "NeuronMissing": "posequeue.neuron.compile",
    "ConvertError": "posequeue.convert",
}


@pytest.mark.parametrize("name", sorted(RAISED_IN))
def test_each_error_is_a_posequeue_error_importable_where_it_is_raised(name: str) -> None:
    """Callers catch PosequeueError; code importing the class from its old module still works."""
    cls = getattr(errors, name)
    assert issubclass(cls, errors.PosequeueError)
    assert getattr(importlib.import_module(RAISED_IN[name]), name) is cls


def test_model_faults_share_one_base_and_a_plain_value_error_is_not_one() -> None:
    """A task catches ModelError for the model's faults, so an unrelated ValueError is not taken
    for one."""
    for cls in (
        errors.UnknownModelError,
        errors.SpecError,
        errors.MissingModel,
        errors.ModelLoadError,
        errors.UnknownRuntime,
        errors.ModelOutputError,
    ):
        assert issubclass(cls, errors.ModelError)
    assert not issubclass(ValueError, errors.ModelError)
    assert not issubclass(errors.StoreError, errors.JobError)  # retried, not a job's end


def test_job_failed_error_keeps_its_module_for_the_result_backend() -> None:
    """The result backend records the class's module; clients of older versions import it there."""
    from posequeue.jobs import JobFailedError

    assert JobFailedError.__module__ == "posequeue.jobs"
    assert issubclass(JobFailedError, errors.PosequeueError)


def test_exit_codes_are_defined_only_in_errors() -> None:
    """No module names its own exit code: a supervisor and a client read one table, errors.EXIT_*."""
    src = Path(errors.__file__).parent
    own = [
        f"{path.relative_to(src)}:{n}: {line.strip()}"
        for path in sorted(src.rglob("*.py"))
        if path.name != "errors.py" or path.parent != src
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.match(r"\s*\w*(EXIT|REFUSED|RESTART)\w*\s*(:\s*int\s*)?=\s*(\d+|EXIT_\w+)\s*(#|$)", line)
    ]
    assert not own, "exit codes defined outside posequeue/errors.py:\n" + "\n".join(own)
