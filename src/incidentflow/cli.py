"""The `incidentflow` command: gateway, worker, topics, token, send and demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

if TYPE_CHECKING:
    import faust

    from incidentflow.runtime.harness import Runtime

from incidentflow import __version__
from incidentflow.config import ConfigError, Integrations, Settings, hash_token, load_integrations

ROUTE_OF_SOURCE = {
    "elven": "/v1/ingest/elven",
    "sleuth": "/v1/ingest/sleuth",
    "uptrends": "/v1/ingest/uptrends",
    "flashduty-alert": "/v1/ingest/flashduty/alert",
    "flashduty-change": "/v1/ingest/flashduty/change",
    "native": "/v1/events",
    "cloudevents": "/v1/cloudevents",
    "alertmanager": "/v1/ingest/alertmanager",
    "pagerduty": "/v1/ingest/pagerduty",
    "github": "/v1/ingest/github",
    "gitlab": "/v1/ingest/gitlab",
}
"""Each source's ingest route (the gateway's `ROUTES`; a unit test holds the two equal)."""


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def _load(settings: Settings) -> Integrations:
    try:
        return load_integrations(settings.integrations_file)
    except ConfigError as error:
        sys.exit(f"incidentflow: {error}")


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        sys.exit(f"incidentflow: bad INCIDENTFLOW_* setting: {error}")


def cmd_gateway(args: argparse.Namespace) -> int:
    import uvicorn

    from incidentflow.gateway.app import create_app
    from incidentflow.gateway.publisher import KafkaPublisher

    settings = _settings()
    _setup_logging(settings.log_level)
    integrations = _load(settings)
    publisher = KafkaPublisher(settings.kafka_bootstrap, settings.publish_timeout_seconds)
    app = create_app(settings, integrations, publisher)
    # uvicorn's access log prints the request path, which can hold a token: it stays off and the
    # gateway logs each request itself with the token elided.
    uvicorn.run(
        app,
        host=settings.gateway_host,
        port=settings.gateway_port,
        access_log=False,
        log_config=None,
        log_level=settings.log_level,
        timeout_graceful_shutdown=10,
    )
    return 0


def _run_worker(app: faust.App, settings: Settings) -> None:
    """Run a Faust app until SIGTERM/SIGINT, without Faust's terminal spinner.

    At WARNING and above the spinner sets the root logger to DEBUG so that it spins on every
    record, which makes every library build (and drop) DEBUG records: a tenth of a busy worker.
    """
    from faust.worker import Worker as FaustWorker

    class Worker(FaustWorker):
        def _schedule_shutdown(self, signal: Any) -> None:
            """A stop (SIGTERM, SIGINT) that has not ended within `stop_timeout_seconds` ends the process."""
            if not self._signal_stop_time:
                _exit_after(settings.stop_timeout_seconds)
            super()._schedule_shutdown(signal)

    worker = Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()


def _exit_after(seconds: float) -> None:
    """Ends the process `seconds` from now unless it has ended by then: a worker whose broker is gone
    would otherwise wait a minute and more on its fetcher and producer. Nothing is lost: what was
    not committed is handled again from the committed offsets at the next start, as after a crash."""

    def later() -> None:
        time.sleep(seconds)
        logging.getLogger("incidentflow.worker").error(
            "still stopping %.0f s after the signal (is Kafka reachable?): exiting now; the next start resumes "
            "from the committed offsets", seconds)  # fmt: skip
        logging.shutdown()
        os._exit(1)

    threading.Thread(target=later, name="stop-deadline", daemon=True).start()


def cmd_worker(args: argparse.Namespace) -> int:
    from incidentflow.stream.app import TABLES
    from incidentflow.topics import ensure_topics

    settings = _settings()
    _setup_logging(settings.log_level)
    integrations = _load(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    worker = _create_worker(settings, integrations)
    asyncio.run(ensure_topics(settings, tables=TABLES))
    _run_worker(worker.app, settings)
    return 0


def _create_worker(settings: Settings, integrations: Integrations) -> Runtime:
    """The worker, or the process stops with a message when its upstream code drifted (runtime/upstream.py)."""
    from incidentflow.runtime.upstream import UpstreamDrift
    from incidentflow.stream.app import create_worker

    try:
        return create_worker(settings, integrations)
    except UpstreamDrift as error:
        sys.exit(f"incidentflow worker: {error}")


def cmd_replay(args: argparse.Namespace) -> int:
    from incidentflow.runtime import progress
    from incidentflow.stream.app import TABLES
    from incidentflow.topics import Topics, ensure_topics

    live = _settings()
    _setup_logging(live.log_level)
    if args.into == live.topic_namespace:
        sys.exit("incidentflow replay: --into must name a new namespace, not the live one")
    settings = live.model_copy(
        update={
            "topic_namespace": args.into,
            "raw_topic": Topics.of(live).raw,
            "app_id": args.app_id or f"{args.into}-app",
            "data_dir": live.data_dir / args.into,
        }
    )
    integrations = _load(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(ensure_topics(settings, tables=TABLES))
    worker = _create_worker(settings, integrations)
    progress.register(worker, exit_when_caught_up=not args.keep_running)
    print(f"replaying {settings.raw_topic} into {args.into}.* as application {settings.app_id}", file=sys.stderr)
    _run_worker(worker.app, settings)
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from incidentflow.topics import ensure_topics

    settings = _settings()
    _setup_logging(settings.log_level)
    created = asyncio.run(ensure_topics(settings))
    print(f"created {len(created)} topic(s): {', '.join(created) or 'none missing'}")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    settings = _settings()
    integrations = _load(settings)
    known = integrations.get(args.integration)
    source = args.source or (known.source if known else None)
    if source is None:
        sys.exit(f"incidentflow: integration {args.integration!r} is not in the integrations file; give --source")
    token = secrets.token_urlsafe(32)
    base = args.base_url.rstrip("/")
    print(f"integration: {args.integration}")
    print(f"token:        {token}   (shown once; store it in the sender)")
    print(f"token_sha256: {hash_token(token)}   (put this in the integrations file)")
    print(f"webhook URL:  {base}{ROUTE_OF_SOURCE[source]}/{token}")
    if source == "alertmanager":
        print("Alertmanager receiver (the token as a bearer token, so it stays out of URLs and logs):")
        print(f"""  webhook_configs:
    - url: {base}{ROUTE_OF_SOURCE[source]}
      send_resolved: true
      http_config:
        authorization: {{type: Bearer, credentials: {token}}}""")
    if source == "github":
        print("GitHub webhook: Payload URL as above, content type application/json, events `Deployment statuses`")
        print("  and `Pushes`; give it a secret and put the same one in the integration's hmac_secret.")
    if source == "gitlab":
        print("GitLab webhook (the token as its secret token, sent as X-Gitlab-Token, so it stays out of URLs):")
        print(
            f"  URL: {base}{ROUTE_OF_SOURCE[source]}   Secret token: {token}   Trigger: Push events, Deployment events"
        )
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    from incidentflow.tools.send import send

    return send(args.paths, url=args.url, token=args.token, concurrency=args.concurrency, hmac_secret=args.hmac_secret,
                cloudevents=args.cloudevents)  # fmt: skip


def cmd_schemas(args: argparse.Namespace) -> int:
    from incidentflow.schemas import write

    for path in write(args.dir, args.openapi):
        print(f"wrote {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from incidentflow.tools.report import run_report

    if args.to < args.start:
        sys.exit("incidentflow report: --to is before --from")
    return run_report(_settings(), args.start, args.to, args.service, args.json, args.env, args.benchmark)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def cmd_demo(args: argparse.Namespace) -> int:
    from incidentflow.tools.demo import run_demo

    settings = _settings()
    _setup_logging("warning")
    return run_demo(settings, gateway_url=args.gateway_url, worker_url=args.worker_url, token=args.token,
                    native_token=args.native_token, github_token=args.github_token)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="incidentflow",
        description="Event-sourced stream processor for incidents and changes. "
        "Settings come from INCIDENTFLOW_* environment variables (see README).",
    )
    parser.add_argument("--version", action="version", version=f"incidentflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("gateway", help="run the ingest gateway (HTTP -> incidentflow.raw)").set_defaults(func=cmd_gateway)
    sub.add_parser("worker", help="run a stream worker (normalize, fold, metrics)").set_defaults(func=cmd_worker)
    sub.add_parser("topics", help="create the missing topics with their configuration").set_defaults(func=cmd_topics)

    replay = sub.add_parser(
        "replay",
        help="rebuild every aggregate from the raw topic as a new application version, into a new namespace",
        description="Reads <namespace>.raw from the start with a new consumer group and new tables, and writes "
        "canonical events, incidents and metrics under the new namespace. Prints progress, says when it has "
        "caught up, and stops (unless --keep-running).",
    )
    replay.add_argument("--into", required=True, help="the new topic namespace, e.g. incidentflow-v2")
    replay.add_argument("--app-id", help="the new application id (default <into>-app)")
    replay.add_argument("--keep-running", action="store_true", help="go on as a live worker after catching up")
    replay.set_defaults(func=cmd_replay)

    token = sub.add_parser("token", help="create a token for an integration")
    token_sub = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = token_sub.add_parser("create", help="print a new token once, its SHA-256 and the webhook URL")
    create.add_argument("--integration", required=True, help="integration name (as in the integrations file)")
    create.add_argument("--source", choices=sorted(ROUTE_OF_SOURCE), help="source, when the integration is new")
    create.add_argument("--base-url", default="http://127.0.0.1:8080", help="the gateway's public URL")
    create.set_defaults(func=cmd_token)

    send = sub.add_parser("send", help="post a file or folder of webhook bodies to a gateway URL")
    send.add_argument("paths", nargs="+", type=Path, help="JSON files, or folders of them (sorted by name)")
    send.add_argument("--url", required=True, help="the webhook URL (with the token, or give --token)")
    send.add_argument("--token", help="sent as Authorization: Bearer")
    send.add_argument("--hmac-secret", help="sign each request (Standard Webhooks)")
    send.add_argument("--cloudevents", choices=("binary", "structured", "batch"),
                      help="the files hold CDEvents: send each file as CloudEvents in this HTTP mode "
                           "(to /v1/cloudevents/TOKEN)")  # fmt: skip
    send.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    send.set_defaults(func=cmd_send)

    schemas = sub.add_parser("schemas", help="write the JSON Schema of every topic record and the OpenAPI document")
    schemas.add_argument("--dir", type=Path, default=Path("schemas"), help="target folder (default schemas/)")
    schemas.add_argument("--openapi", type=Path, default=Path("docs/openapi.json"), help="default docs/openapi.json")
    schemas.set_defaults(func=cmd_schemas)

    report = sub.add_parser(
        "report",
        help="the five DORA keys per service and env for a range of days (reads <namespace>.metrics)",
        description="Sums the daily rows of <namespace>.metrics for UTC days FROM..TO (inclusive), per service and "
        "env: deployment frequency, lead time for changes, change failure rate (rolled-back changes count as failed), "
        "deployment rework rate with the rollbacks, time to restore and failed deployment recovery time, each with "
        "its DORA performance level.",
    )
    report.add_argument("--from", dest="start", required=True, type=_day, help="first UTC day, YYYY-MM-DD")
    report.add_argument("--to", required=True, type=_day, help="last UTC day, YYYY-MM-DD (inclusive)")
    report.add_argument("--service", help="only this service")
    report.add_argument("--env", help="only this environment (`env`, `environment` or `deployment.environment.name`)")
    report.add_argument("--json", action="store_true", help="print JSON instead of a table")
    report.add_argument("--benchmark", choices=["2024", "2023"], default="2024",
                        help="whose performance clusters give the levels: DORA's 2024 report (default) or 2023's")  # fmt: skip
    report.set_defaults(func=cmd_report)

    demo = sub.add_parser("demo", help="post sample webhooks and deploys; show incidents, correlations and MTTR")
    demo.add_argument("--gateway-url", default="http://127.0.0.1:8080")
    demo.add_argument("--worker-url", default="http://127.0.0.1:6066")
    demo.add_argument("--token", required=True, help="token of the demo's Elven integration")
    demo.add_argument("--native-token", required=True, help="token of the demo's native integration (deploys)")
    demo.add_argument("--github-token", required=True, help="token of the demo's GitHub integration")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
