"""What the benchmarks share: a broker to measure against."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def broker(work: Path, port: int = 39092) -> Iterator[str]:
    """INCIDENTFLOW_KAFKA_BOOTSTRAP when set, else the local broker of deploy/kafka, started and stopped here."""
    given = os.environ.get("INCIDENTFLOW_KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    env = {**os.environ, "INCIDENTFLOW_KAFKA_PORT": str(port), "INCIDENTFLOW_KAFKA_HOME": str(work / "kafka")}
    subprocess.run([str(REPO / "deploy/kafka/kafka.sh"), "up"], env=env, check=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(REPO / "deploy/kafka/kafka.sh"), "down"], env=env, check=False)
