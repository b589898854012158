"""Fault injection for the simulated exchange server.

:class:`FaultConfig` is set at start-up (the server config's ``faults`` section)
and patched at run time through ``POST /admin/faults``; :class:`FaultState`
holds it with a seeded random generator and counts every fault it injected, so
a test can assert that a fault really happened.

What each knob does (rates are probabilities in [0, 1], drawn per request or per
outgoing stream message; ``*_next`` counters fire on the next N occasions and
count down, which is what deterministic tests use):

REST (``/api/v3/*``; ``/admin/*`` is never faulted)
  ``delay_ms`` (+ uniform ``delay_jitter_ms``): every answer is that late.
  ``error_rate`` / ``error_next``: answered ``error_status`` (5xx) *before* execution;
  the body is plain text, or with ``error_body="json"`` Binance's ``-1007``
  "execution status unknown" JSON.
  ``drop_after_execute_rate`` / ``drop_after_execute_next``: order-changing requests
  (``POST``/``DELETE /api/v3/order``, ``DELETE /api/v3/openOrders``) are executed,
  then the answer is lost: ``drop_mode="close"`` drops the TCP connection, ``"503"``
  / ``"504"`` answer that status as if a gateway had timed out.
  ``late_order_next`` (+ ``late_order_ms``): the next N order submissions are held that long
  before execution, so a client that timed out meanwhile sees its order appear later.
  ``rate_limit_storm``: every request gets 429 with ``Retry-After`` (no ban escalation).

Streams
  ``ws_drop_rate``: per outgoing message, the connection is aborted instead.
  ``depth_gap_rate`` / ``depth_gap_next``: a depth diff is not sent at all, so the
  next one does not chain (``U != previous u + 1``).
  ``{market,user}_duplicate_rate``: a message is sent twice.
  ``{market,user}_reorder_rate``: a message is held back and sent after the next one
  (or after ``reorder_hold_ms`` if nothing follows).
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["FaultConfig", "FaultState"]

class FaultConfig(BaseModel):
    """Faults the server injects. All off by default."""

    model_config = ConfigDict(extra="forbid")

    delay_ms: float = Field(0.0, ge=0, description="Delay of every REST answer, ms.")
    delay_jitter_ms: float = Field(0.0, ge=0, description="Extra uniform random delay of REST answers, ms.")
    error_rate: float = Field(0.0, ge=0, le=1, description="Share of REST requests answered 5xx before execution.")
    error_next: int = Field(0, ge=0, description="The next N REST requests are answered 5xx before execution.")
    error_status: int = Field(503, ge=500, le=599, description="Status of injected 5xx answers.")
    error_body: Literal["text", "json"] = Field(
        "text", description="Body of injected 5xx answers: plain text, or Binance's -1007 'execution status unknown'."
    )
    drop_after_execute_rate: float = Field(
        0.0, ge=0, le=1, description="Share of order-changing requests executed whose answer is then lost."
    )
    drop_after_execute_next: int = Field(
        0, ge=0, description="The next N order-changing requests are executed and their answer lost."
    )
    drop_mode: Literal["close", "503", "504"] = Field(
        "close", description="How an answer is lost: close the connection, or answer 503/504."
    )
    late_order_next: int = Field(0, ge=0, description="The next N order submissions are executed late.")
    late_order_ms: float = Field(1000.0, ge=0, description="How late those submissions are executed, ms.")
    rate_limit_storm: bool = Field(False, description="Answer every REST request 429 (Retry-After, no ban).")
    rate_limit_storm_retry_after_s: int = Field(1, ge=0, description="Retry-After of storm answers, s.")
    ws_drop_rate: float = Field(0.0, ge=0, le=1, description="Per stream message: abort the connection instead.")
    depth_gap_rate: float = Field(0.0, ge=0, le=1, description="Share of depth diffs never sent (sequence gap).")
    depth_gap_next: int = Field(0, ge=0, description="The next N depth diffs are never sent.")
    market_duplicate_rate: float = Field(0.0, ge=0, le=1, description="Share of market-stream messages sent twice.")
    market_reorder_rate: float = Field(
        0.0, ge=0, le=1, description="Share of market-stream messages swapped with the next one."
    )
    user_duplicate_rate: float = Field(0.0, ge=0, le=1, description="Share of user-stream events sent twice.")
    user_reorder_rate: float = Field(0.0, ge=0, le=1, description="Share of user-stream events swapped with the next.")
    reorder_hold_ms: float = Field(
        200.0, gt=0, description="A held-back message goes out after this long if nothing follows it, ms."
    )


class FaultState:
    """The live fault settings, a seeded generator and the count of faults injected by kind."""

    def __init__(self, config: FaultConfig | None = None, seed: int | str = 0):
        self.config = config or FaultConfig()
        self.rng = random.Random(f"{seed}:faults")
        self.injected: Counter[str] = Counter()

    def update(self, patch: dict[str, Any]) -> FaultConfig:
        """Apply a partial update (validated as a whole; unknown keys are an error)."""
        self.config = FaultConfig.model_validate({**self.config.model_dump(), **patch})
        return self.config

    def reset(self) -> FaultConfig:
        self.config = FaultConfig()
        return self.config

    def roll(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate

    def _take(self, next_field: str, rate: float, kind: str) -> bool:
        n = getattr(self.config, next_field)
        if n > 0:
            self.config = self.config.model_copy(update={next_field: n - 1})
            self.injected[kind] += 1
            return True
        if self.roll(rate):
            self.injected[kind] += 1
            return True
        return False

    # -- REST
    def delay_s(self) -> float:
        c = self.config
        d = c.delay_ms + (self.rng.uniform(0, c.delay_jitter_ms) if c.delay_jitter_ms else 0.0)
        return d / 1e3

    def take_late_order(self) -> float:
        """Seconds to hold an order submission before executing it (0: not held)."""
        return self.config.late_order_ms / 1e3 if self._take("late_order_next", 0.0, "late_order") else 0.0

    def take_error(self) -> bool:
        return self._take("error_next", self.config.error_rate, "error")

    def take_drop_after_execute(self) -> bool:
        return self._take("drop_after_execute_next", self.config.drop_after_execute_rate, "drop_after_execute")

    # -- streams
    def take_depth_gap(self) -> bool:
        return self._take("depth_gap_next", self.config.depth_gap_rate, "depth_gap")

    def take_ws_drop(self) -> bool:
        if self.roll(self.config.ws_drop_rate):
            self.injected["ws_drop"] += 1
            return True
        return False

    def take_duplicate(self, kind: str) -> bool:
        rate = self.config.user_duplicate_rate if kind == "user" else self.config.market_duplicate_rate
        if self.roll(rate):
            self.injected[f"{kind}_duplicate"] += 1
            return True
        return False

    def take_reorder(self, kind: str) -> bool:
        rate = self.config.user_reorder_rate if kind == "user" else self.config.market_reorder_rate
        if self.roll(rate):
            self.injected[f"{kind}_reorder"] += 1
            return True
        return False

    def as_dict(self) -> dict:
        return {"config": self.config.model_dump(mode="json"), "injected": dict(self.injected)}
