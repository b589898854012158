"""The in-process simulated venue: our matching engine plus synthetic background flow.

Everything a live venue does arrives the same way here: acknowledgements,
fills and book deltas are events delivered after a configurable one-way
latency, in order (a FIFO pipe per direction, like a TCP stream). Background
liquidity comes from :mod:`venues.sim.flow`: one "true" price walk shared by
every sim venue with the same seed (each computes it on the same time grid,
so nothing is shared in memory), plus each venue's own noise, spread, depth
and arrival rates.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from decimal import Decimal
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field

from hft import numbers
from hft.config import FixedDecimal
from hft.events import (
    BookDelta,
    BookSnapshot,
    CancelRejected,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    TradeTick,
)
from hft.model import Balance, Capabilities, Fill, Instrument, Liquidity, OpenOrderSnapshot, Order, Side
from hft.venue import VenueAdapter
from venues.sim.flow import FlowParams, TruePrice, VenueFlow
from venues.sim.matching import ExecReport, MatchingEngine

OUR_ACCOUNT = "us"
FLOW_ACCOUNT = "flow"


class SimOptions(BaseModel):
    """``options`` of a ``type: sim`` venue."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    maker_fee_bps: Decimal = Field(Decimal("1.0"), description="Maker fee in bp (negative: rebate)")
    taker_fee_bps: Decimal = Field(Decimal("5.0"), description="Taker fee in bp")
    latency_ms: float = Field(1.0, ge=0, description="One-way latency of orders and their outcomes")
    market_data_latency_ms: float = Field(1.0, ge=0, description="Latency of book and trade updates")
    tick_size: FixedDecimal = Field("0.01", description="Price tick")
    lot_size: FixedDecimal = Field("0.00001", description="Quantity step")
    min_notional: FixedDecimal = Field("5", description="Minimum order notional in the quote asset")
    start_price: FixedDecimal = Field("60000", description="Initial true price (shared by sim venues with one seed)")
    volatility_bps: float = Field(1.0, ge=0, description="True-price volatility, bp per sqrt(second)")
    noise_bps: float = Field(1.0, ge=0, description="Std of this venue's mean-reverting offset from the true price, bp")
    half_spread_bps: float = Field(1.5, ge=0, description="Background makers' half spread, bp")
    depth_levels: int = Field(20, ge=1, le=500, description="Background price levels per side")
    level_size: FixedDecimal = Field("0.5", description="Mean background size per level (base)")
    limit_rate_per_s: float = Field(40.0, ge=0, description="Background limit order arrivals per second")
    cancel_rate_per_s: float = Field(30.0, ge=0, description="Background cancels per second")
    taker_rate_per_s: float = Field(4.0, ge=0, description="Background marketable orders per second")
    taker_size: FixedDecimal = Field("0.05", description="Mean size of a background marketable order")
    step_ms: float = Field(20.0, gt=0, description="How often the background flow advances")
    drop_delta_probability: float = Field(0.0, ge=0, le=1, description="Fault: share of book deltas lost (gaps)")
    silence_after_s: float | None = Field(
        None, gt=0, description="Fault: market data stops this long after connecting (orders still work)"
    )
    balances: dict[str, FixedDecimal] = Field(
        default_factory=lambda: {"BTC": "10", "USDT": "1000000"},
        description="Our starting balances per asset",
    )


class _Pipe:
    """Ordered delayed delivery: items leave in the order they entered, ``delay`` later."""

    __slots__ = ("_loop", "_delay_ns", "_queue", "_handle", "_deliver")

    def __init__(self, delay_ms: float, deliver: Callable[[Any], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._delay_ns = int(delay_ms * 1e6)
        self._queue: collections.deque[tuple[int, Any]] = collections.deque()
        self._handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._deliver = deliver

    def put(self, item: Any) -> None:
        due = time.monotonic_ns() + self._delay_ns
        self._queue.append((due, item))
        if self._handle is None:
            self._schedule(due)

    def _schedule(self, due: int) -> None:
        delay = (due - time.monotonic_ns()) / 1e9
        self._handle = self._loop.call_later(delay, self._flush) if delay > 0 else self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._handle = None
        queue = self._queue
        now = time.monotonic_ns()
        deliver = self._deliver
        while queue and queue[0][0] <= now:
            deliver(queue.popleft()[1])
        if queue:
            self._schedule(queue[0][0])

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._queue.clear()


class SimVenueAdapter(VenueAdapter):
    """A simulated venue in this process (backtests, demos, tests)."""

    type_name = "sim"
    description = "in-process simulated venue: price-time matching engine + synthetic flow"
    capabilities = Capabilities(cancel_on_disconnect=True, persistent=False)
    Options = SimOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.engines: dict[str, MatchingEngine] = {}
        self.flows: dict[str, VenueFlow] = {}
        self._seq: dict[str, int] = {}
        self._rng = random.Random(f"{self._seed}:{self.name}:faults")
        self._to_venue: _Pipe | None = None
        self._to_us: _Pipe | None = None
        self._market_data: _Pipe | None = None
        self._silent_from_ns = 0

    # -- lifecycle ------------------------------------------------------------
    async def _connect(self) -> None:
        o: SimOptions = self.options
        self._to_venue = _Pipe(o.latency_ms, self._arrive)
        self._to_us = _Pipe(o.latency_ms, self._receive)
        self._market_data = _Pipe(o.market_data_latency_ms, self._receive)
        if o.silence_after_s is not None:
            self._silent_from_ns = time.time_ns() + int(o.silence_after_s * 1e9)

    async def _load_instruments(self) -> dict[str, Instrument]:
        o: SimOptions = self.options
        out = {}
        now = time.time_ns()
        for symbol in self.symbols:
            base, _, quote = symbol.partition("/")
            inst = Instrument(
                venue=self.name, symbol=symbol, base=base, quote=quote, tick_size=o.tick_size,
                lot_size=o.lot_size, min_qty=o.lot_size, min_notional=o.min_notional,
                maker_fee_ppm=int(o.maker_fee_bps * 100), taker_fee_ppm=int(o.taker_fee_bps * 100),
                venue_symbol=base + quote,
            )
            engine = MatchingEngine(inst)
            engine.create_account(FLOW_ACCOUNT, {}, unlimited=True)
            engine.create_account(OUR_ACCOUNT, {a: v for a, v in o.balances.items() if a in (base, quote)})
            params = FlowParams(
                start_price=o.start_price, volatility_bps=o.volatility_bps, noise_bps=o.noise_bps,
                half_spread_bps=o.half_spread_bps, levels=o.depth_levels, level_size=o.level_size,
                limit_rate_per_s=o.limit_rate_per_s, cancel_rate_per_s=o.cancel_rate_per_s,
                taker_rate_per_s=o.taker_rate_per_s, taker_size=o.taker_size,
            )
            true_price = TruePrice(params, seed=f"{self._seed}:{symbol}", start_ns=_grid_start(now))
            flow = VenueFlow(engine, true_price, params, random.Random(f"{self._seed}:{self.name}:{symbol}"))
            flow.seed_book(now)
            engine.drain_book_changes()
            engine.drain_trades()
            self.engines[symbol] = engine
            self.flows[symbol] = flow
            self._seq[symbol] = 1
            out[symbol] = inst
        return out

    async def _subscribe_books(self, symbols: list[str]) -> None:
        for symbol in symbols:
            self._publish_snapshot(symbol)
        self.spawn(self._run_flow(), "flow")

    async def _resync_book(self, symbol: str) -> None:
        self._publish_snapshot(symbol)

    async def _close(self) -> None:
        for pipe in (self._to_venue, self._to_us, self._market_data):
            if pipe is not None:
                pipe.cancel()

    # -- market data ----------------------------------------------------------
    def _publish_snapshot(self, symbol: str) -> None:
        engine = self.engines[symbol]
        self._publish_changes(symbol)  # anything pending belongs before the snapshot's sequence
        bids, asks = engine.depth(1000)
        assert self._market_data is not None
        self._market_data.put(BookSnapshot(self.name, symbol, bids, asks, self._seq[symbol], time.time_ns(), 0))

    def _publish_changes(self, symbol: str) -> None:
        engine = self.engines[symbol]
        changes = engine.drain_book_changes()
        pipe = self._market_data
        assert pipe is not None
        now = time.time_ns()
        if self._silent_from_ns and now >= self._silent_from_ns:
            engine.drain_trades()
            return
        if changes:
            bids = [(p, s) for side, p, s in changes if side is Side.BUY]
            asks = [(p, s) for side, p, s in changes if side is Side.SELL]
            seq = self._seq[symbol] + 1
            self._seq[symbol] = seq
            if not (self.options.drop_delta_probability and self._rng.random() < self.options.drop_delta_probability):
                pipe.put(BookDelta(self.name, symbol, bids, asks, seq, seq, now, 0))
        for t in engine.drain_trades():
            pipe.put(TradeTick(self.name, symbol, t.price, t.qty, t.aggressor, str(t.trade_id), t.ts_ns, 0))

    async def _run_flow(self) -> None:
        step = self.options.step_ms / 1e3
        while True:
            await asyncio.sleep(step)
            now = time.time_ns()
            for symbol, flow in self.flows.items():
                for report in flow.step(now):
                    if report.account_id == OUR_ACCOUNT:
                        self._report(symbol, report)
                self._publish_changes(symbol)

    def _receive(self, event: Any) -> None:
        """Deliver to the engine, stamping our receipt time."""
        if hasattr(event, "ts_recv"):
            event.ts_recv = self.clock.mono_ns()
        elif isinstance(event, OrderFilled):
            event = _restamp_fill(event, self.clock.mono_ns())
        self.emit(event)

    # -- orders -----------------------------------------------------------------
    def _submit(self, order: Order) -> None:
        assert self._to_venue is not None
        self._to_venue.put(("submit", order))

    def _cancel(self, order: Order) -> None:
        assert self._to_venue is not None
        self._to_venue.put(("cancel", order))

    def _arrive(self, item: tuple[str, Order]) -> None:
        """A command reaches the venue after the one-way latency."""
        kind, order = item
        engine = self.engines.get(order.symbol)
        now = time.time_ns()
        if engine is None:
            self._to_us.put(OrderRejected(self.name, order.client_order_id, "Invalid symbol.", 0))
            return
        if kind == "submit":
            reports = engine.submit(
                OUR_ACCOUNT, order.client_order_id, order.side, order.qty, order.price, order.order_type,
                order.time_in_force, order.post_only, now,
            )
        else:
            reports = engine.cancel(OUR_ACCOUNT, client_order_id=order.client_order_id, ts_ns=now)
        for report in reports:
            if report.account_id == OUR_ACCOUNT:
                self._report(order.symbol, report)
        self._publish_changes(order.symbol)

    def _report(self, symbol: str, r: ExecReport) -> None:
        """Matching-engine report → domain event, sent back over the latency pipe."""
        pipe = self._to_us
        assert pipe is not None
        x = r.exec_type
        cid = r.client_order_id
        if x == "NEW":
            pipe.put(OrderAccepted(self.name, cid, str(r.order_id), 0))
        elif x == "TRADE":
            pipe.put(OrderFilled(self._fill(symbol, r, self.engines[symbol].instrument.quote), r.cum_qty))
        elif x in ("CANCELED", "EXPIRED"):
            pipe.put(OrderCanceled(self.name, cid, 0, expired=x == "EXPIRED", reason=r.reason or ""))
        elif x == "REJECTED":
            pipe.put(OrderRejected(self.name, cid, r.reason or "rejected", 0))
        elif x == "CANCEL_REJECTED":
            pipe.put(CancelRejected(self.name, cid, r.reason or "cancel rejected", 0))

    def _fill(self, symbol: str, r: ExecReport, quote: str) -> Fill:
        return Fill(
            venue=self.name, symbol=symbol, client_order_id=r.client_order_id, trade_id=str(r.trade_id), side=r.side,
            price=r.last_price, qty=r.last_qty, fee=r.fee, fee_asset=r.fee_asset or quote,
            liquidity=Liquidity.MAKER if r.is_maker else Liquidity.TAKER, venue_order_id=str(r.order_id),
            ts_venue=r.ts_ns,
        )

    async def _cancel_all(self, symbol: str | None) -> None:
        await asyncio.sleep(self.options.latency_ms / 1e3)
        now = time.time_ns()
        for sym, engine in self.engines.items():
            if symbol is not None and sym != symbol:
                continue
            for report in engine.cancel_all(OUR_ACCOUNT, now):
                self._report(sym, report)
            self._publish_changes(sym)
        await asyncio.sleep(self.options.latency_ms / 1e3)

    async def _fetch_open_orders(self, symbol: str | None) -> list[OpenOrderSnapshot]:
        await asyncio.sleep(2 * self.options.latency_ms / 1e3)
        out = []
        for sym, engine in self.engines.items():
            if symbol is None or sym == symbol:
                for o in engine.open_orders(OUR_ACCOUNT):
                    out.append(
                        OpenOrderSnapshot(o.client_order_id, str(o.order_id), sym, o.side, o.price, o.qty, o.cum_qty)
                    )
        return out

    async def _fetch_fills(self, symbol: str, since_ns: int) -> list[Fill]:
        await asyncio.sleep(2 * self.options.latency_ms / 1e3)
        engine = self.engines[symbol]
        return [
            self._fill(symbol, r, engine.instrument.quote)
            for r in engine.trades_of(OUR_ACCOUNT)
            if r.ts_ns >= since_ns
        ]

    async def _fetch_balances(self) -> dict[str, Balance]:
        await asyncio.sleep(2 * self.options.latency_ms / 1e3)
        out: dict[str, Balance] = {}
        for engine in self.engines.values():
            out.update(engine.balances(OUR_ACCOUNT))
        return out


def _restamp_fill(event: OrderFilled, ts_recv: int) -> OrderFilled:
    f = event.fill
    fill = Fill(
        f.venue, f.symbol, f.client_order_id, f.trade_id, f.side, f.price, f.qty, f.fee, f.fee_asset, f.liquidity,
        f.venue_order_id, f.ts_venue, ts_recv,
    )
    return OrderFilled(fill, event.cumulative_qty)


def _grid_start(now_ns: int) -> int:
    """All sim venues started in the same minute share a true-price origin."""
    return now_ns - now_ns % 60_000_000_000
