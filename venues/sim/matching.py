"""Price-time-priority matching engine for one symbol of the simulated venue.

Pure and synchronous: no I/O, no asyncio, no clock (every call carries its
``ts_ns``). Prices and quantities are fixed-point ints (:mod:`hft.numbers`).
The in-process sim adapter and the Binance-dialect exchange server are both
built on top of it, which is why :class:`ExecReport` mirrors Binance's
``executionReport``.

Rules, in the order a :meth:`MatchingEngine.submit` applies them:

1. Shape: a market order takes no price, a limit order needs one, ``post_only``
   needs a GTC limit order. Then ``Instrument.check_order`` (tick, lot,
   min qty, min notional; market orders skip the notional check because they
   have no price). Then a duplicate ``client_order_id`` among the account's
   *open* orders. Each failure is one ``REJECTED`` report with ``order_id`` 0;
   rejected orders are not stored.
2. ``post_only`` that would cross the opposite best → ``REJECTED``
   ``"Order would immediately match and take."``.
3. Funds (skipped for ``unlimited`` accounts, see below): ``REJECTED`` with
   ``"Account has insufficient balance for requested action."``.
4. The order gets its order id and a ``NEW`` report. ``FOK`` (limit or
   market): the book is walked without touching it; if the order cannot fill
   completely (self-trade prevention counted in) it ends ``EXPIRED`` at once,
   its lock released, and nothing else changes.
5. Matching, then the remainder rests (GTC limit) or expires (IOC, market,
   FOK, or self-trade prevention with ``expire_taker``).

Funds and fees (all exact ints, fees always in the QUOTE asset):

* A limit buy locks ``lock(price, qty) = n + fee(n, max(maker, taker, 0))``
  with ``n = mul(price, qty)``: the worst case at its own limit price. After
  every fill the lock is recomputed for the remaining quantity; the released
  amount pays the fill's cost and fee and the rest returns to ``free``. Since
  fees are rounded per fill (in the venue's favour), a fill can cost at most
  one unit (1e-9 quote) more than it releases; that unit comes from ``free``.
* A sell locks its base quantity; a fill moves it out and credits
  ``notional - fee`` to free quote.
* A market buy locks nothing: the engine walks the book as it would execute
  (same per-fill rounding, same self-trade prevention) and rejects the order
  if free quote is below that exact cost plus taker fees; the fills then debit
  free quote directly, so the check is exact. A market sell needs free base
  for its full quantity.
* Fee per fill: ``numbers.fee(mul(price, qty), rate_ppm)``, maker rate for the
  resting order, taker rate for the aggressor; a negative rate is a rebate.
* Cancel, expiry and completion release whatever is still locked.

``create_account(..., unlimited=True)`` makes an account without balance
checks or locks (the simulator's background liquidity): its fills still move
its ``free`` balances, which may go negative, so its net position is visible.

Reports: ``submit``/``cancel``/``cancel_all`` return the reports they caused,
the caller's and every counterparty's. An account created with
``report_stream=True`` also collects its own reports, whoever caused them
(a flow taker filling the market maker's quote, say), for
:meth:`MatchingEngine.drain_reports`: that is the user-data stream.

Market-data feed: every change of an aggregated level size is recorded
(coalesced per side and price, last size wins, 0 = level gone) along with the
public trades. :meth:`MatchingEngine.drain_book_changes` hands them over and
increments :attr:`MatchingEngine.update_id` when it returned anything; so a
BookDelta built from one drain is ``first_seq = last_seq = update_id``. A
snapshot from :meth:`depth` may be stamped with the current ``update_id`` at
any time: changes not drained yet are already in the snapshot, and since
changes carry absolute level sizes, applying them again is harmless.
Drain regularly: undrained changes and trades accumulate.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from heapq import heapify, heappop, heappush
from itertools import repeat
from typing import Iterator, NamedTuple

from hft import numbers
from hft.model import Balance, Instrument, OrderType, Side, TimeInForce

__all__ = [
    "ExecReport",
    "MatchingEngine",
    "PublicTrade",
    "SimOrder",
    "STP_MODES",
]

# exec_type values
NEW = "NEW"
TRADE = "TRADE"
CANCELED = "CANCELED"
EXPIRED = "EXPIRED"
REJECTED = "REJECTED"
CANCEL_REJECTED = "CANCEL_REJECTED"
# status values (NEW, CANCELED, EXPIRED, REJECTED as above)
PARTIALLY_FILLED = "PARTIALLY_FILLED"
FILLED = "FILLED"

# reasons, worded like Binance's where Binance has one
R_DUPLICATE = "Duplicate order sent."
R_UNKNOWN = "Unknown order sent."
R_WOULD_TAKE = "Order would immediately match and take."
R_FUNDS = "Account has insufficient balance for requested action."
R_STP = "Self-trade prevention."
R_FOK = "Order could not be filled completely."
R_IOC = "Remainder of an immediate order expired."

STP_MODES = ("expire_taker", "expire_maker", "none")

_SCALE = numbers.SCALE
_PPM = numbers.PPM
_PPM_UP = numbers.PPM - 1  # (a + _PPM_UP) // _PPM == -((-a) // _PPM) == numbers.fee's rounding, one operation less
_BUY = Side.BUY
_SELL = Side.SELL
_MARKET = OrderType.MARKET
_GTC = TimeInForce.GTC
_FOK = TimeInForce.FOK
_NO_LIMIT = 1 << 200  # a key no price key reaches: market orders' limit


@dataclass(slots=True)
class ExecReport:
    """One event of one order, modelled on Binance's ``executionReport``.

    ``exec_type`` is what happened (``NEW``, ``TRADE``, ``CANCELED``,
    ``EXPIRED``, ``REJECTED``, ``CANCEL_REJECTED``); ``status`` is the order's
    status after it (``NEW``, ``PARTIALLY_FILLED``, ``FILLED``, ``CANCELED``,
    ``EXPIRED``, ``REJECTED``). ``last_*``, ``fee``, ``trade_id`` and
    ``is_maker`` describe the fill of a ``TRADE`` report (0/False otherwise).
    ``cum_quote`` is the sum of fill notionals. A ``CANCEL_REJECTED`` for an
    order the engine never saw has ``side``/``order_type``/``tif`` ``None``.
    """

    account_id: str
    order_id: int
    client_order_id: str
    side: Side | None
    order_type: OrderType | None
    tif: TimeInForce | None
    price: int | None
    qty: int
    exec_type: str
    status: str
    last_qty: int
    last_price: int
    cum_qty: int
    cum_quote: int
    fee: int
    fee_asset: str
    trade_id: int
    is_maker: bool
    reason: str
    ts_ns: int


class PublicTrade(NamedTuple):
    """A trade as the public trade stream shows it."""

    price: int
    qty: int
    aggressor: Side  # the taker's side
    trade_id: int
    ts_ns: int


_new_tuple = tuple.__new__
_new = object.__new__


def _rep(
    account_id, order_id, client_order_id, side, order_type, tif, price, qty, exec_type, status,
    last_qty, last_price, cum_qty, cum_quote, fee, fee_asset, trade_id, is_maker, reason, ts_ns,
) -> ExecReport:
    """``ExecReport(...)`` without the class call: the same object, built in about half the time.

    (Calling a class runs its ``__init__`` in a fresh interpreter frame; a plain
    function call does not.) ``submit`` inlines these stores for its NEW and
    TRADE reports; the tests compare every field with the dataclass's.
    """
    r = _new(ExecReport)
    r.account_id = account_id
    r.order_id = order_id
    r.client_order_id = client_order_id
    r.side = side
    r.order_type = order_type
    r.tif = tif
    r.price = price
    r.qty = qty
    r.exec_type = exec_type
    r.status = status
    r.last_qty = last_qty
    r.last_price = last_price
    r.cum_qty = cum_qty
    r.cum_quote = cum_quote
    r.fee = fee
    r.fee_asset = fee_asset
    r.trade_id = trade_id
    r.is_maker = is_maker
    r.reason = reason
    r.ts_ns = ts_ns
    return r


class SimOrder:
    """An order inside the engine. Queries return copies (see :meth:`copy`).

    ``status`` uses the :class:`ExecReport` status strings; ``remaining`` is
    the open quantity (0 once the order is done); ``locked`` is what the order
    holds of its account's funds (quote for a buy, base for a sell).
    """

    __slots__ = (
        "order_id",
        "account_id",
        "client_order_id",
        "side",
        "order_type",
        "tif",
        "price",
        "qty",
        "post_only",
        "status",
        "remaining",
        "cum_qty",
        "cum_quote",
        "fees",
        "locked",
        "created_ns",
        "updated_ns",
        "_acct",
    )

    def __init__(self, order_id, acct, client_order_id, side, order_type, tif, price, qty, post_only, ts_ns):
        self.order_id = order_id
        self._acct = acct
        self.account_id = acct.id
        self.client_order_id = client_order_id
        self.side = side
        self.order_type = order_type
        self.tif = tif
        self.price = price
        self.qty = qty
        self.post_only = post_only
        self.status = NEW
        self.remaining = qty
        self.cum_qty = 0
        self.cum_quote = 0
        self.fees = 0
        self.locked = 0
        self.created_ns = ts_ns
        self.updated_ns = ts_ns

    @property
    def is_open(self) -> bool:
        return self.status == NEW or self.status == PARTIALLY_FILLED

    def copy(self) -> "SimOrder":
        c = SimOrder.__new__(SimOrder)
        for name in SimOrder.__slots__:
            setattr(c, name, getattr(self, name))
        c._acct = None
        return c

    def __repr__(self) -> str:
        return (
            f"SimOrder(#{self.order_id} {self.account_id}/{self.client_order_id} {self.side.name} "
            f"{numbers.to_str(self.qty)}@{'MKT' if self.price is None else numbers.to_str(self.price)} "
            f"{self.status} filled={numbers.to_str(self.cum_qty)})"
        )


class _Account:
    __slots__ = ("id", "unlimited", "bal", "base", "quote", "open", "fills")

    def __init__(self, account_id: str, balances: dict[str, int], unlimited: bool, base: str, quote: str, history: int):
        self.id = account_id
        self.unlimited = unlimited
        self.bal = {asset: Balance(asset, int(amount)) for asset, amount in balances.items()}
        self.base = self.bal.setdefault(base, Balance(base, 0))
        self.quote = self.bal.setdefault(quote, Balance(quote, 0))
        self.open: dict[str, SimOrder] = {}  # client order id → open order
        self.fills: deque[ExecReport] = deque(maxlen=history)


class _Level:
    """Orders at one price in time priority. Canceled orders stay in the deque
    (``remaining == 0``) until matching or a compaction drops them, so a cancel
    is O(1)."""

    __slots__ = ("price", "orders", "total", "live")

    def __init__(self, price: int):
        self.price = price
        self.orders: deque[SimOrder] = deque()
        self.total = 0
        self.live = 0


def _sorted_keys(heap: list[int]) -> Iterator[int]:
    """Keys of a binary min-heap in ascending order, lazily (O(k log k) for k keys)."""
    if not heap:
        return
    n = len(heap)
    aux = [(heap[0], 0)]
    while aux:
        k, i = heappop(aux)
        yield k
        c = 2 * i + 1
        if c < n:
            heappush(aux, (heap[c], c))
            c += 1
            if c < n:
                heappush(aux, (heap[c], c))


class MatchingEngine:
    """Price-time-priority limit order book with accounts, for one instrument.

    Each side is a dict ``key → _Level`` plus a min-heap of keys (with stale
    keys dropped lazily), where ``key = price`` for asks and ``-price`` for
    bids, so "best" is the smallest key on both sides and an incoming order on
    ``side`` crosses a resting key ``k`` when ``k <= side * limit_price``.
    """

    def __init__(
        self, instrument: Instrument, *, stp: str = "expire_taker", history: int = 10_000, fills_history: int = 1_000
    ):
        if stp not in STP_MODES:
            raise ValueError(f"stp must be one of {STP_MODES}, not {stp!r}")
        self.instrument = instrument
        self.stp = stp
        self._stp_taker = stp == "expire_taker"
        self._stp_maker = stp == "expire_maker"
        self._fills_history = fills_history
        self._tick = instrument.tick_size
        self._lot = instrument.lot_size
        self._min_notional = instrument.min_notional
        self._maker_ppm = instrument.maker_fee_ppm
        self._taker_ppm = instrument.taker_fee_ppm
        self._lock_ppm = max(instrument.maker_fee_ppm, instrument.taker_fee_ppm, 0)
        # n + fee(n, rate) == (n * (PPM + rate) + PPM - 1) // PPM for an int n: one multiplication
        self._lock_mul = _PPM + self._lock_ppm
        self._taker_mul = _PPM + self._taker_ppm
        self._min_qty_pos = max(instrument.min_qty, 1)  # qty >= this  <=>  qty > 0 and qty >= min_qty
        self._fee_asset = instrument.quote
        self._accounts: dict[str, _Account] = {}
        if history < 1:
            raise ValueError("history must be at least 1")
        self._open: dict[int, SimOrder] = {}  # order id → open order
        # the last `history` done orders, in order of completion
        self._done: deque[SimOrder] = deque(maxlen=history)
        self._bids: dict[int, _Level] = {}  # key -price
        self._asks: dict[int, _Level] = {}  # key price
        self._bid_heap: list[int] = []
        self._ask_heap: list[int] = []
        self._bid_chg: dict[int, int] = {}  # price → new total since last drain
        self._ask_chg: dict[int, int] = {}
        self._trades: list[tuple[int, int, Side, int, int]] = []
        self._streams: dict[str, list[ExecReport]] = {}  # account id → undrained reports
        self._next_order_id = 1
        self._next_trade_id = 1
        self.update_id = 0

    # ------------------------------------------------------------------ accounts

    def create_account(
        self,
        account_id: str,
        balances: dict[str, int] | None = None,
        *,
        unlimited: bool = False,
        report_stream: bool = False,
    ) -> None:
        """Open an account with ``balances`` (asset → fixed-point amount, all free).

        ``unlimited`` accounts skip funds checks and locks (background liquidity).
        ``report_stream`` keeps every report of the account, including fills
        caused by other accounts' orders, for :meth:`drain_reports`.
        """
        if account_id in self._accounts:
            raise ValueError(f"account {account_id!r} exists")
        if report_stream:
            self._streams[account_id] = []
        self._accounts[account_id] = _Account(
            account_id, balances or {}, unlimited, self.instrument.base, self.instrument.quote, self._fills_history
        )

    def balances(self, account_id: str) -> dict[str, Balance]:
        """Copies of the account's balances (free and locked per asset)."""
        return {a: Balance(b.asset, b.free, b.locked) for a, b in self._accounts[account_id].bal.items()}

    def accounts(self) -> list[str]:
        return list(self._accounts)

    # ------------------------------------------------------------------ orders

    def submit(
        self,
        account_id: str,
        client_order_id: str,
        side: Side,
        qty: int,
        price: int | None,
        order_type: OrderType = OrderType.LIMIT,
        tif: TimeInForce = TimeInForce.GTC,
        post_only: bool = False,
        ts_ns: int = 0,
    ) -> list[ExecReport]:
        """Submit an order; returns its reports and those of every resting order it hit, in order.

        Raises ``KeyError`` for an unknown account (a caller bug, not a venue answer).
        """
        # This is the per-order path, written flat for speed: matching is inline,
        # the order and its NEW and TRADE reports are built without a class call
        # (see _rep), the taker's running totals live in locals until the end.
        acct = self._accounts[account_id]
        is_market = order_type is _MARKET
        # --- shape and filters (fast path inline, Instrument.check_order for the message)
        why = None
        notional = 0
        if is_market:
            if price is not None:
                why = "market order takes no price"
            elif post_only:
                why = "post_only needs a GTC limit order"
            elif not (qty >= self._min_qty_pos and not qty % self._lot):
                why = self.instrument.check_order(price, qty) or "invalid order"
        elif price is None:
            why = "limit order needs a price"
        elif post_only and tif is not _GTC:
            why = "post_only needs a GTC limit order"
        else:
            notional = price * qty // _SCALE
            if not (
                qty >= self._min_qty_pos
                and not qty % self._lot
                and price > 0
                and not price % self._tick
                and notional >= self._min_notional
            ):
                why = self.instrument.check_order(price, qty) or "invalid order"
        if why is not None or client_order_id in acct.open:
            why = why or R_DUPLICATE
            return [self._reject(account_id, client_order_id, side, order_type, tif, price, qty, why, ts_ns)]

        buy = side is _BUY
        if buy:
            opp_levels = self._asks
            opp_heap = self._ask_heap
            limit_key = _NO_LIMIT if is_market else price
        else:
            opp_levels = self._bids
            opp_heap = self._bid_heap
            limit_key = _NO_LIMIT if is_market else -price
        # best opposite key, dropping stale heap entries
        crosses = False
        while opp_heap:
            best = opp_heap[0]
            if best in opp_levels:
                crosses = best <= limit_key
                break
            heappop(opp_heap)
        if post_only and crosses:
            return [self._reject(account_id, client_order_id, side, order_type, tif, price, qty, R_WOULD_TAKE, ts_ns)]

        # --- funds
        lock = 0
        unlimited = acct.unlimited
        if not unlimited:
            if buy:
                if is_market:
                    if crosses and self._walk(acct, True, qty, limit_key, True)[1] > acct.quote.free:
                        return [
                            self._reject(account_id, client_order_id, side, order_type, tif, price, qty, R_FUNDS, ts_ns)
                        ]
                else:
                    lock = (notional * self._lock_mul + _PPM_UP) // _PPM  # notional + fee at the lock rate
                    qb = acct.quote
                    if lock > qb.free:
                        return [
                            self._reject(account_id, client_order_id, side, order_type, tif, price, qty, R_FUNDS, ts_ns)
                        ]
                    qb.free -= lock
                    qb.locked += lock
            else:
                bb = acct.base
                if qty > bb.free:
                    return [
                        self._reject(account_id, client_order_id, side, order_type, tif, price, qty, R_FUNDS, ts_ns)
                    ]
                bb.free -= qty
                bb.locked += qty
                lock = qty

        # --- accepted: the order and its NEW report (SimOrder(...) and ExecReport(...) inlined)
        oid = self._next_order_id
        self._next_order_id = oid + 1
        o = _new(SimOrder)
        o.order_id = oid
        o._acct = acct
        o.account_id = account_id
        o.client_order_id = client_order_id
        o.side = side
        o.order_type = order_type
        o.tif = tif
        o.price = price
        o.qty = qty
        o.post_only = post_only
        o.status = NEW
        o.remaining = qty
        o.cum_qty = 0
        o.cum_quote = 0
        o.fees = 0
        o.locked = lock
        o.created_ns = ts_ns
        o.updated_ns = ts_ns
        fee_asset = self._fee_asset
        r = _new(ExecReport)
        r.account_id = account_id
        r.order_id = oid
        r.client_order_id = client_order_id
        r.side = side
        r.order_type = order_type
        r.tif = tif
        r.price = price
        r.qty = qty
        r.exec_type = NEW
        r.status = NEW
        r.last_qty = 0
        r.last_price = 0
        r.cum_qty = 0
        r.cum_quote = 0
        r.fee = 0
        r.fee_asset = fee_asset
        r.trade_id = 0
        r.is_maker = False
        r.reason = ""
        r.ts_ns = ts_ns
        reports = [r]
        if tif is _FOK and (not crosses or self._walk(acct, buy, qty, limit_key, False)[0] < qty):
            # all or nothing, decided before touching the book; the lock goes back
            reports.append(self._done_order(o, EXPIRED, R_FOK, ts_ns))
            if self._streams:
                self._publish(reports)
            return reports

        rem = qty
        stopped = False
        if crosses:
            # --- matching: walk the opposite levels best first, each in time priority
            chg = self._ask_chg if buy else self._bid_chg
            trades = self._trades
            done = self._done
            open_by_id = self._open
            taker_ppm = self._taker_ppm
            maker_ppm = self._maker_ppm
            lock_mul = self._lock_mul
            check_own = self._stp_taker or self._stp_maker
            tfills = acct.fills
            t_base = acct.base
            t_quote = acct.quote
            next_tid = self._next_trade_id
            cum_qty = 0  # the taker's running totals, written back to o after the loop
            cum_quote = 0
            fees = 0
            while rem and opp_heap:
                key = opp_heap[0]
                if key > limit_key:
                    break
                lvl = opp_levels.get(key)
                if lvl is None:
                    heappop(opp_heap)
                    continue
                q = lvl.orders
                lprice = lvl.price
                total = lvl.total
                before = total
                while q:
                    m = q[0]
                    mrem = m.remaining
                    if not mrem:
                        q.popleft()  # a canceled order's dead entry
                        continue
                    macct = m._acct
                    if macct is acct and check_own:
                        if self._stp_taker:
                            stopped = True
                            break
                        q.popleft()
                        total -= mrem
                        lvl.live -= 1
                        reports.append(self._done_order(m, EXPIRED, R_STP, ts_ns, resting=True))
                        continue
                    fill = rem if rem < mrem else mrem
                    tid = next_tid
                    next_tid += 1
                    notional = lprice * fill // _SCALE
                    tfee = (notional * taker_ppm + _PPM_UP) // _PPM  # numbers.fee(notional, taker_ppm)
                    mfee = (notional * maker_ppm + _PPM_UP) // _PPM
                    rem -= fill
                    mrem -= fill
                    total -= fill
                    cum_qty += fill
                    cum_quote += notional
                    fees += tfee
                    # taker funds
                    if unlimited:
                        if buy:
                            t_base.free += fill
                            t_quote.free -= notional + tfee
                        else:
                            t_base.free -= fill
                            t_quote.free += notional - tfee
                    elif buy:
                        t_base.free += fill
                        if is_market:
                            t_quote.free -= notional + tfee
                        else:
                            # the lock of the remainder at the own limit; the difference pays the fill
                            n = price * rem // _SCALE
                            nl = (n * lock_mul + _PPM_UP) // _PPM
                            rel = lock - nl
                            lock = nl
                            t_quote.locked -= rel
                            t_quote.free += rel - notional - tfee
                    else:
                        lock -= fill
                        t_base.locked -= fill
                        t_quote.free += notional - tfee
                    # maker funds
                    if macct.unlimited:
                        if buy:
                            macct.base.free -= fill
                            macct.quote.free += notional - mfee
                        else:
                            macct.base.free += fill
                            macct.quote.free -= notional + mfee
                    elif buy:  # maker sold
                        m.locked -= fill
                        macct.base.locked -= fill
                        macct.quote.free += notional - mfee
                    else:  # maker bought
                        macct.base.free += fill
                        n = lprice * mrem // _SCALE
                        nl = (n * lock_mul + _PPM_UP) // _PPM
                        rel = m.locked - nl
                        m.locked = nl
                        mq = macct.quote
                        mq.locked -= rel
                        mq.free += rel - notional - mfee
                    mcum_qty = m.cum_qty + fill
                    mcum_quote = m.cum_quote + notional
                    m.cum_qty = mcum_qty
                    m.cum_quote = mcum_quote
                    m.fees += mfee
                    m.remaining = mrem
                    m.updated_ns = ts_ns
                    # the taker's and the maker's TRADE reports (ExecReport(...) inlined)
                    tr = _new(ExecReport)
                    tr.account_id = account_id
                    tr.order_id = oid
                    tr.client_order_id = client_order_id
                    tr.side = side
                    tr.order_type = order_type
                    tr.tif = tif
                    tr.price = price
                    tr.qty = qty
                    tr.exec_type = TRADE
                    tr.status = PARTIALLY_FILLED if rem else FILLED
                    tr.last_qty = fill
                    tr.last_price = lprice
                    tr.cum_qty = cum_qty
                    tr.cum_quote = cum_quote
                    tr.fee = tfee
                    tr.fee_asset = fee_asset
                    tr.trade_id = tid
                    tr.is_maker = False
                    tr.reason = ""
                    tr.ts_ns = ts_ns
                    mr = _new(ExecReport)
                    mr.account_id = m.account_id
                    mr.order_id = m.order_id
                    mr.client_order_id = mcid = m.client_order_id
                    mr.side = m.side
                    mr.order_type = m.order_type
                    mr.tif = m.tif
                    mr.price = lprice
                    mr.qty = m.qty
                    mr.exec_type = TRADE
                    mr.status = mstatus = PARTIALLY_FILLED if mrem else FILLED
                    mr.last_qty = fill
                    mr.last_price = lprice
                    mr.cum_qty = mcum_qty
                    mr.cum_quote = mcum_quote
                    mr.fee = mfee
                    mr.fee_asset = fee_asset
                    mr.trade_id = tid
                    mr.is_maker = True
                    mr.reason = ""
                    mr.ts_ns = ts_ns
                    reports.append(tr)
                    reports.append(mr)
                    tfills.append(tr)
                    macct.fills.append(mr)
                    trades.append((lprice, fill, side, tid, ts_ns))
                    m.status = mstatus
                    if not mrem:
                        q.popleft()
                        lvl.live -= 1
                        m.locked = 0  # any rounding remainder of a buy's lock was released above
                        del macct.open[mcid]
                        del open_by_id[m.order_id]
                        done.append(m)
                    if not rem:
                        break
                if total != before:
                    lvl.total = total
                    chg[lprice] = total
                if not lvl.live:
                    del opp_levels[key]
                    heappop(opp_heap)
                if stopped:
                    break
            self._next_trade_id = next_tid
            o.remaining = rem  # (updated_ns is already ts_ns)
            if cum_qty:
                o.cum_qty = cum_qty
                o.cum_quote = cum_quote
                o.fees = fees
                o.status = PARTIALLY_FILLED if rem else FILLED
            if not rem:
                if lock and not unlimited:
                    # a filled buy's leftover lock (price improvement) goes back
                    t_quote.locked -= lock
                    t_quote.free += lock
                o.locked = 0
                done.append(o)
                if self._streams:
                    self._publish(reports)
                return reports
            o.locked = lock

        if stopped:
            reports.append(self._done_order(o, EXPIRED, R_STP, ts_ns))
        elif is_market or tif is not _GTC:
            reports.append(self._done_order(o, EXPIRED, R_IOC, ts_ns))
        else:
            # rest
            if buy:
                key = -price
                levels = self._bids
                chg = self._bid_chg
            else:
                key = price
                levels = self._asks
                chg = self._ask_chg
            lvl = levels.get(key)
            if lvl is None:
                lvl = levels[key] = _Level(price)
                heap = self._bid_heap if buy else self._ask_heap
                heappush(heap, key)
                if len(heap) > 2 * len(levels) + 64:
                    heap[:] = levels
                    heapify(heap)
            lvl.orders.append(o)
            chg[price] = lvl.total = lvl.total + rem
            lvl.live += 1
            acct.open[client_order_id] = o
            self._open[oid] = o
        if self._streams:
            self._publish(reports)
        return reports

    def _walk(self, acct, buy, qty, limit_key, want_cost) -> tuple[int, int]:
        """What an aggressor of ``qty`` would fill now and what it would cost with taker fees.

        Mirrors the matching loop of :meth:`submit` exactly (per-fill rounding, self-trade prevention).
        """
        levels = self._asks if buy else self._bids
        heap = self._ask_heap if buy else self._bid_heap
        taker_mul = self._taker_mul
        check_own = self._stp_taker or self._stp_maker
        filled = 0
        cost = 0
        last = None
        for key in _sorted_keys(heap):
            if key > limit_key:
                break
            if key == last:
                continue
            last = key
            lvl = levels.get(key)
            if lvl is None:
                continue
            price = lvl.price
            if not check_own and not want_cost:
                filled += lvl.total
                if filled >= qty:
                    return qty, 0
                continue
            for m in lvl.orders:
                mrem = m.remaining
                if not mrem:
                    continue
                if check_own and m._acct is acct:
                    if self._stp_taker:
                        return filled, cost
                    continue
                take = qty - filled
                if take > mrem:
                    take = mrem
                filled += take
                if want_cost:
                    n = price * take // _SCALE
                    cost += (n * taker_mul + _PPM_UP) // _PPM  # n + taker fee
                if filled == qty:
                    return filled, cost
        return filled, cost

    def cancel(
        self, account_id: str, *, client_order_id: str | None = None, order_id: int | None = None, ts_ns: int = 0
    ) -> list[ExecReport]:
        """Cancel one open order by venue ``order_id`` (takes precedence) or ``client_order_id``.

        An order that is unknown, done, or another account's gives one report
        with ``exec_type="CANCEL_REJECTED"``, ``status="REJECTED"``, reason
        ``"Unknown order sent."`` and only the ids that were given (like
        Binance's error -2011, it does not say why; :meth:`order` does).
        """
        acct = self._accounts[account_id]
        if order_id is not None:
            o = self._open.get(order_id)
            if o is not None and o._acct is not acct:
                o = None
        elif client_order_id is not None:
            o = acct.open.get(client_order_id)
        else:
            o = None
        if o is None:
            return [
                _rep(
                    account_id, order_id or 0, client_order_id or "", None, None, None, None, 0,
                    CANCEL_REJECTED, REJECTED, 0, 0, 0, 0, 0, self._fee_asset, 0, False, R_UNKNOWN, ts_ns,
                )
            ]
        reports = [self._cancel_resting(o, ts_ns)]
        if self._streams:
            self._publish(reports)
        return reports

    def cancel_all(self, account_id: str, ts_ns: int = 0) -> list[ExecReport]:
        """Cancel every open order of the account (oldest first); one ``CANCELED`` report each."""
        acct = self._accounts[account_id]
        reports = [self._cancel_resting(o, ts_ns) for o in list(acct.open.values())]
        if self._streams:
            self._publish(reports)
        return reports

    def _publish(self, reports: list[ExecReport]) -> None:
        streams = self._streams
        for r in reports:
            q = streams.get(r.account_id)
            if q is not None:
                q.append(r)

    def drain_reports(self, account_id: str) -> list[ExecReport]:
        """The account's reports since the last drain, whoever's call caused them (a user-data stream).

        Only for accounts created with ``report_stream=True``. Carries ``NEW``,
        ``TRADE``, ``CANCELED`` and ``EXPIRED`` reports, in order; ``REJECTED``
        and ``CANCEL_REJECTED`` are answers to the caller only (like Binance's
        REST errors, which its user stream does not repeat).
        """
        q = self._streams[account_id]
        self._streams[account_id] = []
        return q

    def _cancel_resting(self, o: SimOrder, ts: int) -> ExecReport:
        acct = o._acct
        price = o.price
        if o.side is _BUY:
            levels = self._bids
            key = -price
            chg = self._bid_chg
            b = acct.quote
        else:
            levels = self._asks
            key = price
            chg = self._ask_chg
            b = acct.base
        lvl = levels[key]
        total = lvl.total - o.remaining
        lvl.total = total
        lvl.live -= 1
        chg[price] = total
        o.remaining = 0  # a dead entry in the level's deque, dropped by matching or compaction
        if not lvl.live:
            del levels[key]  # its heap key goes stale and is dropped lazily
        else:
            q = lvl.orders
            if q[0] is o:
                q.popleft()
            elif len(q) > 2 * lvl.live + 16:
                lvl.orders = deque([x for x in q if x.remaining])
        lk = o.locked
        if lk:
            b.locked -= lk
            b.free += lk
            o.locked = 0
        o.status = CANCELED
        o.updated_ns = ts
        del acct.open[o.client_order_id]
        del self._open[o.order_id]
        self._done.append(o)
        return _rep(
            acct.id, o.order_id, o.client_order_id, o.side, o.order_type, o.tif, price, o.qty,
            CANCELED, CANCELED, 0, 0, o.cum_qty, o.cum_quote, 0, self._fee_asset, 0, False, "", ts,
        )

    def _done_order(self, o: SimOrder, status: str, reason: str, ts: int, resting: bool = False) -> ExecReport:
        """End ``o`` (CANCELED/EXPIRED): release its lock, forget it as open, remember it as done.

        The caller takes a resting order out of its level.
        """
        acct = o._acct
        lk = o.locked
        if lk:
            b = acct.quote if o.side is _BUY else acct.base
            b.locked -= lk
            b.free += lk
            o.locked = 0
        o.remaining = 0
        o.status = status
        o.updated_ns = ts
        if resting:
            del acct.open[o.client_order_id]
            del self._open[o.order_id]
        self._done.append(o)
        return _rep(
            o.account_id, o.order_id, o.client_order_id, o.side, o.order_type, o.tif, o.price, o.qty,
            status, status, 0, 0, o.cum_qty, o.cum_quote, 0, self._fee_asset, 0, False, reason, ts,
        )

    def _find(self, acct: _Account, client_order_id: str | None, order_id: int | None) -> SimOrder | None:
        """The account's order, open or among the done orders (scanned newest first: O(history))."""
        if order_id is not None:
            o = self._open.get(order_id)
            if o is None:
                for o in self._done_newest_first():
                    if o.order_id == order_id:
                        break
                else:
                    o = None
            return o if o is not None and o._acct is acct else None
        if client_order_id is None:
            return None
        o = acct.open.get(client_order_id)
        if o is None:
            for o in self._done_newest_first():
                if o._acct is acct and o.client_order_id == client_order_id:
                    return o
            return None
        return o

    def _done_newest_first(self) -> Iterator[SimOrder]:
        return reversed(self._done)

    def _reject(self, account_id, cid, side, order_type, tif, price, qty, reason, ts) -> ExecReport:
        return _rep(
            account_id, 0, cid, side, order_type, tif, price, qty, REJECTED, REJECTED,
            0, 0, 0, 0, 0, self._fee_asset, 0, False, reason, ts,
        )

    # ------------------------------------------------------------------ queries

    def open_orders(self, account_id: str) -> list[SimOrder]:
        """Copies of the account's open orders, oldest first."""
        return [o.copy() for o in self._accounts[account_id].open.values()]

    def resting(self, account_id: str) -> list[tuple[int, Side, int, int]]:
        """``(order_id, side, price, remaining)`` of the account's open orders, oldest first (no copies)."""
        return [(o.order_id, o.side, o.price, o.remaining) for o in self._accounts[account_id].open.values()]

    def order(
        self, account_id: str, client_order_id: str | None = None, order_id: int | None = None
    ) -> SimOrder | None:
        """A copy of one order, open or among the last ``history`` done orders of the engine.

        By ``order_id`` if given, else by ``client_order_id`` (the latest order
        with that id). ``None`` if unknown or another account's.
        """
        o = self._find(self._accounts[account_id], client_order_id, order_id)
        return o.copy() if o is not None else None

    def trades_of(self, account_id: str, since_trade_id: int = 0) -> list[ExecReport]:
        """The account's fills (``TRADE`` reports) with ``trade_id > since_trade_id``, oldest first.

        Only the last ``history`` fills per account are kept.
        """
        fills = self._accounts[account_id].fills
        if not since_trade_id:
            return list(fills)
        return [r for r in fills if r.trade_id > since_trade_id]

    def depth(self, limit: int = 100) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Aggregated ``(price, size)`` levels, best first, at most ``limit`` per side."""
        return self._side_depth(self._bids, self._bid_heap, limit), self._side_depth(self._asks, self._ask_heap, limit)

    @staticmethod
    def _side_depth(levels: dict[int, _Level], heap: list[int], limit: int) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        if limit <= 0:
            return out
        last = None
        for key in _sorted_keys(heap):
            if key == last:
                continue
            last = key
            lvl = levels.get(key)
            if lvl is not None:
                out.append((lvl.price, lvl.total))
                if len(out) >= limit:
                    break
        return out

    def best_bid(self) -> tuple[int, int] | None:
        """``(price, size)`` of the best bid, or None."""
        heap, levels = self._bid_heap, self._bids
        while heap and heap[0] not in levels:
            heappop(heap)
        if not heap:
            return None
        lvl = levels[heap[0]]
        return lvl.price, lvl.total

    def best_ask(self) -> tuple[int, int] | None:
        """``(price, size)`` of the best ask, or None."""
        heap, levels = self._ask_heap, self._asks
        while heap and heap[0] not in levels:
            heappop(heap)
        if not heap:
            return None
        lvl = levels[heap[0]]
        return lvl.price, lvl.total

    @property
    def last_trade_id(self) -> int:
        return self._next_trade_id - 1

    # ------------------------------------------------------------------ market-data feed

    def drain_book_changes(self) -> list[tuple[Side, int, int]]:
        """Level changes since the last drain as ``(side, price, new_total)``; 0 = level gone.

        Coalesced per (side, price), last size wins; bids first, then asks,
        each in order of first change. Increments :attr:`update_id` if the
        list is not empty.
        """
        out: list[tuple[Side, int, int]] = []
        chg = self._bid_chg
        if chg:
            out.extend(zip(repeat(_BUY), chg, chg.values()))
            self._bid_chg = {}
        chg = self._ask_chg
        if chg:
            out.extend(zip(repeat(_SELL), chg, chg.values()))
            self._ask_chg = {}
        if out:
            self.update_id += 1
        return out

    def drain_trades(self) -> list[PublicTrade]:
        """Public trades since the last drain, in order."""
        t = self._trades
        if not t:
            return []
        self._trades = []
        return list(map(_new_tuple, repeat(PublicTrade), t))  # plain tuples while hot, named here
