"""Inventory hedging through the smart order router (cross-venue market making).

A market maker quotes on some venues and collects inventory there; :class:`InventoryHedger`
takes the inventory beyond a threshold off on whichever venues are cheapest *all-in* at that
moment, through :class:`hft.execution.ExecutionManager` — so every hedge child passes the
pre-trade checks and is metered like any routed order. The strategy owns one hedger and calls
:meth:`InventoryHedger.maybe_hedge` from ``on_book`` / ``on_timer``:

* when ``|total position| > threshold`` and no hedge is in flight (and the cool-down since
  the last one has passed), it routes ``|position| − target`` on the reducing side, IOC, with
  a limit ``limit_bps`` away from the consolidated mid (a hedge never sweeps a thin book);
* the hedge runs as an engine-owned task (cancelled and awaited by ``Engine.stop``); its
  :class:`hft.execution.ExecutionResult` is kept in :attr:`InventoryHedger.last_result`.

Configured as ``strategy.params.hedge`` (:class:`HedgeParams`)::

    hedge:
      threshold: "0.05"     # BTC: hedge when |total position| exceeds this
      target: "0"           # ... back down to this
      venues: [gamma]       # where hedges may go (default: every venue of the symbol)
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hft import numbers
from hft.config import FixedDecimal
from hft.execution import ExecutionManager, ExecutionResult, RouterSettings
from hft.model import Side
from hft.router import ParentOrder

if TYPE_CHECKING:
    from hft.engine import Engine

log = logging.getLogger(__name__)

__all__ = ["HedgeParams", "InventoryHedger"]


class HedgeParams(BaseModel):
    """``strategy.params.hedge``: when and how inventory is hedged through the router."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    threshold: FixedDecimal = Field(description="Hedge when |total position| (base) exceeds this, e.g. '0.05'")
    target: FixedDecimal = Field("0", description="Hedge |total position| back down to this (below threshold)")
    venues: list[str] | None = Field(None, description="Venues hedges may use (default: every venue of the symbol)")
    limit_bps: float = Field(10.0, gt=0, description="Worst hedge price: this far from the consolidated mid, bp")
    timeout_s: float = Field(2.0, gt=0, description="Time allowed for one hedge (all its rounds)")
    cooldown_s: float = Field(1.0, ge=0, description="Pause after a hedge before the next may start")

    @model_validator(mode="after")
    def _check(self) -> "HedgeParams":
        if self.threshold <= 0:
            raise ValueError("threshold must be positive")
        if not 0 <= self.target < self.threshold:
            raise ValueError("target must be at least 0 and below threshold")
        return self


class InventoryHedger:
    """Hedges a symbol's total position beyond a threshold through the router (see module doc)."""

    def __init__(
        self, ctx: "Engine", symbol: str, params: HedgeParams, *, manager: ExecutionManager | None = None
    ) -> None:
        self.ctx = ctx
        self.symbol = symbol
        self.params = params
        if params.venues is not None:
            known = ctx.consolidated(symbol).venues
            unknown = [v for v in params.venues if v not in known]
            if unknown:
                raise ValueError(f"hedge.venues: {', '.join(unknown)} do not trade {symbol}")
        self.manager = manager or ExecutionManager(
            ctx, RouterSettings(timeout_s=params.timeout_s, venues=params.venues)
        )
        self.hedges = 0
        self.last_result: ExecutionResult | None = None
        self._task: asyncio.Task | None = None
        self._idle_since_ns: int | None = None  # when the last hedge ended

    @property
    def in_flight(self) -> bool:
        return self._task is not None and not self._task.done()

    def maybe_hedge(self, now_ns: int) -> bool:
        """Start a hedge if the position is beyond the threshold and none is running; True if started."""
        if self.in_flight:
            return False
        p = self.params
        if self._idle_since_ns is not None and now_ns - self._idle_since_ns < p.cooldown_s * 1e9:
            return False
        position = self.ctx.portfolio(self.symbol).total.qty
        if abs(position) <= p.threshold:
            return False
        mid = self.ctx.consolidated(self.symbol).mid()
        if mid is None:
            return False
        side = Side.SELL if position > 0 else Side.BUY
        qty = abs(position) - p.target
        offset = int(mid * p.limit_bps / 1e4)
        limit = mid + offset if side is Side.BUY else mid - offset
        parent = ParentOrder(self.symbol, side, qty, limit, urgency=1.0, id=f"hedge-{self.ctx.next_client_order_id()}")
        self.hedges += 1
        log.info(
            "hedge %s: position %s beyond %s, %s %s (limit %s)", parent.id, numbers.to_str(position),
            numbers.to_str(p.threshold), side.name, numbers.to_str(qty), numbers.to_str(limit),
        )
        self._task = self.ctx.spawn(self._run(parent), parent.id)  # engine-owned: stop() cancels and awaits it
        return True

    async def wait(self) -> ExecutionResult | None:
        """Wait for the hedge in flight, if any; returns its result."""
        if self._task is not None:
            await asyncio.shield(self._task)
        return self.last_result

    async def _run(self, parent: ParentOrder) -> None:
        try:
            result = await self.manager.execute(parent)
            self.last_result = result
            log.info(
                "hedge %s: %s, filled %s of %s", parent.id, result.status, numbers.to_str(result.filled_qty),
                numbers.to_str(parent.qty),
            )
        finally:
            self._idle_since_ns = self.ctx.clock.mono_ns()

    def status_line(self) -> str:
        r = self.last_result
        last = "" if r is None else f", last {r.status} {numbers.to_str(r.filled_qty)}"
        return f"hedges {self.hedges}{' (in flight)' if self.in_flight else ''}{last}"
