"""Programs some tests run that come from Debian's `prometheus` package, not from PyPI."""

from __future__ import annotations

import os
import shutil

import pytest


def prometheus_binary(name: str) -> str:
    """The path of `prometheus` or `promtool`; the test is skipped without it, and fails in CI
    (`.ci/run` installs the package)."""
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed: install Debian's `prometheus` package (.ci/run does in CI)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found
