"""Events adapters deliver to the engine.

Outcomes of orders arrive as events, never as return values, so the simulator,
live venues and replays drive the engine the same way. Every market event
carries two timestamps: ``ts_venue`` (the venue's clock, ns since epoch, 0 if
unknown) and ``ts_recv`` (the engine clock's monotonic ns at receipt), so
latency is data.
"""

from __future__ import annotations

from dataclasses import dataclass

from hft.model import Fill, Side

Level = tuple[int, int]  # (price, size); size 0 deletes the level


@dataclass(slots=True)
class BookSnapshot:
    venue: str
    symbol: str
    bids: list[Level]  # best first
    asks: list[Level]  # best first
    seq: int  # last update id the snapshot includes
    ts_venue: int
    ts_recv: int


@dataclass(slots=True)
class BookDelta:
    """Level changes with the venue's sequence range ``first_seq..last_seq``.

    Applies to a book whose last sequence is ``first_seq - 1``; anything else is a gap.
    """

    venue: str
    symbol: str
    bids: list[Level]
    asks: list[Level]
    first_seq: int
    last_seq: int
    ts_venue: int
    ts_recv: int


@dataclass(slots=True)
class TradeTick:
    """A public trade on a venue (anybody's)."""

    venue: str
    symbol: str
    price: int
    qty: int
    aggressor: Side
    trade_id: str
    ts_venue: int
    ts_recv: int


@dataclass(slots=True)
class OrderAccepted:
    venue: str
    client_order_id: str
    venue_order_id: str
    ts_recv: int


@dataclass(slots=True)
class OrderRejected:
    venue: str
    client_order_id: str
    reason: str
    ts_recv: int


@dataclass(slots=True)
class OrderCanceled:
    """The order is done without (further) fills: ``expired`` for IOC/FOK remainders."""

    venue: str
    client_order_id: str
    ts_recv: int
    expired: bool = False
    reason: str = ""


@dataclass(slots=True)
class OrderFilled:
    fill: Fill
    cumulative_qty: int  # the venue's filled total for the order after this fill (spots missed fills)


@dataclass(slots=True)
class CancelRejected:
    """A cancel the venue refused (unknown order, already done)."""

    venue: str
    client_order_id: str
    reason: str
    ts_recv: int


@dataclass(slots=True)
class VenueStatus:
    """A venue's connection went up or down (a down market stream invalidates its books).

    ``reconcile``: on a connection coming back, whether order events may have been missed
    meanwhile, so the engine reconciles orders, fills and balances with the venue (not for a
    market-data-only reconnect).
    """

    venue: str
    connected: bool
    reason: str
    ts_recv: int
    reconcile: bool = True


@dataclass(slots=True)
class MessageDropped:
    """A venue message that could not be parsed: counted, logged, dropped."""

    venue: str
    reason: str
    ts_recv: int


MarketEvent = BookSnapshot | BookDelta | TradeTick
OrderEvent = OrderAccepted | OrderRejected | OrderCanceled | OrderFilled | CancelRejected
