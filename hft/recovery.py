"""Restart and reconnect reconciliation: the journal's view against every venue's.

At start, :func:`restore_from_journal` rebuilds positions and P&L from every
journaled fill, remembers their trade ids (so a fill the venue sends again is
not counted twice), and takes the orders the journal last saw open back under
the engine's management. Then, for each venue, :func:`reconcile_venue`:

1. fetches the venue's open orders and our fills since the oldest thing in
   doubt, and feeds every fill the journal missed through the engine's normal
   fill path (deduplicated by ``(venue, trade id)``);
2. adopts or cancels (``recovery.open_orders``) orders the venue has open that
   are not under management — the journal never heard of them (lost intent at
   a ``kill -9``) or they belong to an earlier session;
3. closes managed orders the venue no longer has (filled, or canceled while we
   were away);
4. checks positions: the venue's balance minus its journaled baseline must
   equal the sum of journaled fills, in the base and in the quote asset. If it
   does not, the engine refuses to trade and says why.

The same :func:`reconcile_venue` runs after a venue's user stream reconnects.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hft import numbers
from hft.errors import HftError
from hft.events import OrderFilled
from hft.model import Order, OrderStatus, OrderType, TimeInForce

if TYPE_CHECKING:
    from hft.engine import Engine

log = logging.getLogger(__name__)

# Fills are fetched from a little before the oldest moment in doubt: venue and journal clocks differ.
_FILL_LOOKBACK_NS = 60 * 10**9
_POSITION_CHECKS = 3
_POSITION_RECHECK_S = 0.25


class RecoveryError(HftError):
    """Positions could not be reconciled with a venue: trading must not start."""


@dataclass
class VenueReconciliation:
    venue: str
    missed_fills: int = 0
    adopted: list[str] = field(default_factory=list)
    canceled: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.venue}: {self.missed_fills} missed fills added, {len(self.adopted)} orders adopted, "
            f"{len(self.canceled)} canceled, {len(self.closed)} closed"
            + (f"; PROBLEMS: {'; '.join(self.problems)}" if self.problems else "")
        )


def restore_from_journal(engine: "Engine", venues: list[str]) -> int:
    """Rebuild portfolios and managed orders of ``venues`` from the journal; returns the fills replayed."""
    journal = engine.journal
    assert journal is not None
    replayed = 0
    for fill in journal.iter_fills():
        portfolio = engine.portfolios.get(fill.symbol)
        if portfolio is None or fill.venue not in venues:
            continue
        engine.remember_fill(fill.venue, fill.symbol, fill.trade_id)
        portfolio.on_fill(fill)
        replayed += 1
    for row in journal.open_orders():
        if row.venue in venues and row.symbol in engine.portfolios:
            engine.manage(row.to_order())
    return replayed


async def reconcile_venue(engine: "Engine", venue: str, *, since_ns: int) -> VenueReconciliation:
    """Bring the engine's view of ``venue`` in line with the venue's; see the module docstring."""
    adapter = engine.adapters[venue]
    report = VenueReconciliation(venue)
    policy = engine.config.recovery.open_orders
    for symbol in adapter.symbols:
        fills = await adapter.fetch_fills(symbol, max(0, since_ns - _FILL_LOOKBACK_NS))
        asked_ns = engine.clock.mono_ns()  # orders sent after this cannot be in the answer
        open_at_venue = {o.client_order_id: o for o in await adapter.fetch_open_orders(symbol)}

        # 1. fills the journal missed, through the normal path (dedup, order state, portfolio, journal)
        for fill in fills:
            if engine.has_fill(venue, fill.symbol, fill.trade_id):
                continue
            order = engine.orders.get(fill.client_order_id)
            if order is None:
                order = _order_from_fill(engine, fill, open_at_venue.get(fill.client_order_id))
                engine.manage(order)
            engine.on_event(OrderFilled(fill, 0))
            report.missed_fills += 1

        # 2. open at the venue but not managed: adopt or cancel
        for cid, snap in open_at_venue.items():
            order = engine.orders.get(cid)
            thought_done = order is not None and order.status.is_done  # the venue disagrees: an orphan
            if order is None or thought_done:
                order = Order(
                    cid, venue, symbol, snap.side, snap.qty, snap.price, OrderType.LIMIT, TimeInForce.GTC,
                    status=OrderStatus.OPEN, venue_order_id=snap.venue_order_id, filled_qty=snap.filled_qty,
                    tag="adopted",
                )
                engine.manage(order)
                report.adopted.append(cid)
            order.venue_order_id = snap.venue_order_id
            if order.status is OrderStatus.PENDING:
                order.status = OrderStatus.OPEN
            if thought_done or (policy == "cancel" and not cid.startswith(engine.cid_prefix)):
                engine.cancel_order(order)
                report.canceled.append(cid)

        # 3. managed but gone from the venue: whatever fills exist are in; the rest was canceled
        for cid, order in list(engine.open_orders[venue].items()):
            if order.symbol != symbol or cid in open_at_venue or order.status.is_done:
                continue
            if cid.startswith(engine.cid_prefix) and (
                order.status is OrderStatus.PENDING or order.created_ns >= asked_ns
            ):
                continue  # this session's order in flight, or sent after we asked: its own events settle it
            engine.close_gone(order)
            report.closed.append(cid)

    # Fills can land between fetching them and fetching balances: settle, and look again, before
    # calling a difference a problem.
    for attempt in range(_POSITION_CHECKS):
        problems = await _check_positions(engine, venue)
        if not problems:
            break
        await asyncio.sleep(_POSITION_RECHECK_S)
        for symbol in adapter.symbols:
            for fill in await adapter.fetch_fills(symbol, max(0, since_ns - _FILL_LOOKBACK_NS)):
                if not engine.has_fill(venue, fill.symbol, fill.trade_id):
                    if fill.client_order_id not in engine.orders:
                        engine.manage(_order_from_fill(engine, fill, None))
                    engine.on_event(OrderFilled(fill, 0))
                    report.missed_fills += 1
    report.problems.extend(problems)
    log.info("reconciled %s", report.summary())
    return report


def _order_from_fill(engine: "Engine", fill, snap) -> Order:
    """A fill of an order the journal never heard of (its intent was lost): rebuild what we can."""
    qty = snap.qty if snap is not None else fill.qty
    return Order(
        fill.client_order_id, fill.venue, fill.symbol, fill.side, qty, fill.price, OrderType.LIMIT, TimeInForce.GTC,
        status=OrderStatus.OPEN, venue_order_id=fill.venue_order_id, tag="recovered",
    )


async def _check_positions(engine: "Engine", venue: str) -> list[str]:
    """Venue balance − baseline must equal the journaled fills' effect, asset by asset."""
    adapter = engine.adapters[venue]
    held = await adapter.fetch_balances()
    baseline = engine.baselines.get(venue, {})
    expected: dict[str, int] = {}
    for symbol in adapter.symbols:
        inst = adapter.instruments[symbol]
        position = engine.portfolios[symbol].by_venue[venue]
        expected[inst.base] = expected.get(inst.base, 0) + position.holdings
        expected[inst.quote] = expected.get(inst.quote, 0) + position.cash
    problems = []
    for asset, moved_by_fills in expected.items():
        if asset not in baseline:
            continue
        balance = held.get(asset)
        moved = (balance.total if balance else 0) - baseline[asset]
        if moved != moved_by_fills:
            problems.append(
                f"{venue} {asset}: the venue's balance moved {numbers.to_str(moved)} since the journaled baseline, "
                f"our fills account for {numbers.to_str(moved_by_fills)}"
            )
    return problems
