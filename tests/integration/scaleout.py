"""Helpers of the scale-out tests: a real redis-server, ``xyra run`` processes, clients.

``redis_server`` (fixture: import ``redis_server_fixture`` into the test module): a
``RedisServer`` started on a free port of 127.0.0.1 with ``--save '' --appendonly no``;
``kill()`` (SIGKILL), ``stop()``/``cont()`` (SIGSTOP/SIGCONT) and ``restart()`` (same port).
Without
``redis-server`` the tests skip, unless CI or XYRA_REQUIRE_REDIS=1 is set: then they fail.

``clusters`` (fixture, ``clusters_fixture``): ``clusters(workers, backplane)`` starts a
``Cluster``: ``xyra run scale_app:app --workers N [--backplane URL]`` in its own process
group; ``port``, ``log()``, ``wait_log(regex)``, ``signal(sig)``, stopped in teardown.

``Client``: a websockets client of ``scale_app``: it knows its worker (the hello), keeps
what it receives (``messages``: published payloads; ``replies``: command answers) and
waits for counts with timeouts.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from kit import free_port, wait_for_condition

from xyra.bench.procs import redis_command

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TIMEOUT = 15.0


def wait_until(check: Callable[[], Any], timeout: float = TIMEOUT, what: str = "") -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.02)


async def await_until(check: Callable[[], Any], timeout: float = TIMEOUT, what: str = "") -> Any:
    """``kit.wait_for_condition`` that returns the truthy value ``check`` gave."""
    seen: list[Any] = [None]

    def probe() -> bool:
        seen[0] = check()
        return bool(seen[0])

    await wait_for_condition(probe, timeout=timeout, message=what)
    return seen[0]


# -- redis-server ------------------------------------------------------------------------------


class RedisServer:
    def __init__(self, workdir: str) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            redis_command(self.port, "--dir", self.workdir, "--loglevel", "warning"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, what=f"redis-server on port {self.port}")

    def _answers(self) -> bool:
        try:
            return self.cli("PING") == "PONG"
        except (subprocess.SubprocessError, OSError):
            return False

    def cli(self, *args: str, stdin: bytes | None = None) -> str:
        out = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args],
            input=stdin,
            capture_output=True,
            timeout=10,
            check=False,
        )
        return out.stdout.decode(errors="replace").strip()

    def numsub(self, *channels: str) -> dict[str, int]:
        out = self.cli("PUBSUB", "NUMSUB", *channels).split("\n")
        return {out[i]: int(out[i + 1]) for i in range(0, len(out) - 1, 2)}

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def cont(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.start()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(name="redis_server")
def redis_server_fixture() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        message = "redis-server and redis-cli are needed (apt-get install redis-server)"
        if os.environ.get("CI") or os.environ.get("XYRA_REQUIRE_REDIS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(workdir)
        try:
            yield server
        finally:
            server.close()


# -- xyra run ----------------------------------------------------------------------------------


class Cluster:
    """``xyra run scale_app:app`` in its own process group (a "machine")."""

    def __init__(
        self,
        workers: int = 2,
        backplane: str | None = None,
        extra: tuple[str, ...] = (),
        *,
        portable: bool = False,
    ) -> None:
        self.workers = workers
        self.logfile = tempfile.NamedTemporaryFile(prefix="xyra-run-", suffix=".log")
        cmd = [
            sys.executable,
            "-m",
            "xyra",
            "run",
            "scale_app:app",
            "--app-dir",
            str(HERE),
            "--port",
            "0",
            "--workers",
            str(workers),
            *extra,
        ]
        if backplane is not None:
            cmd += ["--backplane", backplane]
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        if portable:  # the supervisor's path for macOS and the BSDs (xyra/workers.py)
            env["XYRA_WORKERS_PORTABLE"] = "1"
        self.proc = subprocess.Popen(
            cmd, stdout=self.logfile, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        if workers > 1:
            ready = self.wait_log(r"(\d+) workers serving on [^:]+:(\d+)")
            self.port = int(ready.group(2))
        else:
            self.port = int(self.wait_log(r"listening on [^:]+:(\d+)").group(1))

    def log(self) -> str:
        return Path(self.logfile.name).read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float = TIMEOUT, after: int = 0) -> re.Match[str]:
        """The first match of ``pattern`` in the log (from offset ``after``)."""
        regex = re.compile(pattern)

        def find() -> re.Match[str] | None:
            if self.proc.poll() is not None and not regex.search(self.log(), after):
                raise AssertionError(f"xyra run exited ({self.proc.returncode}):\n{self.log()}")
            return regex.search(self.log(), after)

        try:
            return wait_until(find, timeout, what=pattern)  # type: ignore[no-any-return]
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- log ---\n{self.log()}") from None

    async def await_log(
        self, pattern: str, timeout: float = TIMEOUT, after: int = 0
    ) -> re.Match[str]:
        """``wait_log`` off the event loop, so that the clients keep reading meanwhile."""
        return await asyncio.to_thread(self.wait_log, pattern, timeout, after)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
        try:  # whatever is left of the process group we started
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(10)
        self.logfile.close()


@pytest.fixture(name="clusters")
def clusters_fixture() -> Iterator[Callable[..., Cluster]]:
    started: list[Cluster] = []

    def start(*args: Any, **kwargs: Any) -> Cluster:
        cluster = Cluster(*args, **kwargs)
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.close()


# -- clients -----------------------------------------------------------------------------------


class Client:
    def __init__(self, ws: Any, hello: dict[str, Any]) -> None:
        self.ws = ws
        self.worker: int = hello["worker"]
        self.pid: int = hello["pid"]
        self.messages: list[str | bytes] = []
        self.replies: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.close_code: int | None = None
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, port: int, topics: str = "") -> Client:
        ws = await websockets.connect(
            f"ws://127.0.0.1:{port}/ws?topics={topics}", open_timeout=TIMEOUT, max_queue=None
        )
        hello = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        return cls(ws, hello)

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if isinstance(message, str) and message.startswith("{"):
                    self.replies.append(json.loads(message))
                else:
                    self.messages.append(message)
                self.changed.set()
        except websockets.ConnectionClosed:
            pass
        self.close_code = self.ws.close_code
        self.changed.set()

    async def wait(self, check: Callable[[], Any], timeout: float = TIMEOUT, what: str = "") -> Any:
        async def until() -> Any:
            while True:
                value = check()
                if value:
                    return value
                self.changed.clear()
                await self.changed.wait()

        try:
            return await asyncio.wait_for(until(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"client of worker {self.worker}: timed out waiting for {what}; "
                f"{len(self.messages)} messages, last {self.messages[-3:]!r}"
            ) from None

    async def wait_messages(self, n: int, timeout: float = TIMEOUT) -> list[str | bytes]:
        await self.wait(lambda: len(self.messages) >= n, timeout, f"{n} messages")
        return self.messages

    async def command(self, timeout: float = TIMEOUT, **cmd: Any) -> dict[str, Any]:
        seen = len(self.replies)
        await self.ws.send(json.dumps(cmd))
        await self.wait(lambda: len(self.replies) > seen, timeout, f"the answer to {cmd}")
        return self.replies[seen]

    async def wait_closed(self, timeout: float = TIMEOUT) -> int | None:
        await asyncio.wait_for(asyncio.shield(self.reader), timeout)
        return self.close_code

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.ws.close(), 2.0)
        except (asyncio.TimeoutError, OSError):
            self.ws.transport.abort()
        await asyncio.gather(self.reader, return_exceptions=True)


async def clients_on_workers(
    port: int, workers: int, per_worker: int = 1, topics: str = "", attempts: int = 200
) -> dict[int, list[Client]]:
    """Connect until every worker has ``per_worker`` clients (the kernel picks the worker)."""
    placed: dict[int, list[Client]] = {w: [] for w in range(workers)}
    for _ in range(attempts):
        if all(len(c) >= per_worker for c in placed.values()):
            return placed
        client = await Client.open(port, topics)
        if len(placed[client.worker]) < per_worker:
            placed[client.worker].append(client)
        else:
            await client.close()
    raise AssertionError(
        f"could not place clients on every worker: { {w: len(c) for w, c in placed.items()} }"
    )


async def wait_cluster_count(client: Client, topic: str, expected: int) -> None:
    """Wait until every worker knows of ``expected`` subscribers of ``topic``."""

    async def counted() -> bool:
        try:
            reply = await client.command(op="count", topic=topic)
        except AssertionError:
            return False
        return reply.get("count") == expected

    deadline = time.monotonic() + TIMEOUT
    while not await counted():
        if time.monotonic() > deadline:
            raise AssertionError(f"the cluster never counted {expected} subscribers of {topic}")
        await asyncio.sleep(0.05)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state != "Z"


async def check_fanout(
    publisher: Client, thread_publisher: Client, everyone: list[Client], count: int = 300
) -> None:
    """``publisher`` sends ``count`` messages with ws.publish, ``thread_publisher`` as many
    with app.publish from a thread: each client of ``everyone`` (all subscribed to "news")
    gets each message exactly once, in order; the first publisher gets none of its own."""
    ws_items = [f"ws-{i}" for i in range(count)] + ["ws-end"]
    thread_items = [f"thread-{i}" for i in range(count)] + ["thread-end"]
    await publisher.command(op="publish", topic="news", items=ws_items)
    await thread_publisher.command(op="thread_publish", topic="news", items=thread_items)
    for client in everyone:
        # Each stream ends with its own marker: in order per publisher, so once a client
        # has both markers it has everything it will ever get from these two publishers.
        wanted = ["thread-end"] if client is publisher else ["ws-end", "thread-end"]
        await client.wait(
            lambda c=client, w=wanted: all(m in c.messages for m in w),
            what=f"the end markers {wanted}",
        )
    for client in everyone:
        got_ws = [m for m in client.messages if str(m).startswith("ws-")]
        got_thread = [m for m in client.messages if str(m).startswith("thread-")]
        # ws.publish excludes its sender; app.publish reaches everyone
        assert got_ws == ([] if client is publisher else ws_items), client.worker
        assert got_thread == thread_items, client.worker
        assert len(client.messages) == len(got_ws) + len(got_thread)
