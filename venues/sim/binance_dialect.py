"""Binance Spot wire format for the simulated exchange server: numbers, JSON shapes, errors, signatures.

Pure functions only (no I/O, no server state), so the shapes can be read and
tested in one place. The field lists follow ``/work/shared/docs/binance-spot-dialect.md``
(what the unmodified ccxt client sends and reads) and Binance's public API
documentation where ccxt does not care.

Numbers go out as decimal strings with at least eight decimals, like Binance
(``"61837.60000000"``); a ninth decimal, which our fixed-point scale can hold
(fees are rounded to 1e-9), is kept rather than rounded away.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

from hft import numbers
from hft.model import OrderType, Side, TimeInForce

from venues.sim.matching import ExecReport, SimOrder

__all__ = [
    "ApiError",
    "CLIENT_ORDER_ID_RE",
    "ORDER_TYPES",
    "SymbolSpec",
    "agg_trade",
    "cancel_response",
    "depth_update",
    "execution_report",
    "exchange_symbol",
    "fmt",
    "hmac_hex",
    "new_client_order_id",
    "order_fields",
    "order_response",
    "strip_signature",
    "verify_hmac",
    "ws_api_payload",
]

ORDER_TYPES = ("LIMIT", "LIMIT_MAKER", "MARKET")
CLIENT_ORDER_ID_RE = r"^[\.A-Z\:/a-z0-9_-]{1,36}$"
_ID_CHARS = string.ascii_letters + string.digits


class ApiError(Exception):
    """An error answer ``{"code": code, "msg": msg}`` with HTTP ``status`` (400 unless Binance says otherwise)."""

    def __init__(self, code: int, msg: str, status: int = 400, headers: Mapping[str, str] | None = None):
        super().__init__(f"{code} {msg}")
        self.code = code
        self.msg = msg
        self.status = status
        self.headers = dict(headers or {})

    def body(self) -> dict:
        return {"code": self.code, "msg": self.msg}


# Errors worded as Binance words them (ccxt maps some by exact text, see the dialect doc).
def invalid_symbol() -> ApiError:
    return ApiError(-1121, "Invalid symbol.")


def mandatory(param: str) -> ApiError:
    return ApiError(-1102, f"Mandatory parameter '{param}' was not sent, was empty/null, or malformed.")


def not_required(param: str) -> ApiError:
    return ApiError(-1106, f"Parameter '{param}' sent when not required.")


def filter_failure(name: str) -> ApiError:
    return ApiError(-1013, f"Filter failure: {name}")


def bad_signature() -> ApiError:
    return ApiError(-1022, "Signature for this request is not valid.")


def bad_api_key() -> ApiError:
    return ApiError(-2015, "Invalid API-key, IP, or permissions for action.", status=401)


def api_key_format() -> ApiError:
    return ApiError(-2014, "API-key format invalid.", status=401)


def unknown_order_cancel() -> ApiError:
    return ApiError(-2011, "Unknown order sent.")


def order_does_not_exist() -> ApiError:
    return ApiError(-2013, "Order does not exist.")


def new_order_rejected(msg: str) -> ApiError:
    return ApiError(-2010, msg)


# ---------------------------------------------------------------------------- numbers


def fmt(value: int, places: int = 8) -> str:
    """Fixed point → decimal string with at least ``places`` decimals (``1_500_000_000`` → ``"1.50000000"``)."""
    s = numbers.to_str(value)
    whole, _, frac = s.partition(".")
    if len(frac) < places:
        frac += "0" * (places - len(frac))
    return f"{whole}.{frac}" if frac else whole


def ms(ts_ns: int) -> int:
    return ts_ns // 1_000_000


def random_id(length: int) -> str:
    return "".join(secrets.choice(_ID_CHARS) for _ in range(length))


def new_client_order_id(prefix: str = "") -> str:
    """A random id like Binance generates when none is given (22 characters after the prefix)."""
    return prefix + random_id(22)


# ---------------------------------------------------------------------------- signatures


def hmac_hex(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def strip_signature(raw: str) -> tuple[str, str | None]:
    """Split a query string/body into (the text minus every ``signature=`` pair, the signature)."""
    if not raw:
        return "", None
    kept, sig = [], None
    for pair in raw.split("&"):
        if pair.startswith("signature="):
            sig = pair[len("signature=") :]
        else:
            kept.append(pair)
    return "&".join(kept), sig


def verify_hmac(secret: str, payload: str, signature: str | None) -> bool:
    if not signature:
        return False
    return hmac.compare_digest(hmac_hex(secret, payload), signature.lower())


def ws_api_payload(params: Mapping[str, object], *, encoded: bool) -> str:
    """What a WS-API request signs: params other than ``signature``, keys sorted, ``k=v&...``.

    Binance documents url-encoding; ccxt signs the raw (unquoted) text. They only differ
    for values with reserved characters; the server accepts either.
    """
    parts = []
    for k in sorted(params):
        if k == "signature":
            continue
        v = params[k]
        if isinstance(v, bool):
            v = "true" if v else "false"
        v = str(v)
        parts.append(f"{k}={quote(v, safe='') if encoded else v}")
    return "&".join(parts)


# ---------------------------------------------------------------------------- exchangeInfo


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """One market as the server lists it in ``exchangeInfo`` and enforces its filters."""

    symbol: str  # unified BASE/QUOTE
    venue_symbol: str  # BTCUSDT
    base: str
    quote: str
    tick_size: int
    lot_size: int
    min_qty: int
    max_qty: int
    min_price: int
    max_price: int
    min_notional: int
    max_notional: int
    market_min_qty: int
    market_max_qty: int
    maker_fee_ppm: int
    taker_fee_ppm: int
    base_precision: int = 8
    quote_precision: int = 8


def exchange_symbol(spec: SymbolSpec, status: str = "TRADING") -> dict:
    """The ``exchangeInfo.symbols[]`` entry ccxt's ``load_markets`` parses (no contract fields)."""
    return {
        "symbol": spec.venue_symbol,
        "status": status,
        "baseAsset": spec.base,
        "baseAssetPrecision": spec.base_precision,
        "quoteAsset": spec.quote,
        "quotePrecision": spec.quote_precision,
        "quoteAssetPrecision": spec.quote_precision,
        "baseCommissionPrecision": spec.base_precision,
        "quoteCommissionPrecision": spec.quote_precision,
        "orderTypes": list(ORDER_TYPES),
        "icebergAllowed": False,
        "ocoAllowed": False,
        "otoAllowed": False,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": False,
        "amendAllowed": False,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": fmt(spec.min_price),
                "maxPrice": fmt(spec.max_price),
                "tickSize": fmt(spec.tick_size),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": fmt(spec.min_qty),
                "maxQty": fmt(spec.max_qty),
                "stepSize": fmt(spec.lot_size),
            },
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": fmt(spec.market_min_qty),
                "maxQty": fmt(spec.market_max_qty),
                "stepSize": fmt(0),
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": fmt(spec.min_notional),
                "applyMinToMarket": True,
                "maxNotional": fmt(spec.max_notional),
                "applyMaxToMarket": False,
                "avgPriceMins": 0,
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_TAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER"],
    }


# ---------------------------------------------------------------------------- orders

_TYPE = {OrderType.LIMIT: "LIMIT", OrderType.MARKET: "MARKET"}


def wire_type(order_type: OrderType | None, post_only: bool) -> str:
    if post_only:
        return "LIMIT_MAKER"
    return _TYPE.get(order_type, "LIMIT") if order_type is not None else "LIMIT"


def wire_tif(tif: TimeInForce | None, order_type: OrderType | None, post_only: bool) -> str:
    # Binance reports GTC for LIMIT_MAKER and MARKET orders, whatever was sent
    if post_only or order_type is OrderType.MARKET or tif is None:
        return "GTC"
    return tif.value


def wire_side(side: Side | None) -> str:
    return "BUY" if side is Side.BUY else "SELL"


def order_fields(venue_symbol: str, o: SimOrder, *, orig_quote_qty: int = 0) -> dict:
    """Fields of an order shared by ``GET /api/v3/order``, ``openOrders`` and ``allOrders``."""
    created = ms(o.created_ns)
    return {
        "symbol": venue_symbol,
        "orderId": o.order_id,
        "orderListId": -1,
        "clientOrderId": o.client_order_id,
        "price": fmt(o.price or 0),
        "origQty": fmt(o.qty),
        "executedQty": fmt(o.cum_qty),
        "cummulativeQuoteQty": fmt(o.cum_quote),
        "status": o.status,
        "timeInForce": wire_tif(o.tif, o.order_type, o.post_only),
        "type": wire_type(o.order_type, o.post_only),
        "side": wire_side(o.side),
        "stopPrice": fmt(0),
        "icebergQty": fmt(0),
        "time": created,
        "updateTime": ms(o.updated_ns),
        "isWorking": o.order_type is not OrderType.MARKET and o.status in ("NEW", "PARTIALLY_FILLED"),
        "workingTime": created,
        "origQuoteOrderQty": fmt(orig_quote_qty),
        "selfTradePreventionMode": "EXPIRE_TAKER",
    }


def order_response(
    venue_symbol: str, o: SimOrder, fills: Iterable[ExecReport], resp_type: str, transact_ns: int, orig_quote_qty: int = 0
) -> dict:
    """The answer to ``POST /api/v3/order`` (``ACK``, ``RESULT`` or ``FULL``). Never carries a ``code`` field."""
    out = {
        "symbol": venue_symbol,
        "orderId": o.order_id,
        "orderListId": -1,
        "clientOrderId": o.client_order_id,
        "transactTime": ms(transact_ns),
    }
    if resp_type == "ACK":
        return out
    out.update(
        {
            "price": fmt(o.price or 0),
            "origQty": fmt(o.qty),
            "executedQty": fmt(o.cum_qty),
            "origQuoteOrderQty": fmt(orig_quote_qty),
            "cummulativeQuoteQty": fmt(o.cum_quote),
            "status": o.status,
            "timeInForce": wire_tif(o.tif, o.order_type, o.post_only),
            "type": wire_type(o.order_type, o.post_only),
            "side": wire_side(o.side),
            "workingTime": ms(transact_ns) if o.order_type is not OrderType.MARKET else -1,
            "selfTradePreventionMode": "EXPIRE_TAKER",
        }
    )
    if resp_type == "FULL":
        out["fills"] = [
            {
                "price": fmt(f.last_price),
                "qty": fmt(f.last_qty),
                "commission": fmt(f.fee),
                "commissionAsset": f.fee_asset,
                "tradeId": f.trade_id,
            }
            for f in fills
        ]
    return out


def cancel_response(venue_symbol: str, o: SimOrder, cancel_client_id: str, transact_ns: int) -> dict:
    """The answer to ``DELETE /api/v3/order``: ``clientOrderId`` is the *cancel's* id, like Binance."""
    return {
        "symbol": venue_symbol,
        "origClientOrderId": o.client_order_id,
        "orderId": o.order_id,
        "orderListId": -1,
        "clientOrderId": cancel_client_id,
        "transactTime": ms(transact_ns),
        "price": fmt(o.price or 0),
        "origQty": fmt(o.qty),
        "executedQty": fmt(o.cum_qty),
        "cummulativeQuoteQty": fmt(o.cum_quote),
        "status": o.status,
        "timeInForce": wire_tif(o.tif, o.order_type, o.post_only),
        "type": wire_type(o.order_type, o.post_only),
        "side": wire_side(o.side),
        "selfTradePreventionMode": "EXPIRE_TAKER",
    }


def my_trade(venue_symbol: str, r: ExecReport) -> dict:
    """One ``GET /api/v3/myTrades`` row from a ``TRADE`` report."""
    return {
        "symbol": venue_symbol,
        "id": r.trade_id,
        "orderId": r.order_id,
        "orderListId": -1,
        "price": fmt(r.last_price),
        "qty": fmt(r.last_qty),
        "quoteQty": fmt(numbers.mul(r.last_price, r.last_qty)),
        "commission": fmt(r.fee),
        "commissionAsset": r.fee_asset,
        "time": ms(r.ts_ns),
        "isBuyer": r.side is Side.BUY,
        "isMaker": r.is_maker,
        "isBestMatch": True,
    }


def execution_report(
    venue_symbol: str,
    r: ExecReport,
    *,
    post_only: bool,
    created_ns: int,
    event_ns: int,
    orig_client_id: str = "",
    orig_quote_qty: int = 0,
) -> dict:
    """A user-stream ``executionReport`` for one engine report.

    On a cancel, ``c`` is the cancel request's id and ``C`` the order's own id (as Binance
    does; ccxt reads ``C`` first when it is not empty).
    """
    is_trade = r.exec_type == "TRADE"
    working = r.status in ("NEW", "PARTIALLY_FILLED") and r.order_type is not OrderType.MARKET
    return {
        "e": "executionReport",
        "E": ms(event_ns),
        "s": venue_symbol,
        "c": r.client_order_id,
        "S": wire_side(r.side),
        "o": wire_type(r.order_type, post_only),
        "f": wire_tif(r.tif, r.order_type, post_only),
        "q": fmt(r.qty),
        "p": fmt(r.price or 0),
        "P": fmt(0),
        "F": fmt(0),
        "g": -1,
        "C": orig_client_id,
        "x": r.exec_type,
        "X": r.status,
        "r": "NONE",
        "i": r.order_id,
        "l": fmt(r.last_qty),
        "z": fmt(r.cum_qty),
        "L": fmt(r.last_price),
        "n": fmt(r.fee),
        "N": r.fee_asset if is_trade else None,
        "T": ms(r.ts_ns),
        "t": r.trade_id if is_trade else -1,
        "v": None,
        "I": 0,
        "w": working,
        "m": r.is_maker,
        "M": False,
        "O": ms(created_ns),
        "Z": fmt(r.cum_quote),
        "Y": fmt(numbers.mul(r.last_price, r.last_qty)),
        "Q": fmt(orig_quote_qty),
        "W": ms(created_ns),
        "V": "EXPIRE_TAKER",
    }


def account_position(balances: Iterable[tuple[str, int, int]], event_ns: int) -> dict:
    """``outboundAccountPosition`` with ``(asset, free, locked)`` of the assets that changed."""
    t = ms(event_ns)
    return {"e": "outboundAccountPosition", "E": t, "u": t, "B": [{"a": a, "f": fmt(f), "l": fmt(lk)} for a, f, lk in balances]}


def balance_update(asset: str, delta: int, event_ns: int) -> dict:
    t = ms(event_ns)
    return {"e": "balanceUpdate", "E": t, "a": asset, "d": fmt(delta), "T": t}


# ---------------------------------------------------------------------------- market data


def depth_update(venue_symbol: str, first: int, last: int, changes, event_ns: int) -> dict:
    """A spot diff ``depthUpdate`` (no ``pu``: its presence switches ccxt to futures rules)."""
    bids = [[fmt(p), fmt(q)] for side, p, q in changes if side is Side.BUY]
    asks = [[fmt(p), fmt(q)] for side, p, q in changes if side is Side.SELL]
    return {"e": "depthUpdate", "E": ms(event_ns), "s": venue_symbol, "U": first, "u": last, "b": bids, "a": asks}


def trade_event(venue_symbol: str, price: int, qty: int, aggressor: Side, trade_id: int, ts_ns: int, event_ns: int) -> dict:
    # "m": the buyer was the maker, i.e. a sell aggressor
    return {
        "e": "trade",
        "E": ms(event_ns),
        "s": venue_symbol,
        "t": trade_id,
        "p": fmt(price),
        "q": fmt(qty),
        "T": ms(ts_ns),
        "m": aggressor is Side.SELL,
        "M": True,
    }


def agg_trade_event(venue_symbol: str, price: int, qty: int, aggressor: Side, trade_id: int, ts_ns: int, event_ns: int) -> dict:
    return {"e": "aggTrade", "E": ms(event_ns), "s": venue_symbol, **agg_trade(price, qty, aggressor, trade_id, ts_ns)}


def agg_trade(price: int, qty: int, aggressor: Side, trade_id: int, ts_ns: int) -> dict:
    return {
        "a": trade_id,
        "p": fmt(price),
        "q": fmt(qty),
        "f": trade_id,
        "l": trade_id,
        "T": ms(ts_ns),
        "m": aggressor is Side.SELL,
        "M": True,
    }


def book_ticker(venue_symbol: str, update_id: int, bid, ask) -> dict:
    return {
        "u": update_id,
        "s": venue_symbol,
        "b": fmt(bid[0]) if bid else fmt(0),
        "B": fmt(bid[1]) if bid else fmt(0),
        "a": fmt(ask[0]) if ask else fmt(0),
        "A": fmt(ask[1]) if ask else fmt(0),
    }


def dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))
