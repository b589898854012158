"""Point an unmodified ccxt Binance client at a local Binance-dialect server.

Used by the tests of :mod:`venues.sim.exchange_server` and by anything that wants
the real ccxt client talking to 127.0.0.1 instead of the internet::

    import ccxt.pro
    from venues.ccxt_local import point_at_local

    ex = point_at_local(ccxt.pro.binance({"apiKey": key, "secret": secret}), server.url)
    await ex.load_markets()          # exactly one call: GET /api/v3/exchangeInfo

or :func:`make_local_binance` for the same in one call.

What it does (``/work/shared/docs/binance-spot-dialect.md``, "Pointing ccxt at a local server"):

* rewrites the scheme and host of *every* URL in ``urls['api']``, ``urls['test']`` and
  ``urls['demo']`` (sapi, fapi, dapi, eapi, papi, v1, ws...), keeping the paths, so a
  call ccxt should not make fails locally instead of reaching Binance;
* sets ``urls['api']['ws']['spot']`` (and ``margin``) to the market-stream URL, whose
  path must contain ``/stream`` (ccxt's spot-vs-swap test), and
  ``urls['api']['ws']['ws-api']['spot']`` to the WS-API URL (user data stream);
* sets the options that keep ``load_markets`` to one spot call: ``defaultType='spot'``,
  ``fetchMarkets={'types': ['spot']}``, ``fetchCurrencies=False``, ``fetchMargins=False``,
  and ``fetchOpenOrders={'warnWithoutSymbol': False}`` so a symbol-less
  ``fetch_open_orders()`` is allowed.

Never call ``set_sandbox_mode(True)`` afterwards: it swaps in ``urls['test']``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["local_urls", "make_local_binance", "point_at_local"]

WS_API_PATH = "/ws-api/v3"


def local_urls(base_url: str) -> tuple[str, str, str]:
    """``(rest base, market-stream URL, WS-API URL)`` of a server at ``http://host:port``."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    root = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    ws_root = urlunsplit((scheme, parts.netloc, "", "", ""))
    return root, ws_root + "/stream", ws_root + WS_API_PATH


def _rewrite(value: Any, netloc: str, http_scheme: str, ws_scheme: str) -> Any:
    if isinstance(value, dict):
        return {k: _rewrite(v, netloc, http_scheme, ws_scheme) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, netloc, http_scheme, ws_scheme) for v in value]
    if isinstance(value, str) and "://" in value:
        p = urlsplit(value)
        scheme = ws_scheme if p.scheme in ("ws", "wss") else http_scheme
        return urlunsplit((scheme, netloc, p.path, p.query, p.fragment))
    return value


def point_at_local(exchange: Any, base_url: str, ws_url: str | None = None, ws_api_url: str | None = None) -> Any:
    """Rewrite ``exchange`` (a ccxt ``binance``, REST or pro) to use the server at ``base_url``; returns it.

    ``ws_url`` (market streams) and ``ws_api_url`` (user data stream) default to
    ``ws://host:port/stream`` and ``ws://host:port/ws-api/v3``.
    """
    root, default_ws, default_ws_api = local_urls(base_url)
    parts = urlsplit(root)
    ws_scheme = "wss" if parts.scheme == "https" else "ws"
    urls = exchange.urls
    for section in ("api", "test", "demo"):
        if isinstance(urls.get(section), dict):
            urls[section] = _rewrite(urls[section], parts.netloc, parts.scheme, ws_scheme)
    ws = urls["api"].setdefault("ws", {})
    ws["spot"] = ws_url or default_ws
    ws["margin"] = ws_url or default_ws
    ws.setdefault("ws-api", {})["spot"] = ws_api_url or default_ws_api
    opts = exchange.options
    opts["defaultType"] = "spot"
    opts["fetchMarkets"] = {**(opts.get("fetchMarkets") or {}), "types": ["spot"]}
    opts["fetchCurrencies"] = False
    opts["fetchMargins"] = False
    opts["fetchOpenOrders"] = {**(opts.get("fetchOpenOrders") or {}), "warnWithoutSymbol": False}
    return exchange


def make_local_binance(
    base_url: str,
    api_key: str | None = None,
    secret: str | None = None,
    *,
    pro: bool = True,
    enable_rate_limit: bool = False,
    ws_url: str | None = None,
    ws_api_url: str | None = None,
    config: dict[str, Any] | None = None,
) -> Any:
    """A new ccxt ``binance`` (``ccxt.pro`` if ``pro``, else ``ccxt.async_support``) pointed at ``base_url``.

    ``enable_rate_limit`` defaults to off: ccxt's client-side throttle (50 ms × endpoint
    cost) makes tests slow, and the framework's own rate limiter is the better owner.
    """
    if pro:
        import ccxt.pro as ccxt_mod
    else:
        import ccxt.async_support as ccxt_mod
    cfg: dict[str, Any] = {"enableRateLimit": enable_rate_limit, **(config or {})}
    if api_key is not None:
        cfg["apiKey"] = api_key
    if secret is not None:
        cfg["secret"] = secret
    return point_at_local(ccxt_mod.binance(cfg), base_url, ws_url, ws_api_url)
