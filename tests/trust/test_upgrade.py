"""An upgrade mid-stream: workers of the last tagged release replaced, one at a time, by this code.

The gateway and two workers run the release's code (its `src/`, checked out from the tag) while the
trust traffic flows; halfway, each worker in turn is stopped and a worker of this code started on
its data directory, as CHANGELOG.md's "Upgrading" says. The outputs must equal the recomputation
(Run.check). Then `incidentflow replay` of this code into a new namespace must give the same
outputs again. Runs in `make trust`.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import REPO, Stack, free_port
from tests.trust.expected import expect
from tests.trust.harness import elven_received, record, settle, tally
from tests.trust.test_faults import PARTITIONS, SETTLE_SECONDS, Run, only_in_full
from tests.trust.traffic import integrations_yaml


def last_release() -> str:
    """The newest release: its tag (`v<version>`) reachable from HEAD, else the commit CHANGELOG.md names for it.

    A clone made without tags still finds the release through CHANGELOG.md's newest released section
    ("The first tagged release (`v0.1.0`, commit 6e17495)").
    """
    found = subprocess.run(["git", "describe", "--tags", "--abbrev=0", "--match", "v*"], cwd=REPO,
                           capture_output=True, text=True, check=False)  # fmt: skip
    if found.returncode == 0:
        return found.stdout.strip()
    named = re.search(
        r"^## \[\d[^\]]*\][^\n]*\n+[^\n]*commit ([0-9a-f]{7,40})", (REPO / "CHANGELOG.md").read_text(), re.M
    )
    if named is None:
        pytest.fail(
            f"no release tag to upgrade from ({found.stderr.strip()}) and none named in CHANGELOG.md", pytrace=False
        )
    return named.group(1)


def checkout(tag: str, where: Path) -> Path:
    """The release's source tree, from git (no network): where its `src/` is."""
    archive = subprocess.run(["git", "archive", "--format=tar", tag, "src"], cwd=REPO, capture_output=True, check=True)
    where.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True)
    return where / "src"


def test_workers_of_the_last_release_replaced_mid_stream(stack_factory: Any, tmp_path: Path) -> None:
    only_in_full()
    tag = last_release()
    release = {"PYTHONPATH": str(checkout(tag, tmp_path / "release"))}
    stack: Stack = stack_factory(integrations_yaml(), partitions=PARTITIONS)
    run = Run(stack, "upgrade", 20_000, seed=1001)
    stack.start_gateway(**release)
    for index in (0, 1):
        run.workers[index] = stack.start_worker(index, INCIDENTFLOW_STATE_HORIZON_DAYS=str(run.horizon_days), **release)
        run.ports[index] = stack.worker_ports[-1]
    run.sender.start()
    run.sender.wait_for(0.4)
    replaced_at = []
    for index in (0, 1):  # one at a time, each on the data directory its predecessor left
        run.stop_worker(index)
        run.start_worker(index)
        replaced_at.append(run.sender.accepted)
        run.sender.wait_for(0.4 + 0.2 * (index + 1))
    result = run.check(release=tag, replaced_at_accepted=replaced_at)

    rebuilt = f"{stack.namespace}-replayed"
    done = subprocess.run(
        [sys.executable, "-m", "incidentflow.cli", "replay", "--into", rebuilt],
        env=stack.env(INCIDENTFLOW_WEB_PORT=str(free_port()), INCIDENTFLOW_DATA_DIR=str(stack.workdir / "replay-data"),
                      INCIDENTFLOW_STATE_HORIZON_DAYS=str(run.horizon_days)),
        capture_output=True, text=True, timeout=1800, cwd=stack.workdir,
    )  # fmt: skip
    (stack.workdir / "replay.log").write_text(done.stderr)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = expect(run.webhooks, elven_received(stack.bootstrap, stack.namespace))
    counts = tally(settle(stack.bootstrap, rebuilt, expected, SETTLE_SECONDS), expected)
    wrong = {output: c for output, c in counts.items() if c["lost"] or c["double"] or c["wrong"]}
    result["replay"] = {"namespace": rebuilt, "outputs": counts, "identical": not wrong}
    result["passed"] = result["passed"] and not wrong
    record(result)
    assert not wrong, f"the replay into {rebuilt} differs: {wrong}"
