"""The worker gives the C heap's free pages back: memory freed in the middle of the heap leaves the process."""

from __future__ import annotations

import os

import pytest
from prometheus_client import CollectorRegistry

from incidentflow.metrics.worker import HeapCollector
from incidentflow.stream import heap

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
