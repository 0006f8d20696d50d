"""What the benchmarks share: a broker to measure against."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from incidentflow import __version__  # the code measured, not what the environment says is installed

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def broker(work: Path, port: int = 39092, java_opts: str = "") -> Iterator[str]:
    """INCIDENTFLOW_KAFKA_BOOTSTRAP when set, else the local broker of deploy/kafka, started and stopped here
    (with `java_opts` added to its JVM's)."""
    given = os.environ.get("INCIDENTFLOW_KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    env = {**os.environ, "INCIDENTFLOW_KAFKA_PORT": str(port), "INCIDENTFLOW_KAFKA_HOME": str(work / "kafka"),
           "INCIDENTFLOW_KAFKA_JAVA_OPTS": java_opts}  # fmt: skip
    subprocess.run([str(REPO / "deploy/kafka/kafka.sh"), "up"], env=env, check=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(REPO / "deploy/kafka/kafka.sh"), "down"], env=env, check=False)


def product_env(bootstrap: str, namespace: str, work: Path, **extra: str) -> dict[str, str]:
    """The environment of a gateway or worker of one benchmark run, on a namespace of its own."""
    return {**os.environ, "INCIDENTFLOW_KAFKA_BOOTSTRAP": bootstrap, "INCIDENTFLOW_TOPIC_NAMESPACE": namespace,
            "INCIDENTFLOW_PARTITIONS": "8", "INCIDENTFLOW_APP_ID": f"{namespace}-app",
            "INCIDENTFLOW_DATA_DIR": str(work / "data"), "INCIDENTFLOW_LOG_LEVEL": "warning", **extra}  # fmt: skip


def spawn(command: str, env: dict[str, str], work: Path, log: str | None = None) -> subprocess.Popen[bytes]:
    """`incidentflow <command>` in the background, its output in <work>/<log or command>.log."""
    with (work / f"{log or command}.log").open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "incidentflow.cli", command], env=env, stdout=out, stderr=out)


def free_port() -> int:
    """A TCP port of 127.0.0.1 free now: benchmarks run side by side, each web server on a port of its own."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def machine() -> str:
    """The machine a figure was measured on."""
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def version() -> str:
    """The product's version and, in a git checkout, the commit it was measured on (`+dirty` with local changes)."""
    described = commit_of(REPO)
    return f"{__version__} ({described})" if described else __version__


def commit_of(checkout: Path) -> str:
    """The commit a git checkout is at (`+dirty` with local changes); empty outside one."""
    return subprocess.run(["git", "describe", "--always", "--dirty=+dirty", "--exclude", "*"], cwd=checkout,
                          capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip


def write_result(name: str, figures: dict[str, Any], out: Path | None = None) -> Path:
    """bench/results/<name>.json: the figures with the command that measured them, the date, the version and the
    machine; bench/report.py writes bench/README.md's tables from these files."""
    path = out or REPO / "bench/results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    script = Path(sys.argv[0]).resolve()
    command = " ".join([str(script.relative_to(REPO)) if script.is_relative_to(REPO) else script.name, *sys.argv[1:]])
    result = {"benchmark": name, "command": command, "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "version": version(), "machine": machine(), **figures}  # fmt: skip
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"figures written to {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return path
