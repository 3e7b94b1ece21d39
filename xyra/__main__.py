"""The ``xyra`` command (also ``python -m xyra``).

* ``xyra run module:app [--host H] [--port P] [--workers N] [--backplane URL]``: import
  ``module`` (the current directory, or ``--app-dir``, comes first on ``sys.path``, as
  with uvicorn), take its ``app`` attribute (dotted paths work: ``module:obj.app``; with
  ``--factory`` it is called first) and serve it with ``app.listen(port, host, workers=N,
  backplane=URL)`` until SIGINT/SIGTERM (docs/scaling.md).
  ``--reload`` restarts it when a source file changes (development only, ``xyra.reload``);
  ``--no-access-log`` turns off the access log (``xyra.accesslog``).
* ``xyra top HOST:PORT``: a live dashboard of a server's metrics (``xyra.top``).
* ``xyra bench ...``: the throughput benchmark (``xyra.bench``).
* ``xyra --version``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

from xyra._version import __version__

if TYPE_CHECKING:
    from xyra.app import App


class AppSpecError(Exception):
    """A ``module:attribute`` spec that does not name a Xyra App."""


def _module_not_found_is_ours(exc: ModuleNotFoundError, module: str) -> bool:
    """True if the missing module is ``module`` or one of its parents, not an import inside it."""
    parts = module.split(".")
    return exc.name in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def load_app(spec: str, app_dir: str = ".", factory: bool = False) -> App:
    """Import ``module:attribute`` and return the App it names.

    Raises ``AppSpecError`` with a message meant for the user when the spec is malformed,
    the module or attribute does not exist, or the object is not an App. Errors raised
    while the module itself runs propagate unchanged (their traceback is the useful part).
    """
    from xyra.app import App

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise AppSpecError(
            f'the app must be given as "<module>:<attribute>" (e.g. "main:app"), not {spec!r}'
        )
    path = os.path.abspath(app_dir)
    if path not in sys.path:
        sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if not _module_not_found_is_ours(exc, module_name):
            raise
        raise AppSpecError(
            f"could not import module {module_name!r} (looked in {path} and sys.path)"
        ) from None
    obj: Any = module
    try:
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise AppSpecError(f"module {module_name!r} has no attribute {attr!r}") from None
    if factory:
        if not callable(obj):
            raise AppSpecError(f"--factory: {spec} is not callable")
        obj = obj()
    if not isinstance(obj, App):
        hint = "" if factory or not callable(obj) else " (if it is a factory, pass --factory)"
        raise AppSpecError(f"{spec} is a {type(obj).__name__}, not a xyra.App{hint}")
    return obj


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 0 to 65535, not {port}")
    return port


def _workers(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of workers: {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {count}")
    return count


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xyra", description="Xyra: a fast, correct WebSocket server for Python."
    )
    parser.add_argument("--version", action="version", version=f"xyra {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="serve an App: xyra run module:app",
        description="Import module:attribute and serve that App until SIGINT or SIGTERM.",
    )
    run.add_argument("app", metavar="MODULE:APP", help='where the App is, e.g. "main:app"')
    run.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    run.add_argument("--port", type=_port, default=8000, help="port to bind (default 8000)")
    run.add_argument(
        "--app-dir",
        default=".",
        help="directory put first on sys.path to import the module (default: current)",
    )
    run.add_argument(
        "--factory", action="store_true", help="MODULE:APP is a function returning the App"
    )
    run.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="worker processes (default 1: no supervisor); see docs/scaling.md",
    )
    run.add_argument(
        "--backplane",
        metavar="URL",
        default=None,
        help="pub/sub across machines: redis://host:6379/0 or rediss://... "
        "(default: the embedded relay between the workers of this machine)",
    )
    _observability_options(run)
    # Listed for --help; the arguments go to xyra.bench and xyra.top untouched (see main).
    sub.add_parser("bench", help="throughput benchmark (xyra bench --help)", add_help=False)
    sub.add_parser(
        "top", help="live dashboard of a server: xyra top HOST:PORT (--help)", add_help=False
    )
    return parser


# -- observability and development options of `xyra run` (docs/observability.md) -----------------


def _observability_options(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--no-access-log",
        action="store_true",
        help="do not log each handshake on the xyra.access logger",
    )
    run.add_argument(
        "--reload",
        action="store_true",
        help="restart when a source file changes (development only; needs watchfiles)",
    )
    run.add_argument(
        "--reload-dir",
        action="append",
        metavar="DIR",
        help="directory to watch with --reload (repeatable; default: --app-dir)",
    )
    run.add_argument(
        "--reload-include",
        action="append",
        metavar="GLOB",
        help="file pattern that restarts with --reload (repeatable; default '*.py')",
    )
    run.add_argument(
        "--reload-exclude",
        action="append",
        metavar="GLOB",
        help="file pattern (or directory) ignored by --reload (repeatable; "
        "default '.*', '.py[cod]', '.sw.*', '~*')",
    )


def _reload_error(args: argparse.Namespace) -> str | None:
    """Why these ``run`` options cannot go together, or None."""
    if not args.reload:
        if args.reload_dir or args.reload_include or args.reload_exclude:
            return "--reload-dir, --reload-include and --reload-exclude need --reload"
        return None
    if args.workers > 1:
        return (
            f"--reload runs one server process, so it cannot be combined with --workers "
            f"{args.workers}: --reload is for development; use --workers in production"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the ``xyra`` command with ``argv`` (default: ``sys.argv[1:]``); the exit status."""
    args_list = sys.argv[1:] if argv is None else list(argv)
    if args_list and args_list[0] == "bench":
        from xyra.bench import main as bench_main

        return bench_main(args_list[1:])
    if args_list and args_list[0] == "top":
        try:
            from xyra.top import main as top_main
        except ImportError as exc:
            print(
                f'xyra top needs rich and prometheus_client ({exc}): pip install "xyra[top]"',
                file=sys.stderr,
            )
            return 1
        return top_main(args_list[1:])
    parser = _parser()
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    error = _reload_error(args)
    if error is not None:
        print(f"xyra run: error: {error}", file=sys.stderr)
        return 2
    if args.reload:
        from xyra.reload import run as run_reloading

        return run_reloading(args)
    try:
        app = load_app(args.app, args.app_dir, args.factory)
    except AppSpecError as exc:
        print(f"xyra: error: {exc}", file=sys.stderr)
        return 1
    app.listen(
        args.port,
        args.host,
        workers=args.workers,
        backplane=args.backplane,
        access_log=not args.no_access_log,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
