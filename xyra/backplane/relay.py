"""The embedded relay: the workers of one machine publish to each other directly.

The supervisor (``xyra.workers``) gives every pair of workers one Unix stream socket
pair, made before the fork: a new worker inherits its ends, and each running worker
gets its end of the new pair over its control socket (SCM_RIGHTS). No process sits in
the data path, and no server is needed.

Each worker tells its peers which topics it has local subscribers for, and forwards a
publish only to the peers that have the topic. The writes of one loop iteration go to
each peer as one write. Frames on a link::

    length (4 bytes, big-endian, of what follows) | kind (1 byte) | body
    PUB   flags (1) | topic length (2) | topic | payload
    SUB   topic          UNSUB  topic
    COUNT query id (8) | topic                   COUNTED  query id (8) | count (8)
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import struct
from typing import Any

from xyra.backplane.base import Backplane, EventCallback, HubLike, OutQueue
from xyra.backplane.envelope import COMPRESS

log = logging.getLogger("xyra")

PUB, SUB, UNSUB, COUNT, COUNTED = 1, 2, 3, 4, 5
_head = struct.Struct(">IB")
_pub_head = struct.Struct(">IBBH")
_qq = struct.Struct(">QQ")
_q = struct.Struct(">Q")


def _frame(kind: int, body: bytes) -> bytes:
    return _head.pack(len(body) + 1, kind) + body


class _Peer(asyncio.Protocol):
    """The link to one other worker."""

    def __init__(self, relay: RelayBackplane, peer_id: int, label: str) -> None:
        self.relay = relay
        self.peer_id = peer_id
        self.label = label
        self.transport: asyncio.Transport | None = None
        self.topics: set[str] = set()     # the peer's topics with subscribers
        self.pending: list[bytes] = []    # this iteration's frames
        self.pending_messages = 0
        self.queue = OutQueue(relay.queue_messages, relay.queue_bytes)
        self.paused = False
        self.buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(high=1 << 20)  # type: ignore[union-attr]
        # Registered only now: frames sent before would have nowhere to go, and the
        # topic list below is complete as of this moment.
        old = self.relay.peers.get(self.peer_id)
        if old is not None and old.transport is not None:
            old.transport.abort()
        self.relay.peers[self.peer_id] = self
        topics = self.relay.hub.topic_names()
        if topics:
            self.transport.write(b"".join(_frame(SUB, t.encode()) for t in topics))  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos, end = 0, len(buf)
        relay = self.relay
        try:
            while end - pos >= 5:
                n, kind = _head.unpack_from(buf, pos)
                if end - pos - 4 < n:
                    break
                start, pos = pos + 5, pos + 4 + n
                if kind == PUB:
                    flags, tlen = buf[start], int.from_bytes(buf[start + 1 : start + 3], "big")
                    topic = buf[start + 3 : start + 3 + tlen].decode()
                    relay.receive(topic, bytes(buf[start + 3 + tlen : pos]), flags)
                elif kind == SUB:
                    self.topics.add(buf[start:pos].decode())
                elif kind == UNSUB:
                    self.topics.discard(buf[start:pos].decode())
                elif kind == COUNT:
                    (qid,) = _q.unpack_from(buf, start)
                    count = relay.hub.num_subscribers(buf[start + 8 : pos].decode())
                    self.send(_frame(COUNTED, _qq.pack(qid, count)), 0)
                elif kind == COUNTED:
                    relay.counted(self, *_qq.unpack_from(buf, start))
        except Exception:  # a bug of ours must not take the worker's loop down
            log.exception("xyra: relay: bad frame from %s; dropping the link", self.label)
            if self.transport is not None:
                self.transport.abort()
            return
        del buf[:pos]

    def send(self, frame: bytes, messages: int) -> None:
        if not self.pending:
            self.relay.schedule(self)
        self.pending.append(frame)
        self.pending_messages += messages

    def flush(self) -> None:
        data = b"".join(self.pending)
        messages = self.pending_messages
        self.pending = []
        self.pending_messages = 0
        if self.transport is None or self.transport.is_closing():
            return
        if self.paused or self.queue:
            self.queue.push(data, messages)
        else:
            self.transport.write(data)
            self.relay.writes += 1

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        while self.queue and not self.paused and self.transport is not None:
            data, _ = self.queue.popleft()
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.peer_lost(self, exc)


class RelayBackplane(Backplane):
    """The embedded backplane between the workers of one machine (``xyra.workers``)."""

    name = "relay"

    def __init__(
        self, peers: dict[int, socket.socket] | None = None, *,
        queue_messages: int = 10_000, queue_bytes: int = 16 << 20,
    ) -> None:
        self.queue_messages = queue_messages
        self.queue_bytes = queue_bytes
        self._initial = dict(peers or {})
        self.peers: dict[int, _Peer] = {}
        self._dirty: list[_Peer] = []
        self._topic_bytes: dict[str, bytes] = {}
        self._queries: dict[int, tuple[asyncio.Future[int], set[_Peer], list[int]]] = {}
        self._qids = itertools.count(1)
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.hub: HubLike = None  # type: ignore[assignment]
        self.published = 0
        self.received = 0
        self.writes = 0
        self.dropped_lost = 0

    async def start(self, hub: HubLike, on_event: EventCallback) -> None:
        self.loop = asyncio.get_running_loop()
        self.hub = hub
        initial, self._initial = self._initial, {}
        for peer_id, sock in initial.items():
            await self.add_peer(peer_id, sock)

    async def add_peer(self, peer_id: int, sock: socket.socket, label: str = "") -> None:
        """Link to another worker over a connected Unix stream socket (on the loop)."""
        sock.setblocking(False)
        peer = _Peer(self, peer_id, label or f"peer {peer_id}")
        await self.loop.create_unix_connection(lambda: peer, sock=sock)

    def peer_lost(self, peer: _Peer, exc: Exception | None) -> None:
        if self.peers.get(peer.peer_id) is peer:
            del self.peers[peer.peer_id]
            self.dropped_lost += peer.queue.messages
            log.debug("xyra: relay: link to %s closed (%s)", peer.label, exc or "EOF")
        for fut, waiting, total in list(self._queries.values()):
            if peer in waiting:
                waiting.discard(peer)
                if not waiting and not fut.done():
                    fut.set_result(total[0])

    # -- the hub's calls ------------------------------------------------------------------------

    def forward(self, topic: str, message: str | bytes, opcode: int, compress: bool) -> None:
        frame = None
        for peer in self.peers.values():
            if topic in peer.topics:
                if frame is None:
                    data: bytes = message.encode() if isinstance(message, str) else message
                    tb = self._topic_bytes.get(topic)
                    if tb is None:
                        tb = self._topic_bytes[topic] = topic.encode()
                        if len(self._topic_bytes) > 10_000:
                            self._topic_bytes.clear()
                    frame = _pub_head.pack(
                        len(data) + len(tb) + 4, PUB, opcode | COMPRESS if compress else opcode,
                        len(tb)) + tb + data
                    self.published += 1
                peer.send(frame, 1)

    def topic_added(self, topic: str) -> None:
        frame = _frame(SUB, topic.encode())
        for peer in self.peers.values():
            peer.send(frame, 0)

    def topic_removed(self, topic: str) -> None:
        frame = _frame(UNSUB, topic.encode())
        for peer in self.peers.values():
            peer.send(frame, 0)

    def schedule(self, peer: _Peer) -> None:
        if not self._dirty:
            self.loop.call_soon(self._flush)
        self._dirty.append(peer)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for peer in dirty:
            peer.flush()

    def receive(self, topic: str, payload: bytes, flags: int) -> None:
        self.received += 1
        self.hub.publish_local(topic, payload, flags & 0x0F, flags & COMPRESS != 0)

    # -- cluster-wide count ---------------------------------------------------------------------

    async def cluster_subscribers(self, topic: str, timeout: float = 2.0) -> int:
        """Subscribers of ``topic`` in every worker, this one included."""
        local = self.hub.num_subscribers(topic)
        peers = set(self.peers.values())
        if not peers:
            return local
        qid = next(self._qids)
        fut: asyncio.Future[int] = self.loop.create_future()
        total = [local]
        self._queries[qid] = (fut, peers, total)
        frame = _frame(COUNT, _q.pack(qid) + topic.encode())
        for peer in peers:
            peer.send(frame, 0)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._queries.pop(qid, None)

    def counted(self, peer: _Peer, qid: int, count: int) -> None:
        query = self._queries.get(qid)
        if query is None:
            return
        fut, waiting, total = query
        if peer in waiting:
            waiting.discard(peer)
            total[0] += count
            if not waiting and not fut.done():
                fut.set_result(total[0])

    async def stop(self) -> None:
        self._flush()
        for peer in list(self.peers.values()):
            if peer.transport is not None:
                peer.transport.close()
        self.peers.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "backplane": self.name,
            "up": True,
            "peers": len(self.peers),
            "published": self.published,
            "received": self.received,
            "writes": self.writes,
            "queued": sum(p.queue.messages for p in self.peers.values()),
            "dropped": sum(p.queue.dropped for p in self.peers.values()) + self.dropped_lost,
        }
