"""The instance catalogue: how many accelerator chips a host has, how many cores each chip offers,
and what the host costs. A plan replicates one per-chip layout on every chip of an instance.

Sources (figures as found, check before quoting a price to anyone):

- inf1 and inf2 sizes: chips, cores, vCPUs, memory, network and on-demand prices in us-east-1
  (Linux, September 2023), from the project's research brief ../shared/notes/neuron-brief.md
  (2026-11-27), which took them from aws-neuron/aws-neuron-sdk and the EC2 price list. The brief
  gives no network figure for inf2, so none is recorded here.
- trn1 sizes are not in the brief. Chips, vCPUs, host memory and network are from the Neuron
  documentation's "AWS Trn1/Trn1n Architecture" page (awsdocs-neuron.readthedocs-hosted.com,
  general/arch/neuron-hardware/trn1-arch); 2 NeuronCore-v2 per Trainium chip from its
  "Trainium Architecture" page. On-demand price for trn1.32xlarge ($21.50/h, us-east-1) from a
  third-party cost comparison (usage.ai, "AWS Trainium vs GPU Instances", updated 2026-06-25); no
  source at hand for trn1.2xlarge's price, so it is left unknown (None) rather than guessed.
- ``cpu``: this machine, read when looked up (the CPU cores this process may run on).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from posequeue.errors import UnknownInstanceError

NEURON_V1 = "NeuronCore-v1"  # inf1 (Inferentia): 4 cores per chip
NEURON_V2 = "NeuronCore-v2"  # inf2 (Inferentia2), trn1 (Trainium): 2 cores per chip
CPU = "cpu"


@dataclass(frozen=True)
class Instance:
    """One host size.

    ``core_ids`` maps a plan's global core index to the id the host uses for it: NeuronCore
    indices are host-global and start at 0 (None here); a CPU host's cores are the CPU ids this
    process may run on, which need not start at 0.
    """

    name: str
    chips: int
    cores_per_chip: int
    vcpus: int
    memory_gib: float | None
    network: str | None  # as AWS states it, e.g. "up to 25 Gbps"
    price_per_hour: float | None  # USD, on-demand, us-east-1, Linux; None when not sourced
    core_kind: str = NEURON_V1
    core_ids: tuple[int, ...] | None = None

    @property
    def cores(self) -> int:
        return self.chips * self.cores_per_chip

    @property
    def is_neuron(self) -> bool:
        return self.core_kind != CPU

    def core_id(self, index: int) -> int:
        """The host's id for global core ``index`` (0 .. cores-1)."""
        return self.core_ids[index] if self.core_ids is not None else index

    def device(self, chip: int) -> str | None:
        """The device file of a chip (``/dev/neuronN``), None on a CPU host."""
        return f"/dev/neuron{chip}" if self.is_neuron else None


def _inf1(name: str, chips: int, vcpus: int, gib: float, network: str, price: float) -> Instance:
    return Instance(name, chips, 4, vcpus, gib, network, price, NEURON_V1)


def _v2(name: str, chips: int, vcpus: int, gib: float, network: str | None, price: float | None) -> Instance:
    return Instance(name, chips, 2, vcpus, gib, network, price, NEURON_V2)


CATALOGUE: dict[str, Instance] = {
    i.name: i
    for i in (
        _inf1("inf1.xlarge", 1, 4, 8, "up to 25 Gbps", 0.228),
        _inf1("inf1.2xlarge", 1, 8, 16, "up to 25 Gbps", 0.362),
        _inf1("inf1.6xlarge", 4, 24, 48, "25 Gbps", 1.18),
        _inf1("inf1.24xlarge", 16, 96, 192, "100 Gbps", 4.721),
        _v2("inf2.xlarge", 1, 4, 16, None, 0.758),
        _v2("inf2.8xlarge", 1, 32, 128, None, 1.97),
        _v2("inf2.24xlarge", 6, 96, 384, None, 6.49),
        _v2("inf2.48xlarge", 12, 192, 768, None, 12.981),
        _v2("trn1.2xlarge", 1, 8, 32, "up to 25 Gbps", None),
        _v2("trn1.32xlarge", 16, 128, 512, "800 Gbps", 21.50),
    )
}


def cpu_host() -> Instance:
    """This machine as one "chip" whose cores are the CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        ids = tuple(sorted(os.sched_getaffinity(0)))
    else:  # pragma: no cover - macOS, Windows
        ids = tuple(range(os.cpu_count() or 1))
    try:
        gib: float | None = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        gib = None
    return Instance(CPU, 1, len(ids), os.cpu_count() or len(ids), gib, None, None, CPU, ids)


def names() -> list[str]:
    return [*CATALOGUE, CPU]


def get_instance(name: str) -> Instance:
    """Look an instance up by name (``cpu`` is this machine); the error lists the known ones."""
    if name == CPU:
        return cpu_host()
    try:
        return CATALOGUE[name]
    except KeyError:
        raise UnknownInstanceError(
            f"unknown instance {name!r}; known instances: {', '.join(names())}"
        ) from None
