"""`incidentflow send`: post webhook bodies from files to a gateway, with progress and a status summary."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import httpx
from cloudevents.core.bindings import http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from incidentflow.gateway.guards import sign
from incidentflow.sources.cdevents import BATCH

Mode = Literal["binary", "structured", "batch"]


def collect(paths: list[Path]) -> list[Path]:
    """JSON files in the order given, folders expanded by name; golden files are skipped."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                sorted(p for p in path.rglob("*.json") if not p.name.endswith((".golden.json", ".context.json")))
            )
        else:
            files.append(path)
    return files


def _progress(done: int, total: int, counts: Counter[str]) -> None:
    width = 30
    filled = int(width * done / total) if total else width
    summary = " ".join(f"{k}:{v}" for k, v in sorted(counts.items()))
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {summary}")
    sys.stderr.flush()


def cloudevent_request(body: bytes, mode: Mode) -> tuple[bytes, dict[str, str]]:
    """A file of CDEvents (one, or a JSON array) as the body and headers of one CloudEvents request.

    Each CDEvent becomes a CloudEvent with its context's `id`, `source` and `type`, as the CDEvents
    binding requires; binary and structured mode take one CDEvent, batch mode any number.
    """
    loaded = json.loads(body)
    cdevents: list[Any] = loaded if isinstance(loaded, list) else [loaded]
    events = []
    for cdevent in cdevents:
        context = cdevent.get("context", {}) if isinstance(cdevent, dict) else {}
        attributes = {name: context.get(name) for name in ("id", "source", "type")}
        events.append(CloudEvent({**attributes, "specversion": "1.0", "datacontenttype": "application/json"}, cdevent))
    if mode == "batch":
        batch = [json.loads(http.to_structured(event, JSONFormat()).body) for event in events]
        return json.dumps(batch).encode(), {"content-type": BATCH}
    if len(events) != 1:
        raise ValueError(f"{mode} mode sends one CDEvent per request; use --cloudevents batch for {len(events)}")
    message = (http.to_binary if mode == "binary" else http.to_structured)(events[0], JSONFormat())
    return message.body, dict(message.headers)


async def _send_all(
    files: list[Path], url: str, token: str | None, concurrency: int, hmac_secret: str | None, mode: Mode | None
) -> Counter[str]:
    counts: Counter[str] = Counter()
    queue: asyncio.Queue[Path] = asyncio.Queue()
    for f in files:
        queue.put_nowait(f)
    done = 0
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal done
        while not queue.empty():
            path = queue.get_nowait()
            body = path.read_bytes()
            extra = dict(headers)
            if mode is not None:
                try:
                    body, ce_headers = cloudevent_request(body, mode)
                except (ValueError, AttributeError) as error:
                    counts["unsent"] += 1
                    sys.stderr.write(f"\n{path}: not sent: {error}\n")
                    done += 1
                    continue
                extra |= ce_headers
            if hmac_secret:
                msg_id, stamp = uuid.uuid4().hex, int(time.time())
                extra |= {"webhook-id": msg_id, "webhook-timestamp": str(stamp),
                          "webhook-signature": sign(hmac_secret, msg_id, stamp, body)}  # fmt: skip
            try:
                response = await client.post(url, content=body, headers=extra)
                counts[str(response.status_code)] += 1
                if response.status_code >= 400:
                    sys.stderr.write(f"\n{path}: {response.status_code} {response.text[:300]}\n")
            except httpx.HTTPError as error:
                counts["error"] += 1
                sys.stderr.write(f"\n{path}: {type(error).__name__}: {error}\n")
            done += 1
            _progress(done, len(files), counts)

    async with httpx.AsyncClient(timeout=30.0) as client:
        await asyncio.gather(*(one(client) for _ in range(max(1, concurrency))))
    sys.stderr.write("\n")
    return counts


def send(
    paths: list[Path],
    url: str,
    token: str | None,
    concurrency: int,
    hmac_secret: str | None,
    cloudevents: Mode | None = None,
) -> int:
    """Post every file (with `cloudevents`, each file's CDEvents as CloudEvents in that mode); exit
    status 0 only when every request was accepted (202)."""
    files = collect(paths)
    if not files:
        sys.stderr.write("incidentflow send: no JSON files found\n")
        return 2
    counts = asyncio.run(_send_all(files, url, token, concurrency, hmac_secret, cloudevents))
    print("status codes: " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    return 0 if set(counts) == {"202"} else 1
