"""The dashboard's session cookie and sign-in throttle, and its results cache, on their own."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import SecretStr

from analysis.dashboard.results import ResultCache, Results
from analysis.dashboard.session import SESSION_S, LoginThrottle, Sessions
from study_server.api.clients import ClientGate
from study_server.settings import LimitSettings, Settings


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_cookie_is_genuine_until_it_expires_and_holds_no_token():
    clock = Clock()
    sessions = Sessions(SecretStr("the-admin-token"), clock=clock)
    cookie = sessions.issue()
    assert sessions.valid(cookie)
    assert "the-admin-token" not in cookie
    assert sessions.issue() != cookie  # a fresh nonce each time
    clock.now += SESSION_S - 1
    assert sessions.valid(cookie)
    clock.now += 1
    assert not sessions.valid(cookie)


def test_a_forged_or_altered_cookie_is_refused():
    clock = Clock()
    sessions = Sessions(SecretStr("the-admin-token"), clock=clock)
    version, issued, nonce, mac = sessions.issue().split(".")
    later = str(int(issued) + 3600)  # trying to extend it
    for forged in (
        f"{version}.{later}.{nonce}.{mac}",
        f"{version}.{issued}.{nonce}.{mac[:-2]}AA",
        f"v2.{issued}.{nonce}.{mac}",
        f"{version}.{issued}.{nonce}",
        "",
        None,
        "x" * 500,
    ):
        assert not sessions.valid(forged), forged
    other = Sessions(SecretStr("another-token"), clock=clock)
    assert not other.valid(f"{version}.{issued}.{nonce}.{mac}")  # a new token signs everyone out


def test_signing_out_voids_the_cookie_and_no_token_means_no_sessions():
    sessions = Sessions(SecretStr("the-admin-token"), clock=Clock())
    cookie = sessions.issue()
    sessions.void(cookie)
    assert not sessions.valid(cookie)
    assert sessions.valid(sessions.issue())
    off = Sessions(None)
    assert not off.enabled and not off.token_matches("") and not off.valid(off.issue())
    assert not Sessions(SecretStr("")).enabled


def test_the_throttle_allows_ten_attempts_a_minute_per_address_and_exempts_the_host():
    clock = Clock()
    gate = ClientGate(Settings(limits=LimitSettings(exempt=["127.0.0.1"])), clock=clock)
    throttle = LoginThrottle(gate)

    class Request:
        def __init__(self, host: str) -> None:
            self.scope = {"client": (host, 1234), "headers": []}

    waits = [throttle.wait(Request("203.0.113.7"))[1] for _ in range(11)]  # type: ignore[arg-type]
    assert waits[:10] == [0] * 10 and waits[10] == 6  # a token back every 6 s
    assert throttle.wait(Request("198.51.100.1"))[1] == 0  # another address has its own  # type: ignore[arg-type]
    assert throttle.wait(Request("127.0.0.1")) == (None, 0)  # type: ignore[arg-type]
    clock.now += 6
    assert throttle.wait(Request("203.0.113.7"))[1] == 0  # type: ignore[arg-type]


def _results(fingerprint: object) -> Results:
    return Results(fingerprint, datetime.now(UTC), 0.0)


def test_results_are_recomputed_only_when_the_data_changed_and_at_most_once_per_ttl():
    clock = Clock()
    cache = ResultCache(ttl_s=60, clock=clock)
    computed: list[object] = []

    def compute(fingerprint: object):
        return lambda: computed.append(fingerprint) or _results(fingerprint)

    assert cache.get(("a",), 1, compute(1)).fingerprint == 1
    clock.now += 3600
    assert cache.get(("a",), 1, compute(1)).fingerprint == 1  # the same data: never again
    assert computed == [1]
    assert cache.get(("a",), 2, compute(2)).fingerprint == 2  # changed, and the last is old
    clock.now += 10
    assert cache.get(("a",), 3, compute(3)).fingerprint == 2  # changed again, but too soon
    clock.now += 50
    assert cache.get(("a",), 3, compute(3)).fingerprint == 3
    assert computed == [1, 2, 3]
    assert cache.get(("b",), 3, compute("b")).fingerprint == "b"  # each page its own entry
    assert cache.computations == 4


def test_the_cache_keeps_a_bounded_number_of_pages():
    cache = ResultCache(max_entries=2, clock=Clock())
    for key in ("a", "b", "c"):
        cache.get((key,), 0, lambda: _results(0))
    assert cache.peek(("a",)) is None and cache.peek(("c",)) is not None
