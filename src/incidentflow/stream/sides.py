"""What the fold and the change fold send toward correlation: sides, filed under their scope buckets."""

from __future__ import annotations

from dataclasses import dataclass

from incidentflow.config import Integrations, Settings
from incidentflow.domain import correlation as corr
from incidentflow.domain.base import json_of
from incidentflow.runtime.tables import Context
from incidentflow.topics import Topics

DEFAULT_WINDOW = (3600.0, 300.0)
"""(lookback, lookahead) in seconds for an integration with no window of its own."""


@dataclass(frozen=True)
class Correlating:
    """The correlation settings every stage of it shares: the rules, and each integration's window."""

    rules: corr.Rules
    windows: dict[str, tuple[float, float]]

    @classmethod
    def of(cls, settings: Settings, integrations: Integrations) -> Correlating:
        windows = {}
        for name, integration in integrations.by_name.items():
            window = integration.correlation
            if window is not None:
                windows[name] = (window.lookback_minutes * 60, window.lookahead_minutes * 60)
        return cls(corr.Rules(scope=settings.correlation_scope_labels, conflict=settings.correlation_conflict_labels),
                   windows)  # fmt: skip

    def window(self, integration: str) -> tuple[float, float]:
        """(lookback, lookahead) in seconds of an integration; the defaults for one this worker does not know."""
        return self.windows.get(integration, DEFAULT_WINDOW)

    @property
    def reach(self) -> tuple[float, float]:
        """(longest lookahead, longest lookback): how far after and before an open a change may lie."""
        windows = [*self.windows.values(), DEFAULT_WINDOW]
        return max(ahead for _, ahead in windows), max(back for back, _ in windows)


async def send_sides(context: Context, names: Topics, rules: corr.Rules, before: dict[str, str],
                     after: dict[str, str], side: corr.Side, data: bytes | None = None) -> None:  # fmt: skip
    """A side to every scope bucket of its labels now, and a leaving record to the buckets it left
    (`data`: the side's JSON, when the caller has it)."""
    now = rules.buckets(after)
    joined = left = None
    for bucket in sorted(set(now) | set(rules.buckets(before))):
        if bucket in now:
            joined = joined or data or json_of(side)
            await context.send(names.scope, bucket, joined)
        else:
            left = left or json_of(side.model_copy(update={"member": False}))
            await context.send(names.scope, bucket, left)
