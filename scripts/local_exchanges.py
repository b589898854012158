"""Start three local exchange servers, market-make on them through ccxt, stop them (``make run-local``).

    python scripts/local_exchanges.py [--duration 30] [--quiet] [--metrics-port N]

Each server is its own process (``hft exchange serve -c config/exchanges/{a,b,c}.yaml``,
Binance Spot dialect on 127.0.0.1:8701-8703 unless ``HFT_LOCAL_PORT_A/B/C`` say otherwise);
``hft run -c config/local-exchanges.yaml`` then trades on all three with the unmodified
ccxt client, journaling to a fresh ``var/local-exchanges/journal-<time>.sqlite`` (the servers
start empty each time; ``HFT_LOCAL_JOURNAL`` overrides). When the run ends (or on Ctrl-C) the
servers are stopped, after printing what each server says is still open for our account
(nothing, after a clean shutdown). The exit status is ``hft run``'s.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVERS = {"a": ("HFT_LOCAL_PORT_A", 8701), "b": ("HFT_LOCAL_PORT_B", 8702), "c": ("HFT_LOCAL_PORT_C", 8703)}
STARTUP_TIMEOUT_S = 20.0


def _hft() -> list[str]:
    """The ``hft`` command of this interpreter's environment."""
    exe = Path(sys.executable).with_name("hft")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "hft.cli"]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _open_orders(port: int) -> str:
    """What a server says is open for our key (``GET /api/v3/openOrders``, signed like ccxt signs)."""
    import hashlib
    import hmac
    import json
    import urllib.request

    key = os.environ.get("HFT_LOCAL_KEY") or "local-key"
    secret = os.environ.get("HFT_LOCAL_SECRET") or "local-secret"
    query = f"timestamp={int(time.time() * 1000)}"
    sig = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v3/openOrders?{query}&signature={sig}",
                                 headers={"X-MBX-APIKEY": key})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return f"{len(json.loads(r.read()))} open orders"
    except OSError as exc:
        return f"unknown ({exc})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of trading (default 30)")
    ap.add_argument("--quiet", action="store_true", help="no live status, only the final summary")
    ap.add_argument("--metrics-port", type=int, default=None, help="override metrics.port (0 picks a free port)")
    args = ap.parse_args(argv)

    ports = {name: int(os.environ.get(var) or default) for name, (var, default) in SERVERS.items()}
    busy = [f"{p}" for p in ports.values() if _port_open(p)]
    if busy:
        print(f"error: port(s) {', '.join(busy)} already in use (set HFT_LOCAL_PORT_A/B/C)", file=sys.stderr)
        return 2
    env = {**os.environ, **{SERVERS[n][0]: str(p) for n, p in ports.items()}}
    if not env.get("HFT_LOCAL_JOURNAL"):
        # the servers start empty every time: a journal of an earlier run would describe accounts that no
        # longer exist (and recovery would rightly refuse to trade), so every run journals afresh
        stamp = time.strftime("%Y%m%d-%H%M%S")
        env["HFT_LOCAL_JOURNAL"] = str(ROOT / "var" / "local-exchanges" / f"journal-{stamp}.sqlite")
    servers: dict[str, subprocess.Popen] = {}
    try:
        for name in SERVERS:
            cmd = [*_hft(), "exchange", "serve", "-c", str(ROOT / "config" / "exchanges" / f"{name}.yaml")]
            servers[name] = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not all(_port_open(p) for p in ports.values()):
            dead = [n for n, proc in servers.items() if proc.poll() is not None]
            if dead or time.monotonic() > deadline:
                print(f"error: exchange server(s) {', '.join(dead) or 'not listening'} failed to start", file=sys.stderr)
                return 1
            time.sleep(0.1)
        print("local exchanges: " + ", ".join(f"{n} http://127.0.0.1:{p}" for n, p in ports.items()), flush=True)
        cmd = [*_hft(), "run", "-c", str(ROOT / "config" / "local-exchanges.yaml"), "--duration", str(args.duration)]
        if args.quiet:
            cmd.append("--quiet")
        if args.metrics_port is not None:
            cmd += ["--metrics-port", str(args.metrics_port)]
        run = subprocess.Popen(cmd, cwd=ROOT, env=env)
        try:
            code = run.wait()
        except KeyboardInterrupt:  # Ctrl-C reached hft run too: let it stop cleanly
            code = run.wait()
        for name, port in ports.items():
            print(f"server {name}: {_open_orders(port)}")
        return code
    finally:
        for proc in servers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in servers.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    sys.exit(main())
