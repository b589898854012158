"""Replay a recorded Binance spot depth stream into a :class:`MatchingEngine`.

The recorded book becomes the venue's book: every recorded price level is held
as resting orders of one unlimited account (``replay``), adjusted to each
recorded diff, so our own orders rest among them, are shown in the same
aggregated depth and can be filled.

How the recording meets our orders:

* A level that grows gets a new replay order for the difference, at the back of
  the queue (behind any of our orders already there); a level that shrinks loses
  replay orders from the back (newest first; a partly removed order is cancelled
  and its remainder re-queued at the back). Within a diff all shrinking levels are
  applied before growing ones, so the replay never crosses itself.
* A recorded trade is replayed as an IOC limit order of the replay account at the
  recorded price and size, on the recorded aggressor side. Self-trade prevention
  (``expire_taker``, the engine's default) stops it at the first replay order it
  meets, so it fills only our orders that are at a better price than the recorded
  book or ahead of the replay orders in the queue at the trade price.
* A replayed level that crosses one of our resting orders trades with it (we are
  the maker); an order of ours that crosses the replayed book takes the replay's
  liquidity, which reappears at the next recorded diff of that level (the
  recording never saw our trade).

Sync follows Binance's rules: diffs are buffered until the REST snapshot line,
diffs with ``u <= lastUpdateId`` are dropped, then every diff must chain
``U == previous u + 1`` (a break is logged and counted in ``stats["gaps"]``). A
recording with no snapshot in its first ``no_snapshot_after_s`` seconds is
replayed from its diffs alone (a partial book). Pacing uses the recorded receive
times (``recv_ns``); the server calls :meth:`ReplayFeed.advance_to`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hft import numbers
from hft.model import OrderType, Side, TimeInForce
from venues.sim.recording import is_depth_snapshot, iter_messages

from venues.sim.matching import ExecReport

__all__ = ["REPLAY_ACCOUNT", "ReplayConfig", "ReplayFeed"]

log = logging.getLogger(__name__)

REPLAY_ACCOUNT = "replay"
_OPEN = ("NEW", "PARTIALLY_FILLED")


class ReplayConfig(BaseModel):
    """Replay of recorded market data as a symbol's background liquidity."""

    model_config = ConfigDict(extra="forbid")

    files: list[Path] = Field(
        min_length=1,
        description="Recordings (gzip '<recv_ns> <json>' lines, e.g. ../shared/data/binance/spot_btcusdt_20240808.gz), "
        "played one after the other.",
    )
    speed: float = Field(1.0, gt=0, description="Replay pace relative to the recorded pace (2 = twice as fast).")
    replay_trades: bool = Field(True, description="Replay recorded trades as IOC orders that can fill our orders.")
    max_levels: int = Field(1000, ge=1, description="Levels per side taken from the snapshot.")
    no_snapshot_after_s: float = Field(
        60.0, gt=0, description="Without a snapshot after this much recorded time, build the book from diffs alone."
    )


class ReplayFeed:
    """Drives one engine (or an engine proxy) from a recording of one symbol.

    ``engine`` needs ``submit``/``cancel`` and an account :data:`REPLAY_ACCOUNT`
    created unlimited. Feed every report of that engine to :meth:`observe` so the
    feed knows what its orders have left after our orders traded with them.
    """

    def __init__(self, engine: Any, venue_symbol: str, config: ReplayConfig, clock_ns=None):
        self.engine = engine
        self.venue_symbol = venue_symbol
        self.config = config
        self._inst = engine.instrument
        self._clock_ns = clock_ns  # callable giving the timestamp stamped on engine calls
        self._it: Iterator[tuple[int, dict]] | None = None
        self._peek: tuple[int, dict] | None = None
        self.first_ns: int | None = None
        self.last_ns: int | None = None  # recv time of the last processed message
        self.done = False
        self.synced = False
        self._buffer: list[dict] = []
        self._last_u: int | None = None
        # side → price → deque of [order_id, remaining] oldest first
        self._levels: dict[Side, dict[int, deque[list[int]]]] = {Side.BUY: {}, Side.SELL: {}}
        self._orders: dict[int, tuple[Side, int]] = {}  # order id → (side, price)
        self._cid = 0
        self.stats = {"diffs": 0, "snapshots": 0, "trades": 0, "gaps": 0, "dropped": 0}

    # ------------------------------------------------------------------ reading

    def open(self) -> None:
        """Start reading (file errors surface here, not in the constructor)."""
        self._it = self._messages()
        self._peek = next(self._it, None)
        if self._peek is None:
            self.done = True
        else:
            self.first_ns = self._peek[0]

    def _messages(self) -> Iterator[tuple[int, dict]]:
        for path in self.config.files:
            for recv_ns, msg in iter_messages(path):
                if is_depth_snapshot(msg):
                    yield recv_ns, msg
                    continue
                data = msg.get("data")
                if isinstance(data, dict) and data.get("s") == self.venue_symbol:
                    yield recv_ns, msg

    def next_ns(self) -> int | None:
        """Receive time of the next message, ``None`` at the end."""
        return self._peek[0] if self._peek is not None else None

    def advance_to(self, recv_ns: int) -> int:
        """Process every message received at or before ``recv_ns``; returns how many."""
        n = 0
        while self._peek is not None and self._peek[0] <= recv_ns:
            ts, msg = self._peek
            self._peek = next(self._it, None)
            self.last_ns = ts
            self._handle(ts, msg)
            n += 1
        if self._peek is None:
            self.done = True
        return n

    def advance_messages(self, count: int) -> int:
        """Process the next ``count`` messages (tests)."""
        n = 0
        while n < count and self._peek is not None:
            n += self.advance_to(self._peek[0])
        return n

    # ------------------------------------------------------------------ messages

    def _handle(self, recv_ns: int, msg: dict) -> None:
        if is_depth_snapshot(msg):
            self._snapshot(msg)
            return
        data = msg["data"]
        kind = data.get("e")
        if kind == "depthUpdate":
            self._diff(recv_ns, data)
        elif kind == "trade":
            if self.synced and self.config.replay_trades:
                self._trade(data)

    def _snapshot(self, snap: dict) -> None:
        self.stats["snapshots"] += 1
        last = int(snap["lastUpdateId"])
        n = self.config.max_levels
        target = {
            Side.BUY: {numbers.parse(p): numbers.parse(q) for p, q in snap["bids"][:n]},
            Side.SELL: {numbers.parse(p): numbers.parse(q) for p, q in snap["asks"][:n]},
        }
        changes = []
        for side in (Side.BUY, Side.SELL):
            for price in list(self._levels[side]):
                if price not in target[side]:
                    changes.append((side, price, 0))
            changes.extend((side, p, q) for p, q in target[side].items())
        self._apply(changes)
        self._last_u = last
        self.synced = True
        buffered, self._buffer = self._buffer, []
        for d in buffered:
            if int(d["u"]) > last:
                self._chain_and_apply(d)

    def _diff(self, recv_ns: int, d: dict) -> None:
        self.stats["diffs"] += 1
        if not self.synced:
            self._buffer.append(d)
            if self.first_ns is not None and recv_ns - self.first_ns > self.config.no_snapshot_after_s * 1e9:
                log.warning("replay %s: no snapshot in the recording, building the book from diffs", self.venue_symbol)
                self.synced = True
                buffered, self._buffer = self._buffer, []
                for b in buffered:
                    self._chain_and_apply(b)
            return
        if self._last_u is not None and int(d["u"]) <= self._last_u:
            self.stats["dropped"] += 1
            return
        self._chain_and_apply(d)

    def _chain_and_apply(self, d: dict) -> None:
        first, last = int(d["U"]), int(d["u"])
        if self._last_u is not None and first != self._last_u + 1 and not (first <= self._last_u + 1 <= last):
            self.stats["gaps"] += 1
            log.warning("replay %s: recorded diffs do not chain (%s after %s)", self.venue_symbol, first, self._last_u)
        self._last_u = last
        changes = [(Side.BUY, numbers.parse(p), numbers.parse(q)) for p, q in d.get("b", ())]
        changes += [(Side.SELL, numbers.parse(p), numbers.parse(q)) for p, q in d.get("a", ())]
        self._apply(changes)

    def _trade(self, t: dict) -> None:
        self.stats["trades"] += 1
        side = Side.SELL if t.get("m") else Side.BUY  # m: the buyer was the maker
        price = self._inst.round_price(numbers.parse(t["p"]), side.opposite)
        qty = self._inst.round_qty(numbers.parse(t["q"]))
        if qty <= 0 or price <= 0:
            return
        self._cid += 1
        self.engine.submit(
            REPLAY_ACCOUNT, f"rt{self._cid}", side, qty, price, OrderType.LIMIT, TimeInForce.IOC, False, self._now()
        )

    # ------------------------------------------------------------------ levels

    def _apply(self, changes: list[tuple[Side, int, int]]) -> None:
        """Set levels to absolute sizes: every shrink first, then every growth."""
        grow = []
        for side, price, qty in changes:
            price = self._inst.round_price(price, side)
            qty = self._inst.round_qty(qty)
            have = self._held(side, price)
            if qty < have:
                self._shrink(side, price, have - qty)
            elif qty > have:
                grow.append((side, price, qty - have))
        for side, price, extra in grow:
            self._add(side, price, extra)

    def _held(self, side: Side, price: int) -> int:
        q = self._levels[side].get(price)
        return sum(e[1] for e in q) if q else 0

    def _shrink(self, side: Side, price: int, amount: int) -> None:
        q = self._levels[side].get(price)
        now = self._now()
        while q and amount > 0:
            oid, rem = q[-1]
            q.pop()
            self._orders.pop(oid, None)
            self.engine.cancel(REPLAY_ACCOUNT, order_id=oid, ts_ns=now)
            if rem > amount:
                self._add(side, price, rem - amount)
                amount = 0
            else:
                amount -= rem
        if q is not None and not q:
            self._levels[side].pop(price, None)

    def _add(self, side: Side, price: int, qty: int) -> None:
        if qty <= 0 or price <= 0:
            return
        self._cid += 1
        reports = self.engine.submit(
            REPLAY_ACCOUNT, f"rl{self._cid}", side, qty, price, OrderType.LIMIT, TimeInForce.GTC, False, self._now()
        )
        oid, status, remaining = 0, "", 0
        for r in reports:
            if r.account_id == REPLAY_ACCOUNT and r.order_id and (oid == 0 or r.order_id == oid):
                oid, status, remaining = r.order_id, r.status, r.qty - r.cum_qty
        if oid and status in _OPEN and remaining > 0:
            self._levels[side].setdefault(price, deque()).append([oid, remaining])
            self._orders[oid] = (side, price)
        self.observe(reports)

    def observe(self, reports: list[ExecReport]) -> None:
        """Track what our orders did to the replay's resting orders (fills as maker)."""
        for r in reports:
            if r.account_id != REPLAY_ACCOUNT or r.exec_type != "TRADE" or not r.is_maker:
                continue
            where = self._orders.get(r.order_id)
            if where is None:
                continue
            side, price = where
            q = self._levels[side].get(price)
            if not q:
                continue
            for e in q:
                if e[0] == r.order_id:
                    e[1] = r.qty - r.cum_qty
                    break
            if r.status not in _OPEN:
                self._orders.pop(r.order_id, None)
                for i, e in enumerate(q):
                    if e[0] == r.order_id:
                        del q[i]
                        break
                if not q:
                    self._levels[side].pop(price, None)

    def book(self) -> tuple[dict[int, int], dict[int, int]]:
        """The replayed levels as ``(bids, asks)`` price → size held by the replay account."""
        return (
            {p: sum(e[1] for e in q) for p, q in self._levels[Side.BUY].items()},
            {p: sum(e[1] for e in q) for p, q in self._levels[Side.SELL].items()},
        )

    def _now(self) -> int:
        return self._clock_ns() if self._clock_ns is not None else 0
