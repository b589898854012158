"""Prometheus metrics, on an injectable registry.

Labelled children are bound once per venue (``VenueMetrics``) so the hot path
touches a prepared object instead of resolving labels on every update.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

# Tick-to-order lives in microseconds; acknowledgements in (sub-)milliseconds to seconds.
TICK_TO_ORDER_BUCKETS = (5e-6, 10e-6, 20e-6, 35e-6, 50e-6, 75e-6, 100e-6, 150e-6, 250e-6, 500e-6, 1e-3, 5e-3, 0.025)
ACK_BUCKETS = (1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Every metric the engine exports. Pass a fresh ``CollectorRegistry`` in tests."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.tick_to_order = NsHistogram(
            "hft_tick_to_order_seconds",
            "Market event received by the engine -> order command handed to the venue adapter",
            TICK_TO_ORDER_BUCKETS,
        )
        r.register(self.tick_to_order)
        self.order_ack = Histogram(
            "hft_order_ack_seconds", "Order sent -> venue acknowledgement (accepted/rejected/first fill)",
            ["venue"], buckets=ACK_BUCKETS, registry=r,
        )
        self.book_valid = Gauge("hft_book_valid", "1 when the venue's book is in the consolidated book", ["venue"], registry=r)
        self.book_checksum = Gauge(
            "hft_book_checksum", "CRC-32 of the venue book's best 10 levels a side (hft.book.levels_checksum)",
            ["venue", "symbol"], registry=r,
        )
        self.risk_denials = Counter("hft_risk_denials", "Orders stopped by pre-trade checks", ["venue", "reason"], registry=r)
        self.venue_up = Gauge("hft_venue_up", "1 when the venue is connected", ["venue"], registry=r)
        self.position = Gauge("hft_position_base", "Position in the base asset", ["venue"], registry=r)
        self.pnl_realized = Gauge("hft_pnl_realized_quote", "Realised P&L before fees", registry=r)
        self.pnl_unrealized = Gauge("hft_pnl_unrealized_quote", "Unrealised P&L at the consolidated mid", registry=r)
        self.fees = Gauge("hft_fees_quote", "Fees paid (negative: rebates earned)", registry=r)
        self.pnl_net = Gauge("hft_pnl_net_quote", "Realised + unrealised - fees", registry=r)
        self.open_orders = Gauge("hft_open_orders", "Our orders resting", ["venue"], registry=r)
        self.trading_state = Gauge("hft_trading_state", "0 active, 1 reducing (exposure-reducing orders only), 2 halted", registry=r)
        self.kill_switch = Counter("hft_kill_switch", "Kill switch triggers", ["reason"], registry=r)
        self.journal_healthy = Gauge("hft_journal_healthy", "1 while the journal writer commits", registry=r)
        self.journal_backlog = Gauge("hft_journal_backlog", "Journal records waiting for the writer", registry=r)
        self.watchdog_cancels = Counter(
            "hft_watchdog_cancels", "Cancel-alls by the dead man's switch on a silent venue", ["venue"], registry=r
        )

    def venue(self, name: str) -> "VenueMetrics":
        return VenueMetrics(self, name)

    def count_from(self, stats: dict[str, Any]) -> None:
        """Export per-venue counters straight from the engine's own ``VenueStats`` at scrape time.

        The hot path then adds to plain ints and never takes a metrics lock; nothing is counted twice.
        """
        self.registry.register(_VenueStatsCollector(stats))

    def serve(self, host: str, port: int) -> int:
        """Start the HTTP endpoint in a daemon thread; returns the bound port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        return server.server_address[1]

    def shutdown(self) -> None:
        server = getattr(self, "_server", None)
        if server is not None:
            server.shutdown()
            server.server_close()
            self._server = None


class VenueMetrics:
    """Children of the labelled metrics for one venue, bound once."""

    __slots__ = ("order_ack", "book_valid", "venue_up", "position", "open_orders")

    def __init__(self, m: Metrics, venue: str) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(m, name).labels(venue=venue))


# (VenueStats field, metric name, help, scale): counters the engine keeps as ints, exported on scrape
_STATS_COUNTERS = (
    ("book_updates", "hft_book_updates", "Book snapshots and deltas applied", 1),
    ("gaps", "hft_book_gaps", "Sequence gaps detected (book invalid until resync)", 1),
    ("resyncs", "hft_book_resyncs", "Book snapshots requested after a gap", 1),
    ("dropped", "hft_messages_dropped", "Malformed venue messages dropped", 1),
    ("orders", "hft_orders", "Orders sent", 1),
    ("cancels", "hft_cancels", "Cancels sent", 1),
    ("fills", "hft_fills", "Fills received (duplicates excluded)", 1),
    ("duplicate_fills", "hft_duplicate_fills", "Fills seen twice and ignored", 1),
    ("rejects", "hft_rejects", "Orders the venue rejected", 1),
    ("reconciles", "hft_reconciles", "Reconciliations with the venue after a reconnect", 1),
    ("volume", "hft_filled_base", "Base quantity filled", 1e-9),
)


class NsHistogram:
    """A histogram the hot path fills with integer nanoseconds and Prometheus reads in seconds.

    ``observe_ns`` is a bisect and two int additions on the engine's thread (no lock, no float);
    the scrape thread copies the counts and builds the cumulative buckets. It is registered on a
    registry like any collector.
    """

    def __init__(self, name: str, documentation: str, buckets_s: tuple[float, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds_s = tuple(buckets_s)
        self._bounds_ns = [round(b * 1e9) for b in buckets_s]
        self._counts = [0] * (len(buckets_s) + 1)  # the last one: above every bound
        self._sum_ns = 0

    def observe_ns(self, ns: int) -> None:
        self._counts[bisect_left(self._bounds_ns, ns)] += 1
        self._sum_ns += ns

    def describe(self) -> list:
        return [HistogramMetricFamily(self.name, self.documentation)]

    def collect(self):
        counts, total_ns = list(self._counts), self._sum_ns
        cumulative, buckets = 0, []
        for bound, n in zip((*(str(b) for b in self.bounds_s), "+Inf"), counts):
            cumulative += n
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total_ns / 1e9)


class _VenueStatsCollector:
    def __init__(self, stats: dict[str, Any]) -> None:
        self._stats = stats

    def describe(self) -> list:
        return [CounterMetricFamily(name, help_, labels=["venue"]) for _, name, help_, _ in _STATS_COUNTERS]

    def collect(self):
        items = list(self._stats.items())  # venues are fixed after start-up; ints read atomically
        for field, name, help_, scale in _STATS_COUNTERS:
            family = CounterMetricFamily(name, help_, labels=["venue"])
            for venue, st in items:
                family.add_metric([venue], getattr(st, field) * scale)
            yield family
