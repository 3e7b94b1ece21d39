"""Static checks of one built wheel (wheels/check.sh runs it with the tools venv).

usage: python inspect_wheel.py WHEEL [--max-glibc 2.28] [--source DIR]

DIR (default: this checkout) is the source tree the wheel was built from.

* the file name's tags: ``cpXY-cpXY`` and only manylinux platform tags no newer than
  ``--max-glibc`` (no plain ``linux_x86_64``); ``auditwheel show`` agrees;
* contents: every compiled module (``xyra/_core`` and the bench's load drivers in
  ``xyra/bench/_drivers``) is there, one per ``.pyx``, with its ``.pyi`` stub; ``py.typed``
  is there, no Cython/C sources (.pyx .pxd .c .h), no objects, caches or build leftovers;
  every other file of the source tree's xyra/ is in it (subpackages such as xyra.bench,
  package data such as xyra/static/);
* metadata: the version is ``xyra/_version.py``'s and the ``xyra`` console script points
  at ``xyra.__main__:main``.

Prints one summary line: ``OK <file> <python> <tags> <size>``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the default source tree (--source)
FORBIDDEN = (".pyx", ".pxd", ".c", ".h", ".o", ".pyc", ".egg-info")
LEGACY = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
# The folders of compiled modules (setup.py builds one extension per .pyx in each).
COMPILED_DIRS = ("xyra/_core", "xyra/bench/_drivers")


def glibc_of(tag: str) -> tuple[int, int] | None:
    m = re.fullmatch(r"manylinux_(\d+)_(\d+)_\w+", tag)
    if m:
        return int(m[1]), int(m[2])
    for legacy, version in LEGACY.items():
        if tag.startswith(legacy + "_"):
            return version
    return None


def source_version(root: Path) -> str:
    text = (root / "xyra" / "_version.py").read_text()
    m = re.search(r'__version__\s*=\s*"([^"]+)"', text)
    assert m, "xyra/_version.py has no __version__"
    return m[1]


SOURCE_ONLY = (".pyx", ".pxd", ".h", ".c")


def shipped_sources(root: Path) -> set[str]:
    """Files of the source tree's xyra/ a wheel must contain (sources of the compiled
    modules excepted): modules, stubs, py.typed and package data. From git (tracked and
    untracked-but-not-ignored) when there is a checkout, else from the file system."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "xyra"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode == 0 and out.stdout.strip():
        names = [n for n in out.stdout.splitlines() if (root / n).is_file()]
    else:
        names = [
            p.relative_to(root).as_posix()
            for p in (root / "xyra").rglob("*")
            if p.is_file()
            and "__pycache__" not in p.parts
            and not p.name.endswith((".so", ".pyd", ".pyc", ".o"))
        ]
    return {n for n in names if not n.endswith(SOURCE_ONLY)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("wheel", type=Path)
    ap.add_argument("--max-glibc", default="2.28")
    ap.add_argument("--no-auditwheel", action="store_true")
    ap.add_argument("--source", type=Path, default=ROOT)
    args = ap.parse_args()
    source: Path = args.source.resolve()
    wheel: Path = args.wheel
    limit = tuple(int(x) for x in args.max_glibc.split("."))
    errors: list[str] = []

    # -- tags ------------------------------------------------------------------------------
    parts = wheel.name[:-4].split("-")
    if len(parts) != 5:
        errors.append(f"unexpected wheel file name {wheel.name}")
        parts = ["?"] * 5
    _, version, pytag, abitag, plat = parts
    if not re.fullmatch(r"cp3\d+", pytag) or abitag != pytag:
        errors.append(f"python/abi tags {pytag}-{abitag}: expected cp3X-cp3X")
    plats = plat.split(".")
    worst = (0, 0)
    for tag in plats:
        glibc = glibc_of(tag)
        if glibc is None:
            errors.append(f"platform tag {tag} is not a manylinux tag")
            continue
        worst = max(worst, glibc)
        if glibc > limit:
            errors.append(f"platform tag {tag} needs glibc {glibc}, newer than {limit}")

    if not args.no_auditwheel:
        out = subprocess.run(
            ["auditwheel", "show", str(wheel)], capture_output=True, text=True, check=False
        )
        text = " ".join((out.stdout + out.stderr).split())
        m = re.search(r'consistent with the following platform tag: "([^"]+)"', text)
        if out.returncode or not m:
            errors.append(f"auditwheel show failed:\n{out.stdout}{out.stderr}")
        else:
            glibc = glibc_of(m[1])
            if glibc is None or glibc > limit:
                errors.append(f"auditwheel show: {m[1]} (newer than glibc {limit}):\n{text}")

    # -- contents --------------------------------------------------------------------------
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        dist_info = next((n.split("/")[0] for n in names if ".dist-info/" in n), "")
        metadata = zf.read(f"{dist_info}/METADATA").decode() if dist_info else ""
        entry_points = (
            zf.read(f"{dist_info}/entry_points.txt").decode()
            if f"{dist_info}/entry_points.txt" in names
            else ""
        )
    for name in names:
        if name.endswith(FORBIDDEN) or "__pycache__" in name or name.startswith("build/"):
            errors.append(f"build leftover or source in the wheel: {name}")
    compiled = sorted(
        n
        for n in names
        if any(re.fullmatch(rf"{d}/\w+\.cpython-[^/]+\.so", n) for d in COMPILED_DIRS)
    )
    if not compiled:
        errors.append(f"no compiled modules in {' or '.join(COMPILED_DIRS)}")
    for so in compiled:
        stub = so.split(".")[0] + ".pyi"
        if stub not in names:
            errors.append(f"{so} has no stub {stub}")
    expected_modules = {f"{d}/{p.stem}" for d in COMPILED_DIRS for p in (source / d).glob("*.pyx")}
    got_modules = {so.split(".")[0] for so in compiled}
    if expected_modules != got_modules:
        errors.append(
            f"compiled modules {sorted(got_modules)} != sources {sorted(expected_modules)}"
        )
    for required in ("xyra/py.typed", "xyra/__main__.py", "xyra/_version.py"):
        if required not in names:
            errors.append(f"missing {required}")
    missing = sorted(shipped_sources(source) - set(names))
    if missing:
        errors.append(
            f"{len(missing)} file(s) of xyra/ are not in the wheel "
            f"(packages / package-data in pyproject.toml): {' '.join(missing)}"
        )
    expected_version = source_version(source)
    if version != expected_version or f"\nVersion: {expected_version}\n" not in metadata:
        errors.append(f"version {version} is not xyra/_version.py's {expected_version}")
    if not re.search(r"^xyra\s*=\s*xyra\.__main__:main\s*$", entry_points, re.M):
        errors.append("no console script xyra = xyra.__main__:main")

    size = wheel.stat().st_size
    if errors:
        print(f"FAIL {wheel.name}")
        for e in errors:
            print(f"  - {e}")
        return 1
    py = f"{pytag[2]}.{pytag[3:]}"
    print(f"OK {wheel.name} python={py} tags={plat} glibc<={worst[0]}.{worst[1]} size={size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
