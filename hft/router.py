"""Smart order routing, the pure part: split a parent order across venues for the best all-in price.

:func:`plan` takes a :class:`ParentOrder`, a :class:`~hft.book.ConsolidatedBook` and one
:class:`VenueInfo` per venue (plain data: the instrument's tick/lot/minimums/taker fee, the
balance available, the position headroom, optional penalties) and returns a :class:`Plan` of
:class:`ChildOrder` s, one per venue at most. No engine, no I/O, no clock: the same inputs give
the same plan. :mod:`hft.execution` sends the children and re-plans what is left.

How the split is chosen
-----------------------
The opposite side of every eligible venue's book is walked as one stream, ordered by the
level's *all-in* price: ``price × (1 + taker fee + penalty)`` for a buy, ``price × (1 − taker
fee − penalty)`` for a sell (exact integer keys in ppm; a k-way ``heapq`` merge of the venues'
sorted levels, stopping as soon as the quantity is covered; a venue at the top of the heap
takes its levels in one run while they beat the next venue's, so the heap is touched once per
switch of venue, not per level; a side deeper than 64 levels is read lazily, in growing
chunks). Each level is given to its venue up to what that venue may still take. With convex per-venue costs this greedy walk is the cost
minimum (the sum of the cheapest marginal units); the rounding rules below can make it slightly
worse in corner cases, and then the planner compares it with every single-venue plan (see
*Guarantee*).

Rules, explicit so they are deterministic:

* **Eligibility.** A venue is skipped (with its reason in :attr:`Plan.skipped`) when it is
  disabled, not in the book, invalid or stale in the book (``book.is_active``), has an empty
  side, has no position headroom or no balance.
* **Ties.** Equal all-in keys go to the venue listed first in ``venues``.
* **Lot.** A venue's running allocation is always a multiple of its lot: at each level it
  becomes ``round_down(min(book size seen so far, allocation + quantity left, caps), lot)``. A
  fraction of a level the lot leaves out carries over to the venue's next level (it is still
  in the book there); a fraction of the *parent* smaller than a venue's lot goes to the next
  venue whose lot fits, or stays unplanned (:attr:`Plan.unfilled`).
* **Limit price.** ``ParentOrder.limit_price`` bounds the *raw* venue price (what a limit
  order means on every venue): levels above it (buy) / below it (sell) are not taken. The
  all-in price of what is taken is in the plan. ``VenueInfo.stop_price`` bounds one venue
  the same way, exclusively (our own resting order there: a taker would stop at it).
* **Caps.** ``max_qty`` (position headroom, max order size) and, for sells, ``balance`` (base)
  bound a venue's quantity. For buys ``balance`` is quote and is checked the way a venue locks
  it for a limit order: ``notional at the child's limit price + fee at lock_fee_ppm`` must fit,
  where the child's limit is the worst level it takes. ``max_notional`` is checked at the
  child's limit price too (the pre-trade check does the same). A venue stops taking levels at
  the first one that no longer fits.
* **Minimums.** A child below its venue's ``min_qty`` or ``min_notional`` (at its limit price)
  is dropped and the plan is recomputed without that venue (reason recorded); at most once per
  venue.
* **Child price.** Each child is a limit order at the worst level price it takes (an IOC child
  cannot walk further than planned if the book moved). Its expected ``notional`` is the sum of
  ``mul(price, qty)`` over the levels it takes, its ``fee`` is ``numbers.fee`` of that at the
  taker rate (rounded up).
* **Penalties.** ``VenueInfo.penalty_bps`` (e.g. from a poor fill ratio) and
  ``latency_ms × latency_penalty_bps_per_ms × parent.urgency`` are added to the venue's fee
  when ordering levels (rounded to 0.01 bp); they change which venue is preferred, not the
  costs reported. ``urgency`` is the weight of latency: a patient parent (0) ignores it.

Guarantee
---------
When a plan was shaped by rounding (a lot truncation forced by the parent's remainder or a
cap, a quote cap, a dropped child), it is compared with the plan each eligible venue would
give alone; a single-venue plan that fills at least as much at a lower all-in average price
replaces it. So a plan's all-in average is never worse than that of any single venue that
could fill as much under the same constraints; without rounding effects the greedy walk is
already optimal.

:func:`ideal_sweep` (the fee-adjusted consolidated book walked without any constraint),
:func:`best_single_venue` and :func:`snapshot_book` are the yardsticks the execution report and
the tests compare against.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from heapq import heapify, heappop, heapreplace
from itertools import islice

from hft import numbers
from hft.book import ConsolidatedBook, VenueBook
from hft.model import Instrument, Side

__all__ = [
    "ChildOrder",
    "ParentOrder",
    "Plan",
    "Sweep",
    "VenueInfo",
    "all_in_price",
    "best_single_venue",
    "bps_worse",
    "ideal_sweep",
    "plan",
    "snapshot_book",
]

_PPM = numbers.PPM
_SCALE = numbers.SCALE
_SMALL_SIDE = 64  # a venue side with at most this many levels is sorted once (C sort) instead of heap-walked
_NO_LIMIT = 1 << 400  # above every key
_FIRST_CHUNK = 16  # levels first read from a bigger side; doubled each time they run out

# Reasons in Plan.skipped
SKIP_DISABLED = "disabled"
SKIP_NOT_IN_BOOK = "not in the book"
SKIP_INACTIVE = "book invalid or stale"
SKIP_EMPTY = "no liquidity on that side"
SKIP_NO_HEADROOM = "no position headroom"
SKIP_NO_BALANCE = "no balance"
SKIP_MINIMUM = "child below the venue's minimum quantity or notional"
SKIP_EXCLUDED = "excluded by the caller"


@dataclass(frozen=True, slots=True)
class ParentOrder:
    """What to route: ``qty`` (fixed point, base) on ``side``, optional raw ``limit_price``.

    ``urgency`` weights the latency penalty (0: patient, latency ignored; 1: default).
    """

    symbol: str
    side: Side
    qty: int
    limit_price: int | None = None
    urgency: float = 1.0
    id: str = ""


@dataclass(frozen=True, slots=True)
class VenueInfo:
    """Per-venue routing constraints, as plain data (fixed-point ints, fees in ppm).

    ``balance`` is what may be spent: the quote asset for buys, the base asset for sells
    (``None``: not limited). ``max_qty`` is the headroom for this parent's side: position
    limit minus position and open orders, max order size (``None``: not limited).
    ``lock_fee_ppm`` is the fee rate a venue reserves with a buy limit order (default: the
    taker fee). ``penalty_bps`` and ``latency_ms`` only steer the choice (see module doc).
    ``stop_price``: no level at or beyond it is taken on this venue — the price of our own
    resting order on the side we would take (self-trade prevention stops a taker there).
    """

    venue: str
    tick_size: int
    lot_size: int
    min_qty: int = 0
    min_notional: int = 0
    taker_fee_ppm: int = 0
    lock_fee_ppm: int | None = None
    balance: int | None = None
    max_qty: int | None = None
    max_notional: int | None = None
    penalty_bps: float = 0.0
    latency_ms: float = 0.0
    stop_price: int | None = None
    enabled: bool = True

    @classmethod
    def from_instrument(cls, inst: Instrument, **kw) -> "VenueInfo":
        """Tick, lot, minimums and fees from an :class:`~hft.model.Instrument`; the rest from ``kw``."""
        kw.setdefault("lock_fee_ppm", max(inst.maker_fee_ppm, inst.taker_fee_ppm, 0))
        return cls(
            inst.venue, inst.tick_size, inst.lot_size, inst.min_qty, inst.min_notional, inst.taker_fee_ppm, **kw
        )


@dataclass(slots=True)
class ChildOrder:
    """One venue's share: a limit order of ``qty`` at ``limit_price`` (the worst level it takes).

    ``notional`` and ``fee`` are what the planner expects it to cost on the book it saw.
    """

    venue: str
    side: Side
    qty: int
    limit_price: int
    notional: int
    fee: int
    levels: int

    @property
    def all_in(self) -> int:
        """Quote paid (buy: notional + fee) or received (sell: notional − fee)."""
        return self.notional + self.fee if self.side is Side.BUY else self.notional - self.fee


@dataclass(slots=True)
class Plan:
    """The children of one parent (venue order as in ``venues``) and what they add up to."""

    parent: ParentOrder
    children: list[ChildOrder]
    qty: int
    notional: int
    fees: int
    skipped: dict[str, str] = field(default_factory=dict)
    limit_reached: bool = False  # a level was left out because of the parent's limit price
    single_venue_fallback: bool = False  # the greedy split lost to a single venue (rounding)

    @property
    def unfilled(self) -> int:
        return self.parent.qty - self.qty

    @property
    def all_in(self) -> int:
        """Quote paid (buy) or received (sell), fees included."""
        return self.notional + self.fees if self.parent.side is Side.BUY else self.notional - self.fees

    @property
    def avg_price(self) -> int | None:
        """All-in average price per unit of base (fixed point), ``None`` for an empty plan."""
        return all_in_price(self.parent.side, self.qty, self.notional, self.fees)

    @property
    def vwap(self) -> int | None:
        """Raw volume-weighted price (fees excluded), ``None`` for an empty plan."""
        return self.notional * _SCALE // self.qty if self.qty else None

    def by_venue(self) -> dict[str, ChildOrder]:
        return {c.venue: c for c in self.children}


@dataclass(slots=True)
class Sweep:
    """What walking the fee-adjusted consolidated book for ``qty`` would cost, without constraints."""

    side: Side
    qty: int
    notional: int
    fees: int
    by_venue: dict[str, int]  # base quantity per venue

    @property
    def all_in(self) -> int:
        return self.notional + self.fees if self.side is Side.BUY else self.notional - self.fees

    @property
    def avg_price(self) -> int | None:
        return all_in_price(self.side, self.qty, self.notional, self.fees)


def all_in_price(side: Side, qty: int, notional: int, fees: int) -> int | None:
    """All-in price per unit: ``(notional ± fees) / qty`` (fixed point), ``None`` when ``qty`` is 0."""
    if not qty:
        return None
    total = notional + fees if side is Side.BUY else notional - fees
    return total * _SCALE // qty


def bps_worse(side: Side, price: int, reference: int) -> float:
    """How much worse ``price`` is than ``reference`` for ``side``, in bp (negative: better)."""
    d = price - reference if side is Side.BUY else reference - price
    return d / reference * 1e4


# -- the planner ----------------------------------------------------------------------------------


def plan(
    parent: ParentOrder,
    book: ConsolidatedBook,
    venues: Sequence[VenueInfo],
    *,
    latency_penalty_bps_per_ms: float = 0.0,
    exclude: Sequence[str] = (),
) -> Plan:
    """Split ``parent`` over ``venues`` for the lowest all-in cost on ``book`` (see module doc).

    ``venues`` order is the tie-break order. ``exclude`` names venues to leave out (recorded in
    :attr:`Plan.skipped`). The book is only read.
    """
    excluded: dict[int, str] = {}
    if exclude:
        names = set(exclude)
        excluded = {k: SKIP_EXCLUDED for k, v in enumerate(venues) if v.venue in names}
    dropped = False
    while True:
        raw = _walk(parent, book, venues, latency_penalty_bps_per_ms, excluded, None)
        if not raw.too_small:
            break
        dropped = True
        for k in raw.too_small:
            excluded[k] = SKIP_MINIMUM
    result = raw.to_plan(parent, venues, excluded)
    if raw.approximate or dropped:
        result = _with_single_venue_guard(result, parent, book, venues, latency_penalty_bps_per_ms, excluded)
    return result


def best_single_venue(
    parent: ParentOrder,
    book: ConsolidatedBook,
    venues: Sequence[VenueInfo],
    *,
    latency_penalty_bps_per_ms: float = 0.0,
) -> tuple[str, Plan] | None:
    """The best plan that uses one venue only: most quantity, then best all-in average, then venue order.

    ``None`` when no venue can fill anything.
    """
    best: tuple[str, Plan] | None = None
    for k, v in enumerate(venues):
        raw = _walk(parent, book, venues, latency_penalty_bps_per_ms, {}, k)
        if raw.too_small:
            continue
        p = raw.to_plan(parent, venues, {})
        if not p.qty:
            continue
        if best is None or _better(p, best[1]):
            best = (v.venue, p)
    return best


def _better(a: Plan, b: Plan) -> bool:
    """True when ``a`` fills more than ``b``, or as much at a strictly better all-in total."""
    if a.qty != b.qty:
        return a.qty > b.qty
    return a.all_in < b.all_in if a.parent.side is Side.BUY else a.all_in > b.all_in


def _with_single_venue_guard(
    result: Plan,
    parent: ParentOrder,
    book: ConsolidatedBook,
    venues: Sequence[VenueInfo],
    lat: float,
    excluded: dict[int, str],
) -> Plan:
    buy = parent.side is Side.BUY
    for k in range(len(venues)):
        if excluded.get(k) == SKIP_EXCLUDED:
            continue  # a venue dropped for a too-small child may still be the best on its own
        raw = _walk(parent, book, venues, lat, {}, k)
        if raw.too_small:
            continue
        single = raw.to_plan(parent, venues, {})
        if not single.qty or single.qty < result.qty:
            continue
        # per unit: single.all_in / single.qty strictly better than result.all_in / result.qty
        lhs = single.all_in * result.qty
        rhs = result.all_in * single.qty
        if not result.qty or ((lhs < rhs) if buy else (lhs > rhs)):
            single.skipped = dict(result.skipped)
            single.single_venue_fallback = True
            result = single
    return result


class _Raw:
    """Allocation state of one walk (internal)."""

    __slots__ = ("alloc", "lists", "fills", "skipped", "too_small", "approximate", "limit_reached")

    def __init__(self, n: int) -> None:
        self.alloc = [0] * n
        self.fills: dict[int, tuple[int, int, int]] = {}  # venue index -> _fill_levels of its allocation
        self.lists: list[list[tuple[int, int]] | None] = [None] * n  # levels read so far, best first
        self.skipped: dict[int, str] = {}
        self.too_small: list[int] = []
        self.approximate = False
        self.limit_reached = False

    def to_plan(self, parent: ParentOrder, venues: Sequence[VenueInfo], excluded: dict[int, str]) -> Plan:
        side = parent.side
        children = []
        total_q = total_n = total_f = 0
        for k, q in enumerate(self.alloc):
            if not q:
                continue
            notional, worst, used = self.fills[k]
            f = numbers.fee(notional, venues[k].taker_fee_ppm)
            children.append(ChildOrder(venues[k].venue, side, q, worst, notional, f, used))
            total_q += q
            total_n += notional
            total_f += f
        skipped = {venues[k].venue: r for k, r in excluded.items()}
        skipped.update((venues[k].venue, r) for k, r in self.skipped.items())
        return Plan(parent, children, total_q, total_n, total_f, skipped, self.limit_reached)


def _fill_levels(levels: list[tuple[int, int]], qty: int) -> tuple[int, int, int]:
    """(notional, worst price, levels used) of ``qty`` taken from ``levels`` best first.

    The worst price is the first level where the book size so far covers ``qty``: the child's
    limit price.
    """
    notional = 0
    left = qty
    used = 0
    p = 0
    scale = _SCALE
    for p, s in levels:
        used += 1
        if s >= left:
            notional += p * left // scale
            break
        notional += p * s // scale
        left -= s
    return notional, p, used


def _read_more(lst: list, k: int, gens: list, vbs: list, book_side: int) -> bool:
    """Read more of a big book's side into ``lst`` (as many levels again); False when it has no more.

    Once half the side or more is wanted, one C sort of the whole side (``VenueBook.depth``)
    is cheaper than walking its heap further.
    """
    gen = gens[k]
    if gen is None:
        return False
    n = len(lst)
    vb = vbs[k]
    count = vb.level_count(book_side)
    if 4 * n >= count:
        gen.close()
        gens[k] = None
        lst.extend(vb.depth(book_side, count)[n:])
        return len(lst) > n
    lst.extend(islice(gen, n))
    return len(lst) > n


def _walk(
    parent: ParentOrder,
    book: ConsolidatedBook,
    venues: Sequence[VenueInfo],
    lat: float,
    excluded: dict[int, str],
    only: int | None,
) -> _Raw:
    """One greedy walk of the merged, fee-and-penalty-ordered levels (see module doc).

    Heap entries are ``(key, venue index, level index)``. The venue at the top takes its levels
    in one run for as long as they beat the best other venue's next level (no heap operation
    per level), then its next level goes back into the heap. Allocation after a run is the same
    as level by level: ``round_down(min(book size so far, allocation + remainder, cap), lot)``,
    because allocation + remainder does not change while one venue takes levels.
    """
    n_venues = len(venues)
    raw = _Raw(n_venues)
    remaining = parent.qty
    if remaining <= 0:
        return raw
    buy = parent.side is Side.BUY
    book_side = -1 if buy else 1  # a buy takes the asks
    limit = parent.limit_price
    urgency = parent.urgency
    skipped = raw.skipped
    alloc = raw.alloc
    lists = raw.lists
    caps = [0] * n_venues
    lots = [1] * n_venues
    avails = [0] * n_venues  # book size read so far per venue
    factors = [0] * n_venues
    limkeys = [0] * n_venues  # the limit price as a key of the venue (beyond it: key > limkey)
    own_stop = [False] * n_venues  # the venue's limkey is its stop_price, tighter than the limit
    # quote caps (None: none): q <= num_b // (price * fac_b) and q <= num_m // price
    qcaps: list[tuple[int | None, int, int | None] | None] = [None] * n_venues
    gens: list[Iterator | None] = [None] * n_venues  # lazy walks of big books
    vbs: list[VenueBook | None] = [None] * n_venues  # their books
    heads = []
    try:
        for k, v in enumerate(venues):
            if only is not None and k != only:
                continue
            if k in excluded:
                continue
            if not v.enabled:
                skipped[k] = SKIP_DISABLED
                continue
            try:
                active = book.is_active(v.venue)
            except KeyError:
                skipped[k] = SKIP_NOT_IN_BOOK
                continue
            if not active:
                skipped[k] = SKIP_INACTIVE
                continue
            cap = remaining if v.max_qty is None else min(v.max_qty, remaining)
            if cap <= 0:
                skipped[k] = SKIP_NO_HEADROOM
                continue
            if v.balance is not None:
                if v.balance <= 0:
                    skipped[k] = SKIP_NO_BALANCE
                    continue
                if not buy and v.balance < cap:
                    cap = v.balance
            lot = v.lot_size
            cap -= cap % lot
            if cap <= 0:
                short_of_base = v.balance is not None and not buy and v.balance < lot
                skipped[k] = SKIP_NO_BALANCE if short_of_base else SKIP_NO_HEADROOM
                continue
            vb: VenueBook = book.venue_book(v.venue)
            count = vb.level_count(book_side)
            if not count:
                skipped[k] = SKIP_EMPTY
                continue
            if count <= _SMALL_SIDE:
                levels = vb.depth(book_side, count)
            else:  # read a big book lazily, in growing chunks
                gen = vb.iter_side(book_side)
                gens[k] = gen
                vbs[k] = vb
                levels = list(islice(gen, _FIRST_CHUNK))
            pen = v.penalty_bps + v.latency_ms * lat * urgency
            pen_ppm = round(pen * 100) if pen else 0
            fee = v.taker_fee_ppm
            if buy:
                factor = _PPM + fee + pen_ppm
                num_b = None
                fac_b = 1
                if v.balance is not None:
                    lock = fee if v.lock_fee_ppm is None else v.lock_fee_ppm
                    fac_b = _PPM + max(lock, 0)
                    num_b = v.balance * _SCALE * _PPM
                num_m = None if v.max_notional is None else v.max_notional * _SCALE
                if num_b is not None or num_m is not None:
                    qcaps[k] = (num_b, fac_b, num_m)
            else:
                factor = -(_PPM - fee - pen_ppm)  # negative: the highest bid first in a min-heap
                if v.max_notional is not None:
                    qcaps[k] = (None, 1, v.max_notional * _SCALE)
            caps[k] = cap
            lots[k] = lot
            lists[k] = levels
            factors[k] = factor
            limkey = _NO_LIMIT if limit is None else limit * factor
            if v.stop_price is not None:  # levels at or beyond our own resting order are out
                stopkey = v.stop_price * factor - 1
                if stopkey < limkey:
                    limkey = stopkey
                    own_stop[k] = True
            limkeys[k] = limkey
            heads.append((levels[0][0] * factor, k, 0))
        heapify(heads)
        while heads:
            _, k, i = heads[0]
            lst = lists[k]
            fac = factors[k]
            # The run of k stops at a level whose key is above `bound`: the best other venue's
            # next level (equal keys: the lower venue index goes first) or the limit price.
            limkey = limkeys[k]
            bound = limkey
            nh = len(heads)
            if nh > 1:
                other = heads[1]
                if nh > 2 and heads[2] < other:
                    other = heads[2]
                ob = other[0] - 1 if k > other[1] else other[0]
                if ob < bound:
                    bound = ob
            cap = caps[k]
            x = alloc[k] + remaining  # constant while k takes levels
            xc = x if x < cap else cap
            qc = qcaps[k]
            avail = avails[k]
            n = len(lst)
            end = n if qc is None else i + 1  # a quote cap depends on the worst price: level by level
            j = i
            stopped = False  # a level above the bound stopped the run
            while True:
                while j < end:
                    p, s = lst[j]
                    if p * fac > bound:
                        stopped = True
                        break
                    avail += s
                    j += 1
                    if avail >= xc:
                        break
                if stopped or avail >= xc or j < n or not _read_more(lst, k, gens, vbs, book_side):
                    break
                n = len(lst)
                end = n if qc is None else j
            avails[k] = avail
            done = j == n and gens[k] is None  # k's side is used up
            if stopped and lst[j][0] * fac > limkey:
                if not own_stop[k]:
                    raw.limit_reached = True
                done = True  # its deeper levels are further from the limit
            capped_by_quote = False
            if qc is not None and j > i:
                num_b, fac_b, num_m = qc
                wp = lst[j - 1][0]
                qmax = cap
                if num_b is not None:
                    qmax = num_b // (wp * fac_b)
                if num_m is not None:
                    qm = num_m // wp
                    if qm < qmax:
                        qmax = qm
                if qmax < cap:
                    cap = qmax - qmax % lots[k]
                    capped_by_quote = True
                    if cap < xc:
                        xc = cap
            old = alloc[k]
            want = avail if avail < xc else xc
            new = want - want % lots[k]
            if want == xc and new != want:
                raw.approximate = True  # the lot cut the parent's remainder or a cap
            if new > old:
                alloc[k] = new
                remaining -= new - old
                if remaining <= 0:
                    break
            if cap <= want:  # k cannot take more
                if capped_by_quote:
                    raw.approximate = True
                heappop(heads)
                continue
            if done:
                heappop(heads)
                continue
            if j == n and not _read_more(lst, k, gens, vbs, book_side):  # a big book's chunk ended here
                heappop(heads)
                continue
            heapreplace(heads, (lst[j][0] * fac, k, j))
    finally:
        for gen in gens:
            if gen is not None:
                gen.close()
    fills = raw.fills
    for k, q in enumerate(alloc):
        if q:
            v = venues[k]
            f = fills[k] = _fill_levels(lists[k], q)
            if q < v.min_qty or f[1] * q // _SCALE < v.min_notional:
                raw.too_small.append(k)
    return raw


# -- yardsticks -----------------------------------------------------------------------------------


def ideal_sweep(book: ConsolidatedBook, side: Side, qty: int, *, limit_price: int | None = None) -> Sweep:
    """Walk the fee-adjusted consolidated book for ``qty`` on ``side`` (the parent's side) with no
    constraint at all: every active venue, any fraction of a level, no balance, lot or minimum.

    Fees are the book's per-venue taker fees (:meth:`ConsolidatedBook.fee_adjusted_depth`),
    charged per venue on that venue's notional. The lower bound a router can approach.
    """
    buy = side is Side.BUY
    left = qty
    notional_by: dict[str, int] = {}
    qty_by: dict[str, int] = {}
    mul = numbers.mul
    it = book.iter_fee_adjusted(-1 if buy else 1)
    try:
        for _eff, p, s, venue in it:
            if left <= 0:
                break
            if limit_price is not None and (p > limit_price if buy else p < limit_price):
                continue  # other venues' levels may still be inside the limit
            take = s if s < left else left
            notional_by[venue] = notional_by.get(venue, 0) + mul(p, take)
            qty_by[venue] = qty_by.get(venue, 0) + take
            left -= take
    finally:
        it.close()
    notional = sum(notional_by.values())
    fees = sum(numbers.fee(n, book.taker_fee(v)) for v, n in notional_by.items())
    return Sweep(side, qty - max(left, 0), notional, fees, qty_by)


def snapshot_book(book: ConsolidatedBook, depth: int | None = None) -> ConsolidatedBook:
    """A detached copy of ``book``: same venues (same order and taker fees), the active ones with
    their levels (``depth`` per side, default all), the others left invalid. The copy never goes
    stale (it has no age limit), so plans on it are reproducible after the live book moved."""
    copy = ConsolidatedBook(book.symbol)
    for name in book.venues:
        copy.add_venue(VenueBook(name, book.symbol), book.taker_fee(name))
        if book.is_active(name):
            vb = book.venue_book(name)
            nb = depth if depth is not None else vb.level_count(1)
            na = depth if depth is not None else vb.level_count(-1)
            copy.apply_snapshot(name, vb.depth(1, nb), vb.depth(-1, na), vb.seq or 0, vb.last_update_ts)
    return copy
