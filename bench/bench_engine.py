"""Tick-to-order latency inside the engine, with the default three sim venues.

Measured from the moment a market event is handed to the engine (its receipt
stamp) to the moment the resulting order command leaves the engine for the
adapter — the book update, the consolidated book, the strategy's quote
decision and the pre-trade checks in between. Every observation is kept (not
histogram buckets) so p50/p99 are exact.

    python bench/bench_engine.py [--seconds 20] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry  # noqa: E402

from hft.config import load_config  # noqa: E402
from hft.metrics import Metrics  # noqa: E402
from hft.registry import strategy_registry, venue_registry  # noqa: E402
from hft.runner import run_engine  # noqa: E402


class _Recorder:
    """Stands in for the histogram's ``observe_ns``: keeps every sample (seconds), and separately the
    first order of each market event (the later orders of the same event find the path warm)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.first: list[float] = []
        self._engine = None
        self._tick = 0

    def follow(self, engine) -> None:
        self._engine = engine

    def observe_ns(self, ns: int) -> None:
        value = ns * 1e-9
        self.samples.append(value)
        if self._engine is not None and self._engine._tick_recv_ns != self._tick:
            self._tick = self._engine._tick_recv_ns
            self.first.append(value)


def _stats(samples: list[float]) -> dict:
    samples = sorted(samples)
    return {
        "samples": len(samples),
        "p50_us": _percentile(samples, 0.50) * 1e6,
        "p99_us": _percentile(samples, 0.99) * 1e6,
        "mean_us": statistics.fmean(samples) * 1e6 if samples else float("nan"),
    }


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def run(seconds: float = 20.0) -> dict:
    venues, strategies = venue_registry(), strategy_registry()
    cfg = load_config(
        None,
        venue_options_model=lambda t: venues.resolve(t).Options,
        strategy_params_model=lambda t: strategies.resolve(t).Params,
    )
    cfg.metrics.enabled = False
    cfg.journal.path = Path(tempfile.mkdtemp(prefix="hft-bench-")) / "journal.sqlite"
    for vc in cfg.venues:  # busier markets: more book events, more quote decisions
        vc.options.taker_rate_per_s = 8.0
    metrics = Metrics(CollectorRegistry())
    recorder = _Recorder()
    metrics.tick_to_order = recorder
    summary = asyncio.run(run_engine(cfg, venues, strategies, duration=seconds, quiet=True, metrics=metrics,
                                     out=lambda s: None, on_started=recorder.follow))
    return {
        "orders": sum(st.orders for st in summary.venues.values()) if summary else 0,
        **_stats(recorder.samples),
        "first": _stats(recorder.first),
    }


def run_warm(ticks: int = 3000) -> dict:
    """The same path with the background flow stopped: a flow order moves alpha's top of book each
    tick (through the matching engine, the sim adapter's feed and the engine, as in a live run), and
    nothing else runs in between, so the path's code and data stay in the CPU caches. In the live run
    an event that makes orders comes every few tens of ms, after idle time and other work, and finds
    them cold: the first order of each event pays for that."""
    from hft.engine import Engine
    from hft.model import OrderType, Side, TimeInForce

    venues, strategies = venue_registry(), strategy_registry()
    cfg = load_config(
        None,
        venue_options_model=lambda t: venues.resolve(t).Options,
        strategy_params_model=lambda t: strategies.resolve(t).Params,
    )
    cfg.metrics.enabled = False
    cfg.journal.path = Path(tempfile.mkdtemp(prefix="hft-bench-")) / "journal.sqlite"
    cfg.risk.max_orders_per_second = 1_000_000
    # The bench's moves stay inside the consolidated spread, often less than the default 1 bp refresh
    # tolerance when the venues' books overlap: re-quote on every move so that every run sends orders.
    cfg.strategy.params.refresh_tolerance_bps = 0.0
    for vc in cfg.venues:
        vc.options.latency_ms = vc.options.market_data_latency_ms = 0.0
    metrics = Metrics(CollectorRegistry())
    recorder = _Recorder()
    metrics.tick_to_order = recorder

    async def drive() -> None:
        from hft.journal import Journal

        journal = Journal(cfg.journal.path).open()
        engine = Engine(cfg, venue_registry=venues, strategy_registry=strategies, metrics=metrics, journal=journal)
        engine.build()
        await engine.start()
        await engine.wait_for_books()
        adapters = list(engine.adapters.values())
        for adapter in adapters:  # freeze the background flows; the bench moves the books itself
            for task in adapter._tasks:
                if task.get_name().endswith(":flow"):
                    task.cancel()
        await asyncio.sleep(0.1)
        for i in range(ticks):
            adapter = adapters[(i // 2) % len(adapters)]
            matching = adapter.engines["BTC/USDT"]
            if i % 2 == 0:  # a large bid one tick under the venue's ask pulls the consolidated fair up
                price = matching.best_ask()[0] - adapter.instruments["BTC/USDT"].tick_size
                matching.submit("flow", f"bench-{i}", Side.BUY, 20_000_000_000, price, OrderType.LIMIT,
                                TimeInForce.GTC, False, 0)
            else:
                matching.cancel("flow", client_order_id=f"bench-{i - 1}")
            adapter._publish_changes("BTC/USDT")
            for _ in range(6):  # let the delta, our orders and their acks go round the loop
                await asyncio.sleep(0)
        await engine.stop()
        journal.close()

    asyncio.run(drive())
    return _stats(recorder.samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--quick", action="store_true", help="a 5-second run")
    args = ap.parse_args()
    r = run(5.0 if args.quick else args.seconds)
    w = run_warm(500 if args.quick else 3000)
    print(f"{'tick-to-order':<46}{'samples':>9}{'p50 µs':>9}{'p99 µs':>9}{'mean µs':>9}")
    for label, x in (
        ("live: engine + 3 sim venues in one process", r),
        ("  of which the first order of each event", r["first"]),
        ("warm: same path, flow stopped, top moved", w),
    ):
        print(f"{label:<46}{x['samples']:>9}{x['p50_us']:>9.1f}{x['p99_us']:>9.1f}{x['mean_us']:>9.1f}")
    print("targets: p50 <= 50 µs, p99 <= 250 µs")


if __name__ == "__main__":
    main()
