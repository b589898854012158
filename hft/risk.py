"""The risk engine: trading state and pre-trade checks. Every order passes here.

Checks return a reason (``str``) or ``None``; a denial becomes an event and a
metric in the engine, never an exception. Position limits are checked on
worst-case exposure — the current position plus every open order on the same
side plus the new order all filling — so no sequence of fills can breach them.

Trading states:

* ``ACTIVE``: every check applies.
* ``REDUCING``: only orders that bring the position (on the venue and in
  total) toward zero, counting open orders on the same side, are allowed.
* ``HALTED``: no new order at all; cancels are always allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from hft import numbers
from hft.model import Order, Side


class TradingState(str, Enum):
    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


@dataclass(slots=True)
class RiskLimits:
    max_order_qty: int
    max_order_notional: int
    max_position_per_venue: int
    max_position_total: int
    max_orders_per_second: float  # per venue
    max_orders_per_second_total: float = 1e9
    price_band_bps: float = 1e9  # fat-finger band around the consolidated fair price


@dataclass(slots=True)
class Exposure:
    """Open (unfilled) quantity per venue and side, and the quote a venue's open buys hold."""

    open_buy: dict[str, int] = field(default_factory=dict)
    open_sell: dict[str, int] = field(default_factory=dict)
    open_buy_notional: dict[str, int] = field(default_factory=dict)
    total_buy: int = 0
    total_sell: int = 0

    def add(self, venue: str, side: Side, qty: int, price: int) -> None:
        """Add (or, with a negative ``qty``, remove) open quantity at a limit price."""
        if side is Side.BUY:
            self.open_buy[venue] = self.open_buy.get(venue, 0) + qty
            self.open_buy_notional[venue] = self.open_buy_notional.get(venue, 0) + numbers.mul(price, qty)
            self.total_buy += qty
        else:
            self.open_sell[venue] = self.open_sell.get(venue, 0) + qty
            self.total_sell += qty


@dataclass(slots=True)
class Available:
    """What a venue account can still commit: quote for buys, base for sells (``None``: unknown)."""

    quote: int | None = None
    base: int | None = None


class TokenBucket:
    """``rate`` tokens a second, bursts up to ``burst``."""

    __slots__ = ("rate_per_ns", "burst", "tokens", "last_ns")

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate_per_ns = rate_per_s / 1e9
        self.burst = burst
        self.tokens = burst
        self.last_ns = 0

    def take(self, now_ns: int) -> bool:
        tokens = min(self.burst, self.tokens + (now_ns - self.last_ns) * self.rate_per_ns)
        self.last_ns = now_ns
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False


class RiskEngine:
    """Trading state plus pure pre-trade checks over limits, positions, exposure and balances."""

    def __init__(self, limits: RiskLimits) -> None:
        self.limits = limits
        self.state = TradingState.ACTIVE
        self.state_reason = ""
        self._buckets: dict[str, TokenBucket] = {}
        total = limits.max_orders_per_second_total
        self._global = TokenBucket(total, max(1.0, total))

    def set_state(self, state: TradingState, reason: str) -> bool:
        """Move to ``state``; returns False if already there. HALTED is left only by a restart."""
        if state is self.state or self.state is TradingState.HALTED:
            return False
        self.state = state
        self.state_reason = reason
        return True

    def check(
        self,
        order: Order,
        *,
        fair: int,
        venue_position: int,
        total_position: int,
        exposure: Exposure,
        book_active: bool,
        available: Available,
        now_ns: int,
    ) -> str | None:
        """Why ``order`` must not be sent, or ``None`` to let it go."""
        state = self.state
        if state is TradingState.HALTED:
            return "halted"
        lim = self.limits
        qty = order.qty
        venue = order.venue
        buy = order.side is Side.BUY
        if state is TradingState.REDUCING:
            if buy:
                after_venue = venue_position + exposure.open_buy.get(venue, 0) + qty
                after_total = total_position + exposure.total_buy + qty
                if venue_position >= 0 or total_position >= 0 or after_venue > 0 or after_total > 0:
                    return "reducing_only"
            else:
                after_venue = venue_position - exposure.open_sell.get(venue, 0) - qty
                after_total = total_position - exposure.total_sell - qty
                if venue_position <= 0 or total_position <= 0 or after_venue < 0 or after_total < 0:
                    return "reducing_only"
        if qty <= 0:
            return "non_positive_qty"
        if qty > lim.max_order_qty:
            return "max_order_qty"
        price = order.price if order.price is not None else fair
        if not price:
            return "no_reference_price"  # a market order with no book to value it against
        notional = numbers.mul(price, qty)
        if notional > lim.max_order_notional:
            return "max_order_notional"
        if not book_active:
            return "book_invalid"
        if order.price is not None and fair:
            if abs(order.price - fair) * 10_000 > lim.price_band_bps * fair:
                return "price_band"
        if buy:
            if venue_position + exposure.open_buy.get(venue, 0) + qty > lim.max_position_per_venue:
                return "max_position_per_venue"
            if total_position + exposure.total_buy + qty > lim.max_position_total:
                return "max_position_total"
            if available.quote is not None and notional > available.quote - exposure.open_buy_notional.get(venue, 0):
                return "insufficient_balance"
        else:
            if venue_position - exposure.open_sell.get(venue, 0) - qty < -lim.max_position_per_venue:
                return "max_position_per_venue"
            if total_position - exposure.total_sell - qty < -lim.max_position_total:
                return "max_position_total"
            if available.base is not None and qty > available.base - exposure.open_sell.get(venue, 0):
                return "insufficient_balance"
        bucket = self._buckets.get(venue)
        if bucket is None:
            rate = lim.max_orders_per_second
            bucket = self._buckets[venue] = TokenBucket(rate, max(1.0, rate))
        if not bucket.take(now_ns):
            return "order_rate"
        if not self._global.take(now_ns):
            return "order_rate_total"
        return None
