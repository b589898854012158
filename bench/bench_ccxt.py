"""The ``ccxt`` venue against a local exchange server: order round trip and market-data throughput.

    python bench/bench_ccxt.py [--orders N] [--seconds S] [--quick]

The Binance-dialect exchange server runs in its own process, so client and server do not
share an event loop; the unmodified ccxt client (REST: ``ccxt.async_support``, streams:
``ccxt.pro``) talks to it over 127.0.0.1. Rows, all measured in this run:

Order round trip (``submit()`` → the ``OrderAccepted`` event reaches the sink; one order at a
time, each resting far from the market, all cancelled at the end), p50/p99 over N orders:

1. baseline: the in-process ``sim`` venue with zero configured latency — the framework's own
   cost of an order's way out and its acknowledgement's way back.
2. ``ccxt`` adapter → local server (``python -m venues.sim.exchange_server``): signing, HTTP
   over loopback, the server's matching engine, ccxt's parsing of the answer, our translation.
   The adapter's rate limiting is off (this measures latency, not pacing).

Depth diffs into the consolidated book (the server, in its own process, steps its flow by
1 ms and publishes a diff in a loop, as fast as it can):

3. baseline: the very diffs ccxt consumed in row 4 (kept as decoded JSON), parsed from their
   decimal strings and applied straight into a fresh :class:`~hft.book.ConsolidatedBook` —
   no network, no ccxt.
4. ccxt.pro ``watch_order_book`` (ccxt applies every diff to its book) → adapter diffing →
   :class:`~hft.book.ConsolidatedBook`: the venue's diff messages consumed per second and the
   level changes they carried. The adapter coalesces diffs that arrive within one event-loop
   turn into one ``BookDelta``; that rate is printed too, with the client's CPU share.

No pass/fail: timings belong in this table, never in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from hft import numbers  # noqa: E402
from hft.book import ConsolidatedBook, VenueBook  # noqa: E402
from hft.clock import Clock  # noqa: E402
from hft.events import BookDelta, BookSnapshot, OrderAccepted, OrderRejected  # noqa: E402
from hft.model import Order, Side  # noqa: E402
from venues.ccxt_adapter import CcxtOptions, CcxtVenueAdapter  # noqa: E402
from venues.sim.adapter import SimOptions, SimVenueAdapter  # noqa: E402

SYM = "BTC/USDT"
KEY, SECRET = "bench-key", "bench-secret"


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))]


class _Server:
    """An exchange server in a child process on a free port (``flat_out``: steps and publishes in a loop)."""

    def __init__(self, config: dict, flat_out: bool = False) -> None:
        self._dir = tempfile.TemporaryDirectory()
        path = Path(self._dir.name) / "exchange.yaml"
        path.write_text(yaml.safe_dump(config))
        cmd = (
            [sys.executable, str(Path(__file__).resolve()), "--serve-flat-out", str(path)]
            if flat_out
            else [sys.executable, "-m", "venues.sim.exchange_server", "--config", str(path), "--port", "0"]
        )
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.url = ""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            m = re.match(r"REST\s+(http://\S+)/api/v3", line)
            if m:
                self.url = m.group(1)
                break
            if not line and self.proc.poll() is not None:
                break
        if not self.url:
            self.stop()
            raise RuntimeError("exchange server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._dir.cleanup()


def _server_config(busy: bool) -> dict:
    flow = (
        {"levels": 40, "limit_rate_per_s": 2000, "cancel_rate_per_s": 1800, "taker_rate_per_s": 100,
         "recenter_interval_s": 0.05}
        if busy else {"taker_rate_per_s": 0}
    )
    return {
        "seed": 3,
        "auto_liquidity": not busy,  # busy: the flat-out loop steps the flow itself
        "symbols": [{"symbol": SYM, "flow": flow}],
        "api_keys": [{"name": "bench", "api_key": KEY, "api_secret": SECRET,
                      "balances": {"BTC": "1000", "USDT": "100000000"}}],
        "rate_limits": {"enabled": False},
    }


async def _serve_flat_out(path: str) -> None:
    """Child process: an exchange server that steps its flow and publishes a diff as fast as it can."""
    from venues.sim.exchange_server import ExchangeServer, load_server_config

    server = await ExchangeServer(load_server_config(path)).start()
    print(f"REST     {server.url}/api/v3", flush=True)
    while True:
        server.advance(0.001)
        server.publish()
        await asyncio.sleep(0)  # let the websocket senders run


# ---------------------------------------------------------------------------- order round trip


async def _round_trips(adapter, events: list, n: int, price: int, tag: str = "rt") -> list[float]:
    samples = []
    for i in range(n):
        o = Order(f"{tag}{i}", adapter.name, SYM, Side.BUY, numbers.parse("0.001"), price - i * numbers.parse("0.01"))
        start = len(events)
        t0 = time.perf_counter_ns()
        adapter.submit(o)
        done = None
        while done is None:
            for e in events[start:]:
                if isinstance(e, (OrderAccepted, OrderRejected)) and e.client_order_id == o.client_order_id:
                    done = e
                    break
            else:
                await asyncio.sleep(0)
        if isinstance(done, OrderRejected):
            raise RuntimeError(f"rejected: {done.reason}")
        samples.append((time.perf_counter_ns() - t0) / 1e3)
    await adapter.cancel_all()
    return sorted(samples)


async def _sim_round_trip(n: int) -> list[float]:
    events: list = []
    opts = SimOptions(latency_ms=0, market_data_latency_ms=0, step_ms=1e9)
    adapter = SimVenueAdapter("sim", [SYM], opts, events.append, Clock(), seed=1)
    await adapter.connect()
    try:
        bid = adapter.engines[SYM].best_bid()[0]
        return await _round_trips(adapter, events, n, bid - numbers.parse("100"))
    finally:
        await adapter.close()


async def _ccxt_round_trip(url: str, n: int) -> list[float]:
    events: list = []
    opts = CcxtOptions(exchange="binance", base_url=url, rate_limit="off", reconcile_interval_s=0)
    adapter = CcxtVenueAdapter("lx", [SYM], opts, events.append, Clock(), api_key=KEY, api_secret=SECRET)
    await adapter.connect()
    try:
        book = await adapter.exchange.fetch_order_book(SYM, 5)
        bid = numbers.parse(repr(book["bids"][0][0]))
        await _round_trips(adapter, events, min(20, n), bid - numbers.parse("100"), "warm")  # connections, caches
        return await _round_trips(adapter, events, n, bid - numbers.parse("200"))
    finally:
        await adapter.close()


# ---------------------------------------------------------------------------- market data


async def _market_data(url: str, seconds: float) -> dict:
    cb = ConsolidatedBook(SYM, max_age_ns=10**12)
    cb.add_venue(VenueBook("lx", SYM), 0)
    applied = {"deltas": 0, "levels": 0, "snapshots": 0, "gaps": 0}

    def sink(ev) -> None:
        if isinstance(ev, BookSnapshot):
            cb.apply_snapshot("lx", ev.bids, ev.asks, ev.seq, ev.ts_recv)
            applied["snapshots"] += 1
        elif isinstance(ev, BookDelta):
            if not cb.apply_delta("lx", ev.first_seq, ev.last_seq, ev.bids, ev.asks, ev.ts_recv):
                applied["gaps"] += 1
            applied["deltas"] += 1
            applied["levels"] += len(ev.bids) + len(ev.asks)

    opts = CcxtOptions(exchange="binance", base_url=url, rate_limit="off")
    adapter = CcxtVenueAdapter("lx", [SYM], opts, sink, Clock())  # no keys: market data only
    await adapter.connect()
    ex = adapter.exchange
    captured: list = []
    recording = False
    handle = ex.handle_order_book

    def counting(client, message):  # keep every depth diff message ccxt consumes while measuring
        if recording:
            captured.append(message)
        return handle(client, message)

    ex.handle_order_book = counting
    try:
        await adapter.subscribe_books()
        async with asyncio.timeout(20):
            while not applied["snapshots"]:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)  # past the first burst of buffered diffs
        recording = True
        d0, l0, t0, cpu0 = applied["deltas"], applied["levels"], time.perf_counter(), time.process_time()
        await asyncio.sleep(seconds)
        recording = False
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        deltas, levels = applied["deltas"] - d0, applied["levels"] - l0
    finally:
        await adapter.close()
    venue_levels = sum(len(m.get("b", ())) + len(m.get("a", ())) for m in captured)
    # baseline: the same venue diffs parsed from their decimal strings and applied straight into a fresh book
    fresh = ConsolidatedBook(SYM, max_age_ns=10**12)
    fresh.add_venue(VenueBook("lx", SYM), 0)
    fresh.apply_snapshot("lx", [], [], 0, 0)
    parse = numbers.parse
    t = time.perf_counter()
    for i, m in enumerate(captured, 1):
        fresh.apply_delta("lx", i, i, [(parse(p), parse(q)) for p, q in m["b"]],
                          [(parse(p), parse(q)) for p, q in m["a"]], 0)
    base = time.perf_counter() - t
    return {
        "diffs_per_s": len(captured) / elapsed,
        "venue_levels_per_s": venue_levels / elapsed,
        "events_per_s": deltas / elapsed,
        "event_levels_per_s": levels / elapsed,
        "client_cpu_share": cpu / elapsed,
        "gaps": applied["gaps"],
        "baseline_diffs_per_s": len(captured) / base if base else float("inf"),
        "baseline_levels_per_s": venue_levels / base if base else float("inf"),
    }


# ---------------------------------------------------------------------------- table


def run(orders: int = 300, seconds: float = 10.0) -> dict:
    """All rows; a dict of plain numbers (µs for latencies, per second for rates)."""
    out: dict = {}
    sim = asyncio.run(_sim_round_trip(orders))
    out.update(sim_rt_p50_us=_percentile(sim, 0.5), sim_rt_p99_us=_percentile(sim, 0.99), sim_rt_n=len(sim))
    server = _Server(_server_config(busy=False))
    try:
        rt = asyncio.run(_ccxt_round_trip(server.url, orders))
    finally:
        server.stop()
    out.update(ccxt_rt_p50_us=_percentile(rt, 0.5), ccxt_rt_p99_us=_percentile(rt, 0.99), ccxt_rt_n=len(rt))
    server = _Server(_server_config(busy=True), flat_out=True)
    try:
        out.update(asyncio.run(_market_data(server.url, seconds)))
    finally:
        server.stop()
    return out


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-flat-out":
        asyncio.run(_serve_flat_out(sys.argv[2]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--quick", action="store_true", help="50 orders, 3 s of market data")
    args = ap.parse_args()
    r = run(50, 3.0) if args.quick else run(args.orders, args.seconds)
    base = r["sim_rt_p50_us"]
    print(f"{'order round trip: submit → OrderAccepted':<52}{'orders':>8}{'p50 µs':>10}{'p99 µs':>10}{'× p50':>8}")
    print(f"{'  sim venue, in-process, 0 ms latency (baseline)':<52}{r['sim_rt_n']:>8}{base:>10.1f}"
          f"{r['sim_rt_p99_us']:>10.1f}{1.0:>8.1f}")
    print(f"{'  ccxt → local exchange server (loopback HTTP)':<52}{r['ccxt_rt_n']:>8}{r['ccxt_rt_p50_us']:>10.1f}"
          f"{r['ccxt_rt_p99_us']:>10.1f}{r['ccxt_rt_p50_us'] / base:>8.1f}")
    print()
    b = r["baseline_diffs_per_s"]
    print(f"{'depth diffs into the consolidated book':<52}{'diffs/s':>10}{'levels/s':>12}{'× diffs':>8}")
    print(f"{'  same diffs parsed + applied directly (baseline)':<52}{b:>10.0f}{r['baseline_levels_per_s']:>12.0f}"
          f"{1.0:>8.2f}")
    print(f"{'  ccxt.pro → adapter → ConsolidatedBook':<52}{r['diffs_per_s']:>10.0f}{r['venue_levels_per_s']:>12.0f}"
          f"{r['diffs_per_s'] / b:>8.3f}")
    print(f"(the adapter coalesced them into {r['events_per_s']:.0f} BookDelta events/s carrying "
          f"{r['event_levels_per_s']:.0f} level changes/s; client CPU {r['client_cpu_share']:.0%} of one core; "
          f"gaps {r['gaps']}; the server steps and publishes flat out in its own process)")


if __name__ == "__main__":
    main()
