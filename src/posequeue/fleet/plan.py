"""Core-group plans: lay one host's workers out from a per-chip layout.

A layout says which stages run on one chip and with how many cores each, e.g.
``{"detector": 2, "landmarks": 2}``; the plan replicates it on every chip of the instance, so the
same layout scales from inf1.xlarge (1 chip) to inf1.24xlarge (16 chips). A stage may run several
core groups on a chip: ``{"landmarks": [1, 1, 1, 1]}`` is four single-core workers per chip. A core
group never straddles two chips (a Neuron process sees the cores of the devices it was given), and
a layout that needs more cores than a chip has is refused.

A key is ``STAGE`` (a stage of the plan's model) or ``MODEL:STAGE``, so one chip may serve two
models: ``{"anymotion:pose": 2, "blazepose:landmarks": 2}`` gives cores 0-1 of every chip to one
model and 2-3 to the other. Each model is a pipeline of its own: its frames pass its stages only,
so frames/s are worked out per model. Models and stages are looked up in the catalogue (built in,
and the spec files in POSEQUEUE_MODEL_SPECS); an unknown one is refused with the known names.

Each worker gets the cores it owns as global indices, the environment that pins it
(``NEURON_RT_VISIBLE_CORES``: the Neuron runtime 2.x reserves every core of the host unless told
otherwise) and the device file of its chip. The stage ``ingest`` is the producers' queue, shared
by every model: it takes no accelerator cores, so ``ingest=0`` means one unpinned producer worker
per host.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from posequeue.config import queues
from posequeue.config.catalogue import UnknownModelError, get_model
from posequeue.config.specs import SpecError
from posequeue.errors import PlanError
from posequeue.fleet.instances import Instance, get_instance
from posequeue.worker.launch import WorkerRole, worker_role

INGEST = "ingest"
DEFAULT_MODEL = "blazepose"
# A model or stage name as a part of queue (pose.M.S), compose service, systemd unit and process
# tag names: no "." (up reads the model back from the queue), no ":" (MODEL:STAGE), and "-" only
# between other characters. Lower case only: compose derives image and container names from it.

Layout = Mapping[str, int | Sequence[int]]


class StageKey(NamedTuple):
    """A model's stage: what a layout or throughput key names."""

    model: str
    stage: str

    def __str__(self) -> str:
        return f"{self.model}:{self.stage}"


@dataclass(frozen=True)
class WorkerPlan:
    """One worker process: its role (``worker/launch.py``: model, stage, queue, the cores it
    owns, its name) and how it is pinned on this host (environment, device file, chip)."""

    role: WorkerRole
    env: dict[str, str] = field(default_factory=dict)
    devices: tuple[str, ...] = ()
    chip: int | None = None

    @property
    def name(self) -> str:
        return self.role.name

    @property
    def model(self) -> str:
        return self.role.model

    @property
    def stage(self) -> str:
        return self.role.stage

    @property
    def queue(self) -> str:
        return self.role.queues[0]  # a planned worker serves one stage's queue

    @property
    def cores(self) -> tuple[int, ...]:
        """Global core indices (CPU ids on the cpu host); () for producers."""
        return self.role.cores

    @property
    def cores_spec(self) -> str:
        """``"0-1"`` for a group, ``"3"`` for one core, ``""`` for an unpinned worker."""
        return self.role.cores_spec

    def command(self) -> list[str]:
        return self.role.command()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "stage": self.stage,
            "queue": self.queue,
            "cores": list(self.cores),
            "env": dict(self.env),
            "devices": list(self.devices),
        }


@dataclass(frozen=True)
class ModelRate:
    """What one model's pipeline is expected to deliver on the host."""

    model: str
    frames_per_second: float  # its slowest stage's: every frame of the model passes each stage
    bottleneck: str  # that stage
    cores: int  # cores of the host its workers own
    share: float  # its part of the host's price: its cores / the cores all models use
    cost_per_million_frames: float | None  # None without a price


@dataclass(frozen=True)
class Plan:
    """Every worker of one host, and what the host is expected to deliver."""

    instance: Instance
    model: str  # the model of bare STAGE keys and of the producer
    layout: dict[StageKey, tuple[int, ...]]  # per chip: stage -> core-group sizes
    workers: tuple[WorkerPlan, ...]
    throughput: dict[StageKey, float] | None = None  # frames/s per core, per stage
    price_per_hour: float | None = None
    producers: bool = False  # the layout asked for one ingest worker per host (ingest=0)

    @property
    def models(self) -> tuple[str, ...]:
        """The models whose stages have cores, in layout order."""
        return tuple(dict.fromkeys(key.model for key in self.layout))

    def absent_stages(self) -> dict[str, tuple[str, ...]]:
        """Per model of the layout, its stages that no core of this host serves (their workers
        must run elsewhere, or its frames stop there)."""
        absent = {
            m: tuple(s.name for s in get_model(m).stages if StageKey(m, s.name) not in self.layout)
            for m in self.models
        }
        return {m: stages for m, stages in absent.items() if stages}

    def label(self, key: StageKey) -> str:
        """``landmarks`` in a plan of the model alone, else ``model:stage``."""
        return key.stage if self.models == (self.model,) else str(key)

    @property
    def layout_text(self) -> str:
        """The per-chip layout as ``--per-chip`` takes it (with ``--model`` set to the plan's),
        e.g. ``ingest=0,landmarks=2+2`` or ``anymotion:pose=2,blazepose:landmarks=2``."""
        parts = [f"{INGEST}=0"] if self.producers else []
        parts += [f"{self.label(key)}={format_groups(groups)}" for key, groups in self.layout.items()]
        return ",".join(parts)

    @property
    def cores_per_chip_used(self) -> int:
        return sum(sum(groups) for groups in self.layout.values())

    @property
    def idle_cores_per_chip(self) -> int:
        return self.instance.cores_per_chip - self.cores_per_chip_used

    def stage_rates(self) -> dict[StageKey, float] | None:
        """Frames/s each stage can take on this host: cores x frames/s per core, summed."""
        if self.throughput is None:
            return None
        rates = dict.fromkeys(self.throughput, 0.0)
        for worker in self.workers:
            key = StageKey(worker.model, worker.stage)
            if key in rates:
                rates[key] += len(worker.cores) * self.throughput[key]
        return rates

    def model_rates(self) -> dict[str, ModelRate] | None:
        """Frames/s and cost of each model. Two models on a host are two pipelines, so each is
        limited by its own slowest stage; the host's price is split by the cores each uses."""
        rates = self.stage_rates()
        if rates is None:
            return None
        cores = {m: sum(len(w.cores) for w in self.workers if w.model == m) for m in self.models}
        used = sum(cores.values())
        result = {}
        for model in self.models:
            slowest = min((k for k in rates if k.model == model), key=rates.__getitem__)
            fps, share = rates[slowest], cores[model] / used
            cost = (
                None
                if self.price_per_hour is None
                else self.price_per_hour * share / (fps * 3600) * 1_000_000
            )
            result[model] = ModelRate(model, fps, slowest.stage, cores[model], share, cost)
        return result

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
        per_chip: ``STAGE`` or ``MODEL:STAGE`` -> cores of one chip: an int (one core group of
            that size) or a list of group sizes (``[1, 1]``: two single-core workers).
            ``ingest`` must be 0.
        throughput: optional frames/s per core for every stage that has cores, keyed as in
            ``per_chip`` (measured, or figures given by the production team); enables
            :meth:`Plan.model_rates`.
        model: the model of bare ``STAGE`` keys, and the producer's.
        price_per_hour: overrides the catalogue's on-demand price (spot, another region).

    Raises:
        PlanError: an unknown instance, model or stage, an empty or oversized layout, or
            throughput figures that do not match the layout's stages.
    """
    host = get_instance(instance) if isinstance(instance, str) else instance
    _check_model(model)
    layout, producers = _normalise(per_chip, model)
    needed = sum(sum(groups) for groups in layout.values())
    if needed > host.cores_per_chip:
        raise PlanError(
            f"layout {format_layout(per_chip)} needs {needed} cores per chip, but each chip of "
            f"{host.name} has {host.cores_per_chip} {_core_word(host)}; a core group never "
            f"straddles two chips, so give at most {host.cores_per_chip} cores per chip in all"
        )
    workers: list[WorkerPlan] = []
    if producers:
        workers.append(WorkerPlan(worker_role(model, INGEST)))
    for chip in range(host.chips):
        offset = chip * host.cores_per_chip
        for key, groups in layout.items():
            for size in groups:
                ids = tuple(host.core_id(i) for i in range(offset, offset + size))
                workers.append(_worker(host, key, ids, chip))
                offset += size
    rates = _check_throughput(throughput, layout, model)
    price = price_per_hour if price_per_hour is not None else host.price_per_hour
    return Plan(host, model, layout, tuple(workers), rates, price, producers)


def _worker(host: Instance, key: StageKey, cores: tuple[int, ...], chip: int) -> WorkerPlan:
    role = worker_role(key.model, key.stage, cores)
    if not host.is_neuron:
        return WorkerPlan(role)
    # Every pinned worker of a Neuron host gets the runtime's environment, whatever its
    # model's runtime: the unit or container it runs in is the host's.
    device = host.device(chip)
    return WorkerPlan(role, role.neuron_env(), (device,) if device else (), chip)


def stage_key(text: str, model: str) -> StageKey:
    """``"landmarks"`` -> (model, "landmarks"); ``"anymotion:pose"`` -> ("anymotion", "pose")."""
    parts = text.split(":")
    if len(parts) > 2 or not all(parts):
        raise PlanError(f"{text!r} is not STAGE or MODEL:STAGE; write e.g. landmarks or anymotion:pose")
    return StageKey(*parts) if len(parts) == 2 else StageKey(model, text)


def _normalise(per_chip: Layout, model: str) -> tuple[dict[StageKey, tuple[int, ...]], bool]:
    """-> (stage -> group sizes for the stages with cores, whether a producer is wanted)."""
    if not per_chip:
        raise PlanError("the layout is empty; give at least one stage, e.g. landmarks=4")
    layout: dict[StageKey, tuple[int, ...]] = {}
    producers = False
    for text, value in per_chip.items():
        key = stage_key(text, model)
        groups = (value,) if isinstance(value, int) else tuple(value)
        if not groups or not all(isinstance(g, int) and not isinstance(g, bool) for g in groups):
            raise PlanError(f"stage {text}: cores must be a whole number or a list of them")
        if key.stage == INGEST:
            if text != INGEST or groups != (0,):
                raise PlanError(
                    f"{text}={format_groups(groups)}: producers take no accelerator cores and "
                    "serve every model; write ingest=0 for one producer worker per host"
                )
            producers = True
            continue
        if min(groups) < 1:
            raise PlanError(
                f"stage {text}={format_groups(groups)}: every core group needs at least 1 core "
                "(only ingest may be 0)"
            )
        _check_stage(key)
        if key in layout:
            raise PlanError(
                f"{key} is given twice (a bare stage is one of --model {model}); "
                f"give its groups once, e.g. {key}=1+1"
            )
        layout[key] = groups
    if not layout and not producers:  # pragma: no cover - an empty mapping is refused above
        raise PlanError("the layout has no stage")
    return layout, producers


def _check_throughput(
    throughput: Mapping[str, float] | None, layout: dict[StageKey, tuple[int, ...]], model: str
) -> dict[StageKey, float] | None:
    if throughput is None:
        return None

    def text(key: StageKey) -> str:  # as --throughput takes it with this --model
        return key.stage if key.model == model else str(key)

    figures: dict[StageKey, float] = {}
    for written, value in throughput.items():
        key = stage_key(written, model)
        if key in figures:
            raise PlanError(f"throughput for {key} is given twice (a bare stage is one of --model {model})")
        figures[key] = value
    unknown = [text(k) for k in figures if k not in layout]
    if unknown:
        raise PlanError(
            f"throughput given for {', '.join(unknown)}, which the layout does not run on cores; "
            f"its stages: {', '.join(map(text, layout)) or '(none)'}"
        )
    missing = [text(key) for key in layout if key not in figures]
    if missing:
        raise PlanError(
            f"no throughput figure for {', '.join(missing)}; give frames/s per core for every "
            f"stage, e.g. --throughput {','.join(f'{text(k)}=100' for k in layout)}"
        )
    bad = [f"{text(k)}={v}" for k, v in figures.items() if not v > 0]
    if bad:
        raise PlanError(f"throughput must be frames/s per core above 0: {', '.join(bad)}")
    return {key: float(figures[key]) for key in layout}


def _check_model(model: str) -> None:
    """A model the catalogue knows, whose name fits queue, service and unit names."""
    try:
        get_model(model)
    except (UnknownModelError, SpecError) as exc:
        raise PlanError(str(exc)) from None
    check_name("model", model)


def _check_stage(key: StageKey) -> None:
    _check_model(key.model)
    try:
        get_model(key.model).stage(key.stage)
    except UnknownModelError as exc:
        raise PlanError(str(exc)) from None
    check_name("stage", key.stage)


def check_name(kind: str, name: str) -> None:
    """Refuse a model or stage name that cannot be part of queue, compose service, systemd unit
    and process tag names."""
    if not queues.NAME.match(name):
        raise PlanError(
            f"{kind} name {name!r} cannot be part of queue, compose service and systemd unit "
            f"names; rename it (in its spec file) to {queues.NAME_RULE} (e.g. blazepose-tf)"
        )


def _core_word(host: Instance) -> str:
    return "NeuronCores" if host.is_neuron else "CPU cores"


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

    A key is ``STAGE`` or ``MODEL:STAGE`` (kept as written; :func:`plan` resolves it). A stage's
    cores are ``N`` (one group of N cores), ``A+B+...`` (groups of A, B, ... cores) or
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
                f"--per-chip {text!r}: {part!r} is not [MODEL:]STAGE=CORES; write e.g. "
                "detector=2,landmarks=2 or landmarks=4x1 or anymotion:pose=2,landmarks=1+1"
            ) from None
        if stage in layout:
            raise PlanError(f"--per-chip {text!r}: stage {stage} is given twice; use {stage}=1+1")
        layout[stage] = groups[0] if len(groups) == 1 else groups
    return layout


def parse_throughput(text: str) -> dict[str, float]:
    """``"detector=400,anymotion:pose=150"`` -> frames/s per core, per ``[MODEL:]STAGE``."""
    figures: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        stage, sep, value = part.partition("=")
        try:
            if not sep or not stage.strip():
                raise ValueError
            fps = float(value)
        except ValueError:
            raise PlanError(
                f"--throughput {text!r}: {part!r} is not [MODEL:]STAGE=FPS; write e.g. "
                "landmarks=150 or anymotion:pose=103 (frames/s per core)"
            ) from None
        if stage.strip() in figures:
            raise PlanError(f"--throughput {text!r}: {stage.strip()} is given twice")
        figures[stage.strip()] = fps
    return figures
