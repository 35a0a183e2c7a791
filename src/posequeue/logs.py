"""Structured logs with structlog; task context (job id, batch index, model, cores) is bound per
task by signal handlers, not threaded through task bodies."""

from __future__ import annotations

import logging
import sys
from typing import TextIO, cast

import structlog
from celery import Task, signals


def configure(fmt: str = "console", level: int = logging.INFO) -> None:
    # The console renderer prints a logged exception's traceback itself; the JSON one needs it
    # turned into an ``exception`` field first, or ``log.exception`` keeps only exc_info=true.
    renderer: list[structlog.types.Processor] = (
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if fmt == "json"
        else [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # One write() per line (print() writes the text and its newline apart): the processes of a
        # worker share stderr, and their JSON lines must not interleave mid-line.
        logger_factory=structlog.WriteLoggerFactory(file=cast(TextIO, _Stderr())),
        cache_logger_on_first_use=True,
    )


class _Stderr:
    """The stderr of configure time (a Celery worker redirects sys.stderr to its own logger later,
    which must not wrap our lines), or today's sys.stderr once that one is closed (a command run
    in-process configured logging on a capture that has since been closed)."""

    def __init__(self) -> None:
        self.file = sys.stderr

    def _target(self) -> TextIO:
        return sys.stderr if self.file.closed else self.file

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)


_process: dict[str, object] = {}  # what every task of this worker process logs (its cores)


def bind_process(**values: object) -> None:
    """Add ``values`` to every task's log lines in this process and the ones it forks."""
    _process.update(values)


@signals.task_prerun.connect
def _bind_task_context(task_id: str, task: Task, args: tuple, **_: object) -> None:
    """Every log line of a task carries its job id (and batch index, cores) without the task
    body passing them around."""
    structlog.contextvars.clear_contextvars()
    ctx: dict[str, object] = {"task": task.name.rsplit(".", 1)[-1], "task_id": task_id}
    if args:
        ctx["job_id"] = args[0] if isinstance(args[0], str) else args[0].get("job_id")
    if len(args) > 1 and isinstance(args[1], int):
        ctx["batch"] = args[1]
    if len(args) > 2 and isinstance(args[2], str):
        ctx["stage"] = args[2]
    structlog.contextvars.bind_contextvars(**ctx, **_process)
