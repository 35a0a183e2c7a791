"""Core groups: parse ``--cores`` specs and pin a worker process before any runtime is imported.

On the CPU the spec pins the process to those CPU cores (``sched_setaffinity``); on Inferentia
the same spec becomes ``NEURON_RT_VISIBLE_CORES`` (runtime 2.x reserves every core otherwise).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from posequeue.errors import CoreSpecError


def parse_cores(spec: str) -> list[int]:
    """``"0-1"`` -> [0, 1]; ``"2,4-5"`` -> [2, 4, 5]; order kept, duplicates refused."""
    cores: list[int] = []
    try:
        for part in spec.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                cores.extend(range(lo, hi + 1))
            else:
                cores.append(int(part))
    except ValueError:
        raise CoreSpecError(
            f"--cores {spec!r} is not a core list; use indices and ranges like 0-1 or 2,3"
        ) from None
    if not cores or min(cores) < 0 or len(set(cores)) != len(cores):
        raise CoreSpecError(f"--cores {spec!r}: give each core index (>= 0) once")
    return cores


def format_cores(cores: list[int]) -> str:
    """[0, 1] -> "0-1" (contiguous), else a comma list."""
    if cores == list(range(cores[0], cores[-1] + 1)) and len(cores) > 1:
        return f"{cores[0]}-{cores[-1]}"
    return ",".join(str(c) for c in cores)


def pin_cpu(cores: list[int]) -> None:
    """Restrict this process (and the children it forks) to these CPU cores."""
    available = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    missing = [c for c in cores if available and c not in available]
    if missing:
        raise CoreSpecError(
            f"--cores names CPU cores {missing} that this host does not offer "
            f"(available: {sorted(available)})"
        )
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)


def usable_cores() -> list[int]:
    """The CPU cores this process may run on (its affinity)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def cpu_threads() -> int:
    """Threads a runtime should use: the cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def neuron_env(cores: list[int], generation: int, tag: str) -> dict[str, str]:
    """The environment that confines the Neuron runtime to ``cores``, set before it loads.

    Runtime 2.x (libnrt) reserves every NeuronCore of the host unless NEURON_RT_VISIBLE_CORES
    names a contiguous range; runtime 1.x (neuron-rtd) takes the next free cores for a group
    of NEURONCORE_GROUP_SIZES. NEURON_PROCESS_TAG names the process in neuron-monitor.
    """
    if cores != list(range(cores[0], cores[0] + len(cores))):
        raise CoreSpecError(f"--cores {format_cores(cores)}: NeuronCore groups must be contiguous")
    if generation == 1:
        return {"NEURONCORE_GROUP_SIZES": str(len(cores)), "NEURON_PROCESS_TAG": tag}
    visible = str(cores[0]) if len(cores) == 1 else f"{cores[0]}-{cores[-1]}"
    return {"NEURON_RT_VISIBLE_CORES": visible, "NEURON_PROCESS_TAG": tag}


_held: list[int] = []  # lock files stay open (and locked) for the life of the process


def lock_folder(configured: Path | None = None) -> Path:
    """The folder of this user's core claims: ``configured`` (POSEQUEUE_LOCK_DIR) if given,
    else ``$XDG_RUNTIME_DIR/posequeue``, else ``/tmp/posequeue-{uid}``. A folder in a shared
    place must be private: a predictable, world-writable one lets another user plant links."""
    if configured is not None:
        return Path(configured)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        return Path(runtime) / "posequeue"
    return Path("/tmp") / f"posequeue-{os.getuid()}"


def _open_folder(folder: Path) -> int:
    """Create ``folder`` (0700) if missing and open it without following a link; refuse a
    folder another user owns or may write to, naming the fix."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise CoreSpecError(
            f"core claims folder {folder} cannot be used ({exc.strerror or exc}; a symbolic link "
            "is refused): remove it, or set POSEQUEUE_LOCK_DIR to a folder of your own"
        ) from None
    info = os.fstat(fd)
    problem = None
    if info.st_uid != os.getuid():
        problem = f"is owned by uid {info.st_uid}, not this user (uid {os.getuid()})"
    elif info.st_mode & 0o022:
        problem = f"is writable by other users (mode {stat.S_IMODE(info.st_mode):o})"
    if problem:
        os.close(fd)
        raise CoreSpecError(
            f"core claims folder {folder} {problem}: `chmod 700` it, remove it, or set "
            "POSEQUEUE_LOCK_DIR to a folder of your own"
        )
    return fd


def _open_claim(folder_fd: int, folder: Path, name: str) -> int:
    """Open (or create) one claim file inside the folder, never through a link, and check it is
    a plain file of ours with one name before anything writes to it."""
    try:
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=folder_fd)
    except OSError as exc:
        raise CoreSpecError(
            f"claim file {folder / name} cannot be opened ({exc.strerror or exc}; a symbolic "
            "link is refused): remove it"
        ) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_nlink != 1:
        os.close(fd)
        raise CoreSpecError(
            f"claim file {folder / name} is not a plain file of this user with one name (planted?): remove it"
        )
    return fd


def claim_cores(cores: list[int], kind: str, owner: str, folder: Path | None = None) -> None:
    """Lock each core for this process (and the children it forks): a second worker naming a
    claimed core is refused at start-up, not by the runtime later. Locks are released by the
    kernel when the process exits, however it exits. ``folder``: see ``lock_folder``."""
    import fcntl

    folder = lock_folder(folder)
    folder_fd = _open_folder(folder)
    try:
        for core in cores:
            fd = _open_claim(folder_fd, folder, f"{kind}-core-{core}.lock")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 256, 0).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise CoreSpecError(
                    f"{kind} core {core} is already claimed by {holder}; give this worker other "
                    f"cores (`posequeue plan` lays a host out) or stop that worker"
                ) from None
            # Ours now, checked above: only then is the old holder's name replaced.
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"worker {owner} (pid {os.getpid()})".encode(), 0)
            _held.append(fd)
    finally:
        os.close(folder_fd)
