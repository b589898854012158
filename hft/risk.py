"""Pre-trade checks. Every order passes here before it leaves the engine.

Checks return a reason (``str``) or ``None``; a denial becomes an event and a
metric in the engine, never an exception. Position limits are checked on
worst-case exposure — the current position plus every open order on the same
side plus the new order all filling — so no sequence of fills can breach them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hft import numbers
from hft.model import Order, Side


@dataclass(slots=True)
class RiskLimits:
    max_order_qty: int
    max_order_notional: int
    max_position_per_venue: int
    max_position_total: int
    max_orders_per_second: float  # per venue


@dataclass(slots=True)
class Exposure:
    """Open (unfilled) buy and sell quantity per venue, kept by the engine."""

    open_buy: dict[str, int] = field(default_factory=dict)
    open_sell: dict[str, int] = field(default_factory=dict)

    def add(self, venue: str, side: Side, qty: int) -> None:
        book = self.open_buy if side is Side.BUY else self.open_sell
        book[venue] = book.get(venue, 0) + qty

    def total(self, side: Side) -> int:
        return sum((self.open_buy if side is Side.BUY else self.open_sell).values())


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


class PreTradeRisk:
    """Pure pre-trade checks over limits, positions and open-order exposure."""

    def __init__(self, limits: RiskLimits) -> None:
        self.limits = limits
        self._buckets: dict[str, TokenBucket] = {}

    def check(
        self,
        order: Order,
        reference_price: int,
        venue_position: int,
        total_position: int,
        exposure: Exposure,
        now_ns: int,
    ) -> str | None:
        """Why ``order`` must not be sent, or ``None`` to let it go."""
        lim = self.limits
        qty = order.qty
        if qty > lim.max_order_qty:
            return "max_order_qty"
        price = order.price if order.price is not None else reference_price
        if price and numbers.mul(price, qty) > lim.max_order_notional:
            return "max_order_notional"
        venue = order.venue
        if order.side is Side.BUY:
            if venue_position + exposure.open_buy.get(venue, 0) + qty > lim.max_position_per_venue:
                return "max_position_per_venue"
            if total_position + exposure.total(Side.BUY) + qty > lim.max_position_total:
                return "max_position_total"
        else:
            if venue_position - exposure.open_sell.get(venue, 0) - qty < -lim.max_position_per_venue:
                return "max_position_per_venue"
            if total_position - exposure.total(Side.SELL) - qty < -lim.max_position_total:
                return "max_position_total"
        bucket = self._buckets.get(venue)
        if bucket is None:
            rate = lim.max_orders_per_second
            bucket = self._buckets[venue] = TokenBucket(rate, max(1.0, rate))
        if not bucket.take(now_ns):
            return "order_rate"
        return None
