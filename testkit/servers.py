"""The study server running for real: uvicorn in a thread of this process, or the
`study-server serve` command in a subprocess, on a free loopback port."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from study_server.loopback import serve_in_thread
from study_server.settings import Settings

ADMIN_TOKEN = "test-admin-token"
# A stand-in for MTurk's submission host in tests (nothing listens there unless a test starts it).
MTURK_TEST_SUBMIT_HOST = "http://127.0.0.1:9"
TEST_SUBMIT_HOSTS = [
    "https://www.mturk.com",
    "https://workersandbox.mturk.com",
    MTURK_TEST_SUBMIT_HOST,
]


def make_settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "DATABASE_URL": url,
        "admin_token": ADMIN_TOKEN,
        "turk_submit_hosts": TEST_SUBMIT_HOSTS,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class AsgiServer:
    """An ASGI app served by uvicorn in a thread of this process, on a loopback port."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@dataclass
class LiveServer(AsgiServer):
    settings: Settings


def serve_asgi(app: Any, **uvicorn_options: Any) -> AsgiServer:
    """Start `app` (the study server, or a market's fake) on a pre-bound loopback socket."""
    served = serve_in_thread(app, **uvicorn_options)
    return AsgiServer(url=served.url, server=served.server, thread=served.thread)


def start_live_server(settings: Settings) -> LiveServer:
    from study_server.api.app import create_app
    from study_server.api.clients import uvicorn_proxy_options

    served = serve_asgi(create_app(settings), **uvicorn_proxy_options(settings))
    return LiveServer(url=served.url, server=served.server, thread=served.thread, settings=settings)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process and its descendants so far (Linux
        /proc)."""
        total = 0.0
        ticks = os.sysconf("SC_CLK_TCK")
        for pid in [self.process.pid, *descendants(self.process.pid)]:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        return total


def children(pid: int) -> list[int]:
    """The processes `pid`'s threads started (Linux /proc)."""
    found: list[int] = []
    for listed in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in listed.read_text().split()]
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every process below `pid`: the server's database processes are the children of a fork
    server that one of its threads started."""
    return [below for child in children(pid) for below in (child, *descendants(child))]


def database_processes(pid: int) -> list[int]:
    """The database processes below `pid` (`study_server/db/processes.py`): the children of
    the fork servers among its descendants."""
    found: list[int] = []
    for below in descendants(pid):
        try:
            command = Path(f"/proc/{below}/cmdline").read_bytes()
        except OSError:  # it ended meanwhile
            continue
        if b"forkserver" in command:
            found += children(below)
    return found


@contextmanager
def serve_process(
    database_url: str,
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
    command: Sequence[str] | None = None,
    health_path: str = "/healthz",
) -> Iterator[RunningServer]:
    """Run `study-server serve` (or `command`, printing uvicorn's start line); yield it running."""
    port = free_port()
    argv = (
        list(command)
        if command
        else [
            sys.executable,
            "-m",
            "study_server.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "info",
        ]
    )
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ADVCRITIC_ADMIN_TOKEN": ADMIN_TOKEN,
        "ADVCRITIC_TURK_SUBMIT_HOSTS": json.dumps(TEST_SUBMIT_HOSTS),
        **(env or {}),
    }
    process = subprocess.Popen(
        argv, env=environment, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    assert process.stderr is not None
    lines: list[str] = []
    url = None
    deadline = time.monotonic() + 60
    while url is None:
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n" + "".join(lines))
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the server did not start within 60 s:\n" + "".join(lines))
        lines.append(line)
        match = re.search(r"Uvicorn running on (http://[0-9.]+:\d+)", line)
        if match:
            url = match.group(1)
    drain = threading.Thread(
        target=lambda: [None for _ in process.stderr], daemon=True
    )  # keep the pipe flowing
    drain.start()
    try:
        _wait_healthy(url + health_path)
        yield RunningServer(url=url, process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} never answered 200")
        time.sleep(0.1)
