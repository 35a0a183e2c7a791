"""The package's errors, in one tree, and the exit codes of its commands.

Catch the narrowest class that fits: ``ModelError`` for anything wrong with a model (its spec,
its files, loading it, what it outputs), ``StoreError`` for the store, ``PosequeueError`` for any
error posequeue raised on purpose. Each message names the thing, what is wrong and the fix.

Classes that derived from a built-in (``ValueError``, ``RuntimeError``, ``KeyError``) keep it as a
second base, so code written against the built-in still catches them; posequeue's own code
catches these classes instead. The classes are also importable from the modules that raise them
(``posequeue.producer.video.VideoError``, ...).

Imports nothing: every module, a client's included, may import it.
"""

from __future__ import annotations

# Exit codes of the ``posequeue`` commands (a supervisor reads REFUSED as "do not restart").
EXIT_OK = 0
EXIT_FAILED = 1  # the work was tried and failed (a job failed, results unreadable)
EXIT_REFUSED = 2  # refused before any work: bad input, settings, model or cores
EXIT_UNAVAILABLE = 3  # Redis cannot be used (unreachable, credentials, TLS); nothing changed
EXIT_RESTART = 75  # a threaded worker's child asking to be replaced (its watchdog), like a killed one


class PosequeueError(Exception):
    """Base of every error posequeue raises on purpose."""


# -- jobs and their inputs ------------------------------------------------------------------------
class JobNotFound(PosequeueError, KeyError):
    """No job with that id (never submitted, or expired)."""


class JobNotRunning(PosequeueError):
    """A task met a job that is no longer running (finished, failed, or its record is gone): its
    work is skipped (``posequeue.tasks.JobTask``)."""

    def __init__(self, status: str) -> None:
        super().__init__(f"job is {status}")
        self.status = status


class JobError(PosequeueError):
    """A job cannot go on; the message is the reason the job is failed with."""


class BatchError(JobError):
    """A batch that cannot be run: expired before a worker took it, unreadable, or killing its
    worker each time."""


class VideoError(JobError, ValueError):
    """The input cannot be used as a video; the message says what is wrong with which input."""


class SubmitError(PosequeueError, ValueError):
    """A submission refused before any job exists (bad input, unknown model, store down).

    ``reason`` says which, for callers that answer in kind (the HTTP API's status codes):
    ``batch_size``, ``unknown_model``, ``missing``, ``not_a_video``, ``too_large`` (over the
    producers' limits), ``people``, ``follow``, ``video_mode`` or ``store``."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class StoreError(PosequeueError, RuntimeError):
    """The store cannot be read or written; the message says which URI and why. ``lasting``:
    a refusal that waiting does not end (credentials or permissions), which fails the job at
    once instead of being waited out (``posequeue.policy``)."""

    def __init__(self, message: str, lasting: bool = False) -> None:
        super().__init__(message)
        self.lasting = lasting


class PayloadUnreachable(StoreError):
    """A Redis that holds batch payloads cannot be reached (a payload server restarting):
    retried as a store error is, then the job fails saying which setting to check."""


class ResultNotReady(PosequeueError, RuntimeError):
    """The job has no results (yet): it is queued, running or failed; the message says which."""


class AnalysisError(PosequeueError, ValueError):
    """Analysis parameters that cannot be used (or do not suit the video: a cutoff above its
    Nyquist frequency), or a document that is not a poses document; the message names the
    parameter, its value and the fix."""


# -- models -----------------------------------------------------------------------------------
class ModelError(JobError):
    """Something wrong with a model rather than with a batch: its name, spec, files, runtime or
    outputs. A job whose model fails is failed with the message."""


class UnknownModelError(ModelError, ValueError):
    """A model or stage name that the catalogue does not know."""


class SpecError(ModelError, ValueError):
    """A spec file that cannot be used; the message names the file, the field and the fix."""


class MissingModel(ModelError, RuntimeError):
    """The model files are neither cached nor fetchable; the message says how to provide them."""


class ModelLoadError(ModelError, RuntimeError):
    """A model its runtime cannot load; the message says why and what to do."""


class UnknownRuntime(ModelError, ValueError):
    """A runtime name no runtime answers to."""


class ModelOutputError(ModelError, ValueError):
    """A model's outputs do not match what its spec says (names, keypoint count)."""


# -- workers and fleets -----------------------------------------------------------------------
class CoreSpecError(PosequeueError, ValueError):
    """A ``--cores`` value that is not a list of core indices or ranges."""


class WorkerConfigError(PosequeueError, ValueError):
    """A worker role that cannot run as asked (threads with concurrency, a Neuron model without
    cores); the message says which options to give instead."""


class UnknownInstanceError(PosequeueError, ValueError):
    """An instance name that the catalogue does not know."""


class PlanError(PosequeueError, ValueError):
    """A layout or throughput figure that cannot be planned on the instance."""


class UpError(PosequeueError, ValueError):
    """A plan that cannot be run on this host."""


# -- model tools (convert, compile) -------------------------------------------------------------
class ConvertError(PosequeueError, RuntimeError):
    """A model that cannot be converted here; the message names the model and what to do."""


class CompileError(PosequeueError, ValueError):
    """A compile refused before tensorflow-neuron runs; the message names the thing and the fix."""


class SavedModelError(PosequeueError, ValueError):
    """A folder that is not a SavedModel posequeue can serve; the message says what is missing."""


class NeuronMissing(PosequeueError, RuntimeError):
    """tensorflow-neuron is not importable; everything up to the compile call was checked."""
