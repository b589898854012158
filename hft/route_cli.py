"""``hft route buy|sell QTY SYMBOL``: route one parent order across the configured venues.

Starts the engine without a strategy (the embedded default config: three simulated venues),
waits for every venue's book, routes the parent through :class:`hft.execution.ExecutionManager`,
prints the execution report (children per venue, fills, VWAP, fees, slippage against the
arrival mid, and the comparison with the best single venue and the ideal fee-adjusted sweep at
arrival), then stops the engine, which cancels anything left and confirms it.

Exit status: 0 when the parent was routed and nothing was left open, 1 when orders may remain
open or start-up failed, 2 for a bad argument or config.
"""

from __future__ import annotations

import asyncio
import sys

import click

from hft import numbers
from hft.engine import Engine
from hft.execution import ExecutionManager, RouterSettings, format_report
from hft.metrics import Metrics
from hft.model import Side
from hft.registry import strategy_registry, venue_registry
from hft.router import ParentOrder
from hft.secrets import redact


def _fixed(text: str, what: str) -> int:
    try:
        value = numbers.parse(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=what) from None
    if value <= 0:
        raise click.BadParameter("must be positive", param_hint=what)
    return value


@click.command("route")
@click.argument("side", type=click.Choice(["buy", "sell"], case_sensitive=False))
@click.argument("qty")
@click.argument("symbol")
@click.option("--limit", "limit", default=None, help="Limit price: no level beyond it is taken")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help="YAML config (default: embedded)")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds for the whole parent")
@click.option("--passive-residual", is_flag=True, help="Post what IOC children could not fill, until the timeout")
@click.option("--book-timeout", type=float, default=10.0, show_default=True, help="Seconds to wait for every book")
def route(
    side: str,
    qty: str,
    symbol: str,
    limit: str | None,
    config_path: str | None,
    timeout: float,
    passive_residual: bool,
    book_timeout: float,
) -> None:
    """Route one parent order (SIDE QTY SYMBOL, e.g. buy 0.8 BTC/USDT) and print the execution report."""
    from hft.cli import _load, _setup_logging  # here: hft.cli registers this command (no import cycle)

    qty_fp = _fixed(qty, "QTY")
    limit_fp = _fixed(limit, "--limit") if limit is not None else None
    venues, strategies = venue_registry(), strategy_registry()
    cfg = _load(config_path, venues, strategies)
    cfg.metrics.enabled = False  # a one-shot command: nobody scrapes it
    _setup_logging(cfg.log.level, cfg.log.file)
    symbols = {s for v in cfg.venues for s in v.symbols}
    if symbol not in symbols:
        click.echo(f"error: no configured venue trades {symbol} (configured: {', '.join(sorted(symbols))})", err=True)
        sys.exit(2)
    parent = ParentOrder(symbol, Side.BUY if side.lower() == "buy" else Side.SELL, qty_fp, limit_fp)
    settings = RouterSettings(timeout_s=timeout, passive_residual=passive_residual)
    try:
        code = asyncio.run(_route(cfg, venues, strategies, parent, settings, book_timeout))
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


async def _route(cfg, venues, strategies, parent: ParentOrder, settings: RouterSettings, book_timeout: float) -> int:
    engine = Engine(cfg, venue_registry=venues, strategy_registry=strategies, metrics=Metrics())
    result = None
    try:
        try:
            engine.build(with_strategy=False)
            await engine.start()
            await engine.wait_for_books(book_timeout)
        except Exception as exc:  # noqa: BLE001 - reported in one line, then everything is closed
            reason = "timed out waiting for the venues' books" if isinstance(exc, TimeoutError) else str(exc)
            click.echo(f"error: start-up failed: {redact(reason) or type(exc).__name__}", err=True)
            return 1
        names = ", ".join(engine.adapters)
        click.echo(f"hft route: {parent.symbol} on {names}")
        result = await ExecutionManager(engine, settings).execute(parent)
        click.echo(format_report(result))
    finally:
        summary = await engine.stop()
        left = {v: n for v, n in summary.open_orders_left.items() if n}
        if left:
            click.echo(f"warning: orders may remain open: {left}", err=True)
    if left or result is None:
        return 1
    return 0


if __name__ == "__main__":
    route()
