"""The compiled load client of ``xyra bench`` (not part of the server).

* ``loadgen``: the frame counter, pre-masked client frames, and ``Connection``, an
  asyncio protocol on uvloop for the workloads that hold many connections;
* ``sockload`` (Linux only): drivers on plain non-blocking sockets and an epoll set
  of their own, for echo, plain pub/sub and connect.

Nothing in ``xyra`` outside ``xyra.bench`` imports this package.
"""
