"""``make run-local`` in CI: three local exchange servers, the market maker on all three through ccxt.

The servers are the ones ``config/exchanges/{a,b,c}.yaml`` describe (different fees and
liquidity), started in this process on free ports; the engine runs
``config/local-exchanges.yaml`` unchanged, its ports given through the environment variables
the file reads. Everything the real ccxt client does goes over 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry

from hft import numbers
from hft.config import load_config
from hft.engine import Engine
from hft.metrics import Metrics
from hft.registry import strategy_registry, venue_registry
from hft.runner import run_engine
from venues.sim.exchange_server import ExchangeServer, load_server_config

ROOT = Path(__file__).resolve().parents[2]
SYM = "BTC/USDT"
NAMES = ("a", "b", "c")
P = numbers.parse


async def test_market_making_on_three_local_exchanges_through_ccxt(tmp_path):
    servers: dict[str, ExchangeServer] = {}
    try:
        for name in NAMES:
            cfg = load_server_config(ROOT / "config" / "exchanges" / f"{name}.yaml", env={})
            # busier takers than the demo so a short run sees fills everywhere
            sym = cfg.symbols[0]
            sym.flow.taker_rate_per_s *= 3
            servers[name] = await ExchangeServer(cfg.model_copy(update={"port": 0})).start()
        env = {f"HFT_LOCAL_PORT_{n.upper()}": str(s.port) for n, s in servers.items()}
        env.update(HFT_METRICS_PORT="0", HFT_LOCAL_JOURNAL=str(tmp_path / "journal.sqlite"))
        venues, strategies = venue_registry(), strategy_registry()
        cfg = load_config(
            ROOT / "config" / "local-exchanges.yaml", env=env,
            venue_options_model=lambda t: venues.resolve(t).Options,
            strategy_params_model=lambda t: strategies.resolve(t).Params,
        )
        assert [v.options.base_url for v in cfg.venues] == [s.url for s in servers.values()]
        start = {n: _wallet(s) for n, s in servers.items()}
        quoted: dict[str, int] = {n: 0 for n in NAMES}
        engines: list[Engine] = []

        def started(engine: Engine) -> None:
            engines.append(engine)

            async def watch_quotes() -> None:  # what the venues themselves hold, not what we think
                while True:
                    for n, s in servers.items():
                        quoted[n] = max(quoted[n], len(_open(s)))
                    filled = [n for n, st in engine.stats.items() if st.fills]
                    fills = sum(st.fills for st in engine.stats.values())
                    if all(q >= 2 for q in quoted.values()) and len(filled) >= 2 and fills >= 6:
                        engine.request_stop()  # seen what this test is about: stop, and check the end state
                    await asyncio.sleep(0.2)

            engine.spawn(watch_quotes(), "watch-quotes")

        summary = await run_engine(cfg, venues, strategies, duration=60.0, metrics=Metrics(CollectorRegistry()),
                                   out=lambda s: None, on_started=started)
        assert summary is not None
        engine = engines[0]

        # quotes rested on all three venues, and got filled
        assert all(q >= 2 for q in quoted.values()), quoted
        assert all(st.orders > 0 for st in summary.venues.values()), summary.venues
        assert sum(st.fills for st in summary.venues.values()) > 0
        assert len([n for n, st in summary.venues.items() if st.fills]) >= 2, summary.venues

        # nothing left open anywhere, by the engine's account and by each server's
        assert summary.open_orders_left == {n: 0 for n in NAMES}
        assert not any(engine.open_orders.values())
        for n, s in servers.items():
            assert _open(s) == {}, n

        # every fill the servers recorded is ours exactly once, and positions equal the balance changes
        assert summary.duplicate_fills == 0
        for n, s in servers.items():
            trades = s.state("mm")["accounts"]["mm"]["trades"][SYM]
            assert summary.venues[n].fills == len(trades), n
            assert summary.venues[n].volume == sum(P(t["qty"]) for t in trades.values()), n
            position = engine.portfolios[SYM].by_venue[n]
            end = _wallet(s)
            assert end["BTC"] - start[n]["BTC"] == position.qty == summary.positions[n], n
            assert end["USDT"] - start[n]["USDT"] == position.cash, n  # fees included, to the last unit
        assert summary.venues["a"].gaps == summary.venues["b"].gaps == summary.venues["c"].gaps == 0
    finally:
        for s in servers.values():
            await s.stop()


def _open(server: ExchangeServer) -> dict:
    return server.state("mm", trades=False)["accounts"]["mm"]["open_orders"][SYM]


def _wallet(server: ExchangeServer) -> dict[str, int]:
    balances = server.state("mm", trades=False)["accounts"]["mm"]["balances"]
    return {a: P(b["free"]) + P(b["locked"]) for a, b in balances.items()}
