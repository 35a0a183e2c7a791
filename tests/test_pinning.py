"""Unit tests for posequeue.worker.pinning: core specs and CPU pinning."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from posequeue.worker.pinning import CoreSpecError, cpu_threads, format_cores, parse_cores

pytestmark = pytest.mark.compat


@pytest.mark.parametrize(
    ("spec", "cores"),
    [
        ("0-1", [0, 1]),
        ("2,3", [2, 3]),
        ("5", [5]),
        ("0-1,4", [0, 1, 4]),
        ("2,4-5", [2, 4, 5]),
        ("3-3", [3]),
        (" 0 , 2-3 ", [0, 2, 3]),
        ("3,1", [3, 1]),
    ],
)
def test_parse_cores(spec: str, cores: list[int]) -> None:
    """Indices and ranges parse to core lists, order kept."""
    assert parse_cores(spec) == cores


@pytest.mark.parametrize("spec", ["", "a", "3-1", "1,1", "-1", "0-1,1", "0,", "1-", "0-1-2", "1.5", "0;1"])
def test_parse_cores_errors(spec: str) -> None:
    """Empty, non-numeric, reversed, repeated and negative specs are a CoreSpecError."""
    with pytest.raises(CoreSpecError) as err:
        parse_cores(spec)
    assert repr(spec) in str(err.value)


@pytest.mark.parametrize(
    ("cores", "spec"),
    [
        ([0, 1], "0-1"),
        ([2, 3, 4, 5], "2-5"),
        ([5], "5"),
        ([0, 1, 4], "0,1,4"),
        ([2, 4], "2,4"),
        ([1, 0], "1,0"),
    ],
)
def test_format_cores(cores: list[int], spec: str) -> None:
    """Contiguous runs print as a range, others as a comma list, and parse back the same."""
    assert format_cores(cores) == spec
    assert parse_cores(format_cores(cores)) == cores


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_pin_cpu_core_zero() -> None:
    """pin_cpu restricts the calling process (run in a child) to the given cores."""
    if 0 not in os.sched_getaffinity(0):
        pytest.skip("core 0 is not available to this process")
    out = run_python("""
        import os
        from posequeue.worker.pinning import cpu_threads, pin_cpu
        pin_cpu([0])
        print(sorted(os.sched_getaffinity(0)), cpu_threads())
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0] == "[0] 1"


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_pin_cpu_missing_core() -> None:
    """A core the host does not offer is a CoreSpecError naming it; affinity is unchanged."""
    out = run_python("""
        import os
        from posequeue.worker.pinning import CoreSpecError, pin_cpu
        before = os.sched_getaffinity(0)
        try:
            pin_cpu([0, 4095])
        except CoreSpecError as exc:
            print("error:", exc)
        print(os.sched_getaffinity(0) == before)
    """)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()[:2]
    assert first.startswith("error:") and "4095" in first and "available" in first
    assert second == "True"


def test_cpu_threads() -> None:
    """cpu_threads counts the cores this process may run on (at least 1)."""
    assert 1 <= cpu_threads() <= (os.cpu_count() or 1)


def test_neuron_env_runtime_2() -> None:
    """Runtime 2.x is confined by NEURON_RT_VISIBLE_CORES as an inclusive range (or one core)."""
    from posequeue.worker.pinning import neuron_env

    assert neuron_env([2, 3], 2, "w") == {"NEURON_RT_VISIBLE_CORES": "2-3", "NEURON_PROCESS_TAG": "w"}
    assert neuron_env([5], 2, "w")["NEURON_RT_VISIBLE_CORES"] == "5"


def test_neuron_env_runtime_1() -> None:
    """Runtime 1.x gets one group of that many cores."""
    from posequeue.worker.pinning import neuron_env

    assert neuron_env([0, 1, 2, 3], 1, "w") == {"NEURONCORE_GROUP_SIZES": "4", "NEURON_PROCESS_TAG": "w"}


def test_neuron_env_refuses_gaps() -> None:
    """A NeuronCore group must be contiguous."""
    from posequeue.worker.pinning import CoreSpecError, neuron_env

    with pytest.raises(CoreSpecError, match="contiguous"):
        neuron_env([0, 2], 2, "w")


def test_second_claim_of_a_core_is_refused(tmp_path) -> None:
    """While one process holds a core, another claiming it is refused, naming the holder; the
    claim ends with the holder's process."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from pathlib import Path;"
                "from posequeue.worker.pinning import claim_cores;"
                f"claim_cores([0, 1], 'neuron', 'first', Path({str(tmp_path)!r}));"
                "print('held', flush=True); time.sleep(30)"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        from posequeue.worker.pinning import CoreSpecError, claim_cores

        with pytest.raises(CoreSpecError, match=r"neuron core 1 is already claimed by worker first"):
            claim_cores([1, 2], "neuron", "second", tmp_path)
    finally:
        holder.kill()
        holder.wait()
    claim_cores([1, 2], "cpu", "third", tmp_path)  # other kind: its own namespace
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "from pathlib import Path; from posequeue.worker.pinning import claim_cores;"
                f"claim_cores([0, 1], 'neuron', 'again', Path({str(tmp_path)!r}))"
            ),
        ]
    )
    assert check.returncode == 0  # released when the holder died


def test_claim_refuses_a_planted_symlink(tmp_path) -> None:
    """A claim file planted as a symbolic link to another file is refused, and that file is
    neither truncated nor written."""
    from posequeue.worker.pinning import claim_cores

    folder = tmp_path / "locks"
    folder.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (folder / "cpu-core-7.lock").symlink_to(victim)
    with pytest.raises(CoreSpecError, match=r"cpu-core-7\.lock.*symbolic link is refused"):
        claim_cores([7], "cpu", "w", folder)
    assert victim.read_text() == "precious"


def test_claim_refuses_a_hard_link(tmp_path) -> None:
    """A claim file that is a second name of another file is refused, the file left as it was."""
    from posequeue.worker.pinning import claim_cores

    folder = tmp_path / "locks"
    folder.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    os.link(victim, folder / "cpu-core-7.lock")
    with pytest.raises(CoreSpecError, match="not a plain file of this user with one name"):
        claim_cores([7], "cpu", "w", folder)
    assert victim.read_text() == "precious"


def test_claim_refuses_a_shared_or_linked_folder(tmp_path) -> None:
    """A claims folder that others may write to, or that is a link, is refused with the fix."""
    from posequeue.worker.pinning import claim_cores

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(CoreSpecError, match=r"writable by other users \(mode 777\): `chmod 700`"):
        claim_cores([7], "cpu", "w", shared)
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    with pytest.raises(CoreSpecError, match="symbolic link is refused"):
        claim_cores([7], "cpu", "w", link)


def test_default_claims_folder_is_private(tmp_path, monkeypatch) -> None:
    """Without POSEQUEUE_LOCK_DIR claims go to $XDG_RUNTIME_DIR/posequeue, else to a 0700
    folder of this user's own under /tmp, never to one shared predictable path."""
    from posequeue.worker.pinning import lock_folder

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert lock_folder() == tmp_path / "posequeue"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert lock_folder() == Path("/tmp") / f"posequeue-{os.getuid()}"
    assert lock_folder(tmp_path / "mine") == tmp_path / "mine"


def test_claim_creates_a_private_folder(tmp_path) -> None:
    """A claims folder that does not exist is created 0700 and the claim file 0600."""
    from posequeue.worker.pinning import claim_cores

    folder = tmp_path / "new" / "locks"
    claim_cores([6], "neuron", "w", folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    claim = folder / "neuron-core-6.lock"
    assert stat.S_IMODE(claim.stat().st_mode) == 0o600
    assert claim.read_text() == f"worker w (pid {os.getpid()})"
