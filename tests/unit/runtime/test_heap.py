"""The worker gives the C heap's free pages back: memory freed in the middle of the heap leaves the process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from prometheus_client import CollectorRegistry

from incidentflow.metrics.worker import HeapCollector
from incidentflow.runtime import heap

pytestmark = pytest.mark.skipif(not heap.available(), reason="not glibc: there is no malloc_trim")


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_memory_freed_inside_the_heap_is_given_back() -> None:
    # 64 MiB in 2 KiB pieces (below glibc's mmap threshold: they live in the heap), then every piece
    # freed but one in 64, which keeps the heap's top and most pages' neighbours in use.
    pieces = [bytearray(2048) for _ in range(32 * 1024)]
    kept = pieces[::64]
    del pieces
    held = heap.figures()
    before = resident_bytes()
    heap.trim()
    after = resident_bytes()
    assert held["free"] > 32 * 1024**2  # the allocator kept what was freed...
    assert before - after > 16 * 1024**2, (before, after)  # ...and trimming gave most of it back
    assert len(kept) == 512


def test_the_heap_figures_are_exported() -> None:
    registry = CollectorRegistry()
    registry.register(HeapCollector(heap.figures))
    in_use = registry.get_sample_value("incidentflow_heap_bytes", {"state": "in_use"})
    free = registry.get_sample_value("incidentflow_heap_bytes", {"state": "free"})
    assert in_use is not None and in_use > 0 and free is not None


MAPPED_AFTER_A_FREE = """
import ctypes, json, sys
from incidentflow.runtime import heap
done = heap.tune() if sys.argv[1] == "tune" else {}
first = bytearray(400 * 1024)  # above glibc's initial threshold of 128 KiB: mapped on its own
del first  # glibc's own rule now raises its threshold to 400 KiB
before = int(heap._INFO().hblks)
second = bytearray(400 * 1024)
print(json.dumps({"done": done, "mapped_blocks": int(heap._INFO().hblks) - before}))
"""


def run_fresh(*args: str, **env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", MAPPED_AFTER_A_FREE, *args], env={**clean, **env},
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return json.loads(out)  # type: ignore[no-any-return]


def test_large_blocks_stay_mapped_on_their_own_once_tuned() -> None:
    assert run_fresh("as is")["mapped_blocks"] == 0  # glibc alone: the second block came from the heap
    tuned = run_fresh("tune")
    assert tuned["done"] == {"MALLOC_MMAP_THRESHOLD_": heap.MMAP_THRESHOLD_BYTES, "MALLOC_ARENA_MAX": heap.ARENAS}
    assert tuned["mapped_blocks"] == 1  # freed whole when it is freed: no hole left in the heap


def test_what_the_environment_sets_is_left_as_given() -> None:
    given = run_fresh("tune", MALLOC_ARENA_MAX="4", MALLOC_MMAP_THRESHOLD_=str(1024 * 1024))
    assert given["done"] == {}
    assert given["mapped_blocks"] == 0  # 400 KiB is below the threshold the environment set
