"""The upstream contract (runtime/upstream.py): the installed faust, mode, aiokafka and rocksdict are
the code the runtime was written against, and anything else stops the worker with its name."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from incidentflow import cli
from incidentflow.config import Integrations, Settings
from incidentflow.runtime import install, upstream


def test_the_installed_upstream_code_is_the_contracts() -> None:
    found = upstream.drift()
    assert found == [], "\n".join(found)


def test_the_contract_reads_the_original_code_under_the_runtimes_patches() -> None:
    install.install(64)
    assert upstream.drift() == []


def test_a_function_that_changed_is_named_with_its_package_version(monkeypatch: pytest.MonkeyPatch) -> None:
    changed = dataclasses.replace(upstream.PARTS[0], fingerprint="0" * 16)
    monkeypatch.setattr(upstream, "PARTS", (changed, *upstream.PARTS[1:]))
    [line] = upstream.drift()
    assert line.startswith("faust.transport.consumer:Consumer.ack (faust-streaming 0.15.3) differs")
    with pytest.raises(upstream.UpstreamDrift, match="Consumer.ack"):
        upstream.check(allow_drift=False)


def test_another_installed_version_stops_the_worker_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(upstream.VERSIONS, "faust-streaming", "0.15.2")
    with pytest.raises(SystemExit) as stopped:
        cli._create_worker(Settings(_env_file=None), Integrations(by_name={}))  # type: ignore[call-arg]
    message = str(stopped.value)
    assert "faust-streaming 0.15.3: the worker was written against 0.15.2" in message
    assert "INCIDENTFLOW_ALLOW_UPSTREAM_DRIFT=true" in message
    # the setting runs it anyway, loudly
    with caplog.at_level(logging.ERROR, logger="incidentflow.worker"):
        upstream.check(allow_drift=True)
    assert "running anyway" in caplog.text and "faust-streaming 0.15.3" in caplog.text


def test_every_part_names_a_package_of_the_contract_and_a_reason() -> None:
    assert {part.package for part in upstream.PARTS} <= set(upstream.VERSIONS)
    assert len({part.target for part in upstream.PARTS}) == len(upstream.PARTS)
    assert all(part.why for part in upstream.PARTS)


def test_every_worker_delivers_records_with_the_compiled_stream_iterator() -> None:
    import faust.streams

    assert upstream.delivery() == "compiled"
    assert faust.streams._CStreamIterator.__module__ == "faust._cython.streams"  # the extension module, not Python


def test_the_pure_stream_iterator_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import faust.streams

    monkeypatch.setattr(faust.streams, "_CStreamIterator", None)  # as with NO_CYTHON=1
    assert any("compiled stream iterator is not in use" in line for line in upstream.drift())
