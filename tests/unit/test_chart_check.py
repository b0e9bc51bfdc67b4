"""`make chart-check` accepts the real chart and names the field of a bad values file."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CHECK = REPO_ROOT / "scripts" / "check_chart.py"


def copy_repo(destination: Path) -> Path:
    shutil.copytree(REPO_ROOT / "charts", destination / "charts")
    shutil.copy(REPO_ROOT / "skaffold.yaml", destination / "skaffold.yaml")
    (destination / "services").mkdir()
    shutil.copy(REPO_ROOT / "services" / "Dockerfile", destination / "services" / "Dockerfile")
    return destination


def run_check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK), "--repo-root", str(root)], capture_output=True, text=True, timeout=60, check=False
    )


def test_real_chart_and_skaffold_pass(tmp_path: Path) -> None:
    result = run_check(copy_repo(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_bad_environment_values_are_rejected_with_the_field_path(tmp_path: Path) -> None:
    root = copy_repo(tmp_path)
    (root / "charts" / "tickstrata" / "values-broken.yaml").write_text(
        "components:\n  writer:\n    enabled: true\n    replicas: -1\n    colour: blue\n"
    )
    result = run_check(root)
    assert result.returncode == 1
    assert "values-broken.yaml: components.writer.replicas: -1 is less than the minimum of 0" in result.stderr
    assert "values-broken.yaml: components.writer: Additional properties are not allowed ('colour'" in result.stderr


def test_skaffold_pointing_at_a_missing_values_file_fails(tmp_path: Path) -> None:
    root = copy_repo(tmp_path)
    (root / "charts" / "tickstrata" / "values-dev.yaml").unlink()
    result = run_check(root)
    assert result.returncode == 1
    assert "skaffold.yaml: values file charts/tickstrata/values-dev.yaml does not exist" in result.stderr
