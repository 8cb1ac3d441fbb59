"""Signing in to the dashboard: the admin token typed once into a form, then a session cookie.

The token travels only in the body of `POST /dashboard/login` (never in a URL, so never in
an access log, a Referer or the browser's history) and is compared in constant time. The
cookie it buys holds no token: `v1.<issued>.<nonce>.<HMAC>` signed with a key derived from
the token, so it cannot be forged or extended, it works across uvicorn workers, and changing
ADVCRITIC_ADMIN_TOKEN signs everyone out. It is HttpOnly (no script reads it), SameSite=Strict
(no other site's page or form sends it: the dashboard's forms need no CSRF token), Secure and
`__Host-` prefixed when the request came over HTTPS (Caddy), and lasts `SESSION_S`. Signing
out deletes the cookie and voids its nonce in this process (with several workers a copied
cookie stays valid in the others until it expires).

Wrong tokens answer 401 and are written to the audit (`admin_login_refused`, never with what
was typed). Attempts are rate-limited per client address like the labeling API
(study_server/api/clients.py: the same address keys, exemptions and proxy rule): past
`LOGINS_PER_MINUTE`, 429 with Retry-After.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable

from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import Response

from study_server.api.clients import ClientGate, TokenBuckets

SESSION_S = 8 * 3600
LOGINS_PER_MINUTE = 10
COOKIE = "advcritic-dashboard"
SECURE_COOKIE = "__Host-advcritic-dashboard"  # browsers keep it only if Secure, Path=/, no Domain
_VERSION = "v1"
_CLOCK_SKEW_S = 60


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Sessions:
    """Issues and checks session cookies for one admin token (one per app)."""

    def __init__(self, token: SecretStr | None, *, clock: Callable[[], float] = time.time) -> None:
        secret = token.get_secret_value() if token is not None else ""
        self.enabled = bool(secret)
        self._token = secret.encode()
        self._key = hmac.new(
            self._token, b"advcritic dashboard session v1", hashlib.sha256
        ).digest()
        self.clock = clock
        self._voided: dict[str, float] = {}  # nonce -> when its cookie would expire anyway
        self._lock = threading.Lock()

    def token_matches(self, typed: str) -> bool:
        return self.enabled and secrets.compare_digest(typed.encode(), self._token)

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def issue(self) -> str:
        payload = f"{_VERSION}.{int(self.clock())}.{_b64(secrets.token_bytes(16))}"
        return f"{payload}.{self._mac(payload)}"

    def _parse(self, value: str | None) -> tuple[int, str] | None:
        """(issued, nonce) of a genuine, unexpired, not voided cookie value."""
        if not self.enabled or not value or len(value) > 200:
            return None
        parts = value.split(".")
        if len(parts) != 4 or parts[0] != _VERSION or not parts[1].isdigit():
            return None
        payload = ".".join(parts[:3])
        if not hmac.compare_digest(parts[3], self._mac(payload)):
            return None
        issued, now = int(parts[1]), self.clock()
        if not issued - _CLOCK_SKEW_S <= now < issued + SESSION_S:
            return None
        with self._lock:
            if parts[2] in self._voided:
                return None
        return issued, parts[2]

    def valid(self, value: str | None) -> bool:
        return self._parse(value) is not None

    def void(self, value: str | None) -> None:
        """Sign out: this cookie value is no longer accepted by this process."""
        parsed = self._parse(value)
        if parsed is None:
            return
        issued, nonce = parsed
        now = self.clock()
        with self._lock:
            self._voided = {n: t for n, t in self._voided.items() if t > now}
            self._voided[nonce] = issued + SESSION_S

    # The cookie on a response, and read back from a request.

    @staticmethod
    def cookie_name(request: Request) -> str:
        return SECURE_COOKIE if request.url.scheme == "https" else COOKIE

    def read(self, request: Request) -> str | None:
        return request.cookies.get(self.cookie_name(request))

    def set_cookie(self, request: Request, response: Response) -> None:
        response.set_cookie(
            self.cookie_name(request),
            self.issue(),
            max_age=SESSION_S,
            path="/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )

    def clear_cookie(self, request: Request, response: Response) -> None:
        response.delete_cookie(
            self.cookie_name(request),
            path="/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )


class LoginThrottle:
    """Sign-in attempts per client address, `per_minute` a minute (a burst of as many)."""

    def __init__(self, gate: ClientGate, per_minute: int = LOGINS_PER_MINUTE) -> None:
        self.gate = gate
        self.buckets = TokenBuckets(per_minute)

    def wait(self, request: Request) -> tuple[str | None, int]:
        """(the client's address key, seconds to wait before trying; 0: go on now)."""
        address = self.gate.address(request.scope)
        if address is None:  # an exempt address (the host itself), as for the labeling API
            return None, 0
        wait = self.buckets.take(address, self.gate.clock())
        return address, 0 if wait <= 0 else max(1, int(wait + 0.999))
