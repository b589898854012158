"""Rules of the simulated venue's matching engine (venues/sim/matching.py)."""

from __future__ import annotations

import dataclasses
import random

import pytest

from hft import numbers
from hft.model import Instrument, OrderType, Side, TimeInForce
from venues.sim.matching import ExecReport, MatchingEngine, SimOrder

P = numbers.parse
BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
GTC, IOC, FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK

MAKER_PPM = 100  # 0.01 %
TAKER_PPM = 400  # 0.04 %


def instrument(maker_ppm: int = MAKER_PPM, taker_ppm: int = TAKER_PPM) -> Instrument:
    return Instrument(
        venue="sim",
        symbol="BTC/USDT",
        base="BTC",
        quote="USDT",
        tick_size=P("0.01"),
        lot_size=P("0.0001"),
        min_qty=P("0.0002"),
        min_notional=P("5"),
        maker_fee_ppm=maker_ppm,
        taker_fee_ppm=taker_ppm,
    )


def engine(stp: str = "expire_taker", **kw) -> MatchingEngine:
    e = MatchingEngine(instrument(**kw), stp=stp)
    for acct in ("a", "b", "c"):
        e.create_account(acct, {"BTC": P("10"), "USDT": P("1000000")})
    return e


def lock_buy(price: int, qty: int, ppm: int = TAKER_PPM) -> int:
    n = numbers.mul(price, qty)
    return n + numbers.fee(n, ppm)


def sub(e, acct, cid, side, qty, price, otype=LIMIT, tif=GTC, post_only=False, ts=1):
    return e.submit(acct, cid, side, P(qty), None if price is None else P(price), otype, tif, post_only, ts)


def kinds(reports):
    return [(r.account_id, r.client_order_id, r.exec_type, r.status) for r in reports]


def bal(e, acct, asset):
    b = e.balances(acct)[asset]
    return b.free, b.locked


# ---------------------------------------------------------------- priority and fills


def test_price_priority_best_price_fills_first():
    e = engine()
    sub(e, "a", "a101", SELL, "0.1", "101")
    sub(e, "a", "a100", SELL, "0.1", "100")
    sub(e, "a", "a102", SELL, "0.1", "102")
    reps = sub(e, "b", "t", BUY, "0.25", "102")
    taker_trades = [r for r in reps if r.exec_type == "TRADE" and not r.is_maker]
    assert [r.last_price for r in taker_trades] == [P("100"), P("101"), P("102")]
    assert [r.last_qty for r in taker_trades] == [P("0.1"), P("0.1"), P("0.05")]
    assert e.depth(10)[1] == [(P("102"), P("0.05"))]


def test_time_priority_within_a_level():
    e = engine()
    sub(e, "a", "first", SELL, "0.1", "100")
    sub(e, "c", "second", SELL, "0.1", "100")
    reps = sub(e, "b", "t", BUY, "0.1", "100")
    makers = [r for r in reps if r.is_maker]
    assert [(r.account_id, r.client_order_id) for r in makers] == [("a", "first")]
    assert [o.client_order_id for o in e.open_orders("c")] == ["second"]
    assert e.open_orders("a") == []


def test_partial_fill_reports_for_both_sides_in_order():
    e = engine()
    maker_new = sub(e, "a", "m", SELL, "1", "60000", ts=5)
    assert kinds(maker_new) == [("a", "m", "NEW", "NEW")]
    reps = sub(e, "b", "t", BUY, "0.4", "60000", ts=6)
    assert kinds(reps) == [
        ("b", "t", "NEW", "NEW"),
        ("b", "t", "TRADE", "FILLED"),
        ("a", "m", "TRADE", "PARTIALLY_FILLED"),
    ]
    taker, maker = reps[1], reps[2]
    assert taker.trade_id == maker.trade_id
    assert not taker.is_maker and maker.is_maker
    assert taker.last_qty == maker.last_qty == P("0.4")
    assert maker.cum_qty == P("0.4") and maker.qty == P("1")
    assert maker.cum_quote == P("24000") and taker.cum_quote == P("24000")
    assert maker.order_id == maker_new[0].order_id
    assert all(r.ts_ns == 6 for r in reps)
    assert e.depth(5) == ([], [(P("60000"), P("0.6"))])
    o = e.order("a", client_order_id="m")
    assert o.status == "PARTIALLY_FILLED" and o.remaining == P("0.6")
    # the rest of the maker fills against a second taker
    reps = sub(e, "c", "t2", BUY, "1", "60000")
    assert kinds(reps)[-1] == ("a", "m", "TRADE", "FILLED")
    assert ("c", "t2", "TRADE", "PARTIALLY_FILLED") in kinds(reps)
    assert e.order("a", client_order_id="m").status == "FILLED"
    assert e.depth(5) == ([(P("60000"), P("0.4"))], [])


def test_ioc_remainder_expires_and_does_not_rest():
    e = engine()
    sub(e, "a", "m", SELL, "0.3", "100")
    reps = sub(e, "b", "t", BUY, "1", "100", tif=IOC)
    assert kinds(reps) == [
        ("b", "t", "NEW", "NEW"),
        ("b", "t", "TRADE", "PARTIALLY_FILLED"),
        ("a", "m", "TRADE", "FILLED"),
        ("b", "t", "EXPIRED", "EXPIRED"),
    ]
    assert reps[-1].cum_qty == P("0.3")
    assert e.depth(5) == ([], [])
    assert e.open_orders("b") == []
    # nothing stays locked for the expired remainder
    assert bal(e, "b", "USDT")[1] == 0


def test_fok_all_or_nothing_leaves_book_untouched():
    e = engine()
    sub(e, "a", "m1", SELL, "0.3", "100")
    sub(e, "c", "m2", SELL, "0.3", "101")
    e.drain_book_changes()
    depth, before_b = e.depth(10), e.balances("b")
    reps = sub(e, "b", "fok", BUY, "0.7", "101", tif=FOK)
    assert kinds(reps) == [("b", "fok", "NEW", "NEW"), ("b", "fok", "EXPIRED", "EXPIRED")]
    assert reps[1].cum_qty == 0
    assert e.depth(10) == depth
    assert e.drain_book_changes() == []
    assert e.drain_trades() == []
    assert e.balances("b") == before_b
    # enough within the limit: fills completely
    reps = sub(e, "b", "fok2", BUY, "0.6", "101", tif=FOK)
    assert reps[-1].client_order_id == "m2" and reps[-1].status == "FILLED"
    assert e.order("b", client_order_id="fok2").status == "FILLED"
    # limit excludes the liquidity: expires
    sub(e, "a", "m3", SELL, "1", "105")
    reps = sub(e, "b", "fok3", BUY, "0.5", "104", tif=FOK)
    assert reps[-1].exec_type == "EXPIRED"
    # funds are checked first, like any order
    e.create_account("poor", {"USDT": P("10")})
    assert sub(e, "poor", "fok4", BUY, "0.5", "105", tif=FOK)[0].reason.startswith("Account has insufficient")


def test_post_only_rejected_on_cross_and_rests_otherwise():
    e = engine()
    sub(e, "a", "ask", SELL, "0.1", "100")
    rej = sub(e, "b", "po", BUY, "0.1", "100", post_only=True)
    assert kinds(rej) == [("b", "po", "REJECTED", "REJECTED")]
    assert rej[0].reason == "Order would immediately match and take."
    assert bal(e, "b", "USDT") == (P("1000000"), 0)
    ok = sub(e, "b", "po", BUY, "0.1", "99.99", post_only=True)
    assert kinds(ok) == [("b", "po", "NEW", "NEW")]
    assert e.best_bid() == (P("99.99"), P("0.1"))
    # post-only only makes sense for a resting limit order
    assert sub(e, "b", "x", BUY, "0.1", "90", tif=IOC, post_only=True)[0].exec_type == "REJECTED"


def test_market_orders_sweep_and_expire_rest():
    e = engine()
    sub(e, "a", "m1", SELL, "0.1", "100")
    sub(e, "a", "m2", SELL, "0.2", "110")
    reps = e.submit("b", "mkt", BUY, P("0.5"), None, MARKET, IOC, False, 3)
    trades = [r for r in reps if r.exec_type == "TRADE" and not r.is_maker]
    assert [(r.last_price, r.last_qty) for r in trades] == [(P("100"), P("0.1")), (P("110"), P("0.2"))]
    assert reps[-1].exec_type == "EXPIRED" and reps[-1].cum_qty == P("0.3")
    cost = P("10") + P("22")
    fees = numbers.fee(P("10"), TAKER_PPM) + numbers.fee(P("22"), TAKER_PPM)
    assert bal(e, "b", "USDT") == (P("1000000") - cost - fees, 0)
    assert bal(e, "b", "BTC") == (P("10.3"), 0)
    # market sell into the empty bid side: NEW then EXPIRED, nothing traded
    reps = e.submit("b", "mkt2", SELL, P("0.5"), None, MARKET, IOC, False, 4)
    assert [r.exec_type for r in reps] == ["NEW", "EXPIRED"]
    # a market order takes no price, a limit order needs one
    assert e.submit("b", "x", BUY, P("1"), P("100"), MARKET, IOC, False, 5)[0].exec_type == "REJECTED"
    assert e.submit("b", "y", BUY, P("1"), None, LIMIT, GTC, False, 5)[0].exec_type == "REJECTED"


def test_market_buy_needs_quote_for_what_it_would_take():
    e = MatchingEngine(instrument())
    e.create_account("maker", {"BTC": P("10")})
    sub(e, "maker", "m1", SELL, "0.1", "100")
    sub(e, "maker", "m2", SELL, "0.1", "200")
    need = P("10") + numbers.fee(P("10"), TAKER_PPM) + P("20") + numbers.fee(P("20"), TAKER_PPM)
    e.create_account("poor", {"USDT": need - 1})
    e.create_account("exact", {"USDT": need})
    reps = e.submit("poor", "m", BUY, P("1"), None, MARKET, IOC, False, 1)
    assert kinds(reps) == [("poor", "m", "REJECTED", "REJECTED")]
    assert reps[0].reason == "Account has insufficient balance for requested action."
    assert e.depth(5)[1] == [(P("100"), P("0.1")), (P("200"), P("0.1"))]
    reps = e.submit("exact", "m", BUY, P("1"), None, MARKET, IOC, False, 1)
    assert reps[-1].exec_type == "EXPIRED" and reps[-1].cum_qty == P("0.2")
    assert bal(e, "exact", "USDT") == (0, 0)
    assert bal(e, "exact", "BTC") == (P("0.2"), 0)


def test_market_sell_needs_base():
    e = engine()
    sub(e, "a", "bid", BUY, "20", "100")
    reps = e.submit("b", "s", SELL, P("10.0001"), None, MARKET, IOC, False, 1)
    assert reps[0].exec_type == "REJECTED"
    reps = e.submit("b", "s", SELL, P("10"), None, MARKET, IOC, False, 1)
    assert [r.status for r in reps if r.account_id == "b"] == ["NEW", "FILLED"]
    assert bal(e, "b", "BTC") == (0, 0)


# ---------------------------------------------------------------- cancel


def test_cancel_releases_funds_and_removes_level():
    e = engine()
    sub(e, "a", "bid", BUY, "1", "60000")
    assert bal(e, "a", "USDT") == (P("1000000") - lock_buy(P("60000"), P("1")), lock_buy(P("60000"), P("1")))
    sub(e, "a", "ask", SELL, "2", "61000")
    assert bal(e, "a", "BTC") == (P("8"), P("2"))
    reps = e.cancel("a", client_order_id="bid", ts_ns=9)
    assert kinds(reps) == [("a", "bid", "CANCELED", "CANCELED")]
    assert reps[0].ts_ns == 9
    assert bal(e, "a", "USDT") == (P("1000000"), 0)
    ask_id = e.order("a", client_order_id="ask").order_id
    reps = e.cancel("a", order_id=ask_id, ts_ns=10)
    assert reps[0].exec_type == "CANCELED" and reps[0].order_id == ask_id
    assert bal(e, "a", "BTC") == (P("10"), 0)
    assert e.depth(5) == ([], [])
    assert e.best_bid() is None and e.best_ask() is None
    assert e.order("a", client_order_id="bid").status == "CANCELED"


def test_cancel_after_partial_fill_releases_only_the_rest():
    e = engine()
    sub(e, "a", "bid", BUY, "1", "60000")
    sub(e, "b", "hit", SELL, "0.25", "60000")
    assert bal(e, "a", "USDT")[1] == lock_buy(P("60000"), P("0.75"))
    e.cancel("a", client_order_id="bid", ts_ns=2)
    cost = P("15000")
    assert bal(e, "a", "USDT") == (P("1000000") - cost - numbers.fee(cost, MAKER_PPM), 0)
    assert bal(e, "a", "BTC") == (P("10.25"), 0)


def test_cancel_unknown_done_or_foreign_is_rejected():
    e = engine()
    r = e.cancel("a", client_order_id="nope", ts_ns=1)
    assert kinds(r) == [("a", "nope", "CANCEL_REJECTED", "REJECTED")]
    assert r[0].reason == "Unknown order sent."
    sub(e, "a", "x", SELL, "0.1", "100")
    sub(e, "b", "y", BUY, "0.1", "100")  # fills x
    assert e.cancel("a", client_order_id="x", ts_ns=2)[0].exec_type == "CANCEL_REJECTED"
    sub(e, "a", "z", SELL, "0.1", "100")
    zid = e.order("a", client_order_id="z").order_id
    assert e.cancel("b", order_id=zid, ts_ns=3)[0].exec_type == "CANCEL_REJECTED"
    assert e.cancel("b", client_order_id="z", ts_ns=3)[0].exec_type == "CANCEL_REJECTED"
    assert e.order("b", order_id=zid) is None
    assert len(e.open_orders("a")) == 1


def test_cancel_all():
    e = engine()
    for i in range(5):
        sub(e, "a", f"b{i}", BUY, "0.1", str(100 - i))
        sub(e, "a", f"s{i}", SELL, "0.1", str(200 + i))
    sub(e, "b", "other", BUY, "0.1", "50")
    reps = e.cancel_all("a", ts_ns=4)
    assert sorted(r.client_order_id for r in reps) == sorted([f"b{i}" for i in range(5)] + [f"s{i}" for i in range(5)])
    assert all(r.exec_type == "CANCELED" for r in reps)
    assert e.open_orders("a") == []
    assert e.balances("a")["USDT"].locked == 0 and e.balances("a")["BTC"].locked == 0
    assert e.depth(10) == ([(P("50"), P("0.1"))], [])
    assert e.cancel_all("a", ts_ns=5) == []


# ---------------------------------------------------------------- fees and locks


def test_fees_in_quote_exact_maker_and_taker():
    e = engine()
    sub(e, "a", "m", SELL, "0.4", "60000.01")
    reps = sub(e, "b", "t", BUY, "0.4", "60000.01")
    notional = P("24000.004")
    taker_fee = numbers.fee(notional, TAKER_PPM)
    maker_fee = numbers.fee(notional, MAKER_PPM)
    assert taker_fee == P("9.6000016") and maker_fee == P("2.4000004")
    t, m = reps[1], reps[2]
    assert (t.fee, t.fee_asset) == (taker_fee, "USDT")
    assert (m.fee, m.fee_asset) == (maker_fee, "USDT")
    assert bal(e, "a", "USDT") == (P("1000000") + notional - maker_fee, 0)
    assert bal(e, "a", "BTC") == (P("9.6"), 0)
    assert bal(e, "b", "USDT") == (P("1000000") - notional - taker_fee, 0)
    assert bal(e, "b", "BTC") == (P("10.4"), 0)
    assert e.order("b", client_order_id="t").fees == taker_fee


def test_fee_rounds_up_per_fill_and_maker_rebate():
    e = engine(maker_ppm=-50, taker_ppm=333)
    sub(e, "a", "m", BUY, "0.0007", "12345.67")
    reps = sub(e, "b", "t", SELL, "0.0007", "12345.67")
    notional = numbers.mul(P("12345.67"), P("0.0007"))  # 8.641969
    assert notional == P("8.641969")
    tfee = numbers.fee(notional, 333)
    assert tfee == 2877776  # 8.641969 * 333e-6 = 0.002877775677 -> rounded up
    mfee = numbers.fee(notional, -50)
    assert mfee == -432098  # -0.00043209845 -> rebate rounded down in size
    t, m = reps[1], reps[2]
    assert t.fee == tfee and m.fee == mfee
    # maker bought: paid notional, received the rebate; the lock used the taker rate
    assert bal(e, "a", "USDT") == (P("1000000") - notional - mfee, 0)
    assert bal(e, "b", "USDT") == (P("1000000") + notional - tfee, 0)


def test_buy_lock_recomputed_on_partial_fills_and_released_on_fill():
    e = engine()
    price = P("60000")
    sub(e, "a", "bid", BUY, "1", "60000")
    full = lock_buy(price, P("1"))
    assert bal(e, "a", "USDT") == (P("1000000") - full, full)
    sub(e, "b", "s1", SELL, "0.3", "60000")
    rest = lock_buy(price, P("0.7"))
    paid = P("18000") + numbers.fee(P("18000"), MAKER_PPM)
    assert bal(e, "a", "USDT") == (P("1000000") - paid - rest, rest)
    assert e.order("a", client_order_id="bid").locked == rest
    sub(e, "c", "s2", SELL, "0.7", "59000")  # fills the rest at the bid's price
    paid += P("42000") + numbers.fee(P("42000"), MAKER_PPM)
    assert bal(e, "a", "USDT") == (P("1000000") - paid, 0)
    assert bal(e, "a", "BTC") == (P("11"), 0)


def test_taker_buy_price_improvement_returns_unused_lock():
    e = engine()
    sub(e, "a", "ask", SELL, "0.5", "59000")
    sub(e, "b", "bid", BUY, "0.5", "60000")
    cost = P("29500")
    assert bal(e, "b", "USDT") == (P("1000000") - cost - numbers.fee(cost, TAKER_PPM), 0)


def test_taker_buy_that_rests_keeps_the_lock_of_its_remainder():
    e = engine()
    sub(e, "a", "ask", SELL, "0.4", "59000")
    sub(e, "b", "bid", BUY, "1", "60000")
    cost = P("23600")
    rest = lock_buy(P("60000"), P("0.6"))
    assert bal(e, "b", "USDT") == (P("1000000") - cost - numbers.fee(cost, TAKER_PPM) - rest, rest)
    assert e.depth(5) == ([(P("60000"), P("0.6"))], [])
    e.cancel("b", client_order_id="bid", ts_ns=2)
    assert bal(e, "b", "USDT") == (P("1000000") - cost - numbers.fee(cost, TAKER_PPM), 0)


def test_sell_locks_base_released_on_fill_and_cancel():
    e = engine()
    sub(e, "a", "ask", SELL, "3", "100")
    assert bal(e, "a", "BTC") == (P("7"), P("3"))
    sub(e, "b", "t", BUY, "1", "100")
    assert bal(e, "a", "BTC") == (P("7"), P("2"))
    assert e.order("a", client_order_id="ask").locked == P("2")
    e.cancel("a", client_order_id="ask", ts_ns=2)
    assert bal(e, "a", "BTC") == (P("9"), 0)


def test_insufficient_funds_rejected_at_the_exact_boundary():
    e = MatchingEngine(instrument())
    need = lock_buy(P("100"), P("1"))
    e.create_account("short", {"USDT": need - 1, "BTC": P("0.9999")})
    e.create_account("enough", {"USDT": need, "BTC": P("1")})
    r = e.submit("short", "b", BUY, P("1"), P("100"), LIMIT, GTC, False, 1)
    assert kinds(r) == [("short", "b", "REJECTED", "REJECTED")]
    assert r[0].reason == "Account has insufficient balance for requested action." and r[0].order_id == 0
    assert e.submit("short", "s", SELL, P("1"), P("100"), LIMIT, GTC, False, 1)[0].exec_type == "REJECTED"
    assert bal(e, "short", "USDT") == (need - 1, 0) and bal(e, "short", "BTC") == (P("0.9999"), 0)
    assert e.submit("enough", "b", BUY, P("1"), P("100"), LIMIT, GTC, False, 1)[0].exec_type == "NEW"
    assert e.submit("enough", "s", SELL, P("1"), P("101"), LIMIT, GTC, False, 1)[0].exec_type == "NEW"
    assert bal(e, "enough", "USDT") == (0, need)
    assert bal(e, "enough", "BTC") == (0, P("1"))
    assert e.depth(5) == ([(P("100"), P("1"))], [(P("101"), P("1"))])
    assert e.submit("enough", "b2", BUY, P("0.1"), P("100"), LIMIT, GTC, False, 1)[0].exec_type == "REJECTED"


def test_unlimited_account_skips_checks_and_tracks_net():
    e = engine()
    e.create_account("flow", {}, unlimited=True)
    assert sub(e, "flow", "f", SELL, "1000", "100")[0].exec_type == "NEW"
    sub(e, "a", "t", BUY, "1", "100")
    b = e.balances("flow")
    assert b["BTC"].free == -P("1") and b["BTC"].locked == 0
    assert b["USDT"].free == P("100") - numbers.fee(P("100"), MAKER_PPM)
    with pytest.raises(ValueError):
        e.create_account("flow", {})


# ---------------------------------------------------------------- self-trade prevention


def test_stp_expire_taker():
    e = engine("expire_taker")
    sub(e, "b", "other", SELL, "0.1", "99")
    sub(e, "a", "mine", SELL, "0.1", "100")
    sub(e, "c", "behind", SELL, "0.1", "100")
    reps = sub(e, "a", "t", BUY, "1", "100")
    assert kinds(reps) == [
        ("a", "t", "NEW", "NEW"),
        ("a", "t", "TRADE", "PARTIALLY_FILLED"),
        ("b", "other", "TRADE", "FILLED"),
        ("a", "t", "EXPIRED", "EXPIRED"),
    ]
    assert reps[-1].reason == "Self-trade prevention."
    assert e.depth(5)[1] == [(P("100"), P("0.2"))]
    assert e.depth(5)[0] == []
    assert [o.client_order_id for o in e.open_orders("a")] == ["mine"]
    assert bal(e, "a", "USDT")[1] == 0  # the expired taker keeps nothing locked


def test_stp_expire_maker():
    e = engine("expire_maker")
    sub(e, "a", "mine", SELL, "0.1", "100")
    sub(e, "c", "behind", SELL, "0.1", "100")
    reps = sub(e, "a", "t", BUY, "0.1", "100")
    assert kinds(reps) == [
        ("a", "t", "NEW", "NEW"),
        ("a", "mine", "EXPIRED", "EXPIRED"),
        ("a", "t", "TRADE", "FILLED"),
        ("c", "behind", "TRADE", "FILLED"),
    ]
    assert e.open_orders("a") == [] and e.depth(5) == ([], [])
    assert bal(e, "a", "BTC") == (P("10.1"), 0)


def test_stp_none_trades_with_itself_paying_both_fees():
    e = engine("none")
    sub(e, "a", "mine", SELL, "0.1", "100")
    reps = sub(e, "a", "t", BUY, "0.1", "100")
    assert kinds(reps)[1:] == [("a", "t", "TRADE", "FILLED"), ("a", "mine", "TRADE", "FILLED")]
    fees = numbers.fee(P("10"), MAKER_PPM) + numbers.fee(P("10"), TAKER_PPM)
    assert bal(e, "a", "USDT") == (P("1000000") - fees, 0)
    assert bal(e, "a", "BTC") == (P("10"), 0)


def test_stp_fok_counts_own_orders_out():
    e = engine("expire_taker")
    sub(e, "a", "mine", SELL, "0.1", "100")
    sub(e, "b", "other", SELL, "1", "100")
    reps = sub(e, "a", "fok", BUY, "0.5", "100", tif=FOK)
    assert [r.exec_type for r in reps] == ["NEW", "EXPIRED"]
    assert e.depth(5)[1] == [(P("100"), P("1.1"))]


def test_unknown_stp_mode():
    with pytest.raises(ValueError):
        MatchingEngine(instrument(), stp="decrement")


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("qty", "price", "why"),
    [
        ("0.1", "100.005", "tick"),
        ("0.12345", "100", "lot"),
        ("0.0001", "100000", "minimum"),  # below min_qty 0.0002
        ("0.01", "100", "notional"),  # 1 USDT < 5
        ("0", "100", "positive"),
        ("0.1", "0", "positive"),
    ],
)
def test_filters_rejected_with_reason(qty, price, why):
    e = engine()
    reps = sub(e, "a", "x", BUY, qty, price)
    assert kinds(reps) == [("a", "x", "REJECTED", "REJECTED")]
    assert why in reps[0].reason
    assert reps[0].reason == instrument().check_order(P(price), P(qty))
    assert bal(e, "a", "USDT") == (P("1000000"), 0)
    assert e.depth(5) == ([], [])


def test_duplicate_client_order_id_among_open_orders():
    e = engine()
    sub(e, "a", "dup", BUY, "0.1", "100")
    r = sub(e, "a", "dup", BUY, "0.1", "99")
    assert kinds(r) == [("a", "dup", "REJECTED", "REJECTED")] and r[0].reason == "Duplicate order sent."
    assert e.depth(5)[0] == [(P("100"), P("0.1"))]
    assert sub(e, "b", "dup", BUY, "0.1", "99")[0].exec_type == "NEW"  # another account may use it
    e.cancel("a", client_order_id="dup", ts_ns=2)
    assert sub(e, "a", "dup", BUY, "0.1", "98")[0].exec_type == "NEW"  # reusable once done
    assert e.order("a", client_order_id="dup").price == P("98")


# ---------------------------------------------------------------- ids, history, queries


def test_ids_monotonic_and_unique_and_trades_of():
    e = engine()
    ids = [sub(e, "a", f"m{i}", SELL, "0.1", str(100 + i))[0].order_id for i in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5
    reps = sub(e, "b", "t", BUY, "0.5", "104")
    tids = [r.trade_id for r in reps if r.exec_type == "TRADE" and not r.is_maker]
    assert tids == sorted(tids) and len(set(tids)) == 5
    assert reps[0].order_id > ids[-1]
    mine = e.trades_of("a")
    assert [r.trade_id for r in mine] == tids and all(r.is_maker for r in mine)
    assert [r.trade_id for r in e.trades_of("b", since_trade_id=tids[2])] == tids[3:]
    public = e.drain_trades()
    assert [t.trade_id for t in public] == tids
    assert all(t.aggressor is BUY and t.ts_ns == 1 for t in public)
    assert [(t.price, t.qty) for t in public] == [(P(str(100 + i)), P("0.1")) for i in range(5)]
    assert e.drain_trades() == []
    assert e.last_trade_id == tids[-1]


def test_order_history_is_bounded():
    e = MatchingEngine(instrument(), history=3)
    e.create_account("a", {"USDT": P("100000")})
    for i in range(5):
        sub(e, "a", f"o{i}", BUY, "0.1", "100")
        e.cancel("a", client_order_id=f"o{i}", ts_ns=1)
    assert e.order("a", client_order_id="o1") is None
    assert e.order("a", client_order_id="o4").status == "CANCELED"
    oid = e.order("a", client_order_id="o2").order_id
    assert e.order("a", order_id=oid).client_order_id == "o2"


def test_order_lookup_by_client_id_finds_the_latest_done_order():
    e = engine()
    for i, price in enumerate(("100", "99", "98")):
        sub(e, "a", "same", BUY, "0.1", price, ts=i)
        e.cancel("a", client_order_id="same", ts_ns=10 + i)
    sub(e, "b", "same", BUY, "0.1", "97", ts=20)  # another account's, newer
    o = e.order("a", client_order_id="same")
    assert (o.price, o.status, o.created_ns, o.updated_ns) == (P("98"), "CANCELED", 2, 12)
    assert e.order("b", client_order_id="same").status == "NEW"


def test_queries_return_copies():
    e = engine()
    sub(e, "a", "x", BUY, "0.1", "100")
    o = e.open_orders("a")[0]
    o.remaining = 0
    o.price = 1
    assert e.depth(1)[0] == [(P("100"), P("0.1"))]
    assert e.open_orders("a")[0].remaining == P("0.1")
    b = e.balances("a")
    b["USDT"].free = 0
    assert e.balances("a")["USDT"].free > 0


def test_report_stream_carries_fills_caused_by_other_accounts():
    e = MatchingEngine(instrument())
    e.create_account("mm", {"BTC": P("1"), "USDT": P("100000")}, report_stream=True)
    e.create_account("flow", {}, unlimited=True)
    e.create_account("quiet", {"USDT": P("100000")})
    own = sub(e, "mm", "q1", SELL, "0.5", "100")
    own += sub(e, "mm", "q2", BUY, "0.5", "90")
    assert sub(e, "mm", "q1", SELL, "0.5", "101")[0].exec_type == "REJECTED"  # duplicate: answer only
    assert e.cancel("mm", client_order_id="nope", ts_ns=2)[0].exec_type == "CANCEL_REJECTED"
    theirs = sub(e, "flow", "t", BUY, "0.2", "100", tif=IOC, ts=3)
    own += e.cancel("mm", client_order_id="q2", ts_ns=4)
    stream = e.drain_reports("mm")
    assert [(r.client_order_id, r.exec_type) for r in stream] == [
        ("q1", "NEW"),
        ("q2", "NEW"),
        ("q1", "TRADE"),
        ("q2", "CANCELED"),
    ]
    assert stream[2] is [r for r in theirs if r.account_id == "mm"][0]
    assert e.drain_reports("mm") == []
    with pytest.raises(KeyError):
        e.drain_reports("quiet")


# ---------------------------------------------------------------- market-data feed and invariants


def _random_stream(e: MatchingEngine, rng: random.Random, n: int, accounts=("a", "b", "c"), sink=None):
    """A seeded mix of adds, cancels and crossing orders; yields after each, reports go to ``sink``."""
    sink = [] if sink is None else sink
    tick = e.instrument.tick_size
    lot = e.instrument.lot_size
    live: list[tuple[str, str]] = []
    for i in range(n):
        acct = rng.choice(accounts)
        side = BUY if rng.random() < 0.5 else SELL
        u = rng.random()
        if u < 0.55:
            off = rng.randint(1, 30)
            price = (10_000 - off if side is BUY else 10_000 + off) * tick
            qty = rng.randint(2, 40) * lot * 100
            sink += e.submit(acct, f"o{i}", side, qty, price, LIMIT, GTC, rng.random() < 0.1, i)
            live.append((acct, f"o{i}"))
        elif u < 0.8 and live:
            a, cid = live.pop(rng.randrange(len(live)))
            sink += e.cancel(a, client_order_id=cid, ts_ns=i)
        else:
            tif = rng.choice((GTC, IOC, FOK))
            qty = rng.randint(2, 80) * lot * 100
            if rng.random() < 0.2:
                sink += e.submit(acct, f"o{i}", side, qty, None, MARKET, IOC if tif is GTC else tif, False, i)
            else:
                price = (10_000 + rng.randint(-5, 20) * (1 if side is BUY else -1)) * tick
                sink += e.submit(acct, f"o{i}", side, qty, price, LIMIT, tif, False, i)
                live.append((acct, f"o{i}"))
        yield i


def test_book_change_feed_rebuilds_depth():
    for stp in ("expire_taker", "expire_maker", "none"):
        e = engine(stp)
        rng = random.Random(42)
        books = {BUY: {}, SELL: {}}
        last_update = 0
        for i in _random_stream(e, rng, 3000):
            if i % rng.randint(1, 25) == 0:
                changes = e.drain_book_changes()
                keys = [(s, p) for s, p, _ in changes]
                assert len(keys) == len(set(keys)), "changes are coalesced per (side, price)"
                for side, price, size in changes:
                    assert size >= 0
                    if size:
                        books[side][price] = size
                    else:
                        books[side].pop(price, None)
                assert e.update_id == last_update + (1 if changes else 0)
                last_update = e.update_id
                bids, asks = e.depth(10_000)
                assert bids == sorted(books[BUY].items(), reverse=True)
                assert asks == sorted(books[SELL].items())
                if bids and asks:
                    assert bids[0][0] < asks[0][0], "book crossed"
        assert last_update > 100


def test_every_report_and_order_has_all_its_fields():
    """The engine builds reports and orders field by field, not through their constructors: none is left unset."""
    names = [f.name for f in dataclasses.fields(ExecReport)]
    for stp in ("expire_taker", "expire_maker", "none"):
        e = engine(stp)
        e.create_account("u", {}, unlimited=True, report_stream=True)
        reports: list = []
        for _ in _random_stream(e, random.Random(5), 600, accounts=("a", "b", "u"), sink=reports):
            pass
        reports += e.trades_of("a") + e.drain_reports("u")
        assert {r.exec_type for r in reports} >= {"NEW", "TRADE", "CANCELED", "EXPIRED", "REJECTED", "CANCEL_REJECTED"}
        for r in reports:
            assert type(r) is ExecReport
            assert ExecReport(*(getattr(r, n) for n in names)) == r
        for acct in ("a", "b", "u"):
            for o in e.open_orders(acct):
                assert all(hasattr(o, n) for n in SimOrder.__slots__)
        for r in reports[-50:]:
            if r.order_id:
                o = e.order(r.account_id, order_id=r.order_id)
                assert o is not None and repr(o)


def test_orders_agree_with_their_reports_on_random_stream():
    """Each order's record (cum_qty, cum_quote, fees, status, times, lock) is what its reports add up to."""
    for stp in ("expire_taker", "expire_maker", "none"):
        e = engine(stp, maker_ppm=-30, taker_ppm=700)
        e.create_account("u", {}, unlimited=True)
        reports: list = []
        for _ in _random_stream(e, random.Random(11), 2500, accounts=("a", "b", "c", "u"), sink=reports):
            pass
        mine: dict = {}
        for r in reports:
            if r.order_id:
                mine.setdefault((r.account_id, r.order_id), []).append(r)
        assert len(mine) > 1000
        for (acct, oid), reps in mine.items():
            o = e.order(acct, order_id=oid)
            first, last = reps[0], reps[-1]
            fills = [r for r in reps if r.exec_type == "TRADE"]
            assert first.exec_type == "NEW" and o.created_ns == first.ts_ns
            assert (o.client_order_id, o.side, o.price, o.qty) == (
                first.client_order_id, first.side, first.price, first.qty
            )
            assert o.status == last.status and o.updated_ns == last.ts_ns
            assert o.cum_qty == sum(r.last_qty for r in fills) == last.cum_qty
            assert o.cum_quote == sum(numbers.mul(r.last_price, r.last_qty) for r in fills) == last.cum_quote
            assert o.fees == sum(r.fee for r in fills)
            for r in fills:
                rate = -30 if r.is_maker else 700
                assert r.fee == numbers.fee(numbers.mul(r.last_price, r.last_qty), rate)
            if o.is_open:
                assert o.remaining == o.qty - o.cum_qty > 0
            else:
                assert o.remaining == 0 and o.locked == 0
                assert last.exec_type in ("TRADE", "CANCELED", "EXPIRED")
                assert (last.exec_type == "TRADE") == (o.status == "FILLED") == (o.cum_qty == o.qty)


def test_invariants_conservation_and_locks_on_random_stream():
    e = engine("expire_maker")
    start = {a: e.balances(a) for a in ("a", "b", "c")}
    trade_ids: list[int] = []
    reports: list = []
    for _ in _random_stream(e, random.Random(7), 3000, sink=reports):
        pass
    fills = [r for r in reports if r.exec_type == "TRADE"]
    fees = sum(r.fee for r in fills)
    assert {r.exec_type for r in reports} >= {"NEW", "TRADE", "CANCELED", "EXPIRED", "REJECTED", "CANCEL_REJECTED"}
    for t in e.drain_trades():
        trade_ids.append(t.trade_id)
    assert trade_ids == sorted(set(trade_ids)) and len(trade_ids) > 100
    assert sorted({r.trade_id for r in fills}) == trade_ids
    assert sum(1 for r in fills if r.is_maker) == sum(1 for r in fills if not r.is_maker) == len(trade_ids)
    total = {asset: sum(e.balances(a)[asset].total for a in ("a", "b", "c")) for asset in ("BTC", "USDT")}
    start_total = {asset: sum(start[a][asset].total for a in ("a", "b", "c")) for asset in ("BTC", "USDT")}
    assert total["BTC"] == start_total["BTC"]
    assert total["USDT"] + fees == start_total["USDT"]
    for acct in ("a", "b", "c"):
        opens = e.open_orders(acct)
        b = e.balances(acct)
        assert b["BTC"].locked == sum(o.remaining for o in opens if o.side is SELL)
        assert b["USDT"].locked == sum(lock_buy(o.price, o.remaining) for o in opens if o.side is BUY)
        assert b["BTC"].free >= 0 and b["USDT"].free >= 0
        for o in opens:
            assert o.remaining == o.qty - o.cum_qty > 0
    bids, asks = e.depth(1)
    assert not (bids and asks) or bids[0][0] < asks[0][0]
