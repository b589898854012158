"""The venue adapter contract.

An adapter only translates: wire messages to domain events (``parse_*``) and
domain commands to wire requests. Order outcomes are delivered as events
through the sink, never as return values.

The public methods do the bookkeeping (task ownership, capability checks,
counting); a subclass implements the short list of ``_hooks``:

========================  =====================================================
``_connect()``            open sessions/sockets; no I/O in ``__init__``
``_load_instruments()``   return ``{symbol: Instrument}`` with tick/lot/fees
``_subscribe_books(s)``   start emitting ``BookSnapshot``/``BookDelta``
``_resync_book(symbol)``  the engine saw a gap: emit a fresh ``BookSnapshot``
``_submit(order)``        send; outcome arrives later as events
``_cancel(order)``        send a cancel; outcome arrives later as events
``_cancel_all(symbol)``   cancel every open order of ours (awaitable)
``_fetch_open_orders()``  what the venue says is open (reconciliation)
``_fetch_balances()``     what the venue says we hold
``_fetch_fills(s, since)`` our recent fills as the venue has them (reconciliation)
``_adopt(order)``         an order we did not send is ours now (optional)
``_close()``              release everything
========================  =====================================================
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from hft.clock import Clock
from hft.events import OrderRejected
from hft.model import Balance, Capabilities, Fill, Instrument, OpenOrderSnapshot, Order, OrderType, TimeInForce
from hft.tasks import OwnedTasks

EventSink = Callable[[Any], None]



class NoOptions(BaseModel):
    """Options model of an adapter that takes none."""

    model_config = ConfigDict(extra="forbid")


class VenueAdapter:
    """Base class of every venue adapter; subclass it and register the subclass.

    Class attributes form the adapter's fact sheet: ``type_name`` (the YAML
    ``type``), ``capabilities`` and ``Options`` (a pydantic model validating
    the venue's ``options`` mapping).
    """

    type_name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    capabilities: ClassVar[Capabilities] = Capabilities()
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(
        self,
        name: str,
        symbols: list[str],
        options: BaseModel,
        sink: EventSink,
        clock: Clock,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        seed: int | None = None,
    ) -> None:
        self.name = name
        self.symbols = list(symbols)
        self.options = options
        self.clock = clock
        self.instruments: dict[str, Instrument] = {}
        self._sink = sink
        self._api_key = api_key
        self._api_secret = api_secret
        self._seed = seed
        self._tasks = OwnedTasks(f"venue {name}")
        self.connected = False

    def __repr__(self) -> str:  # never shows credentials
        return f"<{type(self).__name__} {self.name}>"

    # -- owned background work ------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any], name: str = "") -> asyncio.Task:
        """Start a task this adapter owns: kept until done, cancelled and awaited by ``close()``."""
        return self._tasks.spawn(coro, f"{self.name}:{name}")

    def emit(self, event: Any) -> None:
        """Deliver an event to the engine."""
        self._sink(event)

    # -- public API: bookkeeping around the hooks -----------------------------
    async def connect(self) -> None:
        await self._connect()
        self.instruments = await self._load_instruments()
        missing = [s for s in self.symbols if s not in self.instruments]
        if missing:
            raise LookupError(f"venue {self.name}: no such symbol(s) {', '.join(missing)}")
        self.connected = True

    async def subscribe_books(self) -> None:
        await self._subscribe_books(self.symbols)

    async def resync_book(self, symbol: str) -> None:
        await self._resync_book(symbol)

    def submit(self, order: Order) -> None:
        """Send an order; its outcome arrives as events. Unsupported features are rejected here."""
        if not order.post_only and order.time_in_force is TimeInForce.GTC and order.order_type is OrderType.LIMIT:
            self._submit(order)  # a plain limit order: every venue takes it
            return
        caps = self.capabilities
        reason = None
        if order.post_only and not caps.post_only:
            reason = "venue does not support post-only orders"
        elif order.order_type is OrderType.MARKET and not caps.market_orders:
            reason = "venue does not support market orders"
        elif order.time_in_force is TimeInForce.IOC and not caps.ioc:
            reason = "venue does not support IOC"
        elif order.time_in_force is TimeInForce.FOK and not caps.fok:
            reason = "venue does not support FOK"
        if reason is not None:
            self.emit(OrderRejected(self.name, order.client_order_id, reason, self.clock.mono_ns()))
            return
        self._submit(order)

    def adopt(self, order: Order) -> None:
        """An order this process did not send (recovered or adopted at reconciliation) is ours now:
        route its updates and fills like those of our own orders."""
        self._adopt(order)

    def cancel(self, order: Order) -> None:
        """Request a cancel; the outcome arrives as an event."""
        self._cancel(order)

    async def cancel_all(self, symbol: str | None = None) -> None:
        await self._cancel_all(symbol)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[OpenOrderSnapshot]:
        return await self._fetch_open_orders(symbol)

    def unknown_outcome_horizon_s(self) -> float:
        """How long a submit whose answer was lost can take to resolve (0: answers are never lost)."""
        return 0.0

    async def fetch_balances(self) -> dict[str, Balance]:
        return await self._fetch_balances()

    async def fetch_fills(self, symbol: str, since_ns: int = 0) -> list[Fill]:
        """Our fills on ``symbol`` at or after ``since_ns`` (venue time, ns since epoch), oldest first."""
        return await self._fetch_fills(symbol, since_ns)

    async def close(self) -> None:
        """Stop owned tasks and release connections. Safe to call twice."""
        await self._tasks.cancel_all()
        self.connected = False
        await self._close()

    # -- hooks ----------------------------------------------------------------
    async def _connect(self) -> None:
        raise NotImplementedError

    async def _load_instruments(self) -> dict[str, Instrument]:
        raise NotImplementedError

    async def _subscribe_books(self, symbols: list[str]) -> None:
        raise NotImplementedError

    async def _resync_book(self, symbol: str) -> None:
        raise NotImplementedError

    def _submit(self, order: Order) -> None:
        raise NotImplementedError

    def _cancel(self, order: Order) -> None:
        raise NotImplementedError

    async def _cancel_all(self, symbol: str | None) -> None:
        raise NotImplementedError

    async def _fetch_open_orders(self, symbol: str | None) -> list[OpenOrderSnapshot]:
        raise NotImplementedError

    async def _fetch_balances(self) -> dict[str, Balance]:
        raise NotImplementedError

    async def _fetch_fills(self, symbol: str, since_ns: int) -> list[Fill]:
        raise NotImplementedError

    def _adopt(self, order: Order) -> None:
        return None  # an adapter that routes every update by client order id needs nothing

    async def _close(self) -> None:
        return None
