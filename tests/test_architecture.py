"""The layout's import rules (docs/architecture.md), checked on every file of each package.

    contract                      imports no other part
    model                         contract
    study_server (+ migrations)   contract
    markets                       contract, study_server
    analysis                      contract, study_server
    pipeline                      everything
    testkit                       contract, study_server, markets, analysis

PyTorch is imported only by model and pipeline (and bench/tests), so the server image, the
market commands and the analysis install and run without it. Imports inside functions count.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("contract", "model", "study_server", "migrations", "markets", "analysis", "pipeline")
ALLOWED = {
    "contract": set(),
    "model": {"contract"},
    # Alembic's env.py reads the models' metadata; migrate.py runs the migrations package.
    "study_server": {"contract", "migrations"},
    "migrations": {"contract", "study_server"},
    "markets": {"contract", "study_server", "migrations"},
    "analysis": {"contract", "study_server", "migrations"},
    "pipeline": {"contract", "model", "study_server", "migrations", "markets", "analysis"},
    "testkit": {"contract", "study_server", "migrations", "markets", "analysis"},
}
TORCH_FREE = ("contract", "study_server", "migrations", "markets", "analysis", "testkit")
PROJECT = (*PARTS, "testkit", "tests", "bench")


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def package_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_part_imports_only_what_its_rule_allows(package):
    broken = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in package_files(package)
        for line, module in imports_of(path)
        if module in PROJECT and module != package and module not in ALLOWED[package]
    ]
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("package", TORCH_FREE)
def test_the_server_side_never_imports_pytorch(package):
    broken = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in package_files(package)
        for line, module in imports_of(path)
        if module in ("torch", "torchvision", "mlxtend")
    ]
    assert not broken, "\n".join(broken)


def test_benchmarks_take_their_fixtures_from_testkit_not_tests():
    broken = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in package_files("bench")
        for line, module in imports_of(path)
        if module == "tests"
    ]
    assert not broken, "\n".join(broken)


def test_the_rule_checker_sees_a_forbidden_import(tmp_path):
    """The check is real: a model file importing the server would be caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from study_server.db import models\n")
    assert imports_of(bad) == [(2, "study_server")]
    assert "study_server" not in ALLOWED["model"]


def _image_packages() -> list[str]:
    """The folders the Dockerfile copies into the server image."""
    copied = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"] and len(parts) == 3 and (ROOT / parts[1]).is_dir():
            copied.append(parts[1])
    return copied


def test_the_server_image_holds_no_model_code_and_runs_without_it(tmp_path):
    packages = _image_packages()
    assert set(packages) == {"contract", "study_server", "markets", "analysis", "migrations"}
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"model", "pipeline", "testkit", "tests", "bench"} <= set(ignored)
    context = tmp_path / "image"
    for package in packages:
        shutil.copytree(ROOT / package, context / package)
    probe = (
        "import sys\n"
        f"sys.path.insert(0, {str(context)!r})\n"
        "for blocked in ('torch', 'model', 'pipeline', 'testkit', 'tests'):\n"
        "    sys.modules[blocked] = None\n"
        "import study_server.cli, study_server.api.app, study_server.importer\n"
        "import markets.mturk.cli, markets.prolific.cli, analysis.cli, study_server.db.migrate\n"
        "import analysis.dashboard.app\n"
        "mine = [m.__file__ for name, m in list(sys.modules.items())\n"
        "        if name.split('.')[0] in ('contract', 'study_server', 'markets', 'analysis')]\n"
        f"assert all(path.startswith({str(context)!r}) for path in mine), mine\n"
        "print(len(mine))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 20
