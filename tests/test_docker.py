"""docker/: what can be checked without a Docker engine. The compose file parses and builds only
Dockerfiles that exist, every ``posequeue ...`` command line in the images and services parses
with posequeue's own argument parser, and the images ``posequeue plan --format compose`` names
are the ones the Dockerfiles are built as. Nothing here builds or runs an image."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT

from posequeue.cli import build_parser
from posequeue.fleet.plan import plan
from posequeue.fleet.render import ENTRYPOINT, render_compose

DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile.*"))
_DEFAULT = re.compile(r"^\$\{[A-Z_]+:-(.+)\}$")  # ${VAR:-default} -> default


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with a key twice (Compose refuses such files)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value if k.value != "<<"]
        dupes = {k for k in keys if keys.count(k) > 1}
        if dupes:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate keys {dupes}", node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_compose(text: str) -> dict[str, Any]:
    return yaml.load(text, Loader=_UniqueKeyLoader)


def instruction(dockerfile: Path, name: str) -> list[str] | None:
    """The exec-form (JSON array) argument of the last ``name`` instruction, or None."""
    found = None
    for line in dockerfile.read_text().splitlines():
        if line.startswith(f"{name} "):
            found = json.loads(line[len(name) + 1 :])
    return found


def intended_tag(dockerfile: Path) -> str:
    match = re.search(r"^# image: (\S+)$", dockerfile.read_text(), re.M)
    assert match, f"{dockerfile.name} has no '# image: NAME' line naming its tag"
    return match[1]


def default(image: str) -> str:
    match = _DEFAULT.match(image)
    return match[1] if match else image


def parses(argv: list[str]) -> None:
    """``posequeue ARGV`` is a valid command line for posequeue's own parser."""
    assert argv and argv[0] == "posequeue", argv
    args = build_parser().parse_args(argv[1:])
    assert callable(args.run)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose((DOCKER / "compose.yaml").read_text())


def test_the_three_images_exist_with_their_tags() -> None:
    """docker/ holds the CPU worker, Inferentia worker and producer images, each naming its tag."""
    assert {p.name: intended_tag(p) for p in DOCKERFILES} == {
        "Dockerfile.cpu": "posequeue/worker-cpu",
        "Dockerfile.neuron": "posequeue/worker-neuron",
        "Dockerfile.producer": "posequeue/producer",
    }


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_entrypoint_and_cmd_parse_as_posequeue_commands(dockerfile: Path) -> None:
    """ENTRYPOINT is `posequeue` and ENTRYPOINT + CMD is a command line posequeue accepts."""
    entrypoint, cmd = instruction(dockerfile, "ENTRYPOINT"), instruction(dockerfile, "CMD")
    assert entrypoint == ["posequeue"]
    parses([*entrypoint, *(cmd or [])])


def test_neuron_image_as_documented() -> None:
    """The Inferentia image: Python 3.10 base, tensorflow-neuron 2.10.1 from the Neuron pip
    repository, aws-neuronx-tools from the Neuron apt repository."""
    text = (DOCKER / "Dockerfile.neuron").read_text()
    assert re.search(r"^FROM ubuntu:22\.04$", text, re.M)  # its python3 is 3.10
    assert "--extra-index-url=https://pip.repos.neuron.amazonaws.com" in text
    assert '"tensorflow-neuron==2.10.1.*"' in text
    assert "https://apt.repos.neuron.amazonaws.com" in text and "aws-neuronx-tools" in text


def test_compose_builds_only_dockerfiles_that_exist(compose: dict[str, Any]) -> None:
    """Every build in compose.yaml names a Dockerfile in docker/ and is tagged as it intends."""
    tags = {p.name: intended_tag(p) for p in DOCKERFILES}
    built = 0
    for name, service in compose["services"].items():
        build = service.get("build")
        if not build:
            continue
        context = (DOCKER / build["context"]).resolve()
        dockerfile = context / build["dockerfile"]
        assert context == ROOT and dockerfile.exists(), f"{name}: {dockerfile}"
        assert default(service["image"]) == tags[dockerfile.name], name
        built += 1
    assert built >= 3


def test_compose_stack_has_what_the_issue_asks(compose: dict[str, Any]) -> None:
    """Redis, an S3-compatible server, Flower behind basic auth, a producer and one CPU worker
    per model stage, all on one broker."""
    services = compose["services"]
    assert {"redis", "s3", "flower", "producer"} <= set(services)
    stages = {
        s["command"][s["command"].index("--stage") + 1]
        for s in services.values()
        if "--stage" in s.get("command", [])
    }
    assert stages == {"ingest", "detector", "landmarks"}
    assert "FLOWER_BASIC_AUTH" in services["flower"]["environment"]
    assert {
        s["environment"]["POSEQUEUE_BROKER_URL"]
        for s in services.values()
        if "POSEQUEUE_BROKER_URL" in s.get("environment", {})
    } == {"redis://redis:6379/0"}


def test_compose_commands_parse(compose: dict[str, Any]) -> None:
    """Every service run by a posequeue image's entrypoint has a command posequeue accepts."""
    posequeue_images = {intended_tag(p) for p in DOCKERFILES}
    checked = 0
    for service in compose["services"].values():
        if default(service["image"]) not in posequeue_images or "entrypoint" in service:
            continue
        parses(["posequeue", *service["command"]])
        checked += 1
    assert checked >= 4  # flower, producer, two workers


@pytest.mark.parametrize("instance", ["cpu", "inf1.6xlarge"])
def test_plan_compose_uses_the_dockerfiles_images(instance: str) -> None:
    """`posequeue plan --format compose` names the images docker/ builds, and each of its
    services runs a command posequeue accepts."""
    tags = {intended_tag(p) for p in DOCKERFILES}
    layout = {"ingest": 0, "detector": 1, "landmarks": 1}
    services = load_compose(render_compose(plan(instance, layout)))["services"]
    images = {default(s["image"]) for s in services.values()}
    expected = {
        "posequeue/producer",
        "posequeue/worker-cpu" if instance == "cpu" else "posequeue/worker-neuron",
    }
    assert images == expected and images <= tags
    for service in services.values():
        assert service["entrypoint"] == [ENTRYPOINT]  # env execs the command's own program
        parses(service["command"])


def test_plan_fragment_merges_into_the_stack(compose: dict[str, Any]) -> None:
    """The plan's services reach the stack's Redis service by name."""
    services = load_compose(render_compose(plan("cpu", {"ingest": 0, "landmarks": 1})))["services"]
    assert "redis" in compose["services"]
    assert all(
        default(s["environment"]["POSEQUEUE_BROKER_URL"]).startswith("redis://redis:")
        for s in services.values()
    )


def test_compose_redis_persists_jobs(compose: dict[str, Any]) -> None:
    """Redis in the stack keeps an append-only file, synced every second, on a volume, and never
    evicts: jobs survive a Redis restart."""
    redis = compose["services"]["redis"]
    command = redis["command"]

    def option(name: str) -> str:
        return str(command[command.index(name) + 1])

    assert option("--appendonly") == "yes" and option("--appendfsync") == "everysec"
    assert option("--maxmemory-policy") == "noeviction"
    volume = next(v for v in redis["volumes"] if v.endswith(":" + option("--dir")))
    assert volume.split(":")[0] in compose["volumes"]
