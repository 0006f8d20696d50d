"""The C heap of a worker: what it holds and what it keeps free, and giving the free part back.

RocksDB's block cache evicts and allocates blocks of every size all the time. Once the cache is
full, glibc's allocator keeps the memory of evicted blocks as free chunks in the middle of its
heap and hands it back to the system only from the heap's top, so a worker's resident memory
keeps rising (about 2 MiB a minute under the soak's load) while the memory in use stays flat.
`malloc_trim(0)` releases the whole free pages inside the heap as well; the worker calls it once a
minute. What is free in pieces smaller than a page stays, so the worker also keeps the allocator
from making such pieces (`tune`): a fixed threshold above which blocks are mapped on their own
(glibc raises its threshold each time a mapped block is freed, up to 32 MiB, after which RocksDB's
memtable blocks of 1 MiB come from the heap and leave holes in it when a memtable is flushed), and
two arenas rather than eight per core (each of RocksDB's and Faust's threads would otherwise keep
its own heap with its own holes). Both are what glibc's `MALLOC_MMAP_THRESHOLD_` and
`MALLOC_ARENA_MAX` set; where the process was started with either, that one is left as given.
Where the C library is not glibc (musl, macOS) these calls are absent and nothing happens.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Any

TRIM_EVERY_SECONDS = 60.0
MMAP_THRESHOLD_BYTES = 256 * 1024
ARENAS = 2
_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8  # glibc's malloc.h


class _MallInfo2(ctypes.Structure):
    _fields_ = [  # noqa: RUF012  # ctypes' own declaration style
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )  # fmt: skip
    ]


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


_LIBC = _libc()
_TRIM = getattr(_LIBC, "malloc_trim", None)
_INFO = getattr(_LIBC, "mallinfo2", None)  # glibc 2.33 and later
_OPT = getattr(_LIBC, "mallopt", None) if _TRIM is not None else None  # glibc's, not another libc's
if _TRIM is not None:
    _TRIM.argtypes, _TRIM.restype = [ctypes.c_size_t], ctypes.c_int
if _INFO is not None:
    _INFO.argtypes, _INFO.restype = [], _MallInfo2
if _OPT is not None:
    _OPT.argtypes, _OPT.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int


def available() -> bool:
    return _TRIM is not None


def tune(environ: dict[str, str] | None = None) -> dict[str, int]:
    """Sets the allocator's mapping threshold and arena count unless the environment already did;
    call it before the threads start. Returns what it set."""
    environ = dict(os.environ) if environ is None else environ
    done: dict[str, int] = {}
    if _OPT is None:
        return done
    for variable, option, value in (("MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
                                    ("MALLOC_ARENA_MAX", _M_ARENA_MAX, ARENAS)):  # fmt: skip
        if variable not in environ and _OPT(option, value) == 1:
            done[variable] = value
    return done


def trim() -> None:
    """Gives the allocator's free pages back to the system (blocking: milliseconds, run it off the loop)."""
    if _TRIM is not None:
        _TRIM(0)


def figures() -> dict[str, int]:
    """Bytes of the C heap in use and kept free by the allocator (empty where unknown)."""
    if _INFO is None:
        return {}
    info = _INFO()
    return {"in_use": int(info.uordblks) + int(info.hblkhd), "free": int(info.fordblks)}
