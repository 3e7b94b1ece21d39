"""``xyra top HOST:PORT``: a live terminal dashboard of a running Xyra server.

It reads the server's Prometheus endpoint (``xyra.metrics.install``; ``/metrics`` by
default) once a second, parses it with ``prometheus_client``'s own parser, and shows
on rich's ``Live`` display: connections, messages and bytes per second in and out,
drops, pub/sub, the loop lag, one row per worker, and the busiest topics by
subscribers and by deliveries per second. Rates are the difference between two
scrapes over the time between them. Needs ``pip install "xyra[top]"``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

Labels = frozenset[tuple[str, str]]


@dataclasses.dataclass(frozen=True)
class Scrape:
    """One read of the metrics endpoint: every sample, and when it was read."""

    at: float  # time.monotonic()
    samples: dict[str, dict[Labels, float]]  # sample name -> labels -> value

    @classmethod
    def parse(cls, text: str, at: float) -> Scrape:
        samples: dict[str, dict[Labels, float]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                series = samples.setdefault(sample.name, {})
                series[frozenset(sample.labels.items())] = sample.value
        return cls(at, samples)

    def series(self, name: str, **match: str) -> dict[Labels, float]:
        wanted = set(match.items())
        return {k: v for k, v in self.samples.get(name, {}).items() if wanted <= k}

    def total(self, name: str, **match: str) -> float:
        return sum(self.series(name, **match).values())

    def by(self, name: str, label: str, **match: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for labels, value in self.series(name, **match).items():
            key = dict(labels).get(label, "")
            out[key] = out.get(key, 0.0) + value
        return out


@dataclasses.dataclass(frozen=True)
class View:
    """What the dashboard shows: the last scrape, and rates against the one before."""

    now: Scrape
    before: Scrape | None

    def rate(self, name: str, **match: str) -> float | None:
        if self.before is None:
            return None
        return self._rate(self.now.total(name, **match), self.before.total(name, **match))

    def rates_by(self, name: str, label: str, **match: str) -> dict[str, float | None]:
        now = self.now.by(name, label, **match)
        before = self.before.by(name, label, **match) if self.before is not None else {}
        return {k: self._rate(v, before[k]) if k in before else None for k, v in now.items()}

    def _rate(self, now: float, before: float) -> float:
        assert self.before is not None
        elapsed = self.now.at - self.before.at
        if elapsed <= 0:
            return 0.0
        # A counter that went down was reset (a worker restarted): count from zero.
        return (now - before if now >= before else now) / elapsed


def fetch(url: str, timeout: float = 5.0) -> str:
    """The text of the metrics endpoint (plain text exposition)."""
    request = urllib.request.Request(url, headers={"Accept": "text/plain"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return str(response.read().decode("utf-8"))


def metrics_url(target: str, path: str = "/metrics") -> str:
    """``HOST:PORT`` (or a URL) as the metrics endpoint's URL."""
    if "://" in target:
        return target
    if not path.startswith("/"):
        path = "/" + path
    return f"http://{target}{path}"


# -- formatting --------------------------------------------------------------------------------


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def _bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1000 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1000
    return f"{value:,.1f} GB"  # pragma: no cover - the loop returns


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def _uptime(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"


# -- the screen --------------------------------------------------------------------------------


def render(view: View, target: str, top: int = 8) -> RenderableType:
    """The dashboard for one refresh."""
    s = view.now
    workers = sorted(s.by("xyra_info", "worker"), key=lambda w: int(w) if w.isdigit() else 0)
    started = [v for v in s.by("xyra_start_time_seconds", "worker").values() if v]
    uptime = _uptime(time.time() - min(started)) if started else "-"
    title = (
        f"[b]xyra top[/b] · {target} · {len(workers)} worker{'s' * (len(workers) != 1)}"
        f" · up {uptime} · {time.strftime('%H:%M:%S')}"
    )

    summary = Table.grid(padding=(0, 2))
    summary.add_column(justify="right")
    for _ in range(4):
        summary.add_column(justify="left")
    summary.add_row(
        "[b]connections[/b]",
        _num(s.total("xyra_connections")),
        f"handshaking {_num(s.total('xyra_handshaking_connections'))}",
        f"accepted/s {_num(view.rate('xyra_handshakes_accepted_total'))}",
        f"refused/s {_num(view.rate('xyra_handshakes_refused_total'))}",
    )
    summary.add_row(
        "[b]messages/s[/b]",
        f"in {_num(view.rate('xyra_messages_received_total'))}",
        f"out {_num(view.rate('xyra_messages_sent_total'))}",
        f"pub/s {_num(view.rate('xyra_publishes_total', origin='local'))}",
        f"deliv/s {_num(view.rate('xyra_deliveries_total'))}",
    )
    summary.add_row(
        "[b]bytes/s[/b]",
        f"in {_bytes(view.rate('xyra_received_bytes_total'))}",
        f"out {_bytes(view.rate('xyra_sent_bytes_total'))}",
        f"topics {_num(s.total('xyra_topics'))}",
        f"subs {_num(s.total('xyra_subscriptions'))}",
    )
    dropped = view.rate("xyra_backpressure_dropped_messages_total")
    summary.add_row(
        "[b]drops/s[/b]",
        Text(_num(dropped), style="bold red" if dropped else ""),
        f"total {_num(s.total('xyra_backpressure_dropped_messages_total'))}",
        f"closed {_num(s.total('xyra_backpressure_closed_connections_total'))}",
        f"rate-limited {_num(s.total('xyra_rate_limit_actions_total'))}",
    )
    p99 = max(s.by("xyra_loop_lag_p99_seconds", "worker").values(), default=None)
    summary.add_row(
        "[b]loop lag[/b]",
        f"p50 {_secs(max(s.by('xyra_loop_lag_p50_seconds', 'worker').values(), default=None))}",
        Text(f"p99 {_secs(p99)}", style="bold red" if p99 and p99 > 0.1 else ""),
        f"max {_secs(max(s.by('xyra_loop_lag_max_seconds', 'worker').values(), default=None))}",
        "",
    )

    per_worker = Table(title="workers", expand=True, title_justify="left")
    for header in ("worker", "pid", "connections", "in/s", "out/s", "drops/s", "lag p99"):
        per_worker.add_column(header, justify="right")
    pids = {dict(k).get("worker", ""): dict(k).get("pid", "") for k in s.series("xyra_info")}
    for w in workers:
        per_worker.add_row(
            w,
            pids.get(w, ""),
            _num(s.total("xyra_connections", worker=w)),
            _num(view.rate("xyra_messages_received_total", worker=w)),
            _num(view.rate("xyra_messages_sent_total", worker=w)),
            _num(view.rate("xyra_backpressure_dropped_messages_total", worker=w)),
            _secs(s.total("xyra_loop_lag_p99_seconds", worker=w)),
        )

    subscribers = s.by("xyra_topic_subscribers", "topic")
    deliveries = view.rates_by("xyra_topic_deliveries_total", "topic")
    by_subs = Table(title="top topics by subscribers", expand=True, title_justify="left")
    by_rate = Table(title="top topics by deliveries/s", expand=True, title_justify="left")
    columns = (("subs", "deliv/s"), ("deliv/s", "subs"))
    for table, cols in zip((by_subs, by_rate), columns, strict=True):
        table.add_column("topic", overflow="ellipsis", no_wrap=True, max_width=40)
        for col in cols:
            table.add_column(col, justify="right")
    for topic in sorted(subscribers, key=lambda t: (-subscribers[t], t))[:top]:
        by_subs.add_row(topic, _num(subscribers[topic]), _num(deliveries.get(topic)))
    for topic in sorted(deliveries, key=lambda t: (-(deliveries[t] or 0), t))[:top]:
        by_rate.add_row(topic, _num(deliveries[topic]), _num(subscribers.get(topic)))
    topics = Table.grid(expand=True, padding=(0, 1))
    topics.add_column(ratio=1)
    topics.add_column(ratio=1)
    topics.add_row(by_subs, by_rate)
    return Group(Panel(summary, title=title, title_align="left"), per_worker, topics)


class Dashboard:
    """Scrapes ``url`` on each ``refresh()`` and renders the view against the last scrape."""

    def __init__(
        self,
        url: str,
        target: str,
        *,
        top: int = 8,
        read: Callable[[str], str] = fetch,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.target = target
        self.top = top
        self.read = read
        self.clock = clock
        self.last: Scrape | None = None
        self.error = ""

    def refresh(self) -> RenderableType:
        try:
            text = self.read(self.url)
            scrape = Scrape.parse(text, self.clock())
        except (OSError, urllib.error.URLError, ValueError) as exc:
            self.error = f"cannot read {self.url}: {exc}"
            message = Text(self.error, style="bold red")
            if self.last is None:
                return Panel(message, title=f"xyra top · {self.target}", title_align="left")
            return Group(render(View(self.last, None), self.target, self.top), message)
        self.error = ""
        view = View(scrape, self.last)
        self.last = scrape
        return render(view, self.target, self.top)


def run(dashboard: Dashboard, interval: float, console: Console | None = None) -> None:
    """Refresh ``dashboard`` every ``interval`` seconds on rich's Live display (Ctrl-C ends)."""
    with Live(dashboard.refresh(), console=console, auto_refresh=False) as live:
        while True:
            time.sleep(interval)
            live.update(dashboard.refresh(), refresh=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``xyra top``: the exit status."""
    parser = argparse.ArgumentParser(
        prog="xyra top",
        description="A live dashboard of a Xyra server, read from its Prometheus endpoint "
        "(xyra.metrics.install). Ctrl-C quits.",
    )
    parser.add_argument("target", metavar="HOST:PORT", help="the server (or the metrics URL)")
    parser.add_argument("--path", default="/metrics", help="the metrics path (default /metrics)")
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between refreshes (default 1)"
    )
    parser.add_argument("--top", type=int, default=8, help="topics listed (default 8)")
    parser.add_argument(
        "--once",
        action="store_true",
        help="print one screen (two scrapes, --interval apart, for the rates) and exit",
    )
    args = parser.parse_args(argv)
    if args.interval <= 0:
        parser.error("--interval must be > 0")
    dashboard = Dashboard(metrics_url(args.target, args.path), args.target, top=args.top)
    try:
        if args.once:
            dashboard.refresh()
            time.sleep(args.interval)
            Console().print(dashboard.refresh())
            return 1 if dashboard.error else 0
        run(dashboard, args.interval)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
