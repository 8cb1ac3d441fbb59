"""The one place where runtime settings live.

Everything the study server, the `mturk` and `prolific` commands and `analyze-study` read
from the environment is declared here, so a deployment is described by one set of variables
(prefix ``ADVCRITIC_``, plus the conventional ``DATABASE_URL``). Nothing else in the
project reads ``os.environ`` for configuration.

Defaults are the embedded ones (SQLite in the working folder, MTurk sandbox); secrets
have no default that would work in production: the admin token must be set before the
admin endpoints answer, and the Prolific token before `prolific` does anything.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MTURK_SANDBOX_ENDPOINT = "https://mturk-requester-sandbox.us-east-1.amazonaws.com"
MTURK_LIVE_ENDPOINT = "https://mturk-requester.us-east-1.amazonaws.com"
MTURK_FRAME_ANCESTORS = (
    "https://www.mturk.com",
    "https://worker.mturk.com",
    "https://workersandbox.mturk.com",
    "https://requester.mturk.com",
    "https://requestersandbox.mturk.com",
)
# Where MTurk tells the HIT page to post the finished assignment (its `turkSubmitTo`).
MTURK_SUBMIT_HOSTS = (
    "https://www.mturk.com",
    "https://workersandbox.mturk.com",
)


class MTurkSettings(BaseSettings):
    """How HITs are published: money, time limits and who may work on them."""

    model_config = SettingsConfigDict(env_prefix="ADVCRITIC_MTURK_", extra="ignore")

    region: str = "us-east-1"
    # Overrides the requester endpoint (tests point it at a loopback server).
    endpoint_url: str | None = None
    reward_usd: Decimal = Field(default=Decimal("0.50"), ge=Decimal("0.01"))
    # MTurk's commission on the reward, used for the cost shown before a live publish.
    fee_fraction: Decimal = Field(default=Decimal("0.20"), ge=0)
    title: str = "Label 25 handwritten digits"
    description: str = (
        "Look at 25 small images of handwritten digits and pick the digit each one shows."
    )
    keywords: str = "image, labeling, digits, handwriting, research"
    assignment_duration_s: int = Field(default=30 * 60, ge=30)
    lifetime_s: int = Field(default=7 * 24 * 3600, ge=60)
    auto_approval_delay_s: int = Field(default=3 * 24 * 3600, ge=0)
    frame_height: int = Field(default=800, ge=0)
    # Qualification requirements on real workers (ignored in the sandbox, where nobody has them).
    min_approval_rate: int | None = Field(default=95, ge=0, le=100)
    min_approved_hits: int | None = Field(default=100, ge=0)
    allowed_locales: list[str] = Field(default_factory=list)
    max_retries: int = Field(default=5, ge=0)


class LimitSettings(BaseSettings):
    """How much of a study one client can hold, and how fast it may ask (docs/deployment.md).

    A "client" is a source address: the peer's IP, or the one a trusted proxy forwarded; an
    IPv6 address counts by its /64 (one host usually has a whole /64). 0 turns a limit off.
    """

    model_config = SettingsConfigDict(env_prefix="ADVCRITIC_LIMIT_", extra="ignore")

    # Active MTurk holds of one study from one address. 3: three people behind one NAT may
    # work on the study at once; a fourth waits (429, Retry-After) until one of them is done.
    holds_per_address: int = Field(default=3, ge=0)
    # Active holds of one study from one address made with lab invitations. 0: a lab where
    # everyone shares one NAT address is never stopped (the invitation is the credential).
    lab_holds_per_address: int = Field(default=0, ge=0)
    # Different assignments one HIT id may draw from the pool at once (a worker, and people
    # who returned the HIT while their hold runs); further claims share the HIT's images.
    assignments_per_hit: int = Field(default=3, ge=1)
    # A hold is shared with another claim only once it is this old; a claim arriving sooner
    # waits (409 with Retry-After; the page retries by itself).
    share_after_s: int = Field(default=60, ge=0)
    # In-process token buckets per address (per server process, see docs/deployment.md):
    # accept requests, and every request to the labeling pages and API.
    accepts_per_minute: int = Field(default=30, ge=0)
    requests_per_minute: int = Field(default=1200, ge=0)
    # Addresses no limit applies to: the host itself (tests, a benchmark, the quickstart's
    # browser). A proxy on this host must be trusted (`trusted_proxies`), or every client
    # would look like the host: the server refuses such forwarded requests (see app.py).
    exempt: list[str] = Field(default_factory=lambda: ["127.0.0.1", "::1"])


class AttentionSettings(BaseSettings):
    """The attention policy a study gets at import when none is given (study_server/attention.py).

    At least half of an assignment's catch trials right: with the usual one or two catch
    trials per assignment, a person who misses the only one, or both, is out; one slip in two
    is forgiven. No minimum response time by default (set one per study after a pilot shows
    how fast careful people are).
    """

    model_config = SettingsConfigDict(env_prefix="ADVCRITIC_ATTENTION_", extra="ignore")

    min_catch_accuracy: float | None = Field(default=0.5, ge=0, le=1)
    min_median_response_ms: int | None = Field(default=None, ge=0)


PROLIFIC_API_URL = "https://api.prolific.com"
# Where a participant who finished is sent, with `?cc=<the study's completion code>`.
PROLIFIC_COMPLETION_URL = "https://app.prolific.com/submissions/complete"


class ProlificSettings(BaseSettings):
    """How a study is published on Prolific: money, time, who may take part, where the API is.

    Money is in the workspace's currency (Prolific charges GBP or USD, per workspace). The
    service fee is Prolific's commission on rewards and bonuses; 33.3% is the rate we
    understood Prolific to charge academic researchers, NOT verified against Prolific's price
    list: the lab must check its own workspace's rate (and VAT, which Prolific adds to the
    fee for some workspaces). `prolific publish` also asks Prolific's cost calculator and
    refuses to go on when it quotes another total, so a wrong rate here is caught, not paid.
    """

    model_config = SettingsConfigDict(
        env_prefix="ADVCRITIC_PROLIFIC_", extra="ignore", populate_by_name=True
    )

    # The API token (Prolific app: Settings -> API token); Prolific's own CLI reads PROLIFIC_TOKEN.
    token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ADVCRITIC_PROLIFIC_TOKEN", "PROLIFIC_TOKEN")
    )
    # Overridden by tests and rehearsals to point at the loopback fake (markets.prolific.fake).
    api_url: str = PROLIFIC_API_URL
    completion_url: str = PROLIFIC_COMPLETION_URL
    # The workspace that pays (its balance, its participant groups) and, optionally, the project.
    workspace_id: str | None = None
    project_id: str | None = None
    currency: str = Field(default="GBP", pattern=r"^(GBP|USD)$")
    reward: Decimal = Field(default=Decimal("1.00"), ge=Decimal("0.01"), decimal_places=2)
    service_fee_fraction: Decimal = Field(default=Decimal("0.333"), ge=0, le=1)
    vat_fraction: Decimal = Field(default=Decimal(0), ge=0, le=1)
    name: str = "Label 25 handwritten digits"
    description: str = (
        "Look at 25 small images of handwritten digits and pick the digit each one shows. "
        "It takes about 6 minutes, on a computer or a tablet."
    )
    estimated_minutes: int = Field(default=6, ge=1)
    # Prolific times a participant out after this; it must not exceed the server's hold
    # (ADVCRITIC_ALLOCATION_TIMEOUT_S, 20 min by default), checked by `prolific publish`, so
    # nobody still within Prolific's time finds their images given to someone else.
    maximum_allowed_minutes: int = Field(default=20, ge=2)
    device_compatibility: list[str] = Field(default_factory=lambda: ["desktop", "tablet"])
    max_retries: int = Field(default=5, ge=0)
    timeout_s: float = Field(default=30.0, gt=0)


class Settings(BaseSettings):
    """Settings for the study server and the study tools."""

    model_config = SettingsConfigDict(env_prefix="ADVCRITIC_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///advcritic.db",
        validation_alias=AliasChoices("DATABASE_URL", "ADVCRITIC_DATABASE_URL"),
    )
    # Required for /admin endpoints; when unset they answer 503, never an open door.
    admin_token: SecretStr | None = None
    # Public base URL of the server (what MTurk's ExternalQuestion points at).
    public_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Hosts allowed to frame the HIT page; MTurk's own by default.
    frame_ancestors: list[str] = Field(default_factory=lambda: list(MTURK_FRAME_ANCESTORS))
    # The only `turkSubmitTo` values the HIT page accepts and posts to; MTurk's own by default
    # (tests add the loopback address of their MTurk stand-in).
    turk_submit_hosts: list[str] = Field(default_factory=lambda: list(MTURK_SUBMIT_HOSTS))
    # An allocation not submitted within this time goes back to the pool. Never longer than
    # the HITs' MTurk assignment duration (checked by `mturk publish`, and capped per HIT).
    allocation_timeout_s: int = Field(default=20 * 60, ge=10)
    items_per_assignment: int = Field(default=25, ge=1)
    split_seed: int = 0
    # Threads per server process that run database work, and as many pooled connections.
    # More threads than cores only queue for Python's lock and, past the pool, open and
    # close a PostgreSQL connection per request (bench/server.py measured both).
    db_threads: int = Field(default=8, ge=1, le=64)
    # PostgreSQL only: connections for the one-statement hot paths that run on the event loop
    # (labels saved as they are given, those that arrive together as one statement;
    # study_server/db/loop_statements.py), on top of those.
    db_loop_connections: int = Field(default=4, ge=1, le=64)
    # PostgreSQL only: processes of their own that run the accepts and submissions, one at a
    # time each, on a connection each (study_server/db/processes.py); 0 runs them in the
    # server's threads. In a thread, each of their ~14 round trips waited for Python's lock
    # and a turn of the busy event loop, 10-30 ms apiece under 50 clients (docs/benchmarks.md).
    db_processes: int = Field(default=2, ge=0, le=64)
    # How long a thread may keep Python's lock while another waits for it (Python's default
    # is 5 ms). The accepts and submits run in threads, the image and label requests on the
    # event loop: with 5 ms each of an accept's ~15 round trips could wait that long to get
    # the lock back from a busy loop. 1 ms against 5 ms, 5 pairs of bench/server.py runs:
    # accept p50 261-305 -> 204-245 ms, submit p50 172-203 -> 113-129 ms, the same CPU.
    gil_switch_interval_ms: float = Field(default=1.0, ge=0.1, le=100.0)
    # Largest request body the server accepts, in bytes.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Allow the no-MTurk lab mode (a person opens an invitation link and labels).
    local_mode: bool = True
    # Reverse proxies whose X-Forwarded-For/-Proto uvicorn believes (addresses or networks,
    # e.g. ["172.30.0.10"] for the compose file's Caddy); none by default.
    trusted_proxies: list[str] = Field(default_factory=list)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    attention: AttentionSettings = Field(default_factory=AttentionSettings)
    mturk: MTurkSettings = Field(default_factory=MTurkSettings)
    prolific: ProlificSettings = Field(default_factory=ProlificSettings)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process; tests build their own `Settings(...)` instead."""
    return Settings()
