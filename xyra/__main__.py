"""The ``xyra`` command (also ``python -m xyra``).

* ``xyra run module:app [--host H] [--port P] [--workers N] [--backplane URL]``: import
  ``module`` (the current directory, or ``--app-dir``, comes first on ``sys.path``, as
  with uvicorn), take its ``app`` attribute (dotted paths work: ``module:obj.app``; with
  ``--factory`` it is called first) and serve it with ``app.listen(port, host, workers=N,
  backplane=URL)`` until SIGINT/SIGTERM (docs/scaling.md). ``app`` is a Xyra App or any
  ASGI 3 application (FastAPI, Starlette, ...), served whole on an App that mounts it,
  with uvicorn's options (docs/asgi.md).
  ``--reload`` restarts it when a source file changes (development only, ``xyra.reload``);
  ``--no-access-log`` turns off the access log (``xyra.accesslog``).
* ``xyra top HOST:PORT``: a live dashboard of a server's metrics (``xyra.top``).
* ``xyra bench ...``: the throughput benchmark (``xyra.bench``).
* ``xyra --version``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from xyra._version import __version__

if TYPE_CHECKING:
    from xyra.app import App
    from xyra.asgi import ASGIApp


class AppSpecError(Exception):
    """A ``module:attribute`` spec that does not name a Xyra App or an ASGI application."""


def _module_not_found_is_ours(exc: ModuleNotFoundError, module: str) -> bool:
    """True if the missing module is ``module`` or one of its parents, not an import inside it."""
    parts = module.split(".")
    return exc.name in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def load_app(spec: str, app_dir: str = ".", factory: bool = False) -> App | ASGIApp:
    """Import ``module:attribute`` and return the App or ASGI application it names.

    Raises ``AppSpecError`` with a message meant for the user when the spec is malformed,
    the module or attribute does not exist, or the object is neither a Xyra App nor an
    ASGI 3 application (a callable taking ``scope, receive, send``). Errors raised while
    the module itself runs propagate unchanged (their traceback is the useful part).
    """
    from xyra.app import App
    from xyra.callables import takes_positional

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
    if isinstance(obj, App):
        return obj
    # An ASGI 3 app is called as app(scope, receive, send); a factory takes no argument.
    if callable(obj) and takes_positional(obj, 3) is not False:
        asgi: ASGIApp = obj
        return asgi
    hint = "" if factory or not callable(obj) else " (if it is a factory, pass --factory)"
    raise AppSpecError(
        f"{spec} is a {type(obj).__name__}, not a xyra.App nor an ASGI application{hint}"
    )


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
    _asgi_options(run)
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
        loaded = load_app(args.app, args.app_dir, args.factory)
        app = _serving_app(loaded, args)
    except AppSpecError as exc:
        print(f"xyra: error: {exc}", file=sys.stderr)
        return 1
    _configure_logging(args.log_level)
    app.listen(
        args.port,
        args.host,
        workers=args.workers,
        backplane=args.backplane,
        certfile=args.ssl_certfile,
        keyfile=args.ssl_keyfile,
        access_log=not args.no_access_log,
    )
    return 0


# -- uvicorn's options, for ASGI applications (docs/asgi.md, docs/cli.md) ------------------------

#: uvicorn's defaults, for the options that only concern ASGI apps.
ASGI_DEFAULTS: dict[str, Any] = {
    "root_path": "",
    "proxy_headers": True,
    "forwarded_allow_ips": None,  # $FORWARDED_ALLOW_IPS, else 127.0.0.1
    "ws_max_size": 16 * 1024 * 1024,
    "ws_ping_interval": 20.0,
    "ws_ping_timeout": 20.0,
    "lifespan": "auto",
}
LOG_LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": logging.DEBUG,
}


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def _size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of bytes: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _asgi_options(run: argparse.ArgumentParser) -> None:
    """uvicorn's options; those marked (ASGI) apply to ASGI applications only."""
    group = run.add_argument_group("uvicorn's options (docs/asgi.md)")
    group.add_argument(
        "--root-path",
        default=None,
        help="(ASGI) the prefix a proxy strips: scope root_path, prepended to path",
    )
    group.add_argument(
        "--proxy-headers",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="(ASGI) client address and scheme from X-Forwarded-For/-Proto, from trusted "
        "proxies only (default: on)",
    )
    group.add_argument(
        "--forwarded-allow-ips",
        default=None,
        metavar="IPS",
        help="(ASGI) the trusted proxies: addresses or networks, comma-separated, or '*' "
        "(default: $FORWARDED_ALLOW_IPS, else 127.0.0.1)",
    )
    group.add_argument(
        "--ws-max-size",
        type=_size,
        default=None,
        metavar="BYTES",
        help="(ASGI) largest WebSocket message: the route's max_payload_length (default 16 MiB)",
    )
    group.add_argument(
        "--ws-ping-interval",
        type=_seconds,
        default=None,
        metavar="S",
        help="(ASGI) ping after S seconds of silence: ping_interval (default 20; 0: never)",
    )
    group.add_argument(
        "--ws-ping-timeout",
        type=_seconds,
        default=None,
        metavar="S",
        help="(ASGI) close if still silent S seconds after the ping: idle_timeout = "
        "interval + timeout (default 20)",
    )
    group.add_argument(
        "--lifespan",
        choices=("auto", "on", "off"),
        default=None,
        help="(ASGI) run the app's lifespan: if it speaks it (auto, the default), always, never",
    )
    group.add_argument(
        "--timeout-keep-alive",
        type=_seconds,
        default=None,
        metavar="S",
        help="close idle keep-alive HTTP connections after S seconds "
        "(default 5 for an ASGI app; an App's own keep_alive_timeout otherwise)",
    )
    group.add_argument("--ssl-certfile", default=None, help="serve TLS with this certificate")
    group.add_argument("--ssl-keyfile", default=None, help="the certificate's private key")
    group.add_argument(
        "--log-level",
        choices=tuple(LOG_LEVELS),
        default=None,
        help="the level of the 'xyra' logger (default info; trace is debug)",
    )


def _serving_app(loaded: App | ASGIApp, args: argparse.Namespace) -> App:
    """The App to serve: the one loaded, or a new one mounting the ASGI app at "/"."""
    import dataclasses

    from xyra.app import App

    asgi_only = [
        f"--{name.replace('_', '-')}" for name in ASGI_DEFAULTS if getattr(args, name) is not None
    ]
    if isinstance(loaded, App):
        if asgi_only:
            raise AppSpecError(
                f"{', '.join(asgi_only)}: for an ASGI application only; {args.app} is a "
                "xyra.App (set them in app.mount(...) or the route options)"
            )
        if args.timeout_keep_alive is not None:
            loaded.limits = dataclasses.replace(
                loaded.limits, keep_alive_timeout=args.timeout_keep_alive or None
            )
        return loaded
    opts = {
        name: default if getattr(args, name) is None else getattr(args, name)
        for name, default in ASGI_DEFAULTS.items()
    }
    interval, timeout = opts["ws_ping_interval"], opts["ws_ping_timeout"]
    app = App(keep_alive_timeout=args.timeout_keep_alive or 5.0)
    app.mount(
        "/",
        loaded,
        root_path=opts["root_path"],
        proxy_headers=opts["proxy_headers"],
        forwarded_allow_ips=opts["forwarded_allow_ips"],
        lifespan=opts["lifespan"],
        max_payload_length=opts["ws_max_size"],
        ping_interval=interval,
        idle_timeout=interval + timeout if interval > 0 else 0,
    )
    return app


def _configure_logging(level: str | None) -> None:
    if level is None:
        return
    log = logging.getLogger("xyra")
    if not logging.getLogger().handlers and not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
    log.setLevel(LOG_LEVELS[level])


if __name__ == "__main__":
    sys.exit(main())
