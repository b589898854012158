"""Faults between the ``ccxt`` adapter and a real (local) exchange, asserted as invariants.

The real ccxt client talks to our Binance-dialect exchange server on 127.0.0.1; faults are
injected by the server (:mod:`venues.sim.faults`). Each test checks what must hold whatever
the fault: books equal to the venue's after a resync, no quote from a broken book, exactly
one live order per client id, every order in a state the venue confirms, fills neither lost
nor doubled, no 418 ban, a clear authentication error.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from pathlib import Path

import ccxt
import pytest
import yaml
from prometheus_client import CollectorRegistry

from hft import numbers
from hft.clock import Clock
from hft.config import load_config
from hft.engine import Engine
from hft.errors import AuthenticationError
from hft.events import MessageDropped, OrderAccepted, OrderRejected, VenueStatus
from hft.metrics import Metrics
from hft.model import Order, OrderStatus, Side, TimeInForce
from hft.registry import strategy_registry, venue_registry
from hft.runner import run_engine
from venues.ccxt_adapter import CcxtOptions, CcxtVenueAdapter
from venues.ccxt_local import make_local_binance
from venues.sim.exchange_server import ExchangeServer, ExchangeServerConfig
from venues.sim.ratelimit import RateLimitConfig

SYM = "BTC/USDT"
P = numbers.parse
KEY, SECRET = "fault-key", "fault-secret-0123456789"
HANG_GUARD_S = 30  # waits end when the awaited state is reached; this only stops a broken run hanging


# ---------------------------------------------------------------------------- helpers


async def start_server(auto: bool = True, **overrides) -> ExchangeServer:
    cfg = {
        "auto_liquidity": auto,
        "seed": 21,
        "depth_interval_ms": 50,
        "symbols": [{"symbol": SYM, "maker_fee_bps": 1, "taker_fee_bps": 5,
                     "flow": {"step_ms": 20, "taker_rate_per_s": 4, "levels": 15}}],
        "api_keys": [
            {"name": "mm", "api_key": KEY, "api_secret": SECRET, "balances": {"BTC": "10", "USDT": "1000000"}},
            {"name": "other", "api_key": "other-key", "api_secret": "other-secret",
             "balances": {"BTC": "10", "USDT": "1000000"}},
        ],
        **overrides,
    }
    return await ExchangeServer(ExchangeServerConfig.model_validate(cfg)).start()


def app_config(tmp_path: Path, server: ExchangeServer, *, options: dict | None = None, secret: str = SECRET,
               key: str = KEY, strategy: dict | None = None):
    data = {
        "engine": {"status_interval_s": 0.25, "stale_book_after_s": 5.0, "shutdown_timeout_s": 10.0},
        "metrics": {"enabled": False},
        "log": {"level": "INFO"},
        "journal": {"enabled": False},
        "risk": {"max_order_qty": "0.5", "max_order_notional": "50000", "max_position_per_venue": "1",
                 "max_position_total": "1", "max_orders_per_second": 20},
        "venues": [{
            "name": "lx", "type": "ccxt", "symbols": [SYM], "api_key": key, "api_secret": secret,
            "options": {"exchange": "binance", "base_url": server.url, "maker_fee_bps": 1, "taker_fee_bps": 5,
                        "reconcile_interval_s": 60, **(options or {})},
        }],
        "strategy": strategy or {"type": "market_making", "symbol": SYM,
                                 "params": {"order_size": "0.01", "levels": 1, "min_spread_bps": 2}},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    venues, strategies = venue_registry(), strategy_registry()
    cfg = load_config(path, venue_options_model=lambda t: venues.resolve(t).Options,
                      strategy_params_model=lambda t: strategies.resolve(t).Params)
    return cfg, venues, strategies


async def start_engine(tmp_path, server, **kw) -> Engine:
    cfg, venues, strategies = app_config(tmp_path, server, **kw)
    engine = Engine(cfg, venue_registry=venues, strategy_registry=strategies, metrics=Metrics(CollectorRegistry()))
    engine.build(with_strategy=False)
    await engine.start()
    await engine.wait_for_books(HANG_GUARD_S)
    return engine


def record(adapter) -> list:
    """Keep a copy of every event the adapter hands to its sink."""
    seen: list = []
    sink = adapter._sink

    def both(ev):
        seen.append(ev)
        sink(ev)

    adapter._sink = both
    return seen


async def until(predicate, step: float = 0.01):
    async with asyncio.timeout(HANG_GUARD_S):
        while not predicate():
            await asyncio.sleep(step)


def book_equals_server(engine: Engine, server: ExchangeServer) -> bool:
    book = engine.books[SYM]
    if not book.is_active("lx"):
        return False
    ours = book.venue_book("lx")
    bids, asks = server.engine(SYM).depth(1000)
    return ours.depth(Side.BUY, 1000) == bids and ours.depth(Side.SELL, 1000) == asks


async def settle_and_compare(engine: Engine, server: ExchangeServer) -> None:
    """Freeze the market and wait until our book is the venue's book."""
    server.halt(SYM)
    async with asyncio.timeout(HANG_GUARD_S):
        while not book_equals_server(engine, server):
            server.publish()
            await asyncio.sleep(0.02)


def server_open(server: ExchangeServer, account: str = "mm") -> dict:
    return server.state(account, trades=False)["accounts"][account]["open_orders"][SYM]


def server_trades(server: ExchangeServer, account: str = "mm") -> dict:
    return server.state(account)["accounts"][account]["trades"][SYM]


# ---------------------------------------------------------------------------- market data


async def test_websocket_dropped_mid_run_book_resyncs_equal_to_the_server(tmp_path):
    server = await start_server()
    engine = await start_engine(tmp_path, server)
    try:
        adapter = engine.adapters["lx"]
        events = record(adapter)
        snapshots = adapter.stats["book_snapshots"]
        await asyncio.sleep(0.3)  # a live book, moving
        assert server.drop_streams("market") >= 1
        await until(lambda: any(isinstance(e, VenueStatus) and not e.connected for e in events))
        assert not engine.books[SYM].venue_book("lx").valid  # the engine stopped trusting it at once
        await until(lambda: any(isinstance(e, VenueStatus) and e.connected for e in events))
        assert adapter.stats["book_snapshots"] == snapshots + 1
        await settle_and_compare(engine, server)
        assert engine.stats["lx"].gaps == 0 and not any(isinstance(e, MessageDropped) for e in events)
        assert engine.stats["lx"].reconciles == 0  # the user stream never went down: no order to look up
    finally:
        await engine.stop()
        await server.stop()


async def test_gap_is_detected_resynced_and_never_quoted_from(tmp_path):
    server = await start_server()
    cfg, venues, strategies = app_config(tmp_path, server)
    checked: dict = {}
    sent_while_invalid: list = []

    def started(engine: Engine) -> None:
        adapter = engine.adapters["lx"]
        book = engine.books[SYM]
        real_submit = adapter.submit

        def watched(order):
            if not book.is_active("lx"):
                sent_while_invalid.append(order)
            real_submit(order)

        adapter.submit = watched

        async def inject() -> None:
            await until(lambda: book.is_active("lx") and engine.stats["lx"].orders > 0)
            for i in range(3):
                server.faults.update({"depth_gap_next": 1})
                await until(lambda i=i: engine.stats["lx"].gaps == i + 1)
                checked.setdefault("invalid_after_gap", []).append(book.venue_book("lx").valid)
                await until(lambda: book.is_active("lx"))
            await settle_and_compare(engine, server)
            checked["equal"] = True
            checked["orders"] = engine.stats["lx"].orders

        engine.spawn(inject(), "inject")

    metrics = Metrics(CollectorRegistry())
    summary = await run_engine(cfg, venues, strategies, duration=5.0, metrics=metrics, out=lambda s: None,
                               on_started=started)
    try:
        assert summary is not None
        assert checked.get("equal"), checked
        assert server.faults.injected["depth_gap"] == 3
        assert summary.venues["lx"].gaps == 3
        assert metrics.registry.get_sample_value("hft_book_resyncs_total", {"venue": "lx"}) == 3
        assert checked["invalid_after_gap"] == [False, False, False]
        assert checked["orders"] > 0 and sent_while_invalid == []
        assert summary.open_orders_left == {"lx": 0} and server_open(server) == {}
    finally:
        await server.stop()


async def test_malformed_depth_message_is_dropped_counted_and_the_book_resynced(tmp_path):
    server = await start_server()
    engine = await start_engine(tmp_path, server)
    try:
        adapter = engine.adapters["lx"]
        events = record(adapter)
        bad = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": server.update_id(SYM) + 1,
               "u": server.update_id(SYM) + 1, "b": [["not-a-price", "1.0"]], "a": []}
        conns = [c for c in server._conns if c.kind == "market" and c.streams]  # noqa: SLF001 - inject on the wire
        assert conns
        for c in conns:
            c.send(json.dumps({"stream": next(iter(c.streams)), "data": bad}))
        await until(lambda: engine.stats["lx"].dropped >= 1)
        await until(lambda: any(isinstance(e, VenueStatus) and e.connected for e in events))
        await settle_and_compare(engine, server)
    finally:
        await engine.stop()
        await server.stop()


# ---------------------------------------------------------------------------- orders


@pytest.mark.parametrize(
    "mode,marketable,streams",
    [("close", False, True), ("504", False, False), ("close", True, False)],
    ids=["drop-resting-streams", "504-resting-polling", "drop-filled-polling"],
)
async def test_lost_submit_answer_resolves_to_exactly_one_order_by_client_id(tmp_path, mode, marketable, streams):
    """With streams the user stream may tell first; polling (no ccxt.pro) leaves only the lookup by client id."""
    server = await start_server(auto=False)
    engine = await start_engine(tmp_path, server, options={"use_streams": streams, "book_poll_interval_s": 0.2})
    try:
        adapter = engine.adapters["lx"]
        posts = server.requests[("POST", "/api/v3/order")]
        server.faults.update({"drop_after_execute_next": 1, "drop_mode": mode})
        if marketable:
            ask = server.engine(SYM).best_ask()
            qty = min(ask[1], P("0.05"))
            order = engine.submit_order("lx", SYM, Side.BUY, qty, ask[0], time_in_force=TimeInForce.IOC)
        else:
            qty = P("0.02")
            order = engine.submit_order("lx", SYM, Side.BUY, qty, server.engine(SYM).best_bid()[0] - P("5"))
        assert order is not None
        await until(lambda: order.status in (OrderStatus.OPEN, OrderStatus.FILLED, OrderStatus.REJECTED))
        assert server.faults.injected["drop_after_execute"] == 1
        assert server.requests[("POST", "/api/v3/order")] == posts + 1  # sent once, never again
        assert adapter.stats["submit_unknown_outcome"] == 1 and adapter.stats["lost_submits_rejected"] == 0
        assert adapter.stats["lost_submits_found"] == 1 or streams
        assert adapter.capabilities.user_stream is streams
        truth = server.engine(SYM).order("mm", client_order_id=order.client_order_id)
        assert truth is not None and str(truth.order_id) == order.venue_order_id
        if marketable:
            assert order.status is OrderStatus.FILLED and server_open(server) == {}
            trades = server_trades(server)
            assert sum(P(t["qty"]) for t in trades.values()) == qty
            assert engine.portfolios[SYM].by_venue["lx"].qty == qty
            assert order.filled_qty == qty and order.fees == sum(P(t["commission"]) for t in trades.values())
        else:
            assert order.status is OrderStatus.OPEN
            assert list(server_open(server)) == [order.client_order_id]
            assert list(engine.open_orders["lx"]) == [order.client_order_id]
    finally:
        summary = await engine.stop()
        await server.stop()
    assert summary.open_orders_left == {"lx": 0} and summary.duplicate_fills == 0


async def test_submit_refused_by_a_5xx_is_not_on_the_venue_and_is_rejected_not_resent(tmp_path):
    server = await start_server(auto=False)
    engine = await start_engine(tmp_path, server, options={"lost_order_check_interval_s": 0.05, "recv_window_ms": 1000})
    try:
        posts = server.requests[("POST", "/api/v3/order")]
        server.faults.update({"error_next": 1, "error_body": "json"})  # "execution status unknown"
        order = engine.submit_order("lx", SYM, Side.BUY, P("0.02"), server.engine(SYM).best_bid()[0] - P("5"))
        await until(lambda: order.status.is_done)
        assert order.status is OrderStatus.REJECTED and "not received by venue" in order.reject_reason
        assert server.requests[("POST", "/api/v3/order")] == posts + 1
        assert server_open(server) == {} and engine.open_orders["lx"] == {}
        assert server.engine(SYM).order("mm", client_order_id=order.client_order_id) is None
    finally:
        await engine.stop()
        await server.stop()


@pytest.mark.parametrize("late_ms, expect", [(1200, "found"), (3500, "not received")])
async def test_submit_executed_after_the_client_gave_up_is_found_not_declared_lost(tmp_path, late_ms, expect):
    """The venue holds the order request past our timeout. Inside the signed-request window it still
    executes, so "not received" may only be said after that window; past the window it is refused."""
    server = await start_server(auto=False)
    engine = await start_engine(tmp_path, server, options={
        "timeout_ms": 300, "recv_window_ms": 2000, "lost_order_check_interval_s": 0.05, "use_streams": False,
    })
    adapter = engine.adapters["lx"]
    try:
        server.faults.update({"late_order_next": 1, "late_order_ms": late_ms})
        order = engine.submit_order("lx", SYM, Side.BUY, P("0.02"), server.engine(SYM).best_bid()[0] - P("5"))
        await until(lambda: order.status is not OrderStatus.PENDING)
        assert server.faults.injected["late_order"] == 1
        assert adapter.stats["submit_unknown_outcome"] == 1
        if expect == "found":
            assert order.status is OrderStatus.OPEN
            assert adapter.stats["lost_submits_found"] == 1 and adapter.stats["lost_submits_rejected"] == 0
            assert list(server_open(server)) == [order.client_order_id]
        else:
            assert order.status is OrderStatus.REJECTED and "not received by venue" in order.reject_reason
            await asyncio.sleep((late_ms - 300) / 1e3)  # the held request reaches the matching engine, too old
            assert server_open(server) == {}
            assert server.engine(SYM).order("mm", client_order_id=order.client_order_id) is None
    finally:
        await engine.stop()
        await server.stop()


async def test_shutdown_waits_out_a_submit_of_unknown_outcome_and_cancels_what_it_became(tmp_path):
    server = await start_server(auto=False)
    engine = await start_engine(tmp_path, server, options={
        "timeout_ms": 300, "recv_window_ms": 5000, "lost_order_check_interval_s": 0.05, "use_streams": False,
    })
    adapter = engine.adapters["lx"]
    try:
        server.faults.update({"late_order_next": 1, "late_order_ms": 3000})  # long after the client gave up
        order = engine.submit_order("lx", SYM, Side.SELL, P("0.02"), server.engine(SYM).best_ask()[0] + P("5"))
        await until(lambda: adapter.stats["submit_unknown_outcome"] == 1)
        assert order.status is OrderStatus.PENDING and server_open(server) == {}  # not executed yet
    finally:
        summary = await engine.stop()  # the held request executes while shutdown is cancelling
        await asyncio.sleep(0.1)
        still_open = server_open(server)
        await server.stop()
    assert adapter.stats["lost_submits_found"] == 1
    assert summary.open_orders_left == {"lx": 0}
    assert still_open == {}
    assert order.status is OrderStatus.CANCELED


async def test_cancel_all_does_not_wait_for_a_submit_of_unknown_outcome(tmp_path):
    """The kill switch pulls what rests at once, even while another submit is still being resolved."""
    server = await start_server(auto=False)
    engine = await start_engine(tmp_path, server, options={
        "timeout_ms": 2000, "recv_window_ms": 5000, "lost_order_check_interval_s": 0.05, "use_streams": False,
    })
    adapter = engine.adapters["lx"]
    try:
        resting = engine.submit_order("lx", SYM, Side.SELL, P("0.02"), server.engine(SYM).best_ask()[0] + P("5"))
        await until(lambda: resting.status is OrderStatus.OPEN)
        server.faults.update({"late_order_next": 1, "late_order_ms": 3500})
        unknown = engine.submit_order("lx", SYM, Side.SELL, P("0.02"), server.engine(SYM).best_ask()[0] + P("6"))
        await until(lambda: adapter.stats["submit_unknown_outcome"] == 1)
        engine.spawn(adapter.cancel_all(), "cancel-all")
        await until(lambda: resting.client_order_id not in server_open(server))
        assert unknown.status is OrderStatus.PENDING  # still being resolved while the resting one went
        await until(lambda: unknown.status.is_done or unknown.client_order_id in server_open(server))
    finally:
        summary = await engine.stop()  # whatever the late one became, shutdown cancels it
        left = server_open(server)
        await server.stop()
    assert resting.status is OrderStatus.CANCELED
    assert summary.open_orders_left == {"lx": 0} and left == {}


@pytest.mark.parametrize("shutdown_s, warned", [(5.0, True), (10.0, False)])
async def test_start_warns_when_shutdown_cannot_wait_out_a_lost_submit(tmp_path, caplog, shutdown_s, warned):
    server = await start_server(auto=False)
    cfg, venues, strategies = app_config(tmp_path, server, options={"timeout_ms": 2000, "recv_window_ms": 5000})
    cfg.engine.shutdown_timeout_s = shutdown_s  # a lost submit resolves within 2 + 5 + 1 = 8 s at most
    engine = Engine(cfg, venue_registry=venues, strategy_registry=strategies, metrics=Metrics(CollectorRegistry()))
    engine.build(with_strategy=False)
    try:
        with caplog.at_level(logging.WARNING, logger="hft.engine"):
            await engine.start()
    finally:
        await engine.stop()
        await server.stop()
    assert ("up to 8.0s to resolve" in caplog.text) is warned, caplog.text


@pytest.mark.parametrize("fault", ["5xx-before", "drop-504-after", "drop-close-after", "timeout"])
async def test_cancel_through_5xx_or_timeout_ends_in_a_state_the_venue_confirms(tmp_path, fault):
    server = await start_server(auto=False)
    engine = await start_engine(tmp_path, server, options={"timeout_ms": 300})
    try:
        order = engine.submit_order("lx", SYM, Side.SELL, P("0.03"), server.engine(SYM).best_ask()[0] + P("3"))
        await until(lambda: order.status is OrderStatus.OPEN)
        deletes = server.requests[("DELETE", "/api/v3/order")]
        if fault == "5xx-before":
            server.faults.update({"error_next": 1})
        elif fault == "timeout":
            server.faults.update({"delay_ms": 600})  # answers come after the client has given up

            async def heal() -> None:
                await asyncio.sleep(0.45)
                server.faults.update({"delay_ms": 0})

            engine.spawn(heal(), "heal")
        else:
            server.faults.update({"drop_after_execute_next": 1, "drop_mode": "504" if "504" in fault else "close"})
        assert engine.cancel_order(order)
        adapter = engine.adapters["lx"]
        await until(lambda: order.status.is_done and not adapter._cancel_tasks)  # noqa: SLF001 - the cancel ran out
        assert order.status is OrderStatus.CANCELED
        truth = server.engine(SYM).order("mm", client_order_id=order.client_order_id)
        assert truth.status == "CANCELED" and server_open(server) == {}
        assert engine.open_orders["lx"] == {}
        assert server.requests[("DELETE", "/api/v3/order")] >= deletes + 2  # the first attempt failed: retried
        assert adapter.stats["retries"] >= 1 or fault == "drop-close-after"  # (aiohttp itself resends on a reset)
    finally:
        await engine.stop()
        await server.stop()


async def test_fill_while_the_user_stream_is_down_arrives_exactly_once(tmp_path):
    server = await start_server(auto=False)
    # a slow reconnect, so the fill surely happens while nobody listens; no periodic reconciliation either
    engine = await start_engine(tmp_path, server, options={"reconnect_backoff_s": 1.0, "reconnect_backoff_max_s": 1.0})
    other = make_local_binance(server.url, "other-key", "other-secret")
    try:
        adapter = engine.adapters["lx"]
        fills: list = []
        engine.add_order_listener(lambda order, fill: fills.append(fill) if fill is not None else None)
        await until(lambda: server.state()["user_streams"].get("mm") == 1)
        ask = server.engine(SYM).best_ask()[0]
        order = engine.submit_order("lx", SYM, Side.SELL, P("0.04"), ask - P("0.01"))
        await until(lambda: order.status is OrderStatus.OPEN)
        reconciles = adapter.stats["reconciles_done"]
        assert server.drop_streams("user") >= 1
        await until(lambda: adapter.stats["user_stream_errors"] >= 1 and adapter.stats["reconciles_done"] > reconciles)
        assert not server.state()["user_streams"].get("mm")  # still not listening
        await other.create_order(SYM, "market", "buy", 0.04)  # lifts our ask now
        await until(lambda: order.status is OrderStatus.FILLED)
        truth = server_trades(server)
        assert sorted(f.trade_id for f in fills) == sorted(truth)
        assert sum(f.qty for f in fills) == P("0.04") and all(f.liquidity.value == "maker" for f in fills)
        assert engine.portfolios[SYM].by_venue["lx"].qty == -P("0.04")
        await until(lambda: server.state()["user_streams"].get("mm") == 1)  # and the stream came back
        await until(lambda: engine.stats["lx"].reconciles >= 1)  # the engine's own look after the reconnect
    finally:
        await other.close()
        summary = await engine.stop()
        await server.stop()
    assert summary.duplicate_fills == 0


@pytest.mark.parametrize("scope", ["ours", "account"])
async def test_orders_and_trades_of_others_on_the_same_account_are_left_alone(tmp_path, scope):
    """A person trading by hand with the same API key: not adopted, not counted, not cancelled (unless asked)."""
    server = await start_server(auto=False)
    engine = await start_engine(tmp_path, server, options={"cancel_all_scope": scope})
    by_hand = make_local_binance(server.url, KEY, SECRET)
    adapter = engine.adapters["lx"]
    try:
        ask = server.engine(SYM).best_ask()[0]
        manual = await by_hand.create_order(SYM, "limit", "buy", "0.01", numbers.to_str(ask - P("50")),
                                            {"clientOrderId": "web_manual_1"})
        await by_hand.create_order(SYM, "market", "buy", "0.01", None, {"clientOrderId": "web_manual_2"})
        order = engine.submit_order("lx", SYM, Side.SELL, P("0.02"), ask + P("5"))
        await until(lambda: order.status is OrderStatus.OPEN)
        assert sorted(server_open(server)) == sorted([order.client_order_id, "web_manual_1"])
        listed = await adapter.fetch_open_orders(SYM)
        assert [o.client_order_id for o in listed] == [order.client_order_id]
        assert len(server_trades(server)) >= 1  # the account traded by hand ...
        assert await adapter.fetch_fills(SYM, 0) == []  # ... and none of it is ours
        assert engine.portfolios[SYM].by_venue["lx"].qty == 0
    finally:
        summary = await engine.stop()
        left = server_open(server)
        await by_hand.close()
        await server.stop()
    assert summary.open_orders_left == {"lx": 0}
    assert order.client_order_id not in left
    assert ("web_manual_1" in left) is (scope == "ours"), left
    assert manual["clientOrderId"] == "web_manual_1"


async def test_trade_ids_repeat_across_symbols_and_each_fill_counts_once(tmp_path):
    """Binance numbers trades per symbol: BTCUSDT's trade 1 and ETHUSDT's trade 1 are two fills."""
    eth = "ETH/USDT"
    server = await start_server(auto=False, symbols=[
        {"symbol": SYM, "maker_fee_bps": 1, "taker_fee_bps": 5, "flow": {"levels": 15}},
        {"symbol": eth, "maker_fee_bps": 1, "taker_fee_bps": 5, "flow": {"levels": 15, "start_price": "3000"}},
    ])
    cfg, venues, strategies = app_config(tmp_path, server)
    cfg.venues[0].symbols = [SYM, eth]
    engine = Engine(cfg, venue_registry=venues, strategy_registry=strategies, metrics=Metrics(CollectorRegistry()))
    engine.build(with_strategy=False)
    await engine.start()
    fills: list = []
    engine.add_order_listener(lambda order, fill: fills.append(fill) if fill is not None else None)
    try:
        await engine.wait_for_books(HANG_GUARD_S)
        orders = [
            engine.submit_order("lx", sym, Side.BUY, P("0.02"), server.engine(sym).best_ask()[0],
                                time_in_force=TimeInForce.IOC)
            for sym in (SYM, eth)
        ]
        await until(lambda: all(o.status.is_done for o in orders))
        truth = {sym: server_trades_of(server, sym) for sym in (SYM, eth)}
        assert set(truth[SYM]) & set(truth[eth]), truth  # the same trade id on both symbols
        assert sorted((f.symbol, f.trade_id) for f in fills) == sorted(
            (sym, tid) for sym, trades in truth.items() for tid in trades)
        for sym in (SYM, eth):
            assert engine.portfolios[sym].by_venue["lx"].qty == P("0.02")
        # the venue's full history, fetched again (as reconciliation does), adds nothing
        adapter = engine.adapters["lx"]
        assert [len(await adapter.fetch_fills(sym, 0)) for sym in (SYM, eth)] == [len(truth[SYM]), len(truth[eth])]
        assert engine.stats["lx"].fills == len(fills) and engine.stats["lx"].duplicate_fills == 0
    finally:
        await engine.stop()
        await server.stop()


def server_trades_of(server: ExchangeServer, symbol: str, account: str = "mm") -> dict:
    return server.state(account)["accounts"][account]["trades"][symbol]


# ---------------------------------------------------------------------------- rate limits


def _watch_limiter(server: ExchangeServer) -> list:
    """Record every rate-limit decision: (arrival time, status, retry_after, bucket was backing off)."""
    seen: list = []
    check = server.limiter.check

    def watched(key, weight):
        b = server.limiter._weights.get(key)  # noqa: SLF001 - test instrumentation of our own server
        backing_off = b is not None and b.backoff_until > server.limiter.clock()
        d = check(key, weight)
        seen.append((time.monotonic(), d.status, d.retry_after, backing_off))
        return d

    server.limiter.check = watched
    return seen


async def _burst_of_orders(server: ExchangeServer, options: dict, n: int):
    events: list = []
    adapter = CcxtVenueAdapter(
        "lx", [SYM], CcxtOptions.model_validate({"exchange": "binance", "base_url": server.url,
                                                 "reconcile_interval_s": 60, **options}),
        events.append, Clock(), api_key=KEY, api_secret=SECRET,
    )
    await adapter.connect()
    server.limiter.config = RateLimitConfig(weight_per_minute=15, window_s=1.5, ban_after=3, ban_s=5)
    server.limiter.reset()
    seen = _watch_limiter(server)
    bid = server.engine(SYM).best_bid()[0]
    orders = [Order(f"rl-{i}", "lx", SYM, Side.BUY, P("0.001"), bid - P("10") - i * P("0.01")) for i in range(n)]
    for o in orders:
        adapter.submit(o)
    return adapter, events, orders, seen


async def test_429s_are_honoured_so_no_418_and_every_order_is_placed_once():
    server = await start_server(auto=False)
    adapter, events, orders, seen = await _burst_of_orders(server, {"rate_limit_per_s": 20, "rate_limit_burst": 2}, 24)
    try:
        cids = {o.client_order_id for o in orders}
        await until(lambda: {e.client_order_id for e in events if isinstance(e, (OrderAccepted, OrderRejected))} == cids)
        assert not [e for e in events if isinstance(e, OrderRejected)]
        assert set(server_open(server)) == cids  # each exactly once: a refused request resent, never doubled
        assert server.limiter.stats["418"] == 0
        assert server.limiter.stats["429"] >= 1 and adapter.stats["http_429"] >= 1  # the limit really was hit
        # after each 429 the next request came only once the venue's Retry-After had passed
        for i, (t, status, retry_after, backing_off) in enumerate(seen):
            if status == 429 and not backing_off:
                later = [s for s in seen[i + 1:] if not s[3]]
                if later:
                    assert later[0][0] - t >= retry_after - 0.05, (later[0][0] - t, retry_after)
        assert sum(1 for s in seen if s[3]) <= 1  # at most a request already in flight hit the back-off
    finally:
        await adapter.close()
        await server.stop()


async def test_without_pacing_the_same_burst_gets_banned():
    """The control for the test above: the same burst, unpaced, does earn a 418."""
    server = await start_server(auto=False)
    adapter, events, orders, seen = await _burst_of_orders(server, {"rate_limit": "off"}, 24)
    try:
        await until(lambda: server.limiter.stats["418"] >= 1)
    finally:
        await adapter.close()
        await server.stop()


# ---------------------------------------------------------------------------- credentials


@pytest.mark.parametrize("key,secret,venue_says", [
    (KEY, "wrong-secret-abcdef", "Signature for this request is not valid"),
    ("nobody-key-123", SECRET, "Invalid API-key"),
], ids=["bad-signature", "unknown-key"])
async def test_bad_credentials_fail_connect_with_a_clear_authentication_error(tmp_path, caplog, key, secret, venue_says):
    server = await start_server(auto=False)
    try:
        adapter = CcxtVenueAdapter("lx", [SYM], CcxtOptions(exchange="binance", base_url=server.url), lambda e: None,
                                   Clock(), api_key=key, api_secret=secret)
        try:
            with pytest.raises(AuthenticationError) as info:
                await adapter.connect()
        finally:
            await adapter.close()
        text = str(info.value)
        assert text.startswith("venue lx: authentication failed") and venue_says in text
        assert secret not in text and "signature=" not in text and "\n" not in text
        assert not adapter.connected

        cfg, venues, strategies = app_config(tmp_path, server, key=key, secret=secret)
        out = io.StringIO()
        caplog.set_level(logging.INFO)
        summary = await run_engine(cfg, venues, strategies, duration=1.0, metrics=Metrics(CollectorRegistry()),
                                   out=out.write)
        assert summary is None
        lines = out.getvalue().splitlines()
        assert lines == [f"error: start-up failed: {text}"]
        noisy = [r for r in caplog.records if r.levelno >= logging.WARNING and (r.exc_info or "Traceback" in r.getMessage())]
        assert noisy == [] and "Traceback" not in caplog.text and secret not in caplog.text
    finally:
        await server.stop()


def test_ccxt_book_floats_convert_exactly():
    """ccxt hands out book levels as floats: every decimal of up to 15 significant digits comes back exact."""
    import random

    from venues.ccxt_adapter import to_fixed

    rng = random.Random(5)
    for _ in range(20_000):
        places = rng.randint(0, 8)
        whole = rng.randint(0, 10 ** rng.randint(0, 15 - places) - 1)
        frac = rng.randint(0, 10**places - 1)
        text = f"{whole}.{frac:0{places}d}" if places else str(whole)
        assert to_fixed(float(text)) == P(text), text
    assert to_fixed("61837.60000000") == P("61837.6") and to_fixed(1e-05) == P("0.00001")
    with pytest.raises(ValueError):
        to_fixed(float("nan"))


async def test_ccxt_error_texts_are_mapped_and_cleaned():
    from venues.ccxt_errors import Outcome, clean_message, outcome

    leaked = ccxt.RequestTimeout("binance GET http://127.0.0.1:1/api/v3/order?symbol=BTCUSDT&signature=abcdef0123")
    assert "abcdef0123" not in clean_message(leaked) and outcome(leaked) is Outcome.UNKNOWN
    assert outcome(ccxt.DDoSProtection("429")) is Outcome.REFUSED
    assert outcome(ccxt.InsufficientFunds('binance {"code":-2010,"msg":"Account has insufficient balance"}')) \
        is Outcome.PERMANENT
    assert clean_message(ccxt.InvalidOrder('binance {"code":-2010,"msg":"Order would immediately match"}')) \
        == "Order would immediately match (-2010)"
