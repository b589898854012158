"""Fault soak: three local exchange servers with faults on, the engine ``kill -9``-ed and restarted.

    python scripts/soak.py [--restarts 10] [--run-seconds 2.5] [--seed 1] [--workdir DIR] [--no-faults]

Everything is a real process on 127.0.0.1: three ``hft exchange serve`` servers (configs derived
from ``config/exchanges/{a,b,c}.yaml``: free ports, an admin token, busier takers, faults on —
websocket drops, submit/cancel answers lost after execution, duplicated and reordered user-stream
events, depth sequence gaps, 5xx answers, jittered delays) and ``hft run --quiet`` on a config
derived from ``config/local-exchanges.yaml``, with ONE journal file shared by every run. The engine
trades for a seeded random few seconds and is killed with SIGKILL, then restarted; some kills come
right after the engine has counted a new fill (its own ``hft_fills_total``), before its journal
writer can commit it. After the last restart the engine trades on, and the invariants are checked
while it runs and again after a clean SIGTERM shutdown, against each server's own truth
(``GET /admin/state``):

* no orphans: every order open on a server is in the journal as not done (while running); no
  order of ours is open anywhere after the shutdown;
* fills: the journal's (venue, trade id) set equals the servers' trades of our account, field by
  field (price, quantity, fee, side); nothing lost, nothing doubled; every fill a server had when
  the engine was killed is in the journal once the next run has started;
* positions: each server's BTC and USDT balance change equals the sum over the journal's fills
  (signed quantity; notional and fee) to the last unit, and the engine's own last position
  snapshot equals the same sums (no fill counted twice in memory);
* books: per run, the engine's ``hft_book_resyncs_total`` equals ``hft_book_gaps_total`` and every
  venue's book is valid again at the check (book *equality* after a resync is asserted in
  ``tests/integration/test_ccxt_faults.py``);
* recovery: a run that refuses to trade (RecoveryError, non-zero exit) or halts on a failed
  reconciliation fails the soak, with the engine's own words.

Prints what it did: restarts, kills right after a fill, faults injected per server (the servers'
counters), orders, fills checked, orphans, duplicates, position differences. Exit status 0 when
every invariant held. ``run_soak(...)`` does the same from Python and returns a :class:`SoakReport`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # importable as a script too
    sys.path.insert(0, str(ROOT))

from hft import numbers  # noqa: E402
from hft.journal import JournalReader  # noqa: E402
from hft.book import CHECKSUM_LEVELS, levels_checksum  # noqa: E402
from hft.model import Side  # noqa: E402

NAMES = ("a", "b", "c")
SYMBOL = "BTC/USDT"
ACCOUNT = "mm"  # the account name of our API key in config/exchanges/*.yaml
BASE, QUOTE = "BTC", "USDT"
ADMIN_TOKEN = "soak-admin-token"
P = numbers.parse

# Guards against a hang, never pass/fail thresholds: each wait ends as soon as its state is reached.
STARTUP_TIMEOUT_S = 90.0
SETTLE_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0
FILL_WAIT_S = 15.0

# Moderate faults, per server (rates are per request / per stream message; see venues/sim/faults.py).
_COMMON_FAULTS: dict[str, Any] = {
    "ws_drop_rate": 0.002,  # a connection aborted on a message now and then (market and user streams)
    "drop_after_execute_rate": 0.04,  # submits, cancels and cancel-alls executed, answer lost
    "user_duplicate_rate": 0.15,  # user-stream events (fills, order updates) sent twice
    "user_reorder_rate": 0.15,  # ... and swapped with the next one
    "depth_gap_rate": 0.01,  # a depth diff never sent: the sequence jumps
    "error_rate": 0.01,  # 5xx before execution
    "delay_jitter_ms": 5.0,
}
FAULTS: dict[str, dict[str, Any]] = {
    "a": {**_COMMON_FAULTS, "drop_mode": "close"},
    "b": {**_COMMON_FAULTS, "drop_mode": "504", "error_body": "json"},
    "c": {**_COMMON_FAULTS, "drop_mode": "503", "error_status": 502},
}


class SoakFailure(Exception):
    """The soak could not go on (a server or the engine would not start, a run refused to trade)."""


# ============================================================================ report


@dataclass
class SoakReport:
    """What a soak did and found; ``ok`` when every invariant held."""

    seed: int
    restarts_planned: int
    kills: int = 0
    kills_after_fill: int = 0
    unjournaled_at_kill: int = 0  # fills a server had, the journal not, when the engine died
    acked_unjournaled_at_kill: int = 0  # ... of which the engine had already counted (acknowledged)
    recovered_after_restart: int = 0  # ... of those, found in the journal after the next start
    runs_started: int = 0
    faults: dict[str, dict[str, int]] = field(default_factory=dict)
    admin_drops: Counter = field(default_factory=Counter)  # websockets aborted through /admin/drop_streams
    orders: dict[str, int] = field(default_factory=dict)  # journaled orders per venue
    fills_checked: dict[str, int] = field(default_factory=dict)  # per venue, final check
    fills_checked_running: int = 0
    open_checked_running: int = 0
    duplicates_ignored: int = 0  # fills the engine saw twice and did not count (its own counter)
    gaps: int = 0
    resyncs: int = 0
    books_compared: int = 0  # venue books found equal to the server's (frozen market, after the run's resyncs)
    orphans: list[str] = field(default_factory=list)
    lost_fills: list[str] = field(default_factory=list)
    extra_fills: list[str] = field(default_factory=list)
    fill_mismatches: list[str] = field(default_factory=list)
    position_diffs: list[str] = field(default_factory=list)
    book_problems: list[str] = field(default_factory=list)
    stale_orders: list[str] = field(default_factory=list)  # earlier runs' orders left open (policy: cancel)
    recovery_failures: list[str] = field(default_factory=list)
    halts: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    final_exit_code: int | None = None
    elapsed_s: float = 0.0
    workdir: str = ""

    @property
    def problems(self) -> list[str]:
        out = []
        for name in ("recovery_failures", "halts", "orphans", "stale_orders", "lost_fills", "extra_fills", "fill_mismatches",
                     "position_diffs", "book_problems", "other"):
            out.extend(f"{name}: {p}" for p in dict.fromkeys(getattr(self, name)))
        if self.kills < self.restarts_planned:
            out.append(f"only {self.kills} of {self.restarts_planned} kill -9 restarts were done")
        if self.final_exit_code not in (0,):
            out.append(f"the last run's clean shutdown exited with {self.final_exit_code}")
        return out

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        lines = [f"Fault soak (seed {self.seed}, {self.elapsed_s:.0f}s, workdir {self.workdir})", ""]
        rows = [
            ("restarts (kill -9, then start)",
             f"{self.kills}" + (f" of {self.restarts_planned}" if self.restarts_planned else "")),
            ("  kills right after a fill", str(self.kills_after_fill)),
            ("  server fills not in the journal at a kill", str(self.unjournaled_at_kill)),
            ("    of which acknowledged by the engine", str(self.acked_unjournaled_at_kill)),
            ("  ... in the journal after restart", str(self.recovered_after_restart)),
            ("orders journaled", _per_venue(self.orders)),
            ("fills checked (journal = servers, by id)", _per_venue(self.fills_checked)),
            ("fills / open orders checked while running", f"{self.fills_checked_running} / {self.open_checked_running}"),
            ("duplicate fills reaching the engine (ignored)", str(self.duplicates_ignored)),
            ("book gaps / resyncs", f"{self.gaps} / {self.resyncs}"),
            ("books equal to the server's (best 10 levels)", str(self.books_compared)),
            ("orphans found", str(len(set(self.orphans)))),
            ("earlier runs' orders left open", str(len(set(self.stale_orders)))),
            ("lost fills / extra fills", f"{len(self.lost_fills)} / {len(self.extra_fills)}"),
            ("fills differing from the server", str(len(self.fill_mismatches))),
            ("position differences", str(len(self.position_diffs))),
            ("runs refusing to trade / halts", f"{len(self.recovery_failures)} / {len(self.halts)}"),
            ("last clean shutdown exit code", str(self.final_exit_code)),
        ]
        width = max(len(k) for k, _ in rows)
        lines += [f"{k:<{width}}  {v}" for k, v in rows]
        faults = {n: {**f, "ws_drop (admin)": self.admin_drops[n]} for n, f in self.faults.items()}
        kinds = sorted({k for f in faults.values() for k in f})
        if kinds:
            lines += ["", "faults injected (servers' counters)", f"{'':<22}" + "".join(f"{n:>8}" for n in faults)]
            for k in kinds:
                lines.append(f"{k:<22}" + "".join(f"{faults[n].get(k, 0):>8}" for n in faults))
        problems = self.problems
        lines += ["", "RESULT: " + ("OK, every invariant held" if not problems else f"FAILED ({len(problems)})")]
        lines += [f"  - {p}" for p in problems[:40]]
        if len(problems) > 40:
            lines.append(f"  ... and {len(problems) - 40} more")
        return "\n".join(lines)


def _per_venue(d: dict[str, int]) -> str:
    return f"{sum(d.values())} (" + ", ".join(f"{k} {v}" for k, v in sorted(d.items())) + ")" if d else "0"


# ============================================================================ processes


def _hft() -> list[str]:
    exe = Path(sys.executable).with_name("hft")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "hft.cli"]


def _wait_line(path: Path, prefix: str, proc: subprocess.Popen, timeout: float) -> str:
    """The first line of ``path`` starting with ``prefix``; raises if ``proc`` exits first or on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith(prefix):
                    return line
        except OSError:
            pass
        if proc.poll() is not None:
            raise SoakFailure(f"process exited with {proc.returncode} before printing {prefix!r}")
        if time.monotonic() > deadline:
            raise SoakFailure(f"no {prefix!r} within {timeout:.0f}s")
        time.sleep(0.02)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


class Server:
    """One ``hft exchange serve`` process and its admin API."""

    def __init__(self, name: str, workdir: Path, seed: int, faults: dict[str, Any] | None) -> None:
        self.name = name
        raw = yaml.safe_load((ROOT / "config" / "exchanges" / f"{name}.yaml").read_text())
        raw["port"] = 0
        raw["seed"] = seed  # same on a, b, c: one shared "true" price, three books
        for sym in raw["symbols"]:
            flow = sym.get("flow")
            if flow:
                flow["taker_rate_per_s"] = float(flow.get("taker_rate_per_s", 3.0)) * 3  # fills in short runs
        if faults:
            raw["faults"] = faults
        self.config_path = workdir / f"server-{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
        self.out = workdir / f"server-{name}.out"
        self.err = workdir / f"server-{name}.err"
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self, env: dict[str, str]) -> None:
        cmd = [*_hft(), "exchange", "serve", "-c", str(self.config_path), "--admin-token", ADMIN_TOKEN]
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)

    def wait_listening(self, timeout: float) -> None:
        assert self.proc is not None
        try:
            line = _wait_line(self.out, "REST", self.proc, timeout)
        except SoakFailure as exc:
            raise SoakFailure(f"exchange server {self.name}: {exc}\n{_tail(self.err)}") from None
        self.port = int(line.split()[-1].rsplit(":", 1)[1].split("/")[0])

    def admin(self, method: str, path: str, body: dict | None = None, timeout: float = 15.0) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
            headers={"X-Admin-Token": ADMIN_TOKEN, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def account(self, trades: bool = True) -> dict:
        """Balances (free + locked), open orders by client id, trades by id: one consistent snapshot."""
        state = self.admin("GET", f"/admin/state?account={ACCOUNT}&trades={1 if trades else 0}")
        acc = state["accounts"][ACCOUNT]
        return {
            "balances": {a: P(b["free"]) + P(b["locked"]) for a, b in acc["balances"].items()},
            "open": acc["open_orders"].get(SYMBOL, {}),
            "trades": acc["trades"].get(SYMBOL, {}) if trades else {},
        }

    def faults_injected(self) -> dict[str, int]:
        return dict(self.admin("GET", "/admin/faults")["injected"])

    def stop(self) -> None:
        p = self.proc
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class EngineRun:
    """One ``hft run`` process."""

    def __init__(self, index: int, config: Path, workdir: Path, env: dict[str, str]) -> None:
        self.index = index
        self.out = workdir / f"engine-{index:03d}.out"
        self.err = workdir / f"engine-{index:03d}.err"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                [*_hft(), "run", "-c", str(config), "--quiet"], cwd=workdir, env=env, stdout=out, stderr=err,
                stdin=subprocess.DEVNULL,
            )
        self.metrics_port = 0
        self.started_s = 0.0
        self.acked_unjournaled = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_trading(self, timeout: float) -> None:
        """Until start-up (journal replay + reconciliation with every venue) is done and it trades."""
        try:
            _wait_line(self.out, "hft: trading", self.proc, timeout)
            line = _wait_line(self.out, "hft: metrics at", self.proc, timeout)
        except SoakFailure as exc:
            raise SoakFailure(
                f"run {self.index} did not start trading: {exc}\n--- stdout\n{_tail(self.out)}\n--- stderr\n{_tail(self.err)}"
            ) from None
        self.metrics_port = int(line.rsplit(":", 1)[1].split("/")[0])

    def metrics(self) -> dict[tuple[str, tuple], float]:
        """The engine's own metrics: {(name, ((label, value), ...)): value}."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            text = r.read().decode()
        out: dict[tuple[str, tuple], float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            name, _, labels = head.partition("{")
            pairs = tuple(
                tuple(kv.split("=", 1)) for kv in labels.rstrip("}").split(",") if "=" in kv
            ) if labels else ()
            out[(name, tuple((k, v.strip('"')) for k, v in pairs))] = float(value)
        return out

    def kill9(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def terminate(self, timeout: float) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9


def _metric(m: dict, name: str, **labels: str) -> float:
    want = tuple(sorted(labels.items()))
    return sum(v for (n, ls), v in m.items() if n == name and all(kv in ls for kv in want))


# ============================================================================ checks


def _journal_fills(reader: JournalReader) -> dict[tuple[str, str], Any]:
    """The journal's fills of the soak's symbol by (venue, trade id); a fill of any other symbol is
    keyed so that it can match no server trade (and so counts as extra)."""
    return {(f.venue, f.trade_id if f.symbol == SYMBOL else f"{f.symbol}:{f.trade_id}"): f for f in reader.fills()}


def _server_fill_matches(venue: str, jf: Any, t: dict) -> str | None:
    """None when the journaled fill is the server's trade, else what differs."""
    side = Side.BUY if t["isBuyer"] else Side.SELL
    want = (P(t["price"]), P(t["qty"]), P(t["commission"]), side)
    got = (jf.price, jf.qty, jf.fee, jf.side)
    if want != got:
        return f"{venue} trade {jf.trade_id}: journal {got} != server {want}"
    return None


def _moved_by(fills: list[Any]) -> tuple[int, int]:
    """(base, quote) a list of fills moved an account by: quantity signed; notional and fee in quote."""
    base = quote = 0
    for f in fills:
        signed = f.qty * int(f.side)
        base += signed
        quote -= numbers.mul(f.price, signed) + f.fee
    return base, quote


class Soak:
    """Three servers, one journal, engine runs started and killed; the checks. Used by :func:`run_soak`
    and by the tests (``tests/soak``), which drive the same steps in their own order."""

    def __init__(self, workdir: Path, *, seed: int = 1, faults: bool = True, restarts_planned: int = 0,
                 out: Callable[[str], None] | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.rng = random.Random(seed)
        self.say = out or (lambda s: print(s, flush=True))
        self.report = SoakReport(seed=seed, restarts_planned=restarts_planned, workdir=str(self.workdir))
        self.servers = {n: Server(n, self.workdir, seed, FAULTS[n] if faults else None) for n in NAMES}
        self.journal_path = self.workdir / "journal.sqlite"
        self.config_path = self.workdir / "soak.yaml"
        self.engine: EngineRun | None = None
        self.runs = 0
        self.start_balances: dict[str, dict[str, int]] = {}
        self.env: dict[str, str] = {}
        self.unrecovered: set[tuple[str, str]] = set()  # server fills the journal lacked at the last kill
        self._t0 = time.monotonic()

    # -- set-up and tear-down
    def start(self) -> None:
        """Write the configs, start the three servers and remember our balances on each."""
        for suffix in ("", "-wal", "-shm"):  # fresh servers: a journal of earlier ones would not reconcile
            Path(f"{self.journal_path}{suffix}").unlink(missing_ok=True)
        raw = yaml.safe_load((ROOT / "config" / "local-exchanges.yaml").read_text())
        raw["engine"].update({"status_interval_s": 0.5, "pid_file": str(self.workdir / "hft.pid")})
        raw["log"] = {"level": "INFO", "file": None}
        self.config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("HFT_")}
        for s in self.servers.values():
            s.start(base_env)
        for s in self.servers.values():
            s.wait_listening(STARTUP_TIMEOUT_S)
        self.env = {
            **base_env,
            **{f"HFT_LOCAL_PORT_{n.upper()}": str(s.port) for n, s in self.servers.items()},
            "HFT_LOCAL_JOURNAL": str(self.journal_path),
            "HFT_METRICS_PORT": "0",
        }
        self.start_balances = {n: s.account(trades=False)["balances"] for n, s in self.servers.items()}
        self.say("soak: servers " + ", ".join(f"{n} 127.0.0.1:{s.port}" for n, s in self.servers.items())
                 + f"; journal {self.journal_path}")

    def close(self) -> None:
        """Kill a run still alive, read the servers' fault counters, stop the servers. Never raises."""
        self.report.elapsed_s = time.monotonic() - self._t0
        if self.engine is not None and self.engine.proc.poll() is None:
            self.engine.kill9()
        for n, s in self.servers.items():
            try:
                if s.proc is not None and s.proc.poll() is None and s.port:
                    self.report.faults[n] = s.faults_injected()
            except (OSError, ValueError):
                pass
            s.stop()

    # -- reading both sides
    def journal_fills(self) -> dict[tuple[str, str], Any]:
        reader = JournalReader(self.journal_path)
        try:
            return _journal_fills(reader)
        finally:
            reader.close_reader()

    def server_trades(self) -> dict[tuple[str, str], dict]:
        return {(n, tid): t for n, s in self.servers.items() for tid, t in s.account()["trades"].items()}

    def wait_journal_has(self, keys: set[tuple[str, str]], timeout: float = SETTLE_TIMEOUT_S) -> set[tuple[str, str]]:
        """Poll until the journal holds every key; returns what is still missing at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            missing = keys - set(self.journal_fills())
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.05)

    # -- engine runs
    def start_engine(self) -> EngineRun:
        """Start ``hft run`` and wait until it trades (journal replayed, every venue reconciled).

        A run that exits instead (RecoveryError: positions do not reconcile) is a failure of the soak.
        Fills the servers had at the previous kill must then be in the journal.
        """
        index = self.runs
        self.runs += 1
        t0 = time.monotonic()
        run = EngineRun(index, self.config_path, self.workdir, self.env)
        self.engine = run
        try:
            run.wait_trading(STARTUP_TIMEOUT_S)
        except SoakFailure as exc:
            run.kill9()
            self.report.recovery_failures.append(str(exc))
            raise
        run.started_s = time.monotonic() - t0
        self.report.runs_started += 1
        if self.unrecovered:
            missing = self.wait_journal_has(self.unrecovered)
            self.report.recovered_after_restart += len(self.unrecovered) - len(missing)
            self.report.lost_fills += [f"{n} trade {tid} (in no journal after run {index} started)"
                                       for n, tid in sorted(missing)]
            self.unrecovered = set()
        return run

    def trade(self, seconds: float, *, drop_streams: bool) -> None:
        """Let the run trade; with ``drop_streams``, one server also aborts its websockets at a random moment
        (on top of the servers' random drops, so every run sees at least one)."""
        if not drop_streams:
            time.sleep(seconds)
            return
        before = self.rng.uniform(0.2, 0.8) * seconds
        time.sleep(before)
        name = self.rng.choice(NAMES)
        kind = self.rng.choice(("market", "user", "all"))
        dropped = self.servers[name].admin("POST", "/admin/drop_streams", {"kind": kind})["dropped"]
        self.report.admin_drops[name] += dropped
        time.sleep(seconds - before)

    def kill(self, run: EngineRun, *, after_fill: bool) -> bool:
        """SIGKILL the run — if ``after_fill``, the moment its own ``hft_fills_total`` goes up — and note
        what the journal lacks. Returns whether the kill came right after a fill."""
        r = self.report
        m = run.metrics()
        self._check_health(run, m)
        killed_after_fill = False
        if after_fill:
            fills = _metric(m, "hft_fills_total")
            deadline = time.monotonic() + FILL_WAIT_S
            while time.monotonic() < deadline:
                m = run.metrics()
                if _metric(m, "hft_fills_total") > fills:
                    killed_after_fill = True
                    break
                time.sleep(0.002)
        run.kill9()
        r.kills += 1
        r.kills_after_fill += killed_after_fill
        self._count(m)
        # what the engine had counted (last scrape, just before the kill) but its journal did not keep
        reader = JournalReader(self.journal_path)
        try:
            session = reader.last_session()
            journaled = sum(1 for f in reader.fills() if session is not None and f.session_id == session.session_id)
        finally:
            reader.close_reader()
        run.acked_unjournaled = max(0, int(_metric(m, "hft_fills_total")) - journaled)
        r.acked_unjournaled_at_kill += run.acked_unjournaled
        self.unrecovered = set(self.server_trades()) - set(self.journal_fills())
        r.unjournaled_at_kill += len(self.unrecovered)
        return killed_after_fill

    def _check_health(self, run: EngineRun, m: dict) -> None:
        r = self.report
        for venue in NAMES:
            gaps = _metric(m, "hft_book_gaps_total", venue=venue)
            resyncs = _metric(m, "hft_book_resyncs_total", venue=venue)
            if gaps != resyncs:
                r.book_problems.append(f"run {run.index} {venue}: {gaps:.0f} gaps but {resyncs:.0f} resyncs")
        if _metric(m, "hft_trading_state") == 2:
            reasons = {dict(ls).get("reason"): v for (n, ls), v in m.items() if n == "hft_kill_switch_total" and v}
            r.halts.append(f"run {run.index} halted: {reasons}; stderr:\n{_tail(run.err, 10)}")

    def _count(self, m: dict) -> None:
        self.report.duplicates_ignored += int(_metric(m, "hft_duplicate_fills_total"))
        self.report.gaps += int(_metric(m, "hft_book_gaps_total"))
        self.report.resyncs += int(_metric(m, "hft_book_resyncs_total"))

    # -- checks while a run trades
    def check_running(self, run: EngineRun, rounds: int = 20) -> None:
        """Books valid again, no orphan, no earlier run's order left, fills and positions agree."""
        self.check_books(run)
        for _ in range(rounds):
            self._check_orphans_running()
            time.sleep(0.05)
        self._check_fills_running()
        m = run.metrics()
        self._check_health(run, m)
        self._count(m)

    def check_books(self, run: EngineRun) -> None:
        """Every venue's book valid again, then equal to the server's."""
        self._check_books_valid(run)
        self._check_books_equal(run)

    def _check_books_valid(self, run: EngineRun) -> None:
        """Every venue's book is (again) valid: each gap and each dropped stream ended in a resync."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while True:
            m = run.metrics()
            invalid = [n for n in NAMES if _metric(m, "hft_book_valid", venue=n) != 1]
            if not invalid:
                return
            if time.monotonic() > deadline:
                self.report.book_problems.append(f"run {run.index}: books of {invalid} still invalid")
                return
            time.sleep(0.1)

    def _check_books_equal(self, run: EngineRun) -> None:
        """Freeze every market, then wait until the engine's book of each venue (the checksum of its best
        levels it exports) equals the server's own depth — after whatever gaps, drops and resyncs the run
        went through; then let the markets move again."""
        try:
            for s in self.servers.values():
                s.admin("POST", "/admin/halt", {"symbol": SYMBOL, "halted": True})
            pending = set(NAMES)
            deadline = time.monotonic() + SETTLE_TIMEOUT_S
            while pending and time.monotonic() < deadline:
                m = run.metrics()
                for n in sorted(pending):
                    depth = self.servers[n].admin("GET", f"/admin/book?symbol={SYMBOL}&limit={CHECKSUM_LEVELS}")
                    want = levels_checksum([(P(p), P(q)) for p, q in depth["bids"]],
                                           [(P(p), P(q)) for p, q in depth["asks"]])
                    if _metric(m, "hft_book_valid", venue=n) == 1 and _metric(m, "hft_book_checksum", venue=n) == want:
                        pending.discard(n)
                time.sleep(0.1)
            self.report.books_compared += len(NAMES) - len(pending)
            for n in sorted(pending):
                self.report.book_problems.append(f"run {run.index} {n}: the engine's book never equalled the server's")
        finally:  # every market trades again, whatever failed above
            for s in self.servers.values():
                try:
                    s.admin("POST", "/admin/halt", {"symbol": SYMBOL, "halted": False})
                except OSError as exc:
                    self.report.other.append(f"server {s.name}: could not resume trading: {exc}")

    def _journal_orders(self, cids: set[str]) -> tuple[dict[str, Any], str]:
        """The journal's rows of ``cids`` (by primary key: quick however long the journal) and the
        running session's client-order-id prefix."""
        reader = JournalReader(self.journal_path)
        try:
            session = reader.last_session()
            rows = {cid: row for cid in cids if (row := reader.order(cid)) is not None}
            return rows, session.cid_prefix if session else ""
        finally:
            reader.close_reader()

    def _check_orphans_running(self) -> None:
        """Open on a server before and after a journal read ⇒ the journal has it, as not done.

        (An order cannot reopen, so it was open throughout; its intent was journaled before it was sent,
        and the engine calls an order done only when the venue confirms it.)
        """
        r = self.report
        before = {n: set(s.account(trades=False)["open"]) for n, s in self.servers.items()}
        rows, prefix = self._journal_orders(set().union(*before.values()))
        after = {n: set(s.account(trades=False)["open"]) for n, s in self.servers.items()}
        both = {n: before[n] & after[n] for n in NAMES}
        # An intent may still wait in the writer's queue (committed every 50 ms): look again, later. Such a
        # later row proves the order known, not its state at the time (it may have been canceled since).
        late: dict[str, Any] = {}
        for _ in range(3):
            unknown = {cid for cids in both.values() for cid in cids if cid not in rows and cid not in late}
            if not unknown:
                break
            time.sleep(0.25)
            late.update(self._journal_orders(unknown)[0])
        for n in NAMES:
            for cid in sorted(both[n]):
                r.open_checked_running += 1
                row = rows.get(cid) or late.get(cid)
                if row is None:
                    r.orphans.append(f"{n} {cid}: open on the server, unknown to the journal")
                elif row.venue != n:
                    r.orphans.append(f"{n} {cid}: open on the server, journaled on {row.venue}")
                elif cid in rows and row.status.is_done:
                    r.orphans.append(f"{n} {cid}: open on the server, journaled {row.status.value}")
                if not cid.startswith(prefix):  # recovery.open_orders=cancel: gone once the run trades
                    r.stale_orders.append(f"{n} {cid}: an earlier run's order still open on the server")

    def _check_fills_running(self) -> None:
        """Every server trade is journaled (soon), every journaled fill is the server's; positions agree."""
        r = self.report
        snap = {n: s.account() for n, s in self.servers.items()}
        keys = {(n, tid) for n, a in snap.items() for tid in a["trades"]}
        missing = self.wait_journal_has(keys)
        r.lost_fills += [f"{n} trade {tid} (while running)" for n, tid in sorted(missing)]
        journal = self.journal_fills()
        later = self.server_trades()
        r.extra_fills += [f"{n} trade {tid} (while running)" for n, tid in sorted(set(journal) - set(later))]
        for n, a in snap.items():
            mine = []
            for tid, t in a["trades"].items():
                jf = journal.get((n, tid))
                if jf is None:
                    continue
                r.fills_checked_running += 1
                diff = _server_fill_matches(n, jf, t)
                if diff:
                    r.fill_mismatches.append(diff)
                mine.append(jf)
            if len(mine) == len(a["trades"]):
                self._compare_positions(n, a["balances"], mine, "while running")

    def _compare_positions(self, n: str, balances: dict[str, int], fills: list[Any], when: str) -> None:
        base, quote = _moved_by(fills)
        moved_b = balances.get(BASE, 0) - self.start_balances[n].get(BASE, 0)
        moved_q = balances.get(QUOTE, 0) - self.start_balances[n].get(QUOTE, 0)
        if (moved_b, moved_q) != (base, quote):
            self.report.position_diffs.append(
                f"{n} ({when}): balances moved {numbers.to_str(moved_b)} {BASE} / {numbers.to_str(moved_q)} {QUOTE}, "
                f"journaled fills {numbers.to_str(base)} / {numbers.to_str(quote)}"
            )

    # -- after a clean shutdown
    def stop_and_check(self, run: EngineRun) -> None:
        """SIGTERM the run (it cancels everything and settles fills), then the exact end-state checks."""
        r = self.report
        r.final_exit_code = run.terminate(STOP_TIMEOUT_S)
        if r.final_exit_code != 0:
            r.other.append(f"run {run.index} exited {r.final_exit_code} after SIGTERM:\n{_tail(run.err, 15)}")
        accounts = {n: s.account() for n, s in self.servers.items()}
        for n, a in accounts.items():
            for cid in sorted(a["open"]):
                r.orphans.append(f"{n} {cid}: still open on the server after the clean shutdown")
        reader = JournalReader(self.journal_path)
        try:
            journal = _journal_fills(reader)
            orders = reader.orders()
            snapshots = {s.venue: s for s in reader.latest_snapshots() if s.symbol == SYMBOL}
            still_open = reader.open_orders()
        finally:
            reader.close_reader()
        r.orders = dict(Counter(o.venue for o in orders))
        for o in still_open:
            r.other.append(f"journal still has {o.venue} {o.client_order_id} as {o.status.value} after shutdown")
        server_keys = {(n, tid) for n, a in accounts.items() for tid in a["trades"]}
        r.lost_fills += [f"{n} trade {tid}" for n, tid in sorted(server_keys - set(journal))]
        r.extra_fills += [f"{n} trade {tid}" for n, tid in sorted(set(journal) - server_keys)]
        total_base = 0
        for n, a in accounts.items():
            mine = [f for (v, _), f in journal.items() if v == n]
            r.fills_checked[n] = len(mine)
            for tid, t in a["trades"].items():
                jf = journal.get((n, tid))
                if jf is not None:
                    diff = _server_fill_matches(n, jf, t)
                    if diff:
                        r.fill_mismatches.append(diff)
            self._compare_positions(n, a["balances"], mine, "after shutdown")
            base = _moved_by(mine)[0]
            total_base += base
            fees = sum(f.fee for f in mine)
            snap = snapshots.get(n)
            if snap is None:
                r.position_diffs.append(f"{n}: no position snapshot in the journal")
            elif (snap.position, snap.fees) != (base, fees):  # the engine counted no fill twice
                r.position_diffs.append(
                    f"{n}: the engine's last position {numbers.to_str(snap.position)} (fees {numbers.to_str(snap.fees)}) "
                    f"!= journaled fills {numbers.to_str(base)} (fees {numbers.to_str(fees)})"
                )
        r.elapsed_s = time.monotonic() - self._t0
        total = snapshots.get("total")
        if total is None or total.position != total_base:
            r.position_diffs.append(
                f"total: the engine's last position {numbers.to_str(total.position) if total else None} "
                f"!= journaled fills {numbers.to_str(total_base)}"
            )


def run_soak(
    restarts: int,
    run_seconds: float,
    seed: int,
    workdir: Path,
    *,
    kill_after_fill_share: float = 0.5,
    final_seconds: float | None = None,
    faults: bool = True,
    out: Callable[[str], None] | None = None,
) -> SoakReport:
    """``restarts`` × (start, trade a seeded random 0.5-1.5 × ``run_seconds``, ``kill -9``), then one more
    run that trades ``final_seconds`` (default ``run_seconds``), is checked while it runs, stopped with
    SIGTERM and checked again. Configs, logs and the journal stay in ``workdir``."""
    soak = Soak(workdir, seed=seed, faults=faults, restarts_planned=restarts, out=out)
    r, say = soak.report, soak.say
    try:
        soak.start()
        for i in range(restarts):
            run = soak.start_engine()
            t_trading = time.monotonic()
            soak.trade(soak.rng.uniform(0.5, 1.5) * run_seconds, drop_streams=faults)
            soak.check_books(run)  # after this run's drops, gaps and resyncs
            after_fill = soak.kill(run, after_fill=soak.rng.random() < kill_after_fill_share)
            say(f"soak: run {i}: started in {run.started_s:.1f}s, traded {time.monotonic() - t_trading:.1f}s, "
                f"kill -9{' right after a fill' if after_fill else ''}; journal lacked {len(soak.unrecovered)} "
                f"server fill(s), {run.acked_unjournaled} of them acknowledged by the engine")
        run = soak.start_engine()
        soak.trade(run_seconds if final_seconds is None else final_seconds, drop_streams=faults)
        t_check = time.monotonic()
        soak.check_running(run)
        t_stop = time.monotonic()
        say(f"soak: run {run.index}: checked while trading ({t_stop - t_check:.1f}s); SIGTERM")
        soak.stop_and_check(run)
        say(f"soak: run {run.index}: exit code {r.final_exit_code} after {time.monotonic() - t_stop:.1f}s; checked")
    except SoakFailure as exc:
        if not r.recovery_failures:
            r.other.append(str(exc))
    finally:
        soak.close()
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--restarts", type=int, default=10, help="kill -9 + restart cycles (default 10)")
    ap.add_argument("--run-seconds", type=float, default=2.5, help="mean seconds of trading per run (default 2.5)")
    ap.add_argument("--seed", type=int, default=1, help="seed of run lengths, kill timing and the servers")
    ap.add_argument("--workdir", type=Path, default=None, help="keep configs, logs and the journal here")
    ap.add_argument("--no-faults", action="store_true", help="kill -9 restarts only, no injected faults")
    args = ap.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hft-soak-"))
    report = run_soak(args.restarts, args.run_seconds, args.seed, workdir, faults=not args.no_faults)
    print(report.format())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
