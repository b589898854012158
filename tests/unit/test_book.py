"""Tests of hft.book: venue books (sequence checking), the consolidated book, the fee-adjusted
view, randomized comparison against a naive SortedDict model, and replays of real Binance data."""

from __future__ import annotations

import random
from functools import lru_cache
from pathlib import Path

import pytest
from sortedcontainers import SortedDict

from hft.book import ConsolidatedBook, VenueBook
from hft.model import Side
from hft.numbers import PPM, parse
from venues.sim.recording import is_depth_snapshot, iter_messages, stream_data

BUY, SELL = Side.BUY, Side.SELL
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
BINANCE = DATA / "binance"
needs_data = pytest.mark.skipif(
    not BINANCE.is_dir(), reason=f"recorded market data not found: {DATA} (../shared/data beside the repo)"
)


def px(text: str) -> int:
    return parse(text)


def levels(*pairs: tuple[str, str]) -> list[tuple[int, int]]:
    return [(parse(p), parse(q)) for p, q in pairs]


def make_book(**kw) -> VenueBook:
    book = VenueBook("binance", "BTC/USDT", **kw)
    book.apply_snapshot(
        levels(("100.0", "1"), ("99.5", "2"), ("99.0", "3")),
        levels(("101.0", "1"), ("101.5", "2"), ("102.0", "3")),
        seq=10,
        ts=1_000,
    )
    return book


# -- VenueBook ---------------------------------------------------------------------------------


def test_snapshot_then_deltas():
    book = make_book()
    assert book.valid and book.seq == 10 and book.updates == 1 and book.last_update_ts == 1_000
    assert book.best_bid() == (px("100.0"), px("1"))
    assert book.best_ask() == (px("101.0"), px("1"))
    assert book.mid() == px("100.5")
    assert book.spread() == px("1")

    assert book.apply_delta(11, 13, levels(("100.5", "4"), ("99.5", "7")), levels(("101.0", "5")), ts=2_000)
    assert book.seq == 13 and book.updates == 2 and book.last_update_ts == 2_000
    assert book.best_bid() == (px("100.5"), px("4"))
    assert book.depth(BUY, 10) == levels(("100.5", "4"), ("100.0", "1"), ("99.5", "7"), ("99.0", "3"))
    assert book.depth(SELL, 2) == levels(("101.0", "5"), ("101.5", "2"))
    assert book.size_at(BUY, px("99.5")) == px("7")
    assert book.size_at(BUY, px("98.0")) == 0
    assert book.level_count(SELL) == 3
    # micro-price weighs each price by the other side's size: (100.5*5 + 101*4) / 9, nearer the bid
    assert book.micro_price() == (px("100.5") * px("5") + px("101.0") * px("4")) // px("9")


def test_size_zero_deletes_level_and_next_best_takes_over():
    book = make_book()
    assert book.apply_delta(11, 11, levels(("100.0", "0")), levels(("101.0", "0.000")), ts=2)
    assert book.best_bid() == (px("99.5"), px("2"))
    assert book.best_ask() == (px("101.5"), px("2"))
    assert book.size_at(BUY, px("100.0")) == 0
    # deleting a level that is not there is a no-op (venues send those)
    assert book.apply_delta(12, 12, levels(("42.0", "0")), [], ts=3)
    assert book.depth(BUY, 5) == levels(("99.5", "2"), ("99.0", "3"))
    # delete everything on one side
    assert book.apply_delta(13, 13, levels(("99.5", "0"), ("99.0", "0")), [], ts=4)
    assert book.best_bid() is None and book.mid() is None and book.depth(BUY, 3) == []
    assert book.apply_delta(14, 14, levels(("98.0", "1")), [], ts=5)
    assert book.best_bid() == (px("98.0"), px("1"))


def test_sequence_gap_invalidates_until_next_snapshot():
    book = make_book()
    assert book.apply_delta(12, 12, levels(("100.0", "9")), [], ts=2) is False  # 11 is missing
    assert not book.valid and book.gaps == 1
    assert "gap" in book.invalid_reason
    assert book.best_bid() is None and book.best_ask() is None  # cleared, nothing stale to read
    # ignored while invalid, even a delta that would chain on the old sequence
    assert book.apply_delta(11, 11, levels(("100.0", "9")), [], ts=3) is False
    assert book.apply_delta(13, 13, levels(("100.0", "9")), [], ts=3) is False
    book.apply_level(BUY, px("100.0"), px("9"))
    assert book.best_bid() is None and book.gaps == 1 and book.seq == 10

    book.apply_snapshot(levels(("90.0", "1")), levels(("91.0", "1")), seq=20, ts=4)
    assert book.valid and book.seq == 20
    assert book.apply_delta(21, 22, levels(("90.5", "2")), [], ts=5)
    assert book.best_bid() == (px("90.5"), px("2"))


def test_old_duplicate_delta_is_ignored():
    book = make_book()
    assert book.apply_delta(11, 12, levels(("100.0", "5")), [], ts=2)
    before = (book.depth(BUY, 10), book.depth(SELL, 10), book.updates)
    # a replay of an old range (entirely at or below seq) changes nothing and is not a gap
    assert book.apply_delta(11, 12, levels(("100.0", "77")), levels(("101.0", "0")), ts=3) is True
    assert book.apply_delta(5, 9, levels(("100.0", "77")), [], ts=3) is True
    assert (book.depth(BUY, 10), book.depth(SELL, 10), book.updates) == before
    assert book.valid and book.gaps == 0 and book.seq == 12 and book.last_update_ts == 2


def test_overlapping_delta_is_a_gap_unless_bridging_the_snapshot():
    strict = make_book()
    assert strict.apply_delta(8, 12, levels(("100.0", "5")), [], ts=2) is False
    assert strict.gaps == 1

    bridging = make_book(bridge=True)
    # Binance rule: the first delta after a snapshot at L=10 may have U <= 11 <= u
    assert bridging.apply_delta(8, 12, levels(("100.0", "5")), [], ts=2)
    assert bridging.seq == 12 and bridging.best_bid() == (px("100.0"), px("5"))
    # ... only the first one: later deltas must chain exactly
    assert bridging.apply_delta(12, 14, [], [], ts=3) is False
    assert bridging.gaps == 1
    # a bridge that leaves a hole is still a gap
    other = make_book(bridge=True)
    assert other.apply_delta(12, 14, [], [], ts=2) is False


def test_invalidate_on_disconnect_and_reversed_range():
    book = make_book()
    book.invalidate("market stream disconnected")
    assert not book.valid and book.invalid_reason == "market stream disconnected"
    assert book.gaps == 0 and book.best_ask() is None
    assert book.apply_delta(11, 11, [], [], ts=2) is False
    with pytest.raises(ValueError):
        make_book().apply_delta(12, 11, [], [], ts=2)


def test_book_without_snapshot_ignores_deltas():
    book = VenueBook("v", "S")
    assert not book.valid
    assert book.apply_delta(1, 1, levels(("1", "1")), [], ts=1) is False
    assert book.gaps == 0 and book.best_bid() is None


def test_lazy_heap_stays_bounded_under_churn():
    book = VenueBook("v", "S")
    book.apply_snapshot([(1_000, 1)], [(2_000, 1)], seq=0)
    rng = random.Random(3)
    live: dict[int, int] = {1_000: 1}
    for _ in range(20_000):  # churn below the top: deletes leave dead heap entries behind
        p = rng.randrange(1, 1_000)
        s = rng.choice((0, 0, 1))
        book.apply_level(BUY, p, s)
        if s:
            live[p] = s
        else:
            live.pop(p, None)
    assert len(book._hb) <= 2 * len(live) + 64  # rebuilt, not growing with the number of updates
    assert book.depth(BUY, 5) == sorted(live.items(), reverse=True)[:5]


# -- ConsolidatedBook --------------------------------------------------------------------------


def make_consolidated(**kw) -> ConsolidatedBook:
    cb = ConsolidatedBook("BTC/USDT", **kw)
    for name in ("a", "b", "c"):
        cb.add_venue(VenueBook(name, "BTC/USDT"))
    return cb


def test_consolidation_sums_same_price_and_keeps_attribution():
    cb = make_consolidated()
    cb.apply_snapshot("a", levels(("100", "1"), ("99", "1")), levels(("101", "1")), seq=1, ts=1)
    cb.apply_snapshot("b", levels(("100", "2"), ("98", "5")), levels(("101", "3"), ("102", "1")), seq=7, ts=1)
    assert cb.active_venues() == ["a", "b"]  # c has no snapshot yet
    assert cb.best_bid() == (px("100"), px("3")) == cb.bid
    assert cb.best_ask() == (px("101"), px("4")) == cb.ask
    assert cb.venues_at(BUY, px("100")) == [("a", px("1")), ("b", px("2"))]
    assert cb.size_at(SELL, px("101")) == px("4")
    assert cb.depth(BUY, 3) == [
        (px("100"), px("3"), [("a", px("1")), ("b", px("2"))]),
        (px("99"), px("1"), [("a", px("1"))]),
        (px("98"), px("5"), [("b", px("5"))]),
    ]
    # removing one venue's size leaves the other's
    assert cb.apply_delta("b", 8, 8, levels(("100", "0")), [], ts=2)
    assert cb.best_bid() == (px("100"), px("1"))
    assert cb.venues_at(BUY, px("100")) == [("a", px("1"))]
    assert cb.apply_delta("a", 2, 2, levels(("100", "0")), [], ts=2)
    assert cb.best_bid() == (px("99"), px("1"))
    # a size change on one venue at the top adjusts the total
    assert cb.apply_delta("b", 9, 9, [], levels(("101", "1.5")), ts=3)
    assert cb.best_ask() == (px("101"), px("2.5"))
    assert cb.mid() == (px("99") + px("101")) // 2
    assert cb.micro_price() == (px("99") * px("2.5") + px("101") * px("1")) // px("3.5")
    # the venue books themselves are kept too
    assert cb.venue_book("b").best_bid() == (px("98"), px("5"))
    assert cb.venue_book("a").best_ask() == (px("101"), px("1"))


def test_venue_book_mutators_forward_to_the_consolidated_book():
    cb = make_consolidated()
    a = cb.venue_book("a")
    a.apply_snapshot(levels(("10", "1")), levels(("11", "1")), seq=1, ts=1)
    assert cb.bid == (px("10"), px("1"))
    assert a.apply_delta(2, 2, levels(("10.5", "2")), [], ts=2)
    assert cb.bid == (px("10.5"), px("2"))
    a.apply_level(SELL, px("10.8"), px("1"))
    assert cb.ask == (px("10.8"), px("1"))
    a.invalidate("disconnected")
    assert cb.bid is None and cb.active_venues() == []
    with pytest.raises(ValueError):
        ConsolidatedBook("X").add_venue(a)  # one owner only
    with pytest.raises(ValueError):
        cb.add_venue(VenueBook("a", "BTC/USDT"))  # names are unique


def test_venues_by_name_as_the_engine_adds_them():
    cb = ConsolidatedBook("BTC/USDT")
    assert cb.add_venue("alpha", 1_000) == 0
    assert cb.add_venue("beta", 500) == 1
    assert cb.venues == ["alpha", "beta"] and cb.taker_fee("beta") == 500
    assert cb.venue_book("alpha").symbol == "BTC/USDT"
    assert not cb.is_active("alpha")  # no snapshot yet
    cb.apply_snapshot("alpha", levels(("10", "1")), levels(("11", "1")), seq=5, ts=0)
    assert cb.is_active("alpha") and cb.is_active(0) and not cb.is_active("beta")
    cb.invalidate("alpha")  # reason is optional
    assert not cb.is_active("alpha") and cb.venue_book("alpha").invalid_reason
    with pytest.raises(KeyError):
        cb.is_active("gamma")
    # the age limit may come with the call (the engine's config), a venue's own limit wins
    cb.add_venue(VenueBook("gamma", "BTC/USDT"), max_age_ns=10_000)
    cb.apply_snapshot("alpha", levels(("10", "1")), [], seq=6, ts=0)
    cb.apply_snapshot("gamma", levels(("9", "1")), [], seq=1, ts=0)
    assert cb.expire_stale(5_000) == []  # no book-wide limit: nothing is stale
    assert cb.expire_stale(5_000, 1_000) == ["alpha"]
    assert cb.expire_stale(20_000, 1_000) == ["gamma"]


def test_crossed_venues_are_reported_not_hidden():
    cb = make_consolidated()
    cb.apply_snapshot("a", levels(("100", "1")), levels(("101", "1")), seq=1, ts=1)
    cb.apply_snapshot("b", levels(("102", "2")), levels(("103", "1")), seq=1, ts=1)
    assert cb.is_crossed() and cb.spread() == px("101") - px("102")
    assert not cb.venue_book("a").is_crossed()


def test_gap_leaves_venue_out_until_its_snapshot():
    cb = make_consolidated()
    cb.apply_snapshot("a", levels(("100", "1")), levels(("101", "1")), seq=1, ts=1)
    cb.apply_snapshot("b", levels(("100", "2"), ("100.5", "1")), levels(("100.8", "3")), seq=1, ts=1)
    assert cb.bid == (px("100.5"), px("1")) and cb.ask == (px("100.8"), px("3"))
    assert cb.apply_delta("b", 3, 3, levels(("100.6", "1")), [], ts=2) is False  # gap on b
    assert cb.active_venues() == ["a"]
    assert cb.bid == (px("100"), px("1")) and cb.ask == (px("101"), px("1"))
    assert cb.venues_at(BUY, px("100")) == [("a", px("1"))]
    assert cb.venue_book("b").gaps == 1
    # b's deltas are ignored until its snapshot
    assert cb.apply_delta("b", 2, 2, levels(("100.7", "1")), [], ts=3) is False
    cb.apply_level(1, BUY, px("100.9"), px("1"))
    assert cb.bid == (px("100"), px("1"))
    cb.apply_snapshot("b", levels(("100", "4")), levels(("100.9", "1")), seq=10, ts=4)
    assert cb.active_venues() == ["a", "b"]
    assert cb.bid == (px("100"), px("5")) and cb.ask == (px("100.9"), px("1"))


def test_consolidated_delta_bridges_only_the_first_delta_after_a_snapshot_and_counts_updates():
    cb = ConsolidatedBook("BTC/USDT")
    cb.add_venue(VenueBook("a", "BTC/USDT", bridge=True))
    cb.apply_snapshot("a", levels(("100", "1")), levels(("101", "1")), seq=10, ts=1)
    assert cb.apply_delta("a", 11, 12, levels(("100", "2")), [], ts=2)  # chains exactly: the bridge is over
    assert cb.apply_delta("a", 12, 14, [], [], ts=3) is False  # an overlap now is a gap
    book = cb.venue_book("a")
    assert book.gaps == 1 and book.updates == 2 and book.last_update_ts == 2
    cb.apply_snapshot("a", levels(("100", "1")), levels(("101", "1")), seq=20, ts=4)
    assert cb.apply_delta("a", 19, 21, levels(("100", "3")), [], ts=5)  # the first one may overlap
    assert book.seq == 21 and cb.bid == (px("100"), px("3")) and book.last_update_ts == 5
    with pytest.raises(ValueError):
        cb.apply_delta("a", 23, 22, [], [])


def test_top_prices_of_a_venue_book():
    book = make_book()
    assert book.top_prices() == (px("100.0"), px("101.0"))
    book.apply_delta(11, 11, levels(("100.0", "0"), ("99.5", "0"), ("99.0", "0")), levels(("100.5", "1")))
    assert book.top_prices() == (None, px("100.5"))


def test_disconnect_leaves_venue_out():
    cb = make_consolidated()
    cb.apply_snapshot("a", levels(("100", "1")), levels(("101", "1")), seq=1, ts=1)
    cb.apply_snapshot("c", levels(("100", "2")), levels(("101", "2")), seq=1, ts=1)
    cb.invalidate("c", "websocket closed")
    assert cb.bid == (px("100"), px("1")) and cb.active_venues() == ["a"]
    assert not cb.venue_book("c").valid


def test_stale_venue_left_out_and_restored_on_next_update():
    cb = make_consolidated(max_age_ns=1_000)
    cb.apply_snapshot("a", levels(("100", "1")), levels(("102", "1")), seq=1, ts=10_000)
    cb.apply_snapshot("b", levels(("101", "2")), levels(("101.5", "2")), seq=1, ts=10_000)
    assert cb.expire_stale(10_900) == []
    assert cb.apply_delta("a", 2, 2, levels(("100", "1.5")), [], ts=10_800)
    assert cb.expire_stale(11_500) == ["b"]  # b last updated at 10_000
    assert cb.active_venues() == ["a"]
    assert cb.bid == (px("100"), px("1.5")) and cb.ask == (px("102"), px("1"))
    assert cb.depth(SELL, 5) == [(px("102"), px("1"), [("a", px("1"))])]
    # raw per-level updates keep b's own book current but do not bring it back
    cb.apply_level(1, SELL, px("101.4"), px("1"))
    assert cb.ask == (px("102"), px("1"))
    assert cb.venue_book("b").best_ask() == (px("101.4"), px("1"))
    assert cb.expire_stale(11_500) == []  # already out
    # b's next delta brings it back with everything it has
    assert cb.apply_delta("b", 2, 2, [], levels(("101.5", "0")), ts=11_600)
    assert cb.active_venues() == ["a", "b"]
    assert cb.bid == (px("101"), px("2")) and cb.ask == (px("101.4"), px("1"))
    # a per-venue max age overrides the book-wide one
    cb2 = ConsolidatedBook("X", max_age_ns=1_000)
    cb2.add_venue(VenueBook("slow", "X"), max_age_ns=100_000)
    cb2.add_venue(VenueBook("fast", "X"))
    cb2.apply_snapshot("slow", levels(("1", "1")), [], seq=1, ts=0)
    cb2.apply_snapshot("fast", levels(("2", "1")), [], seq=1, ts=0)
    assert cb2.expire_stale(5_000) == ["fast"]
    assert cb2.bid == (px("1"), px("1"))
    # a snapshot restores as well
    cb2.apply_snapshot("fast", levels(("3", "1")), [], seq=5, ts=5_000)
    assert cb2.bid == (px("3"), px("1"))


def test_fee_adjusted_order_reverses_a_raw_price_advantage():
    cb = ConsolidatedBook("BTC/USDT")
    cb.add_venue(VenueBook("cheap", "BTC/USDT"), taker_fee_ppm=1_000)  # 0.10 %
    cb.add_venue(VenueBook("lowfee", "BTC/USDT"), taker_fee_ppm=200)  # 0.02 %
    cb.apply_snapshot("cheap", levels(("99.95", "1")), levels(("100.00", "1"), ("100.20", "1")), seq=1)
    cb.apply_snapshot("lowfee", levels(("99.90", "2")), levels(("100.05", "2")), seq=1)
    # raw: "cheap" has the best ask (100.00 < 100.05) and the best bid (99.95 > 99.90)
    assert cb.ask == (px("100.00"), px("1")) and cb.bid == (px("99.95"), px("1"))
    # after fees: buying costs 100.00*1.001 = 100.1 vs 100.05*1.0002 = 100.07001
    assert cb.fee_adjusted_depth(SELL, 10) == [
        (px("100.07001"), px("100.05"), px("2"), "lowfee"),
        (px("100.1"), px("100.00"), px("1"), "cheap"),
        (px("100.3002"), px("100.20"), px("1"), "cheap"),
    ]
    # selling yields 99.95*0.999 = 99.85005 vs 99.90*0.9998 = 99.88002
    assert cb.fee_adjusted_depth(BUY, 1) == [(px("99.88002"), px("99.90"), px("2"), "lowfee")]
    # with equal fees the raw order is back
    cb.set_taker_fee("lowfee", 1_000)
    assert [v for *_, v in cb.fee_adjusted_depth(SELL, 2)] == ["cheap", "lowfee"]
    assert cb.taker_fee("lowfee") == 1_000


def test_fee_adjusted_price_rounds_against_the_taker():
    cb = ConsolidatedBook("X")
    cb.add_venue(VenueBook("v", "X"), taker_fee_ppm=333)
    cb.apply_snapshot("v", [(123_456_789, 1)], [(123_456_789, 1)], seq=1)
    # exact fee 41111.11… units: buyers pay the unit up, sellers receive the unit down
    assert cb.fee_adjusted_depth(SELL, 1)[0][0] == 123_456_789 + 41_112
    assert cb.fee_adjusted_depth(BUY, 1)[0][0] == 123_456_789 - 41_112


def test_fee_adjusted_depth_leaves_out_inactive_venues():
    cb = make_consolidated()
    cb.apply_snapshot("a", [], levels(("10", "1")), seq=1)
    cb.apply_snapshot("b", [], levels(("9", "1")), seq=1)
    cb.invalidate("b", "down")
    assert [v for *_, v in cb.fee_adjusted_depth(SELL, 5)] == ["a"]


# -- randomized comparison with a naive SortedDict model ------------------------------------------


def naive_apply(model: tuple[SortedDict, SortedDict], side: int, price: int, size: int) -> None:
    d = model[0] if side > 0 else model[1]
    if size:
        d[price] = size
    elif price in d:
        del d[price]


def naive_top(d: SortedDict, bid: bool, n: int) -> list[tuple[int, int]]:
    items = list(d.items())
    return (items[::-1] if bid else items)[:n]


def random_level(rng: random.Random, mid: int) -> tuple[int, int, int]:
    side = rng.choice((1, -1))
    # mostly near the top, sometimes deep, sometimes crossing the mid (moves the top around)
    off = int(rng.expovariate(1 / 6)) - 2 if rng.random() < 0.9 else rng.randrange(0, 200)
    price = mid - off if side > 0 else mid + off
    size = 0 if rng.random() < 0.45 else rng.randrange(1, 50) * 1_000
    return side, price, size


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_venue_book_matches_naive_model(seed):
    rng = random.Random(seed)
    book = VenueBook("v", "S")
    book.apply_snapshot([], [], seq=0)
    model = (SortedDict(), SortedDict())
    mid = 10_000
    for step in range(15_000):
        mid += rng.choice((-1, 0, 0, 1))
        side, price, size = random_level(rng, mid)
        book.apply_level(side, price, size)
        naive_apply(model, side, price, size)
        bids, asks = model
        assert book.best_bid() == (bids.peekitem(-1) if bids else None)
        assert book.best_ask() == (asks.peekitem(0) if asks else None)
        assert book.depth(BUY, 5) == naive_top(bids, True, 5)
        assert book.depth(SELL, 5) == naive_top(asks, False, 5)
        if step % 500 == 0:
            assert book.depth(BUY, 10_000) == naive_top(bids, True, 10_000)
            assert list(book.iter_side(SELL)) == naive_top(asks, False, 10_000)


@pytest.mark.parametrize("seed", [11, 12])
def test_consolidated_book_matches_naive_model(seed):
    rng = random.Random(seed)
    fees = [1_000, 200, 0]
    cb = ConsolidatedBook("S", max_age_ns=50)
    for i in range(3):
        cb.add_venue(VenueBook(f"v{i}", "S"), taker_fee_ppm=fees[i])
    models = [(SortedDict(), SortedDict()) for _ in range(3)]
    state = ["active"] * 3  # active / stale / invalid
    seqs = [0] * 3
    last_ts = [0] * 3
    for i in range(3):
        cb.apply_snapshot(i, [], [], seq=0, ts=0)
    mid = 10_000
    now = 0
    for step in range(12_000):
        now += 1
        mid += rng.choice((-1, 0, 0, 1))
        i = rng.randrange(3)
        r = rng.random()
        if r < 0.004:  # disconnect
            cb.invalidate(i, "disconnect")
            models[i] = (SortedDict(), SortedDict())
            state[i] = "invalid"
        elif r < 0.012:  # fresh snapshot
            snap_b = {mid - rng.randrange(1, 30): rng.randrange(1, 9) * 1_000 for _ in range(rng.randrange(0, 12))}
            snap_a = {mid + rng.randrange(1, 30): rng.randrange(1, 9) * 1_000 for _ in range(rng.randrange(0, 12))}
            seqs[i] += 100
            cb.apply_snapshot(i, list(snap_b.items()), list(snap_a.items()), seq=seqs[i], ts=now)
            models[i] = (SortedDict(snap_b), SortedDict(snap_a))
            state[i] = "active"
            last_ts[i] = now
        elif r < 0.016:  # staleness sweep: venues with no accepted update for > 50 ticks drop out
            want = [f"v{j}" for j in range(3) if state[j] == "active" and now - last_ts[j] > 50]
            assert cb.expire_stale(now) == want
            for j in range(3):
                if f"v{j}" in want:
                    state[j] = "stale"
        else:  # a delta of 1-3 levels; rarely with a gap
            lv = [random_level(rng, mid) for _ in range(rng.randrange(1, 4))]
            gap = rng.random() < 0.003
            first = seqs[i] + (2 if gap else 1)
            ok = cb.apply_delta(
                i, first, first, [(p, s) for sd, p, s in lv if sd > 0], [(p, s) for sd, p, s in lv if sd < 0], ts=now
            )
            if state[i] == "invalid":
                assert not ok
            elif gap:
                assert not ok
                models[i] = (SortedDict(), SortedDict())
                state[i] = "invalid"
            else:
                assert ok
                seqs[i] = first
                state[i] = "active"
                last_ts[i] = now
                for sd, p, s in lv:
                    naive_apply(models[i], sd, p, s)
        # compare against the model after every step
        active = [j for j in range(3) if state[j] == "active"]
        assert cb.active_venues() == [f"v{j}" for j in active]
        agg_b: dict[int, int] = {}
        agg_a: dict[int, int] = {}
        for j in active:
            for p, s in models[j][0].items():
                agg_b[p] = agg_b.get(p, 0) + s
            for p, s in models[j][1].items():
                agg_a[p] = agg_a.get(p, 0) + s
        assert cb.best_bid() == (max(agg_b.items()) if agg_b else None)
        assert cb.best_ask() == (min(agg_a.items()) if agg_a else None)
        want_b = sorted(agg_b.items(), reverse=True)[:4]
        assert [(p, t) for p, t, _ in cb.depth(BUY, 4)] == want_b
        want_a = sorted(agg_a.items())[:4]
        got_a = cb.depth(SELL, 4)
        assert [(p, t) for p, t, _ in got_a] == want_a
        for p, t, who in got_a:
            assert who == [(f"v{j}", models[j][1][p]) for j in active if p in models[j][1]]
            assert sum(s for _, s in who) == t
        for j in range(3):  # venue books stay right too, including stale ones
            if state[j] != "invalid":
                bids, asks = models[j]
                vb = cb.venue_book(j)
                assert vb.best_bid() == (bids.peekitem(-1) if bids else None)
                assert vb.best_ask() == (asks.peekitem(0) if asks else None)
        if step % 20 == 0:
            for side, bid in ((SELL, False), (BUY, True)):
                rows = []
                for j in active:
                    f = fees[j]
                    for p, s in models[j][0 if bid else 1].items():
                        key = -p * (PPM - f) if bid else p * (PPM + f)
                        rows.append((key, j, p, s))
                rows.sort()
                want = [(p, s, f"v{j}") for _, j, p, s in rows[:6]]
                assert [(p, s, v) for _, p, s, v in cb.fee_adjusted_depth(side, 6)] == want


# -- real recorded Binance data ---------------------------------------------------------------------


@lru_cache(maxsize=None)
def load_recording(name: str):
    """(snapshot or None, diffs, tickers) of a recording; diffs in arrival order as
    (recv_ns, U, u, pu, bids, asks) with ints, tickers {u: ((bid, bid_qty), (ask, ask_qty))}."""
    snap = None
    diffs = []
    tickers = {}
    order = []  # arrival order of diffs and the snapshot: ("diff", index) / ("snapshot", None)
    for ts, msg in iter_messages(BINANCE / name):
        if is_depth_snapshot(msg):
            if snap is None:
                snap = (
                    msg["lastUpdateId"],
                    [(parse(p), parse(q)) for p, q in msg["bids"]],
                    [(parse(p), parse(q)) for p, q in msg["asks"]],
                    ts,
                )
                order.append(("snapshot", None))
            continue
        d = stream_data(msg, "depthUpdate")
        if d is not None:
            order.append(("diff", len(diffs)))
            diffs.append(
                (
                    ts,
                    d["U"],
                    d["u"],
                    d.get("pu"),
                    [(parse(p), parse(q)) for p, q in d["b"]],
                    [(parse(p), parse(q)) for p, q in d["a"]],
                )
            )
            continue
        t = stream_data(msg, "bookTicker")
        if t is not None:
            tickers[t["u"]] = ((parse(t["b"]), parse(t["B"])), (parse(t["a"]), parse(t["A"])))
    return snap, diffs, tickers, order


def replay_spot(book, name: str, *, drop: int | None = None, on_applied=None):
    """Replay a spot recording the way a live client syncs: buffer diffs until the snapshot
    arrives, drop those it already contains (u <= L), check the first one bridges it
    (U <= L+1 <= u) and feed it trimmed to start at L+1; then apply every diff in arrival order.
    ``drop`` removes one diff (by arrival index) after the sync. Returns apply_delta's answers
    after the sync."""
    snap, diffs, _, order = load_recording(name)
    buffered: list[int] | None = []
    answers = []
    for kind, k in order:
        if kind == "snapshot":
            last, bids, asks, ts = snap
            book.apply_snapshot(bids, asks, last, ts)
            pending = [j for j in buffered if diffs[j][2] > last]
            assert pending, "no buffered diff bridges the snapshot"
            _, first_u, _, _, _, _ = diffs[pending[0]]
            assert first_u <= last + 1 <= diffs[pending[0]][2], "first diff does not bridge the snapshot"
            for n, j in enumerate(pending):
                ts, U, u, _, b, a = diffs[j]
                assert book.apply_delta(last + 1 if n == 0 else U, u, b, a, ts)
            buffered = None
            continue
        if buffered is not None:
            buffered.append(k)
            continue
        if k == drop:
            continue
        ts, U, u, _, b, a = diffs[k]
        answers.append(book.apply_delta(U, u, b, a, ts))
        if on_applied is not None:
            on_applied(u)
    return answers


@needs_data
def test_real_spot_replay_is_never_crossed_chains_without_gaps_and_matches_book_ticker():
    name = "spot_btcusdt_20240808.gz"
    _, diffs, tickers, _ = load_recording(name)
    book = VenueBook("binance", "BTC/USDT")
    seen = {"crossed": 0, "checked": 0, "mismatch": 0, "sizes": 0}

    def check(u):
        b, a = book.best_bid(), book.best_ask()
        seen["crossed"] += b[0] >= a[0]
        seen["sizes"] += any(s <= 0 for _, s in book.depth(BUY, 20) + book.depth(SELL, 20))
        if u in tickers:  # Binance's own best bid/ask at exactly this update id
            seen["checked"] += 1
            seen["mismatch"] += (b, a) != tickers[u]

    answers = replay_spot(book, name, on_applied=check)
    assert answers and all(answers)
    assert book.valid and book.gaps == 0
    assert book.seq == diffs[-1][2]
    assert seen["crossed"] == 0 and seen["sizes"] == 0
    assert seen["checked"] > 100 and seen["mismatch"] == 0

    # the next day's file continues the chain (no snapshot in it): still no gap
    _, diffs2, tickers2, _ = load_recording("spot_btcusdt_20240809.gz")
    matched = 0
    for ts, U, u, _, b, a in diffs2:
        assert book.apply_delta(U, u, b, a, ts)
        assert not book.is_crossed()
        if u in tickers2:
            matched += 1
            assert (book.best_bid(), book.best_ask()) == tickers2[u]
    assert book.gaps == 0 and matched > 100


@needs_data
def test_real_spot_replay_with_bridge_flag_takes_raw_first_diff():
    snap, diffs, _, _ = load_recording("spot_btcusdt_20240808.gz")
    last, bids, asks, ts = snap
    book = VenueBook("binance", "BTC/USDT", bridge=True)
    book.apply_snapshot(bids, asks, last, ts)
    applied = 0
    for ts, U, u, _, b, a in diffs:  # raw order of ids; old ones are duplicates to the book
        assert book.apply_delta(U, u, b, a, ts)
        applied += u > last
    assert book.gaps == 0 and book.seq == diffs[-1][2] and applied > 3000


@needs_data
def test_real_spot_replay_detects_a_missing_diff_and_resyncs():
    name = "spot_btcusdt_20240808.gz"
    _, diffs, _, order = load_recording(name)
    post_sync = [k for kind, k in order[order.index(("snapshot", None)) :] if kind == "diff"]
    dropped = post_sync[1000]

    book = VenueBook("binance", "BTC/USDT")
    answers = replay_spot(book, name, drop=dropped)
    assert all(answers[:1000])  # fine until the hole
    assert answers[1000] is False  # the diff after the missing one is the gap
    assert not any(answers[1001:])  # ignored until a snapshot
    assert book.gaps == 1 and not book.valid and book.best_bid() is None

    # resync: a snapshot of the true book (a reference replay without the hole) at some later
    # update id, then the rest of the diffs: the book ends equal to the reference
    ref = VenueBook("binance", "BTC/USDT")
    resync_at = post_sync[2000]
    snapshot = {}

    def grab(u):
        if u == diffs[resync_at][2]:
            snapshot["levels"] = (ref.depth(BUY, 10_000), ref.depth(SELL, 10_000), u)

    replay_spot(ref, name, on_applied=grab)
    b, a, u = snapshot["levels"]
    book.apply_snapshot(b, a, u, 0)
    for k in post_sync[2001:]:
        ts, U, u2, _, bb, aa = diffs[k]
        assert book.apply_delta(U, u2, bb, aa, ts)
    assert book.depth(BUY, 10_000) == ref.depth(BUY, 10_000)
    assert book.depth(SELL, 10_000) == ref.depth(SELL, 10_000)


@needs_data
def test_real_three_venue_consolidation_matches_its_venues():
    """Spot, USDⓈ-M and COIN-M BTC books live at the same moments, consolidated as they arrive
    (futures chain on pu: the delta's first_seq is pu + 1). The aggregate top must equal the
    best of the venue tops at every message, and each venue must match Binance's bookTicker."""
    names = ["spot_btcusdt_20240808.gz", "usdm_btcusdt_20240808.gz", "cm_btcusd_perp_20240808.gz"]
    cb = ConsolidatedBook("BTC")
    for name in names:
        cb.add_venue(VenueBook(name.split("_")[0], "BTC", bridge=True))
    events = []
    for i, name in enumerate(names):
        snap, diffs, _, _ = load_recording(name)
        events.append((snap[3], i, "snapshot", snap))
        events.extend((d[0], i, "diff", d) for d in diffs)
    events.sort(key=lambda e: (e[0], e[1]))
    checked = 0
    buffered: list[list] = [[], [], []]  # diffs that arrive before their venue's snapshot

    def feed(i, ev):
        ts, U, u, pu, b, a = ev
        first = U if pu is None else pu + 1
        assert cb.apply_delta(i, first, u, b, a, ts), (i, cb.venue_book(i).seq, U, u, pu)
        return u

    for _, i, kind, ev in events:
        book = cb.venue_book(i)
        if kind == "snapshot":
            last, bids, asks, ts = ev
            cb.apply_snapshot(i, bids, asks, last, ts)
            for old in buffered[i]:  # those the snapshot contains are old duplicates to the book
                feed(i, old)
            buffered[i] = None
            continue
        if buffered[i] is not None:
            buffered[i].append(ev)
            continue
        u = feed(i, ev)
        assert not book.is_crossed()
        tops = [cb.venue_book(j).best_bid() for j in range(3) if cb.venue_book(j).valid]
        best = max(p for p, _ in tops)
        assert cb.bid == (best, sum(s for p, s in tops if p == best))
        tickers = load_recording(names[i])[2]
        if u in tickers:
            checked += 1
            assert (book.best_bid(), book.best_ask()) == tickers[u]
    assert cb.active_venues() == ["spot", "usdm", "cm"]
    assert all(cb.venue_book(j).gaps == 0 for j in range(3))
    assert checked > 1000
    # the venues quote the same asset a basis apart, so the aggregate is crossed; the router's
    # fee-adjusted view still lists every venue's levels in effective-price order
    fad = cb.fee_adjusted_depth(SELL, 50)
    assert [r[0] for r in fad] == sorted(r[0] for r in fad)


@needs_data
def test_recording_reader_counts_match_the_data_readme():
    counts = {"depthUpdate": 0, "bookTicker": 0, "trade": 0, "snapshot": 0}
    first_ts = last_ts = None
    for ts, msg in iter_messages(BINANCE / "spot_btcusdt_20240808.gz"):
        assert isinstance(ts, int) and ts > 1_700_000_000 * 10**9
        assert last_ts is None or ts >= last_ts  # arrival order
        first_ts = first_ts or ts
        last_ts = ts
        if is_depth_snapshot(msg):
            counts["snapshot"] += 1
            continue
        for kind in ("depthUpdate", "bookTicker", "trade"):
            if stream_data(msg, kind) is not None:
                counts[kind] += 1
    assert counts == {"depthUpdate": 3_451, "bookTicker": 28_040, "trade": 9_757, "snapshot": 1}


def test_checksum_is_the_same_for_the_same_top_levels_however_the_book_was_built():
    from hft.book import levels_checksum

    bids = [(parse(str(100 - i)), parse("1")) for i in range(15)]
    asks = [(parse(str(101 + i)), parse("2")) for i in range(15)]
    snap = VenueBook("v", "X/Y")
    snap.apply_snapshot(bids, asks, 1)
    built = VenueBook("v", "X/Y")
    built.apply_snapshot([(parse("50"), parse("9"))], [], 1)
    assert built.apply_delta(2, 2, [(parse("50"), 0), *bids[:12]], asks[:11])  # deeper levels do not count
    assert built.checksum() == snap.checksum() == levels_checksum(bids[:10], asks[:10])
    assert built.apply_delta(3, 3, [(bids[9][0], parse("1.000000001"))], [])  # the 10th bid's size moves
    assert built.checksum() != snap.checksum()
    assert levels_checksum([(1, 2)], []) != levels_checksum([], [(1, 2)])  # sides are told apart
