"""The README's five-minute tour, run as written: every command of its `<!-- tour -->` block,
in a fresh folder, through the installed console scripts. The one step a person does (open an
invitation link and label) is done here through the same HTTP API the page uses."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx

from contract.bundle import read_bundle
from testkit.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tour_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- tour -->\s*```bash\n(.*?)```\s*<!-- /tour -->", text, re.S)
    assert block, "README.md has no <!-- tour --> block"
    return [line for line in block.group(1).splitlines() if line and not line.startswith("#")]


def test_the_tour_block_is_the_five_steps():
    programs = [shlex.split(line)[0] for line in tour_commands()]
    assert programs == [
        "advcritic", "advcritic", "study-server", "study-server", "study-server",
        "study-server", "analyze-study", "advcritic",
    ]  # fmt: skip


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(BIN / argv[0]), *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr}"
    return done.stdout + done.stderr


def _label(url: str, folder: Path, codes: list[str]) -> None:
    """What each invited person's page does: consent, accept, every image, each label saved
    as it is given, submit. They keep the original class of most images."""
    bundle = next(path for path in (folder / "stimuli").iterdir() if path.is_dir())
    records = {record.image_sha256: record for record in read_bundle(bundle).records}
    with httpx.Client(base_url=url, timeout=30) as web:
        consent = web.get("/api/studies/tour/consent").json()["sha256"]
        for code in codes:
            accepted = web.post(
                "/api/studies/tour/accept", json={"code": code, "consent_sha256": consent}
            )
            assert accepted.status_code == 200, accepted.text
            body, labels = accepted.json(), []
            for position, image in enumerate(body["item_urls"]):
                record = records[hashlib.sha256(web.get(image).content).hexdigest()]
                label = record.target if position % 10 == 3 and record.target is not None else (
                    record.original_label
                )  # fmt: skip
                saved = web.put(
                    f"{body['label_url_prefix']}{position}",
                    json={"code": code, "label": label, "response_ms": 1500},
                )
                assert saved.status_code == 200, saved.text
                labels.append({"position": position, "label": label, "response_ms": 1500})
            stored = web.post(body["submit_url"], json={"code": code, "labels": labels})
            assert stored.status_code == 200 and stored.json()["status"] == "stored"


def _wait_healthy(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("study-server serve did not answer")


def test_the_readme_tour_runs_as_written(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    for name in ("DATABASE_URL", "ADVCRITIC_PUBLIC_URL", "ADVCRITIC_ADMIN_TOKEN"):
        env.pop(name, None)
    outputs: dict[str, str] = {}
    codes: list[str] = []
    for line in tour_commands():
        argv = shlex.split(line)
        if argv[:2] == ["study-server", "serve"]:
            port = free_port()
            serve = subprocess.Popen(
                [str(BIN / argv[0]), *argv[1:], "--host", "127.0.0.1", "--port", str(port)],
                cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            try:
                _wait_healthy(f"http://127.0.0.1:{port}", serve)
                _label(f"http://127.0.0.1:{port}", tmp_path, codes)
            finally:
                serve.terminate()
                serve.wait(timeout=30)
            continue
        outputs[line] = out = _run(argv, tmp_path, env)
        if argv[:2] == ["study-server", "invite"]:
            codes = re.findall(r"code=([A-Z0-9-]+)", out)
            assert len(codes) == int(argv[-1])
    joined = "\n".join(outputs.values())
    assert "wrote stimuli/tour: 100 adversarial + 8 catch stimuli" in joined
    assert "imported study 'tour': 108 stimuli in 4 assignments" in joined
    # Every adversarial label counts but those whose attack led back to the true class.
    back = int(re.search(r"attacked toward their true class: (\d+)", joined).group(1))
    assert f"| FC | Reference | {100 - back} |" in outputs["analyze-study --study tour"]
    assert "Table 2 of the dry run beside the known answer" in joined
