"""The strategy contract.

A strategy reacts to callbacks from the engine and acts only through its
context (:class:`hft.engine.Engine`'s trading API: ``submit_order``,
``cancel_order``, the books, the portfolio). Callbacks run on the engine loop
and must not block; order outcomes arrive as later callbacks.

Write your own::

    class MyStrategy(Strategy):
        class Params(BaseModel):
            model_config = ConfigDict(extra="forbid")
            size: FixedDecimal

        def on_book(self, venue, symbol):
            best = self.ctx.consolidated(symbol).best_bid()
            ...

and name it in YAML as ``strategy: {type: "my_pkg.my_mod:MyStrategy"}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from hft.events import TradeTick
from hft.model import Fill, Order

if TYPE_CHECKING:
    from hft.engine import Engine


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Strategy:
    """Base class: override the callbacks you need; all default to doing nothing."""

    Params: ClassVar[type[BaseModel]] = NoParams

    def __init__(self, ctx: "Engine", symbol: str, venues: list[str], params: Any) -> None:
        self.ctx = ctx
        self.symbol = symbol
        self.venues = venues
        self.params = params

    def on_start(self) -> None:
        """Venues are connected and books subscribed."""

    def on_book(self, venue: str, symbol: str) -> None:
        """A book of ``venue`` changed (the consolidated book is already updated)."""

    def on_trade(self, tick: TradeTick) -> None:
        """A public trade printed on a venue."""

    def on_order_update(self, order: Order) -> None:
        """One of our orders changed status (accepted, canceled, rejected, expired)."""

    def on_fill(self, fill: Fill, order: Order) -> None:
        """One of our orders traded; the portfolio already includes the fill."""

    def on_timer(self, now_ns: int) -> None:
        """Called periodically (``engine.status_interval_s``)."""

    def on_stop(self) -> None:
        """The engine is shutting down; it cancels every resting order itself afterwards."""

    def status_line(self) -> str:
        """A short text for the live terminal status."""
        return ""
