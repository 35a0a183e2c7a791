"""Core-group plans: lay one host's workers out from a per-chip layout.

A layout says which stages run on one chip and with how many cores each, e.g.
``{"detector": 2, "landmarks": 2}``; the plan replicates it on every chip of the instance, so the
same layout scales from inf1.xlarge (1 chip) to inf1.24xlarge (16 chips). A stage may run several
core groups on a chip: ``{"landmarks": [1, 1, 1, 1]}`` is four single-core workers per chip. A core
group never straddles two chips (a Neuron process sees the cores of the devices it was given), and
a layout that needs more cores than a chip has is refused.

Each worker gets the cores it owns as global indices, the environment that pins it
(``NEURON_RT_VISIBLE_CORES``: the Neuron runtime 2.x reserves every core of the host unless told
otherwise) and the device file of its chip. The stage ``ingest`` is the producers' queue: it takes
no accelerator cores, so ``ingest=0`` means one unpinned producer worker per host.

Stage names are not checked against the model catalogue: a plan may be drawn for a stage that is
being added (such as ``detector``). ``posequeue worker`` refuses a stage the model lacks when the
worker starts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from posequeue.config import queues
from posequeue.fleet.instances import Instance, get_instance

INGEST = "ingest"
DEFAULT_MODEL = "blazepose"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # a queue, service, unit and process-tag name part

Layout = Mapping[str, int | Sequence[int]]


class PlanError(ValueError):
    """A layout or throughput figure that cannot be planned on the instance."""


@dataclass(frozen=True)
class WorkerPlan:
    """One worker process: its stage and queue, the cores it owns and how it is pinned."""

    name: str
    stage: str
    queue: str
    cores: tuple[int, ...]  # global core indices (CPU ids on the cpu host); () for producers
    env: dict[str, str] = field(default_factory=dict)
    devices: tuple[str, ...] = ()
    chip: int | None = None

    @property
    def cores_spec(self) -> str:
        """``"0-1"`` for a group, ``"3"`` for one core, ``""`` for an unpinned worker."""
        return _span(self.cores)

    def command(self, model: str) -> list[str]:
        args = ["posequeue", "worker", "--model", model, "--stage", self.stage]
        return args + (["--cores", self.cores_spec] if self.cores else [])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "stage": self.stage, "queue": self.queue,
                "cores": list(self.cores), "env": dict(self.env),
                "devices": list(self.devices)}  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """Every worker of one host, and what the host is expected to deliver."""

    instance: Instance
    model: str
    layout: dict[str, tuple[int, ...]]  # per chip: stage -> core-group sizes
    workers: tuple[WorkerPlan, ...]
    throughput: dict[str, float] | None = None  # frames/s per core, per stage
    price_per_hour: float | None = None
    producers: bool = False  # the layout asked for one ingest worker per host (ingest=0)

    @property
    def layout_text(self) -> str:
        """The per-chip layout as ``--per-chip`` takes it, e.g. ``ingest=0,landmarks=2+2``."""
        parts = ([f"{INGEST}=0"] if self.producers else []) + [format_layout(self.layout)]
        return ",".join(p for p in parts if p)

    @property
    def cores_per_chip_used(self) -> int:
        return sum(sum(groups) for groups in self.layout.values())

    @property
    def idle_cores_per_chip(self) -> int:
        return self.instance.cores_per_chip - self.cores_per_chip_used

    def stage_rates(self) -> dict[str, float] | None:
        """Frames/s each stage can take on this host: cores x frames/s per core, summed."""
        if self.throughput is None:
            return None
        rates = dict.fromkeys(self.throughput, 0.0)
        for worker in self.workers:
            if worker.stage in rates:
                rates[worker.stage] += len(worker.cores) * self.throughput[worker.stage]
        return rates

    def bottleneck(self) -> str | None:
        rates = self.stage_rates()
        return min(rates, key=rates.__getitem__) if rates else None

    def frames_per_second(self) -> float | None:
        """The host's frames/s: every frame passes every stage, so the slowest stage sets it."""
        rates = self.stage_rates()
        return min(rates.values()) if rates else None

    def cost_per_million_frames(self) -> float | None:
        fps = self.frames_per_second()
        if not fps or self.price_per_hour is None:
            return None
        return self.price_per_hour / (fps * 3600) * 1_000_000

    def to_dict(self) -> dict[str, Any]:
        return {"instance": self.instance.name, "workers": [w.to_dict() for w in self.workers]}


def plan(
    instance: Instance | str,
    per_chip: Layout,
    throughput: Mapping[str, float] | None = None,
    *,
    model: str = DEFAULT_MODEL,
    price_per_hour: float | None = None,
) -> Plan:
    """Lay the workers of one host out.

    Parameters:
        instance: an :class:`Instance` or a catalogue name (``"inf1.xlarge"``, ``"cpu"``).
        per_chip: stage -> cores of one chip: an int (one core group of that size) or a list of
            group sizes (``[1, 1]``: two single-core workers). ``ingest`` must be 0.
        throughput: optional frames/s per core for every stage that has cores (measured, or
            figures given by the production team); enables :meth:`Plan.frames_per_second`.
        model: the model whose stage queues the workers serve.
        price_per_hour: overrides the catalogue's on-demand price (spot, another region).

    Raises:
        PlanError: an unknown name, an empty or oversized layout, or throughput figures that do
            not match the layout's stages.
    """
    host = get_instance(instance) if isinstance(instance, str) else instance
    _check_name("model", model)
    layout, producers = _normalise(per_chip)
    needed = sum(sum(groups) for groups in layout.values())
    if needed > host.cores_per_chip:
        raise PlanError(
            f"layout {format_layout(per_chip)} needs {needed} cores per chip, but each chip of "
            f"{host.name} has {host.cores_per_chip} {_core_word(host)}; a core group never "
            f"straddles two chips, so give at most {host.cores_per_chip} cores per chip in all"
        )
    workers: list[WorkerPlan] = []
    if producers:
        workers.append(WorkerPlan(f"{model}-{INGEST}", INGEST, queues.INGEST, ()))
    for chip in range(host.chips):
        offset = chip * host.cores_per_chip
        for stage, groups in layout.items():
            for size in groups:
                ids = tuple(host.core_id(i) for i in range(offset, offset + size))
                workers.append(_worker(host, model, stage, ids, chip))
                offset += size
    rates = _check_throughput(throughput, layout)
    price = price_per_hour if price_per_hour is not None else host.price_per_hour
    return Plan(host, model, layout, tuple(workers), rates, price, producers)


def _worker(host: Instance, model: str, stage: str, cores: tuple[int, ...], chip: int) -> WorkerPlan:
    name = f"{model}-{stage}-c{_span(cores)}"
    queue = queues.stage_queue(model, stage)
    if not host.is_neuron:
        return WorkerPlan(name, stage, queue, cores)
    env = {"NEURON_RT_VISIBLE_CORES": _span(cores), "NEURON_PROCESS_TAG": name}
    device = host.device(chip)
    return WorkerPlan(name, stage, queue, cores, env, (device,) if device else (), chip)


def _normalise(per_chip: Layout) -> tuple[dict[str, tuple[int, ...]], bool]:
    """-> (stage -> group sizes for the stages with cores, whether a producer is wanted)."""
    if not per_chip:
        raise PlanError("the layout is empty; give at least one stage, e.g. landmarks=4")
    layout: dict[str, tuple[int, ...]] = {}
    producers = False
    for stage, value in per_chip.items():
        _check_name("stage", stage)
        groups = (value,) if isinstance(value, int) else tuple(value)
        if not groups or not all(isinstance(g, int) and not isinstance(g, bool) for g in groups):
            raise PlanError(f"stage {stage}: cores must be a whole number or a list of them")
        if stage == INGEST:
            if groups != (0,):
                raise PlanError(
                    f"ingest={format_groups(groups)}: producers take no accelerator cores; "
                    "write ingest=0 for one producer worker per host"
                )
            producers = True
            continue
        if min(groups) < 1:
            raise PlanError(
                f"stage {stage}={format_groups(groups)}: every core group needs at least 1 core "
                "(only ingest may be 0)"
            )
        layout[stage] = groups
    if not layout and not producers:  # pragma: no cover - an empty mapping is refused above
        raise PlanError("the layout has no stage")
    return layout, producers


def _check_throughput(
    throughput: Mapping[str, float] | None, layout: dict[str, tuple[int, ...]]
) -> dict[str, float] | None:
    if throughput is None:
        return None
    unknown = sorted(set(throughput) - set(layout))
    if unknown:
        raise PlanError(
            f"throughput given for {', '.join(unknown)}, which the layout does not run on cores; "
            f"its stages: {', '.join(layout) or '(none)'}"
        )
    missing = [stage for stage in layout if stage not in throughput]
    if missing:
        raise PlanError(
            f"no throughput figure for {', '.join(missing)}; give frames/s per core for every "
            f"stage, e.g. --throughput {','.join(f'{s}=100' for s in layout)}"
        )
    bad = [f"{s}={v}" for s, v in throughput.items() if not v > 0]
    if bad:
        raise PlanError(f"throughput must be frames/s per core above 0: {', '.join(bad)}")
    return {stage: float(throughput[stage]) for stage in layout}


def _check_name(kind: str, name: str) -> None:
    if not _NAME.match(name):
        raise PlanError(
            f"{kind} name {name!r} is not usable in queue, service and unit names; use lower-case "
            "letters, digits and _ (starting with a letter)"
        )


def _core_word(host: Instance) -> str:
    return "NeuronCores" if host.is_neuron else "CPU cores"


def _span(cores: Sequence[int]) -> str:
    """(0, 1) -> "0-1", (3,) -> "3", () -> "". Plans only make contiguous groups."""
    if not cores:
        return ""
    return str(cores[0]) if len(cores) == 1 else f"{cores[0]}-{cores[-1]}"


def format_groups(groups: Sequence[int]) -> str:
    return "+".join(str(g) for g in groups)


def format_layout(per_chip: Layout) -> str:
    parts = []
    for stage, value in per_chip.items():
        groups = (value,) if isinstance(value, int) else tuple(value)
        parts.append(f"{stage}={format_groups(groups)}")
    return ",".join(parts)


def parse_layout(text: str) -> dict[str, int | list[int]]:
    """``"detector=2,landmarks=1+1"`` -> {"detector": 2, "landmarks": [1, 1]}.

    A stage's cores are ``N`` (one group of N cores), ``A+B+...`` (groups of A, B, ... cores) or
    ``GxN`` (G groups of N cores, as in the Neuron runtime 1.x's NEURONCORE_GROUP_SIZES).
    """
    layout: dict[str, int | list[int]] = {}
    for part in (p.strip() for p in text.split(",")):
        stage, sep, value = part.partition("=")
        stage, value = stage.strip(), value.strip()
        try:
            if not sep or not stage:
                raise ValueError
            if "x" in value:
                count, size = (int(v) for v in value.split("x", 1))
                if count < 1:
                    raise ValueError
                groups = [size] * count
            else:
                groups = [int(v) for v in value.split("+")]
        except ValueError:
            raise PlanError(
                f"--per-chip {text!r}: {part!r} is not STAGE=CORES; write e.g. "
                "detector=2,landmarks=2 or landmarks=4x1 or landmarks=1+1+2"
            ) from None
        if stage in layout:
            raise PlanError(f"--per-chip {text!r}: stage {stage} is given twice; use {stage}=1+1")
        layout[stage] = groups[0] if len(groups) == 1 else groups
    return layout


def parse_throughput(text: str) -> dict[str, float]:
    """``"detector=400,landmarks=150"`` -> frames/s per core, per stage."""
    figures: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        stage, sep, value = part.partition("=")
        try:
            if not sep or not stage.strip():
                raise ValueError
            figures[stage.strip()] = float(value)
        except ValueError:
            raise PlanError(
                f"--throughput {text!r}: {part!r} is not STAGE=FPS; write e.g. landmarks=150 "
                "(frames/s per core)"
            ) from None
    return figures
