"""The C heap of a worker: what it holds and what it keeps free, and giving the free part back.

RocksDB's block cache evicts and allocates blocks of every size all the time. Once the cache is
full, glibc's allocator keeps the memory of evicted blocks as free chunks in the middle of its
heap and hands it back to the system only from the heap's top, so a worker's resident memory
rose by about 2 MiB a minute in our soak while the memory in use stayed flat (bench/README.md).
`malloc_trim(0)` releases the whole free pages inside the heap as well; the worker calls it once a
minute. Where the C library is not glibc (musl, macOS) both calls are absent and nothing happens.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

TRIM_EVERY_SECONDS = 60.0


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
if _TRIM is not None:
    _TRIM.argtypes, _TRIM.restype = [ctypes.c_size_t], ctypes.c_int
if _INFO is not None:
    _INFO.argtypes, _INFO.restype = [], _MallInfo2


def available() -> bool:
    return _TRIM is not None


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
