"""The engine: one asyncio loop, one direction.

``adapters → books → strategy → pre-trade checks → adapters``. Adapters call
:meth:`Engine.on_event` directly (no queue hop); order commands go straight to
the adapter after the checks. The engine owns every task it starts.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable

from hft import ids, numbers
from hft.book import ConsolidatedBook, VenueBook
from hft.clock import Clock
from hft.events import (
    BookDelta,
    BookSnapshot,
    CancelRejected,
    MessageDropped,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    TradeTick,
    VenueStatus,
)
from hft.journal import Journal, JournalError, JournalRecorder
from hft.metrics import Metrics, VenueMetrics
from hft.model import Fill, Instrument, Order, OrderStatus, OrderType, Side, TimeInForce
from hft.portfolio import Portfolio, Position
from hft.recovery import RecoveryError, reconcile_venue, restore_from_journal
from hft.registry import Registry
from hft.risk import Available, Exposure, RiskEngine, RiskLimits, TradingState
from hft.strategy import Strategy
from hft.secrets import redact
from hft.tasks import OwnedTasks
from hft.venue import VenueAdapter

log = logging.getLogger(__name__)
_TASK_STOP_S = 5.0  # a task or adapter that takes longer to stop is logged and left behind

_SEEN_FILLS_KEPT = 200_000
_DONE_ORDERS_KEPT = 100_000
_UNKNOWN_BALANCE = Available()


@dataclass(slots=True)
class VenueStats:
    orders: int = 0
    fills: int = 0
    rejects: int = 0
    cancels: int = 0
    volume: int = 0  # base
    notional: int = 0  # quote
    gaps: int = 0
    resyncs: int = 0
    dropped: int = 0
    book_updates: int = 0
    duplicate_fills: int = 0
    reconciles: int = 0  # after a reconnect that may have lost order events


@dataclass(slots=True)
class Summary:
    """What a run did; printed at the end and returned to callers and tests."""

    duration_s: float
    venues: dict[str, VenueStats]
    positions: dict[str, int]
    position_total: int
    realized: int
    unrealized: int
    fees: int
    net_pnl: int
    open_orders_left: dict[str, int]
    risk_denials: dict[str, int]
    max_abs_position_venue: dict[str, int] = field(default_factory=dict)
    max_abs_position_total: int = 0
    duplicate_fills: int = 0
    journal_error: str = ""  # the journal could not commit everything at close (the run exits 1)


class Engine:
    """Wires venues, books, strategy, risk, portfolio and metrics for one symbol set."""

    def __init__(
        self,
        config: Any,
        *,
        venue_registry: Registry,
        strategy_registry: Registry,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
        status_printer: Callable[[str], None] | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or Clock()
        self.metrics = metrics or Metrics()
        self._venue_registry = venue_registry
        self._strategy_registry = strategy_registry
        self._print_status = status_printer
        lim = config.risk
        self.limits = RiskLimits(
            max_order_qty=lim.max_order_qty,
            max_order_notional=lim.max_order_notional,
            max_position_per_venue=lim.max_position_per_venue,
            max_position_total=lim.max_position_total,
            max_orders_per_second=float(lim.max_orders_per_second),
            max_orders_per_second_total=float(lim.max_orders_per_second_total or 1e9),
            price_band_bps=lim.price_band_bps,
        )
        self.risk = RiskEngine(self.limits)
        self._peak_pnl = 0
        # venue -> asset -> balance before our first journaled trade; positions and cash flows add to it
        self.baselines: dict[str, dict[str, int]] = {}
        self._started_wall_ns = 0
        self._last_reconcile_wall_ns: dict[str, int] = {}
        self.exposure = Exposure()
        self.adapters: dict[str, VenueAdapter] = {}
        self.books: dict[str, ConsolidatedBook] = {}
        self.portfolios: dict[str, Portfolio] = {}
        self.orders: dict[str, Order] = {}
        self._done_order_ids: deque[str] = deque()  # oldest first; see _retire
        self.open_orders: dict[str, dict[str, Order]] = {}
        self.stats: dict[str, VenueStats] = {}
        self.risk_denials: dict[str, int] = {}
        self.strategy: Strategy | None = None
        self._vm: dict[str, VenueMetrics] = {}
        self._seen_fills: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._tick_recv_ns = 0  # receipt time of the market event being handled, 0 outside one
        self._tasks = OwnedTasks("engine")
        self._gc_disabled = False
        self._order_listeners: list[Callable[[Order, Fill | None], None]] = []
        self._resyncing: set[tuple[str, str]] = set()
        self._accepting_orders = False
        self.stop_requested = asyncio.Event()  # set by request_stop(); the runner then stops the run
        self._cid_counter = itertools.count(1)
        # Client order ids are decided before an order leaves (hft.ids): ``<prefix><n>``. The prefix
        # (unique per run) is journaled with the session, so a restart recognises its orders on a venue.
        self.cid_prefix = ids.session_prefix(time.time())
        self.journal = journal
        if journal is not None:
            self.add_order_listener(JournalRecorder(journal))
        self._started_ns = 0
        self._max_abs_venue: dict[str, int] = {}
        self._max_abs_total = 0
        self._handlers: dict[type, Callable[[Any], None]] = {
            BookDelta: self._on_book_delta,
            BookSnapshot: self._on_book_snapshot,
            TradeTick: self._on_trade,
            OrderAccepted: self._on_accepted,
            OrderRejected: self._on_rejected,
            OrderCanceled: self._on_canceled,
            OrderFilled: self._on_filled,
            CancelRejected: self._on_cancel_rejected,
            VenueStatus: self._on_venue_status,
            MessageDropped: self._on_message_dropped,
        }

    # ------------------------------------------------------------------ set-up
    def build(self, *, with_strategy: bool = True) -> None:
        """Create adapters, books and (unless told not to) the strategy from the config (no I/O)."""
        cfg = self.config
        seed = cfg.engine.seed
        for i, vc in enumerate(cfg.venues):
            cls = self._venue_registry.resolve(vc.type)
            adapter = cls(
                vc.name,
                list(vc.symbols),
                vc.options,
                self.on_event,
                self.clock,
                api_key=vc.api_key.reveal() if vc.api_key else None,
                api_secret=vc.api_secret.reveal() if vc.api_secret else None,
                seed=None if seed is None else seed * 1000 + i,
            )
            self.adapters[vc.name] = adapter
            self.open_orders[vc.name] = {}
            self.stats[vc.name] = VenueStats()
            self._vm[vc.name] = self.metrics.venue(vc.name)
            self._max_abs_venue[vc.name] = 0
            for symbol in vc.symbols:
                if symbol not in self.books:
                    stale_ns = int(cfg.engine.stale_book_after_s * 1e9)
                    self.books[symbol] = ConsolidatedBook(symbol, max_age_ns=stale_ns)
                    self.portfolios[symbol] = Portfolio([])
                self.portfolios[symbol].by_venue.setdefault(vc.name, Position())
        self.metrics.count_from(self.stats)
        if not with_strategy:
            return
        sc = cfg.strategy
        strategy_cls = self._strategy_registry.resolve(sc.type)
        venues = list(sc.venues) if sc.venues else [v.name for v in cfg.venues]
        self.strategy = strategy_cls(self, sc.symbol, venues, sc.params)

    async def start(self) -> None:
        """Connect every venue, load instruments, subscribe books, start the strategy."""
        if not self.adapters:
            self.build()
        self._started_ns = self.clock.mono_ns()
        self._started_wall_ns = self.clock.now_ns()
        await asyncio.gather(*(a.connect() for a in self.adapters.values()))
        shutdown_s = self.config.engine.shutdown_timeout_s
        for name, adapter in self.adapters.items():
            horizon = adapter.unknown_outcome_horizon_s()
            if horizon > shutdown_s:
                log.warning(
                    "venue %s: a submit whose answer is lost can take up to %.1fs to resolve, longer than "
                    "engine.shutdown_timeout_s (%.1fs): one lost just before a stop would be reported as possibly "
                    "open", name, horizon, shutdown_s,
                )
        await self._restore_and_reconcile()
        for name, adapter in self.adapters.items():
            self._vm[name].venue_up.set(1)
            for symbol in adapter.symbols:
                self._resyncing.add((name, symbol))  # no book until its first snapshot
                inst = adapter.instruments[symbol]
                self.books[symbol].add_venue(name, inst.taker_fee_ppm)
                self._vm[name].book_valid.set(0)
        await asyncio.gather(*(a.subscribe_books() for a in self.adapters.values()))
        self._accepting_orders = True
        if self.strategy is not None:
            self.strategy.on_start()
        if self.config.engine.manual_gc:
            # Collections pause the loop for tens of µs at random: run them on the timer instead, and keep
            # the long-lived start-up objects out of every later scan.
            gc.collect()
            gc.freeze()
            gc.disable()
            self._gc_disabled = True
        self.spawn(self._timer_loop(), "timer")

    async def _restore_and_reconcile(self) -> None:
        """Baselines, journal replay and reconciliation with every venue; refuses to trade on a mismatch."""
        held = await asyncio.gather(*(a.fetch_balances() for a in self.adapters.values()))
        persistent = [n for n, a in self.adapters.items() if a.capabilities.persistent]
        for name, balances in zip(self.adapters, held):
            totals = {asset: b.total for asset, b in balances.items()}
            journaled = self.journal is not None and name in persistent
            self.baselines[name] = self.journal.record_baseline(name, totals) if journaled else totals
        if self.journal is None or not persistent:
            return
        previous = [s for s in self.journal.sessions() if s.session_id != self.journal.session_id]
        if not previous:
            return
        # Reconcile from the oldest of the sessions since the last clean shutdown: any of them may
        # have left fills the journal never saw (a kill, a crash, a start that refused to trade).
        unclean = []
        for session in reversed(previous):
            if session.ended_ns is not None:
                break
            unclean.append(session)
        since = (unclean[-1] if unclean else previous[-1]).started_ns
        replayed = restore_from_journal(self, persistent)
        self._peak_pnl = sum(p.net_pnl() for p in self.portfolios.values())  # drawdown counts from here
        reports = await asyncio.gather(*(reconcile_venue(self, v, since_ns=since) for v in persistent))
        self._last_reconcile_wall_ns = dict.fromkeys(persistent, self.clock.now_ns())
        log.info("recovered from the journal: %d fills replayed; %s", replayed, "; ".join(r.summary() for r in reports))
        problems = [p for r in reports for p in r.problems]
        if problems:
            raise RecoveryError("positions do not reconcile, refusing to trade: " + "; ".join(problems))

    async def _reconcile_after_reconnect(self, venue: str) -> None:
        self.stats[venue].reconciles += 1
        since = self._last_reconcile_wall_ns.get(venue) or self._started_wall_ns
        started = self.clock.now_ns()
        report = await reconcile_venue(self, venue, since_ns=since)
        if report.problems:
            log.error("venue %s does not reconcile after reconnect: %s", venue, "; ".join(report.problems))
            await self.halt("reconciliation")
            return
        self._last_reconcile_wall_ns[venue] = started

    # -- used by recovery -----------------------------------------------------------
    def remember_fill(self, venue: str, symbol: str, trade_id: str) -> None:
        """Count a fill as seen (journal replay), so the venue sending it again changes nothing."""
        self._seen_fills[(venue, symbol, trade_id)] = None

    def has_fill(self, venue: str, symbol: str, trade_id: str) -> bool:
        return (venue, symbol, trade_id) in self._seen_fills

    def manage(self, order: Order) -> None:
        """Take an order that exists on its venue (recovered or adopted) under management."""
        if order.client_order_id in self.orders and not self.orders[order.client_order_id].status.is_done:
            return
        order.risk_price = order.price or 0
        order.created_ns = order.updated_ns = self.clock.mono_ns()
        self.orders[order.client_order_id] = order
        self.open_orders[order.venue][order.client_order_id] = order
        self.exposure.add(order.venue, order.side, order.qty - order.filled_qty, order.risk_price)
        self.adapters[order.venue].adopt(order)
        if self.journal is not None:
            self.journal.record_order(order, "adopted" if order.tag == "adopted" else "recovered")

    def close_gone(self, order: Order) -> None:
        """The venue no longer has this order and no further fill of it exists: it was canceled."""
        order.reject_reason = "gone from the venue at reconciliation"
        self._finish(order, OrderStatus.FILLED if order.filled_qty >= order.qty else OrderStatus.CANCELED,
                     self.clock.mono_ns())

    async def wait_for_books(self, timeout: float = 10.0) -> None:
        """Wait until every venue's book has had its first snapshot (raises ``TimeoutError``)."""
        async with asyncio.timeout(timeout):
            while self._resyncing:
                await asyncio.sleep(0.005)

    def spawn(self, coro: Any, name: str) -> asyncio.Task:
        """Start a task the engine owns: kept until done, cancelled and awaited by ``stop()``."""
        return self._tasks.spawn(coro, name)

    # ------------------------------------------------------- trading API (ctx)
    def instrument(self, venue: str, symbol: str) -> Instrument:
        return self.adapters[venue].instruments[symbol]

    def consolidated(self, symbol: str) -> ConsolidatedBook:
        return self.books[symbol]

    def venue_book(self, venue: str, symbol: str) -> VenueBook:
        return self.books[symbol].venue_book(venue)

    def portfolio(self, symbol: str) -> Portfolio:
        return self.portfolios[symbol]

    def open_orders_of(self, venue: str) -> dict[str, Order]:
        """Our open orders on a venue by client order id (read-only view)."""
        return self.open_orders[venue]

    def available(self, venue: str, symbol: str) -> Available:
        """What the venue account holds for ``symbol`` by our books: baseline plus our fills' flows.

        Open orders' holds are not subtracted (the risk check does that with the exposure).
        """
        baseline = self.baselines.get(venue)
        if not baseline:
            return _UNKNOWN_BALANCE
        inst = self.adapters[venue].instruments[symbol]
        position = self.portfolios[symbol].by_venue[venue]
        return Available(baseline.get(inst.quote, 0) + position.cash, baseline.get(inst.base, 0) + position.holdings)

    def next_client_order_id(self) -> str:
        return f"{self.cid_prefix}{next(self._cid_counter)}"

    def submit_order(
        self,
        venue: str,
        symbol: str,
        side: Side,
        qty: int,
        price: int | None = None,
        *,
        order_type: OrderType = OrderType.LIMIT,
        time_in_force: TimeInForce = TimeInForce.GTC,
        post_only: bool = False,
        tag: str = "",
    ) -> Order | None:
        """Check and send an order. Returns it, or ``None`` if a pre-trade check denied it."""
        # Few calls here: when the last order was a while ago, each one costs µs (bench/bench_engine.py).
        now = self.clock.mono_ns()
        order = Order(
            f"{self.cid_prefix}{next(self._cid_counter)}", venue, symbol, side, qty, price, order_type,
            time_in_force, post_only, created_ns=now, updated_ns=now, tag=tag,
        )
        if not self._accepting_orders:
            self._deny(order, "engine_not_trading")
            return None
        portfolio = self.portfolios[symbol]
        position = portfolio.by_venue[venue]
        book = self.books[symbol]
        bid, ask = book.bid, book.ask
        fair = (bid[0] + ask[0]) // 2 if bid is not None and ask is not None else 0  # book.mid()
        baseline = self.baselines.get(venue)
        if baseline:  # self.available(venue, symbol)
            inst = self.adapters[venue].instruments[symbol]
            available = Available(
                baseline.get(inst.quote, 0) + position.cash, baseline.get(inst.base, 0) + position.holdings
            )
        else:
            available = _UNKNOWN_BALANCE
        reason = self.risk.check(
            order, fair=fair, venue_position=position.qty, total_position=portfolio.total.qty,
            exposure=self.exposure, book_active=book.is_active(venue), available=available, now_ns=now,
        )
        if reason is not None:
            self._deny(order, reason)
            return None
        order.risk_price = price if price is not None else fair
        journal = self.journal
        if journal is not None:  # an order we could not record must not leave
            if journal.behind:
                self._deny(order, "journal_down")
                return None
            try:
                journal.record_intent(order)
            except JournalError:
                self._deny(order, "journal_down")
                return None
        self.orders[order.client_order_id] = order
        self.open_orders[venue][order.client_order_id] = order
        self.exposure.add(venue, side, qty, order.risk_price)
        self.stats[venue].orders += 1
        if self._tick_recv_ns:
            self.metrics.tick_to_order.observe_ns(self.clock.mono_ns() - self._tick_recv_ns)
        self.adapters[venue].submit(order)
        return order

    def cancel_order(self, order: Order) -> bool:
        """Ask the venue to cancel; returns False if the order is done or a cancel is already out."""
        if order.status.is_done or order.cancel_requested_ns:
            return False
        order.cancel_requested_ns = self.clock.mono_ns()
        self.stats[order.venue].cancels += 1
        self.adapters[order.venue].cancel(order)
        if self.journal is not None:
            try:
                self.journal.record_order(order, "cancel_requested")
            except JournalError:  # the cancel is out either way
                log.error("journal down: cancel of %s not recorded", order.client_order_id)
        return True

    def reduce_only(self, reason: str) -> None:
        """Enter REDUCING: from now on only orders that bring positions toward zero pass."""
        if self.risk.set_state(TradingState.REDUCING, reason):
            log.warning("trading state REDUCING: %s", reason)
            self.metrics.trading_state.set(1)

    async def halt(self, reason: str) -> dict[str, int]:
        """Kill switch: enter HALTED, cancel everything on every venue, confirm. Returns orders left per venue."""
        if self.risk.state is not TradingState.HALTED:
            self.risk.set_state(TradingState.HALTED, reason)
            self.metrics.trading_state.set(2)
            self.metrics.kill_switch.labels(reason=reason).inc()
            log.error("KILL SWITCH (%s): halting, cancelling everything on every venue", reason)
        left = await self._cancel_everything(self.config.engine.shutdown_timeout_s)
        log.error("halted: orders left open per venue %s", left)
        return left

    def request_stop(self) -> None:
        """Ask the runner to end the run as Ctrl-C does: cancel everything, confirm, summarise."""
        self.stop_requested.set()

    def request_halt(self, reason: str) -> None:
        """Trigger the kill switch from synchronous code (signal handler, timer); the work runs as a task."""
        if self.risk.state is not TradingState.HALTED:
            self.spawn(self.halt(reason), "halt")

    def _deny(self, order: Order, reason: str) -> None:
        self.risk_denials[reason] = self.risk_denials.get(reason, 0) + 1
        self.metrics.risk_denials.labels(venue=order.venue, reason=reason).inc()
        log.debug("denied %s %s %s: %s", order.venue, order.side.name, numbers.to_str(order.qty), reason)

    # ------------------------------------------------------------------ events
    def on_event(self, event: Any) -> None:
        """The adapters' sink. Never raises: a failing handler is logged and counted."""
        try:
            self._handlers[type(event)](event)
        except Exception:  # noqa: BLE001 - the loop must survive a bad event or strategy bug
            log.exception("error handling %s", type(event).__name__)

    def _on_book_delta(self, ev: BookDelta) -> None:
        book = self.books.get(ev.symbol)
        if book is None:
            return
        self.stats[ev.venue].book_updates += 1
        if not book.apply_delta(ev.venue, ev.first_seq, ev.last_seq, ev.bids, ev.asks, ev.ts_recv):
            if (ev.venue, ev.symbol) in self._resyncing:
                return  # the book is waiting for its snapshot
            self._on_gap(ev.venue, ev.symbol)  # then tell the strategy: the venue is out
        self._after_book(ev.venue, ev.symbol, ev.ts_recv)

    def _on_book_snapshot(self, ev: BookSnapshot) -> None:
        book = self.books.get(ev.symbol)
        if book is None:
            return
        self.stats[ev.venue].book_updates += 1
        book.apply_snapshot(ev.venue, ev.bids, ev.asks, ev.seq, ev.ts_recv)
        self._resyncing.discard((ev.venue, ev.symbol))
        self._vm[ev.venue].book_valid.set(1)
        self._after_book(ev.venue, ev.symbol, ev.ts_recv)

    def _after_book(self, venue: str, symbol: str, ts_recv: int) -> None:
        strategy = self.strategy
        if (
            strategy is not None and self._accepting_orders and symbol == strategy.symbol
            and self.risk.state is not TradingState.HALTED
        ):
            self._tick_recv_ns = ts_recv
            try:
                strategy.on_book(venue, symbol)
            finally:
                self._tick_recv_ns = 0

    def _on_gap(self, venue: str, symbol: str) -> None:
        self.stats[venue].gaps += 1
        self._vm[venue].book_valid.set(0)
        self._resyncing.add((venue, symbol))
        self.stats[venue].resyncs += 1
        log.warning("venue %s: %s book gap, resyncing", venue, symbol)
        self.spawn(self.adapters[venue].resync_book(symbol), f"resync:{venue}:{symbol}")

    def _on_trade(self, ev: TradeTick) -> None:
        if self.strategy is not None and self._accepting_orders:
            self.strategy.on_trade(ev)

    def _order_for(self, venue: str, client_order_id: str) -> Order | None:
        order = self.orders.get(client_order_id)
        if order is None or order.venue != venue:
            log.warning("venue %s: event for unknown order %s", venue, client_order_id)
            return None
        return order

    def _on_accepted(self, ev: OrderAccepted) -> None:
        order = self._order_for(ev.venue, ev.client_order_id)
        if order is None:
            return
        order.venue_order_id = ev.venue_order_id
        if order.status is OrderStatus.PENDING:
            order.status = OrderStatus.OPEN
            self._vm[ev.venue].order_ack.observe((ev.ts_recv - order.created_ns) * 1e-9)
        order.updated_ns = ev.ts_recv
        self._notify(order, None)

    def _on_rejected(self, ev: OrderRejected) -> None:
        order = self._order_for(ev.venue, ev.client_order_id)
        if order is None or order.status.is_done:
            return
        if order.status is OrderStatus.PENDING:
            self._vm[ev.venue].order_ack.observe((ev.ts_recv - order.created_ns) * 1e-9)
        order.reject_reason = ev.reason
        self.stats[ev.venue].rejects += 1
        log.info("venue %s rejected %s: %s", ev.venue, ev.client_order_id, ev.reason)
        self._finish(order, OrderStatus.REJECTED, ev.ts_recv)

    def _on_canceled(self, ev: OrderCanceled) -> None:
        order = self._order_for(ev.venue, ev.client_order_id)
        if order is None or order.status.is_done:
            return
        self._finish(order, OrderStatus.EXPIRED if ev.expired else OrderStatus.CANCELED, ev.ts_recv)

    def _on_cancel_rejected(self, ev: CancelRejected) -> None:
        order = self._order_for(ev.venue, ev.client_order_id)
        if order is not None:
            order.cancel_requested_ns = 0  # allow another attempt; the order's state comes from its own events
            log.info("venue %s refused to cancel %s: %s", ev.venue, ev.client_order_id, ev.reason)

    def _finish(self, order: Order, status: OrderStatus, ts: int) -> None:
        remaining = order.qty - order.filled_qty
        if remaining:
            self.exposure.add(order.venue, order.side, -remaining, order.risk_price)
        order.status = status
        order.updated_ns = ts
        self.open_orders[order.venue].pop(order.client_order_id, None)
        self._retire(order)
        self._notify(order, None)

    def _retire(self, order: Order) -> None:
        """A done order stays in :attr:`orders` for late events until ``_DONE_ORDERS_KEPT`` newer ones
        have finished (over an hour of quoting), then is forgotten: the journal keeps it."""
        done = self._done_order_ids
        done.append(order.client_order_id)
        if len(done) > _DONE_ORDERS_KEPT:
            old = self.orders.get(done.popleft())
            if old is not None and old.status.is_done:
                del self.orders[old.client_order_id]

    def _on_filled(self, ev: OrderFilled) -> None:
        fill = ev.fill
        key = (fill.venue, fill.symbol, fill.trade_id)  # venues number trades per symbol
        if key in self._seen_fills:
            self.stats[fill.venue].duplicate_fills += 1
            return
        order = self._order_for(fill.venue, fill.client_order_id)
        if order is None:
            return
        seen = self._seen_fills
        seen[key] = None
        if len(seen) > _SEEN_FILLS_KEPT:
            seen.popitem(last=False)
        if order.status is OrderStatus.PENDING:
            self._vm[fill.venue].order_ack.observe((fill.ts_recv - order.created_ns) * 1e-9)
        qty = min(fill.qty, order.qty - order.filled_qty)
        order.filled_qty += fill.qty
        order.filled_notional += numbers.mul(fill.price, fill.qty)
        order.fees += fill.fee
        if not order.status.is_done:
            self.exposure.add(order.venue, order.side, -qty, order.risk_price)
        if ev.cumulative_qty > order.filled_qty:
            log.warning("venue %s: %s filled %s by the venue's count, %s by ours: fills missing",
                        fill.venue, order.client_order_id, numbers.to_str(ev.cumulative_qty),
                        numbers.to_str(order.filled_qty))
        portfolio = self.portfolios[fill.symbol]
        portfolio.on_fill(fill)
        st = self.stats[fill.venue]
        st.fills += 1
        st.volume += fill.qty
        st.notional += numbers.mul(fill.price, fill.qty)
        pos_v = abs(portfolio.by_venue[fill.venue].qty)
        if pos_v > self._max_abs_venue[fill.venue]:
            self._max_abs_venue[fill.venue] = pos_v
        pos_t = abs(portfolio.total.qty)
        if pos_t > self._max_abs_total:
            self._max_abs_total = pos_t
        if not order.status.is_done:
            if order.filled_qty >= order.qty:
                order.status = OrderStatus.FILLED
                order.updated_ns = fill.ts_recv
                self.open_orders[order.venue].pop(order.client_order_id, None)
                self._retire(order)
            else:  # an IOC remainder that expires arrives as its own OrderCanceled(expired)
                order.status = OrderStatus.PARTIALLY_FILLED
        self._notify(order, fill)

    def add_order_listener(self, listener: Callable[[Order, Fill | None], None]) -> None:
        """Also tell ``listener(order, fill_or_None)`` of every order change (router, journal, tests)."""
        self._order_listeners.append(listener)

    def remove_order_listener(self, listener: Callable[[Order, Fill | None], None]) -> None:
        self._order_listeners.remove(listener)

    def _notify(self, order: Order, fill: Fill | None) -> None:
        strategy = self.strategy
        if strategy is not None and self._accepting_orders:
            if fill is None:
                strategy.on_order_update(order)
            else:
                strategy.on_fill(fill, order)
        for listener in self._order_listeners:
            listener(order, fill)

    def _on_venue_status(self, ev: VenueStatus) -> None:
        vm = self._vm[ev.venue]
        vm.venue_up.set(1 if ev.connected else 0)
        if ev.connected and ev.reconcile and self._accepting_orders:
            log.info("venue %s reconnected: reconciling", ev.venue)
            self.spawn(self._reconcile_after_reconnect(ev.venue), f"reconcile:{ev.venue}")
        if not ev.connected:
            log.warning("venue %s disconnected: %s", ev.venue, ev.reason)
            for symbol, book in self.books.items():
                if ev.venue in book.venues:
                    book.invalidate(ev.venue, ev.reason)
                    self._resyncing.add((ev.venue, symbol))  # the adapter sends a snapshot on reconnect
            vm.book_valid.set(0)

    def _on_message_dropped(self, ev: MessageDropped) -> None:
        self.stats[ev.venue].dropped += 1
        log.warning("venue %s: dropped malformed message: %s", ev.venue, ev.reason)

    # ---------------------------------------------------------- housekeeping
    async def _timer_loop(self) -> None:
        interval = self.config.engine.status_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                self._on_timer()
            except Exception:  # noqa: BLE001 - housekeeping must keep running
                log.exception("timer failed")

    def _on_timer(self) -> None:
        """Periodic housekeeping: stale books out, gauges, the strategy's timer, the status."""
        if self._gc_disabled:
            gc.collect(1)
        now = self.clock.mono_ns()
        for book in self.books.values():
            for venue in book.expire_stale(now):
                log.warning("venue %s: %s book stale, left out of the consolidated book", venue, book.symbol)
                self._vm[venue].book_valid.set(0)
                self._watchdog(venue, book.symbol)
        self.refresh_gauges()
        self._check_drawdown()
        self._journal_positions()
        if self.strategy is not None and self._accepting_orders:
            self.strategy.on_timer(now)
        if self._print_status is not None:
            self._print_status(self.status_text())

    def _watchdog(self, venue: str, symbol: str) -> None:
        """Dead man's switch for a venue whose stream went silent: our quotes there are blind, pull them.

        A venue that cancels on disconnect by itself needs no help once its connection is really gone;
        silence on a live connection is still ours to handle, so this runs for every venue.
        """
        if self.open_orders[venue]:
            log.warning("venue %s: %s stream silent, cancelling our orders there", venue, symbol)
            self.metrics.watchdog_cancels.labels(venue=venue).inc()
            self.spawn(self.adapters[venue].cancel_all(symbol), f"watchdog:{venue}")

    def _journal_positions(self) -> None:
        if self.journal is None:
            return
        self.metrics.journal_healthy.set(1 if self.journal.healthy else 0)
        self.metrics.journal_backlog.set(self.journal.backlog)
        try:
            for symbol, portfolio in self.portfolios.items():
                self.journal.record_portfolio(symbol, portfolio)
        except JournalError as exc:
            log.error("journal down: %s; no new orders until it is back", exc)

    def _check_drawdown(self) -> None:
        net = sum(p.net_pnl() for p in self.portfolios.values())
        self._peak_pnl = max(self._peak_pnl, net)
        drawdown = self._peak_pnl - net
        lim = self.config.risk
        if lim.max_drawdown is not None and drawdown >= lim.max_drawdown:
            self.request_halt("max_drawdown")
        elif lim.reduce_only_drawdown is not None and drawdown >= lim.reduce_only_drawdown:
            self.reduce_only("reduce_only_drawdown")

    def refresh_gauges(self) -> None:
        """Marks portfolios to the consolidated mid and exports positions and P&L."""
        m = self.metrics
        realized = unrealized = fees = 0
        for symbol, portfolio in self.portfolios.items():
            mid = self.books[symbol].mid()
            if mid:
                portfolio.mark = mid
            realized += portfolio.realized()
            unrealized += portfolio.unrealized()
            fees += portfolio.fees()
            for venue, pos in portfolio.by_venue.items():
                self._vm[venue].position.set(numbers.to_float(pos.qty))
            m.position.labels(venue="total").set(numbers.to_float(portfolio.total.qty))
        for venue, orders in self.open_orders.items():
            self._vm[venue].open_orders.set(len(orders))
        for symbol, book in self.books.items():
            for venue in book.venues:
                m.book_checksum.labels(venue=venue, symbol=symbol).set(book.venue_book(venue).checksum())
        m.pnl_realized.set(numbers.to_float(realized))
        m.pnl_unrealized.set(numbers.to_float(unrealized))
        m.fees.set(numbers.to_float(fees))
        m.pnl_net.set(numbers.to_float(realized + unrealized - fees))

    def status_text(self) -> str:
        """A compact multi-line live status."""
        lines = []
        elapsed = (self.clock.mono_ns() - self._started_ns) / 1e9
        for symbol, book in self.books.items():
            bb, ba = book.best_bid(), book.best_ask()
            top = (
                f"{numbers.to_str(bb[0])} / {numbers.to_str(ba[0])}"
                if bb and ba else "no two-sided book"
            )
            p = self.portfolios[symbol]
            lines.append(
                f"[{elapsed:7.1f}s] {symbol} consolidated {top} | pos {numbers.to_str(p.total.qty)}"
                f" | pnl {_money(p.net_pnl())} (fees {_money(p.fees())})"
            )
        for venue, adapter in self.adapters.items():
            st = self.stats[venue]
            valid = all(self.books[s].is_active(venue) for s in adapter.symbols)
            quotes = " ".join(
                f"{'B' if o.side is Side.BUY else 'S'}{numbers.to_str(o.price or 0)}"
                for o in sorted(self.open_orders[venue].values(), key=lambda o: -(o.price or 0))
            )
            pos = sum(self.portfolios[s].by_venue[venue].qty for s in adapter.symbols)
            lines.append(
                f"  {venue:<8} {'up' if adapter.connected and valid else 'DOWN':<4} pos {numbers.to_str(pos):>8}"
                f" fills {st.fills:>5} orders {st.orders:>6} | {quotes}"
            )
        if self.strategy is not None:
            extra = self.strategy.status_line()
            if extra:
                lines.append("  " + extra)
        return "\n".join(lines)

    # ---------------------------------------------------------------- shutdown
    async def stop(self) -> Summary:
        """Stop trading, cancel every resting order, confirm none remain, close venues."""
        self._accepting_orders = False
        if self._gc_disabled:
            gc.enable()
            gc.unfreeze()
            self._gc_disabled = False
        if self.strategy is not None:
            try:
                self.strategy.on_stop()
            except Exception:  # noqa: BLE001
                log.exception("strategy on_stop failed")
        timeout = self.config.engine.shutdown_timeout_s
        await self._tasks.cancel_all(_TASK_STOP_S)
        left = await self._cancel_everything(timeout)
        self.refresh_gauges()
        self._journal_positions()
        await self._close_adapters(_TASK_STOP_S)
        for vm in self._vm.values():
            vm.venue_up.set(0)
        return self.summary(left)

    async def _close_adapters(self, timeout: float) -> None:
        async def close(name: str, adapter: VenueAdapter) -> None:
            try:
                async with asyncio.timeout(timeout):
                    await adapter.close()
            except Exception as exc:  # noqa: BLE001 - one venue's close must not keep the others open
                log.warning("venue %s: close failed: %s", name, redact(str(exc)) or type(exc).__name__)

        await asyncio.gather(*(close(n, a) for n, a in self.adapters.items()))

    async def _cancel_everything(self, timeout: float) -> dict[str, int]:
        """Cancel all on every venue until each venue reports no open order; returns what is left.

        A submit whose outcome is still unknown (its answer was lost) may yet turn into an order,
        so a venue is done only once none of ours there is pending and the venue lists nothing.
        """
        deadline = time.monotonic() + timeout
        left: dict[str, int] = {}

        async def one(name: str, adapter: VenueAdapter) -> None:
            while True:
                try:
                    async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                        await adapter.cancel_all()
                        remaining = await adapter.fetch_open_orders()
                except Exception as exc:  # noqa: BLE001 - keep trying until the deadline
                    log.warning("venue %s: cancel-all failed: %s", name, redact(str(exc)) or type(exc).__name__)
                    remaining = None
                unresolved = sum(o.status is OrderStatus.PENDING for o in self.open_orders[name].values())
                if remaining == [] and not unresolved:
                    left[name] = 0
                    return
                if time.monotonic() >= deadline:
                    left[name] = -1 if remaining is None else len(remaining) + unresolved
                    log.error("venue %s: orders may remain open after shutdown: %s", name, left[name])
                    return
                await asyncio.sleep(0.2)

        await asyncio.gather(*(one(n, a) for n, a in self.adapters.items() if a.connected))
        # The venues' cancel events settle our own view; give them a moment to arrive.
        while any(self.open_orders.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for name, orders in self.open_orders.items():
            for order in list(orders.values()):
                if left.get(name) == 0:  # the venue says nothing is open: so is this order
                    self._finish(order, OrderStatus.CANCELED, self.clock.mono_ns())
        return left

    def summary(self, open_left: dict[str, int]) -> Summary:
        realized = unrealized = fees = total = 0
        positions: dict[str, int] = {}
        for portfolio in self.portfolios.values():
            realized += portfolio.realized()
            unrealized += portfolio.unrealized()
            fees += portfolio.fees()
            total += portfolio.total.qty
            for venue, pos in portfolio.by_venue.items():
                positions[venue] = positions.get(venue, 0) + pos.qty
        return Summary(
            duration_s=(self.clock.mono_ns() - self._started_ns) / 1e9,
            venues=dict(self.stats),
            positions=positions,
            position_total=total,
            realized=realized,
            unrealized=unrealized,
            fees=fees,
            net_pnl=realized + unrealized - fees,
            open_orders_left=open_left,
            risk_denials=dict(self.risk_denials),
            max_abs_position_venue=dict(self._max_abs_venue),
            max_abs_position_total=self._max_abs_total,
            duplicate_fills=sum(st.duplicate_fills for st in self.stats.values()),
        )


def _money(v: int) -> str:
    return f"{numbers.to_float(v):,.2f}"


def format_summary(s: Summary) -> str:
    """The final report printed by ``hft run``."""
    lines = [f"Summary after {s.duration_s:.1f}s", ""]
    lines.append(f"{'venue':<10}{'orders':>8}{'fills':>7}{'rejects':>8}{'volume':>12}{'position':>12}{'gaps':>6}{'left open':>10}")
    for venue, st in s.venues.items():
        left = s.open_orders_left.get(venue, 0)
        lines.append(
            f"{venue:<10}{st.orders:>8}{st.fills:>7}{st.rejects:>8}{numbers.to_str(st.volume):>12}"
            f"{numbers.to_str(s.positions.get(venue, 0)):>12}{st.gaps:>6}{'?' if left < 0 else left:>10}"
        )
    lines.append("")
    lines.append(f"position total   {numbers.to_str(s.position_total)}")
    lines.append(f"realised P&L     {_money(s.realized)}")
    lines.append(f"unrealised P&L   {_money(s.unrealized)}")
    lines.append(f"fees             {_money(s.fees)}")
    lines.append(f"net P&L          {_money(s.net_pnl)}")
    if s.risk_denials:
        lines.append("risk denials     " + ", ".join(f"{k}={v}" for k, v in sorted(s.risk_denials.items())))
    if s.duplicate_fills:
        lines.append(f"duplicate fills ignored: {s.duplicate_fills}")
    return "\n".join(lines)
