"""The upstream contract: every function of faust-streaming, mode-streaming, aiokafka and rocksdict
that `runtime/` patches, wraps, calls privately or reads private attributes of, with the version
of its package and the fingerprint of the code it was written against.

The worker checks it at start (`check`) and refuses to run on code it was not written for, naming
the function and the installed version; `INCIDENTFLOW_ALLOW_UPSTREAM_DRIFT=true` runs it anyway,
with an error in the log. Upgrading one of these packages is a change of its own: install the new
version, read what changed in each function listed here, adapt `runtime/`, then record the new
fingerprints (`python -m incidentflow.runtime.upstream` prints them) and versions, and the pins in
pyproject.toml and requirements.lock (`make lock`).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import logging
import sys
from dataclasses import dataclass
from importlib import metadata, resources

log = logging.getLogger("incidentflow.worker")

VERSIONS = {
    "faust-streaming": "0.15.3",
    "mode-streaming": "0.7.1",
    "aiokafka": "0.14.0",
    "rocksdict": "0.3.29",
}
"""The versions `runtime/` was written and tested against (pinned in pyproject.toml)."""


@dataclass(frozen=True)
class Part:
    """One upstream function the runtime depends on beyond the package's public API."""

    package: str
    target: str
    """`module:Qualified.name` of the function (for an attribute, the function that sets it)."""
    fingerprint: str
    """The first 16 hex digits of the SHA-256 of its source, stripped of blank lines and indentation."""
    why: str


PARTS = (
    Part("faust-streaming", "faust.transport.consumer:Consumer.ack", "45963ce1acf34c73",
         "patched: never commits past a record the runtime skipped (install._never_commit_skipped_messages)"),
    Part("faust-streaming", "faust.transport.consumer:Consumer.perform_seek", "cdb1c23be72444d9",
         "patched: rewinds to the runtime's positions after a rebalance (install._rewind_after_rebalance)"),
    Part("faust-streaming", "faust.transport.consumer:Consumer.__init__", "2a3139d63bfd9aa2",
         "private attributes read and written: _committed_offset, _acked, _acked_index, _gap, _read_offset, "
         "_commit_fut, _active_partitions, _paused_partitions, _buffered_partitions (commits, positions, stall)"),
    Part("faust-streaming", "faust.transport.consumer:Consumer._commit", "9a4da7abc9479da4",
         "called: the group's commit without Faust's ack list (commits.py)"),
    Part("faust-streaming", "faust.transport.consumer:ThreadDelegateConsumer.__init__", "e7076f9d11002baf",
         "private attribute read: _thread (stall.py)"),
    Part("faust-streaming", "faust.tables.recovery:Recovery._build_offsets", "46a195919a399f06",
         "wrapped: restores changelogs in bulk (install._restore_in_bulk, recovery.py)"),
    Part("faust-streaming", "faust.tables.recovery:Recovery._resume_streams", "9f724c9270bd5e4c",
         "wrapped: where a recovery without changelog ends (install._rewind_after_rebalance)"),
    Part("faust-streaming", "faust.tables.recovery:Recovery.on_recovery_completed", "594e08a96b7ad1e0",
         "wrapped: where a recovery ends (install._rewind_after_rebalance)"),
    Part("faust-streaming", "faust.transport.drivers.aiokafka:Producer.flush", "5eb66681cdf95991",
         "wrapped: waits for the hand-over before every commit (install._flush_waits_for_the_handover)"),
    Part("faust-streaming", "faust.transport.consumer:Consumer._commit_tps", "29f57a650f6ff34e",
         "relied on: the offsets a commit commits are taken before it flushes the producer, so that the flush "
         "waits only for what was put before it (install._flush_waits_for_the_handover)"),
    Part("faust-streaming", "faust.transport.consumer:Consumer._commit_offsets", "392a2d988fc0e22a",
         "relied on: the producer's flush comes after the offsets were taken (install._flush_waits_for_the_handover)"),
    Part("faust-streaming", "faust.transport.drivers.aiokafka:ConsumerRebalanceListener.on_partitions_revoked",
         "3c2a2eabc39f6bb7", "relied on: app.rebalancing is set before the revocation's flush, which then waits "
         "for the whole hand-over (install._flush_waits_for_the_handover)"),
    Part("faust-streaming", "faust.transport.drivers.aiokafka:Producer._ensure_producer", "96b2a3da0af989cf",
         "called: the aiokafka producer under Faust's (changelog.py)"),
    Part("faust-streaming", "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread.__init__", "bae9dc7be7fbc32d",
         "private attribute read: _consumer (stall.py)"),
    Part("faust-streaming", "faust.stores.rocksdb:Store._db_for_partition", "c55453bb2a6c2d25",
         "called: the database of a partition, read and written directly (tables.py, recovery.py, store.py)"),
    Part("faust-streaming", "faust.stores.rocksdb:Store.__init__", "1b14adb053bf7cb5",
         "private attribute read: _dbs, the open databases by partition (tables.py, store.py)"),
    Part("faust-streaming", "faust.streams:Stream.take_events", "093ab16baf8987f2",
         "called: an agent's batches (harness.Runtime.consume); relied on: a batch's records are acked once the "
         "agent asks for the next batch, after everything it wrote was put in the hand-over"),
    Part("faust-streaming", "faust._cython:streams.pyx", "e1facf4bd63fa7e7",
         "the compiled stream iterator every worker delivers records with (its source, shipped in the wheel): "
         "it acks each record as it hands it over (see `delivery`)"),
    Part("faust-streaming", "faust.transport.drivers.aiokafka:ConsumerRebalanceListener.on_partitions_assigned",
         "b3e031406b0cbc82", "wrapped: heartbeats while it runs (install._heartbeat_while_assigning, membership.py)"),
    Part("faust-streaming", "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._ensure_consumer",
         "cedc7201f502934a", "called: the aiokafka consumer, for its group coordinator (install._heartbeat_while_assigning)"),
    Part("faust-streaming", "faust.transport.producer:ProducerBuffer.wait_until_ebb", "beff6508d8995d86",
         "patched: asks the buffer's queue for its size (install._look_at_the_producer_buffer_cheaply)"),
    Part("faust-streaming", "faust.transport.producer:ProducerBuffer.put", "de65802445194388",
         "relied on: only a threaded producer sets `queue`; any other puts in `pending` "
         "(install._look_at_the_producer_buffer_cheaply)"),
    Part("mode-streaming", "mode.services:Service.wait_first", "2e5859f26495ad9e",
         "patched: delivers a fetched record inline (install._deliver_records_without_tasks)"),
    Part("mode-streaming", "mode.worker:Worker._schedule_shutdown", "b6842c55aa9eed27",
         "overridden: a stop that has not ended in time ends the process (cli._run_worker)"),
    Part("aiokafka", "aiokafka.client:AIOKafkaClient._wait_on_metadata", "42a53ca930016761",
         "called: a topic's partitions before a direct send (harness.py)"),
    Part("aiokafka", "aiokafka.partitioner:murmur2", "42baff9ce7dee7ef",
         "copied: the default partitioner's hash, so tables stay co-partitioned (packed.partition_of)"),
    Part("aiokafka", "aiokafka.consumer.consumer:AIOKafkaConsumer.__init__", "4e5f5746274864dd",
         "private attribute read: _subscription, _client (stall.py)"),
    Part("aiokafka", "aiokafka.consumer.consumer:AIOKafkaConsumer.start", "29113f3e5e1e63cc",
         "private attribute read: _coordinator, the group coordinator it makes (install._heartbeat_while_assigning)"),
    Part("aiokafka", "aiokafka.consumer.group_coordinator:GroupCoordinator.ensure_active_group", "7ebcad4382333852",
         "relied on: no heartbeat from the rejoin until the assignment callback returns (membership.py)"),
    Part("aiokafka", "aiokafka.consumer.group_coordinator:GroupCoordinator._do_heartbeat", "2d7eb21400016add",
         "called: one heartbeat, its answer handled as its own routine does (membership.Membership.keep_alive)"),
    Part("aiokafka", "aiokafka.consumer.group_coordinator:GroupCoordinator.__init__", "6b120cdcf5d233a5",
         "private attribute read: _heartbeat_interval_ms (membership.Membership.keep_alive)"),
    Part("aiokafka", "aiokafka.consumer.fetcher:Fetcher.__init__", "7e741540ba1ddd5e",
         "private attribute read: _records (stall.py)"),
    Part("aiokafka", "aiokafka.conn:AIOKafkaConnection.send", "1cf4dfd9323a4151",
         "replaced for produce requests: the same steps, the message made with one join (wire.install)"),
    Part("aiokafka", "aiokafka.conn:AIOKafkaConnection.__init__", "2902129b9a49b923",
         "private attributes read: _writer, _versions, _client_id, _requests, _loop, _request_timeout (wire.install)"),
    Part("aiokafka", "aiokafka.protocol.struct:Struct.encode", "d9fbed0095088b7d",
         "mirrored: a request's fields in its schema's order (wire.install)"),
    Part("aiokafka", "aiokafka.protocol.types:Schema.encode", "0512411f8dcb29ee",
         "mirrored: a produce request's fields in order (wire.encode_flat)"),
    Part("aiokafka", "aiokafka.protocol.types:Array.encode", "4b9d9f46431197de",
         "mirrored: an array's length, then its items (wire.encode_flat)"),
    Part("aiokafka", "aiokafka.protocol.types:Bytes.encode", "5e9255f55e26e396",
         "mirrored: a record batch's length, then the batch (wire.encode_flat)"),
    Part("aiokafka", "aiokafka.protocol.produce:ProduceRequest_v0", "80093fe393eac77f",
         "its schema (v1 and v2 share it) encoded by wire.encode_flat"),
    Part("aiokafka", "aiokafka.protocol.produce:ProduceRequest_v3", "13436c0ca00b44ea",
         "its schema (v4 to v8 share it) encoded by wire.encode_flat"),
)  # fmt: skip


class UpstreamDrift(RuntimeError):
    """The installed code of an upstream package is not what `runtime/` was written against."""


def fingerprint(target: str) -> str:
    """The fingerprint of the installed code at `module:Qualified.name` (or `package:file.pyx`, a
    compiled module's source shipped beside it)."""
    module_name, _, qualified = target.partition(":")
    if qualified.endswith(".pyx"):
        source = resources.files(module_name).joinpath(qualified).read_text()
        return _digest(source)
    obj: object = importlib.import_module(module_name)
    for name in qualified.split("."):
        obj = inspect.getattr_static(obj, name)
    obj = getattr(obj, "__func__", obj)  # a staticmethod or classmethod: its function
    obj = inspect.unwrap(obj)  # type: ignore[arg-type]  # a callable or a class
    return _digest(inspect.getsource(obj))  # type: ignore[arg-type]


def _digest(source: str) -> str:
    lines = [line.strip() for line in source.splitlines() if line.strip()]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def delivery() -> str:
    """Which of faust's two stream iterators delivers records in this process: `compiled` (the
    Cython one the wheel ships, which every test and benchmark runs) or `pure` (Python's, taken when
    `NO_CYTHON` is set or the package was built without it). The two ack differently, so the worker
    runs the compiled one only (`drift`)."""
    import faust.streams

    return "compiled" if getattr(faust.streams, "_CStreamIterator", None) is not None else "pure"


def _installed(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def drift() -> list[str]:
    """Every way the installed packages differ from the contract, one line each (none: it holds)."""
    found = []
    for package, wanted in VERSIONS.items():
        installed = _installed(package)
        if installed != wanted:
            found.append(f"{package} {installed or 'is not installed'}: the worker was written against {wanted}")
    if delivery() != "compiled":
        found.append("faust.streams: the compiled stream iterator is not in use (NO_CYTHON is set, or faust-streaming "
                     "was built without it): the worker's ack and seek guarantees are tested on the compiled one only")  # fmt: skip
    for part in PARTS:
        try:
            got = fingerprint(part.target)
        except (ImportError, AttributeError, OSError, TypeError) as error:
            got = f"missing ({type(error).__name__}: {error})"
        if got != part.fingerprint:
            found.append(f"{part.target} ({part.package} {_installed(part.package)}) differs from the code the "
                         f"worker was written against: fingerprint {got}, expected {part.fingerprint}; {part.why}")  # fmt: skip
    return found


def check(allow_drift: bool) -> None:
    """At the worker's start: refuses to run on upstream code the runtime was not written against,
    unless `allow_drift` (then says so loudly in the log)."""
    found = drift()
    if not found:
        return
    message = "the installed upstream code differs from what the worker's runtime was written against:\n  " + (
        "\n  ".join(found)
    )
    if not allow_drift:
        raise UpstreamDrift(
            message + "\nInstall the locked versions (make venv), or upgrade on purpose (see runtime/upstream.py); "
            "INCIDENTFLOW_ALLOW_UPSTREAM_DRIFT=true runs the worker anyway."
        )
    log.error(
        "%s\nrunning anyway: INCIDENTFLOW_ALLOW_UPSTREAM_DRIFT is set; its guarantees are not tested here", message
    )


def main() -> None:
    """Prints the installed fingerprint of every part: what an upgrade records after reading them."""
    for part in PARTS:
        sys.stdout.write(f"{part.target} {fingerprint(part.target)}\n")


if __name__ == "__main__":
    main()
