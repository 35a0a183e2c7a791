"""Renderings of a plan: a table for people, JSON for tools, a docker-compose fragment and
systemd units. ``RENDERERS`` maps each ``--format`` name to its function.

The compose fragment is written with PyYAML (a core dependency: `plan` runs on any host).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from posequeue.errors import EXIT_REFUSED
from posequeue.fleet.plan import ModelRate, Plan, StageKey, WorkerPlan

# Celery's warm shutdown (SIGTERM) lets the running batch finish; give it longer than the default
# task_time_limit (300 s) before the container or unit is killed.
STOP_GRACE_SECONDS = 330

NEURON_IMAGE = "${POSEQUEUE_NEURON_IMAGE:-posequeue/worker-neuron}"
CPU_IMAGE = "${POSEQUEUE_CPU_IMAGE:-posequeue/worker-cpu}"
PRODUCER_IMAGE = "${POSEQUEUE_PRODUCER_IMAGE:-posequeue/producer}"
COMPOSE_BROKER = "${POSEQUEUE_BROKER_URL:-redis://redis:6379/0}"
POSEQUEUE_BIN = "/usr/local/bin/posequeue"
ENTRYPOINT = "/usr/bin/env"


def _money(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"${value:,.{digits}f}"


# -- table ----------------------------------------------------------------------------------
def render_table(plan: Plan) -> str:
    host = plan.instance
    kind = host.core_kind if host.is_neuron else "CPU cores"
    facts = [
        f"{host.chips} chip{'s' if host.chips > 1 else ''} x {host.cores_per_chip} {kind}",
        f"{host.vcpus} vCPU",
    ]
    if host.memory_gib is not None:
        facts.append(f"{host.memory_gib:g} GiB" if host.is_neuron else f"{host.memory_gib:.1f} GiB")
    if host.network:
        facts.append(host.network)
    price = "no price" if plan.price_per_hour is None else f"{_money(plan.price_per_hour)}/h"
    models = plan.models or (plan.model,)
    lines = [
        f"{host.name}: {', '.join(facts)}; {price}",
        f"model{'s' if len(models) > 1 else ''} {', '.join(models)}, per chip {plan.layout_text}: "
        f"{len(plan.workers)} workers, {plan.idle_cores_per_chip} idle cores per chip",
        "",
    ]
    rates = plan.throughput
    header = ["WORKER", "MODEL", "STAGE", "QUEUE", "CORES", "DEVICE"] + (["FRAMES/S"] if rates else [])
    rows = [header]
    for w in plan.workers:
        row = [w.name, w.model, w.stage, w.queue, w.cores_spec or "-", ",".join(w.devices) or "-"]
        if rates:
            key = StageKey(w.model, w.stage)
            row.append(f"{len(w.cores) * rates[key]:.1f}" if key in rates else "-")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        cells = [
            c.rjust(widths[i]) if header[i] == "FRAMES/S" else c.ljust(widths[i]) for i, c in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    lines.append("")
    lines.extend(_summary(plan))
    lines.append(payload_line())
    return "\n".join(lines) + "\n"


def payload_layout() -> dict[str, Any]:
    """How and where batch payloads travel, from this environment's settings."""
    from posequeue.config.settings import get_settings

    s = get_settings()
    return {
        "codec": s.payload_codec,
        "quality": s.payload_quality if s.payload_codec == "jpeg" else None,
        "servers": [re.sub(r"//[^@/]*@", "//", url) for url in s.payload_servers],  # no passwords
        "on_broker": s.payload_servers == [s.broker_url],
    }


def payload_line() -> str:
    p = payload_layout()
    how = (
        f"jpeg frames (quality {p['quality']}) + the detector's exact input, ~0.5 MB per 1280x720 frame "
        "through Redis"
        if p["codec"] == "jpeg"
        else "raw frames, 5.5 MB per 1280x720 frame through Redis"
    )
    where = "on the broker" if p["on_broker"] else f"on {len(p['servers'])} payload servers, spread by key"
    return f"payloads: {how}, {where} (POSEQUEUE_PAYLOAD_CODEC, POSEQUEUE_PAYLOAD_URLS)"


def render_default_cpu(model: str, fmt: str) -> str:
    """What a plain ``posequeue worker`` starts on this CPU host (worker/per_core.py)."""
    from posequeue.fleet.instances import cpu_host

    cores = list(cpu_host().core_ids or ())
    layout = {
        "instance": "cpu",
        "model": model,
        "command": "posequeue worker",
        "queues": "ingest and every stage",
        "processes": [{"cores": [c], "runtime_threads": 1} for c in cores],
        "payloads": payload_layout(),
    }
    if fmt == "json":
        return json.dumps(layout, indent=2) + "\n"
    if fmt != "table":
        return f"--format {fmt} needs --per-chip; the default CPU layout is one command: posequeue worker\n"
    return (
        f"cpu: {len(cores)} CPU cores ({', '.join(map(str, cores))})\n"
        f"default layout: `posequeue worker` (model {model}) serves ingest and every stage with "
        f"{len(cores)} single-thread processes, one pinned to each core; the fastest layout "
        "measured on CPU (docs/performance.md). --concurrency 1 gives the old one process on "
        "every core.\n" + payload_line() + "\n"
    )


def _summary(plan: Plan) -> list[str]:
    absent = plan.absent_stages()
    lines = [
        f"{model}: no core of this host serves {', '.join(stages)}; run those workers on "
        "other hosts, or its frames go no further"
        for model, stages in absent.items()
    ]
    stage_rates, model_rates = plan.stage_rates(), plan.model_rates()
    if not stage_rates or not model_rates:
        return [
            *lines,
            "expected frames/s and $ per million frames: give --throughput "
            "[MODEL:]STAGE=FPS,... (frames/s per core, per stage)",
        ]
    per_stage = "; ".join(f"{plan.label(k)} {r:,.1f}" for k, r in stage_rates.items())
    lines.append(f"stage frames/s (per-core figures given x cores): {per_stage}")
    used = sum(r.cores for r in model_rates.values())
    for rate in model_rates.values():
        # Each model is a pipeline of its own: the slowest of its stages sets its frames/s.
        elsewhere = f"; {', '.join(absent[rate.model])} not on this host" if rate.model in absent else ""
        lines.append(
            f"expected frames/s of {rate.model}: {rate.frames_per_second:,.1f} (limited "
            f"by {rate.bottleneck}{elsewhere}); {_cost_text(plan, rate, used)}"
        )
    return lines


def _cost_text(plan: Plan, rate: ModelRate, used: int) -> str:
    if rate.cost_per_million_frames is None or plan.price_per_hour is None:
        return "$ per million frames: no price for this host (give --price USD_PER_HOUR)"
    price = f"{_money(plan.price_per_hour * rate.share)}/h"
    if rate.share < 1:  # several models: each pays for the cores it uses
        price += f" ({rate.cores} of the {used} cores in use)"
    return f"{_money(rate.cost_per_million_frames)} per million frames at {price}"


# -- json -----------------------------------------------------------------------------------
def render_json(plan: Plan) -> str:
    return json.dumps(plan.to_dict(), indent=2) + "\n"


# -- docker compose -------------------------------------------------------------------------
def compose_services(plan: Plan) -> dict[str, Any]:
    """The plan as a compose ``services`` mapping, one service per worker."""
    services: dict[str, Any] = {}
    for w in plan.workers:
        service: dict[str, Any] = {
            "image": _image(plan, w),
            # The images' ENTRYPOINT is `posequeue` (docker/); the command names its program
            # itself, so env (which execs it: the worker gets SIGTERM) replaces that entrypoint
            # and the service runs the same with an image whose entrypoint differs.
            "entrypoint": [ENTRYPOINT],
            "command": w.command(),
            "environment": {"POSEQUEUE_BROKER_URL": COMPOSE_BROKER, **w.env},
        }
        if w.devices:
            service["devices"] = list(w.devices)
        if w.cores and not plan.instance.is_neuron:
            service["cpuset"] = w.cores_spec  # the container may run on its cores only
        service["restart"] = "unless-stopped"
        service["stop_grace_period"] = f"{STOP_GRACE_SECONDS}s"
        services[w.name] = service
    return services


def _image(plan: Plan, worker: WorkerPlan) -> str:
    if not worker.cores:
        return PRODUCER_IMAGE
    return NEURON_IMAGE if plan.instance.is_neuron else CPU_IMAGE


def render_compose(plan: Plan) -> str:
    head = (
        f"# posequeue plan {plan.instance.name} --per-chip {plan.layout_text} "
        f"--model {plan.model}\n"
        "# Merge into a compose file that also runs Redis (service `redis`) and sets the\n"
        "# store (POSEQUEUE_STORE, AWS_*) for every worker.\n"
    )
    return head + to_yaml({"services": compose_services(plan)})


def to_yaml(value: Any) -> str:
    """Block-style YAML in the mapping's own order, no line folded (PyYAML)."""
    import yaml

    return str(yaml.safe_dump(value, sort_keys=False, default_flow_style=False, width=1 << 16))


# -- systemd --------------------------------------------------------------------------------
def unit_name(worker: WorkerPlan) -> str:
    return f"posequeue-{worker.name}.service"


def render_systemd(plan: Plan, executable: str = POSEQUEUE_BIN) -> str:
    """One unit per worker, each part of ``posequeue.target`` (start or stop the host's workers
    together), then the target. Each unit is preceded by a ``# file:`` line naming it."""
    units = [_unit(plan, w, executable) for w in plan.workers]
    target = (
        "# file: posequeue.target\n"
        "[Unit]\n"
        f"Description=posequeue workers of {plan.instance.name} "
        f"({plan.layout_text} per chip)\n"
        f"Wants={' '.join(unit_name(w) for w in plan.workers)}\n"
        "\n[Install]\nWantedBy=multi-user.target\n"
    )
    return "\n".join([*units, target])


def _unit(plan: Plan, w: WorkerPlan, executable: str) -> str:
    where = f"cores {w.cores_spec}" if w.cores else "unpinned"
    if w.devices:
        where += f" on {', '.join(w.devices)}"
    env = "".join(f'Environment="{k}={v}"\n' for k, v in w.env.items())
    command = " ".join([executable, *w.command()[1:]])
    return (
        f"# file: {unit_name(w)}\n"
        "[Unit]\n"
        f"Description=posequeue worker {w.name} (model {w.model}, stage {w.stage}, {where})\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n"
        "PartOf=posequeue.target\n"
        "\n[Service]\n"
        "Type=simple\n"
        "User=posequeue\n"
        "EnvironmentFile=-/etc/posequeue/posequeue.env\n"
        f"{env}"
        f"ExecStart={command}\n"
        "Restart=always\n"
        "RestartSec=5\n"
        "# Exit 2: the worker refused its configuration (claimed cores, unknown model, missing\n"
        "# model files); a restart cannot help, as `posequeue up` does not restart it either.\n"
        f"RestartPreventExitStatus={EXIT_REFUSED}\n"
        "# SIGTERM to the main process only: Celery's warm shutdown finishes the running batch.\n"
        "KillMode=mixed\n"
        f"TimeoutStopSec={STOP_GRACE_SECONDS}\n"
        "\n[Install]\n"
        "WantedBy=posequeue.target\n"
    )


RENDERERS: dict[str, Callable[[Plan], str]] = {
    "table": render_table,
    "json": render_json,
    "compose": render_compose,
    "systemd": render_systemd,
}
