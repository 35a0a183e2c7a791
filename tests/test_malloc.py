"""Workers keep freed memory for the next batch (posequeue.malloc)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.compat

# Page faults taken by a second 8 MB buffer filled after a first one was freed, in a new process.
PROBE = """
import resource, sys
import numpy as np
if sys.argv[1] == "on":
    from posequeue.malloc import reuse_freed_memory
    assert reuse_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
a = np.ones(8 << 20, np.uint8); del a
before = faults()
b = np.ones(8 << 20, np.uint8)
print(faults() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_freed_batch_buffers_are_reused_without_page_faults() -> None:
    # Given a process that frees an 8 MB buffer and allocates another (a batch after a batch)
    def second_buffer_faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
        return int(out.stdout)

    off, on = second_buffer_faults("off"), second_buffer_faults("on")
    # Then by default the new buffer is a fresh mapping, faulted in again (4 KB pages, or fewer
    # where numpy asks for transparent huge pages) ...
    assert off > 100
    # ... and with the worker's settings it reuses the freed pages
    assert on * 10 < off, (off, on)
