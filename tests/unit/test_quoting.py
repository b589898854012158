"""Quote maths of the market-making strategy: skew, spread, rounding, limits, volatility."""

from __future__ import annotations

import math
import random

import pytest

from hft.model import Instrument, Side
from hft.numbers import SCALE, mul, parse
from strategies.quoting import (
    Quote,
    QuoteParams,
    VenueQuoteInput,
    VolatilityEstimator,
    compute_quotes,
    micro_price,
    mid_price,
    model_quote,
    needs_refresh,
    optimal_half_spread,
    reservation_price,
)

P = parse
FAIR = P("60000")
BIG = P("1000000")  # a limit that never binds


def inst(venue: str = "a", tick: str = "0.01", lot: str = "0.00001", min_qty: str = "0", min_notional: str = "0"):
    return Instrument(
        venue=venue,
        symbol="BTC/USDT",
        base="BTC",
        quote="USDT",
        tick_size=P(tick),
        lot_size=P(lot),
        min_qty=P(min_qty),
        min_notional=P(min_notional),
    )


def venue(name: str = "a", position: int = 0, max_position: int = BIG, **kw) -> VenueQuoteInput:
    return VenueQuoteInput(name, inst(name, **kw), position, max_position)


def sigma_of(bps: float, fair: int = FAIR) -> float:
    """Volatility in fixed-point price units per √s for a volatility in bp per √s."""
    return bps * 1e-4 * fair


def params(**kw) -> QuoteParams:
    kw.setdefault("order_size", P("0.01"))
    return QuoteParams(**kw)


def side_prices(quotes: list[Quote], side: Side, venue_name: str | None = None) -> list[int]:
    return [q.price for q in sorted(quotes, key=lambda q: q.level) if q.side is side and venue_name in (None, q.venue)]


def top(quotes: list[Quote]) -> tuple[int, int]:
    return side_prices(quotes, Side.BUY)[0], side_prices(quotes, Side.SELL)[0]


# --------------------------------------------------------------------------- model and units


def test_default_parameters_quote_a_few_bps_for_btc():
    p = params()
    bp = FAIR * 1e-4
    r0, half = model_quote(FAIR, sigma_of(1.0), 0, p)
    assert r0 == FAIR
    # γσ²T + (2/γ)·ln(1 + γ/k) = 0.1·1·30 + 20·ln(1.1) bp
    assert 2 * half / bp == pytest.approx(3 + 20 * math.log(1.1))
    r1, _ = model_quote(FAIR, sigma_of(1.0), p.order_size, p)
    assert (FAIR - r1) / bp == pytest.approx(3.0)  # skew per order_size of inventory
    bid, ask = top(compute_quotes(FAIR, sigma_of(1.0), 0, [venue()], p, max_position_total=BIG))
    assert 4.5 < (ask - bid) / bp < 5.5


def test_formulas_are_avellaneda_stoikov_in_price_units_with_gamma_and_k_per_bp():
    fair, sigma, q, gamma, k, horizon = 60000.0, 6.0, 1.7, 0.1, 1.0, 30.0
    bp = fair * 1e-4
    g_price, k_price = gamma / bp, k / bp  # γ and k per price unit
    assert reservation_price(fair, q, gamma, sigma, horizon) == pytest.approx(fair - q * g_price * sigma**2 * horizon)
    total = g_price * sigma**2 * horizon + 2 / g_price * math.log(1 + g_price / k_price)
    assert 2 * optimal_half_spread(fair, gamma, sigma, horizon, k) == pytest.approx(total)


def test_model_quote_is_the_reservation_price_and_half_spread_inside_the_clamps():
    p = params(min_spread_bps=0.1, max_spread_bps=1000)
    for position, bps in ((0, 1.0), (int(3.5 * p.order_size), 2.0), (-int(1.2 * p.order_size), 0.7)):
        sigma = sigma_of(bps)
        q = position / p.order_size
        r, half = model_quote(FAIR, sigma, position, p)
        assert r == pytest.approx(reservation_price(FAIR, q, p.risk_aversion, sigma, p.horizon_s), rel=1e-12)
        assert half == pytest.approx(
            optimal_half_spread(FAIR, p.risk_aversion, sigma, p.horizon_s, p.arrival_intensity), rel=1e-12
        )


def test_quotes_relative_to_fair_do_not_depend_on_the_price_unit():
    p = params()
    for fair in (60000.0, 0.35, P("60000"), P("0.35")):
        r, half = model_quote(fair, sigma_of(2.0, fair), int(2.5 * p.order_size), p)
        assert (fair - r) / fair * 1e4 == pytest.approx(2.5 * 0.1 * 4 * 30)
        assert 2 * half / fair * 1e4 == pytest.approx(0.1 * 4 * 30 + 20 * math.log(1.1))


def test_invalid_parameters_are_rejected():
    for bad in (
        {"order_size": 0},
        {"levels": 0},
        {"risk_aversion": 0.0},
        {"arrival_intensity": -1.0},
        {"min_spread_bps": 5.0, "max_spread_bps": 4.0},
        {"level_spacing_bps": -1.0},
    ):
        with pytest.raises(ValueError):
            params(**bad)
    with pytest.raises(ValueError):
        model_quote(0, 1.0, 0, params())


# --------------------------------------------------------------------------- skew and spread


def test_long_inventory_lowers_both_quotes_and_short_raises_them():
    p = params()
    sigma = sigma_of(1.0)
    flat_bid, flat_ask = top(compute_quotes(FAIR, sigma, 0, [venue()], p, max_position_total=BIG))
    prev = None
    for steps in range(-6, 7):
        position = steps * p.order_size // 2
        bid, ask = top(compute_quotes(FAIR, sigma, position, [venue()], p, max_position_total=BIG))
        if position > 0:
            assert bid < flat_bid and ask < flat_ask
        elif position < 0:
            assert bid > flat_bid and ask > flat_ask
        if prev is not None:  # monotone: more inventory, lower quotes
            assert bid < prev[0] and ask < prev[1]
        prev = bid, ask


def test_spread_widens_with_volatility():
    p = params(min_spread_bps=0.0, max_spread_bps=1000.0)
    spreads = []
    for bps in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0):
        bid, ask = top(compute_quotes(FAIR, sigma_of(bps), 0, [venue()], p, max_position_total=BIG))
        spreads.append(ask - bid)
    assert all(a < b for a, b in zip(spreads, spreads[1:])), spreads


def test_spread_widens_with_risk_aversion():
    spreads = []
    for gamma in (0.02, 0.05, 0.1, 0.2, 0.5, 1.0):
        p = params(risk_aversion=gamma, min_spread_bps=0.0, max_spread_bps=1000.0)
        bid, ask = top(compute_quotes(FAIR, sigma_of(1.0), 0, [venue()], p, max_position_total=BIG))
        spreads.append(ask - bid)
    assert all(a < b for a, b in zip(spreads, spreads[1:])), spreads


def test_spread_is_clamped_to_min_and_max():
    tick = P("0.01")
    bp = FAIR // 10_000
    # σ = 0 and heavy flow: the model spread is (2/γ)·ln(1 + γ/k) ≈ 0.02 bp, below the floor.
    p = params(arrival_intensity=100.0, min_spread_bps=1.5, max_spread_bps=20.0)
    bid, ask = top(compute_quotes(FAIR, 0.0, 0, [venue()], p, max_position_total=BIG))
    assert 1.5 * bp <= ask - bid <= 1.5 * bp + 2 * tick
    # A volatility storm: capped at the ceiling.
    bid, ask = top(compute_quotes(FAIR, sigma_of(50.0), 0, [venue()], p, max_position_total=BIG))
    assert 20 * bp <= ask - bid <= 20 * bp + 2 * tick


def test_minimum_spread_holds_for_any_inventory_and_venue():
    rng = random.Random(7)
    for _ in range(300):
        p = params(min_spread_bps=rng.choice([0.5, 2.0, 5.0]), levels=rng.randint(1, 3))
        fair = P(str(rng.randint(1000, 90000)))
        tick = rng.choice(["0.01", "0.1", "1", "5"])
        position = rng.randint(-5, 5) * p.order_size
        quotes = compute_quotes(fair, sigma_of(rng.uniform(0, 3), fair), position, [venue(tick=tick)], p, BIG)
        bid, ask = top(quotes)
        assert (ask - bid) * 10_000 >= p.min_spread_bps * fair


def test_extreme_inventory_skew_is_capped_so_the_reducing_side_stays_near_fair():
    p = params(order_size=P("1"), max_spread_bps=50.0)
    bp = FAIR // 10_000
    for sign in (1, -1):
        # 40 order sizes at 5 bp/√s would skew by 40·0.1·25·30 = 3000 bp uncapped.
        quotes = compute_quotes(FAIR, sigma_of(5.0), sign * P("40"), [venue()], p, max_position_total=P("41"))
        r, half = model_quote(FAIR, sigma_of(5.0), sign * P("40"), p)
        assert r == pytest.approx(FAIR - sign * 50 * bp)
        bid, ask = top(quotes)
        if sign > 0:
            assert FAIR - 50 * bp < ask < FAIR
        else:
            assert FAIR < bid < FAIR + 50 * bp


def test_no_quote_at_a_non_positive_price():
    # A 20,000 bp skew cap lets r go below zero on a 1 USDT asset: those quotes are dropped.
    p = params(order_size=P("1"), max_spread_bps=20_000.0, levels=3, level_spacing_bps=5000.0)
    fair = P("1")
    quotes = compute_quotes(fair, sigma_of(50.0, fair), P("50"), [venue(tick="0.0001")], p, BIG)
    assert quotes and all(q.price > 0 for q in quotes)
    assert {q.side for q in quotes} == {Side.SELL}
    # r = −1, half spread 0.375, spacing 0.5: asks at −0.625, −0.125, +0.375.
    assert [(q.level, q.price) for q in quotes] == [(2, P("0.3751"))]
    # On a tick of 1 the level-0 ask rounds up to exactly 0: dropped too; deeper levels stay a tick apart.
    quotes = compute_quotes(fair, sigma_of(50.0, fair), P("50"), [venue(tick="1")], p, BIG)
    assert [(q.side, q.level, q.price) for q in quotes] == [(Side.SELL, 1, P("1")), (Side.SELL, 2, P("2"))]


# --------------------------------------------------------------------------- levels, ticks and lots


def test_levels_are_spaced_and_ordered():
    p = params(levels=4, level_spacing_bps=2.0)
    quotes = compute_quotes(FAIR, sigma_of(1.0), 0, [venue()], p, max_position_total=BIG)
    bids, asks = side_prices(quotes, Side.BUY), side_prices(quotes, Side.SELL)
    assert sorted(q.level for q in quotes if q.side is Side.BUY) == [0, 1, 2, 3]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
    spacing = 2 * FAIR // 10_000
    tick = P("0.01")
    for outer, inner in zip(bids[1:], bids):
        assert abs((inner - outer) - spacing) <= tick
    for inner, outer in zip(asks, asks[1:]):
        assert abs((outer - inner) - spacing) <= tick


def test_levels_stay_a_tick_apart_when_spacing_is_below_the_tick():
    p = params(levels=3, level_spacing_bps=0.0)
    tick = P("5")
    quotes = compute_quotes(FAIR, sigma_of(1.0), 0, [venue(tick="5")], p, max_position_total=BIG)
    bids, asks = side_prices(quotes, Side.BUY), side_prices(quotes, Side.SELL)
    assert [a - b for a, b in zip(bids, bids[1:])] == [tick, tick]
    assert [b - a for a, b in zip(asks, asks[1:])] == [tick, tick]


def test_prices_on_tick_rounded_passively_and_never_crossed():
    rng = random.Random(11)
    for _ in range(500):
        fair = P(str(rng.randint(1, 100000))) + rng.randint(0, SCALE - 1)
        p = params(
            order_size=P("1"),
            levels=rng.randint(1, 4),
            level_spacing_bps=rng.choice([0.0, 0.3, 2.0, 10.0]),
            min_spread_bps=rng.choice([0.0, 1.0]),
            risk_aversion=rng.choice([0.01, 0.1, 1.0]),
        )
        sigma = sigma_of(rng.uniform(0, 5), fair)
        position = P(str(rng.randint(-4, 4)))
        # venues on one tick share a price ladder, on different ticks each has its own
        ticks = rng.choice([["0.01"] * 3, ["0.01", "0.5", "0.01"], ["0.00001", "0.1", "10"], ["1", "1", "0.5"]])
        venues = [venue(n, tick=t) for n, t in zip("abc", ticks)]
        quotes = compute_quotes(fair, sigma, position, venues, p, max_position_total=BIG)
        r, half = model_quote(fair, sigma, position, p)
        spacing = p.level_spacing_bps * fair * 1e-4
        for v in venues:
            mine = [q for q in quotes if q.venue == v.venue]
            tick = v.instrument.tick_size
            for q in mine:
                assert q.price % tick == 0 and q.price > 0
                if q.side is Side.BUY:
                    model = r - half - q.level * spacing
                    assert q.price <= model
                    if q.level == 0:
                        assert q.price == v.instrument.round_price(math.floor(model), Side.BUY)
                else:
                    model = r + half + q.level * spacing
                    assert q.price >= model
                    if q.level == 0:
                        assert q.price == v.instrument.round_price(math.ceil(model), Side.SELL)
            bids, asks = side_prices(mine, Side.BUY), side_prices(mine, Side.SELL)
            if bids and asks:
                assert max(bids) < min(asks)


def test_touching_quotes_are_widened_by_a_tick_on_the_side_that_adds_inventory():
    # σ = 0 and absurdly heavy flow: the model spread is ~1e-10 fixed-point units, so both
    # sides round onto the same tick; the quote that would add to inventory steps back.
    p = params(order_size=P("1"), arrival_intensity=1e15, min_spread_bps=0.0)
    tick = P("1")
    fair = P("100")
    flat = compute_quotes(fair, 0.0, 0, [venue(tick="1")], p, max_position_total=BIG)
    assert top(flat) == (fair, fair + tick)
    long = compute_quotes(fair, 0.0, P("1"), [venue(tick="1")], p, max_position_total=BIG)
    assert top(long) == (fair - tick, fair)


def test_quantities_on_lot_and_above_venue_minimums():
    rng = random.Random(5)
    for _ in range(500):
        lot = rng.choice(["0.00001", "0.001", "0.01", "0.3"])
        min_qty = rng.choice(["0", "0.001", "0.05"])
        min_notional = rng.choice(["0", "5", "100"])
        v = venue(lot=lot, min_qty=min_qty, min_notional=min_notional, max_position=P(str(rng.uniform(0, 0.2))[:8]))
        p = params(order_size=P(str(rng.uniform(0.0001, 0.1))[:8]), levels=rng.randint(1, 3))
        quotes = compute_quotes(FAIR, sigma_of(1.0), 0, [v], p, max_position_total=BIG)
        for q in quotes:
            assert q.qty % v.instrument.lot_size == 0
            assert 0 < q.qty <= p.order_size
            assert v.instrument.check_order(q.price, q.qty) is None


def test_full_size_is_quoted_when_nothing_binds():
    p = params(order_size=P("0.012345"), levels=3)
    quotes = compute_quotes(FAIR, sigma_of(1.0), 0, [venue(n, lot="0.001") for n in "abc"], p, BIG)
    assert len(quotes) == 3 * 3 * 2
    assert {q.qty for q in quotes} == {P("0.012")}  # truncated to the lot, never rounded up


def test_level_dropped_below_min_qty_or_min_notional():
    p = params(order_size=P("1"), levels=2)
    # Room for 1.25: level 0 takes 1.0, level 1 would be 0.2 (lot 0.1) < min_qty 0.3.
    quotes = compute_quotes(FAIR, 0.0, 0, [venue(lot="0.1", min_qty="0.3", max_position=P("1.25"))], p, BIG)
    assert [(q.side, q.level, q.qty) for q in quotes] == [(Side.BUY, 0, P("1")), (Side.SELL, 0, P("1"))]
    # 0.0001 BTC at 60,000 is 6 USDT: under a 10 USDT minimum notional nothing is quoted.
    tiny = params(order_size=P("0.0001"))
    assert compute_quotes(FAIR, 0.0, 0, [venue(min_notional="10")], tiny, BIG) == []
    assert len(compute_quotes(FAIR, 0.0, 0, [venue(min_notional="5")], tiny, BIG)) == 4


# --------------------------------------------------------------------------- position limits


def test_headroom_is_used_cumulatively_over_levels():
    p = params(order_size=P("1"), levels=3)
    quotes = compute_quotes(FAIR, 0.0, 0, [venue(max_position=P("1.5"))], p, BIG)
    assert [q.qty for q in quotes if q.side is Side.BUY] == [P("1"), P("0.5")]
    assert [q.qty for q in quotes if q.side is Side.SELL] == [P("1"), P("0.5")]


def test_total_headroom_goes_to_inner_levels_first_across_venues():
    p = params(order_size=P("1"), levels=2)
    venues = [venue(n) for n in "abc"]
    quotes = compute_quotes(FAIR, 0.0, 0, venues, p, max_position_total=P("2.5"))
    # Flat, so both sides have 2.5 of total room: every venue's level 0 first, no level 1.
    # Output stays grouped by venue, then level, bid before ask.
    assert [(q.venue, q.level, q.side, q.qty) for q in quotes] == [
        ("a", 0, Side.BUY, P("1")),
        ("a", 0, Side.SELL, P("1")),
        ("b", 0, Side.BUY, P("1")),
        ("b", 0, Side.SELL, P("1")),
        ("c", 0, Side.BUY, P("0.5")),
        ("c", 0, Side.SELL, P("0.5")),
    ]
    # Long 2: 0.5 of buying room left and 4.5 of selling room.
    quotes = compute_quotes(FAIR, 0.0, P("2"), venues, p, max_position_total=P("2.5"))
    assert [(q.venue, q.level, q.qty) for q in quotes if q.side is Side.BUY] == [("a", 0, P("0.5"))]
    assert [(q.venue, q.level, q.qty) for q in quotes if q.side is Side.SELL] == [
        ("a", 0, P("1")),
        ("a", 1, P("1")),
        ("b", 0, P("1")),
        ("b", 1, P("0.5")),
        ("c", 0, P("1")),
    ]


def test_position_limits_hold_per_venue_and_in_total_after_full_fills():
    rng = random.Random(2024)
    checked_binding = 0
    for _ in range(3000):
        n = rng.randint(1, 4)
        order_size = rng.randint(1, 50) * P("0.001")
        max_total = rng.randint(0, 12) * order_size // 2 + rng.randint(0, 999) * P("0.000001")
        venues = []
        for i in range(n):
            max_v = rng.randint(0, 8) * order_size // 2 + rng.randint(0, 999) * P("0.000001")
            pos = rng.randint(-3 * max_v - 1, 3 * max_v + 1) // 2
            lot = rng.choice(["0.000001", "0.0001", "0.001", "0.007"])
            venues.append(venue(f"v{i}", position=pos, max_position=max_v, lot=lot, min_qty=rng.choice(["0", "0.002"])))
        position_total = sum(v.position for v in venues) + rng.randint(-2, 2) * order_size
        p = params(order_size=order_size, levels=rng.randint(1, 4))
        quotes = compute_quotes(FAIR, sigma_of(rng.uniform(0, 3)), position_total, venues, p, max_total)
        for v in venues:
            bought = sum(q.qty for q in quotes if q.venue == v.venue and q.side is Side.BUY)
            sold = sum(q.qty for q in quotes if q.venue == v.venue and q.side is Side.SELL)
            assert bought == 0 or v.position + bought <= v.max_position
            assert sold == 0 or v.position - sold >= -v.max_position
        bought = sum(q.qty for q in quotes if q.side is Side.BUY)
        sold = sum(q.qty for q in quotes if q.side is Side.SELL)
        assert bought == 0 or position_total + bought <= max_total
        assert sold == 0 or position_total - sold >= -max_total
        assert all(q.qty > 0 for q in quotes)
        room = min(max_total - position_total, sum(max(0, v.max_position - v.position) for v in venues))
        checked_binding += bought > 0 and room - bought < order_size
    assert checked_binding > 100  # the loop did exercise binding limits


@pytest.mark.parametrize("sign", [1, -1])
def test_at_a_venue_limit_only_the_reducing_side_is_quoted_there(sign):
    p = params(order_size=P("1"), levels=2)
    at_limit = venue("a", position=sign * P("3"), max_position=P("3"))
    other = venue("b", position=0, max_position=P("3"))
    quotes = compute_quotes(FAIR, sigma_of(1.0), sign * P("3"), [at_limit, other], p, max_position_total=P("10"))
    reducing = Side.SELL if sign > 0 else Side.BUY
    assert {q.side for q in quotes if q.venue == "a"} == {reducing}
    assert len([q for q in quotes if q.venue == "a"]) == 2
    assert {q.side for q in quotes if q.venue == "b"} == {Side.BUY, Side.SELL}


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("beyond", [0, 1])
def test_at_the_total_limit_only_the_reducing_side_is_quoted_anywhere(sign, beyond):
    p = params(order_size=P("1"), levels=2)
    venues = [venue(n, position=sign * P("2"), max_position=P("5")) for n in "abc"]
    total = sign * (P("6") + beyond * P("1"))
    quotes = compute_quotes(FAIR, sigma_of(1.0), total, venues, p, max_position_total=P("6"))
    reducing = Side.SELL if sign > 0 else Side.BUY
    assert quotes and {q.side for q in quotes} == {reducing}
    assert {q.venue for q in quotes} == {"a", "b", "c"}


# --------------------------------------------------------------------------- refresh


def test_needs_refresh_tolerance():
    price = P("60000")
    tol = 0.5  # bp: 3 USDT at 60,000
    assert not needs_refresh(price, P("0.01"), price, P("0.01"), tol)
    assert not needs_refresh(price, P("0.01"), price + P("2.99"), P("0.01"), tol)
    assert not needs_refresh(price, P("0.01"), price - P("3"), P("0.01"), tol)
    assert needs_refresh(price, P("0.01"), price + P("3.01"), P("0.01"), tol)
    assert needs_refresh(price, P("0.01"), price - P("3.01"), P("0.01"), tol)
    assert needs_refresh(price, P("0.01"), price, P("0.02"), tol)  # quantity changed
    assert needs_refresh(price, P("0.01"), price, P("0.00999"), tol)
    assert needs_refresh(price, P("0.01"), price + P("0.01"), P("0.01"), 0.0)


# --------------------------------------------------------------------------- volatility


def gbm_path(rng: random.Random, sigma_bps: float, seconds: float, mean_dt: float, irregular: bool = False):
    price, ts = 60000.0, 1_700_000_000_000_000_000
    s = sigma_bps * 1e-4
    t = 0.0
    while t < seconds:
        dt = rng.expovariate(1 / mean_dt) if irregular else mean_dt
        dt = max(dt, 1e-3)
        price *= math.exp(s * math.sqrt(dt) * rng.gauss(0.0, 1.0) - 0.5 * s * s * dt)
        t += dt
        yield round(price * SCALE), ts + round(t * 1e9)


@pytest.mark.parametrize(("true_bps", "initial_bps"), [(1.0, 5.0), (3.0, 1.0), (0.5, 0.5)])
def test_volatility_estimator_converges_on_gbm(true_bps, initial_bps):
    est = VolatilityEstimator(halflife_s=60.0, initial_bps_per_sqrt_s=initial_bps)
    assert est.sigma_bps == pytest.approx(initial_bps)
    for price, ts in gbm_path(random.Random(42), true_bps, seconds=1200, mean_dt=0.1):
        est.update(price, ts)
    assert est.sigma_bps == pytest.approx(true_bps, rel=0.1)
    fair = P("60000")
    assert est.sigma_price(fair) == pytest.approx(true_bps * 1e-4 * fair, rel=0.1)


def test_volatility_estimator_handles_irregular_sampling():
    for seed in (1, 2, 3):
        est = VolatilityEstimator(halflife_s=120.0, initial_bps_per_sqrt_s=10.0)
        for price, ts in gbm_path(random.Random(seed), 2.0, seconds=2400, mean_dt=0.5, irregular=True):
            est.update(price, ts)
        assert est.sigma_bps == pytest.approx(2.0, rel=0.1)


def test_volatility_estimator_ignores_zero_elapsed_and_bad_prices():
    est = VolatilityEstimator(halflife_s=30.0, initial_bps_per_sqrt_s=1.0)
    est.update(P("60000"), 1_000_000_000)
    est.update(P("61000"), 1_000_000_000)  # same timestamp: would be an infinite rate
    est.update(P("59000"), 999_000_000)  # out of order
    est.update(0, 2_000_000_000)
    assert est.samples == 0 and est.sigma_bps == pytest.approx(1.0)
    # The next valid update measures the return from the last accepted price (60000).
    est.update(P("60000"), 2_000_000_000)
    assert est.samples == 1 and est.sigma_bps < 1.0


def test_one_return_after_a_long_gap_carries_at_most_half_the_weight():
    est = VolatilityEstimator(halflife_s=10.0, initial_bps_per_sqrt_s=1.0)
    est.update(P("60000"), 0)
    est.update(P("60000"), 3_600_000_000_000)  # an hour later, unchanged: a zero-variance sample
    assert est.variance_per_s == pytest.approx(0.5 * (1e-4) ** 2)


def test_min_interval_samples_coarser_returns():
    est = VolatilityEstimator(halflife_s=60.0, initial_bps_per_sqrt_s=1.0, min_interval_s=1.0)
    for i in range(1, 10):
        est.update(P("60000") + i * P("1"), i * 100_000_000)  # every 0.1 s: all inside the first second
    assert est.samples == 0
    est.update(P("60010"), 1_100_000_000)  # 1 s after the first accepted price
    assert est.samples == 1


# --------------------------------------------------------------------------- fair price


def test_micro_price_between_bid_and_ask_leaning_toward_the_thin_side():
    rng = random.Random(3)
    for _ in range(2000):
        bid = P(str(rng.randint(100, 100000)))
        ask = bid + rng.randint(1, 1000) * P("0.01")
        bid_sz, ask_sz = rng.randint(1, 10**12), rng.randint(1, 10**12)
        mp = micro_price(bid, bid_sz, ask, ask_sz)
        mid = mid_price(bid, ask)
        assert bid <= mp <= ask
        if bid_sz > ask_sz:  # heavy bid, thin ask: closer to the ask
            assert mp >= mid
        elif bid_sz < ask_sz:
            assert mp <= mid + 1  # the mid is truncated, the micro-price too
    bid, ask = P("100"), P("101")
    assert micro_price(bid, P("9"), ask, P("1")) == P("100.9")
    assert micro_price(bid, P("1"), ask, P("9")) == P("100.1")
    assert micro_price(bid, P("5"), ask, P("5")) == mid_price(bid, ask) == P("100.5")
    assert micro_price(bid, 0, ask, 0) == P("100.5")
    assert mul(P("2"), micro_price(bid, P("3"), ask, P("1"))) == P("201.5")
