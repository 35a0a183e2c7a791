"""``posequeue plan`` and ``posequeue flower`` (``metrics`` and ``up`` live in their own modules).
``add_commands(subparsers)`` adds all four to the ``posequeue`` command; ``python -m
posequeue.fleet.cli`` runs them on their own."""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from collections.abc import Mapping

from posequeue.errors import EXIT_REFUSED

FORMATS = ("table", "json", "compose", "systemd")
DEFAULT_FLOWER_PORT = 5555
DEFAULT_FLOWER_ADDRESS = "127.0.0.1"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``plan`` and ``flower`` to a parser's subcommands (each sets ``run``)."""
    from posequeue.fleet.instances import names

    p = subparsers.add_parser(
        "plan",
        help="lay one host's workers out on its cores (replicating a per-chip layout)",
        description="Replicate a per-chip layout on every chip of an instance: one worker per "
        "core group, pinned by NEURON_RT_VISIBLE_CORES to cores of its own chip. A chip may "
        "serve several models (anymotion:pose=2,blazepose:landmarks=2); models and stages are "
        "checked against the built-in models and the spec files in POSEQUEUE_MODEL_SPECS.",
    )
    p.add_argument("instance", metavar="INSTANCE", help=f"one of: {', '.join(names())}")
    p.add_argument(
        "--per-chip",
        metavar="[MODEL:]STAGE=CORES[,...]",
        help="cores of one chip per stage: N (one group), A+B (groups of A and B "
        "cores) or GxN (G groups of N); a bare STAGE is one of --model, MODEL:STAGE "
        "one of another model; ingest=0 adds one producer per host. Without it, `cpu` "
        "shows the default layout of a plain `posequeue worker` on this host",
    )
    p.add_argument(
        "--model",
        default="blazepose",
        help="model of the bare STAGE keys and of the producer (default blazepose)",
    )
    p.add_argument(
        "--throughput",
        metavar="[MODEL:]STAGE=FPS[,...]",
        help="frames/s per core of each stage (measured, or given), keyed as in "
        "--per-chip, for expected frames/s and $ per million frames per model",
    )
    p.add_argument(
        "--price",
        type=float,
        metavar="USD_PER_HOUR",
        help="host price per hour (default: the catalogue's on-demand us-east-1 price)",
    )
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(run=cmd_plan)

    p = subparsers.add_parser(
        "flower",
        help="run Flower (workers, tasks, queue depth) for the posequeue app",
        description="Flower for the posequeue Celery app and the broker in POSEQUEUE_BROKER_URL. "
        "Other Flower options come from FLOWER_* variables; basic auth from "
        "FLOWER_BASIC_AUTH=user:password, required to listen beyond localhost.",
    )
    p.add_argument("--port", type=int, help=f"default: FLOWER_PORT or {DEFAULT_FLOWER_PORT}")
    p.add_argument("--address", help=f"default: FLOWER_ADDRESS or {DEFAULT_FLOWER_ADDRESS}")
    p.set_defaults(run=cmd_flower)
    from posequeue.fleet import metrics, up

    metrics.add_command(subparsers)
    up.add_command(subparsers)


# -- plan -----------------------------------------------------------------------------------
def cmd_plan(args: argparse.Namespace) -> int:
    from posequeue.fleet.instances import UnknownInstanceError
    from posequeue.fleet.plan import PlanError, parse_layout, parse_throughput, plan
    from posequeue.fleet.render import RENDERERS, render_default_cpu

    if args.per_chip is None:
        if args.instance != "cpu":
            print(
                f"error: {args.instance}: give --per-chip (e.g. --per-chip detector=2,landmarks=2)",
                file=sys.stderr,
            )
            return EXIT_REFUSED
        sys.stdout.write(render_default_cpu(args.model, args.format))
        return 0
    try:
        layout = parse_layout(args.per_chip)
        throughput = parse_throughput(args.throughput) if args.throughput else None
        result = plan(args.instance, layout, throughput, model=args.model, price_per_hour=args.price)
    except (PlanError, UnknownInstanceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    sys.stdout.write(RENDERERS[args.format](result))
    return 0


# -- flower ---------------------------------------------------------------------------------
def is_loopback(address: str) -> bool:
    """True when ``address`` (an IP or a host name) only reaches this machine."""
    if not address:  # Tornado: all interfaces
        return False
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(address, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def exposure_problem(address: str, env: Mapping[str, str]) -> str | None:
    """Why Flower must not listen on ``address`` with this environment, or None."""
    if is_loopback(address):
        return None
    where = address or "every interface"
    if not env.get("FLOWER_BASIC_AUTH"):
        return (
            f"refusing to serve Flower on {where} without authentication: set "
            "FLOWER_BASIC_AUTH=user:password, or listen on 127.0.0.1"
        )
    if env.get("FLOWER_UNAUTHENTICATED_API", "").lower() in ("1", "true", "yes", "on"):
        return (
            f"refusing to serve Flower on {where} with FLOWER_UNAUTHENTICATED_API set: its "
            "API (which can revoke tasks and shut workers down) would need no password"
        )
    return None


def flower_argv(port: int, address: str) -> list[str]:
    return ["flower", f"--port={port}", f"--address={address}"]


def cmd_flower(args: argparse.Namespace) -> int:
    port = args.port or int(os.environ.get("FLOWER_PORT") or DEFAULT_FLOWER_PORT)
    address = (
        args.address if args.address is not None else os.environ.get("FLOWER_ADDRESS", DEFAULT_FLOWER_ADDRESS)
    )
    problem = exposure_problem(address, os.environ)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_REFUSED
    try:
        import flower  # noqa: F401
    except ImportError:
        print("error: Flower is not installed; pip install 'posequeue[flower]'", file=sys.stderr)
        return EXIT_REFUSED
    from posequeue.config.celery_app import app

    # As `celery -A posequeue.config.celery_app:app flower --port=... --address=...`: the app
    # (and so the broker in POSEQUEUE_BROKER_URL, and the declared queues whose depth Flower
    # shows) comes from here; FLOWER_* variables set the rest.
    return int(app.start(flower_argv(port, address)) or 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="posequeue")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
