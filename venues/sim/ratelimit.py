"""Binance-style request-weight and order-count limits for the simulated exchange server.

Weight: every REST request costs a weight (:func:`request_weight`, roughly
Binance's numbers) charged to a bucket, the API key's for requests that carry a
known ``X-MBX-APIKEY`` and the client IP's otherwise. A bucket's window starts
at its first request and lasts ``window_s``; going over the limit answers 429
with ``Retry-After`` (seconds until the window ends). A client that keeps
sending while told to back off gets 418 after ``ban_after`` such requests, banned
for ``ban_s`` (``Retry-After`` says how long). Rejected requests are not charged.

Orders: new orders per account in a ``orders_window_s`` window; over the limit is
Binance's ``-1015 "Too many new orders"`` with HTTP 400 (ccxt: RateLimitExceeded).

Windows start at a bucket's first request rather than at the wall-clock minute
(Binance's choice) so that a test can never straddle a window boundary by bad luck.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Decision", "RateLimitConfig", "RateLimiter", "request_weight"]


class RateLimitConfig(BaseModel):
    """Request-weight and order-count limits."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Enforce the limits (headers are sent either way).")
    weight_per_minute: int = Field(1200, gt=0, description="Request weight allowed per window and key/IP.")
    window_s: float = Field(60.0, gt=0, description="Length of the weight window, s (Binance: one minute).")
    ban_after: int = Field(
        3, ge=1, description="Requests sent while told to back off (after a 429) before a 418 ban."
    )
    ban_s: float = Field(120.0, gt=0, description="Length of a 418 ban, s.")
    orders_per_window: int = Field(100, gt=0, description="New orders allowed per account per order window.")
    orders_window_s: float = Field(10.0, gt=0, description="Length of the order-count window, s.")


# (method, path) → weight; callables get the request params
_WEIGHTS: dict[tuple[str, str], int | Callable[[Mapping[str, str]], int]] = {
    ("GET", "/api/v3/ping"): 1,
    ("GET", "/api/v3/time"): 1,
    ("GET", "/api/v3/exchangeInfo"): 20,
    ("GET", "/api/v3/depth"): lambda p: _depth_weight(p.get("limit")),
    ("GET", "/api/v3/ticker/24hr"): lambda p: 2 if ("symbol" in p) else 80,
    ("GET", "/api/v3/ticker/price"): lambda p: 2 if ("symbol" in p) else 4,
    ("GET", "/api/v3/ticker/bookTicker"): lambda p: 2 if ("symbol" in p) else 4,
    ("GET", "/api/v3/aggTrades"): 4,
    ("GET", "/api/v3/trades"): 25,
    ("GET", "/api/v3/account"): 20,
    ("POST", "/api/v3/order"): 1,
    ("DELETE", "/api/v3/order"): 1,
    ("GET", "/api/v3/order"): 4,
    ("GET", "/api/v3/openOrders"): lambda p: 6 if ("symbol" in p) else 80,
    ("DELETE", "/api/v3/openOrders"): 1,
    ("GET", "/api/v3/allOrders"): 20,
    ("GET", "/api/v3/myTrades"): 20,
    ("POST", "/api/v3/userDataStream"): 2,
    ("PUT", "/api/v3/userDataStream"): 2,
    ("DELETE", "/api/v3/userDataStream"): 2,
}


def _depth_weight(limit: str | None) -> int:
    try:
        n = int(limit) if limit is not None else 100
    except ValueError:
        n = 100
    if n <= 100:
        return 5
    if n <= 500:
        return 25
    if n <= 1000:
        return 50
    return 250


def request_weight(method: str, path: str, params: Mapping[str, str]) -> int:
    w = _WEIGHTS.get((method, path), 1)
    return w(params) if callable(w) else w


@dataclass(slots=True)
class Decision:
    status: int  # 200 (go on), 429 or 418
    retry_after: int  # seconds, for 429/418
    used: int  # weight used in the bucket's window, for X-MBX-USED-WEIGHT-1M


@dataclass(slots=True)
class _Bucket:
    start: float = 0.0
    used: int = 0
    backoff_until: float = 0.0
    violations: int = 0
    banned_until: float = 0.0


class RateLimiter:
    def __init__(self, config: RateLimitConfig, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.clock = clock
        self._weights: dict[str, _Bucket] = {}
        self._orders: dict[str, tuple[float, int]] = {}
        self.stats = {"429": 0, "418": 0, "-1015": 0}

    def check(self, key: str, weight: int) -> Decision:
        """Charge ``weight`` to ``key`` if allowed; say 429/418 if not."""
        c = self.config
        now = self.clock()
        b = self._weights.get(key)
        if b is None:
            b = self._weights[key] = _Bucket(start=now)
        if not c.enabled:
            if now - b.start >= c.window_s:
                b.start, b.used = now, 0
            b.used += weight
            return Decision(200, 0, b.used)
        if b.banned_until > now:
            self.stats["418"] += 1
            return Decision(418, _ceil(b.banned_until - now), b.used)
        if now - b.start >= c.window_s:
            b.start, b.used, b.violations = now, 0, 0
        if b.backoff_until > now:
            b.violations += 1
            if b.violations >= c.ban_after:
                b.banned_until = now + c.ban_s
                b.violations = 0
                b.backoff_until = 0.0
                self.stats["418"] += 1
                return Decision(418, _ceil(c.ban_s), b.used)
            self.stats["429"] += 1
            return Decision(429, _ceil(b.backoff_until - now), b.used)
        if b.used + weight > c.weight_per_minute:
            b.backoff_until = b.start + c.window_s
            self.stats["429"] += 1
            return Decision(429, _ceil(b.backoff_until - now), b.used)
        b.used += weight
        return Decision(200, 0, b.used)

    def used(self, key: str) -> int:
        b = self._weights.get(key)
        return b.used if b is not None else 0

    def count_order(self, account: str) -> tuple[bool, int]:
        """Count one new order; ``(allowed, orders in the window)``."""
        c = self.config
        now = self.clock()
        start, n = self._orders.get(account, (now, 0))
        if now - start >= c.orders_window_s:
            start, n = now, 0
        if c.enabled and n >= c.orders_per_window:
            self.stats["-1015"] += 1
            return False, n
        n += 1
        self._orders[account] = (start, n)
        return True, n

    def reset(self) -> None:
        self._weights.clear()
        self._orders.clear()


def _ceil(seconds: float) -> int:
    return max(1, math.ceil(seconds))
