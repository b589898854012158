"""Order-book benchmark: L2 level update + best bid/ask read after every update.

    python bench/bench_book.py [--updates N] [--quick] [--repeat R]

Workload: ``N`` decoded level updates ``(side, price, size)`` (fixed-point ints), and after
EACH update the best bid and best ask are read. The stream is the real Binance depth diffs in
``../shared/data/binance`` (bridged to their REST snapshot the way a live client does,
flattened to levels, cycled to ``N``; each new cycle starts with a resync: the snapshot's
levels are set again and every other level deleted, so every cycle replays the recorded
session). Without the data folder a synthetic stream with a similar mix is used.

Rows (all measured in the same run, best of ``--repeat``; ratios are to row 1):

1. naive: two ``SortedDict`` (bids, asks), ``d[price] = size`` / ``del d[price]``, best via
   ``peekitem(-1)`` / ``peekitem(0)`` — spot BTCUSDT stream.
2. ``VenueBook.apply_level`` + ``best_bid()``/``best_ask()`` — same stream.
3. ``ConsolidatedBook.apply_level`` over 3 venues + consolidated ``best_bid()``/``best_ask()``
   — spot, USDⓈ-M and COIN-M BTC streams interleaved by receive time, futures prices shifted
   by the snapshot basis so the books overlap, COIN-M contracts converted to BTC.
   A second line reads the best through the ``bid``/``ask`` attributes instead of calls.
4. context: the naive book fed the 3-venue stream (venue ignored), and the engine path
   (``ConsolidatedBook.apply_delta`` per recorded message, best read once per message).

Times are this process's CPU time (``time.process_time_ns``, robust to other jobs sharing the
machine), GC disabled inside the timed loop, best of ``--repeat``. No pass/fail here: timings
belong in this table, never in tests.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from pathlib import Path

from sortedcontainers import SortedDict

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hft.book import ConsolidatedBook, VenueBook  # noqa: E402
from hft.numbers import SCALE, parse  # noqa: E402
from venues.sim.recording import is_depth_snapshot, iter_messages, stream_data  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "binance"
FILES = ("spot_btcusdt_20240808.gz", "usdm_btcusdt_20240808.gz", "cm_btcusd_perp_20240808.gz")

# -- stream construction ------------------------------------------------------------------------


def _load_session(name: str) -> tuple[dict, dict, list[tuple[int, list[tuple[int, int, int]]]]]:
    """Snapshot (bids, asks) and the bridged diffs as ``[(recv_ns, [(side, price, size), ...])]``."""
    snap = None
    diffs: list[tuple[int, dict]] = []
    for ts, msg in iter_messages(DATA / name):
        if is_depth_snapshot(msg):
            snap = snap or msg
            continue
        d = stream_data(msg, "depthUpdate")
        if d is not None:
            diffs.append((ts, d))
    assert snap is not None, name
    last = snap["lastUpdateId"]
    bids = {parse(p): parse(q) for p, q in snap["bids"]}
    asks = {parse(p): parse(q) for p, q in snap["asks"]}
    out = []
    for ts, d in diffs:
        if d["u"] <= last:
            continue  # already in the snapshot
        levels = [(1, parse(p), parse(q)) for p, q in d["b"]]
        levels += [(-1, parse(p), parse(q)) for p, q in d["a"]]
        out.append((ts, levels))
    return bids, asks, out


def _transform(session, shift: int, inverse_contract: int = 0):
    """Shift prices (basis removal) and, for inverse contracts, turn contract counts into base units."""

    def size(price: int, q: int) -> int:
        if not inverse_contract or not q:
            return q
        return max(1, q * inverse_contract * SCALE // price)

    bids, asks, diffs = session
    bids = {p + shift: size(p, q) for p, q in bids.items()}
    asks = {p + shift: size(p, q) for p, q in asks.items()}
    diffs = [(ts, [(s, p + shift, size(p, q)) for s, p, q in lv]) for ts, lv in diffs]
    return bids, asks, diffs


def _resync_levels(state_b: dict, state_a: dict, snap_b: dict, snap_a: dict) -> list[tuple[int, int, int]]:
    """Level updates that turn the current book into the snapshot (set first, then delete: a side never empties)."""
    out = [(1, p, q) for p, q in snap_b.items()] + [(-1, p, q) for p, q in snap_a.items()]
    out += [(1, p, 0) for p in state_b if p not in snap_b]
    out += [(-1, p, 0) for p in state_a if p not in snap_a]
    return out


def real_streams(n: int):
    """(single-venue stream, 3-venue stream, snapshots, messages) from the recordings, or None without data."""
    if not all((DATA / f).exists() for f in FILES):
        return None
    spot, usdm, cm = (_load_session(f) for f in FILES)

    def mid(s):
        return (max(s[0]) + min(s[1])) // 2

    tick = 10_000_000  # 0.01: keeps shifted futures prices on the spot grid
    usdm = _transform(usdm, (mid(spot) - mid(usdm)) // tick * tick)
    cm = _transform(cm, (mid(spot) - mid(cm)) // tick * tick, inverse_contract=100)
    sessions = [spot, usdm, cm]

    single = _cycle([spot], n)[0]
    merged, messages = _cycle(sessions, n)
    return single, merged, [(s[0], s[1]) for s in sessions], messages


def _cycle(sessions, n: int):
    """Interleave the sessions by receive time and repeat (with a resync per venue) up to ``n`` levels."""
    events = sorted(((ts, vi, lv) for vi, s in enumerate(sessions) for ts, lv in s[2]), key=lambda e: e[0])
    multi = len(sessions) > 1
    state = [(dict(s[0]), dict(s[1])) for s in sessions]
    out: list[tuple] = []
    messages: list[tuple[int, list]] = []
    first = True
    while len(out) < n:
        if not first:
            for vi, s in enumerate(sessions):
                lv = _resync_levels(state[vi][0], state[vi][1], s[0], s[1])
                _apply_to(state[vi], lv)
                messages.append((vi, lv))
                out.extend((vi, *x) for x in lv) if multi else out.extend(lv)
        first = False
        for _, vi, lv in events:
            _apply_to(state[vi], lv)
            messages.append((vi, lv))
            out.extend((vi, *x) for x in lv) if multi else out.extend(lv)
            if len(out) >= n:
                break
    del out[n:]
    return out, messages


def _apply_to(state, levels) -> None:
    bids, asks = state
    for s, p, q in levels:
        d = bids if s > 0 else asks
        if q:
            d[p] = q
        else:
            d.pop(p, None)


def synthetic_streams(n: int, seed: int = 7):
    """A synthetic stream with a realistic mix (inserts, size changes and deletes, mostly near the top)."""
    rng = random.Random(seed)
    tick = 10_000_000
    sessions = []
    for v in range(3):
        mid = 60_000 * SCALE + v * 3 * tick
        bids = {mid - k * tick: rng.randint(1, 5_000) * 1_000_000 for k in range(1, 800)}
        asks = {mid + k * tick: rng.randint(1, 5_000) * 1_000_000 for k in range(1, 800)}
        sessions.append((bids, asks))
    state = [(dict(b), dict(a)) for b, a in sessions]
    mids = [60_000 * SCALE + v * 3 * tick for v in range(3)]
    merged = []
    while len(merged) < n:
        vi = rng.randrange(3)
        bids, asks = state[vi]
        mids[vi] += rng.choice((-tick, 0, tick))
        side = rng.choice((1, -1))
        d = bids if side > 0 else asks
        off = int(rng.expovariate(1 / 40)) + 1
        price = mids[vi] - off * tick if side > 0 else mids[vi] + off * tick
        size = 0 if (price in d and rng.random() < 0.5) else rng.randint(1, 5_000) * 1_000_000
        if len(d) < 10:
            size = size or 1_000_000
        merged.append((vi, side, price, size))
        _apply_to(state[vi], [(side, price, size)])
    single = [(s, p, q) for v, s, p, q in merged if v == 0]
    while len(single) < n:
        single = single + single
    messages = [(vi, [(s, p, q)]) for vi, s, p, q in merged]
    return single[:n], merged, sessions, messages


# -- the measured loops -------------------------------------------------------------------------


def _timed(fn) -> float:
    gc.collect()
    gc.disable()
    try:
        t0 = time.process_time_ns()  # CPU time: robust to other jobs on a shared machine
        fn()
        return time.process_time_ns() - t0
    finally:
        gc.enable()


def bench_naive(stream, snap) -> float:
    bids = SortedDict(snap[0])
    asks = SortedDict(snap[1])

    def run():
        bpeek = bids.peekitem
        apeek = asks.peekitem
        for side, price, size in stream:
            d = bids if side > 0 else asks
            if size:
                d[price] = size
            elif price in d:
                del d[price]
            bpeek(-1)
            apeek(0)

    return _timed(run)


def bench_naive_merged(stream, snap) -> float:
    bids = SortedDict(snap[0])
    asks = SortedDict(snap[1])

    def run():
        bpeek = bids.peekitem
        apeek = asks.peekitem
        for _, side, price, size in stream:
            d = bids if side > 0 else asks
            if size:
                d[price] = size
            elif price in d:
                del d[price]
            bpeek(-1)
            apeek(0)

    return _timed(run)


def bench_venue(stream, snap) -> float:
    book = VenueBook("binance", "BTC/USDT")
    book.apply_snapshot(snap[0].items(), snap[1].items(), 0)

    def run():
        apply = book.apply_level
        best_bid = book.best_bid
        best_ask = book.best_ask
        for side, price, size in stream:
            apply(side, price, size)
            best_bid()
            best_ask()

    return _timed(run)


def _consolidated(snaps) -> ConsolidatedBook:
    cb = ConsolidatedBook("BTC/USDT")
    for i, (b, a) in enumerate(snaps):
        cb.add_venue(VenueBook(f"venue{i}", "BTC/USDT"))
        cb.apply_snapshot(i, b.items(), a.items(), 0)
    return cb


def bench_consolidated(stream, snaps) -> float:
    cb = _consolidated(snaps)

    def run():
        apply = cb.apply_level
        best_bid = cb.best_bid
        best_ask = cb.best_ask
        for vi, side, price, size in stream:
            apply(vi, side, price, size)
            best_bid()
            best_ask()

    return _timed(run)


def bench_consolidated_attr(stream, snaps) -> float:
    cb = _consolidated(snaps)

    def run():
        apply = cb.apply_level
        for vi, side, price, size in stream:
            apply(vi, side, price, size)
            cb.bid  # noqa: B018 - the read is the point
            cb.ask  # noqa: B018

    return _timed(run)


def bench_engine_path(messages, snaps) -> float:
    cb = _consolidated(snaps)
    seqs = [0] * len(snaps)

    def run():
        apply = cb.apply_delta
        for vi, levels in messages:
            s = seqs[vi] + 1
            seqs[vi] = s
            bids = [(p, q) for side, p, q in levels if side > 0]
            asks = [(p, q) for side, p, q in levels if side < 0]
            apply(vi, s, s, bids, asks, 0)
            cb.best_bid()
            cb.best_ask()

    # the split into bid/ask lists is the adapter's work: time it separately and subtract it
    def split_only():
        for vi, levels in messages:
            [(p, q) for side, p, q in levels if side > 0]
            [(p, q) for side, p, q in levels if side < 0]

    return _timed(run) - _timed(split_only)


def run(n: int = 1_000_000, repeat: int = 3) -> dict:
    """Build the streams, run every row ``repeat`` times (interleaved), return ns/update per row."""
    streams = real_streams(n)
    source = "real Binance diffs (../shared/data)"
    if streams is None:
        streams = synthetic_streams(n)
        source = "synthetic (../shared/data not found)"
    single, merged, snaps, messages = streams
    n_levels_msgs = sum(len(lv) for _, lv in messages)
    rows = {
        "naive SortedDict x2, 1 venue": lambda: bench_naive(single, snaps[0]) / len(single),
        "VenueBook, 1 venue": lambda: bench_venue(single, snaps[0]) / len(single),
        "ConsolidatedBook, 3 venues": lambda: bench_consolidated(merged, snaps) / len(merged),
        "ConsolidatedBook, 3 venues, .bid/.ask": lambda: bench_consolidated_attr(merged, snaps) / len(merged),
        "context: naive fed the 3-venue stream": lambda: bench_naive_merged(merged, snaps[0]) / len(merged),
        "context: engine path apply_delta/msg": lambda: bench_engine_path(messages, snaps) / n_levels_msgs,
    }
    best: dict[str, float] = {}
    for _ in range(repeat):
        for name, fn in rows.items():
            t = fn()
            best[name] = min(best.get(name, t), t)
    base = best["naive SortedDict x2, 1 venue"]
    return {
        "source": source,
        "updates": len(single),
        "repeat": repeat,
        "rows": {name: {"ns_per_update": ns, "ratio": ns / base} for name, ns in best.items()},
        "queries": bench_queries(merged, snaps),
    }


def bench_queries(merged, snaps) -> dict[str, float]:
    """µs per call of the depth queries, on the 3-venue book after a third of the stream."""
    cb = _consolidated(snaps)
    for vi, side, price, size in merged[: len(merged) // 3]:
        cb.apply_level(vi, side, price, size)
    venue = cb.venue_book(0)
    naive = SortedDict(venue._asks)
    calls = {
        "naive SortedDict: first 10 asks": lambda: list(naive.items()[:10]),
        "VenueBook.depth(SELL, 10)": lambda: venue.depth(-1, 10),
        "ConsolidatedBook.depth(SELL, 10)": lambda: cb.depth(-1, 10),
        "ConsolidatedBook.fee_adjusted_depth(SELL, 20)": lambda: cb.fee_adjusted_depth(-1, 20),
    }
    out = {}
    for name, fn in calls.items():
        fn()  # first call may compact the heap it walks
        reps = 2_000
        t0 = time.process_time_ns()
        for _ in range(reps):
            fn()
        out[name] = (time.process_time_ns() - t0) / reps / 1_000
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--updates", type=int, default=1_000_000, help="level updates per row (default 1,000,000)")
    ap.add_argument("--quick", action="store_true", help="100,000 updates, 1 repeat (smoke run)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per row, best kept (default 3)")
    args = ap.parse_args(argv)
    n, repeat = (min(args.updates, 100_000), 1) if args.quick else (args.updates, args.repeat)
    result = run(n, repeat)
    print(f"stream: {result['source']}; {result['updates']:,} updates per row; best of {result['repeat']}")
    print(f"python {sys.version.split()[0]}")
    print(f"{'row':<42} {'ns/update':>10} {'x naive':>8}")
    for name, r in result["rows"].items():
        print(f"{name:<42} {r['ns_per_update']:>10.0f} {r['ratio']:>8.2f}")
    print()
    print(f"{'query (3-venue book)':<50} {'us/call':>8}")
    for name, us in result["queries"].items():
        print(f"{name:<50} {us:>8.1f}")


if __name__ == "__main__":
    main()
