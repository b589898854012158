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
            try:
                while True:  # Prometheus starts, then scrapes every second (the run's duration bounds this)
                    try:
                        got = {k: await asyncio.to_thread(_query, prom_port, q) for k, q in queries.items()}
                    except OSError:
                        got = {}
                    # every series answered (a scrape may land between two of these queries) and a fill seen
                    if got and all(got.values()) and all(
                        float(got[k][0]["value"][1]) > 0 for k in ("fills", "tick_to_order")
                    ):
                        seen.update(got)
                        return
                    await asyncio.sleep(0.1)
            finally:
                engine.request_stop()

        engine.spawn(ask(), "ask-prometheus")

    try:
        summary = await run_engine(cfg, venues, strategies, duration=90.0, metrics=metrics, out=lambda s: None,
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


def test_grafana_dashboard_and_compose_prometheus_config_refer_to_real_series():
    """Every hft_* series the shipped dashboard queries is one the engine exports."""
    import re
    from pathlib import Path

    import yaml
    from prometheus_client import generate_latest

    from hft.execution import RouterMetrics

    root = Path(__file__).resolve().parents[2]
    dashboard = json.loads((root / "docker" / "grafana" / "dashboards" / "hft.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    wanted = {re.sub(r"_(bucket|count|sum)$", "", m) for e in exprs for m in re.findall(r"hft_[a-z_]+", e)}
    cfg, venues, strategies = _load()
    engine = Engine(cfg, venue_registry=venues, strategy_registry=strategies, metrics=Metrics(CollectorRegistry()))
    engine.build()
    RouterMetrics.of(engine)  # registered on first use, as when a parent is routed
    for venue in engine.adapters:  # labelled children appear once touched, as they are in a run
        engine.metrics.venue(venue)
    exported = generate_latest(engine.metrics.registry).decode()
    names = {re.sub(r"_(bucket|count|sum|created)$", "", m) for m in re.findall(r"^# TYPE (hft_[a-z_]+)", exported, re.M)}
    names |= {n + "_total" for n in names}
    assert wanted and wanted <= names, wanted - names
    scrape = yaml.safe_load((root / "docker" / "prometheus.yml").read_text())
    assert scrape["scrape_configs"][0]["static_configs"][0]["targets"] == ["hft:9464"]
