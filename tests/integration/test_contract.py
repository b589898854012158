"""The venue adapter contract, one suite for every registered adapter.

Each adapter is driven directly, as the engine drives it, with a plain event collector as
its sink (no engine): ``sim`` in-process, ``ccxt`` with the real ccxt client against our
Binance-dialect exchange server on 127.0.0.1. Both venues start from the same rules (tick
0.01, lot 0.00001, min notional 5, maker 1 bp, taker 5 bp, 10 BTC + 1,000,000 USDT) and a
book that only moves when our own orders move it (the sim's flow timer is parked, the
server runs with ``auto_liquidity: false``), so every expectation is exact.

The venue's own state (its matching engine's book, open orders and balances) is the truth
each test compares with. A new adapter proves itself by joining ``ADAPTERS``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from hft import numbers
from hft.book import VenueBook
from hft.clock import Clock
from hft.events import (
    BookDelta,
    BookSnapshot,
    CancelRejected,
    MessageDropped,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
)
from hft.model import Liquidity, Order, OrderType, Side, TimeInForce
from hft.registry import venue_registry
from venues.sim.exchange_server import ExchangeServer, ExchangeServerConfig

SYM = "BTC/USDT"
P = numbers.parse
TICK, LOT, MIN_NOTIONAL = P("0.01"), P("0.00001"), P("5")
MAKER_PPM, TAKER_PPM = 100, 500
START = {"BTC": P("10"), "USDT": P("1000000")}
HANG_GUARD_S = 20  # waits end when the awaited event arrives; this only stops a broken run hanging
ADAPTERS = ["sim", "ccxt"]


@dataclass
class Harness:
    """One adapter under test, its event log and a view of the venue's own truth."""

    kind: str
    adapter: Any
    events: list = field(default_factory=list)
    depth: Callable[[], tuple[list, list]] = None  # the venue's book, best first
    open_cids: Callable[[], set[str]] = None  # our orders the venue holds open
    balances: Callable[[], dict[str, tuple[int, int]]] = None  # asset -> (free, locked) at the venue
    _n: int = 0

    def order(self, side: Side, qty: str, price: int | None = None, **kw: Any) -> Order:
        self._n += 1
        return Order(f"t{self._n}-{self.kind}", self.adapter.name, SYM, side, P(qty), price, **kw)

    def of(self, cls: type, cid: str | None = None) -> list:
        return [e for e in self.events if isinstance(e, cls) and (cid is None or _cid(e) == cid)]

    async def until(self, predicate: Callable[[], Any]) -> None:
        async with asyncio.timeout(HANG_GUARD_S):
            while not predicate():
                await asyncio.sleep(0.005)

    async def outcome(self, cid: str, *kinds: type) -> Any:
        """Wait for the first event of one of ``kinds`` about ``cid``."""
        await self.until(lambda: any(isinstance(e, kinds) and _cid(e) == cid for e in self.events))
        return next(e for e in self.events if isinstance(e, kinds) and _cid(e) == cid)


def _cid(e: Any) -> str | None:
    if isinstance(e, OrderFilled):
        return e.fill.client_order_id
    return getattr(e, "client_order_id", None)


def _server_config() -> ExchangeServerConfig:
    return ExchangeServerConfig.model_validate(
        {
            "auto_liquidity": False,
            "seed": 11,
            "symbols": [
                {"symbol": SYM, "tick_size": "0.01", "lot_size": "0.00001", "min_notional": "5",
                 "maker_fee_bps": 1, "taker_fee_bps": 5, "flow": {"levels": 15, "level_size": "0.3"}}
            ],
            "api_keys": [{"name": "mm", "api_key": "contract-key", "api_secret": "contract-secret",
                          "balances": {"BTC": "10", "USDT": "1000000"}}],
        }
    )


@pytest.fixture(params=ADAPTERS)
async def venue(request):
    kind = request.param
    registry = venue_registry()
    cls = registry.resolve(kind)
    events: list = []
    server = None
    if kind == "sim":
        options = cls.Options.model_validate(
            {"maker_fee_bps": 1, "taker_fee_bps": 5, "tick_size": "0.01", "lot_size": "0.00001",
             "min_notional": "5", "step_ms": 1e9, "latency_ms": 1, "market_data_latency_ms": 1,
             "balances": {"BTC": "10", "USDT": "1000000"}}
        )
        adapter = cls("simv", [SYM], options, events.append, Clock(), seed=5)
    else:
        server = await ExchangeServer(_server_config()).start()
        options = cls.Options.model_validate(
            {"exchange": "binance", "base_url": server.url, "maker_fee_bps": 1, "taker_fee_bps": 5}
        )
        adapter = cls("ccxtv", [SYM], options, events.append, Clock(), api_key="contract-key",
                      api_secret="contract-secret")
    h = Harness(kind, adapter, events)
    if kind == "sim":
        def depth():
            return adapter.engines[SYM].depth(1000)

        def open_cids():
            return {o.client_order_id for o in adapter.engines[SYM].open_orders("us")}

        def balances():
            return {a: (b.free, b.locked) for a, b in adapter.engines[SYM].balances("us").items()}
    else:
        def depth():
            return server.engine(SYM).depth(1000)

        def open_cids():
            return set(server.state("mm", trades=False)["accounts"]["mm"]["open_orders"][SYM])

        def balances():
            wallet = server.state("mm", trades=False)["accounts"]["mm"]["balances"]
            return {a: (P(b["free"]), P(b["locked"])) for a, b in wallet.items()}
    h.depth, h.open_cids, h.balances = depth, open_cids, balances
    await adapter.connect()
    try:
        yield h
    finally:
        await adapter.close()
        if server is not None:
            await server.stop()
    assert not h.of(MessageDropped), h.of(MessageDropped)


# ---------------------------------------------------------------------------- instruments and book


async def test_load_instruments_gives_the_venue_rules(venue):
    inst = venue.adapter.instruments[SYM]
    assert (inst.base, inst.quote) == ("BTC", "USDT")
    assert inst.tick_size == TICK and inst.lot_size == LOT
    assert inst.min_qty == LOT and inst.min_notional == MIN_NOTIONAL
    assert (inst.maker_fee_ppm, inst.taker_fee_ppm) == (MAKER_PPM, TAKER_PPM)
    assert inst.venue_symbol == "BTCUSDT"
    assert set(venue.adapter.capabilities.as_dict()) >= {"post_only", "market_orders", "ioc", "cancel_all"}


async def test_book_snapshot_then_deltas_rebuild_the_venue_book(venue):
    await venue.adapter.subscribe_books()
    book = VenueBook(venue.adapter.name, SYM)
    applied = 0

    def feed() -> bool:
        nonlocal applied
        for e in venue.events[applied:]:
            if isinstance(e, BookSnapshot):
                book.apply_snapshot(e.bids, e.asks, e.seq, e.ts_recv)
            elif isinstance(e, BookDelta):
                assert book.apply_delta(e.first_seq, e.last_seq, e.bids, e.asks, e.ts_recv), "delta did not chain"
        applied = len(venue.events)
        bids, asks = venue.depth()
        return book.valid and book.depth(Side.BUY, 1000) == bids and book.depth(Side.SELL, 1000) == asks

    await venue.until(feed)
    first_bids, first_asks = venue.depth()
    assert len(first_bids) >= 5 and len(first_asks) >= 5 and first_bids[0][0] < first_asks[0][0]
    # our own orders change the venue's book: the changes arrive as deltas on the same chain
    bid = first_bids[0][0] + TICK
    resting = [venue.order(Side.BUY, "0.4", bid), venue.order(Side.SELL, "0.25", first_asks[2][0])]
    for o in resting:
        venue.adapter.submit(o)
    for o in resting:
        await venue.outcome(o.client_order_id, OrderAccepted)
    await venue.until(lambda: feed() and book.best_bid() == (bid, P("0.4")))
    assert book.depth(Side.SELL, 3)[2] == (first_asks[2][0], first_asks[2][1] + P("0.25"))
    venue.adapter.cancel(resting[0])
    await venue.outcome(resting[0].client_order_id, OrderCanceled)
    await venue.until(lambda: feed() and book.best_bid() == first_bids[0])
    assert len(venue.of(BookSnapshot)) == 1 and len(venue.of(BookDelta)) >= 2
    assert book.gaps == 0


# ---------------------------------------------------------------------------- orders


async def test_limit_order_rests_and_is_listed_as_open(venue):
    o = venue.order(Side.BUY, "0.5", P("50000"))
    venue.adapter.submit(o)
    acc = await venue.outcome(o.client_order_id, OrderAccepted, OrderRejected)
    assert isinstance(acc, OrderAccepted) and acc.venue_order_id
    assert o.client_order_id in venue.open_cids()
    (snap,) = [s for s in await venue.adapter.fetch_open_orders() if s.client_order_id == o.client_order_id]
    assert (snap.side, snap.price, snap.qty, snap.filled_qty) == (Side.BUY, P("50000"), P("0.5"), 0)
    assert snap.venue_order_id == acc.venue_order_id
    held = await venue.adapter.fetch_balances()
    # the venue locks notional plus the worst-case (taker) fee
    locked = numbers.mul(P("50000"), P("0.5")) + numbers.fee(numbers.mul(P("50000"), P("0.5")), TAKER_PPM)
    assert held["USDT"].locked == locked and held["USDT"].free == START["USDT"] - locked
    assert not venue.of(OrderFilled)


async def test_ioc_fills_what_it_can_with_exact_fees_and_expires_the_rest(venue):
    bids, asks = venue.depth()
    ask_px, ask_qty = asks[0]
    qty = numbers.to_str(ask_qty + P("0.3"))
    o = venue.order(Side.BUY, qty, ask_px, time_in_force=TimeInForce.IOC)
    venue.adapter.submit(o)
    done = await venue.outcome(o.client_order_id, OrderCanceled)
    assert done.expired
    fills = [e.fill for e in venue.of(OrderFilled, o.client_order_id)]
    assert sum(f.qty for f in fills) == ask_qty
    for f in fills:
        assert f.price == ask_px and f.side is Side.BUY and f.liquidity is Liquidity.TAKER
        assert f.fee == numbers.fee(numbers.mul(f.price, f.qty), TAKER_PPM) and f.fee_asset == "USDT"
        assert f.trade_id and f.venue_order_id
    assert venue.of(OrderFilled, o.client_order_id)[-1].cumulative_qty == ask_qty
    assert venue.depth()[1][0][0] > ask_px  # the level is gone
    assert o.client_order_id not in venue.open_cids()


async def test_post_only_that_would_cross_is_rejected_and_one_that_rests_is_accepted(venue):
    bids, asks = venue.depth()
    crossing = venue.order(Side.BUY, "0.01", asks[0][0], post_only=True)
    venue.adapter.submit(crossing)
    rej = await venue.outcome(crossing.client_order_id, OrderAccepted, OrderRejected)
    assert isinstance(rej, OrderRejected) and rej.reason
    resting = venue.order(Side.BUY, "0.01", asks[0][0] - TICK, post_only=True)
    venue.adapter.submit(resting)
    assert isinstance(await venue.outcome(resting.client_order_id, OrderAccepted, OrderRejected), OrderAccepted)
    assert venue.open_cids() == {resting.client_order_id}
    assert venue.depth() != (bids, asks) and not venue.of(OrderFilled)


async def test_market_order_fills_against_the_book(venue):
    bids, _ = venue.depth()
    o = venue.order(Side.SELL, "0.5", order_type=OrderType.MARKET)
    venue.adapter.submit(o)
    await venue.until(lambda: sum(e.fill.qty for e in venue.of(OrderFilled, o.client_order_id)) == P("0.5"))
    fills = [e.fill for e in venue.of(OrderFilled, o.client_order_id)]
    # walks the bids best first, never worse than the levels that were there
    expected, left = [], P("0.5")
    for px, size in bids:
        take = min(size, left)
        expected.append((px, take))
        left -= take
        if not left:
            break
    assert sorted(((f.price, f.qty) for f in fills), reverse=True) == expected
    assert all(f.fee == numbers.fee(numbers.mul(f.price, f.qty), TAKER_PPM) for f in fills)
    assert len({f.trade_id for f in fills}) == len(fills)
    assert not venue.of(OrderRejected)


async def test_cancel_and_cancel_of_a_finished_order(venue):
    o = venue.order(Side.SELL, "0.2", P("70000"))
    venue.adapter.submit(o)
    await venue.outcome(o.client_order_id, OrderAccepted)
    venue.adapter.cancel(o)
    canceled = await venue.outcome(o.client_order_id, OrderCanceled, CancelRejected)
    assert isinstance(canceled, OrderCanceled) and not canceled.expired
    assert venue.open_cids() == set()
    assert venue.balances()["BTC"] == (START["BTC"], 0)
    venue.adapter.cancel(o)  # again: the venue refuses, the order stays canceled
    await venue.outcome(o.client_order_id, CancelRejected)
    assert len(venue.of(OrderCanceled, o.client_order_id)) == 1


async def test_cancel_all_leaves_nothing_open(venue):
    orders = [
        venue.order(Side.BUY, "0.01", P("50000") + i * TICK) for i in range(3)
    ] + [venue.order(Side.SELL, "0.01", P("70000") + i * TICK) for i in range(3)]
    for o in orders:
        venue.adapter.submit(o)
    for o in orders:
        await venue.outcome(o.client_order_id, OrderAccepted)
    assert venue.open_cids() == {o.client_order_id for o in orders}
    await venue.adapter.cancel_all()
    assert await venue.adapter.fetch_open_orders() == []
    assert venue.open_cids() == set()
    await venue.until(lambda: all(venue.of(OrderCanceled, o.client_order_id) for o in orders))
    await venue.adapter.cancel_all()  # nothing open: not an error
    held = await venue.adapter.fetch_balances()
    assert (held["BTC"].locked, held["USDT"].locked) == (0, 0)


async def test_balances_move_by_exactly_the_fills_and_fees(venue):
    before = await venue.adapter.fetch_balances()
    assert {a: (b.free, b.locked) for a, b in before.items() if a in START} == {a: (v, 0) for a, v in START.items()}
    _, asks = venue.depth()
    buy = venue.order(Side.BUY, "0.3", asks[1][0], time_in_force=TimeInForce.IOC)
    sell = venue.order(Side.SELL, "0.12", order_type=OrderType.MARKET)
    for o in (buy, sell):
        venue.adapter.submit(o)
        await venue.until(lambda o=o: venue.of(OrderCanceled, o.client_order_id) or sum(
            e.fill.qty for e in venue.of(OrderFilled, o.client_order_id)) == o.qty)
    fills = [e.fill for e in venue.of(OrderFilled)]
    assert fills and len({f.trade_id for f in fills}) == len(fills)
    base = sum(int(f.side) * f.qty for f in fills)
    quote = sum(-int(f.side) * numbers.mul(f.price, f.qty) - f.fee for f in fills)
    after = await venue.adapter.fetch_balances()
    assert after["BTC"].total - START["BTC"] == base
    assert after["USDT"].total - START["USDT"] == quote
    assert {a: (after[a].free, after[a].locked) for a in START} == {a: venue.balances()[a] for a in START}


async def test_fetch_fills_returns_the_fills_we_were_sent(venue):
    _, asks = venue.depth()
    o = venue.order(Side.BUY, "0.2", asks[1][0], time_in_force=TimeInForce.IOC)
    venue.adapter.submit(o)
    await venue.until(lambda: sum(e.fill.qty for e in venue.of(OrderFilled, o.client_order_id)) == P("0.2"))
    sent = sorted(
        (f.trade_id, f.client_order_id, f.side, f.price, f.qty, f.fee, f.fee_asset, f.liquidity, f.venue_order_id)
        for f in (e.fill for e in venue.of(OrderFilled))
    )
    fetched = await venue.adapter.fetch_fills(SYM, 0)
    assert sorted(
        (f.trade_id, f.client_order_id, f.side, f.price, f.qty, f.fee, f.fee_asset, f.liquidity, f.venue_order_id)
        for f in fetched
    ) == sent
    assert sent and all(f.ts_venue > 0 for f in fetched)
    assert await venue.adapter.fetch_fills(SYM, max(f.ts_venue for f in fetched) + 10**9) == []
