"""The supervisor: ``--workers N`` forks N worker processes and keeps them serving.

Plain Python: the supervisor holds no event loop and no Redis connection, and no message
goes through it. It

* binds the address first (a clear error if it is taken; port 0 picks one port for all).
  On Linux it only reserves the port: each worker binds its own ``SO_REUSEPORT``
  listener after the fork, so the kernel spreads connections over the workers. Elsewhere
  it listens on one socket that every worker inherits;
* forks the workers. Each one creates its uvloop loop after the fork, runs the startup
  hooks, serves, and reports "ready" on its control socket (a Unix socket pair);
* restarts a worker that dies, with backoff (0.1 s doubling to 10 s; reset after 30 s of
  good health), and logs it;
* SIGTERM or SIGINT: every worker shuts down gracefully (each client gets 1001, the
  shutdown hooks run), then the supervisor exits 0. A second signal kills the workers;
* SIGHUP: rolling restart, one worker at a time. The new worker takes over the old one's
  listening socket (the supervisor holds a copy of each), so it is listening before the
  old one closes its copy and drains: no connection is refused or reset. The workers are
  forked from the supervisor, so this re-runs the startup hooks but does not reload code.

Pub/sub between the workers (no ``--backplane``): the supervisor gives every pair of
workers a Unix stream socket pair before the fork (``xyra.backplane.relay``). A new
worker inherits its ends; each running worker gets its end of the new pair over its
control socket with SCM_RIGHTS. With ``--backplane redis://...`` each worker talks to
Redis itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import select
import signal
import socket
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any

from xyra.asgi.lifespan import LifespanFailed
from xyra.backplane import Backplane
from xyra.errors import ListenError
from xyra.statsgather import CTRL_MAX, SupervisorStats, WorkerStats

if TYPE_CHECKING:
    from xyra.app import App

log = logging.getLogger("xyra")

#: XYRA_WORKERS_PORTABLE=1 takes the path of the other systems (one shared listening socket,
#: datagram control sockets) on Linux too, so that the test suite runs it here.
LINUX = sys.platform.startswith("linux") and os.environ.get("XYRA_WORKERS_PORTABLE") != "1"
#: Each worker binds its own listener (kernel load balancing) where SO_REUSEPORT spreads
#: connections: Linux. Elsewhere the workers share one listening socket.
REUSEPORT = LINUX and hasattr(socket, "SO_REUSEPORT")
_CTRL_TYPE = socket.SOCK_SEQPACKET if LINUX else socket.SOCK_DGRAM
BACKLOG = 1024
READY_TIMEOUT = 60.0  # a new worker must be listening within this (startup hooks too)
BACKOFF_FIRST = 0.1
BACKOFF_CAP = 10.0
HEALTHY_AFTER = 30.0  # a worker up this long resets its slot's backoff


@dataclasses.dataclass(eq=False)
class _Worker:
    slot: int
    peer_id: int
    pid: int
    ctrl: socket.socket  # the supervisor's end of the control socket
    started: float
    ready: bool = False
    retiring: bool = False  # told to stop: replaced (SIGHUP) or shutting down
    replaces: _Worker | None = None
    ctrl_open: bool = True


def run_workers(
    app: App,
    port: int,
    host: str,
    *,
    workers: int,
    backplane: str | Backplane | None = None,
    **serve_kwargs: Any,
) -> int:
    """Serve ``app`` with ``workers`` processes until SIGTERM/SIGINT; the exit status."""
    if isinstance(backplane, Backplane):
        raise TypeError("with workers > 1 pass the backplane as a URL: each worker makes its own")
    if backplane is not None:
        from xyra.backplane import create

        create(backplane)  # a bad URL fails here, once, not in every worker
    supervisor = Supervisor(app, host, port, workers, backplane, serve_kwargs)
    try:
        supervisor.bind()
    except OSError as exc:
        raise ListenError(host, port, exc) from exc
    return supervisor.run()


class Supervisor:
    """Forks and watches the workers (see the module docstring)."""

    def __init__(
        self,
        app: App,
        host: str,
        port: int,
        count: int,
        backplane: str | None,
        serve_kwargs: dict[str, Any],
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.count = count
        self.backplane = backplane
        self.serve_kwargs = serve_kwargs
        self.relay = backplane is None
        self.workers: dict[int, _Worker] = {}  # pid -> every live worker
        self.slots: dict[int, _Worker] = {}  # slot -> the worker serving it
        self.listeners: dict[int, socket.socket] = {}  # slot -> copy of its listener
        self.failures: dict[int, int] = {}
        self.respawn_at: dict[int, float] = {}
        self.ready_deadline: dict[_Worker, float] = {}
        self.rolling: list[int] = []
        self.rolling_new: _Worker | None = None
        self.rolling_old: _Worker | None = None
        self.rolling_deadline = 0.0
        self.started = False
        self.stopping = False
        self.stop_deadline = 0.0
        self.exit_code = 0
        self.signals: list[int] = []
        self.ids = itertools.count(1)
        self.sock: socket.socket | None = None  # the reservation or the shared listener
        self.addr: tuple[int, Any] = (socket.AF_INET, (host, port))
        self.wake_r = self.wake_w = -1
        self.stats = SupervisorStats()  # gathers every worker's live stats for a scrape

    # -- setup -----------------------------------------------------------------------------------

    def bind(self) -> None:
        """Reserve (Linux) or listen on the address; OSError if it is taken."""
        family, _, _, _, sockaddr = socket.getaddrinfo(
            self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        if REUSEPORT:
            # First without SO_REUSEPORT: a port held by anyone, another `xyra run` on the
            # same port included, is an error rather than a silently shared port.
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(sockaddr)
                sockaddr = probe.getsockname()
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if REUSEPORT:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
        if not REUSEPORT:
            sock.listen(BACKLOG)
        self.sock = sock
        self.addr = (family, sock.getsockname())
        self.port = sock.getsockname()[1]

    def _install_signals(self) -> None:
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)

        def handler(signum: int, frame: Any) -> None:
            self.signals.append(signum)

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, handler)

    def _restore_signals(self) -> None:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for fd in (self.wake_r, self.wake_w):
            os.close(fd)

    # -- the main loop ---------------------------------------------------------------------------

    def run(self) -> int:
        if self.sock is None:
            self.bind()
        self._install_signals()
        mode = "its own SO_REUSEPORT listener each" if REUSEPORT else "one shared socket"
        link = self.backplane or "the embedded relay"
        log.info(
            "xyra: supervisor (pid %d) starting %d workers on %s:%d (%s; pub/sub: %s)",
            os.getpid(),
            self.count,
            self.addr[1][0],
            self.port,
            mode,
            _redact(link),
        )
        try:
            for slot in range(self.count):
                self._spawn(slot)
            while self.workers or not self.stopping:
                self._wait()
                self._handle_signals()
                self._reap()
                self._timers()
        finally:
            for listener in self.listeners.values():
                listener.close()
            if self.sock is not None:
                self.sock.close()
            self._restore_signals()
        log.info("xyra: supervisor exits (%d)", self.exit_code)
        return self.exit_code

    def _wait(self) -> None:
        now = time.monotonic()
        deadlines = [*self.respawn_at.values(), *self.ready_deadline.values()]
        if self.rolling_deadline:
            deadlines.append(self.rolling_deadline)
        if self.stop_deadline:
            deadlines.append(self.stop_deadline)
        stats_due = self.stats.next_deadline()
        if stats_due is not None:
            deadlines.append(stats_due)
        timeout = min([1.0, *(d - now for d in deadlines)])
        readers: list[Any] = [self.wake_r]
        readers += [w.ctrl for w in self.workers.values() if w.ctrl_open]
        ready, _, _ = select.select(readers, [], [], max(0.0, timeout))
        for r in ready:
            if r == self.wake_r:
                try:
                    while os.read(self.wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
            else:
                for worker in list(self.workers.values()):
                    if worker.ctrl is r:
                        self._on_ctrl(worker)

    def _handle_signals(self) -> None:
        signals, self.signals = self.signals, []
        for signum in signals:
            if signum in (signal.SIGINT, signal.SIGTERM):
                if self.stopping:
                    log.warning("xyra: second %s: killing the workers", signal.Signals(signum).name)
                    self._kill_all()
                else:
                    log.info(
                        "xyra: %s: stopping the workers gracefully", signal.Signals(signum).name
                    )
                    self._begin_stop(0)
            elif signum == signal.SIGHUP:
                self._rolling_restart()

    # -- spawning --------------------------------------------------------------------------------

    def _spawn(self, slot: int, inherit: socket.socket | None = None) -> _Worker:
        ctrl, child_ctrl = socket.socketpair(socket.AF_UNIX, _CTRL_TYPE)
        if not LINUX:  # a datagram's size is bounded by the send buffer (stats answers)
            for end in (ctrl, child_ctrl):
                with contextlib.suppress(OSError):
                    end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CTRL_MAX)
        peer_id = next(self.ids)
        pairs: list[tuple[_Worker, socket.socket, socket.socket]] = []
        if self.relay:
            for other in self.workers.values():
                mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                pairs.append((other, mine, theirs))
        if inherit is None and not REUSEPORT:
            inherit = self.sock
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                ctrl.close()
                self._close_in_child(keep=inherit, pairs=pairs)
                code = _worker_main(
                    self.app,
                    _WorkerSetup(
                        slot,
                        child_ctrl,
                        inherit,
                        {o.peer_id: m for o, m, _ in pairs},
                        self.backplane,
                        self.addr,
                        self.serve_kwargs,
                    ),
                )
            except LifespanFailed as exc:
                code = exc.report()  # as in one process; the supervisor passes the 3 on
            except BaseException:
                traceback.print_exc()
            finally:
                _flush_logs()
                os._exit(code)
        child_ctrl.close()
        for other, mine, theirs in pairs:
            mine.close()
            try:
                socket.send_fds(
                    other.ctrl, [b"peer %d %d %d" % (peer_id, slot, pid)], [theirs.fileno()]
                )
            except OSError:
                pass  # that worker is exiting; its end of the pair closes with it
            theirs.close()
        ctrl.setblocking(False)
        worker = _Worker(slot, peer_id, pid, ctrl, time.monotonic())
        self.workers[pid] = worker
        self.ready_deadline[worker] = worker.started + READY_TIMEOUT
        log.info("xyra: worker %d starting (pid %d)", slot, pid)
        return worker

    def _close_in_child(
        self, keep: socket.socket | None, pairs: list[tuple[_Worker, socket.socket, socket.socket]]
    ) -> None:
        """Close the supervisor's descriptors the worker must not hold.

        A worker holding another slot's listener copy would keep that socket in the
        kernel's SO_REUSEPORT group after its own worker died, and connections hashed
        to it would wait for nobody.
        """
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)  # the supervisor decides, and tells us
        for sig in (signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        os.close(self.wake_r)
        os.close(self.wake_w)
        for worker in self.workers.values():
            worker.ctrl.close()
        for listener in self.listeners.values():
            if listener is not keep:
                listener.close()
        if self.sock is not None and self.sock is not keep:
            self.sock.close()
        for _, _, theirs in pairs:
            theirs.close()

    def _on_ctrl(self, worker: _Worker) -> None:
        try:
            msg, fds, _, _ = socket.recv_fds(worker.ctrl, CTRL_MAX, 2)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            msg, fds = b"", []
        if not msg:
            worker.ctrl_open = False  # exiting: its exit is handled when it is reaped
            for fd in fds:
                os.close(fd)
            return
        if msg.startswith(b"stats"):  # live stats for a scrape (xyra.statsgather)
            serving = [(w.pid, w.ctrl) for w in self.slots.values() if w.ctrl_open]
            self.stats.on_message(worker.ctrl, worker.pid, msg, serving)
        if msg != b"ready":
            for fd in fds:
                os.close(fd)
            return
        worker.ready = True
        self.ready_deadline.pop(worker, None)
        if fds:  # a copy of its listener, for a rolling restart to hand on
            old = self.listeners.get(worker.slot)
            self.listeners[worker.slot] = socket.socket(fileno=fds[0])
            if old is not None:
                old.close()
            for fd in fds[1:]:
                os.close(fd)
        if self.stopping or worker.retiring:
            return
        log.info("xyra: worker %d ready (pid %d)", worker.slot, worker.pid)
        if worker is self.rolling_new:
            self._replace(worker)
        else:
            self.slots[worker.slot] = worker
        if (
            not self.started
            and len(self.slots) == self.count
            and all(w.ready for w in self.slots.values())
        ):
            self.started = True
            log.info("xyra: %d workers serving on %s:%d", self.count, self.addr[1][0], self.port)

    # -- deaths and restarts ---------------------------------------------------------------------

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            worker.ctrl.close()
            self.ready_deadline.pop(worker, None)
            self.stats.worker_gone(pid)
            self._exited(worker, os.waitstatus_to_exitcode(status))

    def _exited(self, worker: _Worker, code: int) -> None:
        how = f"exit code {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
        if self.stopping:
            log.info("xyra: worker %d (pid %d) stopped (%s)", worker.slot, worker.pid, how)
            return
        if worker.retiring:
            log.info(
                "xyra: worker %d (pid %d) replaced and drained (%s)", worker.slot, worker.pid, how
            )
            if worker is self.rolling_old:
                self.rolling_old = None
                self.rolling_deadline = 0.0
                self._rolling_next()
            return
        if worker is self.rolling_new:  # the replacement died before it was ready
            log.error(
                "xyra: the new worker %d (pid %d) died before it was ready (%s); "
                "rolling restart abandoned, the old worker keeps serving",
                worker.slot,
                worker.pid,
                how,
            )
            self.rolling_new = None
            self.rolling = []
            self.rolling_deadline = 0.0
            return
        if not self.started:
            log.error(
                "xyra: worker %d (pid %d) failed to start (%s); stopping",
                worker.slot,
                worker.pid,
                how,
            )
            self._begin_stop(code if code > 0 else 1)  # 3: the ASGI app's startup failed
            return
        if self.slots.get(worker.slot) is worker:
            del self.slots[worker.slot]
            listener = self.listeners.pop(worker.slot, None)
            if listener is not None:
                # Without our copy the dead worker's socket closes, and the kernel sends
                # new connections to the other workers until the new one listens.
                listener.close()
        if self.rolling_new is not None and self.rolling_new.slot == worker.slot:
            self.rolling_old = None  # its replacement is on the way already
            return
        failures = self.failures.get(worker.slot, 0)
        if time.monotonic() - worker.started > HEALTHY_AFTER:
            failures = 0
        delay = min(BACKOFF_CAP, BACKOFF_FIRST * 2**failures)
        self.failures[worker.slot] = failures + 1
        self.respawn_at[worker.slot] = time.monotonic() + delay
        log.warning(
            "xyra: worker %d (pid %d) died (%s); restarting it in %.1f s (restart %d)",
            worker.slot,
            worker.pid,
            how,
            delay,
            failures + 1,
        )

    def _timers(self) -> None:
        now = time.monotonic()
        self.stats.timers(now)
        for slot, due in list(self.respawn_at.items()):
            if due <= now and not self.stopping:
                del self.respawn_at[slot]
                self._spawn(slot)
        for worker, due in list(self.ready_deadline.items()):
            if due <= now:
                del self.ready_deadline[worker]
                log.error(
                    "xyra: worker %d (pid %d) not ready after %.0f s; killing it",
                    worker.slot,
                    worker.pid,
                    READY_TIMEOUT,
                )
                _kill(worker.pid, signal.SIGKILL)
        if self.rolling_deadline and self.rolling_deadline <= now and self.rolling_old:
            log.warning(
                "xyra: worker %d (pid %d) still draining; killing it",
                self.rolling_old.slot,
                self.rolling_old.pid,
            )
            self.rolling_deadline = 0.0
            _kill(self.rolling_old.pid, signal.SIGKILL)
        if self.stop_deadline and self.stop_deadline <= now:
            log.warning("xyra: %d workers did not stop in time; killing them", len(self.workers))
            self.stop_deadline = 0.0
            self._kill_all()

    # -- rolling restart (SIGHUP) ----------------------------------------------------------------

    def _rolling_restart(self) -> None:
        if self.stopping:
            return
        if not self.started or self.rolling or self.rolling_new or self.rolling_old:
            log.warning("xyra: SIGHUP ignored: the workers are starting or being replaced")
            return
        log.info("xyra: SIGHUP: replacing the workers one at a time")
        self.rolling = sorted(self.slots)
        self._rolling_next()

    def _rolling_next(self) -> None:
        while self.rolling:
            slot = self.rolling.pop(0)
            if slot not in self.slots:
                continue  # dead and waiting for its restart: that one is new anyway
            inherit = self.listeners.get(slot) if REUSEPORT else self.sock
            self.rolling_new = self._spawn(slot, inherit)
            self.rolling_new.replaces = self.slots[slot]
            return
        log.info("xyra: rolling restart done")

    def _replace(self, new: _Worker) -> None:
        self.rolling_new = None
        old = new.replaces
        new.replaces = None
        self.slots[new.slot] = new
        if old is None or old.pid not in self.workers:
            self._rolling_next()
            return
        old.retiring = True
        self.rolling_old = old
        self.rolling_deadline = time.monotonic() + self._stop_timeout()
        _kill(old.pid, signal.SIGTERM)

    # -- stopping --------------------------------------------------------------------------------

    def _stop_timeout(self) -> float:
        return self.app.config().close_timeout + 11.0

    def _begin_stop(self, code: int) -> None:
        self.stopping = True
        self.exit_code = code
        self.respawn_at.clear()
        self.rolling = []
        # Our listener copies go first, so each socket closes with its worker's.
        for listener in self.listeners.values():
            listener.close()
        self.listeners.clear()
        self.stop_deadline = time.monotonic() + self._stop_timeout()
        for worker in self.workers.values():
            worker.retiring = True
            _kill(worker.pid, signal.SIGTERM)

    def _kill_all(self) -> None:
        for worker in self.workers.values():
            _kill(worker.pid, signal.SIGKILL)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _redact(url: str) -> str:
    head, at, tail = url.rpartition("@")
    return f"{head.split('://')[0]}://***@{tail}" if at else url


def _flush_logs() -> None:
    for handler in [*logging.getLogger().handlers, *log.handlers]:
        try:
            handler.flush()
        except Exception:
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


# -- the worker side (runs in the child, on its own loop) -----------------------------------------


class _WorkerTag(logging.Filter):
    def __init__(self, slot: int) -> None:
        super().__init__()
        self.tag = f"[worker {slot}] "

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and not record.msg.startswith(self.tag):
            record.msg = self.tag + record.msg
        return True


@dataclasses.dataclass(frozen=True)
class _WorkerSetup:
    """What a worker gets from the supervisor at the fork."""

    slot: int
    ctrl: socket.socket  # its control socket to the supervisor
    inherit: socket.socket | None  # the listener to take over (rolling restart; not Linux)
    peers: dict[int, socket.socket]  # the relay's socket to each other worker
    backplane: str | None
    addr: tuple[int, Any]  # (address family, address) to listen on
    serve_kwargs: dict[str, Any]


def _worker_main(app: App, w: _WorkerSetup) -> int:
    from xyra.server import run_on_new_loop

    app.worker_id = w.slot
    log.addFilter(_WorkerTag(w.slot))
    logging.getLogger("xyra.access").addFilter(_WorkerTag(w.slot))  # a logger's filter is its own
    run_on_new_loop(_serve(app, w))  # a new loop after the fork: never shared by processes
    return 0


def _listener(inherit: socket.socket | None, addr: tuple[int, Any]) -> socket.socket:
    if inherit is not None:
        sock = socket.socket(fileno=os.dup(inherit.fileno()))
        inherit.close()
    else:  # Linux: our own listener in the SO_REUSEPORT group
        sock = socket.socket(addr[0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr[1])
        sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


async def _serve(app: App, w: _WorkerSetup) -> None:
    from xyra.backplane.relay import RelayBackplane

    ctrl, inherit, peers, backplane = w.ctrl, w.inherit, w.peers, w.backplane
    addr, serve_kwargs = w.addr, w.serve_kwargs

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    supervisor = os.getppid()
    relay = RelayBackplane(peers) if backplane is None else None
    linking: set[asyncio.Task[None]] = set()
    stats = WorkerStats(ctrl, lambda top: app.stats(top_topics=top))
    app._gather_stats = stats.gather

    def on_ctrl() -> None:
        try:
            msg, fds, _, _ = socket.recv_fds(ctrl, CTRL_MAX, 2)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            msg, fds = b"", []
        if not msg:  # the supervisor is gone
            loop.remove_reader(ctrl.fileno())
            stop.set()
            return
        if msg.startswith(b"stats"):
            stats.on_message(msg)
        parts = msg.split(maxsplit=4)
        if parts[0] == b"peer" and relay is not None and fds:
            sock = socket.socket(fileno=fds[0])
            label = f"worker {int(parts[2])} (pid {int(parts[3])})"
            task = loop.create_task(relay.add_peer(int(parts[1]), sock, label))
            linking.add(task)
            task.add_done_callback(linking.discard)
            fds = fds[1:]
        for fd in fds:
            os.close(fd)

    def orphaned() -> None:  # where the control socket tells no EOF (not Linux)
        if os.getppid() != supervisor:
            stop.set()
        else:
            loop.call_later(1.0, orphaned)

    ctrl.setblocking(False)
    loop.add_reader(ctrl.fileno(), on_ctrl)
    loop.call_later(1.0, orphaned)
    sock = _listener(inherit, addr)
    copy = os.dup(sock.fileno()) if REUSEPORT else -1
    server = await app.start(
        None,
        None,
        sock=sock,
        backplane=relay if relay is not None else backplane,
        **serve_kwargs,
    )
    try:
        if copy >= 0:
            socket.send_fds(ctrl, [b"ready"], [copy])
        else:
            ctrl.send(b"ready")
    finally:
        if copy >= 0:
            os.close(copy)
    await stop.wait()
    # Drain: stop accepting, let upgrades in progress finish (so a client that connected
    # just now gets its 101 and then 1001, not a dropped connection), then close.
    server.stop_listening()
    deadline = loop.time() + 1.0
    while server.hub.handshaking and loop.time() < deadline:
        await asyncio.sleep(0.01)
    await server.stop()
    loop.remove_reader(ctrl.fileno())
    ctrl.close()
