"""Unit tests for posequeue.fleet: the instance catalogue, core-group plans and their renderings
(table, JSON, compose, systemd), and the ``plan`` command's exit codes."""

from __future__ import annotations

import argparse
import json
import os

import pytest

from posequeue.fleet.cli import add_commands
from posequeue.fleet.instances import CATALOGUE, UnknownInstanceError, get_instance
from posequeue.fleet.plan import PlanError, parse_layout, parse_throughput, plan
from posequeue.fleet.render import render_compose, render_json, render_systemd, render_table


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="posequeue")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return int(args.run(args))


# -- catalogue ------------------------------------------------------------------------------
def test_inf1_sizes_have_the_briefs_topology() -> None:
    """inf1 sizes carry 4 NeuronCores per chip and their chip counts and prices."""
    assert [(CATALOGUE[n].chips, CATALOGUE[n].cores) for n in
            ("inf1.xlarge", "inf1.2xlarge", "inf1.6xlarge", "inf1.24xlarge")] == [
        (1, 4), (1, 4), (4, 16), (16, 64)]  # fmt: skip
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
    assert (last.stage, list(last.cores), last.devices) == ("landmarks", [62, 63],
                                                             ("/dev/neuron15",))  # fmt: skip
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
    """Four single-core groups per chip, as one stage's groups or as four stages."""
    p = plan("inf1.xlarge", {"landmarks": [1, 1, 1, 1]})
    assert [list(w.cores) for w in p.workers] == [[0], [1], [2], [3]]
    assert [w.env["NEURON_RT_VISIBLE_CORES"] for w in p.workers] == ["0", "1", "2", "3"]
    p = plan("inf1.6xlarge", {"a": 1, "b": 1, "c": 1, "d": 1})
    assert [w.stage for w in p.workers[:5]] == ["a", "b", "c", "d", "a"]
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
def test_bad_layouts_are_refused(layout: dict) -> None:  # type: ignore[type-arg]
    """Empty layouts, zero-core groups and unusable stage names are PlanErrors."""
    with pytest.raises(PlanError):
        plan("inf1.xlarge", layout)


def test_model_names_the_queues() -> None:
    """--model picks the stage queues and the worker names."""
    p = plan("inf1.xlarge", {"landmarks": 4}, model="movenet")
    assert p.workers[0].queue == "pose.movenet.landmarks"
    assert p.workers[0].command("movenet")[:4] == ["posequeue", "worker", "--model", "movenet"]


def test_cpu_plan_has_no_neuron_env_or_devices() -> None:
    """On the cpu host workers own CPU ids and carry no Neuron environment or devices."""
    host = get_instance("cpu")
    p = plan(host, {"landmarks": [1] * host.cores_per_chip})
    assert [w.cores[0] for w in p.workers] == list(host.core_ids or ())
    assert all(w.env == {} and w.devices == () for w in p.workers)
    with pytest.raises(PlanError, match="CPU cores"):
        plan(host, {"landmarks": host.cores_per_chip + 1})


def test_throughput_gives_host_rate_and_cost() -> None:
    """Host frames/s is the slowest stage's cores x per-core rate; cost follows the price."""
    p = plan("inf1.xlarge", {"detector": 1, "landmarks": 3}, {"detector": 400, "landmarks": 100})
    assert p.stage_rates() == {"detector": 400.0, "landmarks": 300.0}
    assert p.frames_per_second() == 300.0 and p.bottleneck() == "landmarks"
    assert p.cost_per_million_frames() == pytest.approx(0.228 / (300 * 3600) * 1e6)


@pytest.mark.parametrize(("figures", "message"), [
    ({"landmarks": 100}, "no throughput figure for detector"),
    ({"detector": 1, "landmarks": 1, "ingest": 5}, "throughput given for ingest"),
    ({"detector": 0, "landmarks": 1}, "above 0"),
])  # fmt: skip
def test_throughput_must_match_the_layout(figures: dict[str, float], message: str) -> None:
    """Figures for every cored stage, none for others, all positive."""
    with pytest.raises(PlanError, match=message):
        plan("inf1.xlarge", {"ingest": 0, "detector": 2, "landmarks": 2}, figures)


@pytest.mark.parametrize(("text", "layout"), [
    ("detector=2,landmarks=2", {"detector": 2, "landmarks": 2}),
    ("landmarks=1+1+1+1", {"landmarks": [1, 1, 1, 1]}),
    ("landmarks=4x1", {"landmarks": [1, 1, 1, 1]}),
    (" ingest=0 , landmarks=2x2 ", {"ingest": 0, "landmarks": [2, 2]}),
])  # fmt: skip
def test_parse_layout(text: str, layout: dict) -> None:  # type: ignore[type-arg]
    """N, A+B and GxN forms parse to group sizes."""
    assert parse_layout(text) == layout


@pytest.mark.parametrize("text", ["", "landmarks", "landmarks=", "=2", "a=x", "a=0x2", "a=1,a=1"])
def test_parse_layout_errors(text: str) -> None:
    """Malformed --per-chip values are PlanErrors that show the expected form."""
    with pytest.raises(PlanError, match="STAGE=CORES|given twice"):
        parse_layout(text)


def test_parse_throughput() -> None:
    """STAGE=FPS pairs parse to floats; malformed ones are refused."""
    assert parse_throughput("detector=400,landmarks=150.5") == {"detector": 400.0,
                                                                 "landmarks": 150.5}  # fmt: skip
    with pytest.raises(PlanError, match="STAGE=FPS"):
        parse_throughput("landmarks=fast")


# -- renderings -----------------------------------------------------------------------------
def test_json_shape() -> None:
    """JSON: an object with the instance name and the workers, each with the issue's fields."""
    doc = json.loads(render_json(plan("inf1.xlarge", {"detector": 2, "landmarks": 2})))
    assert set(doc) == {"instance", "workers"} and doc["instance"] == "inf1.xlarge"
    assert doc["workers"][1] == {
        "name": "blazepose-landmarks-c2-3", "stage": "landmarks",
        "queue": "pose.blazepose.landmarks", "cores": [2, 3],
        "env": {"NEURON_RT_VISIBLE_CORES": "2-3", "NEURON_PROCESS_TAG": "blazepose-landmarks-c2-3"},
        "devices": ["/dev/neuron0"],
    }  # fmt: skip


def test_compose_parses_back_with_devices_and_env() -> None:
    """The compose fragment is YAML with one service per worker, its device and pinning env."""
    yaml = pytest.importorskip("yaml")
    p = plan("inf1.6xlarge", {"ingest": 0, "detector": 2, "landmarks": 2})
    doc = yaml.safe_load(render_compose(p))
    services = doc["services"]
    assert list(services) == [w.name for w in p.workers]
    det = services["blazepose-detector-c4-5"]
    assert det["devices"] == ["/dev/neuron1"]
    assert det["environment"]["NEURON_RT_VISIBLE_CORES"] == "4-5"
    assert det["environment"]["NEURON_PROCESS_TAG"] == "blazepose-detector-c4-5"
    assert det["command"] == ["posequeue", "worker", "--model", "blazepose", "--stage",
                              "detector", "--cores", "4-5"]  # fmt: skip
    producer = services["blazepose-ingest"]
    assert "devices" not in producer and "NEURON_RT_VISIBLE_CORES" not in producer["environment"]
    assert producer["command"][-2:] == ["--stage", "ingest"]


def test_compose_for_cpu_uses_cpuset() -> None:
    """On the cpu host a service is confined to its CPU cores and has no devices."""
    yaml = pytest.importorskip("yaml")
    host = get_instance("cpu")
    doc = yaml.safe_load(render_compose(plan(host, {"landmarks": 1})))
    (service,) = doc["services"].values()
    assert service["cpuset"] == str(host.core_id(0)) and "devices" not in service


def test_to_yaml_round_trips_awkward_values() -> None:
    """Quotes, colons, hashes, empty containers, numbers and null survive a YAML round trip."""
    yaml = pytest.importorskip("yaml")
    from posequeue.fleet.render import to_yaml

    value = {"a: b": ["x # y", 'say "hi"', "", "yes", "0-1", 3, 1.5, None, True, [], {}],
             "nested": [{"k": "v", "l": ["m"]}], "empty": {}}  # fmt: skip
    assert yaml.safe_load(to_yaml(value)) == value


def test_systemd_units() -> None:
    """One unit per worker with its pinning env and an ExecStart with --cores, plus a target."""
    p = plan("inf1.xlarge", {"detector": 2, "landmarks": 2})
    text = render_systemd(p)
    assert text.count("[Service]") == 2
    assert "# file: posequeue-blazepose-detector-c0-1.service" in text
    assert ("ExecStart=/usr/local/bin/posequeue worker --model blazepose --stage landmarks "
            "--cores 2-3") in text  # fmt: skip
    assert 'Environment="NEURON_RT_VISIBLE_CORES=0-1"' in text
    assert "# file: posequeue.target" in text and "WantedBy=posequeue.target" in text


def test_table_with_and_without_throughput() -> None:
    """The table lists workers; with throughput it shows host frames/s and $ per million frames."""
    layout = {"detector": 2, "landmarks": 2}
    bare = render_table(plan("inf1.xlarge", layout))
    assert "blazepose-landmarks-c2-3" in bare and "/dev/neuron0" in bare
    assert "give --throughput" in bare
    text = render_table(plan("inf1.xlarge", layout, {"detector": 400, "landmarks": 150}))
    assert "expected host frames/s: 300.0 (limited by landmarks)" in text
    assert f"${0.228 / (300 * 3600) * 1e6:.3f} per million frames" in text
    assert "FRAMES/S" in text


def test_table_for_a_host_without_price() -> None:
    """No catalogue price (cpu, trn1.2xlarge): frames/s shown, cost asks for --price."""
    text = render_table(plan("trn1.2xlarge", {"landmarks": 2}, {"landmarks": 100}))
    assert "expected host frames/s: 200.0" in text and "give --price" in text
    text = render_table(plan("trn1.2xlarge", {"landmarks": 2}, {"landmarks": 100}, price_per_hour=1))
    assert "$1.389 per million frames" in text


# -- command --------------------------------------------------------------------------------
def test_plan_command_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    """`plan --format json` prints the plan and exits 0."""
    assert run_cli("plan", "inf1.24xlarge", "--per-chip", "detector=2,landmarks=2",
                   "--format", "json") == 0  # fmt: skip
    assert len(json.loads(capsys.readouterr().out)["workers"]) == 32


@pytest.mark.parametrize("argv", [
    ["plan", "inf1.xlarge", "--per-chip", "detector=3,landmarks=2"],
    ["plan", "inf9.huge", "--per-chip", "landmarks=1"],
    ["plan", "inf1.xlarge", "--per-chip", "landmarks"],
    ["plan", "inf1.xlarge", "--per-chip", "landmarks=4", "--throughput", "detector=3"],
])  # fmt: skip
def test_plan_command_refuses_with_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A bad layout, instance or figure: exit 2 and one `error:` line on stderr, nothing on stdout."""
    assert run_cli(*argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1
