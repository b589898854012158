"""Journal benchmark: cost on the caller's thread and records committed per second.

    python bench/bench_journal.py [--records N] [--quick] [--repeat R] [--dir DIR]

Rows (all measured in the same run, best of ``--repeat``; ratios are to row 1):

1. baseline: the naive synchronous journal, one ``INSERT`` + ``COMMIT`` per fill on the caller's
   thread (WAL, ``synchronous=NORMAL``). Its caller cost IS its commit cost.
2. the same with ``synchronous=FULL`` (an fsync per commit; fewer records: it is slow on disk).
3. ``Journal.record_fill`` (defaults: batch 1000, 50 ms, NORMAL).
4. the same with ``synchronous=FULL``: the fsync is paid per batch, not per record.
5. ``Journal.record_order`` (order upsert + appended event per record).
6. ``Journal.record_intent``.

Columns:

* ``burst ns/rec``: caller wall time per record in bursts of ``--burst`` records, the writer
  committing between bursts (an engine's pattern: a reaction to a book update, then quiet).
* ``saturated ns/rec``: caller wall time per record in one tight loop of N records while the
  writer runs; the queue grows (the loop outruns the writer), the GIL is shared with it and the
  garbage collector walks the growing backlog, so this is the worst case.
* ``rec/s``: records committed per second in the saturated run, first record to ``flush()``
  returned: the writer's sustained rate.

GC stays enabled (queued tuples are part of the real cost). The files live in ``--dir``
(default: the system temp folder), so FULL rows measure that disk's fsync. No pass/fail here:
timings belong in this table, never in tests.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hft.journal import _INSERT_FILL, _SCHEMA, Journal  # noqa: E402
from hft.model import Fill, Liquidity, Order, OrderStatus, Side  # noqa: E402


def _fills(n: int, tag: str) -> list[Fill]:
    return [
        Fill("alpha", "BTC/USDT", f"h{tag}-{i}", f"{tag}{i}", Side.BUY if i % 2 else Side.SELL,
             61_837_600_000_000 + i * 10_000_000, 1_000_000 + i, 3_091 + i, "USDT", Liquidity.MAKER, f"v{i}",
             1_723_161_255_308_000_000 + i, 5_000_000 + i)
        for i in range(n)
    ]


def _orders(n: int, tag: str) -> list[Order]:
    out = []
    for i in range(n):
        o = Order(f"h{tag}-{i}", "alpha", "BTC/USDT", Side.BUY, 10_000_000, 61_837_600_000_000 + i * 10_000_000,
                  tag="mm:bid:0")
        o.status, o.venue_order_id = OrderStatus.OPEN, f"v{i}"
        out.append(o)
    return out


def _baseline(path: Path, fills: list[Fill], sync: str) -> tuple[float, float, float]:
    """Synchronous INSERT + COMMIT per fill: (wall ns/rec, cpu ns/rec, rec/s)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {sync}")
    conn.executescript(_SCHEMA)
    t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
    for f in fills:
        conn.execute(_INSERT_FILL, (
            f.venue, f.trade_id, f.client_order_id, f.venue_order_id, f.symbol, "buy" if f.side is Side.BUY else "sell",
            f.price, f.qty, f.fee, f.fee_asset, f.liquidity.value, f.ts_venue, f.ts_recv, time.time_ns(), None,
        ))
        conn.commit()
    wall, cpu = time.perf_counter_ns() - t0, time.thread_time_ns() - c0
    assert conn.execute("SELECT count(*) FROM fills").fetchone()[0] == len(fills)
    conn.close()
    n = len(fills)
    return wall / n, cpu / n, n / (wall / 1e9)


def _journal(
    path: Path, records: list, method: str, *, sync: str = "NORMAL", kind: str | None = None, burst: int = 0
) -> tuple[float, float]:
    """Enqueue every record with ``method`` (and ``kind``): (caller wall ns/rec, committed rec/s).

    With ``burst``, only the bursts are timed and the writer commits between them (rate is then 0).
    """
    n = len(records)
    j = Journal(path, synchronous=sync).open()
    record = getattr(j, method)
    chunks = [records[i:i + burst] for i in range(0, n, burst)] if burst else [records]
    timed = 0
    t0 = time.perf_counter_ns()
    for chunk in chunks:
        t = time.perf_counter_ns()
        if kind is None:
            for r in chunk:
                record(r)
        else:
            for r in chunk:
                record(r, kind)
        timed += time.perf_counter_ns() - t
        if burst:
            j.flush(timeout=600)
    j.flush(timeout=600)
    rate = 0.0 if burst else n / ((time.perf_counter_ns() - t0) / 1e9)
    stats = j.stats()
    j.close()
    assert stats["written"] == n and stats["errors"] == 0, stats
    return timed / n, rate


def run(
    records: int = 100_000, *, quick: bool = False, repeat: int = 3, burst: int = 500, directory: str | None = None
) -> dict:
    """Measure every row; returns ``{"records": N, "rows": [{name, burst_ns, saturated_ns, rate}, ...]}``."""
    if quick:
        records, repeat = min(records, 5_000), 1
    full_n = max(50, min(records // 50, 2_000))
    base = Path(tempfile.mkdtemp(prefix="bench_journal_", dir=directory))
    counter = iter(range(10**9))

    def fresh() -> Path:
        return base / f"j{next(counter)}.sqlite"

    def baseline(sync: str, n: int):
        def measure() -> tuple[float, float, float]:
            ns, _, rate = _baseline(fresh(), _fills(n, "b"), sync)
            return ns, ns, rate
        return measure

    def journal(method: str, make, sync: str = "NORMAL", kind: str | None = None):
        def measure() -> tuple[float, float, float]:
            burst_ns, _ = _journal(fresh(), make(records, "u"), method, sync=sync, kind=kind, burst=burst)
            sat_ns, rate = _journal(fresh(), make(records, "s"), method, sync=sync, kind=kind)
            return burst_ns, sat_ns, rate
        return measure

    cases = [
        ("baseline: INSERT+COMMIT per fill, NORMAL", records, baseline("NORMAL", records)),
        ("baseline: INSERT+COMMIT per fill, FULL", full_n, baseline("FULL", full_n)),
        ("journal.record_fill", records, journal("record_fill", _fills)),
        ("journal.record_fill, FULL", records, journal("record_fill", _fills, "FULL")),
        ("journal.record_order (upsert + event)", records, journal("record_order", _orders, kind="accepted")),
        ("journal.record_intent (upsert + event)", records, journal("record_intent", _orders)),
    ]
    rows = []
    try:
        for name, n, measure in cases:
            runs = [measure() for _ in range(repeat)]
            rows.append({
                "name": name, "records": n, "burst_ns": min(r[0] for r in runs),
                "saturated_ns": min(r[1] for r in runs), "rate": max(r[2] for r in runs),
            })
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {"records": records, "burst": burst, "directory": str(base.parent), "rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="a smoke run (5000 records, one repeat)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--burst", type=int, default=500, help="records per burst in the burst column")
    ap.add_argument("--dir", default=None, help="folder for the SQLite files (default: the system temp folder)")
    args = ap.parse_args()
    res = run(args.records, quick=args.quick, repeat=args.repeat, burst=args.burst, directory=args.dir)
    rows = res["rows"]
    b = rows[0]
    print(f"journal benchmark: {res['records']} records per row (FULL baseline: {rows[1]['records']}), "
          f"bursts of {res['burst']}, files in {res['directory']}, SQLite {sqlite3.sqlite_version}")
    print(f"{'workload':<42}{'burst ns/rec':>13}{'vs base':>9}{'saturated ns/rec':>18}{'rec/s':>10}{'vs base':>9}")
    for r in rows:
        print(f"{r['name']:<42}{r['burst_ns']:>13,.0f}{r['burst_ns'] / b['burst_ns']:>9.3f}"
              f"{r['saturated_ns']:>18,.0f}{r['rate']:>10,.0f}{r['rate'] / b['rate']:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
