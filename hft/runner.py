"""``hft run``: start everything, show a live status, stop cleanly, print a summary."""

from __future__ import annotations

import asyncio
import os
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Callable

from hft.engine import Engine, Summary, format_summary
from hft.journal import Journal, JournalError, config_digest
from hft.metrics import Metrics
from hft.registry import Registry
from hft.secrets import redact

log = logging.getLogger(__name__)


async def run(cfg: Any, venues: Registry, strategies: Registry, **options: Any) -> int:
    """Run until ``duration`` elapses or a stop signal; returns the process exit code.

    Takes the options of :func:`run_engine`. 1 if start-up failed or orders may remain open.
    """
    summary = await run_engine(cfg, venues, strategies, **options)
    if summary is None or summary.journal_error:
        return 1
    return 0 if all(v == 0 for v in summary.open_orders_left.values()) else 1


async def run_engine(
    cfg: Any,
    venues: Registry,
    strategies: Registry,
    *,
    duration: float | None = None,
    quiet: bool = False,
    install_signals: bool = False,
    metrics: Metrics | None = None,
    out: Callable[[str], None] | None = None,
    on_started: Callable[[Engine], None] | None = None,
) -> Summary | None:
    """Like :func:`run` but returns the :class:`Summary` (``None`` if start-up failed)."""
    write = out or _print
    metrics = metrics or Metrics()
    port = None
    if cfg.metrics.enabled:
        try:
            port = metrics.serve(cfg.metrics.host, cfg.metrics.port)
        except OSError as exc:
            write(f"error: metrics endpoint {cfg.metrics.host}:{cfg.metrics.port}: {exc.strerror or exc}\n")
            return None
    journal = None
    if cfg.journal.enabled:
        try:
            journal = Journal(
                cfg.journal.path, synchronous=cfg.journal.synchronous, max_commit_delay_s=cfg.journal.max_commit_delay_s,
            ).open()
        except (OSError, JournalError) as exc:
            metrics.shutdown()
            write(f"error: {exc}\n" if isinstance(exc, JournalError) else f"error: journal {cfg.journal.path}: {exc}\n")
            return None
    engine = Engine(
        cfg, venue_registry=venues, strategy_registry=strategies, metrics=metrics, journal=journal,
        status_printer=None if quiet else StatusPrinter(write, out is None and sys.stdout.isatty()),
    )
    if journal is not None:
        journal.start_session(engine.cid_prefix, config_digest(cfg))
    stop = engine.stop_requested
    loop = asyncio.get_running_loop()
    if install_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # `hft halt` (or kill -USR1 PID) is the manual kill switch; -USR2 switches to reduce-only
        loop.add_signal_handler(signal.SIGUSR1, engine.request_halt, "manual")
        loop.add_signal_handler(signal.SIGUSR2, engine.reduce_only, "manual")
        _write_pid(cfg.engine.pid_file)
    clean = False
    summary: Summary | None = None
    try:
        try:
            engine.build()
            await engine.start()
        except Exception as exc:  # noqa: BLE001 - a start-up failure is reported, then everything is closed
            write(f"error: start-up failed: {redact(str(exc)) or type(exc).__name__}\n")
            log.debug("start-up failure", exc_info=True)
            await engine.stop()
            return None
        venues_text = ", ".join(f"{n} ({type(a).type_name})" for n, a in engine.adapters.items())
        write(f"hft: trading {engine.strategy.symbol if engine.strategy else '?'} on {venues_text}\n")
        if port is not None:
            write(f"hft: metrics at http://{cfg.metrics.host}:{port}/metrics\n")
        write(f"hft: {'running for %.0fs' % duration if duration else 'running'}; Ctrl-C stops cleanly\n")
        if on_started is not None:
            on_started(engine)
        try:
            await asyncio.wait_for(stop.wait(), timeout=duration)
        except asyncio.TimeoutError:
            pass
        write("hft: stopping: cancelling resting orders on every venue\n")
        summary = await engine.stop()
        write(format_summary(summary) + "\n")
        clean = all(v == 0 for v in summary.open_orders_left.values())
        return summary
    finally:
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2):
                loop.remove_signal_handler(sig)
            _remove_pid(cfg.engine.pid_file)
        metrics.shutdown()
        if journal is not None:
            try:
                journal.close(clean=clean)  # an unclean session is where the next start reconciles from
            except JournalError as exc:
                write(f"error: journal {cfg.journal.path}: {exc}\n")
                if summary is not None:
                    summary.journal_error = str(exc)


class StatusPrinter:
    """Redraws the status block in place on a terminal; elsewhere prints every ``every``-th block."""

    def __init__(self, write: Callable[[str], None], tty: bool, every: int = 5) -> None:
        self._write = write
        self._tty = tty
        self._every = every
        self._calls = 0
        self._lines = 0

    def __call__(self, text: str) -> None:
        self._calls += 1
        if self._tty:
            # cursor up over the previous block, clear to the end of the screen, draw the new one
            self._write((f"\x1b[{self._lines}F\x1b[J" if self._lines else "") + text + "\n")
            self._lines = text.count("\n") + 1
        elif self._calls % self._every == 1 or self._every == 1:
            self._write(text + "\n")


def _write_pid(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")


def _remove_pid(path: Path) -> None:
    try:
        if path.read_text().strip() == str(os.getpid()):
            path.unlink()
    except OSError:
        pass


def _print(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
