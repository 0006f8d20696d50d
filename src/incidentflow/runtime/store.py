"""One memory budget for every RocksDB store of a worker.

Faust opens a RocksDB database per table and partition (8 tables x 8 partitions = 64 on a
worker that owns every partition), and gives each its own block cache and memtables: memory then
grows with the number of partitions a worker owns, up to gigabytes. Here every database shares one LRU block cache of
`STORE_MEMORY_MIB`, and a write buffer manager charges all memtables to that same cache (at most
half of it), so RocksDB stays within one figure whatever the number of partitions.

The index and filter blocks of every SST file are charged to that cache as well (RocksDB keeps them
on the heap, outside any cache, by default, where they grow with the data), with those of level 0 and the top-level index pinned so that
lookups do not pay for them being evicted. Each database keeps at most `MAX_OPEN_FILES` files open
(Faust's default is 90% of the process's descriptor limit, for every database).

Writes skip RocksDB's write-ahead log (a put costs a quarter as much without it). The changelog
topic, not the local log, is what a store is restored from: after a crash a store holds what its
memtables had flushed, which is every write up to some point, the changelog offset it noted
included (it lives in the same database), and the restore reads the changelog on from there. A
clean stop flushes the memtables, so a warm start loses nothing.

A store that is corrupt (a disk that lost or garbled blocks) is never read as if it were whole.
RocksDB checks every block it reads against its checksum: a read that finds one wrong fails, and
the worker then marks its stores and exits (`fail_on_corruption`; the record in hand is not acked),
so that its next start sets them aside. On opening, a store marked so, one whose SST files do not
end in a table's magic number, or one RocksDB itself finds corrupt, is moved aside
(`<store>.corrupt-<time>`, kept for inspection) and opened empty: the restore then rebuilds it from
its changelog, as for a worker that lost its disk.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import rocksdict
from faust.stores.rocksdb import RocksDBOptions
from faust.streams import current_event
from faust.types import TableT

log = logging.getLogger(__name__)

MAX_OPEN_FILES = 32
"""Per database; RocksDB keeps 10 of them for its own files, and closes the least recently used SST files past that."""
TABLE_MAGIC = (0x88E241B785F4CFF7).to_bytes(8, "little")
"""The last eight bytes of every block-based SST file."""
MARKER = ".corrupt"
"""`<store>.corrupt` next to a store: a read found it corrupt; the next open sets it aside."""
EXIT_STORE_CORRUPT = 74
"""The worker's exit status when a read found a store corrupt (EX_IOERR): restart it, and it rebuilds."""

_budget: dict[str, Any] = {}
_opened: set[Path] = set()
rebuilt: list[str] = []
"""The stores set aside as corrupt since the worker started (each rebuilt from its changelog)."""
_NO_WAL = rocksdict.WriteOptions()
_NO_WAL.disable_wal = True  # type: ignore[method-assign,assignment]  # a property; rocksdict's stub declares a method


def share_one_memory_budget(megabytes: int) -> None:
    """Makes every RocksDB store opened from now on share one cache of `megabytes` (memtables included)."""
    size = megabytes * 1024 * 1024
    if _budget.get("size") != size:
        cache = rocksdict.Cache(size)
        _budget.update(size=size, cache=cache,
                       manager=rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(size // 2, False, cache))  # fmt: skip
    if getattr(RocksDBOptions.as_options, "_incidentflow_budget", False):
        return
    original = RocksDBOptions.as_options

    def as_options(self: RocksDBOptions) -> Any:
        options = original(self)
        if self.use_rocksdict:
            table = rocksdict.BlockBasedOptions()
            table.set_bloom_filter(self.bloom_filter_size, block_based=True)
            table.set_block_cache(_budget["cache"])
            table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
            table.set_cache_index_and_filter_blocks(True)
            table.set_pin_l0_filter_and_index_blocks_in_cache(True)
            table.set_pin_top_level_index_and_filter(True)
            options.set_block_based_table_factory(table)
            options.set_max_open_files(MAX_OPEN_FILES)
            options.set_write_buffer_manager(_budget["manager"])
        return options

    as_options._incidentflow_budget = True  # type: ignore[attr-defined]
    RocksDBOptions.as_options = as_options  # type: ignore[method-assign]
    original_open = RocksDBOptions.open

    def open_checked(self: RocksDBOptions, path: Any, *, read_only: bool = False) -> Any:
        where = Path(path)
        if read_only or not self.use_rocksdict:
            return original_open(self, path, read_only=read_only)
        reason = _why_corrupt(where)
        if reason is not None:
            _set_aside(where, reason)
        try:
            db = original_open(self, path, read_only=read_only)
        except Exception as error:
            if not is_corruption(error):
                raise
            _set_aside(where, str(error))
            db = original_open(self, path, read_only=read_only)
        db.set_write_options(_NO_WAL)
        _opened.add(where)
        return db

    RocksDBOptions.open = open_checked  # type: ignore[method-assign]


def is_corruption(error: BaseException) -> bool:
    """Whether RocksDB said the data it read is not what it wrote (a checksum, a magic number, a manifest)."""
    return "Corruption:" in str(error)


def _why_corrupt(path: Path) -> str | None:
    """Why the store at `path` is not to be opened as it is, or None: marked by a read, or an SST file
    that does not end as a table does (garbled or cut short). Reads eight bytes per file."""
    if path.with_name(path.name + MARKER).exists():
        return "a read found it corrupt"
    for sst in sorted(path.glob("*.sst")):
        with sst.open("rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - len(TABLE_MAGIC)))
            if size < len(TABLE_MAGIC) or file.read() != TABLE_MAGIC:
                return f"{sst.name} does not end in a table's magic number"
    return None


def _set_aside(path: Path, reason: str) -> None:
    aside = path.with_name(f"{path.name}.corrupt-{datetime.now(UTC):%Y%m%dT%H%M%S%f}")
    if path.exists():
        path.rename(aside)
    path.with_name(path.name + MARKER).unlink(missing_ok=True)
    rebuilt.append(str(path))
    log.error("RocksDB store %s is corrupt (%s): set aside as %s, to be restored from its changelog", path, reason,
              aside.name)  # fmt: skip


def fail_on_corruption(error: BaseException) -> NoReturn:
    """A read found a store corrupt: marks every store this worker opened (which one is not known) so
    that the next start rebuilds them from their changelogs, and exits at once, the record in hand
    unacked. Carrying on would fold events into state that is not what was written."""
    for path in _opened:
        path.with_name(path.name + MARKER).touch()
    log.critical("a RocksDB store is corrupt (%s): the worker stops; started again, it rebuilds its stores from "
                 "their changelogs", error)  # fmt: skip
    logging.shutdown()
    os._exit(EXIT_STORE_CORRUPT)


def cache_usage() -> float:
    """Bytes in the shared cache now (memtables included); 0 before any store opened."""
    cache = _budget.get("cache")
    return float(cache.get_usage()) if cache is not None else 0.0


def items_with_prefix(
    table: TableT[bytes, bytes], prefix: bytes, partition: int | None = None
) -> list[tuple[bytes, bytes]]:
    """The (key, value) pairs of `table` whose key starts with `prefix`, in key order, from one
    partition: `partition`, else that of the record being processed (where every key of that
    record's key lives: tables are co-partitioned with their agent's input).

    Faust tables have no range reads; RocksDB keeps keys sorted, so one seek finds them all. So a
    set that grows (the ids filed under one scope slot, the resolutions of one day) can be one
    small key per member, each written and deleted on its own, rather than one value holding them
    all and rewritten whole on every change. Without a RocksDB store (`memory://`, used by nothing
    but experiments) every key is scanned.
    """
    store: Any = table.data
    databases: dict[int, Any] | None = getattr(store, "_dbs", None)  # Faust's RocksDB store: one per partition
    if databases is None:
        return sorted((key, value) for key, value in store.items() if key.startswith(prefix))
    if partition is None:
        event = current_event()
        if event is None:
            raise RuntimeError("items_with_prefix outside of an agent needs the partition to read")
        # The database Faust's own reads of this record use (it opens one not open yet, as they do).
        db = store._db_for_partition(event.message.partition)  # noqa: SLF001
    else:
        db = databases.get(partition)
        if db is None:  # not opened by this worker: it holds nothing here
            return []
    found: list[tuple[bytes, bytes]] = []
    cursor = db.iter()
    cursor.seek(prefix)
    while cursor.valid():
        key = cursor.key()
        if not key.startswith(prefix):
            break
        found.append((key, cursor.value()))
        cursor.next()
    cursor.status()  # an iteration that met a corrupt block ends early: this raises instead of cutting the list short
    return found
