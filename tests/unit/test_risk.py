import pytest

from hft import numbers as n
from hft.model import Order, Side
from hft.risk import Available, Exposure, RiskEngine, RiskLimits, TokenBucket, TradingState

PX = n.parse("20000")


def limits(**kw):
    base = dict(
        max_order_qty=n.parse("1"), max_order_notional=n.parse("50000"), max_position_per_venue=n.parse("2"),
        max_position_total=n.parse("3"), max_orders_per_second=10, max_orders_per_second_total=1000,
        price_band_bps=100,
    )
    base.update(kw)
    return RiskLimits(**base)


def order(side, qty, venue="a", price=PX):
    return Order("c", venue, "BTC/USDT", side, n.parse(qty), price)


def check(r, o, *, pos=0, total=0, ex=None, active=True, avail=None, now=1, fair=PX):
    return r.check(o, fair=fair, venue_position=pos, total_position=total, exposure=ex or Exposure(),
                   book_active=active, available=avail or Available(), now_ns=now)


def test_order_size_and_notional():
    r = RiskEngine(limits())
    assert check(r, order(Side.BUY, "1.5")) == "max_order_qty"
    big = n.parse("60000")
    assert check(r, order(Side.BUY, "1", price=big), fair=big) == "max_order_notional"
    assert check(r, order(Side.BUY, "1", price=None), fair=big) == "max_order_notional"  # market: valued at fair
    assert check(r, order(Side.BUY, "1")) is None


def test_non_positive_quantity_and_unpriced_market_orders_are_denied():
    r = RiskEngine(limits())
    assert check(r, order(Side.BUY, "0")) == "non_positive_qty"
    assert check(r, Order("c", "a", "BTC/USDT", Side.SELL, -n.parse("1"), PX)) == "non_positive_qty"
    assert check(r, order(Side.BUY, "0.1", price=None), fair=0) == "no_reference_price"


def test_price_band_is_a_fat_finger_guard():
    r = RiskEngine(limits(price_band_bps=50))
    assert check(r, order(Side.BUY, "0.1", price=n.parse("20101"))) == "price_band"  # 50.5 bp away
    assert check(r, order(Side.SELL, "0.1", price=n.parse("19899"))) == "price_band"
    assert check(r, order(Side.BUY, "0.1", price=n.parse("20099"))) is None


def test_invalid_or_stale_book_denies():
    assert check(RiskEngine(limits()), order(Side.BUY, "0.1"), active=False) == "book_invalid"


def test_position_limits_count_open_orders_worst_case():
    r = RiskEngine(limits())
    ex = Exposure()
    ex.add("a", Side.BUY, n.parse("1.5"), PX)
    assert check(r, order(Side.BUY, "1"), ex=ex) == "max_position_per_venue"
    assert check(r, order(Side.SELL, "1"), ex=ex) is None
    assert check(r, order(Side.BUY, "1", venue="b"), total=n.parse("2.5")) == "max_position_total"
    assert check(r, order(Side.SELL, "1"), pos=n.parse("-1.5")) == "max_position_per_venue"
    ex2 = Exposure()
    ex2.add("b", Side.SELL, n.parse("2"), PX)
    assert check(r, order(Side.SELL, "1"), total=n.parse("-0.5"), ex=ex2) == "max_position_total"


def test_available_balance_counts_what_open_orders_hold():
    r = RiskEngine(limits())
    ex = Exposure()
    ex.add("a", Side.BUY, n.parse("0.5"), PX)  # holds 10,000 quote
    assert check(r, order(Side.BUY, "0.5"), ex=ex, avail=Available(quote=n.parse("19999"))) == "insufficient_balance"
    assert check(r, order(Side.BUY, "0.5"), ex=ex, avail=Available(quote=n.parse("20000"))) is None
    ex.add("a", Side.SELL, n.parse("0.7"), PX)
    assert check(r, order(Side.SELL, "0.5"), ex=ex, avail=Available(base=n.parse("1.1"))) == "insufficient_balance"
    assert check(r, order(Side.SELL, "0.4"), ex=ex, avail=Available(base=n.parse("1.1"))) is None


def test_reducing_state_allows_only_orders_toward_flat():
    r = RiskEngine(limits())
    assert r.set_state(TradingState.REDUCING, "drawdown")
    long = n.parse("1")
    assert check(r, order(Side.BUY, "0.1"), pos=long, total=long) == "reducing_only"
    assert check(r, order(Side.SELL, "0.5"), pos=long, total=long) is None
    assert check(r, order(Side.SELL, "1.5"), pos=long, total=long) in ("reducing_only", "max_order_qty")
    ex = Exposure()
    ex.add("a", Side.SELL, n.parse("0.8"), PX)  # with open sells, 0.5 more would cross flat
    assert check(r, order(Side.SELL, "0.5"), pos=long, total=long, ex=ex) == "reducing_only"
    assert check(r, order(Side.SELL, "0.1"), pos=0, total=0) == "reducing_only"


def test_halted_denies_everything_and_is_final():
    r = RiskEngine(limits())
    assert r.set_state(TradingState.HALTED, "manual")
    assert check(r, order(Side.SELL, "0.1"), pos=n.parse("1"), total=n.parse("1")) == "halted"
    assert not r.set_state(TradingState.ACTIVE, "try to resume")  # only a restart leaves HALTED
    assert r.state is TradingState.HALTED and r.state_reason == "manual"


def test_order_rate_per_venue_and_global():
    r = RiskEngine(limits(max_orders_per_second=10, max_orders_per_second_total=15))
    t = 1_000_000_000
    results = [check(r, order(Side.BUY, "0.01"), now=t) for _ in range(12)]
    assert results.count(None) == 10 and results.count("order_rate") == 2
    results_b = [check(r, order(Side.BUY, "0.01", venue="b"), now=t) for _ in range(10)]
    assert results_b.count(None) == 5 and results_b.count("order_rate_total") == 5
    later = t + 1_000_000_000
    assert check(r, order(Side.BUY, "0.01"), now=later) is None


def test_runaway_strategy_is_held_to_the_configured_rate():
    """10,000 orders asked for within one simulated second pass at the configured rate, no more."""
    r = RiskEngine(limits(max_orders_per_second=50, max_orders_per_second_total=1000))
    start = 1_000_000_000
    passed = 0
    for i in range(10_000):
        now = start + i * 100_000  # 10,000 a second
        if check(r, order(Side.BUY, "0.001"), now=now) is None:
            passed += 1
    # burst of 50 plus 50/s over the (almost) one second
    assert 95 <= passed <= 100


def test_token_bucket_refills():
    b = TokenBucket(2.0, 2.0)
    assert b.take(10**9) and b.take(10**9) and not b.take(10**9)
    assert b.take(10**9 + 500_000_000)


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_exposure_add_and_remove_is_exact(side):
    ex = Exposure()
    ex.add("a", side, n.parse("0.3"), PX)
    ex.add("a", side, -n.parse("0.3"), PX)
    assert ex.total_buy == 0 and ex.total_sell == 0
    assert ex.open_buy.get("a", 0) == 0 and ex.open_sell.get("a", 0) == 0 and ex.open_buy_notional.get("a", 0) == 0
