"""Execution manager: send a parent order's children, gather the outcome, re-plan the rest.

:class:`ExecutionManager` runs on the engine's loop, on top of the :class:`~hft.engine.Engine`
trading API: every child is an ``engine.submit_order(..., time_in_force=IOC,
tag="router:<parent-id>")`` and so passes the pre-trade checks like any other order; outcomes
come back through ``engine.add_order_listener``. One :meth:`ExecutionManager.execute` call:

1. **Arrival.** Snapshot the consolidated book (:func:`hft.router.snapshot_book`), note its
   mid, take the venues' free balances (the engine's risk view — balances at start plus our
   fills, minus what open orders hold — re-read every round; or, for an engine without one,
   ``adapter.fetch_balances`` once, then kept up to date from our own fills) and plan the
   whole parent on the snapshot (the *arrival plan*).
2. **Rounds.** Plan what is left on the *live* book with the current constraints (position
   headroom from the risk limits, positions and open orders; balances; max order size and
   notional; the parent's limit tightened to the risk engine's price band around the mid; on
   each venue, no level at or beyond our own resting orders on the side taken — a market
   maker's quotes — where self-trade prevention would stop a child), send
   every child at once (IOC at the worst level it takes), wait until each is
   done, then again — until the parent is filled, the limit price leaves nothing to take, the
   time is up, or nothing can be routed (no liquidity, risk limits).
   A venue whose child was rejected is left out for the rest of the parent; a venue whose
   child came back short (someone took the liquidity first) is used again only once its book
   has changed since the child was sent; a venue that goes stale or invalid is skipped by the
   planner (it reads ``book.is_active``). A child the pre-trade checks deny is recorded with
   the reason; an ``order_rate`` denial is retried, any other leaves the venue out.
3. **Passive residual** (optional). What is left is posted post-only at the consolidated best
   price on our side (capped by the limit) on the venue with the lowest maker fee, and
   cancelled (confirmed) at the deadline if not filled.
4. **Report.** An :class:`ExecutionResult`: children with their fills, VWAP, fees, slippage
   against the arrival mid, and the yardsticks on the arrival snapshot for the quantity
   filled: (a) the best single venue (:func:`hft.router.best_single_venue`) and (b) the ideal
   fee-adjusted sweep (:func:`hft.router.ideal_sweep`). :func:`format_report` prints it.

Metrics (:class:`RouterMetrics`, registered on the engine's ``metrics.registry``):
``hft_router_parents_total``, ``hft_router_children_total{venue}``, ``hft_router_fill_ratio``
(histogram of filled / parent quantity) and ``hft_router_slippage_bps`` (histogram of the VWAP
against the arrival mid, positive = worse, fees excluded).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from prometheus_client import CollectorRegistry, Counter, Histogram

from hft import numbers
from hft.engine import Engine
from hft.model import Fill, Order, OrderStatus, Side, TimeInForce
from hft.router import (
    SKIP_INACTIVE,
    SKIP_NO_HEADROOM,
    ParentOrder,
    Plan,
    Sweep,
    VenueInfo,
    all_in_price,
    best_single_venue,
    bps_worse,
    ideal_sweep,
    plan,
    snapshot_book,
)

__all__ = [
    "ChildReport",
    "Denial",
    "ExecutionManager",
    "ExecutionResult",
    "RouterMetrics",
    "RouterSettings",
    "format_report",
]

log = logging.getLogger(__name__)

FILL_RATIO_BUCKETS = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)
SLIPPAGE_BPS_BUCKETS = (-20.0, -10.0, -5.0, -2.0, -1.0, 0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)

# Outcomes (ExecutionResult.status)
FILLED = "filled"
LIMIT = "limit"  # nothing left to take within the limit price
TIMEOUT = "timeout"
NO_LIQUIDITY = "no_liquidity"  # no routable venue had anything (balances, minimums, empty books)
RISK = "risk_limit"  # no position headroom left
STOPPED = "engine_stopped"
MAX_ROUNDS = "max_rounds"

_AWAITING_BOOK = "awaiting a book update after a short child"
# denials that may pass a moment later (the venue is not left out for them)
_TRANSIENT_DENIALS = frozenset({"order_rate", "order_rate_total", "book_invalid", "price_band"})
_STOP_DENIALS = frozenset({"engine_not_trading", "halted"})


class RouterMetrics:
    """The router's Prometheus metrics on a registry (one instance per registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.parents = Counter("hft_router_parents", "Parent orders routed", registry=registry)
        self.children = Counter(
            "hft_router_children", "Child orders sent (after the pre-trade checks)", ["venue"], registry=registry
        )
        self.fill_ratio = Histogram(
            "hft_router_fill_ratio", "Filled / parent quantity per routed parent",
            buckets=FILL_RATIO_BUCKETS, registry=registry,
        )
        self.slippage_bps = Histogram(
            "hft_router_slippage_bps", "Parent VWAP vs the arrival mid in bp (positive: worse; fees excluded)",
            buckets=SLIPPAGE_BPS_BUCKETS, registry=registry,
        )

    @classmethod
    def of(cls, engine: Engine) -> "RouterMetrics":
        """The engine's router metrics, created on its registry on first use."""
        m = getattr(engine.metrics, "router", None)
        if m is None:
            m = cls(engine.metrics.registry)
            engine.metrics.router = m  # kept with the registry it is registered on
        return m


@dataclass(slots=True)
class RouterSettings:
    """How :class:`ExecutionManager` routes. Penalties are off by default."""

    timeout_s: float = 5.0  # the whole parent, passive residual included
    passive_residual: bool = False
    max_rounds: int = 20
    venues: Sequence[str] | None = None  # default: every venue of the symbol's book, in book order
    latency_penalty_bps_per_ms: float = 0.0  # × measured ack latency × parent urgency
    fill_ratio_penalty_bps: float = 0.0  # × (1 − the venue's measured child fill ratio)
    retry_interval_s: float = 0.005  # nothing routable for now (stale books): look again after this
    cancel_wait_s: float = 2.0  # wait this long for cancels to be confirmed
    fetch_balances: bool = True  # read free balances from the venues at arrival


@dataclass(slots=True)
class ChildReport:
    """One child as sent, and what became of it."""

    venue: str
    round: int
    client_order_id: str
    qty: int
    limit_price: int
    planned_notional: int
    filled_qty: int = 0
    notional: int = 0
    fees: int = 0
    status: str = OrderStatus.PENDING.value
    reason: str = ""
    passive: bool = False
    fills: list[Fill] = field(default_factory=list)


@dataclass(slots=True)
class Denial:
    """A child the pre-trade checks stopped."""

    venue: str
    round: int
    qty: int
    reason: str


@dataclass(slots=True)
class ExecutionResult:
    parent: ParentOrder
    status: str
    rounds: int
    elapsed_s: float
    children: list[ChildReport]
    denials: list[Denial]
    arrival_mid: int | None
    arrival_plan: Plan | None  # the whole parent planned on the arrival snapshot
    best_single: tuple[str, Plan] | None  # (a) on the arrival snapshot, for the quantity compared
    ideal: Sweep | None  # (b) on the arrival snapshot, for the quantity compared
    compared_qty: int  # the filled quantity (the parent's when nothing filled)

    @property
    def filled_qty(self) -> int:
        return sum(c.filled_qty for c in self.children)

    @property
    def notional(self) -> int:
        return sum(c.notional for c in self.children)

    @property
    def fees(self) -> int:
        return sum(c.fees for c in self.children)

    @property
    def fills(self) -> list[Fill]:
        return [f for c in self.children for f in c.fills]

    @property
    def fill_ratio(self) -> float:
        return self.filled_qty / self.parent.qty if self.parent.qty else 0.0

    @property
    def vwap(self) -> int | None:
        q = self.filled_qty
        return self.notional * numbers.SCALE // q if q else None

    @property
    def avg_price(self) -> int | None:
        """All-in average price per unit (fees included)."""
        return all_in_price(self.parent.side, self.filled_qty, self.notional, self.fees)

    @property
    def slippage_bps(self) -> float | None:
        """VWAP against the arrival mid, bp, positive = worse (fees excluded)."""
        v, m = self.vwap, self.arrival_mid
        return None if v is None or not m else bps_worse(self.parent.side, v, m)

    @property
    def all_in_slippage_bps(self) -> float | None:
        """All-in average price against the arrival mid, bp, positive = worse."""
        a, m = self.avg_price, self.arrival_mid
        return None if a is None or not m else bps_worse(self.parent.side, a, m)

    @property
    def vs_single_bps(self) -> float | None:
        """Our all-in average vs the best single venue's at arrival, bp (negative: we did better)."""
        a = self.avg_price
        if a is None or self.best_single is None:
            return None
        ref = self.best_single[1].avg_price
        return None if ref is None else bps_worse(self.parent.side, a, ref)

    @property
    def vs_ideal_bps(self) -> float | None:
        """Our all-in average vs the ideal fee-adjusted sweep at arrival, bp (positive: worse)."""
        a = self.avg_price
        if a is None or self.ideal is None or self.ideal.avg_price is None:
            return None
        return bps_worse(self.parent.side, a, self.ideal.avg_price)

    def per_venue(self) -> dict[str, dict[str, int]]:
        """Per venue: children, quantity sent, filled, notional and fees."""
        out: dict[str, dict[str, int]] = {}
        for c in self.children:
            row = out.setdefault(c.venue, {"children": 0, "sent": 0, "filled": 0, "notional": 0, "fees": 0})
            row["children"] += 1
            row["sent"] += c.qty
            row["filled"] += c.filled_qty
            row["notional"] += c.notional
            row["fees"] += c.fees
        return out


class _Run:
    """State of one execute() call, fed by the engine's order listener."""

    def __init__(self, tag: str, clock_ns: Callable[[], int]) -> None:
        self.tag = tag
        self.clock_ns = clock_ns
        self.live: set[str] = set()
        self.done = asyncio.Event()
        self.reports: dict[str, ChildReport] = {}
        self.first_answer_ms: dict[str, float] = {}
        self.engine_balances = False  # balances come from the engine's view (else: ours, kept by _spend)

    def listener(self, order: Order, fill: Fill | None) -> None:
        if order.tag != self.tag:
            return
        cid = order.client_order_id
        rep = self.reports.get(cid)
        if rep is None:  # an event during submit_order, before the report exists
            rep = self.reports[cid] = ChildReport(order.venue, 0, cid, order.qty, order.price or 0, 0)
        if fill is not None:
            rep.fills.append(fill)
        if cid not in self.first_answer_ms:
            self.first_answer_ms[cid] = (self.clock_ns() - order.created_ns) / 1e6
        _sync(rep, order)
        if order.status.is_done and cid in self.live:
            self.live.discard(cid)
            if not self.live:
                self.done.set()


def _sync(rep: ChildReport, order: Order) -> None:
    rep.filled_qty = order.filled_qty
    rep.notional = order.filled_notional
    rep.fees = order.fees
    rep.status = order.status.value
    if order.reject_reason:
        rep.reason = order.reject_reason


class ExecutionManager:
    """Routes parent orders through an :class:`~hft.engine.Engine` (see the module doc)."""

    def __init__(
        self, engine: Engine, settings: RouterSettings | None = None, *, metrics: RouterMetrics | None = None
    ) -> None:
        self.engine = engine
        self.settings = settings or RouterSettings()
        self.metrics = metrics or RouterMetrics.of(engine)
        # measured per venue over this manager's children: (qty sent, qty filled), ack latency (EWMA, ms)
        self._sent_filled: dict[str, list[int]] = {}
        self._latency_ms: dict[str, float] = {}

    # -- public --------------------------------------------------------------------------------

    async def execute(
        self,
        parent: ParentOrder,
        *,
        timeout_s: float | None = None,
        passive_residual: bool | None = None,
        balances: dict[str, int] | None = None,
        on_round: Callable[[int, list[Order]], None] | None = None,
    ) -> ExecutionResult:
        """Route ``parent`` to completion (see the module doc) and return the report.

        ``balances`` (venue → free quote for a buy, free base for a sell) replaces reading them
        from the venues. ``on_round(round, orders)`` is called right after each round's children
        were handed to the venues (observability, tests).
        """
        s = self.settings
        engine = self.engine
        timeout = s.timeout_s if timeout_s is None else timeout_s
        passive = s.passive_residual if passive_residual is None else passive_residual
        if not parent.id:
            parent = replace(parent, id=engine.next_client_order_id())
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        deadline = loop.time() + timeout
        book = engine.consolidated(parent.symbol)
        names = list(s.venues) if s.venues is not None else list(book.venues)
        unknown = [v for v in names if v not in book.venues]
        if unknown:
            raise ValueError(f"venue(s) {', '.join(unknown)} do not trade {parent.symbol}")
        if parent.qty <= 0:
            raise ValueError("a parent order needs a positive quantity")
        run = _Run(f"router:{parent.id}", engine.clock.mono_ns)
        engine.add_order_listener(run.listener)
        try:
            # 1. arrival
            arrival = snapshot_book(book)
            arrival_mid = arrival.mid()
            if balances is None:
                balances = self._engine_balances(names, parent)
                run.engine_balances = balances is not None  # re-read every round
            if balances is None:
                balances = await self._fetch_balances(names, parent) if s.fetch_balances else {}
            balances = dict(balances)
            arrival_infos = self._venue_infos(parent, names, balances)
            arrival_plan = plan(parent, arrival, arrival_infos, latency_penalty_bps_per_ms=s.latency_penalty_bps_per_ms)
            # 2. rounds
            status, rounds, denials = await self._rounds(parent, names, balances, run, deadline, on_round)
            # 3. passive residual
            left = parent.qty - sum(r.filled_qty for r in run.reports.values())
            if passive and left > 0 and status not in (RISK, STOPPED) and loop.time() < deadline:
                status = await self._passive(parent, names, balances, run, deadline, left, rounds + 1) or status
        except BaseException:
            for cid in list(run.live):
                order = engine.orders.get(cid)
                if order is not None:
                    engine.cancel_order(order)
            raise
        finally:
            engine.remove_order_listener(run.listener)
        # 4. report
        order = {v: i for i, v in enumerate(names)}
        children = sorted(run.reports.values(), key=lambda r: (r.round, order.get(r.venue, 0)))
        filled = sum(c.filled_qty for c in children)
        cmp_qty = filled or parent.qty
        cmp_parent = replace(parent, qty=cmp_qty)
        single = best_single_venue(
            cmp_parent, arrival, arrival_infos, latency_penalty_bps_per_ms=0.0
        )
        ideal = ideal_sweep(arrival, parent.side, cmp_qty, limit_price=parent.limit_price)
        result = ExecutionResult(
            parent, status, rounds, time.monotonic() - started, children, denials, arrival_mid, arrival_plan,
            single, ideal, cmp_qty,
        )
        self._observe(result)
        return result

    # -- rounds ---------------------------------------------------------------------------------

    async def _rounds(
        self,
        parent: ParentOrder,
        names: list[str],
        balances: dict[str, int],
        run: _Run,
        deadline: float,
        on_round: Callable[[int, list[Order]], None] | None,
    ) -> tuple[str, int, list[Denial]]:
        s = self.settings
        engine = self.engine
        loop = asyncio.get_running_loop()
        book = engine.consolidated(parent.symbol)
        excluded: dict[str, str] = {}  # for the rest of the parent
        short: dict[str, int] = {}  # venue -> its book's update count when its short child was sent
        denials: list[Denial] = []
        rounds = 0
        while True:
            filled = sum(r.filled_qty for r in run.reports.values())
            remaining = parent.qty - filled
            if remaining <= 0:
                return FILLED, rounds, denials
            if rounds >= s.max_rounds:
                return MAX_ROUNDS, rounds, denials
            if loop.time() >= deadline:
                return TIMEOUT, rounds, denials
            headroom = self._total_headroom(parent)
            qty = min(remaining, headroom)
            if qty <= 0:
                return RISK, rounds, denials
            waiting = []
            for v, updates in list(short.items()):
                if book.venue_book(v).updates > updates:
                    del short[v]
                else:
                    waiting.append(v)
            if run.engine_balances:
                balances.update(self._engine_balances(names, parent) or {})
            infos = self._venue_infos(parent, names, balances)
            p = plan(
                replace(parent, qty=qty, limit_price=self._band_limit(parent)), book, infos,
                latency_penalty_bps_per_ms=s.latency_penalty_bps_per_ms, exclude=[*excluded, *waiting],
            )
            if not p.children:
                if p.limit_reached:
                    return LIMIT, rounds, denials
                reasons = set(p.skipped.values())
                if waiting or SKIP_INACTIVE in reasons:  # may come back: look again shortly
                    await asyncio.sleep(min(s.retry_interval_s, max(0.0, deadline - loop.time())))
                    continue
                if reasons and reasons <= {SKIP_NO_HEADROOM}:
                    return RISK, rounds, denials
                return NO_LIQUIDITY, rounds, denials
            rounds += 1
            sent: list[Order] = []
            transient = False
            for child in p.children:
                before = dict(engine.risk_denials)
                order = engine.submit_order(
                    child.venue, parent.symbol, parent.side, child.qty, child.limit_price,
                    time_in_force=TimeInForce.IOC, tag=run.tag,
                )
                if order is None:
                    reason = _new_denial(before, engine.risk_denials)
                    denials.append(Denial(child.venue, rounds, child.qty, reason))
                    if reason in _TRANSIENT_DENIALS:
                        transient = True
                    else:
                        excluded[child.venue] = f"denied: {reason}"
                    if reason in _STOP_DENIALS:
                        return STOPPED, rounds, denials
                    continue
                cid = order.client_order_id
                rep = run.reports.get(cid)
                if rep is None:
                    rep = run.reports[cid] = ChildReport(child.venue, rounds, cid, child.qty, child.limit_price, 0)
                rep.round = rounds
                rep.planned_notional = child.notional
                _sync(rep, order)
                self.metrics.children.labels(venue=child.venue).inc()
                if not order.status.is_done:
                    run.live.add(cid)
                sent.append(order)
                short_key = book.venue_book(child.venue).updates
                short[child.venue] = short_key  # dropped below unless the child comes back short
            if on_round is not None:
                on_round(rounds, sent)
            if not sent:
                if transient:
                    await asyncio.sleep(min(s.retry_interval_s, max(0.0, deadline - loop.time())))
                continue
            await self._wait_round(run, deadline)
            for order in sent:
                v = order.venue
                rep = run.reports[order.client_order_id]
                _sync(rep, order)
                self._learn(v, order, run)
                if not run.engine_balances:
                    self._spend(balances, parent.side, v, order)
                if order.status is OrderStatus.REJECTED:
                    excluded[v] = f"rejected: {order.reject_reason}"
                    short.pop(v, None)
                elif order.filled_qty >= order.qty or not order.status.is_done:
                    short.pop(v, None)
            if run.live:  # the deadline passed with children still open (cancels were sent)
                return TIMEOUT, rounds, denials

    async def _wait_round(self, run: _Run, deadline: float) -> None:
        """Until every live child is done; at the deadline cancel them and wait for confirmation."""
        if not run.live:
            return
        loop = asyncio.get_running_loop()
        run.done.clear()
        try:
            await asyncio.wait_for(run.done.wait(), timeout=max(0.0, deadline - loop.time()))
            return
        except asyncio.TimeoutError:
            pass
        for cid in list(run.live):
            order = self.engine.orders.get(cid)
            if order is not None:
                self.engine.cancel_order(order)
        run.done.clear()
        if run.live:
            try:
                await asyncio.wait_for(run.done.wait(), timeout=self.settings.cancel_wait_s)
            except asyncio.TimeoutError:
                log.warning("router: %d child order(s) not confirmed done after cancel", len(run.live))

    # -- passive residual ---------------------------------------------------------------------

    async def _passive(
        self,
        parent: ParentOrder,
        names: list[str],
        balances: dict[str, int],
        run: _Run,
        deadline: float,
        left: int,
        round_no: int,
    ) -> str | None:
        """Post ``left`` post-only on the cheapest-maker venue until filled or the deadline."""
        engine = self.engine
        book = engine.consolidated(parent.symbol)
        buy = parent.side is Side.BUY
        top = book.best_bid() if buy else book.best_ask()
        if top is None:
            return None
        price = top[0]
        if parent.limit_price is not None:
            price = min(price, parent.limit_price) if buy else max(price, parent.limit_price)
        if run.engine_balances:
            balances.update(self._engine_balances(names, parent) or {})
        infos = {i.venue: i for i in self._venue_infos(parent, names, balances)}
        best = None
        for k, v in enumerate(names):
            if not book.is_active(v):
                continue
            inst = engine.instrument(v, parent.symbol)
            info = infos[v]
            px = inst.round_price(price, parent.side)
            vb = book.venue_book(v)
            opposite = vb.best_ask() if buy else vb.best_bid()
            if opposite is not None:  # stay passive on this venue
                px = min(px, opposite[0] - inst.tick_size) if buy else max(px, opposite[0] + inst.tick_size)
            qty = left if info.max_qty is None else min(left, info.max_qty)
            if info.balance is not None:
                if buy:
                    lock = numbers.PPM + max(inst.maker_fee_ppm, inst.taker_fee_ppm, 0)
                    qty = min(qty, info.balance * numbers.SCALE * numbers.PPM // (px * lock))
                else:
                    qty = min(qty, info.balance)
            qty = inst.round_qty(max(qty, 0))
            if qty <= 0 or inst.check_order(px, qty) is not None:
                continue
            key = (inst.maker_fee_ppm, k)
            if best is None or key < best[0]:
                best = (key, v, px, qty)
        if best is None:
            return None
        _, venue, px, qty = best
        before = dict(engine.risk_denials)
        order = engine.submit_order(venue, parent.symbol, parent.side, qty, px, post_only=True, tag=run.tag)
        if order is None:
            log.info("router: passive residual on %s denied: %s", venue, _new_denial(before, engine.risk_denials))
            return None
        cid = order.client_order_id
        rep = run.reports.get(cid)
        if rep is None:
            rep = run.reports[cid] = ChildReport(venue, round_no, cid, qty, px, 0)
        rep.round = round_no
        rep.passive = True
        _sync(rep, order)
        self.metrics.children.labels(venue=venue).inc()
        if not order.status.is_done:
            run.live.add(cid)
        await self._wait_round(run, deadline)
        _sync(rep, order)
        filled = sum(r.filled_qty for r in run.reports.values())
        return FILLED if filled >= parent.qty else TIMEOUT

    # -- constraints ------------------------------------------------------------------------------

    def _venue_infos(self, parent: ParentOrder, names: list[str], balances: dict[str, int]) -> list[VenueInfo]:
        """Per-venue constraints now: headroom from the risk limits, positions and open orders."""
        engine = self.engine
        s = self.settings
        lim = engine.limits
        positions = engine.portfolio(parent.symbol).by_venue
        exposure = engine.exposure
        buy = parent.side is Side.BUY
        out = []
        for v in names:
            inst = engine.instrument(v, parent.symbol)
            pos = positions[v].qty if v in positions else 0
            if buy:
                head = lim.max_position_per_venue - pos - exposure.open_buy.get(v, 0)
            else:
                head = lim.max_position_per_venue + pos - exposure.open_sell.get(v, 0)
            penalty = 0.0
            if s.fill_ratio_penalty_bps:
                sf = self._sent_filled.get(v)
                if sf and sf[0]:
                    penalty = s.fill_ratio_penalty_bps * (1.0 - sf[1] / sf[0])
            # our own resting orders on the side we would take (a market maker's quotes): a
            # taker stops at them (self-trade prevention), so the walk must too
            own = [
                o.price for o in engine.open_orders_of(v).values()
                if o.side is not parent.side and o.price is not None and o.symbol == parent.symbol
            ]
            stop = (min(own) if buy else max(own)) if own else None
            out.append(
                VenueInfo.from_instrument(
                    inst,
                    balance=balances.get(v),
                    max_qty=max(0, min(head, lim.max_order_qty)),
                    max_notional=lim.max_order_notional,
                    penalty_bps=penalty,
                    latency_ms=self._latency_ms.get(v, 0.0),
                    stop_price=stop,
                )
            )
        return out

    def _total_headroom(self, parent: ParentOrder) -> int:
        engine = self.engine
        lim = engine.limits
        total = engine.portfolio(parent.symbol).total.qty
        if parent.side is Side.BUY:
            return lim.max_position_total - total - engine.exposure.total_buy
        return lim.max_position_total + total - engine.exposure.total_sell

    def _band_limit(self, parent: ParentOrder) -> int | None:
        """The parent's limit tightened to the risk engine's price band around the fair (mid) price."""
        limit = parent.limit_price
        band = self.engine.limits.price_band_bps
        fair = self.engine.consolidated(parent.symbol).mid()
        if band is None or not fair or band >= 1e6:
            return limit
        offset = int(fair * band) // 10_000 - 1  # strictly inside: the check denies beyond the band
        if parent.side is Side.BUY:
            edge = fair + offset
            return edge if limit is None else min(limit, edge)
        edge = fair - offset
        return edge if limit is None else max(limit, edge)

    def _engine_balances(self, names: list[str], parent: ParentOrder) -> dict[str, int] | None:
        """Free quote (buy) or base (sell) per venue as the engine's risk view has it: balances at the
        baseline plus our fills since, minus what our open orders hold. ``None`` if it has no view."""
        engine = self.engine
        exposure = engine.exposure
        out = {}
        for v in names:
            available = engine.available(v, parent.symbol)
            if parent.side is Side.BUY:
                if available.quote is None:
                    return None
                out[v] = available.quote - exposure.open_buy_notional.get(v, 0)
            else:
                if available.base is None:
                    return None
                out[v] = available.base - exposure.open_sell.get(v, 0)
        return out

    async def _fetch_balances(self, names: list[str], parent: ParentOrder) -> dict[str, int]:
        """Free quote (buy) or base (sell) per venue; a venue that cannot tell is left unlimited."""
        engine = self.engine
        asset_of = {v: engine.instrument(v, parent.symbol) for v in names}

        async def one(v: str) -> int | None:
            try:
                bal = await engine.adapters[v].fetch_balances()
            except Exception as exc:  # noqa: BLE001 - unknown balance: the venue will say if it is short
                log.warning("router: balances of %s unavailable: %s", v, exc)
                return None
            inst = asset_of[v]
            b = bal.get(inst.quote if parent.side is Side.BUY else inst.base)
            return b.free if b is not None else 0

        got = await asyncio.gather(*(one(v) for v in names))
        return {v: b for v, b in zip(names, got) if b is not None}

    @staticmethod
    def _spend(balances: dict[str, int], side: Side, venue: str, order: Order) -> None:
        if venue not in balances:
            return
        if side is Side.BUY:
            balances[venue] -= order.filled_notional + order.fees
        else:
            balances[venue] -= order.filled_qty

    def _learn(self, venue: str, order: Order, run: _Run) -> None:
        sf = self._sent_filled.setdefault(venue, [0, 0])
        sf[0] += order.qty
        sf[1] += order.filled_qty
        ms = run.first_answer_ms.get(order.client_order_id)
        if ms is not None:
            old = self._latency_ms.get(venue)
            self._latency_ms[venue] = ms if old is None else 0.8 * old + 0.2 * ms

    def _observe(self, result: ExecutionResult) -> None:
        m = self.metrics
        m.parents.inc()
        m.fill_ratio.observe(result.fill_ratio)
        slip = result.slippage_bps
        if slip is not None:
            m.slippage_bps.observe(slip)


def _new_denial(before: dict[str, int], after: dict[str, int]) -> str:
    for reason, n in after.items():
        if n > before.get(reason, 0):
            return reason
    return "denied"


# -- report ---------------------------------------------------------------------------------------


def _px(v: int | None) -> str:
    return "-" if v is None else f"{numbers.to_float(v):,.2f}"


def _q(v: int) -> str:
    return numbers.to_str(v)


def _bps(v: float | None) -> str:
    return "-" if v is None else f"{v:+.2f}"


def format_report(r: ExecutionResult) -> str:
    """The execution report as text: children, per-venue totals, VWAP, fees, slippage, yardsticks."""
    p = r.parent
    side = "BUY" if p.side is Side.BUY else "SELL"
    lim = "" if p.limit_price is None else f" limit {numbers.to_str(p.limit_price)}"
    lines = [
        f"route {p.id}: {side} {_q(p.qty)} {p.symbol}{lim} -> {r.status}, filled {_q(r.filled_qty)}"
        f" ({r.fill_ratio:.1%}) in {r.rounds} round(s), {r.elapsed_s * 1e3:.0f} ms",
        "",
        f"{'round':>5} {'venue':<10} {'kind':<7} {'qty':>12} {'limit':>12} {'filled':>12} {'vwap':>12}"
        f" {'fees':>10} {'status':<17}",
    ]
    for c in r.children:
        vwap = c.notional * numbers.SCALE // c.filled_qty if c.filled_qty else None
        lines.append(
            f"{c.round:>5} {c.venue:<10} {'passive' if c.passive else 'IOC':<7} {_q(c.qty):>12}"
            f" {_px(c.limit_price):>12} {_q(c.filled_qty):>12} {_px(vwap):>12} {numbers.to_float(c.fees):>10.4f}"
            f" {c.status:<17}{(' ' + c.reason) if c.reason else ''}"
        )
    for d in r.denials:
        blank = ""
        lines.append(
            f"{d.round:>5} {d.venue:<10} {'denied':<7} {_q(d.qty):>12} {blank:>12} {blank:>12} {blank:>12}"
            f" {blank:>10} {d.reason}"
        )
    lines.append("")
    lines.append(f"{'venue':<10} {'children':>8} {'sent':>12} {'filled':>12} {'vwap':>12} {'fees':>10}")
    for v, row in r.per_venue().items():
        vwap = row["notional"] * numbers.SCALE // row["filled"] if row["filled"] else None
        lines.append(
            f"{v:<10} {row['children']:>8} {_q(row['sent']):>12} {_q(row['filled']):>12} {_px(vwap):>12}"
            f" {numbers.to_float(row['fees']):>10.4f}"
        )
    lines.append("")
    lines.append(f"arrival mid        {_px(r.arrival_mid)}")
    lines.append(f"VWAP               {_px(r.vwap)}   slippage vs arrival mid {_bps(r.slippage_bps)} bp")
    lines.append(f"fees               {numbers.to_float(r.fees):,.4f}")
    lines.append(f"all-in avg price   {_px(r.avg_price)}   vs arrival mid {_bps(r.all_in_slippage_bps)} bp")
    lines.append("")
    lines.append(
        f"yardsticks on the arrival book, for {_q(r.compared_qty)} (all-in avg; bp: ours vs it, + = we did worse)"
    )
    if r.best_single is not None:
        v, sp = r.best_single
        note = "" if sp.qty >= r.compared_qty else f" (fills only {_q(sp.qty)})"
        lines.append(f"  (a) best single venue {v:<10} {_px(sp.avg_price):>12}   {_bps(r.vs_single_bps)} bp{note}")
    else:
        lines.append("  (a) best single venue: none could fill")
    if r.ideal is not None and r.ideal.qty:
        note = "" if r.ideal.qty >= r.compared_qty else f" (book holds only {_q(r.ideal.qty)})"
        ideal = _px(r.ideal.avg_price)
        lines.append(f"  (b) ideal fee-adjusted sweep     {ideal:>12}   {_bps(r.vs_ideal_bps)} bp{note}")
    if r.arrival_plan is not None and r.arrival_plan.qty:
        split = ", ".join(f"{c.venue} {_q(c.qty)}" for c in r.arrival_plan.children)
        lines.append(f"  router first plan (arrival)      {_px(r.arrival_plan.avg_price):>12}   [{split}]")
    return "\n".join(lines)
