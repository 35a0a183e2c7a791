"""``posequeue up``: the Supervisor restarts crashed processes with backoff and stops them in order
(tested with small Python programs, no Celery), plans become worker command lines, and one
integration test runs a CPU plan's real workers through a job, a SIGKILL and a SIGTERM."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, SAMPLE, cli, posequeue, user_spec

from posequeue.fleet.plan import plan
from posequeue.fleet.up import Backoff, Program, Supervisor, UpError, worker_programs


class Out(io.StringIO):
    """A thread-safe text sink the Supervisor writes its merged log to."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            return super().write(text)

    @property
    def text(self) -> str:
        with self._lock:
            return self.getvalue()


def found(pattern: str, text: str) -> int:
    """The integer the first group of ``pattern`` matches in ``text``."""
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in:\n{text}"
    return int(match[1])


def py(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def wait_for(check: Callable[[], object], timeout: float = 10, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True


class Running:
    """A Supervisor run in a thread (no signal handlers: those need the main thread)."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.sup.run(install_signals=False)

    def stop(self, timeout: float = 20) -> int | None:
        self.sup.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the supervisor did not return"
        return self.code


@pytest.fixture
def supervise() -> Iterator[Callable[..., tuple[Running, Out]]]:
    started: list[Running] = []

    def start(
        *programs: Program, backoff: Backoff | None = None, stop_timeout: float = 5
    ) -> tuple[Running, Out]:
        out = Out()
        running = Running(
            Supervisor(programs, out=out, poll=0.02, backoff=backoff, stop_timeout=stop_timeout)
        )
        started.append(running)
        return running, out

    yield start
    for running in started:
        if running.thread.is_alive():
            running.sup.stop()
            running.sup.stop()
            running.thread.join(10)


# -- backoff ---------------------------------------------------------------------------------
def test_backoff_doubles_up_to_the_cap() -> None:
    """Each crash in a row doubles the delay until the cap."""
    b = Backoff(initial=1, factor=2, cap=5)
    assert [b.delay(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]


def test_crashing_program_restarts_with_growing_delays(supervise) -> None:
    """A program that keeps crashing is restarted after 0.1, 0.2, 0.4, 0.4 s (capped), and its
    output reaches the merged log prefixed with its name."""
    # Given a program that prints a line and exits 3 at once
    running, out = supervise(
        Program("crash", py("print('hello'); raise SystemExit(3)")),
        backoff=Backoff(initial=0.1, factor=2, cap=0.4, stable=30),
    )
    # When it has crashed four times
    wait_for(lambda: out.text.count("restarting in") >= 4, what="four restarts")
    running.stop()
    # Then the delays grew and stopped at the cap, and each run's output was prefixed
    delays = re.findall(r"crash exited \(exit code 3\) after [\d.]+ s; restarting in ([\d.]+) s", out.text)
    assert delays[:4] == ["0.1", "0.2", "0.4", "0.4"]
    assert "crash | hello\n" in out.text
    assert re.search(r"started crash \(pid \d+, restart 3\)", out.text)


def test_backoff_resets_after_a_stable_run(supervise) -> None:
    """A crash after a run longer than ``stable`` restarts after the initial delay again."""
    running, out = supervise(
        Program("flaky", py("import time; time.sleep(0.3); raise SystemExit(1)")),
        backoff=Backoff(initial=0.05, factor=10, cap=5, stable=0.2),
    )
    wait_for(lambda: out.text.count("restarting in") >= 3, what="three restarts")
    running.stop()
    delays = re.findall(r"restarting in ([\d.]+) s", out.text)
    assert delays[:3] == ["0.05", "0.05", "0.05"]


def test_a_killed_process_is_restarted(supervise) -> None:
    """SIGKILL of a supervised process is reported by signal name and the process comes back."""
    running, out = supervise(
        Program("sleeper", py("import time; time.sleep(60)")), backoff=Backoff(initial=0.05)
    )
    wait_for(lambda: running.sup.pids()["sleeper"], what="start")
    first = running.sup.pids()["sleeper"]
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: running.sup.pids()["sleeper"] not in (None, first), what="restart")
    assert "sleeper exited (killed by SIGKILL)" in out.text
    assert running.stop() == 0


# -- shutdown --------------------------------------------------------------------------------
GRACEFUL = """
import signal, sys, time
def bye(*_):
    print("finishing the batch in hand", flush=True)
    time.sleep(0.3)
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
print("ready", flush=True)
time.sleep(60)
"""

STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print("grandchild", child.pid, flush=True)
time.sleep(60)
"""


def test_stop_forwards_sigterm_and_waits(supervise) -> None:
    """On stop every process gets SIGTERM and may finish its work; the run returns 0."""
    running, out = supervise(Program("a", py(GRACEFUL)), Program("b", py(GRACEFUL)))
    wait_for(lambda: out.text.count("| ready") == 2, what="both ready")
    pids = running.sup.pids()
    assert running.stop() == 0
    assert out.text.count("finishing the batch in hand") == 2
    assert "a stopped (exit code 0)" in out.text and "b stopped (exit code 0)" in out.text
    assert not any(alive(pid) for pid in pids.values() if pid)


def test_stop_kills_what_outlives_the_timeout(supervise) -> None:
    """A process that ignores SIGTERM is killed after the timeout, with the processes it started;
    the run returns 1."""
    running, out = supervise(Program("stubborn", py(STUBBORN)), stop_timeout=0.5)
    wait_for(lambda: "grandchild" in out.text, what="the grandchild")
    grandchild = found(r"grandchild (\d+)", out.text)
    pid = running.sup.pids()["stubborn"]
    began = time.monotonic()
    assert running.stop() == 1
    assert time.monotonic() - began < 5
    assert "stubborn did not stop in time: SIGKILL" in out.text
    assert "stubborn stopped (killed by SIGKILL)" in out.text
    assert pid and not alive(pid)
    wait_for(lambda: not alive(grandchild), timeout=5, what="the grandchild to die")


def test_a_crash_takes_its_orphans_with_it(supervise) -> None:
    """When a process dies, what it started (a Celery worker's pool) is killed before the restart,
    so the new process finds its cores free."""
    running, out = supervise(Program("stubborn", py(STUBBORN)), backoff=Backoff(initial=5))
    wait_for(lambda: "grandchild" in out.text, what="the grandchild")
    grandchild = found(r"grandchild (\d+)", out.text)
    os.kill(running.sup.pids()["stubborn"] or 0, signal.SIGKILL)
    wait_for(lambda: not alive(grandchild), timeout=5, what="the orphan to be killed")
    running.stop()


def test_sigterm_to_the_supervisor_stops_everything(tmp_path: Path) -> None:
    """SIGTERM to a process running a Supervisor (the real signal path) stops its programs and
    exits 0."""
    script = tmp_path / "sup.py"
    script.write_text(
        "import sys\n"
        "from posequeue.fleet.up import Program, Supervisor\n"
        f"p = Program('w', ({sys.executable!r}, '-c', {GRACEFUL!r}))\n"
        "sys.exit(Supervisor([p], stop_timeout=10, poll=0.02).run())\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "| ready" in line:
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.stdout.read()
    assert proc.wait(timeout=10) == 0
    assert "SIGTERM received" in rest and "finishing the batch in hand" in rest
    assert "w stopped (exit code 0)" in rest


# -- plans -----------------------------------------------------------------------------------
def test_cpu_plan_becomes_pinned_worker_commands() -> None:
    """Each worker of a cpu plan runs `posequeue worker` with its stage and CPU cores."""
    host = plan("cpu", {"ingest": 0, "landmarks": 1}).to_dict()
    ingest, landmarks = worker_programs(host)
    assert ingest.argv[1:] == ("-m", "posequeue.cli", "worker", "--model", "blazepose", "--stage", "ingest")
    assert landmarks.argv[-4:] == ("--stage", "landmarks", "--cores", str(host["workers"][1]["cores"][0]))
    assert landmarks.env == {}


def test_neuron_plan_carries_its_pinning_env(tmp_path: Path) -> None:
    """A Neuron plan's workers get NEURON_RT_VISIBLE_CORES and NEURON_PROCESS_TAG; a plan whose
    devices this host lacks is refused, naming the device and the plan's instance."""
    data = plan("inf1.xlarge", {"detector": 2, "landmarks": 2}).to_dict()
    with pytest.raises(UpError, match=r"/dev/neuron0.*inf1\.xlarge"):
        worker_programs(data)
    for w in data["workers"]:
        w["devices"] = [str(tmp_path)]  # a path that exists stands in for /dev/neuron0
    detector, landmarks = worker_programs(data)
    assert landmarks.env == {
        "NEURON_RT_VISIBLE_CORES": "2-3",
        "NEURON_PROCESS_TAG": "blazepose-landmarks-c2-3",
    }
    assert landmarks.argv[-2:] == ("--cores", "2-3")


def test_plan_file_model_and_stage_checks() -> None:
    """Each worker's model comes from the plan; an unknown model, a stage the model lacks, a
    queue of another model or a contradicting --model is refused before anything starts."""
    data = plan("cpu", {"landmarks": 1}, model="blazepose").to_dict()
    (w,) = data["workers"]
    assert worker_programs(data)[0].argv[-6:-2] == ("--model", "blazepose", "--stage", "landmarks")
    assert len(worker_programs(data, model="blazepose")) == 1
    with pytest.raises(UpError, match="has no stage 'pose'"):
        worker_programs({"workers": [{**w, "stage": "pose", "queue": "pose.blazepose.pose"}]})
    with pytest.raises(UpError, match=f"worker {w['name']}: unknown model 'nope'"):
        worker_programs({"workers": [{**w, "model": "nope", "queue": "pose.nope.landmarks"}]})
    with pytest.raises(UpError, match="serves queue pose.other.landmarks, not pose.blazepose"):
        worker_programs({"workers": [{**w, "queue": "pose.other.landmarks"}]})
    with pytest.raises(UpError, match="serves model blazepose, not --model nope; .* leave --model out"):
        worker_programs(data, model="nope")
    with pytest.raises(UpError, match="no workers"):
        worker_programs({"instance": "cpu", "workers": []})


def _on_this_host(data: dict[str, Any], stand_in: Path) -> dict[str, Any]:
    """The plan with an existing path standing in for each worker's /dev/neuronN."""
    workers = [{**w, "devices": [str(stand_in)] * len(w["devices"])} for w in data["workers"]]
    return {**data, "workers": workers}


def test_two_model_plan_runs_each_worker_with_its_model(anymotion: str, tmp_path: Path) -> None:
    """The 2+2 split across two models on inf1.xlarge: cores 0-1 run anymotion, 2-3 blazepose,
    each with its own pinning environment."""
    data = plan("inf1.xlarge", {"ingest": 0, "anymotion:pose": 2, "blazepose:landmarks": 2}).to_dict()
    producer, pose, landmarks = worker_programs(_on_this_host(data, tmp_path))
    assert producer.argv[-4:] == ("--model", "blazepose", "--stage", "ingest") and producer.env == {}
    assert (pose.name, pose.argv[3:]) == (
        "anymotion-pose-c0-1",
        ("worker", "--model", "anymotion", "--stage", "pose", "--cores", "0-1"),
    )
    assert pose.env == {"NEURON_RT_VISIBLE_CORES": "0-1", "NEURON_PROCESS_TAG": "anymotion-pose-c0-1"}
    assert landmarks.argv[3:] == ("worker", "--model", "blazepose", "--stage", "landmarks", "--cores", "2-3")
    assert landmarks.env["NEURON_RT_VISIBLE_CORES"] == "2-3"


def test_two_model_plan_on_6xlarge(anymotion: str, tmp_path: Path) -> None:
    """Replicated on inf1.6xlarge: 8 workers, two per chip, alternating models on cores 0-15."""
    data = plan("inf1.6xlarge", {"anymotion:pose": 2, "blazepose:landmarks": 2}).to_dict()
    assert [w["devices"] for w in data["workers"]] == [[f"/dev/neuron{i // 2}"] for i in range(8)]
    programs = worker_programs(_on_this_host(data, tmp_path))
    assert [p.argv[p.argv.index("--model") + 1] for p in programs] == ["anymotion", "blazepose"] * 4
    assert [p.env["NEURON_RT_VISIBLE_CORES"] for p in programs] == [f"{c}-{c + 1}" for c in range(0, 16, 2)]


def test_plans_written_before_workers_named_their_model_still_load(anymotion: str) -> None:
    """A plan file without per-worker models: each worker's model is read from its queue, the
    producer's from the plan's first queue (as up did before)."""
    data = plan("cpu", {"ingest": 0, "pose": 1}, model=anymotion).to_dict()
    old = {**data, "workers": [{k: v for k, v in w.items() if k != "model"} for w in data["workers"]]}
    assert "model" not in old["workers"][1]
    assert worker_programs(old) == worker_programs(data)
    assert [p.argv[p.argv.index("--model") + 1] for p in worker_programs(old)] == ["anymotion"] * 2


def test_up_refuses_without_a_plan(tmp_path: Path) -> None:
    """`posequeue up` needs a plan file or an instance and a layout; errors exit 2."""
    assert cli("up").returncode == 2
    bad = cli("up", "cpu", "--per-chip", "detector=99")
    assert bad.returncode == 2 and "needs 99 cores per chip" in bad.stderr
    path = tmp_path / "plan.json"
    path.write_text("[]")
    assert "is not a plan" in cli("up", "--plan", str(path)).stderr


def test_up_checks_models_and_stages(tmp_path: Path) -> None:
    """`posequeue up` with a user's model: an unknown model or stage exits 2 with the reason; a
    two-model Neuron plan on this CPU machine is refused for its missing device."""
    env = user_spec(tmp_path, "blazepose-tf")
    unknown = cli("up", "cpu", "--per-chip", "movenet:pose=1", env=env)
    assert unknown.returncode == 2 and "unknown model 'movenet'" in unknown.stderr
    stage = cli("up", "cpu", "--per-chip", "blazepose-tf:landmarks=1", env=env)
    assert stage.returncode == 2 and "has no stage 'landmarks'; its stages: pose" in stage.stderr
    if Path("/dev/neuron0").exists():
        pytest.skip("this host has /dev/neuron0")
    split = cli("up", "inf1.xlarge", "--per-chip", "blazepose-tf:pose=2,landmarks=2", env=env)
    assert split.returncode == 2
    assert "worker blazepose-tf-pose-c0-1 needs /dev/neuron0" in split.stderr


# -- integration -----------------------------------------------------------------------------
@pytest.mark.integration
def test_up_runs_a_cpu_plan(isolated, model_dir, tmp_path: Path) -> None:
    """`posequeue up cpu --per-chip ingest=0,detector=1,landmarks=1` runs a job to the end,
    restarts a worker killed with SIGKILL, and on SIGTERM stops every worker within the timeout
    with none left behind."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("the layout needs 2 CPU cores")
    env = {**isolated, "POSEQUEUE_LOG_FORMAT": "json", "POSEQUEUE_LOCK_DIR": str(tmp_path / "locks")}
    log = tmp_path / "up.log"
    stop_timeout = 30
    with log.open("w") as fh:
        up = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "posequeue.cli",
                "up",
                "cpu",
                "--per-chip",
                "ingest=0,detector=1,landmarks=1",
                "--stop-timeout",
                str(stop_timeout),
                "--backoff-cap",
                "2",
            ],
            env=env,
            cwd=ROOT,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )

    def text() -> str:
        return log.read_text()

    def ready(name: str) -> int:
        return len(re.findall(rf"^{re.escape(name)} +\| .* ready\.$", text(), re.M))

    names = ("blazepose-ingest", "blazepose-detector-c0", "blazepose-landmarks-c1")
    pids: set[int] = set()
    try:
        # Given the plan's three workers, ready
        wait_for(lambda: all(ready(n) for n in names), timeout=90, what=f"3 workers ready:\n{text()}")
        # When a video is submitted, the job is done
        result = posequeue("submit", str(SAMPLE), "--wait", "--json", "--timeout", "120", env=env)
        assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{text()}"
        assert json.loads(result.stdout.splitlines()[-1])["status"] == "done"
        # When the detector worker's main process is killed, it is restarted and ready again
        victim = found(r"started blazepose-detector-c0 \(pid (\d+)\)", text())
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: "blazepose-detector-c0 exited (killed by SIGKILL)" in text(), what="the exit")
        wait_for(
            lambda: re.search(r"started blazepose-detector-c0 \(pid \d+, restart 1\)", text()),
            what="the restart",
        )
        wait_for(lambda: ready("blazepose-detector-c0") == 2, timeout=60, what=f"ready again:\n{text()}")
        # When `up` gets SIGTERM, it exits cleanly within the timeout
        pids = {int(p) for p in re.findall(r"started \S+ \(pid (\d+)", text())}
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=stop_timeout + 10) == 0, text()
        groups = subprocess.run(["ps", "-e", "-o", "pgid="], capture_output=True, text=True).stdout
        left = pids & {int(g) for g in groups.split()}
    finally:
        if up.poll() is None:  # the test failed: stop `up`, then whatever it left behind
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(timeout=stop_timeout + 10)
            except subprocess.TimeoutExpired:
                up.kill()
                for pid in {int(p) for p in re.findall(r"started \S+ \(pid (\d+)", text())}:
                    with contextlib.suppress(ProcessLookupError):  # each worker leads its group
                        os.killpg(pid, signal.SIGKILL)
    # Then every worker stopped by warm shutdown, and no process of any worker group is left
    out = text()
    assert "all workers stopped\n" in out
    assert all(f"{n} stopped (exit code 0)" in out for n in names), out
    assert not left, f"processes of worker groups {left} outlived `up`"


def test_refused_configuration_is_not_restarted() -> None:
    """A program exiting 2 (a worker refusing its configuration) is not restarted: the
    supervisor stops the others and returns 2."""
    import io
    import sys as _sys

    from posequeue.fleet.up import Backoff, Program, Supervisor

    out = io.StringIO()
    programs = [
        Program("bad", (_sys.executable, "-c", "raise SystemExit(2)")),
        Program("good", (_sys.executable, "-c", "import time; time.sleep(60)")),
    ]
    sup = Supervisor(programs, backoff=Backoff(initial=0.05), stop_timeout=5, out=out)
    assert sup.run(install_signals=False) == 2
    assert "bad refused its configuration" in out.getvalue()
    assert "started bad (pid" in out.getvalue() and "restart 1" not in out.getvalue()
