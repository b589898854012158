"""The main job end to end: config → engine → three sim venues → fills → metrics → clean shutdown."""

from __future__ import annotations

import asyncio
import io
import logging
import tempfile
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from hft import numbers
from hft.config import load_config
from hft.engine import Engine
from hft.metrics import Metrics
from hft.model import Side
from hft.registry import strategy_registry, venue_registry
from hft.runner import run_engine
from hft.secrets import install_log_redaction


def _load(path=None, **overrides):
    venues, strategies = venue_registry(), strategy_registry()
    cfg = load_config(
        path,
        venue_options_model=lambda t: venues.resolve(t).Options,
        strategy_params_model=lambda t: strategies.resolve(t).Params,
    )
    cfg.metrics.port = 0
    cfg.journal.path = Path(tempfile.mkdtemp(prefix="hft-test-")) / "journal.sqlite"
    return cfg, venues, strategies


def _scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _sum(samples: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in samples.items() if k.startswith(prefix))


async def test_default_config_market_makes_on_three_venues_and_shuts_down_clean():
    cfg, venues, strategies = _load()
    # A faster flow than the demo default so a short test sees fills on several venues.
    for vc in cfg.venues:
        vc.options.taker_rate_per_s = 8.0
    metrics = Metrics(CollectorRegistry())
    scraped: dict[str, float] = {}
    engines: list[Engine] = []

    def started(engine: Engine) -> None:
        engines.append(engine)

        async def scrape_later() -> None:
            await asyncio.sleep(5.0)
            port = metrics._server.server_address[1]
            scraped.update(await asyncio.to_thread(_scrape, port))

        engine.spawn(scrape_later(), "scrape")

    out = io.StringIO()
    summary = await run_engine(cfg, venues, strategies, duration=7.0, metrics=metrics, out=out.write, on_started=started)
    assert summary is not None, out.getvalue()
    engine = engines[0]

    venues_with_fills = [v for v, st in summary.venues.items() if st.fills > 0]
    assert len(venues_with_fills) >= 2, summary
    assert all(st.orders > 0 for st in summary.venues.values())

    # position limits were never exceeded, at any fill
    limits = engine.limits
    assert all(p <= limits.max_position_per_venue for p in summary.max_abs_position_venue.values())
    assert summary.max_abs_position_total <= limits.max_position_total

    # nothing left open: the engine's view, and each venue's own matching engine
    assert summary.open_orders_left == {v: 0 for v in summary.venues}
    assert not any(engine.open_orders.values())
    for adapter in engine.adapters.values():
        for matching in adapter.engines.values():
            assert matching.open_orders("us") == []

    # our positions equal what the venues' accounts say
    for name, adapter in engine.adapters.items():
        start = adapter.options.balances["BTC"]
        held = adapter.engines["BTC/USDT"].balances("us")["BTC"].total
        assert held - start == summary.positions[name]

    # P&L is computed and reported
    text = out.getvalue()
    assert "net P&L" in text and "Summary after" in text

    # /metrics during the run showed the promised series with non-zero values
    assert scraped, "metrics were not scraped"
    assert scraped["hft_tick_to_order_seconds_count"] > 0
    assert _sum(scraped, "hft_order_ack_seconds_count") > 0
    for name in ("hft_book_updates_total", "hft_orders_total", "hft_fills_total"):
        assert _sum(scraped, name) > 0, name
    assert any(k.startswith("hft_position_base") for k in scraped)
    assert "hft_pnl_realized_quote" in scraped and "hft_pnl_unrealized_quote" in scraped
    assert "hft_book_gaps_total{venue=\"alpha\"}" in scraped


async def test_gaps_are_detected_resynced_and_end_equal_to_the_venue_book():
    cfg, venues, strategies = _load()
    for vc in cfg.venues:
        vc.options.drop_delta_probability = 0.05 if vc.name == "alpha" else 0.0
    cfg.venues[0].options.market_data_latency_ms = 40.0  # a resync takes a while: other venues tick meanwhile
    metrics = Metrics(CollectorRegistry())
    compared: dict[str, object] = {}

    sent_while_invalid = []

    def started(engine: Engine) -> None:
        alpha = engine.adapters["alpha"]
        book = engine.books["BTC/USDT"]
        real_submit = alpha.submit

        def watched_submit(order):
            if not book.is_active("alpha"):
                sent_while_invalid.append(order)
            real_submit(order)

        alpha.submit = watched_submit

        async def check() -> None:
            while engine.stats["alpha"].gaps < 3:
                await asyncio.sleep(0.05)
            # gaps seen: stop losing deltas, freeze alpha's background flow, let in-flight data land
            alpha.options.drop_delta_probability = 0.0
            for task in list(alpha._tasks):
                if task.get_name().endswith(":flow"):
                    task.cancel()
            for _ in range(500):
                await asyncio.sleep(0.01)
                idle = not alpha._market_data._queue and not alpha._to_venue._queue
                if idle and book.is_active("alpha"):
                    break
            matching = alpha.engines["BTC/USDT"]
            bids, asks = matching.depth(1000)
            ours = book.venue_book("alpha")
            compared["bids"] = (ours.depth(Side.BUY, 1000), bids)
            compared["asks"] = (ours.depth(Side.SELL, 1000), asks)
            compared["active"] = book.is_active("alpha")

        engine.spawn(check(), "check")

    summary = await run_engine(cfg, venues, strategies, duration=6.0, metrics=metrics, out=lambda s: None,
                               on_started=started)
    assert summary is not None
    assert summary.venues["alpha"].gaps >= 3
    assert summary.venues["beta"].gaps == 0 and summary.venues["gamma"].gaps == 0
    resyncs = metrics.registry.get_sample_value("hft_book_resyncs_total", {"venue": "alpha"})
    assert resyncs == summary.venues["alpha"].gaps  # one snapshot request per gap, not per ignored delta
    assert compared["active"] is True
    assert compared["bids"][0] == compared["bids"][1] and compared["bids"][1]
    assert compared["asks"][0] == compared["asks"][1] and compared["asks"][1]
    assert summary.open_orders_left["alpha"] == 0
    assert summary.venues["alpha"].orders > 0
    assert sent_while_invalid == []  # never quoted from a broken book


async def test_secrets_never_reach_logs_or_metrics(monkeypatch, tmp_path):
    secret = "s3cr3t-VALUE-9f8e7d"
    monkeypatch.setenv("ALPHA_SECRET", secret)
    monkeypatch.setenv("ALPHA_KEY", "key-abc-123456")
    cfg, venues, strategies = _load()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    install_log_redaction()
    try:
        metrics = Metrics(CollectorRegistry())
        engines: list[Engine] = []
        summary = await run_engine(
            cfg, venues, strategies, duration=1.5, metrics=metrics, out=lambda s: None, on_started=engines.append
        )
        assert summary is not None
        logging.getLogger("hft.test").warning("adapter built with %s", engines[0].adapters["alpha"]._api_secret)
    finally:
        root.removeHandler(handler)
    logged = stream.getvalue()
    assert "adapter built with ***" in logged
    assert secret not in logged
    from prometheus_client import generate_latest

    assert secret.encode() not in generate_latest(metrics.registry)
