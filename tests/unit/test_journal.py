"""The SQLite journal (hft/journal.py): real files, a real writer thread, a real SIGKILL."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from hft import numbers as n
from hft.clock import ManualClock
from hft.config import DEFAULT_CONFIG_PATH
from hft.journal import (
    Journal,
    JournalError,
    JournalReader,
    JournalRecorder,
    format_fills,
    format_orders,
    format_pnl,
    journal_cli,
    parse_since,
    pnl_from_fills,
)
from hft.model import Fill, Liquidity, Order, OrderStatus, OrderType, Side, TimeInForce
from hft.portfolio import Portfolio

ROOT = Path(__file__).resolve().parents[2]
P = n.parse
MIN = 60 * 10**9


def order(cid="h1-1", venue="alpha", side=Side.BUY, price="61837.6", qty="0.015", **kw) -> Order:
    return Order(cid, venue, "BTC/USDT", side, P(qty), None if price is None else P(price), **kw)


def fill(tid="t1", venue="alpha", cid="h1-1", side=Side.BUY, price="61837.6", qty="0.005", fee="0.0309188",
         **kw) -> Fill:
    return Fill(venue, "BTC/USDT", cid, tid, side, P(price), P(qty), P(fee), "USDT", Liquidity.MAKER, **kw)


def wait_until(cond, timeout=10.0):
    """Wait for a condition the writer thread brings about (a deadline, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "journal.sqlite", flush_interval_s=0.01).open()
    yield j
    if not j._closed:
        try:
            j.close()
        except JournalError:
            pass


# --------------------------------------------------------------------------- schema


@pytest.mark.parametrize("sync, code", [("NORMAL", 1), ("full", 2)])
def test_open_creates_parent_dirs_schema_and_wal(tmp_path, sync, code):
    path = tmp_path / "var" / "deep" / "journal.sqlite"
    j = Journal(path, synchronous=sync).open()
    try:
        assert path.is_file()
        raw = sqlite3.connect(path)
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        assert {"sessions", "orders", "order_events", "fills", "snapshots"} <= tables
        indexes = {r[0] for r in raw.execute("SELECT name FROM sqlite_schema WHERE type = 'index'")}
        assert {"orders_updated", "orders_open", "order_events_order", "fills_recorded", "snapshots_key"} <= indexes
        pk = [r[1] for r in raw.execute("PRAGMA table_info(fills)") if r[5]]
        assert sorted(pk) == ["symbol", "trade_id", "venue"]
        raw.close()
        assert j._wconn.execute("PRAGMA synchronous").fetchone()[0] == code
    finally:
        j.close()


def test_invalid_settings_and_foreign_files_are_refused(tmp_path):
    with pytest.raises(ValueError):
        Journal(tmp_path / "j.sqlite", synchronous="OFF")
    with pytest.raises(ValueError):
        Journal(tmp_path / "j.sqlite", batch_max=0)
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(JournalError, match="not an hft journal"):
        Journal(other).open()
    newer = tmp_path / "newer.sqlite"
    con = sqlite3.connect(newer)
    con.execute("PRAGMA user_version = 99")
    con.close()
    with pytest.raises(JournalError, match="newer"):
        Journal(newer).open()
    with pytest.raises(JournalError, match="no journal"):
        JournalReader(tmp_path / "missing.sqlite").fills()
    assert not (tmp_path / "missing.sqlite").exists()  # a reader never creates a file


def _downgrade_fills_to_v1(path: Path) -> None:
    """Rewrite a journal's fills table as schema v1 had it: keyed by (venue, trade_id)."""
    con = sqlite3.connect(path)
    sql = con.execute("SELECT sql FROM sqlite_schema WHERE name = 'fills'").fetchone()[0]
    con.executescript(
        "ALTER TABLE fills RENAME TO f2; DROP INDEX fills_recorded; DROP INDEX fills_order;"
        + sql.replace("PRIMARY KEY (venue, symbol, trade_id)", "PRIMARY KEY (venue, trade_id)")
        + "; INSERT INTO fills SELECT * FROM f2; DROP TABLE f2;"
        " CREATE INDEX fills_recorded ON fills (recorded_ns); CREATE INDEX fills_order ON fills (client_order_id);"
    )
    con.close()


def _v1_journal_with_one_fill(path: Path) -> Path:
    """A journal as schema v1 left it (label and fills key), holding trade "7"."""
    with Journal(path) as j:
        j.record_fill(fill("7"))
    _downgrade_fills_to_v1(path)
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 1")
    con.close()
    return path


def test_a_v1_journal_is_upgraded_with_its_fills(tmp_path, caplog):
    path = _v1_journal_with_one_fill(tmp_path / "v1.sqlite")
    with caplog.at_level(logging.WARNING, logger="hft.journal"), Journal(path) as j:
        eth = Fill("alpha", "ETH/USDT", "h1-2", "7", Side.BUY, P("3000"), P("0.1"), P("0.03"), "USDT",
                   Liquidity.MAKER)
        j.record_fill(eth)  # the same trade id on another symbol: a fill of its own since v2
        j.flush()
        assert sorted((f.symbol, f.trade_id) for f in j.fills()) == [("BTC/USDT", "7"), ("ETH/USDT", "7")]
    assert "upgraded from schema v1 to v2" in caplog.text
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 2


def test_a_failed_upgrade_leaves_the_v1_journal_as_it_was(tmp_path, monkeypatch):
    import hft.journal

    path = _v1_journal_with_one_fill(tmp_path / "v1.sqlite")
    broken = (*hft.journal._FILLS_DDL, "CREATE INDEX fails ON no_such_table (x)")  # fails after the rebuild began
    monkeypatch.setattr(hft.journal, "_FILLS_DDL", broken)
    with pytest.raises(JournalError, match="no_such_table"):
        Journal(path).open()
    con = sqlite3.connect(path)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    assert con.execute("PRAGMA user_version").fetchone()[0] == 1 and "fills_v1" not in tables
    assert con.execute("SELECT trade_id FROM fills").fetchall() == [("7",)]
    con.close()
    monkeypatch.undo()
    with Journal(path) as j:  # and the next start upgrades it
        assert [f.trade_id for f in j.fills()] == ["7"]
        assert j._query("PRAGMA user_version")[0][0] == 2


def test_a_journal_whose_tables_differ_from_its_label_is_refused(tmp_path):
    path = tmp_path / "relabelled.sqlite"
    with Journal(path) as j:
        j.record_fill(fill("7"))
    _downgrade_fills_to_v1(path)  # still labelled v2: what an upgrade without migration used to leave
    with pytest.raises(JournalError, match="labelled schema v2 but fills differ"):
        Journal(path).open()


def test_records_before_open_and_after_close_raise(tmp_path):
    j = Journal(tmp_path / "j.sqlite")
    with pytest.raises(JournalError, match="not open"):
        j.record_fill(fill())
    j.open()
    j.close()
    with pytest.raises(JournalError, match="closed"):
        j.record_fill(fill())
    with pytest.raises(JournalError):
        j.flush()


# --------------------------------------------------------------------------- round trips


def test_intent_and_order_updates_round_trip_exactly(journal):
    o = order(order_type=OrderType.LIMIT, time_in_force=TimeInForce.IOC, post_only=True, tag="mm:bid:0")
    journal.record_intent(o)
    o.status, o.venue_order_id = OrderStatus.OPEN, "v-77"
    journal.record_order(o, "accepted")
    f = fill()
    o.filled_qty, o.filled_notional, o.fees = f.qty, n.mul(f.price, f.qty), f.fee
    o.status = OrderStatus.PARTIALLY_FILLED
    journal.record_order(o, "filled", f.trade_id)
    o.status = OrderStatus.EXPIRED
    journal.record_order(o, "expired")
    journal.flush()

    (row,) = journal.orders()
    assert (row.client_order_id, row.venue, row.symbol, row.side) == ("h1-1", "alpha", "BTC/USDT", Side.BUY)
    assert (row.order_type, row.time_in_force, row.post_only, row.tag) == (OrderType.LIMIT, TimeInForce.IOC, True,
                                                                           "mm:bid:0")
    assert row.price == 61_837_600_000_000 and row.qty == 15_000_000
    assert row.status is OrderStatus.EXPIRED and row.venue_order_id == "v-77"
    assert (row.filled_qty, row.filled_notional, row.fees) == (5_000_000, 309_188_000_000, 30_918_800)
    assert row.avg_price == P("61837.6")
    assert row.created_ns < row.updated_ns
    back = row.to_order()
    assert (back.price, back.qty, back.filled_qty, back.status, back.tag) == (o.price, o.qty, o.filled_qty,
                                                                             o.status, o.tag)
    kinds = [(e.kind, e.status, e.detail) for e in journal.order_events("h1-1")]
    assert kinds == [
        ("intent", OrderStatus.PENDING, ""),
        ("accepted", OrderStatus.OPEN, ""),
        ("filled", OrderStatus.PARTIALLY_FILLED, "t1"),
        ("expired", OrderStatus.EXPIRED, ""),
    ]


def test_order_is_copied_at_call_time_not_when_written(tmp_path):
    j = Journal(tmp_path / "j.sqlite", flush_interval_s=60).open()  # the writer waits for flush()
    try:
        o = order()
        j.record_intent(o)
        o.status, o.filled_qty = OrderStatus.FILLED, o.qty  # mutated before the writer sees the record
        j.flush()
        assert j.order_events()[0].status is OrderStatus.PENDING
        assert j.orders()[0].filled_qty == 0
    finally:
        j.close()


def test_market_order_without_price_and_record_order_without_intent(journal):
    o = order("adopt-1", price=None, order_type=OrderType.MARKET, status=OrderStatus.OPEN, venue_order_id="x9")
    journal.record_order(o, "adopted", "found on venue at reconciliation")
    journal.flush()
    (row,) = journal.orders()
    assert row.price is None and row.order_type is OrderType.MARKET and row.status is OrderStatus.OPEN
    assert journal.order_events()[0].kind == "adopted"


def test_fills_round_trip_exactly(journal):
    f = fill(venue_order_id="v-1", ts_venue=1_723_161_255_308_000_000, ts_recv=987_654_321)
    rebate = fill("t2", side=Side.SELL, price="61837.61", qty="0.000000001", fee="-0.000000007")
    journal.record_fill(f)
    journal.record_fill(rebate)
    journal.flush()
    rows = journal.fills()
    assert [r.to_fill() for r in rows] == [f, rebate]
    assert rows[1].fee == -7 and rows[1].qty == 1
    assert all(r.recorded_ns > 0 for r in rows)


def test_amounts_beyond_64_bits_are_kept_exact_as_text(journal, tmp_path):
    huge_qty = 10**20  # 100 billion tokens at SCALE 1e9: does not fit in a SQLite INTEGER
    o = order("big-1", price="0.00001234", qty="1", filled_notional=10**30)
    o.qty = huge_qty
    journal.record_intent(o)
    journal.record_fill(fill("tb", price="0.00001234", qty="1"))
    journal.record_snapshot("PEPE/USDT", "total", -(10**25), 12_340, 10**19, 0, 12_345)
    journal.flush()
    row = journal.orders()[0]
    assert row.qty == huge_qty and row.filled_notional == 10**30
    snap = journal.snapshots()[0]
    assert (snap.position, snap.realized) == (-(10**25), 10**19)
    assert journal.fills()[0].price == 12_340
    assert journal.errors == 0
    raw = sqlite3.connect(journal.path)
    assert raw.execute("SELECT typeof(qty), typeof(price), typeof(filled_notional) FROM orders").fetchone() == (
        "text", "integer", "text")


def test_a_bad_record_is_isolated_logged_and_counted(journal, caplog):
    bad = Fill("alpha", "BTC/USDT", "h1-1", "t-bad", Side.BUY, 61837.6, P("1"), 0, "USDT", Liquidity.MAKER)  # float
    with caplog.at_level(logging.ERROR, logger="hft.journal"):
        journal.record_fill(fill("t1"))
        journal.record_fill(bad)
        journal.record_fill(fill("t2"))
        journal.flush()
    assert [r.trade_id for r in journal.fills()] == ["t1", "t2"]  # its batch-mates are committed
    assert journal.errors == 1 and journal.lost == 1 and journal.healthy
    assert any("t-bad" in r.getMessage() for r in caplog.records)


def test_snapshots_and_portfolio_round_trip(journal):
    p = Portfolio(["alpha", "beta"])
    p.on_fill(fill("t1", "alpha", price="100", qty="1", fee="0.1"))
    p.on_fill(fill("t2", "beta", side=Side.SELL, price="101", qty="0.4", fee="0.05"))
    p.mark = P("100.5")
    journal.record_portfolio("BTC/USDT", p)
    p.on_fill(fill("t3", "beta", side=Side.SELL, price="102", qty="0.6", fee="0.05"))
    journal.record_portfolio("BTC/USDT", p)
    journal.flush()
    assert len(journal.snapshots()) == 6
    latest = {s.venue: s for s in journal.latest_snapshots()}
    assert list(latest) == ["alpha", "beta", "total"]
    t = latest["total"]
    assert (t.position, t.avg_price, t.realized, t.fees, t.mark) == (0, 0, P("1.6"), P("0.2"), P("100.5"))
    assert latest["beta"].position == -P("1") and latest["beta"].avg_price == P("101.6")
    assert latest["alpha"].unrealized == P("0.5") and latest["alpha"].net == P("0.4")


def test_sessions_are_stamped_on_records_and_ended_by_close(tmp_path):
    path = tmp_path / "j.sqlite"
    j = Journal(path).open()
    assert j.last_session() is None
    sid = j.start_session("hab-", "d1")
    j.record_fill(fill("t1"))
    j.close()
    j2 = Journal(path).open()
    sid2 = j2.start_session("hcd-", "d2")
    j2.record_fill(fill("t2"))
    j2.flush()
    assert (sid, sid2) == (1, 2)
    s1, s2 = j2.sessions()
    assert (s1.cid_prefix, s1.config_digest, s1.pid) == ("hab-", "d1", os.getpid())
    assert s1.ended_ns is not None and s1.ended_ns >= s1.started_ns
    assert s2.ended_ns is None and j2.last_session() == s2
    assert [f.session_id for f in j2.fills()] == [1, 2]
    j2.close()


def test_open_orders_is_the_journals_view_of_orders_not_done(journal):
    states = {"a": OrderStatus.PENDING, "b": OrderStatus.OPEN, "c": OrderStatus.PARTIALLY_FILLED,
              "d": OrderStatus.FILLED, "e": OrderStatus.CANCELED, "f": OrderStatus.REJECTED}
    for cid, st in states.items():
        journal.record_order(order(cid, venue="beta" if cid == "b" else "alpha", status=st), "x")
    journal.flush()
    assert [r.client_order_id for r in journal.open_orders()] == ["a", "b", "c"]
    assert [r.client_order_id for r in journal.open_orders("beta")] == ["b"]
    assert [r.client_order_id for r in journal.orders(status="canceled")] == ["e"]
    assert [r.client_order_id for r in journal.orders(venue="beta")] == ["b"]


# --------------------------------------------------------------------------- dedup


def test_fill_dedup_on_venue_and_trade_id(tmp_path):
    path = tmp_path / "j.sqlite"
    j = Journal(path).open()
    j.record_fill(fill("t1", "alpha"))
    j.record_fill(fill("t1", "alpha"))  # the same fill again (a replayed user stream)
    j.record_fill(fill("t1", "beta"))  # the same trade id on another venue is another fill
    j.flush()
    assert sorted((f.venue, f.trade_id) for f in j.fills()) == [("alpha", "t1"), ("beta", "t1")]
    assert j.duplicate_fills == 1
    j.close()
    j = Journal(path).open()  # and across restarts
    j.record_fill(fill("t1", "beta", price="1"))
    j.record_fill(fill("t2", "beta"))
    j.flush()
    assert len(j.fills()) == 3 and j.duplicate_fills == 1
    assert [f.price for f in j.fills(venue="beta")] == [P("61837.6"), P("61837.6")]  # the first one wins
    assert j.fill_ids("beta") == {("BTC/USDT", "t1"), ("BTC/USDT", "t2")} and j.fill_ids("gamma") == set()
    assert j.has_fill("alpha", "BTC/USDT", "t1") and not j.has_fill("alpha", "BTC/USDT", "t2")
    eth = Fill("alpha", "ETH/USDT", "h1-9", "t1", Side.BUY, P("3000"), P("0.1"), P("0.03"), "USDT", Liquidity.MAKER)
    j.record_fill(eth)  # trade ids are per symbol: the same id on another symbol is another fill
    j.flush()
    assert j.has_fill("alpha", "ETH/USDT", "t1") and j.duplicate_fills == 1
    j.close()


# --------------------------------------------------------------------------- flush and batching


def test_nothing_is_committed_before_flush_and_everything_after(tmp_path):
    j = Journal(tmp_path / "j.sqlite", batch_max=1000, flush_interval_s=60).open()
    try:
        reader = JournalReader(j.path)
        for i in range(2500):
            j.record_fill(fill(f"t{i}"))
            if i == 500:
                assert reader.fills() == []  # queued, not on disk: the hot path never writes
        j.flush()  # returns once all 2500 are committed (three batches)
        assert len(reader.fills()) == 2500
        assert j.written == 2500 and j.backlog == 0 and j.batches >= 3
    finally:
        j.close()


def test_batch_max_wakes_the_writer_without_flush(tmp_path):
    j = Journal(tmp_path / "j.sqlite", batch_max=10, flush_interval_s=3600).open()
    try:
        for i in range(10):
            j.record_fill(fill(f"t{i}"))
        wait_until(lambda: j.written == 10)  # only the batch_max trigger can wake it within the hour
        assert len(JournalReader(j.path).fills()) == 10
    finally:
        j.close()


def test_reading_from_another_connection_while_the_writer_runs(tmp_path):
    j = Journal(tmp_path / "j.sqlite", batch_max=50, flush_interval_s=0.001).open()
    total = 20_000
    done = threading.Event()

    def produce():
        for i in range(total):
            j.record_fill(fill(f"t{i}", qty="0.001"))
            if i % 200 == 0:
                time.sleep(0)
        done.set()

    reader = JournalReader(j.path)
    seen = []
    thread = threading.Thread(target=produce)
    thread.start()
    try:
        while not done.is_set() or len(seen) < 3:
            rows = reader.fills()
            seen.append(len(rows))
            # what a reader sees is always a prefix of what was recorded (whole batches, in order)
            assert [r.trade_id for r in rows] == [f"t{i}" for i in range(len(rows))]
            assert raw_count(j.path) >= len(rows)
    finally:
        thread.join()
    j.flush()
    assert seen == sorted(seen)
    assert len(reader.fills()) == total
    reader.close_reader()
    j.close()


def raw_count(path) -> int:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute("SELECT count(*) FROM fills").fetchone()[0]
    finally:
        con.close()


# --------------------------------------------------------------------------- faults


def test_locked_database_keeps_the_batch_and_retries(tmp_path):
    path = tmp_path / "j.sqlite"
    j = Journal(path, busy_timeout_ms=10, flush_interval_s=0.005).open()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    try:
        for i in range(100):
            j.record_fill(fill(f"t{i}"))
        wait_until(lambda: j.errors >= 1)
        assert not j.healthy
        assert JournalReader(path).fills() == []  # WAL readers still read while the writer is blocked
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    j.flush()
    assert len(j.fills()) == 100 and j.lost == 0 and j.healthy
    j.close()


def test_dead_writer_is_reported_and_later_writes_raise(tmp_path, caplog):
    j = Journal(tmp_path / "j.sqlite", flush_interval_s=3600).open()
    recorder = JournalRecorder(j)
    j.record_fill(fill("t1"))
    j.flush()
    j._wconn.close()  # fault injection: the writer's connection becomes unusable
    with caplog.at_level(logging.CRITICAL, logger="hft.journal"):
        j.record_fill(fill("t2"))
        with pytest.raises(JournalError):
            j.flush()
    assert not j.healthy and j.lost >= 1
    assert any(r.levelno == logging.CRITICAL and "died" in r.getMessage() for r in caplog.records)
    with pytest.raises(JournalError, match="down"):
        j.record_fill(fill("t3"))
    with pytest.raises(JournalError):
        j.record_intent(order())
    recorder(order(status=OrderStatus.OPEN), None)  # a listener must not break the engine's loop
    assert recorder.dropped == 1
    with pytest.raises(JournalError):
        j.close()
    assert [f.trade_id for f in JournalReader(j.path).fills()] == ["t1"]


CHILD = r"""
import sys, time
from hft.journal import Journal
from hft.model import Fill, Liquidity, Order, Side

def make_fill(i):
    return Fill("alpha", "BTC/USDT", f"crash-{i}", f"t{i}", Side.BUY if i % 2 else Side.SELL,
                61_000_000_000_000 + i, 1_000_000 + i, 10 + i, "USDT", Liquidity.MAKER, f"v{i}", i, i)

path, flushed = sys.argv[1], int(sys.argv[2])
j = Journal(path, flush_interval_s=0.002, batch_max=200).open()
j.start_session("crash-", "digest")
for i in range(flushed):
    j.record_intent(Order(f"crash-{i}", "alpha", "BTC/USDT", Side.BUY, 1_000_000 + i, 61_000_000_000_000 + i))
    j.record_fill(make_fill(i))
j.flush()
print("flushed", flush=True)
i = flushed
while True:  # keep the writer busy: the kill lands in the middle of queueing and committing
    j.record_fill(make_fill(i))
    i += 1
    if i == flushed + 3000:
        print("more", flush=True)
    if i % 300 == 0:
        time.sleep(0.0005)
"""


def make_fill(i: int) -> Fill:
    return Fill("alpha", "BTC/USDT", f"crash-{i}", f"t{i}", Side.BUY if i % 2 else Side.SELL,
                61_000_000_000_000 + i, 1_000_000 + i, 10 + i, "USDT", Liquidity.MAKER, f"v{i}", i, i)


def test_sigkill_leaves_a_sound_journal_with_every_flushed_fill(tmp_path):
    path = tmp_path / "crash" / "journal.sqlite"
    flushed = 1500
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(flushed)], stdout=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)
    try:
        assert proc.stdout.readline().strip() == "flushed"
        assert proc.stdout.readline().strip() == "more"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()

    reader = JournalReader(path)  # read-only, as the CLI would open it after the crash
    rows = reader.fills()
    assert len(rows) >= flushed
    # every fill flushed before the kill is there, exactly; what came after is a prefix, without holes
    assert [r.to_fill() for r in rows] == [make_fill(i) for i in range(len(rows))]
    assert len(reader.orders()) == flushed
    (session,) = reader.sessions()
    assert session.cid_prefix == "crash-" and session.ended_ns is None  # it never closed: a crash
    reader.close_reader()

    j = Journal(path).open()  # and the journal carries on
    j.start_session("after-", "digest")
    j.record_fill(make_fill(0))  # a replay of an old fill is still a duplicate
    j.record_fill(fill("new-1"))
    j.flush()
    assert j.duplicate_fills == 1 and j.has_fill("alpha", "BTC/USDT", "new-1")
    assert [s.cid_prefix for s in j.sessions()] == ["crash-", "after-"]
    j.close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()


# --------------------------------------------------------------------------- engine listener


def test_recorder_maps_order_changes_to_events(journal):
    rec = JournalRecorder(journal)
    o = order("r1")
    journal.record_intent(o)
    o.status = OrderStatus.OPEN
    rec(o, None)
    f = fill("t1", cid="r1")
    o.status, o.filled_qty = OrderStatus.PARTIALLY_FILLED, f.qty
    rec(o, f)
    o.status = OrderStatus.CANCELED
    rec(o, None)
    r2 = order("r2", status=OrderStatus.REJECTED, reject_reason="post-only would cross")
    rec(r2, None)
    journal.flush()
    assert [(e.client_order_id, e.kind, e.detail) for e in journal.order_events()] == [
        ("r1", "intent", ""), ("r1", "accepted", ""), ("r1", "filled", "t1"), ("r1", "canceled", ""),
        ("r2", "rejected", "post-only would cross"),
    ]
    assert journal.fills()[0].to_fill() == f
    assert journal.order("r2").reject_reason == "post-only would cross"


async def test_engine_run_journal_matches_engine_state(tmp_path):
    from hft.config import load_config
    from hft.registry import strategy_registry, venue_registry
    from hft.runner import run_engine

    venues, strategies = venue_registry(), strategy_registry()
    cfg = load_config(None, venue_options_model=lambda t: venues.resolve(t).Options,
                      strategy_params_model=lambda t: strategies.resolve(t).Params)
    cfg.metrics.enabled = False
    for vc in cfg.venues:
        vc.options.taker_rate_per_s = 10.0
    cfg.journal.path = tmp_path / "run" / "journal.sqlite"  # the engine journals through its own listener
    engines = []
    summary = await run_engine(cfg, venues, strategies, duration=3.0, quiet=True, out=lambda s: None,
                               on_started=engines.append)
    assert summary is not None
    engine = engines[0]

    reader = JournalReader(cfg.journal.path)
    rows = {r.client_order_id: r for r in reader.orders()}
    expected = dict(engine.orders)
    assert expected and set(expected) <= set(rows)
    for cid, o in expected.items():
        r = rows[cid]
        assert (r.status, r.filled_qty, r.filled_notional, r.fees, r.venue_order_id, r.price, r.qty) == (
            o.status, o.filled_qty, o.filled_notional, o.fees, o.venue_order_id, o.price, o.qty), cid
    fills = reader.fills()
    assert len(fills) == sum(st.fills for st in summary.venues.values()) > 0
    for venue, pos in summary.positions.items():
        assert sum(f.qty * int(f.side) for f in fills if f.venue == venue) == pos
    total = [s for s in reader.latest_snapshots() if s.venue == "total"]
    assert [s.position for s in total] == [summary.position_total]
    if all(v == 0 for v in summary.open_orders_left.values()):
        assert reader.open_orders() == []
    reader.close_reader()


# --------------------------------------------------------------------------- --since and formatting

NOW = 1_723_161_600_000_000_000  # 2024-08-09 00:00:00 UTC


@pytest.mark.parametrize("text, ago_ns", [
    ("10m", 10 * MIN), ("30s", 30 * 10**9), ("2h", 120 * MIN), ("1d", 1440 * MIN), ("1w", 7 * 1440 * MIN),
    ("1.5h", 90 * MIN), ("1h30m", 90 * MIN), (" 2H ", 120 * MIN),
])
def test_parse_since_relative(text, ago_ns):
    assert parse_since(text, now_ns=NOW) == NOW - ago_ns


@pytest.mark.parametrize("text, ns", [
    ("2024-08-09", NOW),
    ("2024-08-09T00:00:00Z", NOW),
    ("2024-08-09 02:00:00+02:00", NOW),
    ("2024-08-09T12:30:00.250", NOW + 750 * MIN + 250_000_000),
    ("2024-08-08T23:59:59.000001+00:00", NOW - 10**9 + 1000),
])
def test_parse_since_iso(text, ns):
    assert parse_since(text, now_ns=0) == ns


@pytest.mark.parametrize("text", ["yesterday", "10x", "m10", "", "2024-13-01", "10 m"])
def test_parse_since_rejects_garbage(text):
    with pytest.raises(ValueError):
        parse_since(text, now_ns=NOW)


def columns(table: str) -> list[list[str]]:
    """Cut each line of an aligned table at the separator line's column spans."""
    lines = table.splitlines()
    sep = lines[1]
    spans, start = [], None
    for i, ch in enumerate(sep + " "):
        if ch == "-" and start is None:
            start = i
        elif ch != "-" and start is not None:
            spans.append((start, i))
            start = None
    out = []
    for line in [lines[0]] + lines[2:]:
        out.append([line.ljust(len(sep))[a:b] for a, b in spans])
    return out


def test_format_orders_is_aligned_and_exact(journal):
    journal.record_intent(order("h1-1", price="61837.6", qty="0.015", tag="mm:bid:0"))
    journal.record_order(order("h1-22", "beta", Side.SELL, price="61900", qty="1.5", status=OrderStatus.REJECTED,
                               reject_reason="insufficient balance"), "rejected")
    journal.flush()
    text = format_orders(journal.orders())
    assert text.splitlines()[-1] == "2 orders"
    table = columns("\n".join(text.splitlines()[:-1]))
    header, first, second = table
    idx = {h.strip(): i for i, h in enumerate(header)}
    assert first[idx["price"]].strip() == "61837.6" and second[idx["price"]].strip() == "61900"
    assert first[idx["price"]].endswith("61837.6") and second[idx["price"]].endswith("61900")  # right-aligned
    assert second[idx["qty"]].endswith("1.5") and first[idx["qty"]].endswith("0.015")
    assert first[idx["side"]].strip() == "buy" and second[idx["status"]].strip() == "rejected"
    assert second[idx["reason"]].strip() == "insufficient balance" and first[idx["tag"]].strip() == "mm:bid:0"
    assert format_orders([]) == "no orders"


def test_format_fills_and_pnl(journal):
    journal.record_fill(fill("t1", price="61837.6", qty="0.005", fee="0.0309188"))
    journal.record_fill(fill("t2", "beta", side=Side.SELL, price="61840", qty="0.005", fee="-0.0154"))
    journal.flush()
    rows = journal.fills()
    text = format_fills(rows)
    header, a, b = columns("\n".join(text.splitlines()[:-1]))
    idx = {h.strip(): i for i, h in enumerate(header)}
    assert a[idx["notional"]].strip() == "309.188" and b[idx["fee"]].strip() == "-0.0154"
    assert a[idx["liq"]].strip() == "maker" and b[idx["side"]].strip() == "sell"
    assert text.endswith("2 fills")

    snaps, foreign = pnl_from_fills(rows)
    assert foreign == 0
    total = snaps[-1]
    assert (total.venue, total.position, total.realized, total.fees) == ("total", 0, P("0.012"), P("0.0155188"))
    ptable = columns(format_pnl(snaps))
    idx = {h.strip(): i for i, h in enumerate(ptable[0])}
    assert [r[idx["venue"]].strip() for r in ptable[1:]] == ["alpha", "beta", "total"]
    assert ptable[3][idx["net"]].strip() == "-0.0035188" and ptable[3][idx["mark"]].strip() == "-"
    assert format_fills([]) == "no fills" and format_pnl([]) == "no P&L snapshots"


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_journal(tmp_path):
    """A journal with one old (3 h ago) and one recent (1 min ago) order, fill and snapshot."""
    now = time.time_ns()
    clock = ManualClock(now - 180 * MIN)
    path = tmp_path / "cli" / "journal.sqlite"
    j = Journal(path, clock=clock).open()
    j.start_session("hcli-", "d")
    j.record_intent(order("old-1"))
    j.record_fill(fill("t-old", cid="old-1"))
    j.record_snapshot("BTC/USDT", "total", P("0.005"), P("61837.6"), 0, P("0.03"), P("61840"))
    clock.advance(179 * MIN)
    j.record_intent(order("new-1", "beta", Side.SELL, price="62000.5"))
    j.record_fill(fill("t-new", "beta", cid="new-1", side=Side.SELL, price="62000.5", qty="0.005"))
    j.record_snapshot("BTC/USDT", "total", 0, 0, P("0.8145"), P("0.06"), P("62000"))
    j.close()
    return path, now


def test_cli_orders_fills_pnl_with_since(cli_journal):
    path, now = cli_journal
    runner = CliRunner()
    res = runner.invoke(journal_cli, ["orders", "--path", str(path)])
    assert res.exit_code == 0, res.output
    assert "old-1" in res.output and "new-1" in res.output and "62000.5" in res.output
    res = runner.invoke(journal_cli, ["orders", "--path", str(path), "--since", "10m"])
    assert res.exit_code == 0 and "new-1" in res.output and "old-1" not in res.output
    res = runner.invoke(journal_cli, ["orders", "--path", str(path), "--status", "open", "--venue", "beta"])
    assert "new-1" in res.output and "old-1" not in res.output
    res = runner.invoke(journal_cli, ["fills", "--path", str(path), "--since", "1d"])
    assert "t-old" in res.output and "t-new" in res.output and res.output.rstrip().endswith("2 fills")
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((now - 60 * MIN) // 10**9))
    res = runner.invoke(journal_cli, ["fills", "--path", str(path), "--since", iso])
    assert "t-new" in res.output and "t-old" not in res.output
    res = runner.invoke(journal_cli, ["pnl", "--path", str(path)])
    assert res.exit_code == 0 and "0.8145" in res.output and "0.03" not in res.output  # latest only
    res = runner.invoke(journal_cli, ["pnl", "--path", str(path), "--all"])
    assert "0.8145" in res.output and "0.03" in res.output


def test_cli_pnl_falls_back_to_fills_without_snapshots(tmp_path):
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        j.record_fill(fill("t1", price="100", qty="1", fee="0.1"))
        j.record_fill(fill("t2", "beta", side=Side.SELL, price="101", qty="1", fee="0.1"))
    res = CliRunner().invoke(journal_cli, ["pnl", "--path", str(path)])
    assert res.exit_code == 0, res.output
    table = columns("\n".join(res.output.splitlines()[:-1]))
    idx = {h.strip(): i for i, h in enumerate(table[0])}
    assert table[-1][idx["venue"]].strip() == "total" and table[-1][idx["realized"]].strip() == "1"
    assert table[-1][idx["net"]].strip() == "0.8"
    assert "replayed from 2 fills" in res.output


def test_cli_reads_the_path_from_a_config_file(cli_journal, tmp_path):
    path, _ = cli_journal
    text = DEFAULT_CONFIG_PATH.read_text()
    assert "path: var/journal.sqlite" in text
    cfg = tmp_path / "my.yaml"
    cfg.write_text(text.replace("path: var/journal.sqlite", f"path: {path}"))
    res = CliRunner().invoke(journal_cli, ["fills", "-c", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "t-new" in res.output


def test_cli_errors_are_one_line_and_non_zero(cli_journal, tmp_path):
    path, _ = cli_journal
    runner = CliRunner()
    res = runner.invoke(journal_cli, ["orders", "--path", str(tmp_path / "nope.sqlite")])
    assert res.exit_code == 1 and "no journal" in res.output and "Traceback" not in res.output
    res = runner.invoke(journal_cli, ["orders", "--path", str(path), "--since", "yesterday"])
    assert res.exit_code == 2 and "yesterday" in res.output
    res = runner.invoke(journal_cli, ["orders", "--path", str(path), "-c", "x.yaml"])
    assert res.exit_code == 2 and "not both" in res.output


def test_iter_fills_streams_every_fill_in_the_order_written(tmp_path):
    with Journal(tmp_path / "j.sqlite") as j:
        for i in range(25):
            j.record_fill(fill(str(i), venue="alpha" if i % 3 else "beta", qty=f"0.00{i % 9 + 1}",
                               side=Side.SELL if i % 2 else Side.BUY, ts_venue=i, ts_recv=1000 + i))
        j.record_fill(fill("5", venue="alpha"))  # a duplicate: not written twice
        j.flush()
        streamed = list(j.iter_fills(batch=4))
        assert streamed == [row.to_fill() for row in j.fills()]
        assert [f.trade_id for f in streamed] == [str(i) for i in range(25)]
