"""The kill switch, in process and through `hft halt` against a running `hft run`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from hft.engine import Engine
from hft.metrics import Metrics
from hft.model import Side
from hft.risk import TradingState
from hft.runner import run_engine
from hft.strategy import NoParams, Strategy
from tests.integration.test_run_end_to_end import _load

REPO = Path(__file__).resolve().parents[2]
HANG_GUARD_S = 60.0  # runs end when their scenario is done; this only bounds a broken one


async def test_kill_switch_cancels_everywhere_within_a_second_and_stays_halted():
    cfg, venues, strategies = _load()
    metrics = Metrics(CollectorRegistry())
    seen: dict = {}

    def started(engine: Engine) -> None:
        async def trigger() -> None:
            for _ in range(100):  # until quotes rest on the venues
                seen["resting_before"] = sum(
                    len(m.open_orders("us")) for a in engine.adapters.values() for m in a.engines.values()
                )
                if seen["resting_before"] >= 6:
                    break
                await asyncio.sleep(0.05)
            t0 = time.monotonic()
            left = await engine.halt("test")
            seen["confirm_s"] = time.monotonic() - t0
            seen["left"] = left
            seen["resting_after"] = sum(
                len(m.open_orders("us")) for a in engine.adapters.values() for m in a.engines.values()
            )
            orders_before = sum(st.orders for st in engine.stats.values())
            await asyncio.sleep(1.0)  # books keep ticking; nothing new may go out
            seen["orders_after_halt"] = sum(st.orders for st in engine.stats.values()) - orders_before
            seen["denied"] = engine.submit_order("alpha", "BTC/USDT", Side.BUY, 10_000_000, engine.books["BTC/USDT"].mid())
            seen["state"] = engine.risk.state
            engine.request_stop()

        engine.spawn(trigger(), "trigger")

    summary = await run_engine(cfg, venues, strategies, duration=HANG_GUARD_S, metrics=metrics, out=lambda s: None,
                               on_started=started)
    assert summary is not None
    assert seen["resting_before"] > 0
    assert seen["left"] == {"alpha": 0, "beta": 0, "gamma": 0}
    assert seen["resting_after"] == 0
    # The issue asks for "within one second": reported here, measured not asserted (timings go to bench/).
    print(f"kill switch: trigger -> every venue confirmed empty in {seen['confirm_s'] * 1e3:.0f} ms")
    assert seen["orders_after_halt"] == 0
    assert seen["denied"] is None and summary.risk_denials.get("halted", 0) >= 1
    assert seen["state"] is TradingState.HALTED
    assert metrics.registry.get_sample_value("hft_trading_state") == 2
    assert metrics.registry.get_sample_value("hft_kill_switch_total", {"reason": "test"}) == 1


def _metric(port: int, name: str) -> float | None:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = None
    for line in text.splitlines():
        if line.startswith(name):
            total = (total or 0.0) + float(line.rpartition(" ")[2])
    return total


def test_hft_halt_command_stops_a_running_engine(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "default.yaml").read_text())
    cfg["engine"]["pid_file"] = str(tmp_path / "hft.pid")
    cfg["metrics"]["port"] = 0
    cfg["journal"]["path"] = str(tmp_path / "journal.sqlite")
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    hft = [sys.executable, "-m", "hft.cli"]
    proc = subprocess.Popen(
        [*hft, "run", "-c", str(path), "--duration", "60", "--quiet"], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        port = None
        for line in proc.stdout:
            if "metrics at" in line:
                port = int(line.rsplit(":", 1)[1].split("/")[0])
            if "Ctrl-C stops cleanly" in line:
                break
        assert port is not None
        deadline = time.monotonic() + 10
        while (_metric(port, "hft_orders_total") or 0) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (_metric(port, "hft_orders_total") or 0) > 0
        out = subprocess.run([*hft, "halt", "-c", str(path)], cwd=tmp_path, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert f"pid {proc.pid}" in out.stdout
        deadline = time.monotonic() + 5
        while _metric(port, "hft_trading_state") != 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _metric(port, "hft_trading_state") == 2
        deadline = time.monotonic() + 5
        while _metric(port, "hft_open_orders") != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _metric(port, "hft_open_orders") == 0
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, rest
        assert "KILL SWITCH (manual)" in rest
        assert not (tmp_path / "hft.pid").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class RestOnceAndForget(Strategy):
    """A careless strategy: one far bid per venue, never cancelled, blind to stale books.

    With it, only the engine's dead man's switch can take the quote off a silent venue.
    """

    def on_book(self, venue: str, symbol: str) -> None:
        if getattr(self, "placed", None) is None:
            self.placed: set[str] = set()
        if venue in self.placed:
            return
        best = self.ctx.books[symbol].best_bid()
        if best is None:
            return
        inst = self.ctx.instrument(venue, symbol)
        price = inst.round_price(best[0] - best[0] // 200, Side.BUY)  # 0.5% under the bid: inside the band, unfilled
        if self.ctx.submit_order(venue, symbol, Side.BUY, 10_000_000, price) is not None:
            self.placed.add(venue)


async def test_dead_mans_switch_pulls_quotes_from_a_silent_venue():
    cfg, venues, strategies = _load()
    cfg.engine.stale_book_after_s = 1.0
    cfg.venues[0].options.silence_after_s = 2.0  # alpha's market data stops; its order entry still works
    cfg.strategy.type = f"{__name__}:RestOnceAndForget"
    cfg.strategy.params = NoParams()
    metrics = Metrics(CollectorRegistry())
    seen: dict = {}

    def resting(engine: Engine, venue: str) -> int:
        return len(engine.adapters[venue].engines["BTC/USDT"].open_orders("us"))

    def started(engine: Engine) -> None:
        async def look() -> None:
            book = engine.books["BTC/USDT"]
            while not all(resting(engine, v) == 1 for v in ("alpha", "beta", "gamma")):
                await asyncio.sleep(0.02)
            seen["alpha_before"] = resting(engine, "alpha")
            while book.is_active("alpha"):
                await asyncio.sleep(0.02)
            for _ in range(40):  # the cancel-all goes out on the housekeeping tick that finds the book stale
                if resting(engine, "alpha") == 0:
                    break
                await asyncio.sleep(0.05)
            seen["alpha_after"] = resting(engine, "alpha")
            seen["others_after"] = resting(engine, "beta") + resting(engine, "gamma")
            engine.request_stop()

        engine.spawn(look(), "look")

    summary = await run_engine(cfg, venues, strategies, duration=HANG_GUARD_S, metrics=metrics, out=lambda s: None,
                               on_started=started)
    assert summary is not None
    assert seen["alpha_before"] == 1
    assert seen["alpha_after"] == 0  # the strategy never cancels: the watchdog did
    assert seen["others_after"] == 2  # venues with live data keep their quote
    assert metrics.registry.get_sample_value("hft_watchdog_cancels_total", {"venue": "alpha"}) == 1
    assert metrics.registry.get_sample_value("hft_watchdog_cancels_total", {"venue": "beta"}) is None
