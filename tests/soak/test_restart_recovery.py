"""Restart reconciliation against a real exchange server through the real ccxt client: what the soak
found, pinned down one case at a time (in process, so each case is exact and quick)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from hft import numbers
from hft.config import load_config
from hft.engine import Engine
from hft.journal import Journal, config_digest
from hft.metrics import Metrics
from hft.model import OrderStatus, Side, TimeInForce
from hft.registry import strategy_registry, venue_registry
from venues.sim.exchange_server import ExchangeServer, ExchangeServerConfig

SYM = "BTC/USDT"
P = numbers.parse
KEY, SECRET = "soak-key", "soak-secret"
HANG_GUARD_S = 30  # waits end when the awaited state is reached; this only stops a broken run hanging


async def start_server() -> ExchangeServer:
    cfg = {
        "auto_liquidity": False,  # nothing trades unless a test makes it
        "seed": 3,
        "symbols": [{"symbol": SYM, "maker_fee_bps": 1, "taker_fee_bps": 5, "flow": {"levels": 10}}],
        "api_keys": [{"name": "mm", "api_key": KEY, "api_secret": SECRET,
                      "balances": {"BTC": "10", "USDT": "1000000"}}],
    }
    return await ExchangeServer(ExchangeServerConfig.model_validate(cfg)).start()


def load(tmp_path: Path, server: ExchangeServer):
    data = {
        "engine": {"status_interval_s": 0.25, "stale_book_after_s": 30.0, "shutdown_timeout_s": 10.0},
        "metrics": {"enabled": False},
        "journal": {"enabled": True, "path": str(tmp_path / "journal.sqlite")},
        "recovery": {"open_orders": "cancel"},
        "risk": {"max_order_qty": "0.5", "max_order_notional": "50000", "max_position_per_venue": "1",
                 "max_position_total": "1", "max_orders_per_second": 20},
        "venues": [{"name": "lx", "type": "ccxt", "symbols": [SYM], "api_key": KEY, "api_secret": SECRET,
                    "options": {"exchange": "binance", "base_url": server.url, "maker_fee_bps": 1,
                                "taker_fee_bps": 5, "reconcile_interval_s": 60}}],
        "strategy": {"type": "market_making", "symbol": SYM, "params": {"order_size": "0.01"}},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    venues, strategies = venue_registry(), strategy_registry()
    cfg = load_config(path, venue_options_model=lambda t: venues.resolve(t).Options,
                      strategy_params_model=lambda t: strategies.resolve(t).Params)
    return cfg, venues, strategies


async def start_engine(tmp_path: Path, server: ExchangeServer) -> Engine:
    """What ``hft run`` does up to trading: journal, session, connect, replay + reconcile, books."""
    cfg, venues, strategies = load(tmp_path, server)
    journal = Journal(cfg.journal.path).open()
    engine = Engine(cfg, venue_registry=venues, strategy_registry=strategies,
                    metrics=Metrics(CollectorRegistry()), journal=journal)
    journal.start_session(engine.cid_prefix, config_digest(cfg))
    engine.build(with_strategy=False)
    await engine.start()
    await engine.wait_for_books(HANG_GUARD_S)
    return engine


async def die(engine: Engine) -> None:
    """The process goes away: connections dropped, nothing cancelled, the session never marked ended."""
    engine.journal.flush()
    await engine._tasks.cancel_all()  # noqa: SLF001 - its timer dies with it
    for adapter in engine.adapters.values():
        await adapter.close()
    engine.journal.session_id = None  # a kill never stamps the session's end
    engine.journal.close()


async def until(predicate, step: float = 0.01) -> None:
    async with asyncio.timeout(HANG_GUARD_S):
        while not predicate():
            await asyncio.sleep(step)


def server_open(server: ExchangeServer) -> dict:
    return server.state("mm", trades=False)["accounts"]["mm"]["open_orders"][SYM]


async def test_an_earlier_runs_order_open_on_the_venue_is_cancelled_at_restart(tmp_path):
    """recovery.open_orders=cancel on a ccxt venue: the adapter did not know the earlier run's order and
    refused the cancel ("unknown order"), so the order stayed open all session and a clean shutdown waited
    its whole timeout for a cancel event that never came."""
    server = await start_server()
    try:
        first = await start_engine(tmp_path, server)
        price = server.engine(SYM).best_bid()[0] - P("50")
        order = first.submit_order("lx", SYM, Side.BUY, P("0.01"), price)
        assert order is not None
        await until(lambda: order.status is OrderStatus.OPEN)
        await die(first)
        assert set(server_open(server)) == {order.client_order_id}

        second = await start_engine(tmp_path, server)
        try:
            await until(lambda: not server_open(server))  # canceled on the venue ...
            await until(lambda: not second.open_orders["lx"])  # ... and the engine heard it
            assert second.orders[order.client_order_id].status is OrderStatus.CANCELED
            assert second.adapters["lx"].stats["tracked"] == 1
        finally:
            summary = await second.stop()
            second.journal.close()
        assert summary.open_orders_left == {"lx": 0}
    finally:
        await server.stop()


async def test_restart_looks_up_the_client_ids_of_many_filled_orders_in_pages_and_once(tmp_path):
    """Fills of orders this process did not send are attributed by client id. One ``fetch_order`` (weight
    4) per order, at every reconciliation, grew with every crash restart (reconciliation starts at the
    oldest unclean session) until the venue answered 429 and then banned the key (418)."""
    server = await start_server()
    try:
        first = await start_engine(tmp_path, server)
        orders = []
        for _ in range(8):  # eight orders, each filled at once
            ask = server.engine(SYM).best_ask()
            order = first.submit_order("lx", SYM, Side.BUY, P("0.01"), ask[0], time_in_force=TimeInForce.IOC)
            assert order is not None
            orders.append(order)
            await until(lambda o=order: o.status.is_done)
        assert all(o.status is OrderStatus.FILLED for o in orders)
        await die(first)

        requests = server.requests
        lookups, pages = ("GET", "/api/v3/order"), ("GET", "/api/v3/allOrders")
        before = requests[lookups], requests[pages]
        second = await start_engine(tmp_path, server)
        try:
            assert (requests[lookups] - before[0], requests[pages] - before[1]) == (0, 1)
            assert {f.trade_id for f in second.journal.fills()} == set(
                server.state("mm")["accounts"]["mm"]["trades"][SYM])

            # a user stream that reconnects is reconciled again: the client ids are known by now
            trades_asked, balances_asked = requests[("GET", "/api/v3/myTrades")], requests[("GET", "/api/v3/account")]
            assert server.drop_streams("user") >= 1
            await until(lambda: requests[("GET", "/api/v3/myTrades")] > trades_asked)
            await until(lambda: requests[("GET", "/api/v3/account")] > balances_asked)  # its last step
            assert (requests[lookups] - before[0], requests[pages] - before[1]) == (0, 1)
        finally:
            await second.stop()
            second.journal.close()
    finally:
        await server.stop()
