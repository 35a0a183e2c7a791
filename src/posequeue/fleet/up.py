"""``posequeue up``: start and supervise one host's workers, as a plan lays them out.

Each worker of the plan is one ``posequeue worker --model M --stage S --cores A-B`` process with
the plan's environment (``NEURON_RT_VISIBLE_CORES``, ``NEURON_PROCESS_TAG`` on Inferentia). The
:class:`Supervisor` restarts a worker that exits, after an exponential backoff that is reset once a
run has lasted long enough; on SIGTERM or SIGINT it forwards SIGTERM to every worker (Celery's
warm shutdown finishes the batch in hand; with acks_late the batches not started go back to the
queue), waits up to a timeout and then kills what is left. All workers' output goes to stdout as
one stream, each line prefixed with the worker's name.

Each worker runs in a process group of its own, so a terminal's Ctrl-C reaches ``up`` only (which
then stops the workers in order), and killing the group also kills a Celery worker's pool
processes. If ``up`` itself is killed with SIGKILL its workers are left running.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from posequeue.errors import EXIT_REFUSED, UpError
from posequeue.fleet.render import STOP_GRACE_SECONDS

SELF = "up"  # the prefix of the supervisor's own log lines


@dataclass(frozen=True)
class Program:
    """A process to keep running: its name (the log prefix), command line and extra environment."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Backoff:
    """Delay before restart number ``n`` of a crashing process: ``initial * factor**(n-1)``, at
    most ``cap``. A run that lasted ``stable`` seconds or more counts as healthy: the next crash
    restarts after ``initial`` again."""

    initial: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    stable: float = 60.0

    def delay(self, failures: int) -> float:
        return min(self.cap, self.initial * self.factor ** max(0, failures - 1))


@dataclass
class _Child:
    program: Program
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0  # crashes in a row, each after a run shorter than Backoff.stable
    restarts: int = 0
    restart_at: float | None = None
    readers: list[threading.Thread] = field(default_factory=list)


class Supervisor:
    """Run ``programs`` until asked to stop; restart each one that exits, with backoff.

    Parameters:
        programs: the processes to run (names must be unique).
        backoff: the restart delays.
        stop_timeout: seconds the processes get to exit after SIGTERM before SIGKILL.
        out: where the merged, name-prefixed output goes.
    """

    def __init__(
        self,
        programs: Sequence[Program],
        *,
        backoff: Backoff | None = None,
        stop_timeout: float = STOP_GRACE_SECONDS,
        out: IO[str] | None = None,
        poll: float = 0.1,
    ) -> None:
        names = [p.name for p in programs]
        if not programs or len(set(names)) != len(names):
            raise ValueError(f"programs need unique names, got {names}")
        self.children = [_Child(p) for p in programs]
        self.refused: list[str] = []  # programs that exited with EXIT_REFUSED (bad configuration)
        self.backoff = backoff or Backoff()
        self.stop_timeout = stop_timeout
        self.out = out or sys.stdout
        self.poll = poll
        self._width = max(len(n) for n in [*names, SELF])
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._kill = threading.Event()  # a second signal: do not wait any longer
        self._signals: list[str] = []

    # -- public -----------------------------------------------------------------------------
    def run(self, install_signals: bool = True) -> int:
        """Start everything, supervise until :meth:`stop`, then shut down. Returns 0 when every
        process exited within the timeout, 1 when some had to be killed, 2 when a worker refused
        its configuration (it is not restarted: a retry cannot help)."""
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
        try:
            for child in self.children:
                self._start(child)
            while not self._stop.wait(self.poll):
                self.step()
        finally:  # also on an error of our own: no worker outlives the supervisor
            code = self._shutdown()
        return EXIT_REFUSED if self.refused else code

    def stop(self) -> None:
        """Ask :meth:`run` to shut down (a second call stops waiting and kills)."""
        if self._stop.is_set():
            self._kill.set()
        self._stop.set()

    def pids(self) -> dict[str, int | None]:
        """The running process of each program (None while it waits for a restart)."""
        return {
            c.program.name: c.proc.pid if c.proc and c.proc.poll() is None else None for c in self.children
        }

    def step(self) -> None:
        """Notice exits and schedule restarts; start those whose delay has passed."""
        now = time.monotonic()
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:
                self._exited(child, now)
            if child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self._start(child)
        if self.refused:  # a worker refused its configuration: restarting cannot help
            self.stop()

    # -- internals --------------------------------------------------------------------------
    def log(self, name: str, line: str) -> None:
        with self._lock:
            self.out.write(f"{name.ljust(self._width)} | {line}\n")
            self.out.flush()

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Only flags here: logging would take the output lock, which the interrupted main
        # thread may hold.
        self._signals.append(signal.Signals(signum).name)
        self.stop()

    def _start(self, child: _Child) -> None:
        program = child.program
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **program.env}
        child.proc = subprocess.Popen(
            program.argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        child.started, child.restart_at = time.monotonic(), None
        again = f", restart {child.restarts}" if child.restarts else ""
        self.log(SELF, f"started {program.name} (pid {child.proc.pid}{again})")
        reader = threading.Thread(target=self._pump, args=(program.name, child.proc.stdout), daemon=True)
        reader.start()
        child.readers = [r for r in child.readers if r.is_alive()] + [reader]

    def _pump(self, name: str, stream: IO[bytes] | None) -> None:
        assert stream is not None
        with stream:
            for raw in stream:
                self.log(name, raw.decode("utf-8", "replace").rstrip("\r\n"))

    def _exited(self, child: _Child, now: float) -> None:
        assert child.proc is not None
        code, ran = child.proc.returncode, now - child.started
        _kill_group(child.proc.pid)  # pool processes orphaned by a killed main process
        child.proc = None
        if code == EXIT_REFUSED and not self._stop.is_set():
            self.refused.append(child.program.name)
            self.log(
                SELF,
                f"{child.program.name} refused its configuration (exit {code}; see its "
                "log above): not restarting it, stopping the others",
            )
            return
        child.failures = 1 if ran >= self.backoff.stable else child.failures + 1
        delay = self.backoff.delay(child.failures)
        child.restart_at = now + delay
        self.log(
            SELF,
            f"{child.program.name} exited ({_describe(code)}) after {ran:.1f} s; restarting in {delay:g} s",
        )

    def _shutdown(self) -> int:
        running = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        if self._signals:
            self.log(SELF, f"{self._signals[0]} received")
        self.log(
            SELF, f"stopping {len(running)} workers: SIGTERM, then SIGKILL after {self.stop_timeout:g} s"
        )
        for child in running:
            assert child.proc is not None
            _signal(child.proc.pid, signal.SIGTERM)  # the main process; Celery stops its pool
        deadline = time.monotonic() + self.stop_timeout
        while not all(c.proc is None or c.proc.poll() is not None for c in running):
            if self._kill.is_set() or time.monotonic() >= deadline:
                break
            time.sleep(self.poll)
        if self._kill.is_set():
            self.log(SELF, f"{self._signals[-1] if self._signals else 'stop'} again: not waiting")
        killed = 0
        for child in self.children:
            if child.proc is None:
                continue
            if child.proc.poll() is None:
                killed += 1
                self.log(SELF, f"{child.program.name} did not stop in time: SIGKILL")
            _kill_group(child.proc.pid)
            code = child.proc.wait()
            self.log(SELF, f"{child.program.name} stopped ({_describe(code)})")
        for child in self.children:
            for reader in child.readers:
                reader.join(timeout=2)
        self.log(SELF, "all workers stopped" + (f"; {killed} killed" if killed else ""))
        return 1 if killed else 0


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


# -- from a plan to programs ------------------------------------------------------------------


def worker_programs(plan: dict[str, Any], model: str | None = None) -> list[Program]:
    """Programs for the workers of a plan in its JSON form (``posequeue plan --format json``).

    Each worker serves its own ``model``. Plans written before workers carried one name it in
    their queues (``pose.<model>.<stage>``); a worker that says neither (a producer of such a
    plan) gets ``model`` or, when None, the first model the plan's queues name, else blazepose.
    Raises :class:`UpError` for a plan this host cannot run, or one whose workers name a model
    other than ``model``.
    """
    from posequeue.config.catalogue import get_model
    from posequeue.errors import ModelError, WorkerConfigError
    from posequeue.fleet.plan import DEFAULT_MODEL
    from posequeue.worker.launch import ALL, worker_role

    workers = plan.get("workers")
    if not isinstance(workers, list) or not workers:
        raise UpError("the plan has no workers; write one with posequeue plan ... --format json")
    named = [m for m in (w.get("model") or _queue_model(w.get("queue")) for w in workers) if m]
    fallback = model or (named[0] if named else DEFAULT_MODEL)
    programs = []
    for w in workers:
        stage = w["stage"]
        own = w.get("model") or _queue_model(w.get("queue")) or fallback
        if model is not None and own != model:
            raise UpError(
                f"worker {w['name']} serves model {own}, not --model {model}; the plan "
                "names each worker's model, so leave --model out"
            )
        try:
            if stage == ALL:  # a planned worker serves one queue: refused, naming the stages
                get_model(own).stage(stage)
            role = worker_role(own, stage, w.get("cores") or ())
        except (ModelError, WorkerConfigError) as exc:
            raise UpError(f"worker {w['name']}: {exc}") from None
        queue = role.queues[0]
        if w.get("queue", queue) != queue:
            raise UpError(
                f"worker {w['name']} of model {own} serves queue {w['queue']}, not "
                f"{queue}; write the plan again with posequeue plan"
            )
        missing = [d for d in w.get("devices", []) if not Path(d).exists()]
        if missing:
            raise UpError(
                f"worker {w['name']} needs {', '.join(missing)}, which this host does "
                f"not have: the plan is for {plan.get('instance', 'another host')}"
            )
        argv = [sys.executable, "-m", "posequeue.cli", *role.command()[1:]]
        programs.append(Program(w["name"], tuple(argv), dict(w.get("env", {}))))
    return programs


def _queue_model(queue: Any) -> str | None:
    """The model a stage queue ``pose.<model>.<stage>`` names (model names hold no dot)."""
    parts = str(queue or "").split(".")
    return parts[1] if len(parts) == 3 and parts[0] == "pose" else None


# -- the command ------------------------------------------------------------------------------
def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Add ``up`` to a parser's subcommands (it sets ``run``)."""
    p = subparsers.add_parser(
        "up",
        help="start and supervise a plan's workers on this host",
        description="Run one `posequeue worker` per worker of a plan (a file written by "
        "`posequeue plan --format json`, or INSTANCE --per-chip as `posequeue plan` takes them), "
        "restart crashed workers with backoff, merge their logs on stdout, and on SIGTERM or "
        "SIGINT stop them with Celery's warm shutdown.",
    )
    p.add_argument("instance", nargs="?", metavar="INSTANCE", help="e.g. cpu or inf1.xlarge")
    p.add_argument(
        "--per-chip",
        metavar="[MODEL:]STAGE=CORES[,...]",
        help="with INSTANCE: the layout of one chip, as for `posequeue plan`",
    )
    p.add_argument("--plan", metavar="FILE.json", help="a plan from `posequeue plan --format json`")
    p.add_argument(
        "--model",
        help="with --per-chip: the model of bare STAGE keys (default "
        "blazepose); with --plan: the model of workers the file names none for "
        "(default: the first its queues name)",
    )
    p.add_argument(
        "--stop-timeout",
        type=float,
        default=STOP_GRACE_SECONDS,
        metavar="SECONDS",
        help=f"time the workers get to finish after SIGTERM before SIGKILL (default {STOP_GRACE_SECONDS})",
    )
    p.add_argument(
        "--backoff-cap",
        type=float,
        default=Backoff.cap,
        metavar="SECONDS",
        help=f"longest wait before restarting a crashing worker (default {Backoff.cap:g})",
    )
    p.set_defaults(run=cmd_up)


def load_plan(args: argparse.Namespace) -> dict[str, Any]:
    """The plan in its JSON form, from ``--plan FILE`` or from INSTANCE and ``--per-chip``."""
    from posequeue.fleet.instances import UnknownInstanceError
    from posequeue.fleet.plan import DEFAULT_MODEL, PlanError, parse_layout, plan

    if args.plan:
        if args.instance or args.per_chip:
            raise UpError("give either --plan FILE or INSTANCE --per-chip LAYOUT, not both")
        try:
            data = json.loads(Path(args.plan).read_text())
        except (OSError, ValueError) as exc:
            raise UpError(f"cannot read the plan {args.plan}: {exc}") from None
        if not isinstance(data, dict):
            raise UpError(f"{args.plan} is not a plan (an object with instance and workers)")
        return data
    if not (args.instance and args.per_chip):
        raise UpError(
            "give --plan FILE.json, or INSTANCE --per-chip LAYOUT (e.g. cpu --per-chip ingest=0,landmarks=1)"
        )
    try:
        return plan(args.instance, parse_layout(args.per_chip), model=args.model or DEFAULT_MODEL).to_dict()
    except (PlanError, UnknownInstanceError) as exc:
        raise UpError(str(exc)) from None


def cmd_up(args: argparse.Namespace) -> int:
    try:
        # With INSTANCE --per-chip, --model has named the bare stages' model in the plan.
        programs = worker_programs(load_plan(args), args.model if args.plan else None)
    except UpError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    backoff = Backoff(cap=args.backoff_cap)
    return Supervisor(programs, backoff=backoff, stop_timeout=args.stop_timeout).run()
