"""Cross-venue market making: quote on some venues, hedge inventory through the router on another."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from hft import numbers
from hft.engine import Engine
from hft.metrics import Metrics
from hft.model import OrderType, TimeInForce
from hft.runner import run_engine
from strategies.hedging import HedgeParams
from tests.integration.test_run_end_to_end import _load


async def test_market_maker_hedges_inventory_beyond_threshold_on_the_unquoted_venue():
    cfg, venues, strategies = _load()
    for vc in cfg.venues:
        vc.options.taker_rate_per_s = 8.0
    cfg.strategy.venues = ["alpha", "beta"]
    cfg.strategy.params.hedge = HedgeParams(threshold="0.015", target="0", venues=["gamma"], limit_bps=20)
    metrics = Metrics(CollectorRegistry())
    engines: list[Engine] = []
    gamma_orders = []

    hedges = []

    def started(engine: Engine) -> None:
        engines.append(engine)
        engine.add_order_listener(lambda order, fill: gamma_orders.append(order) if order.venue == "gamma" else None)
        manager = engine.strategy.hedger.manager
        real_execute = manager.execute

        async def watched_execute(parent, **kw):
            position = engine.portfolio("BTC/USDT").total.qty
            result = await real_execute(parent, **kw)
            hedges.append((position, parent, result, engine.portfolio("BTC/USDT").total.qty))
            return result

        manager.execute = watched_execute

        async def until_a_hedge_filled() -> None:
            while not any(result.filled_qty > 0 for _, _, result, _ in hedges):
                await asyncio.sleep(0.05)
            engine.request_stop()

        engine.spawn(until_a_hedge_filled(), "until-hedged")

    summary = await run_engine(cfg, venues, strategies, duration=60.0, metrics=metrics, out=lambda s: None,
                               on_started=started)
    assert summary is not None
    parents = metrics.registry.get_sample_value("hft_router_parents_total")
    assert parents and parents > 0
    # every order on gamma is a router child (IOC), never a quote
    assert gamma_orders, "no hedge reached gamma"
    assert all(o.tag.startswith("router:") and o.time_in_force is TimeInForce.IOC for o in gamma_orders)
    assert all(o.order_type is OrderType.LIMIT for o in gamma_orders)
    assert summary.venues["gamma"].fills > 0
    # each hedge started beyond the threshold, traded against the inventory, for the excess over target
    assert hedges
    threshold = numbers.parse("0.015")
    for position, parent, result, _after in hedges:
        assert abs(position) > threshold
        assert (parent.side > 0) == (position < 0)
        assert parent.qty == abs(position)
        assert result.filled_qty <= parent.qty
    assert any(result.filled_qty > 0 for _, _, result, _ in hedges)
    assert summary.open_orders_left == {"alpha": 0, "beta": 0, "gamma": 0}
    assert abs(summary.position_total) <= numbers.parse("0.015") + 2 * 2 * cfg.strategy.params.order_size
