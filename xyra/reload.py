"""``xyra run --reload``: restart the server when a source file changes (development only).

As uvicorn does it, with watchfiles: this process watches the directories (the app's
directory by default, ``--reload-dir`` to choose) and runs the server as a child process,
``xyra run`` with the same options but ``--reload``. On a change it stops the child with
SIGINT (a graceful shutdown: clients get 1001) and starts a new one, which imports the
code afresh. A change that breaks the import leaves no server until the next change.

Which files count follows uvicorn's habits: ``--reload-include`` glob patterns (``*.py``
by default) and ``--reload-exclude`` patterns (``.*``, ``.py[cod]``, ``.sw.*``, ``~*`` by
default); a pattern given to one option is taken off the other's defaults, and an
exclude that names an existing directory excludes everything under it.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("xyra")

DEFAULT_INCLUDES = ("*.py",)
DEFAULT_EXCLUDES = (".*", ".py[cod]", ".sw.*", "~*")
#: Never watched: tool caches and virtual environments change without the code changing.
IGNORED_DIRS = frozenset(
    {"__pycache__", ".git", ".hg", ".svn", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
    | {".tox", ".nox", ".venv", "venv", "node_modules", "build", ".hypothesis"}
)


class FileFilter:
    """Which changed paths restart the server (uvicorn's include/exclude rules)."""

    def __init__(self, includes: Sequence[str] = (), excludes: Sequence[str] = ()) -> None:
        self.includes = sorted({*(p for p in DEFAULT_INCLUDES if p not in excludes), *includes})
        self.excludes: list[str] = sorted(p for p in DEFAULT_EXCLUDES if p not in includes)
        self.exclude_dirs: list[Path] = []
        for pattern in excludes:
            path = Path(pattern)
            try:
                is_dir = path.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                self.exclude_dirs.append(path.resolve())
            elif pattern not in self.excludes:
                self.excludes.append(pattern)

    def __call__(self, change: Any, path: str) -> bool:
        """watchfiles' filter signature: True if a change of ``path`` restarts."""
        p = Path(path)
        if IGNORED_DIRS.intersection(p.parts[:-1]):
            return False
        if not any(p.match(pattern) for pattern in self.includes):
            return False
        if any(p.match(pattern) for pattern in self.excludes):
            return False
        resolved = p.resolve()
        return not any(d == resolved or d in resolved.parents for d in self.exclude_dirs)


def child_command(args: Any) -> list[str]:
    """``xyra run`` with the parsed options of this one, less the reload options."""
    cmd = [sys.executable, "-m", "xyra", "run", args.app]
    cmd += ["--host", args.host, "--port", str(args.port)]
    cmd += ["--app-dir", str(Path(args.app_dir).resolve())]
    if args.factory:
        cmd.append("--factory")
    if args.backplane:
        cmd += ["--backplane", args.backplane]
    if args.no_access_log:
        cmd.append("--no-access-log")
    return cmd


def run(args: Any) -> int:
    """Serve ``xyra run`` ``args`` in a child process, restarted on changes; the exit status."""
    try:
        from watchfiles import run_process
    except ImportError:
        print('xyra: error: --reload needs watchfiles: pip install "xyra[reload]"', file=sys.stderr)
        return 1
    dirs = [Path(d).resolve() for d in (args.reload_dir or [args.app_dir])]
    for d in dirs:
        if not d.is_dir():
            print(f"xyra: error: --reload-dir {d} is not a directory", file=sys.stderr)
            return 2
    watch_filter = FileFilter(args.reload_include or (), args.reload_exclude or ())
    print(
        f"xyra: --reload (development only): watching {', '.join(map(str, dirs))} "
        f"for {', '.join(watch_filter.includes)}",
        file=sys.stderr,
    )

    def changed(changes: set[tuple[Any, str]]) -> None:
        names = sorted({Path(path).name for _, path in changes})
        print(f"xyra: --reload: {', '.join(names)} changed; restarting", file=sys.stderr)

    # A cached .pyc is trusted when the source's size and mtime (in whole seconds) match:
    # an edit of the same size within a second would be missed. The server processes
    # write none, so each one compiles what changed.
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    try:
        run_process(
            *dirs,
            target=shlex.join(child_command(args)),
            target_type="command",
            watch_filter=watch_filter,
            callback=changed,
            sigint_timeout=10,
        )
    except KeyboardInterrupt:
        pass
    return 0
