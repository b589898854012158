"""A real Prometheus server scrapes the engine's endpoint during a run (Debian's `prometheus`)."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from hft.engine import Engine
from hft.metrics import Metrics
from hft.runner import run_engine
from tests.integration.test_run_end_to_end import _load

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None, reason="no prometheus binary (.ci/run installs Debian's `prometheus`)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _query(port: int, expr: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(expr)}"
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


async def test_prometheus_scrapes_orders_fills_latency_and_pnl(tmp_path):
    cfg, venues, strategies = _load()
    for vc in cfg.venues:
        vc.options.taker_rate_per_s = 8.0
    metrics = Metrics(CollectorRegistry())
    prom_port = _free_port()
    seen: dict[str, list] = {}
    procs: list[subprocess.Popen] = []

    def started(engine: Engine) -> None:
        target = f"127.0.0.1:{metrics._server.server_address[1]}"
        (tmp_path / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"scrape_configs:\n  - job_name: hft\n    static_configs:\n      - targets: ['{target}']\n"
        )
        procs.append(subprocess.Popen(
            [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))

        async def ask() -> None:
            queries = {
                "up": 'up{job="hft"}',
                "orders": "sum(hft_orders_total)",
                "fills": "sum(hft_fills_total)",
                "tick_to_order": "hft_tick_to_order_seconds_count",
                "p50": "histogram_quantile(0.5, hft_tick_to_order_seconds_bucket)",
                "pnl": "hft_pnl_net_quote",
                "position": 'hft_position_base{venue="total"}',
            }
            for _ in range(200):  # Prometheus starts, then scrapes every second
                try:
                    got = {k: await asyncio.to_thread(_query, prom_port, q) for k, q in queries.items()}
                except OSError:
                    got = {}
                if got and got["fills"] and float(got["fills"][0]["value"][1]) > 0:
                    seen.update(got)
                    return
                await asyncio.sleep(0.1)

        engine.spawn(ask(), "ask-prometheus")

    try:
        summary = await run_engine(cfg, venues, strategies, duration=12.0, metrics=metrics, out=lambda s: None,
                                   on_started=started)
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
    assert summary is not None
    assert seen, "Prometheus never saw a fill"
    assert seen["up"][0]["value"][1] == "1"
    assert float(seen["orders"][0]["value"][1]) > 0
    assert float(seen["tick_to_order"][0]["value"][1]) > 0
    assert float(seen["p50"][0]["value"][1]) > 0  # a quantile Prometheus computed from our buckets
    assert seen["pnl"] and seen["position"]
