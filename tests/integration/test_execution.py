"""The execution manager end to end: Engine + three in-process sim venues + the router.

Venues quote one true price (no volatility, no noise, no background takers), so which venue is
cheapest is decided by the taker fees set here: a (2 bp) < b (5 bp) < c (8 bp).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from hft import numbers
from hft.config import load_config
from hft.engine import Engine
from hft.events import VenueStatus
from hft.execution import ExecutionManager, RouterSettings, format_report
from hft.metrics import Metrics
from hft.model import OrderStatus, OrderType, Side, TimeInForce
from hft.numbers import parse
from hft.registry import strategy_registry, venue_registry
from hft.router import ParentOrder
from strategies.hedging import HedgeParams, InventoryHedger
from venues.sim.adapter import OUR_ACCOUNT

SYMBOL = "BTC/USDT"
ROOT = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, *, risk: dict | None = None, venue_extra: str = "") -> Path:
    r = {
        "max_order_qty": "0.5",
        "max_order_notional": "100000",
        "max_position_per_venue": "2",
        "max_position_total": "5",
        "max_orders_per_second": 100,
    }
    r.update(risk or {})
    risk_yaml = "\n".join(f"  {k}: {v!r}" if isinstance(v, str) else f"  {k}: {v}" for k, v in r.items())
    venues = []
    for name, fee in (("a", 2), ("b", 5), ("c", 8)):
        venues.append(textwrap.dedent(f"""\
          - name: {name}
            type: sim
            symbols: [{SYMBOL}]
            options:
              taker_fee_bps: {fee}
              maker_fee_bps: {fee / 2}
              latency_ms: 2
              market_data_latency_ms: 1
              volatility_bps: 0
              noise_bps: 0
              half_spread_bps: 1
              depth_levels: 10
              level_size: "0.5"
              limit_rate_per_s: 0
              cancel_rate_per_s: 0
              taker_rate_per_s: 0
        """))
    text = (
        "engine: {status_interval_s: 0.1, stale_book_after_s: 60, shutdown_timeout_s: 5, seed: 3}\n"
        "metrics: {enabled: false, port: 0}\n"
        f"risk:\n{risk_yaml}\n"
        "venues:\n" + textwrap.indent("".join(venues), "  ") + venue_extra +
        f"strategy: {{type: market_making, symbol: {SYMBOL}, params: {{order_size: '0.01'}}}}\n"
    )
    path = tmp_path / "route.yaml"
    path.write_text(text)
    return path


async def started_engine(tmp_path: Path, **kw) -> Engine:
    venues, strategies = venue_registry(), strategy_registry()
    cfg = load_config(
        write_config(tmp_path, **kw),
        venue_options_model=lambda t: venues.resolve(t).Options,
        strategy_params_model=lambda t: strategies.resolve(t).Params,
    )
    engine = Engine(cfg, venue_registry=venues, strategy_registry=strategies, metrics=Metrics(CollectorRegistry()))
    engine.build(with_strategy=False)
    await engine.start()
    await engine.wait_for_books(10)
    return engine


def venue_position(engine: Engine, venue: str) -> int:
    """Our BTC at the venue (its own matching engine's account) minus the starting balance."""
    adapter = engine.adapters[venue]
    return adapter.engines[SYMBOL].balances(OUR_ACCOUNT)["BTC"].total - adapter.options.balances["BTC"]


def sample(engine: Engine, name: str, labels: dict | None = None) -> float:
    return engine.metrics.registry.get_sample_value(name, labels or {}) or 0.0


@pytest.fixture
async def engine_factory(tmp_path):
    engines: list[Engine] = []

    async def make(**kw) -> Engine:
        engine = await started_engine(tmp_path, **kw)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        summary = await engine.stop()
        assert all(v == 0 for v in summary.open_orders_left.values()), summary.open_orders_left


async def test_parent_split_by_a_position_limit_every_child_ioc_and_checked(engine_factory):
    engine = await engine_factory(risk={"max_position_per_venue": "0.6", "max_order_qty": "1"})
    parent = ParentOrder(SYMBOL, Side.BUY, parse("1.5"))
    result = await ExecutionManager(engine).execute(parent, timeout_s=10)

    assert result.status == "filled" and result.filled_qty == parse("1.5")
    assert engine.risk_denials == {} and result.denials == []  # planned inside the limits
    by_venue = result.per_venue()
    assert set(by_venue) == {"a", "b", "c"}  # 0.6 per venue forces three venues
    assert all(row["filled"] <= parse("0.6") for row in by_venue.values())
    # the cheapest venues are filled to their limit first
    assert by_venue["a"]["filled"] == parse("0.6") and by_venue["b"]["filled"] == parse("0.6")
    for c in result.children:
        order = engine.orders[c.client_order_id]
        assert order.time_in_force is TimeInForce.IOC and order.tag == f"router:{result.parent.id}"
        assert order.status.is_done
    # fills gathered = what the engine and the venues booked
    fills = result.fills
    assert sum(f.qty for f in fills) == parse("1.5")
    assert len({(f.venue, f.trade_id) for f in fills}) == len(fills)
    assert result.notional == sum(numbers.mul(f.price, f.qty) for f in fills)
    assert result.fees == sum(f.fee for f in fills)
    for v in "abc":
        assert engine.portfolio(SYMBOL).by_venue[v].qty == venue_position(engine, v) == by_venue[v]["filled"]
    # the report and its yardsticks
    assert result.arrival_mid and result.vwap and result.slippage_bps is not None
    assert result.best_single is not None and result.ideal is not None and result.ideal.qty == parse("1.5")
    text = format_report(result)
    assert "(a) best single venue" in text and "(b) ideal fee-adjusted sweep" in text
    # metrics
    assert sample(engine, "hft_router_parents_total") == 1
    assert sum(sample(engine, "hft_router_children_total", {"venue": v}) for v in "abc") == len(result.children)
    assert sample(engine, "hft_router_fill_ratio_count") == 1 and sample(engine, "hft_router_fill_ratio_sum") == 1.0
    assert sample(engine, "hft_router_slippage_bps_count") == 1


async def test_a_venue_going_invalid_mid_route_is_left_out_of_the_replan(engine_factory):
    engine = await engine_factory(risk={"max_order_qty": "0.2"})  # 0.2 a child: several rounds
    seen_rounds: list[tuple[int, list[str]]] = []

    def on_round(n, orders):
        seen_rounds.append((n, [o.venue for o in orders]))
        if n == 1:  # the cheapest venue's market-data stream drops, as an adapter reports it
            engine.on_event(VenueStatus("a", False, "stream closed", engine.clock.mono_ns()))

    result = await ExecutionManager(engine).execute(ParentOrder(SYMBOL, Side.BUY, parse("1")), on_round=on_round)
    assert result.status == "filled" and result.filled_qty == parse("1")
    assert seen_rounds[0] == (1, ["a", "b", "c"])
    assert len(seen_rounds) >= 2
    assert all("a" not in venues for n, venues in seen_rounds[1:])
    assert not engine.consolidated(SYMBOL).is_active("a")


async def test_a_partly_filled_child_has_its_remainder_rerouted(engine_factory):
    engine = await engine_factory(risk={"max_order_qty": "2"})
    adapter = engine.adapters["a"]
    raced: dict[str, int] = {}

    def on_round(n, orders):
        if n != 1:
            return
        child = next(o for o in orders if o.venue == "a")
        # someone else lifts a's offers before our child arrives (2 ms away): leave half of it
        book = engine.venue_book("a", SYMBOL)
        within = sum(s for p, s in book.depth(Side.SELL, 100) if p <= child.price)
        take = within - child.qty // 2
        matching = adapter.engines[SYMBOL]
        matching.submit("flow-taker", "racer", Side.BUY, take, child.price, OrderType.LIMIT, TimeInForce.IOC, False, 0)
        raced["child_qty"] = child.qty

    parent = ParentOrder(SYMBOL, Side.BUY, parse("1.2"))
    result = await ExecutionManager(engine).execute(parent, on_round=on_round)
    assert result.status == "filled" and result.filled_qty == parse("1.2")
    first = [c for c in result.children if c.round == 1]
    assert [c.venue for c in first] == ["a"]  # the cheapest venue could take it all
    short = first[0]
    assert short.qty == raced["child_qty"] and 0 < short.filled_qty < short.qty
    assert short.status == OrderStatus.EXPIRED.value
    later = [c for c in result.children if c.round > 1]
    assert later and sum(c.filled_qty for c in later) == parent.qty - short.filled_qty
    assert venue_position(engine, "a") + venue_position(engine, "b") + venue_position(engine, "c") == parse("1.2")


async def test_limit_price_stops_the_route_and_total_position_limit_is_respected(engine_factory):
    engine = await engine_factory(risk={"max_order_qty": "5", "max_position_per_venue": "5"})
    book = engine.consolidated(SYMBOL)
    best_ask = book.best_ask()[0]
    parent = ParentOrder(SYMBOL, Side.BUY, parse("4"), limit_price=best_ask)
    result = await ExecutionManager(engine).execute(parent)
    assert result.status == "limit"
    assert 0 < result.filled_qty < parent.qty
    assert all(f.price <= best_ask for f in result.fills)

    # a total position limit below the parent: routed up to the headroom, nothing denied
    engine.limits.max_position_total = engine.portfolio(SYMBOL).total.qty + parse("0.7")
    result = await ExecutionManager(engine).execute(ParentOrder(SYMBOL, Side.BUY, parse("3")))
    assert result.status == "risk_limit" and result.filled_qty == parse("0.7")
    assert engine.risk_denials == {}


async def test_sell_parent_and_balance_constrained_venue(engine_factory):
    engine = await engine_factory()
    # only 0.3 BTC free on a: the rest of the sell goes to b and c
    result = await ExecutionManager(engine).execute(
        ParentOrder(SYMBOL, Side.SELL, parse("0.9")), balances={"a": parse("0.3"), "b": parse("10"), "c": parse("10")}
    )
    assert result.status == "filled" and result.filled_qty == parse("0.9")
    assert result.per_venue()["a"]["filled"] == parse("0.3")
    assert venue_position(engine, "a") == -parse("0.3")
    assert engine.portfolio(SYMBOL).total.qty == -parse("0.9")


async def test_our_own_resting_quote_is_not_traded_against(engine_factory):
    engine = await engine_factory()
    # a market maker's ask improves a's best ask: a child buying on a would meet it first and
    # self-trade prevention would expire the child there, so a is out of reach from that price
    # on, although it is the cheapest venue
    book = engine.venue_book("a", SYMBOL)
    ask = book.best_ask()[0] - parse("0.01")
    assert ask > book.best_bid()[0]
    quote = engine.submit_order("a", SYMBOL, Side.SELL, parse("0.1"), ask, post_only=True, tag="mm:test")
    assert quote is not None
    for _ in range(200):
        if quote.status is OrderStatus.OPEN:
            break
        await asyncio.sleep(0.005)
    assert quote.status is OrderStatus.OPEN
    result = await ExecutionManager(engine).execute(ParentOrder(SYMBOL, Side.BUY, parse("0.6")))
    assert result.status == "filled" and result.filled_qty == parse("0.6")
    assert "a" not in result.per_venue()
    assert all(c.status == OrderStatus.FILLED.value for c in result.children)  # none expired on us
    assert quote.status is OrderStatus.OPEN and quote.filled_qty == 0
    engine.cancel_order(quote)


async def test_residual_is_posted_passively_and_cancelled_at_the_deadline(engine_factory):
    engine = await engine_factory()
    bid = engine.consolidated(SYMBOL).best_bid()[0]
    parent = ParentOrder(SYMBOL, Side.BUY, parse("0.4"), limit_price=bid)  # nothing to take at or below the bid
    result = await ExecutionManager(engine).execute(parent, timeout_s=0.3, passive_residual=True)
    assert result.filled_qty == 0 and result.status == "timeout"
    (posted,) = result.children
    assert posted.passive and posted.status == OrderStatus.CANCELED.value
    assert posted.venue == "a" and posted.limit_price == bid and posted.qty == parse("0.4")  # lowest maker fee
    order = engine.orders[posted.client_order_id]
    assert order.post_only and order.time_in_force is TimeInForce.GTC
    assert not engine.open_orders_of("a")
    assert engine.adapters["a"].engines[SYMBOL].open_orders(OUR_ACCOUNT) == []


async def test_inventory_hedger_routes_the_excess_back_to_target(engine_factory):
    engine = await engine_factory()
    await ExecutionManager(engine).execute(ParentOrder(SYMBOL, Side.BUY, parse("0.8")))
    assert engine.portfolio(SYMBOL).total.qty == parse("0.8")

    hedger = InventoryHedger(engine, SYMBOL, HedgeParams(threshold="0.5", target="0.1", venues=["b", "c"]))
    now = engine.clock.mono_ns()
    assert hedger.maybe_hedge(now)
    assert not hedger.maybe_hedge(now)  # one at a time
    result = await hedger.wait()
    assert result is not None and result.parent.side is Side.SELL and result.parent.qty == parse("0.7")
    assert result.status == "filled"
    assert {c.venue for c in result.children} <= {"b", "c"}  # hedged only where allowed
    assert all(engine.orders[c.client_order_id].tag.startswith("router:hedge-") for c in result.children)
    assert engine.portfolio(SYMBOL).total.qty == parse("0.1")
    assert not hedger.maybe_hedge(engine.clock.mono_ns() + 10**10)  # within the threshold now
    assert engine.risk_denials == {}
    with pytest.raises(ValueError, match="nowhere"):
        InventoryHedger(engine, SYMBOL, HedgeParams(threshold="0.5", venues=["nowhere"]))


def test_hedge_params_are_validated():
    with pytest.raises(ValueError):
        HedgeParams(threshold="0.5", target="0.5")
    with pytest.raises(ValueError):
        HedgeParams(threshold="0.5", bogus=1)
    assert HedgeParams(threshold="0.5").target == 0


def test_route_command_prints_the_execution_report(tmp_path):
    cfg = write_config(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", "from hft.route_cli import route; route()", "buy", "0.7", SYMBOL, "-c", str(cfg),
         "--timeout", "10"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "-> filled, filled 0.7 (100.0%)" in out
    assert "(a) best single venue" in out and "(b) ideal fee-adjusted sweep" in out
    assert "slippage vs arrival mid" in out
    # bad input is a one-line error with exit status 2
    proc = subprocess.run(
        [sys.executable, "-c", "from hft.route_cli import route; route()", "buy", "lots", SYMBOL, "-c", str(cfg)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert proc.returncode == 2 and "QTY" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-c", "from hft.route_cli import route; route()", "buy", "1", "ETH/USDT", "-c", str(cfg)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert proc.returncode == 2 and "no configured venue trades ETH/USDT" in proc.stderr
