"""The embedded relay: the workers of one machine publish to each other directly.

The supervisor (``xyra.workers``) gives every pair of workers one Unix stream socket
pair, made before the fork: a new worker inherits its ends, and each running worker
gets its end of the new pair over its control socket (SCM_RIGHTS). No process sits in
the data path, and no server is needed.

Each worker tells its peers which topics it has local subscribers for, and forwards a
publish only to the peers that have the topic. The publishes of one loop iteration on
one topic share one PUB frame, and each peer gets one write per iteration. Frames::

    length (4 bytes, big-endian, of what follows) | kind (1 byte) | body
    PUB   topic length (2) | topic | message+   (a message as in the Redis envelope:
                                                flags (1) | length (4) | payload)
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
from xyra.backplane.envelope import COMPRESS, OP_BINARY, OP_TEXT

log = logging.getLogger("xyra")

PUB, SUB, UNSUB, COUNT, COUNTED = 1, 2, 3, 4, 5
_head = struct.Struct(">IB")
_pub_head = struct.Struct(">IBH")
_item = struct.Struct(">BI")
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
        self.topics: set[str] = set()  # the peer's topics with subscribers
        self.pending: list[bytes] = []  # this iteration's frames
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
                    tlen = int.from_bytes(buf[start : start + 2], "big")
                    relay.receive(
                        buf[start + 2 : start + 2 + tlen].decode(), buf, start + 2 + tlen, pos
                    )
                elif kind == SUB:
                    relay.interest(self, buf[start:pos].decode(), True)
                elif kind == UNSUB:
                    relay.interest(self, buf[start:pos].decode(), False)
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
        self,
        peers: dict[int, socket.socket] | None = None,
        *,
        queue_messages: int = 10_000,
        queue_bytes: int = 16 << 20,
    ) -> None:
        self.queue_messages = queue_messages
        self.queue_bytes = queue_bytes
        self._initial = dict(peers or {})
        self.peers: dict[int, _Peer] = {}
        self._dirty: list[_Peer] = []
        self._flush_scheduled = False
        self._batch: dict[str, list[bytes]] = {}  # this iteration's publishes per topic
        self._remote: dict[str, int] = {}  # topic -> peers that have it
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
        for topic in list(peer.topics):
            self.interest(peer, topic, False)
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
        if topic not in self._remote:
            return  # no other worker has a subscriber
        data: bytes = message.encode() if isinstance(message, str) else message
        items = self._batch.get(topic)
        if items is None:
            items = self._batch[topic] = []
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self.loop.call_soon(self._flush)
        items.append(_item.pack(opcode | COMPRESS if compress else opcode, len(data)))
        items.append(data)
        self.published += 1

    def interest(self, peer: _Peer, topic: str, on: bool) -> None:
        """A peer's SUB or UNSUB: ``_remote`` counts the peers that have each topic."""
        if on:
            if topic not in peer.topics:
                peer.topics.add(topic)
                self._remote[topic] = self._remote.get(topic, 0) + 1
        elif topic in peer.topics:
            peer.topics.discard(topic)
            left = self._remote[topic] - 1
            if left:
                self._remote[topic] = left
            else:
                del self._remote[topic]

    def topic_added(self, topic: str) -> None:
        frame = _frame(SUB, topic.encode())
        for peer in self.peers.values():
            peer.send(frame, 0)

    def topic_removed(self, topic: str) -> None:
        frame = _frame(UNSUB, topic.encode())
        for peer in self.peers.values():
            peer.send(frame, 0)

    def schedule(self, peer: _Peer) -> None:
        self._dirty.append(peer)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        batch, self._batch = self._batch, {}
        for topic, items in batch.items():
            tb = self._topic_bytes.get(topic)
            if tb is None:
                if len(self._topic_bytes) > 10_000:  # many one-off topics
                    self._topic_bytes.clear()
                tb = self._topic_bytes[topic] = topic.encode()
            body = b"".join(items)
            frame = _pub_head.pack(len(body) + len(tb) + 3, PUB, len(tb)) + tb + body
            messages = len(items) // 2
            for peer in self.peers.values():
                if topic in peer.topics:
                    peer.send(frame, messages)
        dirty, self._dirty = self._dirty, []
        for peer in dirty:
            peer.flush()
        self._flush_scheduled = False  # last: the sends above need no second call

    def receive(self, topic: str, buf: bytearray, pos: int, end: int) -> None:
        """Deliver the messages of a PUB frame (``buf[pos:end]``) to local subscribers."""
        publish_local = self.hub.publish_local
        unpack = _item.unpack_from
        while pos < end:
            flags, n = unpack(buf, pos)
            pos += 5
            op = flags & 0x0F
            if op == OP_TEXT or op == OP_BINARY:
                publish_local(topic, bytes(buf[pos : pos + n]), op, flags & COMPRESS != 0)
                self.received += 1
            pos += n

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
