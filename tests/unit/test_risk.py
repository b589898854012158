from hft import numbers as n
from hft.model import Order, Side
from hft.risk import Exposure, PreTradeRisk, RiskLimits, TokenBucket

LIMITS = RiskLimits(
    max_order_qty=n.parse("1"), max_order_notional=n.parse("50000"), max_position_per_venue=n.parse("2"),
    max_position_total=n.parse("3"), max_orders_per_second=10,
)
PX = n.parse("20000")


def order(side, qty, venue="a", price=PX):
    return Order("c", venue, "BTC/USDT", side, n.parse(qty), price)


def test_order_size_and_notional():
    r = PreTradeRisk(LIMITS)
    assert r.check(order(Side.BUY, "1.5"), PX, 0, 0, Exposure(), 1) == "max_order_qty"
    assert r.check(order(Side.BUY, "1", price=n.parse("60000")), PX, 0, 0, Exposure(), 2) == "max_order_notional"
    # a market order is valued at the reference price
    assert r.check(order(Side.BUY, "1", price=None), n.parse("60000"), 0, 0, Exposure(), 3) == "max_order_notional"
    assert r.check(order(Side.BUY, "1"), PX, 0, 0, Exposure(), 4) is None


def test_position_limits_count_open_orders_worst_case():
    r = PreTradeRisk(LIMITS)
    ex = Exposure()
    ex.add("a", Side.BUY, n.parse("1.5"))
    # position 0 + open 1.5 + 1 > 2 on venue a
    assert r.check(order(Side.BUY, "1"), PX, 0, 0, ex, 1) == "max_position_per_venue"
    # a sell reduces: allowed
    assert r.check(order(Side.SELL, "1"), PX, 0, 0, ex, 2) is None
    # total: long 2.5 over venues, + 1 on venue b > 3
    assert r.check(order(Side.BUY, "1", venue="b"), PX, 0, n.parse("2.5"), Exposure(), 3) == "max_position_total"
    # short side mirrors
    assert r.check(order(Side.SELL, "1"), PX, n.parse("-1.5"), 0, Exposure(), 4) == "max_position_per_venue"


def test_order_rate_limited_per_venue():
    r = PreTradeRisk(LIMITS)
    t = 1_000_000_000
    results = [r.check(order(Side.BUY, "0.01"), PX, 0, 0, Exposure(), t) for _ in range(15)]
    assert results.count(None) == 10 and results.count("order_rate") == 5
    assert r.check(order(Side.BUY, "0.01", venue="b"), PX, 0, 0, Exposure(), t) is None
    assert r.check(order(Side.BUY, "0.01"), PX, 0, 0, Exposure(), t + 200_000_000) is None  # refilled 2 tokens


def test_token_bucket_refills():
    b = TokenBucket(2.0, 2.0)
    assert b.take(10**9) and b.take(10**9) and not b.take(10**9)
    assert b.take(10**9 + 500_000_000)
