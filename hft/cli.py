"""The ``hft`` command line.

Every user-facing error is one line on stderr and a non-zero exit code; a
traceback means a bug in hft.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from importlib.metadata import entry_points
from pathlib import Path

import click

from hft.config import AppConfig, ConfigError, dump_config, load_config
from hft.journal import journal_cli
from hft.route_cli import route
from hft.registry import Registry, strategy_registry, venue_registry
from hft.secrets import install_log_redaction, redact

log = logging.getLogger("hft")


def _load(path: str | None, venues: Registry, strategies: Registry) -> AppConfig:
    def venue_model(type_name: str):
        return venues.resolve(type_name).Options

    def strategy_model(type_name: str):
        return strategies.resolve(type_name).Params

    try:
        return load_config(path, venue_options_model=venue_model, strategy_params_model=strategy_model)
    except ConfigError as exc:
        click.echo(f"error: {redact(str(exc))}", err=True)
        sys.exit(2)


def _setup_logging(level: str, file: str | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if file:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(file))
    logging.basicConfig(
        level=getattr(logging, level), format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers,
        force=True,
    )
    install_log_redaction()


class _PluginGroup(click.Group):
    """Also offers the commands other packages register under the ``hft.commands`` entry points
    (``hft exchange`` comes from ``venues``), loaded only when used."""

    def _plugins(self) -> dict:
        return {ep.name: ep for ep in entry_points(group="hft.commands")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._plugins()))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in self._plugins():
            command = self._plugins()[name].load()
        return command


@click.group(cls=_PluginGroup)
@click.version_option(package_name="hft")
def main() -> None:
    """hft: market making and smart order routing across several venues."""


@main.command("check-config")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
def check_config(file: str | None) -> None:
    """Validate FILE (default: the embedded default) and print it, secrets redacted."""
    cfg = _load(file, venue_registry(), strategy_registry())
    click.echo(redact(dump_config(cfg)), nl=False)


@main.command("venues")
def venues_cmd() -> None:
    """List the registered venue adapter types and their capabilities."""
    registry = venue_registry()
    for name in registry.names():
        cls = registry.resolve(name)
        caps = ", ".join(k for k, v in cls.capabilities.as_dict().items() if v)
        click.echo(f"{name:<10} {cls.description}")
        click.echo(f"{'':<10} capabilities: {caps}")


@main.command("run")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help="YAML config (default: embedded)")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds (default: until Ctrl-C)")
@click.option("--metrics-port", type=int, default=None, help="Override metrics.port (0 picks a free port)")
@click.option("--quiet", is_flag=True, help="No live status, only the final summary")
def run_cmd(config_path: str | None, duration: float | None, metrics_port: int | None, quiet: bool) -> None:
    """Run the configured strategy on the configured venues."""
    from hft.runner import run

    venues, strategies = venue_registry(), strategy_registry()
    cfg = _load(config_path, venues, strategies)
    if metrics_port is not None:
        cfg.metrics.port = metrics_port
    _setup_logging(cfg.log.level, cfg.log.file)
    try:
        code = asyncio.run(run(cfg, venues, strategies, duration=duration, quiet=quiet, install_signals=True))
    except KeyboardInterrupt:  # second Ctrl-C during shutdown
        code = 130
    sys.exit(code)



@main.command("halt")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help="YAML config (default: embedded)")
@click.option("--reduce-only", is_flag=True, help="Switch to REDUCING instead of halting")
def halt_cmd(config_path: str | None, reduce_only: bool) -> None:
    """Kill switch for a running `hft run`: cancel everything on every venue and halt."""
    cfg = _load(config_path, venue_registry(), strategy_registry())
    pid_file = cfg.engine.pid_file
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGUSR2 if reduce_only else signal.SIGUSR1)
    except (OSError, ValueError) as exc:
        click.echo(f"error: no running engine found through {pid_file}: {exc}", err=True)
        sys.exit(1)
    click.echo(f"sent {'reduce-only' if reduce_only else 'halt'} to engine pid {pid}")


main.add_command(journal_cli, "journal")
main.add_command(route)

if __name__ == "__main__":
    main()
