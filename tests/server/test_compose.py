"""docker-compose.yml and the Dockerfile. No container engine runs here, so the file is
validated against the Compose specification (compose-pydantic's models of the spec's JSON
schema), and its migrate and serve commands run for real against the local PostgreSQL."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from compose_pydantic import ComposeSpecification

from study_server.db.migrate import current_revision, head_revision
from study_server.settings import Settings
from testkit.servers import free_port, serve_process

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_the_compose_file_follows_the_compose_specification(compose):
    ComposeSpecification.model_validate(compose)
    broken = {
        **compose,
        "services": {
            **compose["services"],
            "server": {**compose["services"]["server"], "bogus": 1},
        },
    }
    with pytest.raises(ValueError, match="bogus"):
        ComposeSpecification.model_validate(broken)  # the validation is real: unknown keys fail


def test_services_start_in_order_db_healthy_then_migrations_then_server(compose):
    services = compose["services"]
    assert set(services) == {"db", "migrate", "server", "proxy"}
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert services["server"]["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"}
    }
    assert services["migrate"]["command"] == ["study-server", "migrate"]
    assert services["server"]["command"][:2] == ["study-server", "serve"]
    # secrets have no default: compose refuses to start without them
    assert "${POSTGRES_PASSWORD?" in services["db"]["environment"]["POSTGRES_PASSWORD"]
    assert "${ADVCRITIC_ADMIN_TOKEN?" in services["server"]["environment"]["ADVCRITIC_ADMIN_TOKEN"]
    settings_fields = {f"ADVCRITIC_{name.upper()}" for name in Settings.model_fields} | {
        "DATABASE_URL"
    }
    for service in ("migrate", "server"):
        assert set(services[service]["environment"]) <= settings_fields, (
            "every variable must be a setting"
        )


def test_only_the_https_proxy_is_published_and_the_server_trusts_only_it(compose):
    services = compose["services"]
    server, proxy = services["server"], services["proxy"]
    assert "ports" not in server and server["expose"] == ["8000"]  # reachable via the proxy only
    assert {p.split(":")[0] for p in proxy["ports"]} == {"80", "443"}
    assert proxy["image"].startswith("caddy:2")
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    assert proxy["depends_on"] == {"server": {"condition": "service_healthy"}}
    proxy_address = proxy["networks"]["default"]["ipv4_address"]
    assert json.loads(server["environment"]["ADVCRITIC_TRUSTED_PROXIES"]) == [proxy_address]
    subnet = compose["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(proxy_address) in ipaddress.ip_network(subnet)
    environment = server["environment"]
    assert environment["ADVCRITIC_PUBLIC_URL"] == "https://${ADVCRITIC_DOMAIN:-localhost}"
    assert environment["ADVCRITIC_LOCAL_MODE"] == "${ADVCRITIC_LOCAL_MODE:-false}"  # lab mode off
    assert proxy["environment"]["ADVCRITIC_DOMAIN"] == "${ADVCRITIC_DOMAIN:-localhost}"
    assert "--no-access-log" in server["command"]  # client addresses are not logged


def test_the_image_installs_the_server_without_pytorch():
    dockerfile = (ROOT / "Dockerfile").read_text()
    instructions = [
        line
        for line in dockerfile.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert any(line.startswith("RUN pip install . ") for line in instructions)
    assert not any("torch" in line or "[model" in line for line in instructions)
    assert (
        'CMD ["study-server", "serve", "--app", "analysis.dashboard.app:create_app", '
        '"--host", "0.0.0.0", "--port", "8000"]'
    ) in dockerfile
    blocked = (
        "import sys; sys.modules['torch'] = None; "
        "import study_server.cli, study_server.api.app, study_server.importer"
    )
    assert (
        subprocess.run([sys.executable, "-c", blocked], cwd=ROOT, capture_output=True).returncode
        == 0
    )


def _command(argv: list[str], **replace: str) -> list[str]:
    """The compose command, run here: the venv's study-server, loopback host, a free port."""
    executable = (
        shutil.which("study-server", path=str(Path(sys.executable).parent)) or "study-server"
    )
    out = [executable, *argv[1:]]
    for flag, value in replace.items():
        out[out.index(flag) + 1] = value
    return out


@pytest.mark.postgres
def test_the_trusted_proxies_variable_reads_as_the_settings_read_it(compose, monkeypatch):
    value = compose["services"]["server"]["environment"]["ADVCRITIC_TRUSTED_PROXIES"]
    monkeypatch.setenv("ADVCRITIC_TRUSTED_PROXIES", value)
    assert Settings().trusted_proxies == ["172.30.0.10"]


def test_the_compose_migrate_and_serve_commands_work_against_postgresql(compose, database_factory):
    url = database_factory.empty_postgres()
    env = {**os.environ, "DATABASE_URL": url}
    assert current_revision(url) is None
    migrate = subprocess.run(
        _command(compose["services"]["migrate"]["command"]),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr
    assert current_revision(url) == head_revision()
    serve = _command(
        compose["services"]["server"]["command"],
        **{"--host": "127.0.0.1", "--port": str(free_port())},
    )
    with serve_process(url, command=serve) as server:
        health = httpx.get(f"{server.url}/healthz", timeout=10)
        admin = httpx.get(
            f"{server.url}/admin/studies",
            headers={"Authorization": "Bearer test-admin-token"},
            timeout=10,
        )
        dashboard = httpx.get(f"{server.url}/dashboard/login", timeout=10)
    assert health.json() == {"status": "ok"}
    assert dashboard.status_code == 200  # the compose file serves the dashboard too
    assert admin.status_code == 200 and admin.json() == []


def test_serve_refuses_an_unmigrated_database(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "study_server.cli",
            "serve",
            "--database-url",
            f"sqlite:///{tmp_path / 'empty.db'}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2 and "run `study-server migrate` first" in result.stderr
