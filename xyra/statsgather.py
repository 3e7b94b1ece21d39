"""Every worker's live stats, gathered through the supervisor (``--workers N``).

A scrape of ``/metrics`` lands on one worker (the kernel spreads connections), so that
worker asks the others for their snapshots. The question goes through the supervisor,
which has a control socket to every worker of this machine, whatever the backplane:
a Prometheus target is one address, and the series it returns are this machine's
workers, each with its ``worker`` label (with ``--backplane redis://`` the workers of
other machines are other targets). Nothing of this runs between scrapes.

Messages on the control sockets (SOCK_SEQPACKET: one message per send)::

    worker -> supervisor   stats? QID TOP SNAPSHOT       ask; SNAPSHOT is its own (JSON)
    supervisor -> worker   stats SID TOP                 the others are asked for theirs
    worker -> supervisor   stats= SID SNAPSHOT
    supervisor -> worker   stats! QID [SNAPSHOT,...]     the answer, after every worker
                                                         answered or ANSWER_WITHIN passed
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("xyra")

#: The largest control message read: an answer holds every worker's snapshot.
CTRL_MAX = 1 << 20
#: The supervisor answers with the snapshots it has by then (seconds).
ANSWER_WITHIN = 1.5


@dataclasses.dataclass(eq=False)
class _Query:
    requester: socket.socket
    qid: bytes
    waiting: set[int]  # pids of the workers asked
    snapshots: list[bytes]
    deadline: float


class SupervisorStats:
    """The supervisor's side: fans a worker's question out and sends the answer back."""

    def __init__(self) -> None:
        self.queries: dict[int, _Query] = {}
        self.sids = itertools.count(1)

    def on_message(
        self,
        sender: socket.socket,
        pid: int,
        msg: bytes,
        others: Iterable[tuple[int, socket.socket]],
    ) -> None:
        """A ``stats...`` message from the worker ``pid``; ``others``: (pid, ctrl) to ask."""
        head, _, body = msg.partition(b" ")
        if head == b"stats?":
            qid, _, rest = body.partition(b" ")
            top, _, own = rest.partition(b" ")
            if not qid.isdigit() or not top.isdigit():
                return
            sid = next(self.sids)
            query = _Query(sender, qid, set(), [own], time.monotonic() + ANSWER_WITHIN)
            for other_pid, ctrl in others:
                if other_pid == pid:
                    continue
                try:
                    ctrl.send(b"stats %d %s" % (sid, top))
                except OSError:
                    continue  # exiting; its end closes with it
                query.waiting.add(other_pid)
            self.queries[sid] = query
            self._answer_if_complete(sid)
        elif head == b"stats=":
            sid_text, _, snapshot = body.partition(b" ")
            sid = int(sid_text) if sid_text.isdigit() else -1
            found = self.queries.get(sid)
            if found is not None and pid in found.waiting:
                found.waiting.discard(pid)
                found.snapshots.append(snapshot)
                self._answer_if_complete(sid)

    def worker_gone(self, pid: int) -> None:
        for sid, query in list(self.queries.items()):
            if pid in query.waiting:
                query.waiting.discard(pid)
                self._answer_if_complete(sid)

    def next_deadline(self) -> float | None:
        return min((q.deadline for q in self.queries.values()), default=None)

    def timers(self, now: float) -> None:
        for sid, query in list(self.queries.items()):
            if query.deadline <= now:
                self._answer(sid)

    def _answer_if_complete(self, sid: int) -> None:
        if not self.queries[sid].waiting:
            self._answer(sid)

    def _answer(self, sid: int) -> None:
        query = self.queries.pop(sid)
        try:
            query.requester.send(b"stats! " + query.qid + b" [" + b",".join(query.snapshots) + b"]")
        except OSError as exc:
            log.debug("xyra: could not send the workers' stats: %s", exc)


class WorkerStats:
    """A worker's side: answers the supervisor, and asks it for the other workers'."""

    def __init__(self, ctrl: socket.socket, stats: Callable[[int], dict[str, Any]]) -> None:
        self.ctrl = ctrl
        self.stats = stats
        self.waiting: dict[int, asyncio.Future[list[dict[str, Any]]]] = {}
        self.qids = itertools.count(1)

    def on_message(self, msg: bytes) -> None:
        """A ``stats...`` message from the supervisor (on the loop)."""
        head, _, body = msg.partition(b" ")
        if head == b"stats":
            sid, _, top = body.partition(b" ")
            snapshot = json.dumps(self.stats(int(top))).encode()
            try:
                self.ctrl.send(b"stats= " + sid + b" " + snapshot)
            except OSError as exc:
                log.warning("xyra: could not send this worker's stats: %s", exc)
        elif head == b"stats!":
            qid, _, data = body.partition(b" ")
            fut = self.waiting.get(int(qid))
            if fut is not None and not fut.done():
                fut.set_result(json.loads(data))

    async def gather(self, top_topics: int, timeout: float) -> list[dict[str, Any]]:
        """Every worker's snapshot (this one's too), ordered by worker."""
        own = self.stats(top_topics)
        qid = next(self.qids)
        fut: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self.waiting[qid] = fut
        try:
            self.ctrl.send(b"stats? %d %d " % (qid, top_topics) + json.dumps(own).encode())
            snapshots = await asyncio.wait_for(fut, timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            log.warning("xyra: the other workers' stats are unavailable: %r", exc)
            snapshots = [own]
        finally:
            self.waiting.pop(qid, None)
        # One snapshot per worker index: while a rolling restart replaces a worker, the new
        # one and the old one share an index for a moment (this one's own snapshot wins).
        by_worker: dict[int, dict[str, Any]] = {int(own.get("worker", 0)): own}
        for snapshot in snapshots:
            by_worker.setdefault(int(snapshot.get("worker", 0)), snapshot)
        return [by_worker[w] for w in sorted(by_worker)]
