"""Request guards of the gateway: client address, rate limit, and Standard Webhooks signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

SIGNATURE_TOLERANCE_SECONDS = 300

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(peer: str | None, forwarded_for: str | None, trusted: Iterable[Network]) -> str | None:
    """The sender's address: the peer, or behind trusted proxies the last untrusted X-Forwarded-For hop."""
    trusted = tuple(trusted)
    if peer is None or not forwarded_for or not _within(peer, trusted):
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not _within(hop, trusted):
            return hop
    return peer


def _within(address: str, networks: Iterable[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def allowed(address: str | None, networks: Iterable[Network]) -> bool:
    return address is not None and _within(address, networks)


@dataclass
class TokenBucket:
    """`rate_per_minute` requests a minute with bursts up to the same number; one bucket per integration."""

    rate_per_minute: int
    tokens: float = field(init=False)
    updated: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.tokens = float(self.rate_per_minute)

    def take(self, now: float) -> float:
        """Take one token at monotonic time `now`; returns 0 when taken, else seconds until one is free."""
        per_second = self.rate_per_minute / 60.0
        if self.updated:
            self.tokens = min(float(self.rate_per_minute), self.tokens + (now - self.updated) * per_second)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / per_second


def _secret_bytes(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks `v1` signature of a delivery (used by `incidentflow send` and tests)."""
    digest = hmac.new(_secret_bytes(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(headers: Mapping[str, str], body: bytes, secret: str, now: float) -> bool:
    """True when `webhook-signature` holds a valid v1 signature within 5 minutes of `now`."""
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not stamp or not signatures:
        return False
    try:
        timestamp = int(stamp)
    except ValueError:
        return False
    if abs(now - timestamp) > SIGNATURE_TOLERANCE_SECONDS:
        return False
    expected = sign(secret, msg_id, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures.split(" ") if candidate)
