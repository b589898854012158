"""Domain model: instruments, orders and fills.

All prices, quantities and amounts are fixed-point ints (see :mod:`hft.numbers`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, IntEnum

from hft import numbers


class Side(IntEnum):
    """Order side; the value is the sign of the position change."""

    BUY = 1
    SELL = -1

    @property
    def opposite(self) -> "Side":
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(str, Enum):
    LIMIT = "limit"
    MARKET = "market"


class TimeInForce(str, Enum):
    GTC = "GTC"  # rests until filled or canceled
    IOC = "IOC"  # fills what it can at once, the rest expires
    FOK = "FOK"  # fills completely at once or not at all


class OrderStatus(str, Enum):
    PENDING = "pending"  # sent, no answer yet: the venue may or may not have it
    OPEN = "open"  # acknowledged and resting
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"  # IOC/FOK remainder, self-trade prevention
    REJECTED = "rejected"

    @property
    def is_done(self) -> bool:
        return self in _DONE


_DONE = frozenset({OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED})


class Liquidity(str, Enum):
    MAKER = "maker"
    TAKER = "taker"


@dataclass(frozen=True, slots=True)
class Instrument:
    """A tradable market on one venue, with the venue's trading rules.

    ``symbol`` is the unified ``BASE/QUOTE`` name; ``venue_symbol`` is what the
    venue calls it (``BTCUSDT``). Fee rates are in ppm (1000 = 0.1 %).
    """

    venue: str
    symbol: str
    base: str
    quote: str
    tick_size: int
    lot_size: int
    min_qty: int = 0
    min_notional: int = 0
    maker_fee_ppm: int = 0
    taker_fee_ppm: int = 0
    venue_symbol: str = ""

    def round_price(self, price: int, side: Side) -> int:
        """Round a quote to the tick toward the passive side (bids down, asks up)."""
        return numbers.round_passive(price, self.tick_size, side is Side.BUY)

    def round_qty(self, qty: int) -> int:
        """Truncate a quantity to the lot."""
        return numbers.round_down(qty, self.lot_size)

    def check_order(self, price: int | None, qty: int) -> str | None:
        """Why an order breaks this venue's filters, or ``None`` if it does not."""
        if qty <= 0:
            return "quantity must be positive"
        if qty % self.lot_size:
            return f"quantity {numbers.to_str(qty)} is not a multiple of lot {numbers.to_str(self.lot_size)}"
        if qty < self.min_qty:
            return f"quantity {numbers.to_str(qty)} below minimum {numbers.to_str(self.min_qty)}"
        if price is not None:
            if price <= 0:
                return "price must be positive"
            if price % self.tick_size:
                return f"price {numbers.to_str(price)} is not a multiple of tick {numbers.to_str(self.tick_size)}"
            if numbers.mul(price, qty) < self.min_notional:
                return f"notional below minimum {numbers.to_str(self.min_notional)}"
        return None


@dataclass(slots=True)
class Order:
    """An order as the engine tracks it, keyed by its client order id."""

    client_order_id: str
    venue: str
    symbol: str
    side: Side
    qty: int
    price: int | None = None  # None for market orders
    order_type: OrderType = OrderType.LIMIT
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    status: OrderStatus = OrderStatus.PENDING
    venue_order_id: str | None = None
    filled_qty: int = 0
    filled_notional: int = 0
    fees: int = 0
    created_ns: int = 0
    updated_ns: int = 0
    tag: str = ""  # who asked for it: "mm:bid:0", "router:parent-7", …
    reject_reason: str = ""
    cancel_requested_ns: int = 0  # a cancel is on its way; don't send another
    risk_price: int = 0  # the price its open quantity is held at in the risk exposure (limit, or fair for market)

    @property
    def remaining_qty(self) -> int:
        return self.qty - self.filled_qty

    @property
    def is_open(self) -> bool:
        return not self.status.is_done


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of one of our orders. ``trade_id`` is the venue's, unique per venue."""

    venue: str
    symbol: str
    client_order_id: str
    trade_id: str
    side: Side
    price: int
    qty: int
    fee: int  # in ``fee_asset``; negative is a rebate
    fee_asset: str
    liquidity: Liquidity
    venue_order_id: str = ""
    ts_venue: int = 0  # venue's time, ns since epoch
    ts_recv: int = 0  # our receipt time, ns (engine clock)


@dataclass(slots=True)
class Balance:
    asset: str
    free: int
    locked: int = 0

    @property
    def total(self) -> int:
        return self.free + self.locked


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an adapter can do, so the engine asks instead of guessing (cf. ccxt's ``has``)."""

    post_only: bool = True
    market_orders: bool = True
    ioc: bool = True
    fok: bool = True
    cancel_all: bool = True
    user_stream: bool = True
    order_book_stream: bool = True
    cancel_on_disconnect: bool = False
    # False for a venue whose state does not outlive the process (the in-process simulator): a restart
    # neither replays its journaled fills nor reconciles with it
    persistent: bool = True

    def as_dict(self) -> dict[str, bool]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


@dataclass(slots=True)
class OpenOrderSnapshot:
    """An open order as a venue reports it on request (reconciliation)."""

    client_order_id: str
    venue_order_id: str
    symbol: str
    side: Side
    price: int | None
    qty: int
    filled_qty: int
    extra: dict = field(default_factory=dict)
