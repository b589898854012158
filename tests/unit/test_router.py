"""The pure planner (hft.router) on hand-built books where the right split is known."""

from __future__ import annotations

import random

import pytest

from hft import numbers
from hft.book import ConsolidatedBook, VenueBook
from hft.model import Instrument, Side
from hft.numbers import SCALE, parse
from hft.router import (
    SKIP_DISABLED,
    SKIP_EMPTY,
    SKIP_EXCLUDED,
    SKIP_INACTIVE,
    SKIP_MINIMUM,
    SKIP_NO_BALANCE,
    SKIP_NO_HEADROOM,
    SKIP_NOT_IN_BOOK,
    ParentOrder,
    VenueInfo,
    best_single_venue,
    ideal_sweep,
    plan,
    snapshot_book,
)

BUY, SELL = Side.BUY, Side.SELL
TICK = parse("0.01")
LOT = parse("0.001")


def lv(*pairs: tuple[str, str]) -> list[tuple[int, int]]:
    return [(parse(p), parse(q)) for p, q in pairs]


def make_book(venues: dict[str, tuple[list, list]], fees: dict[str, int] | None = None) -> ConsolidatedBook:
    """venues: name -> (bids, asks) as lists of (price, size) strings."""
    cb = ConsolidatedBook("BTC/USDT")
    for name, (bids, asks) in venues.items():
        cb.add_venue(VenueBook(name, "BTC/USDT"), (fees or {}).get(name, 0))
        cb.apply_snapshot(name, lv(*bids), lv(*asks), 1, 0)
    return cb


def info(name: str, fee_ppm: int = 0, **kw) -> VenueInfo:
    kw.setdefault("tick_size", TICK)
    kw.setdefault("lot_size", LOT)
    return VenueInfo(name, taker_fee_ppm=fee_ppm, **kw)


def parent(side: Side, qty: str, limit: str | None = None, **kw) -> ParentOrder:
    return ParentOrder("BTC/USDT", side, parse(qty), None if limit is None else parse(limit), **kw)


def split(p) -> dict[str, tuple[str, str]]:
    """{venue: (qty, limit price)} as strings, for readable asserts."""
    return {c.venue: (numbers.to_str(c.qty), numbers.to_str(c.limit_price)) for c in p.children}


# -- known splits ------------------------------------------------------------------------------------


def test_buy_walks_the_merged_asks_and_splits_by_price():
    book = make_book({
        "a": ([("99", "5")], [("100", "1"), ("102", "1")]),
        "b": ([("99", "5")], [("101", "1"), ("103", "1")]),
        "c": ([("99", "5")], [("101.5", "2")]),
    })
    venues = [info("a"), info("b"), info("c")]
    p = plan(parent(BUY, "3"), book, venues)
    assert split(p) == {"a": ("1", "100"), "b": ("1", "101"), "c": ("1", "101.5")}
    assert p.qty == parse("3") and p.unfilled == 0
    assert p.notional == parse("302.5") and p.fees == 0
    assert [c.venue for c in p.children] == ["a", "b", "c"]  # venue order, not price order

    p = plan(parent(BUY, "4.5"), book, venues)
    # 100, 101, 101.5 x2, 102 x0.5
    assert split(p) == {"a": ("1.5", "102"), "b": ("1", "101"), "c": ("2", "101.5")}
    assert p.notional == parse("100") + parse("101") + parse("203") + parse("51")


def test_sell_walks_the_merged_bids_best_first():
    book = make_book({
        "a": ([("100", "1"), ("98", "5")], [("105", "1")]),
        "b": ([("99.5", "2"), ("97", "5")], [("105", "1")]),
    })
    p = plan(parent(SELL, "2.5"), book, [info("a"), info("b")])
    assert split(p) == {"a": ("1", "100"), "b": ("1.5", "99.5")}
    assert p.notional == parse("100") + parse("149.25")
    c = p.by_venue()["b"]
    assert c.side is SELL and c.levels == 1


def test_fee_reversal_better_raw_price_loses_to_lower_fee():
    # a: 100.00 at 10 bp = 100.10 all-in; b: 100.05 at 2 bp = 100.07 all-in -> b first
    book = make_book(
        {"a": ([("99.95", "1")], [("100.00", "1")]), "b": ([("99.90", "1")], [("100.05", "1")])},
        fees={"a": 1000, "b": 200},
    )
    venues = [info("a", 1000), info("b", 200)]
    p = plan(parent(BUY, "1"), book, venues)
    assert split(p) == {"b": ("1", "100.05")}
    assert p.fees == numbers.fee(parse("100.05"), 200)
    assert p.avg_price == parse("100.05") + numbers.fee(parse("100.05"), 200)
    # selling: a yields 99.95 * (1 - 10 bp) = 99.850..., b 99.90 * (1 - 2 bp) = 99.880... -> b
    p = plan(parent(SELL, "1"), book, venues)
    assert split(p) == {"b": ("1", "99.9")}
    assert p.all_in == parse("99.90") - numbers.fee(parse("99.90"), 200)
    # and with equal fees the raw price decides again
    p = plan(parent(BUY, "1"), book, [info("a", 200), info("b", 200)])
    assert split(p) == {"a": ("1", "100")}
    # the planner agrees with the book's own fee-adjusted view
    assert book.fee_adjusted_depth(SELL, 1)[0][3] == "b"


def test_fee_reversal_mid_walk_switches_venue_after_the_fee_gap_is_used_up():
    # a: no fee, deep book stepping 0.1; b: 10 bp fee (0.1 on 100), a flat 100.00 level
    book = make_book(
        {
            "a": ([("99", "1")], [("100.00", "1"), ("100.05", "1"), ("100.10", "1"), ("100.20", "1")]),
            "b": ([("99", "1")], [("100.00", "5")]),
        },
        fees={"a": 0, "b": 1000},
    )
    p = plan(parent(BUY, "4"), book, [info("a", 0), info("b", 1000)])
    # all-in: a 100.00, 100.05, 100.10 (tie with b's 100.10: a first, listed first), then b 100.10 < a 100.20
    assert split(p) == {"a": ("3", "100.1"), "b": ("1", "100")}


# -- constraints --------------------------------------------------------------------------------------


def test_balance_constrained_buy_takes_what_the_quote_balance_locks_at_the_limit_price():
    book = make_book({
        "cheap": ([("99", "1")], [("100", "1"), ("100.5", "1")]),
        "dear": ([("99", "1")], [("101", "10")]),
    }, fees={"cheap": 1000, "dear": 1000})
    # 150 USDT at cheap: at 100 + 10 bp a lot locks 0.1001 -> 1.498 lots... but walking to 100.5
    # re-prices the whole child at 100.5: floor(150 / (100.5 * 1.001)) = 1.491
    venues = [info("cheap", 1000, balance=parse("150")), info("dear", 1000)]
    p = plan(parent(BUY, "3"), book, venues)
    c = p.by_venue()["cheap"]
    assert (c.qty, c.limit_price) == (parse("1.491"), parse("100.5"))
    lock = numbers.mul(c.limit_price, c.qty)
    assert lock + numbers.fee(lock, 1000) <= parse("150")
    more = numbers.mul(c.limit_price, c.qty + LOT)
    assert more + numbers.fee(more, 1000) > parse("150")  # one lot more would not fit
    assert p.by_venue()["dear"].qty == parse("3") - parse("1.491")
    assert p.qty == parse("3")


def test_balance_below_one_level_keeps_the_venue_at_its_best_price():
    book = make_book({"a": ([("99", "1")], [("100", "1"), ("200", "5")]), "b": ([("99", "1")], [("150", "5")])})
    # 120 USDT buys 1 at 100 (limit 100); taking any of the 200 level would re-price the child at 200
    p = plan(parent(BUY, "2"), book, [info("a", balance=parse("120")), info("b")])
    assert split(p) == {"a": ("1", "100"), "b": ("1", "150")}


def test_balance_constrained_sell_is_capped_by_base_balance():
    book = make_book({"a": ([("100", "5")], [("101", "1")]), "b": ([("99", "5")], [("101", "1")])})
    p = plan(parent(SELL, "3"), book, [info("a", balance=parse("1.2345")), info("b", balance=parse("10"))])
    assert split(p) == {"a": ("1.234", "100"), "b": ("1.766", "99")}  # truncated to the lot


def test_position_headroom_and_max_notional_force_a_split():
    book = make_book({"a": ([("99", "9")], [("100", "9")]), "b": ([("99", "9")], [("100.5", "9")])})
    p = plan(parent(BUY, "2"), book, [info("a", max_qty=parse("0.75")), info("b")])
    assert split(p) == {"a": ("0.75", "100"), "b": ("1.25", "100.5")}
    # max notional per child at its limit price: 60 / 100 = 0.6
    p = plan(parent(BUY, "1.5"), book, [info("a", max_notional=parse("60")), info("b", max_notional=parse("60"))])
    assert split(p) == {"a": ("0.6", "100"), "b": ("0.597", "100.5")}  # 60 / 100.5 = 0.5970...
    assert p.unfilled == parse("0.303")


def test_no_headroom_or_no_balance_skips_the_venue_with_a_reason():
    book = make_book({"a": ([("99", "1")], [("100", "1")]), "b": ([("99", "1")], [("101", "1")])})
    p = plan(parent(BUY, "1"), book, [info("a", max_qty=0), info("b", balance=0)])
    assert p.children == [] and p.unfilled == parse("1")
    assert p.skipped == {"a": SKIP_NO_HEADROOM, "b": SKIP_NO_BALANCE}
    p = plan(parent(SELL, "1"), book, [info("a", balance=parse("0.0005")), info("b")])  # below one lot
    assert p.skipped == {"a": SKIP_NO_BALANCE} and split(p) == {"b": ("1", "99")}


# -- rounding ------------------------------------------------------------------------------------------


def test_lot_rounding_sends_the_remainder_to_a_venue_whose_lot_fits():
    book = make_book({"coarse": ([("99", "9")], [("100", "9")]), "fine": ([("99", "9")], [("100.1", "9")])})
    venues = [info("coarse", lot_size=parse("0.01")), info("fine", lot_size=parse("0.00001"))]
    p = plan(parent(BUY, "1.23456"), book, venues)
    assert split(p) == {"coarse": ("1.23", "100"), "fine": ("0.00456", "100.1")}
    assert p.qty == parse("1.23456")
    # a remainder below every lot stays unfilled, and says so
    p = plan(parent(BUY, "1.234567"), book, venues)
    assert p.qty == parse("1.23456") and p.unfilled == parse("0.000007")


def test_a_level_fraction_the_lot_leaves_out_carries_to_the_next_level():
    # sizes not multiples of the lot (e.g. inverse contracts converted to base)
    book = make_book({"a": ([("99", "1")], [("100", "0.0015"), ("100.01", "0.0015")])})
    p = plan(parent(BUY, "0.003"), book, [info("a")])
    assert split(p) == {"a": ("0.003", "100.01")}
    assert p.notional == numbers.mul(parse("100"), parse("0.0015")) + numbers.mul(parse("100.01"), parse("0.0015"))


def test_child_below_min_notional_or_min_qty_is_dropped_and_replanned():
    book = make_book({
        "a": ([("99", "1")], [("100", "0.02"), ("103", "5")]),
        "b": ([("99", "1")], [("101", "5")]),
    })
    venues = [info("a", min_notional=parse("5")), info("b", min_notional=parse("5"))]
    # greedy gives a 0.02 (2 USDT < 5) -> a is dropped, b takes it all
    p = plan(parent(BUY, "1"), book, venues)
    assert split(p) == {"b": ("1", "101")}
    assert p.skipped == {"a": SKIP_MINIMUM}
    venues = [info("a", min_qty=parse("0.05")), info("b")]
    p = plan(parent(BUY, "1"), book, venues)
    assert split(p) == {"b": ("1", "101")} and p.skipped == {"a": SKIP_MINIMUM}
    # the parent itself below every minimum: nothing to send
    p = plan(parent(BUY, "0.01"), book, [info("a", min_notional=parse("5")), info("b", min_notional=parse("5"))])
    assert p.children == [] and p.unfilled == parse("0.01")


def test_fees_are_rounded_up_per_child_and_notional_truncated_per_level():
    book = make_book({"a": ([("99", "1")], [("100.01", "0.333"), ("100.03", "1")])}, fees={"a": 777})
    p = plan(parent(BUY, "0.5"), book, [info("a", 777)])
    c = p.children[0]
    n = numbers.mul(parse("100.01"), parse("0.333")) + numbers.mul(parse("100.03"), parse("0.167"))
    assert c.notional == n and c.fee == -((-n * 777) // 1_000_000)
    assert c.levels == 2 and c.all_in == n + c.fee


# -- limit price --------------------------------------------------------------------------------------------


def test_limit_price_bounds_the_raw_price_of_every_level_taken():
    book = make_book({
        "a": ([("99", "1"), ("98", "1")], [("100", "1"), ("102", "1")]),
        "b": ([("98.5", "1")], [("101", "1"), ("101.5", "1")]),
    }, fees={"a": 0, "b": 0})
    venues = [info("a"), info("b")]
    p = plan(parent(BUY, "5", limit="101.2"), book, venues)
    assert split(p) == {"a": ("1", "100"), "b": ("1", "101")}
    assert p.limit_reached and p.unfilled == parse("3")
    p = plan(parent(SELL, "5", limit="98.5"), book, venues)
    assert split(p) == {"a": ("1", "99"), "b": ("1", "98.5")} and p.limit_reached
    p = plan(parent(BUY, "1", limit="99"), book, venues)
    assert p.children == [] and p.limit_reached
    p = plan(parent(BUY, "1", limit="100"), book, venues)
    assert split(p) == {"a": ("1", "100")} and not p.limit_reached  # filled before reaching the limit


def test_limit_price_is_on_the_raw_price_not_the_all_in_price():
    book = make_book({"a": ([("99", "1")], [("100", "1")])}, fees={"a": 1000})
    p = plan(parent(BUY, "1", limit="100"), book, [info("a", 1000)])
    assert split(p) == {"a": ("1", "100")} and p.avg_price == parse("100.1")


# -- venue state ---------------------------------------------------------------------------------------


def test_stale_invalid_disabled_and_unknown_venues_are_skipped():
    book = make_book({
        "a": ([("99", "1")], [("100", "1")]),
        "b": ([("99", "1")], [("100.5", "1")]),
        "c": ([("99", "1")], [("101", "5")]),
        "d": ([("99", "1")], []),
    })
    book.invalidate("a", "sequence gap")
    venues = [info("a"), info("b"), info("c"), info("d"), info("e"), info("f", enabled=False)]
    book.add_venue(VenueBook("f", "BTC/USDT"))
    p = plan(parent(BUY, "2"), book, venues)
    assert split(p) == {"b": ("1", "100.5"), "c": ("1", "101")}
    assert p.skipped == {
        "a": SKIP_INACTIVE, "d": SKIP_EMPTY, "e": SKIP_NOT_IN_BOOK, "f": SKIP_DISABLED,
    }
    # stale: b's book is old by the consolidated book's clock
    book.apply_snapshot("c", lv(("99", "1")), lv(("101", "5")), 2, 5_000)
    assert book.expire_stale(6_000, max_age_ns=2_000) == ["b", "d"]
    p = plan(parent(BUY, "2"), book, venues)
    assert split(p) == {"c": ("2", "101")} and p.skipped["b"] == SKIP_INACTIVE
    p = plan(parent(BUY, "2"), book, venues, exclude=["c"])
    assert p.children == [] and p.skipped["c"] == SKIP_EXCLUDED


# -- ties and penalties --------------------------------------------------------------------------------


def test_ties_go_to_the_venue_listed_first():
    book = make_book({"a": ([("99", "1")], [("100", "1")]), "b": ([("99", "1")], [("100", "1")])},
                     fees={"a": 500, "b": 500})
    assert split(plan(parent(BUY, "0.5"), book, [info("a", 500), info("b", 500)])) == {"a": ("0.5", "100")}
    assert split(plan(parent(BUY, "0.5"), book, [info("b", 500), info("a", 500)])) == {"b": ("0.5", "100")}
    assert split(plan(parent(SELL, "0.5"), book, [info("b", 500), info("a", 500)])) == {"b": ("0.5", "99")}
    # and it is the same plan every time
    plans = {repr(plan(parent(BUY, "1.5"), book, [info("a", 500), info("b", 500)])) for _ in range(5)}
    assert len(plans) == 1


def test_penalties_steer_without_changing_the_reported_cost():
    book = make_book({"a": ([("99", "1")], [("100", "1")]), "b": ([("99", "1")], [("100.02", "1")])})
    # a is 2 bp cheaper; a 3 bp penalty (e.g. poor fill ratio) sends the order to b
    p = plan(parent(BUY, "1"), book, [info("a", penalty_bps=3.0), info("b")])
    assert split(p) == {"b": ("1", "100.02")} and p.fees == 0 and p.notional == parse("100.02")
    assert split(plan(parent(BUY, "1"), book, [info("a", penalty_bps=1.0), info("b")])) == {"a": ("1", "100")}
    # latency: 10 ms at 0.25 bp/ms = 2.5 bp, weighted by urgency
    venues = [info("a", latency_ms=10.0), info("b", latency_ms=0.0)]
    assert split(plan(parent(BUY, "1"), book, venues, latency_penalty_bps_per_ms=0.25)) == {"b": ("1", "100.02")}
    patient = parent(BUY, "1", urgency=0.0)
    assert split(plan(patient, book, venues, latency_penalty_bps_per_ms=0.25)) == {"a": ("1", "100")}
    assert split(plan(parent(BUY, "1"), book, venues)) == {"a": ("1", "100")}  # no weight: no penalty


# -- guarantees ------------------------------------------------------------------------------------------


def test_coarse_lot_corner_case_falls_back_to_the_better_single_venue():
    # greedy: coarse can't take 0.6 (lot 1), fine takes 0.5 @100.05, then coarse can't take the
    # rest of 0.5 either -> fine's 101 level. One coarse lot of 1.0 averages 100.04: better.
    book = make_book({
        "coarse": ([("99", "1")], [("100", "0.6"), ("100.1", "0.4")]),
        "fine": ([("99", "1")], [("100.05", "0.5"), ("101", "5")]),
    })
    venues = [info("coarse", lot_size=parse("1")), info("fine")]
    p = plan(parent(BUY, "1"), book, venues)
    assert split(p) == {"coarse": ("1", "100.1")} and p.single_venue_fallback
    assert p.avg_price == parse("100.04")
    name, single = best_single_venue(parent(BUY, "1"), book, venues)
    assert name == "coarse" and single.avg_price == p.avg_price


def test_unconstrained_plan_equals_the_ideal_sweep_on_random_books():
    rng = random.Random(11)
    for trial in range(200):
        nv = rng.randint(1, 6)
        books = {}
        fees = {}
        for v in range(nv):
            mid = 60_000 + rng.randint(-20, 20)
            bids = [
                (f"{mid - 1 - k * rng.randint(1, 3) * 0.5:.2f}", _size(rng, 1000)) for k in range(rng.randint(0, 15))
            ]
            asks = [
                (f"{mid + 1 + k * rng.randint(1, 3) * 0.5:.2f}", _size(rng, 1000)) for k in range(rng.randint(0, 15))
            ]
            books[f"v{v}"] = (_dedupe(bids), _dedupe(asks))
            fees[f"v{v}"] = rng.choice([0, 200, 500, 1000, 1000])
        book = make_book(books, fees)
        venues = [info(n, fees[n]) for n in books]
        for side in (BUY, SELL):
            qty = f"{rng.randint(1, 20000) / 1000:.3f}"
            p = plan(parent(side, qty), book, venues)
            ideal = ideal_sweep(book, side, parse(qty))
            assert p.qty == ideal.qty, trial
            assert p.all_in == ideal.all_in, trial  # lots fit every size: the greedy walk is the ideal
            assert p.by_venue().keys() == ideal.by_venue.keys()
            best = best_single_venue(parent(side, qty), book, venues)
            if best is not None and best[1].qty == p.qty:
                assert (p.all_in <= best[1].all_in) if side is BUY else (p.all_in >= best[1].all_in)


def test_constrained_plans_respect_every_venue_rule_and_beat_single_venues():
    rng = random.Random(5)
    for trial in range(300):
        nv = rng.randint(1, 5)
        books, fees, venues = {}, {}, []
        for v in range(nv):
            mid = 100 + rng.randint(-3, 3) * 0.1
            bids = [(f"{mid - 0.05 - k * 0.05:.2f}", _size(rng, 997)) for k in range(rng.randint(1, 12))]
            asks = [(f"{mid + 0.05 + k * 0.05:.2f}", _size(rng, 997)) for k in range(rng.randint(1, 12))]
            name = f"v{v}"
            books[name] = (bids, asks)
            fees[name] = rng.choice([0, 300, 700, 1000])
            venues.append(info(
                name, fees[name],
                lot_size=rng.choice([parse("0.001"), parse("0.01"), parse("0.1"), parse("0.5")]),
                min_qty=rng.choice([0, parse("0.01")]),
                min_notional=rng.choice([0, parse("5"), parse("20")]),
                balance=rng.choice([None, parse("50"), parse("300"), parse("3")]),
                max_qty=rng.choice([None, parse("1"), parse("2.5")]),
                max_notional=rng.choice([None, parse("250")]),
            ))
        book = make_book(books, fees)
        for side in (BUY, SELL):
            par = parent(side, f"{rng.randint(1, 8000) / 1000:.3f}")
            p = plan(par, book, venues)
            assert p.qty <= par.qty and p.qty == sum(c.qty for c in p.children)
            by_name = {v.venue: v for v in venues}
            for c in p.children:
                v = by_name[c.venue]
                assert c.qty % v.lot_size == 0 and c.qty >= v.min_qty
                assert numbers.mul(c.limit_price, c.qty) >= v.min_notional
                assert v.max_qty is None or c.qty <= v.max_qty
                if v.max_notional is not None:
                    assert numbers.mul(c.limit_price, c.qty) <= v.max_notional
                if v.balance is not None:
                    if side is BUY:
                        n = numbers.mul(c.limit_price, c.qty)
                        assert n + numbers.fee(n, v.taker_fee_ppm) <= v.balance
                    else:
                        assert c.qty <= v.balance
                # the levels the child counts on are on its venue's book, within its limit
                levels = book.venue_book(c.venue).depth(-int(side), 100)
                within = (s for px, s in levels if (px <= c.limit_price if side is BUY else px >= c.limit_price))
                assert sum(within) >= c.qty
            best = best_single_venue(par, book, venues)
            if best is not None and best[1].qty >= p.qty and p.qty:
                # per unit, never worse than a single venue that fills at least as much
                lhs, rhs = p.all_in * best[1].qty, best[1].all_in * p.qty
                assert (lhs <= rhs) if side is BUY else (lhs >= rhs), (trial, side, p, best)
            assert repr(plan(par, book, venues)) == repr(p)  # deterministic


def _size(rng: random.Random, divisor: int) -> str:
    """A random size: multiples of 0.001 for divisor 1000, arbitrary 6-decimal sizes otherwise."""
    return f"{rng.randint(1, 3000) / 1000:.3f}" if divisor == 1000 else f"{rng.randint(1, 2000) / divisor:.6f}"


def _dedupe(levels):
    seen = {}
    for p, q in levels:
        seen.setdefault(p, q)
    return list(seen.items())


# -- helpers ---------------------------------------------------------------------------------------------


def test_from_instrument_and_snapshot_book():
    inst = Instrument("a", "BTC/USDT", "BTC", "USDT", TICK, LOT, parse("0.002"), parse("5"), 100, 700)
    v = VenueInfo.from_instrument(inst, balance=parse("10"))
    assert (v.tick_size, v.lot_size, v.min_qty, v.min_notional, v.taker_fee_ppm, v.lock_fee_ppm) == (
        TICK, LOT, parse("0.002"), parse("5"), 700, 700)
    assert v.balance == parse("10")

    book = make_book({"a": ([("99", "1")], [("100", "1")]), "b": ([("98", "1")], [("101", "1")])},
                     fees={"a": 100, "b": 200})
    book.invalidate("b")
    snap = snapshot_book(book)
    assert snap.venues == ["a", "b"] and snap.active_venues() == ["a"]
    assert snap.taker_fee("b") == 200
    assert snap.venue_book("a").depth(-1, 5) == lv(("100", "1"))
    book.apply_snapshot("a", lv(("50", "1")), lv(("60", "1")), 9, 0)  # the live book moves on
    assert snap.best_ask() == (parse("100"), parse("1"))


def test_ideal_sweep_ignores_constraints_and_honours_a_limit():
    book = make_book({"a": ([("99", "1")], [("100", "1"), ("103", "1")]), "b": ([("98", "1")], [("101", "1")])},
                     fees={"a": 1000, "b": 0})
    s = ideal_sweep(book, BUY, parse("2.5"))
    assert s.by_venue == {"a": parse("1.5"), "b": parse("1")}
    assert s.notional == parse("100") + parse("101") + parse("51.5")
    assert s.fees == numbers.fee(parse("151.5"), 1000)
    s = ideal_sweep(book, BUY, parse("2.5"), limit_price=parse("101"))
    assert s.qty == parse("2") and s.by_venue == {"a": parse("1"), "b": parse("1")}


@pytest.mark.parametrize("qty", ["0", "-1"])
def test_nothing_to_route(qty):
    book = make_book({"a": ([("99", "1")], [("100", "1")])})
    p = plan(ParentOrder("BTC/USDT", BUY, parse(qty)), book, [info("a")])
    assert p.children == [] and p.qty == 0


def test_when_every_child_is_too_small_together_a_single_venue_can_still_take_it_all():
    # greedy splits 0.06 into a 0.05 + b 0.01, both below 5 USDT... b alone: 0.06 x 100.1 = 6.006
    book = make_book({"a": ([("99", "1")], [("100", "0.05"), ("120", "1")]), "b": ([("99", "1")], [("100.1", "1")])})
    venues = [info("a", min_notional=parse("6")), info("b", min_notional=parse("6"))]
    p = plan(parent(BUY, "0.06"), book, venues)
    assert split(p) == {"b": ("0.06", "100.1")}


def test_deep_books_are_read_lazily_and_still_match_the_ideal_sweep():
    # more levels than are sorted at once: the planner reads these sides in growing chunks
    rng = random.Random(3)
    books = {}
    for name, n, step in (("deep", 700, "0.01"), ("mid", 150, "0.03"), ("thin", 5, "0.5")):
        asks = [(f"{100 + (k + 1) * float(step):.2f}", f"{rng.randint(1, 50) / 100:.2f}") for k in range(n)]
        bids = [(f"{100 - (k + 1) * float(step):.2f}", f"{rng.randint(1, 50) / 100:.2f}") for k in range(n)]
        books[name] = (bids, asks)
    fees = {"deep": 1000, "mid": 200, "thin": 0}
    book = make_book(books, fees)
    venues = [info(n, fees[n], lot_size=parse("0.01")) for n in books]
    for qty in ("0.05", "3", "40", "150", "500"):
        for side in (BUY, SELL):
            p = plan(parent(side, qty), book, venues)
            ideal = ideal_sweep(book, side, parse(qty))
            assert (p.qty, p.all_in, p.by_venue().keys()) == (ideal.qty, ideal.all_in, ideal.by_venue.keys()), qty
    p = plan(parent(BUY, "500", limit="103.5"), book, venues)
    ideal = ideal_sweep(book, BUY, parse("500"), limit_price=parse("103.5"))
    assert p.limit_reached and p.qty == ideal.qty and p.all_in == ideal.all_in
    assert max(c.limit_price for c in p.children) <= parse("103.5")


def test_a_venue_stop_price_keeps_the_walk_off_our_own_resting_order():
    book = make_book({
        "a": ([("99", "1")], [("100", "1"), ("100.5", "1"), ("101", "5")]),
        "b": ([("99", "1")], [("102", "5")]),
    })
    # our own sell rests at 100.5 on a: only the 100 level is before it
    p = plan(parent(BUY, "2"), book, [info("a", stop_price=parse("100.5")), info("b")])
    assert split(p) == {"a": ("1", "100"), "b": ("1", "102")} and not p.limit_reached
    p = plan(parent(SELL, "1.5"), make_book({"a": ([("99", "1"), ("98", "1")], [("100", "1")]),
                                             "b": ([("97", "5")], [("100", "1")])}),
             [info("a", stop_price=parse("98")), info("b")])
    assert split(p) == {"a": ("1", "99"), "b": ("0.5", "97")}
