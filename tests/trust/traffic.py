"""Seeded, deterministic traffic for every source, and what each webhook means.

The generator first decides what happens (an incident opens at 10:02 on checkout in eu-1, a
deploy of payments is done at 09:58, ...), then writes each step the way its vendor would send it:
native JSON, Sleuth, Uptrends, Flashduty alerts and changes, Elven. Next to every webhook it keeps
the canonical events it stands for, built here from the vendors' documented meaning and the
integration's configuration (static labels, default severity), never from our adapters. The
expectation (`tests/trust/expected.py`) is computed from those events alone.

Elven sends no event time: the gateway's receive time is the event time, so its events take their
times from the raw topic afterwards (`elven_events`), one `webhook-id` per event. Deliveries
(duplicates, shuffled) are `tests.scenario.deliveries`.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from incidentflow.domain.events import AlertEvent, ChangeEvent, Commit, PushEvent

START = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=40)
"""Where the traffic's event time starts: the UTC midnight 40 days before today, so that the traffic
of a scenario and the Elven events sent with it (their time is the gateway's receipt) lie within the
worker's state horizon (90 days by default) of each other."""
SERVICES = ["checkout", "payments", "search", "auth", "catalog", "orders", "inventory", "shipping"]
CLUSTERS = ["eu-1", "eu-2", "us-1", "us-2"]
ENVS = ["prod", "staging"]
RATE = 100_000_000  # per minute: the suite measures the pipeline, not the rate limiter


@dataclass(frozen=True)
class Integration:
    name: str
    source: str
    route: str
    labels: dict[str, str] = field(default_factory=dict)
    default_severity: str | None = None
    window: tuple[float, float] = (60.0, 5.0)  # lookback, lookahead in minutes

    @property
    def token(self) -> str:
        return f"trust-{self.name}-token-0123456789"


FLEET = {
    i.name: i
    for i in (
        Integration("native", "native", "/v1/events"),
        Integration("deploys", "native", "/v1/events"),
        Integration("sleuth", "sleuth", "/v1/ingest/sleuth", {"service": "checkout", "env": "prod"}, "high"),
        Integration(
            "uptrends",
            "uptrends",
            "/v1/ingest/uptrends",
            {"service": "search", "env": "prod"},
            "critical",
            window=(30.0, 10.0),
        ),  # fmt: skip
        Integration("flashduty", "flashduty-alert", "/v1/ingest/flashduty/alert", {"team": "sre"}),
        Integration("fd-changes", "flashduty-change", "/v1/ingest/flashduty/change", {"team": "sre"}),
        Integration("elven", "elven", "/v1/ingest/elven", {"env": "prod"}, "moderate"),
        Integration("alertmanager", "alertmanager", "/v1/ingest/alertmanager", {"team": "sre"}, "low"),
        Integration("pagerduty", "pagerduty", "/v1/ingest/pagerduty", {"env": "prod"}, "moderate"),
        Integration("github", "github", "/v1/ingest/github"),
        Integration("gitlab", "gitlab", "/v1/ingest/gitlab"),
    )
}


def integrations_yaml() -> str:
    lines = ["integrations:"]
    for i in FLEET.values():
        entry = f"  - {{name: {i.name}, source: {i.source}, token: {i.token}, rate_limit_per_minute: {RATE}"
        if i.labels:
            entry += ", labels: {" + ", ".join(f"{k}: {v}" for k, v in i.labels.items()) + "}"
        if i.default_severity:
            entry += f", default_severity: {i.default_severity}"
        if i.window != (60.0, 5.0):
            entry += f", correlation: {{lookback_minutes: {i.window[0]:g}, lookahead_minutes: {i.window[1]:g}}}"
        lines.append(entry + "}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Webhook:
    """One request as its sender makes it, and the canonical events it means."""

    integration: str
    body: Any
    events: tuple[AlertEvent | ChangeEvent | PushEvent, ...]
    headers: tuple[tuple[str, str], ...] = ()
    elven_action: str | None = None  # Elven events are built once their receive time is known

    @property
    def path(self) -> str:
        i = FLEET[self.integration]
        return f"{i.route}/{i.token}"

    @property
    def ignored(self) -> bool:
        """A webhook that means no event (a PagerDuty event type the product does not read): answered 204."""
        return not self.events and self.elven_action is None

    @property
    def webhook_id(self) -> str | None:
        return dict(self.headers).get("webhook-id")


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _alert(integration: str, key: str, action: str, at: datetime, n: int, **fields: Any) -> AlertEvent:
    i = FLEET[integration]
    labels = {**i.labels, **fields.pop("labels", {})}
    severity = fields.pop("severity", None)
    return AlertEvent(event_id=f"gen-{n}", aggregate_id=f"{integration}:{key}", integration=integration,
                      source=i.source, external_aggregate_key=key, action=action, occurred_at=at, received_at=at,
                      labels=labels, severity=severity, **fields)  # type: ignore[arg-type]  # fmt: skip


def _change(integration: str, key: str, status: str, at: datetime, n: int, labels: dict[str, str],
            **fields: Any) -> ChangeEvent:  # fmt: skip
    i = FLEET[integration]
    return ChangeEvent(event_id=f"gen-{n}", change_id=f"{integration}:{key}", integration=integration,
                       source=i.source, status=status, occurred_at=at, received_at=at,  # type: ignore[arg-type]
                       labels={**i.labels, **labels}, **fields)  # fmt: skip


@dataclass
class Generator:
    seed: int
    days: int
    start: datetime = START
    settle: bool = False
    """Every incident resolves in the end (a soak's traffic: state that only grows would hide a leak)."""
    rnd: random.Random = field(init=False)
    n: int = 0
    used: set[tuple[str, datetime]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.rnd = random.Random(self.seed)

    def next_id(self) -> int:
        self.n += 1
        return self.n

    def moment(self) -> datetime:
        return self.start + timedelta(seconds=self.rnd.randrange(self.days * 86400))

    def distinct(self, key: str, at: datetime) -> datetime:
        """Event times within one aggregate are distinct (ties would be settled by the adapters' event ids)."""
        while (key, at) in self.used:
            at += timedelta(seconds=1)
        self.used.add((key, at))
        return at

    def scope(self) -> dict[str, str]:
        return {
            "service": self.rnd.choice(SERVICES),
            "cluster": self.rnd.choice(CLUSTERS),
            "env": self.rnd.choice(ENVS),
        }

    def actions(self, heartbeats: bool) -> list[str]:
        """An incident's life: open, perhaps heartbeats and raises, resolve, perhaps reopen, ..."""
        steps = ["open"]
        for _ in range(self.rnd.randint(0, 6)):
            last = steps[-1]
            if last == "resolve":
                steps.append(self.rnd.choice(["reopen", "open"]))
            else:
                choices = ["resolve", "resolve", "open"] + (["heartbeat"] if heartbeats else [])
                steps.append(self.rnd.choice(choices))
        if self.settle and steps[-1] != "resolve":
            steps.append("resolve")
        return steps

    def times(self, key: str, count: int) -> list[datetime]:
        at = self.moment()
        out = []
        for _ in range(count):
            out.append(self.distinct(key, at))
            at += timedelta(seconds=self.rnd.randrange(60, 5400))
        last = count - 1 if self.settle else count  # settled: the last event stays the last
        if self.rnd.random() < 0.2 and last > 1:  # a sender's clock or queue puts one event before its predecessor
            i = self.rnd.randrange(1, last)
            out[i] = self.distinct(key, out[i - 1] - timedelta(seconds=self.rnd.randrange(1, 900)))
        return out

    # -- one incident or change per source -------------------------------------------------------
    def native_incident(self, a: int) -> Iterator[Webhook]:
        key, labels = f"n-{self.seed}-{a}", self.scope()
        steps = self.actions(heartbeats=True)
        for action, at in zip(steps, self.times(f"native:{key}", len(steps)), strict=True):
            n = self.next_id()
            severity = self.rnd.choice(["critical", "high", "moderate", "low"])
            title = f"{labels['service']} errors" if self.rnd.random() < 0.5 else None
            body = {"event_id": f"native-{self.seed}-{n}", "external_aggregate_key": key, "action": action,
                    "occurred_at": _iso(at), "labels": labels, "severity": severity}  # fmt: skip
            if title:
                body["title"] = title
            yield Webhook("native", body, (_alert("native", key, action, at, n, labels=labels, severity=severity,
                                                  title=title),))  # fmt: skip

    def sleuth_incident(self, a: int) -> Iterator[Webhook]:
        key = f"INC-{self.seed}-{a}"
        steps = self.actions(heartbeats=False)
        kinds = {"open": "triggered", "reopen": "reopened", "resolve": "resolved"}
        title, url = f"Checkout impact {a}", f"https://status.example.com/incidents/{key}"
        times = self.times(f"sleuth:{key}", len(steps))
        if len(steps) == 2 and steps == ["open", "resolve"] and self.rnd.random() < 0.5:
            # A backfilled incident: one webhook carries the open and its resolution (`ended_date`).
            body = {"type": "triggered", "id": key, "date": _iso(times[0]), "ended_date": _iso(times[1]),
                    "title": title, "url": url}  # fmt: skip
            events = tuple(_alert("sleuth", key, action, at, self.next_id(), title=title, url=url, severity="high")
                           for action, at in zip(steps, times, strict=True))  # fmt: skip
            yield Webhook("sleuth", body, events)
            return
        for action, at in zip(steps, times, strict=True):
            body = {"type": kinds[action], "id": key, "date": _iso(at), "title": title, "url": url}
            yield Webhook("sleuth", body, (_alert("sleuth", key, action, at, self.next_id(), title=title, url=url,
                                                  severity="high"),))  # fmt: skip

    def uptrends_incident(self, a: int) -> Iterator[Webhook]:
        key = f"up-{self.seed}-{a}"
        monitor, url = f"Shop page {a % 7}", f"https://shop.example.com/{a % 7}"
        steps = self.actions(heartbeats=True)
        kinds = {"open": "Alert", "reopen": "Alert", "heartbeat": "Reminder", "resolve": "Ok"}
        for action, at in zip(steps, self.times(f"uptrends:{key}", len(steps)), strict=True):
            n = self.next_id()
            kind = kinds[action]
            # An Alert opens at its first error; the webhook itself is sent a little later.
            sent = at + timedelta(seconds=120) if kind == "Alert" else at
            description = f"HTTP 503 on {monitor}"
            alert: dict[str, Any] = {"Type": kind, "AlertGuid": f"guid-{self.seed}-{n}", "Description": description,
                                     "TimestampUtc": sent.strftime("%Y-%m-%dT%H:%M:%S")}  # fmt: skip
            if kind == "Alert":
                alert["FirstErrorUtc"] = at.strftime("%Y-%m-%dT%H:%M:%S")
            body = {"Alert": alert, "Incident": {"Key": key},
                    "Monitor": {"MonitorGuid": f"mon-{a % 7}", "Name": monitor, "Type": "HTTPS", "Url": url}}  # fmt: skip
            event = _alert("uptrends", key, "open" if kind == "Alert" else action, at, n, title=monitor,
                           description=description, url=url, labels={"monitor": monitor}, severity="critical")  # fmt: skip
            yield Webhook("uptrends", body, (event,))

    def flashduty_incident(self, a: int) -> Iterator[Webhook]:
        key, labels = f"fd-{self.seed}-{a}", self.scope()
        steps = self.actions(heartbeats=False)
        statuses = {"Critical": "critical", "Warning": "moderate", "Info": "informational"}
        for action, at in zip(steps, self.times(f"flashduty:{key}", len(steps)), strict=True):
            n = self.next_id()
            status = "Ok" if action == "resolve" else self.rnd.choice(list(statuses))
            body = {"title_rule": f"High latency on {labels['service']}", "event_status": status, "alert_key": key,
                    "event_time": int(at.timestamp()), "description": f"event {n}", "labels": labels}  # fmt: skip
            event = _alert("flashduty", key, "resolve" if status == "Ok" else "open", at, n, labels=labels,
                           severity=statuses.get(status), title=body["title_rule"], description=f"event {n}")  # fmt: skip
            yield Webhook("flashduty", body, (event,))

    def elven_incident(self, a: int) -> Iterator[Webhook]:
        key, service = f"el-{self.seed}-{a}", self.rnd.choice(SERVICES)
        for i, action in enumerate(a for a in self.actions(heartbeats=False) if a != "heartbeat"):
            kind = "resolved" if action == "resolve" else "alarmed"
            body = {"title": f"{service} down", "external_aggregate_key": key, "action": kind,
                    "severity": "high", "tags": [{"name": "service", "value": service}]}  # fmt: skip
            yield Webhook("elven", body, (), headers=(("webhook-id", f"msg-{self.seed}-{a}-{i}"),), elven_action=kind)

    def alertmanager_incident(self, a: int) -> Iterator[Webhook]:
        """An alert's life as Alertmanager reports it: it fires (a notification, often repeated at the
        group and repeat intervals, sometimes lost), resolves (a notification carrying its `startsAt`
        and `endsAt`), and may fire again with a new `startsAt`: a new episode."""
        labels = {**self.scope(), "alertname": self.rnd.choice(["HighErrorRate", "HighLatency", "PodCrashLooping"])}
        level = self.rnd.choice(["critical", "warning", "info", "high", "page", None])
        if level is not None:
            labels["severity"] = level
        severity = {"critical": "critical", "warning": "moderate", "info": "informational",
                    "high": "high"}.get(level or "", FLEET["alertmanager"].default_severity)  # fmt: skip
        fingerprint = f"{self.seed:04x}{a:012x}"
        summary = f"{labels['alertname']} on {labels['service']}" if self.rnd.random() < 0.7 else None
        fields = {"title": summary or labels["alertname"], "description": f"alert {a} of seed {self.seed}",
                  "url": f"http://prometheus:9090/graph?g0.expr=alert{a}"}  # fmt: skip
        annotations = {"description": fields["description"], **({"summary": summary} if summary else {})}
        episodes = self.rnd.choice([1, 1, 1, 2, 3])
        times = sorted(self.times(f"alertmanager:{fingerprint}", episodes * 2))
        times = [t + timedelta(milliseconds=self.rnd.randrange(1000)) for t in times]
        for e in range(episodes):
            starts, ends = times[2 * e], times[2 * e + 1]
            still_firing = e == episodes - 1 and self.rnd.random() < 0.25 and not self.settle
            alert = {"labels": labels, "annotations": annotations, "startsAt": _iso(starts),
                     "generatorURL": fields["url"], "fingerprint": fingerprint}  # fmt: skip
            opened = _alert("alertmanager", fingerprint, "open", starts, self.next_id(), labels=labels,
                            severity=severity, **fields)  # fmt: skip
            firing = {**alert, "status": "firing", "endsAt": "0001-01-01T00:00:00Z"}
            for _ in range(0 if not still_firing and self.rnd.random() < 0.2 else self.rnd.randint(1, 3)):
                yield Webhook("alertmanager", _notification("firing", firing), (opened,))
            if still_firing:
                return
            resolved = {**alert, "status": "resolved", "endsAt": _iso(ends)}
            closed = _alert("alertmanager", fingerprint, "resolve", ends, self.next_id(), labels=labels, **fields)
            for _ in range(self.rnd.randint(1, 2)):
                yield Webhook("alertmanager", _notification("resolved", resolved), (opened, closed))

    def pagerduty_incident(self, a: int) -> Iterator[Webhook]:
        """A PagerDuty incident: triggered, resolved, reopened..., acknowledged now and then (answered
        204), each event redelivered now and then."""
        incident = f"Q{self.seed:03d}{a:07d}"
        service = self.rnd.choice(SERVICES)
        priority, urgency = self.rnd.choice([("P1", "high"), ("P2", "high"), ("P4", "low"), (None, "high"),
                                             (None, "low"), (None, None)])  # fmt: skip
        severity = ({"P1": "critical", "P2": "high", "P4": "low"}.get(priority or "")
                    or {"high": "high", "low": "low"}.get(urgency or "") or FLEET["pagerduty"].default_severity)  # fmt: skip
        title = f"{service} checkout failures"
        steps, is_open = ["open"], True
        for step in self.actions(heartbeats=False)[1:]:
            if step == "resolve" and is_open:
                steps.append("resolve")
                is_open = False
            elif step in ("open", "reopen") and not is_open:
                steps.append("reopen")
                is_open = True
        kinds = {"open": "incident.triggered", "resolve": "incident.resolved", "reopen": "incident.reopened"}
        data = {"id": incident, "type": "incident", "title": title, "html_url": f"https://acme.pagerduty.com/incidents/{incident}",
                "service": {"id": f"PSVC{service[:3].upper()}", "summary": service, "type": "service_reference"},
                "priority": {"summary": priority, "type": "priority_reference"} if priority else None,
                "urgency": urgency}  # fmt: skip
        for step, at in zip(steps, self.times(f"pagerduty:{incident}", len(steps)), strict=True):
            n = self.next_id()
            body = {"event": {"id": f"pd-{self.seed}-{n}", "event_type": kinds[step], "resource_type": "incident",
                              "occurred_at": _iso(at), "data": {**data, "status": "resolved" if step == "resolve" else "triggered"}}}  # fmt: skip
            event = _alert("pagerduty", incident, step, at, n, labels={"service": service}, title=title,
                           url=data["html_url"], severity=None if step == "resolve" else severity)  # fmt: skip
            for _ in range(1 if self.rnd.random() < 0.8 else 2):
                yield Webhook("pagerduty", body, (event,))
            if step != "resolve" and self.rnd.random() < 0.3:
                ack = {
                    "event": {**body["event"], "id": f"pd-{self.seed}-{n}-ack", "event_type": "incident.acknowledged"}
                }
                yield Webhook("pagerduty", ack, ())

    def change(self, c: int, integration: str) -> Iterator[Webhook]:
        key, labels = f"chg-{self.seed}-{c}", self.scope()
        path = self.rnd.choices([["planned"], ["processing", "done"], ["planned", "processing", "done"], ["done"],
                                 ["processing", "canceled"]], weights=[1, 4, 3, 3, 1])[0]  # fmt: skip
        fd = {"planned": "Planned", "processing": "Processing", "done": "Done", "canceled": "Canceled"}
        times = list(self.times(f"{integration}:{key}", len(path)))
        # two changes in three name their earliest commit, one to seven hours before their first event
        # (Flashduty's label in Unix seconds or RFC 3339 by turns); the others have no lead time
        committed = None if c % 3 == 0 else min(times) - timedelta(hours=1 + c % 7)
        # Most changes deploy a version of their own, some one of a small pool (deployed again after
        # another: a rollback by version), some none; a few are rollbacks, hotfixes or reverts by kind
        # (the native field on its last event, or Flashduty's `change_type` label in any case).
        draw = self.rnd.random()
        version = key if draw < 0.6 else (f"v{self.rnd.randrange(4)}" if draw < 0.85 else None)
        kind = self.rnd.choices(["deployment", "rollback", "hotfix", "revert"], weights=[90, 4, 4, 2])[0]
        for i, (status, at) in enumerate(zip(path, times, strict=True)):
            n = self.next_id()
            title = f"Deploy {labels['service']} #{c}"
            sent = labels
            named = "deployment"
            if integration == "deploys":
                body: dict[str, Any] = {"event_id": f"chg-{self.seed}-{n}", "change_key": key, "status": status,
                                        "occurred_at": _iso(at), "labels": labels, "title": title}  # fmt: skip
                if committed is not None:
                    body["committed_at"] = _iso(committed)
                if version is not None:
                    body["version"] = version
                if kind != "deployment" and i == len(path) - 1:
                    body["kind"] = named = kind
            else:
                if committed is not None:
                    sent = {**labels, "committed_at": str(int(committed.timestamp())) if c % 2 else _iso(committed)}
                if version is not None:
                    sent = {**sent, "version": version}
                if kind != "deployment":
                    sent, named = {**sent, "change_type": kind.capitalize() if c % 2 else kind}, kind
                body = {"title": title, "change_key": key, "change_status": fd[status],
                        "event_time": int(at.timestamp()), "labels": sent}  # fmt: skip
            yield Webhook(integration, body, (_change(integration, key, status, at, n, sent, title=title,
                                                      committed_at=committed, kind=named, version=version),))  # fmt: skip

    def repository(self, r: int, integration: str) -> Iterator[Webhook]:
        """A repository of GitHub or GitLab: pushes one after another on main (the first creates it), now
        and then a deployment of the latest sha to one env (in progress, then done or failed), and now and
        then a push of an already pushed sha from another branch with older commits (a longer chain)."""
        service, env = self.rnd.choice(SERVICES), self.rnd.choice(ENVS)
        repo = f"acme-{self.seed}/{service}-{r}"
        at, before, shas = self.moment(), None, []
        for p in range(self.rnd.randint(2, 8)):
            sha = hashlib.sha1(f"{self.seed}-{integration}-{r}-{p}".encode(), usedforsecurity=False).hexdigest()
            commits = []
            for _ in range(self.rnd.randint(1, 3)):
                at += timedelta(seconds=self.rnd.randrange(60, 7200))
                commits.append(at)
            yield self.push(integration, repo, service, "refs/heads/main", before, sha, commits)
            if shas and self.rnd.random() < 0.15:  # the same sha from another branch, with an older commit
                older = [commits[0] - timedelta(hours=self.rnd.randint(1, 30))]
                yield self.push(integration, repo, service, f"refs/heads/feature-{p}", shas[-1], sha, older)
            shas.append(sha)
            before = sha
            if self.rnd.random() < 0.5 or p == 0:
                at += timedelta(seconds=self.rnd.randrange(60, 3600))
                yield from self.deployment(integration, repo, service, env, sha, at)

    def push(self, integration: str, repo: str, service: str, ref: str, before: str | None, after: str,
             commits: list[datetime]) -> Webhook:  # fmt: skip
        n = self.next_id()
        listed = [{"id": hashlib.sha1(f"{after}-{i}".encode(), usedforsecurity=False).hexdigest(), "timestamp": _iso(t), "message": "change"}
                  for i, t in enumerate(commits)]  # fmt: skip
        event = PushEvent(event_id=f"gen-{n}", integration=integration, source=integration, repository=repo, ref=ref,
                          before=before, after=after, received_at=commits[-1],
                          commits=[Commit(id=c["id"], timestamp=t) for c, t in zip(listed, commits, strict=True)])  # fmt: skip
        zero = "0" * 40
        if integration == "github":
            body: dict[str, Any] = {"ref": ref, "before": before or zero, "after": after, "created": before is None,
                                    "deleted": False, "commits": listed,
                                    "repository": {"name": repo.split("/")[1], "full_name": repo}}  # fmt: skip
            return Webhook(integration, body, (event,), headers=(("X-GitHub-Event", "push"),))
        body = {"object_kind": "push", "ref": ref, "before": before or zero, "after": after, "commits": listed,
                "project": {"name": service, "path_with_namespace": repo}}  # fmt: skip
        return Webhook(integration, body, (event,), headers=(("X-Gitlab-Event", "Push Hook"),))

    def deployment(self, integration: str, repo: str, service: str, env: str, sha: str,
                   at: datetime) -> Iterator[Webhook]:  # fmt: skip
        """A deployment of `sha`: in progress, then done (one in ten fails: it did not deploy)."""
        deployment_id = self.next_id()
        failed = self.rnd.random() < 0.1
        labels = {"service": service, "env": env, "repository": repo}
        title = f"Deploy {service} {sha[:7]}"
        states = [
            ("processing", at),
            ("canceled" if failed else "done", at + timedelta(seconds=self.rnd.randrange(30, 900))),
        ]
        for status, when in states:
            n = self.next_id()
            when = self.distinct(f"{integration}:{deployment_id}", when)
            if integration == "github":
                state = {"processing": "in_progress", "done": "success", "canceled": "failure"}[status]
                body: dict[str, Any] = {
                    "action": "created",
                    "deployment_status": {"id": n, "state": state, "created_at": _iso(when)},
                    "deployment": {"id": deployment_id, "sha": sha, "ref": "main", "environment": env,
                                   "payload": {"service": service}, "description": title},
                    "repository": {"name": repo.split("/")[1], "full_name": repo},
                }  # fmt: skip
                headers: tuple[tuple[str, str], ...] = (("X-GitHub-Event", "deployment_status"),)
                sent = {**labels, "ref": "main"}
            else:
                state = {"processing": "running", "done": "success", "canceled": "failed"}[status]
                body = {"object_kind": "deployment", "status": state, "deployment_id": deployment_id,
                        "status_changed_at": when.strftime("%Y-%m-%d %H:%M:%S +0000"), "environment": env,
                        "project": {"name": service, "path_with_namespace": repo},
                        "commit_url": f"https://gitlab.example/{repo}/-/commit/{sha}", "commit_title": title}  # fmt: skip
                headers, sent = (("X-Gitlab-Event", "Deployment Hook"),), labels
            yield Webhook(integration, body, (_change(integration, str(deployment_id), status, when, n, sent,
                                                      version=sha, title=title),), headers=headers)  # fmt: skip


def _notification(status: str, alert: dict[str, Any]) -> dict[str, Any]:
    """An Alertmanager webhook (version 4) of one alert, as Alertmanager groups by `alertname`."""
    return {"version": "4", "groupKey": f"{{}}:{{alertname=\"{alert['labels']['alertname']}\"}}", "truncatedAlerts": 0,
            "status": status, "receiver": "incidentflow", "groupLabels": {"alertname": alert["labels"]["alertname"]},
            "commonLabels": alert["labels"], "commonAnnotations": alert["annotations"],
            "externalURL": "http://alertmanager:9093", "alerts": [alert]}  # fmt: skip


def span_days(events: int) -> int:
    """The days of event time `generate` spreads that many events over."""
    return max(3, events // 900)


def generate(seed: int, events: int, start: datetime = START, settle: bool = False) -> list[Webhook]:
    """About `events` canonical events over all sources: about 45% change events, the rest alerts,
    from `start` on over `span_days(events)`; with `settle`, every incident resolves in the end.

    The span grows with the size so that correlations stay about as dense at any size; traffic
    longer than one call continues from where the last span ended (`start`), as time does.
    """
    gen = Generator(seed, days=span_days(events), start=start, settle=settle)
    makers = [(gen.native_incident, 5), (gen.flashduty_incident, 3), (gen.uptrends_incident, 2),
              (gen.sleuth_incident, 1), (gen.elven_incident, 1), (gen.alertmanager_incident, 2),
              (gen.pagerduty_incident, 1)]  # fmt: skip
    webhooks: list[Webhook] = []
    count = a = c = r = 0
    while count < events:
        draw = gen.rnd.random()
        if draw < 0.04:
            made = list(gen.repository(r, gen.rnd.choice(["github", "gitlab"])))
            r += 1
        elif draw < 0.45:
            made = list(gen.change(c, gen.rnd.choice(["deploys", "fd-changes"])))
            c += 1
        else:
            maker = gen.rnd.choices([m for m, _ in makers], weights=[w for _, w in makers])[0]
            made = list(maker(a))
            a += 1
        webhooks.extend(made)
        count += sum(max(1, len(w.events)) for w in made)
    return webhooks


def elven_events(webhooks: list[Webhook], received: dict[str, datetime]) -> list[AlertEvent]:
    """Elven's events, at the time the gateway first received each `webhook-id` (from the raw topic)."""
    out = []
    for n, w in enumerate(webhooks):
        if w.elven_action is None or w.webhook_id is None:
            continue
        body = w.body
        at = received[w.webhook_id]
        labels = {t["name"]: t["value"] for t in body["tags"]}
        out.append(_alert("elven", body["external_aggregate_key"], "resolve" if w.elven_action == "resolved" else "open",
                          at, -n - 1, labels=labels, severity=body["severity"], title=body["title"]))  # fmt: skip
    return out
