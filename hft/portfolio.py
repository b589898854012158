"""Positions and P&L per venue and in total, fees included.

Average-cost accounting in exact fixed point: a fill that extends a position
moves the average entry price; one that reduces it realises
``(exit - entry) × qty`` against the average. Fees (in the quote asset) are
counted separately and subtracted in ``net_pnl``. Unrealised P&L marks the
open position to a price the engine supplies (the consolidated mid).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hft import numbers
from hft.model import Fill


@dataclass(slots=True)
class Position:
    qty: int = 0  # signed base quantity
    avg_price: int = 0  # average entry price of the open quantity
    realized: int = 0  # quote
    fees: int = 0  # quote; negative when rebates dominate
    volume: int = 0  # base traded
    fills: int = 0
    cash: int = 0  # quote paid out (-) and received (+), quote fees included
    base_fees: int = 0  # fees the venue took in the base asset (Binance: on buys, without BNB)
    other_fees: dict[str, int] = field(default_factory=dict)  # fees in a third asset (e.g. BNB), not in P&L

    @property
    def holdings(self) -> int:
        """What the account's base balance moved by: the traded position less base-asset fees."""
        return self.qty - self.base_fees

    def apply(self, signed_qty: int, price: int, fee: int, fee_base: int = 0) -> None:
        """One fill: ``fee`` in the quote asset, ``fee_base`` in the base asset (valued at the fill price)."""
        q = self.qty
        self.fees += fee + numbers.mul(fee_base, price)
        self.base_fees += fee_base
        self.cash -= numbers.mul(price, signed_qty) + fee
        self.volume += abs(signed_qty)
        self.fills += 1
        if q == 0 or (q > 0) == (signed_qty > 0):
            new_qty = q + signed_qty
            # weighted average entry, exact to the unit
            self.avg_price = (abs(q) * self.avg_price + abs(signed_qty) * price) // abs(new_qty)
            self.qty = new_qty
            return
        closing = min(abs(q), abs(signed_qty))
        direction = 1 if q > 0 else -1
        self.realized += numbers.mul(price - self.avg_price, closing) * direction
        new_qty = q + signed_qty
        if new_qty == 0:
            self.avg_price = 0
        elif (new_qty > 0) != (q > 0):  # flipped: the rest opens at this price
            self.avg_price = price
        self.qty = new_qty

    def unrealized(self, mark: int) -> int:
        return numbers.mul(mark - self.avg_price, self.qty) if self.qty else 0


class Portfolio:
    """Positions of one base asset across venues (keyed by venue name)."""

    def __init__(self, venues: list[str]) -> None:
        self.by_venue: dict[str, Position] = {v: Position() for v in venues}
        self.total = Position()
        self.mark: int = 0

    def on_fill(self, fill: Fill) -> None:
        """Apply a fill; its fee may be in the quote asset, the base asset, or a third asset."""
        base, _, quote = fill.symbol.partition("/")
        signed = fill.qty * int(fill.side)
        venue = self.by_venue.setdefault(fill.venue, Position())
        if not fill.fee or not fill.fee_asset or fill.fee_asset == quote:
            venue.apply(signed, fill.price, fill.fee)
            self.total.apply(signed, fill.price, fill.fee)
        elif fill.fee_asset == base:
            venue.apply(signed, fill.price, 0, fill.fee)
            self.total.apply(signed, fill.price, 0, fill.fee)
        else:  # a third asset (BNB): tracked, but without its price it stays out of P&L
            venue.apply(signed, fill.price, 0)
            self.total.apply(signed, fill.price, 0)
            for position in (venue, self.total):
                position.other_fees[fill.fee_asset] = position.other_fees.get(fill.fee_asset, 0) + fill.fee

    def position(self, venue: str | None = None) -> int:
        return self.total.qty if venue is None else self.by_venue[venue].qty

    def realized(self) -> int:
        return self.total.realized

    def unrealized(self) -> int:
        return self.total.unrealized(self.mark) if self.mark else 0

    def fees(self) -> int:
        return self.total.fees

    def net_pnl(self) -> int:
        """Realised + unrealised − fees, in the quote asset."""
        return self.realized() + self.unrealized() - self.fees()
