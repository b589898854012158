"""Smart-order-router benchmark: planning time per parent, and the router against its yardsticks
on the real recorded Binance books.

    python bench/bench_router.py [--plans N] [--quick]

Part 1 — planning time (``hft.router.plan``) per parent order on synthetic books: 3 and 10
venues × 20 levels a side, and 3 venues × 1000 levels (as deep as the recorded snapshots)
(different taker fees, lots and offsets), parents of three sizes
(about the best level, a quarter and three quarters of the consolidated depth), buys and sells
alternating. Every call is timed (this process's CPU time, ``time.process_time_ns``, so other
jobs on a shared machine do not count; GC off); median and p99 are exact.
Baseline in the same run: a naive planner that lists every level of every venue with its
all-in price, sorts them and walks the list (ratio column; it checks no venue rule but the lot,
so it is a speed reference only). Target: median ≤ 50 µs for 3
venues × 20 levels.

Part 2 — the three BTC markets of ``../shared/data/binance`` (spot BTCUSDT, USDⓈ-M BTCUSDT,
COIN-M BTCUSD_PERP) as three venues, each book built from its REST snapshot plus the bridged
diffs up to a common moment, basis removed. For order sizes 0.1–50 BTC, both sides: the
router's all-in average price, the best single venue's, the ideal fee-adjusted sweep's (no
constraints), in bp. :func:`recordings_rows` and :func:`format_recordings_table` are shared with
``tests/integration/test_router_recordings.py``, which asserts on the same rows.

How the recorded books are made one market (documented choices):

* **Moment**: the latest of the three snapshots' receive times plus ``offset_s`` (default 60 s
  and 240 s); every diff received up to then is applied (Binance's bridge rules, futures
  chaining on ``pu``).
* **Basis**: USDⓈ-M and COIN-M prices are shifted by ``spot mid − venue mid`` rounded to the
  venue's tick (0.1), so the mids coincide within half a tick (≤ 0.05 USD, < 0.01 bp). Spot is
  the reference and is not moved.
* **COIN-M size**: a contract is 100 USD, so ``BTC = contracts × 100 / price`` (at the level's
  unshifted price), truncated to 1e-9 BTC.
* **Venue rules**: taker fees spot 10 bp, USDⓈ-M 5 bp, COIN-M 5 bp (Binance's base tiers);
  lots spot 0.00001, USDⓈ-M 0.001, COIN-M 0.001 BTC (a contract is ≈ 0.0016 BTC, not a constant
  in BTC; 0.001 is the lot we give the venue here); ticks 0.01 / 0.1 / 0.1; min notional 5 /
  100 / 0 USD. No balance or position limits (the static-book comparison).
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hft import numbers  # noqa: E402
from hft.book import ConsolidatedBook, VenueBook  # noqa: E402
from hft.model import Side  # noqa: E402
from hft.numbers import SCALE, parse  # noqa: E402
from venues.sim.recording import is_depth_snapshot, iter_messages, stream_data  # noqa: E402
from hft.router import ParentOrder, VenueInfo, best_single_venue, bps_worse, ideal_sweep, plan  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "binance"
RECORDINGS = {  # venue -> (file, tick, lot, min notional, taker fee ppm, inverse contract size in USD)
    "spot": ("spot_btcusdt_20240808.gz", "0.01", "0.00001", "5", 1000, 0),
    "usdm": ("usdm_btcusdt_20240808.gz", "0.1", "0.001", "100", 500, 0),
    "cm": ("cm_btcusd_perp_20240808.gz", "0.1", "0.001", "0", 500, 100),
}
SIZES = ("0.1", "1", "5", "20", "50")
OFFSETS_S = (60.0, 240.0)


# -- part 1: planning time ------------------------------------------------------------------------


def synthetic_book(n_venues: int, n_levels: int, seed: int = 7) -> tuple[ConsolidatedBook, list[VenueInfo]]:
    """``n_venues`` venues around 60,000 with ``n_levels`` levels a side, varied fees/lots/offsets."""
    rng = random.Random(seed)
    cb = ConsolidatedBook("BTC/USDT")
    infos = []
    tick = parse("0.01")
    for v in range(n_venues):
        name = f"v{v}"
        fee = rng.choice([200, 400, 500, 750, 1000])
        lot = rng.choice([parse("0.00001"), parse("0.0001"), parse("0.001")])
        cb.add_venue(VenueBook(name, "BTC/USDT"), fee)
        mid = 60_000 * SCALE + rng.randint(-300, 300) * tick
        bids, asks = [], []
        for k in range(n_levels):
            step = (k + 1) * rng.randint(50, 150) * tick
            bids.append((mid - step, rng.randint(1, 200) * parse("0.001")))  # a multiple of every lot
            asks.append((mid + step, rng.randint(1, 200) * parse("0.001")))
        cb.apply_snapshot(name, bids, asks, 1, 0)
        infos.append(VenueInfo(name, tick, lot, lot, parse("5"), fee))
    return cb, infos


def naive_plan(parent: ParentOrder, book: ConsolidatedBook, venues: list[VenueInfo]) -> list[tuple[str, int]]:
    """Baseline: every level of every venue, sorted by all-in price, walked until covered."""
    buy = parent.side is Side.BUY
    rows = []
    for k, v in enumerate(venues):
        if not book.is_active(v.venue):
            continue
        vb = book.venue_book(v.venue)
        side = -1 if buy else 1
        f = v.taker_fee_ppm
        for p, s in vb.depth(side, vb.level_count(side)):
            key = p * (numbers.PPM + f) if buy else -p * (numbers.PPM - f)
            rows.append((key, k, p, s))
    rows.sort()
    left = parent.qty
    alloc = [0] * len(venues)
    for _, k, p, s in rows:
        if left <= 0:
            break
        take = min(s, left)
        take -= take % venues[k].lot_size
        alloc[k] += take
        left -= take
    return [(venues[k].venue, q) for k, q in enumerate(alloc) if q]


def _time_calls(fn, args_list: list[tuple]) -> list[int]:
    gc.collect()
    gc.disable()
    try:
        out = []
        clock = time.process_time_ns  # CPU time: robust to other jobs on a shared machine
        for args in args_list:
            t0 = clock()
            fn(*args)
            out.append(clock() - t0)
        return out
    finally:
        gc.enable()


def _pct(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1e3


def planning_rows(n_plans: int = 3000) -> list[dict]:
    rows = []
    for n_venues, n_levels in ((3, 20), (10, 20), (3, 1000)):
        book, venues = synthetic_book(n_venues, n_levels)
        depth = sum(s for _, s, _ in book.depth(-1, 10_000))
        best = book.best_ask()[1]
        sizes = {
            "best level": max(best - best % parse("0.001"), parse("0.001")),
            "1/4 depth": depth // 4 - (depth // 4) % parse("0.001"),
            "3/4 depth": depth * 3 // 4 - (depth * 3 // 4) % parse("0.001"),
        }
        for label, qty in sizes.items():
            parents = [
                ParentOrder("BTC/USDT", Side.BUY if i % 2 == 0 else Side.SELL, qty) for i in range(n_plans)
            ]
            for p in parents[:50]:  # warm-up
                plan(p, book, venues)
            ours = sorted(_time_calls(plan, [(p, book, venues) for p in parents]))
            base = sorted(_time_calls(naive_plan, [(p, book, venues) for p in parents]))
            sample = plan(parents[0], book, venues)
            rows.append({
                "venues": n_venues,
                "levels": n_levels,
                "parent": label,
                "qty": numbers.to_str(qty),
                "children": len(sample.children),
                "median_us": _pct(ours, 0.5),
                "p99_us": _pct(ours, 0.99),
                "naive_median_us": _pct(base, 0.5),
                "ratio": _pct(ours, 0.5) / _pct(base, 0.5),
            })
    return rows


# -- part 2: the recorded books --------------------------------------------------------------------


def _load(name: str, until_ns: int | None) -> tuple[tuple, list[tuple]]:
    """(snapshot (last id, bids, asks, recv ns), diffs [(recv, U, u, pu, bids, asks)]) received up to ``until_ns``."""
    snap = None
    diffs = []
    for ts, msg in iter_messages(DATA / name):
        if until_ns is not None and ts > until_ns:
            break
        if is_depth_snapshot(msg):
            if snap is None:
                snap = (
                    msg["lastUpdateId"], [(parse(p), parse(q)) for p, q in msg["bids"]],
                    [(parse(p), parse(q)) for p, q in msg["asks"]], ts,
                )
                if until_ns is None:
                    break
            continue
        d = stream_data(msg, "depthUpdate")
        if d is not None:
            diffs.append((
                ts, d["U"], d["u"], d.get("pu"),
                [(parse(p), parse(q)) for p, q in d["b"]], [(parse(p), parse(q)) for p, q in d["a"]],
            ))
    return snap, diffs


def _raw_book(name: str, until_ns: int) -> VenueBook:
    """One venue's book at ``until_ns``: its snapshot, then every bridged diff received by then."""
    snap, diffs = _load(name, until_ns)
    assert snap is not None, f"{name}: no snapshot before the moment"
    last, bids, asks, _ = snap
    book = VenueBook(name, "BTC", bridge=True)
    book.apply_snapshot(bids, asks, last)
    for _ts, U, u, pu, b, a in diffs:
        if u <= last:
            continue  # contained in the snapshot
        first = U if pu is None else pu + 1
        assert book.apply_delta(first, u, b, a), f"{name}: gap at {U}..{u}"
    return book


def recorded_market(offset_s: float) -> tuple[ConsolidatedBook, list[VenueInfo], dict]:
    """The three recorded BTC books as one market ``offset_s`` after the last snapshot (module doc)."""
    snap_times = [_load(f, None)[0][3] for f, *_ in RECORDINGS.values()]
    moment = max(snap_times) + int(offset_s * 1e9)
    raw = {v: _raw_book(f, moment) for v, (f, *_) in RECORDINGS.items()}
    spot_mid = raw["spot"].mid()
    cb = ConsolidatedBook("BTC/USDT")
    infos = []
    meta = {"moment_ns": moment, "shift": {}}
    for v, (_f, tick, lot, min_notional, fee, contract) in RECORDINGS.items():
        book = raw[v]
        tick_fp = parse(tick)
        shift = 0 if v == "spot" else round((spot_mid - book.mid()) / tick_fp) * tick_fp
        meta["shift"][v] = shift

        def size(p: int, q: int, contract: int = contract) -> int:
            return q * contract * SCALE // p if contract else q

        bids = [(p + shift, size(p, q)) for p, q in book.depth(1, 10_000)]
        asks = [(p + shift, size(p, q)) for p, q in book.depth(-1, 10_000)]
        cb.add_venue(VenueBook(v, "BTC/USDT"), fee)
        cb.apply_snapshot(v, [x for x in bids if x[1]], [x for x in asks if x[1]], book.seq or 0)
        infos.append(VenueInfo(v, tick_fp, parse(lot), parse(lot), parse(min_notional), fee))
    meta["mids"] = {v: cb.venue_book(v).mid() for v in RECORDINGS}
    return cb, infos, meta


def recordings_rows(offsets_s=OFFSETS_S, sizes=SIZES) -> list[dict]:
    """For every moment, size and side: the router, the best single venue and the ideal sweep."""
    rows = []
    for offset in offsets_s:
        book, venues, meta = recorded_market(offset)
        for size in sizes:
            for side in (Side.BUY, Side.SELL):
                parent = ParentOrder("BTC/USDT", side, parse(size))
                t0 = time.perf_counter_ns()
                p = plan(parent, book, venues)
                plan_us = (time.perf_counter_ns() - t0) / 1e3
                single = best_single_venue(parent, book, venues)
                ideal = ideal_sweep(book, side, parent.qty)
                rows.append({
                    "offset_s": offset,
                    "side": side.name,
                    "size": size,
                    "qty": p.qty,
                    "parent_qty": parent.qty,
                    "split": {c.venue: c.qty for c in p.children},
                    "router": p.avg_price,
                    "single_venue": single[0] if single else None,
                    "single_qty": single[1].qty if single else 0,
                    "single": single[1].avg_price if single else None,
                    "ideal_qty": ideal.qty,
                    "ideal": ideal.avg_price,
                    "vs_single_bps": bps_worse(side, p.avg_price, single[1].avg_price) if single else None,
                    "vs_ideal_bps": bps_worse(side, p.avg_price, ideal.avg_price),
                    "plan_us": plan_us,
                    "mid": book.mid(),
                })
    return rows


def format_recordings_table(rows: list[dict]) -> str:
    head = (
        f"{'t+s':>5} {'side':<4} {'size':>5} {'router all-in':>14} {'best single':>19} {'ideal sweep':>12}"
        f" {'vs single':>9} {'vs ideal':>8}  split"
    )
    lines = [head]
    for r in rows:
        split = " ".join(f"{v}:{numbers.to_str(q)}" for v, q in r["split"].items())
        single = f"{r['single_venue']} {numbers.to_float(r['single']):,.2f}" if r["single"] else "-"
        lines.append(
            f"{r['offset_s']:>5.0f} {r['side']:<4} {r['size']:>5} {numbers.to_float(r['router']):>14,.2f}"
            f" {single:>19} {numbers.to_float(r['ideal']):>12,.2f} {r['vs_single_bps']:>+9.3f}"
            f" {r['vs_ideal_bps']:>+8.4f}  {split}"
        )
    lines.append("all-in = price with the venue's taker fee; bp: router vs it, negative = router better")
    return "\n".join(lines)


# -- entry points ----------------------------------------------------------------------------------


def run(n_plans: int = 3000, recordings: bool = True) -> dict:
    out = {"planning": planning_rows(n_plans), "recordings": None}
    if recordings and all((DATA / f).exists() for f, *_ in RECORDINGS.values()):
        out["recordings"] = recordings_rows()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plans", type=int, default=3000, help="timed plans per row (default 3000)")
    ap.add_argument("--quick", action="store_true", help="300 plans per row")
    args = ap.parse_args(argv)
    result = run(300 if args.quick else args.plans)
    print(f"python {sys.version.split()[0]}; planning time per parent (hft.router.plan), every call timed")
    print(
        f"{'venues x levels':<16} {'parent':<11} {'qty':>9} {'children':>8} {'median us':>10} {'p99 us':>8}"
        f" {'naive med us':>12} {'x naive':>8}"
    )
    for r in result["planning"]:
        print(
            f"{str(r['venues']) + ' x ' + str(r['levels']):<16} {r['parent']:<11} {r['qty']:>9} {r['children']:>8}"
            f" {r['median_us']:>10.1f} {r['p99_us']:>8.1f} {r['naive_median_us']:>12.1f} {r['ratio']:>8.2f}"
        )
    print("target: median <= 50 us for 3 venues x 20 levels")
    print()
    if result["recordings"] is None:
        print(f"recorded books: {DATA} not found, skipped")
        return
    print("recorded Binance BTC books (spot / USD-M / COIN-M as three venues, basis removed)")
    print(format_recordings_table(result["recordings"]))


if __name__ == "__main__":
    main()
