"""Unit tests for posequeue.fleet: the instance catalogue, core-group plans and their renderings
(table, JSON, compose, systemd), and the ``plan`` command's exit codes."""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

import pytest
import yaml
from conftest import cli, user_spec

from posequeue.fleet.cli import add_commands
from posequeue.fleet.instances import CATALOGUE, UnknownInstanceError, get_instance
from posequeue.fleet.plan import PlanError, StageKey, check_name, parse_layout, parse_throughput, plan
from posequeue.fleet.render import render_compose, render_json, render_systemd, render_table

# Valid names: compose-spec's service key pattern; systemd's unit name characters (no "@": that
# makes a template).
COMPOSE_SERVICE = re.compile(r"^[a-zA-Z0-9._-]+$")
SYSTEMD_UNIT = re.compile(r"^[A-Za-z0-9:_.\\-]+\.service$")


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="posequeue")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return int(args.run(args))


# -- catalogue ------------------------------------------------------------------------------
def test_inf1_sizes_have_the_briefs_topology() -> None:
    """inf1 sizes carry 4 NeuronCores per chip and their chip counts and prices."""
    assert [
        (CATALOGUE[n].chips, CATALOGUE[n].cores)
        for n in ("inf1.xlarge", "inf1.2xlarge", "inf1.6xlarge", "inf1.24xlarge")
    ] == [(1, 4), (1, 4), (4, 16), (16, 64)]
    assert CATALOGUE["inf1.24xlarge"].price_per_hour == pytest.approx(4.721)
    assert CATALOGUE["inf2.48xlarge"].cores_per_chip == 2
    assert CATALOGUE["trn1.32xlarge"].cores == 32


def test_every_instance_has_at_least_as_many_vcpus_as_cores() -> None:
    """A worker per core group always has a vCPU of its own (the figures are consistent)."""
    for inst in CATALOGUE.values():
        assert inst.vcpus >= inst.cores, inst.name


def test_cpu_host_is_this_machine() -> None:
    """The cpu host's cores are the CPU ids this process may run on."""
    host = get_instance("cpu")
    assert not host.is_neuron
    assert host.chips == 1
    assert list(host.core_ids or ()) == sorted(os.sched_getaffinity(0))


def test_unknown_instance_lists_the_known_ones() -> None:
    """An unknown name is refused with the catalogue's names."""
    with pytest.raises(UnknownInstanceError, match="inf1.xlarge"):
        get_instance("inf9.huge")


# -- plans ----------------------------------------------------------------------------------
def test_xlarge_two_plus_two() -> None:
    """detector=2,landmarks=2 on inf1.xlarge: two workers on cores 0-1 and 2-3 of neuron0."""
    p = plan("inf1.xlarge", {"detector": 2, "landmarks": 2})
    assert [(w.stage, list(w.cores), w.devices) for w in p.workers] == [
        ("detector", [0, 1], ("/dev/neuron0",)),
        ("landmarks", [2, 3], ("/dev/neuron0",)),
    ]
    first = p.workers[0]
    assert first.queue == "pose.blazepose.detector"
    assert first.env == {"NEURON_RT_VISIBLE_CORES": "0-1", "NEURON_PROCESS_TAG": first.name}
    assert first.name == "blazepose-detector-c0-1"
    assert p.idle_cores_per_chip == 0


def test_24xlarge_replicates_the_layout_on_16_chips() -> None:
    """The same layout on inf1.24xlarge: 32 workers, global core indices, one device each."""
    p = plan("inf1.24xlarge", {"detector": 2, "landmarks": 2})
    assert len(p.workers) == 32
    assert sorted(c for w in p.workers for c in w.cores) == list(range(64))
    assert {d for w in p.workers for d in w.devices} == {f"/dev/neuron{i}" for i in range(16)}
    last = p.workers[-1]
    assert (last.stage, list(last.cores), last.devices) == ("landmarks", [62, 63], ("/dev/neuron15",))
    assert last.env["NEURON_RT_VISIBLE_CORES"] == "62-63"
    for w in p.workers:  # no group straddles two chips
        assert {c // 4 for c in w.cores} == {int(w.devices[0].removeprefix("/dev/neuron"))}
    assert len({w.name for w in p.workers}) == 32


def test_layout_larger_than_a_chip_is_refused() -> None:
    """3+2 cores on a 4-core chip is a PlanError naming the need and the chip's size."""
    with pytest.raises(PlanError) as err:
        plan("inf1.24xlarge", {"detector": 3, "landmarks": 2})
    assert "needs 5 cores per chip" in str(err.value)
    assert "has 4 NeuronCores" in str(err.value)


def test_one_plus_one_plus_one_plus_one() -> None:
    """Four single-core groups per chip, as one stage's groups or split between stages."""
    p = plan("inf1.xlarge", {"landmarks": [1, 1, 1, 1]})
    assert [list(w.cores) for w in p.workers] == [[0], [1], [2], [3]]
    assert [w.env["NEURON_RT_VISIBLE_CORES"] for w in p.workers] == ["0", "1", "2", "3"]
    p = plan("inf1.6xlarge", {"detector": 1, "landmarks": [1, 1, 1]})
    assert [w.stage for w in p.workers[:5]] == ["detector", "landmarks", "landmarks", "landmarks", "detector"]
    assert p.workers[4].devices == ("/dev/neuron1",) and p.workers[4].cores == (4,)


def test_inf2_chips_have_two_cores() -> None:
    """On NeuronCore-v2 chips (2 cores) a 1+1 layout fills each chip; 2+1 is refused."""
    p = plan("inf2.24xlarge", {"landmarks": [1, 1]})
    assert len(p.workers) == 12 and p.workers[-1].devices == ("/dev/neuron5",)
    with pytest.raises(PlanError, match="has 2 NeuronCores"):
        plan("inf2.xlarge", {"detector": 2, "landmarks": 1})


def test_ingest_zero_is_one_unpinned_producer_per_host() -> None:
    """ingest=0 adds one producer on the ingest queue, with no cores, env or devices."""
    p = plan("inf1.6xlarge", {"ingest": 0, "landmarks": 4})
    producers = [w for w in p.workers if w.stage == "ingest"]
    assert len(producers) == 1
    assert (producers[0].queue, producers[0].cores, producers[0].env, producers[0].devices) == (
        "ingest",
        (),
        {},
        (),
    )
    assert len(p.workers) == 5
    with pytest.raises(PlanError, match="ingest=0"):
        plan("inf1.xlarge", {"ingest": 2, "landmarks": 2})


@pytest.mark.parametrize("layout", [{}, {"landmarks": 0}, {"Bad-Name": 1}, {"landmarks": [2, 0]}])
def test_bad_layouts_are_refused(layout: dict[str, int]) -> None:
    """Empty layouts, zero-core groups and unusable stage names are PlanErrors."""
    with pytest.raises(PlanError):
        plan("inf1.xlarge", layout)


def test_model_names_the_queues(anymotion: str) -> None:
    """--model picks the stage queues, worker names and commands of bare stages."""
    p = plan("inf1.xlarge", {"pose": 4}, model=anymotion)
    (w,) = p.workers
    assert (w.name, w.model, w.queue) == ("anymotion-pose-c0-3", "anymotion", "pose.anymotion.pose")
    assert w.command()[:6] == ["posequeue", "worker", "--model", "anymotion", "--stage", "pose"]
    assert p.layout_text == "pose=4"


# -- two models on one chip -------------------------------------------------------------------
def test_two_models_two_plus_two_on_xlarge(anymotion: str) -> None:
    """anymotion:pose=2,blazepose:landmarks=2: cores 0-1 serve one model and 2-3 the other, each
    worker with its own model's name, queue, process tag and command."""
    p = plan("inf1.xlarge", {"anymotion:pose": 2, "blazepose:landmarks": 2})
    pose, landmarks = p.workers
    assert (pose.name, pose.model, pose.stage, pose.queue, pose.cores) == (
        "anymotion-pose-c0-1",
        "anymotion",
        "pose",
        "pose.anymotion.pose",
        (0, 1),
    )
    assert (landmarks.name, landmarks.model, landmarks.queue, landmarks.cores) == (
        "blazepose-landmarks-c2-3",
        "blazepose",
        "pose.blazepose.landmarks",
        (2, 3),
    )
    assert pose.env == {"NEURON_RT_VISIBLE_CORES": "0-1", "NEURON_PROCESS_TAG": "anymotion-pose-c0-1"}
    assert landmarks.env == {
        "NEURON_RT_VISIBLE_CORES": "2-3",
        "NEURON_PROCESS_TAG": "blazepose-landmarks-c2-3",
    }
    assert pose.devices == landmarks.devices == ("/dev/neuron0",)
    assert pose.command() == [
        "posequeue",
        "worker",
        "--model",
        "anymotion",
        "--stage",
        "pose",
        "--cores",
        "0-1",
    ]
    assert landmarks.command() == [
        "posequeue",
        "worker",
        "--model",
        "blazepose",
        "--stage",
        "landmarks",
        "--cores",
        "2-3",
    ]
    assert p.models == ("anymotion", "blazepose") and p.idle_cores_per_chip == 0
    assert p.layout_text == "anymotion:pose=2,blazepose:landmarks=2"


def test_bare_stages_are_the_plans_model(anymotion: str) -> None:
    """A bare STAGE is one of --model; the same split written either way is the same plan."""
    qualified = plan("inf1.xlarge", {"anymotion:pose": 2, "blazepose:landmarks": 2})
    assert plan("inf1.xlarge", {"anymotion:pose": 2, "landmarks": 2}).workers == qualified.workers
    assert (
        plan("inf1.xlarge", {"pose": 2, "blazepose:landmarks": 2}, model=anymotion).workers
        == qualified.workers
    )


def test_two_models_replicated_on_6xlarge(anymotion: str) -> None:
    """The 2+2 split on inf1.6xlarge: 4 chips, 8 workers, each chip's first two cores anymotion
    and last two blazepose, each on its chip's device."""
    p = plan("inf1.6xlarge", {"anymotion:pose": 2, "blazepose:landmarks": 2})
    assert len(p.workers) == 8
    for chip in range(4):
        pose, landmarks = p.workers[2 * chip : 2 * chip + 2]
        base = 4 * chip
        assert (pose.model, pose.cores) == ("anymotion", (base, base + 1))
        assert (landmarks.model, landmarks.cores) == ("blazepose", (base + 2, base + 3))
        assert pose.devices == landmarks.devices == (f"/dev/neuron{chip}",)
        assert landmarks.env["NEURON_RT_VISIBLE_CORES"] == f"{base + 2}-{base + 3}"
    assert {d for w in p.workers for d in w.devices} == {f"/dev/neuron{i}" for i in range(4)}
    assert p.workers[-1].name == "blazepose-landmarks-c14-15"
    assert len({w.name for w in p.workers}) == 8


@pytest.mark.parametrize(
    ("layout", "model", "message"),
    [
        ({"movenet:pose": 2}, "blazepose", "unknown model 'movenet'; known models: .*anymotion, blazepose"),
        (
            {"blazepose:pose": 2},
            "blazepose",
            "'blazepose' has no stage 'pose'; its stages: detector, landmarks",
        ),
        ({"pose": 2}, "blazepose", "has no stage 'pose'"),
        ({"landmarks": 2}, "movenet", "unknown model 'movenet'"),
        (
            {"anymotion:landmarks": 2},
            "blazepose",
            "model 'anymotion' has no stage 'landmarks'; its stages: pose",
        ),
        ({"anymotion:ingest": 0, "landmarks": 2}, "blazepose", "serve every model; write ingest=0"),
        ({"a:b:c": 2}, "blazepose", "not STAGE or MODEL:STAGE"),
        ({":pose": 2}, "blazepose", "not STAGE or MODEL:STAGE"),
        ({"pose": 2, "anymotion:pose": 2}, "anymotion", "anymotion:pose is given twice"),
    ],
)
def test_unknown_models_and_stages_are_refused(
    anymotion: str,
    layout: dict,
    model: str,
    message: str,
) -> None:
    """A layout naming a model or stage the catalogue lacks is refused with the known names."""
    with pytest.raises(PlanError, match=message):
        plan("inf1.xlarge", layout, model=model)


@pytest.mark.parametrize("name", ["blazepose", "blazepose-tf", "pose_v2", "a1-b2-c3"])
def test_usable_names(name: str) -> None:
    """Lower-case letters, digits, _ and inner - fit queue, service and unit names."""
    check_name("model", name)


@pytest.mark.parametrize(
    "name", ["BlazePose", "pose.v2", "a:b", "-pose", "pose-", "a--b", "2pose", "a b", "pose@1", ""]
)
def test_unusable_names(name: str) -> None:
    """Upper case, dots (queue separators), colons, stray - and others are refused with the fix."""
    with pytest.raises(PlanError, match="rename it .*e.g. blazepose-tf"):
        check_name("model", name)


def test_a_known_model_with_an_unusable_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A spec may name a model anything; a plan refuses a name that breaks queue or unit names."""
    from posequeue.config.catalogue import CATALOGUE as MODELS

    monkeypatch.setitem(MODELS, "Pose.v2", MODELS["blazepose"])
    with pytest.raises(PlanError, match="model name 'Pose.v2' cannot be part of queue"):
        plan("inf1.xlarge", {"Pose.v2:landmarks": 2})


def test_cpu_plan_has_no_neuron_env_or_devices() -> None:
    """On the cpu host workers own CPU ids and carry no Neuron environment or devices."""
    host = get_instance("cpu")
    p = plan(host, {"landmarks": [1] * host.cores_per_chip})
    assert [w.cores[0] for w in p.workers] == list(host.core_ids or ())
    assert all(w.env == {} and w.devices == () for w in p.workers)
    with pytest.raises(PlanError, match="CPU cores"):
        plan(host, {"landmarks": host.cores_per_chip + 1})


def test_throughput_gives_host_rate_and_cost() -> None:
    """A model's frames/s is its slowest stage's cores x per-core rate; cost follows the price."""
    p = plan("inf1.xlarge", {"detector": 1, "landmarks": 3}, {"detector": 400, "landmarks": 100})
    assert p.stage_rates() == {
        StageKey("blazepose", "detector"): 400.0,
        StageKey("blazepose", "landmarks"): 300.0,
    }
    rate = (p.model_rates() or {})["blazepose"]
    assert (rate.frames_per_second, rate.bottleneck, rate.share) == (300.0, "landmarks", 1.0)
    assert rate.cost_per_million_frames == pytest.approx(0.228 / (300 * 3600) * 1e6)


def test_throughput_per_model(anymotion: str) -> None:
    """Two models are two pipelines: each has its own frames/s (no min across models) and pays
    for the cores it uses."""
    p = plan(
        "inf1.xlarge",
        {"anymotion:pose": 2, "detector": 1, "landmarks": 1},
        {"anymotion:pose": 103, "blazepose:detector": 400, "landmarks": 150},
    )
    rates = p.model_rates() or {}
    assert list(rates) == ["anymotion", "blazepose"]
    assert (rates["anymotion"].frames_per_second, rates["anymotion"].bottleneck) == (206.0, "pose")
    assert (rates["blazepose"].frames_per_second, rates["blazepose"].bottleneck) == (150.0, "landmarks")
    assert rates["anymotion"].share == rates["blazepose"].share == 0.5
    assert rates["anymotion"].cost_per_million_frames == pytest.approx(0.114 / (206 * 3600) * 1e6)
    assert rates["blazepose"].cost_per_million_frames == pytest.approx(0.114 / (150 * 3600) * 1e6)


@pytest.mark.parametrize(
    ("figures", "message"),
    [
        ({"anymotion:pose": 100}, "no throughput figure for landmarks; .* anymotion:pose=100,landmarks=100"),
        (
            {"pose": 100, "landmarks": 100},
            "throughput given for pose, .* its stages: anymotion:pose, landmarks",
        ),
        (
            {"anymotion:pose": 1, "landmarks": 1, "blazepose:landmarks": 2},
            "blazepose:landmarks is given twice",
        ),
    ],
)
def test_throughput_keys_are_model_stages(anymotion: str, figures: dict[str, float], message: str) -> None:
    """Throughput keys resolve like layout keys: a bare stage is one of --model."""
    with pytest.raises(PlanError, match=message):
        plan("inf1.xlarge", {"anymotion:pose": 2, "landmarks": 2}, figures)


@pytest.mark.parametrize(
    ("figures", "message"),
    [
        ({"landmarks": 100}, "no throughput figure for detector; .* --throughput detector=100,landmarks=100"),
        ({"detector": 1, "landmarks": 1, "ingest": 5}, "throughput given for ingest"),
        ({"detector": 0, "landmarks": 1}, "above 0"),
    ],
)
def test_throughput_must_match_the_layout(figures: dict[str, float], message: str) -> None:
    """Figures for every cored stage, none for others, all positive."""
    with pytest.raises(PlanError, match=message):
        plan("inf1.xlarge", {"ingest": 0, "detector": 2, "landmarks": 2}, figures)


@pytest.mark.parametrize(
    ("text", "layout"),
    [
        ("detector=2,landmarks=2", {"detector": 2, "landmarks": 2}),
        ("landmarks=1+1+1+1", {"landmarks": [1, 1, 1, 1]}),
        ("landmarks=4x1", {"landmarks": [1, 1, 1, 1]}),
        (" ingest=0 , landmarks=2x2 ", {"ingest": 0, "landmarks": [2, 2]}),
        ("anymotion:pose=2,blazepose:landmarks=1+1", {"anymotion:pose": 2, "blazepose:landmarks": [1, 1]}),
        ("blazepose-tf:pose=2x1", {"blazepose-tf:pose": [1, 1]}),
    ],
)
def test_parse_layout(text: str, layout: dict[str, int]) -> None:
    """N, A+B and GxN forms parse to group sizes."""
    assert parse_layout(text) == layout


@pytest.mark.parametrize("text", ["", "landmarks", "landmarks=", "=2", "a=x", "a=0x2", "a=1,a=1"])
def test_parse_layout_errors(text: str) -> None:
    """Malformed --per-chip values are PlanErrors that show the expected form."""
    with pytest.raises(PlanError, match=r"\[MODEL:\]STAGE=CORES|given twice"):
        parse_layout(text)


def test_parse_throughput() -> None:
    """[MODEL:]STAGE=FPS pairs parse to floats; malformed or repeated ones are refused."""
    assert parse_throughput("detector=400,anymotion:pose=150.5") == {
        "detector": 400.0,
        "anymotion:pose": 150.5,
    }
    with pytest.raises(PlanError, match="STAGE=FPS"):
        parse_throughput("landmarks=fast")
    with pytest.raises(PlanError, match="given twice"):
        parse_throughput("landmarks=1,landmarks=2")


# -- renderings -----------------------------------------------------------------------------
def test_json_shape() -> None:
    """JSON: an object with the instance name and the workers, each with the issue's fields."""
    doc = json.loads(render_json(plan("inf1.xlarge", {"detector": 2, "landmarks": 2})))
    assert set(doc) == {"instance", "workers"} and doc["instance"] == "inf1.xlarge"
    assert doc["workers"][1] == {
        "name": "blazepose-landmarks-c2-3",
        "model": "blazepose",
        "stage": "landmarks",
        "queue": "pose.blazepose.landmarks",
        "cores": [2, 3],
        "env": {"NEURON_RT_VISIBLE_CORES": "2-3", "NEURON_PROCESS_TAG": "blazepose-landmarks-c2-3"},
        "devices": ["/dev/neuron0"],
    }


def test_compose_parses_back_with_devices_and_env() -> None:
    """The compose fragment is YAML with one service per worker, its device and pinning env."""
    p = plan("inf1.6xlarge", {"ingest": 0, "detector": 2, "landmarks": 2})
    doc = yaml.safe_load(render_compose(p))
    services = doc["services"]
    assert list(services) == [w.name for w in p.workers]
    det = services["blazepose-detector-c4-5"]
    assert det["devices"] == ["/dev/neuron1"]
    assert det["environment"]["NEURON_RT_VISIBLE_CORES"] == "4-5"
    assert det["environment"]["NEURON_PROCESS_TAG"] == "blazepose-detector-c4-5"
    assert det["command"] == [
        "posequeue",
        "worker",
        "--model",
        "blazepose",
        "--stage",
        "detector",
        "--cores",
        "4-5",
    ]
    producer = services["blazepose-ingest"]
    assert "devices" not in producer and "NEURON_RT_VISIBLE_CORES" not in producer["environment"]
    assert producer["command"][-2:] == ["--stage", "ingest"]


def test_compose_for_cpu_uses_cpuset() -> None:
    """On the cpu host a service is confined to its CPU cores and has no devices."""
    host = get_instance("cpu")
    doc = yaml.safe_load(render_compose(plan(host, {"landmarks": 1})))
    (service,) = doc["services"].values()
    assert service["cpuset"] == str(host.core_id(0)) and "devices" not in service


def test_systemd_units() -> None:
    """One unit per worker with its pinning env and an ExecStart with --cores, plus a target; a
    worker that refuses its configuration (exit 2) is not restarted, as under `posequeue up`."""
    p = plan("inf1.xlarge", {"detector": 2, "landmarks": 2})
    text = render_systemd(p)
    assert text.count("[Service]") == 2
    assert "# file: posequeue-blazepose-detector-c0-1.service" in text
    assert (
        "ExecStart=/usr/local/bin/posequeue worker --model blazepose --stage landmarks --cores 2-3"
    ) in text
    assert 'Environment="NEURON_RT_VISIBLE_CORES=0-1"' in text
    assert "# file: posequeue.target" in text and "WantedBy=posequeue.target" in text
    assert text.count("RestartPreventExitStatus=2\n") == 2  # a refused worker is not restarted


def test_compose_for_two_models(anymotion: str) -> None:
    """The 2+2 split across two models: one service per worker, each running its own model on
    its own cores, with valid service names."""
    text = render_compose(plan("inf1.xlarge", {"anymotion:pose": 2, "blazepose:landmarks": 2}))
    assert text.startswith(
        "# posequeue plan inf1.xlarge --per-chip anymotion:pose=2,blazepose:landmarks=2 --model blazepose\n"
    )
    services = yaml.safe_load(text)["services"]
    assert list(services) == ["anymotion-pose-c0-1", "blazepose-landmarks-c2-3"]
    assert all(COMPOSE_SERVICE.match(name) for name in services)
    pose, landmarks = services.values()
    assert pose["command"] == [
        "posequeue",
        "worker",
        "--model",
        "anymotion",
        "--stage",
        "pose",
        "--cores",
        "0-1",
    ]
    assert landmarks["command"] == [
        "posequeue",
        "worker",
        "--model",
        "blazepose",
        "--stage",
        "landmarks",
        "--cores",
        "2-3",
    ]
    assert pose["environment"]["NEURON_RT_VISIBLE_CORES"] == "0-1"
    assert pose["environment"]["NEURON_PROCESS_TAG"] == "anymotion-pose-c0-1"
    assert landmarks["environment"]["NEURON_RT_VISIBLE_CORES"] == "2-3"
    assert pose["devices"] == landmarks["devices"] == ["/dev/neuron0"]


def test_systemd_for_two_models(anymotion: str) -> None:
    """Each unit runs its worker's own model; unit names are valid and the target wants both."""
    text = render_systemd(plan("inf1.xlarge", {"anymotion:pose": 2, "blazepose:landmarks": 2}))
    units = re.findall(r"^# file: (\S+)$", text, re.M)
    assert units == [
        "posequeue-anymotion-pose-c0-1.service",
        "posequeue-blazepose-landmarks-c2-3.service",
        "posequeue.target",
    ]
    assert all(SYSTEMD_UNIT.match(u) for u in units[:2])
    assert ("ExecStart=/usr/local/bin/posequeue worker --model anymotion --stage pose --cores 0-1") in text
    assert (
        "ExecStart=/usr/local/bin/posequeue worker --model blazepose --stage landmarks --cores 2-3"
    ) in text
    assert 'Environment="NEURON_PROCESS_TAG=anymotion-pose-c0-1"' in text
    assert 'Environment="NEURON_RT_VISIBLE_CORES=2-3"' in text
    assert f"Wants={units[0]} {units[1]}" in text


def test_table_for_two_models(anymotion: str) -> None:
    """The table names both models and gives frames/s and cost per model, each at its share of
    the host's price."""
    text = render_table(
        plan(
            "inf1.xlarge",
            {"anymotion:pose": 2, "blazepose:landmarks": 2},
            {"anymotion:pose": 103, "blazepose:landmarks": 150},
        )
    )
    assert "models anymotion, blazepose, per chip anymotion:pose=2,blazepose:landmarks=2" in text
    assert re.search(r"^anymotion-pose-c0-1 +anymotion +pose +pose\.anymotion\.pose +0-1 ", text, re.M)
    cost = f"${0.114 / (206 * 3600) * 1e6:.3f}"
    assert (
        f"expected frames/s of anymotion: 206.0 (limited by pose); {cost} per million frames "
        "at $0.114/h (2 of the 4 cores in use)"
    ) in text
    assert "expected frames/s of blazepose: 300.0 (limited by landmarks; detector not on this host)" in text


def test_table_names_stages_a_model_lacks_on_the_host(anymotion: str) -> None:
    """A model whose stages are not all on the host is named with the stages missing; a model
    with all its stages here is not."""
    text = render_table(plan("inf1.xlarge", {"anymotion:pose": 2, "blazepose:landmarks": 2}))
    assert "blazepose: no core of this host serves detector; run those workers on other hosts" in text
    assert "anymotion: no core" not in text
    whole = plan("inf1.xlarge", {"anymotion:pose": 2, "detector": 1, "landmarks": 1})
    assert whole.absent_stages() == {} and "no core of this host" not in render_table(whole)


def test_table_with_and_without_throughput() -> None:
    """The table lists workers; with throughput it shows host frames/s and $ per million frames."""
    layout = {"detector": 2, "landmarks": 2}
    bare = render_table(plan("inf1.xlarge", layout))
    assert "blazepose-landmarks-c2-3" in bare and "/dev/neuron0" in bare
    assert "give --throughput" in bare
    text = render_table(plan("inf1.xlarge", layout, {"detector": 400, "landmarks": 150}))
    assert "expected frames/s of blazepose: 300.0 (limited by landmarks)" in text
    assert f"${0.228 / (300 * 3600) * 1e6:.3f} per million frames" in text
    assert "FRAMES/S" in text


def test_table_for_a_host_without_price() -> None:
    """No catalogue price (cpu, trn1.2xlarge): frames/s shown, cost asks for --price."""
    text = render_table(plan("trn1.2xlarge", {"landmarks": 2}, {"landmarks": 100}))
    assert "expected frames/s of blazepose: 200.0" in text and "give --price" in text
    text = render_table(plan("trn1.2xlarge", {"landmarks": 2}, {"landmarks": 100}, price_per_hour=1))
    assert "$1.389 per million frames" in text


# -- command --------------------------------------------------------------------------------
def test_plan_command_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    """`plan --format json` prints the plan and exits 0."""
    assert run_cli("plan", "inf1.24xlarge", "--per-chip", "detector=2,landmarks=2", "--format", "json") == 0
    assert len(json.loads(capsys.readouterr().out)["workers"]) == 32


@pytest.mark.parametrize(
    "argv",
    [
        ["plan", "inf1.xlarge", "--per-chip", "detector=3,landmarks=2"],
        ["plan", "inf9.huge", "--per-chip", "landmarks=1"],
        ["plan", "inf1.xlarge", "--per-chip", "landmarks"],
        ["plan", "inf1.xlarge", "--per-chip", "landmarks=4", "--throughput", "detector=3"],
        ["plan", "inf1.xlarge", "--per-chip", "pose=4"],
        ["plan", "inf1.xlarge", "--per-chip", "movenet:pose=4"],
    ],
)
def test_plan_command_refuses_with_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A bad layout, instance or figure: exit 2 and one `error:` line on stderr, nothing on stdout."""
    assert run_cli(*argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1


# -- users' models, through the command ----------------------------------------------------------
def test_plan_command_with_a_user_model(tmp_path: Path) -> None:
    """A spec file's model (a name with -) shares a chip with blazepose: the JSON names each
    worker's model and queue, compose and systemd names are valid, --throughput is per model."""
    env = user_spec(tmp_path, "blazepose-tf")
    layout = ["inf1.xlarge", "--per-chip", "blazepose-tf:pose=2,landmarks=2"]
    result = cli("plan", *layout, "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    pose, landmarks = json.loads(result.stdout)["workers"]
    assert (pose["name"], pose["model"], pose["queue"], pose["cores"]) == (
        "blazepose-tf-pose-c0-1",
        "blazepose-tf",
        "pose.blazepose-tf.pose",
        [0, 1],
    )
    assert (landmarks["model"], landmarks["queue"], landmarks["cores"]) == (
        "blazepose",
        "pose.blazepose.landmarks",
        [2, 3],
    )
    compose = cli("plan", *layout, "--format", "compose", env=env)
    services = yaml.safe_load(compose.stdout)["services"]
    assert all(COMPOSE_SERVICE.match(name) for name in services)
    assert services["blazepose-tf-pose-c0-1"]["command"][2:4] == ["--model", "blazepose-tf"]
    units = re.findall(
        r"^# file: (\S+\.service)$", cli("plan", *layout, "--format", "systemd", env=env).stdout, re.M
    )
    assert units == ["posequeue-blazepose-tf-pose-c0-1.service", "posequeue-blazepose-landmarks-c2-3.service"]
    assert all(SYSTEMD_UNIT.match(u) for u in units)
    table = cli("plan", *layout, "--throughput", "blazepose-tf:pose=50,landmarks=150", env=env)
    assert "expected frames/s of blazepose-tf: 100.0 (limited by pose)" in table.stdout
    assert "expected frames/s of blazepose: 300.0 (limited by landmarks;" in table.stdout


@pytest.mark.parametrize(
    ("model", "per_chip", "message"),
    [
        (
            "blazepose-tf",
            "blazepose-tf:landmarks=2",
            "'blazepose-tf' has no stage 'landmarks'; its stages: pose",
        ),
        ("blazepose-tf", "movenet:pose=2", "unknown model 'movenet'; known models: blazepose, blazepose-tf"),
        ("Pose.V2", "Pose.V2:pose=2", "name: 'Pose.V2' cannot name queues and workers"),
    ],
)
def test_plan_command_refuses_unknown_or_unusable_models(
    tmp_path,
    model: str,
    per_chip: str,
    message: str,
) -> None:
    """An unknown model or stage, or a spec name unusable in queue and unit names: exit 2 and
    the reason."""
    result = cli("plan", "inf1.xlarge", "--per-chip", per_chip, env=user_spec(tmp_path, model))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and message in result.stderr


def test_plan_cpu_without_a_layout_shows_the_default_worker(capsys: pytest.CaptureFixture[str]) -> None:
    """``plan cpu`` alone says what a plain ``posequeue worker`` starts here (a single-thread
    process pinned to each core) and how payloads travel; other instances need a layout."""
    cores = sorted(os.sched_getaffinity(0))
    assert run_cli("plan", "cpu") == 0
    out = capsys.readouterr().out
    assert f"{len(cores)} single-thread processes, one pinned to each core" in out
    assert "payloads: jpeg frames" in out and "on the broker" in out
    assert run_cli("plan", "cpu", "--format", "json") == 0
    layout = json.loads(capsys.readouterr().out)
    assert [p["cores"] for p in layout["processes"]] == [[c] for c in cores]
    assert layout["payloads"]["codec"] == "jpeg" and layout["payloads"]["on_broker"]
    assert run_cli("plan", "inf1.xlarge") == 2
    assert "give --per-chip" in capsys.readouterr().err
