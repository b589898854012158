"""Level-2 order books: one per venue (:class:`VenueBook`) and one per symbol across venues
(:class:`ConsolidatedBook`).

Prices and sizes are fixed-point ints (:mod:`hft.numbers`); sides follow :class:`hft.model.Side`
(``BUY`` = bids, ``SELL`` = asks). Plain ints ``1``/``-1`` work wherever a side is expected.

Why the hot path is cheap (the books see every level of every depth message):

* A side is a ``dict`` price → size, a *lazy* binary heap of its prices (bids negated) and the
  cached best price. A size change is one dict store. A new level is one dict store and one
  ``heappush``. A deleted level is one dict delete: its heap entry stays behind and is thrown
  away only when it reaches the top, i.e. when the best level goes and the next best is looked
  up. The heap is rebuilt from the dict when stale entries outnumber live ones, so memory stays
  bounded. Nothing is ever re-sorted; ``depth(n)`` walks the heap best-first in O(n log n).
* The consolidated book keeps no second copy of the levels. Its best bid is the highest of the
  active venues' best bids (the venue books keep those current), and its total size there is a
  sum of the venues' int sizes, adjusted in place while the top only changes size. An update
  below the top costs the aggregate one comparison. Deeper aggregate levels, attribution and the
  fee-adjusted view are k-way merges of the venue sides, computed when asked.
* :meth:`ConsolidatedBook.apply_level` does the venue and the aggregate update in one function.

The books do no I/O and know no venue: adapters turn wire messages into
:class:`~hft.events.BookSnapshot` / :class:`~hft.events.BookDelta`, the engine feeds them here::

    cb = ConsolidatedBook("BTC/USDT", max_age_ns=5_000_000_000)
    cb.add_venue(VenueBook("binance", "BTC/USDT"), taker_fee_ppm=1_000)
    # BookSnapshot
    cb.apply_snapshot(ev.venue, ev.bids, ev.asks, ev.seq, ev.ts_recv)
    # BookDelta (False: the venue is invalid and out of the aggregate -> resync it)
    ok = cb.apply_delta(ev.venue, ev.first_seq, ev.last_seq, ev.bids, ev.asks, ev.ts_recv)
    # VenueStatus(connected=False)
    cb.invalidate(ev.venue, ev.reason)
    # periodically, off the per-message path
    cb.expire_stale(clock.now_ns())
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from heapq import heapify, heappop, heappush, heapreplace

from hft import numbers
from hft.model import Side

__all__ = ["ConsolidatedBook", "VenueBook"]

Level = tuple[int, int]  # (price, size)
CHECKSUM_LEVELS = 10


def levels_checksum(bids: Iterable[Level], asks: Iterable[Level]) -> int:
    """CRC-32 of best-first bid and ask levels as fixed-point ints: two books with the same top
    levels have the same checksum, whoever computes it (the engine exports its books' checksums so a
    test can compare them with a venue's own depth)."""
    text = ",".join(f"{p}:{s}" for p, s in bids) + "|" + ",".join(f"{p}:{s}" for p, s in asks)
    return zlib.crc32(text.encode())

# Best-price sentinels of an empty side, far outside any fixed-point price.
_NO_BID = -(1 << 200)
_NO_ASK = 1 << 200
_HEAP_SLACK = 64  # stale heap entries tolerated on top of one per live level
_POS_MASK = (1 << 32) - 1  # heap positions packed under the key in depth walks

# Verdicts of VenueBook._check_seq.
_APPLY, _DUPLICATE, _INVALID, _GAP = 0, 1, 2, 3


class VenueBook:
    """The L2 book of one symbol on one venue, with sequence checking.

    A book starts invalid (no snapshot yet). :meth:`apply_snapshot` makes it valid at the
    snapshot's ``seq``; :meth:`apply_delta` accepts a delta only when it continues the chain
    (``first_seq == seq + 1``). A delta with ``last_seq <= seq`` is an old duplicate and is
    ignored. Anything else is a gap: the book is cleared and invalid (``gaps`` += 1) and ignores
    deltas until the next snapshot. :meth:`invalidate` does the same on a disconnect.

    ``bridge=True`` accepts Binance's snapshot bridge: the *first* delta after a snapshot with
    last update id ``L`` may overlap it, ``first_seq <= L + 1 <= last_seq`` (level sizes are
    absolute, so re-applying the overlap is exact). Adapters that bridge themselves leave it off.
    For futures streams, whose deltas chain on ``pu`` (previous ``u``), the adapter passes
    ``first_seq = pu + 1``.

    Sizes are absolute: a level update sets the size, size 0 deletes the level (deleting a
    level that is not there is a no-op, as venues do send those). ``last_update_ts`` is the
    ``ts`` of the last accepted snapshot or delta (pass the engine's receive clock: staleness is
    measured against it); ``updates`` counts accepted snapshots and deltas.

    Once added to a :class:`ConsolidatedBook`, the book's mutators forward to it, so the
    aggregate never misses a change.
    """

    __slots__ = (
        "venue",
        "symbol",
        "bridge",
        "seq",
        "gaps",
        "updates",
        "last_update_ts",
        "invalid_reason",
        "_bids",
        "_asks",
        "_hb",
        "_ha",
        "_hb_max",
        "_ha_max",
        "_bbp",
        "_bap",
        "_valid",
        "_bridging",
        "_slow",
        "_out",
        "_owner",
        "_index",
    )

    def __init__(self, venue: str, symbol: str, *, bridge: bool = False) -> None:
        self.venue = venue
        self.symbol = symbol
        self.bridge = bridge
        self.seq: int | None = None
        self.gaps = 0
        self.updates = 0
        self.last_update_ts: int | None = None
        self.invalid_reason = "no snapshot yet"
        self._bids: dict[int, int] = {}
        self._asks: dict[int, int] = {}
        self._hb: list[int] = []  # negated bid prices; may hold deleted or repeated prices
        self._ha: list[int] = []  # ask prices, same laziness
        self._hb_max = _HEAP_SLACK
        self._ha_max = _HEAP_SLACK
        self._bbp = _NO_BID
        self._bap = _NO_ASK
        self._valid = False
        self._bridging = False
        # _slow: apply_level must not take its fast path (book invalid, or owned by a
        # consolidated book). _out: the consolidated book leaves this venue out (invalid/stale).
        self._slow = True
        self._out = True
        self._owner: ConsolidatedBook | None = None
        self._index = -1

    def __repr__(self) -> str:
        state = "valid" if self._valid else f"invalid: {self.invalid_reason}"
        return (
            f"VenueBook({self.venue!r}, {self.symbol!r}, seq={self.seq}, {state}, "
            f"bid={self.best_bid()}, ask={self.best_ask()})"
        )

    @property
    def valid(self) -> bool:
        """True between a snapshot and the next gap or invalidation."""
        return self._valid

    # -- feeding (forwarded to the owner when consolidated) ------------------------------------

    def apply_snapshot(self, bids: Iterable[Level], asks: Iterable[Level], seq: int, ts: int | None = None) -> None:
        """Replace the whole book; it becomes valid at sequence ``seq``. Levels of size 0 are skipped."""
        if self._owner is not None:
            self._owner.apply_snapshot(self._index, bids, asks, seq, ts)
            return
        self._load(bids, asks, seq, ts)

    def apply_delta(
        self, first_seq: int, last_seq: int, bids: Iterable[Level], asks: Iterable[Level], ts: int | None = None
    ) -> bool:
        """Apply the level changes of sequence range ``first_seq..last_seq``.

        Returns True when the delta was applied or was an old duplicate (``last_seq <= seq``);
        False when the book is invalid — made so by this delta's gap, or already (no snapshot
        since the last gap/invalidation): it needs a snapshot. Raises ``ValueError`` when
        ``last_seq < first_seq``.
        """
        if self._owner is not None:
            return self._owner.apply_delta(self._index, first_seq, last_seq, bids, asks, ts)
        verdict = self._check_seq(first_seq, last_seq)
        if verdict != _APPLY:
            if verdict == _GAP:
                self._drop(self._gap_reason(first_seq, last_seq))
            return verdict == _DUPLICATE
        level = self.apply_level
        for p, s in bids:
            level(1, p, s)
        for p, s in asks:
            level(-1, p, s)
        self._accepted(last_seq, ts)
        return True

    def apply_level(self, side: Side | int, price: int, size: int) -> None:
        """Set one level (size 0 deletes it). No sequence check; ignored while the book is invalid.

        This is the per-level primitive; exchange messages go through :meth:`apply_delta`.
        """
        if self._slow:
            if self._owner is not None:
                self._owner.apply_level(self._index, side, price, size)
            return
        if side > 0:
            d = self._bids
            old = d.get(price, 0)
            if size:
                d[price] = size
                if not old:
                    h = self._hb
                    heappush(h, -price)
                    if len(h) > self._hb_max:
                        self._rebuild_bids()
                    if price > self._bbp:
                        self._bbp = price
            elif old:
                del d[price]
                if price == self._bbp:
                    self._fix_bid()
        else:
            d = self._asks
            old = d.get(price, 0)
            if size:
                d[price] = size
                if not old:
                    h = self._ha
                    heappush(h, price)
                    if len(h) > self._ha_max:
                        self._rebuild_asks()
                    if price < self._bap:
                        self._bap = price
            elif old:
                del d[price]
                if price == self._bap:
                    self._fix_ask()

    def invalidate(self, reason: str = "invalidated") -> None:
        """Mark the book invalid (e.g. its stream disconnected) and clear it until the next snapshot."""
        if self._owner is not None:
            self._owner.invalidate(self._index, reason)
            return
        self._drop(reason)

    def is_stale(self, now_ns: int, max_age_ns: int) -> bool:
        """True when no snapshot/delta was accepted within ``max_age_ns`` before ``now_ns``."""
        return self.last_update_ts is None or now_ns - self.last_update_ts > max_age_ns

    # -- queries ---------------------------------------------------------------------------------

    @property
    def bid(self) -> Level | None:
        """Same as :meth:`best_bid` (mirrors :attr:`ConsolidatedBook.bid`)."""
        return self.best_bid()

    @property
    def ask(self) -> Level | None:
        """Same as :meth:`best_ask` (mirrors :attr:`ConsolidatedBook.ask`)."""
        return self.best_ask()

    def top_prices(self) -> tuple[int | None, int | None]:
        """``(best bid price, best ask price)``, ``None`` for an empty side: the top in one call."""
        return (self._bbp if self._bids else None, self._bap if self._asks else None)

    def best_bid(self) -> Level | None:
        """Highest bid as ``(price, size)``, or ``None`` when there are no bids."""
        d = self._bids
        if d:
            p = self._bbp
            return (p, d[p])
        return None

    def best_ask(self) -> Level | None:
        """Lowest ask as ``(price, size)``, or ``None`` when there are no asks."""
        d = self._asks
        if d:
            p = self._bap
            return (p, d[p])
        return None

    def mid(self) -> int | None:
        """``(best bid + best ask) // 2``, or ``None`` unless both sides have a level."""
        if self._bids and self._asks:
            return (self._bbp + self._bap) // 2
        return None

    def spread(self) -> int | None:
        """Best ask minus best bid, or ``None`` unless both sides have a level."""
        if self._bids and self._asks:
            return self._bap - self._bbp
        return None

    def micro_price(self) -> int | None:
        """Size-weighted mid ``(bid * ask_size + ask * bid_size) // (bid_size + ask_size)``.

        It leans toward the side with less size, the one more likely to be taken out next.
        ``None`` unless both sides have a level.
        """
        if self._bids and self._asks:
            bp = self._bbp
            ap = self._bap
            return _micro(bp, self._bids[bp], ap, self._asks[ap])
        return None

    def is_crossed(self) -> bool:
        """True when best bid >= best ask (a broken single-venue book)."""
        return bool(self._bids and self._asks and self._bbp >= self._bap)

    def size_at(self, side: Side | int, price: int) -> int:
        """Size resting at ``price`` on ``side`` (0 when there is no level)."""
        return (self._bids if side > 0 else self._asks).get(price, 0)

    def level_count(self, side: Side | int) -> int:
        """Number of price levels on ``side``."""
        return len(self._bids if side > 0 else self._asks)

    def depth(self, side: Side | int, n: int = 10) -> list[Level]:
        """The best ``n`` levels of ``side`` as ``(price, size)``, best first."""
        if n <= 0:
            return []
        d = self._bids if side > 0 else self._asks
        if n * 2 >= len(d):  # much of the side: one C sort beats the heap walk
            items = sorted(d.items(), reverse=side > 0)
            del items[n:]
            return items
        out = []
        it = self._walk(side > 0)
        for lv in it:
            out.append(lv)
            if len(out) == n:
                break
        it.close()
        return out

    def checksum(self, n: int = CHECKSUM_LEVELS) -> int:
        """:func:`levels_checksum` of the best ``n`` levels per side (not for the hot path)."""
        return levels_checksum(self.depth(Side.BUY, n), self.depth(Side.SELL, n))

    def iter_side(self, side: Side | int) -> Iterator[Level]:
        """Yield ``(price, size)`` of ``side`` best first, lazily (O(log n) a level).

        Do not change the book while iterating.
        """
        return self._walk(side > 0)

    def _walk(self, bid: bool) -> Iterator[Level]:
        """Best-first walk of a side's lazy heap, without popping it.

        A frontier heap holds the heap positions still to visit, each packed with its key into
        one int (``key << 32 | position``) so the frontier compares plain ints. Equal keys leave
        the frontier one after another, so a price that sits in the heap twice (deleted and
        re-added before its old entry was dropped) is yielded once. Deletions pile up dead
        entries near the top, where the churn is; a walk that had to step over more dead entries
        than it yielded rebuilds the heap when it ends, so the next walk is clean.
        """
        h = self._hb if bid else self._ha
        if not h:
            return
        get = (self._bids if bid else self._asks).get
        n = len(h)
        mask = _POS_MASK
        frontier = [h[0] << 32]
        last = None
        live = dead = 0
        try:
            while frontier:
                x = heappop(frontier)
                i = x & mask
                key = x >> 32
                j = 2 * i + 1
                if j < n:
                    heappush(frontier, (h[j] << 32) | j)
                    j += 1
                    if j < n:
                        heappush(frontier, (h[j] << 32) | j)
                if key == last:
                    dead += 1
                    continue
                p = -key if bid else key
                s = get(p)
                if s is None:
                    dead += 1
                    continue
                last = key
                live += 1
                yield (p, s)
        finally:
            if dead > 32 and dead > live and h is (self._hb if bid else self._ha):
                if bid:
                    self._rebuild_bids()
                else:
                    self._rebuild_asks()

    # -- internals ----------------------------------------------------------------------------------

    def _rebuild_bids(self) -> None:
        h = [-p for p in self._bids]
        heapify(h)
        self._hb = h
        self._hb_max = 2 * len(h) + _HEAP_SLACK

    def _rebuild_asks(self) -> None:
        h = list(self._asks)
        heapify(h)
        self._ha = h
        self._ha_max = 2 * len(h) + _HEAP_SLACK

    def _reindex(self) -> None:
        self._rebuild_bids()
        self._rebuild_asks()
        self._bbp = max(self._bids) if self._bids else _NO_BID
        self._bap = min(self._asks) if self._asks else _NO_ASK

    def _fix_bid(self) -> None:
        """The best bid went: drop dead heap tops until a live price shows."""
        h = self._hb
        d = self._bids
        while h:
            p = -h[0]
            if p in d:
                self._bbp = p
                return
            heappop(h)
        self._bbp = _NO_BID

    def _fix_ask(self) -> None:
        """The best ask went: drop dead heap tops until a live price shows."""
        h = self._ha
        d = self._asks
        while h:
            p = h[0]
            if p in d:
                self._bap = p
                return
            heappop(h)
        self._bap = _NO_ASK

    def _load(self, bids: Iterable[Level], asks: Iterable[Level], seq: int, ts: int | None) -> None:
        self._bids = {p: s for p, s in bids if s}
        self._asks = {p: s for p, s in asks if s}
        self._reindex()
        self.seq = seq
        self._valid = True
        self._bridging = self.bridge
        self.invalid_reason = ""
        self._slow = self._owner is not None
        self.updates += 1
        if ts is not None:
            self.last_update_ts = ts

    def _drop(self, reason: str) -> None:
        self._valid = False
        self._bridging = False
        self._slow = True
        self._out = True
        self.invalid_reason = reason
        self._bids = {}
        self._asks = {}
        self._reindex()

    def _check_seq(self, first_seq: int, last_seq: int) -> int:
        """_APPLY, _DUPLICATE (old: ignore), _INVALID (already) or _GAP (counted; caller drops)."""
        if last_seq < first_seq:
            raise ValueError(f"{self.venue} {self.symbol}: delta range {first_seq}..{last_seq} is reversed")
        if not self._valid:
            return _INVALID
        seq = self.seq
        if first_seq == seq + 1:
            self._bridging = False
            return _APPLY
        if last_seq <= seq:
            return _DUPLICATE
        if self._bridging and first_seq <= seq + 1:
            self._bridging = False
            return _APPLY
        self.gaps += 1
        return _GAP

    def _gap_reason(self, first_seq: int, last_seq: int) -> str:
        return f"sequence gap: book at {self.seq}, delta {first_seq}..{last_seq}"

    def _accepted(self, last_seq: int, ts: int | None) -> None:
        self.seq = last_seq
        self.updates += 1
        if ts is not None:
            self.last_update_ts = ts


def _micro(bp: int, bs: int, ap: int, as_: int) -> int:
    return (bp * as_ + ap * bs) // (bs + as_)


class ConsolidatedBook:
    """One symbol across venues: the aggregate L2 book with per-venue attribution.

    Venue books join with :meth:`add_venue` (which returns the venue's index) and are then fed
    through this object — by venue name or index for the per-message calls, by index for the
    per-level :meth:`apply_level`. Each call updates the venue's book and the aggregate together.

    A venue that is invalid (no snapshot yet, gap, disconnect) or stale (no accepted update for
    its ``max_age_ns``, checked when the engine calls :meth:`expire_stale`) is left out of every
    aggregate answer. A stale venue comes back with its next accepted delta or snapshot, an
    invalid one with its next snapshot.

    ``bid`` / ``ask`` hold the consolidated best ``(price, total_size)`` (or ``None``), always
    current: reading them is the cheapest way to follow the top of book. The aggregate may be
    crossed (one venue's bid at or above another's ask); that is an opportunity, not an error.
    """

    __slots__ = (
        "symbol",
        "max_age_ns",
        "bid",
        "ask",
        "_bbp",
        "_bap",
        "_books",
        "_active",
        "_by_name",
        "_fees",
        "_max_age",
    )

    def __init__(self, symbol: str, *, max_age_ns: int | None = None) -> None:
        self.symbol = symbol
        self.max_age_ns = max_age_ns
        self.bid: Level | None = None
        self.ask: Level | None = None
        self._bbp = _NO_BID
        self._bap = _NO_ASK
        self._books: list[VenueBook] = []
        self._active: list[VenueBook] = []  # venues in the aggregate, in index order
        self._by_name: dict[str, int] = {}
        self._fees: list[int] = []
        self._max_age: list[int | None] = []

    def __repr__(self) -> str:
        return (
            f"ConsolidatedBook({self.symbol!r}, venues={self.venues}, active={self.active_venues()}, "
            f"bid={self.bid}, ask={self.ask})"
        )

    # -- venues ----------------------------------------------------------------------------------

    def add_venue(
        self, book: VenueBook | str, taker_fee_ppm: int = 0, *, max_age_ns: int | None = None
    ) -> int:
        """Take a venue into the consolidation and return its index (for :meth:`apply_level`).

        ``book`` is a :class:`VenueBook` or a venue name (a new, empty book for this symbol).
        ``taker_fee_ppm`` is used by :meth:`fee_adjusted_depth`; ``max_age_ns`` overrides the
        staleness limit for this venue. A valid book joins the aggregate at once. From now on
        feed the venue through this object (the book's own mutators forward here).
        """
        if isinstance(book, str):
            book = VenueBook(book, self.symbol)
        if book._owner is not None:
            raise ValueError(f"{book.venue} {book.symbol} already belongs to a consolidated book")
        if book.venue in self._by_name:
            raise ValueError(f"venue {book.venue!r} is already in the {self.symbol} book")
        index = len(self._books)
        book._owner = self
        book._index = index
        book._slow = True
        book._out = not book._valid
        self._books.append(book)
        self._by_name[book.venue] = index
        self._fees.append(taker_fee_ppm)
        self._max_age.append(max_age_ns)
        self._refresh()
        return index

    def venue_index(self, venue: str | int) -> int:
        """Index of a venue given its name (an index is checked and returned as is)."""
        if isinstance(venue, int):
            if not 0 <= venue < len(self._books):
                raise KeyError(venue)
            return venue
        return self._by_name[venue]

    def venue_book(self, venue: str | int) -> VenueBook:
        """The :class:`VenueBook` of a venue, by name or index (read it, feed it through here)."""
        return self._books[self.venue_index(venue)]

    @property
    def venues(self) -> list[str]:
        """All venue names, in index order."""
        return [b.venue for b in self._books]

    def active_venues(self) -> list[str]:
        """Venues in the aggregate (valid and not stale), in index order."""
        return [b.venue for b in self._active]

    def is_active(self, venue: str | int) -> bool:
        """True when the venue is in the aggregate (valid and not stale)."""
        i = self._by_name.get(venue)
        return not self._books[self.venue_index(venue) if i is None else i]._out

    def set_taker_fee(self, venue: str | int, taker_fee_ppm: int) -> None:
        """Change a venue's taker fee (ppm) for :meth:`fee_adjusted_depth`."""
        self._fees[self.venue_index(venue)] = taker_fee_ppm

    def taker_fee(self, venue: str | int) -> int:
        """A venue's taker fee in ppm."""
        return self._fees[self.venue_index(venue)]

    # -- feeding -----------------------------------------------------------------------------------

    def apply_snapshot(
        self, venue: str | int, bids: Iterable[Level], asks: Iterable[Level], seq: int, ts: int | None = None
    ) -> None:
        """Replace a venue's book with a snapshot; the venue (re)joins the aggregate."""
        book = self._books[self.venue_index(venue)]
        book._load(bids, asks, seq, ts)
        book._out = False
        self._refresh()

    def apply_delta(
        self,
        venue: str | int,
        first_seq: int,
        last_seq: int,
        bids: Iterable[Level],
        asks: Iterable[Level],
        ts: int | None = None,
    ) -> bool:
        """Apply a venue's delta with sequence checking (see :meth:`VenueBook.apply_delta`).

        False means the venue's book is invalid (by this delta's gap or already) and out of the
        aggregate: the caller should get the adapter to resync it with a snapshot. A stale venue
        rejoins the aggregate with an accepted delta.
        """
        i = self._by_name.get(venue)
        if i is None:
            i = self.venue_index(venue)
        book = self._books[i]
        if book._valid and first_seq == book.seq + 1 and last_seq >= first_seq:
            book._bridging = False  # the common case of _check_seq, without the call
        else:
            verdict = book._check_seq(first_seq, last_seq)
            if verdict != _APPLY:
                if verdict == _GAP:
                    book._drop(book._gap_reason(first_seq, last_seq))
                    self._refresh()
                return verdict == _DUPLICATE
        if book._out:  # valid but stale
            book._out = False
            self._refresh()
        level = self.apply_level
        for p, s in bids:
            level(i, 1, p, s)
        for p, s in asks:
            level(i, -1, p, s)
        book.seq = last_seq  # as VenueBook._accepted
        book.updates += 1
        if ts is not None:
            book.last_update_ts = ts
        return True

    def apply_level(self, i: int, side: Side | int, price: int, size: int) -> None:
        """Set one level of venue ``i`` (size 0 deletes it) and update the aggregate with it.

        The per-level primitive, without a sequence check; exchange messages go through
        :meth:`apply_delta`. For a venue left out only its own book is updated (for an invalid
        one nothing).
        """
        vb = self._books[i]
        if vb._out:
            if vb._valid:  # stale: keep its own book current, the aggregate does not see it
                vb._slow = False
                try:
                    vb.apply_level(side, price, size)
                finally:
                    vb._slow = True
            return
        if side > 0:
            d = vb._bids
            old = d.get(price, 0)
            if size:
                d[price] = size
                if not old:
                    h = vb._hb
                    heappush(h, -price)
                    if len(h) > vb._hb_max:
                        vb._rebuild_bids()
                    if price > vb._bbp:
                        vb._bbp = price
            elif old:
                del d[price]
                if price == vb._bbp:
                    vb._fix_bid()
            else:
                return
            # The aggregate best is the highest venue best; only a change at or above it matters.
            top = self._bbp
            if price >= top:
                if price > top:  # no active venue had this price: a new level, so old == 0
                    self._bbp = price
                    self.bid = (price, size)
                else:
                    total = self.bid[1] + size - old
                    if total:
                        self.bid = (price, total)
                    else:
                        self._refresh_bid()
        else:
            d = vb._asks
            old = d.get(price, 0)
            if size:
                d[price] = size
                if not old:
                    h = vb._ha
                    heappush(h, price)
                    if len(h) > vb._ha_max:
                        vb._rebuild_asks()
                    if price < vb._bap:
                        vb._bap = price
            elif old:
                del d[price]
                if price == vb._bap:
                    vb._fix_ask()
            else:
                return
            top = self._bap
            if price <= top:
                if price < top:
                    self._bap = price
                    self.ask = (price, size)
                else:
                    total = self.ask[1] + size - old
                    if total:
                        self.ask = (price, total)
                    else:
                        self._refresh_ask()

    def invalidate(self, venue: str | int, reason: str = "invalidated") -> None:
        """Mark a venue's book invalid (disconnect, …): it is cleared and left out until its next snapshot."""
        self._books[self.venue_index(venue)]._drop(reason)
        self._refresh()

    def expire_stale(self, now_ns: int, max_age_ns: int | None = None) -> list[str]:
        """Leave out every active venue with no accepted update within its maximum age.

        A venue's age limit is its own (:meth:`add_venue`), else ``max_age_ns`` given here, else
        the book's ``max_age_ns``; with none, the venue never goes stale. The engine calls this
        periodically (it is not on the per-message path) with the clock it passes as ``ts``
        when feeding; a venue fed without ``ts`` counts as stale. Returns the venues this call
        left out. Also compacts the venues' lazy heaps.
        """
        default = self.max_age_ns if max_age_ns is None else max_age_ns
        expired = []
        for i, book in enumerate(self._books):
            if len(book._hb) > book._hb_max:
                book._rebuild_bids()
            if len(book._ha) > book._ha_max:
                book._rebuild_asks()
            if book._out:
                continue
            max_age = self._max_age[i]
            if max_age is None:
                max_age = default
            if max_age is not None and book.is_stale(now_ns, max_age):
                book._out = True
                expired.append(book.venue)
        if expired:
            self._refresh()
        return expired

    # -- aggregate top ---------------------------------------------------------------------------

    def _refresh(self) -> None:
        self._active = [b for b in self._books if not b._out]
        self._refresh_bid()
        self._refresh_ask()

    def _refresh_bid(self) -> None:
        act = self._active
        p = max((b._bbp for b in act), default=_NO_BID)
        self._bbp = p
        self.bid = None if p == _NO_BID else (p, sum(b._bids.get(p, 0) for b in act))

    def _refresh_ask(self) -> None:
        act = self._active
        p = min((b._bap for b in act), default=_NO_ASK)
        self._bap = p
        self.ask = None if p == _NO_ASK else (p, sum(b._asks.get(p, 0) for b in act))

    # -- queries ----------------------------------------------------------------------------------

    def best_bid(self) -> Level | None:
        """Consolidated best bid ``(price, total_size)`` over the active venues, or ``None``."""
        return self.bid

    def best_ask(self) -> Level | None:
        """Consolidated best ask ``(price, total_size)`` over the active venues, or ``None``."""
        return self.ask

    def mid(self) -> int | None:
        """``(best bid + best ask) // 2`` of the consolidated top, or ``None`` if a side is empty."""
        b, a = self.bid, self.ask
        if b is None or a is None:
            return None
        return (b[0] + a[0]) // 2

    def spread(self) -> int | None:
        """Consolidated best ask minus best bid (negative when crossed), or ``None``."""
        b, a = self.bid, self.ask
        if b is None or a is None:
            return None
        return a[0] - b[0]

    def micro_price(self) -> int | None:
        """Size-weighted mid of the consolidated top (see :meth:`VenueBook.micro_price`), or ``None``."""
        b, a = self.bid, self.ask
        if b is None or a is None:
            return None
        return _micro(b[0], b[1], a[0], a[1])

    def is_crossed(self) -> bool:
        """True when the best bid of some venue is at or above the best ask of some venue."""
        return self.bid is not None and self.ask is not None and self.bid[0] >= self.ask[0]

    def size_at(self, side: Side | int, price: int) -> int:
        """Total size at ``price`` on ``side`` over the active venues."""
        bid = side > 0
        return sum((b._bids if bid else b._asks).get(price, 0) for b in self._active)

    def venues_at(self, side: Side | int, price: int) -> list[tuple[str, int]]:
        """``[(venue, size), ...]`` of the active venues with a level at ``price``, in venue order."""
        bid = side > 0
        out = []
        for b in self._active:
            s = (b._bids if bid else b._asks).get(price)
            if s:
                out.append((b.venue, s))
        return out

    def iter_side(self, side: Side | int) -> Iterator[tuple[int, int, list[tuple[str, int]]]]:
        """Yield aggregate levels ``(price, total_size, [(venue, size), ...])`` best first, lazily.

        A k-way merge of the active venues' sides. Do not change the book while iterating.
        """
        bid = side > 0
        heads = []
        names = [b.venue for b in self._active]
        walks = [b.iter_side(side) for b in self._active]
        try:
            for i, it in enumerate(walks):
                for p, s in it:
                    heads.append((-p if bid else p, i, s, it))
                    break
            heapify(heads)
            while heads:
                key = heads[0][0]
                total = 0
                who = []
                while heads and heads[0][0] == key:
                    _, i, s, it = heads[0]
                    total += s
                    who.append((names[i], s))
                    for p, s in it:
                        heapreplace(heads, (-p if bid else p, i, s, it))
                        break
                    else:
                        heappop(heads)
                yield (-key if bid else key, total, who)
        finally:
            for it in walks:
                it.close()

    def depth(self, side: Side | int, n: int = 10) -> list[tuple[int, int, list[tuple[str, int]]]]:
        """Best ``n`` aggregate levels as ``(price, total_size, [(venue, size), ...])``, best first."""
        out = []
        if n <= 0:
            return out
        it = self.iter_side(side)
        for lv in it:
            out.append(lv)
            if len(out) == n:
                break
        it.close()
        return out

    def fee_adjusted_depth(self, side: Side | int, n: int = 10) -> list[tuple[int, int, int, str]]:
        """The best ``n`` venue levels of ``side`` after taker fees, as
        ``(effective_price, price, size, venue)``, best effective price first.

        Buying from the asks (``side`` = SELL) costs ``price * (1 + fee)``; selling into the bids
        (``side`` = BUY) yields ``price * (1 - fee)``, with each venue's taker fee in ppm. The
        order uses the exact products ``price * (1_000_000 ± fee_ppm)``; ``effective_price`` is
        ``price ± hft.numbers.fee(price, fee_ppm)``, the fee rounded up, so it is never better
        than the truth (by less than one unit of 1e-9). Ties go to the lower venue index. A
        router walks this list until its quantity is covered; :meth:`iter_fee_adjusted` is the
        lazy form.
        """
        out = []
        if n <= 0:
            return out
        it = self.iter_fee_adjusted(side)
        for lv in it:
            out.append(lv)
            if len(out) == n:
                break
        it.close()
        return out

    def iter_fee_adjusted(self, side: Side | int) -> Iterator[tuple[int, int, int, str]]:
        """Lazy k-way merge behind :meth:`fee_adjusted_depth`. Do not change the book while iterating."""
        ppm = numbers.PPM
        fee = numbers.fee
        bid = side > 0
        heads = []  # (sort key, venue index, price, size, level iterator, factor, fee ppm)
        walks = []
        try:
            for b in self._active:
                i = b._index
                f = self._fees[i]
                # one positive factor per venue keeps each venue's side in its own order
                factor = -(ppm - f) if bid else ppm + f
                it = b.iter_side(side)
                walks.append(it)
                for p, s in it:
                    heads.append((p * factor, i, p, s, it, factor, f))
                    break
            heapify(heads)
            books = self._books
            while heads:
                _, i, p, s, it, factor, f = heads[0]
                yield (p - fee(p, f) if bid else p + fee(p, f), p, s, books[i].venue)
                for p, s in it:
                    heapreplace(heads, (p * factor, i, p, s, it, factor, f))
                    break
                else:
                    heappop(heads)
        finally:
            for it in walks:
                it.close()
