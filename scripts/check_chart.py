"""Validate the Helm chart and skaffold.yaml offline: Chart.yaml fields, every values file against the schema,
then `helm lint --strict` and `helm template` with each values file.

The schema check needs no Helm (`values.schema.json` is JSON Schema, which Helm also enforces at install time).
The helm steps use `.cache/kube/bin/helm` (`make setup-kube`); without it they are skipped with a note. Exit 1 with
each problem named, else 0.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SEMVER = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge like Helm merges `-f` files over values.yaml: maps recursively, everything else replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_yaml(path: Path) -> Any:
    with path.open() as handle:
        return yaml.safe_load(handle)


def chart_problems(chart_dir: Path) -> Iterator[str]:
    chart = load_yaml(chart_dir / "Chart.yaml")
    if chart.get("apiVersion") != "v2":
        yield f"{chart_dir}/Chart.yaml: apiVersion must be v2"
    for field in ("name", "version", "appVersion", "description"):
        if not chart.get(field):
            yield f"{chart_dir}/Chart.yaml: {field} is required"
    if not SEMVER.match(str(chart.get("version", ""))):
        yield f"{chart_dir}/Chart.yaml: version {chart.get('version')!r} is not SemVer 2"
    schema = json.loads((chart_dir / "values.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    defaults = load_yaml(chart_dir / "values.yaml") or {}
    candidates = [("values.yaml", defaults)]
    for env_file in sorted(chart_dir.glob("values-*.yaml")):
        candidates.append((env_file.name, deep_merge(defaults, load_yaml(env_file) or {})))
    for name, values in candidates:
        for error in sorted(validator.iter_errors(values), key=lambda e: list(e.absolute_path)):
            path = ".".join(str(part) for part in error.absolute_path) or "(root)"
            yield f"{chart_dir}/{name}: {path}: {error.message}"


def helm_problems(chart_dir: Path, helm: Path) -> Iterator[str]:
    """`helm lint --strict` and `helm template` for values.yaml and each values-<env>.yaml."""
    for values_file in [chart_dir / "values.yaml", *sorted(chart_dir.glob("values-*.yaml"))]:
        for action in (["lint", "--strict", str(chart_dir)], ["template", "check", str(chart_dir), "--include-crds"]):
            done = subprocess.run(
                [str(helm), *action, "-f", str(values_file)], capture_output=True, text=True, timeout=120, check=False
            )
            if done.returncode != 0:
                output = (done.stderr or done.stdout).strip().splitlines()[-5:]
                yield f"{chart_dir}: helm {action[0]} -f {values_file.name}: " + " / ".join(output)


def skaffold_problems(repo_root: Path) -> Iterator[str]:
    config = load_yaml(repo_root / "skaffold.yaml")
    if not str(config.get("apiVersion", "")).startswith("skaffold/") or config.get("kind") != "Config":
        yield "skaffold.yaml: apiVersion skaffold/* and kind Config are required"
    for artifact in config.get("build", {}).get("artifacts", []):
        dockerfile = artifact.get("docker", {}).get("dockerfile", "Dockerfile")
        if not (repo_root / dockerfile).is_file():
            yield f"skaffold.yaml: artifact {artifact.get('image')}: {dockerfile} does not exist"
    releases = config.get("manifests", {}).get("helm", {}).get("releases", [])
    if not releases:
        yield "skaffold.yaml: manifests.helm.releases is empty"
    referenced = [vf for release in releases for vf in release.get("valuesFiles", [])]
    referenced += [p["value"] for prof in config.get("profiles", []) for p in prof.get("patches", [])]
    for release in releases:
        if not (repo_root / release.get("chartPath", "")).is_dir():
            yield f"skaffold.yaml: release {release.get('name')}: chartPath does not exist"
    for values_file in referenced:
        if not (repo_root / values_file).is_file():
            yield f"skaffold.yaml: values file {values_file} does not exist"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo-root", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args(argv)
    root: Path = args.repo_root
    problems = [*skaffold_problems(root)]
    helm = root / ".cache" / "kube" / "bin" / "helm"
    for chart_dir in sorted(p.parent for p in (root / "charts").glob("*/Chart.yaml")):
        problems.extend(chart_problems(chart_dir))
        if helm.exists():
            problems.extend(helm_problems(chart_dir, helm))
    if not helm.exists():
        print(f"chart check: {helm} missing (make setup-kube): helm lint and template skipped")
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"chart check: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("chart check: charts and skaffold.yaml are valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
