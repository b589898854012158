"""The real ccxt client (REST and pro) against the Binance-dialect exchange server on 127.0.0.1.

Every server runs with ``auto_liquidity: false``: the background flow only moves
when a test calls ``server.advance``, so books and fills are deterministic for the
seed. Depth diffs are published by the server's 100 ms timer (or ``server.publish()``);
tests wait for ccxt to reach the server's update id rather than for a time.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import ccxt.async_support as ccxt_async
import ccxt.pro
import pytest

from hft import numbers
from venues.ccxt_local import make_local_binance, point_at_local
from venues.sim import binance_dialect as bd
from venues.sim.exchange_server import (
    ExchangeServer,
    ExchangeServerConfig,
    cli_config,
    load_server_config,
    serve_main,
)

ADMIN = "admin-token-for-tests"
SYM = "BTC/USDT"
DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "binance"
KEYS = [
    {"name": "mm", "api_key": "mm-key", "api_secret": "mm-secret", "balances": {"BTC": "2", "USDT": "200000"}},
    {"name": "other", "api_key": "other-key", "api_secret": "other-secret", "balances": {"BTC": "5", "USDT": "500000"}},
]


@pytest.fixture
async def env():
    servers: list[ExchangeServer] = []
    clients: list = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(**overrides) -> ExchangeServer:
        cfg = {"admin_token": ADMIN, "auto_liquidity": False, "seed": 7, "api_keys": KEYS, **overrides}
        server = ExchangeServer(ExchangeServerConfig.model_validate(cfg))
        await server.start()
        servers.append(server)
        return server

    def client(server: ExchangeServer, key: str = "mm-key", secret: str = "mm-secret", pro: bool = True):
        ex = make_local_binance(server.url, key, secret, pro=pro)
        clients.append(ex)
        return ex

    async def http() -> aiohttp.ClientSession:
        s = aiohttp.ClientSession()
        sessions.append(s)
        return s

    yield SimpleNamespace(start=start, client=client, http=http)
    for c in clients:
        await c.close()
    for s in sessions:
        await s.close()
    for s in servers:
        await s.stop()


async def admin(server: ExchangeServer, method: str, path: str, body: dict | None = None) -> dict:
    async with aiohttp.ClientSession() as s:
        async with s.request(method, server.url + path, json=body, headers={"X-Admin-Token": ADMIN}) as r:
            assert r.status == 200, await r.text()
            return await r.json()


def server_book(server: ExchangeServer, symbol: str = SYM, limit: int = 1000):
    bids, asks = server.engine(symbol).depth(limit)
    conv = lambda levels: [[float(numbers.to_str(p)), float(numbers.to_str(q))] for p, q in levels]  # noqa: E731
    return conv(bids), conv(asks)


HANG_GUARD_S = 30  # waits below end when the awaited thing happens; this only stops a broken run hanging


async def synced_book(ex, server: ExchangeServer, symbol: str = SYM):
    """Watch until ccxt's book has reached the server's last published update id."""
    server.publish()
    target = server.update_id(symbol)
    ob = ex.orderbooks.get(symbol) if ex.orderbooks else None
    async with asyncio.timeout(HANG_GUARD_S):
        while ob is None or ob["nonce"] is None or ob["nonce"] < target:
            ob = await ex.watch_order_book(symbol)
    return ob


async def until(predicate, step: float = 0.01):
    async with asyncio.timeout(HANG_GUARD_S):
        while not predicate():
            await asyncio.sleep(step)


async def watch_until_error(ex, symbol: str = SYM):
    async with asyncio.timeout(HANG_GUARD_S):
        while True:
            await ex.watch_order_book(symbol)


def signed_query(params: dict, secret: str) -> str:
    q = "&".join(f"{k}={v}" for k, v in params.items())
    return q + "&signature=" + bd.hmac_hex(secret, q)


# ---------------------------------------------------------------------------- markets and book


async def test_load_markets_is_one_call_with_filters_as_precision_and_limits(env):
    server = await env.start(symbols=[{"symbol": "BTC/USDT", "min_qty": "0.0001", "min_notional": "10"}])
    ex = env.client(server)
    markets = await ex.load_markets()
    assert dict(server.requests) == {("GET", "/api/v3/exchangeInfo"): 1}
    m = markets[SYM]
    assert m["spot"] and m["active"] and m["id"] == "BTCUSDT"
    assert m["precision"]["price"] == 0.01 and m["precision"]["amount"] == 0.00001
    assert m["limits"]["amount"]["min"] == 0.0001
    assert m["limits"]["cost"]["min"] == 10.0
    assert m["limits"]["price"] == {"min": 0.01, "max": 1000000.0}


async def test_fetch_order_book_equals_engine_book(env):
    server = await env.start()
    ex = env.client(server)
    server.advance(2.0)
    ob = await ex.fetch_order_book(SYM, limit=1000)
    bids, asks = server_book(server)
    assert ob["bids"] == bids and ob["asks"] == asks
    assert len(bids) >= 10 and bids[0][0] < asks[0][0]
    assert ob["nonce"] == server.update_id(SYM)


# ---------------------------------------------------------------------------- orders


async def test_limit_order_rests_locks_funds_and_is_found_by_id_and_client_id(env):
    server = await env.start()
    ex = env.client(server)
    await ex.load_markets()
    cid = "x" * 36  # Binance's longest client order id
    o = await ex.create_order(SYM, "limit", "buy", 0.5, 50000, {"clientOrderId": cid})
    assert o["status"] == "open" and o["clientOrderId"] == cid and o["filled"] == 0
    assert "code" not in o["info"]
    bal = await ex.fetch_balance()
    # lock = notional + worst fee (5 bp taker): 25000 + 12.5
    assert bal["USDT"]["used"] == 25012.5
    assert bal["USDT"]["free"] == 200000 - 25012.5
    assert [x["id"] for x in await ex.fetch_open_orders()] == [o["id"]]  # no symbol: warnWithoutSymbol off
    by_id = await ex.fetch_order(o["id"], SYM)
    by_cid = await ex.fetch_order(None, SYM, {"origClientOrderId": cid})
    assert by_id["clientOrderId"] == by_cid["clientOrderId"] == cid and by_cid["id"] == o["id"]
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        await ex.create_order(SYM, "limit", "buy", 0.1, 50000, {"clientOrderId": cid})


async def test_ioc_and_market_orders_fill_with_fees_in_my_trades(env):
    server = await env.start()
    ex = env.client(server)
    await ex.load_markets()
    engine = server.engine(SYM)
    ask_px, ask_qty = engine.best_ask()
    # IOC for more than the best level at its price: fills the level, the rest expires
    qty = numbers.to_float(ask_qty) + 0.3
    ioc = await ex.create_order(SYM, "limit", "buy", qty, numbers.to_float(ask_px), {"timeInForce": "IOC"})
    assert ioc["status"] == "expired"
    assert ioc["filled"] == numbers.to_float(ask_qty)
    mkt = await ex.create_order(SYM, "market", "sell", 0.2)
    assert mkt["status"] == "closed" and mkt["filled"] == 0.2
    trades = await ex.fetch_my_trades(SYM)
    assert {t["order"] for t in trades} == {ioc["id"], mkt["id"]}
    for t in trades:
        notional = numbers.mul(numbers.parse(t["info"]["price"]), numbers.parse(t["info"]["qty"]))
        assert t["takerOrMaker"] == "taker"
        assert t["fee"]["currency"] == "USDT"
        assert numbers.parse(t["info"]["commission"]) == numbers.fee(notional, 500)
    # balances move by exactly the fills and fees
    wallet = server.state("mm")["accounts"]["mm"]["balances"]
    bought = sum(numbers.parse(t["info"]["qty"]) for t in trades if t["side"] == "buy")
    sold = sum(numbers.parse(t["info"]["qty"]) for t in trades if t["side"] == "sell")
    assert numbers.parse(wallet["BTC"]["free"]) == numbers.parse("2") + bought - sold
    cash = sum(
        (-1 if t["side"] == "buy" else 1) * numbers.mul(numbers.parse(t["info"]["price"]), numbers.parse(t["info"]["qty"]))
        - numbers.parse(t["info"]["commission"])
        for t in trades
    )
    assert numbers.parse(wallet["USDT"]["free"]) == numbers.parse("200000") + cash


async def test_market_buy_by_cost_uses_quote_order_qty(env):
    server = await env.start()
    ex = env.client(server)
    await ex.load_markets()
    o = await ex.create_order(SYM, "market", "buy", None, None, {"cost": 1000})
    assert o["status"] in ("closed", "expired")
    assert o["info"]["origQuoteOrderQty"] == "1000.00000000"
    assert 0 < o["cost"] <= 1000


async def test_ticker_and_public_trades_follow_executions(env):
    server = await env.start()
    ex = env.client(server)
    await ex.load_markets()
    done = await ex.create_order(SYM, "market", "buy", 0.3)
    ticker = await ex.fetch_ticker(SYM)
    last_fill = done["trades"][-1]
    assert ticker["last"] == last_fill["price"]
    bid, ask = server.engine(SYM).best_bid(), server.engine(SYM).best_ask()
    assert ticker["bid"] == numbers.to_float(bid[0]) and ticker["ask"] == numbers.to_float(ask[0])
    assert ticker["baseVolume"] == pytest.approx(0.3)
    trades = await ex.fetch_trades(SYM)
    assert [str(t["id"]) for t in trades] == [str(t["id"]) for t in done["trades"]]
    assert {t["side"] for t in trades} == {"buy"}


async def test_post_only_crossing_is_refused_and_resting_one_is_limit_maker(env):
    server = await env.start()
    ex = env.client(server)
    await ex.load_markets()
    ask = numbers.to_float(server.engine(SYM).best_ask()[0])
    with pytest.raises(ccxt.OrderImmediatelyFillable):
        await ex.create_order(SYM, "limit", "buy", 0.01, ask, {"postOnly": True})
    o = await ex.create_order(SYM, "limit", "buy", 0.01, ask - 100, {"postOnly": True})
    assert o["postOnly"] is True and o["status"] == "open" and o["info"]["type"] == "LIMIT_MAKER"


async def test_cancel_and_cancel_all(env):
    server = await env.start()
    ex = env.client(server)
    await ex.load_markets()
    a = await ex.create_order(SYM, "limit", "buy", 0.01, 50000, {"clientOrderId": "a1"})
    b = await ex.create_order(SYM, "limit", "sell", 0.01, 70000, {"clientOrderId": "b1"})
    c = await ex.create_order(SYM, "limit", "sell", 0.01, 71000)
    canceled = await ex.cancel_order(a["id"], SYM)
    assert canceled["status"] == "canceled"
    # like Binance, the cancel's clientOrderId is the cancel request's own id; the order's is origClientOrderId
    assert canceled["info"]["origClientOrderId"] == "a1"
    with pytest.raises(ccxt.OrderNotFound):
        await ex.cancel_order(a["id"], SYM)
    by_cid = await ex.cancel_order(None, SYM, {"clientOrderId": "b1"})
    assert by_cid["id"] == b["id"] and by_cid["status"] == "canceled"
    await ex.create_order(SYM, "limit", "buy", 0.02, 49000)
    all_canceled = await ex.cancel_all_orders(SYM)
    assert {o["status"] for o in all_canceled} == {"canceled"} and c["id"] in {o["id"] for o in all_canceled}
    assert await ex.fetch_open_orders(SYM) == []
    assert (await ex.fetch_balance())["USDT"]["used"] == 0
    with pytest.raises(ccxt.OrderNotFound):  # Binance answers -2011 when there is nothing to cancel
        await ex.cancel_all_orders(SYM)
    with pytest.raises(ccxt.OrderNotFound):
        await ex.fetch_order("999999", SYM)


# ---------------------------------------------------------------------------- errors


async def test_auth_errors(env):
    server = await env.start()
    bad_secret = env.client(server, "mm-key", "wrong")
    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        await bad_secret.fetch_balance()
    unknown = env.client(server, "nobody", "x")
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        await unknown.fetch_balance()
    late = env.client(server)
    late.options["timeDifference"] = 60_000  # timestamps a minute old, recvWindow is 10 s
    with pytest.raises(ccxt.InvalidNonce, match="-1021"):
        await late.fetch_balance()
    ok = env.client(server)
    assert (await ok.fetch_balance())["BTC"]["free"] == 2.0


async def test_filter_failures_and_funds(env):
    server = await env.start(
        symbols=[{"symbol": "BTC/USDT", "min_qty": "0.0001", "min_price": "1000", "min_notional": "10"}]
    )
    ex = env.client(server)
    await ex.load_markets()
    with pytest.raises(ccxt.InvalidOrder, match="PRICE_FILTER"):
        await ex.create_order(SYM, "limit", "buy", 0.01, 500)
    with pytest.raises(ccxt.InvalidOrder, match="LOT_SIZE"):
        await ex.create_order(SYM, "limit", "buy", 0.00005, 50000)
    # ccxt maps -1013 NOTIONAL to BadRequest, not InvalidOrder (only LOT_SIZE/PRICE_FILTER are matched by text)
    with pytest.raises(ccxt.BadRequest, match="Filter failure: NOTIONAL"):
        await ex.create_order(SYM, "limit", "buy", 0.0001, 50000)
    with pytest.raises(ccxt.InsufficientFunds):
        await ex.create_order(SYM, "limit", "buy", 10, 50000)
    with pytest.raises(ccxt.InsufficientFunds):
        await ex.create_order(SYM, "market", "sell", 3)
    # what ccxt never sends (it rounds to the tick) still gets Binance's answer
    http = await env.http()
    q = signed_query(
        {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01",
         "price": "50000.005", "timestamp": int(time.time() * 1000)},
        "mm-secret",
    )
    async with http.post(server.url + "/api/v3/order", data=q, headers={
        "X-MBX-APIKEY": "mm-key", "Content-Type": "application/x-www-form-urlencoded"}) as r:
        assert r.status == 400 and await r.json() == {"code": -1013, "msg": "Filter failure: PRICE_FILTER"}
    q = signed_query({"symbol": "NOPE", "timestamp": int(time.time() * 1000)}, "mm-secret")
    async with http.get(server.url + "/api/v3/openOrders?" + q, headers={"X-MBX-APIKEY": "mm-key"}) as r:
        assert (await r.json())["code"] == -1121
    with pytest.raises(ccxt.BadSymbol):
        await ex.publicGetDepth({"symbol": "NOPE"})
    assert server.state("mm")["accounts"]["mm"]["open_orders"][SYM] == {}


# ---------------------------------------------------------------------------- rate limits


async def test_rate_limit_429_then_418_ban(env):
    server = await env.start(rate_limits={"weight_per_minute": 30, "ban_after": 2})
    http = await env.http()
    url = server.url + "/api/v3/depth?symbol=BTCUSDT&limit=10"  # weight 5
    statuses, used = [], []
    for _ in range(9):
        async with http.get(url) as r:
            statuses.append(r.status)
            used.append(int(r.headers["X-MBX-USED-WEIGHT-1M"]))
            if r.status in (429, 418):
                assert int(r.headers["Retry-After"]) > 0
    assert statuses == [200] * 6 + [429, 429, 418]
    assert used[:6] == [5, 10, 15, 20, 25, 30]
    ex = env.client(server, pro=False)
    with pytest.raises(ccxt.DDoSProtection):  # the ban holds for ccxt too
        await ex.fetch_order_book(SYM)


async def test_order_count_limit_is_rate_limit_exceeded(env):
    server = await env.start(rate_limits={"orders_per_window": 3})
    ex = env.client(server)
    await ex.load_markets()
    for i in range(3):
        await ex.create_order(SYM, "limit", "buy", 0.01, 50000 + i)
    with pytest.raises(ccxt.RateLimitExceeded, match="-1015"):
        await ex.create_order(SYM, "limit", "buy", 0.01, 50000)
    assert len(server.state("mm")["accounts"]["mm"]["open_orders"][SYM]) == 3


# ---------------------------------------------------------------------------- market streams


async def test_watch_order_book_stays_equal_to_server_book(env):
    server = await env.start()
    ex = env.client(server)
    ob = await synced_book(ex, server)
    assert [ob["bids"], ob["asks"]] == list(server_book(server))
    other = env.client(server, "other-key", "other-secret")
    for i in range(5):
        server.advance(0.7)
        if i == 2:  # our own orders change the book too
            await other.create_order(SYM, "market", "buy", 0.3)
            await other.create_order(SYM, "limit", "sell", 0.25, numbers.to_float(server.engine(SYM).best_ask()[0]) + 0.01)
        ob = await synced_book(ex, server)
        assert [ob["bids"], ob["asks"]] == list(server_book(server)), f"round {i}"


async def test_depth_gap_raises_checksum_error_and_resyncs(env):
    server = await env.start()
    ex = env.client(server)
    await synced_book(ex, server)
    await admin(server, "POST", "/admin/faults", {"depth_gap_next": 1})
    server.advance(0.5)
    server.publish()  # this diff is never sent
    server.advance(0.5)
    server.publish()  # this one does not chain
    with pytest.raises(ccxt.ChecksumError):
        await watch_until_error(ex)
    assert (await admin(server, "GET", "/admin/faults"))["injected"] == {"depth_gap": 1}
    server.advance(0.5)
    ob = await synced_book(ex, server)  # resubscribes, new snapshot
    assert [ob["bids"], ob["asks"]] == list(server_book(server))


async def test_dropped_market_stream_reconnects_and_resyncs(env):
    server = await env.start()
    ex = env.client(server)
    await synced_book(ex, server)
    assert await admin(server, "POST", "/admin/drop_streams", {"kind": "market"}) == {"dropped": 1}
    with pytest.raises(ccxt.NetworkError):
        await watch_until_error(ex)
    server.advance(0.5)
    ob = await synced_book(ex, server)
    assert [ob["bids"], ob["asks"]] == list(server_book(server))


async def test_watch_trades_and_raw_stream_faults(env):
    server = await env.start()
    ex = env.client(server)
    other = env.client(server, "other-key", "other-secret")
    await ex.load_markets()
    watching = asyncio.ensure_future(ex.watch_trades(SYM))
    await until(lambda: server.state()["connections"]["market_streams"] == ["btcusdt@trade"])
    done = await other.create_order(SYM, "market", "buy", 0.05)
    trades = await asyncio.wait_for(watching, 30)
    assert trades[-1]["symbol"] == SYM and trades[-1]["side"] == "buy"
    assert str(trades[-1]["id"]) in {str(t["id"]) for t in done["trades"]}

    # raw client: combined wrapping, duplicates and reordering, as the faults say
    http = await env.http()
    await admin(server, "POST", "/admin/faults", {"market_reorder_rate": 1.0, "market_duplicate_rate": 1.0})
    async with http.ws_connect(server.ws_url + "/7") as ws:
        await ws.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms"], "id": 1})
        assert json.loads((await ws.receive()).data) == {"result": None, "id": 1}
        for _ in range(2):
            server.advance(0.5)
            server.publish()
        got = [json.loads((await ws.receive(timeout=HANG_GUARD_S)).data) for _ in range(3)]
        await ws.send_json({"method": "UNSUBSCRIBE", "params": ["btcusdt@depth@100ms"], "id": 2})
        await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 3})
        assert json.loads((await ws.receive(timeout=HANG_GUARD_S)).data) == {"result": None, "id": 2}
        assert json.loads((await ws.receive(timeout=HANG_GUARD_S)).data) == {"result": [], "id": 3}
    assert {g["stream"] for g in got} == {"btcusdt@depth@100ms"}
    us = [g["data"]["U"] for g in got]
    # the first diff is held back, the second goes out twice (duplicate), then the held one
    assert us[0] == us[1] > us[2]
    assert got[2]["data"]["u"] + 1 == got[0]["data"]["U"]


async def test_timers_move_the_book_by_themselves_and_ccxt_follows(env):
    server = await env.start(auto_liquidity=True, symbols=[{"symbol": "BTC/USDT", "flow": {"step_ms": 20, "taker_rate_per_s": 20}}])
    ex = env.client(server)
    first = (await synced_book(ex, server))["nonce"]
    async with asyncio.timeout(HANG_GUARD_S):
        while (await ex.watch_order_book(SYM))["nonce"] < first + 50:
            pass
    server.halt(SYM)  # the flow stands still while halted: now the two books can be compared
    ob = await synced_book(ex, server)
    assert [ob["bids"], ob["asks"]] == list(server_book(server))
    assert server.engine(SYM).last_trade_id > 0  # flow takers traded


async def test_ws_drop_rate_aborts_the_connection_on_a_message(env):
    server = await env.start(faults={"ws_drop_rate": 1.0})
    http = await env.http()
    async with http.ws_connect(server.ws_url) as ws:
        await ws.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@depth"], "id": 5})
        assert json.loads((await ws.receive(timeout=HANG_GUARD_S)).data) == {"result": None, "id": 5}  # acks are never faulted
        server.advance(0.5)
        server.publish()
        msg = await ws.receive(timeout=HANG_GUARD_S)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    assert server.faults.injected["ws_drop"] == 1
    await until(lambda: server.state()["connections"]["market"] == 0)


# ---------------------------------------------------------------------------- user data stream


async def test_watch_orders_and_my_trades_get_execution_reports(env):
    server = await env.start()
    ex = env.client(server)
    other = env.client(server, "other-key", "other-secret")
    await ex.load_markets()
    await other.load_markets()
    orders_task = asyncio.ensure_future(ex.watch_orders(SYM))
    await until(lambda: server.state()["user_streams"].get("mm") == 1)
    trades_task = asyncio.ensure_future(ex.watch_my_trades(SYM))
    balance_task = asyncio.ensure_future(ex.watch_balance())
    bid = numbers.to_float(server.engine(SYM).best_bid()[0]) + 1
    ours = await ex.create_order(SYM, "limit", "buy", 0.1, bid, {"clientOrderId": "mm-bid-1"})
    first = await asyncio.wait_for(orders_task, 30)
    assert first[-1]["clientOrderId"] == "mm-bid-1" and first[-1]["status"] == "open"
    await other.create_order(SYM, "market", "sell", 0.1)  # hits our bid: we are the maker
    my_trades = await asyncio.wait_for(trades_task, 30)
    t = my_trades[-1]
    assert t["order"] == ours["id"] and t["takerOrMaker"] == "maker" and t["amount"] == 0.1 and t["price"] == bid
    assert t["fee"]["cost"] == numbers.to_float(numbers.fee(numbers.mul(numbers.from_float(bid), numbers.parse("0.1")), 100))
    # the fill's executionReport also updated the order (ccxt resolves watchers only for updates after the call)
    cached = [o for o in ex.orders if o["id"] == ours["id"]]
    assert cached[-1]["status"] == "closed" and cached[-1]["filled"] == 0.1
    balance = await asyncio.wait_for(balance_task, 30)
    assert balance["BTC"]["free"] > 0
    # the same fill, as the server records it
    truth = server.state("mm")["accounts"]["mm"]["trades"][SYM]
    assert truth[str(t["id"])]["orderId"] == int(ours["id"]) and truth[str(t["id"])]["isMaker"] is True
    rest = await ex.fetch_my_trades(SYM)
    assert [x["id"] for x in rest] == [t["id"]]


async def test_ws_api_signature_is_checked_and_user_events_can_be_duplicated(env):
    server = await env.start(faults={"user_duplicate_rate": 1.0})
    ex = env.client(server)
    await ex.load_markets()
    http = await env.http()
    async with http.ws_connect(server.ws_api_url) as ws:
        params = {"apiKey": "mm-key", "timestamp": int(time.time() * 1000)}
        await ws.send_json({"id": "a", "method": "userDataStream.subscribe.signature",
                            "params": {**params, "signature": "00" * 32}})
        assert json.loads((await ws.receive()).data)["error"]["code"] == -1022
        sig = bd.hmac_hex("mm-secret", bd.ws_api_payload(params, encoded=False))
        await ws.send_json({"id": "b", "method": "userDataStream.subscribe.signature",
                            "params": {**params, "signature": sig}})
        assert json.loads((await ws.receive()).data) == {"id": "b", "status": 200, "result": {"subscriptionId": 0}}
        await ex.create_order(SYM, "limit", "buy", 0.01, 50000, {"clientOrderId": "dup-1"})
        got = [json.loads((await ws.receive()).data) for _ in range(4)]
    kinds = [g["event"]["e"] for g in got]
    assert kinds == ["executionReport", "executionReport", "outboundAccountPosition", "outboundAccountPosition"]
    assert got[0] == got[1] and got[0]["subscriptionId"] == 0 and got[0]["event"]["c"] == "dup-1"


async def test_listen_key_user_stream(env):
    server = await env.start()
    ex = env.client(server, pro=False)
    await ex.load_markets()
    lk = (await ex.publicPostUserDataStream())["listenKey"]
    http = await env.http()
    async with http.ws_connect(server.url.replace("http", "ws") + "/ws/" + lk) as ws:
        await until(lambda: server.state()["user_streams"].get("mm") == 1)
        await ex.create_order(SYM, "limit", "sell", 0.01, 70000, {"clientOrderId": "lk-1"})
        ev = json.loads((await ws.receive()).data)
    assert ev["e"] == "executionReport" and ev["c"] == "lk-1" and ev["x"] == "NEW" and ev["S"] == "SELL"


# ---------------------------------------------------------------------------- faults on orders


@pytest.mark.parametrize("mode", ["close", "503"])
async def test_execute_then_drop_response_order_exists_and_is_found(env, mode):
    server = await env.start(faults={"drop_mode": mode})
    ex = env.client(server)
    await ex.load_markets()
    await admin(server, "POST", "/admin/faults", {"drop_after_execute_next": 1})
    with pytest.raises(ccxt.NetworkError):
        await ex.create_order(SYM, "limit", "buy", 0.01, 50000, {"clientOrderId": "lost-answer-1"})
    found = await ex.fetch_order(None, SYM, {"origClientOrderId": "lost-answer-1"})
    assert found["status"] == "open" and found["clientOrderId"] == "lost-answer-1"
    assert [o["clientOrderId"] for o in await ex.fetch_open_orders(SYM)] == ["lost-answer-1"]
    truth = await admin(server, "GET", "/admin/state?account=mm&trades=0")
    assert list(truth["accounts"]["mm"]["open_orders"][SYM]) == ["lost-answer-1"]
    assert truth is not None and (await admin(server, "GET", "/admin/faults"))["injected"] == {"drop_after_execute": 1}


async def test_5xx_before_execution_leaves_no_order(env):
    server = await env.start(faults={"error_next": 1})
    ex = env.client(server)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await ex.load_markets()
    await ex.load_markets()
    await admin(server, "POST", "/admin/faults", {"error_next": 1, "error_body": "json"})
    with pytest.raises(ccxt.RequestTimeout):  # -1007 "execution status unknown"
        await ex.create_order(SYM, "limit", "buy", 0.01, 50000, {"clientOrderId": "never-1"})
    with pytest.raises(ccxt.OrderNotFound):
        await ex.fetch_order(None, SYM, {"origClientOrderId": "never-1"})


async def test_rate_limit_storm_delay_and_halt(env):
    server = await env.start(faults={"delay_ms": 20})
    ex = env.client(server)
    await ex.load_markets()
    assert server.faults.injected["delay"] == 1
    await admin(server, "POST", "/admin/faults", {"rate_limit_storm": True})
    with pytest.raises(ccxt.DDoSProtection):
        await ex.fetch_balance()
    await admin(server, "POST", "/admin/faults/reset")
    await admin(server, "POST", "/admin/halt", {"symbol": SYM, "halted": True})
    with pytest.raises(ccxt.MarketClosed):
        await ex.create_order(SYM, "limit", "buy", 0.01, 50000)
    ex2 = env.client(server)
    assert (await ex2.load_markets())[SYM]["active"] is False


async def test_admin_needs_token(env):
    server = await env.start()
    http = await env.http()
    async with http.get(server.url + "/admin/state") as r:
        assert r.status == 401
    async with http.get(server.url + "/admin/state", headers={"X-Admin-Token": "wrong"}) as r:
        assert r.status == 401
    state = await admin(server, "GET", "/admin/state")
    assert state["markets"][SYM]["best_bid"] is not None and set(state["accounts"]) == {"mm", "other"}
    no_admin = await env.start(admin_token=None)
    async with http.get(no_admin.url + "/admin/state", headers={"X-Admin-Token": ADMIN}) as r:
        assert r.status == 404


# ---------------------------------------------------------------------------- accounts across symbols


async def test_wallet_shared_across_symbols(env):
    server = await env.start(
        symbols=[
            {"symbol": "BTC/USDT"},
            {"symbol": "ETH/USDT", "lot_size": "0.0001", "flow": {"start_price": "3000"}},
        ],
        api_keys=[{"name": "mm", "api_key": "mm-key", "api_secret": "mm-secret", "balances": {"USDT": "1000"}}],
    )
    ex = env.client(server)
    await ex.load_markets()
    await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50000)  # locks 500.25
    await ex.create_order("ETH/USDT", "limit", "buy", 0.1, 2000)  # locks 200.1
    bal = await ex.fetch_balance()
    assert bal["USDT"]["used"] == pytest.approx(700.35) and bal["USDT"]["free"] == pytest.approx(299.65)
    with pytest.raises(ccxt.InsufficientFunds):  # 300 more would need funds the other symbol holds
        await ex.create_order("ETH/USDT", "limit", "buy", 0.15, 2000)
    assert {o["symbol"] for o in await ex.fetch_open_orders()} == {"BTC/USDT", "ETH/USDT"}


# ---------------------------------------------------------------------------- replay


def _reference_book(path: Path, count: int):
    """Binance's sync recipe over the first ``count`` messages, written independently of the server."""
    from venues.sim.recording import iter_messages

    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    buffered, last = [], None
    for i, (_, msg) in enumerate(iter_messages(path)):
        if i >= count:
            break
        if "lastUpdateId" in msg:
            bids = {numbers.parse(p): numbers.parse(q) for p, q in msg["bids"]}
            asks = {numbers.parse(p): numbers.parse(q) for p, q in msg["asks"]}
            last = msg["lastUpdateId"]
            pending, buffered = [d for d in buffered if d["u"] > last], []
        elif msg["data"].get("e") == "depthUpdate":
            pending = [msg["data"]]
            if last is None:
                buffered.append(msg["data"])
                continue
        else:
            continue
        for d in pending:
            if d["u"] <= last:
                continue
            for side, levels in ((bids, d["b"]), (asks, d["a"])):
                for p, q in levels:
                    p, q = numbers.parse(p), numbers.parse(q)
                    if q:
                        side[p] = q
                    else:
                        side.pop(p, None)
            last = d["u"]
    return bids, asks


@pytest.mark.skipif(not DATA.is_dir(), reason=f"recorded data not found at {DATA}")
async def test_replay_book_is_the_recorded_book_and_trades_fill_our_orders(env):
    path = DATA / "spot_btcusdt_20240808.gz"
    server = await env.start(symbols=[{"symbol": "BTC/USDT", "replay": {"files": [str(path)]}}])
    feed = server.replay_feed(SYM)
    n = 1 + server.advance_replay_messages(400)
    assert feed.synced and feed.stats["gaps"] == 0
    ref_bids, ref_asks = _reference_book(path, n)
    bids, asks = server.engine(SYM).depth(5000)
    assert dict(bids) == ref_bids and dict(asks) == ref_asks

    # a bid at the recorded best bid joins the queue behind the replay; as the market moves it fills
    ex = env.client(server)
    await ex.load_markets()
    best_bid = numbers.to_float(bids[0][0])
    o = await ex.create_order(SYM, "limit", "buy", 0.01, best_bid, {"clientOrderId": "replay-bid"})
    filled_at = None
    for _ in range(600):
        server.advance(1.0)
        if not server.state("mm", trades=False)["accounts"]["mm"]["open_orders"][SYM]:
            filled_at = feed.last_ns
            break
    assert filled_at is not None, "the recorded market never came through our bid"
    done = await ex.fetch_order(o["id"], SYM)
    assert done["status"] == "closed" and done["filled"] == 0.01
    trades = await ex.fetch_my_trades(SYM)
    assert sum(t["amount"] for t in trades) == pytest.approx(0.01)
    assert all(t["price"] <= best_bid for t in trades)  # never worse than our limit
    # the replay's own levels still follow the recording
    held_bids, held_asks = feed.book()
    ref_bids, ref_asks = _reference_book(path, _messages_up_to(path, feed.last_ns))
    assert held_bids == ref_bids and held_asks == ref_asks


@pytest.mark.skipif(not DATA.is_dir(), reason=f"recorded data not found at {DATA}")
async def test_replay_at_recorded_pace_times_speed(env):
    path = DATA / "spot_btcusdt_20240808.gz"
    server = await env.start(
        auto_liquidity=True, symbols=[{"symbol": "BTC/USDT", "replay": {"files": [str(path)], "speed": 20}}]
    )
    feed = server.replay_feed(SYM)
    ex = env.client(server)
    await synced_book(ex, server)
    await until(lambda: feed.stats["diffs"] >= 40)
    server.halt(SYM)
    ref_bids, ref_asks = _reference_book(path, _messages_up_to(path, feed.last_ns))
    bids, asks = server.engine(SYM).depth(5000)
    assert dict(bids) == ref_bids and dict(asks) == ref_asks
    ob = await synced_book(ex, server)
    # ccxt's snapshot holds 1000 levels a side and the replayed book has more (diffs add levels
    # beyond the recorded snapshot), so only the top of the book is comparable, as on Binance
    top_bids, top_asks = server_book(server, limit=200)
    assert ob["bids"][:200] == top_bids and ob["asks"][:200] == top_asks


def _messages_up_to(path: Path, recv_ns: int) -> int:
    from venues.sim.recording import iter_lines

    return sum(1 for ts, _ in iter_lines(path) if ts <= recv_ns)


# ---------------------------------------------------------------------------- pointing and CLI


async def test_point_at_local_rewrites_every_url(env):
    server = await env.start()
    ex = point_at_local(ccxt_async.binance(), server.url)
    try:
        def urls(v):
            if isinstance(v, dict):
                for x in v.values():
                    yield from urls(x)
            elif isinstance(v, str):
                yield v

        for section in ("api", "test", "demo"):
            for u in urls(ex.urls[section]):
                assert u.split("://", 1)[1].startswith(f"127.0.0.1:{server.port}/"), u
        assert ex.urls["api"]["ws"]["spot"] == server.ws_url
        assert ex.urls["api"]["ws"]["ws-api"]["spot"] == server.ws_api_url
        assert (await ex.fetch_time()) > 0
    finally:
        await ex.close()


def test_cli_serves_and_config_file_loads(tmp_path, capsys, monkeypatch):
    cfg = tmp_path / "exchange.yaml"
    cfg.write_text(
        "port: 0\nadmin_token: ${TOKEN}\nsymbols:\n  - {symbol: ETH/USDT, lot_size: '0.0001', flow: {start_price: 3000}}\n"
        "api_keys:\n  - {name: a, api_key: k, api_secret: '${SECRET:-s3cr3t}', balances: {ETH: 1}}\n"
    )
    monkeypatch.setenv("TOKEN", "t0ken")
    loaded = load_server_config(cfg)
    assert loaded.admin_token.reveal() == "t0ken" and loaded.api_keys[0].api_secret.reveal() == "s3cr3t"
    assert loaded.symbols[0].lot_size == numbers.parse("0.0001")
    over = cli_config(cfg, port=9, symbols=("BTC/USDT", "ETH/USDT"), seed=3)
    assert [x.symbol for x in over.symbols] == ["BTC/USDT", "ETH/USDT"] and over.port == 9 and over.seed == 3
    assert over.symbols[1].lot_size == numbers.parse("0.0001")  # the file's settings, not rescaled
    assert over.symbols[0].lot_size == numbers.parse("0.00001") and over.api_keys[0].api_secret.reveal() == "s3cr3t"
    replayed = cli_config(None, replay_files=("rec.gz",), replay_speed=5)
    assert replayed.symbols[0].flow is None and replayed.symbols[0].replay.speed == 5
    assert serve_main(["--config", str(cfg), "--duration", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "REST     http://127.0.0.1:" in out and "ETH/USDT" in out and "s3cr3t" not in out
    with pytest.raises(ValueError, match="symbol"):
        bad = tmp_path / "bad.yaml"
        bad.write_text("symbols: [{symbol: btcusdt}]\n")
        load_server_config(bad)
