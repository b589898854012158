"""Synthetic background liquidity of the simulated venues (venues/sim/flow.py)."""

from __future__ import annotations

import random

from hft import numbers
from hft.model import Instrument, OrderType, Side, TimeInForce
from venues.sim.flow import FlowParams, TruePrice, VenueFlow
from venues.sim.matching import MatchingEngine

P = numbers.parse
T0 = 1_700_000_000_000_000_000
MS = 1_000_000
S = 1_000_000_000


def instrument() -> Instrument:
    return Instrument(
        venue="sim",
        symbol="BTC/USDT",
        base="BTC",
        quote="USDT",
        tick_size=P("0.01"),
        lot_size=P("0.00001"),
        min_qty=P("0.00001"),
        min_notional=P("5"),
        maker_fee_ppm=100,
        taker_fee_ppm=400,
    )


def venue(true_price: TruePrice, seed: int, params: FlowParams | None = None) -> tuple[MatchingEngine, VenueFlow]:
    e = MatchingEngine(instrument())
    return e, VenueFlow(e, true_price, params or FlowParams(), random.Random(seed))


def state(e: MatchingEngine, flow: VenueFlow):
    return (
        e.depth(1000),
        e.drain_book_changes(),
        e.drain_trades(),
        {a: e.balances(a) for a in e.accounts()},
        [(o.order_id, o.client_order_id, o.price, o.remaining) for a in e.accounts() for o in e.open_orders(a)],
        flow.noise_bps,
        dict(flow.stats),
    )


def mid(e: MatchingEngine) -> float:
    return (e.best_bid()[0] + e.best_ask()[0]) / 2 / numbers.SCALE


def test_same_seed_same_step_times_same_engine_state():
    def run(seed: int, step_ms_pattern: list[int]):
        tp = TruePrice(seed=seed)
        e, f = venue(tp, seed)
        f.seed_book(T0)
        t = T0
        for k in range(600):
            t += step_ms_pattern[k % len(step_ms_pattern)] * MS
            f.step(t)
        return state(e, f)

    a = run(5, [100])
    assert a == run(5, [100])
    assert a[2], "the flow traded"
    # the flow's events have their own timestamps: how step() is called does not matter
    assert run(5, [37, 163]) == a
    assert run(6, [100]) != a


def test_book_two_sided_after_seed():
    e, f = venue(TruePrice(seed=1), 1)
    f.seed_book(T0)
    bids, asks = e.depth(100)
    p = f.params
    assert len(bids) == p.levels and len(asks) == p.levels
    assert bids[0][0] < asks[0][0]
    centre = f.centre(T0)
    spread_bps = (asks[0][0] - bids[0][0]) / numbers.SCALE / centre * 1e4
    assert 2 * p.half_spread_bps - 0.1 < spread_bps < 2 * p.half_spread_bps + 0.1
    for price, size in bids + asks:
        assert size >= P("0.25") - P("0.00001") and price % e.instrument.tick_size == 0
    # every flow order passes the venue's filters
    assert all(e.instrument.check_order(pr, q) is None for _, _, pr, q in e.resting(p.account))


def test_taker_flow_fills_another_accounts_resting_order_within_a_minute():
    e, f = venue(TruePrice(seed=3), 3)
    f.seed_book(T0)
    e.create_account("mm", {"BTC": P("1"), "USDT": P("100000")}, report_stream=True)
    tick = e.instrument.tick_size
    bid = e.best_bid()[0] + tick
    ask = e.best_ask()[0] - tick
    assert bid < ask
    for cid, side, price in (("b", Side.BUY, bid), ("s", Side.SELL, ask)):
        reps = e.submit("mm", cid, side, P("0.01"), price, OrderType.LIMIT, TimeInForce.GTC, True, T0)
        assert reps[0].exec_type == "NEW"
    t = T0
    caused = []
    while t < T0 + 60 * S and not e.trades_of("mm"):
        t += 100 * MS
        caused += f.step(t)
    fills = e.trades_of("mm")
    assert fills, "no flow taker hit the market maker's quotes within a simulated minute"
    assert all(r.is_maker for r in fills)
    assert fills[0].client_order_id in ("b", "s")
    # the market maker learns about it from what step() returns and from its report stream
    assert caused == fills
    assert [r for r in e.drain_reports("mm") if r.exec_type == "TRADE"] == fills


def test_venues_with_their_own_noise_disagree_and_sometimes_cross():
    tp = TruePrice(seed=11)
    ea, fa = venue(tp, 101)
    eb, fb = venue(tp, 202)
    fa.seed_book(T0)
    fb.seed_book(T0)
    diffs = []
    crosses = 0
    t = T0
    for _ in range(300):
        t += S
        fa.step(t)
        fb.step(t)
        diffs.append((mid(ea) - mid(eb)) / tp.at(t) * 1e4)
        if ea.best_bid()[0] > eb.best_ask()[0] or eb.best_bid()[0] > ea.best_ask()[0]:
            crosses += 1
    assert max(abs(d) for d in diffs) > 3.0
    assert sum(abs(d) for d in diffs) / len(diffs) > 0.5
    assert crosses > 0
    # both follow the same true price: they never drift apart for long
    assert max(abs(d) for d in diffs) < 30


def test_without_noise_venues_track_the_true_price_closely():
    tp = TruePrice(seed=11)
    quiet = FlowParams(noise_bps=0.0)
    e, f = venue(tp, 101, quiet)
    f.seed_book(T0)
    t = T0
    worst = 0.0
    for _ in range(120):
        t += S
        f.step(t)
        worst = max(worst, abs(mid(e) / tp.at(t) - 1) * 1e4)
    assert worst < 5.0


def test_book_stays_sane_over_ten_minutes():
    tp = TruePrice(seed=4, volatility_bps=3.0)
    e, f = venue(tp, 4)
    f.seed_book(T0)
    t = T0
    p = f.params
    for k in range(600):
        t += S
        f.step(t)
        bb, ba = e.best_bid(), e.best_ask()
        assert bb is not None and ba is not None and bb[0] < ba[0]
        assert abs(mid(e) / f.centre(t) - 1) * 1e4 < 3 * p.half_spread_bps + 2 * p.level_spacing_bps
        n = len(e.resting(p.account))
        assert n <= 2 * p.max_orders_per_side + 10
    assert f.stats["taker_fills"] > 100
    assert abs(tp.at(t) / tp.start - 1) > 5e-4  # the price moved (3 bps/sqrt(s) over 10 minutes)


def test_true_price_path_independent_of_query_times():
    a = TruePrice(seed=9)
    b = TruePrice(seed=9)
    fine = [a.at(T0 + k * 10 * MS) for k in range(0, 3000)]
    coarse = {k: b.at(T0 + k * 10 * MS) for k in range(0, 3000, 70)}
    assert all(fine[k] == v for k, v in coarse.items())
    assert len(set(fine)) > 100
    # one step back in time gives the same grid value again
    assert a.at(T0 + 1000 * MS) == fine[100]
    # same seed and origin: the same path, whoever asks first and when
    late = TruePrice(seed=9, start_ns=T0)
    assert late.at(T0 + 2990 * MS) == fine[299]
    assert late.at(T0 + 5 * MS) == fine[0] == a.start == 60_000.0
    assert TruePrice(seed=10, start_ns=T0).at(T0 + 2990 * MS) != fine[299]
    arith = TruePrice(seed=9, geometric=False)
    assert arith.at(T0 + 60 * S) != a.at(T0 + 60 * S)
