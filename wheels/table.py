"""Print a Markdown table of built wheels and sdists: python, tags, size.

usage: python wheels/table.py FILE...   (wheels/build.sh runs it at the end)
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(paths: list[str]) -> int:
    print("| Python | file | platform tag(s) | size |")
    print("|---|---|---|---|")
    for name in paths:
        path = Path(name)
        size = path.stat().st_size
        human = f"{size / 1024:.0f} KiB ({size} bytes)"
        if path.name.endswith(".whl"):
            _, _, pytag, _, plat = path.name[:-4].split("-")
            python = f"{pytag[2]}.{pytag[3:]}"
            where = " (built from the sdist)" if path.parent.name == "from-sdist" else ""
            print(f"| {python}{where} | `{path.name}` | `{plat}` | {human} |")
        else:
            print(f"| source | `{path.name}` | sdist | {human} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
