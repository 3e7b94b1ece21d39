"""The benchmark lives beside the server: no server module imports ``xyra.bench``.

Every module of ``xyra`` outside ``xyra.bench`` is imported in a fresh interpreter, and
none of them may have pulled in ``xyra.bench`` or its compiled load drivers. (``xyra``'s
command line reaches the bench only when ``xyra bench`` is run, by a lazy import.)
"""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import importlib, importlib.machinery, json, sys
from pathlib import Path
import xyra
root = Path(xyra.__file__).parent
suffixes = sorted(importlib.machinery.all_suffixes(), key=len, reverse=True)
names = set()
# From the files, not pkgutil: xyra._core has no __init__.py (a namespace package).
for path in root.rglob("*"):
    suffix = next((s for s in suffixes if path.name.endswith(s)), None)
    if suffix is None or "__pycache__" in path.parts:
        continue
    parts = ("xyra", *path.relative_to(root).parent.parts, path.name[: -len(suffix)])
    name = ".".join(p for p in parts if p != "__init__")
    if not name.startswith("xyra.bench"):
        names.add(name)
for name in sorted(names):
    importlib.import_module(name)
print(json.dumps({
    "imported": sorted(names),
    "bench": sorted(m for m in sys.modules if m.startswith("xyra.bench")),
}))
"""


def test_no_server_module_imports_the_bench() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # The walk really covered the server: its facade and its compiled core.
    assert {"xyra.app", "xyra.server", "xyra._core.protocol", "xyra._core.pubsub"} <= set(
        result["imported"]
    )
    assert result["bench"] == []
