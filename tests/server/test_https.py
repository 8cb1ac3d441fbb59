"""The deployment's HTTPS front for real: Debian's caddy runs the repository's own Caddyfile
(the one docker-compose.yml mounts) with `tls internal` in front of `study-server serve`, on
loopback ports, and Chromium does a whole HIT over HTTPS through it inside a stand-in MTurk
page (itself on HTTPS: MTurk's is). No container engine is needed.

Caddy is installed like Chromium, by scripts/install.sh (WITH_SYSTEM_PACKAGES=1, as CI runs
it); these tests install it themselves when they can, and skip only when it cannot be had.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from study_server.db.models import Allocation, AllocationStatus, Label
from testkit.databases import session_for
from testkit.servers import free_port, serve_process
from testkit.studies import import_study, register_hits
from tests.server.browser import FakeMTurk, browser, run_fake_mturk, wait_for, watch
from tests.server.flow import consent_sha256

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
CADDYFILE = ROOT / "deploy" / "Caddyfile"
__all__ = ["browser"]


def _caddy() -> str:
    found = shutil.which("caddy")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "caddy"],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            capture_output=True,
            timeout=300,
        )
        found = shutil.which("caddy")
    if found is None:
        pytest.skip(
            "caddy is not installed and could not be: `apt-get install caddy` "
            "(scripts/install.sh does it with WITH_SYSTEM_PACKAGES=1)"
        )
    return found


@pytest.fixture(scope="module")
def caddy() -> str:
    return _caddy()


def _caddy_env(home: Path, **values: str) -> dict[str, str]:
    return {
        **os.environ,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        **values,
    }


@pytest.mark.parametrize(
    "values",
    [
        {},  # the compose defaults: localhost, automatic HTTPS (its local CA)
        {"ADVCRITIC_DOMAIN": "study.example.org", "ADVCRITIC_TLS": "auto"},
        {"ADVCRITIC_DOMAIN": "localhost", "ADVCRITIC_TLS": "internal"},
    ],
)
def test_caddy_validates_the_caddyfile(caddy, tmp_path, values):
    result = subprocess.run(
        [caddy, "validate", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env=_caddy_env(tmp_path, **values),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout + result.stderr


def test_caddy_refuses_a_broken_caddyfile(caddy, tmp_path):
    """The validation is real: an unknown TLS mode names a snippet that does not exist."""
    result = subprocess.run(
        [caddy, "validate", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env=_caddy_env(tmp_path, ADVCRITIC_TLS="plaintext"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "tls_plaintext" in result.stderr


@dataclass
class Front:
    url: str
    root_ca: Path
    process: subprocess.Popen


@contextmanager
def caddy_front(caddy: str, home: Path, upstream_port: int) -> Iterator[Front]:
    """Caddy with the repository's Caddyfile, `tls internal`, for localhost on a free port."""
    https_port = free_port()
    env = _caddy_env(
        home,
        ADVCRITIC_DOMAIN="localhost",
        ADVCRITIC_TLS="internal",
        ADVCRITIC_UPSTREAM=f"127.0.0.1:{upstream_port}",
        CADDY_HTTPS_PORT=str(https_port),
        CADDY_HTTP_PORT=str(free_port()),
    )
    log = (home / "caddy.log").open("w")
    process = subprocess.Popen(
        [caddy, "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"https://localhost:{https_port}"
    root_ca = home / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError("caddy exited:\n" + (home / "caddy.log").read_text())
            try:
                if root_ca.exists():
                    trusted = ssl.create_default_context(cafile=str(root_ca))
                    if httpx.get(f"{url}/healthz", verify=trusted, timeout=5).status_code == 200:
                        break
            except (httpx.HTTPError, ssl.SSLError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    "caddy never served /healthz:\n" + (home / "caddy.log").read_text()
                )
            time.sleep(0.2)
        yield Front(url, root_ca, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def https_mturk(tmp_path: Path) -> Iterator[FakeMTurk]:
    """The stand-in MTurk page on HTTPS (a self-signed certificate), as MTurk's is."""
    cert, key = tmp_path / "mturk.pem", tmp_path / "mturk.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )

    def wrap(server: FakeMTurk) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        server.scheme = "https"

    yield from run_fake_mturk(wrap)


def test_a_whole_hit_over_https_through_caddy_in_chromium(
    caddy, browser, postgres_database_url, small_bundle, https_mturk, tmp_path
):
    url = postgres_database_url
    study = import_study(url, small_bundle, items_per_assignment=5)
    register_hits(url, study.slug, ["HIT0", "HIT1", "HIT2"])
    https_mturk.on_submit = lambda: _labels(url)
    upstream = free_port()
    env = {
        "ADVCRITIC_TRUSTED_PROXIES": '["127.0.0.1"]',
        "ADVCRITIC_FRAME_ANCESTORS": f'["{https_mturk.origin}"]',
        "ADVCRITIC_TURK_SUBMIT_HOSTS": f'["{https_mturk.origin}"]',
    }
    command = [
        shutil.which("study-server", path=str(Path(sys.executable).parent)) or "study-server",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(upstream),
        "--no-access-log",
    ]
    with (
        serve_process(url, env=env, command=command),
        caddy_front(caddy, tmp_path, upstream) as front,
    ):
        # The certificate is Caddy's own CA's (`tls internal`), for the name workers use.
        trusted = ssl.create_default_context(cafile=str(front.root_ca))
        with socket.create_connection(("127.0.0.1", int(front.url.rsplit(":", 1)[1]))) as raw:
            with trusted.wrap_socket(raw, server_hostname="localhost") as tls:
                issuer = dict(item[0] for item in tls.getpeercert()["issuer"])
        assert "Caddy Local Authority" in issuer["commonName"]
        with httpx.Client(base_url=front.url, verify=trusted, timeout=30) as client:
            # The links the server builds say https: it believes Caddy's X-Forwarded-Proto.
            moved = client.get(f"/hit/{study.slug}/", params={"assignmentId": "x"})
            assert moved.status_code == 307
            assert moved.headers["location"].startswith(f"{front.url}/hit/{study.slug}")
            assert moved.headers["strict-transport-security"] == "max-age=31536000"
            assert "server" not in moved.headers
        hit = f"{front.url}/hit/{study.slug}?" + urllib.parse.urlencode(
            {
                "assignmentId": "ASSIGN-TLS",
                "hitId": "HIT1",
                "workerId": "WORKER-TLS",
                "turkSubmitTo": https_mturk.origin,
            }
        )
        context = browser.new_context(ignore_https_errors=True)
        page = context.new_page()
        problems = watch(page)
        page.goto(f"{https_mturk.origin}/frame?src={urllib.parse.quote(hit, safe='')}")
        frame = page.frame_locator("#hit")
        frame.locator("#agree").click()
        frame.locator("#start:enabled").click()
        for key in "27182":
            page.keyboard.press(key)
        frame.locator("#review").wait_for(state="visible")
        page.keyboard.press("Enter")
        frame.locator("#debrief-continue").click()
        wait_for(lambda: https_mturk.submissions, page)
        problems.assert_clean()
        context.close()
    assert https_mturk.submissions == [{"assignmentId": ["ASSIGN-TLS"], "labelsStored": ["true"]}]
    assert https_mturk.seen_at_submit == [[(0, 2), (1, 7), (2, 1), (3, 8), (4, 2)]]
    session = session_for(url)
    try:
        allocation = session.scalar(select(Allocation))
        assert allocation.status == AllocationStatus.submitted and allocation.hit_id == "HIT1"
    finally:
        session.close()


def test_the_server_believes_forwarded_addresses_from_its_proxy_only(
    caddy, postgres_database_url, small_bundle, tmp_path
):
    """Through Caddy a client's own X-Forwarded-For is replaced by its real address; sent
    straight to the server from an address that is not the proxy's, it is ignored."""
    url = postgres_database_url
    study = import_study(url, small_bundle, items_per_assignment=5)
    register_hits(url, study.slug, ["HIT0", "HIT1", "HIT2"])
    upstream = free_port()
    command = [
        shutil.which("study-server", path=str(Path(sys.executable).parent)) or "study-server",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(upstream),
        "--no-access-log",
    ]
    spoofed = {"X-Forwarded-For": "203.0.113.9"}
    with (
        serve_process(url, env={"ADVCRITIC_TRUSTED_PROXIES": '["127.0.0.1"]'}, command=command),
        caddy_front(caddy, tmp_path, upstream) as front,
    ):
        trusted = ssl.create_default_context(cafile=str(front.root_ca))
        with httpx.Client(base_url=front.url, verify=trusted, headers=spoofed) as via_proxy:
            assert _accept(via_proxy, study.slug, "W0", "A0", "HIT0").status_code == 200
        direct = httpx.Client(
            base_url=f"http://127.0.0.1:{upstream}",
            headers=spoofed,
            transport=httpx.HTTPTransport(local_address="127.0.0.2"),
        )
        with direct:
            assert _accept(direct, study.slug, "W1", "A1", "HIT1").status_code == 200
    session = session_for(url)
    try:
        seen = dict(
            session.execute(select(Allocation.mturk_assignment_id, Allocation.source_address)).all()
        )
    finally:
        session.close()
    # Via Caddy: the real client, this host (not limited, so not kept); directly: the peer.
    assert seen == {"A0": None, "A1": "127.0.0.2"}


def _accept(client: httpx.Client, slug: str, worker: str, assignment: str, hit: str):
    return client.post(
        f"/api/studies/{slug}/accept",
        json={
            "worker_id": worker,
            "mturk": {
                "assignment_id": assignment,
                "hit_id": hit,
                "turk_submit_to": "https://workersandbox.mturk.com",
            },
            "consent_sha256": consent_sha256(client, slug),
        },
    )


def _labels(url: str) -> list[tuple[int, int]]:
    session = session_for(url)
    try:
        return [
            tuple(row)
            for row in session.execute(select(Label.position, Label.label).order_by(Label.position))
        ]
    finally:
        session.close()
