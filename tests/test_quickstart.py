"""The README's main job, `advcritic quickstart`, end to end on tiny settings.

It trains for real (one pretraining epoch and one adversary-critic epoch on 500 digits),
attacks 30 test images, imports the bundle into SQLite and serves the labeling page; the
test then opens the lab link over HTTP like a person would, and runs the command again to
check that finished steps are kept rather than redone.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import pytest

from pipeline.cli import main as advcritic

TINY = [
    "--epochs",
    "1",
    "--train-limit",
    "500",
    "--limit",
    "30",
    "--catch",
    "5",
    "--no-figures",
    "--threads",
    "1",
    "--no-progress",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _lines(process: subprocess.Popen[str], out: queue.Queue[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        out.put(line)


def _wait_for(lines: queue.Queue[str], needle: str, seen: list[str], timeout: float = 300) -> str:
    while True:
        line = lines.get(timeout=timeout)
        seen.append(line)
        if needle in line:
            return line


def test_quickstart_serves_a_study_a_person_can_open(tmp_path: Path) -> None:
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "quickstart",
        "--workdir",
        str(tmp_path),
        "--port",
        str(port),
        *TINY,
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(process, lines), daemon=True).start()
    seen: list[str] = []
    try:
        banner = _wait_for(lines, "*** Open", seen)
        url = banner.split("Open ", 1)[1].split(" in a browser", 1)[0]
        assert url.startswith(f"http://127.0.0.1:{port}/lab/ours-fc-s0?code=")
        _wait_for(lines, "Uvicorn running", seen, timeout=60)
        with urllib.request.urlopen(url, timeout=10) as response:
            page = response.read().decode()
        assert response.status == 200
        assert '"mode": "local"' in page and "Label" in page  # the labeling page, ready
        with pytest.raises(urllib.error.HTTPError) as refused:  # a code nobody was given
            urllib.request.urlopen(url.split("?")[0] + "?code=ABCD-EFGH-JKMN", timeout=10)
        assert refused.value.code == 403
        # The live dashboard is served too; the quickstart made its admin token.
        token = (tmp_path / "admin-token").read_text().strip()
        assert (tmp_path / "admin-token").stat().st_mode & 0o077 == 0
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", timeout=30, follow_redirects=True
        ) as web:
            assert web.post("/dashboard/login", data={"token": "wrong"}).status_code == 401
            signed_in = web.post("/dashboard/login", data={"token": token})
            assert signed_in.status_code == 200 and "ours-fc-s0" in signed_in.text
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    log = "".join(seen)
    assert "imported study 'ours-fc-s0': 35 stimuli" in log
    assert (tmp_path / "runs" / "ours-fc-s0" / "checkpoint.pt").is_file()

    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "quickstart",
            "--workdir",
            str(tmp_path),
            "--no-serve",
            *TINY,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert "is already complete" in again.stdout
    assert "already a verified bundle; kept" in again.stdout
    assert "already imported as study 'ours-fc-s0'" in again.stdout


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--epochs", "0"),
        ("--limit", "-3"),
        ("--catch", "-1"),
        ("--threads", "0"),
        ("--port", "70000"),
    ],
)
def test_quickstart_rejects_bad_values(
    option: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert advcritic(["quickstart", "--workdir", str(tmp_path), option, value]) == 2
    assert option in capsys.readouterr().err
    assert not any(tmp_path.iterdir()), "nothing may be written for bad input"
