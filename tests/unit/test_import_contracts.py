"""The import-linter contracts hold on the real tree and break when a forbidden import is added to a copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def copy_tree(destination: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO_ROOT / "services" / "tickstrata", destination / "services" / "tickstrata", ignore=ignore)
    shutil.copytree(
        REPO_ROOT / "operator" / "tickstrata_operator", destination / "operator" / "tickstrata_operator", ignore=ignore
    )
    shutil.copy(REPO_ROOT / "pyproject.toml", destination / "pyproject.toml")
    return destination


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # The copy comes first on the path, so it shadows the editable install of the real tree.
    env = {**os.environ, "PYTHONPATH": f"{root / 'services'}{os.pathsep}{root / 'operator'}"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_contracts_are_kept_on_the_real_tree(tmp_path: Path) -> None:
    result = lint_imports(copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("services/tickstrata/common/leak.py", "import tickstrata.writer.app", "common imports no service"),
        ("services/tickstrata/query/leak.py", "import tickstrata.collector.app", "services are independent"),
        ("services/tickstrata/writer/leak.py", "import kopf", "kopf and kubernetes only in the operator"),
        ("services/tickstrata/collector/leak.py", "import boto3", "boto3 only in the tierer"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tmp_path: Path, module: str, line: str, contract: str) -> None:
    root = copy_tree(tmp_path)
    (root / module).write_text(f'"""Deliberate violation."""\n\n{line}\n')
    result = lint_imports(root)
    assert result.returncode == 1, result.stdout
    broken = [row for row in result.stdout.splitlines() if row.endswith("BROKEN")]
    assert len(broken) == 1, result.stdout
    assert broken[0].startswith(contract)
