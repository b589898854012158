"""The ``ccxt`` venue: any exchange ccxt supports, REST through ``ccxt.async_support``, streams
through ``ccxt.pro`` where the exchange has them, REST polling where it has not.

YAML::

    venues:
      - name: binance
        type: ccxt
        symbols: [BTC/USDT]
        api_key: ${BINANCE_API_KEY}
        api_secret: ${BINANCE_API_SECRET}
        options:
          exchange: binance                  # any ccxt exchange id
          base_url: http://127.0.0.1:8765    # optional: a local Binance-dialect server

How wire data becomes events (the adapter only translates):

* **Books.** One task per symbol loops ``watch_order_book``; ccxt keeps the book (snapshot,
  buffered diffs, ``U``/``u`` continuity). After each resolve the adapter compares ccxt's book
  with the state it last emitted and sends only the changed levels as a :class:`BookDelta`,
  numbered with its *own* per-symbol sequence (``seq + 1``; never a gap from us). The first
  book after a (re)subscription, after an error or on the engine's ``resync_book`` is sent as
  a :class:`BookSnapshot`. A gap ccxt detects (``ChecksumError``: the venue's ``U`` did not
  follow the previous ``u``) is forwarded as a gap: an empty delta whose range skips one
  number, so the engine's own path runs (gap counted, that one book invalidated, resync
  asked). A dropped stream (any other ``NetworkError``) is :class:`VenueStatus` down, which
  invalidates every book of the venue until each has a fresh snapshot. Without
  ``watchOrderBook`` the same diffing runs over ``fetch_order_book`` polls.
* **Numbers.** The ccxt client runs with ``exchange.number = str`` (ccxt's documented string
  mode): markets, orders, trades, fees and balances arrive as the venue's own decimal strings
  and go straight into :func:`hft.numbers.parse`. Order-book levels are the one place ccxt
  still hands out floats (its book sides store ``float``): they are converted with
  ``numbers.parse(repr(x))``, which is exact because ``repr`` gives the shortest decimal that
  round-trips and venue prices and sizes have at most 15 significant digits (a value with more
  decimals than our 9 is a :class:`MessageDropped`, never a rounding). Amounts and prices go
  out as decimal strings (``numbers.to_str``) that ccxt formats with its string-based
  ``amount_to_precision``/``price_to_precision``. No float arithmetic touches a price or size.
* **Orders.** The engine's client order id (optionally prefixed by
  ``client_order_id_prefix``) is sent as ``clientOrderId``, so every order can be found by an
  id we chose. A submit that fails with an *unknown outcome* (timeout, 5xx, dropped
  connection) is never resent: the adapter asks for the order by client id (retried with
  backoff and jitter — a query is idempotent) until it is found (→ accepted / filled /
  canceled events) or has been reported absent ``lost_order_checks`` times, the last of them
  after the request's execution horizon (the venue's ``recvWindow``: a request older than that
  is refused, so it can no longer turn into an order) — then ``OrderRejected("not received by
  venue")``; should it turn up later anyway, reconciliation cancels it at once. A submit the
  venue *refused* before executing it (429/418, too many orders, clock skew) is sent again with
  the same client id after the backoff. Permanent errors are :class:`OrderRejected` with the
  venue's reason. Cancels are idempotent: retried on
  transient errors; "unknown order" or an exhausted retry queries the order and emits what it
  is (canceled, filled) or :class:`CancelRejected`.
* **Fills** come from ``watch_my_trades`` (and the fills in a submit's answer), always with the
  venue's trade id; the adapter emits each trade id once. Whenever the venue reports an order
  filled further than the fills we have, its trades are fetched (``fetch_order_trades``), so a
  terminal state never hides a missed fill. ``watch_orders`` gives acknowledgements and
  cancels.
* **Reconciliation.** Every ``reconcile_interval_s`` (at once when the user stream fails, and
  again once it has resubscribed — without waiting for an event that may never come; every
  ``order_poll_interval_s`` without a user stream) open orders are fetched per symbol: orders
  we track but the venue no longer lists are queried and settled, open orders we had given up
  as lost are cancelled, fill counts are checked. A resubscribed user stream is also announced
  as ``VenueStatus(connected=True)``, on which the engine runs its own reconciliation
  (:mod:`hft.recovery`) through :meth:`fetch_fills`; fills returned there count as delivered,
  so the stream never sends them again. Duplicate events are harmless: the engine ignores
  acknowledgements and cancels for orders already past that state and dedups fills by trade id.
* **Shutdown.** ``cancel_all`` first lets orders still in flight reach the venue, cancels
  (``cancel_all_orders`` per symbol, "nothing open" is fine), then queries every order still
  live in our view and fetches every missing fill, so the engine's final positions are the
  venue's.
* **Rate limiting has one owner**, chosen by ``rate_limit``. ``adapter`` (default): the
  adapter's token bucket paces every REST call ccxt makes, with ccxt's own per-endpoint costs
  (ccxt computes the cost and calls ``throttle(cost)``, which is the bucket; ccxt's throttler
  never runs) at ``rate_limit_per_s`` cost units per second (default: ccxt's ``rateLimit``),
  and every 429/418 closes the bucket for the venue's ``Retry-After`` (or
  ``retry_after_default_s``), so no request at all goes out while the venue asks us to wait —
  that is what keeps a 429 from escalating to a 418 ban. ``ccxt``: ccxt's ``enableRateLimit``
  throttler paces instead (the adapter still honours ``Retry-After`` before a retry). ``off``:
  no pacing (local servers, benchmarks).
* **Secrets.** ccxt exception texts can quote signed URLs: every message is passed through
  :func:`venues.ccxt_errors.clean_message` (registered secrets and signatures masked).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Literal

import ccxt
import ccxt.async_support as ccxt_async
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from hft import ids, numbers
from hft.errors import VenueError
from hft.events import (
    BookDelta,
    BookSnapshot,
    CancelRejected,
    MessageDropped,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    VenueStatus,
)
from hft.model import (
    Balance,
    Capabilities,
    Fill,
    Instrument,
    Liquidity,
    OpenOrderSnapshot,
    Order,
    OrderType,
    Side,
    TimeInForce,
)
from hft.secrets import register_secret
from hft.venue import VenueAdapter
from venues.ccxt_errors import Outcome, clean_message, outcome, reject_reason, to_hft_error

try:  # ccxt.pro ships with ccxt >= 4; keep REST-only use possible without it
    import ccxt.pro as ccxt_pro
except ImportError:  # pragma: no cover
    ccxt_pro = None

__all__ = ["CcxtOptions", "CcxtVenueAdapter", "RateGate", "to_fixed"]

log = logging.getLogger(__name__)

_CID_PREFIX = re.compile(r"^[A-Za-z0-9_.:/-]{0,16}$")
_SEEN_TRADES_KEPT = 200_000
_DONE_ORDERS_KEPT = 20_000
_PENDING_TRADES_KEPT = 10_000
_MISSING_FILLS_DELAY_S = 0.3  # a stream fill may be a moment behind its order update
_RESUBSCRIBE_SETTLE_S = 0.5  # after a user-stream reconnect, reconcile once the subscription is (surely) made
_SINGLE_LOOKUPS_MAX = 5  # more orders of unknown client id than this: fetch them in pages (fetch_orders)
_ORDER_LOOKBACK_MS = 60_000  # an order filled in the window was created at most this long before it, mostly
_ORDER_PAGES_MAX = 20
_DEFAULT_HORIZON_S = 10.0  # a lost request's execution horizon on a venue without a signed-request window
_CLOCK_TOLERANCE_S = 1.0  # Binance accepts timestamps up to 1 s ahead of its clock
_IN_FLIGHT_WAIT_S = 2.0  # a cancel-all waits this long at most for submits on their way, then looks again


class CcxtOptions(BaseModel):
    """``options`` of a ``type: ccxt`` venue."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    exchange: str = Field(description="ccxt exchange id (binance, kraken, okx, ...)")
    base_url: str | None = Field(
        None,
        description="Send REST and websockets to this server instead (http://127.0.0.1:PORT, a local "
        "Binance-dialect exchange server); websocket URLs are derived from it (venues/ccxt_local).",
    )
    sandbox: bool = Field(False, description="Use the exchange's testnet (ccxt set_sandbox_mode)")
    timeout_ms: int = Field(10_000, gt=0, description="Timeout of one REST request, ms")
    recv_window_ms: int | None = Field(
        None, gt=0, description="Signed-request validity window (Binance recvWindow); null: ccxt's default"
    )
    rate_limit: Literal["adapter", "ccxt", "off"] = Field(
        "adapter",
        description="Who paces REST calls: 'adapter' (token bucket with ccxt's endpoint costs + Retry-After), "
        "'ccxt' (ccxt's enableRateLimit), 'off'",
    )
    rate_limit_per_s: float | None = Field(
        None, gt=0, description="Bucket refill, ccxt cost units per second; null: 1000 / ccxt's rateLimit"
    )
    rate_limit_burst: float | None = Field(None, gt=0, description="Bucket size, cost units; null: one second's worth")
    retry_after_default_s: float = Field(1.0, ge=0, description="Pause after a 429/418 that names no Retry-After, s")
    max_retries: int = Field(4, ge=0, description="Retries of an idempotent call (query, cancel) on transient errors")
    retry_backoff_s: float = Field(0.05, ge=0, description="First retry delay (exponential, jittered), s")
    retry_backoff_max_s: float = Field(2.0, ge=0, description="Largest retry delay, s")
    lost_order_checks: int = Field(
        4, ge=1, description="Queries by client id that must find nothing before a lost submit counts as not received"
    )
    lost_order_check_interval_s: float = Field(0.25, ge=0, description="Pause between those queries, s")
    lost_order_horizon_s: float | None = Field(
        None, ge=0, description="How long after its request a venue may still execute an order, s: a lost submit "
        "is not declared not received before then (+1 s clock tolerance); null: the signed-request window "
        "(recvWindow) where the exchange has one, else 10 s",
    )
    reconnect_backoff_s: float = Field(0.1, ge=0, description="First delay before resubscribing a failed stream, s")
    reconnect_backoff_max_s: float = Field(5.0, ge=0, description="Largest resubscribe delay, s")
    use_streams: bool = Field(True, description="Use ccxt.pro streams where the exchange has them (false: poll REST)")
    book_depth: int | None = Field(None, gt=0, description="Levels per side to subscribe; null: the exchange's default")
    book_poll_interval_s: float = Field(0.5, gt=0, description="Book polling period without watchOrderBook, s")
    order_poll_interval_s: float = Field(1.0, gt=0, description="Order/fill polling period without a user stream, s")
    reconcile_interval_s: float = Field(
        5.0, ge=0, description="Period of the REST reconciliation of open orders and fills, s; 0 disables"
    )
    client_order_id_prefix: str = Field(
        "", description="Prepended to the engine's client order ids on the wire (at most 16 of [A-Za-z0-9_.:/-])"
    )
    cancel_all_scope: Literal["ours", "account"] = Field(
        "ours",
        description="What cancel-all (shutdown, kill switch, watchdog) cancels: 'ours' (our open orders, one "
        "request each; others' orders on the account stay) or 'account' (the venue's cancel-all endpoint: one "
        "request, every order of the account on the symbol)",
    )
    max_client_order_id_length: int = Field(36, ge=8, description="Longest client order id the venue accepts")
    maker_fee_bps: Decimal | None = Field(None, description="Override the market's maker fee, bp; null: ccxt's")
    taker_fee_bps: Decimal | None = Field(None, description="Override the market's taker fee, bp; null: ccxt's")
    ccxt_options: dict[str, Any] = Field(
        default_factory=dict, description="Merged into the ccxt exchange's options (e.g. defaultType)"
    )

    @field_validator("exchange")
    @classmethod
    def _known_exchange(cls, v: str) -> str:
        if v not in ccxt.exchanges:
            raise ValueError(f"unknown ccxt exchange id {v!r}")
        return v

    @field_validator("client_order_id_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not _CID_PREFIX.fullmatch(v):
            raise ValueError("use at most 16 characters of A-Z a-z 0-9 _ . : / -")
        return v

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+/?$", v):
            raise ValueError("expected http://host:port (no path)")
        return v.rstrip("/") if v else v

    @model_validator(mode="after")
    def _sandbox_or_url(self) -> "CcxtOptions":
        if self.sandbox and self.base_url:
            raise ValueError("sandbox and base_url exclude each other")
        return self


# ============================================================================ plumbing


class RateGate:
    """The adapter's token bucket (one per venue) plus the venue's "wait" (Retry-After).

    ``acquire(cost)`` is installed as the ccxt client's ``throttle``; ccxt calls it with its own
    endpoint cost before every REST request. A cost above the bucket size is allowed to drive
    the level negative (it waits until the level is positive), so one heavy call never blocks
    forever. ``block(seconds)`` closes the gate for everybody.
    """

    def __init__(self, rate_per_s: float | None, burst: float | None) -> None:
        self.rate = rate_per_s  # None: no pacing, only the Retry-After gate
        self.burst = burst or (rate_per_s or 0.0)
        self.tokens = self.burst
        self.updated = time.monotonic()
        self.blocked_until = 0.0
        self.waited_s = 0.0
        self.blocks = 0
        self._lock = asyncio.Lock()

    def block(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        if until > self.blocked_until:
            self.blocked_until = until
            self.blocks += 1

    def remaining_block(self) -> float:
        return max(0.0, self.blocked_until - time.monotonic())

    async def acquire(self, cost: float | None = None) -> None:
        cost = 1.0 if cost is None else float(cost)
        async with self._lock:  # first come, first served
            start = time.monotonic()
            while True:
                now = time.monotonic()
                if now < self.blocked_until:
                    await asyncio.sleep(self.blocked_until - now)
                    continue
                if self.rate is None:
                    break
                self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens > 0 and (self.tokens >= cost or self.tokens >= self.burst):
                    self.tokens -= cost
                    break
                await asyncio.sleep(max(min(cost, self.burst) - self.tokens, 0.001) / self.rate)
            self.waited_s += time.monotonic() - start


class _Backoff:
    def __init__(self, first: float, most: float) -> None:
        self.first, self.most, self.n = first, most, 0

    def next(self) -> float:
        d = min(self.most, self.first * (2**self.n))
        self.n += 1
        return d * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.n = 0


def to_fixed(value: Any) -> int:
    """A ccxt number (decimal string in string mode, float in books) to fixed point, exactly."""
    if isinstance(value, str):
        return numbers.parse(value)
    if isinstance(value, float):
        return numbers.parse(repr(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return value * numbers.SCALE
    if isinstance(value, Decimal):
        return numbers.parse(value)
    raise ValueError(f"not a number: {value!r}")


def _opt_fixed(value: Any, default: int = 0) -> int:
    return default if value is None or value == "" else to_fixed(value)


@dataclass(slots=True)
class _Tracked:
    """What the adapter knows of one of our orders."""

    order: Order
    wire_id: str
    venue_id: str | None = None
    accepted: bool = False
    done: bool = False
    lost: bool = False  # declared not received; cancel it if it ever shows up
    filled: int = 0  # sum of the fills emitted
    venue_filled: int = 0  # the most the venue said was filled
    submit_task: asyncio.Task | None = None
    fills_task: asyncio.Task | None = None
    sent_ns: int = 0


@dataclass(slots=True)
class _BookFeed:
    symbol: str
    seq: int = 0
    bids: dict = field(default_factory=dict)  # ccxt price -> ccxt size, as last emitted
    asks: dict = field(default_factory=dict)
    source: Any = None  # the ccxt book object the state was taken from
    need_snapshot: bool = True
    healthy: bool = False


def _levels(side: Any) -> dict:
    try:
        return dict(side)
    except (TypeError, ValueError):  # counted/indexed books carry a third element
        return {lvl[0]: lvl[1] for lvl in side}


# ============================================================================ the adapter


class CcxtVenueAdapter(VenueAdapter):
    """A live venue through ccxt (any exchange id); see the module docstring for the design."""

    type_name = "ccxt"
    description = "any ccxt exchange: REST via ccxt.async_support, streams via ccxt.pro (polling otherwise)"
    capabilities = Capabilities()  # refined per exchange from ``exchange.has`` at connect
    Options = CcxtOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        register_secret(self._api_key)  # ccxt error texts and debug logs must never show them
        register_secret(self._api_secret)
        self.exchange: Any = None
        self.gate: RateGate | None = None
        self.stats: Counter[str] = Counter()
        self._orders: OrderedDict[str, _Tracked] = OrderedDict()  # by engine client order id
        # Venue order and trade ids are per symbol (Binance counts each market from 1): keys are (symbol, id).
        self._by_vid: dict[tuple[str, str], _Tracked] = {}
        self._seen_trades: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._pending_trades: OrderedDict[tuple[str, str], list[dict]] = OrderedDict()  # early trades of an order
        # (symbol, venue order id) -> its client order id on the wire (None: it has none), for orders this process
        # did not send; an order's ids never change, so each is looked up once, not at every reconciliation
        self._wire_of: OrderedDict[tuple[str, str], str | None] = OrderedDict()
        self._feeds: dict[str, _BookFeed] = {}
        self._px_cache: dict[float, int] = {}
        self._md_down = False
        self._user_down = False
        self._streams_books = False
        self._streams_orders = False
        self._streams_trades = False
        self._reconcile_now: asyncio.Event | None = None
        self._cancel_tasks: dict[str, asyncio.Task] = {}

    # ------------------------------------------------------------------ lifecycle
    def _make_exchange(self) -> Any:
        o: CcxtOptions = self.options
        pro = o.use_streams and ccxt_pro is not None and hasattr(ccxt_pro, o.exchange)
        cls = getattr(ccxt_pro if pro else ccxt_async, o.exchange)
        cfg: dict[str, Any] = {"timeout": o.timeout_ms, "enableRateLimit": o.rate_limit != "off"}
        if self._api_key:
            cfg["apiKey"] = self._api_key
        if self._api_secret:
            cfg["secret"] = self._api_secret
        ex = cls(cfg)
        ex.number = str  # decimal strings, not floats, in orders, trades, balances and markets
        if o.base_url:
            from venues.ccxt_local import point_at_local

            point_at_local(ex, o.base_url)
        elif o.sandbox:
            ex.set_sandbox_mode(True)
        if o.recv_window_ms is not None:
            ex.options["recvWindow"] = o.recv_window_ms
        ex.options.update(o.ccxt_options)
        if o.rate_limit == "adapter":
            rate = o.rate_limit_per_s or (1000.0 / ex.rateLimit if ex.rateLimit else None)
            self.gate = RateGate(rate, o.rate_limit_burst)
            ex.throttle = self.gate.acquire  # ccxt's fetch2 awaits throttle(cost): the one pacer
        else:
            self.gate = RateGate(None, None)  # only the Retry-After gate, consulted by our retries
        gate = self.gate
        original = ex.on_rest_response

        def on_rest_response(code, reason, url, method, headers, body, req_headers, req_body):  # noqa: ANN001
            self.stats["requests"] += 1
            if code in (418, 429):
                self.stats[f"http_{code}"] += 1
                retry_after = _retry_after(headers, o.retry_after_default_s)
                gate.block(retry_after)
                log.warning("venue %s: HTTP %s, pausing REST for %.1fs", self.name, code, retry_after)
            return original(code, reason, url, method, headers, body, req_headers, req_body)

        ex.on_rest_response = on_rest_response
        return ex

    async def _connect(self) -> None:
        self.exchange = ex = self._make_exchange()
        self._reconcile_now = asyncio.Event()
        try:
            await self._call("load markets", ex.load_markets, idempotent=True)
            if self._api_key:
                await self._call("fetch balance", ex.fetch_balance, idempotent=True)  # proves the keys work
        except ccxt.BaseError as exc:
            raise to_hft_error(exc, self.name, "connect") from None
        has = ex.has
        o: CcxtOptions = self.options
        streams = o.use_streams and bool(has.get("ws"))
        self._streams_books = streams and bool(has.get("watchOrderBook"))
        self._streams_orders = streams and bool(has.get("watchOrders"))
        self._streams_trades = streams and bool(has.get("watchMyTrades"))
        self.capabilities = Capabilities(
            post_only=has.get("createPostOnlyOrder") is not False,
            market_orders=has.get("createMarketOrder") is not False,
            ioc=True,
            fok=True,
            cancel_all=bool(has.get("cancelAllOrders")),
            user_stream=self._streams_orders,
            order_book_stream=self._streams_books,
        )
        if self._api_key:
            if self._streams_orders:
                self.spawn(self._orders_stream(), "orders")
            if self._streams_trades:
                self.spawn(self._trades_stream(), "my-trades")
            self.spawn(self._reconcile_loop(), "reconcile")

    async def _load_instruments(self) -> dict[str, Instrument]:
        ex = self.exchange
        out = {}
        for symbol in self.symbols:
            market = ex.markets.get(symbol)
            if market is None:
                continue
            try:
                out[symbol] = self._instrument(symbol, market)
            except (ValueError, TypeError, KeyError) as exc:
                raise VenueError(f"venue {self.name}: cannot read the trading rules of {symbol}: {exc}") from None
        return out

    def _instrument(self, symbol: str, m: dict) -> Instrument:
        o: CcxtOptions = self.options
        precision, limits = m.get("precision") or {}, m.get("limits") or {}
        tick = self._step(precision.get("price"))
        lot = self._step(precision.get("amount"))
        min_qty = _opt_fixed((limits.get("amount") or {}).get("min"), lot) or lot
        min_notional = _opt_fixed((limits.get("cost") or {}).get("min"), 0)

        def ppm(rate: Any, bps: Decimal | None) -> int:
            if bps is not None:
                return int(bps * 100)
            return to_fixed(rate) * numbers.PPM // numbers.SCALE if rate is not None else 0

        return Instrument(
            venue=self.name, symbol=symbol, base=m["base"], quote=m["quote"], tick_size=tick, lot_size=lot,
            min_qty=min_qty, min_notional=min_notional, maker_fee_ppm=ppm(m.get("maker"), o.maker_fee_bps),
            taker_fee_ppm=ppm(m.get("taker"), o.taker_fee_bps), venue_symbol=str(m.get("id") or ""),
        )

    def _step(self, value: Any) -> int:
        """A market precision as a step: TICK_SIZE mode gives the step, DECIMAL_PLACES a digit count."""
        if value is None:
            raise ValueError("no precision")
        mode = self.exchange.precisionMode
        if mode == ccxt.TICK_SIZE:
            step = to_fixed(value)
        elif mode == ccxt.DECIMAL_PLACES:
            places = int(to_fixed(value) // numbers.SCALE)
            if places > numbers.SCALE_DIGITS:
                raise ValueError(f"{places} decimal places exceed the fixed-point scale")
            step = 10 ** (numbers.SCALE_DIGITS - places)
        else:
            raise ValueError("significant-digit precision has no fixed tick")
        if step <= 0:
            raise ValueError(f"step {value!r} is not positive")
        return step

    async def _close(self) -> None:
        ex, self.exchange = self.exchange, None
        if ex is not None:
            try:
                await ex.close()
            except Exception as exc:  # noqa: BLE001 - closing must not fail the shutdown
                log.debug("venue %s: closing ccxt: %s", self.name, clean_message(exc))

    # ------------------------------------------------------------------ REST calls
    async def _call(self, what: str, fn: Callable[..., Any], *args: Any, idempotent: bool, **kwargs: Any) -> Any:
        """Call ccxt; retry what the venue refused (429, clock) and, if idempotent, what may not have arrived.

        Backoff is exponential with jitter and never shorter than the venue's Retry-After.
        """
        o: CcxtOptions = self.options
        gate = self.gate

        def retryable(exc: BaseException) -> bool:
            kind = outcome(exc)
            return kind is Outcome.REFUSED or (idempotent and kind is Outcome.UNKNOWN)

        def wait(state: RetryCallState) -> float:
            n = state.attempt_number
            d = min(o.retry_backoff_max_s, o.retry_backoff_s * (2 ** (n - 1))) * random.uniform(0.5, 1.0)
            return max(d, gate.remaining_block() if gate is not None else 0.0)

        def before_sleep(state: RetryCallState) -> None:
            self.stats["retries"] += 1
            exc = state.outcome.exception() if state.outcome is not None else None
            log.info("venue %s: %s: %s, retrying", self.name, what, clean_message(exc) if exc else "?")

        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(o.max_retries + 1),
            wait=wait,
            retry=retry_if_exception(retryable),
            before_sleep=before_sleep,
            reraise=True,
        ):
            with attempt:
                return await fn(*args, **kwargs)
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ books
    async def _subscribe_books(self, symbols: list[str]) -> None:
        for symbol in symbols:
            self._feeds[symbol] = _BookFeed(symbol)
            if self._streams_books:
                self.spawn(self._book_stream(symbol), f"book:{symbol}")
            else:
                self.spawn(self._book_poll(symbol), f"book-poll:{symbol}")

    async def _resync_book(self, symbol: str) -> None:
        feed = self._feeds.get(symbol)
        if feed is None:
            return
        feed.need_snapshot = True
        ob = self.exchange.orderbooks.get(symbol) if self._streams_books and self.exchange is not None else None
        if feed.healthy and ob is not None and ob is feed.source and ob.get("nonce") is not None:
            self._on_book(feed, ob)  # ccxt's book is sound: send it now rather than at the next diff

    async def _book_stream(self, symbol: str) -> None:
        ex = self.exchange
        feed = self._feeds[symbol]
        backoff = _Backoff(self.options.reconnect_backoff_s, self.options.reconnect_backoff_max_s)
        limit = self.options.book_depth
        while True:
            try:
                ob = await ex.watch_order_book(symbol, limit)
            except ccxt.ChecksumError as exc:
                self._book_gap(feed, exc)
                # ccxt has dropped its book; the next watch resubscribes and takes a REST snapshot (a heavy
                # request): soon, but not in a tight loop if the venue keeps skipping
                await asyncio.sleep(backoff.next())
                continue
            except ccxt.ExchangeClosedByUser:
                return
            except Exception as exc:  # noqa: BLE001 - network or anything else: down, back off, resubscribe
                self._market_data_down(symbol, exc)
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            self._on_book(feed, ob)

    async def _book_poll(self, symbol: str) -> None:
        ex = self.exchange
        feed = self._feeds[symbol]
        backoff = _Backoff(self.options.reconnect_backoff_s, self.options.reconnect_backoff_max_s)
        while True:
            try:
                ob = await self._call("poll book", ex.fetch_order_book, symbol, self.options.book_depth, idempotent=True)
            except Exception as exc:  # noqa: BLE001
                self._market_data_down(symbol, exc)
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            feed.source = ob  # each poll is a new object: diff against the last one
            self._on_book(feed, ob, polled=True)
            await asyncio.sleep(self.options.book_poll_interval_s)

    def _book_gap(self, feed: _BookFeed, exc: BaseException) -> None:
        """ccxt saw the venue's sequence jump: tell the engine with a delta that does not chain."""
        self.stats["book_gaps"] += 1
        log.info("venue %s: %s sequence gap: %s", self.name, feed.symbol, clean_message(exc))
        feed.healthy = False
        feed.need_snapshot = True
        if feed.seq:  # before the first snapshot the engine's book is not valid anyway
            feed.seq += 2
            now = self.clock.mono_ns()
            self.emit(BookDelta(self.name, feed.symbol, [], [], feed.seq, feed.seq, 0, now))

    def _market_data_down(self, symbol: str, exc: BaseException) -> None:
        self.stats["book_stream_errors"] += 1
        for f in self._feeds.values():
            f.need_snapshot = True
            f.healthy = False
        if isinstance(exc, ccxt.BaseError) or isinstance(exc, (OSError, asyncio.TimeoutError)):
            reason = f"{symbol} market data: {type(exc).__name__}: {clean_message(exc)}"
        else:  # ccxt choked on a message: count it as malformed
            reason = f"{symbol} book: {type(exc).__name__}: {clean_message(exc)}"
            self.emit(MessageDropped(self.name, reason, self.clock.mono_ns()))
        if not self._md_down:
            self._md_down = True
            log.warning("venue %s: %s", self.name, reason)
            self.emit(VenueStatus(self.name, False, reason, self.clock.mono_ns()))

    def _on_book(self, feed: _BookFeed, ob: Any, polled: bool = False) -> None:
        """ccxt's current book → a snapshot (first time, after errors) or the changed levels."""
        now = self.clock.mono_ns()
        ts = ob.get("timestamp")
        ts_venue = int(ts) * 1_000_000 if ts else 0
        try:
            bids, asks = _levels(ob["bids"]), _levels(ob["asks"])
            if feed.need_snapshot or (not polled and ob is not feed.source):
                ev_bids = [(self._px(p), to_fixed(s)) for p, s in bids.items()]
                ev_asks = [(self._px(p), to_fixed(s)) for p, s in asks.items()]
                ev_bids.sort(reverse=True)
                ev_asks.sort()
                feed.seq += 1
                event: Any = BookSnapshot(self.name, feed.symbol, ev_bids, ev_asks, feed.seq, ts_venue, now)
            else:
                db = self._diff(feed.bids, bids)
                da = self._diff(feed.asks, asks)
                if not db and not da:
                    return
                feed.seq += 1
                event = BookDelta(self.name, feed.symbol, db, da, feed.seq, feed.seq, ts_venue, now)
        except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
            self.stats["dropped"] += 1
            feed.need_snapshot = True
            self.emit(MessageDropped(self.name, f"{feed.symbol} book level: {clean_message(str(exc))}", now))
            return
        feed.bids, feed.asks, feed.source = bids, asks, ob
        feed.need_snapshot = False
        feed.healthy = True
        self.stats["book_events"] += 1
        self.emit(event)
        if isinstance(event, BookSnapshot):
            self.stats["book_snapshots"] += 1
            if self._md_down and all(f.healthy for f in self._feeds.values()):
                self._md_down = False
                self.emit(VenueStatus(self.name, True, "market data resynced", now, reconcile=False))

    def _diff(self, old: dict, new: dict) -> list[tuple[int, int]]:
        changed = new.items() - old.items()
        out = [(self._px(p), to_fixed(s)) for p, s in changed]
        for p in old.keys() - new.keys():
            out.append((self._px(p), 0))
        return out

    def _px(self, price: Any) -> int:
        cache = self._px_cache
        v = cache.get(price)
        if v is None:
            v = to_fixed(price)
            if len(cache) > 100_000:
                cache.clear()
            cache[price] = v
        return v

    # ------------------------------------------------------------------ orders: submit
    def _submit(self, order: Order) -> None:
        cid = order.client_order_id
        wire_id = self.options.client_order_id_prefix + cid
        now = self.clock.mono_ns()
        if self.exchange is None or not self.connected:
            self.emit(OrderRejected(self.name, cid, "venue not connected", now))
            return
        if len(wire_id) > self.options.max_client_order_id_length:
            self.emit(OrderRejected(self.name, cid, f"client order id {wire_id!r} is too long for the venue", now))
            return
        if cid in self._orders:
            self.emit(OrderRejected(self.name, cid, "client order id already used", now))
            return
        st = _Tracked(order, wire_id, sent_ns=now)
        self._keep(cid, st)
        st.submit_task = self.spawn(self._submit_task(st), f"submit:{cid}")

    def _keep(self, cid: str, st: _Tracked) -> None:
        self._orders[cid] = st
        if len(self._orders) > _DONE_ORDERS_KEPT:
            for old_cid in list(self._orders)[: len(self._orders) // 10]:
                old = self._orders[old_cid]
                if old.done:
                    del self._orders[old_cid]
                    if old.venue_id is not None:
                        self._by_vid.pop((old.order.symbol, old.venue_id), None)

    def _create_args(self, order: Order) -> tuple:
        params: dict[str, Any] = {"clientOrderId": self._orders[order.client_order_id].wire_id}
        price = None
        if order.order_type is OrderType.MARKET:
            kind = "market"
        else:
            kind = "limit"
            price = numbers.to_str(order.price or 0)
            if order.post_only:
                params["postOnly"] = True
            elif order.time_in_force is not TimeInForce.GTC:
                params["timeInForce"] = order.time_in_force.value
        side = "buy" if order.side is Side.BUY else "sell"
        return order.symbol, kind, side, numbers.to_str(order.qty), price, params

    async def _submit_task(self, st: _Tracked) -> None:
        order = st.order
        ex = self.exchange
        self.stats["submits"] += 1
        try:
            # not idempotent: only a request the venue refused before executing it is sent again
            result = await self._call("create order", ex.create_order, *self._create_args(order), idempotent=False)
        except Exception as exc:  # noqa: BLE001
            kind = outcome(exc)
            if kind is Outcome.PERMANENT:
                self._reject(st, reject_reason(exc))
            elif kind is Outcome.REFUSED:
                self._reject(st, f"refused by the venue after retries: {reject_reason(exc)}")
            else:
                self.stats["submit_unknown_outcome"] += 1
                log.warning(
                    "venue %s: submit %s outcome unknown (%s); resolving by client order id",
                    self.name, st.wire_id, clean_message(exc),
                )
                await self._resolve_lost(st, exc)
            return
        self._on_venue_order(result, immediate=True)

    async def _resolve_lost(self, st: _Tracked, cause: BaseException) -> None:
        """The submit's answer was lost: find the order by client id; never send it again.

        A request still in flight can execute until the venue's validity window after it was
        signed has passed (Binance refuses a request older than its ``recvWindow``). So the order
        is declared not received only once ``lost_order_checks`` queries found nothing *and* the
        last of them was sent after that horizon; a query that itself fails is tried again (with
        backoff) for as long as it takes.
        """
        o: CcxtOptions = self.options
        loop = asyncio.get_running_loop()
        horizon = loop.time() + self._execution_horizon_s()  # the request was signed before it failed
        absent = 0
        backoff = _Backoff(o.lost_order_check_interval_s or 0.05, o.reconnect_backoff_max_s)
        while True:
            if st.accepted or st.done:
                return  # the user stream told us meanwhile
            asked_at = loop.time()
            try:
                found = await self._query(st)
            except ccxt.OrderNotFound:
                absent += 1
                if absent >= o.lost_order_checks and asked_at >= horizon:
                    break
                pause = o.lost_order_check_interval_s
                if absent >= o.lost_order_checks:  # enough answers; only the horizon is left to wait for
                    pause = max(pause, min(1.0, horizon - loop.time()))
                await asyncio.sleep(max(0.0, pause))
                continue
            except Exception as exc:  # noqa: BLE001 - no answer yet: ask again
                log.warning("venue %s: looking up %s: %s", self.name, st.wire_id, clean_message(exc))
                await asyncio.sleep(backoff.next())
                continue
            self.stats["lost_submits_found"] += 1
            self._on_venue_order(found)
            await self._ensure_fills(st)
            return
        if st.accepted or st.done:
            return
        self.stats["lost_submits_rejected"] += 1
        st.lost = True
        self._reject(st, f"not received by venue (no order {st.wire_id} in {absent} checks up to its execution "
                         f"horizon; {type(cause).__name__}: {clean_message(cause)})")
        self._reconcile_soon()

    def unknown_outcome_horizon_s(self) -> float:
        return self.options.timeout_ms / 1000 + self._execution_horizon_s()

    def _execution_horizon_s(self) -> float:
        """Seconds after a request within which the venue may still execute it, with clock tolerance."""
        o: CcxtOptions = self.options
        if o.lost_order_horizon_s is not None:
            return o.lost_order_horizon_s + _CLOCK_TOLERANCE_S
        window_ms = self.exchange.options.get("recvWindow") if self.exchange is not None else None
        try:
            window_s = float(window_ms) / 1e3 if window_ms is not None else _DEFAULT_HORIZON_S
        except (TypeError, ValueError):
            window_s = _DEFAULT_HORIZON_S
        return window_s + _CLOCK_TOLERANCE_S

    async def _query(self, st: _Tracked) -> dict:
        ex = self.exchange
        return await self._call(
            "fetch order", ex.fetch_order, st.venue_id, st.order.symbol, {"clientOrderId": st.wire_id}, idempotent=True
        )

    def _reject(self, st: _Tracked, reason: str) -> None:
        if st.accepted or st.done:
            return
        st.done = True
        self.emit(OrderRejected(self.name, st.order.client_order_id, reason, self.clock.mono_ns()))

    # ------------------------------------------------------------------ orders: what the venue says
    def _tracked_for(self, o: dict) -> _Tracked | None:
        vid = o.get("id")
        st = self._by_vid.get((o.get("symbol"), str(vid))) if vid is not None else None
        if st is not None:
            return st
        wire = o.get("clientOrderId")
        if not wire:
            return None
        prefix = self.options.client_order_id_prefix
        if prefix and not wire.startswith(prefix):
            return None
        return self._orders.get(wire[len(prefix):])

    def _own_cid(self, wire: str | None) -> str | None:
        """The engine's client order id behind a venue's ``clientOrderId``; ``None`` if not one of ours.

        Ours: sent by this process, or ``client_order_id_prefix`` followed by an id of the engine's
        shape (an earlier run's). Orders placed on the same account by hand or by other programs
        are left alone: not adopted, not cancelled, their trades not counted.
        """
        if not wire:
            return None
        prefix = self.options.client_order_id_prefix
        if not wire.startswith(prefix):
            return None
        cid = wire[len(prefix):]
        return cid if cid in self._orders or ids.is_client_order_id(cid) else None

    def _on_venue_order(self, o: dict, *, immediate: bool = False) -> None:
        """A ccxt order (submit answer, stream update, query) → the events it implies, each at most once."""
        try:
            st = self._tracked_for(o)
            if st is None:
                return
            if o.get("id") is not None and st.venue_id is None:
                self._learn_venue_id(st, str(o["id"]))
            status = o.get("status")
            venue_filled = _opt_fixed(o.get("filled"), 0)
        except (ValueError, TypeError, AttributeError) as exc:
            self._dropped(f"order update: {exc}")
            return
        now = self.clock.mono_ns()
        cid = st.order.client_order_id
        if st.lost:
            # an order we had reported as never received turned up: it must not live on
            if status in ("open", None):
                self._spawn_cancel(st)
            self._flush_pending_trades(st)  # its fills count, whatever we had declared
            for t in o.get("trades") or ():
                self._on_trade_of(st, t, Liquidity.TAKER if immediate else None)
            if venue_filled > st.venue_filled:
                st.venue_filled = venue_filled
            if st.venue_filled > st.filled:
                self._fills_later(st)
            return
        if status == "rejected" and not st.accepted:
            self._reject(st, "rejected by venue")
            return
        if not st.accepted and st.venue_id is not None:
            st.accepted = True
            self.emit(OrderAccepted(self.name, cid, st.venue_id, now))
            self._flush_pending_trades(st)
        for t in o.get("trades") or ():
            self._on_trade_of(st, t, Liquidity.TAKER if immediate else None, o.get("timestamp"))
        if venue_filled > st.venue_filled:
            st.venue_filled = venue_filled
        if st.done:
            return
        if status in ("canceled", "expired"):
            st.done = True
            self.emit(OrderCanceled(self.name, cid, self.clock.mono_ns(), expired=status == "expired"))
        elif status == "closed":
            st.done = st.filled >= st.order.qty
        if st.venue_filled > st.filled:
            self._fills_later(st)

    def _spawn_cancel(self, st: _Tracked) -> None:
        cid = st.order.client_order_id
        if cid not in self._cancel_tasks:
            task = self.spawn(self._cancel_task(st), f"cancel:{cid}")
            self._cancel_tasks[cid] = task
            task.add_done_callback(lambda _t: self._cancel_tasks.pop(cid, None))

    def _fill_from(self, t: dict, symbol: str, cid: str, side: Side, venue_id: str,
                   liquidity: Liquidity | None = None, ts_fallback: Any = None) -> Fill:
        """A ccxt trade of ours → a :class:`Fill` (raises ValueError/TypeError/KeyError if malformed)."""
        fee = t.get("fee") or {}
        inst = self.instruments.get(symbol)
        tm = t.get("takerOrMaker")
        liq = Liquidity.MAKER if tm == "maker" else Liquidity.TAKER if tm == "taker" else (liquidity or Liquidity.TAKER)
        ts = t.get("timestamp") or ts_fallback
        return Fill(
            venue=self.name, symbol=symbol, client_order_id=cid, trade_id=str(t["id"]), side=side,
            price=to_fixed(t["price"]), qty=to_fixed(t["amount"]), fee=_opt_fixed(fee.get("cost"), 0),
            fee_asset=fee.get("currency") or (inst.quote if inst else ""), liquidity=liq, venue_order_id=venue_id,
            ts_venue=int(ts) * 1_000_000 if ts else 0, ts_recv=self.clock.mono_ns(),
        )

    def _on_trade_of(self, st: _Tracked, t: dict, liquidity: Liquidity | None, ts_fallback: Any = None) -> None:
        """One ccxt trade of one of our orders → ``OrderFilled`` once per venue trade id."""
        tid = t.get("id")
        if tid is None or tid == "":
            return  # a fill without an id cannot be deduplicated: its order's trades are fetched instead
        tid = str(tid)
        order = st.order
        if (order.symbol, tid) in self._seen_trades:
            return
        try:
            fill = self._fill_from(t, order.symbol, order.client_order_id, order.side, st.venue_id or "",
                                   liquidity, ts_fallback)
        except (ValueError, TypeError, KeyError) as exc:
            self._dropped(f"trade {tid}: {exc}")
            return
        self._remember_trade(order.symbol, tid)
        st.filled += fill.qty
        if st.filled > st.venue_filled:
            st.venue_filled = st.filled
        self.stats["fills"] += 1
        self.emit(OrderFilled(fill, st.filled))
        if st.filled >= order.qty and not st.lost:
            st.done = True

    def _remember_trade(self, symbol: str, tid: str) -> None:
        seen = self._seen_trades
        seen[(symbol, tid)] = None
        if len(seen) > _SEEN_TRADES_KEPT:
            seen.popitem(last=False)

    def _flush_pending_trades(self, st: _Tracked) -> None:
        for t in self._pending_trades.pop((st.order.symbol, st.venue_id or ""), ()):
            self._on_trade_of(st, t, None)

    def _on_stream_trade(self, t: dict) -> None:
        vid = t.get("order")
        if vid is None:
            return
        vid = str(vid)
        key = (t.get("symbol"), vid)
        st = self._by_vid.get(key)
        if st is None:
            # the order update may not have been handled yet: ccxt's own order cache knows the client id
            cached = None
            orders = getattr(self.exchange, "orders", None)
            hashmap = getattr(orders, "hashmap", None)
            if isinstance(hashmap, dict):
                cached = (hashmap.get(t.get("symbol")) or {}).get(vid)
            if cached is not None:
                st = self._tracked_for(cached)
                if st is not None and st.venue_id is None:
                    self._learn_venue_id(st, vid)
        if st is None:
            pending = self._pending_trades.setdefault(key, [])
            pending.append(dict(t))
            if len(self._pending_trades) > _PENDING_TRADES_KEPT:
                self._pending_trades.popitem(last=False)
            return
        self._on_trade_of(st, t, None)

    def _fills_later(self, st: _Tracked) -> None:
        """The venue counts more filled than we have fills for: fetch the order's trades (once at a time)."""
        if st.fills_task is None or st.fills_task.done():
            st.fills_task = self.spawn(self._ensure_fills(st, _MISSING_FILLS_DELAY_S), f"fills:{st.order.client_order_id}")

    async def _ensure_fills(self, st: _Tracked, delay: float = 0.0) -> None:
        if delay:
            await asyncio.sleep(delay)
        if st.venue_filled <= st.filled or st.venue_id is None:
            return
        ex = self.exchange
        self.stats["fill_fetches"] += 1
        try:
            if ex.has.get("fetchOrderTrades"):
                trades = await self._call(
                    "fetch order trades", ex.fetch_order_trades, st.venue_id, st.order.symbol, idempotent=True
                )
            else:
                trades = await self._call("fetch my trades", ex.fetch_my_trades, st.order.symbol, idempotent=True)
                trades = [t for t in trades if str(t.get("order")) == st.venue_id]
        except Exception as exc:  # noqa: BLE001 - reconciliation tries again
            log.warning("venue %s: fetching fills of %s: %s", self.name, st.wire_id, clean_message(exc))
            return
        for t in trades:
            self._on_trade_of(st, t, None)

    def _dropped(self, reason: str) -> None:
        self.stats["dropped"] += 1
        self.emit(MessageDropped(self.name, clean_message(reason), self.clock.mono_ns()))

    # ------------------------------------------------------------------ user stream
    async def _orders_stream(self) -> None:
        await self._stream("orders", self.exchange.watch_orders, self._on_venue_order)

    async def _trades_stream(self) -> None:
        await self._stream("my trades", self.exchange.watch_my_trades, self._on_stream_trade)

    async def _stream(self, what: str, watch: Callable[[], Any], handle: Callable[[dict], None]) -> None:
        backoff = _Backoff(self.options.reconnect_backoff_s, self.options.reconnect_backoff_max_s)
        failed = False
        while True:
            pending = asyncio.ensure_future(watch())
            try:
                if failed:
                    # Events between the drop and the new subscription are lost to the stream: reconcile
                    # over REST once the subscription has had time to be made (whatever arrives after it,
                    # the stream delivers), without waiting for an event that may never come.
                    await asyncio.wait({pending}, timeout=_RESUBSCRIBE_SETTLE_S)
                    failed = False
                    self._reconcile_soon()
                    if self._user_down:
                        self._user_down = False
                        self.emit(VenueStatus(self.name, True, "user stream resubscribed", self.clock.mono_ns()))
                items = await pending
            except ccxt.ExchangeClosedByUser:
                return
            except asyncio.CancelledError:
                pending.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect; meanwhile REST reconciliation covers the gap
                self.stats["user_stream_errors"] += 1
                self._user_down = True
                if not failed:
                    log.warning("venue %s: %s stream: %s; reconnecting", self.name, what, clean_message(exc))
                failed = True
                self._reconcile_soon()
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            for item in list(items):  # ccxt reuses its cache object: take what is there now
                try:
                    handle(item)
                except Exception as exc:  # noqa: BLE001 - one bad message must not stop the stream
                    self._dropped(f"{what}: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ cancel
    def _cancel(self, order: Order) -> None:
        st = self._orders.get(order.client_order_id)
        if st is None or (st.venue_id is None and order.venue_order_id is not None):
            self._adopt(order)  # an order we did not send, or whose venue id reconciliation just learnt
            st = self._orders.get(order.client_order_id)
        if st is None:
            self.emit(CancelRejected(self.name, order.client_order_id, "unknown order", self.clock.mono_ns()))
            return
        self._spawn_cancel(st)

    def _adopt(self, order: Order) -> None:
        """An order this process did not send is ours now (recovered from the journal or adopted at
        reconciliation): its updates, fills, cancel and settling go through the same paths as our own."""
        if order.status.is_done:
            return
        cid = order.client_order_id
        st = self._orders.get(cid)
        if st is None:
            st = _Tracked(
                order, self.options.client_order_id_prefix + cid, accepted=order.venue_order_id is not None,
                filled=order.filled_qty, venue_filled=order.filled_qty, sent_ns=self.clock.mono_ns(),
            )
            self._keep(cid, st)
            self.stats["tracked"] += 1
        elif st.order is not order:  # one we had settled as done or lost that the venue still has open
            st.order, st.done, st.lost = order, False, False
        vid = order.venue_order_id
        if vid is not None and st.venue_id is None:
            self._learn_venue_id(st, vid)
            self._flush_pending_trades(st)  # stream fills that came before we knew the order

    async def _cancel_task(self, st: _Tracked) -> None:
        cid = st.order.client_order_id
        now = self.clock.mono_ns
        if st.submit_task is not None and not st.submit_task.done():
            await asyncio.wait({st.submit_task})  # cancel what the venue has, not a request in flight
        if st.done and not st.lost:
            self.emit(CancelRejected(self.name, cid, "order already done", now()))
            return
        ex = self.exchange
        self.stats["cancels"] += 1
        try:
            result = await self._call(
                "cancel order", ex.cancel_order, st.venue_id, st.order.symbol, {"clientOrderId": st.wire_id},
                idempotent=True,
            )
        except ccxt.OrderNotFound:
            await self._settle(st, "cancel: order not open")
            return
        except Exception as exc:  # noqa: BLE001
            if outcome(exc) is Outcome.PERMANENT:
                self.emit(CancelRejected(self.name, cid, reject_reason(exc), now()))
                return
            self.stats["cancel_unknown_outcome"] += 1
            await self._settle(st, f"cancel outcome unknown: {clean_message(exc)}")
            return
        if st.lost:
            return
        filled = _opt_fixed(result.get("filled"), 0) if isinstance(result, dict) else 0
        if filled > st.venue_filled:
            st.venue_filled = filled
        if not st.accepted and st.venue_id is None and isinstance(result, dict) and result.get("id") is not None:
            self._learn_venue_id(st, str(result["id"]))
        if not st.done:
            st.done = True
            self.emit(OrderCanceled(self.name, cid, now()))
        if st.venue_filled > st.filled:
            self._fills_later(st)

    async def _settle(self, st: _Tracked, why: str) -> None:
        """Find out what an order is, after a cancel that did not say; emit it, or CancelRejected."""
        cid = st.order.client_order_id
        try:
            found = await self._query(st)
        except Exception as exc:  # noqa: BLE001
            self.emit(CancelRejected(self.name, cid, f"{why}; state unknown: {clean_message(exc)}", self.clock.mono_ns()))
            self._reconcile_soon()
            return
        self._on_venue_order(found)
        await self._ensure_fills(st)
        if found.get("status") == "open" and not st.lost:
            self.emit(CancelRejected(self.name, cid, f"{why}; the order is still open", self.clock.mono_ns()))

    async def _cancel_all(self, symbol: str | None) -> None:
        """Cancel what is open now, then what the submits still on their way turn into.

        The first pass goes out at once: a submit whose answer was lost can take the venue's whole
        execution horizon to resolve, and the kill switch must not wait for it. Orders that are
        still unresolved after a short wait are left to the caller's confirmation loop (the
        engine's shutdown and kill switch look again until none of ours is pending).
        """
        symbols = [symbol] if symbol is not None else list(self.symbols)
        await self._cancel_open(symbols)
        in_flight = [st.submit_task for st in self._orders.values() if st.submit_task and not st.submit_task.done()]
        if in_flight:
            await asyncio.wait(in_flight, timeout=min(self.options.timeout_ms / 1000, _IN_FLIGHT_WAIT_S))
            await self._cancel_open(symbols)
        await self._settle_all(symbols)

    async def _cancel_open(self, symbols: list[str]) -> None:
        ex = self.exchange
        account_wide = self.capabilities.cancel_all and self.options.cancel_all_scope == "account"
        for sym in symbols:
            try:
                if account_wide:
                    canceled = await self._call("cancel all", ex.cancel_all_orders, sym, idempotent=True)
                    for o in canceled or ():
                        self._on_cancel_all_answer(o)
                    continue
                listed = await self._call("open orders", ex.fetch_open_orders, sym, idempotent=True)
            except ccxt.OrderNotFound:
                continue  # nothing open on that symbol
            except Exception as exc:  # noqa: BLE001
                raise to_hft_error(exc, self.name, f"cancel all {sym}") from None
            ours = [o for o in listed if self._tracked_for(o) or self._own_cid(o.get("clientOrderId"))]
            results = await asyncio.gather(*(self._cancel_listed(o, sym) for o in ours), return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:  # the others went out; say what did not
                raise to_hft_error(failed[0], self.name, f"cancel all {sym}: {len(failed)} of {len(ours)} cancels")

    async def _cancel_listed(self, o: dict, symbol: str) -> None:
        """Cancel one order found open during a cancel-all; what it became is settled afterwards."""
        try:
            answer = await self._call("cancel order", self.exchange.cancel_order, o.get("id"), symbol, idempotent=True)
        except ccxt.OrderNotFound:
            return  # filled or cancelled meanwhile: the settlement queries it
        if isinstance(answer, dict) and answer.get("id") is not None:
            self._on_cancel_all_answer(answer)

    def _on_cancel_all_answer(self, o: dict) -> None:
        st = self._tracked_for(o)
        if st is None:
            return
        filled = _opt_fixed(o.get("filled"), 0)
        if filled > st.venue_filled:
            st.venue_filled = filled
        if not st.done and not st.lost:
            st.done = True
            self.emit(OrderCanceled(self.name, st.order.client_order_id, self.clock.mono_ns()))

    async def _settle_all(self, symbols: list[str]) -> None:
        """After a cancel-all: every order we still think live is queried; every missing fill fetched."""
        pending = []
        for st in list(self._orders.values()):
            if st.order.symbol not in symbols or st.lost:
                continue
            if not st.done and st.venue_id is not None:
                pending.append(self._settle_quietly(st))
            elif st.venue_filled > st.filled:
                pending.append(self._ensure_fills(st))
        if pending:
            await asyncio.gather(*pending)

    async def _settle_quietly(self, st: _Tracked) -> None:
        try:
            found = await self._query(st)
        except ccxt.OrderNotFound:
            return
        except Exception as exc:  # noqa: BLE001
            log.warning("venue %s: settling %s: %s", self.name, st.wire_id, clean_message(exc))
            return
        self._on_venue_order(found)
        await self._ensure_fills(st)

    # ------------------------------------------------------------------ reconciliation
    def _reconcile_soon(self) -> None:
        if self._reconcile_now is not None:
            self._reconcile_now.set()

    async def _reconcile_loop(self) -> None:
        o: CcxtOptions = self.options
        interval = o.reconcile_interval_s
        if not self._streams_orders or not self._streams_trades:
            interval = min(interval, o.order_poll_interval_s) if interval else o.order_poll_interval_s
        assert self._reconcile_now is not None
        while True:
            try:
                if interval:
                    await asyncio.wait_for(self._reconcile_now.wait(), interval)
                else:
                    await self._reconcile_now.wait()
            except asyncio.TimeoutError:
                pass
            self._reconcile_now.clear()
            try:
                await self.reconcile()
            except Exception as exc:  # noqa: BLE001 - next round
                log.warning("venue %s: reconciliation: %s", self.name, clean_message(exc))

    async def reconcile(self) -> None:
        """Compare the venue's open orders with ours and settle every difference (also the polling path)."""
        ex = self.exchange
        self.stats["reconciles"] += 1
        for symbol in self.symbols:
            started = self.clock.mono_ns()
            venue_open = await self._call("open orders", ex.fetch_open_orders, symbol, idempotent=True)
            listed: set[int] = set()
            for o in venue_open:
                st = self._tracked_for(o)
                if st is None:
                    continue
                listed.add(id(st))
                if st.lost:
                    self.stats["orphans_canceled"] += 1
                    log.warning("venue %s: order %s reported lost is open: cancelling it", self.name, st.wire_id)
                self._on_venue_order(o)
            for st in list(self._orders.values()):
                if st.order.symbol != symbol or st.done or id(st) in listed or st.sent_ns >= started:
                    continue
                if st.order.status.is_done:  # the engine closed it (gone from the venue at its reconciliation)
                    continue
                if st.submit_task is not None and not st.submit_task.done():
                    continue
                await self._settle_quietly(st)  # we think it is live, the venue does not list it
        self.stats["reconciles_done"] += 1

    # ------------------------------------------------------------------ account
    async def _fetch_open_orders(self, symbol: str | None) -> list[OpenOrderSnapshot]:
        ex = self.exchange
        out = []
        for sym in [symbol] if symbol is not None else list(self.symbols):
            try:
                orders = await self._call("open orders", ex.fetch_open_orders, sym, idempotent=True)
            except Exception as exc:  # noqa: BLE001
                raise to_hft_error(exc, self.name, "fetch open orders") from None
            for o in orders:
                cid = self._own_cid(o.get("clientOrderId"))
                if cid is None:
                    continue  # someone else's order on the account
                price = o.get("price")
                out.append(
                    OpenOrderSnapshot(
                        client_order_id=cid, venue_order_id=str(o.get("id")), symbol=o.get("symbol") or sym,
                        side=Side.BUY if o.get("side") == "buy" else Side.SELL,
                        price=_opt_fixed(price) if price not in (None, "") and o.get("type") != "market" else None,
                        qty=_opt_fixed(o.get("amount")), filled_qty=_opt_fixed(o.get("filled")),
                        extra={"status": o.get("status")},
                    )
                )
        return out

    async def _fetch_fills(self, symbol: str, since_ns: int) -> list[Fill]:
        """Our fills on ``symbol`` since ``since_ns`` from ``fetch_my_trades``, paged by time, oldest first.

        A trade of an order this process did not send is attributed through the order's client id: looked
        up once per order (an order's ids never change), in pages of ``fetch_orders`` when there are many.
        Every fill returned counts as delivered: the engine feeds what it has not seen through its own
        path, so the stream must not send it again.
        """
        ex = self.exchange
        since_ms = max(0, since_ns // 1_000_000)
        trades: dict[str, dict] = {}
        try:
            while True:
                page = await self._call("fetch my trades", ex.fetch_my_trades, symbol, since_ms, 1000, idempotent=True)
                fresh = [t for t in page if t.get("id") is not None and str(t["id"]) not in trades]
                for t in fresh:
                    trades[str(t["id"])] = t
                if len(page) < 1000 or not fresh:
                    break
                since_ms = max(int(t.get("timestamp") or since_ms) for t in fresh)
        except Exception as exc:  # noqa: BLE001
            raise to_hft_error(exc, self.name, "fetch fills") from None
        out: list[Fill] = []
        wire_of = self._wire_of
        unknown = {
            vid for vid in (str(t.get("order")) for t in trades.values())
            if (symbol, vid) not in self._by_vid and (symbol, vid) not in wire_of
        }
        if len(unknown) > _SINGLE_LOOKUPS_MAX and ex.has.get("fetchOrders"):
            first_ms = min(int(t.get("timestamp") or since_ms) for t in trades.values())
            await self._learn_client_ids(symbol, unknown, max(0, first_ms - _ORDER_LOOKBACK_MS))
        for tid, t in sorted(trades.items(), key=lambda kv: (kv[1].get("timestamp") or 0, kv[0])):
            vid = str(t.get("order"))
            st = self._by_vid.get((symbol, vid))
            if st is not None:
                wire = st.wire_id
            else:
                if (symbol, vid) not in wire_of:
                    try:
                        o = await self._call("fetch order", ex.fetch_order, vid, symbol, idempotent=True)
                        self._remember_wire(symbol, vid, o.get("clientOrderId"))
                    except Exception as exc:  # noqa: BLE001
                        raise to_hft_error(exc, self.name, "fetch fills") from None
                wire = wire_of[(symbol, vid)]
            cid = self._own_cid(wire)
            if cid is None:
                continue  # not one of ours
            side = Side.BUY if t.get("side") == "buy" else Side.SELL
            try:
                fill = self._fill_from(t, symbol, cid, side, vid)
            except (ValueError, TypeError, KeyError) as exc:
                self._dropped(f"trade {tid}: {exc}")
                continue
            out.append(fill)
            if (symbol, tid) not in self._seen_trades:
                self._remember_trade(symbol, tid)
                if st is not None:
                    st.filled += fill.qty
                    st.venue_filled = max(st.venue_filled, st.filled)
                    if st.filled >= st.order.qty and not st.lost:
                        st.done = True
        return out

    def _learn_venue_id(self, st: _Tracked, vid: str) -> None:
        """The venue's id of a tracked order. Binance numbers orders (and trades) per symbol, so
        lookups by venue id are always by (symbol, id)."""
        st.venue_id = vid
        self._by_vid[(st.order.symbol, vid)] = st

    def _remember_wire(self, symbol: str, vid: str, wire: str | None) -> None:
        self._wire_of[(symbol, vid)] = wire
        if len(self._wire_of) > _DONE_ORDERS_KEPT:
            self._wire_of.popitem(last=False)

    async def _learn_client_ids(self, symbol: str, vids: set[str], since_ms: int) -> None:
        """The client ids of many orders at once, from pages of ``fetch_orders`` (Binance ``allOrders``:
        weight 20 for up to 1000 orders, where each ``fetch_order`` weighs 4). A restart after a run of
        crashes reconciles from the oldest of them: one lookup per filled order would grow with every
        restart until the venue answers 429 and bans. Orders not found here are looked up one by one."""
        ex = self.exchange
        todo = set(vids)
        start = since_ms
        try:
            for _ in range(_ORDER_PAGES_MAX):
                page = await self._call("fetch orders", ex.fetch_orders, symbol, start, 1000, idempotent=True)
                for o in page:
                    vid = str(o.get("id"))
                    self._remember_wire(symbol, vid, o.get("clientOrderId"))
                    todo.discard(vid)
                if not todo or len(page) < 1000:
                    return
                last = max(int(o.get("timestamp") or 0) for o in page)
                if last <= start:
                    return
                start = last
        except Exception as exc:  # noqa: BLE001
            raise to_hft_error(exc, self.name, "fetch fills") from None

    async def _fetch_balances(self) -> dict[str, Balance]:
        ex = self.exchange
        try:
            raw = await self._call("fetch balance", ex.fetch_balance, idempotent=True)
        except Exception as exc:  # noqa: BLE001
            raise to_hft_error(exc, self.name, "fetch balance") from None
        out = {}
        skip = {"info", "free", "used", "total", "timestamp", "datetime", "debt"}
        for asset, b in raw.items():
            if asset in skip or not isinstance(b, dict):
                continue
            out[asset] = Balance(asset, _opt_fixed(b.get("free")), _opt_fixed(b.get("used")))
        return out


def _retry_after(headers: Any, default: float) -> float:
    if not headers:
        return default
    for k, v in headers.items():
        if k.lower() == "retry-after":
            try:
                return max(0.0, float(v))
            except (TypeError, ValueError):
                return default
    return default

