"""Who is asking, and how fast: the client's address, and the in-process rate limits.

The address is the peer's, or the one a trusted reverse proxy forwarded (uvicorn rewrites
the peer from X-Forwarded-For only for `trusted_proxies`, see `uvicorn_proxy_options`). It is
used as a key, never stored for the study: an IPv4 address as it is, an IPv6 address by its
/64 (a host usually has a whole /64 to pick addresses from).

Rate limits are token buckets kept in this process's memory (no Redis): each key gets
`per_minute` tokens a minute, up to a burst of the same size. With several uvicorn workers
every process keeps its own buckets and the kernel spreads connections over them, so a
client can get up to workers x the limit; the limits on what a client *holds* are in the
database (study_server/allocation.py) and exact across processes.

Addresses in `limits.exempt` (the host itself by default) are never limited. A request that
carries X-Forwarded-For from such an address without the proxy being trusted means a proxy
on this host that the server was not told about: every client would then look like the host
and escape the limits, so such requests are refused (503) until `trusted_proxies` is set.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from html import escape

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from study_server.settings import Settings

LIMITED_PREFIXES = ("/api/", "/hit/", "/lab/")
_AUDIT_EVERY_S = 60.0

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def uvicorn_proxy_options(settings: Settings) -> dict[str, object]:
    """uvicorn's proxy settings: believe X-Forwarded-* only from `trusted_proxies`."""
    if not settings.trusted_proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": ",".join(settings.trusted_proxies)}


def address_key(host: str) -> str:
    """The key of a client address: IPv4 as is, IPv6 by its /64."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _networks(values: list[str]) -> list[IPNetwork]:
    return [ipaddress.ip_network(value, strict=False) for value in values]


def _in(host: str, networks: list[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


class TokenBuckets:
    """`per_minute` tokens a minute per key, a burst of as many; bounded memory."""

    def __init__(self, per_minute: int, *, max_keys: int = 100_000) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        """0 when the request may go on, else the seconds until a token is there."""
        tokens, stamp = self._buckets.pop(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - stamp) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        while len(self._buckets) > self.max_keys:  # least recently seen first
            self._buckets.popitem(last=False)
        return wait


class ClientGate:
    """The address of a request, and whether it may go on now (one per app and process)."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> None:
        limits = settings.limits
        self.exempt = _networks(limits.exempt)
        self.trusted = _networks(settings.trusted_proxies)
        self.clock = clock
        self._exempt_hosts: dict[str, bool] = {}  # host -> exempt? (parsing costs ~5 us)
        self.buckets = {
            name: TokenBuckets(per_minute)
            for name, per_minute in (
                ("request", limits.requests_per_minute),
                ("accept", limits.accepts_per_minute),
            )
            if per_minute > 0
        }
        self._audited: dict[tuple[str, str], float] = {}

    def is_exempt(self, host: str) -> bool:
        exempt = self._exempt_hosts.get(host)
        if exempt is None:
            if len(self._exempt_hosts) > 10_000:
                self._exempt_hosts.clear()
            exempt = self._exempt_hosts[host] = _in(host, self.exempt)
        return exempt

    def address(self, scope: Scope) -> str | None:
        """The client's address key, or None when no limit applies to it."""
        client = scope.get("client")
        if not client or self.is_exempt(client[0]):
            return None
        return address_key(client[0])

    def untrusted_proxy(self, scope: Scope) -> bool:
        client = scope.get("client")
        if not client or not self.is_exempt(client[0]):
            return False
        forwarded = [v for k, v in scope["headers"] if k in (b"x-forwarded-for", b"forwarded")]
        if not forwarded:
            return False
        if not self.trusted:
            return True
        last = forwarded[-1].decode("latin1").split(",")[-1].strip()
        return last != client[0]  # uvicorn rewrote the client from a trusted proxy's header

    def wait(self, address: str, bucket: str) -> int:
        """Seconds to wait before `bucket` has room for `address` (0: go on now)."""
        buckets = self.buckets.get(bucket)
        if buckets is None:
            return 0
        wait = buckets.take(address, self.clock())
        return 0 if wait <= 0 else max(1, int(wait + 0.999))

    def first_refusal(self, address: str, bucket: str) -> bool:
        """True once a minute per address and bucket: what is written to the audit."""
        now = self.clock()
        key = (address, bucket)
        if now - self._audited.get(key, -_AUDIT_EVERY_S) < _AUDIT_EVERY_S:
            return False
        self._audited[key] = now
        if len(self._audited) > 10_000:
            self._audited = {k: t for k, t in self._audited.items() if now - t < _AUDIT_EVERY_S}
        return True


def is_accept(scope: Scope) -> bool:
    path: str = scope["path"]
    return (
        scope["method"] == "POST" and path.startswith("/api/studies/") and path.endswith("/accept")
    )


class RateLimit:
    """ASGI middleware: the labeling pages and API answer 429 (Retry-After) past the limits.

    Puts the client's address key in `request.state.client_address` for the routes.
    """

    def __init__(self, app: ASGIApp, *, gate: ClientGate, audit: Callable[[dict], None]) -> None:
        self.app = app
        self.gate = gate
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(LIMITED_PREFIXES):
            await self.app(scope, receive, send)
            return
        if self.gate.untrusted_proxy(scope):
            await _refuse(
                scope,
                send,
                503,
                "this server is behind a proxy it does not trust: set ADVCRITIC_TRUSTED_PROXIES "
                "to the proxy's address (docs/deployment.md)",
                None,
            )
            return
        address = self.gate.address(scope)
        scope.setdefault("state", {})["client_address"] = address
        if address is not None:
            for bucket in ("request", "accept") if is_accept(scope) else ("request",):
                wait = self.gate.wait(address, bucket)
                if wait:
                    if self.gate.first_refusal(address, bucket):
                        detail = {"bucket": bucket, "path": scope["path"], "retry_after": wait}
                        await run_in_threadpool(self.audit, detail)
                    await _refuse(
                        scope,
                        send,
                        429,
                        f"too many requests from your network; try again in {wait} s",
                        wait,
                    )
                    return
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, send: Send, status: int, reason: str, wait: int | None) -> None:
    if scope["path"].startswith("/api/"):
        body, kind = json.dumps({"detail": reason}).encode(), b"application/json"
    else:
        body = (
            f"<!doctype html><meta charset=utf-8><title>Please wait</title><p>{escape(reason)}</p>"
        ).encode()
        kind = b"text/html; charset=utf-8"
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
    if wait is not None:
        headers.append((b"retry-after", str(wait).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
