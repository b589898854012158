"""Crash-safe journal of sessions, orders, order events, fills and P&L snapshots (SQLite, WAL).

Hot path and writer
-------------------
The ``record_*`` methods never touch the disk and never wait: each reads the
fields it needs into one tuple (an :class:`~hft.model.Order` is mutable, so
it is copied field by field at call time; a :class:`~hft.model.Fill` is
frozen and travels as is) and appends it to a ``collections.deque``, which is
thread safe. ONE background thread owns the write connection: it wakes every
``flush_interval_s`` (or as soon as ``batch_max`` records wait), takes up to
``batch_max`` records, writes them with one ``executemany`` per statement in
ONE transaction and commits. :meth:`Journal.flush` puts a marker in the same
queue and waits for the writer to commit everything queued before it.

Durability
----------
The threat model is the process dying (``kill -9``, OOM killer, a crash in
a C extension), not the machine. In WAL mode with ``synchronous=NORMAL`` a
commit is complete once its frames are appended to the ``-wal`` file with
``write()``: the data sits in the OS page cache, which outlives the process,
and the next opener replays the WAL. A killed process therefore loses only
what was still queued in its memory (normally the last ``flush_interval_s``
of records; see :attr:`Journal.backlog`) and never corrupts the file; a
transaction is either wholly in the WAL or rolled back, so what survives is
always a prefix of what was recorded. ``NORMAL`` skips the ``fsync`` per
commit, so a power cut or kernel crash may lose the last commits (the file
stays consistent). ``synchronous="FULL"`` fsyncs the WAL on every commit and
survives power loss too; because the writer commits a batch at a time, the
fsync is paid per batch, not per record (see ``bench/bench_journal.py``).

What the journal does *not* promise: ``record_intent`` is not durable before
the order leaves (that would need a synchronous commit on the hot path). An
order sent in the last ``flush_interval_s`` before a crash may exist on the
venue but not in the journal; every session records its client-order-id
prefix, so reconciliation on restart recognises such orders on the venue as
ours and records them (``kind="adopted"``).

Numbers
-------
Prices, quantities and amounts are fixed-point ints (:mod:`hft.numbers`).
SQLite integers are signed 64-bit, i.e. at most 9.2e9 units at ``SCALE``
1e9: enough for any price, but a quantity of 10 billion tokens or a large
cumulative notional does not fit. Amount columns are therefore declared
``ANY`` in ``STRICT`` tables: a value is stored as an INTEGER when it fits
(the normal case: SQL comparisons and sums work) and as TEXT holding the same
fixed-point integer's digits when it does not; readers turn both back into
the exact ``int``. A CHECK keeps REAL (float) out of every amount column,
so precision is never lost silently. Timestamps are INTEGER ns since the
epoch (good until 2262). Text enums are stored by value (``"buy"``,
``"partially_filled"``).

Errors
------
* A record SQLite refuses (a constraint, a value of the wrong type) is
  isolated: the rest of its batch is committed, the bad record is logged at
  ERROR with its content and counted in :attr:`Journal.errors`.
* ``sqlite3.OperationalError`` (database locked by another process, disk
  full, I/O error) keeps the batch and retries it with back-off; meanwhile
  :attr:`Journal.healthy` is False and the queue grows in memory.
* Anything else kills the writer: :attr:`Journal.healthy` turns False for
  good, the records it could not write are counted in :attr:`Journal.lost`
  and logged, waiting :meth:`~Journal.flush` calls raise
  :class:`JournalError`, and so does every later ``record_*`` call.

Reading
-------
:class:`JournalReader` (a base of :class:`Journal`) reads through its own
read-only connection, so ``hft journal ...`` works on the file of a running
engine. Reads see committed data only: call :meth:`Journal.flush` first for
read-your-writes.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import re
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import click

from hft import numbers
from hft.clock import Clock
from hft.errors import HftError
from hft.model import Fill, Liquidity, Order, OrderStatus, OrderType, Side, TimeInForce
from hft.portfolio import Portfolio

__all__ = [
    "SCHEMA_VERSION",
    "EventRow",
    "FillRow",
    "Journal",
    "JournalError",
    "JournalReader",
    "JournalRecorder",
    "OrderRow",
    "SessionRow",
    "SnapshotRow",
    "config_digest",
    "format_fills",
    "format_orders",
    "format_pnl",
    "journal_cli",
    "parse_since",
    "pnl_from_fills",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: fills keyed by (venue, symbol, trade_id)

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_OPEN_STATUSES = ("pending", "open", "partially_filled")
_SYNC_MODES = ("NORMAL", "FULL", "EXTRA")


class JournalError(HftError):
    """The journal cannot do what was asked: not open, writer down, file missing or too new."""


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring a journal of an older schema to :data:`SCHEMA_VERSION` in one transaction: SQLite's
    DDL is transactional, so a failure (disk full, a kill) leaves the file as it was."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if version < 2:  # fills keyed by (venue, trade_id) -> (venue, symbol, trade_id): rebuild the table
            conn.execute("ALTER TABLE fills RENAME TO fills_v1")
            conn.execute("DROP INDEX IF EXISTS fills_recorded")
            conn.execute("DROP INDEX IF EXISTS fills_order")
            for statement in _FILLS_DDL:
                conn.execute(statement)
            conn.execute(f"INSERT INTO fills ({_FILL_COLS}) SELECT {_FILL_COLS} FROM fills_v1 ORDER BY rowid")
            conn.execute("DROP TABLE fills_v1")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _schema_fingerprint(conn: sqlite3.Connection) -> dict[str, tuple]:
    """Per table: its columns (name, type, not null, key position) and indexes (name, unique, columns)."""
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    out = {}
    for t in tables:
        columns = tuple((c[1], c[2], c[3], c[5]) for c in conn.execute(f"PRAGMA table_info({t})"))
        indexes = tuple(sorted(
            (ix[1] if ix[3] == "c" else ix[3], ix[2], tuple(c[2] for c in conn.execute(f"PRAGMA index_info('{ix[1]}')")))
            for ix in conn.execute(f"PRAGMA index_list({t})")
        ))
        out[t] = (columns, indexes)
    return out


def _schema_differences(conn: sqlite3.Connection) -> list[str]:
    """Tables of ``conn`` whose columns, keys or indexes are not what :data:`_SCHEMA` creates."""
    reference = sqlite3.connect(":memory:")
    try:
        reference.executescript(_SCHEMA)
        expected = _schema_fingerprint(reference)
    finally:
        reference.close()
    actual = _schema_fingerprint(conn)
    return sorted(name for name in expected if actual.get(name) != expected[name])


# ---------------------------------------------------------------------------
# Schema


def _amount(name: str, *, null: bool = False) -> str:
    """An exact fixed-point column: INTEGER when it fits in 64 bits, else TEXT digits; never REAL."""
    kinds = "'integer','text','null'" if null else "'integer','text'"
    return f"{name} ANY {'' if null else 'NOT NULL '}CHECK (typeof({name}) IN ({kinds}))"


_FILLS_DDL = (  # statements of their own: the v1 migration runs them inside its transaction
    f"""
CREATE TABLE IF NOT EXISTS fills (
    venue           TEXT NOT NULL,
    trade_id        TEXT NOT NULL,
    client_order_id TEXT NOT NULL,
    venue_order_id  TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    side            TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    {_amount("price")},
    {_amount("qty")},
    {_amount("fee")},                            -- in fee_asset; negative is a rebate
    fee_asset       TEXT NOT NULL,
    liquidity       TEXT NOT NULL,
    ts_venue        INTEGER NOT NULL,            -- venue clock, ns since epoch (0: unknown)
    ts_recv         INTEGER NOT NULL,            -- engine clock at receipt
    recorded_ns     INTEGER NOT NULL,            -- journal wall clock, ns since epoch
    session_id      INTEGER,
    PRIMARY KEY (venue, symbol, trade_id)        -- venues number trades per symbol (Binance does)
) STRICT""",
    "CREATE INDEX IF NOT EXISTS fills_recorded ON fills (recorded_ns)",
    "CREATE INDEX IF NOT EXISTS fills_order ON fills (client_order_id)",
)
_FILLS_TABLE = "".join(f"{statement};\n" for statement in _FILLS_DDL)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS sessions (
    session_id    INTEGER PRIMARY KEY,
    started_ns    INTEGER NOT NULL,
    ended_ns      INTEGER,                       -- NULL: running, or the process died
    cid_prefix    TEXT NOT NULL,                 -- client order ids of this session start with it
    config_digest TEXT NOT NULL,
    pid           INTEGER NOT NULL
) STRICT;

CREATE TABLE IF NOT EXISTS orders (
    client_order_id TEXT PRIMARY KEY,
    venue           TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    side            TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    order_type      TEXT NOT NULL,
    time_in_force   TEXT NOT NULL,
    post_only       INTEGER NOT NULL,
    {_amount("price", null=True)},               -- NULL for market orders
    {_amount("qty")},
    status          TEXT NOT NULL CHECK (status IN
        ('pending', 'open', 'partially_filled', 'filled', 'canceled', 'expired', 'rejected')),
    venue_order_id  TEXT,
    {_amount("filled_qty")},
    {_amount("filled_notional")},
    {_amount("fees")},
    tag             TEXT NOT NULL,
    reject_reason   TEXT NOT NULL,
    created_ns      INTEGER NOT NULL,            -- journal wall clock, ns since epoch
    updated_ns      INTEGER NOT NULL,
    session_id      INTEGER REFERENCES sessions (session_id)
) STRICT;
CREATE INDEX IF NOT EXISTS orders_updated ON orders (updated_ns);
CREATE INDEX IF NOT EXISTS orders_open ON orders (venue) WHERE status IN ('pending', 'open', 'partially_filled');

CREATE TABLE IF NOT EXISTS order_events (
    event_id        INTEGER PRIMARY KEY,         -- append order
    ts_ns           INTEGER NOT NULL,
    session_id      INTEGER,
    client_order_id TEXT NOT NULL,
    venue           TEXT NOT NULL,
    kind            TEXT NOT NULL,               -- intent, accepted, filled, canceled, cancel_requested, ...
    status          TEXT NOT NULL,               -- the order's status after the event
    detail          TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS order_events_order ON order_events (client_order_id, event_id);
CREATE INDEX IF NOT EXISTS order_events_ts ON order_events (ts_ns);

{_FILLS_TABLE}
CREATE TABLE IF NOT EXISTS snapshots (
    snapshot_id INTEGER PRIMARY KEY,
    ts_ns       INTEGER NOT NULL,
    session_id  INTEGER,
    symbol      TEXT NOT NULL,
    venue       TEXT NOT NULL,                   -- a venue name, or 'total'
    {_amount("position")},
    {_amount("avg_price")},
    {_amount("realized")},
    {_amount("fees")},
    {_amount("mark")}
) STRICT;
CREATE INDEX IF NOT EXISTS snapshots_ts ON snapshots (ts_ns);

CREATE TABLE IF NOT EXISTS baselines (           -- a venue account's balances before our first trade
    venue       TEXT NOT NULL,
    asset       TEXT NOT NULL,
    {_amount("amount")},
    recorded_ns INTEGER NOT NULL,
    PRIMARY KEY (venue, asset)
) STRICT;
CREATE INDEX IF NOT EXISTS snapshots_key ON snapshots (symbol, venue, snapshot_id);
"""

_ORDER_COLS = (
    "client_order_id, venue, symbol, side, order_type, time_in_force, post_only, price, qty, status,"
    " venue_order_id, filled_qty, filled_notional, fees, tag, reject_reason, created_ns, updated_ns, session_id"
)
# An intent inserts the row; later records update what can change. The upsert also lets an order
# the journal never saw (adopted at reconciliation) be recorded by record_order alone.
_UPSERT_ORDER = f"""
INSERT INTO orders ({_ORDER_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
ON CONFLICT (client_order_id) DO UPDATE SET
    status = excluded.status,
    venue_order_id = coalesce(excluded.venue_order_id, orders.venue_order_id),
    filled_qty = excluded.filled_qty,
    filled_notional = excluded.filled_notional,
    fees = excluded.fees,
    reject_reason = excluded.reject_reason,
    updated_ns = excluded.updated_ns
"""
_EVENT_COLS = "ts_ns, session_id, client_order_id, venue, kind, status, detail"
_INSERT_EVENT = f"INSERT INTO order_events ({_EVENT_COLS}) VALUES (?,?,?,?,?,?,?)"
_FILL_COLS = (
    "venue, trade_id, client_order_id, venue_order_id, symbol, side, price, qty, fee, fee_asset, liquidity,"
    " ts_venue, ts_recv, recorded_ns, session_id"
)
# Not INSERT OR IGNORE: that also skips, silently, a row breaking a CHECK or NOT NULL constraint (a float
# price would vanish as a "duplicate"). ON CONFLICT ... DO NOTHING ignores only the (venue, trade_id) clash.
_INSERT_FILL = (
    f"INSERT INTO fills ({_FILL_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (venue, symbol, trade_id) DO NOTHING"
)
_SNAP_COLS = "ts_ns, session_id, symbol, venue, position, avg_price, realized, fees, mark"
_INSERT_SNAP = f"INSERT INTO snapshots ({_SNAP_COLS}) VALUES (?,?,?,?,?,?,?,?,?)"
_SESSION_COLS = "session_id, started_ns, ended_ns, cid_prefix, config_digest, pid"

# ---------------------------------------------------------------------------
# Rows returned by the readers


def _amt(v: Any) -> Any:
    """An amount column back to the exact int (TEXT digits when it did not fit in 64 bits)."""
    return v if v is None or type(v) is int else int(v)


_SIDE_TEXT = {Side.BUY: "buy", Side.SELL: "sell"}
_TEXT_SIDE = {"buy": Side.BUY, "sell": Side.SELL}
# str-valued enums to their text; the writer maps with these instead of trusting str subclasses
_ENUM_TEXT: dict[Any, str] = {m: m.value for e in (OrderType, TimeInForce, OrderStatus, Liquidity) for m in e}


@dataclass(frozen=True, slots=True)
class OrderRow:
    """The journal's last word on an order. Amounts are fixed-point ints; times are wall-clock ns."""

    client_order_id: str
    venue: str
    symbol: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    post_only: bool
    price: int | None
    qty: int
    status: OrderStatus
    venue_order_id: str | None
    filled_qty: int
    filled_notional: int
    fees: int
    tag: str
    reject_reason: str
    created_ns: int
    updated_ns: int
    session_id: int | None

    @property
    def avg_price(self) -> int:
        """Average fill price (0 before any fill)."""
        return self.filled_notional * numbers.SCALE // self.filled_qty if self.filled_qty else 0

    def to_order(self) -> Order:
        """An :class:`Order` with this state (e.g. to re-track open orders after a restart)."""
        return Order(
            self.client_order_id, self.venue, self.symbol, self.side, self.qty, self.price, self.order_type,
            self.time_in_force, self.post_only, self.status, self.venue_order_id, self.filled_qty,
            self.filled_notional, self.fees, self.created_ns, self.updated_ns, self.tag, self.reject_reason,
        )

    @classmethod
    def _from_db(cls, r: tuple) -> "OrderRow":
        return cls(
            r[0], r[1], r[2], _TEXT_SIDE[r[3]], OrderType(r[4]), TimeInForce(r[5]), bool(r[6]), _amt(r[7]),
            _amt(r[8]), OrderStatus(r[9]), r[10], _amt(r[11]), _amt(r[12]), _amt(r[13]), r[14], r[15], r[16],
            r[17], r[18],
        )


@dataclass(frozen=True, slots=True)
class EventRow:
    """One line of an order's append-only history."""

    event_id: int
    ts_ns: int
    session_id: int | None
    client_order_id: str
    venue: str
    kind: str
    status: OrderStatus
    detail: str


@dataclass(frozen=True, slots=True)
class FillRow:
    """A journaled fill: the :class:`Fill` fields plus when and in which session it was recorded."""

    venue: str
    trade_id: str
    client_order_id: str
    venue_order_id: str
    symbol: str
    side: Side
    price: int
    qty: int
    fee: int
    fee_asset: str
    liquidity: Liquidity
    ts_venue: int
    ts_recv: int
    recorded_ns: int
    session_id: int | None

    def to_fill(self) -> Fill:
        return Fill(
            self.venue, self.symbol, self.client_order_id, self.trade_id, self.side, self.price, self.qty,
            self.fee, self.fee_asset, self.liquidity, self.venue_order_id, self.ts_venue, self.ts_recv,
        )

    @classmethod
    def _from_db(cls, r: tuple) -> "FillRow":
        return cls(
            r[0], r[1], r[2], r[3], r[4], _TEXT_SIDE[r[5]], _amt(r[6]), _amt(r[7]), _amt(r[8]), r[9],
            Liquidity(r[10]), r[11], r[12], r[13], r[14],
        )


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    """Position and P&L of one symbol on one venue (or ``"total"``) at ``ts_ns``."""

    ts_ns: int
    session_id: int | None
    symbol: str
    venue: str
    position: int
    avg_price: int
    realized: int
    fees: int
    mark: int  # 0: no mark known

    @property
    def unrealized(self) -> int:
        return numbers.mul(self.mark - self.avg_price, self.position) if self.position and self.mark else 0

    @property
    def net(self) -> int:
        """Realised + unrealised − fees."""
        return self.realized + self.unrealized - self.fees


@dataclass(frozen=True, slots=True)
class SessionRow:
    session_id: int
    started_ns: int
    ended_ns: int | None  # None: still running, or it died without close()
    cid_prefix: str
    config_digest: str
    pid: int


# ---------------------------------------------------------------------------
# Reading


class JournalReader:
    """Read access to a journal file through a read-only connection of its own.

    Safe to use while another process (or this one's writer thread) writes:
    WAL readers do not block the writer and see every committed transaction.
    The connection is opened on first use and shared by threads under a lock.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._rconn: sqlite3.Connection | None = None
        self._rlock = threading.Lock()

    def _reader(self) -> sqlite3.Connection:
        if self._rconn is None:
            if not self.path.is_file():
                raise JournalError(f"no journal at {self.path}")
            uri = self.path.resolve().as_uri() + "?mode=ro"
            try:
                conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
                conn.execute("PRAGMA busy_timeout = 5000")
                version = conn.execute("PRAGMA user_version").fetchone()[0]
            except sqlite3.DatabaseError as exc:
                raise JournalError(f"cannot read journal {self.path}: {exc}") from exc
            if version != SCHEMA_VERSION:
                conn.close()
                what = "not an hft journal (or empty)"
                if version:
                    what = f"schema v{version}, expected v{SCHEMA_VERSION}"
                raise JournalError(f"{self.path}: {what}")
            self._rconn = conn
        return self._rconn

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._rlock:
            return self._reader().execute(sql, params).fetchall()

    def close_reader(self) -> None:
        with self._rlock:
            if self._rconn is not None:
                self._rconn.close()
                self._rconn = None

    # -- orders
    def orders(
        self,
        since_ns: int | None = None,
        status: OrderStatus | str | None = None,
        venue: str | None = None,
        *,
        limit: int | None = None,
    ) -> list[OrderRow]:
        """Orders changed at or after ``since_ns`` (wall-clock ns), oldest change first.

        ``status`` filters on one status (``"open"`` for example); ``limit`` keeps the most recent.
        """
        where, params = [], []
        if since_ns is not None:
            where.append("updated_ns >= ?")
            params.append(since_ns)
        if status is not None:
            where.append("status = ?")
            params.append(OrderStatus(status).value)
        if venue is not None:
            where.append("venue = ?")
            params.append(venue)
        return [OrderRow._from_db(r) for r in self._recent("orders", _ORDER_COLS, where, params, "updated_ns", limit)]

    def open_orders(self, venue: str | None = None) -> list[OrderRow]:
        """Orders the journal believes are not done (pending, open, partially filled), any session."""
        sql = f"SELECT {_ORDER_COLS} FROM orders WHERE status IN {_OPEN_STATUSES}"
        params: list[Any] = []
        if venue is not None:
            sql += " AND venue = ?"
            params.append(venue)
        return [OrderRow._from_db(r) for r in self._query(sql + " ORDER BY created_ns, rowid", params)]

    def order(self, client_order_id: str) -> OrderRow | None:
        rows = self._query(f"SELECT {_ORDER_COLS} FROM orders WHERE client_order_id = ?", (client_order_id,))
        return OrderRow._from_db(rows[0]) if rows else None

    def order_events(self, client_order_id: str | None = None, since_ns: int | None = None) -> list[EventRow]:
        """The append-only order history, in the order it was recorded."""
        where, params = [], []
        if client_order_id is not None:
            where.append("client_order_id = ?")
            params.append(client_order_id)
        if since_ns is not None:
            where.append("ts_ns >= ?")
            params.append(since_ns)
        sql = f"SELECT event_id, {_EVENT_COLS} FROM order_events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [EventRow(*r[:6], OrderStatus(r[6]), r[7]) for r in self._query(sql + " ORDER BY event_id", params)]

    # -- fills
    def fills(
        self, since_ns: int | None = None, venue: str | None = None, *, limit: int | None = None
    ) -> list[FillRow]:
        """Fills recorded at or after ``since_ns`` (wall-clock ns), in the order recorded."""
        where, params = [], []
        if since_ns is not None:
            where.append("recorded_ns >= ?")
            params.append(since_ns)
        if venue is not None:
            where.append("venue = ?")
            params.append(venue)
        return [FillRow._from_db(r) for r in self._recent("fills", _FILL_COLS, where, params, "recorded_ns", limit)]

    def iter_fills(self, batch: int = 10_000) -> Iterator[Fill]:
        """Every fill as a :class:`Fill`, in the order written, streamed in batches: a start-up replay of
        millions of fills holds one batch in memory, not the whole history."""
        liquidity = {m.value: m for m in Liquidity}
        sql = f"SELECT rowid, {_FILL_COLS} FROM fills WHERE rowid > ? ORDER BY rowid LIMIT ?"
        last = 0
        while True:
            rows = self._query(sql, (last, batch))
            for r in rows:
                yield Fill(
                    r[1], r[5], r[3], r[2], _TEXT_SIDE[r[6]], _amt(r[7]), _amt(r[8]), _amt(r[9]), r[10],
                    liquidity[r[11]], r[4], r[12], r[13],
                )
            if len(rows) < batch:
                return
            last = rows[-1][0]

    def fill_ids(self, venue: str) -> set[tuple[str, str]]:
        """``(symbol, trade id)`` of every fill journaled for ``venue``."""
        return {(r[0], r[1]) for r in self._query("SELECT symbol, trade_id FROM fills WHERE venue = ?", (venue,))}

    def has_fill(self, venue: str, symbol: str, trade_id: str) -> bool:
        return bool(self._query(
            "SELECT 1 FROM fills WHERE venue = ? AND symbol = ? AND trade_id = ?", (venue, symbol, trade_id)
        ))

    # -- snapshots
    def snapshots(self, since_ns: int | None = None) -> list[SnapshotRow]:
        """Every snapshot taken at or after ``since_ns``, oldest first."""
        sql = f"SELECT {_SNAP_COLS} FROM snapshots"
        params: list[Any] = []
        if since_ns is not None:
            sql += " WHERE ts_ns >= ?"
            params.append(since_ns)
        return [_snapshot(r) for r in self._query(sql + " ORDER BY snapshot_id", params)]

    def latest_snapshots(self, since_ns: int | None = None) -> list[SnapshotRow]:
        """The latest snapshot of each (symbol, venue), optionally only among those since ``since_ns``."""
        inner = "SELECT max(snapshot_id) FROM snapshots"
        params: list[Any] = []
        if since_ns is not None:
            inner += " WHERE ts_ns >= ?"
            params.append(since_ns)
        sql = f"SELECT {_SNAP_COLS} FROM snapshots WHERE snapshot_id IN ({inner} GROUP BY symbol, venue)"
        rows = [_snapshot(r) for r in self._query(sql, params)]
        return sorted(rows, key=lambda s: (s.symbol, s.venue == "total", s.venue))

    # -- sessions
    def sessions(self) -> list[SessionRow]:
        return [SessionRow(*r) for r in self._query(f"SELECT {_SESSION_COLS} FROM sessions ORDER BY session_id")]

    def last_session(self) -> SessionRow | None:
        rows = self._query(f"SELECT {_SESSION_COLS} FROM sessions ORDER BY session_id DESC LIMIT 1")
        return SessionRow(*rows[0]) if rows else None

    def _recent(
        self, table: str, cols: str, where: list[str], params: list[Any], ts_col: str, limit: int | None
    ) -> list[tuple]:
        sql = f"SELECT {cols} FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if limit is None:
            return self._query(sql + f" ORDER BY {ts_col}, rowid", params)
        rows = self._query(sql + f" ORDER BY {ts_col} DESC, rowid DESC LIMIT ?", [*params, limit])
        rows.reverse()
        return rows


def _snapshot(r: tuple) -> SnapshotRow:
    return SnapshotRow(r[0], r[1], r[2], r[3], _amt(r[4]), _amt(r[5]), _amt(r[6]), _amt(r[7]), _amt(r[8]))


# ---------------------------------------------------------------------------
# Writing

# Queue item kinds (first element of each tuple)
_ORDER = 0  # (_ORDER, kind, detail, ts, cid, venue, symbol, side, type, tif, post_only, price, qty, status,
#              venue_order_id, filled_qty, filled_notional, fees, tag, reject_reason)
_FILL = 1  # (_FILL, ts, fill)
_SNAP = 2  # (_SNAP, ts, symbol, venue, position, avg_price, realized, fees, mark)
_CALL = 3  # (_CALL, _Call)

# A record SQLite (or the row conversion) refuses on its own merits: isolate it, keep the others.
# (ProgrammingError is also "type not supported" for a parameter; on a closed connection the rollback
# that follows raises again, and that kills the writer as it should.)
_RECORD_ERRORS = (
    sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.DataError, sqlite3.ProgrammingError, OverflowError,
    TypeError, ValueError, KeyError, AttributeError,
)


class _Call:
    """Work run by the writer thread in queue order (a session row, a flush marker); the caller waits."""

    __slots__ = ("fn", "result", "error", "done")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any] | None) -> None:
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()


class _Refuse:
    """Stands in for the queue when the journal is not open, closed, or its writer is down."""

    __slots__ = ("journal", "reason", "lost")

    def __init__(self, journal: "Journal", reason: str, *, lost: bool = False) -> None:
        self.journal, self.reason, self.lost = journal, reason, lost

    def append(self, item: tuple) -> None:
        if self.lost and item[0] != _CALL:
            self.journal.lost += 1
            raise JournalError(f"{self.reason} ({self.journal.last_error}); record not written")
        raise JournalError(self.reason)

    def __len__(self) -> int:
        return 0


def _fit(row: tuple) -> tuple:
    """Ints beyond 64 bits as TEXT digits (amount columns take them; INTEGER columns refuse them)."""
    return tuple(str(v) if type(v) is int and not _INT64_MIN <= v <= _INT64_MAX else v for v in row)


class Journal(JournalReader):
    """The order/fill journal: hot-path ``record_*`` calls, one background writer thread, readers.

    >>> j = Journal("var/journal.sqlite"); j.open()            # doctest: +SKIP
    >>> sid = j.start_session(engine_prefix, config_digest(cfg))  # doctest: +SKIP
    >>> j.record_intent(order); ...; j.close()                  # doctest: +SKIP

    ``synchronous``: ``"NORMAL"`` (default) survives the process being killed; ``"FULL"`` also
    survives power loss (see the module docstring). ``clock`` supplies the wall-clock ns
    stamped on records (``Clock().now_ns`` by default).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch_max: int = 1000,
        flush_interval_s: float = 0.05,
        synchronous: str = "NORMAL",
        busy_timeout_ms: int = 5000,
        max_commit_delay_s: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(path)
        if batch_max < 1:
            raise ValueError("batch_max must be at least 1")
        if flush_interval_s <= 0:
            raise ValueError("flush_interval_s must be positive")
        sync = synchronous.upper()
        if sync not in _SYNC_MODES:
            raise ValueError(f"synchronous must be one of {', '.join(_SYNC_MODES)}, got {synchronous!r}")
        self.batch_max = batch_max
        self.flush_interval_s = flush_interval_s
        self.synchronous = sync
        self.busy_timeout_ms = busy_timeout_ms
        self.max_commit_delay_s = max_commit_delay_s
        self._now: Callable[[], int] = time.time_ns if clock is None else clock.now_ns
        self._dq: collections.deque[tuple] = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._wconn: sqlite3.Connection | None = None
        self._thread: threading.Thread | None = None
        # The hot path appends to ``_q``: the writer's deque while open, else a sink that raises.
        self._q: collections.deque[tuple] | _Refuse = _Refuse(self, "journal is not open")
        self._closed = False
        self._fatal: BaseException | None = None
        self._failing = False  # the last batch hit a transient error and waits for a retry
        self._commit_since = 0.0  # monotonic start of the batch being committed (0: none)
        self._inflight: list[tuple] = []
        self._w_session: int | None = None  # session the writer stamps on rows (writer thread only)
        self.session_id: int | None = None
        # counters (written by the writer thread only)
        self.written = 0  # records committed (ignored duplicate fills not included)
        self.errors = 0  # record errors + transient batch failures
        self.lost = 0  # records never written (dead writer, or given up at close)
        self.duplicate_fills = 0  # fills ignored because (venue, trade_id) was already there
        self.batches = 0
        self.last_error: str | None = None
        self._last_transient_log = 0.0

    # ------------------------------------------------------------- lifecycle
    def open(self) -> "Journal":
        """Create the file (and parent folders) and schema, switch to WAL, start the writer."""
        if self._thread is not None or self._closed:
            raise JournalError("journal already opened")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open journal {self.path}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise JournalError(f"{self.path}: schema v{version} is newer than this hft (v{SCHEMA_VERSION})")
            if version == 0 and conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]:
                raise JournalError(f"{self.path}: a SQLite file that is not an hft journal")
            if 0 < version < SCHEMA_VERSION:
                _migrate(conn, version)
                log.warning("journal %s: upgraded from schema v%d to v%d", self.path, version, SCHEMA_VERSION)
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise JournalError(
                    f"{self.path}: WAL mode refused (journal_mode={mode}); is it on a network file system?"
                )
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA journal_size_limit = 67108864")  # truncate the WAL to 64 MiB after checkpoints
            conn.executescript(f"BEGIN IMMEDIATE;\n{_SCHEMA}\nPRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;")
            differing = _schema_differences(conn)
            if differing:
                raise JournalError(
                    f"{self.path}: labelled schema v{SCHEMA_VERSION} but {', '.join(differing)} differ from it "
                    "(written by another hft build?); move the file aside to start a new journal"
                )
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise JournalError(f"cannot open journal {self.path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._wconn = conn
        self._q = self._dq
        self._thread = threading.Thread(target=self._run, name="hft-journal-writer", daemon=True)
        self._thread.start()
        return self

    def start_session(self, cid_prefix: str, config_digest: str) -> int:
        """Record a new session (blocks until committed) and stamp it on every later record."""
        started = self._now()

        def insert(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO sessions (started_ns, cid_prefix, config_digest, pid) VALUES (?,?,?,?)",
                (started, cid_prefix, config_digest, os.getpid()),
            )
            self._w_session = cur.lastrowid
            return cur.lastrowid

        self.session_id = self._call(insert, 10.0)
        return self.session_id

    def record_baseline(self, venue: str, balances: dict[str, int], timeout: float = 10.0) -> dict[str, int]:
        """Keep ``balances`` as the venue's baseline unless it has one; returns the baseline in force.

        Positions are reconciled as ``venue balance − baseline == sum of journaled fills``. Blocks until
        committed (start-up only).
        """
        now = self._now()

        def upsert(conn: sqlite3.Connection) -> dict[str, int]:
            conn.executemany(
                "INSERT INTO baselines (venue, asset, amount, recorded_ns) VALUES (?,?,?,?)"
                " ON CONFLICT (venue, asset) DO NOTHING",
                [_fit((venue, asset, amount, now)) for asset, amount in balances.items()],
            )
            rows = conn.execute("SELECT asset, amount FROM baselines WHERE venue = ?", (venue,)).fetchall()
            return {asset: int(amount) for asset, amount in rows}

        return self._call(upsert, timeout)

    def end_session(self, timeout: float = 10.0) -> None:
        """Stamp the current session's end (``close()`` does it); blocks until committed."""
        sid = self.session_id
        if sid is None:
            return
        ended = self._now()

        def update(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE sessions SET ended_ns = ? WHERE session_id = ?", (ended, sid))

        self._call(update, timeout)
        self.session_id = None

    def flush(self, timeout: float = 10.0) -> None:
        """Block until every record queued before this call is committed.

        Raises ``TimeoutError`` if that takes longer than ``timeout`` seconds, and
        :class:`JournalError` if the writer is down.
        """
        self._call(None, timeout)

    def close(self, timeout: float = 10.0, *, clean: bool = True) -> None:
        """End the session (unless the run was not ``clean``), flush, stop the writer, close both connections.

        A session left without an end marks a run a restart must reconcile from (see ``hft/recovery.py``).
        Raises after cleaning up if the queued records could not all be committed.
        """
        if self._thread is None or self._closed:
            self._closed = True
            self.close_reader()
            return
        error: BaseException | None = None
        try:
            if self.session_id is not None and clean:
                self.end_session(timeout)
            self.flush(timeout)
        except (JournalError, TimeoutError) as exc:
            error = exc
        self._closed = True
        self._q = _Refuse(self, "journal is closed")
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("journal writer did not stop within %.1fs; %d records unwritten", timeout, len(self._dq))
        elif self._wconn is not None:
            self._wconn.close()
            self._wconn = None
        self.close_reader()
        if error is not None:
            raise JournalError(f"journal closed with unwritten records: {error}") from error

    def __enter__(self) -> "Journal":
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def behind(self) -> bool:
        """True when records are not being committed: the writer is down, or the batch in hand has
        waited longer than ``max_commit_delay_s`` (database locked, disk full). The engine sends no
        new order meanwhile: one it could not record must not leave."""
        since = self._commit_since
        return self._fatal is not None or (since != 0.0 and time.monotonic() - since > self.max_commit_delay_s)

    @property
    def healthy(self) -> bool:
        """Writer running and its last batch committed (False while retrying, forever once it died)."""
        t = self._thread
        return t is not None and t.is_alive() and self._fatal is None and not self._failing and not self._closed

    @property
    def backlog(self) -> int:
        """Records queued and not yet taken by the writer."""
        return len(self._dq)

    def stats(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy, "backlog": self.backlog, "written": self.written, "errors": self.errors,
            "lost": self.lost, "duplicate_fills": self.duplicate_fills, "batches": self.batches,
            "last_error": self.last_error,
        }

    def _call(self, fn: Callable[[sqlite3.Connection], Any] | None, timeout: float) -> Any:
        call = _Call(fn)
        self._q.append((_CALL, call))
        self._wake.set()
        if not call.done.wait(timeout):
            raise TimeoutError(f"journal writer did not commit within {timeout}s (backlog {self.backlog})")
        if call.error is not None:
            raise JournalError(f"journal write failed: {call.error}") from call.error
        return call.result

    # -------------------------------------------------------------- hot path
    def record_intent(self, order: Order) -> None:
        """The order is about to leave: insert it with its current (pending) state. Never blocks."""
        o, q = order, self._q
        q.append((
            _ORDER, "intent", "", self._now(), o.client_order_id, o.venue, o.symbol, o.side, o.order_type,
            o.time_in_force, o.post_only, o.price, o.qty, o.status, o.venue_order_id, o.filled_qty,
            o.filled_notional, o.fees, o.tag, o.reject_reason,
        ))
        if len(q) >= self.batch_max:
            self._wake.set()

    def record_order(self, order: Order, kind: str, detail: str = "") -> None:
        """The order changed (``kind``: accepted, filled, canceled, cancel_requested, adopted, ...).

        Updates the order's row (inserting it if the journal never saw it) and appends an event.
        """
        o, q = order, self._q
        q.append((
            _ORDER, kind, detail, self._now(), o.client_order_id, o.venue, o.symbol, o.side, o.order_type,
            o.time_in_force, o.post_only, o.price, o.qty, o.status, o.venue_order_id, o.filled_qty,
            o.filled_notional, o.fees, o.tag, o.reject_reason,
        ))
        if len(q) >= self.batch_max:
            self._wake.set()

    def record_fill(self, fill: Fill) -> None:
        """A fill; one already journaled for the same (venue, trade_id) is ignored."""
        q = self._q
        q.append((_FILL, self._now(), fill))
        if len(q) >= self.batch_max:
            self._wake.set()

    def record_snapshot(
        self, symbol: str, venue: str, position: int, avg_price: int, realized: int, fees: int, mark: int = 0
    ) -> None:
        """Position and P&L of ``symbol`` on ``venue`` (or ``"total"``)."""
        q = self._q
        q.append((_SNAP, self._now(), symbol, venue, position, avg_price, realized, fees, mark))
        if len(q) >= self.batch_max:
            self._wake.set()

    def record_portfolio(self, symbol: str, portfolio: Portfolio) -> None:
        """One snapshot per venue of ``portfolio`` and one ``"total"``, all with the same time."""
        now, q, mark = self._now(), self._q, portfolio.mark
        for venue, p in portfolio.by_venue.items():
            q.append((_SNAP, now, symbol, venue, p.qty, p.avg_price, p.realized, p.fees, mark))
        t = portfolio.total
        q.append((_SNAP, now, symbol, "total", t.qty, t.avg_price, t.realized, t.fees, mark))
        if len(q) >= self.batch_max:
            self._wake.set()

    # ----------------------------------------------------------------- writer
    def _run(self) -> None:
        dq, wake, stop = self._dq, self._wake, self._stop
        try:
            while True:
                wake.wait(self.flush_interval_s)
                wake.clear()
                stopping = stop.is_set()
                while dq:
                    n = min(len(dq), self.batch_max)
                    popleft = dq.popleft
                    batch = [popleft() for _ in range(n)]
                    self._inflight = batch
                    self._commit_since = time.monotonic()
                    if not self._commit(batch):
                        return  # gave up at close; already counted and logged
                    self._commit_since = 0.0
                    self._inflight = []
                if stopping:
                    return
        except BaseException as exc:  # noqa: BLE001 - the writer's death must be reported, not lost
            self._die(exc)

    def _commit(self, batch: list[tuple]) -> bool:
        """Write one batch in one transaction; retry transient failures. False if given up (closing)."""
        delay = self.flush_interval_s
        while True:
            session = self._w_session
            try:
                try:
                    self._write_bulk(batch)
                except _RECORD_ERRORS:
                    self._rollback()
                    self._w_session = session
                    self._write_isolated(batch)
                break
            except sqlite3.OperationalError as exc:  # locked, busy, disk full, I/O: keep the batch
                self._rollback()
                self._w_session = session
                self._failing = True
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                now = time.monotonic()
                if now - self._last_transient_log >= 10.0:
                    self._last_transient_log = now
                    log.error("journal: batch of %d records not committed (%s); retrying", len(batch), exc)
                if self._stop.wait(delay):
                    self._give_up(batch, exc)
                    return False
                delay = min(delay * 2, 1.0)
        self._failing = False
        self.batches += 1
        for item in batch:
            if item[0] == _CALL:
                item[1].done.set()
        return True

    def _rollback(self) -> None:
        conn = self._wconn
        if conn is not None and conn.in_transaction:
            conn.execute("ROLLBACK")

    def _write_bulk(self, batch: list[tuple]) -> None:
        conn = self._wconn
        assert conn is not None
        orders: list[tuple] = []
        events: list[tuple] = []
        fills: list[tuple] = []
        snaps: list[tuple] = []
        conn.execute("BEGIN IMMEDIATE")
        records = dups = 0
        for item in batch:
            op = item[0]
            if op == _ORDER:
                o, e = self._order_rows(item)
                orders.append(o)
                events.append(e)
            elif op == _FILL:
                fills.append(self._fill_row(item))
            elif op == _SNAP:
                snaps.append(self._snap_row(item))
            else:  # a call runs in queue order: write what came before it first
                n, d = self._execute(conn, orders, events, fills, snaps)
                records, dups = records + n, dups + d
                orders, events, fills, snaps = [], [], [], []
                call = item[1]
                if call.fn is not None:
                    call.result = call.fn(conn)
                continue
        n, d = self._execute(conn, orders, events, fills, snaps)
        conn.execute("COMMIT")
        self.written += records + n  # counted after the commit: a retried batch is not counted twice
        self.duplicate_fills += dups + d

    @staticmethod
    def _execute(
        conn: sqlite3.Connection, orders: list, events: list, fills: list, snaps: list
    ) -> tuple[int, int]:
        """executemany per statement; returns (records written, duplicate fills ignored)."""
        dups = 0
        if orders:
            conn.executemany(_UPSERT_ORDER, orders)
            conn.executemany(_INSERT_EVENT, events)
        if fills:
            dups = len(fills) - conn.executemany(_INSERT_FILL, fills).rowcount
        if snaps:
            conn.executemany(_INSERT_SNAP, snaps)
        return len(orders) + len(fills) + len(snaps) - dups, dups

    def _write_isolated(self, batch: list[tuple]) -> None:
        """Slow path after a record error: one savepoint per record, wide ints as TEXT, bad records out."""
        conn = self._wconn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        written = dups = 0
        failed: list[tuple[tuple, BaseException]] = []
        for item in batch:
            op = item[0]
            conn.execute("SAVEPOINT record")
            try:
                if op == _ORDER:
                    o, e = self._order_rows(item)
                    conn.execute(_UPSERT_ORDER, _fit(o))
                    conn.execute(_INSERT_EVENT, _fit(e))
                elif op == _FILL:
                    if conn.execute(_INSERT_FILL, _fit(self._fill_row(item))).rowcount == 0:
                        dups += 1
                        written -= 1
                elif op == _SNAP:
                    conn.execute(_INSERT_SNAP, _fit(self._snap_row(item)))
                else:
                    call = item[1]
                    if call.fn is not None:
                        call.result = call.fn(conn)
                conn.execute("RELEASE record")
                if op != _CALL:
                    written += 1
            except _RECORD_ERRORS as exc:
                conn.execute("ROLLBACK TO record")
                conn.execute("RELEASE record")
                failed.append((item, exc))
        conn.execute("COMMIT")
        self.written += written
        self.duplicate_fills += dups
        for item, exc in failed:  # after the commit: a batch retried after a transient error reports once
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            if item[0] == _CALL:
                item[1].error = exc
            else:
                self.lost += 1
                log.error("journal: record not written (%s: %s): %r", type(exc).__name__, exc, item)

    def _order_rows(self, item: tuple) -> tuple[tuple, tuple]:
        (_, kind, detail, ts, cid, venue, symbol, side, otype, tif, post_only, price, qty, status, voi, fq, fn,
         fees, tag, reason) = item
        sid = self._w_session
        st = _ENUM_TEXT[status]
        return (
            (cid, venue, symbol, _SIDE_TEXT[side], _ENUM_TEXT[otype], _ENUM_TEXT[tif], post_only, price, qty, st,
             voi, fq, fn, fees, tag, reason, ts, ts, sid),
            (ts, sid, cid, venue, kind, st, detail),
        )

    def _fill_row(self, item: tuple) -> tuple:
        ts, f = item[1], item[2]
        return (
            f.venue, f.trade_id, f.client_order_id, f.venue_order_id, f.symbol, _SIDE_TEXT[f.side], f.price, f.qty,
            f.fee, f.fee_asset, _ENUM_TEXT[f.liquidity], f.ts_venue, f.ts_recv, ts, self._w_session,
        )

    def _snap_row(self, item: tuple) -> tuple:
        _, ts, symbol, venue, position, avg_price, realized, fees, mark = item
        return (ts, self._w_session, symbol, venue, position, avg_price, realized, fees, mark)

    def _give_up(self, batch: list[tuple], exc: BaseException) -> None:
        """Closing while the database refuses writes: count and report what is lost."""
        self._q = _Refuse(self, "journal writer is down", lost=True)
        self._fatal = exc
        calls = self._count_lost(batch + self._drain_queue())
        log.critical("journal: closing with the database unwritable (%s); %d records lost", exc, self.lost)
        self._fail_calls(calls, exc)

    def _die(self, exc: BaseException) -> None:
        self._q = _Refuse(self, "journal writer is down", lost=True)  # later records raise, not vanish
        self._fatal = exc
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        try:
            self._rollback()
        except Exception:  # noqa: BLE001 - the connection may be what failed
            pass
        calls = self._count_lost(self._inflight + self._drain_queue())
        log.critical("journal writer died (%s); %d records not written", self.last_error, self.lost, exc_info=exc)
        self._fail_calls(calls, exc)  # after logging: a waiting flush() returns to a log that says why

    def _drain_queue(self) -> list[tuple]:
        out = []
        while self._dq:
            out.append(self._dq.popleft())
        return out

    def _count_lost(self, pending: list[tuple]) -> list[_Call]:
        calls = [item[1] for item in pending if item[0] == _CALL]
        self.lost += len(pending) - len(calls)
        return calls

    @staticmethod
    def _fail_calls(calls: list[_Call], exc: BaseException) -> None:
        for call in calls:
            call.error = exc
            call.done.set()


# ---------------------------------------------------------------------------
# Engine adapter

_DONE_KIND = {OrderStatus.CANCELED: "canceled", OrderStatus.EXPIRED: "expired", OrderStatus.REJECTED: "rejected"}


class JournalRecorder:
    """An engine order listener: ``engine.add_order_listener(JournalRecorder(journal))``.

    Records the order's new state (and the fill, if any). The order already
    exists on the venue, so a journal that is down cannot stop anything here:
    the error is logged (first time, then every 1000th) and counted in
    ``dropped`` instead of breaking the engine's listener loop.
    """

    __slots__ = ("journal", "dropped")

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.dropped = 0

    def __call__(self, order: Order, fill: Fill | None) -> None:
        try:
            if fill is not None:
                self.journal.record_fill(fill)
                self.journal.record_order(order, "filled", fill.trade_id)
            else:
                self.journal.record_order(order, _DONE_KIND.get(order.status, "accepted"), order.reject_reason)
        except JournalError as exc:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("journal: order update of %s not recorded (%d so far): %s", order.client_order_id,
                          self.dropped, exc)


def config_digest(cfg: Any) -> str:
    """SHA-256 of the validated config as dumped (secrets masked), for ``start_session``."""
    from hft.config import dump_config

    return hashlib.sha256(dump_config(cfg).encode()).hexdigest()


# ---------------------------------------------------------------------------
# Formatting (CLI)

_UNIT_NS = {"s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9, "w": 7 * 86400 * 10**9}
_RELATIVE = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
_REL_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def parse_since(text: str, *, now_ns: int | None = None) -> int:
    """``--since`` text to wall-clock ns since the epoch.

    Relative to now: ``30s``, ``10m``, ``2h``, ``1d``, ``1w``, ``1.5h``, ``1h30m``. Or an
    ISO 8601 time: ``2024-08-09``, ``2024-08-09T12:30``, ``2024-08-09 12:30:00.250+02:00``,
    ``...Z``; without a zone it is UTC. Raises ``ValueError`` otherwise.
    """
    t = text.strip()
    if _RELATIVE.fullmatch(t.lower()):
        ago = 0
        for amount, unit in _REL_PART.findall(t.lower()):
            ago += int(Decimal(amount) * _UNIT_NS[unit])
        return (time.time_ns() if now_ns is None else now_ns) - ago
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (10m, 2h, 1d, 1h30m) nor an ISO time (2024-08-09T12:30:00Z)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    delta = dt - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def _ts(ns: int | None) -> str:
    if not ns:
        return "-"
    secs, rem = divmod(ns, 10**9)
    return datetime.fromtimestamp(secs, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") + f".{rem // 10**6:03d}"


def _num(v: int | None) -> str:
    return "-" if v is None else numbers.to_str(v)


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], right: set[int]) -> str:
    """Columns padded to their widest cell; ``right`` holds the indexes of right-aligned (numeric) columns."""
    rows = [list(r) for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(out).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep] + [line(r) for r in rows])


def format_orders(rows: Sequence[OrderRow]) -> str:
    """Orders as an aligned text table (times UTC, amounts exact)."""
    if not rows:
        return "no orders"
    show_tag = any(r.tag for r in rows)
    show_reason = any(r.reject_reason for r in rows)
    headers = ["created (UTC)", "venue", "symbol", "side", "type", "price", "qty", "filled", "avg price", "fees",
               "status", "client order id"]
    if show_tag:
        headers.append("tag")
    if show_reason:
        headers.append("reason")
    out = []
    for r in rows:
        kind = r.order_type.value + ("/" + r.time_in_force.value if r.order_type is OrderType.LIMIT else "")
        if r.post_only:
            kind += "/po"
        cells = [
            _ts(r.created_ns), r.venue, r.symbol, _SIDE_TEXT[r.side], kind, _num(r.price), _num(r.qty),
            _num(r.filled_qty), _num(r.avg_price) if r.filled_qty else "-", _num(r.fees), r.status.value,
            r.client_order_id,
        ]
        if show_tag:
            cells.append(r.tag)
        if show_reason:
            cells.append(r.reject_reason)
        out.append(cells)
    return _table(headers, out, {5, 6, 7, 8, 9}) + f"\n{len(rows)} order{'s' if len(rows) != 1 else ''}"


def format_fills(rows: Sequence[FillRow]) -> str:
    """Fills as an aligned text table (times UTC, amounts exact)."""
    if not rows:
        return "no fills"
    headers = ["recorded (UTC)", "venue", "symbol", "side", "price", "qty", "notional", "fee", "asset", "liq",
               "trade id", "client order id"]
    out = [
        [_ts(r.recorded_ns), r.venue, r.symbol, _SIDE_TEXT[r.side], _num(r.price), _num(r.qty),
         _num(numbers.mul(r.price, r.qty)), _num(r.fee), r.fee_asset, r.liquidity.value, r.trade_id,
         r.client_order_id]
        for r in rows
    ]
    return _table(headers, out, {4, 5, 6, 7}) + f"\n{len(rows)} fill{'s' if len(rows) != 1 else ''}"


def format_pnl(rows: Sequence[SnapshotRow]) -> str:
    """Position and P&L snapshots as an aligned text table (unrealised from the snapshot's mark)."""
    if not rows:
        return "no P&L snapshots"
    headers = ["time (UTC)", "symbol", "venue", "position", "avg price", "mark", "realized", "unrealized", "fees",
               "net"]
    out = [
        [_ts(r.ts_ns), r.symbol, r.venue, _num(r.position), _num(r.avg_price) if r.position else "-",
         _num(r.mark) if r.mark else "-", _num(r.realized), _num(r.unrealized) if r.mark else "-", _num(r.fees),
         _num(r.net)]
        for r in rows
    ]
    return _table(headers, out, {3, 4, 5, 6, 7, 8, 9})


def pnl_from_fills(fills: Iterable[FillRow]) -> tuple[list[SnapshotRow], int]:
    """Replay fills through :class:`Portfolio` (no mark): per-venue and total rows per symbol.

    Returns the rows and how many fills paid their fee in an asset other than the quote
    (those fees are left out, since they cannot be added to quote amounts without a price).
    """
    portfolios: dict[str, Portfolio] = {}
    last: dict[str, int] = {}
    foreign_fee = 0
    for row in fills:
        fill = row.to_fill()
        if fill.fee_asset and fill.fee_asset != fill.symbol.partition("/")[2]:
            foreign_fee += 1
            fill = replace(fill, fee=0)
        portfolios.setdefault(fill.symbol, Portfolio([])).on_fill(fill)
        last[fill.symbol] = max(last.get(fill.symbol, 0), row.recorded_ns)
    out = []
    for symbol in sorted(portfolios):
        p = portfolios[symbol]
        for venue, pos in sorted(p.by_venue.items()):
            out.append(
                SnapshotRow(last[symbol], None, symbol, venue, pos.qty, pos.avg_price, pos.realized, pos.fees, 0)
            )
        t = p.total
        out.append(SnapshotRow(last[symbol], None, symbol, "total", t.qty, t.avg_price, t.realized, t.fees, 0))
    return out, foreign_fee


# ---------------------------------------------------------------------------
# Command line: `hft journal orders|fills|pnl`


class _Since(click.ParamType):
    name = "TIME"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_since(str(value))
        except (ValueError, InvalidOperation) as exc:
            self.fail(str(exc), param, ctx)


def _source_options(fn: Callable) -> Callable:
    fn = click.option("--since", type=_Since(), default=None,
                      help="Only since this time: 10m, 2h, 1d, 1h30m or ISO 8601 (UTC unless a zone is given).")(fn)
    fn = click.option("--path", "journal_path", type=click.Path(dir_okay=False),
                      help="Journal file (instead of the config's journal.path).")(fn)
    fn = click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
                      help="YAML config whose journal.path to read (default: the embedded default).")(fn)
    return fn


def _reader(config_path: str | None, journal_path: str | None) -> JournalReader:
    if config_path and journal_path:
        raise click.UsageError("give either -c/--config or --path, not both")
    if journal_path:
        path = Path(journal_path)
    else:
        from hft.cli import _load
        from hft.registry import strategy_registry, venue_registry

        path = Path(_load(config_path, venue_registry(), strategy_registry()).journal.path)
    reader = JournalReader(path)
    try:
        reader._reader()
    except JournalError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    return reader


@click.group("journal")
def journal_cli() -> None:
    """Read the journal of orders, fills and P&L (safe while an engine is writing it)."""


@journal_cli.command("orders")
@_source_options
@click.option("--status", type=click.Choice(["open", *(s.value for s in OrderStatus)]),
              help="Only orders in this status; 'open' means not done (pending, open, partially filled).")
@click.option("--venue", help="Only this venue.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the most recent N.")
def orders_cmd(config_path: str | None, journal_path: str | None, since: int | None, status: str | None,
               venue: str | None, limit: int | None) -> None:
    """Orders changed since --since, oldest first."""
    reader = _reader(config_path, journal_path)
    try:
        if status == "open":
            rows = [r for r in reader.open_orders(venue) if since is None or r.updated_ns >= since]
            rows = rows[-limit:] if limit else rows
        else:
            rows = reader.orders(since, status, venue, limit=limit)
    finally:
        reader.close_reader()
    click.echo(format_orders(rows))


@journal_cli.command("fills")
@_source_options
@click.option("--venue", help="Only this venue.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the most recent N.")
def fills_cmd(config_path: str | None, journal_path: str | None, since: int | None, venue: str | None,
              limit: int | None) -> None:
    """Fills recorded since --since, oldest first."""
    reader = _reader(config_path, journal_path)
    try:
        rows = reader.fills(since, venue, limit=limit)
    finally:
        reader.close_reader()
    click.echo(format_fills(rows))


@journal_cli.command("pnl")
@_source_options
@click.option("--all", "show_all", is_flag=True, help="Every snapshot, not only the latest per symbol and venue.")
def pnl_cmd(config_path: str | None, journal_path: str | None, since: int | None, show_all: bool) -> None:
    """Position and P&L: the latest snapshot per symbol and venue (replayed from fills if there is none)."""
    reader = _reader(config_path, journal_path)
    try:
        rows = reader.snapshots(since) if show_all else reader.latest_snapshots(since)
        note = ""
        if not rows:
            fills = reader.fills(since)
            if fills:
                rows, foreign = pnl_from_fills(fills)
                note = f"no snapshots: replayed from {len(fills)} fills (no mark, so no unrealised P&L)"
                if since is not None:
                    note += "; only fills since --since, so positions opened before are missing"
                if foreign:
                    note += f"; {foreign} fills paid fees in another asset, left out"
    finally:
        reader.close_reader()
    click.echo(format_pnl(rows))
    if note:
        click.echo(note)
