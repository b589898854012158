"""A local exchange server speaking the Binance Spot dialect, backed by our matching engine.

The unmodified ccxt client (``ccxt.async_support.binance`` for REST,
``ccxt.pro.binance`` for websockets) trades against it on 127.0.0.1; see
:func:`venues.ccxt_local.point_at_local` for pointing a client at it and
``/work/shared/docs/binance-spot-dialect.md`` for the wire facts it follows.

Served (``http://HOST:PORT``):

* REST ``/api/v3/...``: ``ping``, ``time``, ``exchangeInfo``, ``depth``, ``ticker/24hr``,
  ``ticker/price``, ``ticker/bookTicker``, ``aggTrades``, ``trades``; signed (HMAC-SHA256 over
  the received query string + body minus ``signature``, ``X-MBX-APIKEY``, ``timestamp`` within
  ``recvWindow``): ``account``, ``order`` (POST/GET/DELETE), ``openOrders`` (GET/DELETE),
  ``allOrders``, ``myTrades``; ``userDataStream`` (listenKey, API key only).
* Market streams: ``ws://HOST:PORT/stream[/<anything>]`` (combined: ``{"stream", "data"}``) and
  ``/ws/<anything>`` (raw), ``SUBSCRIBE``/``UNSUBSCRIBE``/``LIST_SUBSCRIPTIONS``; streams
  ``<sym>@depth@100ms`` / ``<sym>@depth`` (diffs ``U``/``u`` chained, ``U == previous u + 1``,
  published every ``depth_interval_ms``; the REST depth ``lastUpdateId`` is the ``u`` of the
  last diff published, so ccxt's snapshot bridging works; every ``@depth@<N>ms`` speed gets the
  same diffs; partial-book ``@depth5`` streams are not served), ``<sym>@trade``, ``<sym>@aggTrade``,
  ``<sym>@bookTicker``. ``/ws/<listenKey>`` is the older user-data stream.
* WS-API ``ws://HOST:PORT/ws-api/v3``: ``userDataStream.subscribe.signature`` (what ccxt >= 4.5.6
  uses for spot ``watch_orders``/``watch_my_trades``/``watch_balance``), then
  ``{"subscriptionId", "event"}`` with ``executionReport``, ``outboundAccountPosition`` and
  ``balanceUpdate``; also ``userDataStream.unsubscribe``, ``session.subscriptions``, ``ping``, ``time``.
* Admin ``/admin/...`` (loopback clients only, header ``X-Admin-Token`` equal to ``admin_token``;
  disabled when no token is configured): see :meth:`ExchangeServer._admin_routes`.

Background liquidity per symbol: the seeded synthetic flow of :mod:`venues.sim.flow`, or a
replayed recording (:mod:`venues.sim.replay`), or none. With ``auto_liquidity: false`` nothing
moves by itself and tests call :meth:`ExchangeServer.advance`.

Accounts: one per configured API key, with one wallet shared by every symbol (a USDT balance
funds BTC/USDT and ETH/USDT alike). Fees are charged in the quote asset, as the engine does.
As on Binance: a cancel's answer and its ``executionReport`` carry the *cancel request's* id as
``clientOrderId``/``c`` and the order's own id as ``origClientOrderId``/``C``; cancelling all
orders of a symbol that has none is ``-2011``; an order rejected at submission gets no
``executionReport``.

Faults (:mod:`venues.sim.faults`) and limits (:mod:`venues.sim.ratelimit`) are configured at
start-up and switchable at run time.

Default configuration (no file): ``BTC/USDT`` with synthetic flow, one API key
``local-key``/``local-secret`` holding 10 BTC and 1,000,000 USDT, port 0 (a free port).
Example YAML for ``hft exchange serve --config FILE``::

    host: 127.0.0.1
    port: 8765
    seed: 7
    admin_token: ${EXCHANGE_ADMIN_TOKEN}
    symbols:
      - symbol: BTC/USDT
        tick_size: "0.01"
        lot_size: "0.00001"
        min_notional: "5"
        maker_fee_bps: 1
        taker_fee_bps: 5
        flow: {step_ms: 50, start_price: 60000, levels: 20}
      - symbol: ETH/USDT
        tick_size: "0.01"
        lot_size: "0.0001"
        flow: null
        replay: {files: [../shared/data/binance/spot_ethusdt_20240808.gz], speed: 1}
    api_keys:
      - name: mm
        api_key: ${MM_KEY}
        api_secret: ${MM_SECRET}
        balances: {BTC: 5, ETH: 50, USDT: 500000}
    rate_limits: {weight_per_minute: 1200, orders_per_window: 100}
    faults: {delay_ms: 5, depth_gap_rate: 0.01}
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import random
import re
import sys
import time
from collections import Counter, deque
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import click
import yaml
from aiohttp import WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hft import numbers
from hft.config import NonNegativeFixedDecimal, PositiveFixedDecimal
from hft.model import Balance, Instrument, OrderType, Side, TimeInForce
from hft.secrets import Secret

from venues.sim import binance_dialect as bd
from venues.sim.binance_dialect import ApiError, SymbolSpec
from venues.sim.faults import FaultConfig, FaultState
from venues.sim.flow import FlowParams, TruePrice, VenueFlow
from venues.sim.matching import ExecReport, MatchingEngine, SimOrder
from venues.sim.ratelimit import RateLimitConfig, RateLimiter, request_weight
from venues.sim.replay import REPLAY_ACCOUNT, ReplayConfig, ReplayFeed

__all__ = [
    "ApiKeyConfig",
    "ExchangeServer",
    "ExchangeServerConfig",
    "FlowConfig",
    "SymbolConfig",
    "exchange_cli",
    "cli_config",
    "load_server_config",
    "serve_main",
]

log = logging.getLogger(__name__)

WS_API_PATH = "/ws-api/v3"
ADMIN_HEADER = "X-Admin-Token"
_SYMBOL_RE = re.compile(r"[A-Z0-9]+/[A-Z0-9]+")
_CID_RE = re.compile(bd.CLIENT_ORDER_ID_RE)
_LOOPBACK = ("127.0.0.1", "::1", "localhost")
# request storage keys (typed keys where aiohttp has them, plain strings on older aiohttp)
_PARAMS: Any = web.RequestKey("params", dict) if hasattr(web, "RequestKey") else "params"
_RAW: Any = web.RequestKey("raw", tuple) if hasattr(web, "RequestKey") else "raw"


# ============================================================================ configuration


class FlowConfig(BaseModel):
    """Synthetic background flow of one symbol (:class:`venues.sim.flow.VenueFlow`); see ``FlowParams``."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    step_ms: float = Field(50.0, gt=0, description="How often the flow advances when auto_liquidity is on, ms.")
    start_price: PositiveFixedDecimal = Field("60000", description="Start of the true price.")
    volatility_bps: float = Field(1.0, ge=0, description="True-price volatility, bp per sqrt(second).")
    noise_bps: float = Field(2.0, ge=0, description="Std of this venue's offset from the true price, bp.")
    noise_half_life_s: float = Field(5.0, ge=0, description="How fast the offset reverts, s.")
    half_spread_bps: float = Field(1.5, ge=0, description="Distance of the innermost flow level from the centre, bp.")
    level_spacing_bps: float = Field(1.0, ge=0, description="Distance between flow levels, bp.")
    levels: int = Field(20, ge=1, description="Flow levels per side.")
    level_size: PositiveFixedDecimal = Field("0.5", description="Mean size of a flow order (base).")
    limit_rate_per_s: float = Field(20.0, ge=0, description="Extra passive flow orders per second.")
    cancel_rate_per_s: float = Field(10.0, ge=0, description="Random cancels of flow orders per second.")
    taker_rate_per_s: float = Field(2.0, ge=0, description="Marketable flow orders per second.")
    taker_size: PositiveFixedDecimal = Field("0.1", description="Mean size of a marketable flow order (base).")
    taker_slippage_bps: float = Field(10.0, ge=0, description="Limit of a flow taker beyond the best price, bp.")
    recenter_interval_s: float = Field(0.25, gt=0, description="How often the ladder is re-centred, s.")
    max_orders_per_side: int = Field(60, ge=1, description="Flow orders kept per side at re-centring.")

    def to_params(self) -> FlowParams:
        """The :class:`FlowParams` these settings describe (fields FlowParams does not know are left out)."""
        known = FlowParams.__dataclass_fields__
        return FlowParams(**{k: v for k, v in self.model_dump().items() if k in known})


class SymbolConfig(BaseModel):
    """One market: trading rules (Binance filters), fees and background liquidity."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    symbol: str = Field(description="Unified BASE/QUOTE name; the venue id is BASE+QUOTE (BTC/USDT → BTCUSDT).")
    tick_size: PositiveFixedDecimal = Field("0.01", description="PRICE_FILTER tickSize.")
    lot_size: PositiveFixedDecimal = Field("0.00001", description="LOT_SIZE stepSize.")
    min_qty: NonNegativeFixedDecimal | None = Field(None, description="LOT_SIZE minQty (default: lot_size).")
    max_qty: PositiveFixedDecimal = Field("9000", description="LOT_SIZE maxQty.")
    market_max_qty: PositiveFixedDecimal | None = Field(None, description="MARKET_LOT_SIZE maxQty (default: max_qty).")
    min_price: PositiveFixedDecimal | None = Field(None, description="PRICE_FILTER minPrice (default: tick_size).")
    max_price: PositiveFixedDecimal = Field("1000000", description="PRICE_FILTER maxPrice.")
    min_notional: NonNegativeFixedDecimal = Field("5", description="NOTIONAL minNotional (quote).")
    max_notional: PositiveFixedDecimal = Field("9000000", description="NOTIONAL maxNotional (quote).")
    maker_fee_bps: Decimal = Field(Decimal("1"), description="Maker fee, bp (negative: rebate). 1 bp = 100 ppm.")
    taker_fee_bps: Decimal = Field(Decimal("5"), description="Taker fee, bp.")
    base_precision: int = Field(8, ge=0, le=9, description="baseAssetPrecision in exchangeInfo.")
    quote_precision: int = Field(8, ge=0, le=9, description="quotePrecision in exchangeInfo.")
    flow: FlowConfig | None = Field(
        default_factory=FlowConfig, description="Synthetic background flow; null for none (ignored with replay)."
    )
    replay: ReplayConfig | None = Field(None, description="Replay a recording as the book instead of the flow.")

    @field_validator("symbol")
    @classmethod
    def _symbol(cls, v: str) -> str:
        if not _SYMBOL_RE.fullmatch(v):
            raise ValueError(f"symbols are BASE/QUOTE in upper case like BTC/USDT, got {v!r}")
        return v

    @field_validator("maker_fee_bps", "taker_fee_bps")
    @classmethod
    def _whole_ppm(cls, v: Decimal) -> Decimal:
        if (v * 100) != (v * 100).to_integral_value():
            raise ValueError("fees must be a whole number of ppm (at most two decimals in bp)")
        return v

    @model_validator(mode="after")
    def _defaults(self) -> "SymbolConfig":
        if self.min_qty is None:
            self.min_qty = self.lot_size
        if self.min_price is None:
            self.min_price = self.tick_size
        if self.market_max_qty is None:
            self.market_max_qty = self.max_qty
        if self.replay is not None:
            self.flow = None
        return self

    def spec(self) -> SymbolSpec:
        base, _, quote = self.symbol.partition("/")
        return SymbolSpec(
            symbol=self.symbol,
            venue_symbol=base + quote,
            base=base,
            quote=quote,
            tick_size=self.tick_size,
            lot_size=self.lot_size,
            min_qty=self.min_qty,
            max_qty=self.max_qty,
            min_price=self.min_price,
            max_price=self.max_price,
            min_notional=self.min_notional,
            max_notional=self.max_notional,
            market_min_qty=self.min_qty,
            market_max_qty=self.market_max_qty,
            maker_fee_ppm=int(self.maker_fee_bps * 100),
            taker_fee_ppm=int(self.taker_fee_bps * 100),
            base_precision=self.base_precision,
            quote_precision=self.quote_precision,
        )


class ApiKeyConfig(BaseModel):
    """One account: its API key and secret and its starting balances."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    name: str = Field("default", pattern=r"^[A-Za-z0-9_.-]+$", description="Account name (admin state, logs).")
    api_key: Secret = Field(description="Value of the X-MBX-APIKEY header.")
    api_secret: Secret = Field(description="HMAC-SHA256 secret.")
    balances: dict[str, NonNegativeFixedDecimal] = Field(
        default_factory=lambda: {"BTC": "10", "USDT": "1000000"},
        description="Starting free balance per asset.",
    )


def _default_keys() -> list[ApiKeyConfig]:
    return [ApiKeyConfig(name="default", api_key=Secret("local-key"), api_secret=Secret("local-secret"))]


class ExchangeServerConfig(BaseModel):
    """Everything the exchange server needs; every field has a usable default."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    host: str = Field("127.0.0.1", description="Listen address. Admin endpoints answer loopback clients only.")
    port: int = Field(0, ge=0, le=65535, description="Listen port; 0 picks a free one.")
    symbols: list[SymbolConfig] = Field(
        default_factory=lambda: [SymbolConfig(symbol="BTC/USDT")], min_length=1, description="Markets served."
    )
    api_keys: list[ApiKeyConfig] = Field(default_factory=_default_keys, min_length=1, description="Accounts.")
    admin_token: Secret | None = Field(None, description="Token for /admin/* (header X-Admin-Token); null disables.")
    seed: int = Field(0, description="Seed of the synthetic flow and of random faults.")
    auto_liquidity: bool = Field(
        True, description="Step flows and replays on timers; false: only ExchangeServer.advance / POST /admin/advance."
    )
    depth_interval_ms: float = Field(100.0, gt=0, description="Period of depth diffs and trade/bookTicker events, ms.")
    max_recv_window_ms: int = Field(60000, gt=0, description="Largest recvWindow accepted (Binance: 60000).")
    default_recv_window_ms: int = Field(5000, gt=0, description="recvWindow when a request sends none.")
    clock_offset_ms: int = Field(0, description="Server clock = local clock + this (simulate clock skew).")
    order_history: int = Field(100_000, ge=1, description="Done orders per symbol the engine keeps (all accounts).")
    trade_history: int = Field(100_000, ge=1, description="Fills kept per account and symbol for myTrades.")
    rate_limits: RateLimitConfig = Field(default_factory=RateLimitConfig)
    faults: FaultConfig = Field(default_factory=FaultConfig)

    @model_validator(mode="after")
    def _unique(self) -> "ExchangeServerConfig":
        names = [s.symbol for s in self.symbols]
        if len(set(names)) != len(names):
            raise ValueError("symbols listed twice")
        keys = [k.api_key.reveal() for k in self.api_keys]
        if len(set(keys)) != len(keys) or len({k.name for k in self.api_keys}) != len(keys):
            raise ValueError("api_keys: names and keys must be unique")
        return self


_ENV = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match) -> str:
            if m.group(0) == "$${":
                return "${"
            name, default = m.group(1), m.group(2)
            got = env.get(name, "")
            if got == "" and default is None:
                raise ValueError(f"environment variable {name} is not set")
            return got if got != "" else default

        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    return value


def load_server_config(path: str | Path, env: Mapping[str, str] | None = None) -> ExchangeServerConfig:
    """Read a YAML server config (``${VAR}`` / ``${VAR:-default}`` in string values). Raises ``ValueError``.

    Relative replay file paths are taken relative to the config file's folder.
    """
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{p}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{p}: the top level must be a mapping")
    try:
        data = _interpolate(data, os.environ if env is None else env)
        cfg = ExchangeServerConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ValueError(f"{p}: {where}: {first['msg']}") from None
    # replay files are relative to the config file
    for s in cfg.symbols:
        if s.replay is not None:
            s.replay.files = [f if f.is_absolute() else (p.parent / f) for f in s.replay.files]
    return cfg


# ============================================================================ internals


class _Tap:
    """Engine proxy for the flow and the replay: forwards everything, keeps submit/cancel reports."""

    def __init__(self, engine: MatchingEngine):
        self._engine = engine
        self.reports: list[ExecReport] = []

    def submit(self, *args: Any, **kwargs: Any) -> list[ExecReport]:
        r = self._engine.submit(*args, **kwargs)
        self.reports.extend(r)
        return r

    def cancel(self, *args: Any, **kwargs: Any) -> list[ExecReport]:
        r = self._engine.cancel(*args, **kwargs)
        self.reports.extend(r)
        return r

    def cancel_all(self, *args: Any, **kwargs: Any) -> list[ExecReport]:
        r = self._engine.cancel_all(*args, **kwargs)
        self.reports.extend(r)
        return r

    def take(self) -> list[ExecReport]:
        r, self.reports = self.reports, []
        return r

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


def _attach_wallet(engine: MatchingEngine, account_id: str, wallet: dict[str, Balance]) -> None:
    """Create ``account_id`` in ``engine`` with ``wallet`` as its balances, shared with other engines.

    The engine keeps an account's balances as mutable :class:`Balance` objects it
    updates in place; handing every engine the same objects makes one wallet per API
    key across symbols. Relies on ``MatchingEngine``'s account layout (``bal``,
    ``base``, ``quote``); ``test_wallet_shared_across_symbols`` guards it.
    """
    inst = engine.instrument
    engine.create_account(account_id, {})
    acct = engine._accounts[account_id]  # noqa: SLF001 - see docstring
    for asset in (inst.base, inst.quote):
        wallet.setdefault(asset, Balance(asset, 0))
    acct.bal = wallet
    acct.base = wallet[inst.base]
    acct.quote = wallet[inst.quote]


class _Key:
    __slots__ = ("name", "api_key", "secret", "wallet")

    def __init__(self, name: str, api_key: str, secret: str, wallet: dict[str, Balance]):
        self.name = name
        self.api_key = api_key
        self.secret = secret
        self.wallet = wallet


class _AccountOrders:
    """What the server remembers of one account's orders and fills on one symbol."""

    __slots__ = ("by_id", "by_cid", "quote_qty", "trades")

    def __init__(self, trade_history: int):
        self.by_id: dict[int, SimOrder] = {}
        self.by_cid: dict[str, int] = {}  # latest order with that client id
        self.quote_qty: dict[int, int] = {}  # quoteOrderQty of market orders sent that way
        self.trades: deque[ExecReport] = deque(maxlen=trade_history)


class _Market:
    def __init__(self, cfg: SymbolConfig, server_cfg: ExchangeServerConfig):
        self.cfg = cfg
        self.spec = spec = cfg.spec()
        self.id = spec.venue_symbol
        self.lower = self.id.lower()
        # The server enforces the client-facing filters itself. A replayed book holds levels the
        # filters would refuse (sizes finer than the lot, notionals below the minimum), so its
        # engine accepts any multiple of 1e-8 (Binance's 8 decimals) and any notional.
        replay = cfg.replay is not None
        fine = numbers.parse("0.00000001")
        inst = Instrument(
            venue="binance-sim",
            symbol=spec.symbol,
            base=spec.base,
            quote=spec.quote,
            tick_size=spec.tick_size,
            lot_size=min(spec.lot_size, fine) if replay else spec.lot_size,
            min_qty=0 if replay else spec.min_qty,
            min_notional=0 if replay else spec.min_notional,
            maker_fee_ppm=spec.maker_fee_ppm,
            taker_fee_ppm=spec.taker_fee_ppm,
            venue_symbol=spec.venue_symbol,
        )
        self.engine = MatchingEngine(inst, history=server_cfg.order_history, fills_history=16)
        self.tap = _Tap(self.engine)
        self.flow: VenueFlow | None = None
        self.flow_clock = 0
        self.replay: ReplayFeed | None = None
        self.replay_clock = 0  # recorded time reached
        self.halted = False
        self.seq = 0  # update id of the last published diff
        self.public_trades: deque[tuple[int, int, Side, int, int]] = deque(maxlen=50_000)
        self.pending_trades: list[tuple[int, int, Side, int, int]] = []
        self.top: tuple[Any, Any] = (None, None)
        self.orders: dict[str, _AccountOrders] = {}
        self.trade_history = server_cfg.trade_history

    def store(self, account: str) -> _AccountOrders:
        s = self.orders.get(account)
        if s is None:
            s = self.orders[account] = _AccountOrders(self.trade_history)
        return s


class _Conn:
    """One websocket connection: a send queue drained by its own task, which applies stream faults."""

    def __init__(self, server: "ExchangeServer", ws: web.WebSocketResponse, request: web.Request, kind: str, combined: bool):
        self.server = server
        self.ws = ws
        self.transport = request.transport
        self.kind = kind  # "market" or "user" (the WS-API connection)
        self.combined = combined
        self.streams: dict[str, str] = {}  # subscribed name → channel ("btcusdt@depth", "btcusdt@trade", ...)
        self.user_subs: dict[int, str] = {}  # WS-API subscriptionId → account
        self.listen_keys: set[str] = set()
        self.next_sub_id = 0
        self.queue: asyncio.Queue[tuple[str, bool, str] | None] = asyncio.Queue()
        self.closed = False

    def send(self, text: str, faultable: bool = False, fault_kind: str = "market") -> None:
        if not self.closed:
            self.queue.put_nowait((text, faultable, fault_kind))

    def abort(self) -> None:
        """Drop the connection without a close handshake (what a network failure looks like)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    async def run_sender(self) -> None:
        faults = self.server.faults
        held: tuple[str, str] | None = None
        try:
            while True:
                if held is not None:
                    try:
                        item = await asyncio.wait_for(self.queue.get(), faults.config.reorder_hold_ms / 1e3)
                    except asyncio.TimeoutError:
                        await self.ws.send_str(held[0])
                        held = None
                        continue
                else:
                    item = await self.queue.get()
                if item is None:
                    return
                text, faultable, kind = item
                if faultable:
                    if faults.take_ws_drop():
                        self.abort()
                        return
                    if held is None and faults.take_reorder(kind):
                        held = (text, kind)
                        continue
                await self.ws.send_str(text)
                if faultable and faults.take_duplicate(kind):
                    await self.ws.send_str(text)
                if held is not None:
                    await self.ws.send_str(held[0])
                    held = None
        except (ConnectionError, RuntimeError):
            self.closed = True


_STREAM_RE = re.compile(r"^([a-z0-9]+)@(depth(?:@\d+ms)?|trade|aggTrade|bookTicker)$")


def _channel(name: str) -> str | None:
    """The channel a stream name carries (``btcusdt@depth@100ms`` → ``btcusdt@depth``), None if not served.

    Every diff-depth speed (``@depth``, ``@depth@100ms``, ``@depth@1000ms``) gets the same diffs,
    published every ``depth_interval_ms``. Partial-book streams (``@depth5``...) are not served.
    """
    m = _STREAM_RE.match(name)
    if m is None:
        return None
    kind = m.group(2)
    return f"{m.group(1)}@{'depth' if kind.startswith('depth') else kind}"


class _Dropped(Exception):
    """The request was executed; its answer is to be lost (fault injection)."""


def _parse_dec(params: Mapping[str, str], name: str) -> int | None:
    v = params.get(name)
    if v is None or v == "":
        return None
    try:
        return numbers.parse(v)
    except ValueError:
        if re.fullmatch(r"[0-9]{1,20}(\.[0-9]{1,20})?", v):
            raise ApiError(-1111, "Precision is over the maximum defined for this asset.") from None
        raise ApiError(
            -1100, f"Illegal characters found in parameter '{name}'; legal range is '^([0-9]{{1,20}})(\\.[0-9]{{1,20}})?$'."
        ) from None


def _parse_int(params: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    v = params.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise ApiError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.") from None


# ============================================================================ server


class ExchangeServer:
    """The Binance-dialect exchange, in this process's event loop.

    ::

        server = await ExchangeServer(ExchangeServerConfig(...)).start()   # or: async with ExchangeServer(cfg) as server
        server.url          # http://127.0.0.1:PORT       (REST base; ccxt's urls['api'] become URL + /api/v3 ...)
        server.ws_url       # ws://127.0.0.1:PORT/stream  (market streams)
        server.ws_api_url   # ws://127.0.0.1:PORT/ws-api/v3 (user data stream)
        await server.stop()

    For tests (all synchronous, no I/O): :meth:`advance` (move the flow/replay on by N seconds),
    :meth:`advance_replay_messages`, :meth:`publish` (send pending diffs/trades now),
    :meth:`engine` (the symbol's :class:`MatchingEngine`), :meth:`update_id` (last published ``u``),
    :meth:`state` (same as ``GET /admin/state``), :meth:`halt`, :meth:`deposit`,
    :meth:`drop_streams`, :attr:`faults` (:class:`FaultState`: ``update({...})``, ``injected``),
    :attr:`limiter`, :attr:`requests` (count of ``/api/`` requests by method and path).
    """

    def __init__(self, config: ExchangeServerConfig | None = None):
        self.config = cfg = config or ExchangeServerConfig()
        self.faults = FaultState(cfg.faults.model_copy(), seed=cfg.seed)
        self.limiter = RateLimiter(cfg.rate_limits)
        self.markets: dict[str, _Market] = {}  # venue id → market
        self._unified: dict[str, _Market] = {}
        self._keys: dict[str, _Key] = {}
        self._accounts: dict[str, _Key] = {}
        for kc in cfg.api_keys:
            wallet = {a: Balance(a, amount) for a, amount in kc.balances.items()}
            k = _Key(kc.name, kc.api_key.reveal(), kc.api_secret.reveal(), wallet)
            self._keys[k.api_key] = k
            self._accounts[k.name] = k
        for sc in cfg.symbols:
            m = _Market(sc, cfg)
            self.markets[m.id] = m
            self._unified[sc.symbol] = m
            for k in self._accounts.values():
                _attach_wallet(m.engine, k.name, k.wallet)
            if sc.replay is not None:
                m.engine.create_account(REPLAY_ACCOUNT, {}, unlimited=True)
                m.replay = ReplayFeed(m.tap, m.id, sc.replay, clock_ns=self.now_ns)
            elif sc.flow is not None:
                p = sc.flow.to_params()
                true_price = TruePrice(p, rng=random.Random(f"{cfg.seed}:{sc.symbol}:true"))
                m.flow = VenueFlow(m.tap, true_price, p, random.Random(f"{cfg.seed}:{sc.symbol}:flow"))
        self._listen_keys: dict[str, str] = {}  # listenKey → account
        self._user_subs: dict[str, set[tuple[_Conn, int | str]]] = {}  # account → (conn, subscriptionId | listenKey)
        self._conns: set[_Conn] = set()
        self._tasks: set[asyncio.Task] = set()
        self._runner: web.AppRunner | None = None
        self.host = cfg.host
        self.port = 0
        self.url = ""
        self.ws_url = ""
        self.ws_api_url = ""
        self.started = False
        self.requests: Counter[tuple[str, str]] = Counter()  # (method, path) of every /api/ request

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str | None = None, port: int | None = None) -> "ExchangeServer":
        """Listen on ``host:port`` (config defaults), seed the books, start the timers. Returns ``self``."""
        if self.started:
            raise RuntimeError("already started")
        host = host if host is not None else self.config.host
        port = port if port is not None else self.config.port
        for m in self.markets.values():
            if m.replay is not None:
                m.replay.open()
                m.replay_clock = m.replay.first_ns or 0
                m.replay.advance_to(m.replay_clock)
                self._dispatch(m, m.tap.take())
        app = web.Application(middlewares=[self._middleware])
        self._add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            self._runner = None
            raise
        self.port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - the only way to learn port 0
        self.host = host
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
        self.url = f"http://{shown}:{self.port}"
        self.ws_url = f"ws://{shown}:{self.port}/stream"
        self.ws_api_url = f"ws://{shown}:{self.port}{WS_API_PATH}"
        now = self.now_ns()
        for m in self.markets.values():
            if m.flow is not None:
                m.flow_clock = now
                m.flow.seed_book(now)
                self._dispatch(m, m.tap.take())
        self.started = True
        self._spawn(self._publisher(), "publisher")
        if self.config.auto_liquidity:
            for m in self.markets.values():
                if m.flow is not None:
                    self._spawn(self._run_flow(m), f"flow:{m.id}")
                elif m.replay is not None:
                    self._spawn(self._run_replay(m), f"replay:{m.id}")
        log.info("exchange server listening on %s", self.url)
        return self

    async def stop(self) -> None:
        """Stop timers, close every websocket, stop listening."""
        if not self.started:
            return
        self.started = False
        for t in list(self._tasks):
            t.cancel()
        for c in list(self._conns):
            c.closed = True
            try:  # a polite close; a client that does not answer is cut off
                await asyncio.wait_for(c.ws.close(code=1001, message=b"server shutdown"), 0.5)
            except Exception:  # noqa: BLE001 - timeouts and already broken connections alike
                c.abort()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "ExchangeServer":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def _spawn(self, coro, name: str) -> asyncio.Task:
        t = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(t)
        t.add_done_callback(self._task_done)
        return t

    def _task_done(self, t: asyncio.Task) -> None:
        self._tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log.error("exchange server task %s failed", t.get_name(), exc_info=t.exception())

    # ------------------------------------------------------------------ public helpers

    def now_ns(self) -> int:
        return time.time_ns() + self.config.clock_offset_ms * 1_000_000

    def engine(self, symbol: str) -> MatchingEngine:
        """The matching engine of ``symbol`` (unified ``BTC/USDT`` or venue ``BTCUSDT``)."""
        return self._market_by_any(symbol).engine

    def update_id(self, symbol: str) -> int:
        """``u`` of the last depth diff published for ``symbol`` (= REST ``lastUpdateId``)."""
        return self._market_by_any(symbol).seq

    def _market_by_any(self, symbol: str) -> _Market:
        m = self._unified.get(symbol) or self.markets.get(symbol.upper().replace("/", ""))
        if m is None:
            raise KeyError(symbol)
        return m

    def advance(self, seconds: float, symbol: str | None = None) -> int:
        """Move background liquidity on by ``seconds`` of flow/recorded time, now. Returns events run.

        Meant for ``auto_liquidity: false`` (deterministic tests); with timers running it
        simply adds extra time.
        """
        n = 0
        for m in self._selected(symbol):
            if m.halted:
                continue
            if m.flow is not None:
                m.flow_clock += int(seconds * 1e9)
                ran = m.flow.step(m.flow_clock)
                n += ran if isinstance(ran, int) else len(ran)
            elif m.replay is not None:
                m.replay_clock += int(seconds * 1e9)
                n += m.replay.advance_to(m.replay_clock)
            self._dispatch(m, m.tap.take())
        return n

    def advance_replay_messages(self, count: int, symbol: str | None = None) -> int:
        """Process the next ``count`` recorded messages (tests)."""
        n = 0
        for m in self._selected(symbol):
            if m.replay is not None:
                n += m.replay.advance_messages(count)
                if m.replay.last_ns:
                    m.replay_clock = max(m.replay_clock, m.replay.last_ns)
                self._dispatch(m, m.tap.take())
        return n

    def _selected(self, symbol: str | None) -> list[_Market]:
        return list(self.markets.values()) if symbol is None else [self._market_by_any(symbol)]

    def replay_feed(self, symbol: str) -> ReplayFeed | None:
        """The :class:`ReplayFeed` of a replayed symbol (``stats``, ``synced``, ``last_ns``, ``book()``)."""
        return self._market_by_any(symbol).replay

    def halt(self, symbol: str, halted: bool = True) -> None:
        """Stop (or resume) trading: exchangeInfo status ``HALT``, new orders -1013 "Market is closed."."""
        self._market_by_any(symbol).halted = halted

    def deposit(self, account: str, asset: str, amount: int) -> None:
        """Credit (or debit, negative) ``amount`` of ``asset``; sends ``balanceUpdate`` + ``outboundAccountPosition``."""
        k = self._accounts[account]
        b = k.wallet.setdefault(asset, Balance(asset, 0))
        b.free += amount
        now = self.now_ns()
        self._emit_user(account, [bd.balance_update(asset, amount, now), bd.account_position([(asset, b.free, b.locked)], now)])

    def drop_streams(self, kind: str = "all") -> int:
        """Abort websocket connections (``market``, ``user`` or ``all``); returns how many."""
        n = 0
        for c in list(self._conns):
            if kind == "all" or c.kind == kind or (kind == "user" and c.listen_keys):
                c.abort()
                n += 1
        return n

    # ------------------------------------------------------------------ engine → clients

    def _dispatch(
        self,
        m: _Market,
        reports: list[ExecReport],
        cancel_ids: Mapping[int, str] | None = None,
    ) -> None:
        """Record what happened to our accounts' orders and tell their user streams."""
        if m.replay is not None and reports:
            m.replay.observe(reports)
        touched: dict[str, dict[int, None]] = {}
        mine: dict[str, list[ExecReport]] = {}
        for r in reports:
            acct = r.account_id
            if acct not in self._accounts or not r.order_id or r.exec_type in ("REJECTED", "CANCEL_REJECTED"):
                continue
            touched.setdefault(acct, {})[r.order_id] = None
            mine.setdefault(acct, []).append(r)
            if r.exec_type == "TRADE":
                m.store(acct).trades.append(r)
        now = self.now_ns()
        for acct, ids in touched.items():
            store = m.store(acct)
            for oid in ids:
                o = m.engine.order(acct, order_id=oid)
                if o is not None:
                    store.by_id[oid] = o
                    store.by_cid[o.client_order_id] = oid
            events = []
            for r in mine[acct]:
                o = store.by_id.get(r.order_id)
                orig = ""
                if r.exec_type == "CANCELED" and cancel_ids is not None and r.order_id in cancel_ids:
                    orig = r.client_order_id
                ev = bd.execution_report(
                    m.id,
                    r,
                    post_only=o.post_only if o is not None else False,
                    created_ns=o.created_ns if o is not None else r.ts_ns,
                    event_ns=now,
                    orig_client_id=orig,
                    orig_quote_qty=store.quote_qty.get(r.order_id, 0),
                )
                if orig:
                    ev["c"] = cancel_ids[r.order_id]
                events.append(ev)
            w = self._accounts[acct].wallet
            events.append(
                bd.account_position(
                    [(a, w[a].free, w[a].locked) for a in (m.spec.base, m.spec.quote) if a in w], now
                )
            )
            self._emit_user(acct, events)
        self._collect_trades(m)

    def _collect_trades(self, m: _Market) -> None:
        t = m.engine.drain_trades()
        if t:
            m.public_trades.extend(t)
            m.pending_trades.extend(t)

    def _emit_user(self, account: str, events: list[dict]) -> None:
        subs = self._user_subs.get(account)
        if not subs:
            return
        for conn, sid in list(subs):
            for ev in events:
                if isinstance(sid, int):
                    text = bd.dumps({"subscriptionId": sid, "event": ev})
                elif conn.combined:
                    text = bd.dumps({"stream": sid, "data": ev})
                else:
                    text = bd.dumps(ev)
                conn.send(text, True, "user")

    def publish(self) -> None:
        """Publish depth diffs, trades and book tickers accumulated since the last call (timer or tests)."""
        now = self.now_ns()
        for m in self.markets.values():
            self._collect_trades(m)
            changes = m.engine.drain_book_changes()
            if changes:
                first = m.seq + 1
                m.seq += len(changes)
                if self.faults.take_depth_gap():
                    log.debug("fault: depth diff %s-%s of %s not sent", first, m.seq, m.id)
                else:
                    raw = bd.dumps(bd.depth_update(m.id, first, m.seq, changes, now))
                    self._broadcast(f"{m.lower}@depth", raw)
            trades, m.pending_trades = m.pending_trades, []
            for price, qty, aggressor, tid, ts in trades:
                self._broadcast(f"{m.lower}@trade", bd.dumps(bd.trade_event(m.id, price, qty, aggressor, tid, ts, now)))
                self._broadcast(f"{m.lower}@aggTrade", bd.dumps(bd.agg_trade_event(m.id, price, qty, aggressor, tid, ts, now)))
            top = (m.engine.best_bid(), m.engine.best_ask())
            if top != m.top:
                m.top = top
                raw = bd.dumps(bd.book_ticker(m.id, m.seq, top[0], top[1]))
                self._broadcast(f"{m.lower}@bookTicker", raw)

    def _broadcast(self, channel: str, raw: str) -> None:
        for c in self._conns:
            if c.kind != "market" or not c.streams:
                continue
            for name, ch in c.streams.items():
                if ch == channel:
                    c.send('{"stream":"%s","data":%s}' % (name, raw) if c.combined else raw, True, "market")

    async def _publisher(self) -> None:
        period = self.config.depth_interval_ms / 1e3
        while True:
            await asyncio.sleep(period)
            try:
                self.publish()
            except Exception:  # noqa: BLE001 - keep publishing
                log.exception("publish failed")

    async def _run_flow(self, m: _Market) -> None:
        # flow time moves with the wall clock, but stands still while the market is halted
        period = m.cfg.flow.step_ms / 1e3
        last = self.now_ns()
        while True:
            await asyncio.sleep(period)
            now = self.now_ns()
            dt, last = now - last, now
            if m.halted:
                continue
            m.flow_clock += dt
            m.flow.step(m.flow_clock)
            self._dispatch(m, m.tap.take())

    async def _run_replay(self, m: _Market) -> None:
        feed = m.replay
        speed = m.cfg.replay.speed
        t0_rec = m.replay_clock
        t0 = time.monotonic()
        while not feed.done:
            nxt = feed.next_ns()
            if nxt is None:
                break
            due = t0 + (nxt - t0_rec) / 1e9 / speed
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if m.halted:  # recorded time stands still while the market is halted
                await asyncio.sleep(0.05)
                t0 += 0.05
                continue
            m.replay_clock = max(m.replay_clock, nxt)
            feed.advance_to(m.replay_clock)
            self._dispatch(m, m.tap.take())
        log.info("replay of %s finished", m.id)

    # ------------------------------------------------------------------ HTTP plumbing

    def _add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/v3/ping", self._ping)
        r.add_get("/api/v3/time", self._time)
        r.add_get("/api/v3/exchangeInfo", self._exchange_info)
        r.add_get("/api/v3/depth", self._depth)
        r.add_get("/api/v3/ticker/24hr", self._ticker_24hr)
        r.add_get("/api/v3/ticker/price", self._ticker_price)
        r.add_get("/api/v3/ticker/bookTicker", self._book_ticker)
        r.add_get("/api/v3/aggTrades", self._agg_trades)
        r.add_get("/api/v3/trades", self._trades)
        r.add_get("/api/v3/account", self._account)
        r.add_post("/api/v3/order", self._new_order)
        r.add_delete("/api/v3/order", self._cancel_order)
        r.add_get("/api/v3/order", self._get_order)
        r.add_get("/api/v3/openOrders", self._open_orders)
        r.add_delete("/api/v3/openOrders", self._cancel_all)
        r.add_get("/api/v3/allOrders", self._all_orders)
        r.add_get("/api/v3/myTrades", self._my_trades)
        r.add_post("/api/v3/userDataStream", self._listen_key_new)
        r.add_put("/api/v3/userDataStream", self._listen_key_keepalive)
        r.add_delete("/api/v3/userDataStream", self._listen_key_close)
        r.add_get(WS_API_PATH, self._ws_api)
        r.add_get("/stream", self._ws_market)
        r.add_get("/stream/{tail:.*}", self._ws_market)
        r.add_get("/ws", self._ws_market)
        r.add_get("/ws/{tail:.*}", self._ws_market)
        self._admin_routes(app)

    @web.middleware
    async def _middleware(self, request: web.Request, handler):
        path = request.path
        if not path.startswith("/api/"):
            return await handler(request)
        raw_query = request.rel_url.raw_query_string
        raw_body = ""
        if request.method in ("POST", "PUT", "DELETE") and request.can_read_body:
            raw_body = await request.text()
        params: dict[str, str] = dict(parse_qsl(raw_body, keep_blank_values=True)) if raw_body else {}
        params.update(dict(parse_qsl(raw_query, keep_blank_values=True)))  # the query string wins, like Binance
        request[_PARAMS] = params
        self.requests[(request.method, path)] += 1
        request[_RAW] = (raw_query, raw_body)
        key = self._keys.get(request.headers.get("X-MBX-APIKEY", ""))
        bucket = f"key:{key.name}" if key is not None else f"ip:{request.remote}"
        weight = request_weight(request.method, path, params)

        delay = self.faults.delay_s()
        if delay > 0:
            self.faults.injected["delay"] += 1
            await asyncio.sleep(delay)
        if request.method == "POST" and path == "/api/v3/order":
            late = self.faults.take_late_order()
            if late:
                await asyncio.sleep(late)
        if self.faults.config.rate_limit_storm:
            self.faults.injected["rate_limit_storm"] += 1
            ra = self.faults.config.rate_limit_storm_retry_after_s
            return self._json(
                {"code": -1003, "msg": "Too many requests; please use the websocket for live updates."},
                429,
                {"Retry-After": str(ra), "X-MBX-USED-WEIGHT-1M": str(self.limiter.used(bucket))},
            )
        d = self.limiter.check(bucket, weight)
        used = {"X-MBX-USED-WEIGHT-1M": str(d.used)}
        who = f"IP({request.remote})" if key is None else f"API key ({key.name})"
        if d.status == 429:
            return self._json(
                {
                    "code": -1003,
                    "msg": f"Too much request weight used; current limit of {who} is "
                    f"{self.config.rate_limits.weight_per_minute} request weight per 1 MINUTE. "
                    "Please use WebSocket Streams for live updates to avoid polling the API.",
                },
                429,
                {"Retry-After": str(d.retry_after), **used},
            )
        if d.status == 418:
            until = int(time.time() * 1000) + d.retry_after * 1000
            return self._json(
                {
                    "code": -1003,
                    "msg": f"Way too much request weight used; {who} banned until {until}. "
                    "Please use WebSocket Streams for live updates to avoid bans.",
                },
                418,
                {"Retry-After": str(d.retry_after), **used},
            )
        if self.faults.take_error():
            status = self.faults.config.error_status
            if self.faults.config.error_body == "json":
                return self._json(
                    {
                        "code": -1007,
                        "msg": "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
                    },
                    status,
                    used,
                )
            return web.Response(status=status, text="Service Unavailable", headers=used)
        try:
            resp = await handler(request)
        except ApiError as e:
            resp = self._json(e.body(), e.status, e.headers)
        except web.HTTPException as e:  # 404/405 of unknown endpoints carry the header too
            e.headers.update(used)
            raise
        except _Dropped:
            mode = self.faults.config.drop_mode
            if mode == "close":
                if request.transport is not None:
                    request.transport.abort()
                resp = web.Response(status=503, text="connection dropped")
            else:
                resp = web.Response(status=int(mode), text="Gateway Timeout" if mode == "504" else "Service Unavailable")
        resp.headers.update(used)
        return resp

    @staticmethod
    def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
        return web.Response(text=bd.dumps(body), status=status, content_type="application/json", headers=headers)

    def _market_param(self, params: Mapping[str, str], required: bool = True) -> _Market | None:
        sym = params.get("symbol")
        if not sym:
            if required:
                raise bd.mandatory("symbol")
            return None
        m = self.markets.get(sym)
        if m is None:
            raise bd.invalid_symbol()
        return m

    def _auth(self, request: web.Request) -> _Key:
        """Check API key, HMAC signature and timestamp/recvWindow of a signed request."""
        api_key = request.headers.get("X-MBX-APIKEY")
        if not api_key:
            raise bd.api_key_format()
        key = self._keys.get(api_key)
        if key is None:
            raise bd.bad_api_key()
        raw_query, raw_body = request[_RAW]
        q, sig_q = bd.strip_signature(raw_query)
        b, sig_b = bd.strip_signature(raw_body)
        if not bd.verify_hmac(key.secret, q + b, sig_q or sig_b):
            raise bd.bad_signature()
        params = request[_PARAMS]
        ts = _parse_int(params, "timestamp")
        if ts is None:
            raise bd.mandatory("timestamp")
        window = _parse_int(params, "recvWindow", self.config.default_recv_window_ms)
        if window > self.config.max_recv_window_ms or window <= 0:
            raise ApiError(-1131, f"recvWindow must be less than {self.config.max_recv_window_ms}.")
        self._check_time(ts, window)
        return key

    def _check_time(self, ts: int, window: int) -> None:
        now_ms = self.now_ns() // 1_000_000
        if ts >= now_ms + 1000:
            raise ApiError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now_ms - ts > window:
            raise ApiError(-1021, "Timestamp for this request is outside of the recvWindow.")

    # ------------------------------------------------------------------ public REST

    async def _ping(self, request: web.Request) -> web.Response:
        return self._json({})

    async def _time(self, request: web.Request) -> web.Response:
        return self._json({"serverTime": self.now_ns() // 1_000_000})

    async def _exchange_info(self, request: web.Request) -> web.Response:
        p = request[_PARAMS]
        wanted: list[str] | None = None
        if p.get("symbol"):
            wanted = [p["symbol"]]
        elif p.get("symbols"):
            try:
                wanted = json.loads(p["symbols"])
            except ValueError:
                raise ApiError(-1100, "Illegal characters found in parameter 'symbols'.") from None
        if wanted is not None and any(s not in self.markets for s in wanted):
            raise bd.invalid_symbol()
        ms = [self.markets[s] for s in wanted] if wanted is not None else list(self.markets.values())
        rl = self.config.rate_limits
        return self._json(
            {
                "timezone": "UTC",
                "serverTime": self.now_ns() // 1_000_000,
                "rateLimits": [
                    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": rl.weight_per_minute},
                    {
                        "rateLimitType": "ORDERS",
                        "interval": "SECOND",
                        "intervalNum": int(rl.orders_window_s),
                        "limit": rl.orders_per_window,
                    },
                ],
                "exchangeFilters": [],
                "symbols": [bd.exchange_symbol(m.spec, "HALT" if m.halted else "TRADING") for m in ms],
            }
        )

    def _depth_body(self, m: _Market, limit: int) -> dict:
        bids, asks = m.engine.depth(limit)
        return {
            "lastUpdateId": m.seq,
            "bids": [[bd.fmt(p), bd.fmt(q)] for p, q in bids],
            "asks": [[bd.fmt(p), bd.fmt(q)] for p, q in asks],
        }

    async def _depth(self, request: web.Request) -> web.Response:
        p = request[_PARAMS]
        m = self._market_param(p)
        limit = _parse_int(p, "limit", 100)
        if limit <= 0 or limit > 5000:
            raise ApiError(-1100, "Illegal characters found in parameter 'limit'; legal range is '1-5000'.")
        return self._json(self._depth_body(m, limit))

    def _ticker(self, m: _Market) -> dict:
        now_ms = self.now_ns() // 1_000_000
        since = now_ms - 86_400_000
        trades = [t for t in m.public_trades if t[4] // 1_000_000 >= since]
        bid, ask = m.engine.best_bid(), m.engine.best_ask()
        z = bd.fmt(0)
        if trades:
            o, last = trades[0][0], trades[-1][0]
            hi, lo = max(t[0] for t in trades), min(t[0] for t in trades)
            vol = sum(t[1] for t in trades)
            qvol = sum(numbers.mul(t[0], t[1]) for t in trades)
            first_id, last_id = trades[0][3], trades[-1][3]
        else:
            o = last = hi = lo = vol = qvol = 0
            first_id = last_id = -1
        change = last - o
        pct = (Decimal(change) * 100 / Decimal(o)).quantize(Decimal("0.001")) if o else Decimal("0.000")
        vwap = numbers.parse(str((Decimal(qvol) / Decimal(vol)).quantize(Decimal("0.00000001")))) if vol else 0
        return {
            "symbol": m.id,
            "priceChange": bd.fmt(change),
            "priceChangePercent": str(pct),
            "weightedAvgPrice": bd.fmt(vwap),
            "prevClosePrice": z,
            "lastPrice": bd.fmt(last),
            "lastQty": bd.fmt(trades[-1][1]) if trades else z,
            "bidPrice": bd.fmt(bid[0]) if bid else z,
            "bidQty": bd.fmt(bid[1]) if bid else z,
            "askPrice": bd.fmt(ask[0]) if ask else z,
            "askQty": bd.fmt(ask[1]) if ask else z,
            "openPrice": bd.fmt(o),
            "highPrice": bd.fmt(hi),
            "lowPrice": bd.fmt(lo),
            "volume": bd.fmt(vol),
            "quoteVolume": bd.fmt(qvol),
            "openTime": since,
            "closeTime": now_ms,
            "firstId": first_id,
            "lastId": last_id,
            "count": len(trades),
        }

    def _markets_param(self, p: Mapping[str, str]) -> list[_Market]:
        m = self._market_param(p, required=False)
        if m is not None:
            return [m]
        if p.get("symbols"):
            try:
                names = json.loads(p["symbols"])
            except ValueError:
                raise ApiError(-1100, "Illegal characters found in parameter 'symbols'.") from None
            if any(n not in self.markets for n in names):
                raise bd.invalid_symbol()
            return [self.markets[n] for n in names]
        return list(self.markets.values())

    async def _ticker_24hr(self, request: web.Request) -> web.Response:
        p = request[_PARAMS]
        if p.get("symbol"):
            return self._json(self._ticker(self._market_param(p)))
        return self._json([self._ticker(m) for m in self._markets_param(p)])

    async def _ticker_price(self, request: web.Request) -> web.Response:
        p = request[_PARAMS]

        def one(m: _Market) -> dict:
            last = m.public_trades[-1][0] if m.public_trades else 0
            return {"symbol": m.id, "price": bd.fmt(last)}

        if p.get("symbol"):
            return self._json(one(self._market_param(p)))
        return self._json([one(m) for m in self._markets_param(p)])

    async def _book_ticker(self, request: web.Request) -> web.Response:
        p = request[_PARAMS]

        def one(m: _Market) -> dict:
            t = bd.book_ticker(m.id, m.seq, m.engine.best_bid(), m.engine.best_ask())
            return {"symbol": m.id, "bidPrice": t["b"], "bidQty": t["B"], "askPrice": t["a"], "askQty": t["A"]}

        if p.get("symbol"):
            return self._json(one(self._market_param(p)))
        return self._json([one(m) for m in self._markets_param(p)])

    def _trade_window(self, m: _Market, p: Mapping[str, str], id_name: str) -> list[tuple[int, int, Side, int, int]]:
        self._collect_trades(m)
        limit = min(max(_parse_int(p, "limit", 500), 1), 1000)
        from_id = _parse_int(p, id_name)
        start = _parse_int(p, "startTime")
        end = _parse_int(p, "endTime")
        trades = list(m.public_trades)
        if from_id is not None:
            trades = [t for t in trades if t[3] >= from_id][:limit]
        elif start is not None or end is not None:
            trades = [
                t
                for t in trades
                if (start is None or t[4] // 1_000_000 >= start) and (end is None or t[4] // 1_000_000 <= end)
            ][:limit]
        else:
            trades = trades[-limit:]
        return trades

    async def _agg_trades(self, request: web.Request) -> web.Response:
        p = request[_PARAMS]
        m = self._market_param(p)
        return self._json([bd.agg_trade(pr, q, ag, tid, ts) for pr, q, ag, tid, ts in self._trade_window(m, p, "fromId")])

    async def _trades(self, request: web.Request) -> web.Response:
        p = request[_PARAMS]
        m = self._market_param(p)
        out = [
            {
                "id": tid,
                "price": bd.fmt(pr),
                "qty": bd.fmt(q),
                "quoteQty": bd.fmt(numbers.mul(pr, q)),
                "time": ts // 1_000_000,
                "isBuyerMaker": ag is Side.SELL,
                "isBestMatch": True,
            }
            for pr, q, ag, tid, ts in self._trade_window(m, p, "fromId")
        ]
        return self._json(out)

    # ------------------------------------------------------------------ signed REST

    async def _account(self, request: web.Request) -> web.Response:
        key = self._auth(request)
        omit_zero = request[_PARAMS].get("omitZeroBalances") == "true"
        spec0 = next(iter(self.markets.values())).spec
        maker_bps = spec0.maker_fee_ppm // 100
        taker_bps = spec0.taker_fee_ppm // 100
        balances = [
            {"asset": a, "free": bd.fmt(b.free), "locked": bd.fmt(b.locked)}
            for a, b in sorted(key.wallet.items())
            if not (omit_zero and b.free == 0 and b.locked == 0)
        ]
        return self._json(
            {
                "makerCommission": maker_bps,
                "takerCommission": taker_bps,
                "buyerCommission": 0,
                "sellerCommission": 0,
                "commissionRates": {
                    "maker": bd.fmt(spec0.maker_fee_ppm * numbers.SCALE // numbers.PPM),
                    "taker": bd.fmt(spec0.taker_fee_ppm * numbers.SCALE // numbers.PPM),
                    "buyer": bd.fmt(0),
                    "seller": bd.fmt(0),
                },
                "canTrade": True,
                "canWithdraw": True,
                "canDeposit": True,
                "brokered": False,
                "requireSelfTradePrevention": False,
                "preventSor": False,
                "updateTime": self.now_ns() // 1_000_000,
                "accountType": "SPOT",
                "balances": balances,
                "permissions": ["SPOT"],
                "uid": abs(hash(key.name)) % 10**9,
            }
        )

    def _filters(self, m: _Market, otype: str, side: Side, qty: int | None, price: int | None, quote_qty: int | None) -> None:
        s = m.spec
        if price is not None and (price < s.min_price or price > s.max_price or price % s.tick_size):
            raise bd.filter_failure("PRICE_FILTER")
        if qty is not None:
            if qty % s.lot_size or qty <= 0:
                raise bd.filter_failure("LOT_SIZE")
            if otype == "MARKET":
                if qty < s.market_min_qty or qty > s.market_max_qty:
                    raise bd.filter_failure("MARKET_LOT_SIZE")
            elif qty < s.min_qty or qty > s.max_qty:
                raise bd.filter_failure("LOT_SIZE")
        if otype == "MARKET":
            if quote_qty is not None:
                notional = quote_qty
            else:
                ref = m.engine.best_ask() if side is Side.BUY else m.engine.best_bid()
                notional = numbers.mul(ref[0], qty) if ref is not None else None
            if notional is not None and notional < s.min_notional:
                raise bd.filter_failure("NOTIONAL")
        elif price is not None and qty is not None:
            n = numbers.mul(price, qty)
            if n < s.min_notional or n > s.max_notional:
                raise bd.filter_failure("NOTIONAL")

    def _qty_for_quote(self, m: _Market, side: Side, quote_qty: int) -> int:
        """Largest lot-multiple quantity whose walk through the book costs at most ``quote_qty``."""
        bids, asks = m.engine.depth(10_000)
        levels = asks if side is Side.BUY else bids
        left = quote_qty
        qty = 0
        for price, size in levels:
            can = min(size, left * numbers.SCALE // price)
            qty += can
            left -= numbers.mul(price, can)
            if can < size or left <= 0:
                break
        return numbers.round_down(qty, m.spec.lot_size)

    async def _new_order(self, request: web.Request) -> web.Response:
        key = self._auth(request)
        p = request[_PARAMS]
        m = self._market_param(p)
        side_s = p.get("side")
        if not side_s:
            raise bd.mandatory("side")
        if side_s not in ("BUY", "SELL"):
            raise ApiError(-1117, "Invalid side.")
        side = Side.BUY if side_s == "BUY" else Side.SELL
        otype = p.get("type")
        if not otype:
            raise bd.mandatory("type")
        if otype not in bd.ORDER_TYPES:
            raise ApiError(-1116, "Invalid orderType.")
        tif_s = p.get("timeInForce")
        qty = _parse_dec(p, "quantity")
        quote_qty = _parse_dec(p, "quoteOrderQty")
        price = _parse_dec(p, "price")
        resp_type = p.get("newOrderRespType") or "FULL"
        if resp_type not in ("ACK", "RESULT", "FULL"):
            raise ApiError(-1100, "Illegal characters found in parameter 'newOrderRespType'; legal range is 'ACK, RESULT, FULL'.")
        cid = p.get("newClientOrderId") or bd.new_client_order_id()
        if not _CID_RE.fullmatch(cid):
            raise ApiError(
                -1100, f"Illegal characters found in parameter 'newClientOrderId'; legal range is '{bd.CLIENT_ORDER_ID_RE}'."
            )
        tif = TimeInForce.GTC
        post_only = False
        order_type = OrderType.LIMIT
        if otype == "LIMIT":
            if not tif_s:
                raise bd.mandatory("timeInForce")
            if tif_s not in ("GTC", "IOC", "FOK"):
                raise ApiError(-1115, "Invalid timeInForce.")
            tif = TimeInForce(tif_s)
            if qty is None:
                raise bd.mandatory("quantity")
            if price is None:
                raise bd.mandatory("price")
            if quote_qty is not None:
                raise bd.not_required("quoteOrderQty")
        elif otype == "LIMIT_MAKER":
            if tif_s:
                raise bd.not_required("timeInForce")
            if qty is None:
                raise bd.mandatory("quantity")
            if price is None:
                raise bd.mandatory("price")
            post_only = True
        else:  # MARKET
            order_type = OrderType.MARKET
            if price is not None:
                raise bd.not_required("price")
            if tif_s:
                raise bd.not_required("timeInForce")
            if qty is None and quote_qty is None:
                raise ApiError(-1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!")
            if qty is not None and quote_qty is not None:
                raise bd.not_required("quoteOrderQty")
            tif = TimeInForce.IOC
        if m.halted:
            raise ApiError(-1013, "Market is closed.")
        ok, count = self.limiter.count_order(key.name)
        count_hdr = {"X-MBX-ORDER-COUNT-10S": str(count)}
        if not ok:
            rl = self.config.rate_limits
            raise ApiError(
                -1015,
                f"Too many new orders; current limit is {rl.orders_per_window} orders per {rl.orders_window_s:g} SECOND.",
                headers=count_hdr,
            )
        self._filters(m, otype, side, qty, price, quote_qty)
        if quote_qty is not None:
            qty = self._qty_for_quote(m, side, quote_qty)
            if qty < m.spec.market_min_qty or qty <= 0:
                raise bd.new_order_rejected("Order book liquidity is less than LOT_SIZE filter minimum quantity.")
        now = self.now_ns()
        reports = m.engine.submit(key.name, cid, side, qty, price, order_type, tif, post_only, now)
        first = reports[0]
        if first.exec_type == "REJECTED":
            self._collect_trades(m)
            raise self._reject_error(first.reason)
        oid = first.order_id
        if quote_qty is not None:
            m.store(key.name).quote_qty[oid] = quote_qty
        self._dispatch(m, reports)
        o = m.store(key.name).by_id.get(oid) or m.engine.order(key.name, order_id=oid)
        fills = [r for r in reports if r.exec_type == "TRADE" and r.order_id == oid and r.account_id == key.name]
        body = bd.order_response(m.id, o, fills, resp_type, now, quote_qty or 0)
        if self.faults.take_drop_after_execute():
            raise _Dropped()
        return self._json(body, headers=count_hdr)

    @staticmethod
    def _reject_error(reason: str) -> ApiError:
        if reason in (
            "Account has insufficient balance for requested action.",
            "Order would immediately match and take.",
            "Duplicate order sent.",
        ):
            return bd.new_order_rejected(reason)
        # the engine's own filter messages (should not happen: the server checks filters first)
        return ApiError(-1013, reason)

    def _find_order(self, m: _Market, account: str, p: Mapping[str, str]) -> SimOrder | None:
        oid = _parse_int(p, "orderId")
        cid = p.get("origClientOrderId")
        if oid is None and not cid:
            raise ApiError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        store = m.store(account)
        if oid is None:
            oid = store.by_cid.get(cid)
            if oid is None:
                return None
        o = store.by_id.get(oid)
        if o is not None and cid and o.client_order_id != cid:
            return None
        return o

    async def _get_order(self, request: web.Request) -> web.Response:
        key = self._auth(request)
        p = request[_PARAMS]
        m = self._market_param(p)
        o = self._find_order(m, key.name, p)
        if o is None:
            raise bd.order_does_not_exist()
        return self._json(bd.order_fields(m.id, o, orig_quote_qty=m.store(key.name).quote_qty.get(o.order_id, 0)))

    async def _cancel_order(self, request: web.Request) -> web.Response:
        key = self._auth(request)
        p = request[_PARAMS]
        m = self._market_param(p)
        o = self._find_order(m, key.name, p)
        if o is None or not o.is_open:
            raise bd.unknown_order_cancel()
        cancel_cid = p.get("newClientOrderId") or bd.new_client_order_id()
        now = self.now_ns()
        reports = m.engine.cancel(key.name, order_id=o.order_id, ts_ns=now)
        if reports[0].exec_type == "CANCEL_REJECTED":
            raise bd.unknown_order_cancel()
        self._dispatch(m, reports, cancel_ids={o.order_id: cancel_cid})
        done = m.store(key.name).by_id[o.order_id]
        body = bd.cancel_response(m.id, done, cancel_cid, now)
        if self.faults.take_drop_after_execute():
            raise _Dropped()
        return self._json(body)

    async def _cancel_all(self, request: web.Request) -> web.Response:
        key = self._auth(request)
        m = self._market_param(request[_PARAMS])
        now = self.now_ns()
        reports = m.engine.cancel_all(key.name, ts_ns=now)
        if not reports:
            raise bd.unknown_order_cancel()
        ids = {r.order_id: bd.new_client_order_id() for r in reports}
        self._dispatch(m, reports, cancel_ids=ids)
        store = m.store(key.name)
        body = [bd.cancel_response(m.id, store.by_id[r.order_id], ids[r.order_id], now) for r in reports]
        if self.faults.take_drop_after_execute():
            raise _Dropped()
        return self._json(body)

    async def _open_orders(self, request: web.Request) -> web.Response:
        key = self._auth(request)
        m = self._market_param(request[_PARAMS], required=False)
        out = []
        for mk in [m] if m is not None else self.markets.values():
            qq = mk.store(key.name).quote_qty
            out.extend(bd.order_fields(mk.id, o, orig_quote_qty=qq.get(o.order_id, 0)) for o in mk.engine.open_orders(key.name))
        return self._json(out)

    async def _all_orders(self, request: web.Request) -> web.Response:
        key = self._auth(request)
        p = request[_PARAMS]
        m = self._market_param(p)
        store = m.store(key.name)
        limit = min(max(_parse_int(p, "limit", 500), 1), 1000)
        from_id = _parse_int(p, "orderId")
        start = _parse_int(p, "startTime")
        end = _parse_int(p, "endTime")
        orders = sorted(store.by_id.values(), key=lambda o: o.order_id)
        if from_id is not None:
            orders = [o for o in orders if o.order_id >= from_id][:limit]
        else:
            orders = [
                o
                for o in orders
                if (start is None or o.created_ns // 1_000_000 >= start) and (end is None or o.created_ns // 1_000_000 <= end)
            ]
            orders = orders[:limit] if start is not None else orders[-limit:]
        return self._json([bd.order_fields(m.id, o, orig_quote_qty=store.quote_qty.get(o.order_id, 0)) for o in orders])

    async def _my_trades(self, request: web.Request) -> web.Response:
        key = self._auth(request)
        p = request[_PARAMS]
        m = self._market_param(p)
        limit = min(max(_parse_int(p, "limit", 500), 1), 1000)
        order_id = _parse_int(p, "orderId")
        from_id = _parse_int(p, "fromId")
        start = _parse_int(p, "startTime")
        end = _parse_int(p, "endTime")
        trades = list(m.store(key.name).trades)
        if order_id is not None:
            trades = [t for t in trades if t.order_id == order_id]
        if from_id is not None:
            trades = [t for t in trades if t.trade_id >= from_id][:limit]
        elif start is not None or end is not None:
            trades = [
                t
                for t in trades
                if (start is None or t.ts_ns // 1_000_000 >= start) and (end is None or t.ts_ns // 1_000_000 <= end)
            ][:limit]
        else:
            trades = trades[-limit:]
        return self._json([bd.my_trade(m.id, t) for t in trades])

    def _key_only(self, request: web.Request) -> _Key:
        api_key = request.headers.get("X-MBX-APIKEY")
        if not api_key:
            raise bd.api_key_format()
        key = self._keys.get(api_key)
        if key is None:
            raise bd.bad_api_key()
        return key

    async def _listen_key_new(self, request: web.Request) -> web.Response:
        key = self._key_only(request)
        lk = bd.random_id(60)
        self._listen_keys[lk] = key.name
        return self._json({"listenKey": lk})

    async def _listen_key_keepalive(self, request: web.Request) -> web.Response:
        key = self._key_only(request)
        lk = request[_PARAMS].get("listenKey")
        if self._listen_keys.get(lk or "") != key.name:
            raise ApiError(-1125, "This listenKey does not exist.")
        return self._json({})

    async def _listen_key_close(self, request: web.Request) -> web.Response:
        key = self._key_only(request)
        lk = request[_PARAMS].get("listenKey") or ""
        if self._listen_keys.get(lk) != key.name:
            raise ApiError(-1125, "This listenKey does not exist.")
        del self._listen_keys[lk]
        subs = self._user_subs.get(key.name, set())
        for conn, sid in list(subs):
            if sid == lk:
                subs.discard((conn, sid))
        return self._json({})

    # ------------------------------------------------------------------ websockets

    def _register(self, conn: _Conn) -> asyncio.Task:
        self._conns.add(conn)
        return self._spawn(conn.run_sender(), f"ws-sender:{conn.kind}")

    def _unregister(self, conn: _Conn, sender: asyncio.Task) -> None:
        conn.closed = True
        self._conns.discard(conn)
        for subs in self._user_subs.values():
            for item in [x for x in subs if x[0] is conn]:
                subs.discard(item)
        sender.cancel()

    def _subscribe_stream(self, conn: _Conn, name: str) -> None:
        account = self._listen_keys.get(name)
        if account is not None:
            conn.listen_keys.add(name)
            self._user_subs.setdefault(account, set()).add((conn, name))
        else:
            channel = _channel(name)
            if channel is not None:
                conn.streams[name] = channel

    async def _ws_market(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        combined = request.path.startswith("/stream")
        conn = _Conn(self, ws, request, "market", combined)
        sender = self._register(conn)
        try:
            tail = request.match_info.get("tail", "")
            if tail and not combined:
                for name in tail.split("/"):
                    if name in self._listen_keys or "@" in name:
                        self._subscribe_stream(conn, name)
            if combined and request.query.get("streams"):
                for name in request.query["streams"].split("/"):
                    if name:
                        self._subscribe_stream(conn, name)
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                self._on_market_request(conn, msg.data)
        finally:
            self._unregister(conn, sender)
        return ws

    def _on_market_request(self, conn: _Conn, text: str) -> None:
        try:
            req = json.loads(text)
        except ValueError as exc:
            conn.send(bd.dumps({"error": {"code": 3, "msg": f"Invalid JSON: {exc}"}}))
            return
        if not isinstance(req, dict):
            conn.send(bd.dumps({"error": {"code": 3, "msg": "Invalid JSON: expected an object"}}))
            return
        rid = req.get("id")
        method = req.get("method")
        params = req.get("params") or []
        if method in ("SUBSCRIBE", "UNSUBSCRIBE") and not isinstance(params, list):
            conn.send(bd.dumps({"error": {"code": 2, "msg": "Invalid request: params must be a list"}, "id": rid}))
            return
        if method == "SUBSCRIBE":
            for name in params:
                self._subscribe_stream(conn, str(name))
            conn.send(bd.dumps({"result": None, "id": rid}))
        elif method == "UNSUBSCRIBE":
            for name in params:
                conn.streams.pop(str(name), None)
                if name in conn.listen_keys:
                    conn.listen_keys.discard(name)
                    acct = self._listen_keys.get(name)
                    if acct is not None:
                        self._user_subs.get(acct, set()).discard((conn, name))
            conn.send(bd.dumps({"result": None, "id": rid}))
        elif method == "LIST_SUBSCRIPTIONS":
            conn.send(bd.dumps({"result": sorted(set(conn.streams) | conn.listen_keys), "id": rid}))
        elif method == "SET_PROPERTY":
            conn.send(bd.dumps({"result": None, "id": rid}))
        elif method == "GET_PROPERTY":
            conn.send(bd.dumps({"result": conn.combined, "id": rid}))
        else:
            conn.send(bd.dumps({"error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"}, "id": rid}))

    async def _ws_api(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Conn(self, ws, request, "user", False)
        sender = self._register(conn)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                self._on_ws_api_request(conn, msg.data)
        finally:
            self._unregister(conn, sender)
        return ws

    def _on_ws_api_request(self, conn: _Conn, text: str) -> None:
        try:
            req = json.loads(text)
            rid = req.get("id")
        except (ValueError, AttributeError):
            conn.send(bd.dumps({"id": None, "status": 400, "error": {"code": -1100, "msg": "Malformed request."}}))
            return

        def ok(result: Any) -> None:
            conn.send(bd.dumps({"id": rid, "status": 200, "result": result}))

        def err(e: ApiError) -> None:
            conn.send(bd.dumps({"id": rid, "status": e.status, "error": e.body()}))

        method = req.get("method")
        params = req.get("params") or {}
        try:
            if method == "userDataStream.subscribe.signature":
                key = self._ws_api_auth(params)
                sid = conn.next_sub_id
                conn.next_sub_id += 1
                conn.user_subs[sid] = key.name
                self._user_subs.setdefault(key.name, set()).add((conn, sid))
                ok({"subscriptionId": sid})
            elif method == "userDataStream.unsubscribe":
                sid = params.get("subscriptionId")
                ids = list(conn.user_subs) if sid is None else [int(sid)]
                for s in ids:
                    acct = conn.user_subs.pop(s, None)
                    if acct is None:
                        raise ApiError(-2, "Invalid subscriptionId.")
                    self._user_subs.get(acct, set()).discard((conn, s))
                ok({})
            elif method == "session.subscriptions":
                ok([{"subscriptionId": s} for s in sorted(conn.user_subs)])
            elif method == "ping":
                ok({})
            elif method == "time":
                ok({"serverTime": self.now_ns() // 1_000_000})
            else:
                raise ApiError(-1100, f"Unknown method: {method!r}.")
        except ApiError as e:
            err(e)

    def _ws_api_auth(self, params: Mapping[str, Any]) -> _Key:
        key = self._keys.get(str(params.get("apiKey", "")))
        if key is None:
            raise bd.bad_api_key()
        sig = params.get("signature")
        if not (
            bd.verify_hmac(key.secret, bd.ws_api_payload(params, encoded=False), sig)
            or bd.verify_hmac(key.secret, bd.ws_api_payload(params, encoded=True), sig)
        ):
            raise bd.bad_signature()
        try:
            ts = int(params.get("timestamp"))
            window = int(params.get("recvWindow", self.config.default_recv_window_ms))
        except (TypeError, ValueError):
            raise bd.mandatory("timestamp") from None
        self._check_time(ts, window)
        return key

    # ------------------------------------------------------------------ admin

    def _admin_routes(self, app: web.Application) -> None:
        """Admin API (JSON), guarded by ``X-Admin-Token`` and loopback-only:

        * ``GET /admin/faults`` → ``{"config": FaultConfig, "injected": {kind: count}}``
        * ``POST /admin/faults`` body: partial FaultConfig → same answer; ``POST /admin/faults/reset``
        * ``POST /admin/drop_streams`` ``{"kind": "market"|"user"|"all"}`` → ``{"dropped": n}``
        * ``POST /admin/halt`` ``{"symbol": "BTC/USDT", "halted": true}``
        * ``POST /admin/advance`` ``{"seconds": 0.5, "symbol": null}`` → ``{"events": n}`` (step flow/replay)
        * ``POST /admin/publish`` → publish depth/trades now
        * ``POST /admin/deposit`` ``{"account": "default", "asset": "USDT", "amount": "100"}``
        * ``POST /admin/rate_limits/reset`` → forget weight/order counters and bans
        * ``GET /admin/state[?account=NAME&trades=0]`` → books' tops and update ids, per account
          balances, open orders by client id and fills by trade id (the server's truth)
        * ``GET /admin/book?symbol=BTC/USDT&limit=100`` → depth like ``/api/v3/depth``, unlimited weight
        """
        r = app.router
        r.add_get("/admin/faults", self._admin(lambda req, body: self.faults.as_dict()))
        r.add_post("/admin/faults", self._admin(self._admin_set_faults))
        r.add_post("/admin/faults/reset", self._admin(lambda req, body: (self.faults.reset(), self.faults.as_dict())[1]))
        r.add_post("/admin/drop_streams", self._admin(lambda req, body: {"dropped": self.drop_streams(body.get("kind", "all"))}))
        r.add_post("/admin/halt", self._admin(self._admin_halt))
        r.add_post("/admin/advance", self._admin(lambda req, body: {"events": self.advance(float(body.get("seconds", 0)), body.get("symbol"))}))
        r.add_post("/admin/publish", self._admin(lambda req, body: (self.publish(), {})[1]))
        r.add_post("/admin/deposit", self._admin(self._admin_deposit))
        r.add_post("/admin/rate_limits/reset", self._admin(lambda req, body: (self.limiter.reset(), {})[1]))
        r.add_get("/admin/state", self._admin(self._admin_state))
        r.add_get("/admin/book", self._admin(self._admin_book))

    def _admin(self, fn):
        async def handler(request: web.Request) -> web.Response:
            token = self.config.admin_token
            if token is None:
                raise web.HTTPNotFound()
            if request.remote not in _LOOPBACK:
                return self._json({"error": "admin answers loopback clients only"}, 403)
            if not hmac.compare_digest(request.headers.get(ADMIN_HEADER, ""), token.reveal()):
                return self._json({"error": "bad admin token"}, 401)
            body: dict = {}
            if request.method == "POST" and request.can_read_body:
                try:
                    body = await request.json()
                except ValueError:
                    return self._json({"error": "body must be JSON"}, 400)
                if not isinstance(body, dict):
                    return self._json({"error": "body must be a JSON object"}, 400)
            try:
                return self._json(fn(request, body))
            except (ValidationError, ValueError, KeyError) as exc:
                return self._json({"error": str(exc)}, 400)

        return handler

    def _admin_set_faults(self, request: web.Request, body: dict) -> dict:
        self.faults.update(body)
        return self.faults.as_dict()

    def _admin_halt(self, request: web.Request, body: dict) -> dict:
        self.halt(body["symbol"], bool(body.get("halted", True)))
        return {"symbol": body["symbol"], "halted": bool(body.get("halted", True))}

    def _admin_deposit(self, request: web.Request, body: dict) -> dict:
        self.deposit(body["account"], body["asset"], numbers.parse(str(body["amount"])))
        b = self._accounts[body["account"]].wallet[body["asset"]]
        return {"asset": body["asset"], "free": bd.fmt(b.free), "locked": bd.fmt(b.locked)}

    def _admin_state(self, request: web.Request, body: dict) -> dict:
        q = request.query
        return self.state(q.get("account"), trades=q.get("trades", "1") not in ("0", "false"))

    def _admin_book(self, request: web.Request, body: dict) -> dict:
        m = self._market_by_any(request.query["symbol"])
        return self._depth_body(m, int(request.query.get("limit", "5000")))

    def state(self, account: str | None = None, *, trades: bool = True) -> dict:
        """The server's truth: per market top of book and update id; per account balances,
        open orders by client id, fills by trade id (strings as on the wire)."""
        out: dict[str, Any] = {
            "server_time": self.now_ns() // 1_000_000,
            "markets": {},
            "accounts": {},
            "user_streams": {a: len(s) for a, s in self._user_subs.items() if s},
            "connections": {
                "market": sum(c.kind == "market" for c in self._conns),
                "user": sum(c.kind == "user" for c in self._conns),
                "market_streams": sorted(n for c in self._conns for n in c.streams),
            },
        }
        for m in self.markets.values():
            bid, ask = m.engine.best_bid(), m.engine.best_ask()
            out["markets"][m.spec.symbol] = {
                "symbol": m.id,
                "update_id": m.seq,
                "halted": m.halted,
                "best_bid": [bd.fmt(bid[0]), bd.fmt(bid[1])] if bid else None,
                "best_ask": [bd.fmt(ask[0]), bd.fmt(ask[1])] if ask else None,
                "last_trade_id": m.engine.last_trade_id,
            }
        names = [account] if account is not None else list(self._accounts)
        for name in names:
            k = self._accounts[name]
            acc: dict[str, Any] = {
                "balances": {a: {"free": bd.fmt(b.free), "locked": bd.fmt(b.locked)} for a, b in sorted(k.wallet.items())},
                "open_orders": {},
                "trades": {},
            }
            for m in self.markets.values():
                store = m.store(name)
                acc["open_orders"][m.spec.symbol] = {
                    o.client_order_id: bd.order_fields(m.id, o, orig_quote_qty=store.quote_qty.get(o.order_id, 0))
                    for o in m.engine.open_orders(name)
                }
                if trades:
                    acc["trades"][m.spec.symbol] = {str(t.trade_id): bd.my_trade(m.id, t) for t in store.trades}
            out["accounts"][name] = acc
        return out


# ============================================================================ command line


@click.group("exchange")
def exchange_cli() -> None:
    """The simulated Binance-dialect exchange server."""


@exchange_cli.command("serve")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help="YAML server config.")
@click.option("--host", default=None, help="Listen address (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Listen port (0: a free port).")
@click.option("--symbol", "symbols", multiple=True, help="Serve this BASE/QUOTE market (repeatable).")
@click.option("--replay", "replay_files", multiple=True, type=click.Path(dir_okay=False), help="Replay this recording.")
@click.option("--replay-speed", type=float, default=None, help="Replay pace factor (default 1).")
@click.option("--seed", type=int, default=None, help="Seed of flow and faults.")
@click.option("--admin-token", default=None, envvar="HFT_EXCHANGE_ADMIN_TOKEN", help="Enable /admin with this token.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
def serve_cmd(
    config_path: str | None,
    host: str | None,
    port: int | None,
    symbols: tuple[str, ...],
    replay_files: tuple[str, ...],
    replay_speed: float | None,
    seed: int | None,
    admin_token: str | None,
    duration: float | None,
) -> None:
    """Serve the exchange until Ctrl-C (or --duration)."""
    try:
        cfg = cli_config(config_path, host, port, symbols, replay_files, replay_speed, seed, admin_token)
    except (ValueError, ValidationError) as exc:
        raise click.ClickException(str(exc).splitlines()[0]) from None
    try:
        asyncio.run(_serve(cfg, duration))
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # a replay file that is not there, a port in use
        raise click.ClickException(str(exc)) from None


def cli_config(
    config_path: str | Path | None = None,
    host: str | None = None,
    port: int | None = None,
    symbols: tuple[str, ...] = (),
    replay_files: tuple[str, ...] = (),
    replay_speed: float | None = None,
    seed: int | None = None,
    admin_token: str | None = None,
) -> ExchangeServerConfig:
    """The config ``serve`` runs: the file (or defaults) with the command-line overrides applied.

    ``--symbol`` lists the markets served (settings from the file where it has them);
    ``--replay`` replays into the first of them instead of its flow.
    """
    cfg = load_server_config(config_path) if config_path else ExchangeServerConfig()
    updates: dict[str, Any] = {}
    if host is not None:
        updates["host"] = host
    if port is not None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0..65535, got {port}")
        updates["port"] = port
    if seed is not None:
        updates["seed"] = seed
    if admin_token:
        updates["admin_token"] = Secret(admin_token)
    sym_cfgs = list(cfg.symbols)
    if symbols:
        by_name = {s.symbol: s for s in sym_cfgs}
        sym_cfgs = [by_name.get(s) or SymbolConfig(symbol=s) for s in dict.fromkeys(symbols)]
    if replay_files:
        replay = ReplayConfig(files=[Path(f) for f in replay_files], speed=replay_speed or 1.0)
        sym_cfgs[0] = sym_cfgs[0].model_copy(update={"replay": replay, "flow": None})
    elif replay_speed is not None:
        sym_cfgs = [
            s.model_copy(update={"replay": s.replay.model_copy(update={"speed": replay_speed})}) if s.replay else s
            for s in sym_cfgs
        ]
    updates["symbols"] = sym_cfgs
    return cfg.model_copy(update=updates)


async def _serve(cfg: ExchangeServerConfig, duration: float | None) -> None:
    server = ExchangeServer(cfg)
    await server.start()
    try:
        click.echo(f"REST     {server.url}/api/v3")
        click.echo(f"streams  {server.ws_url}")
        click.echo(f"ws-api   {server.ws_api_url}")
        click.echo(f"symbols  {', '.join(s.symbol for s in cfg.symbols)}")
        click.echo(f"accounts {', '.join(k.name for k in cfg.api_keys)}")
        click.echo(f"admin    {'enabled (X-Admin-Token)' if cfg.admin_token else 'disabled (no admin_token)'}")
        sys.stdout.flush()
        if duration is not None:
            await asyncio.sleep(duration)
        else:
            await asyncio.Event().wait()
    finally:
        await server.stop()


def serve_main(argv: list[str] | None = None) -> int:
    """``serve`` from a plain argument list (``python -m venues.sim.exchange_server --port 8765``)."""
    try:
        exchange_cli.main(args=["serve", *(argv if argv is not None else sys.argv[1:])], standalone_mode=False)
    except click.exceptions.Abort:
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(serve_main())
