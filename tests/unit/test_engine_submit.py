"""What the engine hands the pre-trade checks on submit: balances, fair price, book state.

One in-process sim venue with a still market (no flow, no takers), started for real.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from hft import numbers as n
from hft.config import load_config
from hft.engine import Engine
from hft.events import OrderFilled
from hft.metrics import Metrics
from hft.model import Fill, Liquidity, Order, OrderStatus, OrderType, Side
from hft.registry import strategy_registry, venue_registry

SYMBOL = "BTC/USDT"


async def started(balances: dict[str, str]) -> Engine:
    venues, strategies = venue_registry(), strategy_registry()
    cfg = load_config(None, venue_options_model=lambda t: venues.resolve(t).Options,
                      strategy_params_model=lambda t: strategies.resolve(t).Params)
    cfg.venues = cfg.venues[:1]
    o = cfg.venues[0].options
    o.volatility_bps = o.noise_bps = o.limit_rate_per_s = o.cancel_rate_per_s = o.taker_rate_per_s = 0
    o.balances = {asset: n.parse(v) for asset, v in balances.items()}
    cfg.journal.enabled = False
    engine = Engine(cfg, venue_registry=venues, strategy_registry=strategies, metrics=Metrics(CollectorRegistry()))
    engine.build(with_strategy=False)
    await engine.start()
    await engine.wait_for_books()
    return engine


def denials(engine: Engine) -> dict[str, int]:
    return dict(engine.risk_denials)


async def test_orders_are_checked_against_the_account_balance_our_fills_moved():
    engine = await started({"BTC": "0.01", "USDT": "30"})
    try:
        book = engine.consolidated(SYMBOL)
        bid = book.best_bid()[0]

        def qty_for(usdt: str) -> int:  # BTC worth ``usdt`` at the bid, on the venue's lot
            return engine.instrument("alpha", SYMBOL).round_qty(n.parse(usdt) * n.SCALE // bid)

        assert engine.submit_order("alpha", SYMBOL, Side.BUY, qty_for("20"), bid, post_only=True) is not None
        assert engine.submit_order("alpha", SYMBOL, Side.BUY, qty_for("20"), bid, post_only=True) is None
        assert denials(engine) == {"insufficient_balance": 1}  # 40 USDT of bids on 30 USDT
        assert engine.submit_order("alpha", SYMBOL, Side.SELL, n.parse("0.02"), book.best_ask()[0]) is None
        assert denials(engine) == {"insufficient_balance": 2}  # 0.02 BTC on 0.01 BTC

        # a fill of ours selling 0.005 BTC brings USDT in: the second bid passes now
        sold = Order("x1", "alpha", SYMBOL, Side.SELL, n.parse("0.005"), bid, status=OrderStatus.OPEN)
        engine.manage(sold)
        engine.on_event(OrderFilled(Fill("alpha", SYMBOL, "x1", "t1", Side.SELL, bid, n.parse("0.005"), 0, "USDT",
                                         Liquidity.MAKER), n.parse("0.005")))
        assert engine.submit_order("alpha", SYMBOL, Side.BUY, qty_for("20"), bid, post_only=True) is not None
    finally:
        await engine.stop()


async def test_a_market_order_is_valued_at_the_book_mid_and_an_invalid_book_denies():
    engine = await started({"BTC": "1", "USDT": "1000000"})
    try:
        book = engine.consolidated(SYMBOL)
        mid = book.mid()
        engine.limits.max_order_notional = n.mul(mid, n.parse("0.1"))
        assert engine.submit_order("alpha", SYMBOL, Side.BUY, n.parse("0.11"), order_type=OrderType.MARKET) is None
        assert denials(engine) == {"max_order_notional": 1}  # 0.11 BTC at the mid is above 0.1 BTC's worth
        book.invalidate("alpha", "test")
        assert engine.submit_order("alpha", SYMBOL, Side.BUY, n.parse("0.01"), mid - 100 * n.SCALE) is None
        assert denials(engine) == {"max_order_notional": 1, "book_invalid": 1}
    finally:
        await engine.stop()
