"""Summarise libFuzzer's ``-print_coverage=1`` output for the Cython modules.

``python tests/fuzz/coverage_report.py LOG MODULE...`` (run.sh calls it after replaying the
corpus). For each module it counts the edges of the module's own compiled functions (those
Cython generates from the .pyx code, without the boilerplate of module set-up, pickling,
type slots and properties), in total and per function.

The percentages understate what the inputs reach: every function also holds edges only an
exception can take (Cython's error exits, MemoryError paths, and in this debug-directive
build the ``nonecheck``/``initializedcheck`` guards on each attribute access).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

FUNC = re.compile(r"^(COVERED|UNCOVERED)_FUNC: hits: (\d+) edges: (\d+)/(\d+) (\S+) (\S+):(\d+)")
BOILERPLATE = (
    "__reduce_cython__", "__setstate_cython__", "unpickle", "getprop_", "tp_", "pymod", "modinit",
)  # fmt: skip


def own_function(name: str, module: str) -> bool:
    tag = f"4xyra_5_core_{len(module)}{module}_"
    if tag not in name or not name.startswith(("__pyx_f_", "__pyx_pf_", "__pyx_pw_")):
        return False
    return not any(b in name for b in BOILERPLATE)


def report(log: Path, module: str) -> str:
    rows: dict[str, tuple[int, int, int]] = {}
    for raw in log.read_text(errors="replace").splitlines():
        m = FUNC.match(raw)
        if not m:
            continue
        _status, hits, cov, tot, name, path, _line = m.groups()
        if not (path.endswith(f"/{module}.c") and own_function(name, module)):
            continue
        short = re.sub(rf"^__pyx_(f|pf|pw)_4xyra_5_core_{len(module)}{module}_", "", name)
        short = re.sub(r"(^|_)\d+(?=[A-Za-z_])", r"\1", short)  # Cython's length prefixes
        prev = rows.get(short, (0, 0, 0))
        rows[short] = (prev[0] + int(hits), prev[1] + int(cov), prev[2] + int(tot))
    if not rows:
        return f"{module}.pyx: no coverage lines in {log}"
    covered = sum(r[1] for r in rows.values())
    total = sum(r[2] for r in rows.values())
    never = sorted(k for k, r in rows.items() if r[0] == 0)
    out = [
        f"{module}.pyx: {covered}/{total} edges ({100.0 * covered / total:.1f}%) in the "
        f"{len(rows)} compiled functions of its own; never entered: {', '.join(never) or 'none'}"
    ]
    for name, (hits, cov, tot) in sorted(rows.items(), key=lambda kv: -kv[1][2]):
        if hits:
            out.append(f"  {cov:5d}/{tot:<5d} {100.0 * cov / tot:5.1f}%  {name}")
    return "\n".join(out)


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    log = Path(sys.argv[1])
    for module in sys.argv[2:]:
        print(report(log, module))


if __name__ == "__main__":
    main()
