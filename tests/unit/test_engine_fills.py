"""The engine's order and fill bookkeeping, fed events directly (no venue I/O)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from hft import numbers as n
from hft.config import load_config
from hft.engine import Engine
from hft.events import OrderCanceled, OrderFilled
from hft.metrics import Metrics
from hft.model import Fill, Liquidity, Order, OrderStatus, Side
from hft.registry import strategy_registry, venue_registry


def engine_with_two_symbols() -> Engine:
    venues, strategies = venue_registry(), strategy_registry()
    cfg = load_config(None, venue_options_model=lambda t: venues.resolve(t).Options,
                      strategy_params_model=lambda t: strategies.resolve(t).Params)
    cfg.venues[0].symbols = ["BTC/USDT", "ETH/USDT"]
    engine = Engine(cfg, venue_registry=venues, strategy_registry=strategies, metrics=Metrics(CollectorRegistry()))
    engine.build(with_strategy=False)
    return engine


def order(cid, symbol, side=Side.BUY, qty="0.1", price="100"):
    return Order(cid, "alpha", symbol, side, n.parse(qty), n.parse(price), status=OrderStatus.OPEN)


def fill(cid, symbol, tid, qty="0.1", price="100", side=Side.BUY, fee="0.01", fee_asset="USDT"):
    return Fill("alpha", symbol, cid, tid, side, n.parse(price), n.parse(qty), n.parse(fee), fee_asset,
                Liquidity.MAKER)


def test_trade_ids_are_per_symbol_so_the_same_id_on_two_symbols_is_two_fills():
    engine = engine_with_two_symbols()
    engine.manage(order("b1", "BTC/USDT"))
    engine.manage(order("e1", "ETH/USDT"))
    engine.on_event(OrderFilled(fill("b1", "BTC/USDT", "1"), 0))
    engine.on_event(OrderFilled(fill("e1", "ETH/USDT", "1"), 0))
    engine.on_event(OrderFilled(fill("e1", "ETH/USDT", "1"), 0))  # a real duplicate
    assert engine.portfolio("BTC/USDT").position("alpha") == n.parse("0.1")
    assert engine.portfolio("ETH/USDT").position("alpha") == n.parse("0.1")
    assert engine.stats["alpha"].fills == 2 and engine.stats["alpha"].duplicate_fills == 1


def test_partial_fill_then_cancel_releases_exactly_the_rest_of_the_exposure():
    engine = engine_with_two_symbols()
    engine.manage(order("b1", "BTC/USDT", qty="0.3"))
    assert engine.exposure.open_buy["alpha"] == n.parse("0.3")
    engine.on_event(OrderFilled(fill("b1", "BTC/USDT", "7", qty="0.1"), 0))
    assert engine.orders["b1"].status is OrderStatus.PARTIALLY_FILLED
    assert engine.exposure.open_buy["alpha"] == n.parse("0.2")
    engine.on_event(OrderCanceled("alpha", "b1", 0))
    assert engine.orders["b1"].status is OrderStatus.CANCELED
    assert engine.exposure.open_buy["alpha"] == 0 and engine.exposure.total_buy == 0
    assert engine.exposure.open_buy_notional["alpha"] == 0
    # a fill arriving after the cancel (the venue matched it first) still counts, exposure untouched
    engine.on_event(OrderFilled(fill("b1", "BTC/USDT", "8", qty="0.05"), 0))
    assert engine.portfolio("BTC/USDT").position("alpha") == n.parse("0.15")
    assert engine.exposure.open_buy["alpha"] == 0


def test_fill_with_the_fee_in_the_base_asset_keeps_position_and_holdings_apart():
    engine = engine_with_two_symbols()
    engine.manage(order("b1", "BTC/USDT"))
    engine.on_event(OrderFilled(fill("b1", "BTC/USDT", "9", fee="0.0001", fee_asset="BTC"), 0))
    position = engine.portfolio("BTC/USDT").by_venue["alpha"]
    assert position.qty == n.parse("0.1") and position.holdings == n.parse("0.0999")
    assert engine.orders["b1"].status is OrderStatus.FILLED and engine.open_orders["alpha"] == {}


def test_done_orders_are_forgotten_oldest_first_and_live_ones_never(monkeypatch):
    import hft.engine

    monkeypatch.setattr(hft.engine, "_DONE_ORDERS_KEPT", 3)
    engine = engine_with_two_symbols()
    live = order("live", "BTC/USDT")
    engine.manage(live)
    for i in range(6):
        engine.manage(order(f"o{i}", "BTC/USDT"))
        if i % 2:
            engine.on_event(OrderFilled(fill(f"o{i}", "BTC/USDT", f"t{i}"), 0))  # done by a fill
        else:
            engine.on_event(OrderCanceled("alpha", f"o{i}", 0))  # done by a cancel
    assert sorted(engine.orders) == ["live", "o3", "o4", "o5"]
    assert engine.orders["live"] is live and engine.open_orders["alpha"] == {"live": live}
    assert engine.portfolio("BTC/USDT").position("alpha") == n.parse("0.3")  # forgetting changes no position
