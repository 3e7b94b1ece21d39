"""Offline check that wheels.yml's runner matrix builds exactly pyproject's wheel set.

For every ``include`` entry of the ``wheels`` job (``os`` + ``archs``), ask
``cibuildwheel --print-build-identifiers`` what that runner would build (its platform
from the runner name, ``CIBW_ARCHS`` as the workflow sets it). The runners must not
overlap, and together they must build every identifier pyproject's [tool.cibuildwheel]
selects for linux and macos (cibuildwheel prints macOS identifiers on Linux too).

usage: python wheels/check_matrix.py   (from wheels/check-config.sh)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ruamel.yaml import YAML  # a dependency of check-jsonschema

ROOT = Path(__file__).resolve().parent.parent


def identifiers(platform: str, archs: str | None = None) -> list[str]:
    env = dict(os.environ)
    for key in list(env):
        if key.startswith("CIBW_"):
            del env[key]
    if archs is not None:
        env["CIBW_ARCHS"] = archs
    out = subprocess.run(
        ["cibuildwheel", "--print-build-identifiers", "--platform", platform],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def platform_of(runner: str) -> str:
    if runner.startswith("ubuntu"):
        return "linux"
    if runner.startswith("macos"):
        return "macos"
    raise SystemExit(f"check_matrix: unknown runner {runner!r}")


def main() -> int:
    workflow = YAML(typ="safe").load((ROOT / ".github/workflows/wheels.yml").read_text())
    matrix = workflow["jobs"]["wheels"]["strategy"]["matrix"]["include"]
    expected = {p: set(identifiers(p)) for p in ("linux", "macos")}
    built: dict[str, set[str]] = {"linux": set(), "macos": set()}
    errors = []
    for entry in matrix:
        platform = platform_of(entry["os"])
        ids = identifiers(platform, str(entry["archs"]))
        print(f"{entry['os']:<18} {entry['archs']:<8} {len(ids)} wheels: {' '.join(ids)}")
        if not ids:
            errors.append(f"{entry['os']} / {entry['archs']} builds nothing")
        overlap = built[platform] & set(ids)
        if overlap:
            errors.append(f"{entry['os']} / {entry['archs']} builds {sorted(overlap)} again")
        built[platform] |= set(ids)
    for platform, selected in expected.items():
        if built[platform] != selected:
            errors.append(
                f"{platform}: the matrix builds {sorted(built[platform])}, "
                f"pyproject selects {sorted(selected)}"
            )
    total = sum(len(v) for v in expected.values())
    if errors:
        print("\n".join(f"check_matrix: {e}" for e in errors), file=sys.stderr)
        return 1
    print(f"check_matrix: the wheels.yml matrix builds all {total} selected wheels once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
