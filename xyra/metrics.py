"""Prometheus metrics: ``install(app)`` serves Xyra's live stats at ``/metrics``.

Needs the official client, ``prometheus_client`` (``pip install "xyra[metrics]"``)::

    from xyra import App
    from xyra.metrics import install

    app = App()
    install(app)          # GET /metrics: the Prometheus exposition format

Nothing is counted here: the core counts in C (``App.stats()``). A ``XyraCollector``
reads the snapshot when Prometheus scrapes and turns it into metric families, named
``xyra_*`` with their unit in the name and ``_total`` on counters; every series has a
``worker`` label. Under ``--workers N`` the worker that answers the scrape gathers
every worker's snapshot first (``App.cluster_stats()``, through the supervisor), so a
scrape of the one address returns the series of all the workers of the machine.
docs/observability.md lists every metric.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

try:
    from prometheus_client import REGISTRY, CollectorRegistry
except ImportError as exc:  # pragma: no cover - the extra is not installed
    raise ImportError(
        f'xyra.metrics needs prometheus_client ({exc}): pip install "xyra[metrics]"'
    ) from exc
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from xyra.http import Request, Response
from xyra.stats import TOP_TOPICS

if TYPE_CHECKING:
    from xyra.app import App

__all__ = ["XyraCollector", "families", "install"]


class XyraCollector(Collector):
    """Xyra's metric families, read from ``app.stats()`` when collected.

    ``install`` sets ``snapshots`` for the length of one scrape (every worker's); outside
    of that (the collector registered in a registry of your own) it reads this process's
    snapshot, which must then be collected on the server's loop thread.
    """

    def __init__(self, app: App, top_topics: int = TOP_TOPICS) -> None:
        self.app = app
        self.top_topics = top_topics
        self.snapshots: list[dict[str, Any]] | None = None

    def collect(self) -> Iterator[Metric]:
        snapshots = self.snapshots
        if snapshots is None:
            snapshots = [self.app.stats(top_topics=self.top_topics)]
        yield from families(snapshots)


class _Both(Collector):
    """Xyra's families, then another registry's (one exposition, one ``# EOF``)."""

    def __init__(self, first: Collector, then: Collector | None) -> None:
        self.first = first
        self.then = then

    def collect(self) -> Iterator[Metric]:
        yield from self.first.collect()
        if self.then is not None:
            yield from self.then.collect()


def install(
    app: App,
    path: str = "/metrics",
    *,
    top_topics: int = TOP_TOPICS,
    registry: CollectorRegistry | None = REGISTRY,
) -> XyraCollector:
    """Serve the Prometheus exposition format at ``path`` (an HTTP GET route of ``app``).

    The answer holds Xyra's series (every worker's), then ``registry``'s: by default
    prometheus_client's global one (``process_*``, ``python_*`` and the metrics your
    code registered there; those describe the worker that answered). ``registry=None``
    serves Xyra's alone. ``top_topics`` bounds the per-topic series (0: none). The
    format follows the scraper's ``Accept`` header (OpenMetrics or text 0.0.4/1.0.0).
    Returns the collector, registered in a registry of its own (``collector.registry``).
    """
    collector = XyraCollector(app, top_topics)
    own = CollectorRegistry()
    own.register(collector)
    collector.registry = own  # type: ignore[attr-defined]
    both = _Both(own, registry)

    async def metrics(request: Request) -> Response:
        snapshots = await app.cluster_stats(top_topics=top_topics)
        encoder, content_type = choose_encoder(request.headers.get("accept") or "")
        collector.snapshots = snapshots
        try:
            body = encoder(both)
        finally:
            collector.snapshots = None
        return Response(body, headers={"Content-Type": content_type})

    app.route(path, metrics, methods=["GET"])
    return collector


def families(snapshots: Iterable[dict[str, Any]]) -> list[Metric]:
    """The metric families of some ``App.stats()`` snapshots (one per worker)."""
    f = _Families()
    for snap in snapshots:
        f.add(snap)
    return f.all()


class _Families:
    def __init__(self) -> None:
        self.table: dict[str, Metric] = {}

    def _get(self, kind: Any, name: str, doc: str, labels: tuple[str, ...]) -> Any:
        metric = self.table.get(name)
        if metric is None:
            metric = self.table[name] = kind(name, doc, labels=["worker", *labels])
        return metric

    def counter(self, name: str, doc: str, w: str, value: float, **labels: str) -> None:
        self._get(CounterMetricFamily, name, doc, tuple(labels)).add_metric(
            [w, *labels.values()], value
        )

    def gauge(self, name: str, doc: str, w: str, value: float, **labels: str) -> None:
        self._get(GaugeMetricFamily, name, doc, tuple(labels)).add_metric(
            [w, *labels.values()], value
        )

    def all(self) -> list[Metric]:
        return list(self.table.values())

    def add(self, s: dict[str, Any]) -> None:
        w = str(s["worker"])
        self.gauge(
            "xyra_info",
            "Always 1: the worker's process id and Xyra version",
            w,
            1,
            pid=str(s["pid"]),
            version=str(s["version"]),
        )
        self.gauge(
            "xyra_start_time_seconds",
            "When the worker started serving (Unix time)",
            w,
            s["started"],
        )
        conns = s["connections"]
        self.gauge(
            "xyra_handshaking_connections",
            "Connections in the HTTP phase: handshakes in progress, HTTP keep-alive",
            w,
            conns["handshaking"],
        )
        for route, r in conns["routes"].items():
            self.gauge("xyra_connections", "Open WebSocket connections", w, r["open"], route=route)
            self.counter(
                "xyra_handshakes_accepted_total",
                "WebSocket handshakes accepted (101 sent)",
                w,
                r["accepted"],
                route=route,
            )
        hs = s["handshakes"]
        self._get(
            CounterMetricFamily,
            "xyra_handshakes_refused_total",
            "Connections refused in the HTTP phase, by the HTTP status answered",
            ("status",),
        )
        for status, n in hs["refused"].items():
            self.counter("xyra_handshakes_refused_total", "", w, n, status=status)
        self.counter(
            "xyra_handshake_timeouts_total",
            "Connections closed for sending no complete request within handshake_timeout",
            w,
            hs["timed_out"],
        )
        for code, n in s["closes"].items():
            self.counter(
                "xyra_closes_total",
                "WebSocket connections ended, by the close code the app was told",
                w,
                n,
                code=code,
            )
        for direction, verb in (("received", "received"), ("sent", "sent")):
            for kind in ("text", "binary"):
                self.counter(
                    f"xyra_messages_{verb}_total",
                    f"Data messages {verb}, by kind",
                    w,
                    s["messages"][direction][kind],
                    kind=kind,
                )
                self.counter(
                    f"xyra_{verb}_bytes_total",
                    f"Payload bytes of the data messages {verb} (as on the wire), by kind",
                    w,
                    s["bytes"][direction][kind],
                    kind=kind,
                )
        bp = s["backpressure"]
        self.counter(
            "xyra_backpressure_dropped_messages_total",
            "Messages dropped: the connection's queue was over max_backpressure",
            w,
            bp["dropped_messages"],
        )
        self.counter(
            "xyra_backpressure_dropped_bytes_total",
            "Payload bytes of the messages dropped for backpressure",
            w,
            bp["dropped_bytes"],
        )
        self.counter(
            "xyra_backpressure_closed_connections_total",
            "Connections dropped over max_backpressure (close_on_backpressure_limit)",
            w,
            bp["closed_connections"],
        )
        comp = s["compression"]
        for key, name, doc in (
            ("deflate_in_bytes", "xyra_deflate_input_bytes_total", "Bytes compressed"),
            ("deflate_out_bytes", "xyra_deflate_output_bytes_total", "Bytes deflate produced"),
            ("inflate_in_bytes", "xyra_inflate_input_bytes_total", "Compressed bytes received"),
            ("inflate_out_bytes", "xyra_inflate_output_bytes_total", "Bytes inflate produced"),
        ):
            self.counter(name, doc, w, comp[key])
        ps = s["pubsub"]
        self.counter(
            "xyra_publishes_total",
            "Publishes, by origin: this worker, or another through the backplane",
            w,
            ps["publishes"],
            origin="local",
        )
        self.counter("xyra_publishes_total", "", w, ps["publishes_backplane"], origin="backplane")
        self.counter(
            "xyra_deliveries_total",
            "Messages queued for a subscriber by a publish",
            w,
            ps["deliveries"],
        )
        self.gauge("xyra_topics", "Topics with a subscriber", w, ps["topics"])
        self.gauge(
            "xyra_subscriptions", "Subscriptions (connection, topic)", w, ps["subscriptions"]
        )
        for name, doc in (
            ("xyra_topic_subscribers", "Subscribers of the busiest topics"),
            ("xyra_topic_publishes_total", "Publishes to the busiest topics"),
            ("xyra_topic_deliveries_total", "Deliveries of the busiest topics"),
        ):
            family = GaugeMetricFamily if name == "xyra_topic_subscribers" else CounterMetricFamily
            self._get(family, name, doc, ("topic",))
        for t in ps["top_topics"]:
            self.gauge("xyra_topic_subscribers", "", w, t["subscribers"], topic=t["topic"])
            self.counter("xyra_topic_publishes_total", "", w, t["publishes"], topic=t["topic"])
            self.counter("xyra_topic_deliveries_total", "", w, t["deliveries"], topic=t["topic"])
        rl = s["rate_limit"]
        self.counter(
            "xyra_rate_limit_actions_total",
            "Rate-limit actions: a message dropped, or the connection closed with 1008",
            w,
            rl["dropped"],
            action="drop",
        )
        self.counter("xyra_rate_limit_actions_total", "", w, rl["closed"], action="close")
        lag = s["loop_lag"]
        hist = self._get(
            HistogramMetricFamily,
            "xyra_loop_lag_seconds",
            f"How late a timer due every {lag['interval']} s ran: the event loop's lag",
            (),
        )
        hist.add_metric([w], list(lag["buckets"].items()), lag["sum"])
        for q in ("p50", "p99"):
            self.gauge(
                f"xyra_loop_lag_{q}_seconds",
                f"The loop lag's {q} over the recent samples (the last ~50 s)",
                w,
                lag[q],
            )
        self.gauge("xyra_loop_lag_max_seconds", "The largest loop lag seen", w, lag["max"])
